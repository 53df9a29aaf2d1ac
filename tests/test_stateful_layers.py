"""Dropout, batch norm, layer norm, group norm: modes, non-trainable state, the training step.

The contract (docs/architecture.md, "Model blocks in IR"): ``predict`` and
``evaluate`` are the inference form, ``loss`` and ``train_step`` the training
form (``attrs["mode"]``); model state comes after the parameters; ``loss``
of a model with state or randomness returns the loss, each state's new value
and the training-form metrics, and takes the key ``rng`` last; the training
step takes ``seed`` and ``step`` and updates the state in place.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from compiler.checking.gradcheck import gradcheck
from compiler.diagnostics import DlError, DlErrors, DlRuntimeError
from compiler.ir.interpreter import interpret
from compiler.train_step import build_train_step, train_signature
from frontend_dsl import compile_source
from runtime.checkpoint import load_checkpoint, save_checkpoint
from runtime.model import load_model

ROOT = Path(__file__).resolve().parents[1]

MLP = """
model m {
    input x: f32[N, 6]
    target y: i32[N]
    let h1 = dense(x, 16)
    let h2 = dropout(relu(batch_norm(h1)), 0.25)
    output probs = dense(h2, 3, activation=softmax)
    loss sparse_categorical_crossentropy(probs, y)
    optimizer sgd(lr=0.1)
    metrics [accuracy]
}
"""


def model_source(body: str, *, inputs: str = "input x: f32[N, 6]", loss: str = "mse(p, y)",
                 target: str = "target y: f32[N, 3]") -> str:
    return f"model m {{\n {inputs}\n {target}\n {body}\n loss {loss}\n optimizer sgd(lr=0.1)\n}}\n"


def data(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32) * 3 + 1
    y = ((x[:, 0] + x[:, 1] > 2).astype(np.int32) + (x[:, 2] > 3)).astype(np.int32)
    return x, y


def messages(source: str) -> list[str]:
    with pytest.raises(DlError) as info:
        compile_source(source, "m.dl")
    errors = info.value.errors if isinstance(info.value, DlErrors) else [info.value]
    return [e.message for e in errors]


@pytest.fixture(scope="module")
def mlp_module():
    return compile_source(MLP, "m.dl")


# ---------------------------------------------------------------------------
# The IR contract


def test_functions_carry_their_mode_and_take_state_after_params(mlp_module):
    m = mlp_module
    info = m.attrs["model"]
    assert [s["name"] for s in info["state"]] == ["batch_norm_1.moving_mean", "batch_norm_1.moving_variance"]
    assert [s["init"] for s in info["state"]] == [{"name": "zeros"}, {"name": "ones"}]
    assert info["rng"] == "rng"
    params = [p["name"] for p in info["params"]]
    assert params == ["dense_1.kernel", "dense_1.bias", "batch_norm_1.gamma", "batch_norm_1.beta",
                      "dense_2.kernel", "dense_2.bias"]
    state = [s["name"] for s in info["state"]]
    assert [p.name for p in m.get("predict").params] == [*params, *state, "x"]
    assert [p.name for p in m.get("evaluate").params] == [*params, *state, "x", "y"]
    assert [p.name for p in m.get("loss").params] == [*params, *state, "x", "y", "rng"]
    assert m.get("loss").output_names == ["loss", "new.batch_norm_1.moving_mean",
                                          "new.batch_norm_1.moving_variance", "accuracy"]
    assert {f.name: f.attrs["mode"] for f in m.functions} == {
        "predict": "inference", "evaluate": "inference", "loss": "training"}
    ops = {f.name: {op.name for op in f.ops} for f in m.functions}
    assert "bernoulli" in ops["loss"] and "bernoulli" not in ops["predict"] | ops["evaluate"]
    assert "fold_in" not in ops["predict"]


def test_a_model_without_modes_keeps_its_functions_as_they_were():
    m = compile_source(model_source("output p = dense(x, 3)"), "m.dl")
    assert "state" not in m.attrs["model"] and "rng" not in m.attrs["model"]
    assert [p.name for p in m.get("loss").params] == ["dense_1.kernel", "dense_1.bias", "x", "y"]
    assert m.get("loss").output_names == ["loss"]
    sig = train_signature(m)
    assert not sig.random and sig.model_state == () and "seed" not in sig.arg_names


def test_train_step_takes_seed_and_step_and_updates_state_in_place(mlp_module):
    m = compile_source(MLP, "m.dl")
    step = build_train_step(m)
    sig = train_signature(m)
    names = [p.name for p in step.params]
    assert names[-3:] == ["lr", "seed", "step"]
    assert names[6:8] == ["batch_norm_1.moving_mean", "batch_norm_1.moving_variance"]
    assert step.output_names[7:9] == ["new.batch_norm_1.moving_mean", "new.batch_norm_1.moving_variance"]
    assert (7, "batch_norm_1.moving_mean") in step.attrs["inplace"]
    assert (8, "batch_norm_1.moving_variance") in step.attrs["inplace"]
    assert step.attrs["mode"] == "training"
    assert step.ops[0].name == "fold_in" and [v.name for v in step.ops[0].operands] == ["seed", "step"]
    # the optimizer sees parameters only: no slot for the moving statistics
    assert sig.model_state and all("moving" not in s.name for s in sig.state)


def test_a_malformed_model_record_is_a_training_error():
    from compiler.ir.parser import parse_module
    from compiler.ir.printer import print_module
    from compiler.train_step import TrainingError

    text = print_module(compile_source(MLP, "m.dl"))
    for state in ("moving", [{"init": "zeros"}], [{"name": "nowhere.moving_mean"}]):
        m = parse_module(text, "m.mlir")
        m.attrs["model"]["state"] = state
        with pytest.raises(TrainingError, match="state"):
            build_train_step(m)
    m = parse_module(text, "m.mlir")
    m.attrs["model"]["rng"] = "key"
    with pytest.raises(TrainingError, match="takes its key 'key' last"):
        build_train_step(m)


def test_dlc_ir_prints_the_training_step():
    path = ROOT / "examples" / "fmnist_mlp_dropout_bn.dl"
    out = subprocess.run([sys.executable, "-m", "runtime.cli", "ir", str(path), "--fn", "train_step"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert 'func.func @train_step(' in out and 'mode = "training"' in out
    assert '"dl.bernoulli"' in out and "%seed: tensor<i64>" in out


# ---------------------------------------------------------------------------
# Dropout


def test_dropout_is_the_identity_at_inference_and_a_scaled_mask_in_training():
    m = compile_source(model_source("output p = dropout(x, 0.4)", target="target y: f32[N, 6]"), "m.dl")
    x = np.random.default_rng(0).normal(size=(500, 6)).astype(np.float32)
    (p,) = interpret(m.get("predict"), [x])
    np.testing.assert_array_equal(p, x)
    loss = m.get("loss")
    assert [q.name for q in loss.params] == ["x", "y", "rng"]
    dropped = _training_output(m, [x, x, np.array(7, np.int64)])
    kept = dropped != 0
    assert abs(kept.mean() - 0.6) < 4 * np.sqrt(0.24 / kept.size)
    np.testing.assert_array_equal(dropped[kept], x[kept] * np.float32(1 / 0.6))
    other = _training_output(m, [x, x, np.array(8, np.int64)])
    assert not np.array_equal(other != 0, kept)       # another step, another mask


def _training_output(module, args: list[np.ndarray]) -> np.ndarray:
    """The value of the training form's ``p`` (the operand of the mse loss)."""
    loss = module.get("loss")
    mse = next(op for op in loss.ops if op.name == "mse")
    loss.outputs.append(mse.operands[0])
    try:
        return interpret(loss, args)[-1]
    finally:
        loss.outputs.pop()


