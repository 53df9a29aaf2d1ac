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
from ..cases import (
    ADAM_EPSILON,
    ADDER_T,
    ADDER_VOCAB,
    BN_EPSILON,
    BN_MOMENTUM,
    CHAR_CONTEXT,
    CHAR_VOCAB,
    CNN_IMAGE,
    CNN_LR,
    GPT_HEADS,
    JAX,
    MLP_LR,
    MLPBN_DROPOUT,
    MLPBN_HIDDEN,
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
)

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


def epoch_loop(dispatch: Callable[[np.ndarray, np.ndarray], jax.Array], x: np.ndarray, y: np.ndarray,
               size: int) -> Callable[[], jax.Array]:
    """One shuffled pass (seeded permutation) dispatching steps without waiting, then waiting once."""
    rng = np.random.default_rng(0)

    def epoch() -> jax.Array:
        order = rng.permutation(len(y))
        loss = None
        for start in range(0, len(order), size):
            idx = order[start:start + size]
            loss = dispatch(x[idx], y[idx])
        assert loss is not None
        return loss.block_until_ready()

    return epoch


def _epoch(case: Case) -> Callable[[], object]:
    mnist = data.mnist_train()
    return epoch_loop(JaxMlp(data.mlp_params()).dispatch, mnist.x, mnist.y, case.params["batch"])


# -- convolutions, the MNIST CNN, the dropout + batch-norm MLP ---------------------------------

NHWC = ("NHWC", "HWIO", "NHWC")


def conv(x: jax.Array, w: jax.Array, pad: int) -> jax.Array:
    """Stride-1 NHWC / HWIO convolution (``lax.conv_general_dilated``)."""
    return jax.lax.conv_general_dilated(x, w, (1, 1), [(pad, pad), (pad, pad)], dimension_numbers=NHWC)


def _conv(case: Case) -> Callable[[], object]:
    """``jit`` of the convolution; the backward is ``jit`` of its VJP (XLA drops the unused forward)."""
    p = case.params
    x, w, dy = data.conv_operands(p["n"], p["size"], p["c"], p["oc"], p["k"])
    pad = (p["k"] - 1) // 2
    jx, jw, jdy = jnp.asarray(x), jnp.asarray(w), jnp.asarray(dy)
    if p["direction"] == "fwd":
        fwd = jax.jit(partial(conv, pad=pad))
        check_conv_forward(np.asarray(fwd(jx, jw)), x, w, pad)
        return lambda: fwd(jx, jw).block_until_ready()

    @jax.jit
    def bwd(a: jax.Array, b: jax.Array, g: jax.Array) -> tuple[jax.Array, jax.Array]:
        return jax.vjp(partial(conv, pad=pad), a, b)[1](g)

    dx, dw = bwd(jx, jw, jdy)
    check_conv_grads((np.asarray(dx), np.asarray(dw)), x, w, dy, pad)
    return lambda: jax.block_until_ready(bwd(jx, jw, jdy))


def _max_pool2(x: jax.Array) -> jax.Array:
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def cnn_logits(p: Params, x: jax.Array) -> jax.Array:
    """The CNN's forward pass, NHWC throughout."""
    h = _max_pool2(jax.nn.relu(conv(x, p["k1"], 0) + p["b1"]))
    h = _max_pool2(jax.nn.relu(conv(h, p["k2"], 0) + p["b2"]))
    h = jax.nn.relu(h.reshape(h.shape[0], -1) @ p["w3"] + p["b3"])
    return h @ p["w4"] + p["b4"]


def cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(log_probs, y[:, None], axis=1))


def adam_init(params: Params) -> dict:
    """Zero moments (separate buffers: the step donates them) and a step count."""
    return {"m": jax.tree.map(jnp.zeros_like, params), "v": jax.tree.map(jnp.zeros_like, params),
            "t": jnp.zeros((), jnp.int32)}


def adam_update(params: Params, grads: Params, opt: dict) -> tuple[Params, dict]:
    """Keras' Adam (dlc's): bias correction folded into the step size, epsilon outside the root."""
    b1, b2 = 0.9, 0.999
    t = opt["t"] + 1
    alpha = CNN_LR * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    m = jax.tree.map(lambda m_, g: m_ + (g - m_) * (1 - b1), opt["m"], grads)
    v = jax.tree.map(lambda v_, g: v_ + (g * g - v_) * (1 - b2), opt["v"], grads)
    new = jax.tree.map(lambda p_, m_, v_: p_ - alpha * m_ / (jnp.sqrt(v_) + ADAM_EPSILON), params, m, v)
    return new, {"m": m, "v": v, "t": t}


