"""fit(sample_weight=..., class_weight=...): Keras's weighted loss, through the weighted step.

A batch's loss is ``sum(w[i] * loss[i]) / batch size`` (Keras 3's
``"sum_over_batch_size"``); references are numpy in f64, one SGD step on a
one-layer f64 model, on both backends.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compiler.diagnostics import ArgumentTypeError, ArgumentValueError, DlError
from compiler.train_step import TrainingError, build_weighted_step
from runtime.model import Model, NonFiniteLossError, load_model, model_module
from runtime.weights import parse_class_weight

CLASSIFIER = """
model wclf {
    input x: f64[N, 3]
    target y: i64[N]
    output p = dense(x, 3, activation=softmax)
    loss sparse_categorical_crossentropy(p, y)
    optimizer sgd(lr=0.5)
    metrics [accuracy]
}
"""

REGRESSION = """
model wreg {
    input x: f64[N, 3]
    target t: f64[N, 2]
    output p = dense(x, 2)
    loss mse(p, t)
    optimizer sgd(lr=0.5)
}
"""

N = 6
X = np.random.default_rng(1).normal(size=(N, 3))
LABELS = np.array([0, 1, 2, 1, 0, 2])
TARGETS = np.random.default_rng(2).normal(size=(N, 2))
W = np.array([1.0, 0.0, 2.5, 0.5, 1.0, 3.0])


def model(tmp_path: Path, source: str, backend: str) -> Model:
    path = tmp_path / "m.dl"
    path.write_text(source)
    return load_model(str(path), seed=0, backend=backend)


def softmax_step(kernel, bias, w, lr=0.5):
    """Loss and one SGD step of ``sum(w * -log softmax(x k + b)[y]) / N`` in numpy."""
    z = X @ kernel + bias
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    loss = np.sum(w * -np.log(p[np.arange(N), LABELS])) / N
    dz = (p - np.eye(3)[LABELS]) * (w / N)[:, None]
    return loss, kernel - lr * X.T @ dz, bias - lr * dz.sum(axis=0)


def mse_step(kernel, bias, w, lr=0.5):
    """Keras's weighted mse: ``sum(w[i] * mean((p[i] - t[i])^2)) / N``, and one SGD step."""
    e = X @ kernel + bias - TARGETS
    loss = np.sum(w * np.mean(e ** 2, axis=1)) / N
    de = 2 * e * (w / (N * 2))[:, None]
    return loss, kernel - lr * X.T @ de, bias - lr * de.sum(axis=0)


@pytest.mark.parametrize("backend", ["interp", "native"])
@pytest.mark.parametrize("source, y, reference", [(CLASSIFIER, LABELS, softmax_step),
                                                  (REGRESSION, TARGETS, mse_step)])
def test_one_weighted_step_matches_numpy(tmp_path: Path, backend, source, y, reference) -> None:
    m = model(tmp_path, source, backend)
    kernel, bias = m.weights["dense_1.kernel"], m.weights["dense_1.bias"]
    history = m.fit(X, y, epochs=1, batch_size=N, shuffle=False, verbose=0, sample_weight=W)
    loss, new_kernel, new_bias = reference(kernel, bias, W)
    assert history.history["loss"][0] == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(m.weights["dense_1.kernel"], new_kernel, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(m.weights["dense_1.bias"], new_bias, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", ["interp", "native"])
def test_all_ones_weights_train_as_no_weights(tmp_path: Path, backend) -> None:
    weighted, plain = model(tmp_path, CLASSIFIER, backend), model(tmp_path, CLASSIFIER, backend)
    h1 = weighted.fit(X, LABELS, epochs=2, batch_size=4, verbose=0, sample_weight=np.ones(N))
    h2 = plain.fit(X, LABELS, epochs=2, batch_size=4, verbose=0)
    # the same loss and step up to f64 rounding: the weighted step differentiates the loss's
    # primitive form, the plain step uses the loss op's fused gradient
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-14)
    for name, value in plain.weights.items():
        np.testing.assert_allclose(weighted.weights[name], value, rtol=1e-13, atol=1e-15)


def test_a_zero_weight_removes_a_samples_influence(tmp_path: Path) -> None:
    # sample 1 weighs 0: changing its label changes nothing
    a, b = model(tmp_path, CLASSIFIER, "interp"), model(tmp_path, CLASSIFIER, "interp")
    other = LABELS.copy()
    other[1] = 2
    a.fit(X, LABELS, epochs=1, batch_size=N, verbose=0, sample_weight=W)
    b.fit(X, other, epochs=1, batch_size=N, verbose=0, sample_weight=W)
    for name, value in a.weights.items():
        np.testing.assert_array_equal(b.weights[name], value)


def test_class_weight_is_a_weight_per_label(tmp_path: Path) -> None:
    by_class = {0: 2.0, 1: 0.5}                       # class 2 left out: weight 1, as Keras
    a, b = model(tmp_path, CLASSIFIER, "interp"), model(tmp_path, CLASSIFIER, "interp")
    a.fit(X, LABELS, epochs=1, batch_size=N, shuffle=False, verbose=0, class_weight=by_class)
    b.fit(X, LABELS, epochs=1, batch_size=N, shuffle=False, verbose=0,
          sample_weight=np.array([2.0, 0.5, 1.0, 0.5, 2.0, 1.0]))
    for name, value in a.weights.items():
        np.testing.assert_array_equal(b.weights[name], value)


def test_balanced_class_weight(tmp_path: Path) -> None:
    labels = np.array([0, 0, 0, 0, 1, 2])          # n / (classes * count): 0.5, 2, 2
    a, b = model(tmp_path, CLASSIFIER, "interp"), model(tmp_path, CLASSIFIER, "interp")
    a.fit(X, labels, epochs=1, batch_size=N, shuffle=False, verbose=0, class_weight="balanced")
    b.fit(X, labels, epochs=1, batch_size=N, shuffle=False, verbose=0,
          sample_weight=np.array([0.5, 0.5, 0.5, 0.5, 2.0, 2.0]))
    for name, value in a.weights.items():
        np.testing.assert_array_equal(b.weights[name], value)


def test_validation_split_keeps_the_training_rows_weights(tmp_path: Path) -> None:
    a, b = model(tmp_path, CLASSIFIER, "interp"), model(tmp_path, CLASSIFIER, "interp")
    a.fit(X, LABELS, epochs=1, batch_size=N, shuffle=False, verbose=0, sample_weight=W, validation_split=0.5)
    b.fit(X[:3], LABELS[:3], epochs=1, batch_size=N, shuffle=False, verbose=0, sample_weight=W[:3])
    for name, value in a.weights.items():
        np.testing.assert_array_equal(b.weights[name], value)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"sample_weight": np.ones(N - 1)}, ArgumentValueError, "one weight per training sample is shape [6]"),
    ({"sample_weight": -W}, ArgumentValueError, "must not be negative"),
    ({"sample_weight": np.array([1, np.nan, 1, 1, 1, 1])}, ArgumentValueError, "must be finite"),
    ({"sample_weight": ["a"] * N}, ArgumentTypeError, "must hold numbers"),
    ({"class_weight": {3: 1.0}}, ArgumentValueError, "class 3 is outside the model's labels 0..2"),
    ({"class_weight": {0: -1.0}}, ArgumentValueError, "finite and not negative"),
    ({"class_weight": "even"}, ArgumentValueError, "or 'balanced'"),
    ({"class_weight": {0: 1.0}, "sample_weight": W}, ArgumentValueError, "not both"),
])
def test_weight_misuse(tmp_path: Path, kwargs, error, message) -> None:
    m = model(tmp_path, CLASSIFIER, "interp")
    with pytest.raises(error, match=None) as info:
        m.fit(X, LABELS, epochs=1, verbose=0, **kwargs)
    assert message in str(info.value)


