"""dlc: ``runtime.compile`` for sgemm and vector math, ``runtime.load_model`` for the MLP.

The MLP is ``bench/mlp_sgd.dl``.  Its training step is timed as ``fit`` runs
it: one call of the model backend's compiled ``train_step`` on the weights,
the batch and the learning rate (no public single-step API exists; this is
the loop body of ``Model.fit``).  Inference is ``Model.predict``, the epoch
is ``Model.fit`` (shuffling and batching included).  The worker sets
``DLC_NUM_THREADS`` before dlc is imported.

Anything dlc cannot do yet becomes :class:`Unavailable` with the reason.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import data
from ..cases import (
    ADAM_EPSILON,
    ADDER_T,
    ADDER_VOCAB,
    CHAR_CONTEXT,
    CHAR_VOCAB,
    CNN_IMAGE,
    MLP_LR,
    Case,
)
from . import (
    Unavailable,
    builder_kind,
    check_attention,
    check_close,
    check_conv_forward,
    check_conv_grads,
    check_finite_loss,
    check_gpt_step,
    check_greedy,
    check_logits,
    check_loss,
    check_params,
    check_sgemm,
    check_vmath,
)

MODEL_PATH = Path(__file__).resolve().parent.parent / "mlp_sgd.dl"
CNN_PATH = MODEL_PATH.parent / "cnn_adam.dl"
MLPBN_PATH = MODEL_PATH.parent.parent / "examples" / "fmnist_mlp_dropout_bn.dl"
ADDER_GPT_PATH = MODEL_PATH.parent.parent / "examples" / "adder_gpt.dl"
CHAR_GPT_PATH = MODEL_PATH.parent.parent / "examples" / "char_gpt.dl"
MATMUL_SOURCE = "fn mm(a: f32[M, K], b: f32[K, N]) -> f32[M, N] { return a @ b }\n"


def vmath_source(fn: str) -> str:
    """A one-function ``.dl`` program applying ``fn`` to a vector."""
    return f"fn v{fn}(x: f32[N]) -> f32[N] {{ return {fn}(x) }}\n"


def limit_threads(threads: int) -> None:
    """Nothing to do at run time: DLC_NUM_THREADS was set before import."""


def describe(threads: int) -> dict:
    """DLC_NUM_THREADS, the LLVM host CPU, and whether the runtime entry points exist."""
    info: dict[str, Any] = {"DLC_NUM_THREADS": os.environ.get("DLC_NUM_THREADS")}
    try:
        import llvmlite
        import llvmlite.binding as llvm
        info["llvmlite"] = llvmlite.__version__
        info["llvm_host_cpu"] = llvm.get_host_cpu_name()
    except Exception as e:   # describe never fails: it only reports
        info["llvmlite"] = f"unavailable: {e}"
    try:
        from compiler.codegen.threads import num_threads
        info["dlc_num_threads"] = num_threads()
    except Exception as e:   # the thread pool may not exist in this version of dlc
        info["dlc_num_threads"] = f"unknown: {type(e).__name__}: {e}"
    try:
        rt = runtime_module("compile", "load_model")
        info["runtime"] = "ok"
        info["runtime_file"] = getattr(rt, "__file__", None)
    except Unavailable as e:
        info["runtime"] = str(e)
    return info


def runtime_module(*needed: str) -> Any:
    """The ``runtime`` package, if it has the ``needed`` entry points; else :class:`Unavailable`."""
    try:
        import runtime
    except Exception as e:
        raise Unavailable(f"import runtime failed: {type(e).__name__}: {e}") from None
    missing = [n for n in needed if not callable(getattr(runtime, n, None))]
    if missing:
        raise Unavailable(f"runtime.{' and runtime.'.join(missing)} not there yet")
    return runtime


def _dlc_call(what: str, fn: Callable[[], Any]) -> Any:
    """Run a dlc API call, turning any failure into :class:`Unavailable`."""
    try:
        return fn()
    except Unavailable:
        raise
    except Exception as e:
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise Unavailable(f"{what} failed: {type(e).__name__}: {first_line}") from None


def compile_function(source: str, name: str) -> Callable[..., Any]:
    """Compile ``source`` with ``runtime.compile`` and return its function ``name``."""
    rt = runtime_module("compile")
    module = _dlc_call("runtime.compile", lambda: rt.compile(source))
    return _dlc_call(f"looking up {name!r}", lambda: module[name])


def load_mlp(params: data.MlpParams | None = None, backend: str = "native") -> Any:
    """``bench/mlp_sgd.dl`` as a Model (native code unless told), optionally with given weights.

    The bench always times ``native``; the tests check this adapter on ``interp``.
    """
    rt = runtime_module("load_model")
    if backend == "native":
        runtime_module("compile")     # without it load_model would quietly interpret
    model = _dlc_call("load_model", lambda: rt.load_model(MODEL_PATH, seed=0, backend=backend))
    if params is not None:
        _dlc_call("set_weights", lambda: model.set_weights(_by_name(model, params)))
    return model


def _by_name(model: Any, params: data.MlpParams) -> dict[str, np.ndarray]:
    """Map the bench's weights onto the model's parameter names by shape."""
    ours = {(784, 512): params.w1, (512,): params.b1, (512, 10): params.w2, (10,): params.b2}
    named = {}
    for name, value in model.weights.items():
        if value.shape not in ours:
            raise Unavailable(f"mlp_sgd.dl has an unexpected parameter {name} {value.shape}")
        named[name] = ours[value.shape]
    return named


def _as_params(model: Any, tensors: list[np.ndarray]) -> data.MlpParams:
    by_shape = {t.shape: t for t in tensors[:len(model.param_names)]}
    return data.MlpParams(by_shape[(784, 512)], by_shape[(512,)], by_shape[(512, 10)],
                          by_shape[(10,)])


class DlcStep:
    """The body of ``Model.fit``'s loop: one native ``train_step`` call per batch."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.tensors = [*model.weights.values(), *model.optimizer_state.values()]
        self.lr = np.array(model.learning_rate, dtype=np.float32)

    def __call__(self, x: np.ndarray, y: np.ndarray) -> float:
        out = self.model.backend.train_step([*self.tensors, x, y, self.lr])
        self.tensors = list(out[1:1 + len(self.tensors)])
        return out[0]


