"""Random numbers as values: a counter-based generator (Philox-4x32-10) and the ops built on it.

Randomness in dlc is a pure function of a *key* (an ``i64[]`` tensor) and
of the element's position, as in JAX's ``jax.random``: the same key gives
the same numbers, whatever the thread count, the vector width or the
backend (interpreter or native code), and nothing in a model holds a hidden
generator.  A key is split by folding data into it (``fold_in``); a training
step derives ``fold_in(seed, step)`` and each layer folds in its own constant.

**The generator** is Philox-4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel
random numbers: as easy as 1, 2, 3", SC11), the generator of cuRAND,
PyTorch's CUDA backend and JAX's ``rbg``: a 128-bit counter ``(c0, c1, c2,
c3)`` and a 64-bit key ``(k0, k1)`` go through ten rounds of two 32x32->64-bit
multiplications, giving four 32-bit words.  :func:`philox4x32` is the numpy
reference; it reproduces Random123's published known-answer vectors
(``tests/test_random.py``).  Native code computes the same rounds in vector
lanes, one counter per lane (``compiler/codegen/philox.py``).

**Conventions** (the bits every backend must produce):

* a key ``k`` (i64) is the Philox key ``(k0, k1) = (low 32 bits, high 32 bits)``;
* element ``i`` (the row-major linear index, as i64) of a random tensor made
  with key ``k`` is ``philox4x32((i_lo, i_hi, 0, 0), k)``;
* ``fold_in(k, d) = w0 | w1 << 32`` of ``philox4x32((d_lo, d_hi, 0, 1), k)``
  (counter word 3 is 1, so a derived key never equals a tensor's bits);
* uniform ``[0, 1)`` from the words: f32 ``(w0 >> 8) * 2^-24`` (24 bits, every
  value exact); f64 ``((w0 >> 11) * 2^32 + w1) * 2^-53``;
* normal (Box-Muller): f32 ``u1 = ((w0 >> 8) + 1) * 2^-24`` in ``(0, 1]``,
  ``u2 = (w1 >> 8) * 2^-24``, ``z = sqrt(-2 log u1) cos(2 pi u2)``; f64 the same
  with 53-bit ``u1`` from ``(w0, w1)`` and ``u2`` from ``(w2, w3)``.  So
  ``|z| <= sqrt(-2 log 2^-24) = 5.77`` in f32 (a tail beyond it has
  probability 8e-9) and ``8.57`` in f64.

Uniform and Bernoulli values are exact in every backend (integer arithmetic,
then exact conversions); normal values go through ``log`` and ``cos``, so
native code (``compiler/codegen/vmath.py``) agrees with numpy to a few ulp,
not to the bit.

The ops: ``fold_in`` (key derivation), the elementwise primitives
``philox_uniform`` and ``philox_normal`` (a key and a counter per element),
and the composites users call -- ``random_uniform``, ``random_normal`` and
``bernoulli`` -- which decompose into a linear index (``iota``s) and a
primitive, so codegen generates the numbers inside the fused loop that
consumes them.  None is differentiable.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..ir.types import Dim, DType, TensorType
from .base import COMPOSITE, ELEMENTWISE, ShapeError, attr, broadcast_shapes, define, required

# Philox-4x32 constants (Random123's PHILOX_M4x32_0/1 and PHILOX_W32_0/1).
PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
PHILOX_ROUNDS = 10
FOLD_IN_DOMAIN = 1          # counter word 3 of fold_in (0 for a tensor's elements)

_U32 = np.uint32
_MASK32 = np.uint64(0xFFFFFFFF)


# ---------------------------------------------------------------------------
# The numpy reference of the generator


def philox4x32(counter: tuple[Any, Any, Any, Any], key: tuple[Any, Any],
               rounds: int = PHILOX_ROUNDS) -> tuple[np.ndarray, ...]:
    """Philox-4x32-``rounds`` of ``counter`` (4 words) under ``key`` (2 words), elementwise
    over numpy arrays of uint32 (broadcast together); four uint32 arrays."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=_U32) for c in counter)
    k0, k1 = (np.asarray(k, dtype=_U32) for k in key)
    m0, m1 = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1)
    with np.errstate(over="ignore"):
        for r in range(rounds):
            if r:
                k0 = (k0 + _U32(PHILOX_W0)).astype(_U32)
                k1 = (k1 + _U32(PHILOX_W1)).astype(_U32)
            p0 = m0 * c0.astype(np.uint64)
            p1 = m1 * c2.astype(np.uint64)
            hi0, lo0 = (p0 >> np.uint64(32)).astype(_U32), (p0 & _MASK32).astype(_U32)
            hi1, lo1 = (p1 >> np.uint64(32)).astype(_U32), (p1 & _MASK32).astype(_U32)
            c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def split64(x: Any) -> tuple[np.ndarray, np.ndarray]:
    """An int64 array's two's-complement bits as (low, high) uint32 words."""
    bits = np.asarray(x, dtype=np.int64).view(np.uint64)
    return (bits & _MASK32).astype(_U32), (bits >> np.uint64(32)).astype(_U32)


