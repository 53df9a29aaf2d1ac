"""The pass manager (compiler/passes/manager.py) and the dce pass."""

from __future__ import annotations

import io
import re

import pytest

from compiler.diagnostics import DlError, Location, VerifyError
from compiler.ir.builder import new_function
from compiler.ir.core import Function, Module
from compiler.ir.printer import print_module
from compiler.ir.types import DType, TensorType
from compiler.passes import (
    PASSES,
    PIPELINES,
    PassContext,
    PassVerifyError,
    PipelineError,
    PipelineReport,
    count_ops,
    dce_function,
    parse_pipeline,
    register_pass,
    run_pipeline,
)

F32 = TensorType(DType.f32, (3,))


def dead_code_function(name: str = "f") -> Function:
    """f(x) = x + x, with two dead ops (a tanh and an exp of it)."""
    f, b = new_function(name, [("x", F32)], loc=Location("m.dl", 1, 1))
    x = f.params[0]
    dead = b.tanh(x)
    b.exp(dead)
    f.outputs = [b.add(x, x)]
    return f


def module() -> Module:
    return Module([dead_code_function()])


@pytest.fixture
def temp_passes():
    """Register passes for one test and remove them afterwards."""
    added: list[str] = []

    def add(name: str, fn, description: str = "a test pass") -> None:
        register_pass(name, description)(fn)
        added.append(name)

    yield add
    for name in added:
        del PASSES[name]


# ---------------------------------------------------------------------------
# Pipelines


def test_registered_passes_have_descriptions():
    assert {"autodiff", "dce"} <= set(PASSES)
    for info in PASSES.values():
        assert info.description and info.run.__doc__


def test_parse_pipeline_string_and_list():
    assert parse_pipeline("autodiff, dce") == ["autodiff", "dce"]
    assert parse_pipeline(["dce", "dce"]) == ["dce", "dce"]
    assert parse_pipeline(" dce ,, ") == ["dce"]
    assert parse_pipeline("") == []


def test_named_pipelines_expand_and_are_valid():
    for name, spec in PIPELINES.items():
        assert parse_pipeline(name) == parse_pipeline(spec)
    assert parse_pipeline("inference,autodiff") == [*parse_pipeline(PIPELINES["inference"]), "autodiff"]


def test_unknown_pass_lists_available_passes():
    with pytest.raises(PipelineError) as info:
        parse_pipeline("dce,frobnicate,cse2,frobnicate")
    err = info.value
    assert isinstance(err, DlError)
    assert err.message == "unknown passes 'frobnicate', 'cse2'"
    assert err.notes[0] == f"available passes: {', '.join(sorted(PASSES))}"
    assert err.notes[1].startswith("available pipelines: default, inference, train")
    assert err.render().startswith("error: unknown passes 'frobnicate', 'cse2'\nnote: available passes: ")


def test_unknown_pass_in_run_pipeline_runs_nothing():
    m = module()
    with pytest.raises(PipelineError, match="unknown pass 'nope'"):
        run_pipeline(m, "dce,nope")
    assert count_ops(m) == 3


def test_register_twice_is_an_internal_error():
    with pytest.raises(AssertionError, match="pass dce registered twice"):
        register_pass("dce", "again")(lambda m, ctx: m)


# ---------------------------------------------------------------------------
# dce


def test_dce_removes_unused_ops_and_keeps_order():
    f = dead_code_function()
    assert dce_function(f) == 2
    assert [op.name for op in f.ops] == ["add"]


def test_dce_keeps_ops_feeding_outputs_through_chains():
    f, b = new_function("g", [("x", F32)])
    x = f.params[0]
    y = b.tanh(x)
    b.neg(y)  # dead
    z = b.exp(y)
    f.outputs = [z, y]
    assert dce_function(f) == 1
    assert [op.name for op in f.ops] == ["tanh", "exp"]


def test_dce_pass_counts_removed_ops():
    report = PipelineReport()
    m = run_pipeline(Module([dead_code_function("f"), dead_code_function("g")]), "dce",
                     report=report)
    assert count_ops(m) == 2
    (record,) = report.records
    assert (record.name, record.ops_before, record.ops_after) == ("dce", 6, 2)
    assert record.counters == {"ops-removed": 4}


# ---------------------------------------------------------------------------
# Printing, timing, statistics


def test_print_after_all_dumps_ir_with_mlir_headers():
    out = io.StringIO()
    m = run_pipeline(module(), "dce", print_after="all", out=out)
    text = out.getvalue()
    assert text == "// -----// IR Dump After dce //----- //\n" + print_module(m) + "\n"
    assert "dl.tanh" not in text


