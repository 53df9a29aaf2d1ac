"""LLVM code for the pooling kernels of loop IR (:class:`~.loops.Pool`), and their lowering.

Images are NHWC, so the channels of one pixel are contiguous: every kernel
runs over the channels ``W`` lanes at a time (a masked iteration for the
tail, whatever ``C``), and the window positions are loops around that vector
body.  The window's rows and columns are clipped to the image once per
window (``kh`` from ``max(0, top - oh*sh)`` to ``min(ph, H + top - oh*sh)``),
so padding is never read and no element is bounds-checked.  Semantics
(first maximum, NaN, sums from ``-0.0``, empty windows) are those of
``compiler/ops/pool.py``, operation for operation: results equal the
reference interpreter's bit for bit.

*Forward kernels* (``max``, ``avg``, ``gather``) are output-stationary: each
output element is computed whole by one task, tasks split over the output
rows ``N x OH``.

*Gradient kernels* (``max_grad``, ``avg_grad``) scatter: for each image, the
gradient is zeroed, then the windows are visited in row-major order and each
adds its share to its elements -- ``dy / count`` to every element for
``avg``, ``dy`` to the window's first maximum for ``max`` (found again by the
same scan as the forward kernel).  Windows overlap (strides below the pool
size), so tasks take whole images: an element's additions then happen in
one task, in window order, as in the reference.  The alternative, an
output-stationary loop over input elements, needs no zeroing and could split
a single image, but finds a window's maximum once per element of the window
(``ph*pw`` times, 4x the loads for the common 2x2 pool) where the scatter
finds it once; batch 1 gradients (where a split by image gives one task) are
rare.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from llvmlite import ir

from ..ir.types import DType
from ..ops.pool import window_of
from .kernels import Bounds, KernelContext, Split, alloca, lane_mask, load_vector, run_split, store_vector
from .llvmutil import I64, const, for_range, splat, value_type
from .loops import Buffer, Pool

# op name -> Pool kind
POOL_KINDS = {"max_pool2d": "max", "avg_pool2d": "avg", "max_pool2d_gather": "gather",
              "max_pool2d_grad": "max_grad", "avg_pool2d_grad": "avg_grad"}

COST = 2        # work per window element inside the image and channel (a load and a compare or add)
UNROLL_WINDOW = 16      # windows of at most this many positions, all inside the image, are unrolled


def lower_pool(L, op) -> None:
    """The ``pool`` kernel family: one :class:`Pool` kernel reading its operands from memory."""
    inputs = tuple(L.buffer(v) for v in op.operands)
    out = L.new_buffer(op.result)
    L.add_kernel(Pool(out, POOL_KINDS[op.name], inputs, window_of(op),
                      op.attrs.get("count_include_pad", False)))
    L.buffers[op.result] = out


def emit_pool(kc: KernelContext, k: Pool) -> None:
    """Pool kernel ``k`` (see the module docstring), split into tasks when large."""
    w = k.window
    n, c = k.out.shape[0], k.out.shape[3]
    windows = [n, *w.out, c]            # window and channel pairs
    inside = min(w.pool[0], max(w.size[0], 1)) * min(w.pool[1], max(w.size[1], 1))
    if k.kind.endswith("_grad"):
        run_split(kc, windows, COST * inside, Split([n], 1), lambda kc_, bounds: _Scatter(kc_, k).emit(bounds))
    else:
        run_split(kc, windows, COST * inside, Split([n, w.out[0]], 1),
                  lambda kc_, bounds: _Windows(kc_, k).emit(bounds))


Body = Callable[[ir.Value, int, ir.Value | None], None]          # (channel, width, mask)


class _PoolEmitter:
    """What both kernel shapes share: addresses, window clipping, the channel loop."""

    def __init__(self, kc: KernelContext, k: Pool):
        self.kc, self.k, self.b = kc, k, kc.b
        self.w = k.window
        self.dtype = k.out.dtype
        self.width = kc.lanes
        self.channels = kc.dim(k.out.shape[3])
        self.vty = value_type(self.dtype, self.width)
        w = self.w
        # No padding: every window lies inside the image, whole (its positions are unrolled).
        self.inside = (w.padding == (0, 0, 0, 0) and w.pool[0] <= w.size[0] and w.pool[1] <= w.size[1]
                       and w.elements <= UNROLL_WINDOW)

    def i64(self, value: int) -> ir.Constant:
        return ir.Constant(I64, value)

    def ptr(self, buf: Buffer, n: ir.Value, h: ir.Value, x: ir.Value, c: ir.Value) -> ir.Value:
        """The address of ``buf[n, h, x, c]`` (an NHWC buffer with static H and W)."""
        b = self.b
        row = b.add(b.mul(n, self.i64(buf.shape[1]), flags=["nsw"]), h, flags=["nsw"])
        pixel = b.add(b.mul(row, self.i64(buf.shape[2]), flags=["nsw"]), x, flags=["nsw"])
        offset = b.add(b.mul(pixel, self.channels, flags=["nsw"]), c, flags=["nsw"])
        return b.gep(self.kc.pointer(buf), [offset], inbounds=True)

    def load(self, ptr: ir.Value, width: int, mask: ir.Value | None) -> ir.Value:
        return self.b.load(ptr) if width == 1 else load_vector(self.b, ptr, width, mask)

    def store(self, value: ir.Value, ptr: ir.Value, width: int, mask: ir.Value | None) -> None:
        if width == 1:
            self.b.store(value, ptr)
        else:
            store_vector(self.b, value, ptr, mask)

    def clip(self, o: ir.Value, axis: int) -> tuple[ir.Value, ir.Value, ir.Value]:
        """Window ``o`` along ``axis`` (0: rows, 1: columns): the image index of its offset 0
        (negative in the padding) and the offsets ``[lo, hi)`` inside the image (hi <= lo
        when none)."""
        b = self.b
        pad = self.w.padding[2 * axis]
        start = b.sub(b.mul(o, self.i64(self.w.strides[axis]), flags=["nsw"]), self.i64(pad), flags=["nsw"])
        neg = b.sub(self.i64(0), start, flags=["nsw"])
        lo = b.select(b.icmp_signed(">", neg, self.i64(0)), neg, self.i64(0))
        room = b.sub(self.i64(self.w.size[axis]), start, flags=["nsw"])
        k = self.i64(self.w.pool[axis])
        hi = b.select(b.icmp_signed("<", room, k), room, k)
        return start, lo, hi

    def positions(self, rows: tuple, cols: tuple, body: Callable[[ir.Value, ir.Value, ir.Value, ir.Value], None]
                  ) -> None:
        """``body(h, x, k, first)`` for each image position of a window in row-major order: its
        row and column, its offset ``k = kh*pw + kw`` and whether it is the window's first."""
        b = self.b
        (h0, hlo, hhi), (x0, xlo, xhi) = rows, cols
        if self.inside:                 # lo = 0, hi = the pool size: constant offsets
            for kh in range(self.w.pool[0]):
                for kw in range(self.w.pool[1]):
                    body(b.add(h0, self.i64(kh)), b.add(x0, self.i64(kw)), self.i64(kh * self.w.pool[1] + kw),
                         ir.Constant(ir.IntType(1), kh == 0 and kw == 0))
            return
        with for_range(b, hlo, hhi, name="kh") as kh:
            with for_range(b, xlo, xhi, name="kw") as kw:
                k = b.add(b.mul(kh, self.i64(self.w.pool[1])), kw)
                first = b.and_(b.icmp_signed("==", kh, hlo), b.icmp_signed("==", kw, xlo))
                body(b.add(h0, kh), b.add(x0, kw), k, first)

    def count(self, rows: tuple, cols: tuple) -> ir.Value:
        """The divisor of a window's sum, splat: ``ph*pw``, or its image elements (at least 1)."""
        b = self.b
        if self.k.count_include_pad:
            total: ir.Value = self.i64(self.w.elements)
        else:
            extents = []
            for _, lo, hi in (rows, cols):
                span = b.sub(hi, lo)
                extents.append(b.select(b.icmp_signed(">", span, self.i64(0)), span, self.i64(0)))
            total = b.mul(extents[0], extents[1])
            total = b.select(b.icmp_signed(">", total, self.i64(1)), total, self.i64(1))
        scalar = b.sitofp(total, value_type(self.dtype, 1))
        return splat(b, scalar, self.width)

    def over_channels(self, body: Body, total: ir.Value | None = None) -> None:
        """``body(c, width, mask)`` over ``[0, total)`` (default: the channels), ``W`` at a time,
        the tail masked."""
        b, width = self.b, self.width
        n = self.channels if total is None else total
        if width == 1:
            with for_range(b, 0, n, name="c") as c:
                body(c, 1, None)
            return
        main = b.and_(n, self.i64(-width))
        with for_range(b, 0, main, width, name="c") as c:
            body(c, width, None)
        with b.if_then(b.icmp_signed("<", main, n)):
            body(main, width, lane_mask(b, width, b.sub(n, main)))

    def beats(self, v: ir.Value, best: ir.Value) -> ir.Value:
        """Whether ``v`` replaces the running maximum ``best``: ``v > best`` or ``v`` is NaN,
        unless ``best`` is NaN (so the first NaN stays)."""
        b = self.b
        return b.and_(b.fcmp_unordered(">", v, best), b.fcmp_ordered("ord", best, best))

    def argmax(self, rows: tuple, cols: tuple, x_at: Callable[[ir.Value, ir.Value], ir.Value],
               width: int, also: Callable[[ir.Value, ir.Value, ir.Value], None] | None = None) -> ir.Value:
        """The offset of each lane's first maximum over the window (a slot of i64 lanes);
        ``also(take, h, x)`` runs at each position with the lanes that take it."""
        b = self.b
        best, where = alloca(b, self.vty), alloca(b, value_type(DType.i64, width))
        b.store(const(self.vty, -math.inf), best)
        b.store(const(where.type.pointee, 0), where)

        def step(h: ir.Value, x: ir.Value, k: ir.Value, first: ir.Value) -> None:
            v, cur = x_at(h, x), b.load(best)
            take = b.or_(self.beats(v, cur), splat(b, first, width))
            b.store(b.select(take, v, cur), best)
            b.store(b.select(take, splat(b, k, width), b.load(where)), where)
            if also is not None:
                also(take, h, x)

        self.positions(rows, cols, step)
        return where


