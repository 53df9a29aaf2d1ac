"""Inputs shared by every implementation: seeded arrays, MNIST, MLP weights.

Every worker builds its inputs here from the same seeds, so all
implementations of a case see identical data.  The bench reads MNIST itself
(a dozen lines of IDX) rather than through ``runtime.data``: the peers must
still be measurable while dlc is broken or half-built.
"""

from __future__ import annotations

import gzip
import math
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .cases import CNN_FILTERS, CNN_HIDDEN, CNN_IMAGE, EPOCH_SAMPLES, MLP_HIDDEN, MLP_IN, MLP_OUT, MLPBN_HIDDEN

REPO_ROOT = Path(__file__).resolve().parent.parent
MNIST_DIRS = (REPO_ROOT / "examples" / "data" / "mnist",
              REPO_ROOT.parent / "shared" / "data" / "mnist")


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (gzip-compressed or raw) of unsigned bytes.

    Raises ``ValueError`` for a file that is not IDX uint8.
    """
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says {shape}, file holds {data.size} bytes")
    return data.reshape(shape)


@dataclass(frozen=True)
class Mnist:
    """Training images as f32 ``[60000, 784]`` in [0, 1], labels as i32 ``[60000]``."""

    x: np.ndarray
    y: np.ndarray
    source: str


@lru_cache(maxsize=1)
def mnist_train() -> Mnist:
    """The MNIST training set, or seeded random data of its shape if absent."""
    for directory in MNIST_DIRS:
        images = directory / "train-images-idx3-ubyte.gz"
        labels = directory / "train-labels-idx1-ubyte.gz"
        if images.exists() and labels.exists():
            x = read_idx(images).reshape(-1, MLP_IN).astype(np.float32) / np.float32(255)
            y = read_idx(labels).astype(np.int32)
            return Mnist(np.ascontiguousarray(x), y, str(directory))
    rng = np.random.default_rng(7)
    x = rng.random((EPOCH_SAMPLES, MLP_IN), dtype=np.float32)
    y = rng.integers(0, MLP_OUT, EPOCH_SAMPLES).astype(np.int32)
    return Mnist(x, y, "random (MNIST not found)")


def matrices(m: int, k: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded f32 operands ``a[m, k]``, ``b[k, n]`` for sgemm."""
    rng = np.random.default_rng(m * 1_000_003 + k * 1009 + n)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    return a, b


def batch(size: int, images: str = "random") -> tuple[np.ndarray, np.ndarray]:
    """A seeded batch: images f32 ``[size, 784]``, labels i32 ``[size]``.

    ``images="random"``: uniform [0, 1) pixels (every pixel non-zero: the dense
    case); ``"mnist"``: real MNIST training images and labels (a seeded choice;
    about 81 % of their pixels are exactly zero).
    """
    rng = np.random.default_rng(size)
    if images == "mnist":
        mnist = mnist_train()
        rows = np.sort(rng.choice(len(mnist.y), size, replace=False))
        return np.ascontiguousarray(mnist.x[rows]), mnist.y[rows].copy()
    if images != "random":
        raise ValueError(f"unknown images {images!r} (random or mnist)")
    x = rng.random((size, MLP_IN), dtype=np.float32)
    y = rng.integers(0, MLP_OUT, size).astype(np.int32)
    return x, y


@dataclass
class MlpParams:
    """Weights of the 784-512-10 MLP in ``x @ w + b`` layout (w is ``[in, out]``)."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray

    def copy(self) -> MlpParams:
        return MlpParams(self.w1.copy(), self.b1.copy(), self.w2.copy(), self.b2.copy())


def mlp_params(seed: int = 0) -> MlpParams:
    """Glorot-uniform weights and zero biases, as Keras' ``dense`` defaults."""
    rng = np.random.default_rng(seed)

    def glorot(fan_in: int, fan_out: int) -> np.ndarray:
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)

    return MlpParams(glorot(MLP_IN, MLP_HIDDEN), np.zeros(MLP_HIDDEN, np.float32),
                     glorot(MLP_HIDDEN, MLP_OUT), np.zeros(MLP_OUT, np.float32))