def test_dropout_layers_draw_independent_masks():
    m = compile_source(model_source("let a = dropout(x, 0.5)\n output p = a + dropout(x, 0.5)",
                                    target="target y: f32[N, 6]"), "m.dl")
    loss = m.get("loss")
    masks = [op.results[0] for op in loss.ops if op.name == "bernoulli"]
    assert len(masks) == 2
    keys = [op.operands[0].owner for op in loss.ops if op.name == "bernoulli"]
    salts = [int(k.operands[1].owner.attrs["value"]) for k in keys]
    assert salts[0] != salts[1]
    loss.outputs.extend(masks)
    x = np.ones((400, 6), np.float32)
    a, b = interpret(loss, [x, x, np.array(3, np.int64)])[-2:]
    loss.outputs[-2:] = []
    assert 0.2 < (a & b).mean() < 0.3                   # independent halves: a quarter in both


@pytest.mark.parametrize("rate, problem", [("1.0", "must be in [0, 1)"), ("-0.1", "must be in [0, 1)"),
                                           ("\"a\"", "")])
def test_dropout_rate_is_checked(rate, problem):
    msgs = messages(model_source(f"output p = dropout(x, {rate})", target="target y: f32[N, 6]"))
    assert any("rate" in msg and problem in msg for msg in msgs), msgs


