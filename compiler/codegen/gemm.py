"""The GEMM kernel generator: ``C = epilogue(A @ B)`` for every layout and shape.

Design (first version: correct and reasonably fast; see docs/codegen.md):

* **Register blocking.**  A micro-tile of ``MR`` rows by ``NR = NV * W``
  columns (W = vector lanes: 16 f32 on AVX-512) lives in ``MR * NV`` vector
  accumulators for the whole K loop.  Each k step loads ``NV`` vectors of a
  B row and broadcasts one A element per row into an ``llvm.fma``.  All of K
  is accumulated in registers, so the epilogue sees the final sum and can
  read the output's previous contents (an in-place optimizer update).
* **B panels.**  Column panels of NR are walked in order; a full panel of a
  row-major B is read in place (row stride N); the last, partial panel and
  every panel of a transposed B are packed into a zero-padded ``K x NR``
  scratch buffer first (from the call's workspace).
* **A** is read in place in either layout (``trans_a`` swaps its strides):
  A is the broadcast operand, one scalar per row and k.
* **Tails**: M rows beyond the last full tile run a one-row micro-kernel;
  N columns beyond N are masked on store (and zero in the packed panel).
* **Epilogue**: the fused elementwise consumer, evaluated on each
  accumulator vector at its (batch.., i, j) position before the store.
* **Batch** axes (numpy broadcasting between A and B) loop outside.

The interface a faster implementation must keep: :func:`emit_matmul` and
:func:`scratch_elements` (workspace it needs, in elements of the result dtype).
"""

from __future__ import annotations

from llvmlite import ir

from ..ir.types import Dim
from .emitter import Emitter, to_memory
from .kernels import ExprEmitter, KernelContext, Space, alloca as _alloca, lane_mask, load_vector, store_vector
from .llvmutil import I64, const, for_range, splat, value_type
from .loops import Matmul


def tile_shape(lanes: int) -> tuple[int, int]:
    """(MR rows, NV vectors) of the micro-tile for ``lanes``-wide vectors."""
    if lanes >= 16:
        return 8, 2          # 16 accumulators + 2 B vectors + 1 broadcast of 32 zmm
    if lanes >= 8:
        return 6, 2          # 12 of 16 ymm
    return 4, 2


def panel_width(lanes: int) -> int:
    return tile_shape(lanes)[1] * lanes


def scratch_elements(k: Matmul, lanes: int) -> tuple[Dim, int]:
    """The packed-B scratch a matmul kernel needs: ``K x NR`` elements."""
    return k.k, panel_width(lanes)


def emit_matmul(kc: KernelContext, k: Matmul) -> None:
    """Code for one :class:`Matmul` kernel into the current function."""
    b = kc.b
    batch_index: list[ir.Value] = []

    def over_batch(level: int) -> None:
        if level == len(k.batch):
            _gemm(kc, k, batch_index)
            return
        with for_range(b, 0, kc.dim(k.batch[level]), name=f"batch{level}") as i:
            batch_index.append(i)
            over_batch(level + 1)
            batch_index.pop()

    over_batch(0)


def _batch_offset(kc: KernelContext, buf, bmap, batch_index) -> ir.Value:
    b = kc.b
    strides = kc.strides(buf)
    offset: ir.Value = ir.Constant(I64, 0)
    for d, axis in enumerate(bmap):
        if axis is not None:
            offset = b.add(offset, b.mul(batch_index[axis], strides[d]))
    return offset


def _gemm(kc: KernelContext, k: Matmul, batch_index: list[ir.Value]) -> None:
    b = kc.b
    lanes = max(kc.lanes, 1)
    mr, nv = tile_shape(lanes)
    nr = nv * lanes
    m, n, kk = kc.dim(k.m), kc.dim(k.n), kc.dim(k.k)
    dtype = k.dtype
    elem_ptr = kc.pointer(k.out)
    a = b.gep(kc.pointer(k.a), [_batch_offset(kc, k.a, k.a_batch, batch_index)])
    bmat = b.gep(kc.pointer(k.b), [_batch_offset(kc, k.b, k.b_batch, batch_index)])
    nb_out = len(k.batch)
    out_bmap = list(range(nb_out))
    c = b.gep(elem_ptr, [_batch_offset(kc, k.out, out_bmap, batch_index)])
    one = ir.Constant(I64, 1)
    sa_i, sa_k = (one, m) if k.trans_a else (kk, one)
    scratch = b.bitcast(kc.scratch, elem_ptr.type) if kc.scratch is not None else None
    e = Emitter(b, lanes, dtype)

    space = Space.plain(tuple(k.out.shape))
    epi = ExprEmitter(kc, space, len(k.out.shape) - 1) if k.epilogue is not None else None

    with for_range(b, 0, n, nr, name="j0") as j0:
        width = b.sub(n, j0)
        full = b.icmp_signed(">=", width, ir.Constant(I64, nr))
        if not k.trans_b:
            full_direct = full
        else:
            full_direct = ir.Constant(ir.IntType(1), 0)
        with b.if_then(b.not_(full_direct)):
            _pack_panel(kc, k, bmat, scratch, j0, width, kk, n, nr, lanes)
        direct = b.gep(bmat, [j0])
        bsrc = b.select(full_direct, direct, scratch)
        bstride = b.select(full_direct, n, ir.Constant(I64, nr))

        tiles = b.mul(b.sdiv(m, ir.Constant(I64, mr)), ir.Constant(I64, mr))
        with for_range(b, 0, tiles, mr, name="i0") as i0:
            _micro(kc, k, e, epi, a, sa_i, sa_k, bsrc, bstride, c, i0, j0, mr, nv, lanes, m, n, kk,
                   batch_index)
        with for_range(b, tiles, m, name="itail") as i0:
            _micro(kc, k, e, epi, a, sa_i, sa_k, bsrc, bstride, c, i0, j0, 1, nv, lanes, m, n, kk,
                   batch_index)


