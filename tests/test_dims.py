"""Dims computed from symbols (compiler/ir/dims.py) and slices of symbolic dims, end to end."""

from __future__ import annotations

import re

import numpy as np
import pytest

import runtime
from compiler.diagnostics import DlError
from compiler.ir import parse_module, print_module
from compiler.ir.dims import (
    DimSyntaxError,
    add,
    bounds,
    clamp,
    evaluate,
    floordiv,
    maximum,
    minimum,
    parse_dim,
    scale,
    sub,
    wrap,
)
from compiler.ir.interpreter import interpret
from frontend_dsl import compile_source

N, M = "N", "M"


@pytest.mark.parametrize("build, text", [
    (lambda: sub(N, 1), "N-1"),
    (lambda: add(N, 1, -1), "N"),                               # like terms cancel
    (lambda: add(M, N, N), "M+2*N"),
    (lambda: floordiv(add(N, 1), 2), "(N+1)//2"),
    (lambda: floordiv(scale(N, 4), 2), "2*N"),                  # exact division
    (lambda: floordiv(floordiv(N, 2), 3), "N//6"),
    (lambda: sub(N, minimum(1, N)), "max(N-1,0)"),              # max/min outermost
    (lambda: clamp(sub(N, 1), 0, N), "max(N-1,0)"),             # N-1 <= N: the min goes
    (lambda: minimum(N, floordiv(N, 2)), "N//2"),               # N//2 <= N
    (lambda: maximum(floordiv(add(N, 1), 2), 0), "(N+1)//2"),
    (lambda: wrap(add(N, 2), N), "N+2"),                        # never negative
    (lambda: wrap(-3, N), "N-3"),                               # always negative
    (lambda: wrap(sub(N, 3), N), "wrap(N-3,N)"),                # decided at run time
    (lambda: scale(floordiv(add(N, 1), 2), -1), "-((N+1)//2)"),
])
def test_normal_forms_print_and_parse_back(build, text: str) -> None:
    d = build()
    assert str(d) == text
    assert parse_dim(text) == d and parse_dim(text.replace(",", ", ")) == d


@pytest.mark.parametrize("text", ["N-1", "(N+1)//2", "max(N-1,0)", "wrap(N-3,N)", "min(N,2)", "2*N-M//3",
                                  "max(min(N,N-wrap(N-3,N)),0)"])
def test_evaluation_is_python_integer_arithmetic(text: str) -> None:
    d = parse_dim(text)
    py = text.replace("max(", "max_(").replace("min(", "min_(").replace("wrap(", "wrap_(")
    env = {"max_": max, "min_": min, "wrap_": lambda v, n: v + n if v < 0 else v}
    for n in (0, 1, 2, 3, 7, 10 ** 12):
        for m in (0, 5):
            assert evaluate(d, {N: n, M: m}) == eval(py, env, {N: n, M: m}), (text, n, m)


def test_bounds_assume_symbols_are_not_negative() -> None:
    assert bounds(sub(N, 1)) == (-1, float("inf"))
    assert bounds(sub(N, floordiv(N, 2)))[0] == 0
    assert bounds(maximum(sub(N, 1), 0))[0] == 0


@pytest.mark.parametrize("text, message", [
    ("N*M", "a product of two symbolic dims"),
    ("N//0", "divided by a positive integer"),
    ("N//M", "divided by an integer"),
    ("clip(N)", "unknown dim function 'clip'"),
    ("N+", "expected a dim"),
    ("N?", "unexpected '?'"),
    ("(" * 40 + "N" + ")" * 40, "nests at most 32 deep"),             # bounded work, no RecursionError
    ("-" * 100 + "N", "nests at most 32 deep"),
    ("N+" * 600 + "1", "at most 1000 characters"),
    ("+".join(f"max(N,M//{i})" for i in range(2, 40)), "arguments (at most 32)"),
])
def test_text_outside_the_language_is_refused(text: str, message: str) -> None:
    with pytest.raises(DimSyntaxError, match=re.escape(message)):
        parse_dim(text)


