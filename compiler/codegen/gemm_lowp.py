"""Low-precision GEMMs: ``matmul_lowp``'s kernel forms on AVX-512 VNNI and AVX-512 BF16.

Two products have a kernel of their own (``compiler/ops/contraction.py``,
``lowp_kernel_form``), used where the target has the instruction (:func:`native`):

- **int8**: ``u8``/``i8`` operands, i32 sums, by ``vpdpbusd`` (4 unsigned x signed
  byte products summed into each i32 lane, not saturating). The instruction takes an
  unsigned A and a signed B, so other operands are shifted by 128 as they are packed,
  ``A' = A + alpha``, ``B' = B + beta`` (``alpha = 128`` for an i8 A, ``beta = -128``
  for a u8 B, else 0), and the shift is taken back out exactly:
  ``A B = A' B' - alpha colsum(B) - beta rowsum(A) - alpha beta K`` (every term modulo
  2^32, so the result is numpy's wrapping int32 ``matmul`` bit for bit, whatever the
  order of the sums).
- **bf16**: f32 or bf16 operands, f32 result, ``precision="bf16"``: each f32 operand
  rounded to bf16 (to nearest even, in integer arithmetic as ``storage.py``) as it is
  packed, a bf16 operand taken as it is, a subnormal bf16 made 0 (which the instruction
  would do anyway), the products summed in f32 by ``vdpbf16ps`` (2 bf16 pairs per f32
  lane).

Both are the same GEMM with ``G`` = 4 or 2 elements of K in each 32-bit word: B is
packed in panels of ``NR = 64`` columns, ``[word g][column]`` (one zmm per 16 columns
and word), A in panels of ``MR = 6`` rows, ``[row][word g]``; the micro-kernel keeps a
6 x 4-vector tile in registers and per word loads 4 B vectors and broadcasts one A word
per row (24 ``vpdpbusd`` / ``vdpbf16ps``). Loops: tasks
split the columns (whole panels); per task ``jc`` (``NC`` columns), K slices of ``KCG``
words (the first slice stores its sums, later ones add), ``ic`` (``MC`` rows), then the
panels. No epilogue is fused into these kernels (``bufferize.fuse_epilogues``).

Elsewhere (no VNNI / BF16, or vectors narrower than 16 lanes) the op is its
decomposition: the operands widened (and rounded), the i32/f32 GEMM (``gemm.py``).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from llvmlite import ir

from ..ir.types import DType
from .kernels import KernelContext, alloca, lane_mask
from .llvmutil import F32, I8, I16, I32, I64, const, for_range, intrinsic, splat, type_suffix
from .loops import LowpMatmul, Matmul
from .storage import _float_to_bfloat_bits
from .target import CodegenOptions

LANES = 16           # zmm lanes of i32 / f32
# Measured on Zen 5 (1024^3, one thread, CPU time; docs/codegen.md): 6 x 4 vectors (24
# accumulators) beat 8 x 2, 12 x 2, 8 x 3 and 4 x 4 by 5-30%; one slice for K = 1024 beat two
MR = 6               # rows of the micro-tile
NV = 4               # vectors of the micro-tile
NR = NV * LANES      # columns of a B panel
MC = 120             # rows of an A block (a multiple of MR)
NC = 1024            # columns of a B block (a multiple of NR)
KCG = 512            # words of K per slice (2048 int8 or 1024 bf16 elements)
MIN_TASK_WORK = 1 << 18

FEATURE = {"default": "+avx512vnni", "bf16": "+avx512bf16"}


def lowp_kernel(mm: Matmul, precision: str) -> LowpMatmul:
    """The :class:`LowpMatmul` of a lowered ``matmul_lowp`` (the fields of ``mm``)."""
    return LowpMatmul(**{f.name: getattr(mm, f.name) for f in fields(Matmul)}, precision=precision)


def native(op: Any, options: CodegenOptions | None) -> bool:
    """Whether ``matmul_lowp`` op ``op`` (a kernel form) runs on its kernel under ``options``
    (default: the host): 16-lane vectors and the instruction on the target."""
    options = options or CodegenOptions()
    features = set(options.target.features.split(","))
    return options.lanes == LANES and "+avx512f" in features and FEATURE[op.attrs["precision"]] in features


# -- sizes ------------------------------------------------------------------------------------


def _c(v: int) -> ir.Constant:
    return ir.Constant(I64, v)


def _min(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return b.select(b.icmp_signed("<", x, y), x, y)


def _max(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return b.select(b.icmp_signed(">", x, y), x, y)


def _ceil_div(b: ir.IRBuilder, x: ir.Value, d: int) -> ir.Value:
    return b.sdiv(b.add(x, _c(d - 1)), _c(d))


def _round_up(b: ir.IRBuilder, x: ir.Value, to: int) -> ir.Value:
    return b.mul(_ceil_div(b, x, to), _c(to))


def _regions(kc: KernelContext, k: LowpMatmul) -> list[ir.Value]:
    """Bytes (multiples of 64) of one task's B block, A block, column and row corrections."""
    b = kc.b
    kg = _min(b, _ceil_div(b, kc.dim(k.k), k.group), _c(KCG))
    ncap = _round_up(b, _min(b, kc.dim(k.n), _c(NC)), NR)
    mcap = _round_up(b, _min(b, kc.dim(k.m), _c(MC)), MR)
    sizes = [b.mul(b.mul(kg, ncap), _c(4)), b.mul(b.mul(kg, mcap), _c(4)), b.mul(ncap, _c(4)), b.mul(mcap, _c(4))]
    return [_round_up(b, s, 64) for s in sizes]


