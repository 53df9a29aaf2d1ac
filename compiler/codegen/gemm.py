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
* **One row** (batch 1): blocks of 256 columns (16 vectors) read each row
  of B contiguously, one pass over B instead of one per panel.
* **Tails**: the M % MR rows after the last full tile run the micro-kernel
  of exactly that many rows (one pass over the B panel); columns beyond N are
  masked on store (and zero in the packed panel).
* **Epilogue**: the fused elementwise consumer, evaluated on each
  accumulator vector at its (batch.., i, j) position before the store.
* **Batch** axes (numpy broadcasting between A and B) loop outside.
* **Shared code.**  The micro-kernels (one per row count) and the packing
  routines are out-of-line functions of the LLVM module, one per dtype and
  width, shared by every matmul kernel; a kernel itself is the panel and
  tile loops, the calls, and its epilogue.  One call per micro-tile (a
  whole K loop of work) costs nothing measurable and keeps compile time
  proportional to the number of matmuls, not to their unrolled bodies.

The interface a faster implementation must keep: :func:`emit_matmul` and
:func:`scratch_elements` (workspace it needs, in elements of the result dtype).
"""

from __future__ import annotations

from llvmlite import ir

from ..ir.types import Dim, DType
from .emitter import Emitter, to_memory
from .kernels import ExprEmitter, KernelContext, Space, alloca, lane_mask, load_vector, store_vector
from .llvmutil import I1, I64, const, for_range, memory_type, splat, type_suffix, value_type
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
    a = b.gep(kc.pointer(k.a), [_batch_offset(kc, k.a, k.a_batch, batch_index)])
    bmat = b.gep(kc.pointer(k.b), [_batch_offset(kc, k.b, k.b_batch, batch_index)])
    c = b.gep(kc.pointer(k.out), [_batch_offset(kc, k.out, range(len(k.batch)), batch_index)])
    one = ir.Constant(I64, 1)
    sa_i, sa_k = (one, m) if k.trans_a else (kk, one)
    scratch = b.bitcast(kc.scratch, a.type)
    epi = ExprEmitter(kc, Space.plain(tuple(k.out.shape)), len(k.out.shape) - 1) \
        if k.epilogue is not None else None
    vty = value_type(dtype, lanes)
    tile = alloca(b, ir.ArrayType(vty, mr * nv))
    tile_ptr = b.bitcast(tile, vty.as_pointer())
    pack = _pack_function(b.module, dtype, lanes, nv, k.trans_b)
    micro = {rows: _micro_function(b.module, dtype, lanes, rows, nv) for rows in range(1, mr + 1)}

    start: ir.Value = ir.Constant(I64, 0)
    if not k.trans_b:
        start = _single_row(kc, k, epi, a, sa_i, sa_k, bmat, c, m, n, kk, lanes, batch_index)

    with for_range(b, start, n, nr, name="j0") as j0:
        width = b.sub(n, j0)
        if k.trans_b:
            direct = ir.Constant(I1, 0)
        else:
            direct = b.icmp_signed(">=", width, ir.Constant(I64, nr))
        with b.if_then(b.not_(direct)):
            b.call(pack, [bmat, n, kk, j0, width, scratch])
        bsrc = b.select(direct, b.gep(bmat, [j0]), scratch)
        bstride = b.select(direct, n, ir.Constant(I64, nr))
        tiles = b.mul(b.sdiv(m, ir.Constant(I64, mr)), ir.Constant(I64, mr))
        args = [sa_i, sa_k, bsrc, bstride, kk, tile_ptr]
        with for_range(b, 0, tiles, mr, name="i0") as i0:
            b.call(micro[mr], [b.gep(a, [b.mul(i0, sa_i)]), *args])
            _store_tile(kc, k, epi, tile_ptr, c, i0, j0, mr, nv, lanes, n, batch_index)
        # The last M % MR rows: one call of the micro-kernel of exactly that many rows.
        left = b.sub(m, tiles)
        with b.if_then(b.icmp_signed(">", left, ir.Constant(I64, 0))):
            arow = b.gep(a, [b.mul(tiles, sa_i)])
            done = b.append_basic_block("tail.done")
            switch = b.switch(left, done)
            for rows in range(1, mr):
                case = b.append_basic_block(f"tail{rows}")
                switch.add_case(ir.Constant(I64, rows), case)
                b.position_at_end(case)
                b.call(micro[rows], [arow, *args])
                b.branch(done)
            b.position_at_end(done)
            _store_tile(kc, k, epi, tile_ptr, c, tiles, j0, left, nv, lanes, n, batch_index)


def _single_row(kc: KernelContext, k: Matmul, epi: ExprEmitter | None, a, sa_i, sa_k, bmat, c,
                m, n, kk, lanes: int, batch_index) -> ir.Value:
    """One row of A (batch 1): blocks of ``WIDE`` columns, each reading B's rows contiguously
    in one pass (the panel loop would stride through B once per NR columns).  Returns the
    first column the panel loop still has to do (0 unless M is 1)."""
    b = kc.b
    wide_nv = 16 if lanes >= 16 else 8
    wide = wide_nv * lanes
    vty = value_type(k.dtype, lanes)
    tile = b.bitcast(alloca(b, ir.ArrayType(vty, wide_nv)), vty.as_pointer())
    micro = _micro_function(b.module, k.dtype, lanes, 1, wide_nv)
    blocks_end = b.select(b.icmp_signed("==", m, ir.Constant(I64, 1)),
                          b.mul(b.sdiv(n, ir.Constant(I64, wide)), ir.Constant(I64, wide)),
                          ir.Constant(I64, 0))
    with for_range(b, 0, blocks_end, wide, name="jw") as j0:
        b.call(micro, [a, sa_i, sa_k, b.gep(bmat, [j0]), n, kk, tile])
        _store_tile(kc, k, epi, tile, c, ir.Constant(I64, 0), j0, 1, wide_nv, lanes, n, batch_index)
    return blocks_end


def _store_tile(kc: KernelContext, k: Matmul, epi: ExprEmitter | None, tile, c, i0, j0, rows,
                nv: int, lanes: int, n, batch_index) -> None:
    """Write a finished tile through the epilogue: its code is emitted once per row count,
    and the output (which the epilogue may read, for in-place updates) is only written
    once its element's final value is known."""
    b = kc.b
    with for_range(b, 0, rows, name="r") as r:
        i = b.add(i0, r)
        crow = b.gep(c, [b.mul(i, n)])
        with for_range(b, 0, nv, name="v") as v:
            col = b.add(j0, b.mul(v, ir.Constant(I64, lanes)))
            left = _clamp(b, b.sub(n, col), lanes)
            value = b.load(b.gep(tile, [b.add(b.mul(r, ir.Constant(I64, nv)), v)]))
            ptr = b.gep(crow, [col])
            mask = lane_mask(b, lanes, left) if lanes > 1 else None
            if epi is not None:
                value = epi.emit(k.epilogue, [*batch_index, i, col], lanes, mask, acc=value)
            if lanes > 1:
                store_vector(b, to_memory(b, value), ptr, mask)
            else:
                with b.if_then(b.icmp_signed(">", left, ir.Constant(I64, 0))):
                    b.store(to_memory(b, value), ptr)


