"""The fast path of a checked call (CompiledFunction.__call__): exact, contiguous arrays whose
tuple of shapes passed the full check before skip the shape checks; it gives the generic
path's results, and every bad argument still raises the generic path's error."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

import runtime
from compiler.diagnostics import DlRuntimeError
from compiler.ir.parser import parse_module

SOURCE = """
fn mm(a: f32[M, K], b: f32[K, N]) -> f32[M, N] { return a @ b }
fn dense(x: f32[N, 3], w: f32[3, 2], b: f32[2], s: f32[]) -> (f32[N, 2], f32[]) {
    let y = relu(x @ w + b) * s
    return y, sum(y)
}
fn count(n: i64[M]) -> i64[M] { return n + 1 }
"""


@pytest.fixture(scope="module")
def mod():
    return runtime.compile(SOURCE, cache=False)


@pytest.fixture(scope="module")
def step():
    """w -= lr * grad, in place (the training step's kind of parameter)."""
    from compiler.ir.builder import new_function
    from compiler.ir.core import Module
    from compiler.ir.types import DType, TensorType

    g, b = new_function("step", [("w", TensorType(DType.f32, ("N", 4))),
                                 ("grad", TensorType(DType.f32, ("N", 4))), ("lr", TensorType(DType.f32, ()))])
    w, grad, lr = g.params
    g.outputs = [b.sub(w, b.mul(lr, grad)), b.sum(grad)]
    g.attrs["inplace"] = ((0, "w"),)
    return runtime.compile(Module([g]), cache=False, passes="").step


def f32(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def outcome(call: Any) -> tuple[str, Any]:
    try:
        return "ok", call()
    except DlRuntimeError as e:
        return type(e).__name__, str(e)


def same(fn: Any, *args: Any) -> tuple[str, Any]:
    """The outcome of ``fn(*args)`` -- after a call with good arrays of the same shapes, so the
    fast path knows the shapes -- equals the generic path's; returns it."""
    fast = outcome(lambda: fn(*args))
    slow = outcome(lambda: fn._call_checked(args, {}))
    assert fast[0] == slow[0], (fast, slow)
    if fast[0] == "ok":
        for f, s in zip(*(r if isinstance(r, tuple) else (r,) for r in (fast[1], slow[1]))):
            np.testing.assert_array_equal(f, s)
    else:
        assert fast[1] == slow[1]
    return fast


def test_fast_and_generic_paths_agree_and_the_fast_path_is_taken(mod):
    a, b = f32(5, 7), f32(7, 3, seed=1)
    mod.mm._shape_plans.clear()
    kind, first = same(mod.mm, a, b)            # the first call of these shapes: the full check
    assert kind == "ok" and ((5, 7), (7, 3)) in mod.mm._shape_plans
    checked = mod.mm._call_checked
    mod.mm._call_checked = None                 # then the fast path, which never calls the generic one
    try:
        out = mod.mm(a, b)
    finally:
        del mod.mm._call_checked
    assert mod.mm._call_checked == checked
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out, first)
    assert out.ctypes.data % 64 == 0 and out.flags.c_contiguous and out.flags.writeable
    assert out is not mod.mm(a, b)              # fresh outputs every call
    x = f32(4, 3)
    y, total = mod.dense(x, f32(3, 2), f32(2), np.array(2.0, np.float32))   # a 0-d array for f32[]
    y2, total2 = mod.dense(x, f32(3, 2), f32(2), 2.0)                        # a Python float: generic
    np.testing.assert_array_equal(y, y2)
    assert total == total2 and total.shape == ()


@pytest.mark.parametrize("shape", [(0, 7, 3), (1, 1, 1), (3, 0, 2), (2, 5, 0)])
def test_empty_and_unit_dims(mod, shape):
    m, k, n = shape
    a, b = f32(m, k), f32(k, n, seed=1)
    for _ in range(2):
        kind, out = same(mod.mm, a, b)
        assert kind == "ok" and out.shape == (m, n)
        np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)


