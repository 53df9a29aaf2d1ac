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
from ..cases import MLP_LR, Case
from . import Unavailable, check_attention, check_close, check_loss, check_params, check_sgemm, check_vmath

MODEL_PATH = Path(__file__).resolve().parent.parent / "mlp_sgd.dl"
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


BUILDERS = {"sgemm": _sgemm, "step": _step, "infer": _infer, "epoch": _epoch, "vmath": _vmath,
            "attention": _attention}


def build(impl: str, case: Case) -> Callable[[], object]:
    """The runnable for ``case`` (see :mod:`bench.peers`)."""
    return BUILDERS[case.id.split("-")[0]](case)


def time_load_model() -> dict[str, float]:
    """Seconds for ``load_model`` of the bench MLP (parse, lower, autodiff, codegen or cache)."""
    start = time.perf_counter()
    model = load_mlp()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "backend_compile_s": float(model.backend.compile_seconds)}
