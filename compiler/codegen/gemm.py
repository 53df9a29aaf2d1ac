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
* **One row** (batch 1): blocks of 256 columns (16 vectors), then one of 128,
  read each row of B contiguously, one pass over B instead of one per panel;
  a transposed B with whole-vector rows: dot products over its rows in place.
* **Tails**: the M % MR rows after the last full tile run the micro-kernels
  of 8, 4, 2 and 1 rows that the bits of the count select (at most four
  passes over the B panel, five shared variants instead of MR); columns
  beyond N are masked on store (and zero in the packed panel).
* **Epilogue**: the fused elementwise consumer, evaluated on each
  accumulator vector at its (batch.., i, j) position before the store.
* **Batch** axes (numpy broadcasting between A and B) loop outside.
* **Shared code.**  The loop nests of all paths are one driver function per
  module, dtype and B layout (``dlc.gemm.driver.v16f32``); the micro-kernels
  and packing routines are out-of-line functions too.  A matmul kernel is its
  batch loop, a context array (buffer pointers, dims, batch indices) and a
  driver call; the driver passes every finished tile to the kernel's store
  function, which holds the epilogue.  One call per micro-tile (a whole K
  loop of work) costs nothing measurable and keeps compile time close to
  constant in the number of matmuls.

* **Packed, cache-blocked path** (``M >= PACK_MIN_M``): the BLIS loop nest.
  For each ``NC``-column block and ``KC``-deep slice of K, the B block is
  packed into ``NR``-wide panels (contiguous ``kc x NR``); for each
  ``MC``-row block of A, A is packed into ``MR``-row panels (contiguous
  ``kc x MR``); the micro-kernel then reads both sequentially (two aligned
  vector loads and ``MR`` broadcasts per k step) and writes a whole tile that
  needs no epilogue straight from its registers into C (added to C after the
  first K slice); other tiles go through the store function.  With several K slices,
  partial sums go through C (the first slice stores, the next ones add) and
  the epilogue runs once, on the last slice, on the full sum.  A kernel whose
  epilogue reads its own output (an in-place update) is never K-blocked, so it
  never sees a partial sum.  Padding rows of an A panel repeat a real row and
  are never stored; padding columns of a B panel are zero.
* **Narrow products** (N at most one vector): dot products over k when A's rows are
  contiguous (B packed transposed, one shuffle tree per row), C^T tiles transposed in
  registers when A is transposed, else a tall tile broadcasting A over one vector.
* **Shallow products** (K <= ``SHALLOW_K``): the kernel's shallow function computes C
  row group by row group with the epilogue applied from registers (B packed once).
* **Threads**: a kernel context may carry a task ``(t, ntasks)``; the task
  computes its share of C, a whole number of ``NR`` panels of columns when
  ``N >= M`` (each thread packs only its part of the bigger B) or of ``MR``
  rows otherwise, with its own packing buffers.  Every element's sum is
  formed in the same order whatever the split, so results are bit-identical
  across thread counts.

The interface a faster implementation must keep: :func:`emit_matmul`,
:func:`scratch_elements` (workspace one task needs, in elements of the result
dtype, computed from the dims), :func:`task_count` and :func:`max_tasks`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from llvmlite import ir

from ..ir.types import DType
from .blocking import DEFAULT, KC, MAX_MC, MAX_NC, Blocking
from .emitter import Emitter, from_memory, to_memory
from .kernels import ExprEmitter, KernelContext, Space, alloca, lane_mask, load_vector, store_vector
from .library import (
    LibrarySpec,
    driver_name,
    has_shallow_path,
    library_use,
    shallow_name,
    store_name,
    symbol_suffix,
)
from .llvmutil import I1, I8P, I32, I64, const, for_range, intrinsic, memory_type, splat, type_suffix, value_type
from .loops import Load, Matmul, loads
from .sparse_gemm import enable_skip_zeros, skip_zeros_enabled, sparse_function
from .storage import enable_half_instructions
from .target import CodegenOptions
from .threads import split

PACK_MIN_M = 16          # fewer rows: B is read in place (packing would not pay for itself)
PACK_B_MIN_M = 72        # ... and for the dense (not shallow) path, fewer than this: reading B
                         # in place beat packing it by 12-22% at M = 32-64 (784x512, 1600x128,
                         # 512x512; 1 and 2 threads, Zen 5); at M = 80 and up, packing won
# K slice (a kc x NR panel of B stays in L1/L2): fixed on every CPU, it sets the summation
# order.  MC (rows of A packed at once, kc x MC in L2) and NC (columns of B packed at once,
# kc x NC in L3) are chosen per CPU (blocking.py) and read from the module (gemm_blocking);
# the workspace bound (scratch_columns) holds for the largest.
DOT_MAX_N = 12           # narrow products (N <= W) at most this wide, rows of A contiguous and
DOT_MIN_K = 80           # ... at least this deep (or DOT_MIN_K_FEW for at most DOT_FEW_N columns):
DOT_MIN_K_FEW, DOT_FEW_N = 32, 4  # dot products over k (measured crossovers on Zen 4; >= W - 1 for scratch)
DOT_ROWS = 2             # rows per dot micro-kernel (2 x 8 accumulators)
COLUMN_VECTORS = 2       # narrow products with A transposed: C^T tiles of 2 vectors along i
COLUMN_MIN_K = 16        # ... when K is at least this
SHALLOW_K = 64           # K at most this (and M >= PACK_MIN_M): the shallow path, C row by row
SHALLOW_R, SHALLOW_V = 4, 4  # rows and vectors of C per step of the shallow path (in registers)
MR_AVX512 = 8            # micro-tile rows with AVX-512 (12 and 14 measured slower, docs/codegen.md)
MIN_TASK_WORK = 1 << 18  # work per task at least (task_count; fewer: fewer tasks, down to one)
C_COST = 4               # work per element of C besides its K multiply-adds
B_COST = 4               # work per element of B read once from memory (few rows of A: a batch-1
                         # product streams B from L3 at ~8 floats a cycle, 4x its multiply-adds)
TASKS_PER_THREAD = 1     # tasks per thread of a big product (more: a descheduled thread holds less)
BALANCE_MC = True        # the packed path's row blocks of equal size (at most MC)
PREFETCH_C = True        # the packed micro-kernel prefetches its C tile (when it writes C directly)


def tile_shape(lanes: int) -> tuple[int, int]:
    """(MR rows, NV vectors) of the micro-tile for ``lanes``-wide vectors."""
    if lanes >= 16:
        return MR_AVX512, 2  # 2 * MR accumulators + 2 B vectors + broadcasts of 32 zmm
    if lanes >= 8:
        return 6, 2          # 12 of 16 ymm
    return 4, 2


def _narrow_rows(lanes: int) -> int:
    """Rows of the narrow path's one-vector tile: 16 (its tails run 8, 4, 2 and 1 rows)
    with AVX-512, the micro-tile's accumulator count otherwise."""
    mr, nv = tile_shape(lanes)
    return 16 if lanes >= 16 else mr * nv


def panel_width(lanes: int) -> int:
    return tile_shape(lanes)[1] * lanes


def reads_output(k: Matmul) -> bool:
    """Whether the epilogue reads the memory the kernel writes (an in-place update)."""
    return any(ld.buffer.storage is k.out.storage for e in k.epilogues() for ld in loads(e))


def _apply_epilogue(b: ir.IRBuilder, epi: ExprEmitter, k: Matmul, index: list[ir.Value], lanes: int,
                    mask: ir.Value | None, value: ir.Value, live: ir.Value | None = None) -> ir.Value:
    """The epilogue's value at ``index`` from the sum ``value``.  The kernel's extra outputs
    (``Matmul.extra``: an optimizer's moments next to its weights) are computed from the same
    sum first and stored at ``index`` (masked; a scalar only where ``live``), before C is."""
    if not k.extra:
        return epi.emit(k.epilogue, index, lanes, mask, acc=value)
    values = [epi.emit(e, index, lanes, mask, acc=value) for _, e in k.extra]
    done = epi.emit(k.epilogue, index, lanes, mask, acc=value)
    for (buf, _), v in zip(k.extra, values):
        ptr = epi.address(Load(buf, tuple(range(len(index)))), index)
        if lanes > 1:
            store_vector(b, to_memory(b, v, buf.dtype), ptr, mask)
        else:
            with b.if_then(live) if live is not None else contextlib.nullcontext():
                b.store(to_memory(b, v, buf.dtype), ptr)
    return done


def scratch_elements(kc: KernelContext, k: Matmul) -> ir.Value:
    """Elements (of the result dtype) of one task's packing region, from the dims: the
    larger of the small path's ``K x NR`` panel and the packed path's B and A blocks,
    ``kc x min(N, NC)`` and ``kc x min(M, MC)`` with ``kc = min(K, KC)`` (``K`` when the
    kernel may not be K-blocked).  Sized to the product, not to the blocking constants:
    a workspace far bigger than the data is mapped and faulted in again on every call."""
    b = kc.b
    lanes = max(kc.lanes, 1)
    mr, nv = tile_shape(lanes)
    nr = nv * lanes
    m, n, kk = kc.dim(k.m), kc.dim(k.n), kc.dim(k.k)
    mc, nc = gemm_blocking(b.module).mc, gemm_blocking(b.module).nc
    panel = b.mul(kk, ir.Constant(I64, nr))
    depth = kk if reads_output(k) else _min(b, kk, ir.Constant(I64, KC))
    rows = _round_up_value(b, _min(b, m, ir.Constant(I64, mc)), mr)
    blocks = b.mul(depth, b.add(_b_block_columns(b, n, nr, nc), rows))
    out = _max(b, panel, blocks)
    # the shallow path's B block: K x min(N, NC) in panels of WIDE columns
    wide = SHALLOW_V * lanes
    shallow = b.and_(b.icmp_signed(">=", m, ir.Constant(I64, PACK_MIN_M)),
                     b.icmp_signed("<=", kk, ir.Constant(I64, SHALLOW_K)))
    wide_block = b.mul(kk, _min(b, _round_up_value(b, n, wide), ir.Constant(I64, _round_up(nc, wide))))
    return b.select(shallow, _max(b, out, wide_block), out)


def scratch_columns(lanes: int) -> int:
    """An upper bound of ``scratch_elements / K`` for every M and N: the runtime bounds a
    call's workspace with it before native code computes the exact size (for every
    blocking :mod:`blocking` allows, so it needs none)."""
    lanes = max(lanes, 1)
    mr, nv = tile_shape(lanes)
    nr = nv * lanes
    return max(nr, _round_up(MAX_NC, nr) + _round_up(MAX_MC, mr), _round_up(MAX_NC, SHALLOW_V * lanes))


def set_blocking(module: ir.Module, blocking: Blocking) -> None:
    """The MC/NC of the GEMMs of ``module`` (``CodegenOptions.gemm_blocking``; set when the
    module is created: a model's module and its GEMM library must agree)."""
    module.dlc_blocking = blocking


def gemm_blocking(module: ir.Module) -> Blocking:
    return getattr(module, "dlc_blocking", DEFAULT)


def _b_block_columns(b: ir.IRBuilder, n: ir.Value, nr: int, nc: int) -> ir.Value:
    """Columns of a packed B block: ``min(N, NC)`` rounded up to whole panels."""
    return _min(b, _round_up_value(b, n, nr), ir.Constant(I64, _round_up(nc, nr)))


def _round_up_value(b: ir.IRBuilder, x: ir.Value, to: int) -> ir.Value:
    return b.mul(_ceil_div(b, x, to), ir.Constant(I64, to))


