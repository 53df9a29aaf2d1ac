"""Convolution kernels: a loop-IR :class:`~.loops.Conv` as the GEMM it is, on the GEMM's
micro-tile, with the operand that is a matrix of image patches never materialized.

Per group ``g`` of the convolution, ``C[rows, cols] = A[rows, depth] @ B[depth, cols]``:

====================  ==================  ==================  ============================
kind                  rows of C           A                   B
====================  ==================  ==================  ============================
``forward`` (y)       output pixels       patches of x        the kernel ``[KH KW Cg, OC]``
``input`` (dx)        input pixels        patches of dy       the kernel, per tap ``[OCg, Cg]``
``filter`` (dw)       taps x channels     patches of x, ^T    dy ``[N OH OW, OC]``
====================  ==================  ==================  ============================

* **forward / input: indirect convolution.**  ``A[m, (tap, c)] = src[pixel(m, tap), c]``
  (zero where the tap falls in the padding, or -- for the input gradient of a strided
  convolution -- between the output positions).  For each block of ``MC`` rows an
  *indirection table* holds, per micro-tile of ``MR`` rows and per tap, the ``MR`` source
  pixel pointers (a row of zeros for a tap outside the image); the micro-kernel
  (``dlc.conv.indirect8x32``) reads the ``MR`` rows of A straight from the image through
  them -- one broadcast per row and k step, as the packed GEMM micro-kernel reads its A
  panel -- so A is never copied: no im2col matrix, no transposes.  B is packed into the
  GEMM's ``NR``-column panels (the kernel as it lies for ``forward``; transposed tap by tap
  for ``input``).  The depth is sliced by whole taps (``KC`` at most), or channel chunks
  of one tap when a tap alone is deeper.
* **filter: packed im2col^T.**  ``A[(tap, c), q] = x[pixel(q, tap), c]`` packed ``MC`` rows
  by ``KC`` pixels at a time into ``MR``-row panels: with ``Cg`` a multiple of 8 a panel's
  8 rows are 8 consecutive channels of one tap, one vector copy per pixel; B (``dy``) is a
  row-major matrix, packed by the GEMM's own routine; the GEMM's packed micro-kernel runs.
  An epilogue that reads the output (an in-place ``w -= lr * dw``) sees only the full sum:
  the slices accumulate in a per-task region first.
* Tiles go to C as in the GEMM: whole tiles without an epilogue (or on a slice before the
  last) straight from the registers, the others through the kernel's store function,
  which adds earlier slices and applies the epilogue (bias, activation...) at the tile
  row's ``(n, y, x)``.
* **Tasks** own whole ``MR``-row blocks (or ``NR``-column panels when C is wider than
  tall) of every group; slices depend on the geometry only, so results are bit-identical
  for any thread count.  Each task's workspace (B block, indirection table or A block)
  is a static size: nothing proportional to the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from llvmlite import ir

from ..ir.types import DType
from .blocking import DEFAULT
from .emitter import Emitter, to_memory
from .gemm import (
    ADD_PREVIOUS,
    ADD_TO_C,
    C_COST,
    EPILOGUE,
    MIN_TASK_WORK,
    TO_C,
    TO_TILE,
    _add_previous,
    _ceil_div,
    _clamp,
    _max,
    _min,
    _pack_b_function,
    _pack_transposed,
    _packed_micro_function,
    _round_up,
    _shared,
    _write_accumulators,
    max_tasks,
    reads_output,
    tile_shape,
)
from .kernels import ExprEmitter, KernelContext, Space, alloca, lane_mask, load_vector, store_vector
from .llvmutil import I8P, I32, I64, const, for_range, intrinsic, memory_type, splat, type_suffix, value_type
from .loops import Conv
from .threads import split

# the convolutions keep the blocking tuned on AMD Zen (only the GEMM's is chosen per CPU)
MC, NC = DEFAULT.mc, DEFAULT.nc
POINTER_BYTES = 8
INDIRECT_KC = 1152       # deepest slice of the indirect kernel (whole taps: 3x3x128 is one)
FILTER_KC = 192          # deepest slice of the kernel gradient, in pixels (its 8x32 tile's B panel and A
                         # values stay in L1: 0.92-0.96 of PyTorch at 384, 0.96-1.01 at 192)
PACK_A_UNROLL = 48       # the kernel gradient's packA unrolls at most this many rows (pixel-major)
UNROLL_TAPS = 25         # at most this many taps: the kernel gradient's table unrolls its tap loop, and
                         # a depthwise kernel runs direct (the indirect gathers always unroll theirs)


@dataclass(frozen=True)
class SubGrid:
    """The rows of one indirect GEMM (forward, input gradient): output pixels
    ``(n, y0 + sy a, x0 + sx b)`` for ``a < height``, ``b < width``; tap ``t`` of ``taps``
    (the kernel tap's index, ``dy``, ``dx``) reads source pixel ``(n, my a + dy, mx b + dx)``
    (zero outside the source image).  The depth ``len(taps) x tap_depth`` is sliced into
    ``taps_per_slice`` whole taps, or (``chunks > 1``) one tap's channel chunks of
    ``chunk``.

    The forward product is one grid (all output pixels, ``my, mx`` the strides); so is the
    input gradient of a stride-1 convolution.  A strided one is ``sh x sw`` grids, one per
    residue class of the input pixels: each class meets only the taps whose offset has its
    residue, at unit stride -- so no multiply-add is spent on the zeros between the output
    positions (stride 2: a quarter of them)."""

    y0: int
    x0: int
    sy: int
    sx: int
    height: int
    width: int
    my: int
    mx: int
    taps: tuple[tuple[int, int, int], ...]
    taps_per_slice: int = 1
    chunks: int = 1
    chunk: int = 0

    @property
    def slices(self) -> int:
        return max(-(-len(self.taps) // self.taps_per_slice) * self.chunks, 1)

    @property
    def max_depth(self) -> int:
        return self.taps_per_slice * self.chunk

    @property
    def identity(self) -> bool:
        """Whether row ``m`` is output pixel ``m`` (one grid covering the whole output)."""
        return (self.y0, self.x0, self.sy, self.sx) == (0, 0, 1, 1)


@dataclass(frozen=True)
class ConvPlan:
    """How a :class:`Conv` runs (module docstring); every number but the batch is static.

    ``cols``: columns of C per group; ``ldc``: the output's row stride (its channels).
    forward / input: the :class:`SubGrid` s, each tap of ``tap_depth`` channels from a
    source image of ``src_channels``.  filter: ``taps`` (KH KW), ``rows`` of C (KH KW Cg);
    ``accumulate``: the slices' sums go to a per-task region before the epilogue sees them.
    ``depthwise``: no GEMM (one channel per group, ``cols`` the channels): :class:`_Depthwise`;
    ``broadcast``: the same direct path for a forward convolution of a one-channel image
    (``cols`` the output channels, each source value broadcast over them)."""

    kind: str
    lanes: int
    mr: int
    nv: int
    cols: int
    ldc: int
    taps: int = 0
    tap_depth: int = 0
    src_channels: int = 0
    rows: int = 0
    accumulate: bool = False
    depthwise: bool = False
    broadcast: bool = False
    subgrids: tuple[SubGrid, ...] = ()

    @property
    def nr(self) -> int:
        return self.nv * self.lanes

    @property
    def max_depth(self) -> int:
        """The deepest slice of any grid (forward / input)."""
        return max((g.max_depth for g in self.subgrids), default=0)

    @property
    def max_slice_taps(self) -> int:
        return max((g.taps_per_slice for g in self.subgrids), default=0)

    @property
    def filter_indirect(self) -> bool:
        """The filter gradient reads A through a pixel table (8-row tiles of one tap's
        consecutive channels), rather than packing it."""
        return self.kind == "filter" and self.mr == 8 and self.tap_depth % 8 == 0 and self.lanes >= 8

    @property
    def panel_columns(self) -> int:
        """Columns of a packed B block: ``min(cols, NC)`` in whole panels."""
        return _round_up(min(self.cols, NC), self.nr)


def plan(k: Conv, lanes: int) -> ConvPlan:
    """The plan of ``k`` for ``lanes``-wide vectors."""
    s = k.shape
    # a fused pool runs on the direct path only (pool_fusable), at least 4 lanes wide
    lanes = max(lanes, 1 if k.pooled is None else 4)
    mr, nv = tile_shape(lanes)
    if s.cg == 1 and s.ocg == 1 and s.kh * s.kw <= UNROLL_TAPS and lanes >= 4:
        # depthwise (one input and one output channel per group): direct, over channel vectors
        return ConvPlan(k.kind, lanes, mr, nv, cols=s.c, ldc=s.c, taps=s.kh * s.kw, tap_depth=1,
                        src_channels=s.c, depthwise=True)
    if (k.kind == "forward" and s.c == 1 and s.groups == 1 and s.kh * s.kw <= UNROLL_TAPS and lanes >= 4
            and k.dtype in (DType.f32, DType.f64)):
        # one input channel (a grayscale image: the MNIST CNN's first layer): a GEMM of depth
        # KH KW only, whose indirection table and stores cost as much as its multiply-adds;
        # directly, the taps' kernel vectors stay in registers and each source value is
        # broadcast over the output channels
        return ConvPlan(k.kind, lanes, mr, nv, cols=s.oc, ldc=s.oc, taps=s.kh * s.kw, tap_depth=1,
                        src_channels=1, depthwise=True, broadcast=True)
    if k.kind == "filter":
        rows = s.kh * s.kw * s.cg
        return ConvPlan("filter", lanes, mr, nv, cols=s.ocg, ldc=s.oc, taps=s.kh * s.kw, tap_depth=s.cg,
                        src_channels=s.c, rows=rows, accumulate=reads_output(k))
    depth, src_channels, cols, ldc = ((s.cg, s.c, s.ocg, s.oc) if k.kind == "forward" else
                                      (s.ocg, s.oc, s.cg, s.c))
    taps = s.kh * s.kw
    limit = taps * depth if reads_output(k) else INDIRECT_KC   # an epilogue reading C: one slice
    grids = tuple(_sliced(g, depth, limit) for g in _subgrids(k.kind, s))
    return ConvPlan(k.kind, lanes, mr, nv, cols, ldc, taps, depth, src_channels, subgrids=grids)


POOL_SCRATCH_BYTES = 16384   # at most this much stack for a fused pool's two rows of tiles


def pool_fusable(k: Conv, window) -> bool:
    """Whether max pool ``window`` over ``k``'s result can be computed by ``k`` itself: a
    forward convolution on the direct path (depthwise, or one input channel) and a 2x2,
    stride-2 pool without padding, so a tile of ``DEPTHWISE_PIXELS`` (even) output pixels
    of two consecutive rows holds whole windows, and the two rows' tiles fit the stack."""
    s = k.shape
    return (k.kind == "forward" and k.dtype in (DType.f32, DType.f64) and s.kh * s.kw <= UNROLL_TAPS
            and ((s.cg == 1 and s.ocg == 1) or (s.c == 1 and s.groups == 1))
            and tuple(window.pool) == (2, 2) and tuple(window.strides) == (2, 2)
            and tuple(window.padding) == (0, 0, 0, 0) and tuple(window.size) == (s.oh, s.ow)
            and tuple(window.out) == (s.oh // 2, s.ow // 2) and s.oh >= 2 and s.ow >= 2
            and 2 * DEPTHWISE_PIXELS * s.oc * k.dtype.itemsize <= POOL_SCRATCH_BYTES)


def _subgrids(kind: str, s) -> list[SubGrid]:
    """The grids of the forward product or the input gradient (see :class:`SubGrid`)."""
    (sh, sw), (dh, dw) = s.strides, s.dilations
    top, left = s.padding[0], s.padding[2]
    every = [(i * s.kw + j, i, j) for i in range(s.kh) for j in range(s.kw)]
    if kind == "forward":
        taps = tuple((t, i * dh - top, j * dw - left) for t, i, j in every)
        return [SubGrid(0, 0, 1, 1, s.oh, s.ow, sh, sw, taps)]
    grids = []
    for ry in range(sh):
        for rx in range(sw):
            # input rows y with (y + top) % sh == ry meet taps i with (i dh) % sh == ry, at
            # output row (y + top - i dh) / sh = a + (y0 + top - i dh) / sh
            y0, x0 = (ry - top) % sh, (rx - left) % sw
            height, width = -(-(s.h - y0) // sh), -(-(s.w - x0) // sw)
            if height <= 0 or width <= 0:
                continue
            taps = tuple((t, (y0 + top - i * dh) // sh, (x0 + left - j * dw) // sw) for t, i, j in every
                         if (i * dh) % sh == ry and (j * dw) % sw == rx)
            grids.append(SubGrid(y0, x0, sh, sw, height, width, 1, 1, taps))
    return grids


def _sliced(g: SubGrid, depth: int, limit: int) -> SubGrid:
    """``g`` with its depth sliced: whole taps up to ``limit`` deep (balanced), or one tap's
    channel chunks when a tap alone is deeper."""
    taps = max(len(g.taps), 1)
    if depth <= limit:
        per = max(limit // depth, 1)
        per = -(-taps // -(-taps // per))               # balanced: slices of equal taps (but the last)
        return replace(g, taps_per_slice=per, chunks=1, chunk=depth)
    chunks = -(-depth // limit)
    return replace(g, taps_per_slice=1, chunks=chunks, chunk=-(-depth // chunks))


def scratch_bytes(k: Conv, lanes: int) -> int:
    """Bytes of one task's region (a multiple of 64): the packed B block, then the
    indirection table (forward / input) or the packed A block and the accumulator (filter)."""
    p = plan(k, lanes)
    item = k.dtype.itemsize
    if p.depthwise:
        return 0
    if p.kind == "filter":
        return sum(_filter_region_sizes(p, item))
    table = MC * p.max_slice_taps * POINTER_BYTES
    return _round_up(p.max_depth * p.panel_columns * item, 64) + _round_up(table, 64)


def _filter_region_sizes(p: ConvPlan, item: int) -> list[int]:
    """Bytes (multiples of 64) of the filter gradient's B block, A block or pixel table,
    and accumulator (0 unless the epilogue reads C)."""
    if p.filter_indirect:
        second = FILTER_KC * p.taps * POINTER_BYTES
    else:
        second = FILTER_KC * _round_up(min(p.rows, MC), p.mr) * item
    acc = _round_up(p.rows, p.mr) * _round_up(p.cols, p.nr) * item if p.accumulate else 0
    return [_round_up(FILTER_KC * p.panel_columns * item, 64), _round_up(second, 64), _round_up(acc, 64)]


def _filter_regions(p: ConvPlan, item: int) -> tuple[int, int]:
    """Byte offsets of the filter gradient's second region and of its accumulator."""
    sizes = _filter_region_sizes(p, item)
    return sizes[0], sizes[0] + sizes[1]


def _gemm_rows(kc: KernelContext, k: Conv, p: ConvPlan) -> ir.Value:
    """Rows of C per group, at run time."""
    s = k.shape
    if p.kind == "filter":
        return ir.Constant(I64, p.rows)
    pixels = s.oh * s.ow if p.kind == "forward" else s.h * s.w
    return kc.b.mul(kc.dim(s.n), ir.Constant(I64, pixels))


def _depth(kc: KernelContext, k: Conv, p: ConvPlan) -> ir.Value:
    """The contraction length per row of C (the grids' average for a strided input gradient)."""
    s = k.shape
    if p.kind == "filter":
        return kc.b.mul(kc.dim(s.n), ir.Constant(I64, s.oh * s.ow))
    products = sum(g.height * g.width * len(g.taps) for g in p.subgrids)
    pixels = max(sum(g.height * g.width for g in p.subgrids), 1)
    return ir.Constant(I64, max(products * p.tap_depth // pixels, 1))


def task_count(kc: KernelContext, k: Conv, threads: ir.Value) -> ir.Value:
    """Tasks for ``k``: ``threads``, or fewer when the work or the blocks run short."""
    b = kc.b
    p = plan(k, kc.lanes)
    if p.depthwise:
        blocks, work = _depthwise_split(kc, k, p)
        out = _min(b, _min(b, max_tasks(b, threads), blocks), b.sdiv(work, ir.Constant(I64, MIN_TASK_WORK)))
        return _max(b, out, ir.Constant(I64, 1))
    rows = _gemm_rows(kc, k, p)
    cols = ir.Constant(I64, p.cols)
    work = b.mul(b.mul(rows, ir.Constant(I64, p.cols * k.shape.groups)),
                 b.add(_depth(kc, k, p), ir.Constant(I64, C_COST)))
    by_cols = b.icmp_signed(">=", cols, rows)
    blocks = b.select(by_cols, ir.Constant(I64, -(-p.cols // p.nr)), _ceil_div(b, rows, p.mr))
    out = _min(b, _min(b, max_tasks(b, threads), blocks), b.sdiv(work, ir.Constant(I64, MIN_TASK_WORK)))
    return _max(b, out, ir.Constant(I64, 1))


def _c(v: int) -> ir.Constant:
    return ir.Constant(I64, v)


# ---------------------------------------------------------------------------
# The kernel


def emit_conv(kc: KernelContext, k: Conv) -> None:
    """Code for one :class:`Conv` kernel (one task's share when ``kc.task`` is set)."""
    p = plan(k, kc.lanes)
    if p.depthwise:
        _Depthwise(kc, k, p).emit()
    else:
        _ConvEmitter(kc, k, p).emit()


class _ConvEmitter:
    def __init__(self, kc: KernelContext, k: Conv, p: ConvPlan):
        self.kc, self.k, self.p = kc, k, p
        self.b = kc.b
        self.s = k.shape
        self.ety = memory_type(k.dtype)
        self.vty = value_type(k.dtype, p.lanes)

    def emit(self) -> None:
        b, p = self.b, self.p
        self.tile = b.bitcast(alloca(b, ir.ArrayType(self.vty, p.mr * p.nv)), self.vty.as_pointer())
        self.scratch = b.bitcast(self.kc.scratch, self.ety.as_pointer())
        self.out = self.kc.pointer(self.k.out)
        if p.kind == "filter":
            self.store, self.ctx = _store_with_context(self.kc, self.k, p, None)
            self.over_tasks(_c(p.rows), self.filter_block)
            return
        for index, grid in enumerate(p.subgrids):
            self.store, self.ctx = _store_with_context(self.kc, self.k, p, index)
            rows = b.mul(self.kc.dim(self.s.n), _c(grid.height * grid.width))
            self.over_tasks(rows, lambda g, jc, ncur, ilo, ihi, index=index, grid=grid:
                            self.indirect_block(g, index, grid, jc, ncur, ilo, ihi))

    def over_tasks(self, rows: ir.Value, block) -> None:
        """``block(g, jc, ncur, ilo, ihi)`` for every group and NC-column block of this task's
        share of C (``rows`` x ``cols`` per group): whole MR-row blocks, or NR-column panels
        when C is wider than tall."""
        b, p = self.b, self.p
        zero, one = _c(0), _c(1)
        t, ntasks = self.kc.task if self.kc.task is not None else (zero, one)
        cols = _c(p.cols)
        by_cols = b.icmp_signed(">=", cols, rows)
        jlo, jhi = split(b, cols, t, ntasks, p.nr)
        ilo, ihi = split(b, rows, t, ntasks, p.mr)
        ilo, ihi = b.select(by_cols, zero, ilo), b.select(by_cols, rows, ihi)
        jlo, jhi = b.select(by_cols, jlo, zero), b.select(by_cols, jhi, cols)
        with for_range(b, 0, self.s.groups, name="group") as g:
            with for_range(b, jlo, jhi, NC, name="jc") as jc:
                block(g, jc, _min(b, _c(NC), b.sub(jhi, jc)), ilo, ihi)

    # -- tiles ----------------------------------------------------------------------------

    def tiles(self, g, jc, ncur, ic, mcur, kcur, first, last, bpack, call_micro, in_order: bool = True) -> None:
        """Every micro-tile of rows ``[ic, ic + mcur)`` and columns ``[jc, jc + ncur)``:
        ``call_micro(ir, bpanel, cptr, mode)`` computes one; tiles that are not written
        whole from the registers go through the store function (every tile, unless the
        rows are C's rows in order: ``in_order``)."""
        b, p = self.b, self.p
        plain = self.k.epilogue is None and in_order
        with for_range(b, 0, ncur, p.nr, name="jr") as jr:
            bpanel = b.gep(bpack, [b.mul(jr, kcur)])
            j0 = b.add(jc, jr)
            full_cols = b.icmp_signed("<=", b.add(j0, _c(p.nr)), _c(p.cols))
            with for_range(b, 0, mcur, p.mr, name="ir") as ir_:
                rows = _min(b, _c(p.mr), b.sub(mcur, ir_))
                i0 = b.add(ic, ir_)
                full = b.and_(full_cols, b.icmp_signed("==", rows, _c(p.mr)))
                direct = b.and_(full, b.or_(ir.Constant(ir.IntType(1), int(plain)), b.not_(last)))
                direct = b.and_(direct, ir.Constant(ir.IntType(1), int(in_order)))
                mode = b.select(direct, b.select(first, _c(TO_C), _c(ADD_TO_C)), _c(TO_TILE))
                cptr = b.gep(self.out, [b.add(b.add(b.mul(i0, _c(p.ldc)), b.mul(g, _c(p.cols))), j0)])
                call_micro(ir_, bpanel, cptr, mode)
                with b.if_then(b.not_(direct)):
                    flags = b.or_(b.zext(b.not_(first), I64), b.select(last, _c(EPILOGUE), _c(0)))
                    b.call(self.store, [self.ctx, b.bitcast(self.tile, I8P), self.out, i0, j0, rows,
                                        _c(p.nv), flags, g])

    # -- forward and input gradient: the indirect convolution ------------------------------

    def indirect_block(self, g, index: int, grid: SubGrid, jc, ncur, ilo, ihi) -> None:
        b, p, k = self.b, self.p, self.k
        src = self.kc.pointer(k.a)
        bpack = self.scratch
        table_at = _round_up(p.max_depth * p.panel_columns * k.dtype.itemsize, 64)
        table = b.bitcast(b.gep(b.bitcast(self.scratch, I8P), [_c(table_at)]), self.ety.as_pointer().as_pointer())
        gather = _gather_function(self.kc, k, p, index, grid)
        pack_b = self._pack_b_indirect(index, grid)
        micro = _indirect_micro_function(b.module, k.dtype, p.lanes, p.mr, p.nv)
        zeros = _zero_row(b.module, k.dtype, p.src_channels)
        ntaps = len(grid.taps)
        with for_range(b, 0, grid.slices, name="slice") as q:
            if grid.chunks == 1:
                t0 = b.mul(q, _c(grid.taps_per_slice))
                nt = _min(b, _c(grid.taps_per_slice), b.sub(_c(ntaps), t0))
                c0, clen = _c(0), _c(p.tap_depth)
            else:
                t0, nt = b.sdiv(q, _c(grid.chunks)), _c(1)
                c0 = b.mul(b.srem(q, _c(grid.chunks)), _c(grid.chunk))
                clen = _min(b, _c(grid.chunk), b.sub(_c(p.tap_depth), c0))
            kcur = b.mul(nt, clen)
            first = b.icmp_signed("==", q, _c(0))
            last = b.icmp_signed("==", q, _c(grid.slices - 1))
            pack_b(g, t0, nt, c0, clen, jc, ncur, bpack)
            coff = b.add(b.mul(g, _c(p.tap_depth)), c0)
            with for_range(b, ilo, ihi, MC, name="ic") as ic:
                mcur = _min(b, _c(MC), b.sub(ihi, ic))
                b.call(gather, [src, ic, mcur, t0, nt, table, zeros])

                def call_micro(ir_, bpanel, cptr, mode, nt=nt, coff=coff, clen=clen):
                    tile_table = b.gep(table, [b.mul(b.sdiv(ir_, _c(p.mr)), b.mul(nt, _c(p.mr)))])
                    b.call(micro, [tile_table, nt, coff, clen, bpanel, self.tile, cptr, _c(p.ldc), mode])

                self.tiles(g, jc, ncur, ic, mcur, kcur, first, last, bpack, call_micro, in_order=grid.identity)

    def _pack_b_indirect(self, index: int, grid: SubGrid):
        """``pack(g, t0, nt, c0, clen, jc, ncur, bp)``: B's rows ``(tap, channel)`` of the slice,
        columns ``[jc, jc + ncur)`` of group ``g``, into NR-column panels."""
        b, p, k, s = self.b, self.p, self.k, self.s
        w = self.kc.pointer(k.b)
        if p.kind == "forward":
            # the kernel [KH KW Cg, OC] as it lies: the slice's rows are consecutive
            fn = _pack_b_function(b.module, k.dtype, p.lanes, p.nv, False)

            def pack(g, t0, nt, c0, clen, jc, ncur, bp):
                first_row = b.add(b.mul(t0, _c(s.cg)), c0)
                b.call(fn, [b.gep(w, [b.mul(g, _c(p.cols))]), _c(s.oc), _c(0), first_row,
                            b.mul(nt, clen), jc, ncur, bp])
            return pack
        fn = _pack_input_b_function(self.kc, k, p, index, grid)

        def pack(g, t0, nt, c0, clen, jc, ncur, bp):
            b.call(fn, [w, g, t0, nt, c0, clen, jc, ncur, bp])
        return pack

    # -- filter gradient: packed im2col^T ---------------------------------------------------

    def filter_block(self, g, jc, ncur, ilo, ihi) -> None:
        b, p, k, s = self.b, self.p, self.k, self.s
        x, dy = self.kc.pointer(k.a), self.kc.pointer(k.b)
        bpack = self.scratch
        second, acc_at = _filter_regions(p, k.dtype.itemsize)
        region = b.bitcast(b.gep(b.bitcast(self.scratch, I8P), [_c(second)]), self.ety.as_pointer())
        acc = b.bitcast(b.gep(b.bitcast(self.scratch, I8P), [_c(acc_at)]), self.ety.as_pointer())
        acc_ld = _round_up(p.cols, p.nr)
        depth_total = _depth(self.kc, k, p)
        slices = _ceil_div(b, depth_total, FILTER_KC)
        depth = b.sdiv(b.add(depth_total, b.sub(slices, _c(1))), _max(b, slices, _c(1)))
        depth = _max(b, depth, _c(1))
        pack_b = _pack_b_function(b.module, k.dtype, p.lanes, p.nv, False)
        # at least one slice: a batch of 0 images gives dw = 0 (through the epilogue)
        with for_range(b, 0, _max(b, depth_total, _c(1)), depth, name="pc") as pc:
            kcur = _max(b, _min(b, depth, b.sub(depth_total, pc)), _c(0))
            first = b.icmp_signed("==", pc, _c(0))
            last = b.icmp_signed(">=", b.add(pc, depth), depth_total)
            b.call(pack_b, [b.gep(dy, [b.mul(g, _c(p.cols))]), _c(s.oc), _c(0), pc, kcur, jc, ncur, bpack])
            if p.filter_indirect:
                # A read in place through a table of pixel pointers, one per tap and pixel
                table = b.bitcast(region, self.ety.as_pointer().as_pointer())
                zeros = _zero_row(b.module, k.dtype, s.c)
                b.call(_filter_table_function(self.kc, k, p), [x, pc, kcur, table, zeros])
                micro = _indirect_k_micro_function(b.module, k.dtype, p.lanes, p.mr, p.nv)

                def call_micro(ir_, bpanel, cptr, ldc, mode, kcur=kcur, table=table, base=ilo):
                    row = b.add(base, ir_)
                    tap, c0 = b.udiv(row, _c(s.cg)), b.urem(row, _c(s.cg))
                    b.call(micro, [b.gep(table, [b.mul(tap, kcur)]), b.add(b.mul(g, _c(s.cg)), c0), kcur,
                                   bpanel, self.tile, cptr, ldc, mode])
                self.filter_tiles(g, jc, ncur, ilo, b.sub(ihi, ilo), kcur, first, last, bpack, call_micro, acc, acc_ld)
            else:
                pack_a = _pack_filter_a_function(self.kc, k, p)
                micro_p = _packed_micro_function(b.module, k.dtype, p.lanes, p.mr, p.nv)
                with for_range(b, ilo, ihi, MC, name="ic") as ic:
                    mcur = _min(b, _c(MC), b.sub(ihi, ic))
                    b.call(pack_a, [x, g, ic, mcur, pc, kcur, region])

                    def call_packed(ir_, bpanel, cptr, ldc, mode, kcur=kcur):
                        b.call(micro_p, [b.gep(region, [b.mul(ir_, kcur)]), bpanel, kcur, self.tile, cptr, ldc, mode])
                    self.filter_tiles(g, jc, ncur, ic, mcur, kcur, first, last, bpack, call_packed, acc, acc_ld)
        if p.accumulate:
            self.flush_accumulator(g, jc, ncur, ilo, ihi, acc, acc_ld)

    def filter_tiles(self, g, jc, ncur, ic, mcur, kcur, first, last, bpack, call_micro, acc, acc_ld) -> None:
        """A slice's tiles: to C (:meth:`tiles`), or, when the epilogue reads C, into the
        per-task accumulator (padded: every tile whole, straight from the registers)."""
        b, p = self.b, self.p
        if not p.accumulate:
            self.tiles(g, jc, ncur, ic, mcur, kcur, first, last, bpack,
                       lambda ir_, bpanel, cptr, mode: call_micro(ir_, bpanel, cptr, _c(p.ldc), mode))
            return
        with for_range(b, 0, ncur, p.nr, name="jr") as jr:
            bpanel = b.gep(bpack, [b.mul(jr, kcur)])
            with for_range(b, 0, mcur, p.mr, name="ir") as ir_:
                cptr = b.gep(acc, [b.add(b.mul(b.add(ic, ir_), _c(acc_ld)), b.add(jc, jr))])
                call_micro(ir_, bpanel, cptr, _c(acc_ld), b.select(first, _c(TO_C), _c(ADD_TO_C)))

    def flush_accumulator(self, g, jc, ncur, ilo, ihi, acc, acc_ld) -> None:
        """The accumulated sums, tile by tile, through the store function's epilogue."""
        b, p = self.b, self.p
        with for_range(b, 0, ncur, p.nr, name="fj") as jr, for_range(b, ilo, ihi, p.mr, name="fi") as i0:
            j0 = b.add(jc, jr)
            rows = _min(b, _c(p.mr), b.sub(ihi, i0))
            for r in range(p.mr):
                row = b.gep(acc, [b.add(b.mul(b.add(i0, _c(r)), _c(acc_ld)), j0)])
                for v in range(p.nv):
                    vec = load_vector(b, b.gep(row, [_c(v * p.lanes)]), p.lanes, None) if p.lanes > 1 else \
                        b.load(b.gep(row, [_c(v)]))
                    b.store(vec, b.gep(self.tile, [_c(r * p.nv + v)]))
            b.call(self.store, [self.ctx, b.bitcast(self.tile, I8P), self.out, i0, j0, rows, _c(p.nv),
                                _c(EPILOGUE), g])


# ---------------------------------------------------------------------------
# Depthwise: no GEMM, vectors over channels


DEPTHWISE_PIXELS = 16    # output pixels per store call (the tile's rows)
DEPTHWISE_GROUP = 4      # pixels summed together (independent FMA chains)


def _depthwise_split(kc: KernelContext, k: Conv, p: ConvPlan) -> tuple[ir.Value, ir.Value]:
    """(blocks a task may own, multiply-adds): output rows (n, y) for ``forward`` and
    ``input``, channel vectors for ``filter``."""
    b, s = kc.b, k.shape
    macs = b.mul(kc.dim(s.n), _c(s.oh * s.ow * p.cols * p.taps))
    if p.kind == "filter":
        return _c(-(-s.c // p.lanes)), macs
    if k.pooled is not None:         # rows of the pooled image, each from two output rows
        return b.mul(kc.dim(s.n), _c(s.oh // 2)), macs
    return b.mul(kc.dim(s.n), _c(s.oh if p.kind == "forward" else s.h)), macs


class _Depthwise:
    """A depthwise convolution (``groups = C = OC``, a kernel ``[KH, KW, 1, C]``): every
    output channel reads one input channel, so there is no contraction over channels to
    make a GEMM of.  Vectors run over channels (contiguous in NHWC); the taps are unrolled.

    * ``forward`` / ``input``: tasks own output rows; per row and channel vector, the taps'
      kernel vectors stay in registers while the row's pixels are summed tap by tap (the
      source pixel through each tap: a masked load, zero in the padding or, for the input
      gradient, between strided positions); tiles of ``DEPTHWISE_PIXELS`` pixels go through
      the store function (epilogue).
    * ``filter``: tasks own channel vectors; one pass over the output gradient, each pixel
      adding ``x`` through every tap into that tap's accumulator, in pixel order (the same
      sums whatever the split)."""

    def __init__(self, kc: KernelContext, k: Conv, p: ConvPlan):
        self.kc, self.k, self.p = kc, k, p
        self.b, self.s = kc.b, k.shape
        self.vty = value_type(k.dtype, p.lanes)

    def emit(self) -> None:
        b, p, k = self.b, self.p, self.k
        zero, one = _c(0), _c(1)
        t, ntasks = self.kc.task if self.kc.task is not None else (zero, one)
        blocks, _ = _depthwise_split(self.kc, k, p)
        self.lo, self.hi = split(b, blocks, t, ntasks, 1)
        self.store, self.ctx = _store_with_context(self.kc, k, p, None)
        self.tile = b.bitcast(alloca(b, ir.ArrayType(self.vty, max(DEPTHWISE_PIXELS, p.taps))),
                              self.vty.as_pointer())
        self.e = Emitter(b, p.lanes, k.dtype)
        if p.kind == "filter":
            self.filter()
        else:
            self.rows()

    def channel_blocks(self, lo: ir.Value, hi: ir.Value, body) -> None:
        """``body(c0, mask)`` for the channel vectors ``[lo, hi)`` (in vectors): whole ones
        unmasked (``mask`` None), the last, partial one masked."""
        b, p = self.b, self.p
        whole = p.cols // p.lanes
        with for_range(b, lo, _min(b, hi, _c(whole)), name="cb") as cb:
            body(b.mul(cb, _c(p.lanes)), None)
        if p.cols % p.lanes:
            with b.if_then(b.icmp_signed(">", hi, _c(whole))):
                body(_c(whole * p.lanes), lane_mask(b, p.lanes, _c(p.cols % p.lanes)))

    def source(self, src: ir.Value, zeros: ir.Value, pixel: ir.Value, ok: ir.Value, c0: ir.Value,
               mask: ir.Value | None) -> ir.Value:
        """The channel vector ``c0..`` of source pixel ``pixel``, or zeros (read from the zero
        row) when ``ok`` is false."""
        b = self.b
        if self.p.broadcast:       # one source channel: its value over every output channel
            return splat(b, b.load(b.select(ok, b.gep(src, [pixel]), zeros)), self.p.lanes)
        ptr = b.select(ok, b.gep(src, [b.add(b.mul(pixel, _c(self.p.cols)), c0)]), b.gep(zeros, [c0]))
        return load_vector(b, ptr, self.p.lanes, mask)

    def rows(self) -> None:
        b, p, s, k = self.b, self.p, self.s, self.k
        forward = p.kind == "forward"
        pooled = k.pooled is not None
        out_h, out_w = (s.oh, s.ow) if forward else (s.h, s.w)
        src, w = self.kc.pointer(k.a), self.kc.pointer(k.b)
        out = self.kc.pointer(k.pooled if pooled else k.out)
        zeros = _zero_row(b.module, k.dtype, p.cols)
        (sh, sw), (dh, dw) = s.strides, s.dilations
        top, left = s.padding[0], s.padding[2]
        src_h, src_w = (s.h, s.w) if forward else (s.oh, s.ow)
        ety = memory_type(k.dtype)
        if pooled:
            # the two output rows' tiles, stored (epilogue applied) at pixel stride ldc
            span = DEPTHWISE_PIXELS * p.ldc
            scratch = b.bitcast(alloca(b, ir.ArrayType(ety, 2 * span)), ety.as_pointer())

        def source_rows(n: ir.Value, y: ir.Value) -> list[tuple[ir.Value, ir.Value]]:
            """Per kernel row i: the first pixel of the source row it reads, whether that exists."""
            srows = []
            for i in range(s.kh):
                if forward:
                    sy = b.sub(b.mul(y, _c(sh)), _c(top - i * dh))
                    oky = b.icmp_unsigned("<", sy, _c(src_h))
                else:
                    sy, oky = _strided(b, b.sub(b.add(y, _c(top)), _c(i * dh)), sh, src_h)
                srows.append((b.mul(b.add(b.mul(n, _c(src_h)), sy), _c(src_w)), oky))
            return srows

        def sums(srows, xs: list[ir.Value], c0: ir.Value, mask: ir.Value | None,
                 wv: list[ir.Value]) -> list[ir.Value]:
            """The output vectors of pixels ``xs`` of the row: independent FMA chains."""
            accs = [const(self.vty, 0)] * len(xs)
            for j in range(s.kw):
                cols = []
                for x in xs:
                    if forward:
                        sx = b.sub(b.mul(x, _c(sw)), _c(left - j * dw))
                        cols.append((sx, b.icmp_unsigned("<", sx, _c(src_w))))
                    else:
                        cols.append(_strided(b, b.sub(b.add(x, _c(left)), _c(j * dw)), sw, src_w))
                for i in range(s.kh):
                    first, oky = srows[i]
                    for u, (sx, okx) in enumerate(cols):
                        v = self.source(src, zeros, b.add(first, sx), b.and_(oky, okx), c0, mask)
                        accs[u] = self.e.fma(v, wv[i * s.kw + j], accs[u])
            return accs

        def tile(srows, x0: ir.Value, count: ir.Value, c0: ir.Value, mask: ir.Value | None,
                 wv: list[ir.Value]) -> None:
            """Pixels ``x0 .. x0 + count`` of the row into the tile."""
            grouped = b.mul(b.udiv(count, _c(DEPTHWISE_GROUP)), _c(DEPTHWISE_GROUP))
            for lo, hi, step in ((_c(0), grouped, DEPTHWISE_GROUP), (grouped, count, 1)):
                with for_range(b, lo, hi, step, name="px") as r:
                    xs = [b.add(b.add(x0, r), _c(u)) for u in range(step)]
                    for u, acc in enumerate(sums(srows, xs, c0, mask, wv)):
                        b.store(acc, b.gep(self.tile, [b.add(r, _c(u))]))

        with for_range(b, self.lo, self.hi, name="row") as row:
            if not pooled:
                n, y = b.udiv(row, _c(out_h)), b.urem(row, _c(out_h))
                srows = source_rows(n, y)

                def body(c0: ir.Value, mask: ir.Value | None) -> None:
                    wv = [load_vector(b, b.gep(w, [b.add(_c(t * p.cols), c0)]), p.lanes, mask)
                          for t in range(p.taps)]
                    with for_range(b, 0, out_w, DEPTHWISE_PIXELS, name="x0") as x0:
                        count = _min(b, _c(DEPTHWISE_PIXELS), b.sub(_c(out_w), x0))
                        tile(srows, x0, count, c0, mask, wv)
                        b.call(self.store, [self.ctx, b.bitcast(self.tile, I8P), out,
                                            b.add(b.mul(row, _c(out_w)), x0), c0, count, _c(1), _c(EPILOGUE), _c(0)])
            else:
                pool_h, pool_w = out_h // 2, out_w // 2
                n, py = b.udiv(row, _c(pool_h)), b.urem(row, _c(pool_h))
                ys = [b.add(b.mul(py, _c(2)), _c(d)) for d in range(2)]
                both = [source_rows(n, y) for y in ys]

                def body(c0: ir.Value, mask: ir.Value | None) -> None:
                    wv = [load_vector(b, b.gep(w, [b.add(_c(t * p.cols), c0)]), p.lanes, mask)
                          for t in range(p.taps)]
                    # only the columns the pool reads (an odd last column is dropped)
                    with for_range(b, 0, 2 * pool_w, DEPTHWISE_PIXELS, name="x0") as x0:
                        count = _min(b, _c(DEPTHWISE_PIXELS), b.sub(_c(2 * pool_w), x0))
                        starts = [b.gep(scratch, [_c(d * span)]) for d in range(2)]
                        for d in range(2):
                            tile(both[d], x0, count, c0, mask, wv)
                            i0 = b.add(b.mul(b.add(b.mul(n, _c(out_h)), ys[d]), _c(out_w)), x0)
                            # the store puts pixel i0 + r at scratch + d span + r ldc
                            base = b.gep(scratch, [b.sub(_c(d * span), b.mul(i0, _c(p.ldc)))])
                            b.call(self.store, [self.ctx, b.bitcast(self.tile, I8P), base, i0, c0, count, _c(1),
                                                _c(EPILOGUE), _c(0)])
                        # each window's maximum, as the pool kernel finds it (count is even)
                        with for_range(b, 0, b.udiv(count, _c(2)), name="pw") as q:
                            def pick(best: ir.Value, v: ir.Value) -> ir.Value:
                                """``v`` if it beats ``best`` (pool.py's ``beats``): the first NaN,
                                else the first maximum."""
                                beats = b.and_(b.fcmp_unordered(">", v, best), b.fcmp_ordered("ord", best, best))
                                return b.select(beats, v, best)

                            vs = [load_vector(b, b.gep(starts[d], [b.add(b.mul(b.add(b.mul(q, _c(2)), _c(e)),
                                                                                  _c(p.ldc)), c0)]), p.lanes, mask)
                                  for d in range(2) for e in range(2)]
                            # the pool kernel's scan from -inf in window order, as a tree: the
                            # first position always wins against -inf (or is -inf), and picking
                            # within each half, then between the halves, gives the same first NaN
                            # or first maximum, bit for bit
                            best = pick(pick(vs[0], vs[1]), pick(vs[2], vs[3]))
                            pixel = b.add(b.mul(row, _c(pool_w)), b.add(b.udiv(x0, _c(2)), q))
                            store_vector(b, best, b.gep(out, [b.add(b.mul(pixel, _c(p.ldc)), c0)]), mask)

            self.channel_blocks(_c(0), _c(-(-p.cols // p.lanes)), body)

    def filter(self) -> None:
        b, p, s, k = self.b, self.p, self.s, self.k
        x, dy, out = self.kc.pointer(k.a), self.kc.pointer(k.b), self.kc.pointer(k.out)
        zeros = _zero_row(b.module, k.dtype, p.cols)
        rows = b.mul(self.kc.dim(s.n), _c(s.oh))
        blocks = -(-p.cols // p.lanes)
        # each channel vector's sums over the rows so far, one per tap
        totals = b.bitcast(alloca(b, ir.ArrayType(self.vty, blocks * p.taps)), self.vty.as_pointer())
        partial = [alloca(b, self.vty) for _ in range(p.taps)]
        (sh, sw), (dh, dw) = s.strides, s.dilations
        top, left = s.padding[0], s.padding[2]

        def total(c0: ir.Value, tap: int) -> ir.Value:
            return b.gep(totals, [b.add(b.mul(b.udiv(c0, _c(p.lanes)), _c(p.taps)), _c(tap))])

        def clear(c0: ir.Value, mask: ir.Value | None) -> None:
            for tap in range(p.taps):
                b.store(const(self.vty, 0), total(c0, tap))

        def flush(c0: ir.Value, mask: ir.Value | None) -> None:
            for tap in range(p.taps):
                b.store(b.load(total(c0, tap)), b.gep(self.tile, [_c(tap)]))
            b.call(self.store, [self.ctx, b.bitcast(self.tile, I8P), out, _c(0), c0, _c(p.taps), _c(1),
                                _c(EPILOGUE), _c(0)])

        self.channel_blocks(self.lo, self.hi, clear)
        # row by row (the row's pixels stay in cache across the channel vectors), each row's
        # sums added to the totals in row order: the same additions whatever the split
        with for_range(b, 0, rows, name="row") as row:
            n, oy = b.udiv(row, _c(s.oh)), b.urem(row, _c(s.oh))
            srows = []
            for i in range(s.kh):
                sy = b.sub(b.mul(oy, _c(sh)), _c(top - i * dh))
                srows.append((b.mul(b.add(b.mul(n, _c(s.h)), sy), _c(s.w)), b.icmp_unsigned("<", sy, _c(s.h))))

            def body(c0: ir.Value, mask: ir.Value | None) -> None:
                for slot in partial:
                    b.store(const(self.vty, 0), slot)
                with for_range(b, 0, s.ow, name="ox") as ox:
                    q = b.add(b.mul(row, _c(s.ow)), ox)
                    d = load_vector(b, b.gep(dy, [b.add(b.mul(q, _c(p.cols)), c0)]), p.lanes, mask)
                    for j in range(s.kw):
                        sx = b.sub(b.mul(ox, _c(sw)), _c(left - j * dw))
                        okx = b.icmp_unsigned("<", sx, _c(s.w))
                        for i in range(s.kh):
                            first, oky = srows[i]
                            v = self.source(x, zeros, b.add(first, sx), b.and_(oky, okx), c0, mask)
                            slot = partial[i * s.kw + j]
                            b.store(self.e.fma(v, d, b.load(slot)), slot)
                for tap in range(p.taps):
                    b.store(self.e.add(b.load(total(c0, tap)), b.load(partial[tap])), total(c0, tap))

            self.channel_blocks(self.lo, self.hi, body)
        self.channel_blocks(self.lo, self.hi, flush)


# ---------------------------------------------------------------------------
# Shared micro-kernel and helpers


def _zero_row(module: ir.Module, dtype: DType, channels: int) -> ir.Value:
    """A constant row of ``channels`` zeros: what the indirection table points a tap
    outside the image at."""
    ety = memory_type(dtype)
    name = f"dlc.conv.zeros.{type_suffix(value_type(dtype, 1))}.{channels}"
    g = module.globals.get(name)
    if g is None:
        ty = ir.ArrayType(ety, channels)
        g = ir.GlobalVariable(module, ty, name=name)
        g.global_constant = True
        g.linkage = "internal"
        g.align = 64
        g.initializer = ir.Constant(ty, None)
    return g.bitcast(ety.as_pointer())


def _conv_micro_function(module: ir.Module, name: str, dtype: DType, lanes: int, rows: int, nv: int,
                         lead: list[ir.Type], loop) -> ir.Function:
    """A conv micro-kernel: ``rows x nv`` vector accumulators over a depth that ``loop``
    walks, written where ``mode`` says (``TO_TILE``, ``TO_C``, ``ADD_TO_C``) as the GEMM's
    packed micro-kernel does.

    Signature: ``(*lead, T* bp, <W x T>* tile, T* c, i64 ldc, i64 mode)``;
    ``loop(b, lead_args, step)`` calls ``step(a, p)`` per k step, ``p`` the row of the packed
    B panel ``bp`` (``NR`` wide), ``a`` a pointer per row of the tile to its element of A."""
    ety = memory_type(dtype)
    vty = value_type(dtype, lanes)
    nr = nv * lanes
    fn, fresh = _shared(module, name, ir.VoidType(),
                        [*lead, ety.as_pointer(), vty.as_pointer(), ety.as_pointer(), I64, I64])
    if not fresh:
        return fn
    *head, bp, tile, c, ldc, mode = fn.args
    for arg in (bp, tile, c):
        arg.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    e = Emitter(b, lanes, dtype)
    accs = [[alloca(b, vty) for _ in range(nv)] for _ in range(rows)]
    for row in accs:
        for slot in row:
            b.store(const(vty, 0), slot)
    align = 64 if lanes * dtype.itemsize >= 64 else dtype.itemsize

    def step(a: list[ir.Value], p: ir.Value) -> None:
        brow = b.gep(bp, [b.mul(p, _c(nr))])
        if lanes == 1:
            bvec = [b.load(b.gep(brow, [_c(v)])) for v in range(nv)]
        else:
            bvec = [b.load(b.bitcast(b.gep(brow, [_c(v * lanes)]), vty.as_pointer()), align=align)
                    for v in range(nv)]
        for r in range(rows):
            av = splat(b, b.load(a[r]), lanes)
            for v in range(nv):
                b.store(e.fma(av, bvec[v], b.load(accs[r][v])), accs[r][v])

    loop(b, head, step)
    _write_accumulators(b, e, accs, tile, c, ldc, mode, lanes)
    b.ret_void()
    return fn


def _indirect_micro_function(module: ir.Module, dtype: DType, lanes: int, rows: int, nv: int) -> ir.Function:
    """``tile = sum over taps t < nt and channels p < clen of A_r[t][coff + p] * bp[(t clen + p) NR ..]``
    for ``rows`` rows whose A pointers per tap are ``ind[t * rows + r]``.

    Signature: ``(T** ind, i64 nt, i64 coff, i64 clen, T* bp, <W x T>* tile, T* c, i64 ldc,
    i64 mode)`` (:func:`_conv_micro_function`)."""
    pptr = memory_type(dtype).as_pointer()

    def loop(b: ir.IRBuilder, head, step) -> None:
        ind, nt, coff, clen = head
        with for_range(b, 0, nt, name="tap") as t:
            arows = [b.gep(b.load(b.gep(ind, [b.add(b.mul(t, _c(rows)), _c(r))])), [coff]) for r in range(rows)]
            with for_range(b, 0, clen, name="k") as q:
                step([b.gep(arow, [q]) for arow in arows], b.add(b.mul(t, clen), q))

    name = f"dlc.conv.indirect{rows}x{nv * lanes}.{type_suffix(value_type(dtype, 1))}"
    return _conv_micro_function(module, name, dtype, lanes, rows, nv, [pptr.as_pointer(), I64, I64, I64], loop)


def _indirect_k_micro_function(module: ir.Module, dtype: DType, lanes: int, rows: int, nv: int) -> ir.Function:
    """``tile = sum_p ind[p][coff + r] * bp[p NR ..]``: A's ``rows`` rows are consecutive
    elements at a pointer that changes with k (the filter gradient: 8 channels of one tap,
    at each pixel).

    Signature: ``(T** ind, i64 coff, i64 k, T* bp, <W x T>* tile, T* c, i64 ldc, i64 mode)``
    (:func:`_conv_micro_function`)."""
    pptr = memory_type(dtype).as_pointer()

    def loop(b: ir.IRBuilder, head, step) -> None:
        ind, coff, kk = head
        with for_range(b, 0, kk, name="k") as q:
            arow = b.gep(b.load(b.gep(ind, [q])), [coff])
            step([b.gep(arow, [_c(r)]) for r in range(rows)], q)

    name = f"dlc.conv.indirectk{rows}x{nv * lanes}.{type_suffix(value_type(dtype, 1))}"
    return _conv_micro_function(module, name, dtype, lanes, rows, nv, [pptr.as_pointer(), I64, I64], loop)


def _filter_table_function(kc: KernelContext, k: Conv, p: ConvPlan) -> ir.Function:
    """``<kernel>.table(T* x, i64 q0, i64 kc, T** table, T* zeros)``: for every tap ``t`` and
    pixel ``q0 + q``, ``table[t kc + q]`` points at channel 0 of the image pixel the tap
    meets there, or at ``zeros`` in the padding."""
    s = k.shape
    ety = memory_type(k.dtype)
    pptr = ety.as_pointer()
    fn, fresh = _kernel_helper(kc, "table", [pptr, I64, I64, pptr.as_pointer(), pptr])
    if not fresh:
        return fn
    x, q0, kcur, table, zeros = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    with for_range(b, 0, kcur, name="q") as q:
        origin = _output_pixel(b, s, b.add(q0, q))

        def entry(tap: ir.Value) -> None:
            at, ok = _through_tap(b, s, origin, tap)
            ptr = b.select(ok, b.gep(x, [b.mul(at, _c(s.c))]), zeros)
            b.store(ptr, b.gep(table, [b.add(b.mul(tap, kcur), q)]))
            if isinstance(tap, ir.Constant) and tap.constant == p.taps // 2:
                _prefetch(b, ptr, s.c * k.dtype.itemsize)

        if p.taps <= UNROLL_TAPS:
            for tap in range(p.taps):
                entry(_c(tap))
        else:
            with for_range(b, 0, p.taps, name="tap") as tap:
                entry(tap)
    b.ret_void()
    return fn


def _kernel_helper(kc: KernelContext, suffix: str, args: list[ir.Type]) -> tuple[ir.Function, bool]:
    """A helper function of this kernel only (its geometry is baked in)."""
    return _shared(kc.b.module, f"{_kernel_name(kc)}.{suffix}", ir.VoidType(), args)


def _kernel_name(kc: KernelContext) -> str:
    name = kc.b.function.name
    return name[:-len(".part")] if name.endswith(".part") else name


def _unflatten(b: ir.IRBuilder, i: ir.Value, dims: tuple) -> list[ir.Value]:
    """Row-major indices of flat index ``i`` over ``dims`` (the first dim's extent unused)."""
    out: list[ir.Value] = []
    for d in reversed(dims[1:]):
        out.append(b.urem(i, _c(d)))
        i = b.udiv(i, _c(d))
    out.append(i)
    return out[::-1]


def _gather_function(kc: KernelContext, k: Conv, p: ConvPlan, index: int, grid: SubGrid) -> ir.Function:
    """``<kernel>.gather<index>(T* src, i64 i0, i64 mc, i64 t0, i64 nt, T** table, T* zeros)``:
    the indirection table of the grid's rows ``[i0, i0 + mc)`` for its taps ``[t0, t0 + nt)``:
    ``table[(r / MR) nt MR + t MR + r % MR]`` points at channel 0 of the source pixel row
    ``i0 + r`` reads through tap ``t0 + t`` (:class:`SubGrid`), or at ``zeros`` (a tap
    outside the source image; rows past ``mc`` up to a whole micro-tile).  The taps are
    unrolled: their offsets are constants."""
    s = k.shape
    ety = memory_type(k.dtype)
    pptr = ety.as_pointer()
    fn, fresh = _kernel_helper(kc, f"gather{index}", [pptr, I64, I64, I64, I64, pptr.as_pointer(), pptr])
    if not fresh:
        return fn
    src, i0, mc, t0, nt, table, zeros = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    mr = p.mr
    src_h, src_w = (s.h, s.w) if p.kind == "forward" else (s.oh, s.ow)
    rows_pad = b.mul(_ceil_div(b, mc, mr), _c(mr))
    with for_range(b, 0, rows_pad, name="r") as r:
        live = b.icmp_signed("<", r, mc)
        n, a, col = _unflatten(b, b.add(i0, b.select(live, r, _c(0))), (None, grid.height, grid.width))
        ya, xb = b.mul(a, _c(grid.my)), b.mul(col, _c(grid.mx))
        first = b.mul(n, _c(src_h))
        slot = b.add(b.mul(b.sdiv(r, _c(mr)), b.mul(nt, _c(mr))), b.srem(r, _c(mr)))
        for tap, (_, dy, dx) in enumerate(grid.taps):
            t = b.sub(_c(tap), t0)
            with b.if_then(b.icmp_unsigned("<", t, nt)):
                sy, sx = b.add(ya, _c(dy)), b.add(xb, _c(dx))
                ok = b.and_(b.and_(b.icmp_unsigned("<", sy, _c(src_h)), b.icmp_unsigned("<", sx, _c(src_w))), live)
                pixel = b.add(b.mul(b.add(first, sy), _c(src_w)), sx)
                ptr = b.select(ok, b.gep(src, [b.mul(pixel, _c(p.src_channels))]), zeros)
                b.store(ptr, b.gep(table, [b.add(slot, b.mul(t, _c(mr)))]))
                if tap == len(grid.taps) // 2:
                    _prefetch(b, ptr, p.src_channels * k.dtype.itemsize)
    b.ret_void()
    return fn


def _output_pixel(b: ir.IRBuilder, s, q: ir.Value) -> tuple[ir.Value, ir.Value, ir.Value]:
    """For output pixel ``q`` (flat over N, OH, OW): the image row and column kernel tap
    (0, 0) meets (in padded coordinates less the padding: maybe negative) and the flat
    pixel index of that position."""
    n, oy, ox = _unflatten(b, q, (None, s.oh, s.ow))
    y0 = b.sub(b.mul(oy, _c(s.strides[0])), _c(s.padding[0]))
    x0 = b.sub(b.mul(ox, _c(s.strides[1])), _c(s.padding[2]))
    return y0, x0, b.add(b.mul(b.add(b.mul(n, _c(s.h)), y0), _c(s.w)), x0)


def _through_tap(b: ir.IRBuilder, s, origin: tuple[ir.Value, ir.Value, ir.Value],
                 tap: ir.Value) -> tuple[ir.Value, ir.Value]:
    """(flat index of the image pixel that ``tap`` meets from ``origin`` (see
    :func:`_output_pixel`), whether it lies inside the image rather than the padding)."""
    y0, x0, flat = origin
    i, j = b.udiv(tap, _c(s.kw)), b.urem(tap, _c(s.kw))
    dy, dx = b.mul(i, _c(s.dilations[0])), b.mul(j, _c(s.dilations[1]))
    ok = b.and_(b.icmp_unsigned("<", b.add(y0, dy), _c(s.h)), b.icmp_unsigned("<", b.add(x0, dx), _c(s.w)))
    return b.add(flat, b.add(b.mul(dy, _c(s.w)), dx)), ok


def _prefetch(b: ir.IRBuilder, ptr: ir.Value, nbytes: int) -> None:
    """Ask for the cache lines of ``nbytes`` at ``ptr`` (a source pixel the micro-kernel
    reads next): a table is built just before the tiles that read through it, so the
    lines of the block's pixels arrive while it is being built (the input gradient of a
    128-image batch, whose ``dy`` is far from the caches: 0.87-0.89 -> 0.97-1.00 of
    PyTorch)."""
    fetch = intrinsic(b.module, "llvm.prefetch.p0", ir.VoidType(), [I8P, I32, I32, I32])
    raw = b.bitcast(ptr, I8P)
    for line in range(0, nbytes, 64):         # read, keep in all levels, data
        b.call(fetch, [b.gep(raw, [_c(line)]), ir.Constant(I32, 0), ir.Constant(I32, 3), ir.Constant(I32, 1)])


def _strided(b: ir.IRBuilder, pos: ir.Value, stride: int, size: int) -> tuple[ir.Value, ir.Value]:
    """``(pos / stride, whether pos is a multiple of stride in [0, stride * size))``."""
    inside = b.icmp_unsigned("<", pos, _c(stride * size))
    if stride == 1:
        return pos, inside
    q = b.udiv(pos, _c(stride))
    exact = b.icmp_signed("==", b.urem(pos, _c(stride)), _c(0))
    return q, b.and_(inside, exact)


def _pack_input_b_function(kc: KernelContext, k: Conv, p: ConvPlan, index: int, grid: SubGrid) -> ir.Function:
    """``<kernel>.packB<index>(T* w, i64 g, i64 t0, i64 nt, i64 c0, i64 clen, i64 jc, i64 ncur,
    T* bp)``: the input gradient's B for the grid's taps ``[t0, t0 + nt)``,
    ``B[(t, o), c] = w[tap t, c, g OCg + o]`` for ``o`` in ``[c0, c0 + clen)`` and columns
    (input channels of group ``g``) ``[jc, jc + ncur)``, into zero-padded NR-column panels:
    each tap's block of the kernel transposed."""
    s = k.shape
    ety = memory_type(k.dtype)
    pptr = ety.as_pointer()
    fn, fresh = _kernel_helper(kc, f"packB{index}", [pptr, I64, I64, I64, I64, I64, I64, I64, pptr])
    if not fresh:
        return fn
    w, g, t0, nt, c0, clen, jc, ncur, bp = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    nr = p.nr
    kcur = b.mul(nt, clen)
    for tap, (kernel_tap, _, _) in enumerate(grid.taps):
        t = b.sub(_c(tap), t0)
        with b.if_then(b.icmp_unsigned("<", t, nt)):
            # the tap's kernel block [Cg, OC]: row c (an input channel), column g OCg + o
            bt = b.gep(w, [b.add(_c(kernel_tap * s.cg * s.oc), b.mul(g, _c(s.ocg)))])
            with for_range(b, 0, ncur, nr, name="jp") as jp:
                dst = b.gep(bp, [b.add(b.mul(jp, kcur), b.mul(b.mul(t, clen), _c(nr)))])
                if p.lanes >= 8:
                    _pack_transposed(b, p.lanes, bt, _c(s.oc), b.add(jc, jp), b.sub(ncur, jp), c0, clen, dst, nr)
                else:
                    with for_range(b, 0, clen, name="o") as o, for_range(b, 0, nr, name="j") as jj:
                        col = b.add(jp, jj)
                        live = b.icmp_signed("<", col, ncur)
                        row = b.select(live, b.add(jc, col), _c(0))
                        value = b.load(b.gep(bt, [b.add(b.mul(row, _c(s.oc)), b.add(c0, o))]))
                        b.store(b.select(live, value, const(ety, 0)), b.gep(dst, [b.add(b.mul(o, _c(nr)), jj)]))
    b.ret_void()
    return fn


def _pack_filter_a_function(kc: KernelContext, k: Conv, p: ConvPlan) -> ir.Function:
    """``<kernel>.packA(T* x, i64 g, i64 i0, i64 mc, i64 q0, i64 kc, T* ap)``: the filter
    gradient's ``A[(tap, c), q] = x[pixel q through tap, g Cg + c]`` (0 in the padding) for
    rows ``[i0, i0 + mc)`` and pixels ``[q0, q0 + kc)``, into MR-row panels
    ``ap[ip kc + p MR + r]``, element by element; rows past ``mc`` are zero, never stored.
    (The general case: with 8-row tiles of one tap's consecutive channels the kernel
    reads A in place, :func:`_filter_table_function`.)"""
    s = k.shape
    ety = memory_type(k.dtype)
    pptr = ety.as_pointer()
    fn, fresh = _kernel_helper(kc, "packA", [pptr, I64, I64, I64, I64, I64, pptr])
    if not fresh:
        return fn
    x, g, i0, mc, q0, kcur, ap = fn.args
    x.add_attribute("noalias")
    ap.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    mr = p.mr
    base = b.gep(x, [b.mul(g, _c(s.cg))])
    most = _round_up(min(MC, p.rows), mr)          # the most rows one call packs
    if most <= PACK_A_UNROLL:
        _pack_filter_a_by_pixel(b, s, base, i0, mc, q0, kcur, ap, mr, most)
        b.ret_void()
        return fn
    rows_pad = b.mul(_ceil_div(b, mc, mr), _c(mr))
    with for_range(b, 0, rows_pad, name="r") as r:
        live = b.icmp_signed("<", r, mc)
        row = b.add(i0, b.select(live, r, _c(0)))
        tap, c = b.udiv(row, _c(s.cg)), b.urem(row, _c(s.cg))
        dst = b.gep(ap, [b.add(b.mul(b.sdiv(r, _c(mr)), b.mul(kcur, _c(mr))), b.srem(r, _c(mr)))])
        with for_range(b, 0, kcur, name="q") as q:
            at, ok = _through_tap(b, s, _output_pixel(b, s, b.add(q0, q)), tap)
            value = b.load(b.gep(base, [b.add(b.mul(b.select(ok, at, _c(0)), _c(s.c)), c)]))
            value = b.select(b.and_(ok, live), value, const(ety, 0))
            b.store(value, b.gep(dst, [b.mul(q, _c(mr))]))
    b.ret_void()
    return fn


def _pack_filter_a_by_pixel(b: ir.IRBuilder, s, base: ir.Value, i0: ir.Value, mc: ir.Value, q0: ir.Value,
                            kcur: ir.Value, ap: ir.Value, mr: int, most: int) -> None:
    """packA's loops the other way round for few rows (a one-channel image's 9 taps):
    pixel by pixel, the ``most`` rows unrolled, so the output pixel is found once per
    pixel rather than once per element, and each row's tap and channel (invariant in
    the pixel loop) are hoisted out of it. Rows from ``mc`` on are stored as zeros."""
    ety = ap.type.pointee
    rows = []
    for r in range(most):
        live = b.icmp_signed("<", _c(r), mc)
        row = b.add(i0, b.select(live, _c(r), _c(0)))
        rows.append((live, b.udiv(row, _c(s.cg)), b.urem(row, _c(s.cg)), (r // mr) * mr, r % mr))
    with for_range(b, 0, kcur, name="q") as q:
        origin = _output_pixel(b, s, b.add(q0, q))
        for live, tap, c, panel, lane in rows:
            at, ok = _through_tap(b, s, origin, tap)
            value = b.load(b.gep(base, [b.add(b.mul(b.select(ok, at, _c(0)), _c(s.c)), c)]))
            value = b.select(b.and_(ok, live), value, const(ety, 0))
            b.store(value, b.gep(ap, [b.add(b.mul(kcur, _c(panel)), b.add(b.mul(q, _c(mr)), _c(lane)))]))


# ---------------------------------------------------------------------------
# The store function: partial tiles, earlier slices, the epilogue


def _store_function(kc: KernelContext, k: Conv, p: ConvPlan, grid: int | None
                    ) -> tuple[ir.Function, list[ir.Value]]:
    """``<kernel>.store[grid](i8* ctx, i8* tile, T* out, i64 i0, i64 j0, i64 rows, i64 nv,
    i64 flags, i64 g)``: the tile's ``rows x nv`` vectors into rows ``i0..`` and columns
    ``j0..`` (below ``cols``) of group ``g``'s block of C, C's previous contents added
    (``ADD_PREVIOUS``), the epilogue applied (``EPILOGUE``) at each row's output index; and
    the context words (buffer pointers, dims) the epilogue reads.  Rows are the output's
    rows in order, or the pixels of sub-grid ``grid`` (:class:`SubGrid`)."""
    b = kc.b
    ety = memory_type(k.dtype)
    sub = p.subgrids[grid] if grid is not None else None
    suffix = "store" if sub is None or sub.identity else f"store{grid}"
    fn, fresh = _kernel_helper(kc, suffix, [I8P, I8P, ety.as_pointer(), I64, I64, I64, I64, I64, I64])
    buffers = list(kc.storage.items()) if k.epilogue is not None else []
    symbols = list(kc.symbols.items()) if k.epilogue is not None else []
    if fresh:
        _store_body(fn, k, p, buffers, symbols, None if sub is None or sub.identity else sub)
    words = [b.ptrtoint(v, I64) for _, v in buffers] + [v if v.type == I64 else b.sext(v, I64) for _, v in symbols]
    return fn, words


def _store_with_context(kc: KernelContext, k: Conv, p: ConvPlan, grid: int | None
                        ) -> tuple[ir.Function, ir.Value]:
    """The store function and its context argument (a stack array of the words, or null)."""
    b = kc.b
    store, words = _store_function(kc, k, p, grid)
    if not words:
        return store, ir.Constant(I8P, None)
    slots = alloca(b, ir.ArrayType(I64, len(words)))
    for i, w in enumerate(words):
        b.store(w, b.gep(slots, [_c(0), _c(i)]))
    return store, b.bitcast(slots, I8P)


def _store_body(fn: ir.Function, k: Conv, p: ConvPlan, buffers, symbols, sub: SubGrid | None) -> None:
    ctx, tile_raw, c, i0, j0, rows, nv, flags, g = fn.args
    c.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    lanes = p.lanes
    vty = value_type(k.dtype, lanes)
    tile = b.bitcast(tile_raw, vty.as_pointer())
    add_prev = b.icmp_unsigned("!=", b.and_(flags, _c(ADD_PREVIOUS)), _c(0))
    apply = b.icmp_unsigned("!=", b.and_(flags, _c(EPILOGUE)), _c(0))
    epi = None
    if k.epilogue is not None:
        words = b.bitcast(ctx, I64.as_pointer())
        loaded = [b.load(b.gep(words, [_c(i)])) for i in range(len(buffers) + len(symbols))]
        storage = {buf: b.inttoptr(w, v.type) for (buf, v), w in zip(buffers, loaded)}
        dims = {s: (w if v.type == I64 else b.trunc(w, v.type)) for (s, v), w in zip(symbols, loaded[len(buffers):])}
        out_shape = tuple(k.out.shape)
        epi = ExprEmitter(KernelContext(b, storage, dims, lanes), Space.plain(out_shape), len(out_shape) - 1)
    group_col = b.mul(g, _c(p.cols))
    with for_range(b, 0, rows, name="r") as r:
        i = b.add(i0, r)
        if sub is None:
            index = _unflatten(b, i, tuple(k.out.shape[:-1])) if epi is not None else []
        else:
            # the sub-grid's pixel (n, y0 + sy a, x0 + sx b) of the [N, H, W, C] output
            n, a, col_b = _unflatten(b, i, (None, sub.height, sub.width))
            index = [n, b.add(_c(sub.y0), b.mul(a, _c(sub.sy))), b.add(_c(sub.x0), b.mul(col_b, _c(sub.sx)))]
            i = b.add(b.mul(b.add(b.mul(n, _c(k.out.shape[1])), index[1]), _c(k.out.shape[2])), index[2])
        crow = b.gep(c, [b.add(b.mul(i, _c(p.ldc)), group_col)])
        with for_range(b, 0, nv, name="v") as v:
            col = b.add(j0, b.mul(v, _c(lanes)))
            left = _clamp(b, b.sub(_c(p.cols), col), lanes)
            value = b.load(b.gep(tile, [b.add(b.mul(r, nv), v)]))
            ptr = b.gep(crow, [col])
            mask = lane_mask(b, lanes, left) if lanes > 1 else None
            value = _add_previous(b, k.dtype, value, ptr, mask, left, lanes, add_prev)
            if epi is not None:
                pre = b.block
                with b.if_then(apply):
                    done = epi.emit(k.epilogue, [*index, b.add(group_col, col)], lanes, mask, acc=value)
                    body = b.block
                merged = b.phi(value.type)
                merged.add_incoming(value, pre)
                merged.add_incoming(done, body)
                value = merged
            if lanes > 1:
                store_vector(b, to_memory(b, value), ptr, mask)
            else:
                with b.if_then(b.icmp_signed(">", left, _c(0))):
                    b.store(to_memory(b, value), ptr)
    b.ret_void()


__all__ = ["ConvPlan", "plan", "emit_conv", "scratch_bytes", "task_count"]