def join64(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Two uint32 words as one int64 (``lo | hi << 32``, two's complement)."""
    bits = lo.astype(np.uint64) | (hi.astype(np.uint64) << np.uint64(32))
    return np.asarray(bits).view(np.int64)


def element_words(key: Any, counter: Any) -> tuple[np.ndarray, ...]:
    """The four words of the elements at linear indices ``counter`` under ``key`` (int64s)."""
    lo, hi = split64(counter)
    zero = np.zeros_like(lo)
    return philox4x32((lo, hi, zero, zero), split64(key))


def fold_in_reference(key: Any, data: Any) -> np.ndarray:
    """``fold_in(key, data)`` (see the module docstring), int64 in and out."""
    lo, hi = split64(data)
    w = philox4x32((lo, hi, np.zeros_like(lo), np.full_like(lo, FOLD_IN_DOMAIN)), split64(key))
    return np.asarray(join64(w[0], w[1]), dtype=np.int64)


def uniform_from_words(words: tuple[np.ndarray, ...], dtype: DType) -> np.ndarray:
    """Uniform ``[0, 1)`` values of ``dtype`` from Philox words (see the module docstring)."""
    if dtype is DType.f32:
        return ((words[0] >> _U32(8)).astype(np.float32) * np.float32(2.0 ** -24)).astype(np.float32)
    return _unit53(words[0], words[1])


def normal_from_words(words: tuple[np.ndarray, ...], dtype: DType) -> np.ndarray:
    """Standard normal values of ``dtype`` from Philox words (Box-Muller, module docstring)."""
    if dtype is DType.f32:
        f = np.float32
        u1 = ((words[0] >> _U32(8)).astype(f) + f(1.0)) * f(2.0 ** -24)
        u2 = (words[1] >> _U32(8)).astype(f) * f(2.0 ** -24)
        radius = np.sqrt(f(-2.0) * np.log(u1))
        return (radius * np.cos(f(2 * math.pi) * u2)).astype(f)
    u1 = _unit53(words[0], words[1]) + 2.0 ** -53
    u2 = _unit53(words[2], words[3])
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2 * math.pi * u2)


def _unit53(w_hi: np.ndarray, w_lo: np.ndarray) -> np.ndarray:
    """``((w_hi >> 11) * 2^32 + w_lo) * 2^-53`` in f64: 53 random bits in ``[0, 1)``."""
    top = (w_hi >> _U32(11)).astype(np.float64) * 2.0 ** 32
    return np.asarray((top + w_lo.astype(np.float64)) * 2.0 ** -53, dtype=np.float64)


def linear_index(shape: tuple[int, ...]) -> np.ndarray:
    """The row-major linear index of every element of ``shape``, as int64."""
    return np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)


# ---------------------------------------------------------------------------
# fold_in


def _key_rule(key: TensorType, data: TensorType) -> TensorType:
    if key.dtype is not DType.i64 or data.dtype is not DType.i64:
        raise ShapeError(f"fold_in takes i64 keys and i64 data, got {key.dtype.dsl_name} and "
                         f"{data.dtype.dsl_name}")
    return TensorType(DType.i64, broadcast_shapes(key.shape, data.shape))


fold_in = define(
    "fold_in", operands=("key", "data"), kind=ELEMENTWISE, infer=_key_rule, differentiable=False,
    doc="""A new random key from ``key`` and ``data`` (both i64, broadcast), as
    ``jax.random.fold_in``: the first two words of Philox-4x32-10 of the counter
    ``(data, 0, 1)`` under ``key``.  How a training step derives a key per step
    (``fold_in(seed, step)``) and each layer its own (``fold_in(key, constant)``).

    %2 = "dl.fold_in"(%0, %1) : (tensor<i64>, tensor<i64>) -> tensor<i64>
    """)
fold_in.def_reference(fold_in_reference)
fold_in.def_emit(lambda e, key, data: e.fold_in(key, data))


