"""Test-wide settings.

The suite compiles into a cache folder of its own, so it neither writes into
the user's ``~/.cache/dlc`` nor depends on what an earlier run left there:
every run starts cold, as CI does.
"""

import os
import tempfile

import pytest

_CACHE = tempfile.TemporaryDirectory(prefix="dlc-test-cache-")
os.environ["DLC_CACHE_DIR"] = _CACHE.name
# no GEMM autotune at first use (seconds of timing per run): the rule's blocking, as on a
# machine that disabled it (tests/test_autotune.py turns it on for the mechanism)
os.environ["DLC_AUTOTUNE"] = "0"


@pytest.fixture(scope="session", autouse=True)
def _test_cache_dir():
    yield _CACHE.name
    _CACHE.cleanup()


# Checks kept out of the default run (pyproject's addopts: -m "not slow") because they
# repeat, on the largest examples, what the same test checks on the others; run them
# with `python -m pytest -m slow`.  Test name -> substrings of the parameter ids.
SLOW = {
    # planned vs unplanned memory on the GPT examples (~12-16 s each)
    "test_planned_programs_compute_exactly_what_unplanned_ones_do": ("adder_gpt", "char_gpt"),
    # finite-difference gradients of the GPT examples (~5-8 s each)
    "test_example_loss_gradient": ("adder_gpt", "char_gpt"),
    # the GPT training steps through mlir-opt and mlir-runner (~19-26 s each)
    "test_mlir_runner_gives_dlcs_native_numbers": ("adder_gpt-train_step", "char_gpt-train_step"),
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        ids = getattr(getattr(item, "callspec", None), "id", "")
        if any(part in ids for part in SLOW.get(item.originalname, ())):
            item.add_marker(pytest.mark.slow)