def max_tasks(b: ir.IRBuilder, threads: ir.Value) -> ir.Value:
    """The most tasks :func:`task_count` splits a kernel into for ``threads`` threads
    (each task gets its own packing region)."""
    return b.mul(threads, ir.Constant(I64, TASKS_PER_THREAD))


def task_count(kc: KernelContext, k: Matmul, threads: ir.Value) -> ir.Value:
    """How many tasks to split the kernel into: ``threads``, or fewer for small products."""
    b = kc.b
    lanes = max(kc.lanes, 1)
    mr, nv = tile_shape(lanes)
    m, n, kk = kc.dim(k.m), kc.dim(k.n), kc.dim(k.k)
    # multiply-adds, plus C_COST per element of C (writing C and the epilogue's reads are the
    # work of a shallow product: the batch-1 outer product x^T @ dh is 1 multiply-add each),
    # plus B_COST per element of B (reading B is the work of a batch-1 product x @ W: 19 us
    # for the MNIST MLP's 784 x 512 W on one Zen 5 core, 9 us on two)
    per_batch = b.add(b.mul(b.mul(m, n), b.add(kk, ir.Constant(I64, C_COST))),
                      b.mul(b.mul(n, kk), ir.Constant(I64, B_COST)))
    work = b.mul(per_batch, kc.product(k.batch))
    blocks_n = _ceil_div(b, n, nv * lanes)
    blocks_m = _ceil_div(b, m, mr)
    # the small path splits by columns only: fewer than PACK_MIN_M rows, or fewer than
    # PACK_B_MIN_M and too deep for the shallow path
    small = b.or_(b.icmp_signed("<", m, ir.Constant(I64, PACK_MIN_M)),
                  b.and_(b.icmp_signed("<", m, ir.Constant(I64, PACK_B_MIN_M)),
                         b.icmp_signed(">", kk, ir.Constant(I64, SHALLOW_K))))
    blocks = b.select(small, blocks_n, _max(b, blocks_n, blocks_m))
    by_work = b.sdiv(work, ir.Constant(I64, MIN_TASK_WORK))
    out = _min(b, _min(b, max_tasks(b, threads), blocks), by_work)
    return _max(b, out, ir.Constant(I64, 1))