def _spatial_dropout_model(noise_shape: str, rate: str = "0.5") -> str:
    return model_source(f"output p = dropout(x, {rate}, noise_shape={noise_shape})",
                        inputs="input x: f32[N, 4, 3, 8]", target="target y: f32[N, 4, 3, 8]")


@pytest.mark.parametrize("noise_shape", ["[none, 1, 1, 8]", "[N, 1, 1, 8]", "[N, 1, 1, none]"])
def test_dropout_noise_shape_shares_the_mask_along_its_one_axes(noise_shape):
    m = compile_source(_spatial_dropout_model(noise_shape), "m.dl")
    x = np.random.default_rng(5).uniform(1, 2, size=(60, 4, 3, 8)).astype(np.float32)
    (p,) = interpret(m.get("predict"), [x])
    np.testing.assert_array_equal(p, x)
    dropped = _training_output(m, [x, x, np.array(3, np.int64)])
    kept = dropped != 0
    # one draw per image and channel, the same at every position (Keras' spatial dropout)
    assert (kept == kept[:, :1, :1, :]).all()
    per_channel = kept[:, 0, 0, :]
    assert 0.35 < per_channel.mean() < 0.65 and 0 < per_channel.sum(axis=0).min()
    assert not (per_channel == per_channel[:1]).all()              # images differ
    np.testing.assert_array_equal(dropped[kept], x[kept] * np.float32(2.0))


def test_dropout_noise_shape_at_full_size_is_the_plain_mask_and_rate_zero_the_identity():
    x = np.random.default_rng(6).normal(size=(7, 4, 3, 8)).astype(np.float32)
    args = [x, x, np.array(9, np.int64)]
    plain = _training_output(compile_source(model_source(
        "output p = dropout(x, 0.3)", inputs="input x: f32[N, 4, 3, 8]", target="target y: f32[N, 4, 3, 8]"),
        "m.dl"), args)
    full = _training_output(compile_source(_spatial_dropout_model("[none, 4, 3, 8]", "0.3"), "m.dl"), args)
    np.testing.assert_array_equal(full, plain)
    zero = compile_source(_spatial_dropout_model("[none, 1, 1, 8]", "0.0"), "m.dl")
    assert not [op for op in zero.get("loss").ops if op.name == "bernoulli"]
    np.testing.assert_array_equal(_training_output(zero, [x, x]), x)
    empty = np.zeros((0, 4, 3, 8), np.float32)          # an empty batch draws an empty mask
    m = compile_source(_spatial_dropout_model("[none, 1, 1, 8]"), "m.dl")
    assert _training_output(m, [empty, empty, np.array(1, np.int64)]).shape == (0, 4, 3, 8)


@pytest.mark.parametrize("noise_shape, problem", [
    ("[none, 1, 8]", "one entry per axis of the input (4), got [none, 1, 8]"),
    ("[none, 2, 1, 8]", "each entry is 1, the input's size on that axis or none; got [none, 2, 1, 8]"),
    ("[M, 1, 1, 8]", "got [M, 1, 1, 8] for an input of shape [N, 4, 3, 8]"),
    ("3", "one entry per axis")])
