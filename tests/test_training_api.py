"""The Keras-shaped training surface: validation split, callbacks, schedules, ``import dlc``.

Tiny hand-built models on the interpreter backend, a few steps each.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_training_models import blobs, classifier_module

from compiler.diagnostics import ArgumentTypeError, ArgumentValueError, DlRuntimeError
from runtime.model import Model


def clf(seed: int = 0) -> Model:
    return Model(classifier_module({"name": "adam", "learning_rate": 0.1}), seed=seed, backend="interp")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return blobs(40)


# --- validation ----------------------------------------------------------------------------

def test_validation_split_holds_out_the_last_fraction(data) -> None:
    """As Keras: the last 25 % (10 of 40) validate, before shuffling, and are never trained on."""
    x, y = data
    model = clf()
    history = model.fit(x, y, epochs=2, batch_size=8, validation_split=0.25, verbose=0)
    assert history.train_samples == 30 and history.validation_samples == 10
    assert history.calls_per_epoch == [4, 4]          # ceil(30 / 8): the held-out rows are not trained
    assert history.history["val_loss"][-1] == pytest.approx(model.evaluate(x[30:], y[30:])["loss"], rel=1e-6)
    same = clf()
    same.fit(x[:30], y[:30], epochs=2, batch_size=8, validation_data=(x[30:], y[30:]), verbose=0)
    for name, w in model.weights.items():
        np.testing.assert_array_equal(w, same.weights[name])


@pytest.mark.parametrize("kwargs, error, message", [
    ({"validation_split": 1.0}, ArgumentValueError, "'validation_split' must be in [0, 1), got 1.0"),
    ({"validation_split": -0.1}, ArgumentValueError, "must be in [0, 1)"),
    ({"validation_split": "0.2"}, ArgumentTypeError, "must be a number in [0, 1)"),
    ({"validation_split": 1e-17}, ArgumentValueError, "leaves 40 to train on and 0 to validate on"),
    ({"validation_split": 0.2, "validation_data": "x"}, ArgumentValueError, "not both"),
])
def test_validation_misuse(data, kwargs, error, message) -> None:
    x, y = data
    with pytest.raises(error) as info:
        clf().fit(x, y, epochs=1, verbose=0, **kwargs)
    assert message in str(info.value)


def test_a_small_validation_split_keeps_one_sample(data) -> None:
    x, y = data
    # int(40 * 0.975) = 39 rows train, 1 validates: allowed (only an empty side is an error)
    history = clf().fit(x, y, epochs=1, verbose=0, validation_split=0.025)
    assert history.validation_samples == 1


def test_empty_validation_data_is_an_error(data) -> None:
    x, y = data
    with pytest.raises(DlRuntimeError, match="the validation data is empty"):
        clf().fit(x, y, epochs=1, verbose=0, validation_data=(x[:0], y[:0]))