def scratch_bytes(kc: KernelContext, k: LowpMatmul) -> ir.Value:
    """Bytes of one task's packing region (a multiple of 64), from the dims."""
    b = kc.b
    total: ir.Value = _c(0)
    for s in _regions(kc, k):
        total = b.add(total, s)
    return total


def scratch_bound(k: LowpMatmul) -> list[tuple[int, tuple]]:
    """A bound of :func:`scratch_bytes` for every M and N, as workspace regions per task
    (``llvm.workspace_regions``): 4 K (NC + MC) bytes of blocks and the corrections."""
    return [(4, (k.k, NC + MC)), (1, (4 * (NC + MC) + 4 * 64,))]


def task_count(kc: KernelContext, k: LowpMatmul, threads: ir.Value, most: ir.Value) -> ir.Value:
    """Tasks for ``k``: at most ``most`` (``threads`` x tasks per thread), one per panel of
    columns at most, fewer for small products."""
    b = kc.b
    m, n, kk = kc.dim(k.m), kc.dim(k.n), kc.dim(k.k)
    work = b.mul(b.mul(b.mul(m, n), b.add(_ceil_div(b, kk, k.group), _c(4))), kc.product(k.batch))
    out = _min(b, _min(b, most, _ceil_div(b, n, NR)), b.sdiv(work, _c(MIN_TASK_WORK)))
    return _max(b, out, _c(1))


# -- the kernel -------------------------------------------------------------------------------


def emit_lowp_matmul(kc: KernelContext, k: LowpMatmul) -> None:
    """Code for one :class:`LowpMatmul` kernel (one task's share when ``kc.task`` is set)."""
    _Gemm(kc, k).emit()