def reference_loss(p: MlpParams, x: np.ndarray, y: np.ndarray) -> float:
    """Mean softmax cross-entropy of the MLP, in float64: the correctness oracle."""
    h = np.maximum(x.astype(np.float64) @ p.w1 + p.b1, 0.0)
    z = h @ p.w2 + p.b2
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(y)), y].mean())


def reference_logits(p: MlpParams, x: np.ndarray) -> np.ndarray:
    """The MLP's logits in float64: the oracle for inference."""
    h = np.maximum(x.astype(np.float64) @ p.w1 + p.b1, 0.0)
    return h @ p.w2 + p.b2


def vmath_input(fn: str, elements: int) -> np.ndarray:
    """Seeded f32 input in a range that exercises ``fn`` (positive for log)."""
    rng = np.random.default_rng(11)
    if fn == "log":
        return rng.uniform(1e-3, 1e3, elements).astype(np.float32)
    return rng.uniform(-10.0, 10.0, elements).astype(np.float32)


def vmath_reference(fn: str, x: np.ndarray) -> np.ndarray:
    """``fn`` evaluated in float64."""
    x64 = x.astype(np.float64)
    if fn == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x64))
    return getattr(np, fn)(x64)


def reference_step(p: MlpParams, x: np.ndarray, y: np.ndarray,
                   lr: float) -> tuple[MlpParams, float]:
    """One SGD step of the MLP in float64: ``(new params, loss before the step)``."""
    x64 = x.astype(np.float64)
    pre = x64 @ p.w1 + p.b1
    h = np.maximum(pre, 0.0)
    z = h @ p.w2 + p.b2
    z = z - z.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = float(-np.log(probs[rows, y]).mean())
    dz = probs.copy()
    dz[rows, y] -= 1.0
    dz /= len(y)
    dh = (dz @ p.w2.T) * (pre > 0)
    new = MlpParams(p.w1 - lr * (x64.T @ dh), p.b1 - lr * dh.sum(axis=0),
                    p.w2 - lr * (h.T @ dz), p.b2 - lr * dz.sum(axis=0))
    return new, loss


def params_close(got: MlpParams, want: MlpParams, tol: float = 1e-4) -> str | None:
    """``None`` if every weight matches to ``tol`` (scaled by its magnitude), else why not."""
    for name in ("w1", "b1", "w2", "b2"):
        why = weight_mismatch(name, getattr(got, name), getattr(want, name), tol)
        if why is not None:
            return why
    return None


def weight_mismatch(name: str, got: np.ndarray, want: np.ndarray, tol: float) -> str | None:
    """``None`` if ``got`` matches ``want`` to ``tol`` (scaled by its magnitude), else why not."""
    a = np.asarray(got, np.float64)
    if a.shape != want.shape:
        return f"{name}: shape {a.shape}, expected {want.shape}"
    err = float(np.max(np.abs(a - want), initial=0.0)) / max(1.0, float(np.max(np.abs(want), initial=0.0)))
    if not err <= tol:
        return f"{name}: max error {err:.2e} after one step"
    return None


# -- convolutions and the MNIST CNN (issue 16) -------------------------------------------------


def conv_operands(n: int, size: int, c: int, oc: int, k: int = 3) -> tuple[np.ndarray, ...]:
    """Seeded standard-normal ``x [n, size, size, c]``, ``w [k, k, c, oc]`` and ``dy [n, size, size, oc]``."""
    rng = np.random.default_rng(n * 1009 + size * 31 + c + oc)
    return (rng.standard_normal((n, size, size, c), dtype=np.float32),
            rng.standard_normal((k, k, c, oc), dtype=np.float32),
            rng.standard_normal((n, size, size, oc), dtype=np.float32))


