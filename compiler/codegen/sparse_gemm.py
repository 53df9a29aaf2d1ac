"""Zero-skipping GEMM: ``C = epilogue(A @ B)`` when most of A is exactly zero.

Image inputs are mostly zeros (an MNIST batch is about 81 % zero pixels), and
the two big products of a first dense layer both take the input as their A
operand: the forward ``x @ W`` and the weight gradient ``x^T @ dh``.  A dense
kernel multiplies every zero; this one decides at run time, from the data,
whether to skip them.

The driver of every f32/f64 GEMM with a row-major B first calls
:func:`sparse_function`; it returns 0 (and the dense path runs) unless

* the product is big enough to pay for the scans: ``N >= MIN_N``; ``M >= MIN_M``
  (the finiteness check reads all of B, as much as a one-row product does);
  ``K >= MIN_K`` (the skipped multiply-adds must outweigh the stores of C,
  which both paths make); and ``K <= MAX_K`` (the column lists' stack room),
* at most ``MAX_DENSITY`` of A's elements are non-zero (one counting pass over
  A, the same in every task, so every task takes the same path), and
* every element of B is finite.  Skipping ``0 * b`` changes nothing when b
  is finite (``s + (+-0) == s`` for every sum s but ``-0``, and a sum of
  skipped terms starts from ``+0`` like the dense one); ``0 * inf`` is NaN,
  so a B holding inf or NaN takes the dense path, which propagates it.

Then each task takes a share of C's rows, ``ROWS`` rows at a time.  For a
group it lists the columns p where any of its rows has a non-zero ``A[i, p]``,
with the group's ``ROWS`` values of each (on the stack); then for each block
of ``NB`` vectors of columns it sums ``A[i, p] * B[p, block]`` over the
listed p into ``ROWS x NB`` vector accumulators -- each vector of B loaded
once for all the group's rows, since a row-by-row kernel is bound by loading
B, not by FMAs -- and hands the finished tile to the kernel's store function
(its epilogue: bias, activation, an in-place optimizer update).  Groups start
at multiples of ``ROWS`` whatever the split into tasks, so every element's sum
runs over the same terms in the same (increasing p) order: results are
bit-identical across thread counts, and differ from the dense kernel's only
in summation order.  On MNIST batches a group of 4 rows has a non-zero in
about 39 % of the 784 pixel columns (28 % for 4 neighbouring pixels over a
batch, the weight gradient's A), against 19 % for a single row.
"""

from __future__ import annotations

from llvmlite import ir

from ..ir.types import DType
from .emitter import Emitter
from .kernels import alloca, lane_mask, load_vector
from .llvmutil import I1, I8P, I32, I64, const, for_range, intrinsic, memory_type, splat, type_suffix, value_type
from .threads import split

MIN_N = 64                 # fewer columns: the scan of A costs more than skipping saves
MIN_M = 8                  # fewer rows: checking B costs what the dense product does (batch 1)
MIN_K = 16                 # shallower: C's stores, not multiply-adds, bound both paths
MAX_K = 4096               # a group's list (K indices, ROWS * K values) lives on the stack
MAX_DENSITY = (3, 10)      # at most 3/10 of A non-zero
SCAN_CHUNK = 4096          # elements of A counted between checks against the density limit
ROWS = 4                   # rows of A (and C) per group: each loaded vector of B feeds ROWS FMAs
assert ROWS & (ROWS - 1) == 0, "a group's values are stored as <ROWS x T> vectors: no padding"


def enable_skip_zeros(module: ir.Module, on: bool) -> None:
    """Whether the GEMMs of ``module`` may take the zero-skipping path
    (``CodegenOptions.skip_zeros``; set when the module is created)."""
    module.dlc_skip_zeros = on          # read by gemm's driver through skip_zeros_enabled


def skip_zeros_enabled(module: ir.Module) -> bool:
    return getattr(module, "dlc_skip_zeros", True)


def block_vectors(lanes: int) -> int:
    """Vectors of columns per block: ROWS x NB accumulators, NB loads and ROWS broadcasts
    fit the register file (32 vectors with AVX-512, 16 below)."""
    return 4 if lanes >= 16 else 2


