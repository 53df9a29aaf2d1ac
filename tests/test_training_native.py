"""The native backend: the compiled training step agrees with the interpreter, updates
weights and optimizer state in their own buffers, and costs one native call per step."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_training_models import blobs, classifier_module

from runtime.model import Model, load_model

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def models() -> tuple[Model, Model]:
    optimizer = {"name": "rmsprop", "learning_rate": 0.01, "momentum": 0.5, "centered": True}
    native = Model(classifier_module(optimizer), seed=3, backend="native")
    interp = Model(classifier_module(optimizer), seed=3, backend="interp")
    return native, interp


def test_native_training_matches_the_interpreter(models) -> None:
    native, interp = models
    x, y = blobs(70, seed=1)
    native_history = native.fit(x, y, epochs=2, batch_size=16, verbose=0)
    interp_history = interp.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert native.backend.name == "native" and interp.backend.name == "interp"
    np.testing.assert_allclose(native_history.history["loss"], interp_history.history["loss"], rtol=1e-4)
    for name, value in interp.weights.items():
        np.testing.assert_allclose(native.weights[name], value, rtol=1e-4, atol=1e-5, err_msg=name)
    for name, value in interp.optimizer_state.items():
        np.testing.assert_allclose(native.optimizer_state[name], value, rtol=1e-3, atol=1e-6, err_msg=name)
    assert native.evaluate(x, y)["accuracy"] == pytest.approx(interp.evaluate(x, y)["accuracy"])
    np.testing.assert_allclose(native.predict(x), interp.predict(x), rtol=1e-4, atol=1e-6)


def test_one_native_call_per_step_updating_buffers_in_place(models) -> None:
    native, _ = models
    x, y = blobs(50, seed=2)
    buffers = list(native._tensors)
    before = [b.copy() for b in buffers]
    history = native.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert history.calls_per_epoch == [4]                       # ceil(50 / 16), partial batch included
    assert all(a is b for a, b in zip(native._tensors, buffers))  # the same arrays, written in place
    assert not np.array_equal(buffers[0], before[0])


def test_native_checkpoint_round_trip(tmp_path: Path, models) -> None:
    native, _ = models
    native.save(tmp_path / "c.npz")
    again = Model(classifier_module({"name": "rmsprop", "learning_rate": 0.01, "momentum": 0.5,
                                     "centered": True}), seed=0, backend="interp")
    again.load_weights(tmp_path / "c.npz")
    x, _ = blobs(20, seed=4)
    np.testing.assert_allclose(again.predict(x), native.predict(x), rtol=1e-5, atol=1e-7)
    assert again.step == native.step


def test_mnist_model_compiles_and_learns_a_little() -> None:
    from runtime.data import load_mnist

    data = load_mnist()
    model = load_model(EXAMPLES / "mnist_mlp.dl", seed=0, backend="native")
    history = model.fit(data.x_train[:2048], data.y_train[:2048], epochs=1, batch_size=128, verbose=0)
    assert history.calls_per_epoch == [16]
    assert model.evaluate(data.x_test[:1000], data.y_test[:1000])["accuracy"] > 0.8