# ---------------------------------------------------------------------------
# The elementwise primitives: one counter per element


def _counter_rule(key: TensorType, counter: TensorType, *, dtype: DType) -> TensorType:
    if key.dtype is not DType.i64 or counter.dtype is not DType.i64:
        raise ShapeError(f"takes an i64 key and i64 counters, got {key.dtype.dsl_name} and "
                         f"{counter.dtype.dsl_name}")
    if not dtype.is_float:
        raise ShapeError(f"makes f32 or f64 values, not {dtype.dsl_name}")
    return TensorType(dtype, broadcast_shapes(key.shape, counter.shape))


philox_uniform = define(
    "philox_uniform", operands=("key", "counter"), kind=ELEMENTWISE, infer=_counter_rule,
    attrs={"dtype": attr("dtype", DType.f32)}, differentiable=False,
    doc="""Uniform ``[0, 1)`` values, one per ``counter`` (the elements' linear indices)
    under ``key``: Philox-4x32-10 words made into floats (24 bits for f32, 53 for f64).
    ``random_uniform`` and ``bernoulli`` decompose into it.

    %2 = "dl.philox_uniform"(%0, %1) {dtype = f32} : (tensor<i64>, tensor<?x4xi64, "N">) -> tensor<?x4xf32, "N">
    """)


@philox_uniform.def_reference
def _(key, counter, *, dtype: DType):
    return uniform_from_words(element_words(key, counter), dtype)


philox_uniform.def_emit(lambda e, key, counter: e.philox_uniform(key, counter))


philox_normal = define(
    "philox_normal", operands=("key", "counter"), kind=ELEMENTWISE, infer=_counter_rule,
    attrs={"dtype": attr("dtype", DType.f32)}, differentiable=False,
    doc="""Standard normal values, one per ``counter`` under ``key``: Box-Muller over the
    Philox-4x32-10 words (see ``compiler/ops/random.py``).  ``random_normal`` decomposes
    into it.

    %2 = "dl.philox_normal"(%0, %1) {dtype = f32} : (tensor<i64>, tensor<?x4xi64, "N">) -> tensor<?x4xf32, "N">
    """)


@philox_normal.def_reference
def _(key, counter, *, dtype: DType):
    return normal_from_words(element_words(key, counter), dtype)


philox_normal.def_emit(lambda e, key, counter: e.philox_normal(key, counter))


# ---------------------------------------------------------------------------
# The composites: a tensor of random values from a key


def _check_key(key: TensorType, op: str) -> None:
    if key.dtype is not DType.i64 or key.rank != 0:
        raise ShapeError(f"{op} takes a key of type i64[] (e.g. from fold_in), got {key.dsl_str()}")


def _sample_rule(key: TensorType, *, shape: tuple[Dim, ...], dtype: DType, **_: Any) -> TensorType:
    _check_key(key, "a random op")
    if not dtype.is_float:
        raise ShapeError(f"makes f32 or f64 values, not {dtype.dsl_name}")
    return TensorType(dtype, tuple(shape))


def _linear_index_ops(b: Any, shape: tuple[Dim, ...]) -> Any:
    """dl ops computing every element's row-major linear index over ``shape`` (i64):
    ``sum_k iota_k * stride_k``, a stride holding the runtime size of symbolic dims."""
    if not shape:
        return b.constant(0, DType.i64)
    total = None
    static_stride = 1
    dynamic_stride = None          # the product of the symbolic dims seen so far (a value)
    for axis in reversed(range(len(shape))):
        idx = b.iota(dtype=DType.i64, shape=tuple(shape), axis=axis)
        term = idx
        if dynamic_stride is not None:
            term = b.mul(term, dynamic_stride)
        if static_stride != 1:
            term = b.mul(term, b.constant(static_stride, DType.i64))
        total = term if total is None else b.add(total, term)
        dim = shape[axis]
        if isinstance(dim, int):
            static_stride *= dim
        else:
            size = b.dim_size(idx, axis=axis, dtype=DType.i64)
            dynamic_stride = size if dynamic_stride is None else b.mul(dynamic_stride, size)
    return total


def _scale_shift(b: Any, x: Any, scale: float, shift: float, dtype: DType) -> Any:
    """``x * scale + shift``, leaving out a multiplication by 1 and an addition of 0."""
    if scale != 1.0:
        x = b.mul(x, b.constant(scale, dtype))
    if shift != 0.0:
        x = b.add(x, b.constant(shift, dtype))
    return x


