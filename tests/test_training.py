"""The compiled training step: every optimizer's update against a hand-written numpy step.

The model is ``pred = x @ W + b`` with an MSE loss, whose gradient numpy
computes in closed form; each optimizer's Keras 3 formula is written out
again below in plain numpy, independently of ``compiler/optimizers.py``, and
three consecutive steps (different batches, different learning rates) must
agree with ``train_step`` run by the reference interpreter.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_training_models import classifier_module, linear_module

from compiler.diagnostics import DlError
from compiler.ir.interpreter import interpret
from compiler.optimizers import OPTIMIZERS
from compiler.train_step import TrainingError, build_train_step, train_signature

KERNEL, BIAS = "dense_1.kernel", "dense_1.bias"


def mse_grads(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, dict]:
    """Loss and gradients of mean((x @ w + b - y)²) in float64."""
    pred = x @ w + b
    d = 2.0 * (pred - y) / pred.size
    return float(((pred - y) ** 2).mean()), {KERNEL: x.T @ d, BIAS: d.sum(axis=0)}


# --- the optimizers, once more, in numpy (Keras 3 formulas) ----------------------------

def np_sgd(hp, p, g, s, lr, t):
    if hp["momentum"] == 0:
        return p - lr * g, s
    m = hp["momentum"] * s["momentum"] - lr * g
    if hp["nesterov"]:
        return p + hp["momentum"] * m - lr * g, {"momentum": m}
    return p + m, {"momentum": m}


def np_rmsprop(hp, p, g, s, lr, t):
    rho, out = hp["rho"], {}
    v = rho * s["velocity"] + (1 - rho) * g * g
    out["velocity"] = v
    if hp["centered"]:
        a = rho * s["average_gradient"] + (1 - rho) * g
        out["average_gradient"] = a
        denom = v - a * a + hp["epsilon"]
    else:
        denom = v + hp["epsilon"]
    inc = lr * g / np.sqrt(denom)
    if hp["momentum"] > 0:
        mom = hp["momentum"] * s["momentum"] + inc
        out["momentum"] = mom
        return p - mom, out
    return p - inc, out


def np_adam(hp, p, g, s, lr, t):
    b1, b2 = hp["beta_1"], hp["beta_2"]
    alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    m = s["momentum"] + (g - s["momentum"]) * (1 - b1)
    v = s["velocity"] + (g * g - s["velocity"]) * (1 - b2)
    return p - alpha * m / (np.sqrt(v) + hp["epsilon"]), {"momentum": m, "velocity": v}


def np_adagrad(hp, p, g, s, lr, t):
    acc = s["accumulator"] + g * g
    return p - lr * g / np.sqrt(acc + hp["epsilon"]), {"accumulator": acc}


def np_adadelta(hp, p, g, s, lr, t):
    rho, eps = hp["rho"], hp["epsilon"]
    acc_g = rho * s["accumulated_grad"] + (1 - rho) * g * g
    delta = -np.sqrt(s["accumulated_delta_var"] + eps) * g / np.sqrt(acc_g + eps)
    acc_d = rho * s["accumulated_delta_var"] + (1 - rho) * delta * delta
    return p + lr * delta, {"accumulated_grad": acc_g, "accumulated_delta_var": acc_d}


def np_adamax(hp, p, g, s, lr, t):
    m = s["momentum"] + (g - s["momentum"]) * (1 - hp["beta_1"])
    u = np.maximum(hp["beta_2"] * s["norm"], np.abs(g))
    return p - lr * m / ((1 - hp["beta_1"] ** t) * (u + hp["epsilon"])), {"momentum": m, "norm": u}


def np_nadam(hp, p, g, s, lr, t, u_product):
    """Keras 3's Nadam; ``u_product`` is the product of u_1 .. u_t (the shared state after this step)."""
    b1, b2 = hp["beta_1"], hp["beta_2"]
    u_t, u_next = b1 * (1 - 0.5 * 0.96 ** t), b1 * (1 - 0.5 * 0.96 ** (t + 1))
    m = s["momentum"] + (g - s["momentum"]) * (1 - b1)
    v = s["velocity"] + (g * g - s["velocity"]) * (1 - b2)
    m_hat = u_next * m / (1 - u_product * u_next) + (1 - u_t) * g / (1 - u_product)
    v_hat = v / (1 - b2 ** t)
    return p - m_hat * lr / (np.sqrt(v_hat) + hp["epsilon"]), {"momentum": m, "velocity": v}


