"""Elementwise and reduction kernels drop their loop axes of static extent 1
(kernels._without_unit_axes, _reduce_without_unit_axes).

``x[N, 1] + bias[1]`` reads ``bias`` along the unit axis only, which kept the axes
from collapsing: the kernel ran one masked lane per row.  Without the unit axes it
is the flat loop of ``x[N] + b[]``: every element must come out with the bits the
flat kernel gives it, and as the interpreter says, non-finite values included.
"""

from __future__ import annotations

import numpy as np
import pytest

import runtime
from compiler.codegen.driver import lower_module
from compiler.codegen.loops import Elementwise
from compiler.ir.interpreter import interpret
from compiler.passes import run_pipeline
from frontend_dsl.api import compile_source

SOURCE = """
fn col(x: f32[N, 1], b: f32[1]) -> f32[N, 1] { return sigmoid(x + b) * 2.0 - b }
fn flat(x: f32[N], b: f32[]) -> f32[N] { return sigmoid(x + b) * 2.0 - b }
fn mid(x: f32[N, 1, 3], b: f32[1, 3]) -> f32[N, 1, 3] { return exp(x - b) }
fn flat3(x: f32[N, 3], b: f32[3]) -> f32[N, 3] { return exp(x - b) }
fn ones(x: f32[1, 1], y: f32[1]) -> f32[1, 1] { return x * y + 1.0 }
fn row(x: f32[1, N], b: f32[1, 1]) -> (f32[1, N], f32[1, N]) { return x / b, x * b }
fn colsum(x: f32[N, 1], b: f32[1]) -> (f32[], f32[1], f32[], f32[1, 1]) {
    let d = x - b
    return mean(d), sum(d, axes=[0]), max(d), sum(d * d, axes=[0, 1], keepdims=true)
}
fn flatsum(x: f32[N], b: f32[]) -> (f32[], f32[], f32[], f32[]) {
    let d = x - b
    return mean(d), sum(d, axes=[0]), max(d), sum(d * d, axes=[0])
}
fn rowsum(x: f32[1, N]) -> (f32[1], f32[]) { return sum(x, axes=[1]), min(x) }
fn colmean(x: f32[N, 1], b: f32[1]) -> (f32[], f32[N], f32[]) {
    return mean(x - b), sum(x - b, axes=[1]), max(x - b)
}
fn flatmean(x: f32[N], b: f32[]) -> (f32[], f32[]) { return mean(x - b), max(x - b) }
fn colsum0(x: f32[N, 1], b: f32[1]) -> (f32[], f32[]) { return mean(x - b), sum(x - b) }
"""


@pytest.fixture(scope="module")
def compiled():
    return runtime.compile(SOURCE, cache=False)


def _column(n: int) -> np.ndarray:
    rng = np.random.default_rng(n)
    x = rng.normal(0, 4, n).astype(np.float32)
    special = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-45, 88.5, -104.0], np.float32)
    x[:min(n, len(special))] = special[:n]
    return x


@pytest.mark.parametrize("n", [0, 1, 5, 16, 17, 129, 5000])
def test_a_column_plus_a_bias_computes_the_flat_kernels_bits(compiled, n):
    x = _column(n)
    for bias in (0.75, np.nan, -np.inf):
        got = compiled.col(x.reshape(n, 1), np.array([bias], np.float32))
        want = compiled.flat(x, np.array(bias, np.float32))
        assert got.shape == (n, 1)
        np.testing.assert_array_equal(got.reshape(n).view(np.uint32), want.view(np.uint32))
    x3 = np.stack([x, -x, x * 0.5], axis=1)
    b3 = np.array([0.5, np.inf, -2.0], np.float32)
    got3 = compiled.mid(x3.reshape(n, 1, 3), b3.reshape(1, 3))
    want3 = compiled.flat3(x3, b3)
    np.testing.assert_array_equal(got3.reshape(n, 3).view(np.uint32), want3.view(np.uint32))


def test_unit_kernels_match_the_interpreter(compiled):
    module = run_pipeline(compile_source(SOURCE, "<unit>"), "default")
    cases = {
        "ones": [np.array([[3.5]], np.float32), np.array([-2.0], np.float32)],
        "row": [_column(37).reshape(1, 37), np.array([[-0.25]], np.float32)],
        "col": [_column(9).reshape(9, 1), np.array([1.5], np.float32)],
    }
    for name, args in cases.items():
        want = interpret(module.get(name), args)
        got = compiled[name](*args)
        got = got if isinstance(got, tuple) else (got,)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=2e-6, atol=0, equal_nan=True)


