"""Kernel families of the indexing ops (``compiler/ops/indexing.py``), and the scatter kernel.

The reading ops become expressions, not kernels: an operand's expression is
*reindexed* -- every loop index in it replaced by the coordinate the op reads
(``start + i * step`` for a slice, ``i - offset`` for a part of a
concatenation, the wrapped index for a gather) -- so its loads become
:class:`~.loops.Take` reads at computed coordinates, and the whole thing fuses
into the consumer's loop nest like any elementwise value: a slice of a
parameter read by an ``add`` is one kernel, no copy.

Coordinates must be in range at every position a kernel computes, including
positions whose value a ``select`` then discards (both sides of a select are
evaluated, lanes at once): a concatenation or a ``slice_update`` clamps the
coordinates it gives each operand, a gather clamps the wrapped index.

Indices read from tensors (``gather``, ``take_along_axis``, the scatters) are
checked at run time: a ``reduce.sum`` kernel counts the indices outside
``[-n, n)`` into an i64 flag, the entry point returns an error status right
after it when the count is not 0 (``Program.checks``), and the reading kernel
adds the flag (always 0 when it runs) to its coordinate, which makes it
depend on the check's kernel: the check always runs first.

``scatter_add`` and ``scatter_add_along_axis`` are a :class:`~.loops.Scatter`
kernel: ``out = base`` (a vectorised elementwise pass), then one scalar pass
over the updates adding each at its coordinates, in order, on one thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

import numpy as np
from llvmlite import ir

from ..ir.core import Op, Value
from ..ir.types import Dim, DType
from ..ops.indexing import Span, along_axis_shape, concat_offsets, index_error_message, resolve_slice
from .emitter import Emitter, from_memory, to_memory
from .kernels import ExprEmitter, KernelContext, Space, emit_elementwise
from .llvmutil import I64 as LLVM_I64
from .llvmutil import for_range
from .loops import (
    GUARD,
    Apply,
    Buffer,
    Const,
    DimValue,
    Elementwise,
    Expr,
    Iota,
    Kernel,
    Load,
    Reduce,
    Scatter,
    Take,
    identity_index,
    remap,
)


class Lowering(Protocol):
    """What these families use of ``bufferize.Lowering`` (which imports this module)."""

    buffers: dict[Value, Buffer]
    checks: dict[Buffer, str]

    def expr(self, v: Value) -> Expr: ...

    def operand_expr(self, v: Value, shape: tuple) -> Expr: ...

    def define(self, v: Value, expr: Expr) -> None: ...

    def buffer(self, v: Value) -> Buffer: ...

    def new_buffer(self, v: Value) -> Buffer: ...

    def temp(self, dtype: DType, shape: tuple) -> Buffer: ...

    def add_kernel(self, k: Kernel, ops: set[Op] | None = None) -> None: ...

I64 = DType.i64
BOOL = DType.bool

# ---------------------------------------------------------------------------
# Index arithmetic: i64 expressions, constants folded


def const(value: int) -> Expr:
    return Const(int(value), I64)


def dim(d: Dim) -> Expr:
    """A dim's size: a constant, or the symbol's run-time value."""
    return const(d) if isinstance(d, int) else DimValue(d, I64)


def _value(e: Expr) -> int | None:
    return e.value if isinstance(e, Const) else None


def add(a: Expr, b: Expr) -> Expr:
    if _value(a) is not None and _value(b) is not None:
        return const(_value(a) + _value(b))
    if _value(b) == 0:
        return a
    if _value(a) == 0:
        return b
    return Apply("add", (a, b), I64, I64)


def sub(a: Expr, b: Expr) -> Expr:
    if _value(a) is not None and _value(b) is not None:
        return const(_value(a) - _value(b))
    if _value(b) == 0:
        return a
    return Apply("sub", (a, b), I64, I64)


def mul(a: Expr, b: Expr) -> Expr:
    if _value(a) is not None and _value(b) is not None:
        return const(_value(a) * _value(b))
    if _value(b) == 1:
        return a
    return Apply("mul", (a, b), I64, I64)


def floordiv(a: Expr, b: Expr) -> Expr:
    """``a // b`` rounding down (the emitter's integer ``div``)."""
    if _value(b) == 1:
        return a
    return Apply("div", (a, b), I64, I64)


def minimum(a: Expr, b: Expr) -> Expr:
    return Apply("minimum", (a, b), I64, I64)


def maximum(a: Expr, b: Expr) -> Expr:
    return Apply("maximum", (a, b), I64, I64)


def compare(op: str, a: Expr, b: Expr) -> Expr:
    return Apply(op, (a, b), BOOL, I64)


