"""numpy: ``a @ b``, a hand-written MLP (forward, softmax cross-entropy backward, SGD), ufuncs.

This worker runs with OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset (see
:mod:`bench.worker`) and its BLAS threads limited through threadpoolctl.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import data
from ..cases import MLP_LR, NUMPY, Case
from . import Unavailable, check_loss, check_params, check_sgemm, check_vmath

_limiter = None   # keeps threadpoolctl's limit alive for the worker's lifetime


def limit_threads(threads: int) -> None:
    """Limit BLAS (and OpenMP) threads through threadpoolctl, if installed."""
    global _limiter
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    _limiter = threadpool_limits(limits=threads)


def blas_info() -> list[dict]:
    """threadpoolctl's view of the loaded BLAS: library, version, kernel, threads."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"error": "threadpoolctl not installed (run bench with --setup)"}]
    keep = ("internal_api", "version", "architecture", "num_threads", "threading_layer")
    return [{k: v for k, v in lib.items() if k in keep} for lib in threadpool_info()]


def describe(threads: int) -> dict:
    """numpy version and BLAS kernel as threadpoolctl reports them."""
    return {"numpy": np.__version__, "blas": blas_info()}


class NumpyMlp:
    """The 784-512-10 MLP with a hand-written backward pass and in-place SGD."""

    def __init__(self, params: data.MlpParams, lr: float = MLP_LR) -> None:
        self.p = params.copy()
        self.lr = np.float32(lr)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Forward pass (inference): ``relu(x W1 + b1) W2 + b2``."""
        h = x @ self.p.w1
        h += self.p.b1
        np.maximum(h, 0, out=h)
        z = h @ self.p.w2
        z += self.p.b2
        return z

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        """One SGD step on a batch; returns the loss before the update."""
        p, n = self.p, len(y)
        rows = np.arange(n)
        h = x @ p.w1
        h += p.b1
        np.maximum(h, 0, out=h)
        z = h @ p.w2
        z += p.b2
        z -= z.max(axis=1, keepdims=True)
        z_true = z[rows, y]
        np.exp(z, out=z)
        total = z.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(total[:, 0]) - z_true))
        z /= total                        # z is now softmax(logits)
        z[rows, y] -= 1
        z *= np.float32(1.0 / n)          # dL/dlogits
        dh = z @ p.w2.T
        dh *= h > 0
        _sgd(p.w2, h.T @ z, self.lr)
        _sgd(p.b2, z.sum(axis=0), self.lr)
        _sgd(p.w1, x.T @ dh, self.lr)
        _sgd(p.b1, dh.sum(axis=0), self.lr)
        return loss


def _sgd(weight: np.ndarray, grad: np.ndarray, lr: np.float32) -> None:
    """``weight -= lr * grad`` in place, reusing ``grad``'s buffer for the product."""
    grad *= lr
    weight -= grad


def _sgemm(case: Case) -> Callable[[], object]:
    a, b = data.matrices(case.params["m"], case.params["k"], case.params["n"])
    check_sgemm(a @ b, a, b)
    return lambda: a @ b


def _step(case: Case) -> Callable[[], object]:
    x, y = data.batch(case.params["batch"], case.params.get("images", "random"))
    params = data.mlp_params()
    mlp = NumpyMlp(params)
    want, loss = data.reference_step(params, x, y, MLP_LR)
    check_loss(NUMPY, mlp.step(x, y), loss)
    check_params(NUMPY, mlp.p, want)
    return lambda: mlp.step(x, y)


def _infer(case: Case) -> Callable[[], object]:
    x, _ = data.batch(case.params["batch"], case.params.get("images", "random"))
    params = data.mlp_params()
    mlp = NumpyMlp(params)
    want = data.reference_logits(params, x)
    got = mlp.logits(x)
    if not np.allclose(got, want, rtol=1e-4, atol=1e-4):
        raise Unavailable("wrong result: numpy logits differ from the float64 reference")
    return lambda: mlp.logits(x)


def _epoch(case: Case) -> Callable[[], object]:
    mnist = data.mnist_train()
    mlp = NumpyMlp(data.mlp_params())
    rng = np.random.default_rng(0)
    size = case.params["batch"]

    def epoch() -> float:
        order = rng.permutation(len(mnist.y))
        loss = 0.0
        for start in range(0, len(order), size):
            idx = order[start:start + size]
            loss = mlp.step(mnist.x[idx], mnist.y[idx])
        return loss

    return epoch


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out = np.negative(x)
    np.exp(out, out=out)
    out += 1
    return np.reciprocal(out, out=out)


def _vmath(case: Case) -> Callable[[], object]:
    fn = case.params["fn"]
    x = data.vmath_input(fn, case.params["elements"])
    func = _sigmoid if fn == "sigmoid" else getattr(np, fn)
    with np.errstate(over="ignore"):
        check_vmath(fn, func(x), data.vmath_reference(fn, x))
    return lambda: func(x)


BUILDERS = {"sgemm": _sgemm, "step": _step, "infer": _infer, "epoch": _epoch, "vmath": _vmath}


def build(impl: str, case: Case) -> Callable[[], object]:
    """The runnable for ``case`` (see :mod:`bench.peers`)."""
    return BUILDERS[case.id.split("-")[0]](case)