def _fortran(a: np.ndarray) -> np.ndarray:
    return np.asfortranarray(a) if a.ndim > 1 else a[::1]


def _misaligned(a: np.ndarray) -> np.ndarray:
    raw = np.zeros(a.nbytes + 1, np.uint8)[1:]
    out = raw.view(a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned
    return out


def _readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


class Sub(np.ndarray):
    pass


@pytest.mark.parametrize("bad, kind", [
    (lambda a, b: (a.astype(np.float64), b), "ArgumentTypeError"),          # lossy dtype
    (lambda a, b: (a.astype(np.float16), b), "ok"),                         # safe cast: a copy
    (lambda a, b: (a.astype(">f4"), b), "ok"),                              # big-endian: a safe cast
    (lambda a, b: (a[None], b), "ArgumentValueError"),                      # rank
    (lambda a, b: (a, b[:-1]), "ArgumentValueError"),                       # K disagrees
    (lambda a, b: (a.T.copy(), b), "ArgumentValueError"),                   # K disagrees the other way
    (lambda a, b: (np.asfortranarray(a), b), "ok"),                         # strided: copied
    (lambda a, b: (a, b[:, ::2]), "ok"),                                    # strided view: copied
    (lambda a, b: (_misaligned(a), b), "ok"),                               # misaligned: copied
    (lambda a, b: (_readonly(a), b), "ok"),                                 # read-only input: fine
    (lambda a, b: (a.view(Sub), b), "ok"),                                  # a subclass: generic path
    (lambda a, b: (a.tolist(), b), "ArgumentTypeError"),                    # a list
    (lambda a, b: (a, 1.0), "ArgumentTypeError"),                           # a number for a matrix
    (lambda a, b: (np.float32(1.0), b), "ArgumentValueError"),              # a numpy scalar (rank 0)
])
def test_bad_or_unusual_arguments_behave_as_on_the_generic_path(mod, bad, kind):
    a, b = f32(6, 4), f32(4, 6, seed=1)
    mod.mm(a, b)                                # the shapes are known: the fast path is armed
    assert ((6, 4), (4, 6)) in mod.mm._shape_plans
    x, y = bad(a, b)
    got = same(mod.mm, x, y)
    assert got[0] == kind, got
    if kind == "ok":
        want = np.asarray(x, np.float32) @ np.asarray(y, np.float32)
        np.testing.assert_allclose(got[1], want, rtol=1e-5, atol=1e-5)


def test_static_dims_and_rank_0_parameters(mod):
    x, w, b, s = f32(4, 3), f32(3, 2), f32(2), np.array(0.5, np.float32)
    mod.dense(x, w, b, s)
    assert same(mod.dense, x, f32(3, 3), b, s)[1].endswith("dim 1 is 3, not 2")
    assert same(mod.dense, x, w, f32(3), s)[0] == "ArgumentValueError"
    assert same(mod.dense, x, w, b, f32(1))[0] == "ArgumentValueError"            # rank 1 for f32[]
    assert same(mod.dense, x, w, b, np.array(0.5))[0] == "ArgumentTypeError"      # f64 0-d: lossy
    assert same(mod.dense, x, w, b, np.float32(0.5))[0] == "ok"                   # numpy scalar
    assert same(mod.dense, x, w, b, 0.5)[0] == "ok"                               # Python float
    assert same(mod.dense, x, w, b, 10**400)[0] == "ArgumentValueError"           # not an f32 value
    assert same(mod.count, np.arange(3, dtype=np.int32))[0] == "ok"               # i32 -> i64 safe
    assert same(mod.count, np.arange(3, dtype=np.uint64))[0] == "ArgumentTypeError"


def test_failed_shapes_are_never_remembered(mod):
    a = f32(3, 4)
    for _ in range(3):
        with pytest.raises(runtime.compiled.ArgumentValueError, match=r"dim 0 \(K\) is 5, but K = 4"):
            mod.mm(a, f32(5, 2))
    assert ((3, 4), (5, 2)) not in mod.mm._shape_plans


def test_sizes_past_the_limit_are_refused_every_time(mod):
    a, b = np.zeros((1 << 31, 0), np.float32), np.zeros((0, 1 << 31), np.float32)   # no bytes, exact
    for _ in range(2):
        assert same(mod.mm, a, b)[0] == "SizeLimitError"
    assert ((1 << 31, 0), (0, 1 << 31)) not in mod.mm._shape_plans


def test_in_place_parameters_on_the_fast_path(step):
    w, g = np.ones((2, 4), np.float32), np.full((2, 4), 2.0, np.float32)
    lr = np.array(0.25, np.float32)
    new, total = step(w, g, lr)
    assert new is w and total == 16.0
    new, total = step(w, g, lr)                   # the fast path: the same array comes back
    assert new is w and total == 16.0
    np.testing.assert_array_equal(w, np.zeros((2, 4)))
    assert ((2, 4), (2, 4), ()) in step._shape_plans
    buf = np.ones((4, 4), np.float32)
    with pytest.raises(runtime.compiled.ArgumentValueError, match="'w' is updated in place and shares memory"):
        step(buf[:2], buf[1:3], lr)               # overlapping rows, shapes known to the fast path
    np.testing.assert_array_equal(buf, 1.0)       # native code never ran
    with pytest.raises(runtime.compiled.ArgumentValueError, match="updated in place and must be C-contiguous"):
        step(np.ones((4, 2), np.float32).T, g, lr)
    with pytest.raises(runtime.compiled.ArgumentValueError, match="is read-only"):
        step(_readonly(w), g, lr)
    with pytest.raises(runtime.compiled.ArgumentValueError, match="must be C-contiguous"):
        step(_misaligned(w), g, lr)
    with pytest.raises(runtime.compiled.ArgumentTypeError, match="must have dtype exactly float32"):
        step(w.astype(np.float16), g, lr)
    assert same(step, w, _readonly(g), lr)[0] == "ok"   # read-only is fine where not in place


def test_a_computed_dim_is_checked_on_every_path():
    module = parse_module("""
module {
  func.func @f(%x: tensor<?xf32, "N">, %y: tensor<?xf32, "max(N-1,0)">) -> (tensor<?xf32, "max(N-1,0)">) {
    %0 = "dl.slice"(%x) {start = [1], step = [unit], stop = [unit]} : (tensor<?xf32, "N">) -> tensor<?xf32, "max(N-1,0)">
    %1 = "dl.add"(%0, %y) : (tensor<?xf32, "max(N-1,0)">, tensor<?xf32, "max(N-1,0)">) -> tensor<?xf32, "max(N-1,0)">
    func.return %1 : tensor<?xf32, "max(N-1,0)">
  }
}""", "p.ir")
    fn = runtime.compile(module, cache=False).f
    x = np.arange(4, dtype=np.float32)
    for _ in range(2):
        np.testing.assert_array_equal(same(fn, x, np.ones(3, np.float32))[1], x[1:] + 1)
        kind, message = same(fn, x, np.ones(4, np.float32))
        assert kind == "ArgumentValueError" and "dim 0 is 4, not max(N-1,0) = 3" in message


def test_concurrent_calls_of_many_shapes(mod):
    errors: list[str] = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(300):
            m, k, n = (int(v) for v in rng.integers(0, 9, 3))
            a = rng.standard_normal((m, k)).astype(np.float32)
            b = rng.standard_normal((k, n)).astype(np.float32)
            if not np.allclose(mod.mm(a, b), a @ b, rtol=1e-4, atol=1e-4):
                errors.append(f"{m}x{k}x{n}")

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
