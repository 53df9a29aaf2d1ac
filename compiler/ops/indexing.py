"""Indexing and tensor plumbing: slices, concatenation, padding, gathers and scatters.

Each op has numpy's semantics (the reference *is* the numpy function of the
same name where there is one); the deliberate differences are listed in
``docs/ops.md`` ("Indexing and plumbing").  The primitives lower to native
code through the kernel families of ``compiler/codegen/indexing.py``:

* ``slice``, ``slice_update``, ``concat`` -- one loop nest over the result
  reading its operands at computed coordinates (a ``Take`` in loop IR), fused
  with their producers and consumers: no copy where the consumer reads the
  slice directly;
* ``gather``, ``take_along_axis`` -- the same, the coordinate along ``axis``
  read from the index tensor, after a run-time check of every index;
* ``scatter_add``, ``scatter_add_along_axis`` -- a scatter kernel (copy, then
  add each update at its index, in order);
* ``squeeze``, ``expand_dims`` -- views (reshapes).

``stack``, ``split``, ``flip``, ``pad``, ``tile``, ``repeat`` and ``where``
are composites of those and of ``reshape``, ``broadcast_to`` and ``select``.

**Indices** (``gather``, ``take_along_axis``, the scatters) are i32 or i64 and
follow numpy's ``take``: ``-n <= i < n`` along an axis of size ``n``, a
negative index counting from the end.  Any other index is an error when the
function runs: the reference interpreter raises :class:`DlIndexError` naming
the index; native code checks every index before the kernel that reads with
them runs (no read or write outside the operand, ever) and the call raises
:class:`DlIndexError` naming the op and the range.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..diagnostics import DlIndexError
from ..ir import dims
from ..ir.core import Value
from ..ir.types import Dim, DType, TensorType
from .base import (
    COMPOSITE,
    LAYOUT,
    OTHER,
    OpDef,
    ShapeError,
    attr,
    broadcast_shapes,
    define,
    dim_str,
    normalize_axes,
    required,
    same_dtype,
    shape_str,
)
from .elementwise import select
from .rules import zeros

# ---------------------------------------------------------------------------
# Shared helpers: axes, spans, index checks


def _axis(axis: int, rank: int) -> int:
    """``axis`` as a non-negative int for ``rank`` (numpy's rule: ``-rank <= axis < rank``)."""
    if not -rank <= axis < rank:
        raise ShapeError(f"axis {axis} is out of range for rank {rank}")
    return axis % rank


@dataclass(frozen=True)
class Span:
    """One axis of a slice, resolved: the result's coordinate ``i`` reads the operand at
    ``start + i * step``, for ``0 <= i < length``.  ``start`` and ``length`` are dims: over a
    symbolic dim ``N``, ``::-1`` is ``Span("N-1", -1, "N")`` and ``1:`` is
    ``Span("min(N,1)", 1, "max(N-1,0)")`` (as dim expressions, ``compiler/ir/dims.py``)."""

    start: Dim
    step: int
    length: Dim

    @property
    def is_full(self) -> bool:
        """Whether the span reads the whole dim in order (``:``)."""
        return self.start == 0 and self.step == 1


Bound = Dim | None


def resolve_slice(shape: tuple[Dim, ...], start: tuple[Bound, ...] | None,
                  stop: tuple[Bound, ...] | None,
                  step: tuple[int | None, ...] | None) -> list[Span]:
    """numpy's ``x[start:stop:step, ..]`` for every axis of ``shape``, as :class:`Span` s.

    The tuples may be shorter than the rank (the missing axes are taken whole, as in
    numpy); ``None`` entries take numpy's defaults.  Bounds are ints or dims (``N-1``);
    a step is an int.  A negative bound counts from the end and out-of-range bounds clamp,
    as in numpy -- for a symbolic dim or bound, in the dim expressions of the result, so
    that they hold for every size the call binds (``x[0:N-1]`` with N = 0 is empty).
    """
    rank = len(shape)
    parts = {"start": start or (), "stop": stop or (), "step": step or ()}
    for name, values in parts.items():
        if len(values) > rank:
            raise ShapeError(f"'{name}' has {len(values)} entries for an operand of rank {rank}")
    spans = []
    for axis, n in enumerate(shape):
        a, z, s = (values[axis] if axis < len(values) else None for values in parts.values())
        if s is not None and not isinstance(s, int):
            raise ShapeError(f"a slice step must be a compile-time integer, got {s} (axis {axis})")
        if s == 0:
            raise ShapeError(f"slice step cannot be zero (axis {axis})")
        if all(isinstance(v, int) or v is None for v in (n, a, z)):
            lo, hi, st = slice(a, z, s).indices(n)        # type: ignore[arg-type]
            spans.append(Span(lo, st, len(range(lo, hi, st))))
            continue
        try:
            spans.append(_symbolic_span(n, a, z, 1 if s is None else s))
        except dims.DimSyntaxError as e:
            raise ShapeError(f"slicing dim {n} (axis {axis}): {e}") from None
    return spans


def _symbolic_span(n: Dim, a: Bound, z: Bound, s: int) -> Span:
    """numpy's ``slice(a, z, s).indices(n)`` and the length, as dim expressions."""
    if s > 0:
        low, high = 0, n                               # where bounds clamp to
        first = 0 if a is None else _clamped_bound(a, n, low, high)
        end = n if z is None else _clamped_bound(z, n, low, high)
        length = dims.ceildiv(dims.sub(end, first), s)
    else:
        low, high = -1, dims.sub(n, 1)
        first = high if a is None else _clamped_bound(a, n, low, high)
        end = -1 if z is None else _clamped_bound(z, n, low, high)
        length = dims.ceildiv(dims.sub(first, end), -s)
    return Span(first, s, dims.maximum(length, 0))


def _clamped_bound(e: Dim, n: Dim, low: Dim, high: Dim) -> Dim:
    """A slice bound ``e`` read as numpy does (``e + n`` when negative), clamped to
    ``[low, high]``.  When no size makes ``e`` negative with ``e + n`` above ``low``,
    counting from the end cannot change the clamped value and the expression leaves it out
    (``N-1`` as a stop over ``N`` is ``max(N-1,0)``, not ``wrap(N-1,N)``)."""
    if not isinstance(low, int) or not dims.never_together((e, -math.inf, -1),
                                                            (dims.add(e, n), low + 1, math.inf)):
        e = dims.wrap(e, n)
    return dims.clamp(e, low, high)


def _slice_objects(spans: list[Span], shape: tuple[int, ...]) -> tuple[slice, ...]:
    """numpy slices equal to ``spans`` over a concrete ``shape`` (static spans)."""
    out = []
    for span in spans:
        assert isinstance(span.start, int) and isinstance(span.length, int)
        if span.length == 0:                # (a start of -1, before the first element, reads as the last)
            out.append(slice(0, 0))
            continue
        stop = span.start + span.length * span.step
        out.append(slice(span.start, stop if stop >= 0 else None, span.step))
    return tuple(out)


def _slice_attrs(rank: int, axis: int, start: int | None, stop: int | None,
                 step: int | None = None) -> dict[str, Any]:
    """``slice`` attributes taking ``start:stop:step`` along ``axis``, every other axis whole."""
    def along(value: int | None) -> tuple[int | None, ...]:
        return tuple(value if a == axis else None for a in range(rank))
    return {"start": along(start), "stop": along(stop), "step": along(step)}


def _index_dtype(t: TensorType) -> None:
    if not t.dtype.is_int:
        raise ShapeError(f"indices must be i32 or i64, got {t.dsl_str()}")


def check_indices(op: str, indices: np.ndarray, n: int, axis: int) -> None:
    """Raise :class:`DlIndexError` for the first index outside ``[-n, n)`` (numpy ``take``'s rule)."""
    bad = (indices < -n) | (indices >= n)
    if np.any(bad):
        value = int(indices[bad].reshape(-1)[0])
        raise DlIndexError(f"{op}: index {value} is out of range [{-n}, {n}) for axis {axis}")


def index_error_message(op: str, n: Dim, axis: int) -> str:
    """What native code reports for an index outside ``[-n, n)`` (it does not know which)."""
    return (f"{op}: an index is out of range [-{dim_str(n)}, {dim_str(n)}) for axis {axis} "
            "(the interpreter, dlc run --interp, names the index and the line)")


# ---------------------------------------------------------------------------
# slice


_SLICE_ATTRS = {"start": attr("bounds", None), "stop": attr("bounds", None),
                "step": attr("bounds", None)}


def _slice_rule(x: TensorType, *, start, stop, step) -> TensorType:
    spans = resolve_slice(x.shape, start, stop, step)
    return x.with_shape(tuple(s.length for s in spans))


slice_ = define(
    "slice", operands=("x",), kind=LAYOUT, infer=_slice_rule, attrs=dict(_SLICE_ATTRS),
    doc="""numpy basic slicing ``x[start[0]:stop[0]:step[0], ..]``: per axis, ``None`` entries
    (and axes past the end of the lists) take numpy's defaults, negative bounds count from
    the end, out-of-range bounds clamp, a negative step walks backwards.  Over a symbolic dim,
    or with bounds that are dims (``"N-1"``), the result's dims are expressions of the
    symbols (``max(N-1,0)``) that keep numpy's rules for every size.  Lowered to reads at
    computed coordinates fused into the consumer: no copy.

    %1 = "dl.slice"(%0) {start = [1, unit], step = [2, unit], stop = [7, unit]} : (tensor<8x?xf32, "N">) -> tensor<3x?xf32, "N">
    """)


@slice_.def_reference
def _(x, *, start, stop, step):
    spans = resolve_slice(x.shape, start, stop, step)
    return x[_slice_objects(spans, x.shape)].copy()


@slice_.def_vjp
def _(b, op, ct):
    # the adjoint of reading a slice is writing it into zeros
    (x,) = op.operands
    return [b.slice_update(zeros(b, x.type), ct, **op.attrs)]


# ---------------------------------------------------------------------------
# slice_update


def _slice_update_rule(base: TensorType, update: TensorType, *, start, stop, step) -> TensorType:
    same_dtype([base, update], "base and update")
    spans = resolve_slice(base.shape, start, stop, step)
    want = tuple(s.length for s in spans)
    if update.shape != want:
        raise ShapeError(f"update {update.dsl_str()} does not have the slice's shape {shape_str(want)}")
    return base


slice_update = define(
    "slice_update", operands=("base", "update"), kind=OTHER, infer=_slice_update_rule,
    attrs=dict(_SLICE_ATTRS),
    doc="""``base`` with the slice ``base[start:stop:step, ..]`` (as for ``slice``) replaced by
    ``update``, which has exactly the slice's shape: numpy's ``out = base.copy();
    out[slices] = update``.  The adjoint of ``slice``.

    %2 = "dl.slice_update"(%0, %1) {start = [1], step = [2], stop = [7]} : (tensor<8xf32>, tensor<3xf32>) -> tensor<8xf32>
    """)


@slice_update.def_reference
def _(base, update, *, start, stop, step):
    out = base.copy()
    out[_slice_objects(resolve_slice(base.shape, start, stop, step), base.shape)] = update
    return out


@slice_update.def_vjp
def _(b, op, ct):
    # d base: ct with the slice zeroed; d update: the slice of ct
    _, update = op.operands
    return [b.slice_update(ct, zeros(b, update.type), **op.attrs), b.slice(ct, **op.attrs)]


# ---------------------------------------------------------------------------
# concat


def _concat_rule(*xs: TensorType, axis: int) -> TensorType:
    first = same_dtype(list(xs))
    if first.rank == 0:
        raise ShapeError("cannot concatenate rank-0 tensors")
    a = _axis(axis, first.rank)
    for x in xs[1:]:
        if x.rank != first.rank:
            raise ShapeError(f"operands have different ranks: {first.dsl_str()} and {x.dsl_str()}")
        for d, (p, q) in enumerate(zip(first.shape, x.shape)):
            if d != a and p != q:
                raise ShapeError(f"operands {first.dsl_str()} and {x.dsl_str()} differ in dim {d} "
                                 f"({dim_str(p)} vs {dim_str(q)}); only axis {a} may differ")
    sizes = [x.shape[a] for x in xs]
    if len(xs) == 1:
        total = sizes[0]
    elif all(isinstance(s, int) for s in sizes):
        total = sum(sizes)
    else:
        raise ShapeError(f"concatenating along symbolic dim(s) {', '.join(dim_str(s) for s in sizes)} "
                         "needs static sizes; not supported yet")
    return first.with_shape(first.shape[:a] + (total,) + first.shape[a + 1:])


concat = define(
    "concat", operands=("xs",), kind=OTHER, infer=_concat_rule, variadic=True,
    attrs={"axis": attr("int", 0)},
    doc="""numpy ``concatenate(xs, axis)``: one dtype, equal dims except along ``axis``; the
    sizes along ``axis`` must be static (unless there is one operand).

    %2 = "dl.concat"(%0, %1) {axis = 1} : (tensor<?x3xf32, "N">, tensor<?x4xf32, "N">) -> tensor<?x7xf32, "N">
    """)


@concat.def_reference
def _(*xs, axis: int):
    return np.concatenate(xs, axis=axis)


def concat_offsets(sizes: list[Dim]) -> list[int]:
    """Where each operand starts along the concatenation axis (static sizes)."""
    offsets, at = [], 0
    for s in sizes:
        offsets.append(at)
        at += s if isinstance(s, int) else 0
    return offsets


@concat.def_vjp
def _(b, op, ct):
    # each operand's cotangent is its part of ct
    rank = ct.type.rank
    a = op.attrs["axis"] % rank
    if len(op.operands) == 1:
        return [ct]
    sizes = [x.type.shape[a] for x in op.operands]
    return [b.slice(ct, **_slice_attrs(rank, a, at, at + n))
            for at, n in zip(concat_offsets(sizes), sizes)]


# ---------------------------------------------------------------------------
# stack


def _stack_rule(*xs: TensorType, axis: int) -> TensorType:
    first = same_dtype(list(xs))
    for x in xs[1:]:
        if x.shape != first.shape:
            raise ShapeError(f"all operands must have one shape, got {first.dsl_str()} and {x.dsl_str()}")
    a = _axis(axis, first.rank + 1)
    return first.with_shape(first.shape[:a] + (len(xs),) + first.shape[a:])


stack = define(
    "stack", operands=("xs",), kind=COMPOSITE, infer=_stack_rule, variadic=True,
    attrs={"axis": attr("int", 0)},
    doc="""numpy ``stack(xs, axis)``: operands of one shape and dtype joined along a new axis.

    %2 = "dl.stack"(%0, %1) {axis = 0} : (tensor<?x3xf32, "N">, tensor<?x3xf32, "N">) -> tensor<2x?x3xf32, "N">
    """)


@stack.def_reference
def _(*xs, axis: int):
    return np.stack(xs, axis=axis)


@stack.def_decompose
def _(b, op):
    a = op.attrs["axis"] % op.result.type.rank
    return [b.concat(*(b.expand_dims(x, axis=a) for x in op.operands), axis=a)]


@stack.def_vjp
def _(b, op, ct):
    # operand i's cotangent is ct's slice i along the new axis, without that axis
    rank = ct.type.rank
    a = op.attrs["axis"] % rank
    return [b.squeeze(b.slice(ct, **_slice_attrs(rank, a, i, i + 1)), axis=a)
            for i in range(len(op.operands))]


# ---------------------------------------------------------------------------
# split


def split_spans(x: TensorType, sections: int | None, indices: tuple[int, ...] | None,
                axis: int) -> list[tuple[int | None, int | None]]:
    """The ``(start, stop)`` bounds of each part along ``axis`` (numpy ``split``)."""
    a = _axis(axis, x.rank)
    n = x.shape[a]
    if (sections is None) == (indices is None):
        raise ShapeError("give exactly one of 'sections' (a count of equal parts) and "
                         "'indices' (the split points)")
    if sections is not None:
        if sections <= 0:
            raise ShapeError(f"'sections' must be positive, got {sections}")
        if sections == 1:
            return [(None, None)]
        if not isinstance(n, int):
            raise ShapeError(f"splitting symbolic dim {n} needs a static size; not supported yet")
        if n % sections:
            raise ShapeError(f"dim {n} does not split into {sections} equal parts")
        part = n // sections
        return [(i * part, (i + 1) * part) for i in range(sections)]
    if not isinstance(n, int):
        raise ShapeError(f"splitting symbolic dim {n} needs a static size; not supported yet")
    points: list[int | None] = [None, *indices, None]
    return list(zip(points[:-1], points[1:]))


def _split_rule(x: TensorType, *, sections, indices, axis: int) -> list[TensorType]:
    if x.rank == 0:
        raise ShapeError("cannot split a rank-0 tensor")
    a = _axis(axis, x.rank)
    return [_slice_rule(x, **_slice_attrs(x.rank, a, lo, hi))
            for lo, hi in split_spans(x, sections, indices, a)]


split = define(
    "split", operands=("x",), kind=COMPOSITE, infer=_split_rule,
    attrs={"sections": attr("int", None), "indices": attr("ints", None), "axis": attr("int", 0)},
    doc="""numpy ``split(x, sections | indices, axis)``, one result per part: ``sections``
    equal parts (the dim must divide), or the parts between the split points ``indices``
    (``x[:i0], x[i0:i1], .., x[ik:]`` with numpy's slice rules: an empty part where the
    points decrease or pass the end).

    %1, %2 = "dl.split"(%0) {axis = 1, sections = 2} : (tensor<?x6xf32, "N">) -> (tensor<?x3xf32, "N">, tensor<?x3xf32, "N">)
    """)


@split.def_reference
def _(x, *, sections, indices, axis: int):
    return [p.copy() for p in np.split(x, sections if sections is not None else list(indices), axis=axis)]


@split.def_decompose
def _(b, op):
    x = op.operands[0]
    a = op.attrs["axis"] % x.type.rank
    return [b.slice(x, **_slice_attrs(x.type.rank, a, lo, hi))
            for lo, hi in split_spans(x.type, op.attrs["sections"], op.attrs["indices"], a)]


@split.def_vjp
def _(b, op, *cts):
    x = op.operands[0]
    a = op.attrs["axis"] % x.type.rank
    bounds = split_spans(x.type, op.attrs["sections"], op.attrs["indices"], a)
    if len(cts) == 1:
        return [cts[0]]
    spans = [resolve_slice(x.type.shape, **_slice_attrs(x.type.rank, a, lo, hi))[a] for lo, hi in bounds]
    if all(isinstance(s.length, int) for s in spans) and sum(s.length for s in spans) == x.type.shape[a]:
        # the parts tile the axis in order: their cotangents joined again
        return [b.concat(*cts, axis=a)]
    # split points that go back make parts overlap: each part's cotangent added at its place
    total = None
    for (lo, hi), ct in zip(bounds, cts):
        g = b.slice_update(zeros(b, x.type), ct, **_slice_attrs(x.type.rank, a, lo, hi))
        total = g if total is None else b.add(total, g)
    return [total]


# ---------------------------------------------------------------------------
# flip


def _flip_rule(x: TensorType, *, axis) -> TensorType:
    _flip_slice(x.shape, axis)          # symbolic dims can be flipped: '::-1'
    return x


def _flip_slice(shape: tuple[Dim, ...], axis) -> dict[str, Any]:
    axes = normalize_axes(axis, len(shape))
    step = tuple(-1 if a in axes else None for a in range(len(shape)))
    attrs = {"start": None, "stop": None, "step": step}
    resolve_slice(shape, None, None, step)
    return attrs


flip = define(
    "flip", operands=("x",), kind=COMPOSITE, infer=_flip_rule,
    attrs={"axis": attr("optional_ints", None)},
    doc="""numpy ``flip(x, axis)``: the order of the elements reversed along ``axis`` (an int,
    a list, or none: every axis).  A slice with step -1.

    %1 = "dl.flip"(%0) {axis = [1]} : (tensor<?x3xf32, "N">) -> tensor<?x3xf32, "N">
    """)


@flip.def_reference
def _(x, *, axis):
    return np.flip(x, axis=normalize_axes(axis, x.ndim)).copy()


@flip.def_decompose
def _(b, op):
    x = op.operands[0]
    return [b.slice(x, **_flip_slice(x.type.shape, op.attrs["axis"]))]


@flip.def_vjp
def _(b, op, ct):
    # flipping is its own adjoint
    return [b.flip(ct, axis=op.attrs["axis"])]


# ---------------------------------------------------------------------------
# squeeze, expand_dims


def _squeeze_axes(x: TensorType, axis: tuple[int, ...] | None) -> tuple[int, ...]:
    if axis is None:
        symbolic = [d for d in x.shape if not isinstance(d, int)]
        if symbolic:
            raise ShapeError(f"squeeze without 'axis' of {x.dsl_str()} is ambiguous: symbolic dim "
                             f"{symbolic[0]} may be 1 at run time; give 'axis'")
        return tuple(a for a, d in enumerate(x.shape) if d == 1)
    axes = normalize_axes(axis, x.rank)
    for a in axes:
        if x.shape[a] != 1:
            raise ShapeError(f"cannot squeeze axis {a} of {x.dsl_str()}: its size is "
                             f"{dim_str(x.shape[a])}, not 1")
    return axes


def _squeeze_rule(x: TensorType, *, axis) -> TensorType:
    axes = _squeeze_axes(x, axis)
    return x.with_shape(tuple(d for a, d in enumerate(x.shape) if a not in axes))


squeeze = define(
    "squeeze", operands=("x",), kind=LAYOUT, infer=_squeeze_rule,
    attrs={"axis": attr("optional_ints", None)},
    doc="""numpy ``squeeze(x, axis)``: drop size-1 axes (those in ``axis``, or every one when
    ``axis`` is none -- which needs a static shape).  A view: no copy.

    %1 = "dl.squeeze"(%0) {axis = [1]} : (tensor<?x1x3xf32, "N">) -> tensor<?x3xf32, "N">
    """)


@squeeze.def_reference
def _(x, *, axis):
    return np.squeeze(x, axis=axis).copy()


def _expand_dims_rule(x: TensorType, *, axis) -> TensorType:
    rank = x.rank + len(axis)
    axes = normalize_axes(axis, rank)
    dims = iter(x.shape)
    return x.with_shape(tuple(1 if a in axes else next(dims) for a in range(rank)))


expand_dims = define(
    "expand_dims", operands=("x",), kind=LAYOUT, infer=_expand_dims_rule,
    attrs={"axis": required("ints")},
    doc="""numpy ``expand_dims(x, axis)``: insert size-1 axes at the positions ``axis`` (an int
    or a list) of the result.  A view: no copy.

    %1 = "dl.expand_dims"(%0) {axis = [1]} : (tensor<?x3xf32, "N">) -> tensor<?x1x3xf32, "N">
    """)


@expand_dims.def_reference
def _(x, *, axis):
    return np.expand_dims(x, axis=tuple(axis)).copy()


def _reshape_back(b, op, ct):
    # a view's adjoint is the view back
    return [b.reshape(ct, shape=op.operands[0].type.shape)]


squeeze.def_vjp(_reshape_back)
expand_dims.def_vjp(_reshape_back)


# ---------------------------------------------------------------------------
# where


def _where_rule(cond: TensorType, a: TensorType, b: TensorType) -> TensorType:
    return select.infer(cond, a, b)


where = define(
    "where", operands=("cond", "on_true", "on_false"), kind=COMPOSITE, infer=_where_rule,
    doc="""numpy ``where(cond, on_true, on_false)``: ``select`` by another name (bool ``cond``,
    one dtype for the values, all three broadcast).

    %3 = "dl.where"(%0, %1, %2) : (tensor<?x3xi1, "N">, tensor<?x3xf32, "N">, tensor<f32>) -> tensor<?x3xf32, "N">
    """)


@where.def_reference
def _(cond, on_true, on_false):
    return np.where(cond, on_true, on_false)


@where.def_decompose
def _(b, op):
    return [b.select(*op.operands)]


@where.def_vjp
def _(b, op, ct):
    return select.vjp(b, op, ct)


# ---------------------------------------------------------------------------
# gather, take_along_axis


def _gather_rule(x: TensorType, indices: TensorType, *, axis: int) -> TensorType:
    _index_dtype(indices)
    a = _axis(axis, x.rank)
    return x.with_shape(x.shape[:a] + indices.shape + x.shape[a + 1:])


gather = define(
    "gather", operands=("x", "indices"), kind=OTHER, infer=_gather_rule,
    attrs={"axis": attr("int", 0)},
    doc="""numpy ``take(x, indices, axis)``: ``x``'s slices along ``axis`` at ``indices`` (i32 or
    i64, any rank): the result's shape is ``x.shape[:axis] + indices.shape + x.shape[axis+1:]``.
    An index must lie in ``[-n, n)`` (negative counts from the end); any other is an error when
    the function runs (native code checks before reading).  No gradient flows to ``indices``.

    %2 = "dl.gather"(%0, %1) {axis = 0} : (tensor<1000x64xf32>, tensor<?x8xi32, "N">) -> tensor<?x8x64xf32, "N">
    """)


def _reading_rules(op: OpDef, numpy_fn: Callable, scatter: str) -> None:
    """The reference and VJP of a reading op (``gather``, ``take_along_axis``): numpy's
    function after the index check; the adjoint adds each cotangent element at its index,
    into zeros, with the matching ``scatter``."""

    @op.def_reference
    def _(x, indices, *, axis: int):
        check_indices(op.name, indices, x.shape[axis], axis % x.ndim)
        return numpy_fn(x, indices, axis=axis)

    @op.def_vjp
    def _(b, read, ct):
        x, indices = read.operands
        return [b.emit(scatter, zeros(b, x.type), indices, ct, axis=read.attrs["axis"]), None]


_reading_rules(gather, np.take, "scatter_add")


def along_axis_shape(x: TensorType, indices: TensorType, axis: int) -> tuple[Dim, ...]:
    """The shape of ``take_along_axis(x, indices, axis)``: the other dims broadcast."""
    if indices.rank != x.rank:
        raise ShapeError(f"indices {indices.dsl_str()} must have the rank of {x.dsl_str()}")
    a = _axis(axis, x.rank)
    shape = []
    for d, (p, q) in enumerate(zip(x.shape, indices.shape)):
        if d == a:
            shape.append(q)
            continue
        try:
            shape.append(broadcast_shapes((p,), (q,))[0])
        except ShapeError:
            raise ShapeError(f"indices {indices.dsl_str()} do not broadcast with {x.dsl_str()} "
                             f"in dim {d} ({dim_str(q)} vs {dim_str(p)})") from None
    return tuple(shape)


def _take_along_axis_rule(x: TensorType, indices: TensorType, *, axis: int) -> TensorType:
    _index_dtype(indices)
    return x.with_shape(along_axis_shape(x, indices, axis))


take_along_axis = define(
    "take_along_axis", operands=("x", "indices"), kind=OTHER, infer=_take_along_axis_rule,
    attrs={"axis": required("int")},
    doc="""numpy ``take_along_axis(x, indices, axis)``: ``out[.., j, ..] = x[.., indices[.., j,
    ..], ..]`` along ``axis``; ``indices`` has ``x``'s rank and the other dims broadcast.  Same
    index rule as ``gather``.

    %2 = "dl.take_along_axis"(%0, %1) {axis = 1} : (tensor<?x10xf32, "N">, tensor<?x1xi64, "N">) -> tensor<?x1xf32, "N">
    """)


def along_axis_index(base_shape: tuple[int, ...], indices: np.ndarray, axis: int,
                     out_shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """numpy fancy indices addressing ``base`` at ``take_along_axis`` positions of ``out_shape``."""
    index = []
    for d, n in enumerate(base_shape):
        if d == axis:
            index.append(np.broadcast_to(indices, out_shape))
            continue
        shape = [1] * len(base_shape)
        shape[d] = n
        index.append(np.broadcast_to(np.arange(n).reshape(shape), out_shape))
    return tuple(index)


_reading_rules(take_along_axis, np.take_along_axis, "scatter_add_along_axis")


# ---------------------------------------------------------------------------
# scatter_add, scatter_add_along_axis


def _scatter_types(base: TensorType, indices: TensorType, updates: TensorType, want: tuple) -> TensorType:
    if base.dtype is DType.bool:
        raise ShapeError(f"scatter_add adds numbers, got {base.dsl_str()}")
    same_dtype([base, updates], "base and updates")
    if updates.shape != tuple(want):
        raise ShapeError(f"updates {updates.dsl_str()} must have shape {shape_str(tuple(want))}")
    return base


def _scatter_add_rule(base: TensorType, indices: TensorType, updates: TensorType, *, axis: int) -> TensorType:
    _index_dtype(indices)
    a = _axis(axis, base.rank)
    return _scatter_types(base, indices, updates, base.shape[:a] + indices.shape + base.shape[a + 1:])


scatter_add = define(
    "scatter_add", operands=("base", "indices", "updates"), kind=OTHER, infer=_scatter_add_rule,
    attrs={"axis": attr("int", 0)},
    doc="""``base`` plus each slice of ``updates`` added at its index along ``axis``: numpy
    ``out = base.copy(); np.add.at(out, (:, .., indices), updates)``, the adjoint of ``gather``.
    ``updates`` has exactly ``gather``'s result shape; repeated indices add up (in row-major
    order of ``updates``); the index rule is ``gather``'s.

    %3 = "dl.scatter_add"(%0, %1, %2) {axis = 0} : (tensor<1000x64xf32>, tensor<?xi32, "N">, tensor<?x64xf32, "N">) -> tensor<1000x64xf32>
    """)


def _scatter_reference(name: str, ufunc: np.ufunc) -> Callable:
    """numpy's ``out = base.copy(); ufunc.at(out, (:, .., indices), updates)``, the index
    rule checked first."""
    def reference(base, indices, updates, *, axis: int):
        a = axis % base.ndim
        check_indices(name, indices, base.shape[a], a)
        out = base.copy()
        ufunc.at(out, (slice(None),) * a + (indices,), updates)
        return out
    return reference


scatter_add.def_reference(_scatter_reference("scatter_add", np.add))


def _scatter_vjp(read: str) -> Callable:
    """A scatter's VJP: d base = ct; d updates = ct read back at the indices with ``read``."""
    def vjp(b, op, ct):
        _, indices, _ = op.operands
        return [ct, None, b.emit(read, ct, indices, axis=op.attrs["axis"])]
    return vjp


scatter_add.def_vjp(_scatter_vjp("gather"))


def _scatter_min_rule(base: TensorType, indices: TensorType, updates: TensorType, *, axis: int) -> TensorType:
    if not base.dtype.is_int or base.dtype.is_storage:
        raise ShapeError(f"scatter_min takes i32 or i64 tensors, got {base.dsl_str()}")
    return _scatter_add_rule(base, indices, updates, axis=axis)


scatter_min = define(
    "scatter_min", operands=("base", "indices", "updates"), kind=OTHER, infer=_scatter_min_rule,
    attrs={"axis": attr("int", 0)}, differentiable=False,
    doc="""``base`` with each slice of ``updates`` folded in at its index along ``axis`` by
    ``minimum``: numpy ``out = base.copy(); np.minimum.at(out, (:, .., indices), updates)``;
    i32 or i64 only (bookkeeping: the first position of each index, as the sparse SGD
    update finds it).  Shapes and the index rule are ``scatter_add``'s; not differentiable.

    %3 = "dl.scatter_min"(%0, %1, %2) {axis = 0} : (tensor<1000xi64>, tensor<?xi32, "N">, tensor<?xi64, "N">) -> tensor<1000xi64>
    """)


scatter_min.def_reference(_scatter_reference("scatter_min", np.minimum))


def _scatter_along_rule(base: TensorType, indices: TensorType, updates: TensorType, *, axis: int) -> TensorType:
    _index_dtype(indices)
    return _scatter_types(base, indices, updates, along_axis_shape(base, indices, axis))


scatter_add_along_axis = define(
    "scatter_add_along_axis", operands=("base", "indices", "updates"), kind=OTHER,
    infer=_scatter_along_rule, attrs={"axis": required("int")},
    doc="""``base`` plus each element of ``updates`` added at its ``take_along_axis`` position:
    the adjoint of ``take_along_axis``.  ``updates`` has that op's result shape; repeated
    positions add up in row-major order of ``updates``; the index rule is ``gather``'s.

    %3 = "dl.scatter_add_along_axis"(%0, %1, %2) {axis = 1} : (tensor<?x10xf32, "N">, tensor<?x1xi64, "N">, tensor<?x1xf32, "N">) -> tensor<?x10xf32, "N">
    """)


@scatter_add_along_axis.def_reference
def _(base, indices, updates, *, axis: int):
    a = axis % base.ndim
    check_indices("scatter_add_along_axis", indices, base.shape[a], a)
    out = base.copy()
    np.add.at(out, along_axis_index(base.shape, indices, a, updates.shape), updates)
    return out


scatter_add_along_axis.def_vjp(_scatter_vjp("take_along_axis"))


# ---------------------------------------------------------------------------
# pad


PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")


def pad_pairs(pad_width: np.ndarray, rank: int) -> list[tuple[int, int]]:
    """``pad_width`` as one ``(before, after)`` pair per axis (numpy's broadcasting of it)."""
    width = np.asarray(pad_width)
    if width.dtype.kind not in "iu":
        raise ShapeError(f"pad widths must be integers, got {width.tolist()}")
    try:
        pairs = np.broadcast_to(width, (rank, 2))
    except ValueError:
        raise ShapeError(f"pad widths {width.tolist()} do not fit rank {rank}: give [[before, after]] "
                         "per axis, one [before, after] for all, or one number") from None
    if np.any(pairs < 0):
        raise ShapeError(f"pad widths must be >= 0, got {width.tolist()}")
    return [(int(lo), int(hi)) for lo, hi in pairs]


def _pad_rule(x: TensorType, *, pad_width, mode: str, value) -> TensorType:
    shape = []
    for a, (d, (lo, hi)) in enumerate(zip(x.shape, pad_pairs(pad_width, x.rank))):
        if lo == hi == 0:
            shape.append(d)
        elif not isinstance(d, int):
            raise ShapeError(f"padding symbolic dim {d} (axis {a}) needs a static size; not supported yet")
        elif d == 0 and mode != "constant":
            raise ShapeError(f"cannot pad the empty axis {a} in mode '{mode}'")
        else:
            shape.append(lo + d + hi)
    return x.with_shape(tuple(shape))


pad = define(
    "pad", operands=("x",), kind=COMPOSITE, infer=_pad_rule,
    attrs={"pad_width": required("dense"), "mode": attr("str", "constant", choices=PAD_MODES),
           "value": attr("scalar", 0)},
    doc="""numpy ``pad(x, pad_width, mode)``: ``pad_width`` is ``[[before, after], ..]`` per axis
    (or one pair, or one number, for every axis); ``mode`` is ``constant`` (``value``, cast to
    ``x``'s dtype), ``edge``, ``reflect``, ``symmetric`` or ``wrap`` as in numpy.  A symbolic
    dim cannot be padded.

    %1 = "dl.pad"(%0) {mode = "constant", pad_width = dense<[[0, 0], [1, 2]]> : tensor<2x2xi64>, value = 0} : (tensor<?x3xf32, "N">) -> tensor<?x6xf32, "N">
    """)


def pad_indices(n: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """The source index of each position of a padded axis (modes other than constant)."""
    return np.pad(np.arange(n, dtype=np.int64), (lo, hi), mode=mode)


@pad.def_reference
def _(x, *, pad_width, mode: str, value):
    pairs = np.array(pad_pairs(pad_width, x.ndim), dtype=np.int64).reshape(x.ndim, 2)
    if x.ndim == 0:                     # nothing to pad (numpy fails on an empty width list)
        return x.copy()
    if mode == "constant":
        fill = np.asarray(value).astype(x.dtype)
        return np.pad(x, pairs, mode="constant", constant_values=fill)
    return np.pad(x, pairs, mode=mode)


def _padded_axes(x: Value, pad_width) -> list[tuple[int, int, int]]:
    return [(a, lo, hi) for a, (lo, hi) in enumerate(pad_pairs(pad_width, x.type.rank)) if lo or hi]


@pad.def_decompose
def _(b, op):
    x = op.operands[0]
    mode = op.attrs["mode"]
    axes = _padded_axes(x, op.attrs["pad_width"])
    if mode == "constant":
        # x written into a tensor filled with the value
        fill = np.asarray(op.attrs["value"]).astype(x.type.dtype.np).item()
        base = b.broadcast_to(b.constant(fill, x.type.dtype), shape=op.result.type.shape)
        return [b.slice_update(base, x, **_pad_slice(x.type.rank, axes))]
    for a, lo, hi in axes:       # each padded axis: a gather of the source indices
        idx = pad_indices(x.type.shape[a], lo, hi, mode)
        x = b.gather(x, b.constant(idx, DType.i64), axis=a)
    return [x]


def _pad_slice(rank: int, axes: list[tuple[int, int, int]]) -> dict[str, Any]:
    """The slice of a constant-padded result holding the operand."""
    start: list[int | None] = [None] * rank
    stop: list[int | None] = [None] * rank
    for a, lo, hi in axes:
        start[a], stop[a] = lo, -hi if hi else None
    return {"start": tuple(start), "stop": tuple(stop), "step": None}


@pad.def_vjp
def _(b, op, ct):
    x = op.operands[0]
    mode = op.attrs["mode"]
    axes = _padded_axes(x, op.attrs["pad_width"])
    if mode == "constant":
        # the operand's part of ct
        return [b.slice(ct, **_pad_slice(x.type.rank, axes))]
    # undo the gathers in reverse: each adds the padded positions' cotangents to their sources
    shapes = [x.type]
    for a, lo, hi in axes[:-1]:
        t = shapes[-1]
        shapes.append(t.with_shape(t.shape[:a] + (lo + t.shape[a] + hi,) + t.shape[a + 1:]))
    for (a, lo, hi), t in zip(reversed(axes), reversed(shapes)):
        idx = pad_indices(t.shape[a], lo, hi, mode)
        ct = b.scatter_add(zeros(b, t), b.constant(idx, DType.i64), ct, axis=a)
    return [ct]


# ---------------------------------------------------------------------------
# tile, repeat


def _tile_shapes(x: TensorType, reps: tuple[int, ...]) -> tuple[tuple[Dim, ...], tuple[int, ...]]:
    """numpy ``tile``'s promotion: the operand's shape and ``reps`` at one length."""
    if any(r < 0 for r in reps):
        raise ShapeError(f"reps must be >= 0, got {list(reps)}")
    rank = max(x.rank, len(reps))
    shape = (1,) * (rank - x.rank) + tuple(x.shape)
    reps = (1,) * (rank - len(reps)) + tuple(reps)
    for a, (d, r) in enumerate(zip(shape, reps)):
        if not isinstance(d, int) and r != 1:
            raise ShapeError(f"tiling symbolic dim {d} (axis {a}) {r} times needs a static size; "
                             "not supported yet")
    return shape, reps


def _tile_rule(x: TensorType, *, reps) -> TensorType:
    shape, reps = _tile_shapes(x, reps)
    return x.with_shape(tuple(d if r == 1 else d * r for d, r in zip(shape, reps)))


tile = define(
    "tile", operands=("x",), kind=COMPOSITE, infer=_tile_rule, attrs={"reps": required("ints")},
    doc="""numpy ``tile(x, reps)``: ``x`` repeated ``reps[i]`` times along axis ``i`` (the shorter
    of ``x.shape`` and ``reps`` is padded with leading 1s).  A symbolic dim can only have rep 1.

    %1 = "dl.tile"(%0) {reps = [1, 2]} : (tensor<?x3xf32, "N">) -> tensor<?x6xf32, "N">
    """)


@tile.def_reference
def _(x, *, reps):
    return np.tile(x, tuple(reps))


def _spread_shapes(shape: tuple[Dim, ...], reps: tuple[int, ...], before: bool
                   ) -> tuple[tuple[Dim, ...], tuple[Dim, ...], tuple[int, ...]]:
    """For tile (``before``) and repeat: ``shape`` with a 1 inserted next to each axis ``a``
    with ``reps[a] != 1`` (before it for tile, after it for repeat), that shape with the 1s
    grown to ``reps[a]``, and the new axes' positions."""
    grown: list[Dim] = []
    wide: list[Dim] = []
    new_axes: list[int] = []
    for d, r in zip(shape, reps):
        if r == 1:
            grown.append(d)
            wide.append(d)
            continue
        new_axes.append(len(grown) + (0 if before else 1))
        grown += (1, d) if before else (d, 1)
        wide += (r, d) if before else (d, r)
    return tuple(grown), tuple(wide), tuple(new_axes)


def _spread(b, x: Value, shape: tuple[Dim, ...], reps: tuple[int, ...], before: bool,
            result: TensorType) -> Value:
    """``x`` (seen with ``shape``) repeated: reshaped, broadcast along the new axes of
    :func:`_spread_shapes`, reshaped to ``result``."""
    grown, wide, _ = _spread_shapes(shape, reps, before)
    if grown != x.type.shape:
        x = b.reshape(x, shape=grown)
    if wide != grown:
        x = b.broadcast_to(x, shape=wide)
    return b.reshape(x, shape=result.shape) if x.type.shape != result.shape else x


def _gathered(b, ct: Value, shape: tuple[Dim, ...], reps: tuple[int, ...], before: bool,
              target: TensorType) -> Value:
    """The adjoint of :func:`_spread`: ``ct`` summed over the new axes, as ``target``."""
    _, wide, new_axes = _spread_shapes(shape, reps, before)
    if wide != ct.type.shape:
        ct = b.reshape(ct, shape=wide)
    if new_axes:
        ct = b.sum(ct, axes=new_axes)
    return b.reshape(ct, shape=target.shape) if ct.type.shape != target.shape else ct


@tile.def_decompose
def _(b, op):
    x = op.operands[0]
    shape, reps = _tile_shapes(x.type, op.attrs["reps"])
    return [_spread(b, x, shape, reps, True, op.result.type)]


@tile.def_vjp
def _(b, op, ct):
    # the copies' cotangents add up
    x = op.operands[0]
    shape, reps = _tile_shapes(x.type, op.attrs["reps"])
    return [_gathered(b, ct, shape, reps, True, x.type)]


def _repeat_plan(x: TensorType, repeats: tuple[int, ...], axis: int | None) -> tuple[int, Dim, tuple[Dim, ...]]:
    """(axis, its size, the operand's shape as repeated: flat when ``axis`` is none)."""
    if axis is None:
        if any(not isinstance(d, int) for d in x.shape) and x.rank != 1:
            raise ShapeError(f"repeat without 'axis' flattens {x.dsl_str()}, whose size is symbolic; "
                             "give 'axis'")
        shape: tuple[Dim, ...] = (x.shape[0],) if x.rank == 1 else (x.num_elements(),)
        a = 0
    else:
        shape = x.shape
        a = _axis(axis, x.rank)
    n = shape[a]
    if any(r < 0 for r in repeats):
        raise ShapeError(f"repeats must be >= 0, got {list(repeats)}")
    if len(repeats) != 1:
        if not isinstance(n, int):
            raise ShapeError(f"per-element repeats need a static size, but the axis has size {n}")
        if len(repeats) != n:
            raise ShapeError(f"{len(repeats)} repeats for an axis of size {n}")
    elif not isinstance(n, int) and repeats[0] != 1:
        raise ShapeError(f"repeating symbolic dim {n} needs a static size; not supported yet")
    return a, n, shape


def _repeat_rule(x: TensorType, *, repeats, axis) -> TensorType:
    a, n, shape = _repeat_plan(x, repeats, axis)
    size = n if repeats == (1,) else (n * repeats[0] if len(repeats) == 1 else sum(repeats))
    return x.with_shape(shape[:a] + (size,) + shape[a + 1:])


repeat = define(
    "repeat", operands=("x",), kind=COMPOSITE, infer=_repeat_rule,
    attrs={"repeats": required("ints"), "axis": attr("int", None)},
    doc="""numpy ``repeat(x, repeats, axis)``: each element repeated ``repeats`` times along
    ``axis`` (one count for all, or one per element); no ``axis`` repeats the flattened ``x``.

    %1 = "dl.repeat"(%0) {axis = 1, repeats = [2]} : (tensor<?x3xf32, "N">) -> tensor<?x6xf32, "N">
    """)


@repeat.def_reference
def _(x, *, repeats, axis):
    return np.repeat(x, repeats[0] if len(repeats) == 1 else list(repeats), axis=axis)


def _repeat_indices(n: int, repeats: tuple[int, ...]) -> np.ndarray:
    return np.repeat(np.arange(n, dtype=np.int64), list(repeats))


@repeat.def_decompose
def _(b, op):
    x = op.operands[0]
    repeats = op.attrs["repeats"]
    a, n, shape = _repeat_plan(x.type, repeats, op.attrs["axis"])
    if shape != x.type.shape:
        x = b.reshape(x, shape=shape)
    if len(repeats) > 1:
        return [b.gather(x, b.constant(_repeat_indices(n, repeats), DType.i64), axis=a)]
    reps = tuple(repeats[0] if d == a else 1 for d in range(len(shape)))
    return [_spread(b, x, shape, reps, False, op.result.type)]


@repeat.def_vjp
def _(b, op, ct):
    # the copies' cotangents add up
    x = op.operands[0]
    repeats = op.attrs["repeats"]
    a, n, shape = _repeat_plan(x.type, repeats, op.attrs["axis"])
    flat = x.type.with_shape(shape)
    if len(repeats) > 1:
        idx = b.constant(_repeat_indices(n, repeats), DType.i64)
        g = b.scatter_add(zeros(b, flat), idx, ct, axis=a)
    else:
        reps = tuple(repeats[0] if d == a else 1 for d in range(len(shape)))
        g = _gathered(b, ct, shape, reps, False, flat)
    return [b.reshape(g, shape=x.type.shape) if g.type != x.type else g]


# ---------------------------------------------------------------------------
# Lowerings: kernel families of compiler/codegen/indexing.py

slice_.lowers_to("slice")
slice_update.lowers_to("slice_update")
concat.lowers_to("concat")
gather.lowers_to("gather")
take_along_axis.lowers_to("take_along_axis")
scatter_add.lowers_to("scatter_add")
scatter_min.lowers_to("scatter_min")
scatter_add_along_axis.lowers_to("scatter_add_along_axis")
squeeze.lowers_to("view")
expand_dims.lowers_to("view")


# Moving data needs no arithmetic: every storage dtype (f16 bf16 i8 u8) passes through
# (gather, take_along_axis and the scatters do not take them yet).
for _op in (slice_, slice_update, concat, stack, split, flip, squeeze, expand_dims, where,
            pad, tile, repeat):
    _op.takes_storage()