def np_lion(hp, p, g, s, lr, t):
    b1, b2, m = hp["beta_1"], hp["beta_2"], s["momentum"]
    return p - lr * np.sign(m * b1 + g * (1 - b1)), {"momentum": m * b2 + g * (1 - b2)}


NUMPY_RULES = {"sgd": np_sgd, "rmsprop": np_rmsprop, "adam": np_adam, "adamw": np_adam, "adagrad": np_adagrad,
               "adadelta": np_adadelta, "adamax": np_adamax, "lion": np_lion}


def np_clip(hp, grads):
    """Keras 3's _clip_gradients: clipnorm per tensor, global_clipnorm over all, clipvalue elementwise."""
    if hp.get("clipnorm", 0) > 0:
        c = hp["clipnorm"]
        return {k: g * c / max(np.sqrt((g * g).sum()), c) for k, g in grads.items()}
    if hp.get("global_clipnorm", 0) > 0:
        c = hp["global_clipnorm"]
        norm = np.sqrt(sum((g * g).sum() for g in grads.values()))
        return {k: g * c / max(norm, c) for k, g in grads.items()}
    if hp.get("clipvalue", 0) > 0:
        return {k: np.clip(g, -hp["clipvalue"], hp["clipvalue"]) for k, g in grads.items()}
    return grads


def np_step(name, hp, p, g, s, lr, t):
    """Keras 3's order: (clipped gradients), decoupled weight decay, then the optimizer's rule."""
    return NUMPY_RULES[name](hp, p - p * hp.get("weight_decay", 0.0) * lr, g, s, lr, t)

CASES = [
    {"name": "sgd"},
    {"name": "sgd", "momentum": 0.9},
    {"name": "sgd", "momentum": 0.8, "nesterov": True},
    {"name": "rmsprop"},
    {"name": "rmsprop", "rho": 0.5, "epsilon": 1e-3},
    {"name": "rmsprop", "momentum": 0.7},
    {"name": "rmsprop", "centered": True},
    {"name": "rmsprop", "centered": True, "momentum": 0.5, "rho": 0.8},
    {"name": "adam"},
    {"name": "adam", "beta_1": 0.5, "beta_2": 0.75, "epsilon": 1e-2},
    {"name": "adamw"},
    {"name": "adamw", "weight_decay": 0.1, "beta_1": 0.8},
    {"name": "sgd", "weight_decay": 0.5},
    {"name": "rmsprop", "weight_decay": 0.2, "momentum": 0.5},
    {"name": "sgd", "clipvalue": 0.05},
    {"name": "adam", "clipnorm": 0.1},
    {"name": "sgd", "momentum": 0.9, "global_clipnorm": 0.1},
    {"name": "adamw", "global_clipnorm": 0.1, "weight_decay": 0.3},
    {"name": "adagrad"},
    {"name": "adagrad", "initial_accumulator_value": 0.5, "epsilon": 1e-3},
    {"name": "adadelta"},
    {"name": "adadelta", "rho": 0.5},
    {"name": "adamax"},
    {"name": "adamax", "beta_1": 0.5, "beta_2": 0.8},
    {"name": "nadam"},
    {"name": "nadam", "beta_1": 0.7, "beta_2": 0.9, "epsilon": 1e-3},
    {"name": "lion"},
    {"name": "lion", "beta_1": 0.5, "beta_2": 0.7, "weight_decay": 0.1},
]


