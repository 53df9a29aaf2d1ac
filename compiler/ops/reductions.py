"""Reductions over ``axes`` (None: every axis) with ``keepdims``: sum, mean, max, min, argmax.

``mean`` is a primitive reduction: its lowering divides by the runtime
element count, so it stays exact for a symbolic batch.  It also has a
``decompose`` (``sum / count``, the count from ``dim_size``) for anything that
prefers primitives.

Empty axes follow numpy: the sum of no elements is 0 and their mean is nan
(``0 / 0``, without numpy's warning); ``max``, ``min`` and ``argmax`` of no
elements are undefined, and numpy raises.  So does dl: a reduced axis that is
statically 0 is a shape error where the op is built, and one whose symbolic
size is 0 at run time is a :class:`DlRuntimeError` before anything runs, raised
by the interpreter and by compiled code alike (:class:`NonEmptyAxes`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..diagnostics import DlRuntimeError, Location
from ..ir import dims
from ..ir.core import Op
from ..ir.types import Dim, DType, TensorType
from .base import REDUCTION, OpDef, ShapeError, attr, define, normalize_axes
from .rules import element_count, expand_reduced

_REDUCE_ATTRS = {"axes": attr("optional_ints", None), "keepdims": attr("bool", False)}


def reduced_shape(shape: tuple[Dim, ...], axes: tuple[int, ...], keepdims: bool) -> tuple[Dim, ...]:
    """``shape`` with ``axes`` (normalized) removed, or set to 1 when ``keepdims``."""
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _reduce_rule(x: TensorType, *, axes: tuple[int, ...] | None, keepdims: bool) -> TensorType:
    if x.dtype is DType.bool:
        raise ShapeError("expects a numeric operand, got bool")
    return x.with_shape(reduced_shape(x.shape, normalize_axes(axes, x.rank), keepdims))


def _mean_rule(x: TensorType, *, axes: tuple[int, ...] | None, keepdims: bool) -> TensorType:
    if not x.dtype.is_float:
        raise ShapeError(f"expects a float operand (f32 or f64), got {x.dsl_str()}; cast it first")
    return _reduce_rule(x, axes=axes, keepdims=keepdims)


def _extremum_rule(x: TensorType, *, axes: tuple[int, ...] | None, keepdims: bool) -> TensorType:
    """``max`` / ``min``: a reduction over axes none of which is statically empty."""
    out = _reduce_rule(x, axes=axes, keepdims=keepdims)
    _check_static_axes(x, normalize_axes(axes, x.rank))
    return out


def _reduction(name: str, doc: str, fn: Callable, infer: Callable = _reduce_rule) -> OpDef:
    """Define a reduction whose reference is the numpy reduction ``fn``."""
    op = define(name, operands=("x",), kind=REDUCTION, infer=infer, attrs=dict(_REDUCE_ATTRS),
                doc=doc)

    @op.def_reference
    def _(x, *, axes, keepdims):
        axis = normalize_axes(axes, x.ndim)
        return np.asarray(fn(x, axis=axis, keepdims=keepdims)).astype(x.dtype, copy=False)

    op.lowers_to("reduction")
    op.computes_widened()
    return op


sum_ = _reduction("sum", """Sum over ``axes`` (default: all), dropping them unless ``keepdims``.

    %1 = "dl.sum"(%0) {axes = [0], keepdims = false} : (tensor<?x10xf32, "N">) -> tensor<10xf32>
    """, np.sum)

def quiet_mean(x: np.ndarray, axis: tuple[int, ...] | None = None,
               keepdims: bool = False) -> np.ndarray:
    """numpy's ``mean`` (the same sum, then one division), without its warning on no
    elements: the mean of nothing is ``0 / 0 = nan``, as compiled code computes it."""
    axes = normalize_axes(axis, x.ndim)
    count = int(np.prod([x.shape[a] for a in axes]))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.true_divide(np.sum(x, axis=axes, keepdims=keepdims), count)


mean = _reduction("mean", """Arithmetic mean over ``axes`` (default: all); float only.  The mean of
    no elements is nan.

    %1 = "dl.mean"(%0) {axes = [0], keepdims = false} : (tensor<?x10xf32, "N">) -> tensor<10xf32>
    """, quiet_mean, infer=_mean_rule)

def _signed_zero_extremum(fn: Callable, zero_sign: Callable) -> Callable:
    """numpy's reduction ``fn`` (NaN propagates), with a zero result's sign decided as IEEE
    754-2019 and native code decide it (``+0.0 > -0.0``), not by the order numpy visits the
    elements in: ``zero_sign(x == -0.0, x == +0.0, axis, keepdims)`` says where it is -0.0."""

    def reduce(x: np.ndarray, axis: tuple[int, ...], keepdims: bool) -> np.ndarray:
        out = np.asarray(fn(x, axis=axis, keepdims=keepdims))
        if out.dtype.kind != "f" or not (out == 0).any():
            return out
        negative = zero_sign((x == 0) & np.signbit(x), (x == 0) & ~np.signbit(x), axis, keepdims)
        signed = np.where(negative, out.dtype.type(-0.0), out.dtype.type(0.0))
        return np.where(out == 0, signed, out)

    return reduce


max_ = _reduction("max", """Maximum over ``axes`` (default: all); the gradient is shared among ties.
    An empty reduced axis is an error (numpy raises).  NaN propagates; ``+0.0 > -0.0``.

    %1 = "dl.max"(%0) {axes = [1], keepdims = true} : (tensor<?x10xf32, "N">) -> tensor<?x1xf32, "N">
    """, _signed_zero_extremum(np.max, lambda neg, pos, axis, keepdims:      # -0 unless a +0
                               ~np.any(pos, axis=axis, keepdims=keepdims)), infer=_extremum_rule)

min_ = _reduction("min", """Minimum over ``axes`` (default: all); the gradient is shared among ties.
    An empty reduced axis is an error (numpy raises).  NaN propagates; ``-0.0 < +0.0``.

    %1 = "dl.min"(%0) {axes = [1], keepdims = false} : (tensor<?x10xf32, "N">) -> tensor<?xf32, "N">
    """, _signed_zero_extremum(np.min, lambda neg, pos, axis, keepdims:      # -0 if any -0
                               np.any(neg, axis=axis, keepdims=keepdims)), infer=_extremum_rule)


@sum_.def_vjp
def _(b, op, ct):
    # d sum(x) = broadcast of the cotangent over the reduced axes
    x = op.operands[0]
    return [expand_reduced(b, ct, x.type, op.attrs["axes"], op.attrs["keepdims"])]


@mean.def_vjp
def _(b, op, ct):
    # d mean(x) = broadcast of (cotangent / count) over the reduced axes
    x = op.operands[0]
    axes = op.attrs["axes"]
    scaled = b.div(ct, element_count(b, x, axes, x.type.dtype))
    return [expand_reduced(b, scaled, x.type, axes, op.attrs["keepdims"])]


@mean.def_decompose
def _(b, op):
    # mean(x) = sum(x) / count, the count read at run time for symbolic dims
    x = op.operands[0]
    axes, keepdims = op.attrs["axes"], op.attrs["keepdims"]
    total = b.sum(x, axes=axes, keepdims=keepdims)
    return [b.div(total, element_count(b, x, axes, x.type.dtype))]


def _extremum_vjp(b, op, ct):
    # d max(x) = cotangent spread evenly over the positions equal to the maximum
    x, y = op.operands[0], op.result
    axes, keepdims = op.attrs["axes"], op.attrs["keepdims"]
    hits = b.cast(b.eq(x, expand_reduced(b, y, x.type, axes, keepdims)), dtype=x.type.dtype)
    share = b.div(hits, b.sum(hits, axes=axes, keepdims=True))
    return [b.mul(expand_reduced(b, ct, x.type, axes, keepdims), share)]


max_.def_vjp(_extremum_vjp)
min_.def_vjp(_extremum_vjp)


# ---------------------------------------------------------------------------
# argmax


def _argmax_rule(x: TensorType, *, axis: int, keepdims: bool) -> TensorType:
    if x.rank == 0:
        raise ShapeError("argmax needs an operand of rank >= 1")
    axes = normalize_axes((axis,), x.rank)
    _check_static_axes(x, axes)
    return TensorType(DType.i64, reduced_shape(x.shape, axes, keepdims))


argmax = define(
    "argmax", operands=("x",), kind=REDUCTION, infer=_argmax_rule, differentiable=False,
    attrs={"axis": attr("int", -1), "keepdims": attr("bool", False)},
    doc="""Index (i64) of the first maximum along ``axis`` (default -1); not differentiable.
    A nan counts as the maximum (numpy's rule); an empty axis is an error (numpy raises).

    %1 = "dl.argmax"(%0) {axis = -1, keepdims = false} : (tensor<?x10xf32, "N">) -> tensor<?xi64, "N">
    """)


@argmax.def_reference
def _(x, *, axis: int, keepdims: bool):
    return np.argmax(x, axis=axis, keepdims=keepdims).astype(np.int64)


argmax.lowers_to("reduction")
argmax.computes_widened()


# ---------------------------------------------------------------------------
# Empty axes (see the module docstring)

_OF_NO_ELEMENTS = {"max": "maximum", "min": "minimum", "argmax": "argmax"}


def _empty_axis_message(x: TensorType, axis: int) -> str:
    return f"reduces over axis {axis} of {x.dsl_str()}, which is empty"


def _check_static_axes(x: TensorType, axes: tuple[int, ...]) -> None:
    """The shape rule's half of the check: no reduced axis is statically 0."""
    for a in axes:
        if x.shape[a] == 0:
            raise ShapeError(f"{_empty_axis_message(x, a)}: there is no extremum of no elements "
                             "(numpy raises)")


def _value_or_none(d: Dim, bindings: Mapping[str, int]) -> int | None:
    try:
        return dims.evaluate(d, bindings)
    except KeyError:
        return None


@dataclass(frozen=True)
class NonEmptyAxes:
    """The run-time half: a ``max``, ``min`` or ``argmax`` reducing symbolic dims, none of
    which may be 0 when it runs.  The interpreter checks it before the op; compiled code
    carries it in its :class:`~compiler.codegen.driver.FunctionInfo` and the runtime checks
    it before calling native code, with the same message."""

    op: str
    operand: TensorType
    axes: tuple[int, ...]

    @staticmethod
    def of(op: Op) -> NonEmptyAxes | None:
        """The precondition of ``op``, or None when it has none (not such an op, or every
        reduced dim static -- those the shape rule has checked)."""
        if op.name not in _OF_NO_ELEMENTS:
            return None
        x = op.operands[0].type
        chosen = op.attrs["axes"] if op.name != "argmax" else (op.attrs["axis"],)
        axes = tuple(a for a in normalize_axes(chosen, x.rank) if not isinstance(x.shape[a], int))
        return NonEmptyAxes(op.name, x, axes) if axes else None

    def check(self, bindings: Mapping[str, int], loc: Location | None = None) -> None:
        """Raise :class:`DlRuntimeError` if a reduced dim is 0 under ``bindings``."""
        for a in self.axes:
            dim = self.operand.shape[a]
            if not isinstance(dim, int) and _value_or_none(dim, bindings) == 0:
                raise DlRuntimeError(
                    f"dl.{self.op} {_empty_axis_message(self.operand, a)} ({dim} = 0): the "
                    f"{_OF_NO_ELEMENTS[self.op]} of no elements is undefined (numpy raises)", loc)

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "dtype": self.operand.dtype.value, "shape": dims.shape_to_json(self.operand.shape),
                "axes": list(self.axes)}

    @staticmethod
    def from_json(d: dict[str, Any]) -> NonEmptyAxes:
        operand = TensorType(DType(d["dtype"]), dims.shape_from_json(d["shape"]))
        return NonEmptyAxes(str(d["op"]), operand, tuple(int(a) for a in d["axes"]))