def _round_up(x: int, to: int) -> int:
    return -(-x // to) * to


def _ceil_div(b: ir.IRBuilder, x: ir.Value, d: int) -> ir.Value:
    return b.sdiv(b.add(x, ir.Constant(I64, d - 1)), ir.Constant(I64, d))


def _min(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return b.select(b.icmp_signed("<", x, y), x, y)


def _max(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return b.select(b.icmp_signed(">", x, y), x, y)


ADD_PREVIOUS = 1            # store flags: add C's current contents (an earlier K slice's sum)
EPILOGUE = 2                # ... and apply the epilogue (the sum is final)

TRANSPOSE_BLOCK = 8         # A panels of this many rows are packed from a row-major A by block transposes

TO_TILE = 0                 # packed micro-kernel modes: accumulators into the stack tile,
TO_C = 1                    # ... straight into C (a whole tile needing no epilogue),
ADD_TO_C = 2                # ... added to C (a later K slice of such a tile)


def emit_matmul(kc: KernelContext, k: Matmul) -> None:
    """Code for one :class:`Matmul` kernel into the current function: per batch element,
    one call of the module's shared GEMM driver, which stores finished tiles through
    this kernel's store function (its epilogue)."""
    b = kc.b
    batch_index: list[ir.Value] = []
    store, words = _store_function(kc, k)
    shallow = _shallow_function(kc, k)
    ctx = None
    if words:
        slots = ir.ArrayType(I64, len(words) + len(k.batch))
        ctx = alloca(b, slots)
        for i, w in enumerate(words):
            b.store(w, b.gep(ctx, [ir.Constant(I64, 0), ir.Constant(I64, i)]))

    def over_batch(level: int) -> None:
        if level == len(k.batch):
            _gemm(kc, k, batch_index, store, shallow, ctx, len(words))
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


def _gemm(kc: KernelContext, k: Matmul, batch_index: list[ir.Value], store: ir.Function,
          shallow: ir.Function | None, ctx: ir.Value | None, nwords: int) -> None:
    b = kc.b
    lanes = max(kc.lanes, 1)
    m, n, kk = kc.dim(k.m), kc.dim(k.n), kc.dim(k.k)
    a = b.gep(kc.pointer(k.a), [_batch_offset(kc, k.a, k.a_batch, batch_index)])
    bmat = b.gep(kc.pointer(k.b), [_batch_offset(kc, k.b, k.b_batch, batch_index)])
    c = b.gep(kc.pointer(k.out), [_batch_offset(kc, k.out, range(len(k.batch)), batch_index)])
    one = ir.Constant(I64, 1)
    zero = ir.Constant(I64, 0)
    sa_i, sa_k = (one, m) if k.trans_a else (kk, one)
    t, ntasks = kc.task if kc.task is not None else (zero, one)
    if ctx is None:
        raw_ctx = ir.Constant(I8P, None)
    else:
        for level, i in enumerate(batch_index):
            b.store(i, b.gep(ctx, [ir.Constant(I64, 0), ir.Constant(I64, nwords + level)]))
        raw_ctx = b.bitcast(ctx, I8P)
    driver = _driver_function(b.module, k.dtype, lanes, k.trans_b)
    scratch = b.bitcast(kc.scratch, a.type)
    shallow_ptr = ir.Constant(_shallow_type(k.dtype).as_pointer(), None) if shallow is None else shallow
    b.call(driver, [a, sa_i, sa_k, bmat, c, m, n, kk, scratch, t, ntasks,
                    ir.Constant(I1, int(reads_output(k))), ir.Constant(I1, int(k.epilogue is None)), store,
                    shallow_ptr, raw_ctx])


def _store_type(dtype: DType) -> ir.FunctionType:
    ety = memory_type(dtype)
    return ir.FunctionType(ir.VoidType(), [I8P, I8P, ety.as_pointer(), I64, I64, I64, I64, I64, I64])


def _shallow_type(dtype: DType) -> ir.FunctionType:
    ptr = memory_type(dtype).as_pointer()
    return ir.FunctionType(ir.VoidType(), [I8P, ptr, I64, I64, ptr, I64, ptr, I64, I64, I64, I64, I64])


def _driver_function(module: ir.Module, dtype: DType, lanes: int, trans_b: bool) -> ir.Function:
    """The whole GEMM for one (batch element of a) matmul, shared by every matmul kernel of
    the module with this dtype and B layout: ``C[share of task t] = A @ B`` by the narrow,
    packed or small path, each finished tile handed to ``store(ctx, tile, ...)``.

    Signature: ``(T* a, i64 sa_i, i64 sa_k, T* b, T* c, i64 m, i64 n, i64 k, T* scratch,
    i64 t, i64 ntasks, i1 one_slice, i1 plain, store*, shallow*, i8* ctx)``; ``one_slice``: never split
    K (the store's epilogue reads C, so C may not hold partial sums); ``plain``: the kernel has
    no epilogue (the packed path writes whole tiles straight to C)."""
    ety = memory_type(dtype)
    name = driver_name(dtype, lanes, trans_b) + symbol_suffix(module)
    args = [ety.as_pointer(), I64, I64, ety.as_pointer(), ety.as_pointer(), I64, I64, I64,
            ety.as_pointer(), I64, I64, I1, I1, _store_type(dtype).as_pointer(),
            _shallow_type(dtype).as_pointer(), I8P]
    use = library_use(module)
    if use is not None:            # compiled once per machine, linked in (library.py)
        return use.declare(module, name, ir.FunctionType(ir.VoidType(), args), dtype)
    fn, fresh = _shared(module, name, ir.VoidType(), args)
    if not fresh:
        return fn
    # LLVM's function specializer cloned the driver per constant store/shallow pointer (4
    # copies of ~330 lines in the MNIST module); it skips functions marked noduplicate
    fn.attributes.add("noduplicate")
    a, sa_i, sa_k, bmat, c, m, n, kk, scratch, t, ntasks, one_slice, plain, store, shallow_fn, ctx = fn.args
    for arg in (a, bmat, c, scratch):
        arg.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    mr, nv = tile_shape(lanes)
    nr = nv * lanes
    zero = ir.Constant(I64, 0)
    vty = value_type(dtype, lanes)
    tile = alloca(b, ir.ArrayType(vty, max(mr * nv, _narrow_rows(lanes), _wide_vectors(lanes),
                                           COLUMN_VECTORS * lanes)))
    tile_ptr = b.bitcast(tile, vty.as_pointer())
    g = _Gemm(b, dtype, trans_b, a, sa_i, sa_k, bmat, c, m, n, kk, lanes, tile_ptr, scratch,
              one_slice, plain, store, ctx)
    if not trans_b and lanes >= 4 and dtype in (DType.f32, DType.f64) and skip_zeros_enabled(module):
        # mostly-zero A (image inputs): skip the zeros when the data says so (sparse_gemm.py)
        done = b.call(sparse_function(module, dtype, lanes, _store_type(dtype), EPILOGUE),
                      [a, sa_i, sa_k, bmat, c, m, n, kk, t, ntasks, store, ctx])
        finished, dense = fn.append_basic_block("sparse.done"), fn.append_basic_block("dense")
        b.cbranch(done, finished, dense)
        with b.goto_block(finished):
            b.ret_void()
        b.position_at_end(dense)

    packed = b.icmp_signed(">=", m, ir.Constant(I64, PACK_MIN_M))
    if lanes >= 8:
        # at most one vector of columns (a classifier's 10 outputs): A in place, a tall tile
        narrow = b.icmp_signed("<=", n, ir.Constant(I64, lanes))
        packed = b.and_(packed, b.not_(narrow))
        with b.if_then(narrow):
            rows = _narrow_rows(lanes)
            ilo, ihi = split(b, m, t, ntasks, rows)
            if dtype == DType.f32:
                # rows of A contiguous in k and deep enough: dot products, all lanes busy
                deep = b.or_(b.icmp_signed(">=", kk, ir.Constant(I64, DOT_MIN_K)),
                             b.and_(b.icmp_signed(">=", kk, ir.Constant(I64, DOT_MIN_K_FEW)),
                                    b.icmp_signed("<=", n, ir.Constant(I64, DOT_FEW_N))))
                dot = b.and_(b.and_(b.icmp_signed("==", sa_k, ir.Constant(I64, 1)), deep),
                             b.icmp_signed("<=", n, ir.Constant(I64, DOT_MAX_N)))
                # A transposed (columns of A contiguous, h^T @ g): C^T tiles, vectors over i
                columns = b.and_(b.and_(b.not_(dot), b.icmp_signed("==", sa_i, ir.Constant(I64, 1))),
                                 b.icmp_signed(">=", kk, ir.Constant(I64, COLUMN_MIN_K)))
                with b.if_else(dot) as (then, otherwise):
                    with then:
                        g.dot(ilo, ihi, rows)
                    with otherwise:
                        with b.if_else(columns) as (by_columns, by_rows):
                            with by_columns:
                                cilo, cihi = split(b, m, t, ntasks, COLUMN_VECTORS * lanes)
                                g.columns(cilo, cihi)
                            with by_rows:
                                g.small(ilo, ihi, zero, n, rows, 1)
            else:
                g.small(ilo, ihi, zero, n, rows, 1)
    else:
        narrow = ir.Constant(I1, 0)
    # (at least one whole block of columns: narrower rows are all masked tail, where the
    # packed path measured faster with an in-place epilogue)
    shallow = b.and_(b.and_(packed, b.icmp_signed("<=", kk, ir.Constant(I64, SHALLOW_K))),
                     b.and_(b.icmp_signed(">=", n, ir.Constant(I64, SHALLOW_V * lanes)),
                            b.icmp_unsigned("!=", b.ptrtoint(shallow_fn, I64), ir.Constant(I64, 0))))
    packed = b.and_(b.and_(packed, b.not_(shallow)), b.icmp_signed(">=", m, ir.Constant(I64, PACK_B_MIN_M)))
    with b.if_then(shallow):
        # by rows.  (Split by columns, to match the forward product x @ W's split of W, the
        # tasks of the MNIST CNN's 1600 x 128 Adam update write the two halves of every row
        # of W, m and v -- a cache line shared at each row's split point where a buffer is
        # not 64-byte aligned -- and the CNN's batch-1 step on two threads measured 143-690
        # us against 104-130 by rows; the MLP's step gained nothing.)
        ilo, ihi = split(b, m, t, ntasks, mr)
        g.shallow(ilo, ihi, shallow_fn)
    with b.if_else(packed) as (then, otherwise):
        with then:
            by_cols = b.icmp_signed(">=", n, m)
            jlo, jhi = split(b, n, t, ntasks, nr)
            ilo, ihi = split(b, m, t, ntasks, mr)
            g.packed(b.select(by_cols, zero, ilo), b.select(by_cols, m, ihi),
                     b.select(by_cols, jlo, zero), b.select(by_cols, jhi, n), mr, nv)
        with otherwise:
            with b.if_then(b.not_(b.or_(narrow, shallow))):
                jlo, jhi = split(b, n, t, ntasks, nr)
                g.small(zero, m, jlo, jhi, mr, nv)
    b.ret_void()
    return fn


def _pack_bt_function(module: ir.Module, dtype: DType, lanes: int, transposed: bool) -> ir.Function:
    """``Bt[j, p] = B[p, j]`` for ``j < N <= W``, rows of ``kp`` (``K`` rounded up to whole
    vectors) with zeros past ``K``.

    Signature: ``(T* b, i64 n, i64 k, i64 kp, T* bt)``; ``b`` is ``[K, N]`` row-major (read
    ``W`` rows at a time with masked loads and transposed in registers), or ``[N, K]`` when
    ``transposed`` (copied row by row)."""
    ety = memory_type(dtype)
    name = f"dlc.gemm.packBt{'T' if transposed else ''}.{type_suffix(value_type(dtype, lanes))}"
    fn, fresh = _shared(module, name, ir.VoidType(), [ety.as_pointer(), I64, I64, I64, ety.as_pointer()])
    if not fresh:
        return fn
    bmat, n, kk, kp, bt = fn.args
    bmat.add_attribute("noalias")
    bt.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    zero = ir.Constant(I64, 0)
    if transposed:
        with for_range(b, 0, n, name="j") as j:
            src = b.gep(bmat, [b.mul(j, kk)])
            dst = b.gep(bt, [b.mul(j, kp)])
            with for_range(b, 0, kp, lanes, name="p") as p:
                mask = lane_mask(b, lanes, _clamp(b, b.sub(kk, p), lanes))
                store_vector(b, load_vector(b, b.gep(src, [p]), lanes, mask), b.gep(dst, [p]), None)
    else:
        # Bt's rows are B's columns: B read as the transposed operand of the shared packer
        _pack_transposed(b, lanes, bmat, n, zero, kk, zero, n, bt, kp)
    b.ret_void()
    return fn


def _transpose_function(module: ir.Module, dtype: DType, lanes: int) -> ir.Function:
    """``dst[r][j] = src[j * stride][r]`` for a ``W x W`` block of vectors (``dst`` contiguous).

    Signature: ``(<W x T>* src, i64 stride, <W x T>* dst)``."""
    vty = value_type(dtype, lanes)
    fn, fresh = _shared(module, f"dlc.gemm.transpose.{type_suffix(vty)}", ir.VoidType(),
                        [vty.as_pointer(), I64, vty.as_pointer()])
    if not fresh:
        return fn
    src, stride, dst = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    block = [b.load(b.gep(src, [b.mul(ir.Constant(I64, j), stride)])) for j in range(lanes)]
    for r, vec in enumerate(_transpose_vectors(b, block)):
        b.store(vec, b.gep(dst, [ir.Constant(I64, r)]))
    b.ret_void()
    return fn


def _transpose_vectors(b: ir.IRBuilder, vecs: list[ir.Value]) -> list[ir.Value]:
    """The ``n x n`` transpose of ``n`` vectors of ``n`` lanes (``out[p][r] = vecs[r][p]``)
    by ``n log2 n`` two-vector shuffles."""
    n = len(vecs)
    h = n // 2
    while h:
        nxt = list(vecs)
        for i in range(n):
            if i & h:
                continue
            x, y = vecs[i], vecs[i + h]
            upper = [j if not j & h else n + j - h for j in range(n)]
            lower = [j + h if not j & h else n + j for j in range(n)]
            nxt[i] = b.shuffle_vector(x, y, ir.Constant(ir.VectorType(ir.IntType(32), n), upper))
            nxt[i + h] = b.shuffle_vector(x, y, ir.Constant(ir.VectorType(ir.IntType(32), n), lower))
        vecs = nxt
        h //= 2
    return vecs


def _dot_function(module: ir.Module, dtype: DType, lanes: int, rows: int, cols: int) -> ir.Function:
    """``out[r*ostride + c] = sum_p A_r[p] * bt[c*kp + p]`` for ``rows`` rows and ``cols``
    columns: ``rows x cols`` vector accumulators over ``p`` (the last, partial vector of A
    masked; ``bt``'s padding is zero), then one shuffle tree per row.

    Signature: ``(T* a_0, .., T* a_rows-1, T* bt, i64 k, i64 kp, i64 ostride, T* out)``."""
    ety = memory_type(dtype)
    vty = value_type(dtype, lanes)
    name = f"dlc.gemm.dot{rows}x{cols}.{type_suffix(vty)}"
    fn, fresh = _shared(module, name, ir.VoidType(),
                        [ety.as_pointer()] * rows + [ety.as_pointer(), I64, I64, I64, ety.as_pointer()])
    if not fresh:
        return fn
    args = list(fn.args)
    arows, (bt, kk, kp, ostride, out) = args[:rows], args[rows:]
    for arg in (bt, out):
        arg.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    e = Emitter(b, lanes, dtype)
    accs = [[alloca(b, vty) for _ in range(cols)] for _ in range(rows)]
    for row in accs:
        for slot in row:
            b.store(const(vty, 0), slot)
    bts = [b.gep(bt, [b.mul(ir.Constant(I64, c), kp)]) for c in range(cols)]

    def step(p: ir.Value, mask: ir.Value | None) -> None:
        avs = [load_vector(b, b.gep(arow, [p]), lanes, mask) for arow in arows]
        for c in range(cols):
            bv = load_vector(b, b.gep(bts[c], [p]), lanes, None)
            for r in range(rows):
                b.store(e.fma(avs[r], bv, b.load(accs[r][c])), accs[r][c])

    whole = b.mul(b.sdiv(kk, ir.Constant(I64, lanes)), ir.Constant(I64, lanes))
    with for_range(b, 0, whole, lanes, name="p") as p:
        step(p, None)
    with b.if_then(b.icmp_signed("<", whole, kk)):
        step(whole, lane_mask(b, lanes, b.sub(kk, whole)))
    for r in range(rows):
        sums = _sum_lanes_tree(b, [b.load(slot) for slot in accs[r]], lanes)
        store_vector(b, sums, b.gep(out, [b.mul(ir.Constant(I64, r), ostride)]), None)
    b.ret_void()
    return fn


def _dot_row_function(module: ir.Module, dtype: DType, lanes: int) -> ir.Function:
    """``out[j] = sum_p a[p] * B[p, j]`` for one contiguous row ``a`` and a row-major ``B`` of
    ``n <= W`` columns read in place: :func:`_dot_function`'s sums for one row, in its order.
    Lane ``l`` of its accumulator sums the terms ``p = l (mod W)`` in increasing ``p``; here
    accumulator ``l`` (a vector over the columns) does, one broadcast of ``a[p]`` times one
    masked row of B each, then the same butterfly adds the ``W`` accumulators
    (:func:`_sum_lanes_tree`: lanes ``l`` and ``l + W/2``, then ``l + W/4``, ...).  Past K
    the dot kernel adds ``0 * 0`` (masked A, zero padding): ``+0`` here too (``-0 + +0``).
    So a batch-1 product gives the bits its row gives in a bigger batch (a test checks).

    Signature: ``(T* a, T* b, i64 n, i64 k, T* out)``; ``out`` gets a whole vector."""
    ety = memory_type(dtype)
    vty = value_type(dtype, lanes)
    name = f"dlc.gemm.dotrow.{type_suffix(vty)}"
    fn, fresh = _shared(module, name, ir.VoidType(), [ety.as_pointer(), ety.as_pointer(), I64, I64, ety.as_pointer()])
    if not fresh:
        return fn
    a, bmat, n, kk, out = fn.args
    for arg in (bmat, out):
        arg.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    e = Emitter(b, lanes, dtype)
    columns = lane_mask(b, lanes, n)
    accs = [alloca(b, vty) for _ in range(lanes)]
    for slot in accs:
        b.store(const(vty, 0), slot)

    def term(p: ir.Value, slot: ir.Value) -> None:
        av = splat(b, from_memory(b, b.load(b.gep(a, [p])), dtype), lanes)
        bv = load_vector(b, b.gep(bmat, [b.mul(p, n)]), lanes, columns)
        b.store(e.fma(av, bv, b.load(slot)), slot)

    whole = b.mul(b.sdiv(kk, ir.Constant(I64, lanes)), ir.Constant(I64, lanes))
    with for_range(b, 0, whole, lanes, name="p") as p0:
        for lane, slot in enumerate(accs):
            term(b.add(p0, ir.Constant(I64, lane)), slot)
    with b.if_then(b.icmp_signed("<", whole, kk)):
        for lane, slot in enumerate(accs):
            p = b.add(whole, ir.Constant(I64, lane))
            with b.if_else(b.icmp_signed("<", p, kk)) as (live, past):
                with live:
                    term(p, slot)
                with past:
                    b.store(b.fadd(b.load(slot), const(vty, 0)), slot)
    vecs = [b.load(slot) for slot in accs]
    while len(vecs) > 1:
        half = len(vecs) // 2
        vecs = [b.fadd(vecs[i], vecs[i + half]) for i in range(half)]
    store_vector(b, vecs[0], out, None)
    b.ret_void()
    return fn


def _sum_lanes_tree(b: ir.IRBuilder, vecs: list[ir.Value], lanes: int) -> ir.Value:
    """A vector of ``len(vecs)`` lanes (a power of two, at most ``lanes``): lane ``c`` the sum
    of the lanes of ``vecs[c]``, always added in the same order.  Pairs are merged so that
    a vector holding ``s`` columns keeps column ``l mod s`` in lane ``l``; then halves are
    folded until one lane per column is left."""
    i32v = lambda idx: ir.Constant(ir.VectorType(ir.IntType(32), len(idx)), idx)  # noqa: E731
    s = 1
    while len(vecs) > 1:
        merged = []
        for x, y in zip(vecs[0::2], vecs[1::2]):
            lo, hi = [], []
            half = lanes // (2 * s)
            for lane in range(lanes):
                q, blk = lane % (2 * s), lane // (2 * s)
                base = 0 if q < s else lanes
                col = q if q < s else q - s
                lo.append(base + blk * s + col)
                hi.append(base + (blk + half) * s + col)
            merged.append(b.fadd(b.shuffle_vector(x, y, i32v(lo)), b.shuffle_vector(x, y, i32v(hi))))
        vecs = merged
        s *= 2
    v = vecs[0]
    width = lanes
    while width > s:
        width //= 2
        v = b.fadd(b.shuffle_vector(v, v, i32v(list(range(width)))),
                   b.shuffle_vector(v, v, i32v(list(range(width, 2 * width)))))
    return v


def _tail_rows(mr: int) -> list[int]:
    """Row counts of the micro-kernels that cover a tail of fewer than ``mr`` rows: the
    powers of two below ``mr``, largest first."""
    return [rows for rows in (8, 4, 2, 1) if rows < mr]


def _wide_vectors(lanes: int) -> int:
    """Vectors of the one-row path's column block."""
    return 16 if lanes >= 16 else 8


class _Gemm:
    """One matmul (one batch element) over a share of C: the small and the packed paths,
    emitted into the shared driver function."""

    def __init__(self, b: ir.IRBuilder, dtype: DType, trans_b: bool, a, sa_i, sa_k, bmat, c, m, n, kk,
                 lanes: int, tile, scratch, one_slice, plain, store_fn, ctx):
        self.b, self.dtype, self.trans_b = b, dtype, trans_b
        self.a, self.sa_i, self.sa_k, self.bmat, self.c = a, sa_i, sa_k, bmat, c
        self.m, self.n, self.kk, self.lanes = m, n, kk, lanes
        self.tile, self.scratch, self.one_slice, self.plain = tile, scratch, one_slice, plain
        self.store_fn, self.ctx = store_fn, ctx
        self.mr, self.nv = tile_shape(lanes)
        self.nr = self.nv * lanes

    def store(self, i0, j0, rows, add_prev: ir.Value | None = None, epilogue: bool = True,
              nv: int | None = None) -> None:
        """Hand the finished tile to the kernel's store function."""
        b = self.b
        flags: ir.Value = ir.Constant(I64, EPILOGUE if epilogue else 0)
        if add_prev is not None:
            flags = b.or_(flags, b.zext(add_prev, I64))
        b.call(self.store_fn, [self.ctx, b.bitcast(self.tile, I8P), self.c, self.n, i0, j0, rows,
                               ir.Constant(I64, nv or self.nv), flags])

    def small(self, ilo: ir.Value, ihi: ir.Value, jlo: ir.Value, jhi: ir.Value, mr: int, nv: int) -> None:
        """C[ilo:ihi, jlo:jhi] for few rows or columns: B panels read in place (packed only
        when partial or transposed), A read in place, one ``mr x nv``-vector micro-kernel
        call per tile."""
        b = self.b
        lanes = self.lanes
        nr = nv * lanes
        n, kk = self.n, self.kk
        pack = _pack_function(b.module, self.dtype, lanes, nv, self.trans_b)
        micro = {rows: _micro_function(b.module, self.dtype, lanes, rows, nv) for rows in _tail_rows(mr)}
        micro[mr] = _micro_function(b.module, self.dtype, lanes, mr, nv)
        start = jlo
        if not self.trans_b:
            start = self.single_row(jlo, jhi)
        elif self.dtype == DType.f32 and lanes >= 8:
            start = self.single_row_dot(jlo, jhi)
        with for_range(b, start, jhi, nr, name="j0") as j0:
            width = b.sub(n, j0)
            if self.trans_b:
                direct = ir.Constant(I1, 0)
            else:
                direct = b.icmp_signed(">=", width, ir.Constant(I64, nr))
            with b.if_then(b.not_(direct)):
                b.call(pack, [self.bmat, n, kk, j0, width, self.scratch])
            bsrc = b.select(direct, b.gep(self.bmat, [j0]), self.scratch)
            bstride = b.select(direct, n, ir.Constant(I64, nr))
            tiles = b.add(ilo, b.mul(b.sdiv(b.sub(ihi, ilo), ir.Constant(I64, mr)), ir.Constant(I64, mr)))
            args = [self.sa_i, self.sa_k, bsrc, bstride, kk, self.tile]
            with for_range(b, ilo, tiles, mr, name="i0") as i0:
                b.call(micro[mr], [b.gep(self.a, [b.mul(i0, self.sa_i)]), *args])
                self.store(i0, j0, ir.Constant(I64, mr), nv=nv)
            # The last rows (fewer than mr): micro-kernels of 8, 4, 2, 1 rows as the bits of
            # the count say, filling consecutive rows of the tile (few shared variants).
            left = b.sub(ihi, tiles)
            with b.if_then(b.icmp_signed(">", left, ir.Constant(I64, 0))):
                for rows in _tail_rows(mr):
                    with b.if_then(b.icmp_unsigned("!=", b.and_(left, ir.Constant(I64, rows)),
                                                   ir.Constant(I64, 0))):
                        done = b.and_(left, ir.Constant(I64, -2 * rows))      # rows of larger parts
                        arow = b.gep(self.a, [b.mul(b.add(tiles, done), self.sa_i)])
                        part = b.gep(self.tile, [b.mul(done, ir.Constant(I64, nv))])
                        b.call(micro[rows], [arow, *args[:-1], part])
                self.store(tiles, j0, left, nv=nv)

    def single_row(self, jlo: ir.Value, jhi: ir.Value) -> ir.Value:
        """One row of A (batch 1): blocks of ``WIDE`` columns, each reading B's rows
        contiguously in one pass (the panel loop would stride through B once per NR
        columns).  Returns the first column of ``[jlo, jhi)`` the panel loop still has to
        do (``jlo`` unless M is 1)."""
        b = self.b
        wide_nv = _wide_vectors(self.lanes)
        wide = wide_nv * self.lanes
        micro = _micro_function(b.module, self.dtype, self.lanes, 1, wide_nv)
        span = b.sub(jhi, jlo)
        blocks_end = b.select(b.icmp_signed("==", self.m, ir.Constant(I64, 1)),
                              b.add(jlo, b.mul(b.sdiv(span, ir.Constant(I64, wide)), ir.Constant(I64, wide))),
                              jlo)
        with for_range(b, jlo, blocks_end, wide, name="jw") as j0:
            b.call(micro, [self.a, self.sa_i, self.sa_k, b.gep(self.bmat, [j0]), self.n, self.kk, self.tile])
            self.store(ir.Constant(I64, 0), j0, ir.Constant(I64, 1), nv=wide_nv)
        # then one block of half the width when that much is left (N = 128: the CNN's dense
        # layer at batch 1, which the panel loop read as two strided passes over B)
        half_nv = wide_nv // 2
        half = half_nv * self.lanes
        more = b.and_(b.icmp_signed("==", self.m, ir.Constant(I64, 1)),
                      b.icmp_signed(">=", b.sub(jhi, blocks_end), ir.Constant(I64, half)))
        with b.if_then(more):
            b.call(_micro_function(b.module, self.dtype, self.lanes, 1, half_nv),
                   [self.a, self.sa_i, self.sa_k, b.gep(self.bmat, [blocks_end]), self.n, self.kk, self.tile])
            self.store(ir.Constant(I64, 0), blocks_end, ir.Constant(I64, 1), nv=half_nv)
        return b.select(more, b.add(blocks_end, ir.Constant(I64, half)), blocks_end)

    def single_row_dot(self, jlo: ir.Value, jhi: ir.Value) -> ir.Value:
        """One row of A (batch 1, A contiguous in k) against a transposed B (``[N, K]``) whose
        rows are whole vectors (``K`` a multiple of W): each C element a dot product of A
        with a row of B read in place, vectorised over k (``dlc.gemm.dot1x8``, 8 rows of B
        at a time), W columns per store.  The panel loop would pack all of B first (the
        batch-1 step's ``dz @ W^T`` over the CNN's 1600x128 dense kernel: a full extra read
        and write of it).  Returns the first column of ``[jlo, jhi)`` the panel loop still
        has to do (``jlo`` unless this applies)."""
        b = self.b
        lanes = self.lanes
        kk = self.kk
        one = ir.Constant(I64, 1)
        ok = b.and_(b.and_(b.icmp_signed("==", self.m, one), b.icmp_signed("==", self.sa_k, one)),
                    b.and_(b.icmp_signed(">=", kk, ir.Constant(I64, lanes)),
                           b.icmp_signed("==", b.srem(kk, ir.Constant(I64, lanes)), ir.Constant(I64, 0))))
        span = b.sub(jhi, jlo)
        blocks_end = b.select(ok, b.add(jlo, b.mul(b.sdiv(span, ir.Constant(I64, lanes)), ir.Constant(I64, lanes))),
                              jlo)
        micro = _dot_function(b.module, self.dtype, lanes, 1, 8)
        tile = b.bitcast(self.tile, self.a.type)
        with for_range(b, jlo, blocks_end, lanes, name="jd") as j0:
            for c0 in range(0, lanes, 8):
                rows = b.gep(self.bmat, [b.mul(b.add(j0, ir.Constant(I64, c0)), kk)])
                b.call(micro, [self.a, rows, kk, kk, ir.Constant(I64, lanes), b.gep(tile, [ir.Constant(I64, c0)])])
            self.store(ir.Constant(I64, 0), j0, one, nv=1)
        return blocks_end

    def dot(self, ilo: ir.Value, ihi: ir.Value, block: int) -> None:
        """C[ilo:ihi, :N] for N of at most one vector and rows of A contiguous in k: each
        element a dot product of an A row and a B column, vectorised over k (every lane
        busy, where broadcasting A over one vector of N columns would leave W - N idle).
        B is packed transposed (``Bt[j, p]``, rows of ``round_up(K, W)``, zero-padded); the
        micro-kernels take 2 rows by 8, 4, 2 or 1 columns (the bits of N; 8 at a time up to
        N), reduce each row's vectors across lanes by one shuffle tree and write the sums
        into the tile, which goes to the store function ``block`` rows at a time.  One row
        of A against a row-major B (batch 1) reads B in place instead, in the same order
        (:func:`_dot_row_function`): packing would read and write all of B for K x N
        multiply-adds."""
        b = self.b
        if not self.trans_b:
            with b.if_else(b.icmp_signed("==", self.m, ir.Constant(I64, 1))) as (one_row, rows):
                with one_row:
                    b.call(_dot_row_function(b.module, self.dtype, self.lanes),
                           [self.a, self.bmat, self.n, self.kk, b.bitcast(self.tile, self.a.type)])
                    self.store(ilo, ir.Constant(I64, 0), ir.Constant(I64, 1), nv=1)
                with rows:
                    self._dot_packed(ilo, ihi, block)
        else:
            self._dot_packed(ilo, ihi, block)

    def _dot_packed(self, ilo: ir.Value, ihi: ir.Value, block: int) -> None:
        b = self.b
        lanes = self.lanes
        n, kk = self.n, self.kk
        kp = _round_up_value(b, kk, lanes)
        b.call(_pack_bt_function(b.module, self.dtype, lanes, self.trans_b), [self.bmat, n, kk, kp, self.scratch])
        micro = {cols: _dot_function(b.module, self.dtype, lanes, DOT_ROWS, cols) for cols in (8, 4, 2, 1)}
        eight = b.mul(b.sdiv(n, ir.Constant(I64, 8)), ir.Constant(I64, 8))
        rest = b.sub(n, eight)
        tile = b.bitcast(self.tile, self.a.type)
        last = b.sub(ihi, ir.Constant(I64, 1))
        with for_range(b, ilo, ihi, block, name="i0") as i0:
            rows = _min(b, ir.Constant(I64, block), b.sub(ihi, i0))
            with for_range(b, 0, rows, DOT_ROWS, name="r") as r:
                # a last row past ihi repeats row ihi - 1: computed into the tile, never stored
                arows = []
                for q in range(DOT_ROWS):
                    row = b.add(b.add(i0, r), ir.Constant(I64, q))
                    row = b.select(b.icmp_signed(">", row, last), last, row)
                    arows.append(b.gep(self.a, [b.mul(row, self.sa_i)]))
                out = b.gep(tile, [b.mul(r, ir.Constant(I64, lanes))])
                args = [kk, kp, ir.Constant(I64, lanes)]
                with for_range(b, 0, eight, 8, name="c0") as c0:
                    b.call(micro[8], [*arows, b.gep(self.scratch, [b.mul(c0, kp)]), *args, b.gep(out, [c0])])
                for cols in (4, 2, 1):
                    with b.if_then(b.icmp_signed("!=", b.and_(rest, ir.Constant(I64, cols)), ir.Constant(I64, 0))):
                        c0 = b.add(eight, b.and_(rest, ir.Constant(I64, -2 * cols)))
                        b.call(micro[cols], [*arows, b.gep(self.scratch, [b.mul(c0, kp)]), *args, b.gep(out, [c0])])
            self.store(i0, ir.Constant(I64, 0), rows, nv=1)

    def columns(self, ilo: ir.Value, ihi: ir.Value) -> None:
        """C[ilo:ihi, :N] for N of at most one vector and A's columns contiguous (a transposed
        A: ``h^T @ g``): C^T's tiles, ``N`` rows (chunks of 8, 4, 2, 1: the bits of N) by
        ``COLUMN_VECTORS`` vectors along i, by the small path's micro-kernels with the operands'
        roles swapped (B broadcast, A's rows read as vectors; the last partial block of A
        packed, zero-padded), every lane busy; each ``W x W`` block is transposed in
        registers into C's orientation and handed to the store function."""
        b = self.b
        lanes = self.lanes
        n, kk = self.n, self.kk
        nv = COLUMN_VECTORS
        width = nv * lanes
        vty = value_type(self.dtype, lanes)
        ctile = alloca(b, ir.ArrayType(vty, lanes * nv))
        ctile = b.bitcast(ctile, vty.as_pointer())
        pack = _pack_function(b.module, self.dtype, lanes, nv, False)
        micro = {rows: _micro_function(b.module, self.dtype, lanes, rows, nv) for rows in (8, 4, 2, 1)}
        one = ir.Constant(I64, 1)
        # B^T as the broadcast operand: element (j, p) at j * sj + p * sp
        sj, sp = (kk, one) if self.trans_b else (one, n)
        eight = b.mul(b.sdiv(n, ir.Constant(I64, 8)), ir.Constant(I64, 8))
        rest = b.sub(n, eight)
        for j in range(lanes):                     # rows of C^T past N: zeros, never stored
            for v in range(nv):
                b.store(const(vty, 0), b.gep(ctile, [ir.Constant(I64, j * nv + v)]))
        with for_range(b, ilo, ihi, width, name="i0") as i0:
            left = b.sub(ihi, i0)
            direct = b.icmp_signed(">=", left, ir.Constant(I64, width))
            with b.if_then(b.not_(direct)):
                b.call(pack, [self.a, self.m, kk, i0, left, self.scratch])
            src = b.select(direct, b.gep(self.a, [i0]), self.scratch)
            stride = b.select(direct, self.sa_k, ir.Constant(I64, width))
            with for_range(b, 0, eight, 8, name="c0") as c0:
                b.call(micro[8], [b.gep(self.bmat, [b.mul(c0, sj)]), sj, sp, src, stride, kk,
                                  b.gep(ctile, [b.mul(c0, ir.Constant(I64, nv))])])
            for rows in (4, 2, 1):
                with b.if_then(b.icmp_signed("!=", b.and_(rest, ir.Constant(I64, rows)), ir.Constant(I64, 0))):
                    c0 = b.add(eight, b.and_(rest, ir.Constant(I64, -2 * rows)))
                    b.call(micro[rows], [b.gep(self.bmat, [b.mul(c0, sj)]), sj, sp, src, stride, kk,
                                         b.gep(ctile, [b.mul(c0, ir.Constant(I64, nv))])])
            transpose = _transpose_function(b.module, self.dtype, lanes)
            with for_range(b, 0, ir.Constant(I64, nv), name="v") as v:
                b.call(transpose, [b.gep(ctile, [v]), ir.Constant(I64, nv),
                                   b.gep(self.tile, [b.mul(v, ir.Constant(I64, lanes))])])
            self.store(i0, ir.Constant(I64, 0), _min(b, left, ir.Constant(I64, width)), nv=1)

    def shallow(self, ilo: ir.Value, ihi: ir.Value, fn: ir.Value) -> None:
        """C[ilo:ihi, :] for a shallow K (``K <= SHALLOW_K``): little arithmetic per element of
        C, so C (and what the epilogue reads) should stream.  B's ``K x NC`` block is packed
        once (both layouts) into panels of ``SHALLOW_V`` vectors, then the kernel's shallow
        function computes C row by row, left to right (see :func:`_shallow_function`)."""
        b = self.b
        n, kk = self.n, self.kk
        pack = _pack_b_function(b.module, self.dtype, self.lanes, SHALLOW_V, self.trans_b)
        zero = ir.Constant(I64, 0)
        nc = gemm_blocking(b.module).nc
        with for_range(b, 0, n, nc, name="jc") as jc:
            ncur = _min(b, ir.Constant(I64, nc), b.sub(n, jc))
            b.call(pack, [self.bmat, n, kk, zero, kk, jc, ncur, self.scratch])
            b.call(fn, [self.ctx, self.a, self.sa_i, self.sa_k, self.scratch, kk, self.c, n, ilo, ihi, jc, ncur])

    def packed(self, ilo: ir.Value, ihi: ir.Value, jlo: ir.Value, jhi: ir.Value, mr: int, nv: int) -> None:
        """C[ilo:ihi, jlo:jhi] by the packed, cache-blocked loop nest (module docstring), with
        ``mr x nv`` vector tiles (``mr * nv`` must not exceed the tile buffer)."""
        b = self.b
        lanes = self.lanes
        nr = nv * lanes
        kk = self.kk
        one = ir.Constant(I64, 1)
        slices = _ceil_div(b, kk, KC)
        depth = b.sdiv(b.add(kk, b.sub(slices, one)), slices)        # balanced slices <= KC
        depth = b.select(self.one_slice, kk, _max(b, depth, one))    # one slice: no partial sums in C
        pack_a = _pack_a_function(b.module, self.dtype, mr)
        pack_b = _pack_b_function(b.module, self.dtype, lanes, nv, self.trans_b)
        micro = _packed_micro_function(b.module, self.dtype, lanes, mr, nv)
        mc, nc = gemm_blocking(b.module).mc, gemm_blocking(b.module).nc
        bpack = self.scratch
        apack = b.gep(self.scratch, [b.mul(depth, _b_block_columns(b, self.n, nr, nc))])
        if BALANCE_MC:
            # rows in blocks of equal size (whole tiles) of at most MC: M = 512 with MC = 160 is 4
            # blocks of 128, not 160, 160, 160 and 32 (a last block that re-reads every B panel
            # for a few tiles).  The block size never changes a sum (it only orders the tiles).
            span = b.sub(ihi, ilo)
            blocks = _max(b, _ceil_div(b, span, mc), one)
            mcb = _max(b, _round_up_value(b, b.sdiv(b.add(span, b.sub(blocks, one)), blocks), mr), one)
        else:
            mcb = ir.Constant(I64, mc)
        with for_range(b, jlo, jhi, nc, name="jc") as jc:
            ncur = _min(b, ir.Constant(I64, nc), b.sub(jhi, jc))
            with for_range(b, 0, kk, depth, name="pc") as pc:
                kcur = _min(b, depth, b.sub(kk, pc))
                first = b.icmp_signed("==", pc, ir.Constant(I64, 0))
                last = b.icmp_signed(">=", b.add(pc, kcur), kk)
                b.call(pack_b, [self.bmat, self.n, kk, pc, kcur, jc, ncur, bpack])
                with for_range(b, ilo, ihi, mcb, name="ic") as ic:
                    mcur = _min(b, mcb, b.sub(ihi, ic))
                    b.call(pack_a, [self.a, self.sa_i, self.sa_k, ic, mcur, pc, kcur, apack])

                    with for_range(b, 0, ncur, nr, name="jr") as jr:
                        bpanel = b.gep(bpack, [b.mul(jr, kcur)])
                        j0 = b.add(jc, jr)
                        full_cols = b.icmp_signed("<=", b.add(j0, ir.Constant(I64, nr)), self.n)
                        with for_range(b, 0, mcur, mr, name="ir") as ir_:
                            rows = _min(b, ir.Constant(I64, mr), b.sub(mcur, ir_))
                            i0 = b.add(ic, ir_)
                            # a whole tile that needs no epilogue (a plain kernel, or not the
                            # last slice) goes straight from the registers to C
                            full = b.and_(full_cols, b.icmp_signed("==", rows, ir.Constant(I64, mr)))
                            direct = b.and_(full, b.or_(self.plain, b.not_(last)))
                            mode = b.select(direct, b.select(first, ir.Constant(I64, TO_C), ir.Constant(I64, ADD_TO_C)),
                                            ir.Constant(I64, TO_TILE))
                            cptr = b.gep(self.c, [b.add(b.mul(i0, self.n), j0)])
                            b.call(micro, [b.gep(apack, [b.mul(ir_, kcur)]), bpanel, kcur, self.tile,
                                           cptr, self.n, mode])
                            with b.if_then(b.not_(direct)):
                                # the epilogue on the last slice only; every slice but the
                                # first adds what the earlier ones left in C
                                flags = b.or_(b.zext(b.not_(first), I64),
                                              b.select(last, ir.Constant(I64, EPILOGUE), ir.Constant(I64, 0)))
                                b.call(self.store_fn, [self.ctx, b.bitcast(self.tile, I8P), self.c, self.n,
                                                       i0, j0, rows, ir.Constant(I64, nv), flags])


def _store_function(kc: KernelContext, k: Matmul) -> tuple[ir.Function, list[ir.Value]]:
    """The function storing a finished tile of ``k`` (through its epilogue), and the words
    (buffer pointers, dim values) its context array holds before the batch indices.

    Without an epilogue the store is one shared function per dtype and width (no context).
    Signature: ``(i8* ctx, i8* tile, T* c, i64 n, i64 i0, i64 j0, i64 rows, i64 nv,
    i64 flags)``; the tile holds ``rows x nv`` vectors, row-major; ``flags``:
    ``ADD_PREVIOUS | EPILOGUE``."""
    b = kc.b
    lanes = max(kc.lanes, 1)
    if k.epilogue is None:
        return _plain_store_function(b.module, k.dtype, lanes), []
    name = f"{b.function.name}.store"
    fn, fresh = _shared(b.module, name, ir.VoidType(), _store_type(k.dtype).args)
    buffers = list(kc.storage.items())
    symbols = list(kc.symbols.items())
    if fresh:
        _store_body(fn, k.dtype, k, (buffers, symbols), lanes)
    words = [b.ptrtoint(v, I64) for _, v in buffers] + [v if v.type == I64 else b.sext(v, I64)
                                                         for _, v in symbols]
    return fn, words


def _plain_store_function(module: ir.Module, dtype: DType, lanes: int) -> ir.Function:
    """The store function of kernels without an epilogue, ``dlc.gemm.store.<W x T>``."""
    return _model_independent(module, store_name(dtype, lanes), _store_type(dtype), dtype,
                              lambda fn: _store_body(fn, dtype, None, None, lanes))


def _model_independent(module: ir.Module, name: str, fnty: ir.FunctionType, dtype: DType,
                       body: Callable[[ir.Function], None]) -> ir.Function:
    """A GEMM function that is the same for every model (a plain store or shallow function):
    with the GEMM library (``library.py``) one of its exports, declared here like the
    drivers; else defined in the module by ``body``, once."""
    name += symbol_suffix(module)
    use = library_use(module)
    if use is not None:
        return use.declare(module, name, fnty, dtype)
    fn, fresh = _shared(module, name, fnty.return_type, fnty.args)
    if fresh:
        body(fn)
    return fn


def _store_body(fn: ir.Function, dtype: DType, k: Matmul | None, context, lanes: int) -> None:
    """Body of a store function: for each row and vector of the tile, C's previous
    contents added (``ADD_PREVIOUS``), the epilogue applied (``EPILOGUE``), stored masked
    to the columns below N.  ``k``: the kernel and ``context`` its (buffers, symbols), in
    the order of its context words; both None for the plain store (no epilogue).

    A kernel's store function holds one copy of its epilogue.  Tiles that are not final
    (no ``EPILOGUE``: a K slice's partial sum) go to the module's plain store function;
    a final tile with ``ADD_PREVIOUS`` gets C's contents added into the tile first, then
    the one loop applies the epilogue.  (With both flags tested inside the loop, LLVM's
    loop unswitching made four copies of the epilogue, and the store functions were
    ~45% of the optimization time of the MNIST training step.)"""
    ctx, tile_raw, c, n, i0, j0, rows, nv, flags = fn.args
    c.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    vty = value_type(dtype, lanes)
    tile = b.bitcast(tile_raw, vty.as_pointer())
    add_prev = b.icmp_unsigned("!=", b.and_(flags, ir.Constant(I64, ADD_PREVIOUS)), ir.Constant(I64, 0))
    # An epilogue reading C (W -= lr * g in place) loads a row right after the previous row's
    # masked store: when rows are narrower than a vector the two overlap (a 40-byte row of 10
    # floats) and the load waits for the store to retire (~30 cycles a row on Zen 4).  Such
    # kernels compute the whole tile first (into the tile) and store it after, when N < W.
    two_pass = lanes > 1 and k is not None and reads_output(k)
    epi = batch_index = None
    if k is not None:
        apply = b.icmp_unsigned("!=", b.and_(flags, ir.Constant(I64, EPILOGUE)), ir.Constant(I64, 0))
        with b.if_then(b.not_(apply), likely=False):
            b.call(_plain_store_function(b.module, dtype, lanes), list(fn.args))
            b.ret_void()
        with b.if_then(add_prev):
            _add_previous_into_tile(b, dtype, tile, c, n, i0, j0, rows, nv, lanes)
        add_prev = None
        epi, batch_index = _epilogue_emitter(b, k, ctx, context, lanes)

    def nest(later: bool) -> None:
        """The loop over the tile; ``later``: results back into the tile, stored after."""
        with for_range(b, 0, rows, name="r") as r:
            i = b.add(i0, r)
            crow = b.gep(c, [b.mul(i, n)])
            with for_range(b, 0, nv, name="v") as v:
                col = b.add(j0, b.mul(v, ir.Constant(I64, lanes)))
                left = _clamp(b, b.sub(n, col), lanes)
                value = b.load(b.gep(tile, [b.add(b.mul(r, nv), v)]))
                ptr = b.gep(crow, [col])
                mask = lane_mask(b, lanes, left) if lanes > 1 else None
                if add_prev is not None:
                    value = _add_previous(b, dtype, value, ptr, mask, left, lanes, add_prev)
                if epi is not None:
                    live = b.icmp_signed(">", left, ir.Constant(I64, 0))
                    value = _apply_epilogue(b, epi, k, [*batch_index, i, col], lanes, mask, value, live)
                if later:
                    b.store(value, b.gep(tile, [b.add(b.mul(r, nv), v)]))
                elif lanes > 1:
                    store_vector(b, to_memory(b, value), ptr, mask)
                else:
                    with b.if_then(b.icmp_signed(">", left, ir.Constant(I64, 0))):
                        b.store(to_memory(b, value), ptr)
        if later:
            with for_range(b, 0, rows, name="r") as r:
                crow = b.gep(c, [b.mul(b.add(i0, r), n)])
                with for_range(b, 0, nv, name="v") as v:
                    col = b.add(j0, b.mul(v, ir.Constant(I64, lanes)))
                    mask = lane_mask(b, lanes, _clamp(b, b.sub(n, col), lanes))
                    store_vector(b, to_memory(b, b.load(b.gep(tile, [b.add(b.mul(r, nv), v)]))),
                                 b.gep(crow, [col]), mask)

    if two_pass:
        # chosen once per call: a branch per vector cost ~1 cycle each (784x1x40: 7.2 -> 8.1 us)
        narrow = b.icmp_signed("<", n, ir.Constant(I64, lanes))
        with b.if_else(narrow) as (then, otherwise):
            with then:
                nest(True)
            with otherwise:
                nest(False)
    else:
        nest(False)
    b.ret_void()


def _add_previous_into_tile(b: ir.IRBuilder, dtype: DType, tile, c, n, i0, j0, rows, nv, lanes: int) -> None:
    """``tile += C`` over the tile's rows and vectors (C read masked to the columns below N):
    the sum of all K slices, before a final tile's epilogue."""
    with for_range(b, 0, rows, name="r") as r:
        crow = b.gep(c, [b.mul(b.add(i0, r), n)])
        with for_range(b, 0, nv, name="v") as v:
            col = b.add(j0, b.mul(v, ir.Constant(I64, lanes)))
            left = _clamp(b, b.sub(n, col), lanes)
            slot = b.gep(tile, [b.add(b.mul(r, nv), v)])
            mask = lane_mask(b, lanes, left) if lanes > 1 else None
            b.store(_add_previous(b, dtype, b.load(slot), b.gep(crow, [col]), mask, left, lanes,
                                  ir.Constant(ir.IntType(1), 1)), slot)


def _epilogue_emitter(b: ir.IRBuilder, k: Matmul, ctx: ir.Value, context, lanes: int):
    """The epilogue's expression emitter inside a store or shallow function, from the
    kernel's context array (buffer pointers, dims, batch indices); and the batch indices."""
    buffers, symbols = context
    words = b.bitcast(ctx, I64.as_pointer())
    loaded = [b.load(b.gep(words, [ir.Constant(I64, i)]))
              for i in range(len(buffers) + len(symbols) + len(k.batch))]
    storage = {buf: b.inttoptr(w, v.type) for (buf, v), w in zip(buffers, loaded)}
    dims = {s: (w if v.type == I64 else b.trunc(w, v.type))
            for (s, v), w in zip(symbols, loaded[len(buffers):])}
    ekc = KernelContext(b, storage, dims, lanes)
    epi = ExprEmitter(ekc, Space.plain(tuple(k.out.shape)), len(k.out.shape) - 1)
    return epi, loaded[len(buffers) + len(symbols):]


def _shallow_function(kc: KernelContext, k: Matmul) -> ir.Function | None:
    """The kernel's function for a shallow K, or None where that path cannot be taken (a
    static K over ``SHALLOW_K``, fewer than 4 lanes, a product narrow enough for the
    narrow path).  Like the store function it holds the epilogue; kernels without one
    share ``dlc.gemm.shallow.<W x T>``.

    Signature: ``(i8* ctx, T* a, i64 sa_i, i64 sa_k, T* bp, i64 k, T* c, i64 n, i64 i0,
    i64 i1, i64 j0, i64 ncur)``: rows ``[i0, i1)`` and columns ``[j0, j0 + ncur)`` of C from
    A in place and ``bp``, B's columns ``[j0, j0 + ncur)`` packed into zero-padded panels of
    ``V = SHALLOW_V`` vectors (``bp[q*V*W*k + p*V*W + j]``).  Each row walks its columns
    left to right, ``V`` vectors at a time: the ``V`` sums accumulate in registers over
    ``p``, in order, then go through the epilogue straight to C -- no tile in memory, no
    call per tile.  Each element's sum is formed in the same order whatever the rows'
    split into tasks."""
    b = kc.b
    lanes = max(kc.lanes, 1)
    if (not has_shallow_path(lanes) or (isinstance(k.k, int) and k.k > SHALLOW_K)
            or (isinstance(k.n, int) and k.n <= lanes)):
        return None
    if k.epilogue is None:
        return _plain_shallow_function(b.module, k.dtype, lanes)
    fn, fresh = _shared(b.module, f"{b.function.name}.shallow", ir.VoidType(), _shallow_type(k.dtype).args)
    if fresh:
        _shallow_body(fn, k.dtype, k, (list(kc.storage.items()), list(kc.symbols.items())), lanes)
    return fn


def _plain_shallow_function(module: ir.Module, dtype: DType, lanes: int) -> ir.Function:
    """The shallow function of kernels without an epilogue, ``dlc.gemm.shallow.<W x T>``."""
    return _model_independent(module, shallow_name(dtype, lanes), _shallow_type(dtype), dtype,
                              lambda fn: _shallow_body(fn, dtype, None, None, lanes))


def _shallow_body(fn: ir.Function, dtype: DType, k: Matmul | None, context, lanes: int) -> None:
    """The body of a shallow function (:func:`_shallow_function`): with kernel ``k``'s
    epilogue (``context``: its buffers and dims), or plain sums where ``k`` is None."""
    ctx, a, sa_i, sa_k, bp, kk, c, n, i0, i1, j0, ncur = fn.args
    for arg in (a, bp, c):
        arg.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    vty = value_type(dtype, lanes)
    e = Emitter(b, lanes, dtype)
    epi = batch_index = None
    if k is not None:
        epi, batch_index = _epilogue_emitter(b, k, ctx, context, lanes)
    nr, nv = SHALLOW_R, SHALLOW_V
    step = nv * lanes
    one = ir.Constant(I64, 1)
    accs = [[alloca(b, vty) for _ in range(nv)] for _ in range(nr)]
    tile = b.bitcast(alloca(b, ir.ArrayType(vty, nr * nv)), vty.as_pointer())
    last = b.sub(i1, one)
    with for_range(b, i0, i1, nr, name="i") as i:
        # rows past i1 repeat the last row: computed, never stored
        rows = [b.select(b.icmp_signed(">", b.add(i, ir.Constant(I64, r)), last), last,
                         b.add(i, ir.Constant(I64, r))) for r in range(nr)]
        arows = [b.gep(a, [b.mul(row, sa_i)]) for row in rows]
        with for_range(b, 0, ncur, step, name="jw") as jw:
            panel = b.gep(bp, [b.mul(jw, kk)])
            for row in accs:
                for slot in row:
                    b.store(const(vty, 0), slot)
            with for_range(b, 0, kk, name="p") as p:
                brow = b.gep(panel, [b.mul(p, ir.Constant(I64, step))])
                bvec = [from_memory(b, load_vector(b, b.gep(brow, [ir.Constant(I64, v * lanes)]), lanes, None),
                                    dtype) for v in range(nv)]
                for r in range(nr):
                    av = splat(b, from_memory(b, b.load(b.gep(arows[r], [b.mul(p, sa_k)])), dtype), lanes)
                    for v in range(nv):
                        b.store(e.fma(av, bvec[v], b.load(accs[r][v])), accs[r][v])
            # through the epilogue to C: whole vectors unmasked (the usual case), the last block
            # of columns masked; rows past i1 skipped.  Plain sums are stored unrolled from the
            # registers; an epilogue goes through a stack tile and a loop over the rows, one copy
            # per vector of a row (R x V copies made this function the largest of the MNIST
            # step's: compile time), and one masked copy in a loop for the last block
            full = b.icmp_signed("<=", b.add(jw, ir.Constant(I64, step)), ncur)
            count = _min(b, ir.Constant(I64, nr), b.sub(i1, i))
            if epi is not None:
                _spill(b, accs, tile)
            with b.if_else(full) as (whole, part):
                with whole:
                    if epi is None:
                        for r in range(nr):
                            live = b.icmp_signed("<", b.add(i, ir.Constant(I64, r)), i1)
                            with b.if_then(live) if r else _nothing():
                                crow = b.gep(c, [b.mul(rows[r], n)])
                                for v in range(nv):
                                    col = b.add(j0, b.add(jw, ir.Constant(I64, v * lanes)))
                                    store_vector(b, to_memory(b, b.load(accs[r][v])), b.gep(crow, [col]), None)
                    else:
                        with for_range(b, 0, count, name="r") as r:
                            row = b.add(i, r)
                            crow = b.gep(c, [b.mul(row, n)])
                            for v in range(nv):
                                col = b.add(j0, b.add(jw, ir.Constant(I64, v * lanes)))
                                value = b.load(b.gep(tile, [b.add(b.mul(r, ir.Constant(I64, nv)),
                                                                  ir.Constant(I64, v))]))
                                value = _apply_epilogue(b, epi, k, [*batch_index, row, col], lanes, None, value)
                                store_vector(b, to_memory(b, value), b.gep(crow, [col]), None)
                with part:
                    if epi is None:
                        _spill(b, accs, tile)
                    vectors = _ceil_div(b, b.sub(ncur, jw), lanes)
                    with for_range(b, 0, count, name="r") as r, for_range(b, 0, vectors, name="v") as v:
                        row = b.add(i, r)
                        off = b.add(jw, b.mul(v, ir.Constant(I64, lanes)))
                        col = b.add(j0, off)
                        mask = lane_mask(b, lanes, _clamp(b, b.sub(ncur, off), lanes))
                        value = b.load(b.gep(tile, [b.add(b.mul(r, ir.Constant(I64, nv)), v)]))
                        if epi is not None:
                            value = _apply_epilogue(b, epi, k, [*batch_index, row, col], lanes, mask, value)
                        store_vector(b, to_memory(b, value), b.gep(c, [b.add(b.mul(row, n), col)]), mask)
    b.ret_void()


def _spill(b: ir.IRBuilder, accs: list[list[ir.Value]], tile: ir.Value) -> None:
    """The shallow path's R x V sums, row by row, into the stack tile."""
    for r, row in enumerate(accs):
        for v, slot in enumerate(row):
            b.store(b.load(slot), b.gep(tile, [ir.Constant(I64, r * len(row) + v)]))


@contextlib.contextmanager
def _nothing():
    yield


def _add_previous(b: ir.IRBuilder, dtype: DType, value, ptr, mask, left, lanes: int, add_prev) -> ir.Value:
    """``value + C`` when ``add_prev`` holds (C read only then), else ``value``."""
    if lanes == 1:                      # a column past N is neither read nor written
        add_prev = b.and_(add_prev, b.icmp_signed(">", left, ir.Constant(I64, 0)))
    pre = b.block
    with b.if_then(add_prev):
        old = load_vector(b, ptr, lanes, mask) if lanes > 1 else b.load(ptr)
        summed = Emitter(b, lanes, dtype).add(value, from_memory(b, old, dtype))
        body = b.block
    merged = b.phi(value.type)
    merged.add_incoming(value, pre)
    merged.add_incoming(summed, body)
    return merged


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
    elif lanes >= 8:
        _pack_transposed(b, lanes, bmat, kk, j0, width, ir.Constant(I64, 0), kk, panel, nr)
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


def _packed_micro_function(module: ir.Module, dtype: DType, lanes: int, rows: int, nv: int) -> ir.Function:
    """``tile[r*nv + v] = sum_p ap[p*MR + r] * bp[p*NR + v*W : +W]`` over packed panels.

    Signature: ``(T* ap, T* bp, i64 k, <W x T>* tile)``; both panels are contiguous and
    64-byte aligned, so each k step is ``nv`` aligned vector loads and ``rows`` broadcasts.
    """
    ety = memory_type(dtype)
    vty = value_type(dtype, lanes)
    nr = nv * lanes
    name = f"dlc.gemm.packed{rows}x{nr}.{type_suffix(value_type(dtype, 1))}"
    fn, fresh = _shared(module, name, ir.VoidType(), [ety.as_pointer(), ety.as_pointer(), I64, vty.as_pointer(),
                                                      ety.as_pointer(), I64, I64])
    if not fresh:
        return fn
    ap, bp, kk, tile, c, ldc, mode = fn.args
    for arg in (ap, bp, tile, c):
        arg.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    e = Emitter(b, lanes, dtype)
    accs = [[alloca(b, vty) for _ in range(nv)] for _ in range(rows)]
    for row in accs:
        for slot in row:
            b.store(const(vty, 0), slot)
    align = 64 if lanes * dtype.itemsize >= 64 else dtype.itemsize
    if PREFETCH_C and lanes > 1:
        _prefetch_tile(b, c, ldc, rows, nr * dtype.itemsize, b.icmp_signed("!=", mode, ir.Constant(I64, TO_TILE)))
    with for_range(b, 0, kk, name="k") as p:
        brow = b.gep(bp, [b.mul(p, ir.Constant(I64, nr))])
        arow = b.gep(ap, [b.mul(p, ir.Constant(I64, rows))])
        if lanes == 1:
            bvec = [b.load(b.gep(brow, [ir.Constant(I64, v)])) for v in range(nv)]
        else:
            bvec = [b.load(b.bitcast(b.gep(brow, [ir.Constant(I64, v * lanes)]), vty.as_pointer()),
                           align=align) for v in range(nv)]
        for r in range(rows):
            av = splat(b, b.load(b.gep(arow, [ir.Constant(I64, r)])), lanes)
            for v in range(nv):
                b.store(e.fma(av, bvec[v], b.load(accs[r][v])), accs[r][v])
    _write_accumulators(b, e, accs, tile, c, ldc, mode, lanes)
    b.ret_void()
    return fn


def _prefetch_tile(b: ir.IRBuilder, c: ir.Value, ldc: ir.Value, rows: int, row_bytes: int, when: ir.Value) -> None:
    """Ask for the cache lines of C's ``rows x row_bytes`` block at ``c`` (row stride ``ldc``
    elements), for writing, when ``when`` holds: the micro-kernel's K loop (hundreds of
    cycles) hides their latency, so the stores (and, on a later K slice, the loads of the
    earlier slices' sums) at its end hit the cache."""
    fetch = intrinsic(b.module, "llvm.prefetch.p0", ir.VoidType(), [I8P, I32, I32, I32])
    with b.if_then(when):
        for r in range(rows):
            raw = b.bitcast(b.gep(c, [b.mul(ir.Constant(I64, r), ldc)]), I8P)
            for line in range(0, row_bytes, 64):    # write, keep in all levels, data
                b.call(fetch, [b.gep(raw, [ir.Constant(I64, line)]), ir.Constant(I32, 1), ir.Constant(I32, 3),
                               ir.Constant(I32, 1)])


def _write_accumulators(b: ir.IRBuilder, e: Emitter, accs, tile, c, ldc, mode, lanes: int) -> None:
    """The packed micro-kernel's result: into the stack tile (``TO_TILE``, for the store
    function), or straight into C's ``rows x NR`` block at ``c`` (row stride ``ldc``),
    replacing (``TO_C``) or adding to (``ADD_TO_C``) what an earlier K slice left there."""
    nv = len(accs[0])
    values = [[b.load(slot) for slot in row] for row in accs]
    with b.if_else(b.icmp_signed("==", mode, ir.Constant(I64, TO_TILE))) as (to_tile, to_c):
        with to_tile:
            for r, row in enumerate(values):
                for v, value in enumerate(row):
                    b.store(value, b.gep(tile, [ir.Constant(I64, r * nv + v)]))
        with to_c:
            add = b.icmp_signed("==", mode, ir.Constant(I64, ADD_TO_C))
            with b.if_else(add) as (adding, replacing):
                for block, summed in ((adding, True), (replacing, False)):
                    with block:
                        _write_to_c(b, e, values, c, ldc, lanes, summed)


def _write_to_c(b: ir.IRBuilder, e: Emitter, values, c, ldc, lanes: int, add: bool) -> None:
    """Store the accumulator rows at ``c`` (row stride ``ldc``), plus C's contents if ``add``."""
    for r, row in enumerate(values):
        crow = b.gep(c, [b.mul(ir.Constant(I64, r), ldc)])
        for v, value in enumerate(row):
            ptr = b.gep(crow, [ir.Constant(I64, v * lanes)])
            if add:
                value = e.add(value, from_memory(b, _load_lanes(b, ptr, lanes), e.dtype))
            value = to_memory(b, value)
            if lanes == 1:
                b.store(value, ptr)
            else:
                store_vector(b, value, ptr, None)


def _pack_a_function(module: ir.Module, dtype: DType, mr: int) -> ir.Function:
    """Pack ``A[i0:i0+mc, p0:p0+kc]`` into ``MR``-row panels, ``ap[ip*kc + p*MR + r]``.

    Signature: ``(T* a, i64 sa_i, i64 sa_k, i64 i0, i64 mc, i64 p0, i64 kc, T* ap)``
    (strides make both layouts one routine).  Rows past ``mc`` repeat row ``mc - 1``:
    real numbers whose results are never stored.
    """
    ety = memory_type(dtype)
    name = f"dlc.gemm.packA{mr}.{type_suffix(value_type(dtype, 1))}"
    fn, fresh = _shared(module, name, ir.VoidType(), [ety.as_pointer(), I64, I64, I64, I64, I64, I64,
                                                      ety.as_pointer()])
    if not fresh:
        return fn
    a, sa_i, sa_k, i0, mc, p0, kc, ap = fn.args
    a.add_attribute("noalias")
    ap.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    last = b.sub(mc, ir.Constant(I64, 1))
    with for_range(b, 0, mc, mr, name="ip") as ip:
        dst = b.gep(ap, [b.mul(ip, kc)])
        srcs = []
        for r in range(mr):
            row = b.add(ip, ir.Constant(I64, r))
            row = b.select(b.icmp_signed(">", row, last), last, row)
            srcs.append(b.gep(a, [b.add(b.mul(b.add(i0, row), sa_i), b.mul(p0, sa_k))]))
        whole = b.icmp_signed("<=", b.add(ip, ir.Constant(I64, mr)), mc)
        unit = ir.Constant(I64, 1)
        columns = b.and_(whole, b.icmp_signed("==", sa_i, unit))
        blocks = ir.Constant(I64, 0)
        if mr == TRANSPOSE_BLOCK:
            rowwise = b.and_(whole, b.icmp_signed("==", sa_k, unit))
            blocks = b.select(rowwise, b.mul(b.sdiv(kc, ir.Constant(I64, mr)), ir.Constant(I64, mr)), blocks)
        with b.if_else(columns) as (then, otherwise):
            with then:
                # A transposed (x^T @ dz): the panel's rows are consecutive in memory
                with for_range(b, 0, kc, name="pv") as p:
                    out = b.gep(dst, [b.mul(p, ir.Constant(I64, mr))])
                    store_vector(b, load_vector(b, b.gep(srcs[0], [b.mul(p, sa_k)]), mr, None), out, None)
            with otherwise:
                if mr == TRANSPOSE_BLOCK:
                    with for_range(b, 0, blocks, mr, name="pt") as p:
                        _transpose_block(b, [b.gep(src, [p]) for src in srcs],
                                         b.gep(dst, [b.mul(p, ir.Constant(I64, mr))]))
                with for_range(b, blocks, kc, name="p") as p:
                    off = b.mul(p, sa_k)
                    out = b.gep(dst, [b.mul(p, ir.Constant(I64, mr))])
                    for r in range(mr):
                        b.store(b.load(b.gep(srcs[r], [off])), b.gep(out, [ir.Constant(I64, r)]))
    b.ret_void()
    return fn


def _transpose_block(b: ir.IRBuilder, rows: list[ir.Value], out: ir.Value) -> None:
    """Copy the ``n x n`` block whose row ``r`` starts at ``rows[r]`` into ``out`` transposed
    (``out[p*n + r] = rows[r][p]``): ``n`` vector loads, ``n log2 n`` two-vector shuffles
    (each stage swaps the off-diagonal ``h x h`` sub-blocks of every ``2h x 2h`` block),
    ``n`` vector stores, instead of ``n^2`` scalar loads and stores."""
    n = len(rows)
    vecs = _transpose_vectors(b, [load_vector(b, row, n, None) for row in rows])
    for p, vec in enumerate(vecs):
        store_vector(b, vec, b.gep(out, [ir.Constant(I64, p * n)]), None)


def _pack_b_function(module: ir.Module, dtype: DType, lanes: int, nv: int, transposed: bool) -> ir.Function:
    """Pack ``B[p0:p0+kc, j0:j0+nc]`` into ``NR``-column panels, ``bp[jp*kc + p*NR + j]``.

    Signature: ``(T* b, i64 n, i64 k, i64 p0, i64 kc, i64 j0, i64 nc, T* bp)``; ``b`` is
    ``[K, N]`` row-major, or ``[N, K]`` when ``transposed``.  Columns past ``nc`` are zero
    (row-major, masked loads) or repeat column ``nc - 1`` (transposed); never stored.
    """
    ety = memory_type(dtype)
    nr = nv * lanes
    name = f"dlc.gemm.packB{'T' if transposed else ''}{nr}.{type_suffix(value_type(dtype, 1))}"
    fn, fresh = _shared(module, name, ir.VoidType(), [ety.as_pointer(), I64, I64, I64, I64, I64, I64,
                                                      ety.as_pointer()])
    if not fresh:
        return fn
    bmat, n, kk, p0, kc, j0, nc, bp = fn.args
    bmat.add_attribute("noalias")
    bp.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    if not transposed:
        _pack_b_rows(b, dtype, lanes, nv, bmat, n, p0, kc, j0, nc, bp)
        b.ret_void()
        return fn
    if lanes >= 8:
        with for_range(b, 0, nc, nr, name="jp") as jp:
            _pack_transposed(b, lanes, bmat, kk, b.add(j0, jp), b.sub(nc, jp), p0, kc,
                             b.gep(bp, [b.mul(jp, kc)]), nr)
        b.ret_void()
        return fn
    with for_range(b, 0, nc, nr, name="jp") as jp:
        dst = b.gep(bp, [b.mul(jp, kc)])
        lastcol = b.sub(b.sub(nc, jp), ir.Constant(I64, 1))
        with for_range(b, 0, ir.Constant(I64, nr), name="jj") as jj:
            col = b.select(b.icmp_signed(">", jj, lastcol), lastcol, jj)
            src = b.gep(bmat, [b.add(b.mul(b.add(b.add(j0, jp), col), kk), p0)])
            with for_range(b, 0, kc, name="p") as p:
                out = b.gep(dst, [b.add(b.mul(p, ir.Constant(I64, nr)), jj)])
                b.store(b.load(b.gep(src, [p])), out)
    b.ret_void()
    return fn


def _pack_transposed(b: ir.IRBuilder, lanes: int, bt, kk, col0, ncols, p0, kc, dst, nr) -> None:
    """``dst[p*nr + j] = bt[(col0 + j)*kk + p0 + p]`` for ``p < kc`` and ``j < nr`` (``nr`` a
    multiple of ``W``; ``j`` at or past ``ncols`` gives 0): the rows of a matrix stored
    transposed, as panel rows.  One shared function per dtype and width
    (``dlc.gemm.packT``), called by every packing of a transposed operand."""
    if isinstance(nr, int):
        nr = ir.Constant(I64, nr)
    fn = _pack_transposed_function(b.module, bt.type.pointee, lanes)
    b.call(fn, [bt, kk, col0, ncols, p0, kc, dst, nr])


def _pack_transposed_function(module: ir.Module, ety: ir.Type, lanes: int) -> ir.Function:
    """Signature: ``(T* bt, i64 kk, i64 col0, i64 ncols, i64 p0, i64 kc, T* dst, i64 nr)``:
    blocks of ``W x W`` read as ``W`` (masked) row vectors of ``bt`` and transposed in
    registers, instead of one scalar copy per element; never reads past row ``col0 +
    ncols - 1`` or element ``p0 + kc - 1`` of a row."""
    name = f"dlc.gemm.packT.{type_suffix(ir.VectorType(ety, lanes))}"
    fn, fresh = _shared(module, name, ir.VoidType(), [ety.as_pointer(), I64, I64, I64, I64, I64,
                                                      ety.as_pointer(), I64])
    if not fresh:
        return fn
    bt, kk, col0, ncols, p0, kc, dst, nr = fn.args
    bt.add_attribute("noalias")
    dst.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    with for_range(b, 0, kc, lanes, name="pb") as pb, for_range(b, 0, nr, lanes, name="jg") as jg:
        depth = lane_mask(b, lanes, _clamp(b, b.sub(kc, pb), lanes))
        vecs = []
        for q in range(lanes):
            j = b.add(jg, ir.Constant(I64, q))
            live = b.icmp_signed("<", j, ncols)
            row = b.select(live, b.add(col0, j), col0)   # never past the last row
            src = b.gep(bt, [b.add(b.mul(row, kk), b.add(p0, pb))])
            vecs.append(load_vector(b, src, lanes, b.and_(depth, splat(b, live, lanes))))
        for r, vec in enumerate(_transpose_vectors(b, vecs)):
            p = b.add(pb, ir.Constant(I64, r))
            with b.if_then(b.icmp_signed("<", p, kc)) if r else _nothing():
                store_vector(b, vec, b.gep(dst, [b.add(b.mul(p, nr), jg)]), None)
    b.ret_void()
    return fn


def _pack_b_rows(b: ir.IRBuilder, dtype: DType, lanes: int, nv: int, bmat, n, p0, kc, j0, nc, bp) -> None:
    """The row-major case of :func:`_pack_b_function`: B's rows are read front to back
    (one sequential stream, which the hardware prefetcher follows; a panel at a time
    would read ``NR`` columns from each of ``kc`` rows, one cache line per row), each
    row's ``NR``-wide pieces written to their panels; the last, partial panel masked and
    zero-padded."""
    ety = memory_type(dtype)
    nr = nv * lanes
    full_end = b.mul(b.sdiv(nc, ir.Constant(I64, nr)), ir.Constant(I64, nr))
    tail = b.sub(nc, full_end)
    with for_range(b, 0, kc, name="p") as p:
        row = b.gep(bmat, [b.add(b.mul(b.add(p0, p), n), j0)])
        out = b.gep(bp, [b.mul(p, ir.Constant(I64, nr))])
        with for_range(b, 0, full_end, nr, name="jp") as jp:
            src = b.gep(row, [jp])
            to = b.gep(out, [b.mul(jp, kc)])
            for v in range(nv):
                off = ir.Constant(I64, v * lanes)
                if lanes == 1:
                    b.store(b.load(b.gep(src, [off])), b.gep(to, [off]))
                else:
                    store_vector(b, load_vector(b, b.gep(src, [off]), lanes, None), b.gep(to, [off]), None)
        with b.if_then(b.icmp_signed(">", tail, ir.Constant(I64, 0))):
            src = b.gep(row, [full_end])
            to = b.gep(out, [b.mul(full_end, kc)])
            for v in range(nv):
                left = _clamp(b, b.sub(tail, ir.Constant(I64, v * lanes)), lanes)
                off = ir.Constant(I64, v * lanes)
                if lanes == 1:
                    live = b.icmp_signed(">", left, ir.Constant(I64, 0))
                    with b.if_else(live) as (then, otherwise):
                        with then:
                            b.store(b.load(b.gep(src, [off])), b.gep(to, [off]))
                        with otherwise:
                            b.store(const(ety, 0), b.gep(to, [off]))
                else:
                    value = load_vector(b, b.gep(src, [off]), lanes, lane_mask(b, lanes, left))
                    store_vector(b, value, b.gep(to, [off]), None)


def _load_lanes(b: ir.IRBuilder, ptr: ir.Value, lanes: int) -> ir.Value:
    return b.load(ptr) if lanes == 1 else load_vector(b, ptr, lanes, None)


def library_module(spec: LibrarySpec, options: CodegenOptions) -> ir.Module:
    """The LLVM module of the GEMM library ``spec`` (``library.py``): its drivers and plain
    store and shallow functions, each exported as :meth:`LibrarySpec.symbols` names it
    (``options``: those ``spec`` was made under)."""
    mod = ir.Module(name="dlc.gemm.library")
    mod.triple = options.target.triple
    mod.dlc_symbol_suffix = "." + spec.version
    set_blocking(mod, options.gemm_blocking)
    enable_skip_zeros(mod, options.skip_zeros)
    enable_half_instructions(mod, "+f16c" in options.target.features.split(","))
    for d in spec.dtypes:
        for trans_b in (False, True):
            fn = _driver_function(mod, DType(d), spec.lanes, trans_b)
            fn.linkage = "external"
        if has_shallow_path(spec.lanes):
            _plain_shallow_function(mod, DType(d), spec.lanes).linkage = "external"
        _plain_store_function(mod, DType(d), spec.lanes).linkage = "external"
    # Writable data of its own: llvmlite's memory manager (runtime/native.py) reserves the
    # memory of an object's sections up front and cannot load an object without any (an
    # assertion aborts the process).
    word = ir.ArrayType(ir.IntType(8), 8)
    version = ir.GlobalVariable(mod, word, name=f"dlc.gemm.library.{spec.version}")
    version.initializer = ir.Constant(word, bytearray(spec.version[:8].encode()))
    return mod