def all_of(conds: list[Expr]) -> Expr | None:
    out = None
    for c in conds:
        out = c if out is None else Apply("logical_and", (out, c), BOOL, BOOL)
    return out


def select(cond: Expr, a: Expr, b: Expr, dtype: DType) -> Expr:
    return Apply("select", (cond, a, b), dtype, dtype)


def as_i64(e: Expr) -> Expr:
    return e if e.dtype is I64 else Apply("cast", (e,), I64, e.dtype)


def clamp(e: Expr, n: Dim, low: bool = True, high: bool = True) -> Expr:
    """``e`` limited to ``[0, n - 1]`` (only the sides asked for), as a *guard*: a coordinate
    clamped only so that a read stays inside its buffer, where a select discards the value
    (a take's contract, ``loops.Take``).  The min/max carry ``guard=True``, so a vectorised
    take may leave the lanes it would change unread (a masked load, ``kernels.py``)."""
    if high:
        e = Apply("minimum", (e, sub(dim(n), const(1))), I64, I64, GUARD)
    if low:
        e = Apply("maximum", (e, const(0)), I64, I64, GUARD)
    return e


def wrapped(index: Expr, n: Dim) -> Expr:
    """numpy's negative indices: ``index + n`` where ``index < 0``, clamped into the dim (an
    index still out of range is reported by the run-time check, never read)."""
    i = as_i64(index)
    return clamp(select(compare("lt", i, const(0)), add(i, dim(n)), i, I64), n)


# ---------------------------------------------------------------------------
# Reindexing


def reindex(expr: Expr, coords: list[Expr], shape: tuple[Dim, ...]) -> Expr:
    """``expr`` (over its value's axes) read at ``coords``: ``coords[k]`` is the coordinate
    along axis ``k``, an expression over the loop axes of ``shape``.  A load whose every
    loop axis maps to a plain loop index over a dim of the same size stays a load (loads
    walk whole dims: axis collapsing relies on it, and so it still vectorises); the others
    become takes."""
    if isinstance(expr, Load):
        if all(a is None for a in expr.index):
            return expr
        mapped = [None if a is None else coords[a] for a in expr.index]
        if all(c is None or (isinstance(c, Iota) and c.dtype is I64 and shape[c.axis] == expr.buffer.shape[k])
               for k, c in enumerate(mapped)):
            index = tuple(None if c is None else c.axis for c in mapped)
            if len({a for a in index if a is not None}) == sum(a is not None for a in index):
                return Load(expr.buffer, index)
        return Take(expr.buffer, tuple(const(0) if c is None else c for c in mapped))
    if isinstance(expr, Iota):
        c = coords[expr.axis]
        return c if expr.dtype is I64 else Apply("cast", (c,), expr.dtype, I64)
    if isinstance(expr, Apply):
        return replace(expr, args=tuple(reindex(a, coords, shape) for a in expr.args))
    if isinstance(expr, Take):
        return Take(expr.buffer, tuple(reindex(a, coords, shape) for a in expr.index))
    return expr


def iotas(rank: int) -> list[Expr]:
    return [Iota(a, I64) for a in range(rank)]


def _materialized(L: Lowering, v: Value) -> Expr:
    """``v`` as a load of its buffer: what a gather reads (it may read an element many
    times, so a computed operand is computed once, into memory)."""
    return Load(L.buffer(v), identity_index(v.type.rank))


def span_coordinate(span: Span, size: Dim, i: Expr) -> Expr:
    """The operand coordinate a slice's result coordinate ``i`` reads."""
    start = dim(span.start)
    if span.step == -1:
        return sub(start, i)
    return add(start, mul(i, const(span.step)))


# ---------------------------------------------------------------------------
# slice, slice_update, concat


def lower_slice(L: Lowering, op: Op) -> None:
    x, v = op.operands[0], op.result
    spans = resolve_slice(x.type.shape, op.attrs["start"], op.attrs["stop"], op.attrs["step"])
    coords = [span_coordinate(s, d, i) for s, d, i in zip(spans, x.type.shape, iotas(x.type.rank))]
    L.define(v, reindex(L.expr(x), coords, v.type.shape))