SLICES = {
    "x[0:N-1]": lambda x, n: x[0:n - 1],
    "x[1:]": lambda x, n: x[1:],
    "x[:N//2]": lambda x, n: x[:n // 2],
    "x[::2]": lambda x, n: x[::2],
    "x[N-3:]": lambda x, n: x[n - 3:],
    "x[-2:]": lambda x, n: x[-2:],
    "x[2*N:]": lambda x, n: x[2 * n:],
    "x[1:N:3]": lambda x, n: x[1:n:3],
    "x[::-3]": lambda x, n: x[::-3],
    "x[N-1::-2]": lambda x, n: x[n - 1::-2],
    "x[:N-1][1:]": lambda x, n: x[:n - 1][1:],
}
SIZES = (0, 1, 2, 3, 5, 1000)


@pytest.fixture(scope="module")
def sliced():
    exprs = list(SLICES)
    source = "\n".join(f"fn s{i}(x: f32[N, 3]) {{ return {e} }}" for i, e in enumerate(exprs))
    return exprs, compile_source(source, "s.dl"), runtime.compile(source)


def test_slices_of_a_symbolic_dim_match_numpy_natively_and_in_the_interpreter(sliced) -> None:
    exprs, module, native = sliced
    for n in SIZES:
        x = np.arange(n * 3, dtype=np.float32).reshape(n, 3) - 7.0
        for i, e in enumerate(exprs):
            want = SLICES[e](x, n)
            for where, got in (("interpreter", interpret(module.get(f"s{i}"), [x])[0]),
                               ("native", native[f"s{i}"](x))):
                assert got.shape == want.shape and np.array_equal(got, want), (e, n, where)


def test_sliced_types_print_parse_and_compare_equal(sliced) -> None:
    _, module, _ = sliced
    text = print_module(module)
    assert 'tensor<?x3xf32, "max(N-1,0)">' in text and 'tensor<?x3xf32, "N//2">' in text
    assert print_module(parse_module(text, "s.ir")) == text
    # x[0:N-1] and x[1:] have one type, so they add without a broadcast
    native = runtime.compile("fn f(x: f32[N]) { return x[1:] - x[0:N-1] }")
    for n in SIZES:
        x = np.cumsum(np.arange(n, dtype=np.float32))
        np.testing.assert_array_equal(native.f(x), np.diff(x))


def test_the_gradient_of_a_symbolic_slice_is_zero_filled() -> None:
    source = """
fn f(x: f32[N, 2]) -> f32[] { return sum(x[1:] * x[0:N-1]) + sum(x[::-2]) }
fn df = grad(f, wrt=[x])
"""
    native, module = runtime.compile(source), compile_source(source, "g.dl")
    for n in (0, 1, 2, 5):
        x = np.random.default_rng(n).standard_normal((n, 2)).astype(np.float32)
        want = np.zeros_like(x)
        want[:-1] += x[1:]
        want[1:] += x[:-1]
        want[::-2] += 1
        np.testing.assert_allclose(native.df(x), want, rtol=1e-6)
        np.testing.assert_allclose(interpret(module.get("df"), [x])[0], want, rtol=1e-6)


def test_a_parameter_with_a_computed_dim_checks_the_argument() -> None:
    ir_text = """
module {
  func.func @f(%x: tensor<?xf32, "N">, %y: tensor<?xf32, "max(N-1,0)">) -> (tensor<?xf32, "max(N-1,0)">) {
    %0 = "dl.slice"(%x) {start = [1], step = [unit], stop = [unit]} : (tensor<?xf32, "N">) -> tensor<?xf32, "max(N-1,0)">
    %1 = "dl.add"(%0, %y) : (tensor<?xf32, "max(N-1,0)">, tensor<?xf32, "max(N-1,0)">) -> tensor<?xf32, "max(N-1,0)">
    func.return %1 : tensor<?xf32, "max(N-1,0)">
  }
}"""
    module = parse_module(ir_text, "p.ir")
    native = runtime.compile(module)
    x, y = np.arange(4, dtype=np.float32), np.ones(3, np.float32)
    np.testing.assert_array_equal(native.f(x, y), x[1:] + 1)
    np.testing.assert_array_equal(interpret(module.get("f"), [x, y])[0], x[1:] + 1)
    with pytest.raises(DlError, match=r"dim 0 is 4, not max\(N-1,0\) = 3"):
        native.f(x, np.ones(4, np.float32))
    with pytest.raises(DlError, match=r"dim 0 is 4, not max\(N-1,0\) = 3"):
        interpret(module.get("f"), [x, np.ones(4, np.float32)])


@pytest.mark.parametrize("ir_type, message", [
    ('tensor<?xf32, "N-1">', "negative for some sizes of N"),
    ('tensor<?xf32, "N*N">', "a product of two symbolic dims"),
    ('tensor<?xf32, "3">', "the '?' dim '3' is the constant 3"),
])
def test_ir_types_with_bad_dims_are_located_errors(ir_type: str, message: str) -> None:
    text = f"""
module {{
  func.func @f(%x: tensor<?xf32, "N">, %y: {ir_type}) -> (tensor<?xf32, "N">) {{
    func.return %x : tensor<?xf32, "N">
  }}
}}"""
    with pytest.raises(DlError) as info:
        parse_module(text, "bad.ir")
    assert message in str(info.value) and "bad.ir:3:" in str(info.value)


def test_dims_that_differ_are_a_located_type_error() -> None:
    with pytest.raises(DlError, match=r"t.dl:1:37: error: '\+': shapes \[max\(N-1,0\)\] and \[N\] do not broadcast"):
        compile_source("fn f(x: f32[N], y: f32[N]) { return x[1:] + y }", "t.dl")


def test_floor_division_is_an_operator_on_tensors_and_numbers() -> None:
    native = runtime.compile("fn f(x: i32[N], y: f32[N]) { return x // 3, y // -2.0, x * (7 // -2) }")
    x, y = np.array([-7, -1, 0, 5], np.int32), np.array([-3.0, -0.0, 1.0, np.inf], np.float32)
    a, b, c = native.f(x, y)
    np.testing.assert_array_equal(a, x // 3)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(b, y // np.float32(-2.0))
    np.testing.assert_array_equal(c, x * -4)


def test_a_max_over_a_sliced_dim_refuses_an_empty_one_and_the_signature_round_trips() -> None:
    import json

    from compiler.codegen.driver import FunctionInfo

    source = "fn f(x: f32[N, 3]) { return max(x[1:], axis=0), x[::2] }"
    native, module = runtime.compile(source), compile_source(source, "m.dl")
    info = native["f"].info
    assert FunctionInfo.from_json(json.loads(json.dumps(info.to_json()))) == info
    x = np.ones((1, 3), np.float32)
    for call in (lambda: native.f(x), lambda: interpret(module.get("f"), [x])):
        with pytest.raises(DlError, match=r"which is empty \(max\(N-1,0\) = 0\)"):
            call()
    got, _ = native.f(np.arange(9, dtype=np.float32).reshape(3, 3))
    np.testing.assert_array_equal(got, [6, 7, 8])


def test_shape_rules_see_computed_dims_whole() -> None:
    from compiler.diagnostics import DlTypeError
    from compiler.ir.builder import new_function
    from compiler.ir.types import DType, TensorType

    f, b = new_function("f", [("x", TensorType(DType.f32, ("N", 3)))])
    x = f.params[0]
    head = b.slice(x, start=(1,))                                      # [max(N-1,0), 3]
    with pytest.raises(DlTypeError, match="the symbolic dims must be the same on both sides"):
        b.reshape(head, shape=(parse_dim("(N+1)//2"), 3))            # the same static product
    assert b.reshape(head, shape=(3, parse_dim("max(N-1,0)"))).type.shape == (3, parse_dim("max(N-1,0)"))
    with pytest.raises(DlTypeError, match=r"symbolic dim min\(N,1\) may be 1 at run time"):
        b.squeeze(b.slice(x, stop=(1,)))


def test_stats_count_the_work_of_a_sliced_dim(tmp_path) -> None:
    from runtime.cli import main

    path = tmp_path / "s.dl"
    path.write_text("fn f(x: f32[N, 3]) -> f32[] { return sum(x[1:] * x[0:N-1]) }\n")
    assert main(["stats", str(path)]) == 0