def test_dropout_noise_shape_is_checked(noise_shape, problem):
    msgs = messages(_spatial_dropout_model(noise_shape))
    assert any(problem in msg for msg in msgs), msgs


def test_spatial_dropout_trains_natively_as_in_the_interpreter():
    source = model_source("let c = dropout(conv2d(x, filters=4, kernel=3, padding=same), 0.4, "
                          "noise_shape=[none, 1, 1, 4])\n output p = dense(flatten(c), 3)",
                          inputs="input x: f32[N, 5, 5, 2]")
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(40, 5, 5, 2)).astype(np.float32), rng.normal(size=(40, 3)).astype(np.float32)
    weights = []
    for backend in ("native", "interp"):
        model = load_model(compile_source(source, "m.dl"), seed=2, backend=backend)
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
        weights.append(model.weights)
    for name, w in weights[0].items():
        np.testing.assert_allclose(w, weights[1][name], rtol=1e-5, atol=1e-6, err_msg=name)


# ---------------------------------------------------------------------------
# Batch norm


def _bn_model(shape: str, extra: str = "") -> str:
    return model_source(f"output p = batch_norm(x{extra})", inputs=f"input x: f32[{shape}]",
                        target=f"target y: f32[{shape}]")


def test_batch_norm_training_form_and_moving_averages_follow_keras():
    m = compile_source(_bn_model("N, 5", ", momentum=0.9, epsilon=0.01"), "m.dl")
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(64, 5)) * 3 + 2).astype(np.float32)
    gamma, beta = rng.normal(size=5).astype(np.float32), rng.normal(size=5).astype(np.float32)
    mm, mv = rng.normal(size=5).astype(np.float32), rng.uniform(0.5, 2, size=5).astype(np.float32)
    args = [gamma, beta, mm, mv, x, x]
    _, new_mm, new_mv = interpret(m.get("loss"), args)
    mean, var = x.astype(np.float64).mean(0), x.astype(np.float64).var(0)
    np.testing.assert_allclose(new_mm, mm * 0.9 + mean * 0.1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_mv, mv * 0.9 + var * 0.1, rtol=1e-5)
    y = _training_output(m, args)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 0.01) * gamma + beta, rtol=1e-4, atol=1e-5)
    (p,) = interpret(m.get("predict"), [gamma, beta, mm, mv, x])
    np.testing.assert_allclose(p, (x - mm) / np.sqrt(mv + 0.01) * gamma + beta, rtol=1e-5, atol=1e-5)


def test_batch_norm_over_nhwc_channels():
    m = compile_source(_bn_model("N, 4, 3, 2", ", center=false"), "m.dl")
    assert [p["name"] for p in m.attrs["model"]["params"]] == ["batch_norm_1.gamma"]
    x = np.random.default_rng(2).normal(size=(5, 4, 3, 2)).astype(np.float32) + 3
    gamma = np.array([1.5, -2.0], np.float32)
    ones, zeros = np.ones(2, np.float32), np.zeros(2, np.float32)
    args = [gamma, zeros, ones, x, x]
    _, new_mm, new_mv = interpret(m.get("loss"), args)
    mean, var = x.astype(np.float64).mean((0, 1, 2)), x.astype(np.float64).var((0, 1, 2))
    np.testing.assert_allclose(new_mm, mean * 0.01, rtol=1e-5)
    np.testing.assert_allclose(new_mv, 0.99 + var * 0.01, rtol=1e-6)
    y = _training_output(m, args)
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3) * gamma, rtol=1e-4, atol=1e-5)


