"""Masks and attention: ``tril``, ``triu``, ``causal_mask``, ``sinusoidal_positions``,
``masked_softmax``, ``attention`` and its gradient ``attention_grad``.

``attention`` is one op whose meaning is the unfused composition (scores, mask, softmax,
weighted sum: its ``decompose`` rule, which the interpreter's reference follows) and whose
lowering is a fused kernel (``compiler/codegen/attention.py``: blocked over the keys with a
running maximum and sum, as FlashAttention does, so no ``[Tq, Tk]`` score matrix is stored).
Its VJP is ``attention_grad``, an op of its own with a fused kernel too; the VJP of
``attention_grad`` is that of its decomposition (:func:`vjp_of_decomposition`), so second
derivatives exist.

Masks are bool, ``true`` = attend.  A query row whose keys are all masked gets probability
0 everywhere: ``masked_softmax`` gives a row of zeros there (not NaN), ``attention`` an
output row of zeros, and its gradients are zero for that row.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir.core import Op, Value
from ..ir.types import Dim, DType, TensorType
from .base import (
    COMPOSITE,
    OTHER,
    ShapeError,
    attr,
    broadcast_shapes,
    define,
    get_op,
    normalize_axes,
    required,
    shape_str,
)
from .rules import zeros

# ---------------------------------------------------------------------------
# tril / triu


def _band_rule(x: TensorType, *, k: int) -> TensorType:
    if x.rank < 2:
        raise ShapeError(f"needs an operand of rank >= 2, got {x.dsl_str()}")
    return x


def _band_keep(b, x: Value, k: int, lower: bool) -> Value:
    """Bool ``[.., R, C]`` (broadcastable to ``x``): true where ``tril`` (``lower``) or
    ``triu`` keeps ``x``: ``c - r <= k`` or ``c - r >= k``."""
    rows_cols = x.type.shape[-2:]
    r = b.iota(dtype=DType.i64, shape=rows_cols, axis=0)
    c = b.iota(dtype=DType.i64, shape=rows_cols, axis=1)
    diff = b.sub(c, r)
    bound = b.constant(k, DType.i64)
    return b.le(diff, bound) if lower else b.ge(diff, bound)


def _band_zero(b, x: Value) -> Value:
    return b.constant(False if x.type.dtype is DType.bool else 0, x.type.dtype)


tril = define(
    "tril", operands=("x",), kind=COMPOSITE, infer=_band_rule,
    attrs={"k": attr("int", 0)},
    doc="""numpy ``tril(x, k)``: ``x`` where ``col - row <= k`` on the last two axes, else 0
    (``false`` for bool); the leading axes are batch axes.

    %1 = "dl.tril"(%0) {k = 0} : (tensor<4x4xf32>) -> tensor<4x4xf32>
    """)

triu = define(
    "triu", operands=("x",), kind=COMPOSITE, infer=_band_rule,
    attrs={"k": attr("int", 0)},
    doc="""numpy ``triu(x, k)``: ``x`` where ``col - row >= k`` on the last two axes, else 0
    (``false`` for bool); the leading axes are batch axes.

    %1 = "dl.triu"(%0) {k = 1} : (tensor<4x4xf32>) -> tensor<4x4xf32>
    """)


@tril.def_reference
def _(x, *, k: int):
    return np.tril(x, k).astype(x.dtype, copy=False)


@triu.def_reference
def _(x, *, k: int):
    return np.triu(x, k).astype(x.dtype, copy=False)


@tril.def_decompose
def _(b, op):
    # tril(x, k) = where(col - row <= k, x, 0)
    x = op.operands[0]
    return [b.where(_band_keep(b, x, op.attrs["k"], True), x, _band_zero(b, x))]


@triu.def_decompose
def _(b, op):
    # triu(x, k) = where(col - row >= k, x, 0)
    x = op.operands[0]
    return [b.where(_band_keep(b, x, op.attrs["k"], False), x, _band_zero(b, x))]


@tril.def_vjp
def _(b, op, ct):
    # tril is a linear projection: its adjoint is itself
    return [b.tril(ct, k=op.attrs["k"])]


@triu.def_vjp
def _(b, op, ct):
    return [b.triu(ct, k=op.attrs["k"])]


# ---------------------------------------------------------------------------
# causal_mask


def _causal_mask_rule(*, shape: tuple[Dim, ...]) -> TensorType:
    if len(shape) != 2:
        raise ShapeError(f"shape must be [queries, keys], got {shape_str(tuple(shape))}")
    return TensorType(DType.bool, tuple(shape))


causal_mask = define(
    "causal_mask", operands=(), kind=COMPOSITE, infer=_causal_mask_rule, differentiable=False,
    attrs={"shape": required("dims")},
    doc="""A bool ``[Tq, Tk]`` mask, true where query ``i`` may attend key ``j``:
    ``j <= i + (Tk - Tq)`` (aligned at the bottom right, so the last query sees every key:
    with ``Tq == Tk`` it is ``tril(ones)``; with one query against a cache of ``Tk`` keys, all
    true).

    %0 = "dl.causal_mask"() {shape = ["T", "T"]} : () -> tensor<?x?xi1, "T", "T">
    """)


def causal_mask_np(tq: int, tk: int) -> np.ndarray:
    """numpy ``causal_mask``: ``j <= i + (tk - tq)``."""
    return np.arange(tk)[None, :] <= np.arange(tq)[:, None] + (tk - tq)


@causal_mask.def_reference
def _(*, shape):
    return causal_mask_np(*shape)


def _causal_keep(b, shape: tuple[Dim, Dim]) -> Value:
    """``j <= i + (Tk - Tq)`` over ``shape = [Tq, Tk]``, the offset read at run time when a
    dim is symbolic."""
    i = b.iota(dtype=DType.i64, shape=shape, axis=0)
    j = b.iota(dtype=DType.i64, shape=shape, axis=1)
    tq, tk = shape
    if isinstance(tq, int) and isinstance(tk, int):
        offset = b.constant(tk - tq, DType.i64)
    else:
        sizes = b.iota(dtype=DType.i64, shape=shape, axis=0)       # only its shape is read
        offset = b.sub(b.dim_size(sizes, axis=1, dtype=DType.i64), b.dim_size(sizes, axis=0, dtype=DType.i64))
    return b.le(j, b.add(i, offset))


@causal_mask.def_decompose
def _(b, op):
    # causal_mask([Tq, Tk])[i, j] = j <= i + (Tk - Tq)
    return [_causal_keep(b, tuple(op.attrs["shape"]))]


# ---------------------------------------------------------------------------
# sinusoidal_positions


def _positions_rule(*, shape: tuple[Dim, ...], base: float, dtype: DType) -> TensorType:
    if len(shape) != 2 or not isinstance(shape[1], int) or shape[1] < 1:
        raise ShapeError(f"shape must be [positions, dim] with a static dim >= 1, got {shape_str(tuple(shape))}")
    if not dtype.is_float:
        raise ShapeError(f"dtype must be f32 or f64, got {dtype.dsl_name}")
    if not base > 0:
        raise ShapeError(f"base must be positive, got {base:g}")
    return TensorType(dtype, tuple(shape))


sinusoidal_positions = define(
    "sinusoidal_positions", operands=(), kind=COMPOSITE, infer=_positions_rule, differentiable=False,
    attrs={"shape": required("dims"), "base": attr("float", 10000.0), "dtype": attr("dtype", DType.f32)},
    doc="""The Transformer's sinusoidal position encoding ``[T, dim]``: column ``c`` of row ``t`` is
    ``sin(t * f)`` for even ``c`` and ``cos(t * f)`` for odd ``c``, ``f = base^(-(c - c % 2) / dim)``
    (Vaswani et al. 2017; ``base`` default 10000).  Add it to ``[N, T, dim]`` embeddings.

    %0 = "dl.sinusoidal_positions"() {base = 10000.0, dtype = f32, shape = ["T", 64]} : () -> tensor<?x64xf32, "T">
    """)


@sinusoidal_positions.def_reference
def _(*, shape, base: float, dtype: DType):
    t, dim = shape
    col = np.arange(dim)
    angle = np.arange(t, dtype=np.float64)[:, None] * np.exp((col - col % 2) * (-math.log(base) / dim))
    return np.where(col % 2 == 0, np.sin(angle), np.cos(angle)).astype(dtype.np)


@sinusoidal_positions.def_decompose
def _(b, op):
    # angle = t * exp((c - c % 2) * -log(base) / dim);  even c: sin(angle), odd c: cos(angle)
    shape, dtype = tuple(op.attrs["shape"]), op.attrs["dtype"]
    col = b.iota(dtype=DType.i64, shape=shape, axis=1)
    odd = b.mod(col, b.constant(2, DType.i64))
    pair = b.cast(b.sub(col, odd), dtype=dtype)
    rate = b.exp(b.mul(pair, b.constant(-math.log(op.attrs["base"]) / shape[1], dtype)))
    angle = b.mul(b.iota(dtype=dtype, shape=shape, axis=0), rate)
    return [b.where(b.eq(odd, b.constant(0, DType.i64)), b.sin(angle), b.cos(angle))]


# ---------------------------------------------------------------------------
# masked_softmax


def _masked_softmax_rule(x: TensorType, mask: TensorType, *, axis: int) -> TensorType:
    if not x.dtype.is_float:
        raise ShapeError(f"expects a float operand (f32 or f64), got {x.dsl_str()}")
    if mask.dtype is not DType.bool:
        raise ShapeError(f"mask must be bool, got {mask.dsl_str()}")
    if x.rank == 0:
        raise ShapeError("needs an operand of rank >= 1")
    normalize_axes((axis,), x.rank)
    _broadcasts_into(mask, x.shape, "mask")
    return x


def _broadcasts_into(t: TensorType, shape: tuple[Dim, ...], what: str) -> None:
    ok = t.rank <= len(shape)
    if ok:
        try:
            ok = broadcast_shapes(t.shape, shape) == tuple(shape)
        except ShapeError:
            ok = False
    if not ok:
        raise ShapeError(f"{what} {t.dsl_str()} does not broadcast to {shape_str(tuple(shape))}")


masked_softmax = define(
    "masked_softmax", operands=("x", "mask"), kind=COMPOSITE, infer=_masked_softmax_rule,
    attrs={"axis": attr("int", -1)},
    doc="""``softmax(x)`` along ``axis`` over the entries where the bool ``mask`` (broadcast to
    ``x``) is true; masked entries get probability 0, and a row with no true entry is all
    zeros (not NaN).  No masked copy of ``x`` is stored: the mask is read where ``x`` is.
    In the language: ``softmax(x, mask=m)``.

    %2 = "dl.masked_softmax"(%0, %1) {axis = -1} : (tensor<?x4xf32, "N">, tensor<4xi1>) -> tensor<?x4xf32, "N">
    """)


def masked_softmax_np(x: np.ndarray, mask: np.ndarray, axis: int) -> np.ndarray:
    """numpy ``masked_softmax`` (zeros for rows with no true entry)."""
    mask = np.broadcast_to(mask, x.shape)
    if x.size == 0:
        return np.zeros_like(x)
    with np.errstate(invalid="ignore", over="ignore"):
        m = np.max(np.where(mask, x, -np.inf), axis=axis, keepdims=True)
        e = np.where(mask, np.exp(x - m), 0)
        total = np.sum(e, axis=axis, keepdims=True)
        return np.where(mask, e / np.where(total > 0, total, 1), 0).astype(x.dtype, copy=False)


@masked_softmax.def_reference
def _(x, mask, *, axis: int):
    return masked_softmax_np(x, mask, axis)


@masked_softmax.def_decompose
def _(b, op):
    # m = max(where(mask, x, -inf)),  e = exp(x - m),  out = where(mask, e / sum(where(mask, e, 0)), 0)
    x, mask = op.operands
    axis = op.attrs["axis"]
    if x.type.shape[axis % x.type.rank] == 0:
        return [x]
    dtype = x.type.dtype
    m = b.max(b.where(mask, x, b.constant(-math.inf, dtype)), axes=(axis,), keepdims=True)
    zero = b.constant(0.0, dtype)
    total = b.sum(b.where(mask, b.exp(b.sub(x, m)), zero), axes=(axis,), keepdims=True)
    return [b.where(mask, b.div(b.exp(b.sub(x, m)), total), zero)]


@masked_softmax.def_vjp
def _(b, op, ct):
    # y = masked_softmax(x):  dx = y * (dy - sum(dy * y))   (masked entries: y = 0, dx = 0)
    y, axis = op.result, op.attrs["axis"]
    inner = b.sum(b.mul(ct, y), axes=(axis,), keepdims=True)
    return [b.mul(y, b.sub(ct, inner)), None]


# ---------------------------------------------------------------------------
# attention


def _attention_types(q: TensorType, k: TensorType, v: TensorType, mask: TensorType
                     ) -> tuple[Dim, Dim, Dim]:
    """Check ``q [.., Tq, D]``, ``k [.., Tk, D]``, ``v [.., Tk, Dv]`` and the bool ``mask``
    (broadcast to ``[.., Tq, Tk]``); returns ``(Tq, Tk, Dv)``."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not t.dtype.is_float:
            raise ShapeError(f"{name} must be f32 or f64, got {t.dsl_str()}")
        if t.rank < 2:
            raise ShapeError(f"{name} must have rank >= 2 ([.., T, D]), got {t.dsl_str()}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ShapeError(f"q, k and v have different dtypes: {q.dsl_str()}, {k.dsl_str()}, {v.dsl_str()}")
    if not (q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
        raise ShapeError(f"q, k and v must have the same batch dims, got {q.dsl_str()}, "
                         f"{k.dsl_str()}, {v.dsl_str()}")
    if q.shape[-1] != k.shape[-1]:
        raise ShapeError(f"q and k must have the same head size, got {q.dsl_str()} and {k.dsl_str()}")
    if k.shape[-2] != v.shape[-2]:
        raise ShapeError(f"k and v must have the same number of keys, got {k.dsl_str()} and {v.dsl_str()}")
    if mask.dtype is not DType.bool:
        raise ShapeError(f"mask must be bool, got {mask.dsl_str()}")
    _broadcasts_into(mask, (*q.shape[:-1], k.shape[-2]), "mask")
    return q.shape[-2], k.shape[-2], v.shape[-1]


def _attention_rule(q, k, v, mask, *, scale: float | None, causal: bool) -> TensorType:
    _attention_types(q, k, v, mask)
    return q.with_shape((*q.shape[:-1], v.shape[-1]))


def _attention_grad_rule(q, k, v, mask, out, dout, *, scale: float | None, causal: bool
                         ) -> list[TensorType]:
    _attention_rule(q, k, v, mask, scale=scale, causal=causal)
    want = q.with_shape((*q.shape[:-1], v.shape[-1]))
    for name, t in (("out", out), ("dout", dout)):
        if t != want:
            raise ShapeError(f"{name} must be {want.dsl_str()}, got {t.dsl_str()}")
    return [q, k, v]


_ATTENTION_ATTRS = {"scale": attr("float", None), "causal": attr("bool", False)}

attention = define(
    "attention", operands=("q", "k", "v", "mask"), kind=OTHER, infer=_attention_rule,
    attrs=dict(_ATTENTION_ATTRS),
    doc="""Scaled dot-product attention over ``q [.., Tq, D]``, ``k [.., Tk, D]``,
    ``v [.., Tk, Dv]`` (the same batch dims, e.g. ``[B, H]``):
    ``masked_softmax(scale * q @ k^T, allowed) @ v`` with ``scale`` default ``1/sqrt(D)`` and
    ``allowed`` the bool ``mask`` (broadcast to ``[.., Tq, Tk]``; true = attend), and with
    ``causal`` also ``causal_mask([Tq, Tk])``.  A query whose keys are all masked gives a row of
    zeros.  Native code computes it fused, blocked over the keys with a running maximum and
    sum (memory O(T*D) per head: the scores are never stored).  In the language ``mask`` may be
    left out (all true).

    %4 = "dl.attention"(%0, %1, %2, %3) {causal = true, scale = 0.125} : (tensor<?x4x16x64xf32, "B">, tensor<?x4x16x64xf32, "B">, tensor<?x4x16x64xf32, "B">, tensor<i1>) -> tensor<?x4x16x64xf32, "B">
    """)

attention_grad = define(
    "attention_grad", operands=("q", "k", "v", "mask", "out", "dout"), kind=OTHER,
    infer=_attention_grad_rule, num_results=3, attrs=dict(_ATTENTION_ATTRS),
    doc="""The gradients ``(dq, dk, dv)`` of ``out = attention(q, k, v, mask)`` for the output
    cotangent ``dout``, with ``P = masked_softmax(s)`` recomputed from the scores and
    ``dS = P * (dout @ v^T - rowsum(dout * out))``: ``dv = P^T @ dout``,
    ``dq = scale * dS @ k``, ``dk = scale * dS^T @ q``.  Native code recomputes the scores block
    by block (no ``[Tq, Tk]`` matrix is stored).

    %6:3 = "dl.attention_grad"(%0, %1, %2, %3, %4, %5) {causal = false, scale = 0.125} : (tensor<2x8x64xf32>, tensor<2x8x64xf32>, tensor<2x8x64xf32>, tensor<i1>, tensor<2x8x64xf32>, tensor<2x8x64xf32>) -> (tensor<2x8x64xf32>, tensor<2x8x64xf32>, tensor<2x8x64xf32>)
    """)


def attention_scale(scale: float | None, head_size: Dim) -> float:
    """The scale of the scores: ``scale``, or ``1/sqrt(D)``."""
    if scale is not None:
        return scale
    if not isinstance(head_size, int):
        raise ShapeError("the head size is symbolic: give attention a scale")
    return 1.0 / math.sqrt(head_size) if head_size > 0 else 1.0


def _allowed_np(q, k, mask, causal: bool) -> np.ndarray:
    allowed = np.broadcast_to(mask, (*q.shape[:-1], k.shape[-2]))
    if causal:
        allowed = allowed & causal_mask_np(q.shape[-2], k.shape[-2])
    return allowed


def attention_np(q, k, v, mask, *, scale: float | None, causal: bool) -> np.ndarray:
    """numpy ``attention``, unfused, in the operands' dtype (f64 operands: the f64 oracle)."""
    c = np.asarray(attention_scale(scale, q.shape[-1]), q.dtype)
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * c
    p = masked_softmax_np(s, _allowed_np(q, k, mask, causal), -1)
    return np.matmul(p, v).astype(q.dtype, copy=False)


def attention_grad_np(q, k, v, mask, out, dout, *, scale: float | None, causal: bool):
    """numpy ``attention_grad``, unfused: ``[dq, dk, dv]``."""
    c = np.asarray(attention_scale(scale, q.shape[-1]), q.dtype)
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * c
    p = masked_softmax_np(s, _allowed_np(q, k, mask, causal), -1)
    dv = np.matmul(np.swapaxes(p, -1, -2), dout)
    dp = np.matmul(dout, np.swapaxes(v, -1, -2))
    ds = p * (dp - np.sum(dout * out, axis=-1, keepdims=True))
    dq = np.matmul(ds, k) * c
    dk = np.matmul(np.swapaxes(ds, -1, -2), q) * c
    return [a.astype(q.dtype, copy=False) for a in (dq, dk, dv)]


attention.operand_defaults["mask"] = True        # attention(q, k, v): every key


@attention.def_reference
def _(q, k, v, mask, *, scale, causal):
    return attention_np(q, k, v, mask, scale=scale, causal=causal)


@attention_grad.def_reference
def _(q, k, v, mask, out, dout, *, scale, causal):
    return attention_grad_np(q, k, v, mask, out, dout, scale=scale, causal=causal)


def _swap_last(b, x: Value) -> Value:
    rank = x.type.rank
    return b.transpose(x, perm=(*range(rank - 2), rank - 1, rank - 2))


def _probabilities(b, op: Op) -> Value:
    """``P = masked_softmax(scale * q @ k^T, allowed)`` in dl ops."""
    q, k, _v, mask = op.operands[:4]
    c = attention_scale(op.attrs["scale"], q.type.shape[-1])
    s = b.mul(b.matmul(q, _swap_last(b, k)), b.constant(c, q.type.dtype))
    allowed = mask
    if op.attrs["causal"]:
        allowed = b.logical_and(allowed, _causal_keep(b, s.type.shape[-2:]))
    allowed = b.broadcast_to(allowed, shape=s.type.shape)
    return b.masked_softmax(s, allowed, axis=-1)


@attention.def_decompose
def _(b, op):
    # attention(q, k, v) = masked_softmax(scale * q @ k^T, allowed) @ v
    return [b.matmul(_probabilities(b, op), op.operands[2])]


@attention_grad.def_decompose
def _(b, op):
    # dv = P^T dO,  dS = P * (dO V^T - rowsum(dO * O)),  dq = c dS K,  dk = c dS^T Q
    q, k, v, _mask, out, dout = op.operands
    c = b.constant(attention_scale(op.attrs["scale"], q.type.shape[-1]), q.type.dtype)
    p = _probabilities(b, op)
    dv = b.matmul(_swap_last(b, p), dout)
    dp = b.matmul(dout, _swap_last(b, v))
    ds = b.mul(p, b.sub(dp, b.sum(b.mul(dout, out), axes=(-1,), keepdims=True)))
    dq = b.mul(b.matmul(ds, k), c)
    dk = b.mul(b.matmul(_swap_last(b, ds), q), c)
    return [dq, dk, dv]


@attention.def_vjp
def _(b, op, ct):
    # the fused backward: one op computing dq, dk, dv (the scores recomputed blockwise)
    q, k, v, mask = op.operands
    dq, dk, dv = b.attention_grad(q, k, v, mask, op.result, ct, **op.attrs)
    return [dq, dk, dv, None]


def _unfused(op: Op) -> bool:
    """Whether codegen expands ``op`` by its decomposition: the fused kernel takes static
    head sizes ``D`` and ``Dv`` only."""
    q, _k, v = op.operands[:3]
    return not (isinstance(q.type.shape[-1], int) and isinstance(v.type.shape[-1], int))


for _op in (attention, attention_grad):
    _op.def_expand(_unfused)
    _op.lowers_to("attention")      # compiler/codegen/attention.py


@attention_grad.def_vjp
def _(b, op, *cts):
    # second derivatives: the VJP of the unfused decomposition
    return vjp_of_decomposition(b, op, list(cts))


def vjp_of_decomposition(b, op: Op, cts: list[Value]) -> list[Value | None]:
    """The cotangents of ``op``'s operands given its results' ``cts``, by reverse mode over
    the ops its ``decompose`` rule builds (each differentiated by its own VJP rule)."""
    first = len(b.func.ops)
    outs = get_op(op.name).decompose(b, op)
    built = b.func.ops[first:]
    grads: dict[Value, Value] = dict(zip(outs, cts))
    for inner in reversed(built):
        if not any(r in grads for r in inner.results):
            continue
        rule = get_op(inner.name)
        if rule.vjp is None:                    # comparisons, iota: nothing flows through
            continue
        result_cts = [grads[r] if r in grads else zeros(b, r.type) for r in inner.results]
        for v, g in zip(inner.operands, rule.vjp(b, inner, *result_cts)):
            if g is not None:
                grads[v] = g if v not in grads else b.add(grads[v], g)
    return [grads.get(v) if v.type.dtype.is_float else None for v in op.operands]
