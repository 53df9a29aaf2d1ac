"""The top_k kernel family: the ``k`` largest elements of each row (the last axis) and
their indices.

Each result is its own :class:`~.loops.TopK` kernel, and ``bufferize`` makes one only for
the results that are used (``values`` alone is the common case; both cost two passes).  A row is selected
by *insertion into a k-buffer*, which is the output row itself: each element, in index
order, goes in after every buffered element that is not smaller (so equal values keep
index order) and the smallest falls off the end once ``k`` are held.  ``O(n k)`` per row
in the worst case (an ascending row), ``O(n)`` when most elements are below the k-th.
The order is a stable descending sort with nan above +inf: ``a`` goes before ``b`` when
``a > b`` or ``a`` is nan and ``b`` is not.  The ``indices`` kernel buffers indices and
reads each buffered value again from the operand; every read is at an index already
taken (control flow, not selects, guards them), so nothing outside the row is touched.

Tasks split over the first axis (whole rows); each row is selected by one task.
"""

from __future__ import annotations

from llvmlite import ir

from .emitter import Emitter, from_memory, to_memory
from .kernels import Bounds, ExprEmitter, KernelContext, Space, Split, alloca, element_cost, run_split
from .llvmutil import I64, for_range
from .loops import Load, TopK, identity_index


def emit_top_k(kc: KernelContext, k: TopK) -> None:
    """The selection kernel ``k`` (see the module docstring)."""
    if k.k == 0:
        return
    split = Split([k.shape[0]], 1) if len(k.shape) > 1 else None
    cost = element_cost(k.expr) * (2 if k.result == "indices" else 1) + k.k
    run_split(kc, list(k.shape), cost, split, lambda c, bounds: _Selection(c, k, bounds).emit())


class _Selection:
    def __init__(self, kc: KernelContext, k: TopK, bounds: Bounds | None):
        self.kc, self.k, self.b = kc, k, kc.b
        self.rank = len(k.shape)
        self.ee = ExprEmitter(kc, Space.plain(k.shape), None)
        self.out_load = Load(k.out, identity_index(self.rank))
        self.extents = [kc.dim(d) for d in k.shape]
        self.index: list[ir.Value | None] = [None] * self.rank
        self.bounds = bounds
        self.dtype = k.expr.dtype
        self.e = Emitter(self.b, 1, self.dtype)

    def emit(self) -> None:
        self._rows(0)

    def _rows(self, axis: int) -> None:
        if axis == self.rank - 1:
            self._select_row()
            return
        lo, hi = self.bounds if self.bounds is not None and axis == 0 else \
            (ir.Constant(I64, 0), self.extents[axis])
        with for_range(self.b, lo, hi, name=f"row{axis}") as i:
            self.index[axis] = i
            self._rows(axis + 1)

    # -- the buffer: the output row ---------------------------------------------------------

    def _slot(self, j: ir.Value) -> ir.Value:
        index = list(self.index)
        index[-1] = j
        return self.ee.address(self.out_load, index)

    def _value_at(self, i: ir.Value) -> ir.Value:
        """The operand's element ``i`` of the current row."""
        index = list(self.index)
        index[-1] = i
        return self.ee.emit(self.k.expr, index, 1)

    def _buffered(self, j: ir.Value) -> ir.Value:
        """The value held in slot ``j`` (read again from the operand for ``indices``)."""
        held = self.b.load(self._slot(j))
        if self.k.result == "indices":
            return self._value_at(held)
        return from_memory(self.b, held, self.dtype)

    def _before(self, a: ir.Value, b_: ir.Value) -> ir.Value:
        """Whether ``a`` sorts before ``b_``: greater, or nan against a number."""
        e = self.e
        ahead = e.cmp("gt", a, b_)
        if self.dtype.is_float:
            ahead = self.b.or_(ahead, self.b.and_(e.cmp("ne", a, a), e.cmp("eq", b_, b_)))
        return ahead

    def _select_row(self) -> None:
        b = self.b
        fn = b.function
        k = ir.Constant(I64, self.k.k)
        zero, one = ir.Constant(I64, 0), ir.Constant(I64, 1)
        filled = alloca(b, I64)
        j_slot = alloca(b, I64)
        b.store(zero, filled)
        with for_range(b, 0, self.extents[-1], name="sel") as i:
            x = self._value_at(i)
            held = b.load(filled)
            check_last = fn.append_basic_block("sel.full")
            shift_head = fn.append_basic_block("sel.shift")
            shift_check = fn.append_basic_block("sel.cmp")
            shift_body = fn.append_basic_block("sel.move")
            place = fn.append_basic_block("sel.place")
            done = fn.append_basic_block("sel.next")
            # a free slot takes x at the end; a full buffer only when x beats its last entry
            b.store(b.select(b.icmp_signed("<", held, k), held, b.sub(k, one)), j_slot)
            b.cbranch(b.icmp_signed("<", held, k), shift_head, check_last)
            b.position_at_end(check_last)
            b.cbranch(self._before(x, self._buffered(b.sub(k, one))), shift_head, done)
            # move every entry x sorts before one slot down, then put x in the gap
            b.position_at_end(shift_head)
            j = b.load(j_slot)
            b.cbranch(b.icmp_signed(">", j, zero), shift_check, place)
            b.position_at_end(shift_check)
            prev = b.sub(j, one)
            b.cbranch(self._before(x, self._buffered(prev)), shift_body, place)
            b.position_at_end(shift_body)
            b.store(b.load(self._slot(prev)), self._slot(j))
            b.store(prev, j_slot)
            b.branch(shift_head)
            b.position_at_end(place)
            entry = i if self.k.result == "indices" else to_memory(b, x)
            b.store(entry, self._slot(b.load(j_slot)))
            b.store(b.select(b.icmp_signed("<", held, k), b.add(held, one), held), filled)
            b.branch(done)
            b.position_at_end(done)


__all__ = ["emit_top_k"]
