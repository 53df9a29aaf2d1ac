"""Element counts, byte sizes and workspace offsets that would overflow (docs/ops.md,
"Sizes and overflow"): a located error at compile time for static dims, a
``SizeLimitError`` before native code runs for symbolic dims (the interpreter says
the same), an ``AllocationError`` naming the GiB for memory the machine cannot give,
and reductions over more than 2^32 elements that count right."""

from __future__ import annotations

import contextlib
import functools
import io
import re
from pathlib import Path

import numpy as np
import pytest

import runtime
from compiler.codegen.driver import llvm_module
from compiler.diagnostics import (
    AllocationError,
    DlError,
    SizeError,
    SizeLimitError,
    VerifyError,
)
from compiler.ir.interpreter import interpret
from compiler.ir.parser import parse_module
from compiler.ir.sizes import MAX_BYTES, extent, size_problem
from compiler.ir.verifier import verify_module
from frontend_dsl.api import compile_source
from runtime.cli import main
from runtime.compiled import ArgumentValueError, CompiledModule

BIG = 2 ** 62            # a dim that makes f32[BIG, 4] hold 2^64 elements
HUGE_VIEW = """\
fn f(x: f32[], w: f32[4, 1]) -> f32[] {
  let t = broadcast_to(x, [4611686018427387904, 4])
  return sum(t @ w)
}
"""
REDUCTIONS = """\
fn s(x: f32[]) -> f32[] {
  return sum(broadcast_to(x, [4294967296, 4294967296]))
}
fn m(x: f32[]) -> f32[] {
  return mean(broadcast_to(x, [4294967296, 4294967296]))
}
fn mx(x: f32[]) -> f32[] {
  return max(broadcast_to(x, [4294967296, 4294967296]))
}
"""
MATMUL = "fn mm(x: f32[N, K], y: f32[K, M]) -> f32[] {\n  return sum(x @ y)\n}\n"
PRODUCT = "fn mm(x: f32[N, K], y: f32[K, M]) -> f32[N, M] {\n  return x @ y\n}\n"
# a reduction over a broadcast view of symbolic size: nothing is materialized
VIEW_SUM = """\
fn vs(v: i64[], x: f32[N, K], y: f32[K, M]) -> i64[] {
  return sum(broadcast_to(v, [N, M]))
}
"""
LEGIT = """\
fn total(x: i64[]) -> i64[] {
  return sum(broadcast_to(x, [2147483649, 2]))
}
fn average(x: f32[]) -> f32[] {
  return mean(broadcast_to(x, [2147483649, 2]))
}
fn flat(x: f32[]) -> f32[] {
  return max(broadcast_to(x, [2147483712]))
}
"""


@functools.cache
def compiled(source: str) -> CompiledModule:
    return runtime.compile(source)


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def empty(*shape: int) -> np.ndarray:
    """A zero-byte f32 array of ``shape`` (one dim is 0)."""
    return np.empty(shape, np.float32)


# ---------------------------------------------------------------------------
# The rule


def test_the_rule_counts_zero_dims_as_one_and_stops_at_max_bytes() -> None:
    assert extent((2, 0, 3)) == 6 and extent(("N", 5), {"N": 0}) == 5 and extent(("N", 5)) == 5
    assert size_problem(4, (2 ** 60,)) is None                  # exactly MAX_BYTES
    assert size_problem(4, (2 ** 60 + 1,)) is not None
    assert MAX_BYTES == 2 ** 62
    assert size_problem(4, (BIG, 4)).startswith("would hold 2^64 elements (2^66 bytes")
    assert "nonzero dims" in size_problem(4, (BIG, 0, 4))
    assert size_problem(4, ("N", BIG)).startswith("would hold at least 2^62 elements")


# ---------------------------------------------------------------------------
# 1. static dims: a located error naming the value


def test_a_let_bound_view_of_2_64_elements_is_a_located_error(tmp_path: Path) -> None:
    path = write(tmp_path, "f.dl", HUGE_VIEW)
    expected = (f"{path}:2:11: error: 't' (f32[4611686018427387904, 4]) would hold 2^64 elements "
                "(2^66 bytes; a tensor may span at most 2^62 bytes)")
    for argv in (["check", path], ["run", path, "-i", "x=1", "-i", "w=[[1],[1],[1],[1]]"],
                 ["run", path, "--interp", "-i", "x=1", "-i", "w=[[1],[1],[1],[1]]"]):
        code, _, err = run_cli(*argv)
        assert code == 1, argv
        assert err.splitlines()[0] == expected, argv
    with pytest.raises(DlError) as info:
        runtime.compile(HUGE_VIEW)
    assert isinstance(info.value.errors[0], SizeError)


def test_an_op_result_too_large_names_the_op(tmp_path: Path) -> None:
    src = "fn g(x: f32[]) -> f32[] {\n  return sum(broadcast_to(x, [4294967296, 4294967296]))\n}\n"
    with pytest.raises(DlError) as info:
        compile_source(src, "g.dl")
    error = info.value.errors[0]
    assert isinstance(error, SizeError) and (error.loc.line, error.loc.col) == (2, 14)
    assert error.message.startswith("broadcast_to: its result f32[4294967296, 4294967296] "
                                         "would hold 2^64 elements")