def _clamp(b: ir.IRBuilder, x: ir.Value, hi: int) -> ir.Value:
    """``min(max(x, 0), hi)`` for i64 ``x``."""
    zero = ir.Constant(I64, 0)
    x = b.select(b.icmp_signed("<", x, zero), zero, x)
    top = ir.Constant(I64, hi)
    return b.select(b.icmp_signed(">", x, top), top, x)


def _shared(module: ir.Module, name: str, ret: ir.Type, args: list[ir.Type]) -> tuple[ir.Function, bool]:
    """An internal helper function of the module: (function, whether it still needs a body)."""
    fn = module.globals.get(name)
    if fn is not None:
        return fn, False
    fn = ir.Function(module, ir.FunctionType(ret, args), name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    fn.attributes.add("noinline")
    return fn, True


def _micro_function(module: ir.Module, dtype: DType, lanes: int, rows: int, nv: int) -> ir.Function:
    """``tile[r*nv + v] = sum_p A[r*sa_i + p*sa_k] * B[p*bstride + v*W : +W]`` for one micro-tile.

    Signature: ``(T* a, i64 sa_i, i64 sa_k, T* b, i64 bstride, i64 k, <W x T>* tile)``.
    """
    ety = memory_type(dtype)
    vty = value_type(dtype, lanes)
    name = f"dlc.gemm.tile{rows}x{nv * lanes}.{type_suffix(value_type(dtype, 1))}"
    fn, fresh = _shared(module, name, ir.VoidType(),
                        [ety.as_pointer(), I64, I64, ety.as_pointer(), I64, I64, vty.as_pointer()])
    if not fresh:
        return fn
    a, sa_i, sa_k, bsrc, bstride, kk, tile = fn.args
    for arg in (a, bsrc, tile):
        arg.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    e = Emitter(b, lanes, dtype)
    accs = [[alloca(b, vty) for _ in range(nv)] for _ in range(rows)]
    for row in accs:
        for slot in row:
            b.store(const(vty, 0), slot)
    arows = [b.gep(a, [b.mul(ir.Constant(I64, r), sa_i)]) for r in range(rows)]
    with for_range(b, 0, kk, name="k") as p:
        brow = b.gep(bsrc, [b.mul(p, bstride)])
        bvec = [_load_lanes(b, b.gep(brow, [ir.Constant(I64, v * lanes)]), lanes) for v in range(nv)]
        for r in range(rows):
            av = splat(b, b.load(b.gep(arows[r], [b.mul(p, sa_k)])), lanes)
            for v in range(nv):
                b.store(e.fma(av, bvec[v], b.load(accs[r][v])), accs[r][v])
    for r in range(rows):
        for v in range(nv):
            b.store(b.load(accs[r][v]), b.gep(tile, [ir.Constant(I64, r * nv + v)]))
    b.ret_void()
    return fn


def _pack_function(module: ir.Module, dtype: DType, lanes: int, nv: int, transposed: bool) -> ir.Function:
    """Copy ``B[:, j0:j0+width]`` into a zero-padded ``K x NR`` panel.

    Signature: ``(T* b, i64 n, i64 k, i64 j0, i64 width, T* panel)``; ``b`` is
    ``[K, N]`` row-major, or ``[N, K]`` when ``transposed``.
    """
    ety = memory_type(dtype)
    nr = nv * lanes
    name = f"dlc.gemm.pack{'T' if transposed else ''}{nr}.{type_suffix(value_type(dtype, 1))}"
    fn, fresh = _shared(module, name, ir.VoidType(),
                        [ety.as_pointer(), I64, I64, I64, I64, ety.as_pointer()])
    if not fresh:
        return fn
    bmat, n, kk, j0, width, panel = fn.args
    bmat.add_attribute("noalias")
    panel.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    if not transposed:
        with for_range(b, 0, kk, name="pk") as p:
            row = b.gep(bmat, [b.add(b.mul(p, n), j0)])
            dst = b.gep(panel, [b.mul(p, ir.Constant(I64, nr))])
            for v in range(nv):
                left = _clamp(b, b.sub(width, ir.Constant(I64, v * lanes)), lanes)
                src = b.gep(row, [ir.Constant(I64, v * lanes)])
                out = b.gep(dst, [ir.Constant(I64, v * lanes)])
                if lanes == 1:
                    live = b.icmp_signed(">", left, ir.Constant(I64, 0))
                    with b.if_else(live) as (then, otherwise):
                        with then:
                            b.store(b.load(src), out)
                        with otherwise:
                            b.store(const(ety, 0), out)
                else:
                    store_vector(b, load_vector(b, src, lanes, lane_mask(b, lanes, left)), out, None)
    else:
        # B[p, j] = Bt[j, p]: read rows of Bt (contiguous in p), write columns of the panel
        with for_range(b, 0, ir.Constant(I64, nr), name="pj") as jj:
            live = b.icmp_signed("<", jj, width)
            row = b.select(live, b.add(j0, jj), ir.Constant(I64, 0))      # never read past N
            src_row = b.gep(bmat, [b.mul(row, kk)])
            with for_range(b, 0, kk, name="pk") as p:
                dst = b.gep(panel, [b.add(b.mul(p, ir.Constant(I64, nr)), jj)])
                b.store(b.select(live, b.load(b.gep(src_row, [p])), const(ety, 0)), dst)
    b.ret_void()
    return fn


def _load_lanes(b: ir.IRBuilder, ptr: ir.Value, lanes: int) -> ir.Value:
    return b.load(ptr) if lanes == 1 else load_vector(b, ptr, lanes, None)