def test_the_loop_ir_keeps_the_shape_the_kernel_writes():
    # the axes go at emission only: the loop IR (and its printing) still says [N, 1]
    module = run_pipeline(compile_source(SOURCE, "<unit>"), "default")
    (program,) = [p for p in lower_module(module) if p.name == "col"]
    (kernel,) = [k for k in program.kernels if isinstance(k, Elementwise)]
    assert kernel.shape == ("N", 1)


def test_a_column_kernel_is_a_vector_loop_not_one_lane_per_row():
    from compiler.codegen.driver import stage_text
    from compiler.ir.core import Module

    module = run_pipeline(compile_source(SOURCE, "<unit>"), "default")
    text = stage_text(Module([module.get("col")]), "llvm-opt")
    assert "<16 x float>" in text or "<8 x float>" in text       # vectorized ...
    assert "i1 true, i1 false" not in text                       # ... with no one-lane mask


@pytest.mark.parametrize("n", [1, 5, 16, 17, 129, 5000, 40000])
def test_a_reduction_over_a_column_is_the_flat_reduction(compiled, n):
    # below two tasks' work (~87K elements here) the flat kernel runs the same serial loop;
    # above, it cuts the sum into chunks and the column's stays one serial loop
    x = np.random.default_rng(n).normal(0, 4, n).astype(np.float32)
    for b in (0.75, -3.0):
        got = compiled.colsum(x.reshape(n, 1), np.array([b], np.float32))
        want = compiled.flatsum(x, np.array(b, np.float32))
        assert [g.shape for g in got] == [(), (1,), (), (1, 1)]
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g.reshape(()).view(np.uint32), w.view(np.uint32))
        d = x.astype(np.float64) - np.float32(b)
        np.testing.assert_allclose(got[0], d.mean(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got[3].reshape(()), (d * d).sum(), rtol=1e-5)
    nan = x.copy()
    nan[n // 2] = np.nan
    assert all(np.isnan(g).all() for g in compiled.colsum(nan.reshape(n, 1), np.array([0.0], np.float32)))


def test_a_reduction_over_a_row_matches_the_interpreter(compiled):
    module = run_pipeline(compile_source(SOURCE, "<unit>"), "default")
    for n in (1, 31):
        x = np.random.default_rng(n).normal(0, 1, (1, n)).astype(np.float32)
        for g, w in zip(compiled.rowsum(x), interpret(module.get("rowsum"), [x])):
            np.testing.assert_allclose(g, w, rtol=2e-6)


def test_a_reduction_over_a_column_adds_no_task_function():
    # it stays the serial nest it was (only vectorized): no chunked part to compile
    from compiler.codegen.driver import stage_text
    from compiler.ir.core import Module

    module = run_pipeline(compile_source(SOURCE, "<unit>"), "default")
    text = stage_text(Module([module.get("colsum")]), "llvm")
    assert ".part" not in text
    assert "i1 true, i1 false" not in stage_text(Module([module.get("colsum")]), "llvm-opt")


def test_column_edges_zero_rows_and_a_sum_over_the_unit_axis_only(compiled):
    from compiler.diagnostics import DlRuntimeError

    b1, b0 = np.array([0.5], np.float32), np.array(0.5, np.float32)
    # zero rows: the max has no element to take (refused before native code runs, as for
    # the flat kernel); the mean is 0/0 and the sum 0
    empty = np.zeros((0, 1), np.float32)
    with pytest.raises(DlRuntimeError, match=r"f32\[N, 1\], which is empty"):
        compiled.colmean(empty, b1)
    with pytest.raises(DlRuntimeError, match=r"f32\[N\], which is empty"):
        compiled.flatmean(empty.reshape(0), b0)
    mean0, sum0 = compiled.colsum0(empty, b1)
    assert np.isnan(mean0) and sum0 == 0 and not np.signbit(sum0)
    got = compiled.col(empty, b1)
    assert got.shape == (0, 1)
    # a sum over the unit axis alone keeps it (nothing longer to reduce): x - b per row
    x = _column(40)
    mean, rows, top = compiled.colmean(x.reshape(40, 1), b1)
    np.testing.assert_array_equal(rows.view(np.uint32), (x - np.float32(0.5)).view(np.uint32))
    want_mean, want_top = compiled.flatmean(x, b0)
    assert np.isnan(mean) and np.isnan(want_mean) and np.isnan(top) and np.isnan(want_top)
    finite = np.nan_to_num(x, nan=1.0, posinf=2.0, neginf=-2.0)
    mean, _, top = compiled.colmean(finite.reshape(40, 1), b1)
    want_mean, want_top = compiled.flatmean(finite, b0)
    assert mean.view(np.uint32) == want_mean.view(np.uint32) and top == want_top