def _sgemm(case: Case) -> Callable[[], object]:
    mm = compile_function(MATMUL_SOURCE, "mm")
    a, b = data.matrices(case.params["m"], case.params["k"], case.params["n"])
    check_sgemm(_dlc_call("mm", lambda: mm(a, b)), a, b)
    return lambda: mm(a, b)


def _step(case: Case, backend: str = "native") -> Callable[[], object]:
    x, y = data.batch(case.params["batch"], case.params.get("images", "random"))
    params = data.mlp_params()
    model = load_mlp(params, backend)
    if abs(model.learning_rate - MLP_LR) > 1e-9:
        raise Unavailable(f"mlp_sgd.dl has learning rate {model.learning_rate}, bench uses {MLP_LR}")
    step = DlcStep(model)
    want, loss = data.reference_step(params, x, y, MLP_LR)
    check_loss("dlc", float(_dlc_call("train_step", lambda: step(x, y))), loss)
    check_params("dlc", _as_params(model, step.tensors), want)
    return lambda: step(x, y)


def _infer(case: Case, backend: str = "native") -> Callable[[], object]:
    x, _ = data.batch(case.params["batch"], case.params.get("images", "random"))
    params = data.mlp_params()
    model = load_mlp(params, backend)
    want = data.reference_logits(params, x)
    got = _dlc_call("predict", lambda: model.predict(x))
    check_close("logits", got, want, max(1.0, float(np.abs(want).max())), 1e-4)
    return lambda: model.predict(x)


def _epoch(case: Case, backend: str = "native") -> Callable[[], object]:
    mnist = data.mnist_train()
    model = load_mlp(backend=backend)
    size = case.params["batch"]

    def epoch() -> Any:
        return model.fit(mnist.x, mnist.y, epochs=1, batch_size=size, shuffle=True, verbose=0)

    return epoch


def _vmath(case: Case) -> Callable[[], object]:
    fn = case.params["fn"]
    func = compile_function(vmath_source(fn), f"v{fn}")
    x = data.vmath_input(fn, case.params["elements"])
    check_vmath(fn, _dlc_call(fn, lambda: func(x)), data.vmath_reference(fn, x))
    return lambda: func(x)


def conv_source(case: Case) -> str:
    """``fwd(x, w)`` and ``bwd(x, w, dy) -> (dx, dw)``: a 3x3 'same' convolution and its two gradient ops."""
    n, size, c, oc, k = (case.params[key] for key in ("n", "size", "c", "oc", "k"))
    pad, hw = (k - 1) // 2, f"{size}, {size}"
    geometry = f"padding=[{pad}, {pad}, {pad}, {pad}]"
    x, w, y = f"f32[N, {hw}, {c}]", f"f32[{k}, {k}, {c}, {oc}]", f"f32[N, {hw}, {oc}]"
    return (f"fn fwd(x: {x}, w: {w}) -> {y} {{ return conv2d(x, w, {geometry}) }}\n"
            f"fn bwd(x: {x}, w: {w}, dy: {y}) -> ({x}, {w}) {{\n"
            f"    return conv2d_backprop_input(dy, w, input_size=[{hw}], {geometry}),\n"
            f"           conv2d_backprop_filter(x, dy, filter_size=[{k}, {k}], {geometry})\n}}\n")