def test_print_before_and_after_selected_pass():
    out = io.StringIO()
    before = print_module(module())
    run_pipeline(module(), "autodiff,dce", print_before={"dce"}, print_after="dce", out=out)
    text = out.getvalue()
    headers = re.findall(r"// -----// IR Dump (\w+ \w+) //----- //", text)
    assert headers == ["Before dce", "After dce"]
    assert before in text and "dl.tanh" in text.split("After dce")[0]


def test_print_after_change_skips_passes_that_change_nothing():
    out = io.StringIO()
    run_pipeline(module(), "autodiff,dce,dce", print_after_change=True, out=out)
    headers = re.findall(r"IR Dump (\w+ \w+)", out.getvalue())
    assert headers == ["After dce"]


def test_print_around_unknown_pass_is_an_error():
    with pytest.raises(PipelineError, match="cannot print around unknown pass 'no-such-pass'"):
        run_pipeline(module(), "dce", print_after={"no-such-pass"}, out=io.StringIO())


def test_time_passes_prints_mlir_style_report():
    out = io.StringIO()
    run_pipeline(module(), "autodiff,dce", time_passes=True, out=out)
    text = out.getvalue()
    assert "... Execution time report ..." in text
    assert re.search(r"Total Execution Time: \d+\.\d{4} seconds", text)
    assert "----Wall Time----  ----Name----" in text
    rows = re.findall(r"^\s+(\d+\.\d{4}) \(\s*(\d+\.\d)%\)  (.+)$", text, re.M)
    names = [r[2] for r in rows]
    assert names[:2] == ["autodiff", "dce"] and names[-1] == "Total"
    assert rows[-1][1] == "100.0"


def test_stats_report_lists_ops_and_counters():
    out = io.StringIO()
    run_pipeline(module(), "dce,dce", stats=True, out=out)
    text = out.getvalue()
    assert "... Pass statistics report ..." in text
    assert text.count("'dce'") == 2
    assert "  (S) 3 ops-before\n  (S) 1 ops-after\n  (S) 2 ops-removed" in text
    assert "  (S) 1 ops-before\n  (S) 1 ops-after\n  (S) 0 ops-removed" in text


def test_options_and_counters_reach_the_pass(temp_passes):
    seen = {}

    def probe(m: Module, ctx: PassContext) -> Module:
        """Records its options."""
        seen["factor"] = ctx.get("factor", 1)
        seen["missing"] = ctx.get("missing", "default")
        ctx.count("probes", 3)
        return m

    temp_passes("test-probe", probe)
    report = PipelineReport()
    run_pipeline(module(), ["test-probe"], options={"test-probe": {"factor": 4}}, report=report)
    assert seen == {"factor": 4, "missing": "default"}
    assert report.records[0].counters == {"probes": 3}


def test_a_pass_may_return_a_new_module(temp_passes):
    def replace(m: Module, ctx: PassContext) -> Module:
        """Returns a fresh module."""
        return Module([dead_code_function()], attrs={"fresh": True})

    temp_passes("test-replace", replace)
    out = run_pipeline(Module(), "test-replace,dce")
    assert out.attrs == {"fresh": True} and count_ops(out) == 1


def test_a_pass_returning_nothing_is_an_internal_error(temp_passes):
    temp_passes("test-none", lambda m, ctx: None)
    with pytest.raises(AssertionError, match="pass test-none returned NoneType, not a Module"):
        run_pipeline(module(), "test-none")


# ---------------------------------------------------------------------------
# verify-each


def break_ir(m: Module, ctx: PassContext) -> Module:
    """Deletes the first op of every function, leaving its uses dangling."""
    for f in m.functions:
        del f.ops[0]
    return m


def test_verify_each_catches_a_broken_pass(temp_passes):
    temp_passes("test-break", break_ir)
    m = Module([dead_code_function()])
    dce_function(m.functions[0])
    with pytest.raises(PassVerifyError) as info:
        run_pipeline(m, "dce,test-break,dce")
    err = info.value
    assert isinstance(err, VerifyError)
    assert err.message == "pass 'test-break' produced invalid IR"
    assert err.notes and "dl.add" not in err.message


def test_without_verify_each_a_broken_pass_goes_unnoticed(temp_passes):
    temp_passes("test-break", break_ir)
    m = Module([dead_code_function()])
    out = run_pipeline(m, "test-break", verify_each=False)
    assert count_ops(out) == 2


def test_invalid_input_raises_the_verifier_error_itself():
    m = Module([dead_code_function()])
    del m.functions[0].ops[0]  # exp now uses an undefined value
    with pytest.raises(VerifyError) as info:
        run_pipeline(m, "dce")
    assert not isinstance(info.value, PassVerifyError)