def test_batch_norm_axis_one_on_nchw_equals_the_last_axis_on_nhwc():
    nchw = compile_source(_bn_model("N, 3, 4, 5", ", axis=1, momentum=0.8"), "m.dl")
    nhwc = compile_source(_bn_model("N, 4, 5, 3", ", momentum=0.8"), "m.dl")
    rng = np.random.default_rng(8)
    x = (rng.normal(size=(6, 3, 4, 5)) * [[[[1.0]], [[4.0]], [[0.5]]]] + 2).astype(np.float32)
    xt = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    gamma, beta = np.array([1.5, -1.0, 2.0], np.float32), np.array([0.1, 0.2, -0.3], np.float32)
    mm, mv = np.array([1.0, 2.0, 3.0], np.float32), np.array([0.5, 1.0, 2.0], np.float32)
    first = interpret(nchw.get("loss"), [gamma, beta, mm, mv, x, x])
    second = interpret(nhwc.get("loss"), [gamma, beta, mm, mv, xt, xt])
    for a, b in zip(first[1:], second[1:], strict=True):        # the new moving statistics, [3]
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(first[1], mm * 0.8 + x.astype(np.float64).mean((0, 2, 3)) * 0.2, rtol=1e-5)
    np.testing.assert_allclose(_training_output(nchw, [gamma, beta, mm, mv, x, x]).transpose(0, 2, 3, 1),
                               _training_output(nhwc, [gamma, beta, mm, mv, xt, xt]), rtol=1e-5, atol=1e-5)
    (p,) = interpret(nchw.get("predict"), [gamma, beta, mm, mv, x])
    want = (x - mm[:, None, None]) / np.sqrt(mv[:, None, None] + 1e-3) * gamma[:, None, None] + beta[:, None, None]
    np.testing.assert_allclose(p, want, rtol=1e-5, atol=1e-5)
    (empty,) = interpret(nchw.get("predict"), [gamma, beta, mm, mv, np.zeros((0, 3, 4, 5), np.float32)])
    assert empty.shape == (0, 3, 4, 5)


def test_batch_norm_on_an_axis_of_one_and_a_batch_of_one():
    m = compile_source(_bn_model("N, 1, 4", ", axis=-2, momentum=0.5"), "m.dl")
    x = np.array([[[1.0, 2.0, 3.0, 6.0]]], np.float32)            # one sample, one channel
    gamma, beta = np.array([2.0], np.float32), np.array([0.5], np.float32)
    args = [gamma, beta, np.zeros(1, np.float32), np.ones(1, np.float32), x, x]
    _, new_mm, new_mv = interpret(m.get("loss"), args)
    np.testing.assert_allclose(new_mm, [3.0 * 0.5], rtol=1e-6)           # mean 3, var 3.5
    np.testing.assert_allclose(new_mv, [0.5 + 3.5 * 0.5], rtol=1e-6)
    np.testing.assert_allclose(_training_output(m, args), (x - 3.0) / np.sqrt(3.5 + 1e-3) * 2.0 + 0.5, rtol=1e-5)
    one = compile_source(_bn_model("N, 5"), "m.dl")                       # batch of 1: var 0, output beta
    x1 = np.random.default_rng(9).normal(size=(1, 5)).astype(np.float32)
    b = np.linspace(-1, 1, 5).astype(np.float32)
    out = _training_output(one, [np.ones(5, np.float32), b, np.zeros(5, np.float32), np.ones(5, np.float32), x1, x1])
    np.testing.assert_allclose(out, b[None], atol=1e-6)


