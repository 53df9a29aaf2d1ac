"""The reference interpreter: argument checking, symbol binding, result checks."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.diagnostics import DlRuntimeError, Location
from compiler.ir.builder import new_function
from compiler.ir.core import Module
from compiler.ir.interpreter import interpret, interpret_module
from compiler.ir.types import DType, TensorType
from compiler.ops import OPS

F32, I64 = DType.f32, DType.i64


def dense_fn():
    """``predict(x: f32[N, 4], w: f32[4, 3], y: i64[N]) -> (relu(x @ w), loss)``."""
    func, b = new_function("predict", [("x", TensorType(F32, ("N", 4))),
                                       ("w", TensorType(F32, (4, 3))),
                                       ("y", TensorType(I64, ("N",)))])
    x, w, y = func.params
    h = b.relu(b.matmul(x, w))
    func.outputs = [h, b.sparse_categorical_crossentropy(h, y, from_logits=True)]
    return func


def args(n: int = 5):
    rng = np.random.default_rng(1)
    return [rng.standard_normal((n, 4)).astype(np.float32),
            rng.standard_normal((4, 3)).astype(np.float32),
            rng.integers(0, 3, n).astype(np.int64)]


def test_runs_with_any_batch_size_positionally_and_by_name():
    func = dense_fn()
    for n in (1, 5, 8):
        x, w, y = args(n)
        h, loss = interpret(func, [x, w, y])
        want = np.maximum(x @ w, 0)
        assert h.dtype == np.float32 and h.shape == (n, 3)
        np.testing.assert_allclose(h, want, rtol=1e-6)
        lsm = want - np.log(np.exp(want).sum(-1, keepdims=True))
        np.testing.assert_allclose(loss, -lsm[np.arange(n), y].mean(), rtol=1e-5)
        h2, loss2 = interpret(func, {"y": y, "x": x, "w": w})
        np.testing.assert_array_equal(h2, h)
        assert loss2 == loss


def test_argument_count_and_names():
    func = dense_fn()
    x, w, y = args()
    with pytest.raises(DlRuntimeError, match=r"@predict takes 3 argument\(s\) \(x, w, y\), got 2"):
        interpret(func, [x, w])
    with pytest.raises(DlRuntimeError, match="missing argument 'y'"):
        interpret(func, {"x": x, "w": w})
    with pytest.raises(DlRuntimeError, match="unknown argument 'z'"):
        interpret(func, {"x": x, "w": w, "y": y, "z": y})


def test_dtype_rank_and_static_dim_errors_name_the_argument():
    func = dense_fn()
    x, w, y = args()
    with pytest.raises(DlRuntimeError, match="argument 'x' has dtype float64, expected float32"):
        interpret(func, [x.astype(np.float64), w, y])
    with pytest.raises(DlRuntimeError, match=r"argument 'w' has rank 1 \(shape \[12\]\), expected rank 2"):
        interpret(func, [x, w.reshape(12), y])
    with pytest.raises(DlRuntimeError, match=r"argument 'w' has shape \[4, 2\].*dim 1 is 2, not 3"):
        interpret(func, [x, w[:, :2].copy(), y])
    with pytest.raises(DlRuntimeError, match="argument 'y' must be a numpy array of i64\\[N\\], got list"):
        interpret(func, [x, w, [0, 1, 2, 0, 1]])


def test_symbols_bind_consistently():
    func = dense_fn()
    x, w, y = args(5)
    with pytest.raises(DlRuntimeError) as info:
        interpret(func, [x, w, y[:4].copy()])
    assert info.value.message == ("@predict: argument 'y' has shape [4], expected i64[N]: "
                                  "dim 0 (N) is 4, but N = 5 from an earlier argument")


def test_python_and_numpy_scalars_for_rank_zero_params():
    func, b = new_function("scale", [("x", TensorType(F32, (2,))), ("s", TensorType(F32, ()))])
    func.outputs = [b.mul(*func.params)]
    x = np.array([1.0, 2.0], np.float32)
    for s in (3, 3.0, np.float32(3.0)):
        (out,) = interpret(func, [x, s])
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, [3.0, 6.0])
    with pytest.raises(DlRuntimeError, match="argument 's' must be a numpy array"):
        interpret(func, [x, True])


def test_dims_attributes_are_bound_to_the_arguments():
    func, b = new_function("f", [("x", TensorType(F32, ("N", "C")))])
    x = func.params[0]
    cols = b.iota(dtype=I64, shape=("N", "C"), axis=1)
    ones = b.constant(1.0, F32, ("C", "N"))
    func.outputs = [cols, b.matmul(x, ones), b.dim_size(x, axis=1)]
    cols_v, prod, c = interpret(func, [np.ones((2, 3), np.float32)])
    np.testing.assert_array_equal(cols_v, [[0, 1, 2], [0, 1, 2]])
    np.testing.assert_array_equal(prod, np.full((2, 2), 3.0))
    assert c.dtype == np.int64 and c == 3


def test_unbound_symbol_in_an_attribute_is_reported_at_the_op():
    loc = Location("m.dl", 4, 7)
    func, b = new_function("f", [("x", TensorType(F32, (2,)))])
    with b.at(loc):
        func.outputs = [b.constant(0.0, F32, ("K",))]
    with pytest.raises(DlRuntimeError) as info:
        interpret(func, [np.zeros(2, np.float32)])
    assert "symbolic dim 'K' in attribute 'shape' is not bound" in info.value.message
    assert info.value.loc == loc


def test_a_reference_that_breaks_its_shape_rule_is_caught(monkeypatch):
    func, b = new_function("f", [("x", TensorType(F32, (3,)))])
    func.outputs = [b.neg(func.params[0])]
    monkeypatch.setattr(OPS["neg"], "reference", lambda x: x[:2])
    with pytest.raises(DlRuntimeError, match=r"dl.neg produced shape \[2\], but its type f32\[3\]"):
        interpret(func, [np.zeros(3, np.float32)])


def test_ieee_results_without_warnings():
    func, b = new_function("f", [("x", TensorType(F32, (3,)))])
    func.outputs = [b.log(func.params[0])]
    with np.errstate(all="raise"):
        (out,) = interpret(func, [np.array([0.0, -1.0, 1.0], np.float32)])
    assert out[0] == -np.inf and np.isnan(out[1]) and out[2] == 0.0


def test_interpret_module():
    module = Module()
    module.add(dense_fn())
    h, _ = interpret_module(module, "predict", args(2))
    assert h.shape == (2, 3)
    with pytest.raises(DlRuntimeError, match="no function named 'train'.*functions: predict"):
        interpret_module(module, "train", args(2))
