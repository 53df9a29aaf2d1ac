"""Gradient clipping (Keras's clipnorm= / global_clipnorm= on any optimizer) against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.diagnostics import DlError
from frontend_dsl import compile_source
from runtime.model import Model

X = np.random.default_rng(0).standard_normal((16, 3)).astype(np.float32) * 4
Y = np.random.default_rng(1).standard_normal((16, 2)).astype(np.float32)


def one_step(optimizer: str, backend: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The weights before and after one full-batch step of a two-layer model."""
    source = ("model m {\n input x: f32[N, 3]\n target y: f32[N, 2]\n"
              " output p = dense(dense(x, 4, activation=tanh), 2)\n loss mse(p, y)\n"
              f" optimizer {optimizer}\n}}\n")
    model = Model(compile_source(source, "m.dl"), seed=3, backend=backend)
    before = {k: v.copy() for k, v in model.weights.items()}
    model.fit(X, Y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    return before, model.weights


def clip_by_norm(g: np.ndarray, c: float) -> np.ndarray:
    return g * c / max(np.sqrt(np.sum(g.astype(np.float64) ** 2)), c)


def raw_gradients(backend: str, lr: float) -> tuple[dict, dict, dict]:
    """Weights before and after an unclipped SGD step, and the gradients they imply."""
    before, after = one_step(f"sgd(lr={lr})", backend)
    return before, after, {k: (before[k].astype(np.float64) - after[k]) / lr for k in before}


def test_clipnorm_scales_each_gradient_to_the_norm_as_keras() -> None:
    lr = 0.5
    before, _, grads = raw_gradients("interp", lr)
    c = 0.5 * min(np.sqrt(np.sum(g ** 2)) for g in grads.values())    # below every norm: all clipped
    _, clipped = one_step(f"sgd(lr={lr}, clipnorm={c})", "interp")
    for k, g in grads.items():
        np.testing.assert_allclose(clipped[k], before[k] - lr * clip_by_norm(g, c), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("backend", ["interp", "native"])
def test_global_clipnorm_scales_all_gradients_by_one_factor(backend: str) -> None:
    lr = 0.5
    before, after, grads = raw_gradients(backend, lr)
    total = np.sqrt(sum(np.sum(g ** 2) for g in grads.values()))
    gc = 0.5 * total
    _, clipped = one_step(f"sgd(lr={lr}, global_clipnorm={gc})", backend)
    for k, g in grads.items():
        np.testing.assert_allclose(clipped[k], before[k] - lr * g * gc / total, rtol=1e-4, atol=1e-6)
    if backend == "interp":        # above the global norm: no change
        _, unclipped = one_step(f"sgd(lr={lr}, global_clipnorm={2 * total})", backend)
        for k in before:
            np.testing.assert_allclose(unclipped[k], after[k], rtol=1e-6, atol=1e-7)


def test_clipping_settings_are_checked() -> None:
    def message(opt: str) -> str:
        with pytest.raises(DlError) as info:
            one_step(opt, "interp")
        return str(info.value)
    assert "give one of clipnorm, global_clipnorm, clipvalue, not clipnorm and global_clipnorm" in \
        message("adam(clipnorm=1.0, global_clipnorm=1.0)")
    assert "clipnorm must be a number >= 0 (0: off), got -1" in message("adamw(clipnorm=-1.0)")
    assert "hyperparameters: learning_rate (lr), momentum, nesterov, weight_decay, clipnorm, global_clipnorm, " \
        "clipvalue" in message("sgd(clip=1.0)")
