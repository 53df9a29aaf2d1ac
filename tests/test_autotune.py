"""The GEMM blocking autotune at first use (runtime/autotune.py): the mechanism only --
the cache is written, the choice is used, disabling works.  No timed assertion."""

from __future__ import annotations

import json

import pytest

import runtime
from compiler.codegen import blocking as B
from compiler.codegen.target import CodegenOptions, host_target
from runtime import autotune

TINY = (48, 40, 96)   # a product that times in microseconds
# two candidates (each is a GEMM library compiled for it): the rule's, which the suite builds
# anyway, and the blocking test's small one
TWO = [B.blocking_for(B.read_cache_sizes()), B.Blocking(32, 256)]


@pytest.fixture(autouse=True)
def _fresh(monkeypatch, tmp_path):
    monkeypatch.setenv("DLC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv(autotune.ENV, "1")
    monkeypatch.setattr(autotune, "candidates", lambda: list(TWO))
    autotune.forget()
    yield
    autotune.forget()


def test_first_use_tunes_writes_the_cache_and_uses_the_choice(tmp_path):
    choice = autotune.ensure_tuned(CodegenOptions(), runtime.compile, shape=TINY)
    assert choice in TWO
    record = json.loads(autotune.choice_path(host_target()).read_text())
    assert record["choice"] == {"mc": choice.mc, "nc": choice.nc}
    assert set(record["cpu_seconds"]) == {c.key() for c in TWO}
    assert record["cpu"] == host_target().cpu
    assert CodegenOptions().gemm_blocking == choice
    assert f"blocking={choice.key()}" in CodegenOptions().key()


def test_a_cached_choice_is_read_not_tuned(monkeypatch):
    path = autotune.choice_path(host_target())
    path.write_text(json.dumps({"format": autotune.FORMAT, "choice": {"mc": 48, "nc": 512}}))

    def no_timing(*args, **kwargs):
        raise AssertionError("tuned again although a choice was cached")

    monkeypatch.setattr(autotune, "time_candidates", no_timing)
    runtime.compile("examples/xor.dl", cache=False)        # first use in this process
    assert B.host_blocking(host_target()) == B.Blocking(48, 512)
    assert CodegenOptions().gemm_blocking == B.Blocking(48, 512)


def test_a_broken_cache_file_is_tuned_again():
    path = autotune.choice_path(host_target())
    path.write_text('{"format": "dlc-gemm-blocking-1", "choice": {"mc": 7, "nc": 512}}')   # mc out of range
    assert autotune.read_choice(path) is None
    choice = autotune.ensure_tuned(CodegenOptions(), runtime.compile, shape=TINY)
    assert autotune.read_choice(path) == choice


def test_disabled_by_the_environment(monkeypatch):
    monkeypatch.setenv(autotune.ENV, "0")
    path = autotune.choice_path(host_target())
    path.write_text(json.dumps({"format": autotune.FORMAT, "choice": {"mc": 48, "nc": 512}}))
    assert autotune.ensure_tuned(CodegenOptions(), runtime.compile, shape=TINY) is None
    assert CodegenOptions().gemm_blocking == B.blocking_for(B.read_cache_sizes())   # the rule
    path.unlink()
    assert autotune.ensure_tuned(CodegenOptions(), runtime.compile, shape=TINY) is None
    assert not path.exists()


def test_explicit_blocking_is_never_tuned(monkeypatch):
    monkeypatch.setattr(autotune, "time_candidates", lambda *a, **k: pytest.fail("tuned"))
    assert autotune.ensure_tuned(CodegenOptions(blocking=B.Blocking(64, 1024)), runtime.compile, shape=TINY) is None
    assert not autotune.choice_path(host_target()).exists()


def test_a_change_of_the_gemm_code_tunes_again(monkeypatch):
    """The choice is kept per version of the code generator's sources (a kernel change may
    move the best blocking), as the GEMM library is."""
    from compiler.codegen import cache

    before = autotune.choice_path(host_target())
    monkeypatch.setattr(cache, "source_fingerprint", lambda: "0" * 64)
    assert autotune.choice_path(host_target()) != before