@partial(jax.jit, donate_argnums=(0, 1))
def cnn_train_step(params: Params, opt: dict, x: jax.Array, y: jax.Array) -> tuple[Params, dict, jax.Array]:
    loss, grads = jax.value_and_grad(lambda p: cross_entropy(cnn_logits(p, x), y))(params)
    params, opt = adam_update(params, grads, opt)
    return params, opt, loss


cnn_predict = jax.jit(cnn_logits)


class JaxCnn:
    """Parameters and Adam state between jitted steps."""

    def __init__(self, p: data.CnnParams) -> None:
        self.params = {k: jnp.asarray(v) for k, v in p.items()}
        self.opt = adam_init(self.params)

    def dispatch(self, x: jax.Array, y: jax.Array) -> jax.Array:
        self.params, self.opt, loss = cnn_train_step(self.params, self.opt, x, y)
        return loss

    def step(self, x: jax.Array, y: jax.Array) -> jax.Array:
        return self.dispatch(x, y).block_until_ready()


def _cnn_step(case: Case) -> Callable[[], object]:
    x, y = data.image_batch(case.params["batch"])
    params = data.cnn_params()
    cnn = JaxCnn(params)
    jx, jy = jnp.asarray(x), jnp.asarray(y)
    want = data.softmax_cross_entropy(data.reference_cnn_logits(params, x), y)
    check_loss(JAX, float(cnn.step(jx, jy)), want)
    return lambda: cnn.step(jx, jy)


def _cnn_infer(case: Case) -> Callable[[], object]:
    x, _ = data.image_batch(case.params["batch"])
    params = data.cnn_params()
    jp, jx = {k: jnp.asarray(v) for k, v in params.items()}, jnp.asarray(x)
    check_logits(np.asarray(cnn_predict(jp, jx)), data.reference_cnn_logits(params, x))
    return lambda: cnn_predict(jp, jx).block_until_ready()


def _cnn_epoch(case: Case) -> Callable[[], object]:
    mnist = data.mnist_train()
    images = mnist.x.reshape(len(mnist.y), *CNN_IMAGE)
    return epoch_loop(JaxCnn(data.cnn_params()).dispatch, images, mnist.y, case.params["batch"])


