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