def _case_id(case: dict) -> str:
    return "-".join(f"{k}={v}" if k != "name" else str(v) for k, v in case.items())


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_three_steps_match_numpy(case: dict) -> None:
    module = linear_module(case)
    step = build_train_step(module)
    sig = train_signature(module)
    opt = OPTIMIZERS[case["name"]]
    hp = opt.resolve({k: v for k, v in case.items() if k != "name"})
    rng = np.random.default_rng(7)
    tensors = {KERNEL: rng.normal(size=(3, 2)).astype(np.float32),
               BIAS: rng.normal(size=2).astype(np.float32), **sig.initial_state()}
    ref = {k: v.astype(np.float64) for k, v in tensors.items()}
    slots = opt.slots(hp)
    u_product = 1.0
    for t, (lr, n) in enumerate([(0.1, 5), (0.05, 8), (0.02, 3)], start=1):
        u_product *= hp.get("beta_1", 0.0) * (1 - 0.5 * 0.96 ** t)       # Nadam's shared product
        x = rng.normal(size=(n, 3)).astype(np.float32)
        y = rng.normal(size=(n, 2)).astype(np.float32)
        args = [tensors[name] for name in sig.arg_names[:-3]] + [x, y, np.float32(lr)]
        out = interpret(step, args)
        tensors = dict(zip(sig.arg_names[:-3], out[1:-1]))

        loss, grads = mse_grads(ref[KERNEL], ref[BIAS], x.astype(np.float64), y.astype(np.float64))
        np.testing.assert_allclose(out[0], loss, rtol=1e-5)
        grads = np_clip(hp, grads)
        for pname in (KERNEL, BIAS):
            state = {slot: ref[opt.slot_name(slot, pname)] for slot in slots}
            if case["name"] == "nadam":
                ref[pname] = ref[pname] - ref[pname] * hp.get("weight_decay", 0.0) * lr
                ref[pname], new_state = np_nadam(hp, ref[pname], grads[pname], state, lr, t, u_product)
            else:
                ref[pname], new_state = np_step(case["name"], hp, ref[pname], grads[pname], state, lr, t)
            assert set(new_state) == set(slots)
            ref.update({opt.slot_name(slot, pname): v for slot, v in new_state.items()})
        for name, value in tensors.items():
            if name.endswith("iterations"):
                assert value.dtype == np.int64 and int(value) == t
                continue
            if name.endswith("u_product"):
                np.testing.assert_allclose(value, u_product, rtol=1e-6)
                continue
            assert value.dtype == np.float32, name
            np.testing.assert_allclose(value, ref[name], rtol=2e-4, atol=1e-6, err_msg=f"{name} after step {t}")


def test_signature_names_state_after_optimizer_slot_and_param() -> None:
    sig = train_signature(linear_module({"name": "rmsprop", "momentum": 0.9, "centered": True}))
    assert sig.arg_names == [
        KERNEL, BIAS,
        "rmsprop.velocity.dense_1.kernel", "rmsprop.velocity.dense_1.bias",
        "rmsprop.momentum.dense_1.kernel", "rmsprop.momentum.dense_1.bias",
        "rmsprop.average_gradient.dense_1.kernel", "rmsprop.average_gradient.dense_1.bias",
        "x", "y", "lr"]
    adam = train_signature(linear_module({"name": "adam"}))
    assert [s.name for s in adam.state][-1] == "adam.iterations"
    assert adam.state[-1].param is None and adam.state[-1].type.dtype.value == "i64"
    assert train_signature(linear_module({"name": "sgd"})).state == ()


def test_train_step_layout_and_inplace_pairs() -> None:
    module = linear_module({"name": "adam", "learning_rate": 0.01})
    step = build_train_step(module)
    sig = train_signature(module)
    assert [p.name for p in step.params] == sig.arg_names
    assert step.output_names == ["loss", f"new.{KERNEL}", f"new.{BIAS}",
                                 *(f"new.{s.name}" for s in sig.state), "mae"]
    assert step.params[-1].type.shape == () and step.params[-1].name == "lr"
    pairs = step.attrs["inplace"]
    assert [name for _, name in pairs] == [KERNEL, BIAS, *(s.name for s in sig.state)]
    for index, name in pairs:
        assert step.outputs[index].type == step.param(name).type
    assert "train_step" in module and not any(f.name.startswith("train_step.grad") for f in module.functions)
    assert sig.learning_rate == 0.01


def test_metrics_share_the_forward_pass_with_the_gradient() -> None:
    # forward x @ W once, backward x^T @ d once; evaluate's copy of the forward is reused.
    step = build_train_step(linear_module({"name": "sgd"}))
    assert sum(op.name == "matmul" for op in step.ops) == 2
    assert sum(op.name == "mse" for op in step.ops) == 1
    assert sum(op.name == "mae" for op in step.ops) == 1


def test_without_metrics_outputs_end_after_state() -> None:
    module = linear_module({"name": "sgd", "momentum": 0.5})
    step = build_train_step(module, metrics=False)
    assert step.output_names == ["loss", f"new.{KERNEL}", f"new.{BIAS}",
                                 f"new.sgd.momentum.{KERNEL}", f"new.sgd.momentum.{BIAS}"]
    assert not any(op.name == "mae" for op in step.ops)