def _scale_shift_reference(x: np.ndarray, scale: float, shift: float) -> np.ndarray:
    if scale != 1.0:
        x = x * x.dtype.type(scale)
    if shift != 0.0:
        x = x + x.dtype.type(shift)
    return x


random_uniform = define(
    "random_uniform", operands=("key",), kind=COMPOSITE, infer=_sample_rule, differentiable=False,
    attrs={"shape": required("dims"), "dtype": attr("dtype", DType.f32),
           "minval": attr("float", 0.0), "maxval": attr("float", 1.0)},
    doc="""A tensor of ``shape`` of uniform values in ``[minval, maxval)`` made from ``key``
    (i64[]): element ``i`` (row-major) is ``philox_uniform(key, i) * (maxval - minval) +
    minval``.  The same key gives the same tensor.

    %1 = "dl.random_uniform"(%0) {dtype = f32, maxval = 1.0, minval = 0.0, shape = ["N", 4]} : (tensor<i64>) -> tensor<?x4xf32, "N">
    """)


@random_uniform.def_reference
def _(key, *, shape, dtype: DType, minval: float, maxval: float):
    u = uniform_from_words(element_words(key, linear_index(tuple(shape))), dtype)
    return _scale_shift_reference(u, maxval - minval, minval)


@random_uniform.def_decompose
def _(b, op):
    a = op.attrs
    u = b.philox_uniform(op.operands[0], _linear_index_ops(b, a["shape"]), dtype=a["dtype"])
    return [_scale_shift(b, u, a["maxval"] - a["minval"], a["minval"], a["dtype"])]


random_normal = define(
    "random_normal", operands=("key",), kind=COMPOSITE, infer=_sample_rule, differentiable=False,
    attrs={"shape": required("dims"), "dtype": attr("dtype", DType.f32),
           "mean": attr("float", 0.0), "stddev": attr("float", 1.0)},
    doc="""A tensor of ``shape`` of normal values (``mean``, ``stddev``) made from ``key``
    (i64[]): element ``i`` (row-major) is ``philox_normal(key, i) * stddev + mean``.

    %1 = "dl.random_normal"(%0) {dtype = f32, mean = 0.0, shape = [2, 3], stddev = 1.0} : (tensor<i64>) -> tensor<2x3xf32>
    """)


@random_normal.def_reference
def _(key, *, shape, dtype: DType, mean: float, stddev: float):
    z = normal_from_words(element_words(key, linear_index(tuple(shape))), dtype)
    return _scale_shift_reference(z, stddev, mean)


@random_normal.def_decompose
def _(b, op):
    a = op.attrs
    z = b.philox_normal(op.operands[0], _linear_index_ops(b, a["shape"]), dtype=a["dtype"])
    return [_scale_shift(b, z, a["stddev"], a["mean"], a["dtype"])]


def _bernoulli_rule(key: TensorType, *, shape: tuple[Dim, ...], p: float) -> TensorType:
    _check_key(key, "bernoulli")
    if not 0.0 <= p <= 1.0:
        raise ShapeError(f"p must be a probability in [0, 1], got {p}")
    return TensorType(DType.bool, tuple(shape))


bernoulli = define(
    "bernoulli", operands=("key",), kind=COMPOSITE, infer=_bernoulli_rule, differentiable=False,
    attrs={"shape": required("dims"), "p": attr("float", 0.5)},
    doc="""A bool tensor of ``shape``, each element true with probability ``p``, made from
    ``key`` (i64[]): ``philox_uniform(key, i) < p`` in f32 (so ``p`` counts in steps of
    2^-24).

    %1 = "dl.bernoulli"(%0) {p = 0.5, shape = [2, 3]} : (tensor<i64>) -> tensor<2x3xi1>
    """)


@bernoulli.def_reference
def _(key, *, shape, p: float):
    u = uniform_from_words(element_words(key, linear_index(tuple(shape))), DType.f32)
    return np.asarray(u < np.float32(p))


@bernoulli.def_decompose
def _(b, op):
    u = b.philox_uniform(op.operands[0], _linear_index_ops(b, op.attrs["shape"]), dtype=DType.f32)
    return [b.lt(u, b.constant(op.attrs["p"], DType.f32))]


PHILOX_OPS = frozenset({"fold_in", "philox_uniform", "philox_normal"})
"""The elementwise ops that run the generator (ten rounds of multiplies per element):
codegen stores rather than recomputes them and counts them as expensive."""