def test_ir_text_with_a_type_too_large_fails_verification() -> None:
    text = """module {
  func.func @f(%x: tensor<4294967296x4294967296xf32>) -> (tensor<4294967296x4294967296xf32>) {
    func.return %x : tensor<4294967296x4294967296xf32>
  }
}
"""
    with pytest.raises(VerifyError, match="would hold 2"):
        verify_module(parse_module(text, "h.mlir"))


# ---------------------------------------------------------------------------
# 1. symbolic dims: checked at call time, before native code runs


def test_a_product_of_zero_byte_arguments_too_large_is_an_error_not_a_crash() -> None:
    x, y = empty(2 ** 40, 0), empty(0, 2 ** 24)
    expected = ("@mm: with N=1099511627776, K=0, M=16777216, the result of dl.matmul at <string>:2:14 "
                "would hold 2^64 elements")
    mod = compiled(MATMUL)
    with pytest.raises(SizeLimitError) as native:
        mod.mm(x, y)
    assert native.value.message.startswith(expected)
    with pytest.raises(SizeLimitError) as interp:
        interpret(compile_source(MATMUL, "<string>").functions[0], [x, y])
    assert interp.value.message == native.value.message
    assert mod.mm(np.ones((3, 2), np.float32), np.ones((2, 4), np.float32)) == 24.0


def test_a_workspace_beyond_the_limit_is_an_error() -> None:
    # x @ y holds 2^62 bytes, as much as one tensor may: with the packing regions the
    # workspace holding it would not fit
    mod = compiled(MATMUL)
    with pytest.raises(SizeLimitError, match="native code's workspace would need up to"):
        mod.mm(empty(2 ** 40, 0), empty(0, 2 ** 20))


def test_outputs_the_machine_cannot_hold_are_an_allocation_error() -> None:
    mod = compiled(PRODUCT)
    with pytest.raises(AllocationError) as info:
        mod.mm(empty(2 ** 40, 0), empty(0, 2 ** 20))
    assert isinstance(info.value, MemoryError)
    assert re.search(r"@mm: with N=1099511627776, K=0, M=1048576, the outputs needs 4,294,967,296\.0 GiB "
                     r"\(4611686018427387904 bytes\); this machine has [0-9.]+ GiB of memory",
                     info.value.message)


def test_bound_calls_check_sizes_and_keep_their_state() -> None:
    mod = compiled(MATMUL)
    good = np.ones((3, 2), np.float32), np.ones((2, 4), np.float32)
    bad = empty(2 ** 40, 0), empty(0, 2 ** 24)
    with pytest.raises(SizeLimitError):
        mod.mm.bind(*bad)
    bound = mod.mm.bind(*good)
    with pytest.raises(SizeLimitError):
        bound(*bad)
    assert bound(*good) == 24.0
    assert mod.mm.call_unchecked(*good) == 24.0
    with pytest.raises(SizeLimitError):
        mod.mm.call_unchecked(*bad)
    assert mod.mm.call_unchecked(*good) == 24.0


# ---------------------------------------------------------------------------
# 5. huge static shapes: `dlc check` refuses them; what cannot be allocated says so

MODEL = """\
model big {{
  input x: f32[N, {input_dim}]
  target y: f32[N, 1]
  param w: f32[{rows}, {cols}]
  param v: f32[{input_dim}, 1]
  output p = x @ v + sum(w)
  loss mse(p, y)
  optimizer sgd(lr=0.1)
}}
"""


@pytest.mark.parametrize("dims, where", [
    ({"input_dim": 4, "rows": 4294967296, "cols": 4294967296}, ":4:12: error: f32[4294967296, 4294967296] "),
    ({"input_dim": 2 ** 62, "rows": 2, "cols": 2}, ":2:12: error: f32[N, 4611686018427387904] "),
    # a dim past 64 bits is refused as a literal already, at the number
    ({"input_dim": 2 ** 64, "rows": 2, "cols": 2}, ":2:19: error: integer literal 18446744073709551616"),
])
def test_check_refuses_dims_that_overflow(tmp_path: Path, dims: dict, where: str) -> None:
    path = write(tmp_path, "big.dl", MODEL.format(**dims))
    code, out, err = run_cli("check", path)
    assert code == 1 and out == ""
    assert err.startswith(path + where) and ("would hold" in err or "64-bit" in err)


def test_a_parameter_larger_than_memory_is_an_allocation_error(tmp_path: Path) -> None:
    path = write(tmp_path, "big.dl", MODEL.format(input_dim=4, rows=2 ** 24, cols=2 ** 24))
    assert run_cli("check", path)[0] == 0                       # within the size limit
    with pytest.raises(AllocationError, match=r"parameter 'w' .* needs 1,048,576\.0 GiB .* this machine has"):
        runtime.load_model(path)
    data = tmp_path / "data.npz"
    np.savez(data, x=np.zeros((4, 4), np.float32), y=np.zeros((4, 1), np.float32))
    code, _, err = run_cli("train", path, "--data", str(data), "--epochs", "1")
    assert code == 1 and "error: parameter 'w'" in err and "Traceback" not in err