def sparse_function(module: ir.Module, dtype: DType, lanes: int, store_type: ir.FunctionType,
                    epilogue_flag: int) -> ir.Function:
    """The module's zero-skipping GEMM for ``dtype`` (shared by all its matmul kernels).

    Signature: ``i1 (T* a, i64 sa_i, i64 sa_k, T* b, T* c, i64 m, i64 n, i64 k, i64 t,
    i64 ntasks, store*, i8* ctx)``: computes task ``t``'s share of ``C = A @ B`` and
    returns 1, or returns 0 without touching C when the product is not sparse enough
    (module docstring).  B is row-major ``[K, N]``; A is read through its strides.
    ``lanes`` >= 4: the driver calls it on vector targets only.
    ``store_type`` and ``epilogue_flag`` are gemm.py's: the kernels' tile store functions
    (``store(ctx, tile, c, n, i0, j0, rows, nv, flags)``) and their "apply the epilogue" flag.
    """
    ety = memory_type(dtype)
    name = f"dlc.gemm.sparse.{type_suffix(value_type(dtype, lanes))}"
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    fn = ir.Function(module, ir.FunctionType(I1, [ety.as_pointer(), I64, I64, ety.as_pointer(),
                                                  ety.as_pointer(), I64, I64, I64, I64, I64,
                                                  store_type.as_pointer(), I8P]), name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    fn.attributes.add("noinline")
    a, sa_i, sa_k, bmat, c, m, n, kk, t, ntasks, store, ctx = fn.args
    for arg in (a, bmat, c):
        arg.add_attribute("noalias")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    _Sparse(b, dtype, lanes, epilogue_flag, fn.args).emit()
    return fn


class _Sparse:
    def __init__(self, b: ir.IRBuilder, dtype: DType, lanes: int, epilogue_flag: int, args) -> None:
        self.b, self.dtype, self.lanes, self.epilogue_flag = b, dtype, lanes, epilogue_flag
        (self.a, self.sa_i, self.sa_k, self.bmat, self.c, self.m, self.n, self.kk, self.t, self.ntasks,
         self.store, self.ctx) = args
        self.ety = memory_type(dtype)
        self.vty = value_type(dtype, lanes)
        self.e = Emitter(b, lanes, dtype)
        self.nb = block_vectors(lanes)

    def emit(self) -> None:
        b = self.b
        fn = b.function
        no = fn.append_basic_block("dense")
        with b.goto_block(no):
            b.ret(ir.Constant(I1, 0))
        fits = b.and_(b.icmp_signed(">=", self.n, ir.Constant(I64, MIN_N)),
                      b.and_(b.icmp_signed(">=", self.kk, ir.Constant(I64, MIN_K)),
                             b.icmp_signed("<=", self.kk, ir.Constant(I64, MAX_K))))
        fits = b.and_(fits, b.icmp_signed(">=", self.m, ir.Constant(I64, MIN_M)))
        scan = fn.append_basic_block("scan")
        b.cbranch(fits, scan, no)
        b.position_at_end(scan)
        sparse = self._sparse_enough(self.a, b.mul(self.m, self.kk))
        check_b = fn.append_basic_block("check_b")
        b.cbranch(sparse, check_b, no)
        b.position_at_end(check_b)
        finite = self._all_finite(self.bmat, b.mul(self.kk, self.n))
        run = fn.append_basic_block("run")
        b.cbranch(finite, run, no)
        b.position_at_end(run)
        self._rows()
        b.ret(ir.Constant(I1, 1))

    # -- the decision ------------------------------------------------------------

    def _sparse_enough(self, ptr: ir.Value, count: ir.Value) -> ir.Value:
        """Whether at most ``MAX_DENSITY`` of the ``count`` contiguous elements at ``ptr`` are
        non-zero (NaN counts as non-zero).  Counted ``SCAN_CHUNK`` elements at a time (whole
        vectors unmasked: compare, mask to bits, popcount), stopping as soon as the count is
        over the limit: a dense A (every product but images) is given up after 30 % of it
        (the full count was ~4 % of a 1024^3 product's time, ~8 % at 256^3).  Every task
        scans the same elements in the same order, so every task decides the same."""
        b, lanes = self.b, self.lanes
        fn = b.function
        num, den = MAX_DENSITY
        limit = b.mul(count, ir.Constant(I64, num))
        popcount = intrinsic(b.module, f"llvm.ctpop.i{lanes}", ir.IntType(lanes), [ir.IntType(lanes)])
        nonzero = alloca(b, I64)
        b.store(ir.Constant(I64, 0), nonzero)

        def count_vector(i: ir.Value, mask: ir.Value | None) -> None:
            v = load_vector(b, b.gep(ptr, [i]), lanes, mask)
            nz = b.fcmp_unordered("!=", v, const(v.type, 0))      # NaN != 0 too; masked lanes load 0
            bits = b.zext(b.call(popcount, [b.bitcast(nz, ir.IntType(lanes))]), I64)
            b.store(b.add(b.load(nonzero), bits), nonzero)

        head, body, over, done = (fn.append_basic_block(name) for name in ("nz.chunk", "nz.body", "nz.over",
                                                                           "nz.done"))
        start = b.block
        b.branch(head)
        b.position_at_end(head)
        c0 = b.phi(I64)
        c0.add_incoming(ir.Constant(I64, 0), start)
        b.cbranch(b.icmp_signed("<", c0, count), body, done)
        b.position_at_end(body)
        left = b.sub(count, c0)
        chunk = ir.Constant(I64, SCAN_CHUNK)
        end = b.add(c0, b.select(b.icmp_signed("<", left, chunk), left, chunk))
        whole = b.add(c0, b.mul(b.sdiv(b.sub(end, c0), ir.Constant(I64, lanes)), ir.Constant(I64, lanes)))
        with for_range(b, c0, whole, lanes, name="nz") as i:
            count_vector(i, None)
        with b.if_then(b.icmp_signed("<", whole, end)):
            count_vector(whole, lane_mask(b, lanes, b.sub(end, whole)))
        too_many = b.icmp_signed(">", b.mul(b.load(nonzero), ir.Constant(I64, den)), limit)
        c0.add_incoming(end, b.block)
        b.cbranch(too_many, over, head)
        b.position_at_end(over)
        b.ret(ir.Constant(I1, 0))
        b.position_at_end(done)
        return ir.Constant(I1, 1)

    def _all_finite(self, ptr: ir.Value, count: ir.Value) -> ir.Value:
        """Whether the ``count`` contiguous elements at ``ptr`` hold no inf and no NaN (an
        element is not finite iff its exponent bits are all ones; OR-ed, latency 1)."""
        b, lanes = self.b, self.lanes
        ity = ir.IntType(32 if self.dtype is DType.f32 else 64)
        exponent = 0x7F800000 if self.dtype is DType.f32 else 0x7FF0000000000000
        ivty = ir.VectorType(ity, lanes)
        acc = alloca(b, ivty)
        b.store(const(ivty, 0), acc)
        with for_range(b, 0, count, lanes, name="fin") as i:
            mask = lane_mask(b, lanes, b.sub(count, i))
            bits = b.bitcast(load_vector(b, b.gep(ptr, [i]), lanes, mask), ivty)   # masked: 0
            special = b.icmp_unsigned("==", b.and_(bits, const(ivty, exponent)), const(ivty, exponent))
            b.store(b.or_(b.load(acc), b.zext(special, ivty)), acc)
        found = b.load(acc)
        total = b.extract_element(found, ir.Constant(I32, 0))
        for lane in range(1, lanes):
            total = b.or_(total, b.extract_element(found, ir.Constant(I32, lane)))
        return b.icmp_unsigned("==", total, ir.Constant(ity, 0))

    # -- the product -------------------------------------------------------------

    def _rows(self) -> None:
        """Task t's rows of C, ``ROWS`` rows at a time (groups start at multiples of ROWS
        whatever the split, so every element's sum is the same for every thread count)."""
        b, rows_per = self.b, ROWS
        lo, hi = split(b, self.m, self.t, self.ntasks, rows_per)
        cols = b.bitcast(alloca(b, ir.ArrayType(I32, MAX_K)), I32.as_pointer())
        values = b.bitcast(alloca(b, ir.ArrayType(self.ety, MAX_K * rows_per)), self.ety.as_pointer())
        single_nb = 2 * self.nb                                    # one row: wider blocks
        tile = b.bitcast(alloca(b, ir.ArrayType(self.vty, max(rows_per * self.nb, single_nb))),
                         self.vty.as_pointer())
        with for_range(b, lo, hi, rows_per, name="g") as g0:
            rows = b.sub(hi, g0)
            rows = b.select(b.icmp_signed("<", rows, ir.Constant(I64, rows_per)), rows,
                            ir.Constant(I64, rows_per))
            count = self._union_list(g0, rows, cols, values)
            # a lone row (batch 1, or the last row of C) gets no FMAs for the absent rows
            with b.if_else(b.icmp_signed("==", rows, ir.Constant(I64, 1))) as (lone, group):
                with lone:
                    self._blocks(g0, rows, cols, values, count, tile, 1, single_nb)
                with group:
                    self._blocks(g0, rows, cols, values, count, tile, rows_per, self.nb)

    def _blocks(self, g0: ir.Value, rows: ir.Value, cols: ir.Value, values: ir.Value, count: ir.Value,
                tile: ir.Value, rows_per: int, nb: int) -> None:
        """The group's rows of C, ``nb`` vectors of columns at a time, through the store."""
        b = self.b
        step = nb * self.lanes
        with for_range(b, 0, self.n, step, name="jb") as j0:
            full = b.icmp_signed("<=", b.add(j0, ir.Constant(I64, step)), self.n)
            with b.if_else(full) as (whole, part):
                with whole:
                    self._block(j0, cols, values, count, tile, rows_per, nb, masked=False)
                with part:
                    self._block(j0, cols, values, count, tile, rows_per, nb, masked=True)
            b.call(self.store, [self.ctx, b.bitcast(tile, I8P), self.c, self.n, g0, j0, rows,
                                ir.Constant(I64, nb), ir.Constant(I64, self.epilogue_flag)])

    def _union_list(self, g0: ir.Value, rows: ir.Value, cols: ir.Value, values: ir.Value) -> ir.Value:
        """The columns p where any of the group's rows has ``A[i, p] != 0``, in increasing
        order, with the ROWS values ``A[g0 + r, p]`` of each (0 for rows past the group's
        ``rows``, which are never read); returns their count."""
        b, rows_per = self.b, ROWS
        gty = ir.VectorType(self.ety, rows_per)
        self._live = b.icmp_signed("<", ir.Constant(ir.VectorType(I64, rows_per), list(range(rows_per))),
                                   splat(b, rows, rows_per))
        self._arows = []
        for r in range(rows_per):
            live = b.icmp_signed("<", ir.Constant(I64, r), rows)
            row = b.select(live, b.add(g0, ir.Constant(I64, r)), g0)        # a real row to read
            self._arows.append((live, b.gep(self.a, [b.mul(row, self.sa_i)])))
        self._slots = b.bitcast(values, gty.as_pointer())
        count = alloca(b, I64)
        b.store(ir.Constant(I64, 0), count)
        contiguous = b.icmp_signed("==", self.sa_k, ir.Constant(I64, 1))
        with b.if_else(contiguous) as (rowwise, strided):
            with rowwise:
                self._list_by_chunks(cols, count)
            with strided:
                with for_range(b, 0, self.kk, name="p") as p:
                    # branch-free: every p is written, the count advances past non-zeros only
                    at = b.load(count)
                    nonzero = self._append(p, at, cols)
                    b.store(b.add(at, b.zext(nonzero, I64)), count)
        return b.load(count)

    def _append(self, p: ir.Value, at: ir.Value, cols: ir.Value) -> ir.Value:
        """Write column p and the group's values at entry ``at``; whether any is non-zero."""
        b, rows_per = self.b, ROWS
        gty = ir.VectorType(self.ety, rows_per)
        b.store(b.trunc(p, I32), b.gep(cols, [at]))
        group: ir.Value = ir.Constant(gty, ir.Undefined)
        for r, (_, arow) in enumerate(self._arows):
            group = b.insert_element(group, b.load(b.gep(arow, [b.mul(p, self.sa_k)])), ir.Constant(I32, r))
        group = b.select(self._live, group, const(gty, 0))
        b.store(group, b.gep(self._slots, [at]), align=4 if self.dtype is DType.f32 else 8)
        nonzero = b.fcmp_unordered("!=", group, const(gty, 0))
        return b.icmp_unsigned("!=", b.bitcast(nonzero, ir.IntType(rows_per)), ir.Constant(ir.IntType(rows_per), 0))

    def _list_by_chunks(self, cols: ir.Value, count: ir.Value) -> None:
        """The list for rows stored contiguously (``sa_k == 1``): W columns at a time, a
        bit mask of the columns with a non-zero in any live row, then one entry per set bit
        (image rows are mostly zero: most chunks have few or no bits)."""
        b, lanes = self.b, self.lanes
        mty = ir.IntType(lanes)
        cttz = b.module.globals.get("llvm.cttz.i64") or ir.Function(
            b.module, ir.FunctionType(I64, [I64, I1]), "llvm.cttz.i64")
        with for_range(b, 0, self.kk, lanes, name="pc") as p0:
            mask = lane_mask(b, lanes, b.sub(self.kk, p0))
            any_nz: ir.Value = ir.Constant(ir.VectorType(I1, lanes), [0] * lanes)
            for live, arow in self._arows:
                v = load_vector(b, b.gep(arow, [p0]), lanes, mask)            # masked lanes: 0
                nz = b.fcmp_unordered("!=", v, const(v.type, 0))
                nz = b.select(live, nz, ir.Constant(nz.type, [0] * lanes))
                any_nz = b.or_(any_nz, nz)
            bits = alloca(b, I64)
            b.store(b.zext(b.bitcast(any_nz, mty), I64), bits)
            fn = b.function
            head, body, done = (fn.append_basic_block(f"bits.{x}") for x in ("head", "body", "done"))
            b.branch(head)
            b.position_at_end(head)
            left = b.load(bits)
            b.cbranch(b.icmp_unsigned("!=", left, ir.Constant(I64, 0)), body, done)
            b.position_at_end(body)
            p = b.add(p0, b.call(cttz, [left, ir.Constant(I1, 1)]))
            at = b.load(count)
            self._append(p, at, cols)
            b.store(b.add(at, ir.Constant(I64, 1)), count)
            b.store(b.and_(left, b.sub(left, ir.Constant(I64, 1))), bits)
            b.branch(head)
            b.position_at_end(done)

    def _block(self, j0: ir.Value, cols: ir.Value, values: ir.Value, count: ir.Value, tile: ir.Value,
               rows_per: int, nb: int, masked: bool) -> None:
        """``tile[r, v] = sum over listed p of A[g0 + r, p] * B[p, j0 + v*W : +W]`` for the
        group's first ``rows_per`` rows and ``nb`` vectors of columns (lanes past N masked:
        never read)."""
        b, lanes = self.b, self.lanes
        masks = []
        for v in range(nb):
            if masked:
                left = b.sub(self.n, b.add(j0, ir.Constant(I64, v * lanes)))
                left = b.select(b.icmp_signed("<", left, ir.Constant(I64, 0)), ir.Constant(I64, 0), left)
                masks.append(lane_mask(b, lanes, left))
            else:
                masks.append(None)
        accs = [[alloca(b, self.vty) for _ in range(nb)] for _ in range(rows_per)]
        for row in accs:
            for slot in row:
                b.store(const(self.vty, 0), slot)
        bcol = b.gep(self.bmat, [j0])
        with for_range(b, 0, count, name="q") as q:
            p = b.sext(b.load(b.gep(cols, [q])), I64)
            brow = b.gep(bcol, [b.mul(p, self.n)])
            bvs = [load_vector(b, b.gep(brow, [ir.Constant(I64, v * lanes)]), lanes, masks[v])
                   for v in range(nb)]
            slot = b.gep(values, [b.mul(q, ir.Constant(I64, ROWS))])
            for r in range(rows_per):
                av = splat(b, b.load(b.gep(slot, [ir.Constant(I64, r)])), lanes)
                for v in range(nb):
                    b.store(self.e.fma(av, bvs[v], b.load(accs[r][v])), accs[r][v])
        for r in range(rows_per):
            for v in range(nb):
                b.store(b.load(accs[r][v]), b.gep(tile, [ir.Constant(I64, r * nb + v)]))


__all__ = ["sparse_function", "enable_skip_zeros", "skip_zeros_enabled", "MIN_M", "MIN_N", "MIN_K", "MAX_K",
           "MAX_DENSITY", "ROWS"]
