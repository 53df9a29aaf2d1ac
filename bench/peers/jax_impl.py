"""JAX: ``jax.jit`` of the whole training step with donated parameter buffers.

Threads are set before JAX is imported (XLA_FLAGS, see :mod:`bench.worker`).
Every runnable blocks until its result is ready, so the time is the work's.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from .. import data
from ..cases import JAX, MLP_LR, Case
from . import Unavailable, check_attention, check_close, check_loss, check_params, check_sgemm

Params = dict[str, jax.Array]


def limit_threads(threads: int) -> None:
    """Nothing to do at run time: XLA_FLAGS was set before import."""


def describe(threads: int) -> dict:
    """jax / jaxlib versions and the devices XLA sees."""
    import os
    return {"jax": jax.__version__, "devices": [str(d) for d in jax.devices()],
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}


def _to_jax(p: data.MlpParams) -> Params:
    return {k: jnp.asarray(getattr(p, k)) for k in ("w1", "b1", "w2", "b2")}


def logits(params: Params, x: jax.Array) -> jax.Array:
    """Forward pass: ``relu(x W1 + b1) W2 + b2``."""
    h = jax.nn.relu(x @ params["w1"] + params["b1"])
    return h @ params["w2"] + params["b2"]


def loss_fn(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy from logits."""
    log_probs = jax.nn.log_softmax(logits(params, x))
    return -jnp.mean(jnp.take_along_axis(log_probs, y[:, None], axis=1))


@partial(jax.jit, donate_argnums=0)
def train_step(params: Params, x: jax.Array, y: jax.Array) -> tuple[Params, jax.Array]:
    """One SGD step; the old parameter buffers are donated to the new ones."""
    loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
    return jax.tree.map(lambda p, g: p - MLP_LR * g, params, grads), loss


predict = jax.jit(logits)
matmul = jax.jit(jnp.matmul)


class JaxMlp:
    """Holds the current parameters between jitted steps."""

    def __init__(self, p: data.MlpParams) -> None:
        self.params = _to_jax(p)

    def step(self, x: jax.Array, y: jax.Array) -> jax.Array:
        """One step, waiting for it to finish (a step's latency)."""
        return self.dispatch(x, y).block_until_ready()

    def dispatch(self, x: jax.Array, y: jax.Array) -> jax.Array:
        """One step without waiting: an epoch overlaps batching with compute."""
        self.params, loss = train_step(self.params, x, y)
        return loss

    def as_numpy(self) -> data.MlpParams:
        return data.MlpParams(*(np.asarray(self.params[k]) for k in ("w1", "b1", "w2", "b2")))


def _sgemm(case: Case) -> Callable[[], object]:
    a, b = data.matrices(case.params["m"], case.params["k"], case.params["n"])
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    check_sgemm(np.asarray(matmul(ja, jb)), a, b)
    return lambda: matmul(ja, jb).block_until_ready()


def _step(case: Case) -> Callable[[], object]:
    x, y = data.batch(case.params["batch"], case.params.get("images", "random"))
    params = data.mlp_params()
    mlp = JaxMlp(params)
    jx, jy = jnp.asarray(x), jnp.asarray(y)
    want, loss = data.reference_step(params, x, y, MLP_LR)
    check_loss(JAX, float(mlp.step(jx, jy)), loss)
    check_params(JAX, mlp.as_numpy(), want)
    return lambda: mlp.step(jx, jy)


def _infer(case: Case) -> Callable[[], object]:
    x, _ = data.batch(case.params["batch"], case.params.get("images", "random"))
    params = data.mlp_params()
    jp, jx = _to_jax(params), jnp.asarray(x)
    want = data.reference_logits(params, x)
    check_close("logits", np.asarray(predict(jp, jx)), want,
                max(1.0, float(np.abs(want).max())), 1e-4)
    return lambda: predict(jp, jx).block_until_ready()


def _epoch(case: Case) -> Callable[[], object]:
    mnist = data.mnist_train()
    mlp = JaxMlp(data.mlp_params())
    rng = np.random.default_rng(0)
    size = case.params["batch"]

    def epoch() -> jax.Array:
        order = rng.permutation(len(mnist.y))
        loss = None
        for start in range(0, len(order), size):
            idx = order[start:start + size]
            loss = mlp.dispatch(mnist.x[idx], mnist.y[idx])
        return loss.block_until_ready()

    return epoch


def _attention(case: Case) -> Callable[[], object]:
    """``jax.nn.dot_product_attention(is_causal=True)`` (its layout is ``[B, T, H, D]``: the
    inputs are transposed once, outside the timing), jitted; the backward is ``jax.grad`` of
    ``sum(out * w)``."""
    arrays = data.attention_inputs(tuple(case.params["shape"]))
    q, k, v, w = (jnp.asarray(a.transpose(0, 2, 1, 3)) for a in arrays)

    def attend(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
        return jax.nn.dot_product_attention(q, k, v, is_causal=True)

    if not case.params["backward"]:
        fn = jax.jit(attend)
        got = np.asarray(fn(q, k, v)).transpose(0, 2, 1, 3)
        check_attention("jax", got, *arrays, False)
        return lambda: fn(q, k, v).block_until_ready()
    grads = jax.jit(jax.grad(lambda q, k, v: jnp.sum(attend(q, k, v) * w), argnums=(0, 1, 2)))
    got = [np.asarray(g).transpose(0, 2, 1, 3) for g in grads(q, k, v)]
    check_attention("jax", got, *arrays, True)
    return lambda: jax.block_until_ready(grads(q, k, v))


BUILDERS = {"sgemm": _sgemm, "step": _step, "infer": _infer, "epoch": _epoch, "attention": _attention}


def build(impl: str, case: Case) -> Callable[[], object]:
    """The runnable for ``case`` (see :mod:`bench.peers`)."""
    kind = case.id.split("-")[0]
    if kind not in BUILDERS:
        raise Unavailable(f"no {impl} implementation of {kind}")
    return BUILDERS[kind](case)