def test_class_weight_on_a_regression_model_is_an_error(tmp_path: Path) -> None:
    m = model(tmp_path, REGRESSION, "interp")
    with pytest.raises(ArgumentValueError, match="class weights need a classification loss"):
        m.fit(X, TARGETS, epochs=1, verbose=0, class_weight={0: 1.0})


def test_a_loss_without_a_loss_op_cannot_be_weighted(tmp_path: Path) -> None:
    path = tmp_path / "m.dl"
    path.write_text(REGRESSION.replace("loss mse(p, t)", "loss mean(square(p - t))"))
    module, _ = model_module(str(path))
    with pytest.raises(TrainingError, match="this @loss has none"):
        build_weighted_step(module)


def test_parse_class_weight() -> None:
    assert parse_class_weight("0=1,1=5") == {0: 1.0, 1: 5.0}
    assert parse_class_weight("balanced") == "balanced"
    with pytest.raises(DlError, match="'1:5' is not CLASS=WEIGHT"):
        parse_class_weight("0=1,1:5")


@pytest.mark.parametrize("backend", ["interp", "native"])
def test_a_weighted_step_that_overflows_is_located_by_the_nan_trap(tmp_path: Path, backend) -> None:
    # f32 weights that make the loss overflow: the NaN trap replays the *weighted* step
    source = CLASSIFIER.replace("f64", "f32")
    m = model(tmp_path, source, backend)
    with pytest.raises(NonFiniteLossError, match="training diverged: the loss is inf"):
        m.fit(X.astype(np.float32), LABELS, epochs=1, batch_size=N, verbose=0,
              sample_weight=np.full(N, 3e38))


@pytest.mark.parametrize("backend", ["interp", "native"])
def test_validation_data_with_sample_weights_weights_the_validation_loss(tmp_path: Path, backend) -> None:
    m = model(tmp_path, CLASSIFIER, backend)
    history = m.fit(X, LABELS, epochs=1, batch_size=N, verbose=0, validation_data=(X, LABELS, W))
    kernel, bias = m.weights["dense_1.kernel"], m.weights["dense_1.bias"]
    loss, _, _ = softmax_step(kernel, bias, W)          # the weighted loss at the trained weights
    assert history.history["val_loss"][0] == pytest.approx(loss, rel=1e-12)
    plain = m.evaluate(X, LABELS)
    assert history.history["val_accuracy"][0] == plain["accuracy"]       # metrics stay unweighted
    assert m.evaluate(X, LABELS, batch_size=4, sample_weight=W)["loss"] == pytest.approx(loss, rel=1e-12)
    with pytest.raises(ArgumentValueError, match="validation_data's sample_weight has shape"):
        m.fit(X, LABELS, epochs=1, verbose=0, validation_data=(X, LABELS, W[:2]))
