"""Tiny model modules built by hand (no frontend), shared by the training tests.

They follow the frontend's model contract exactly (``attrs["model"]`` and the
``predict``/``loss``/``evaluate`` functions, parameters first), so the
training code is tested on its own.  The tests in this file check that the
helpers themselves are what the other tests assume.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compiler.ir.builder import Builder, new_function
from compiler.ir.core import Function, Module, Value
from compiler.ir.interpreter import interpret
from compiler.ir.types import DType, TensorType


def f32(*shape: Any) -> TensorType:
    return TensorType(DType.f32, tuple(shape))


def _model_attrs(name: str, params: list[tuple[str, dict]], inputs: list[str], targets: list[str],
                 outputs: list[str], loss: str, optimizer: dict, metrics: list[str]) -> dict:
    return {"name": name, "inputs": inputs, "targets": targets,
            "params": [{"name": n, "init": init} for n, init in params],
            "outputs": outputs, "loss": {"name": loss}, "optimizer": dict(optimizer), "metrics": metrics}


def linear_module(optimizer: dict, *, name: str = "lin", kernel: str = "dense_1.kernel",
                  bias: str = "dense_1.bias", n_in: int = 3, n_out: int = 2) -> Module:
    """pred = x @ W + b, loss = mse(pred, y), metrics [mae]."""
    m = Module()
    params = [(kernel, f32(n_in, n_out)), (bias, f32(n_out))]
    xs, ys = [("x", f32("N", n_in))], [("y", f32("N", n_out))]

    def forward(b: Builder, f: Function) -> Value:
        return b.add(b.matmul(f.param("x"), f.param(kernel)), f.param(bias))

    f, b = new_function("predict", params + xs)
    f.outputs, f.output_names = [forward(b, f)], ["pred"]
    m.add(f)
    f, b = new_function("loss", params + xs + ys)
    f.outputs, f.output_names = [b.mse(forward(b, f), f.param("y"))], ["loss"]
    m.add(f)
    f, b = new_function("evaluate", params + xs + ys)
    pred = forward(b, f)
    f.outputs, f.output_names = [b.mse(pred, f.param("y")), b.mae(pred, f.param("y"))], ["loss", "mae"]
    m.add(f)
    m.attrs["model"] = _model_attrs(name, [(kernel, {"name": "glorot_uniform"}), (bias, {"name": "zeros"})],
                                    ["x"], ["y"], ["pred"], "mse", optimizer, ["mae"])
    return m


def classifier_module(optimizer: dict, *, name: str = "clf", n_in: int = 4, hidden: int = 8,
                      classes: int = 3) -> Module:
    """A 2-layer softmax classifier: relu hidden layer, sparse CE on i32 labels, accuracy."""
    m = Module()
    params = [("dense_1.kernel", f32(n_in, hidden)), ("dense_1.bias", f32(hidden)),
              ("dense_2.kernel", f32(hidden, classes)), ("dense_2.bias", f32(classes))]
    xs, ys = [("x", f32("N", n_in))], [("y", TensorType(DType.i32, ("N",)))]

    def forward(b: Builder, f: Function) -> Value:
        h = b.relu(b.add(b.matmul(f.param("x"), f.param("dense_1.kernel")), f.param("dense_1.bias")))
        return b.softmax(b.add(b.matmul(h, f.param("dense_2.kernel")), f.param("dense_2.bias")))

    def accuracy(b: Builder, probs: Value, labels: Value) -> Value:
        hit = b.eq(b.argmax(probs, axis=-1), b.cast(labels, dtype=DType.i64))
        return b.mean(b.cast(hit, dtype=DType.f32))

    f, b = new_function("predict", params + xs)
    f.outputs, f.output_names = [forward(b, f)], ["probs"]
    m.add(f)
    f, b = new_function("loss", params + xs + ys)
    f.outputs = [b.sparse_categorical_crossentropy(forward(b, f), f.param("y"))]
    f.output_names = ["loss"]
    m.add(f)
    f, b = new_function("evaluate", params + xs + ys)
    probs = forward(b, f)
    f.outputs = [b.sparse_categorical_crossentropy(probs, f.param("y")), accuracy(b, probs, f.param("y"))]
    f.output_names = ["loss", "accuracy"]
    m.add(f)
    m.attrs["model"] = _model_attrs(
        name, [("dense_1.kernel", {"name": "glorot_uniform"}), ("dense_1.bias", {"name": "zeros"}),
               ("dense_2.kernel", {"name": "glorot_uniform"}), ("dense_2.bias", {"name": "zeros"})],
        ["x"], ["y"], ["probs"], "sparse_categorical_crossentropy", optimizer, ["accuracy"])
    return m


def blobs(n: int, *, n_in: int = 4, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated Gaussian clusters: float32 [n, n_in] and int32 labels in [0, classes)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 3.0, (classes, n_in))
    y = rng.integers(0, classes, n).astype(np.int32)
    x = (centers[y] + rng.normal(0.0, 0.5, (n, n_in))).astype(np.float32)
    return x, y


def test_linear_module_computes_mse_and_mae() -> None:
    m = linear_module({"name": "sgd"})
    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32)
    x, y = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(5, 2)).astype(np.float32)
    loss, mae = interpret(m.get("evaluate"), [w, b, x, y])
    pred = x @ w + b
    np.testing.assert_allclose(loss, ((pred - y) ** 2).mean(), rtol=1e-5)
    np.testing.assert_allclose(mae, np.abs(pred - y).mean(), rtol=1e-5)


def test_classifier_module_accuracy_counts_hits() -> None:
    m = classifier_module({"name": "sgd"}, n_in=2, hidden=2, classes=2)
    eye = np.eye(2, dtype=np.float32)
    x = np.array([[5.0, 0.0], [0.0, 5.0], [5.0, 0.0]], np.float32)
    y = np.array([0, 1, 1], np.int32)
    _, acc = interpret(m.get("evaluate"), [eye, np.zeros(2, np.float32), eye, np.zeros(2, np.float32), x, y])
    assert float(acc) == np.float32(2 / 3)