class _Windows(_PoolEmitter):
    """Forward kernels: ``out[n, oh, ow, c]`` from window ``(oh, ow)`` of image ``n``."""

    def emit(self, bounds: Bounds | None) -> None:
        b, w = self.b, self.w
        oh_count = self.i64(w.out[0])
        lo, hi = bounds if bounds is not None else (self.i64(0), self.kc.product([self.k.out.shape[0], w.out[0]]))
        with for_range(b, lo, hi, name="row") as r:
            n, oh = b.sdiv(r, oh_count), b.srem(r, oh_count)
            rows = self.clip(oh, 0)
            with for_range(b, 0, w.out[1], name="ow") as ow:
                cols = self.clip(ow, 1)
                self.over_channels(lambda c, width, mask: self._window(n, oh, ow, c, rows, cols, width, mask))

    def _window(self, n, oh, ow, c, rows, cols, width: int, mask) -> None:
        k = self.k
        x = k.inputs[0]

        def x_at(h: ir.Value, col: ir.Value) -> ir.Value:
            return self.load(self.ptr(x, n, h, col, c), width, mask)

        if k.kind == "max":
            value = self._max(rows, cols, x_at)
        elif k.kind == "avg":
            value = self._average(rows, cols, x_at)
        else:
            value = self._gather(n, c, rows, cols, x_at, width, mask)
        self.store(value, self.ptr(k.out, n, oh, ow, c), width, mask)

    def _max(self, rows, cols, x_at) -> ir.Value:
        b = self.b
        best = alloca(b, self.vty)
        b.store(const(self.vty, -math.inf), best)

        def step(h, x, _k, _first) -> None:
            v, cur = x_at(h, x), b.load(best)
            b.store(b.select(self.beats(v, cur), v, cur), best)

        self.positions(rows, cols, step)
        return b.load(best)

    def _average(self, rows, cols, x_at) -> ir.Value:
        b = self.b
        total = alloca(b, self.vty)
        b.store(const(self.vty, -0.0), total)
        self.positions(rows, cols, lambda h, x, _k, _first: b.store(b.fadd(b.load(total), x_at(h, x)), total))
        return b.fdiv(b.load(total), self.count(rows, cols))

    def _gather(self, n, c, rows, cols, x_at, width: int, mask) -> ir.Value:
        b = self.b
        g = self.k.inputs[1]
        pick = alloca(b, self.vty)
        b.store(const(self.vty, 0.0), pick)

        def also(take: ir.Value, h: ir.Value, x: ir.Value) -> None:
            v = self.load(self.ptr(g, n, h, x, c), width, mask)
            b.store(b.select(take, v, b.load(pick)), pick)

        self.argmax(rows, cols, x_at, width, also)
        return b.load(pick)


