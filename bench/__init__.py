"""Benchmarks of dlc against numpy, PyTorch and JAX.  Run ``python bench/run.py --help``."""
