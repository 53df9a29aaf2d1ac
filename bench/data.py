"""Inputs shared by every implementation: seeded arrays, MNIST, MLP weights.

Every worker builds its inputs here from the same seeds, so all
implementations of a case see identical data.  The bench reads MNIST itself
(a dozen lines of IDX) rather than through ``runtime.data``: the peers must
still be measurable while dlc is broken or half-built.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .cases import EPOCH_SAMPLES, MLP_HIDDEN, MLP_IN, MLP_OUT

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
        a, b = np.asarray(getattr(got, name), np.float64), getattr(want, name)
        if a.shape != b.shape:
            return f"{name}: shape {a.shape}, expected {b.shape}"
        err = float(np.max(np.abs(a - b))) / max(1.0, float(np.max(np.abs(b))))
        if not err <= tol:
            return f"{name}: max error {err:.2e} after one step"
    return None


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