def _conv(case: Case) -> Callable[[], object]:
    p = case.params
    x, w, dy = data.conv_operands(p["n"], p["size"], p["c"], p["oc"], p["k"])
    pad = (p["k"] - 1) // 2
    if p["direction"] == "fwd":
        fwd = compile_function(conv_source(case), "fwd")
        check_conv_forward(_dlc_call("conv2d", lambda: fwd(x, w)), x, w, pad)
        return lambda: fwd(x, w)
    bwd = compile_function(conv_source(case), "bwd")
    check_conv_grads(_dlc_call("conv2d gradients", lambda: bwd(x, w, dy)), x, w, dy, pad)
    return lambda: bwd(x, w, dy)


def _load(path: Path, backend: str, weights: dict[str, np.ndarray] | None = None) -> Any:
    """A model file as a Model (native unless told), with ``weights`` matched to parameters by shape."""
    rt = runtime_module("load_model")
    if backend == "native":
        runtime_module("compile")
    model = _dlc_call("load_model", lambda: rt.load_model(path, seed=0, backend=backend))
    if weights is not None:
        by_shape = {v.shape: v for v in weights.values()}
        _dlc_call("set_weights", lambda: model.set_weights(
            {name: by_shape[value.shape] for name, value in model.weights.items()}))
    return model


