"""More reductions: ``prod any all argmin`` (kinds of the native reduction kernel),
``logsumexp var std norm`` (composites of existing ops), the scan ``cumsum`` and the
selection ``top_k`` (kernel families of their own: ``codegen/scan.py``, ``codegen/topk.py``).

Each op's reference is the numpy function of the same name (``scipy.special.logsumexp``'s
classic algorithm for ``logsumexp``, ``numpy.linalg.vector_norm`` for ``norm``; numpy has no
``top_k``: its reference is a stable descending sort).  The deliberate differences, all of
them: results keep the operand's dtype (numpy widens an ``i32`` ``prod``/``cumsum`` to
``i64``; here they wrap in ``i32``); ``any``/``all`` take bool only (numpy also takes
numbers: write ``any(x != 0)``); ``var``/``std``/``norm``/``logsumexp`` take floats only
(numpy converts ints to f64); ``cumsum`` needs an ``axis`` (numpy's default flattens);
``norm`` has ``ord`` 1 or 2 only.  Special values and empty axes are listed per op in
``docs/ops.md`` ("More reductions").

Empty axes: ``prod`` of nothing is 1, ``any`` False, ``all`` True, ``logsumexp`` -inf (the
log of an empty sum), ``var``/``std`` nan (numpy: ``0 / 0``), ``norm`` 0; ``argmin`` of
nothing is undefined (numpy raises): a statically empty axis is a shape error, one whose
symbolic size is 0 a :class:`~compiler.diagnostics.DlRuntimeError` from the interpreter.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..diagnostics import DlRuntimeError
from ..ir.types import DType, TensorType
from .base import COMPOSITE, OTHER, REDUCTION, OpDef, ShapeError, attr, define, normalize_axes, required
from .reductions import _REDUCE_ATTRS, _reduce_rule, _reduction, reduced_shape
from .rules import element_count, expand_reduced

# ---------------------------------------------------------------------------
# prod, any, all: kinds of the native reduction kernel


prod = _reduction("prod", """Product over ``axes`` (default: all); the product of no elements is 1.

    %1 = "dl.prod"(%0) {axes = [1], keepdims = false} : (tensor<?x10xf32, "N">) -> tensor<?xf32, "N">
    """, np.prod)


@prod.def_vjp
def _(b, op, ct):
    # d prod(x) / dx_i = the product of the others.  With r = the product of the non-zero
    # elements and z = how many are zero: no zeros, r / x_i; one zero, r at the zero and 0
    # elsewhere; two or more, 0 everywhere (never a division by zero, so no nan).
    x = op.operands[0]
    axes, keepdims = op.attrs["axes"], op.attrs["keepdims"]
    dtype = x.type.dtype
    zero, one = b.constant(0, dtype), b.constant(1, dtype)
    is_zero = b.eq(x, zero)
    nonzero = b.select(is_zero, one, x)
    rest = b.broadcast_to(b.prod(nonzero, axes=axes, keepdims=True), shape=x.type.shape)
    zeros = b.broadcast_to(b.sum(b.cast(is_zero, dtype=dtype), axes=axes, keepdims=True), shape=x.type.shape)
    at_zero = b.select(b.eq(zeros, one), rest, zero)
    elsewhere = b.select(b.eq(zeros, zero), b.div(rest, nonzero), zero)
    share = b.select(is_zero, at_zero, elsewhere)
    return [b.mul(expand_reduced(b, ct, x.type, axes, keepdims), share)]


def _logical_rule(x: TensorType, *, axes: tuple[int, ...] | None, keepdims: bool) -> TensorType:
    if x.dtype is not DType.bool:
        raise ShapeError(f"expects a bool operand, got {x.dsl_str()} (compare first: x != 0)")
    return x.with_shape(reduced_shape(x.shape, normalize_axes(axes, x.rank), keepdims))


def _logical(name: str, doc: str, fn: Callable) -> OpDef:
    op = define(name, operands=("x",), kind=REDUCTION, infer=_logical_rule, attrs=dict(_REDUCE_ATTRS),
                doc=doc, differentiable=False)

    @op.def_reference
    def _(x, *, axes, keepdims):
        return np.asarray(fn(x, axis=normalize_axes(axes, x.ndim), keepdims=keepdims))

    op.lowers_to("reduction")
    return op


any_ = _logical("any", """Whether any element over ``axes`` (default: all) is true; bool only.
    ``any`` of no elements is false.

    %1 = "dl.any"(%0) {axes = [1], keepdims = false} : (tensor<?x10xi1, "N">) -> tensor<?xi1, "N">
    """, np.any)

all_ = _logical("all", """Whether every element over ``axes`` (default: all) is true; bool only.
    ``all`` of no elements is true.

    %1 = "dl.all"(%0) {axes = [1], keepdims = false} : (tensor<?x10xi1, "N">) -> tensor<?xi1, "N">
    """, np.all)


# ---------------------------------------------------------------------------
# argmin


def _argmin_rule(x: TensorType, *, axis: int, keepdims: bool) -> TensorType:
    if x.rank == 0:
        raise ShapeError("argmin needs an operand of rank >= 1")
    axes = normalize_axes((axis,), x.rank)
    if x.shape[axes[0]] == 0:
        raise ShapeError(f"reduces over axis {axes[0]} of {x.dsl_str()}, which is empty: "
                         "there is no argmin of no elements (numpy raises)")
    return TensorType(DType.i64, reduced_shape(x.shape, axes, keepdims))


argmin = define(
    "argmin", operands=("x",), kind=REDUCTION, infer=_argmin_rule, differentiable=False,
    attrs={"axis": attr("int", -1), "keepdims": attr("bool", False)},
    doc="""Index (i64) of the first minimum along ``axis`` (default -1); not differentiable.
    A nan counts as the minimum (its first index wins, numpy's rule); an empty axis is an error.

    %1 = "dl.argmin"(%0) {axis = -1, keepdims = false} : (tensor<?x10xf32, "N">) -> tensor<?xi64, "N">
    """)


@argmin.def_reference
def _(x, *, axis: int, keepdims: bool):
    if x.shape[axis] == 0:
        raise DlRuntimeError(f"dl.argmin reduces over axis {axis % x.ndim} of shape {list(x.shape)}, "
                             "which is empty: there is no argmin of no elements (numpy raises)")
    return np.argmin(x, axis=axis, keepdims=keepdims).astype(np.int64)


argmin.lowers_to("reduction")
argmin.computes_widened()


# ---------------------------------------------------------------------------
# logsumexp, var, std, norm: composites


def _float_reduce_rule(x: TensorType, *, axes: tuple[int, ...] | None, keepdims: bool,
                       **_: object) -> TensorType:
    if not x.dtype.is_float:
        raise ShapeError(f"expects a float operand (f32 or f64), got {x.dsl_str()}; cast it first")
    return _reduce_rule(x, axes=axes, keepdims=keepdims)


def _is_static_empty(x: TensorType, axes: tuple[int, ...] | None) -> bool:
    return any(x.shape[a] == 0 for a in normalize_axes(axes, x.rank))


def _result_shape(x: TensorType, axes: tuple[int, ...] | None, keepdims: bool) -> tuple:
    return reduced_shape(x.shape, normalize_axes(axes, x.rank), keepdims)


def _squeezed(b, v, x: TensorType, axes: tuple[int, ...] | None, keepdims: bool):
    """``v``, reduced with ``keepdims``, with its reduced axes dropped unless ``keepdims``."""
    shape = _result_shape(x, axes, keepdims)
    return v if v.type.shape == shape else b.reshape(v, shape=shape)


logsumexp = define(
    "logsumexp", operands=("x",), kind=COMPOSITE, infer=_float_reduce_rule, attrs=dict(_REDUCE_ATTRS),
    doc="""``log(sum(exp(x)))`` over ``axes`` (default: all), computed as ``m + log(sum(exp(x - m)))``
    with ``m = max(x)`` where finite, else 0 (``scipy.special.logsumexp``): a row of -inf gives
    -inf, one holding +inf gives +inf, nan propagates, no elements give -inf; float only.

    %1 = "dl.logsumexp"(%0) {axes = [1], keepdims = false} : (tensor<?x10xf32, "N">) -> tensor<?xf32, "N">
    """)
logsumexp.computes_widened()


@logsumexp.def_reference
def _(x, *, axes, keepdims):
    axis = normalize_axes(axes, x.ndim)
    if any(x.shape[a] == 0 for a in axis):
        return np.full(reduced_shape(x.shape, axis, keepdims), -np.inf, dtype=x.dtype)
    m = np.max(x, axis=axis, keepdims=True)
    shift = np.where(np.isfinite(m), m, np.zeros_like(m))
    total = np.sum(np.exp(x - shift), axis=axis, keepdims=True)
    out = np.log(total) + shift
    return (out if keepdims else np.squeeze(out, axis=axis)).astype(x.dtype, copy=False)


@logsumexp.def_decompose
def _(b, op):
    # logsumexp(x) = log(sum(exp(x - s))) + s,  s = max(x) where finite, else 0
    x = op.operands[0]
    axes, keepdims = op.attrs["axes"], op.attrs["keepdims"]
    dtype = x.type.dtype
    if _is_static_empty(x.type, axes):
        return [b.constant(-math.inf, dtype, _result_shape(x.type, axes, keepdims))]
    m = b.max(x, axes=axes, keepdims=True)
    finite = b.lt(b.abs(m), b.constant(math.inf, dtype))
    shift = b.select(finite, m, b.constant(0.0, dtype))
    total = b.sum(b.exp(b.sub(x, shift)), axes=axes, keepdims=keepdims)
    return [b.add(b.log(total), _squeezed(b, shift, x.type, axes, keepdims))]


@logsumexp.def_vjp
def _(b, op, ct):
    # d logsumexp(x) = ct * exp(x - logsumexp(x))   (the softmax over the axes)
    x, y = op.operands[0], op.result
    axes, keepdims = op.attrs["axes"], op.attrs["keepdims"]
    weights = b.exp(b.sub(x, expand_reduced(b, y, x.type, axes, keepdims)))
    return [b.mul(expand_reduced(b, ct, x.type, axes, keepdims), weights)]


_STAT_ATTRS = {**_REDUCE_ATTRS, "ddof": attr("int", 0)}


def variance(x: np.ndarray, axes: tuple[int, ...] | None, keepdims: bool, ddof: int) -> np.ndarray:
    """numpy's ``var`` step by step (its ``_var``), without its warnings: the mean as a sum
    divided by the count, the sum of squared deviations divided by ``max(count - ddof, 0)``."""
    axis = normalize_axes(axes, x.ndim)
    count = math.prod(x.shape[a] for a in axis)
    with np.errstate(all="ignore"):
        mean = np.true_divide(np.sum(x, axis=axis, keepdims=True), count)
        deviation = x - mean
        total = np.sum(deviation * deviation, axis=axis, keepdims=keepdims)
        return np.true_divide(total, max(count - ddof, 0)).astype(x.dtype, copy=False)


def _stat(name: str, doc: str) -> OpDef:
    op = define(name, operands=("x",), kind=COMPOSITE, infer=_float_reduce_rule,
                attrs=dict(_STAT_ATTRS), doc=doc)
    op.computes_widened()
    return op


var = _stat("var", """Variance over ``axes`` (default: all): ``sum((x - mean(x))^2) / max(count - ddof,
    0)`` in two passes (the mean first, as numpy); ``ddof`` defaults to 0.  Float only; no
    elements give nan, ``count <= ddof`` gives inf (or nan for a zero sum), as numpy.

    %1 = "dl.var"(%0) {axes = [0], ddof = 0, keepdims = false} : (tensor<?x10xf32, "N">) -> tensor<10xf32>
    """)

std = _stat("std", """Standard deviation ``sqrt(var(x, axes, ddof))`` (see ``var``); float only.  Its
    gradient where the deviation is 0 is 0 (a subgradient; the derivative of sqrt there is inf).

    %1 = "dl.std"(%0) {axes = [0], ddof = 1, keepdims = false} : (tensor<?x10xf32, "N">) -> tensor<10xf32>
    """)


@var.def_reference
def _(x, *, axes, keepdims, ddof):
    return variance(x, axes, keepdims, ddof)


@std.def_reference
def _(x, *, axes, keepdims, ddof):
    return np.sqrt(variance(x, axes, keepdims, ddof))


def _divisor(b, x, axes: tuple[int, ...] | None, ddof: int):
    """``max(count - ddof, 0)`` over ``axes`` in ``x``'s dtype (symbolic dims read at run time)."""
    dtype = x.type.dtype
    count = element_count(b, x, axes, dtype)
    return b.maximum(b.sub(count, b.constant(ddof, dtype)), b.constant(0, dtype))


def _deviation(b, x, axes: tuple[int, ...] | None):
    """``x - mean(x)`` over ``axes``."""
    return b.sub(x, b.mean(x, axes=axes, keepdims=True))


def _decompose_var(b, op):
    # var(x) = sum(d^2) / max(count - ddof, 0),  d = x - mean(x);  ddof = 0: mean(d^2)
    x = op.operands[0]
    axes, keepdims, ddof = op.attrs["axes"], op.attrs["keepdims"], op.attrs["ddof"]
    squares = b.square(_deviation(b, x, axes))
    if ddof == 0:
        return b.mean(squares, axes=axes, keepdims=keepdims)
    total = b.sum(squares, axes=axes, keepdims=keepdims)
    return b.div(total, _divisor(b, x, axes, ddof))


@var.def_decompose
def _(b, op):
    return [_decompose_var(b, op)]


@std.def_decompose
def _(b, op):
    # std(x) = sqrt(var(x))
    return [b.sqrt(_decompose_var(b, op))]


@var.def_vjp
def _(b, op, ct):
    # d var(x) = ct * 2 (x - mean(x)) / max(count - ddof, 0)
    x = op.operands[0]
    axes, keepdims, ddof = op.attrs["axes"], op.attrs["keepdims"], op.attrs["ddof"]
    scale = b.div(b.constant(2, x.type.dtype), _divisor(b, x, axes, ddof))
    share = b.mul(_deviation(b, x, axes), scale)
    return [b.mul(expand_reduced(b, ct, x.type, axes, keepdims), share)]


@std.def_vjp
def _(b, op, ct):
    # d std(x) = ct * (x - mean(x)) / (max(count - ddof, 0) * std(x)),  0 where std(x) = 0
    x, y = op.operands[0], op.result
    axes, keepdims, ddof = op.attrs["axes"], op.attrs["keepdims"], op.attrs["ddof"]
    dtype = x.type.dtype
    y = expand_reduced(b, y, x.type, axes, keepdims)
    safe = b.select(b.eq(y, b.constant(0, dtype)), b.constant(1, dtype), y)
    share = b.div(_deviation(b, x, axes), b.mul(safe, _divisor(b, x, axes, ddof)))
    return [b.mul(expand_reduced(b, ct, x.type, axes, keepdims), share)]


def _norm_rule(x: TensorType, *, ord: int, axes: tuple[int, ...] | None, keepdims: bool) -> TensorType:
    if ord not in (1, 2):
        raise ShapeError(f"ord must be 1 or 2, got {ord} (for the max norm write max(abs(x)))")
    return _float_reduce_rule(x, axes=axes, keepdims=keepdims)


norm = define(
    "norm", operands=("x",), kind=COMPOSITE, infer=_norm_rule,
    attrs={"ord": attr("int", 2), **_REDUCE_ATTRS},
    doc="""Vector norm over ``axes`` (default: all, as one vector): ``ord`` 2 (default)
    ``sqrt(sum(x * x))``, ``ord`` 1 ``sum(abs(x))`` (``numpy.linalg.vector_norm``: no scaling, so
    f32 overflows as numpy does past ~1.8e19).  Float only; no elements give 0.  The gradient
    at 0 is 0 (a subgradient, for both orders).

    %1 = "dl.norm"(%0) {axes = [1], keepdims = false, ord = 2} : (tensor<?x10xf32, "N">) -> tensor<?xf32, "N">
    """)
norm.computes_widened()


@norm.def_reference
def _(x, *, ord, axes, keepdims):
    axis = normalize_axes(axes, x.ndim)
    out = np.linalg.vector_norm(x, axis=axis, keepdims=keepdims, ord=ord)
    return np.asarray(out).astype(x.dtype, copy=False)


@norm.def_decompose
def _(b, op):
    # norm(x, 1) = sum(|x|);  norm(x, 2) = sqrt(sum(x * x))
    x = op.operands[0]
    axes, keepdims = op.attrs["axes"], op.attrs["keepdims"]
    if op.attrs["ord"] == 1:
        return [b.sum(b.abs(x), axes=axes, keepdims=keepdims)]
    return [b.sqrt(b.sum(b.mul(x, x), axes=axes, keepdims=keepdims))]


@norm.def_vjp
def _(b, op, ct):
    # d norm(x, 1) = ct * sign(x);  d norm(x, 2) = ct * x / norm(x), 0 where norm(x) = 0
    x, y = op.operands[0], op.result
    axes, keepdims = op.attrs["axes"], op.attrs["keepdims"]
    dtype = x.type.dtype
    if op.attrs["ord"] == 1:
        share = b.sign(x)
    else:
        y = expand_reduced(b, y, x.type, axes, keepdims)
        share = b.div(x, b.select(b.eq(y, b.constant(0, dtype)), b.constant(1, dtype), y))
    return [b.mul(expand_reduced(b, ct, x.type, axes, keepdims), share)]


# ---------------------------------------------------------------------------
# cumsum: a scan (codegen/scan.py)


def _cumsum_rule(x: TensorType, *, axis: int, reverse: bool, exclusive: bool) -> TensorType:
    if x.dtype is DType.bool:
        raise ShapeError("expects a numeric operand, got bool")
    if x.rank == 0:
        raise ShapeError("cumsum needs an operand of rank >= 1")
    normalize_axes((axis,), x.rank)
    return x


cumsum = define(
    "cumsum", operands=("x",), kind=OTHER, infer=_cumsum_rule,
    attrs={"axis": required("int"), "reverse": attr("bool", False), "exclusive": attr("bool", False)},
    doc="""Running sum along ``axis`` (numpy ``cumsum``, summed in order): ``out[i] = x[0] + .. +
    x[i]``; ``exclusive`` stops before ``x[i]`` (``out[0] = 0``), ``reverse`` runs from the end.

    %1 = "dl.cumsum"(%0) {axis = 1, exclusive = false, reverse = false} : (tensor<4x10xf32>) -> tensor<4x10xf32>
    """)


@cumsum.def_reference
def _(x, *, axis: int, reverse: bool, exclusive: bool):
    axis %= x.ndim
    y = np.flip(x, axis) if reverse else x
    out = np.cumsum(y, axis=axis, dtype=x.dtype)
    if exclusive:                       # shift by one along the axis, 0 first
        out = np.roll(out, 1, axis=axis)
        np.moveaxis(out, axis, 0)[:1] = 0
    return np.flip(out, axis) if reverse else out


@cumsum.def_vjp
def _(b, op, ct):
    # d cumsum(x) = the cumsum of the cotangent running the other way (same exclusivity)
    a = op.attrs
    return [b.cumsum(ct, axis=a["axis"], reverse=not a["reverse"], exclusive=a["exclusive"])]


cumsum.lowers_to("scan")


# ---------------------------------------------------------------------------
# top_k: a selection (codegen/topk.py)


def _top_k_rule(x: TensorType, *, k: int) -> list[TensorType]:
    if x.dtype is DType.bool:
        raise ShapeError("expects a numeric operand, got bool")
    if x.rank == 0:
        raise ShapeError("top_k needs an operand of rank >= 1")
    n = x.shape[-1]
    if not isinstance(n, int):
        raise ShapeError(f"top_k needs a static last axis, got {x.dsl_str()}")
    if not 0 <= k <= n:
        raise ShapeError(f"k = {k} is not in [0, {n}] (the last axis of {x.dsl_str()})")
    shape = (*x.shape[:-1], k)
    return [x.with_shape(shape), TensorType(DType.i64, shape)]


top_k = define(
    "top_k", operands=("x",), kind=OTHER, infer=_top_k_rule, num_results=2,
    attrs={"k": required("int")},
    doc="""The ``k`` largest elements along the last axis (static, at least ``k`` long) and their
    indices (i64): the first ``k`` of a stable descending sort, so equal values (``-0.0`` and
    ``0.0`` too) come in index order and a nan counts as larger than +inf (numpy's sort order).
    Differentiable in the values; bool is not accepted.

    %1, %2 = "dl.top_k"(%0) {k = 3} : (tensor<?x10xf32, "N">) -> (tensor<?x3xf32, "N">, tensor<?x3xi64, "N">)
    """)


def descending_order(x: np.ndarray) -> np.ndarray:
    """Indices of a stable descending sort along the last axis, nan first (top_k's order)."""
    if x.dtype.kind == "f":
        return np.lexsort((-x, ~np.isnan(x)), axis=-1)
    return np.lexsort((~x,), axis=-1)        # ~x = -x - 1: decreasing, without -INT_MIN's overflow


@top_k.def_reference
def _(x, *, k: int):
    indices = descending_order(x)[..., :k].astype(np.int64)
    return np.take_along_axis(x, indices, axis=-1), indices


@top_k.def_vjp
def _(b, op, ct, _ct_indices):
    # d top_k(x).values: each value's cotangent goes back to its index: sum_k one_hot(i_k) * ct_k
    x, indices = op.operands[0], op.results[1]
    n = x.type.shape[-1]
    if op.attrs["k"] == 0:
        return [b.constant(0, x.type.dtype, x.type.shape)]
    hot = b.one_hot(indices, depth=n, dtype=x.type.dtype)
    spread = b.mul(hot, b.reshape(ct, shape=(*ct.type.shape, 1)))
    return [b.sum(spread, axes=(x.type.rank - 1,))]


top_k.lowers_to("top_k")
