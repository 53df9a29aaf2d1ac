"""dlc's own fuzzer: ``python -m fuzz`` (see ``docs/fuzzing.md``).

A development tool that runs from a source tree (it is not installed with
dlc): targets in ``fuzz/targets/``, the fuzzing loop in ``runner.py``, cases
run in a worker process (``worker.py``), the differential oracle in
``oracle.py`` and ``differential.py``, known-open defects in ``known.py``.
"""