class _Scatter(_PoolEmitter):
    """Gradient kernels: ``dx`` of whole images, each window adding its share (see above).

    Disjoint windows (no padding, strides at least the pool size: the common 2x2 pool of
    stride 2) each own their elements, so a window stores ``0.0 + share`` (what the
    addition to the zeroed element gives, bit for bit) or ``0.0`` instead of loading,
    adding and storing back; when they also tile the image exactly, no element is left
    for the zeroing pass, which is skipped."""

    def __init__(self, kc: KernelContext, k: Pool):
        super().__init__(kc, k)
        w = self.w
        self.disjoint = self.inside and all(s >= p for s, p in zip(w.strides, w.pool))
        self.tiles = self.disjoint and all(s == p and o * p == n for s, p, o, n in
                                           zip(w.strides, w.pool, w.out, w.size))

    def emit(self, bounds: Bounds | None) -> None:
        b, w, k = self.b, self.w, self.k
        dx = k.out
        image = self.kc.product(dx.shape[1:])
        lo, hi = bounds if bounds is not None else (self.i64(0), self.kc.dim(dx.shape[0]))
        with for_range(b, lo, hi, name="n") as n:
            base = b.mul(n, image, flags=["nsw"])
            zero = const(self.vty, 0.0)
            if not self.tiles:
                self.over_channels(lambda e, width, mask: self.store(
                    zero, b.gep(self.kc.pointer(dx), [b.add(base, e)], inbounds=True), width, mask), image)
            with for_range(b, 0, w.out[0], name="oh") as oh:
                rows = self.clip(oh, 0)
                with for_range(b, 0, w.out[1], name="ow") as ow:
                    cols = self.clip(ow, 1)
                    self.over_channels(lambda c, width, mask: self._window(n, oh, ow, c, rows, cols, width, mask))

    def _window(self, n, oh, ow, c, rows, cols, width: int, mask) -> None:
        b, k = self.b, self.k
        dy = self.load(self.ptr(k.inputs[-1], n, oh, ow, c), width, mask)

        def add(h: ir.Value, x: ir.Value, value: ir.Value, where: ir.Value | None = None) -> None:
            ptr = self.ptr(k.out, n, h, x, c)
            if self.disjoint:           # the element is still the zeroing's +0.0
                new = b.fadd(const(value.type, 0.0), value)
                self.store(new if where is None else b.select(where, new, const(value.type, 0.0)), ptr, width, mask)
                return
            old = self.load(ptr, width, mask)
            new = b.fadd(old, value)
            self.store(new if where is None else b.select(where, new, old), ptr, width, mask)

        if k.kind == "avg_grad":
            share = b.fdiv(dy, self.count(rows, cols))
            self.positions(rows, cols, lambda h, x, _k, _first: add(h, x, share))
            return
        x = k.inputs[0]
        where = self.argmax(rows, cols, lambda h, col: self.load(self.ptr(x, n, h, col, c), width, mask), width)
        first_max = b.load(where)
        self.positions(rows, cols, lambda h, col, kk, _first: add(
            h, col, dy, b.icmp_signed("==", first_max, splat(b, kk, width))))


__all__ = ["POOL_KINDS", "emit_pool", "lower_pool"]