def test_batch_norm_axis_trains_natively_as_in_the_interpreter():
    source = model_source("output p = dense(flatten(batch_norm(x, axis=1)), 3)", inputs="input x: f32[N, 2, 3, 4]")
    rng = np.random.default_rng(10)
    x, y = rng.normal(size=(40, 2, 3, 4)).astype(np.float32) * 2 + 1, rng.normal(size=(40, 3)).astype(np.float32)
    models = []
    for backend in ("native", "interp"):
        model = load_model(compile_source(source, "m.dl"), seed=2, backend=backend)
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
        models.append(model)
    assert models[0].model_state["batch_norm_1.moving_mean"].shape == (2,)
    for name, w in {**models[0].weights, **models[0].model_state}.items():
        want = {**models[1].weights, **models[1].model_state}[name]
        np.testing.assert_allclose(w, want, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("shape, extra, problem", [
    ("N, 3, 4", ", axis=3", "must be in [-3, 3) for f32[N, 3, 4], got 3"),
    ("N, 3, 4", ", axis=0", "needs a static size on its axis 0"),
    ("N", "", "needs a float input of rank >= 2")])
def test_batch_norm_axis_is_checked(shape, extra, problem):
    msgs = messages(_bn_model(shape, extra))
    assert any(problem in msg for msg in msgs), msgs


def test_batch_norm_gradient_in_training_mode_is_the_full_one():
    """Through the batch statistics: finite differences of the training-form loss agree."""
    m = compile_source(MLP, "m.dl")
    wrt = [p["name"] for p in m.attrs["model"]["params"]]
    report = gradcheck(m, "loss", wrt, bindings={"N": 7}, inputs={"rng": np.array(5, np.int64)},
                       int_ranges={"y": 3})
    assert report.passed, str(report)
    assert all(a.max_grad > 0 for a in report.args)
    # a constant shift of the input to batch norm changes nothing: the gradient of the loss
    # with respect to the first bias (which only shifts h1) is zero through the batch mean
    bias = next(a for a in report.args if a.name == "dense_1.bias")
    assert bias.ok


def test_batch_norm_bias_gradient_vanishes_through_the_batch_mean():
    m = compile_source(MLP, "m.dl")
    build_train_step(m)
    grads = [f for f in m.functions if f.name == "train_step"]
    assert grads
    from compiler.passes.autodiff import grad
    g = grad(m, "loss", ["dense_1.bias"], new_name="g")
    rng = np.random.default_rng(3)
    args = []
    for p in m.get("loss").params:
        shape = [7 if isinstance(d, str) else d for d in p.type.shape]
        if p.name == "y":
            args.append(rng.integers(0, 3, shape).astype(np.int32))
        elif p.name == "rng":
            args.append(np.array(1, np.int64))
        elif "moving_variance" in p.name or "gamma" in p.name:
            args.append(np.ones(shape, np.float32))
        else:
            args.append(rng.normal(size=shape).astype(np.float32))
    (d_bias,) = interpret(g, args)
    np.testing.assert_allclose(d_bias, 0, atol=1e-6)


def test_batch_norm_state_is_excluded_from_gradients_and_the_optimizer():
    m = compile_source(MLP, "m.dl")
    sig = train_signature(m)
    assert [n for n, _ in sig.params] == [p["name"] for p in m.attrs["model"]["params"]]
    assert {n for n, _ in sig.model_state} == {"batch_norm_1.moving_mean", "batch_norm_1.moving_variance"}
    msgs = messages(model_source("output p = batch_norm(i)", inputs="input i: i32[N, 3]",
                                 target="target y: f32[N, 3]"))
    assert any("batch_norm needs a float input" in msg for msg in msgs)


# ---------------------------------------------------------------------------
# Layer norm, group norm


def test_layer_norm_normalizes_each_row():
    m = compile_source(model_source("output p = layer_norm(x, epsilon=0.01)", target="target y: f32[N, 6]"),
                       "m.dl")
    assert m.get("predict").attrs["mode"] == "inference" and "state" not in m.attrs["model"]
    x = np.random.default_rng(4).normal(size=(9, 6)).astype(np.float32) * 5
    gamma, beta = np.full(6, 2.0, np.float32), np.full(6, 0.5, np.float32)
    (p,) = interpret(m.get("predict"), [gamma, beta, x])
    x64 = x.astype(np.float64)
    want = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 0.01) * 2 + 0.5
    np.testing.assert_allclose(p, want, rtol=1e-5, atol=1e-5)
    assert m.get("loss").output_names == ["loss"]      # no modes: the loss alone