# ---------------------------------------------------------------------------
# 6. reductions over more than 2^32 elements


@pytest.mark.parametrize("fn", ["s", "m", "mx"])
def test_reductions_over_2_64_elements_are_errors(tmp_path: Path, fn: str) -> None:
    path = write(tmp_path, "r.dl", REDUCTIONS)
    for extra in ([], ["--interp"]):
        code, out, err = run_cli("run", path, "--fn", fn, "-i", "x=1", *extra)
        assert code == 1 and out == "", extra
        assert "would hold 2^64 elements" in err and err.startswith(f"{path}:")


def test_a_symbolic_view_of_2_64_elements_is_an_error() -> None:
    func = compile_source(VIEW_SUM, "<string>").functions[0]
    args = (np.int64(1), empty(2 ** 32, 0), empty(0, 2 ** 32))
    with pytest.raises(SizeLimitError, match="dl.sum at <string>:2:10 would hold 2") as native:
        compiled(VIEW_SUM).vs(*args)
    with pytest.raises(SizeLimitError) as interp:
        interpret(func, list(args))
    assert "@vs: with N=4294967296, K=0, M=4294967296, " in native.value.message
    assert "@vs: with N=4294967296, K=0, M=4294967296, " in interp.value.message


def test_reductions_just_over_2_32_elements_count_right() -> None:
    mod = compiled(LEGIT)
    assert mod.total(np.int64(1)) == 2 * 2147483649
    assert mod.average(np.float32(2.5)) == 2.5
    assert mod.flat(np.float32(-3.0)) == -3.0
    views = compiled(VIEW_SUM)
    assert views.vs(np.int64(3), empty(2147483649, 0), empty(0, 2)) == 3 * 2 * 2147483649


@pytest.mark.parametrize("source", [LEGIT, VIEW_SUM, MATMUL])
def test_kernel_loop_counters_are_64_bit(source: str) -> None:
    text = str(llvm_module(compile_source(source, "k.dl")))
    # the entry points and their kernels (the thread pool's functions are "dlc.pool...")
    kernels = "\n".join(body for body in text.split("\ndefine ")[1:] if '@"dlc_' in body.split("(")[0])
    assert len(re.findall(r"= phi\s+i64", kernels)) >= 3          # loops over elements, chunks, tasks
    assert re.findall(r"= phi\s+i32", kernels) == []


# ---------------------------------------------------------------------------
# 13. arguments: zero-stride views and numbers out of range


def test_a_zero_stride_view_too_large_to_copy_names_the_argument() -> None:
    mod = compiled("fn f(x: f32[N]) -> f32[] {\n  return sum(x)\n}\n")
    view = np.broadcast_to(np.float32(1), (2 ** 50,))
    with pytest.raises(AllocationError, match=r"@f: argument 'x' \(float32 \(1125899906842624,\), "
                                              r"strides \(0,\)\) copied to contiguous memory needs "
                                              r"4,194,304\.0 GiB"):
        mod.f(view)


@pytest.mark.parametrize("fn, value, message", [
    ("i", 99999999999999999999, "99999999999999999999 is outside the range of i32"),
    ("i", 2 ** 31, "2147483648 is outside the range of i32"),
    ("l", 2 ** 63, "9223372036854775808 is outside the range of i64"),
    ("g", 10 ** 400, "is beyond the range of f32"),
])
def test_python_numbers_out_of_range_are_argument_errors(fn: str, value: int, message: str) -> None:
    src = ("fn i(x: i32[]) -> i32[] {\n  return x + 1\n}\nfn l(x: i64[]) -> i64[] {\n  return x + 1\n}\n"
           "fn g(x: f32[]) -> f32[] {\n  return x + 1\n}\n")
    with pytest.raises(ArgumentValueError, match=f"@{fn}: argument 'x' expects .*{message}"):
        compiled(src)[fn](value)
    with pytest.raises(DlError, match=f"@{fn}: argument 'x' expects .*{message}"):
        interpret(compile_source(src, "n.dl").get(fn), [value])
    assert compiled(src)[fn](7) == 8


@pytest.mark.parametrize("value, message", [
    ("99999999999999999999", "input 'x': 99999999999999999999 is outside the range of i64"),
    ("9999999999", "input 'x' (i32[]): 9999999999 is outside the range of i32"),
    ("[1, -9999999999]", "input 'x' (i32[2]): -9999999999 is outside the range of i32"),
])
def test_cli_inputs_out_of_range_are_errors(tmp_path: Path, value: str, message: str) -> None:
    shape = "2" if value.startswith("[") else ""
    path = write(tmp_path, "i.dl", f"fn f(x: i32[{shape}]) -> i32[{shape}] {{\n  return x + 1\n}}\n")
    for extra in ([], ["--interp"]):
        code, out, err = run_cli("run", path, "-i", f"x={value}", *extra)
        assert (code, out) == (1, "")
        assert len(err.splitlines()) == 1 and err.startswith(f"error: {message} (")