class _Gemm:
    def __init__(self, kc: KernelContext, k: LowpMatmul):
        self.kc, self.k, self.b = kc, k, kc.b
        self.g = k.group
        self.int8 = k.precision == "default"
        self.vty = ir.VectorType(I32 if self.int8 else F32, LANES)
        self.wty = ir.VectorType(I32, LANES)
        # the shifts of the int8 operands (module docstring)
        self.alpha = 128 if self.int8 and k.a.dtype is DType.i8 else 0
        self.beta = -128 if self.int8 and k.b.dtype is DType.u8 else 0

    def emit(self) -> None:
        kc, k, b = self.kc, self.k, self.b
        regions = _regions(kc, k)
        base = kc.scratch
        ptrs = []
        off: ir.Value = _c(0)
        for size in regions:
            ptrs.append(b.bitcast(b.gep(base, [off]), I32.as_pointer()))
            off = b.add(off, size)
        self.bp, self.ap, self.colcorr, self.rowcorr = ptrs
        self.accs = [[alloca(b, self.vty) for _ in range(NV)] for _ in range(MR)]
        batch_index: list[ir.Value] = []

        def over_batch(level: int) -> None:
            if level == len(k.batch):
                self.gemm(batch_index)
                return
            with for_range(b, _c(0), kc.dim(k.batch[level]), 1, name=f"batch{level}") as i:
                batch_index.append(i)
                over_batch(level + 1)
                batch_index.pop()

        over_batch(0)

    def _offset(self, buf, bmap, batch_index) -> ir.Value:
        b = self.b
        strides = self.kc.strides(buf)
        offset: ir.Value = _c(0)
        for d, axis in enumerate(bmap):
            if axis is not None:
                offset = b.add(offset, b.mul(batch_index[axis], strides[d]))
        return offset

    def gemm(self, batch_index: list[ir.Value]) -> None:
        kc, k, b = self.kc, self.k, self.b
        m, n, kk = kc.dim(k.m), kc.dim(k.n), kc.dim(k.k)
        self.m, self.n, self.kk = m, n, kk
        self.a = b.gep(kc.pointer(k.a), [self._offset(k.a, k.a_batch, batch_index)])
        self.bm = b.gep(kc.pointer(k.b), [self._offset(k.b, k.b_batch, batch_index)])
        self.c = b.gep(kc.pointer(k.out), [self._offset(k.out, range(len(k.batch)), batch_index)])
        self.sa_i, self.sa_k = (_c(1), m) if k.trans_a else (kk, _c(1))
        self.sb_k, self.sb_j = (_c(1), kk) if k.trans_b else (n, _c(1))
        t, nt = kc.task if kc.task is not None else (_c(0), _c(1))
        panels = _ceil_div(b, n, NR)
        j_lo = b.mul(b.sdiv(b.mul(t, panels), nt), _c(NR))
        j_hi = _min(b, b.mul(b.sdiv(b.mul(b.add(t, _c(1)), panels), nt), _c(NR)), n)
        kg_all = _ceil_div(b, kk, self.g)
        nblk = _max(b, _ceil_div(b, kg_all, KCG), _c(1))
        with for_range(b, j_lo, j_hi, _c(NC), name="jc") as jc:
            ncur = _min(b, _c(NC), b.sub(j_hi, jc))
            with for_range(b, _c(0), nblk, 1, name="slice") as blk:
                g0 = b.mul(blk, _c(KCG))
                kg = _min(b, _c(KCG), b.sub(kg_all, g0))
                k0 = b.mul(g0, _c(self.g))
                kcur = _min(b, b.mul(kg, _c(self.g)), b.sub(kk, k0))
                first = b.icmp_signed("==", blk, _c(0))
                self.pack_b(jc, ncur, k0, kcur, kg)
                with for_range(b, _c(0), m, _c(MC), name="ic") as ic:
                    mcur = _min(b, _c(MC), b.sub(m, ic))
                    self.pack_a(ic, mcur, k0, kcur, kg)
                    with for_range(b, _c(0), ncur, _c(NR), name="jr") as jr:
                        # whole 6-row tiles, then the rows left one at a time (a 1-row
                        # tile: a batch-1 product does not compute 5 rows it throws away)
                        whole = b.mul(b.sdiv(mcur, _c(MR)), _c(MR))
                        with for_range(b, _c(0), whole, _c(MR), name="ir") as ir_:
                            self.tile(ic, ir_, mcur, jc, jr, ncur, kg, first, MR)
                        with for_range(b, whole, mcur, 1, name="ir1") as ir_:
                            self.tile(ic, ir_, mcur, jc, jr, ncur, kg, first, 1)

    # -- packing ------------------------------------------------------------------------------

    def _run(self, ptr: ir.Value, stride: ir.Value, valid: ir.Value, count: int) -> ir.Value:
        """``count`` elements ``ptr[0], ptr[stride], ..`` (the first ``valid``; the rest 0),
        in registers: bytes as i32 (sign- or zero-extended), floats as f32."""
        b = self.b
        elem = ptr.type.pointee
        vty = ir.VectorType(elem, count)
        mask = lane_mask(b, count, _max(b, _min(b, valid, _c(count)), _c(0)))
        if isinstance(stride, ir.Constant) and stride.constant == 1:
            vptr = b.bitcast(ptr, vty.as_pointer())
            fn = intrinsic(b.module, f"llvm.masked.load.{type_suffix(vty)}.p0", vty,
                           [vptr.type, I32, mask.type, vty])
            return b.call(fn, [vptr, ir.Constant(I32, 1), mask, const(vty, 0)])
        index = b.mul(b.sext(ir.Constant(ir.VectorType(I32, count), list(range(count))),
                             ir.VectorType(I64, count)), splat(b, stride, count))
        pty = ir.VectorType(elem.as_pointer(), count)
        size = {I8: 1, I16: 2}.get(elem, 4)
        addrs = b.add(splat(b, b.ptrtoint(ptr, I64), count), b.mul(index, const(index.type, size)))
        ptrs = b.inttoptr(addrs, pty)
        fn = intrinsic(b.module, f"llvm.masked.gather.{type_suffix(vty)}.v{count}p0", vty,
                       [pty, I32, mask.type, vty])
        return b.call(fn, [ptrs, ir.Constant(I32, 1), mask, const(vty, 0)])

    def _bf16_words(self, elems: list[ir.Value]) -> ir.Value:
        """Words of 2 bf16 each, element ``q`` of each word (the low half first) from
        ``elems[q]``: f32 rounded to nearest even in integer arithmetic (NaN quietened), or
        the bits of a bf16 operand as they are; a bf16 subnormal made 0 (what ``vdpbf16ps``
        would make of it)."""
        b = self.b
        wty = ir.VectorType(I32, elems[0].type.count)
        word = None
        for q, e in enumerate(elems):
            bits = e if e.type.element == I16 else _float_to_bfloat_bits(b, e)    # bf16 operand: as is
            tiny = b.icmp_unsigned("==", b.and_(bits, const(bits.type, 0x7F80)), const(bits.type, 0))
            bits = b.select(tiny, const(bits.type, 0), bits)
            part = b.shl(b.zext(bits, wty), const(wty, 16 * q))
            word = part if word is None else b.or_(word, part)
        assert word is not None
        return word

    def pack_b(self, jc: ir.Value, ncur: ir.Value, k0: ir.Value, kcur: ir.Value, kg: ir.Value) -> None:
        """B's ``kcur x ncur`` block at ``(k0, jc)`` into panels ``[g][64 columns]`` of words
        (zeros past the block), and each column's correction (int8 with an i8 A)."""
        b = self.b
        npan = _ceil_div(b, ncur, NR)
        correct = self.alpha != 0
        if correct:
            with for_range(b, _c(0), b.mul(npan, _c(NR)), _c(LANES), name="cz") as j:
                b.store(const(self.wty, 0), self._vptr(self.colcorr, j))
        with for_range(b, _c(0), kg, 1, name="pg") as g:
            with for_range(b, _c(0), npan, 1, name="pj") as jp:
                j = b.mul(jp, _c(NR))
                left = b.sub(ncur, j)
                elems, live = [], []
                for q in range(self.g):
                    kq = b.add(b.mul(g, _c(self.g)), _c(q))
                    live.append(b.icmp_signed("<", kq, kcur))
                    valid = b.select(live[-1], left, _c(0))
                    # the row clamped into the block, so a masked-off address is still B's
                    row = _min(b, b.add(k0, kq), b.sub(b.add(k0, kcur), _c(1)))
                    row = _max(b, row, _c(0))
                    ptr = b.gep(self.bm, [b.add(b.mul(row, self.sb_k), b.mul(b.add(jc, j), self.sb_j))])
                    elems.append(self._run(ptr, self.sb_j, valid, NR))
                dst = b.gep(self.bp, [b.mul(b.add(b.mul(jp, kg), g), _c(NR))])
                if self.int8:
                    self._int8_words(elems, live, dst, j, correct)
                else:
                    word = self._bf16_words(elems)
                    b.store(word, b.bitcast(dst, ir.VectorType(I32, NR).as_pointer()), align=64)
        if correct:
            # colcorr = -alpha colsum(B) - alpha beta kcur = -alpha colsum(B')  (module docstring)
            with for_range(b, _c(0), b.mul(npan, _c(NR)), _c(LANES), name="cc") as j:
                ptr = self._vptr(self.colcorr, j)
                b.store(b.mul(b.load(ptr, align=64), const(self.wty, -self.alpha)), ptr, align=64)

    def _int8_words(self, elems: list[ir.Value], live: list[ir.Value], dst: ir.Value, j: ir.Value,
                    correct: bool) -> None:
        """B's 4 rows of a panel (bytes) stored as words at ``dst``, and the column sums."""
        b = self.b
        # int8: the 4 rows' bytes shifted (B' = B + beta), B's rows past the slice 0
        # (so A's padding meets only zeros), then interleaved byte by byte into words
        bty = ir.VectorType(I8, NR)
        shifted = [b.select(live[q], b.xor(e, const(bty, 0x80)) if self.beta else e, const(bty, 0))
                   for q, e in enumerate(elems)]
        pairs = [b.shuffle_vector(shifted[2 * h], shifted[2 * h + 1],
                                  ir.Constant(ir.VectorType(I32, 2 * NR), list(range(2 * NR))))
                 for h in range(2)]
        order = [q * NR + c for c in range(NR) for q in range(4)]      # word c: 4 rows' byte c
        words = b.bitcast(b.shuffle_vector(pairs[0], pairs[1], ir.Constant(ir.VectorType(I32, 4 * NR), order)),
                          ir.VectorType(I32, NR))
        b.store(words, b.bitcast(dst, ir.VectorType(I32, NR).as_pointer()), align=64)
        if correct:
            # colsum(B') of each column, 4 bytes at a time by vpdpbusd with ones
            for v in range(NV):
                part = b.shuffle_vector(words, words, ir.Constant(ir.VectorType(I32, LANES),
                                                                  list(range(LANES * v, LANES * (v + 1)))))
                cptr = self._vptr(self.colcorr, b.add(j, _c(LANES * v)))
                b.store(self._dot(b.load(cptr, align=64), const(self.wty, 0x01010101), part), cptr, align=64)

    def pack_a(self, ic: ir.Value, mcur: ir.Value, k0: ir.Value, kcur: ir.Value, kg: ir.Value) -> None:
        """A's ``mcur x kcur`` block at ``(ic, k0)`` as rows of words ``[row][g]`` (rounded up
        to whole 6-row panels: rows past the block repeat its last row, computed and never
        stored), and each row's correction (int8 with a u8 B)."""
        b, k = self.b, self.k
        rows = _round_up(b, mcur, MR)
        chunk = LANES * self.g              # elements per 16 words
        correct = self.beta != 0
        with for_range(b, _c(0), rows, 1, name="ar") as r:
            i = b.add(ic, _min(b, r, b.sub(mcur, _c(1))))
            src = b.gep(self.a, [b.add(b.mul(i, self.sa_i), b.mul(k0, self.sa_k))])
            dst = b.gep(self.ap, [b.mul(r, kg)])
            acc = alloca(b, self.wty)
            b.store(const(self.wty, 0), acc)
            with for_range(b, _c(0), kg, _c(LANES), name="ag") as w:
                kq = b.mul(w, _c(self.g))
                ptr = b.gep(src, [b.mul(kq, self.sa_k)])
                run = self._run(ptr, self.sa_k, b.sub(kcur, kq), chunk)
                total = None
                if self.int8:
                    # 4 consecutive bytes are a word; A' = A + alpha (its padding meets B's zeros)
                    word = b.bitcast(b.xor(run, const(run.type, 0x80)) if self.alpha else run, self.wty)
                    if correct:
                        # rowsum(A) of the unshifted bytes (padding 0), 4 at a time by vpdpbusd
                        orig = b.bitcast(run, self.wty)
                        ones = const(self.wty, 0x01010101)
                        signed = k.a.dtype is DType.i8
                        total = self._dot(const(self.wty, 0), ones, orig) if signed else \
                            self._dot(const(self.wty, 0), orig, ones)
                else:
                    # deinterleave the run into G vectors: element q of word j is run[G j + q]
                    elems = [b.shuffle_vector(run, run, ir.Constant(ir.VectorType(I32, LANES),
                                                                    [self.g * j + q for j in range(LANES)]))
                             for q in range(self.g)]
                    word = self._bf16_words(elems)
                mask = lane_mask(b, LANES, b.sub(kg, w))
                vptr = b.bitcast(b.gep(dst, [w]), self.wty.as_pointer())
                fn = intrinsic(b.module, f"llvm.masked.store.{type_suffix(self.wty)}.p0", ir.VoidType(),
                               [self.wty, vptr.type, I32, mask.type])
                b.call(fn, [word, vptr, ir.Constant(I32, 4), mask])
                if correct:
                    assert total is not None
                    b.store(b.add(b.load(acc), total), acc)
            if correct:
                fn = intrinsic(b.module, f"llvm.vector.reduce.add.{type_suffix(self.wty)}", I32, [self.wty])
                s = b.call(fn, [b.load(acc)])
                b.store(b.mul(s, ir.Constant(I32, -self.beta)), b.gep(self.rowcorr, [r]))

    def _vptr(self, base: ir.Value, j: ir.Value) -> ir.Value:
        return self.b.bitcast(self.b.gep(base, [j]), self.wty.as_pointer())

    # -- the micro-kernel and the tile's store -----------------------------------------------

    def _dot(self, acc: ir.Value, a: ir.Value, bv: ir.Value) -> ir.Value:
        b = self.b
        if self.int8:
            fn = intrinsic(b.module, "llvm.x86.avx512.vpdpbusd.512", self.wty, [self.wty] * 3)
        else:
            fn = intrinsic(b.module, "llvm.x86.avx512bf16.dpbf16ps.512", self.vty, [self.vty, self.wty, self.wty])
        return b.call(fn, [acc, a, bv])

    def tile(self, ic, ir_, mcur, jc, jr, ncur, kg, first, mr: int) -> None:
        """The ``mr x NV``-vector tile at rows ``ir_`` and panel ``jr`` of the blocks: its
        products over the slice's ``kg`` words, stored (first slice) or added into C."""
        b = self.b
        for row in self.accs[:mr]:
            for slot in row:
                b.store(const(self.vty, 0), slot)
        apan = b.gep(self.ap, [b.mul(ir_, kg)])
        bpan = b.gep(self.bp, [b.mul(jr, kg)])          # panel jr / NR starts at jr * kg words
        with for_range(b, _c(0), kg, 1, name="g") as g:
            bvs = [b.load(self._vptr(bpan, b.add(b.mul(g, _c(NR)), _c(LANES * v))), align=64) for v in range(NV)]
            for r in range(mr):
                word = b.load(b.gep(apan, [b.add(b.mul(_c(r), kg), g)]))
                a = splat(b, word, LANES)
                for v in range(NV):
                    slot = self.accs[r][v]
                    b.store(self._dot(b.load(slot), a, bvs[v]), slot)
        rows = b.sub(mcur, ir_)
        cols = b.sub(ncur, jr)
        corr = []
        if self.alpha != 0:
            corr = [b.load(self._vptr(self.colcorr, b.add(jr, _c(LANES * v))), align=64) for v in range(NV)]
        masks = [lane_mask(b, LANES, b.sub(cols, _c(LANES * v))) for v in range(NV)]
        fn_load = intrinsic(b.module, f"llvm.masked.load.{type_suffix(self.vty)}.p0", self.vty,
                            [self.vty.as_pointer(), I32, masks[0].type, self.vty])
        fn_store = intrinsic(b.module, f"llvm.masked.store.{type_suffix(self.vty)}.p0", ir.VoidType(),
                             [self.vty, self.vty.as_pointer(), I32, masks[0].type])
        for r in range(mr):
            live = b.icmp_signed("<", _c(r), rows)
            with b.if_then(live):
                i = b.add(b.add(ic, ir_), _c(r))
                rowc = None
                if self.beta != 0:
                    rowc = splat(b, b.load(b.gep(self.rowcorr, [b.add(ir_, _c(r))])), LANES)
                for v in range(NV):
                    val = b.load(self.accs[r][v])
                    if corr:
                        val = b.add(val, corr[v])
                    if rowc is not None:
                        val = b.add(val, rowc)
                    ptr = b.gep(self.c, [b.add(b.mul(i, self.n), b.add(b.add(jc, jr), _c(LANES * v)))])
                    vptr = b.bitcast(ptr, self.vty.as_pointer())
                    old = b.call(fn_load, [vptr, ir.Constant(I32, 4), masks[v], const(self.vty, 0)])
                    summed = b.add(old, val) if self.int8 else b.fadd(old, val)
                    b.call(fn_store, [b.select(first, val, summed), vptr, ir.Constant(I32, 4), masks[v]])


__all__ = ["LowpMatmul", "lowp_kernel", "native", "scratch_bytes", "scratch_bound", "task_count",
           "emit_lowp_matmul"]