def test_group_norm_normalizes_each_group_of_channels():
    m = compile_source(model_source("output p = group_norm(x, groups=2)", inputs="input x: f32[N, 3, 4]",
                                    target="target y: f32[N, 3, 4]"), "m.dl")
    x = np.random.default_rng(5).normal(size=(2, 3, 4)).astype(np.float32) * 3 + 1
    gamma, beta = np.arange(1, 5, dtype=np.float32), np.ones(4, np.float32)
    (p,) = interpret(m.get("predict"), [gamma, beta, x])
    g = x.astype(np.float64).reshape(2, 3, 2, 2)
    mean, var = g.mean((1, 3), keepdims=True), g.var((1, 3), keepdims=True)
    want = ((g - mean) / np.sqrt(var + 1e-3)).reshape(2, 3, 4) * gamma + beta
    np.testing.assert_allclose(p, want, rtol=1e-5, atol=1e-5)
    msgs = messages(model_source("output p = group_norm(x, groups=4)", target="target y: f32[N, 6]"))
    assert any("divides the 6 channels" in msg for msg in msgs)


# ---------------------------------------------------------------------------
# Training: native and interpreter, threads, seeds, predict at any batch size


@pytest.fixture(scope="module")
def trained():
    x, y = data()
    model = load_model(compile_source(MLP, "m.dl"), seed=3, backend="native")
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    return model, x, y