def _taps(x: np.ndarray, k: int, pad: int) -> tuple[np.ndarray, int, int]:
    """``x`` zero-padded by ``pad`` on each side, and the output height and width of a k x k window."""
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    return xp, xp.shape[1] - k + 1, xp.shape[2] - k + 1


def reference_conv(x: np.ndarray, w: np.ndarray, pad: int) -> np.ndarray:
    """Stride-1 NHWC / HWIO cross-correlation in float64, one GEMM per kernel tap."""
    k = w.shape[0]
    xp, oh, ow = _taps(x.astype(np.float64), k, pad)
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for i in range(k):
        for j in range(k):
            out += xp[:, i:i + oh, j:j + ow, :] @ w[i, j].astype(np.float64)
    return out


def reference_conv_grads(x: np.ndarray, w: np.ndarray, dy: np.ndarray,
                         pad: int) -> tuple[np.ndarray, np.ndarray]:
    """The input and kernel gradients of :func:`reference_conv` for output gradient ``dy``, float64."""
    k = w.shape[0]
    xp, oh, ow = _taps(x.astype(np.float64), k, pad)
    dy64 = dy.astype(np.float64)
    dxp = np.zeros_like(xp)
    dw = np.zeros(w.shape)
    rows = dy64.reshape(-1, dy.shape[3])
    for i in range(k):
        for j in range(k):
            window = xp[:, i:i + oh, j:j + ow, :]
            dw[i, j] = window.reshape(-1, x.shape[3]).T @ rows
            dxp[:, i:i + oh, j:j + ow, :] += dy64 @ w[i, j].astype(np.float64).T
    return dxp[:, pad:pad + x.shape[1], pad:pad + x.shape[2], :], dw


CnnParams = dict[str, np.ndarray]
CNN_PARAM_NAMES = ("k1", "b1", "k2", "b2", "w3", "b3", "w4", "b4")


def cnn_params(seed: int = 0) -> CnnParams:
    """The CNN's weights: Glorot-uniform kernels (fans as Keras: receptive field x channels), zero biases.

    ``k1 [3, 3, 1, 32]``, ``k2 [3, 3, 32, 64]`` (HWIO), ``w3 [1600, 128]`` (rows in NHWC
    flatten order), ``w4 [128, 10]``; every shape is distinct, which the dlc adapter uses.
    """
    rng = np.random.default_rng(seed)

    def glorot(shape: tuple[int, ...]) -> np.ndarray:
        receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, shape).astype(np.float32)

    c0, (c1, c2) = CNN_IMAGE[2], CNN_FILTERS
    flat = 5 * 5 * c2
    return {"k1": glorot((3, 3, c0, c1)), "b1": np.zeros(c1, np.float32),
            "k2": glorot((3, 3, c1, c2)), "b2": np.zeros(c2, np.float32),
            "w3": glorot((flat, CNN_HIDDEN)), "b3": np.zeros(CNN_HIDDEN, np.float32),
            "w4": glorot((CNN_HIDDEN, MLP_OUT)), "b4": np.zeros(MLP_OUT, np.float32)}