class DlcModelStep:
    """``Model.fit``'s loop body for any model: weights, optimizer and model state (batch norm's
    moving statistics), and for a model that draws random numbers the seed and step count."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.lr = np.array(model.learning_rate, dtype=np.float32)

    def __call__(self, x: np.ndarray, y: np.ndarray) -> float:
        return self.model._step([x, y], self.lr)[0]


def _cnn_step(case: Case, backend: str = "native") -> Callable[[], object]:
    x, y = data.image_batch(case.params["batch"])
    params = data.cnn_params()
    step = DlcModelStep(_load(CNN_PATH, backend, params))
    want = data.softmax_cross_entropy(data.reference_cnn_logits(params, x), y)
    check_loss("dlc", float(_dlc_call("train_step", lambda: step(x, y))), want)
    return lambda: step(x, y)


def _cnn_infer(case: Case, backend: str = "native") -> Callable[[], object]:
    x, _ = data.image_batch(case.params["batch"])
    params = data.cnn_params()
    model = _load(CNN_PATH, backend, params)
    check_logits(_dlc_call("predict", lambda: model.predict(x)), data.reference_cnn_logits(params, x))
    return lambda: model.predict(x)


def _cnn_epoch(case: Case, backend: str = "native") -> Callable[[], object]:
    mnist = data.mnist_train()
    images = mnist.x.reshape(len(mnist.y), *CNN_IMAGE)
    model = _load(CNN_PATH, backend, data.cnn_params())
    size = case.params["batch"]
    return lambda: model.fit(images, mnist.y, epochs=1, batch_size=size, shuffle=True, verbose=0)


def _mlpbn_step(case: Case, backend: str = "native") -> Callable[[], object]:
    """examples/fmnist_mlp_dropout_bn.dl with its own (seed 0) initial weights: dropout makes
    the step's numbers differ from every peer's anyway, so only a finite loss is checked."""
    x, y = data.batch(case.params["batch"], "mnist")
    step = DlcModelStep(_load(MLPBN_PATH, backend))
    check_finite_loss("dlc", float(_dlc_call("train_step", lambda: step(x, y))))
    return lambda: step(x, y)


def attention_source(shape: tuple[int, ...]) -> str:
    """``attn(q, k, v)`` (causal attention) and ``dloss`` (its gradients for
    ``sum(attn(q, k, v) * w)``) over static ``[B, H, T, D]`` tensors."""
    t = f"f32[{', '.join(str(n) for n in shape)}]"
    return (f"fn attn(q: {t}, k: {t}, v: {t}) -> {t} {{ return attention(q, k, v, causal=true) }}\n"
            f"fn loss(q: {t}, k: {t}, v: {t}, w: {t}) -> f32[] {{\n"
            f"    return sum(attention(q, k, v, causal=true) * w)\n}}\n"
            "fn dloss = grad(loss, wrt=[q, k, v])\n")


def _attention(case: Case) -> Callable[[], object]:
    shape, backward = tuple(case.params["shape"]), case.params["backward"]
    fn = compile_function(attention_source(shape), "dloss" if backward else "attn")
    q, k, v, w = data.attention_inputs(shape)
    args = (q, k, v, w) if backward else (q, k, v)
    check_attention("dlc", _dlc_call("attention", lambda: fn(*args)), q, k, v, w, backward)
    return lambda: fn(*args)


def _load_gpt(path: Path, backend: str, params: dict[str, np.ndarray]) -> Any:
    """A GPT example with the bench's weights, which carry dlc's parameter names."""
    rt = runtime_module("load_model")
    if backend == "native":
        runtime_module("compile")
    model = _dlc_call("load_model", lambda: rt.load_model(path, seed=0, backend=backend))
    if set(model.weights) != set(params):
        raise Unavailable(f"{path.name}'s parameters are not the bench's: "
                          f"{sorted(set(model.weights) ^ set(params))[:3]}")
    _dlc_call("set_weights", lambda: model.set_weights(params))
    return model


def _gpt_step(case: Case, backend: str = "native") -> Callable[[], object]:
    """examples/adder_gpt.dl's training step (``Model.fit``'s loop body), checked against the
    float64 first step: loss and every weight."""
    x, y = data.adder_batch(case.params["batch"])
    params = data.gpt_params(ADDER_VOCAB, ADDER_T, ADDER_VOCAB)
    model = _load_gpt(ADDER_GPT_PATH, backend, params)
    step = DlcModelStep(model)
    want, loss = data.reference_gpt_step(params, x, y, ADAM_EPSILON)
    got = float(_dlc_call("train_step", lambda: step(x, y)))
    check_gpt_step("dlc", got, model.weights, loss, want)
    return lambda: step(x, y)


def _gpt_generate(case: Case, backend: str = "native") -> Callable[[], object]:
    """examples/char_gpt.dl through the runtime's public generation function
    (``runtime.commands.generate.generate``, what ``dlc generate`` runs), greedy."""
    params = data.gpt_params(CHAR_VOCAB, CHAR_CONTEXT, CHAR_VOCAB)
    model = _load_gpt(CHAR_GPT_PATH, backend, params)
    try:
        from runtime.commands.generate import generate
    except Exception as e:
        raise Unavailable(f"runtime.commands.generate not importable: {type(e).__name__}: {e}") from None
    prompt, count = data.char_prompt(case.params["prompt"]), case.params["tokens"]

    def run() -> list[int]:
        return generate(model, prompt, count, 0.0, seed=0)

    check_greedy("dlc", _dlc_call("generate", run), prompt, count, params)
    return run


BUILDERS = {"sgemm": _sgemm, "step": _step, "infer": _infer, "epoch": _epoch, "vmath": _vmath,
            "conv": _conv, "cnn-step": _cnn_step, "cnn-infer": _cnn_infer, "cnn-epoch": _cnn_epoch,
            "mlpbn-step": _mlpbn_step,
            "attention": _attention, "gpt-step": _gpt_step, "gpt-generate": _gpt_generate}


def build(impl: str, case: Case) -> Callable[[], object]:
    """The runnable for ``case`` (see :mod:`bench.peers`)."""
    return BUILDERS[builder_kind(case)](case)


XOR_PATH = Path(__file__).resolve().parents[2] / "examples" / "xor.dl"


def time_load_xor() -> dict[str, float]:
    """Seconds for ``load_model`` of ``examples/xor.dl`` (9 parameters, Adam) and its first
    training step on the four XOR points: what compile costs where the model is tiny."""
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    y = np.array([[0], [1], [1], [0]], np.float32)
    rt = runtime_module("load_model")
    runtime_module("compile")
    start = time.perf_counter()
    model = _dlc_call("load_model", lambda: rt.load_model(XOR_PATH, seed=0))
    loss = float(DlcModelStep(model)(x, y))
    seconds = time.perf_counter() - start
    if not np.isfinite(loss):
        raise Unavailable(f"xor.dl's first training step gave loss {loss}")
    return {"seconds": seconds, "backend_compile_s": float(model.backend.compile_seconds)}


def time_load_model() -> dict[str, float]:
    """Seconds for ``load_model`` of the bench MLP and its first training step at batch 128
    (parse, lower, autodiff, the step's codegen or cache hit -- functions compile at first
    use -- and one step)."""
    x, y = data.batch(128, "random")
    start = time.perf_counter()
    model = load_mlp()
    DlcStep(model)(x, y)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "backend_compile_s": float(model.backend.compile_seconds)}