def test_building_twice_replaces_the_step() -> None:
    module = linear_module({"name": "sgd"})
    build_train_step(module)
    build_train_step(module)
    assert [f.name for f in module.functions].count("train_step") == 1


def test_learning_rate_is_a_runtime_argument() -> None:
    module = linear_module({"name": "sgd"})
    step = build_train_step(module)
    w, b = np.ones((3, 2), np.float32), np.zeros(2, np.float32)
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32)
    _, w1, *_ = interpret(step, [w, b, x, y, np.float32(0.1)])
    _, w2, *_ = interpret(step, [w, b, x, y, np.float32(0.2)])
    np.testing.assert_allclose(w - w2, 2 * (w - w1), rtol=1e-6)


def test_classifier_step_reduces_loss_and_reports_accuracy() -> None:
    module = classifier_module({"name": "adam", "learning_rate": 0.05})
    step = build_train_step(module)
    sig = train_signature(module)
    rng = np.random.default_rng(0)
    tensors = [rng.normal(0, 0.5, t.concrete_shape({})).astype(np.float32) for _, t in sig.params]
    tensors += list(sig.initial_state().values())
    x = rng.normal(size=(12, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 1).astype(np.int32)
    losses = []
    for _ in range(30):
        out = interpret(step, [*tensors, x, y, np.float32(0.05)])
        losses.append(float(out[0]))
        tensors = out[1:1 + len(tensors)]
        accuracy = float(out[-1])
    assert losses[-1] < 0.5 * losses[0]
    assert 0.0 <= accuracy <= 1.0 and accuracy >= 0.75


def test_train_step_verifies() -> None:
    from compiler.ir.verifier import verify_function

    module = linear_module({"name": "rmsprop", "centered": True, "momentum": 0.3})
    verify_function(build_train_step(module))


def test_unknown_optimizer_is_a_training_error() -> None:
    with pytest.raises(TrainingError, match="unknown optimizer 'ftrl'"):
        train_signature(linear_module({"name": "ftrl"}))
    with pytest.raises(TrainingError, match="optimizer 'sgd' has no hyperparameter 'beta_1'"):
        train_signature(linear_module({"name": "sgd", "beta_1": 0.9}))


def test_module_without_model_is_a_training_error() -> None:
    from compiler.ir.core import Module

    with pytest.raises(DlError, match="no model block"):
        build_train_step(Module())


def test_train_step_prints_and_parses_back() -> None:
    from compiler.ir.parser import parse_module
    from compiler.ir.printer import print_module

    module = linear_module({"name": "adamw"})
    build_train_step(module)
    text = print_module(module)
    assert '%adamw.momentum.dense_1.kernel: tensor<3x2xf32>' in text and "inplace = [[1, " in text
    assert print_module(parse_module(text, "step.mlir")) == text


def test_softmax_cross_entropy_is_differentiated_from_logits() -> None:
    """The gradient of CE(softmax(z)) is built from the stable from-logits form:
    no clip, no division by probabilities -- (softmax - one_hot) / N."""
    from frontend_dsl.api import compile_file

    module = compile_file("examples/mnist_mlp.dl")
    step = build_train_step(module)
    losses = [op for op in step.ops if op.name == "sparse_categorical_crossentropy"]
    assert losses and all(op.attrs["from_logits"] for op in losses)
    # The backward is softmax - one_hot: one softmax, and nothing clips or divides by probabilities.
    assert [op.loc.backward for op in step.ops if op.name == "softmax"] == [True]
    assert not any(op.name in ("maximum", "minimum", "log") for op in step.ops)


def test_adagrad_accumulators_start_at_their_initial_value() -> None:
    """Keras's Adagrad starts its accumulators at initial_accumulator_value (0.1), not 0."""
    sig = train_signature(linear_module({"name": "adagrad"}))
    state = sig.initial_state()
    assert set(state) == {f"adagrad.accumulator.{KERNEL}", f"adagrad.accumulator.{BIAS}"}
    assert all(np.all(v == np.float32(0.1)) and v.dtype == np.float32 for v in state.values())
    assert all(np.all(v == 0) for v in train_signature(linear_module({"name": "adadelta"})).initial_state().values())