def _batch_norm(h: jax.Array, gamma: jax.Array, beta: jax.Array,
                moving: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Training-mode batch norm and the moved statistics (Keras' momentum convention)."""
    mean, var = jnp.mean(h, axis=0), jnp.var(h, axis=0)
    moved = (moving[0] * BN_MOMENTUM + mean * (1 - BN_MOMENTUM),
             moving[1] * BN_MOMENTUM + var * (1 - BN_MOMENTUM))
    return (h - mean) * jax.lax.rsqrt(var + BN_EPSILON) * gamma + beta, moved


def _dropout(key: jax.Array, h: jax.Array) -> jax.Array:
    keep = jax.random.bernoulli(key, 1.0 - MLPBN_DROPOUT, h.shape)
    return jnp.where(keep, h / (1.0 - MLPBN_DROPOUT), 0.0)


def mlpbn_loss(p: Params, state: dict, key: jax.Array, x: jax.Array,
               y: jax.Array) -> tuple[jax.Array, dict]:
    """The dropout + batch-norm MLP's training loss and its new moving statistics."""
    k1, k2 = jax.random.split(key)
    h, m1 = _batch_norm(x @ p["w1"], p["g1"], p["be1"], state["bn1"])
    h = _dropout(k1, jax.nn.relu(h))
    h, m2 = _batch_norm(h @ p["w2"], p["g2"], p["be2"], state["bn2"])
    h = _dropout(k2, jax.nn.relu(h))
    return cross_entropy(h @ p["w3"] + p["b3"], y), {"bn1": m1, "bn2": m2}


@partial(jax.jit, donate_argnums=(0, 1, 2))
def mlpbn_train_step(params: Params, opt: dict, state: dict, key: jax.Array, x: jax.Array,
                     y: jax.Array) -> tuple[Params, dict, dict, jax.Array]:
    step_key = jax.random.fold_in(key, opt["t"])
    (loss, state), grads = jax.value_and_grad(mlpbn_loss, has_aux=True)(params, state, step_key, x, y)
    params, opt = adam_update(params, grads, opt)
    return params, opt, state, loss


def _mlpbn_step(case: Case) -> Callable[[], object]:
    x, y = data.batch(case.params["batch"], "mnist")
    params = {k: jnp.asarray(v) for k, v in data.mlpbn_params().items()}
    (h1, h2) = MLPBN_HIDDEN
    held = {"params": params, "opt": adam_init(params), "key": jax.random.key(0),
            "state": {"bn1": (jnp.zeros(h1), jnp.ones(h1)), "bn2": (jnp.zeros(h2), jnp.ones(h2))}}
    jx, jy = jnp.asarray(x), jnp.asarray(y)

    def step() -> jax.Array:
        held["params"], held["opt"], held["state"], loss = mlpbn_train_step(
            held["params"], held["opt"], held["state"], held["key"], jx, jy)
        return loss.block_until_ready()

    check_finite_loss(JAX, float(step()))
    return step


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


# -- the GPTs of issue 22 -----------------------------------------------------------------------


def _layer_norm(x: jax.Array, gamma: jax.Array, beta: jax.Array) -> jax.Array:
    mean = jnp.mean(x, -1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), -1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + data.GPT_EPSILON) * gamma + beta


def _gpt_block(p: Params, b: str, x: jax.Array, attend: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
               ) -> jax.Array:
    """One pre-norm block; ``attend`` maps q, k, v ``[B, T, H, hd]`` to the attended values."""
    n, t, d = x.shape
    y = _layer_norm(x, p[b + "ln1.gamma"], p[b + "ln1.beta"])
    q, k, v = ((y @ p[f"{b}attn.{w}_kernel"] + p[f"{b}attn.{w}_bias"]).reshape(n, t, GPT_HEADS, d // GPT_HEADS)
               for w in ("query", "key", "value"))
    x = x + attend(q, k, v).reshape(n, t, d) @ p[b + "attn.output_kernel"] + p[b + "attn.output_bias"]
    y = _layer_norm(x, p[b + "ln2.gamma"], p[b + "ln2.beta"])
    h = jax.nn.gelu(y @ p[b + "mlp.up.kernel"] + p[b + "mlp.up.bias"], approximate=False)
    return x + h @ p[b + "mlp.down.kernel"] + p[b + "mlp.down.bias"]


def _gpt_head(p: Params, x: jax.Array) -> jax.Array:
    return _layer_norm(x, p["ln_f.gamma"], p["ln_f.beta"]) @ p["head.kernel"] + p["head.bias"]


def _causal(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    return jax.nn.dot_product_attention(q, k, v, is_causal=True)


def gpt_logits(p: Params, tokens: jax.Array) -> jax.Array:
    """The GPT's logits ``[N, T, V]`` (causal attention over the whole sequence)."""
    x = p["tok.embeddings"][tokens] + p["pos.table.embeddings"][:tokens.shape[1]]
    for i in range(1, sum(1 for name in p if name.endswith(".ln1.gamma")) + 1):
        x = _gpt_block(p, f"transformer_block_{i}.", x, _causal)
    return _gpt_head(p, x)


def _gpt_loss(p: Params, x: jax.Array, y: jax.Array) -> jax.Array:
    return cross_entropy(gpt_logits(p, x)[:, x.shape[1] - y.shape[1]:].reshape(-1, ADDER_VOCAB), y.reshape(-1))


@partial(jax.jit, donate_argnums=(0, 1))
def gpt_train_step(params: Params, opt: dict, x: jax.Array, y: jax.Array) -> tuple[Params, dict, jax.Array]:
    """Keras' AdamW with global-norm clipping (dlc's): gradients scaled by ``c / max(norm, c)``,
    weights decayed ``p - p wd lr`` before the Adam update."""
    loss, grads = jax.value_and_grad(_gpt_loss)(params, x, y)
    norm = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))
    scale = data.GPT_CLIPNORM / jnp.maximum(norm, data.GPT_CLIPNORM)
    grads = jax.tree.map(lambda g: g * scale, grads)
    decayed = jax.tree.map(lambda w: w - w * data.GPT_WEIGHT_DECAY * data.GPT_LR, params)
    b1, b2 = data.ADAM_BETAS
    t = opt["t"] + 1
    alpha = data.GPT_LR * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    m = jax.tree.map(lambda m_, g: m_ + (g - m_) * (1 - b1), opt["m"], grads)
    v = jax.tree.map(lambda v_, g: v_ + (g * g - v_) * (1 - b2), opt["v"], grads)
    new = jax.tree.map(lambda w, m_, v_: w - alpha * m_ / (jnp.sqrt(v_) + ADAM_EPSILON), decayed, m, v)
    return new, {"m": m, "v": v, "t": t}, loss


def _gpt_step(case: Case) -> Callable[[], object]:
    x, y = data.adder_batch(case.params["batch"])
    params = data.gpt_params(ADDER_VOCAB, ADDER_T, ADDER_VOCAB)
    held = {"params": {k: jnp.asarray(v) for k, v in params.items()}}
    held["opt"] = adam_init(held["params"])
    jx, jy = jnp.asarray(x), jnp.asarray(y)

    def step() -> jax.Array:
        held["params"], held["opt"], loss = gpt_train_step(held["params"], held["opt"], jx, jy)
        return loss.block_until_ready()

    want, loss = data.reference_gpt_step(params, x, y, ADAM_EPSILON)
    got = float(step())
    check_gpt_step(JAX, got, {k: np.asarray(v) for k, v in held["params"].items()}, loss, want)
    return step


@partial(jax.jit, donate_argnums=(1,))
def gpt_decode(p: Params, cache: jax.Array, token: jax.Array, pos: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One token through the GPT with a fixed-size KV cache ``[blocks, 2, context, H, hd]``:
    writes this position's keys and values, attends over positions ``<= pos``; returns the
    cache and the next token's logits ``[V]``."""
    context = cache.shape[2]
    visible = (jnp.arange(context) <= pos)[None, None, None, :]      # [B, H, T, S]
    x = (p["tok.embeddings"][token] + p["pos.table.embeddings"][pos])[None, None, :]
    for i in range(cache.shape[0]):
        def attend(q: jax.Array, k: jax.Array, v: jax.Array, i: int = i) -> jax.Array:
            nonlocal cache
            cache = jax.lax.dynamic_update_slice(cache, jnp.stack([k[0], v[0]])[None], (i, 0, pos, 0, 0))
            return jax.nn.dot_product_attention(q, cache[i, 0][None], cache[i, 1][None], mask=visible)
        x = _gpt_block(p, f"transformer_block_{i + 1}.", x, attend)
    return cache, _gpt_head(p, x)[0, 0]


def jax_generate(p: Params, prompt: list[int], count: int) -> list[int]:
    """Greedy decoding, one jitted step per position (the prompt's too: they fill the cache)."""
    blocks = sum(1 for name in p if name.endswith(".ln1.gamma"))
    context, dim = p["pos.table.embeddings"].shape
    cache = jnp.zeros((blocks, 2, context, GPT_HEADS, dim // GPT_HEADS))
    tokens = list(prompt)
    for pos in range(len(prompt) + count - 1):
        cache, logits = gpt_decode(p, cache, jnp.int32(tokens[pos]), jnp.int32(pos))
        if pos >= len(prompt) - 1:
            tokens.append(int(jnp.argmax(logits)))
    return tokens


def _gpt_generate(case: Case) -> Callable[[], object]:
    params = data.gpt_params(CHAR_VOCAB, CHAR_CONTEXT, CHAR_VOCAB)
    jp = {k: jnp.asarray(v) for k, v in params.items()}
    prompt, count = data.char_prompt(case.params["prompt"]), case.params["tokens"]
    check_greedy(JAX, jax_generate(jp, prompt, count), prompt, count, params)
    return lambda: jax_generate(jp, prompt, count)


BUILDERS = {"sgemm": _sgemm, "step": _step, "infer": _infer, "epoch": _epoch, "conv": _conv,
            "cnn-step": _cnn_step, "cnn-infer": _cnn_infer, "cnn-epoch": _cnn_epoch,
            "mlpbn-step": _mlpbn_step,
            "attention": _attention, "gpt-step": _gpt_step, "gpt-generate": _gpt_generate}


def build(impl: str, case: Case) -> Callable[[], object]:
    """The runnable for ``case`` (see :mod:`bench.peers`)."""
    kind = builder_kind(case)
    if kind not in BUILDERS:
        raise Unavailable(f"no {impl} implementation of {kind}")
    return BUILDERS[kind](case)