def lower_slice_update(L: Lowering, op: Op) -> None:
    """``select(inside the slice, update at the slice coordinate, base)``."""
    base, update = op.operands
    v = op.result
    spans = resolve_slice(base.type.shape, op.attrs["start"], op.attrs["stop"], op.attrs["step"])
    if any(s.length == 0 for s in spans):
        L.define(v, L.expr(base))
        return
    conds: list[Expr] = []
    coords: list[Expr] = []
    for span, size, i in zip(spans, base.type.shape, iotas(base.type.rank)):
        if span.length == size and span.step in (1, -1):      # ':' or '::-1': every coordinate
            coords.append(i if span.is_full else sub(sub(dim(size), const(1)), i))
            continue
        offset = sub(i, dim(span.start))
        q = floordiv(offset, const(span.step))
        if span.step != 1:
            conds.append(compare("eq", mul(q, const(span.step)), offset))
        conds += [compare("ge", q, const(0)), compare("lt", q, dim(span.length))]
        coords.append(clamp(q, span.length))
    value = reindex(L.expr(update), coords, v.type.shape)
    inside = all_of(conds)
    L.define(v, value if inside is None else select(inside, value, L.expr(base), v.type.dtype))


def lower_concat(L: Lowering, op: Op) -> None:
    """A chain of selects on the coordinate along the axis, each part's coordinate clamped."""
    v = op.result
    rank = v.type.rank
    a = op.attrs["axis"] % rank
    if len(op.operands) == 1:
        L.define(v, L.expr(op.operands[0]))
        return
    sizes = [x.type.shape[a] for x in op.operands]
    total = v.type.shape[a]
    parts = [(x, at, n) for x, at, n in zip(op.operands, concat_offsets(sizes), sizes) if n]
    i = Iota(a, I64)
    expr: Expr | None = None
    for x, at, n in reversed(parts):
        coords = iotas(rank)
        coords[a] = clamp(sub(i, const(at)), n, low=at > 0, high=at + n < total)
        part = reindex(L.expr(x), coords, v.type.shape)
        expr = part if expr is None else select(compare("lt", i, const(at + n)), part, expr, v.type.dtype)
    L.define(v, expr if expr is not None else Const(0, v.type.dtype))    # no part: an empty result


# ---------------------------------------------------------------------------
# Index checks, gathers, scatters


def _static_indices(v: Value) -> np.ndarray | None:
    """The values of ``v`` when a ``constant`` op defines it."""
    owner = v.owner
    if owner is None or owner.name != "constant":
        return None
    return np.broadcast_to(np.asarray(owner.attrs["value"]), v.type.shape) if v.type.is_static else None


def _known_in_range(indices: Value, n: Dim) -> bool:
    """Whether ``indices`` are constants in ``[0, n)`` (pad's and repeat's): no check, no wrap."""
    known = _static_indices(indices)
    return known is not None and isinstance(n, int) and bool(np.all((known >= 0) & (known < n)))


def index_check(L: Lowering, op: Op, indices: Value, n: Dim, axis: int) -> Expr:
    """A run-time check that every index is in ``[-n, n)``; the flag to add to a coordinate
    (0 when the reading kernel runs; reading it orders the check first)."""
    i = as_i64(L.expr(indices))
    bad = Apply("logical_or", (compare("lt", i, mul(dim(n), const(-1))), compare("ge", i, dim(n))),
                BOOL, BOOL)
    flag = L.temp(I64, ())
    shape = indices.type.shape
    L.add_kernel(Reduce(flag, "sum", shape, tuple(range(len(shape))),
                        select(bad, const(1), const(0), I64)))
    # no source line: compiled code is cached by its IR without locations, so a line baked in
    # here could name another file's; the interpreter names the index and the line
    L.checks[flag] = index_error_message(op.name, n, axis)
    return Load(flag, ())


def _checked(L: Lowering, op: Op, indices: Value, index: Expr, n: Dim, axis: int) -> Expr:
    """The coordinate that index expression ``index`` (of tensor ``indices``) reads along a dim
    of size ``n``: wrapped, clamped and ordered after its run-time check."""
    if _known_in_range(indices, n):
        return as_i64(index)
    return add(wrapped(index, n), index_check(L, op, indices, n, axis))


def _gather_coords(L: Lowering, op: Op, x_shape: tuple[Dim, ...], indices: Value,
                   axis: int) -> list[Expr]:
    """Coordinates into ``x_shape`` of ``gather``'s result (or ``scatter_add``'s updates)."""
    r = indices.type.rank
    index = remap(L.expr(indices), [axis + k for k in range(r)])
    coords = [Iota(k, I64) for k in range(axis)]
    coords.append(_checked(L, op, indices, index, x_shape[axis], axis))
    coords += [Iota(k + r - 1, I64) for k in range(axis + 1, len(x_shape))]
    return coords


