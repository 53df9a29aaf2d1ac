"""Large elementwise and reduction kernels split into tasks on the thread pool
(``kernels.run_split``): results equal numpy's and are bit-identical for 1, 2 and 3 threads
(tails, symbolic and static dims, broadcasts, transposed reads, in-place outputs, every
reduction layout); small kernels never wake a worker."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest

import runtime
from compiler.codegen import kernels, threads
from compiler.codegen.driver import stage_text
from compiler.ir.builder import new_function
from compiler.ir.core import Module
from compiler.ir.types import DType, TensorType

F32 = DType.f32

ELEMENTWISE = """
fn flat(x: f32[N]) -> f32[N] { return exp(x) }
fn bias(a: f32[R, C], b: f32[C]) -> f32[R, C] { return relu(a + b) }
fn trans(a: f32[R, C]) -> f32[C, R] { return transpose(a) * 2.0 }
fn mask(a: f32[R, C], b: f32[R, C]) -> bool[R, C] { return a > b }
fn wide(a: f64[R, C]) -> f64[R, C] { return tanh(a) * a }
fn fixed(a: f32[301, 517], b: f32[301, 517]) -> f32[301, 517] { return sigmoid(a) * b }
"""

REDUCTIONS = """
fn rows(x: f32[R, C]) -> f32[R] { return sum(x, axis=1) }
fn cols(x: f32[R, C]) -> f32[C] { return sum(exp(x), axis=0) }
fn middle(x: f32[A, B, C]) -> f32[A, C] { return max(x, axis=1) }
fn outer(x: f32[A, B, C]) -> f32[B] { return mean(x, axis=[0, 2]) }
fn am(x: f32[R, C]) -> i64[R] { return argmax(x, axis=1) }
fn total(x: f32[R, C]) -> f32[] { return sum(x) }
"""


@pytest.fixture(scope="module")
def ew():
    return runtime.compile(ELEMENTWISE, cache=False)


@pytest.fixture(scope="module")
def red():
    return runtime.compile(REDUCTIONS, cache=False)


def per_thread_count(lib, call) -> list:
    """``call()`` with the library on 1, 2 and 3 threads; the results of each."""
    out = []
    for t in (1, 2, 3):
        threads.set_num_threads(lib._library, t)
        out.append([np.array(r, copy=True) for r in call()])
    threads.set_num_threads(lib._library, threads.num_threads())
    return out


def assert_identical(results, what) -> None:
    for t, res in enumerate(results[1:], start=2):
        for i, (a, b) in enumerate(zip(results[0], res)):
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), (what, t, i)


# 200003: a flat loop's last chunk ends in a masked tail; (3, 70001): fewer rows than tasks
# would want; (70001, 3) and (1001, 333): many short rows.
SIZES = [(1, 200003), (3, 70001), (70001, 3), (1001, 333)]


@pytest.mark.parametrize("shape", SIZES)
def test_elementwise_identical_across_thread_counts(ew, shape):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(shape).astype(np.float32)
    a64 = a.astype(np.float64)
    results = per_thread_count(ew, lambda: (ew.flat(a.ravel()), ew.bias(a, b[0]), ew.trans(a),
                                            ew.mask(a, b), ew.wide(a64)))
    assert_identical(results, shape)
    flat, bias, trans, mask, wide = results[0]
    np.testing.assert_allclose(flat, np.exp(a.ravel()), rtol=2e-6)
    np.testing.assert_array_equal(bias, np.maximum(a + b[0], 0))
    np.testing.assert_array_equal(trans, a.T * 2)
    np.testing.assert_array_equal(mask, a > b)
    np.testing.assert_allclose(wide, np.tanh(a64) * a64, rtol=1e-14)


def test_static_shape_identical_across_thread_counts(ew):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 301, 517)).astype(np.float32)
    results = per_thread_count(ew, lambda: (ew.fixed(a, b),))
    assert_identical(results, "fixed")
    np.testing.assert_allclose(results[0][0], b / (1 + np.exp(-a.astype(np.float64))), rtol=1e-5, atol=1e-6)


def _update_module() -> Module:
    """w -= lr * g in place over ``[N, 513]``, plus another output reading ``w``."""
    f, b = new_function("step", [("w", TensorType(F32, ("N", 513))), ("g", TensorType(F32, ("N", 513))),
                                 ("lr", TensorType(F32, ()))])
    w, g, lr = f.params
    f.outputs = [b.sub(w, b.mul(lr, g)), b.sum(b.mul(w, w), axes=(1,))]
    f.attrs["inplace"] = ((0, "w"),)
    return Module([f])


def test_in_place_update_identical_across_thread_counts():
    mod = runtime.compile(_update_module(), cache=False, passes="")
    rng = np.random.default_rng(2)
    w0 = rng.standard_normal((777, 513)).astype(np.float32)
    g = rng.standard_normal((777, 513)).astype(np.float32)
    lr = np.float32(0.125)
    results = []
    for t in (1, 2, 3):
        threads.set_num_threads(mod._library, t)
        w = w0.copy()
        new, norms = mod.step(w, g, lr)
        assert new is w
        results.append([w, norms])
    assert_identical(results, "step")
    np.testing.assert_array_equal(results[0][0], w0 - lr * g)
    np.testing.assert_allclose(results[0][1], (w0.astype(np.float64) ** 2).sum(1), rtol=1e-5)
    del mod
    gc.collect()


@pytest.mark.parametrize("shape", [(3, 70001), (70001, 3), (1001, 333), (5, 40000)])
def test_reductions_identical_across_thread_counts(red, shape):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32)
    x3 = x.reshape(shape[0], -1, 1 if shape[1] % 3 else 3)
    results = per_thread_count(red, lambda: (red.rows(x), red.cols(x), red.middle(x3), red.outer(x3),
                                             red.am(x), red.total(x)))
    assert_identical(results, shape)
    rows, cols, middle, outer, am, total = results[0]
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(rows, x64.sum(1), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(cols, np.exp(x64).sum(0), rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(middle, x3.max(1))
    np.testing.assert_allclose(outer, x3.astype(np.float64).mean((0, 2)), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(am, x.argmax(1))
    np.testing.assert_allclose(total, x64.sum(), rtol=1e-4, atol=1e-2)


FULL = """
fn s(x: f32[N]) -> f32[] { return sum(x) }
fn m(x: f32[R, C]) -> f32[] { return mean(exp(x)) }
fn hi(x: f32[N]) -> f32[] { return max(x) }
fn lo(x: i64[N]) -> i64[] { return min(x) }
fn fixed(x: f32[1000, 999]) -> f32[] { return sum(x) }
"""


def test_reductions_to_one_element_identical_across_thread_counts():
    # above two tasks' work: FULL_CHUNKS partial results in fixed chunks, combined in order
    lib = runtime.compile(FULL, cache=False)
    rng = np.random.default_rng(7)
    for n in (100, 65536 + 13, 1000003):
        x = rng.standard_normal(n).astype(np.float32)
        x2 = x[:n - n % 7].reshape(-1, 7)
        xi = rng.integers(-2 ** 40, 2 ** 40, n)
        results = per_thread_count(lib, lambda lib=lib, x=x, x2=x2, xi=xi: (lib.s(x), lib.m(x2), lib.hi(x), lib.lo(xi)))
        assert_identical(results, n)
        s, m, hi, lo = results[0]
        np.testing.assert_allclose(s, x.astype(np.float64).sum(), rtol=1e-5, atol=1e-2)
        np.testing.assert_allclose(m, np.exp(x2.astype(np.float64)).mean(), rtol=1e-5)
        assert hi == x.max() and lo == xi.min()
        x[n // 2] = np.nan                      # max propagates NaN from any chunk
        assert np.isnan(lib.hi(x))
    big = rng.standard_normal((1000, 999)).astype(np.float32)
    results = per_thread_count(lib, lambda lib=lib: (lib.fixed(big),))
    assert_identical(results, "fixed")
    np.testing.assert_allclose(results[0][0], big.astype(np.float64).sum(), rtol=1e-5, atol=1e-2)
    del lib
    gc.collect()


@pytest.mark.parametrize("classes", [10, 1000])
def test_softmax_rows_identical_across_thread_counts(classes):
    # the online log-sum-exp kernel: 10 classes run one row per lane (split in whole vectors
    # of rows), 1000 run along each row
    lib = runtime.compile(f"fn sm(x: f32[N, {classes}]) -> f32[N, {classes}] {{ return softmax(x, axis=1) }}",
                          cache=False)
    rows = 20011 if classes == 10 else 301
    x = np.random.default_rng(4).standard_normal((rows, classes)).astype(np.float32) * 8
    results = per_thread_count(lib, lambda lib=lib: (lib.sm(x),))
    assert_identical(results, classes)
    e = np.exp(x.astype(np.float64) - x.max(1, keepdims=True))
    np.testing.assert_allclose(results[0][0], e / e.sum(1, keepdims=True), rtol=1e-4, atol=1e-7)
    del lib
    gc.collect()


def _task_threads() -> set[str]:
    return {p.name for p in Path("/proc/self/task").iterdir()}


def test_small_kernels_stay_on_the_calling_thread():
    # the MNIST step's elementwise kernels at batch 1..128 ([N, 10], [N, 512] sized bias and
    # masks) are below two tasks' work; a 2^20-element exp is not
    mod = runtime.compile(ELEMENTWISE, cache=False)
    threads.set_num_threads(mod._library, 4)
    before = _task_threads()
    rng = np.random.default_rng(5)
    small = rng.standard_normal((16, 512)).astype(np.float32)
    for _ in range(3):
        np.testing.assert_array_equal(mod.bias(small, small[0]), np.maximum(small + small[0], 0))
        mod.flat(small.ravel())
    assert _task_threads() == before
    big = rng.standard_normal(1 << 20).astype(np.float32)
    np.testing.assert_allclose(mod.flat(big), np.exp(big), rtol=2e-6)
    assert len(_task_threads() - before) >= 1
    del mod
    gc.collect()


def test_workers_never_outnumber_the_thread_count():
    # a 2^20-element exp is TASKS_PER_THREAD tasks per thread: on one thread the caller runs
    # it alone, on two it is helped by exactly one worker
    mod = runtime.compile(ELEMENTWISE, cache=False)
    x = np.random.default_rng(6).standard_normal(1 << 20).astype(np.float32)
    before = _task_threads()
    threads.set_num_threads(mod._library, 1)
    want = mod.flat(x)
    assert _task_threads() == before
    threads.set_num_threads(mod._library, 2)
    assert np.array_equal(mod.flat(x), want)
    assert len(_task_threads() - before) == 1
    del mod
    gc.collect()


def test_statically_small_kernels_have_no_task_function():
    f, b = new_function("small", [("x", TensorType(F32, (64, 100))), ("y", TensorType(F32, (100,)))])
    f.outputs = [b.relu(b.add(f.params[0], f.params[1])), b.sum(f.params[0], axes=(1,))]
    g, b2 = new_function("big", [("x", TensorType(F32, (512, 1000)))])
    g.outputs = [b2.exp(g.params[0])]
    text = stage_text(Module([f, g]), "llvm")
    assert "dlc_small.k0.part" not in text and "dlc_small.k1.part" not in text
    assert "dlc_big.k0.part" in text


def test_element_cost_weighs_expensive_ops():
    from compiler.codegen.loops import Apply, Buffer, Load
    x = Load(Buffer("%x", F32, (4,), "param"), (0,))
    cheap = Apply("add", (x, x), F32, F32)
    assert kernels.element_cost(x) == 2                      # a load and the store
    assert kernels.element_cost(cheap) == 3                  # x counted once
    assert kernels.element_cost(Apply("exp", (cheap,), F32, F32)) == 3 + kernels.EXPENSIVE_COST