def image_batch(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Real MNIST images as f32 ``[size, 28, 28, 1]`` in [0, 1] and their labels (a seeded choice)."""
    x, y = batch(size, "mnist")
    return np.ascontiguousarray(x.reshape(size, *CNN_IMAGE)), y


def _max_pool2(x: np.ndarray) -> np.ndarray:
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    return x[:, :2 * h2, :2 * w2, :].reshape(n, h2, 2, w2, 2, c).max(axis=(2, 4))


def reference_cnn_logits(p: CnnParams, x: np.ndarray) -> np.ndarray:
    """The CNN's logits in float64: conv relu pool, conv relu pool, flatten (NHWC), dense relu, dense."""
    h = _max_pool2(np.maximum(reference_conv(x, p["k1"], 0) + p["b1"], 0.0))
    h = _max_pool2(np.maximum(reference_conv(h, p["k2"], 0) + p["b2"], 0.0))
    h = np.maximum(h.reshape(len(h), -1) @ p["w3"].astype(np.float64) + p["b3"], 0.0)
    return h @ p["w4"].astype(np.float64) + p["b4"]


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean sparse softmax cross-entropy of float64 logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(y)), y].mean())


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of float64 logits."""
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def mlpbn_params(seed: int = 0) -> dict[str, np.ndarray]:
    """The dropout + batch-norm MLP's weights: Glorot-uniform dense kernels (no bias before a
    batch norm), gamma ones, beta zeros, output bias zeros."""
    rng = np.random.default_rng(seed)
    (h1, h2), out = MLPBN_HIDDEN, MLP_OUT

    def glorot(fan_in: int, fan_out: int) -> np.ndarray:
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)

    return {"w1": glorot(MLP_IN, h1), "g1": np.ones(h1, np.float32), "be1": np.zeros(h1, np.float32),
            "w2": glorot(h1, h2), "g2": np.ones(h2, np.float32), "be2": np.zeros(h2, np.float32),
            "w3": glorot(h2, out), "b3": np.zeros(out, np.float32)}
# ---------------------------------------------------------------------------
# attention (bench.cases.ATTENTION_SHAPES): causal, scale 1/sqrt(D)


def attention_inputs(shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """``q, k, v`` and the output weights ``w`` (the loss is ``sum(attention(q, k, v) * w)``),
    f32 ``[B, H, T, D]`` from a fixed seed."""
    rng = np.random.default_rng(22)
    return tuple(rng.standard_normal(shape).astype(np.float32) for _ in range(4))


def reference_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, w: np.ndarray
                        ) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """float64 causal attention and the gradients of ``sum(out * w)`` for q, k, v."""
    q, k, v, w = (a.astype(np.float64) for a in (q, k, v, w))
    t = q.shape[-2]
    scale = 1.0 / np.sqrt(q.shape[-1])
    s = np.where(np.tril(np.ones((t, t), bool)), q @ np.swapaxes(k, -1, -2) * scale, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    out = p @ v
    dp = w @ np.swapaxes(v, -1, -2)
    ds = p * (dp - np.sum(dp * p, -1, keepdims=True)) * scale
    return out, (ds @ k, np.swapaxes(ds, -1, -2) @ q, np.swapaxes(p, -1, -2) @ w)


# ---------------------------------------------------------------------------
# the GPTs of issue 22 (examples/adder_gpt.dl, examples/char_gpt.dl): 2 pre-norm blocks,
# 4 heads, d = 128, gelu MLP 4 x d, layer norms eps 1e-5; parameters named as dlc names them

GptParams = dict[str, np.ndarray]
GPT_EPSILON = 1e-5


def gpt_params(vocab: int, context: int, out: int, seed: int = 0, dim: int = 128,
               blocks: int = 2) -> GptParams:
    """Weights under dlc's names (``tok.embeddings``, ``transformer_block_1.attn.query_kernel``,
    ...): embeddings normal(0.02), Glorot-uniform kernels ``[in, out]``, and -- unlike the
    initializers' zeros and ones -- small random biases and layer-norm gammas / betas, so that
    a correctness check sees every parameter."""
    rng = np.random.default_rng(seed)

    def glorot(fan_in: int, fan_out: int) -> np.ndarray:
        limit = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)

    def small(n: int, center: float = 0.0) -> np.ndarray:
        return (center + 0.1 * rng.standard_normal(n)).astype(np.float32)

    p: GptParams = {"tok.embeddings": (0.02 * rng.standard_normal((vocab, dim))).astype(np.float32),
                    "pos.table.embeddings": (0.02 * rng.standard_normal((context, dim))).astype(np.float32)}
    for i in range(1, blocks + 1):
        b = f"transformer_block_{i}."
        p[b + "ln1.gamma"], p[b + "ln1.beta"] = small(dim, 1.0), small(dim)
        for which in ("query", "key", "value", "output"):
            p[f"{b}attn.{which}_kernel"], p[f"{b}attn.{which}_bias"] = glorot(dim, dim), small(dim)
        p[b + "ln2.gamma"], p[b + "ln2.beta"] = small(dim, 1.0), small(dim)
        p[b + "mlp.up.kernel"], p[b + "mlp.up.bias"] = glorot(dim, 4 * dim), small(4 * dim)
        p[b + "mlp.down.kernel"], p[b + "mlp.down.bias"] = glorot(4 * dim, dim), small(dim)
    p["ln_f.gamma"], p["ln_f.beta"] = small(dim, 1.0), small(dim)
    p["head.kernel"], p["head.bias"] = glorot(dim, out), small(out)
    return p


def gpt_blocks(p: GptParams) -> int:
    """How many transformer blocks ``p`` holds."""
    return sum(1 for name in p if name.endswith(".ln1.gamma"))


def adder_batch(size: int, digits: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Seeded addition problems as examples/adder_gpt.dl reads them (runtime/data.py's layout):
    tokens ``i32[size, 3n]`` (a's digits, b's, c's first n reversed) and the answer
    ``i32[size, n + 1]`` (c's digits reversed)."""
    rng = np.random.default_rng(size + 22)
    a, b = rng.integers(0, 10 ** digits, size), rng.integers(0, 10 ** digits, size)

    def spell(v: np.ndarray, n: int) -> np.ndarray:
        return np.stack([(v // 10 ** (n - 1 - i)) % 10 for i in range(n)], axis=1)

    seq = np.concatenate([spell(a, digits), spell(b, digits), spell(a + b, digits + 1)[:, ::-1]], axis=1)
    return seq[:, :3 * digits].astype(np.int32), seq[:, 2 * digits:].astype(np.int32)


def _gelu(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact gelu ``u Phi(u)`` and its derivative ``Phi(u) + u phi(u)``, float64."""
    erf = np.vectorize(math.erf, otypes=[np.float64])
    cdf = 0.5 * (1.0 + erf(u / np.sqrt(2.0)))
    return u * cdf, cdf + u * np.exp(-0.5 * u * u) / np.sqrt(2.0 * np.pi)


def _ln(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, tuple]:
    mu = x.mean(-1, keepdims=True)
    rstd = 1.0 / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + GPT_EPSILON)
    xhat = (x - mu) * rstd
    return xhat * gamma + beta, (xhat, rstd, gamma)


def _ln_back(dy: np.ndarray, saved: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layer norm's ``(dx, dgamma, dbeta)``."""
    xhat, rstd, gamma = saved
    dxhat = dy * gamma
    dx = rstd * (dxhat - dxhat.mean(-1, keepdims=True) - xhat * (dxhat * xhat).mean(-1, keepdims=True))
    return dx, (dy * xhat).reshape(-1, xhat.shape[-1]).sum(0), dy.reshape(-1, dy.shape[-1]).sum(0)


def _sum_rows(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1, a.shape[-1]).sum(0)


def _dense(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``a @ w`` over the last axis of ``a`` as one 2-D product."""
    return (a.reshape(-1, a.shape[-1]) @ w).reshape(*a.shape[:-1], w.shape[-1])


def _outer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sum over rows of a^T b`` for ``[..., I]`` and ``[..., J]``: a kernel's gradient."""
    return a.reshape(-1, a.shape[-1]).T @ b.reshape(-1, b.shape[-1])


def _split_heads(h: np.ndarray, heads: int) -> np.ndarray:
    """``[N, T, D] -> [N, heads, T, D / heads]``."""
    n, t, d = h.shape
    return h.reshape(n, t, heads, d // heads).transpose(0, 2, 1, 3)


def gpt_logits(p: GptParams, tokens: np.ndarray, heads: int = 4, saved: list | None = None) -> np.ndarray:
    """The GPT's logits ``[N, T, out]`` in float64 (``saved``: filled with what the backward needs)."""
    q64 = {k: v.astype(np.float64) for k, v in p.items()}
    n, t = tokens.shape
    x = q64["tok.embeddings"][tokens] + q64["pos.table.embeddings"][:t]
    causal = np.tril(np.ones((t, t), bool))
    for i in range(1, gpt_blocks(p) + 1):
        b = f"transformer_block_{i}."
        y1, ln1 = _ln(x, q64[b + "ln1.gamma"], q64[b + "ln1.beta"])
        d = y1.shape[-1]
        hd = d // heads

        q, k, v = (_split_heads(_dense(y1, q64[f"{b}attn.{w}_kernel"]) + q64[f"{b}attn.{w}_bias"], heads)
                   for w in ("query", "key", "value"))
        s = np.where(causal, q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd), -np.inf)
        prob = np.exp(s - s.max(-1, keepdims=True))
        prob /= prob.sum(-1, keepdims=True)
        o = (prob @ v).transpose(0, 2, 1, 3).reshape(n, t, d)
        a = x + _dense(o, q64[b + "attn.output_kernel"]) + q64[b + "attn.output_bias"]
        y2, ln2 = _ln(a, q64[b + "ln2.gamma"], q64[b + "ln2.beta"])
        u = _dense(y2, q64[b + "mlp.up.kernel"]) + q64[b + "mlp.up.bias"]
        g, dg = _gelu(u)
        x_next = a + _dense(g, q64[b + "mlp.down.kernel"]) + q64[b + "mlp.down.bias"]
        if saved is not None:
            saved.append((y1, ln1, q, k, v, prob, o, y2, ln2, g, dg))
        x = x_next
    yf, lnf = _ln(x, q64["ln_f.gamma"], q64["ln_f.beta"])
    if saved is not None:
        saved.append((yf, lnf))
    return _dense(yf, q64["head.kernel"]) + q64["head.bias"]


def gpt_loss_and_grads(p: GptParams, tokens: np.ndarray, answer: np.ndarray,
                       heads: int = 4) -> tuple[float, GptParams]:
    """Mean softmax cross-entropy of the logits at the last ``answer.shape[1]`` positions
    (adder_gpt's loss) and its gradient for every parameter, float64, by hand."""
    saved: list = []
    logits = gpt_logits(p, tokens, heads, saved)
    n, t = tokens.shape
    first = t - answer.shape[1]
    z = logits[:, first:]
    z = z - z.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    count = answer.size
    rows, cols = np.meshgrid(np.arange(n), np.arange(answer.shape[1]), indexing="ij")
    loss = float(-logp[rows, cols, answer].sum() / count)
    dlogits = np.zeros_like(logits)
    dz = np.exp(logp)
    dz[rows, cols, answer] -= 1.0
    dlogits[:, first:] = dz / count
    q64 = {k: v.astype(np.float64) for k, v in p.items()}
    grads: GptParams = {}
    yf, lnf = saved.pop()
    grads["head.kernel"], grads["head.bias"] = _outer(yf, dlogits), _sum_rows(dlogits)
    dx, grads["ln_f.gamma"], grads["ln_f.beta"] = _ln_back(_dense(dlogits, q64["head.kernel"].T), lnf)
    for i in range(gpt_blocks(p), 0, -1):
        b = f"transformer_block_{i}."
        y1, ln1, q, k, v, prob, o, y2, ln2, g, dg = saved[i - 1]
        d = y1.shape[-1]
        hd = d // heads
        # mlp: x = a + down(gelu(up(ln2(a))))
        grads[b + "mlp.down.kernel"], grads[b + "mlp.down.bias"] = _outer(g, dx), _sum_rows(dx)
        du = _dense(dx, q64[b + "mlp.down.kernel"].T) * dg
        grads[b + "mlp.up.kernel"], grads[b + "mlp.up.bias"] = _outer(y2, du), _sum_rows(du)
        da, grads[b + "ln2.gamma"], grads[b + "ln2.beta"] = _ln_back(_dense(du, q64[b + "mlp.up.kernel"].T), ln2)
        da = da + dx
        # attention: a = x + out(attn(q, k, v))
        grads[b + "attn.output_kernel"], grads[b + "attn.output_bias"] = _outer(o, da), _sum_rows(da)
        do = _dense(da, q64[b + "attn.output_kernel"].T).reshape(n, t, heads, hd).transpose(0, 2, 1, 3)
        dprob = do @ v.transpose(0, 1, 3, 2)
        ds = prob * (dprob - (dprob * prob).sum(-1, keepdims=True)) / np.sqrt(hd)
        dy1 = np.zeros_like(y1)
        for which, dh in (("query", ds @ k), ("key", ds.transpose(0, 1, 3, 2) @ q),
                          ("value", prob.transpose(0, 1, 3, 2) @ do)):
            joined = dh.transpose(0, 2, 1, 3).reshape(n, t, d)
            grads[f"{b}attn.{which}_kernel"] = _outer(y1, joined)
            grads[f"{b}attn.{which}_bias"] = _sum_rows(joined)
            dy1 += _dense(joined, q64[f"{b}attn.{which}_kernel"].T)
        dln, grads[b + "ln1.gamma"], grads[b + "ln1.beta"] = _ln_back(dy1, ln1)
        dx = da + dln
    table = np.zeros(p["tok.embeddings"].shape)
    np.add.at(table, tokens.reshape(-1), dx.reshape(-1, dx.shape[-1]))
    grads["tok.embeddings"] = table
    pos = np.zeros(p["pos.table.embeddings"].shape)
    pos[:t] = dx.sum(0)
    grads["pos.table.embeddings"] = pos
    return loss, {name: grads[name] for name in p}


GPT_LR, GPT_WEIGHT_DECAY, GPT_CLIPNORM = 1e-3, 0.01, 1.0
ADAM_BETAS = (0.9, 0.999)


def reference_gpt_step(p: GptParams, tokens: np.ndarray, answer: np.ndarray, epsilon: float,
                       heads: int = 4) -> tuple[GptParams, float]:
    """adder_gpt's first training step in float64: gradients clipped to global norm 1, then
    Keras' AdamW from zero moments (decay ``p - p wd lr`` first, then Adam with epsilon outside
    the root).  Returns the new weights and the loss before the step."""
    loss, grads = gpt_loss_and_grads(p, tokens, answer, heads)
    norm = np.sqrt(sum(float((g * g).sum()) for g in grads.values()))
    scale = GPT_CLIPNORM / max(norm, GPT_CLIPNORM)
    b1, b2 = ADAM_BETAS
    alpha = GPT_LR * np.sqrt(1 - b2) / (1 - b1)
    new = {}
    for name, w in p.items():
        g = grads[name] * scale
        w64 = w.astype(np.float64)
        w64 = w64 - w64 * GPT_WEIGHT_DECAY * GPT_LR
        new[name] = w64 - alpha * (g * (1 - b1)) / (np.sqrt(g * g * (1 - b2)) + epsilon)
    return new, loss


def gpt_params_close(got: GptParams, want: GptParams, tol: float = 1e-4) -> str | None:
    """``None`` if every weight matches ``want`` to ``tol`` (scaled by its magnitude), else which not."""
    for name, b in want.items():
        why = weight_mismatch(name, got.get(name), b, tol)
        if why is not None:
            return why
    return None


def char_prompt(length: int = 8) -> list[int]:
    """The generation case's prompt: the first ``length`` bytes of a fixed text."""
    return list(b"The dlc compiler lowers a model"[:length])