def _along_coords(L: Lowering, op: Op, x_shape: tuple[Dim, ...], indices: Value, axis: int,
                  shape: tuple[Dim, ...]) -> list[Expr]:
    """Coordinates into ``x_shape`` of ``take_along_axis``'s result of ``shape`` (or the
    along-axis scatter's updates)."""
    coords = [Iota(d, I64) if x_shape[d] == shape[d] else const(0) for d in range(len(shape))]
    index = L.operand_expr(indices, shape)
    coords[axis] = _checked(L, op, indices, index, x_shape[axis], axis)
    return coords


def lower_gather(L: Lowering, op: Op) -> None:
    x, indices = op.operands
    a = op.attrs["axis"] % x.type.rank
    coords = _gather_coords(L, op, x.type.shape, indices, a)
    L.define(op.result, reindex(_materialized(L, x), coords, op.result.type.shape))


def lower_take_along_axis(L: Lowering, op: Op) -> None:
    x, indices = op.operands
    a = op.attrs["axis"] % x.type.rank
    coords = _along_coords(L, op, x.type.shape, indices, a, op.result.type.shape)
    L.define(op.result, reindex(_materialized(L, x), coords, op.result.type.shape))


def _scatter(L: Lowering, op: Op, coords: list[Expr], combine: str = "add") -> None:
    base, _, updates = op.operands
    v = op.result
    out = L.new_buffer(v)
    L.add_kernel(Scatter(out, L.expr(base), tuple(updates.type.shape), tuple(coords), L.expr(updates),
                         combine))
    L.buffers[v] = out


def lower_scatter_add(L: Lowering, op: Op) -> None:
    base, indices, _ = op.operands
    a = op.attrs["axis"] % base.type.rank
    _scatter(L, op, _gather_coords(L, op, base.type.shape, indices, a))


def lower_scatter_min(L: Lowering, op: Op) -> None:
    base, indices, _ = op.operands
    a = op.attrs["axis"] % base.type.rank
    _scatter(L, op, _gather_coords(L, op, base.type.shape, indices, a), combine="min")


def lower_scatter_add_along_axis(L: Lowering, op: Op) -> None:
    base, indices, updates = op.operands
    a = op.attrs["axis"] % base.type.rank
    assert updates.type.shape == along_axis_shape(base.type, indices.type, a)
    _scatter(L, op, _along_coords(L, op, base.type.shape, indices, a, updates.type.shape))


INDEXING_FAMILIES: dict[str, Callable[[Lowering, Op], None]] = {
    "slice": lower_slice,
    "slice_update": lower_slice_update,
    "concat": lower_concat,
    "gather": lower_gather,
    "take_along_axis": lower_take_along_axis,
    "scatter_add": lower_scatter_add,
    "scatter_min": lower_scatter_min,
    "scatter_add_along_axis": lower_scatter_add_along_axis,
}


# ---------------------------------------------------------------------------
# The scatter kernel


def emit_scatter(kc: KernelContext, k: Scatter) -> None:
    """``out = base`` (vectorised; nothing when ``base`` is ``out``'s own memory, a scatter
    in place), then ``out[index(i)] += value(i)`` (or ``min=``) over ``k.shape`` in
    row-major order, scalar, on the calling thread (repeated coordinates add in order)."""
    in_place = (isinstance(k.base, Load) and k.base.buffer.storage is k.out.storage
                and k.base.index == identity_index(k.out.rank))
    if not in_place:
        emit_elementwise(kc, Elementwise(k.out, tuple(k.out.shape), k.base))
    b = kc.b
    ee = ExprEmitter(kc, Space.plain(k.shape), None)
    strides = kc.strides(k.out)
    e = Emitter(b, 1, k.out.dtype)

    def body(index: list[ir.Value]) -> None:
        offset: ir.Value = ir.Constant(LLVM_I64, 0)
        for coord, stride in zip(k.index, strides):
            offset = b.add(offset, b.mul(ee.emit(coord, index, 1), stride, flags=["nsw"]), flags=["nsw"])
        ptr = b.gep(kc.pointer(k.out), [offset], inbounds=True)
        old, value = from_memory(b, b.load(ptr), k.out.dtype), ee.emit(k.value, index, 1)
        if k.combine == "min":
            total = b.select(b.icmp_signed("<", value, old), value, old)
        else:
            total = e.add(old, value)
        b.store(to_memory(b, total), ptr)

    def level(axis: int, index: list[ir.Value]) -> None:
        if axis == len(k.shape):
            body(index)
            return
        with for_range(b, 0, kc.dim(k.shape[axis]), name=f"s{axis}") as i:
            level(axis + 1, [*index, i])

    level(0, [])


__all__ = ["INDEXING_FAMILIES", "emit_scatter", "reindex"]
