"""The scan kernel family: a running sum along one axis (``cumsum``), emitted from the
:class:`~.loops.Scan` kernels that ``bufferize`` makes.

Each output element's sum is formed in order along the axis from ``-0.0``, the additive
identity of IEEE arithmetic (``-0.0 + x`` is ``x`` for every ``x``, ``-0.0`` included),
so ``out[0] = x[0]`` exactly and ``out[i] = out[i-1] + x[i]``: numpy's ``cumsum`` to the bit,
whatever the layout, the lane count or the thread count.  ``exclusive`` stores ``0`` first
and each partial sum one place further along; ``reverse`` walks the axis from its end.

A :class:`ScanPlan` says how the loops run, then :func:`emit_scan` emits them:

- ``rows``: the scanned axis is the last one -- one row at a time, scalar, the running
  sum in a register;
- ``columns``: the axes after the scanned one are walked ``W`` lanes at a time along the
  last axis (when every load is contiguous there; else one lane): blocks of up to
  ``UNROLL`` vectors keep their running sums in registers while the scanned axis is walked.

Large scans split into tasks over the first axis that is not scanned (whole rows; in
``FLAT_GRAIN`` chunks when that is the vectorised last axis): each element is computed by
one task, so results do not depend on the thread count.  The fused producers of the
scanned operand are evaluated once per element, inside the scan.
"""

from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from .emitter import Emitter, to_memory
from .kernels import (
    FLAT_GRAIN,
    UNROLL,
    Bounds,
    ExprEmitter,
    KernelContext,
    Space,
    Split,
    alloca,
    element_cost,
    lane_mask,
    run_split,
    store_vector,
)
from .llvmutil import I64, const, for_range, value_type
from .loops import Load, Scan, identity_index


@dataclass(frozen=True)
class ScanPlan:
    """How a scan's loops run: ``columns`` (lanes along the last axis, after the scanned one)
    or ``rows`` (the last axis is scanned, scalar); tasks over ``split_axis`` (None: one task)
    in multiples of ``grain``."""

    layout: str
    lanes: int
    split_axis: int | None
    grain: int


def plan_scan(kc: KernelContext, k: Scan) -> ScanPlan:
    """The plan of scan ``k``: its layout, lanes and task split (see the module docstring)."""
    rank = len(k.shape)
    last = rank - 1
    ee = ExprEmitter(kc, Space.plain(k.shape), last)
    columns = k.axis != last
    lanes = kc.lanes if columns and kc.lanes > 1 and ee.vectorizable([k.expr]) else 1
    others = [a for a in range(rank) if a != k.axis]
    split_axis = others[0] if others else None
    grain = FLAT_GRAIN if split_axis == last and lanes > 1 else 1
    return ScanPlan("columns" if columns else "rows", lanes, split_axis, grain)


def emit_scan(kc: KernelContext, k: Scan) -> None:
    """The scan kernel ``k`` (see the module docstring)."""
    plan = plan_scan(kc, k)
    split = None if plan.split_axis is None else Split([k.shape[plan.split_axis]], plan.grain)
    run_split(kc, list(k.shape), element_cost(k.expr), split,
              lambda c, bounds: _ScanEmitter(c, k, plan, bounds).emit())


class _ScanEmitter:
    def __init__(self, kc: KernelContext, k: Scan, plan: ScanPlan, bounds: Bounds | None):
        self.kc, self.k, self.plan, self.b = kc, k, plan, kc.b
        rank = len(k.shape)
        self.last = rank - 1
        self.ee = ExprEmitter(kc, Space.plain(k.shape), self.last if plan.lanes > 1 else None)
        self.out_load = Load(k.out, identity_index(rank))
        self.extents = [kc.dim(d) for d in k.shape]
        self.index: list[ir.Value | None] = [None] * rank
        self.bounds = bounds

    def emit(self) -> None:
        walked = [a for a in range(len(self.k.shape)) if a != self.k.axis]
        if self.plan.layout == "columns":
            self._loops(walked[:-1], self._columns)
        else:
            self._loops(walked, lambda: self._scan([None], 1, None))

    def _range(self, axis: int) -> Bounds:
        if self.bounds is not None and axis == self.plan.split_axis:
            return self.bounds
        return ir.Constant(I64, 0), self.extents[axis]

    def _loops(self, axes: list[int], body) -> None:
        if not axes:
            body()
            return
        lo, hi = self._range(axes[0])
        with for_range(self.b, lo, hi, name=f"s{axes[0]}") as i:
            self.index[axes[0]] = i
            self._loops(axes[1:], body)

    def _columns(self) -> None:
        """The last axis in blocks of ``UNROLL`` vectors, then single vectors, then a masked tail."""
        b, lanes = self.b, self.plan.lanes
        lo, hi = self._range(self.last)
        step = lanes * UNROLL
        main = b.add(lo, b.and_(b.sub(hi, lo), ir.Constant(I64, -step)))
        with for_range(b, lo, main, step, name="blk") as j:
            self._scan([b.add(j, ir.Constant(I64, u * lanes)) for u in range(UNROLL)], lanes, None)
        rest = b.add(main, b.and_(b.sub(hi, main), ir.Constant(I64, -lanes)))
        with for_range(b, main, rest, lanes, name="vec") as j:
            self._scan([j], lanes, None)
        if lanes > 1:
            with b.if_then(b.icmp_signed("<", rest, hi)):
                self._scan([rest], lanes, lane_mask(b, lanes, b.sub(hi, rest)))

    def _scan(self, positions: list[ir.Value | None], width: int, mask: ir.Value | None) -> None:
        """Walk the scanned axis once for the blocks at ``positions`` along the last axis
        (``[None]``: the rows layout), each with its running sum."""
        b, k = self.b, self.k
        dtype = k.out.dtype
        e = Emitter(b, width, dtype)
        vty = value_type(dtype, width)
        n = self.extents[k.axis]
        one = ir.Constant(I64, 1)
        accs = [alloca(b, vty) for _ in positions]
        for acc in accs:
            b.store(const(vty, -0.0), acc)

        def along(i: ir.Value) -> ir.Value:
            return b.sub(b.sub(n, one), i) if k.reverse else i

        def at(position: ir.Value | None, i: ir.Value) -> list:
            index = list(self.index)
            index[k.axis] = along(i)
            if position is not None:
                index[self.last] = position
            return index

        def store(value: ir.Value, index: list) -> None:
            ptr = self.ee.address(self.out_load, index)
            if width == 1:
                b.store(to_memory(b, value), ptr)
            else:
                store_vector(b, to_memory(b, value), ptr, mask)

        count = n
        if k.exclusive:                     # out[first] = 0, each partial sum one further along
            with b.if_then(b.icmp_signed(">", n, ir.Constant(I64, 0))):
                for p in positions:
                    store(const(vty, 0), at(p, ir.Constant(I64, 0)))
            count = b.select(b.icmp_signed(">", n, ir.Constant(I64, 0)), b.sub(n, one), n)
        with for_range(b, 0, count, name="scan") as i:
            target = b.add(i, one) if k.exclusive else i
            for acc, p in zip(accs, positions):
                x = self.ee.emit(k.expr, at(p, i), width, mask)
                total = e.add(b.load(acc), x)
                b.store(total, acc)
                store(total, at(p, target))


__all__ = ["ScanPlan", "plan_scan", "emit_scan"]