def test_native_training_equals_the_interpreter(trained):
    native, x, y = trained
    interp = load_model(compile_source(MLP, "m.dl"), seed=3, backend="interp")
    interp.fit(x, y, epochs=2, batch_size=32, verbose=0)
    for name, w in native.weights.items():
        np.testing.assert_allclose(w, interp.weights[name], rtol=1e-5, atol=1e-6, err_msg=name)
    for name, s in native.model_state.items():
        np.testing.assert_allclose(s, interp.model_state[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert native.step == interp.step == 14


# Wide enough that kernels split into tasks on 2 threads (batch 256 x 384 features: the
# elementwise kernels and matmuls exceed the per-task work of compiler/codegen/kernels.py, gemm.py).
WIDE = MLP.replace("f32[N, 6]", "f32[N, 64]").replace("dense(x, 16)", "dense(x, 384)")


def test_same_seed_gives_bit_identical_weights_at_one_and_two_threads():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(512, 64)).astype(np.float32)
    y = rng.integers(0, 3, 512).astype(np.int32)
    results = []
    for t in (1, 2, 1):
        model = load_model(compile_source(WIDE, "m.dl"), seed=11, backend="native")
        model.backend.compiled.set_num_threads(t)
        model.fit(x, y, epochs=2, batch_size=256, verbose=0)
        results.append({**model.weights, **model.model_state})
    for other in results[1:]:
        for name, w in results[0].items():
            np.testing.assert_array_equal(w, other[name], err_msg=name)
    model = load_model(compile_source(WIDE, "m.dl"), seed=12, backend="native")
    model.fit(x, y, epochs=2, batch_size=256, verbose=0)
    assert not np.array_equal(model.weights["dense_2.kernel"], results[0]["dense_2.kernel"])


def test_the_same_initial_weights_with_other_seeds_draw_other_masks():
    """The seed reaches the masks, not only the initial weights."""
    x, y = data(64)
    a = load_model(compile_source(MLP, "m.dl"), seed=1, backend="interp")
    b = load_model(compile_source(MLP, "m.dl"), seed=2, backend="interp")
    b.set_weights(a.weights)
    a.fit(x, y, epochs=1, batch_size=64, verbose=0, shuffle=False)
    b.fit(x, y, epochs=1, batch_size=64, verbose=0, shuffle=False)
    assert not np.array_equal(a.weights["dense_2.kernel"], b.weights["dense_2.kernel"])
    # but the moving statistics do not depend on the mask
    np.testing.assert_array_equal(a.model_state["batch_norm_1.moving_mean"],
                                  b.model_state["batch_norm_1.moving_mean"])


def test_predict_at_batch_one_equals_batch_128(trained):
    model, x, _ = trained
    full = model.predict(x[:128], batch_size=128)
    rows = np.concatenate([model.predict(x[i:i + 1], batch_size=1) for i in range(128)])
    np.testing.assert_allclose(rows, full, rtol=0, atol=1e-6)
    assert np.abs(full.sum(1) - 1).max() < 1e-5


def test_training_moves_the_state_and_evaluate_uses_it(trained):
    model, x, y = trained
    state = model.model_state
    assert np.abs(state["batch_norm_1.moving_mean"]).max() > 0.05
    assert not np.allclose(state["batch_norm_1.moving_variance"], 1.0)
    before = model.evaluate(x, y)
    model2 = load_model(compile_source(MLP, "m.dl"), seed=3, backend="native")
    model2.set_weights(model.weights)                  # parameters only: the state is fresh
    assert model2.evaluate(x, y)["loss"] != pytest.approx(before["loss"])
    model2.set_weights(state)                          # the state can be set by name as well
    assert model2.evaluate(x, y)["loss"] == pytest.approx(before["loss"], rel=1e-6)


def test_summary_lists_the_state(trained):
    text = str(trained[0])
    assert "batch_norm_1.moving_mean" in text and "non-trainable state: 32" in text
    assert "total parameters: 195" in text               # 6*16+16 + 16+16 + 16*3+3


# ---------------------------------------------------------------------------
# Checkpoints


def test_checkpoint_round_trip_keeps_the_state(trained, tmp_path):
    model, x, _ = trained
    path = model.save(tmp_path / "ckpt.npz")
    with zipfile.ZipFile(path) as z:
        assert "model_state/batch_norm_1.moving_mean.npy" in z.namelist()
    fresh = load_model(compile_source(MLP, "m.dl"), seed=0, backend="native", weights=path)
    for name, s in model.model_state.items():
        np.testing.assert_array_equal(fresh.model_state[name], s)
    np.testing.assert_array_equal(fresh.predict(x[:10]), model.predict(x[:10]))
    assert fresh.step == model.step


def test_a_checkpoint_must_hold_exactly_the_models_state(trained, tmp_path):
    model, _, _ = trained
    path = model.save(tmp_path / "ckpt.npz")
    _rewrite(path, tmp_path / "cut.npz", drop="model_state")
    with pytest.raises(DlRuntimeError, match="checkpoint has no state 'batch_norm_1.moving_mean'"):
        load_model(compile_source(MLP, "m.dl"), backend="interp", weights=tmp_path / "cut.npz")
    plain = load_model(compile_source(model_source("output p = dense(x, 3)"), "m.dl"), backend="interp")
    extra = plain.save(tmp_path / "plain.npz")
    ckpt = load_checkpoint(extra)
    ckpt.model_state = {"stray.moving_mean": np.zeros(3, np.float32)}
    save_checkpoint(extra, ckpt)
    with pytest.raises(DlRuntimeError, match="holds state 'stray.moving_mean' which model 'm' does not"):
        plain.load_weights(extra)


def _rewrite(src: Path, dst: Path, *, drop: str | None = None, meta_field: tuple | None = None) -> None:
    arrays = dict(np.load(src, allow_pickle=False))
    meta = json.loads(str(arrays["__meta__"]))
    if drop is not None:
        meta.pop(drop, None)
        arrays = {k: v for k, v in arrays.items() if not k.startswith(drop + "/")}
    if meta_field is not None:
        meta[meta_field[0]] = meta_field[1]
    arrays["__meta__"] = np.array(json.dumps(meta))
    np.savez(dst, **arrays)


@pytest.mark.parametrize("value", ["x", {"a": 1}, [{"name": 3, "shape": [16], "dtype": "float32"}],
                                   [{"name": "batch_norm_1.moving_mean", "shape": [-1], "dtype": "float32"}]])
def test_checkpoint_state_records_are_type_checked(trained, tmp_path, value):
    model, _, _ = trained
    path = model.save(tmp_path / "ckpt.npz")
    _rewrite(path, tmp_path / "bad.npz", meta_field=("model_state", value))
    with pytest.raises(DlRuntimeError, match="corrupt checkpoint"):
        load_model(compile_source(MLP, "m.dl"), backend="interp", weights=tmp_path / "bad.npz")