def _pack_panel(kc: KernelContext, k: Matmul, bmat, scratch, j0, width, kk, n, nr: int,
                lanes: int) -> None:
    """Copy B[:, j0:j0+NR] into the zero-padded K x NR scratch panel."""
    b = kc.b
    if not k.trans_b:
        with for_range(b, 0, kk, name="pk") as p:
            row = b.gep(bmat, [b.add(b.mul(p, n), j0)])
            dst = b.gep(scratch, [b.mul(p, ir.Constant(I64, nr))])
            for v in range(nr // lanes):
                left = b.sub(width, ir.Constant(I64, v * lanes))
                clamped = _clamp(b, left, lanes)
                mask = lane_mask(b, lanes, clamped) if lanes > 1 else None
                src = b.gep(row, [ir.Constant(I64, v * lanes)])
                if lanes == 1:
                    val = b.select(b.icmp_signed(">", left, ir.Constant(I64, 0)),
                                   b.load(src), const(src.type.pointee, 0))
                    b.store(val, b.gep(dst, [ir.Constant(I64, v)]))
                else:
                    store_vector(b, load_vector(b, src, lanes, mask),
                                 b.gep(dst, [ir.Constant(I64, v * lanes)]), None)
        return
    # B stored transposed ([N, K]): B[p, j] = Bt[j, p]
    with for_range(b, 0, ir.Constant(I64, nr), name="pj") as jj:
        live = b.icmp_signed("<", jj, width)
        col = b.mul(b.add(j0, jj), kk)
        with for_range(b, 0, kk, name="pk") as p:
            dst = b.gep(scratch, [b.add(b.mul(p, ir.Constant(I64, nr)), jj)])
            with b.if_else(live) as (then, otherwise):
                with then:
                    b.store(b.load(b.gep(bmat, [b.add(col, p)])), dst)
                with otherwise:
                    b.store(const(dst.type.pointee, 0), dst)


def _clamp(b: ir.IRBuilder, x: ir.Value, hi: int) -> ir.Value:
    """``min(max(x, 0), hi)`` for i64 ``x``."""
    zero = ir.Constant(I64, 0)
    x = b.select(b.icmp_signed("<", x, zero), zero, x)
    top = ir.Constant(I64, hi)
    return b.select(b.icmp_signed(">", x, top), top, x)


def _micro(kc: KernelContext, k: Matmul, e: Emitter, epi: ExprEmitter | None, a, sa_i, sa_k,
           bsrc, bstride, c, i0, j0, rows: int, nv: int, lanes: int, m, n, kk,
           batch_index) -> None:
    """One micro-tile: ``rows`` x ``nv*lanes`` accumulated over all of K, then stored."""
    b = kc.b
    vty = value_type(k.dtype, lanes)
    zero = const(vty, 0)
    accs = [[_alloca(b, vty) for _ in range(nv)] for _ in range(rows)]
    for row in accs:
        for slot in row:
            b.store(zero, slot)
    arows = [b.gep(a, [b.mul(b.add(i0, ir.Constant(I64, r)), sa_i)]) for r in range(rows)]
    with for_range(b, 0, kk, name="k") as p:
        brow = b.gep(bsrc, [b.mul(p, bstride)])
        bvec = [_load_lanes(b, b.gep(brow, [ir.Constant(I64, v * lanes)]), lanes) for v in range(nv)]
        for r in range(rows):
            av = splat(b, b.load(b.gep(arows[r], [b.mul(p, sa_k)])), lanes)
            for v in range(nv):
                b.store(e.fma(av, bvec[v], b.load(accs[r][v])), accs[r][v])
    # Spill the tile to the stack, then store it row by row through the epilogue: one copy
    # of the epilogue code per micro-kernel, and the output (which the epilogue may read,
    # for in-place updates) is untouched until its element's final value is known.
    tile = _alloca(b, ir.ArrayType(vty, rows * nv))
    for r in range(rows):
        for v in range(nv):
            b.store(b.load(accs[r][v]), b.gep(tile, [ir.Constant(I64, 0), ir.Constant(I64, r * nv + v)]))
    with for_range(b, 0, rows, name="r") as r:
        i = b.add(i0, r)
        crow = b.gep(c, [b.mul(i, n)])
        with for_range(b, 0, nv, name="v") as v:
            col = b.add(j0, b.mul(v, ir.Constant(I64, lanes)))
            left = _clamp(b, b.sub(n, col), lanes)
            mask = lane_mask(b, lanes, left) if lanes > 1 else None
            slot = b.add(b.mul(r, ir.Constant(I64, nv)), v)
            value = b.load(b.gep(tile, [ir.Constant(I64, 0), slot]))
            if epi is not None:
                value = epi.emit(k.epilogue, [*batch_index, i, col], lanes, mask, acc=value)
            ptr = b.gep(crow, [col])
            if lanes == 1:
                with b.if_then(b.icmp_signed(">", left, ir.Constant(I64, 0))):
                    b.store(to_memory(b, value), ptr)
            else:
                store_vector(b, to_memory(b, value), ptr, mask)


def _load_lanes(b: ir.IRBuilder, ptr: ir.Value, lanes: int) -> ir.Value:
    return b.load(ptr) if lanes == 1 else load_vector(b, ptr, lanes, None)
