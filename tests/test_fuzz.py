"""The fuzzer (``fuzz/``, ``docs/fuzzing.md``): a short seeded run of every target, and its parts.

``test_seeded_run_finds_nothing_new`` is the suite's slice of ``python -m
fuzz``: fixed seeds, a fixed number of cases per target, every case in a
worker process.  It fails on any finding that no entry of
``fuzz/known.py:KNOWN_OPEN`` explains; when a known defect is fixed, its
entry is deleted and this test holds the fix.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import runtime
from compiler.diagnostics import DlError
from compiler.ir.interpreter import interpret
from frontend_dsl.api import compile_source
from fuzz import known
from fuzz.case import FINDING, OK, REJECTED, Case, Outcome, directives
from fuzz.dlgen import generate_program
from fuzz.minimize import Budget, ddmin, minimize_text
from fuzz.oracle import Mismatch, compare
from fuzz.runner import Fuzzer, Worker
from fuzz.targets import TARGETS
from fuzz.worker import exception_outcome

SEED = 4
CASES = {"dl_source": 6, "ir_text": 40, "runtime_args": 8, "files": 30}


@pytest.fixture(scope="module")
def worker():
    folder = Path(tempfile.mkdtemp(prefix="dlc-fuzz-test-"))
    w = Worker(folder)
    yield w
    w.stop()


# ---------------------------------------------------------------------------
# The seeded run


def test_seeded_run_finds_nothing_new() -> None:
    fuzzer = Fuzzer(list(TARGETS), seed=SEED, minimize_seconds=0, avoid_known=True)
    try:
        report = fuzzer.run(cases=CASES)
    finally:
        fuzzer.close()
    new = report.unknown()
    assert not new, "\n\n".join(f"{f.case.target} #{f.case.index}: {f.outcome.kind} {f.outcome.error} "
                                f"{f.outcome.where}\n{f.case.text}\n{f.outcome.details}" for f in new)
    tallies = report.tallies
    assert [tallies[t].cases for t in TARGETS] == [CASES[t] for t in TARGETS]
    # the oracles had something to say: programs ran natively and were compared, IR
    # parsed and ran, calls went through, files were loaded
    assert tallies["dl_source"].stats["compared"] >= 10
    assert tallies["ir_text"].stats["parsed"] >= 2
    assert tallies["runtime_args"].stats["accepted"] >= 2
    assert tallies["runtime_args"].statuses[REJECTED] >= 2
    assert tallies["files"].stats["loaded"] >= 10


# ---------------------------------------------------------------------------
# The worker: every way a case can go wrong is caught and named


@pytest.mark.parametrize("text, status, kind, error", [
    ("ok", OK, "", ""),
    ("reject", REJECTED, "", "DlError"),
    ("raise", FINDING, "exception", "ValueError"),
    ("mismatch", FINDING, "mismatch", "requested"),
    ("segv", FINDING, "signal", "SIGSEGV"),
    ("exit", FINDING, "exit", "exit 3"),
    ("hang", FINDING, "timeout", "timeout"),
    ("ok", OK, "", ""),                  # a fresh worker after the hang
])
def test_worker_names_what_a_case_did(worker: Worker, text: str, status: str, kind: str, error: str) -> None:
    outcome = worker.run(Case("selftest", 0, 0, "test", text), timeout=1.0 if text == "hang" else 30.0)
    assert (outcome.status, outcome.kind, outcome.error) == (status, kind, error)
    if kind == "signal":
        assert "Fatal Python error: Segmentation fault" in outcome.details   # faulthandler's stack
    if kind == "exception":
        assert outcome.where.startswith("harness: fuzz/targets/selftest.py:")
        assert "raised on request" in outcome.details


def test_findings_are_minimized_and_written(tmp_path: Path) -> None:
    fuzzer = Fuzzer([], seed=0, out=tmp_path, minimize_seconds=30)
    try:
        text = "# fuzz: seed=1\nalpha\nbeta\nbug\ngamma\ndelta\n"
        outcome = fuzzer.worker.run(Case("selftest", 0, 7, "test", text), timeout=30.0)
        fuzzer.targets["selftest"] = __import__("fuzz.targets.selftest", fromlist=["x"])
        fuzzer.record(Case("selftest", 0, 7, "test", text), outcome)
    finally:
        fuzzer.close()
    folder = next((tmp_path / "findings").iterdir())
    assert (folder / "input.txt").read_text() == "bug\n"
    assert (folder / "original.txt").read_text() == text
    assert "a line says bug" in (folder / "details.txt").read_text()
    assert '"index": 7' in (folder / "finding.json").read_text()


# ---------------------------------------------------------------------------
# Minimisation


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 9), max_size=30))
def test_ddmin_keeps_what_the_test_needs(units: list[int]) -> None:
    needed = {3, 7}

    def test(candidate: list[int]) -> bool:
        return needed <= set(candidate)

    if not test(units):
        units = units + [3, 7]
    result = ddmin(units, test, Budget(10, 10_000))
    assert test(result)
    assert sorted(result) == [3, 7]                  # 1-minimal: nothing else survives
    assert all(u in units for u in result)


def test_minimize_text_keeps_directives_only_when_needed() -> None:
    text = "# fuzz: seed=5\nfn f(x: f32[N]) {\n    let y = bad(x)\n    return y\n}\n"
    assert minimize_text(text, lambda t: "bad" in t, Budget(10, 1000)) == "bad"
    assert minimize_text(text, lambda t: "seed=5" in t and "bad" in t, Budget(10, 1000)) == \
        "# fuzz: seed=5\nbad"
    assert directives("# fuzz: seed=5 trusted=f0,f1\nx") == {"seed": "5", "trusted": "f0,f1"}


# ---------------------------------------------------------------------------
# The differential oracle


def test_compare_holds_nan_places_and_infinities() -> None:
    ref = np.array([1.0, np.nan, np.inf, -2.0], np.float32)
    compare("same", ref.copy(), ref)
    with pytest.raises(Mismatch, match="NaN in different places"):
        compare("nan", np.array([1.0, 0.0, np.inf, -2.0], np.float32), ref)
    with pytest.raises(Mismatch, match="infinities differ"):
        compare("inf", np.array([1.0, np.nan, -np.inf, -2.0], np.float32), ref)
    with pytest.raises(Mismatch, match="beyond the tolerance"):
        compare("far", np.array([1.001, np.nan, np.inf, -2.0], np.float32), ref)
    with pytest.raises(Mismatch, match="native gives float64"):
        compare("dtype", ref.astype(np.float64), ref)


def test_compare_allows_what_f32_rounding_amplifies() -> None:
    edge = np.float32(np.finfo(np.float32).max * (1 - 2e-6))
    ref = np.array([1.0, np.inf, edge], np.float32)
    wide = np.array([1.00001, 6.0e38, edge])       # f32 lost 1e-5 at [0] and overflowed at [1]
    got = np.array([1.0001, 7.0, np.inf], np.float32)
    compare("drift", got, ref, wide)               # 1e-4 < 16x the drift; [1] is unstable; [2] is at the edge
    with pytest.raises(Mismatch, match="beyond the tolerance"):
        compare("no drift", got[:1], ref[:1])
    with pytest.raises(Mismatch, match="native gives an infinity"):
        compare("overflow", np.array([np.inf], np.float32), np.array([1e38], np.float32))


def test_ints_compare_exactly() -> None:
    with pytest.raises(Mismatch, match="values differ"):
        compare("int", np.array([1, 2], np.int32), np.array([1, 3], np.int32))


# ---------------------------------------------------------------------------
# The program generator: what it makes compiles


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1))
def test_generated_programs_compile(seed: int) -> None:
    program = generate_program(random.Random(seed))
    module = compile_source(program.text, "generated.dl")
    assert program.trusted <= {f.name for f in module.functions}


# ---------------------------------------------------------------------------
# The runtime's argument checks, in-process, for arrays numpy can make


ARG_CHECK_SOURCE = """
fn f(x: f32[N, 3], k: i32[], m: f32[N]) -> (f32[N, 3], f32[]) {
    return x * cast(k, f32) + broadcast_to(reshape(m, [N, 1]), [N, 3]), sum(m)
}
"""


@pytest.fixture(scope="module")
def arg_check_fn():
    compiled = runtime.compile(ARG_CHECK_SOURCE)
    return compiled.f, compiled.module.get("f")


arrays = hnp.arrays(
    dtype=st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.int64, np.int8, np.uint8,
                           np.uint64, np.bool_, np.complex64]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    elements={"allow_nan": False, "allow_infinity": False, "min_value": 0, "max_value": 8})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(x=arrays, k=st.one_of(arrays, st.integers(-2**70, 2**70), st.floats(), st.none(), st.text(max_size=3)),
       m=arrays, transpose=st.booleans())
def test_calls_give_a_dl_error_or_the_interpreters_answer(arg_check_fn, x, k, m, transpose: bool) -> None:
    fn, func = arg_check_fn
    if transpose and np.ndim(x) == 2:
        x = np.ascontiguousarray(x.T).T                 # same values, not C-contiguous
    try:
        got = fn(x, k, m)
    except DlError:
        return
    except Exception as e:                 # a finding, unless a known-open defect explains it
        outcome = exception_outcome(e)
        assert known.classify(Case("runtime_args", 0, 0, "hypothesis", ""), outcome), outcome.details
        return
    args = [np.asarray(v).astype(p.type.dtype.np) for p, v in zip(func.params, (x, k, m))]
    for g, want in zip(got, interpret(func, args)):
        compare("call", g, want)


def test_known_open_defects_are_described() -> None:
    names = [d.name for d in known.KNOWN_OPEN]
    assert len(names) == len(set(names))
    for defect in known.KNOWN_OPEN:
        assert defect.description and defect.name
    clean = Outcome(OK)
    assert known.classify(Case("dl_source", 0, 0, "test", ""), clean) is None
