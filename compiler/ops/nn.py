"""Neural-network ops: ``softmax``, ``log_softmax``, ``one_hot`` (composites of simpler dl ops)."""

from __future__ import annotations

import numpy as np

from ..ir.types import DType, TensorType
from .base import COMPOSITE, ShapeError, attr, define, normalize_axes, required
from .rules import label_mask


def _softmax_rule(x: TensorType, *, axis: int) -> TensorType:
    if not x.dtype.is_float:
        raise ShapeError(f"expects a float operand (f32 or f64), got {x.dsl_str()}")
    if x.rank == 0:
        raise ShapeError("needs an operand of rank >= 1")
    normalize_axes((axis,), x.rank)
    return x


def _shifted_np(x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """``z = x - max(x)`` along ``axis`` and ``sum(exp(z))`` with the axis kept."""
    z = x - np.max(x, axis=axis, keepdims=True)
    return z, np.sum(np.exp(z), axis=axis, keepdims=True)


def stable_log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """numpy ``log_softmax`` computed as ``z - log(sum(exp(z)))`` with ``z = x - max(x)``.
    An empty ``x`` gives an empty result (there is nothing to normalize, so no error)."""
    if x.size == 0:
        return np.empty_like(x)
    z, total = _shifted_np(x, axis)
    return z - np.log(total)


def stable_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    """numpy ``softmax`` computed as ``exp(z) / sum(exp(z))`` with ``z = x - max(x)`` (not as
    ``exp(log_softmax(x))``, whose rounding ``exp`` magnifies for small probabilities)."""
    if x.size == 0:
        return np.empty_like(x)
    z, total = _shifted_np(x, axis)
    return np.exp(z) / total


softmax = define(
    "softmax", operands=("x",), kind=COMPOSITE, infer=_softmax_rule,
    attrs={"axis": attr("int", -1)},
    doc="""``exp(x - max(x)) / sum(exp(x - max(x)))`` along ``axis`` (default -1); float only.
    An empty ``x`` gives an empty result.

    %1 = "dl.softmax"(%0) {axis = -1} : (tensor<?x10xf32, "N">) -> tensor<?x10xf32, "N">
    """)

log_softmax = define(
    "log_softmax", operands=("x",), kind=COMPOSITE, infer=_softmax_rule,
    attrs={"axis": attr("int", -1)},
    doc="""``z - log(sum(exp(z)))`` with ``z = x - max(x)`` along ``axis`` (default -1); float only.
    An empty ``x`` gives an empty result.

    %1 = "dl.log_softmax"(%0) {axis = -1} : (tensor<?x10xf32, "N">) -> tensor<?x10xf32, "N">
    """)


softmax.variants["mask"] = "masked_softmax"     # softmax(x, mask=m): ops/attention.py


@softmax.def_reference
def _(x, *, axis: int):
    return stable_softmax(x, axis).astype(x.dtype, copy=False)


@log_softmax.def_reference
def _(x, *, axis: int):
    return stable_log_softmax(x, axis).astype(x.dtype, copy=False)


def _shifted(b, x, axis: int):
    """``x - max(x)`` along ``axis``, and ``sum(exp(x - max(x)))`` with the axis kept."""
    z = b.sub(x, b.max(x, axes=(axis,), keepdims=True))
    return z, b.sum(b.exp(z), axes=(axis,), keepdims=True)


def _statically_empty(x, axis: int) -> bool:
    """Whether the softmax axis has static size 0: the result is ``x`` itself, an empty
    tensor (no ``max`` over the axis may be built; one over a symbolic axis that turns out
    empty at run time computes nothing that is stored)."""
    return x.type.shape[axis % x.type.rank] == 0


@softmax.def_decompose
def _(b, op):
    # softmax(x) = exp(z) / sum(exp(z)),  z = x - max(x)
    x, axis = op.operands[0], op.attrs["axis"]
    if _statically_empty(x, axis):
        return [x]
    z, total = _shifted(b, x, axis)
    return [b.div(b.exp(z), total)]


@log_softmax.def_decompose
def _(b, op):
    # log_softmax(x) = z - log(sum(exp(z))),  z = x - max(x)
    x, axis = op.operands[0], op.attrs["axis"]
    if _statically_empty(x, axis):
        return [x]
    z, total = _shifted(b, x, axis)
    return [b.sub(z, b.log(total))]


@softmax.def_vjp
def _(b, op, ct):
    # y = softmax(x):  dx = y * (dy - sum(dy * y))
    y, axis = op.result, op.attrs["axis"]
    inner = b.sum(b.mul(ct, y), axes=(axis,), keepdims=True)
    return [b.mul(y, b.sub(ct, inner))]


@log_softmax.def_vjp
def _(b, op, ct):
    # y = log_softmax(x):  dx = dy - exp(y) * sum(dy)
    y, axis = op.result, op.attrs["axis"]
    total = b.sum(ct, axes=(axis,), keepdims=True)
    return [b.sub(ct, b.mul(b.exp(y), total))]


# ---------------------------------------------------------------------------
# one_hot


def _one_hot_rule(indices: TensorType, *, depth: int, dtype: DType) -> TensorType:
    if not indices.dtype.is_int:
        raise ShapeError(f"indices must be i32 or i64, got {indices.dsl_str()}")
    if depth < 1:
        raise ShapeError(f"depth must be positive, got {depth}")
    return TensorType(dtype, (*indices.shape, depth))


one_hot = define(
    "one_hot", operands=("indices",), kind=COMPOSITE, infer=_one_hot_rule, differentiable=False,
    attrs={"depth": required("int"), "dtype": attr("dtype", DType.f32)},
    doc="""``out[.., c] = 1 if indices[..] == c else 0`` in ``dtype`` (default f32), new last
    axis of size ``depth``; an index outside ``[0, depth)`` gives a row of zeros.

    %1 = "dl.one_hot"(%0) {depth = 10, dtype = f32} : (tensor<?xi64, "N">) -> tensor<?x10xf32, "N">
    """)


@one_hot.def_reference
def _(indices, *, depth: int, dtype: DType):
    return (indices[..., None] == np.arange(depth, dtype=indices.dtype)).astype(dtype.np)


@one_hot.def_decompose
def _(b, op):
    # one_hot(i) = cast(iota == i)
    indices = op.operands[0]
    shape = (*indices.type.shape, op.attrs["depth"])
    return [b.cast(label_mask(b, indices, shape), dtype=op.attrs["dtype"])]
