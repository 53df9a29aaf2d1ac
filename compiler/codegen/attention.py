"""LLVM code for fused attention (:class:`~.loops.Attention`), and its lowering.

*Forward* (FlashAttention's loop, one query block at a time): the queries of a head go in
blocks of ``R`` rows; for each block the keys go in blocks of ``V x W`` (``BLOCKS``).  A
block's scores are ``R x V`` vector accumulators, ``s += q[r, d] * kt[d, j..j+W]``
over ``d`` (``kt`` is ``k`` with its last two axes swapped, stored once, so ``W`` keys' scores
are one vector and no horizontal sum is needed).  The scores are scaled and masked (keys past
``Tk``, the causal rule, the bool mask: ``-inf``); each row keeps a running maximum ``m`` and
sum ``l``: with the block's maximum ``m'``, the row's accumulator and ``l`` are rescaled by
``exp(m - m')``, the probabilities ``p = exp(s - m')`` are added to ``l`` and their weighted
values ``p[j] * v[j, :]`` (vectors over ``Dv``) to the accumulator.  At the end ``out = acc /
l`` (0 where no key was allowed: ``l = 0``).  The scores never leave registers and a small
stack block: memory is O(T*D) per head.  With ``causal``, key blocks wholly above the
diagonal are skipped.

*Backward* (one task per head, so ``dk`` and ``dv`` accumulate in one fixed order): per
query block, a first sweep over the keys finds each row's log-sum-exp ``lse``; the second
recomputes ``p = exp(s - lse)`` and ``dp = do @ v^T`` (through ``vt``, as the scores), forms
``ds = scale * p * (dp - rowsum(do * o))``, and adds ``p^T do`` to ``dv``, ``ds^T q`` to ``dk``
and ``ds k`` to the block's ``dq`` accumulators.

Every head is computed by one task in a fixed order whatever the thread count, so results do
not depend on it.  Tasks split over the batch axes (``B x H`` heads).
"""

from __future__ import annotations

import math

from llvmlite import ir

from ..ir.core import Op, Value
from ..ir.types import DType
from ..ops.attention import attention_scale
from .emitter import Emitter
from .kernels import (
    Bounds,
    KernelContext,
    Split,
    _horizontal,
    alloca,
    lane_mask,
    load_vector,
    run_split,
    store_vector,
)
from .llvmutil import I8, I64, const, for_range, splat, value_type
from .loops import Attention, Buffer, Const, Elementwise, Load, identity_index, remap
from .vmath import exp_nonpositive

# (query rows, key vectors of W keys) per block: the forward's scores are rows x vectors
# accumulators, the backward also holds rows x D/W accumulators of dq
BLOCKS = {"forward": (6, 3), "backward": (6, 2)}


# ---------------------------------------------------------------------------
# lowering


def lower_attention(L, op: Op) -> None:
    """The ``attention`` kernel family: ``attention`` and ``attention_grad``, one
    :class:`Attention` kernel each, reading its operands from memory in place (:func:`_view`)
    plus transposed copies of ``k``, and of ``v`` for the gradient, and writing its results
    where their users want them (:func:`_output`)."""
    q, k, v, mask = op.operands[:4]
    scale = attention_scale(op.attrs["scale"], q.type.shape[-1])
    causal = op.attrs["causal"]
    index: dict[str, tuple[int, ...]] = {}
    shapes = {"q": q.type.shape, "k": k.type.shape, "v": v.type.shape}
    qb, kb, vb = (_view(L, x, name, index) for x, name in ((q, "q"), (k, "k"), (v, "v")))
    maskb = None if _all_true(L, mask) else _dense(L, mask)
    if op.name == "attention":
        kt = _swapped(L, k)
        out = _output(L, op.result, "out", index)
        lse = L.temp(q.type.dtype, q.type.shape[:-1]) if _has_gradient(L, op) else None
        L.add_kernel(Attention(out, "forward", qb, kb, vb, kt, maskb, scale, causal, lse=lse, index=index,
                               shapes=shapes))
        return
    o, do = (_view(L, x, name, index) for x, name in zip(op.operands[4:6], ("o", "do")))
    forward = _forward_kernel(L, op, o)
    kt = forward.kt if forward is not None else _swapped(L, k)
    dq, dk, dv = (_output(L, r, name, index) for r, name in zip(op.results, ("dq", "dk", "dv")))
    L.add_kernel(Attention(dq, "backward", qb, kb, vb, kt, maskb, scale, causal, vt=_swapped(L, v),
                           o=o, do=do, extra=(dk, dv), lse=forward.lse if forward is not None else None,
                           index=index, shapes=shapes))


def _has_gradient(L, op: Op) -> bool:
    """Whether an ``attention_grad`` of this function differentiates ``op`` (it then reads
    the row log-sum-exp the forward kernel stores, instead of recomputing it)."""
    return any(g.name == "attention_grad" and _differentiates(g, op) for g in L.func.ops)


def _differentiates(grad: Op, forward: Op) -> bool:
    return (grad.operands[4] is forward.result and grad.operands[:4] == forward.operands
            and grad.attrs == forward.attrs)


def _forward_kernel(L, op: Op, o: Buffer) -> Attention | None:
    """The forward kernel of the attention the gradient ``op`` differentiates (whose output
    ``o`` it reads), if this function computes it: its ``kt`` and log-sum-exp are reused."""
    if not any(f.name == "attention" and _differentiates(op, f) for f in L.func.ops):
        return None
    for kernel in L.kernels:
        if isinstance(kernel, Attention) and kernel.kind == "forward" and kernel.out is o \
                and kernel.lse is not None:
            return kernel
    return None


def _dense(L, x: Value) -> Buffer:
    expr = L.expr(x)
    if isinstance(expr, Load) and expr.index == identity_index(x.type.rank) \
            and tuple(expr.buffer.shape) == tuple(x.type.shape):
        return expr.buffer
    return L.buffer(x)


def _view(L, x: Value, name: str, index: dict[str, tuple[int, ...]]) -> Buffer:
    """``x``'s buffer, read in place when ``x`` is a permutation of a buffer's axes that keeps
    the head axis ``D`` last (``transpose(reshape(x @ w), [0, 2, 1, 3])``: the heads of
    ``multi_head_attention``), its index map going to ``index[name]``; else dense."""
    rank = x.type.rank
    expr = L.expr(x)
    if isinstance(expr, Load) and expr.buffer.rank == rank and expr.index != identity_index(rank) \
            and sorted(a for a in expr.index if a is not None) == list(range(rank)) \
            and expr.index[-1] == rank - 1:
        index[name] = tuple(expr.index)
        return expr.buffer
    return _dense(L, x)


def _output(L, v: Value, name: str, index: dict[str, tuple[int, ...]]) -> Buffer:
    """The buffer result ``v`` is written to, and ``v`` defined as a read of it: with the
    last batch axis and the rows swapped (``[N, T, heads, D]``, ``index[name]``) when every use
    of ``v`` transposes it so (``multi_head_attention`` joining its heads: the transpose is
    then a view) or is the gradient kernel (which reads it in place), else dense."""
    from ..ops.layout import resolve_perm

    rank = v.type.rank
    swap = (*range(rank - 3), rank - 2, rank - 3, rank - 1)
    uses = [o for o in L.func.ops if any(u is v for u in o.operands)]

    def joins_heads(o: Op) -> bool:        # or the gradient reading the forward's output
        if o.name == "attention_grad":
            return [i for i, u in enumerate(o.operands) if u is v] == [4]
        return o.name == "transpose" and resolve_perm(o.attrs["perm"], rank) == swap

    if rank >= 3 and not any(out is v for out in L.func.outputs) and uses and all(map(joins_heads, uses)):
        buf = L.temp(v.type.dtype, tuple(v.type.shape[a] for a in swap))
        index[name] = swap
        L.define(v, Load(buf, swap))
        return buf
    buf = L.new_buffer(v)
    L.buffers[v] = buf
    return buf


def _all_true(L, mask: Value) -> bool:
    expr = L.expr(mask)
    return isinstance(expr, Const) and bool(expr.value)


def _swapped(L, x: Value) -> Buffer:
    """A temporary holding ``x`` with its last two axes swapped (an elementwise copy)."""
    rank = x.type.rank
    shape = (*x.type.shape[:-2], x.type.shape[-1], x.type.shape[-2])
    amap: list[int | None] = [*range(rank - 2), rank - 1, rank - 2]
    out = L.temp(x.type.dtype, shape)
    L.add_kernel(Elementwise(out, shape, remap(L.expr(x), amap)))
    return out


# ---------------------------------------------------------------------------
# code


def emit_attention(kc: KernelContext, k: Attention) -> None:
    """Attention kernel ``k`` (see the module docstring), split into tasks over its heads."""
    batch = list(k.shapes["q"][:-2])
    d, dv = k.shapes["q"][-1], k.shapes["v"][-1]
    iterations = [*batch, k.shapes["q"][-2], k.shapes["k"][-2]]
    cost = 2 * (d + dv) * (3 if k.kind == "backward" else 1)
    run_split(kc, iterations, cost, Split(batch, 1) if batch else None,
              lambda kc_, bounds: _Heads(kc_, k).emit(bounds))


class _Heads:
    """Emits the loop over heads and, per head, the forward or backward computation."""

    def __init__(self, kc: KernelContext, k: Attention):
        self.kc, self.k, self.b = kc, k, kc.b
        self.dtype: DType = k.q.dtype
        self.w = max(kc.lanes, 1)
        self.ev = Emitter(self.b, self.w, self.dtype)      # vectors
        self.es = Emitter(self.b, 1, self.dtype)           # scalars
        self.vty = value_type(self.dtype, self.w)
        self.sty = value_type(self.dtype, 1)
        self.d, self.dv = k.shapes["q"][-1], k.shapes["v"][-1]
        self.tq, self.tk = kc.dim(k.shapes["q"][-2]), kc.dim(k.shapes["k"][-2])
        self.row_count, self.key_vectors = BLOCKS[k.kind]
        outputs = {"out": k.out} if k.kind == "forward" else dict(zip(("dq", "dk", "dv"), (k.out, *k.extra)))
        named = {"q": k.q, "k": k.k, "v": k.v, "o": k.o, "do": k.do, **outputs}
        self.operands = {name: buf for name, buf in named.items() if buf is not None}
        self.block = self.key_vectors * self.w
        self.offset = self.b.sub(self.tk, self.tq)         # causal: key j <= i + (Tk - Tq)

    # -- small helpers -------------------------------------------------------------------

    def i64(self, value: int) -> ir.Constant:
        return ir.Constant(I64, value)

    def at(self, buf: Buffer, offset: ir.Value) -> ir.Value:
        return self.b.gep(self.kc.pointer(buf), [offset], inbounds=True)

    def mul(self, a: ir.Value, c) -> ir.Value:
        return self.b.mul(a, c if isinstance(c, ir.Value) else self.i64(c), flags=["nsw"])

    def add(self, a: ir.Value, c) -> ir.Value:
        return self.b.add(a, c if isinstance(c, ir.Value) else self.i64(c), flags=["nsw"])

    def slots(self, count: int, ty: ir.Type, value: float) -> list[ir.Value]:
        out = [alloca(self.b, ty) for _ in range(count)]
        for s in out:
            self.b.store(const(ty, value), s)
        return out

    def set_all(self, slots: list[ir.Value], value: float) -> None:
        for s in slots:
            self.b.store(const(s.type.pointee, value), s)

    def row_vectors(self, n: int) -> list[tuple[int, ir.Value | None]]:
        """The vectors of a row of ``n`` (static) elements: ``(offset, lane mask or None)``."""
        out = []
        for c in range(0, n, self.w):
            tail = n - c
            out.append((c, None if tail >= self.w else lane_mask(self.b, self.w, self.i64(tail))))
        return out

    def load(self, buf: Buffer, offset: ir.Value, mask: ir.Value | None) -> ir.Value:
        return load_vector(self.b, self.at(buf, offset), self.w, mask)

    def store(self, value: ir.Value, buf: Buffer, offset: ir.Value, mask: ir.Value | None) -> None:
        store_vector(self.b, value, self.at(buf, offset), mask)

    # -- heads and rows ------------------------------------------------------------------

    def emit(self, bounds: Bounds | None) -> None:
        b, kc = self.b, self.kc
        lo, hi = bounds if bounds is not None else (self.i64(0), kc.product(self.k.shapes["q"][:-2]))
        with for_range(b, lo, hi, name="head") as h:
            self.head = h
            self.mask_base = self.mask_offset(h)
            self.views = {name: self.view(name, h) for name in self.operands}
            if self.k.kind == "forward":
                self.forward_head()
            else:
                self.backward_head()

    def view(self, name: str, h: ir.Value) -> tuple[ir.Value, ir.Value]:
        """Operand ``name`` at head ``h``: the offset of its row 0 and its row stride.  The
        buffer holds it in any axis order whose last axis is ``D`` (``Attention.index``): the
        heads of ``multi_head_attention`` are read where the projection wrote them."""
        buf, kc = self.operands[name], self.kc
        rank = len(self.k.shapes["q"])
        index = self.k.index.get(name, identity_index(rank))
        buffer_strides = kc.strides(buf)
        strides = [buffer_strides[index.index(a)] for a in range(rank)]
        batch = self.k.shapes["q"][:-2]
        offset: ir.Value = self.i64(0)
        rest = h
        for a in reversed(range(len(batch))):
            dim = kc.dim(batch[a])
            offset = self.add(offset, self.mul(self.b.srem(rest, dim), strides[a]))
            rest = self.b.sdiv(rest, dim)
        return offset, strides[rank - 2]

    def row(self, name: str, i: ir.Value) -> ir.Value:
        """The offset of row ``i`` of operand ``name`` in the current head."""
        base, stride = self.views[name]
        return self.add(base, self.mul(i, stride))

    def mask_strides(self) -> list[ir.Value]:
        """Element strides of the mask over ``[*batch, Tq, Tk]`` (0 along broadcast axes)."""
        mask, kc = self.k.mask, self.kc
        full = (*self.k.shapes["q"][:-1], self.k.shapes["k"][-2])
        lead = len(full) - mask.rank
        strides = kc.strides(mask)
        out = []
        for a, dim in enumerate(full):
            j = a - lead
            broadcast = j < 0 or (mask.shape[j] == 1 and dim != 1)
            out.append(self.i64(0) if broadcast else strides[j])
        return out

    def mask_offset(self, h: ir.Value) -> ir.Value | None:
        """The mask's offset at head ``h`` (its batch indices), or None without a mask."""
        if self.k.mask is None:
            return None
        b = self.b
        batch = self.k.shapes["q"][:-2]
        strides = self.mask_strides()
        self.mask_row_stride, self.mask_key_stride = strides[-2], strides[-1]
        key_stride = self.mask_key_stride
        self.mask_keys_contiguous = not (isinstance(key_stride, ir.Constant) and key_stride.constant == 0)
        total: ir.Value = self.i64(0)
        rest = h
        for a in reversed(range(len(batch))):
            dim = self.kc.dim(batch[a])
            index = b.srem(rest, dim)
            rest = b.sdiv(rest, dim)
            total = self.add(total, self.mul(index, strides[a]))
        return total

    def rows(self, i0: ir.Value) -> list[tuple[ir.Value, ir.Value]]:
        """The block's rows ``i0 + r`` clamped to ``Tq - 1``, each with whether it is real."""
        b = self.b
        last = b.sub(self.tq, self.i64(1))
        out = []
        for r in range(self.row_count):
            i = self.add(i0, r)
            real = b.icmp_signed("<", i, self.tq)
            out.append((b.select(real, i, last), real))
        return out

    def key_end(self, rows: list[tuple[ir.Value, ir.Value]]) -> ir.Value:
        """One past the last key any row of the block may see."""
        if not self.k.causal:
            return self.tk
        b = self.b
        last_row = rows[0][0]
        for i, real in rows[1:]:
            last_row = b.select(real, i, last_row)
        end = self.add(self.add(last_row, self.offset), 1)
        end = b.select(b.icmp_signed("<", end, self.tk), end, self.tk)
        return b.select(b.icmp_signed("<", end, self.i64(0)), self.i64(0), end)

    def key_blocks(self, rows, end: ir.Value, body) -> None:
        """``body(j0, count, mode)`` over the key blocks of ``[0, end)``: whole blocks that no
        rule masks (``plain``: every row real, no mask buffer, below the causal diagonal for
        every row), the other whole blocks (``edge``), then the remainder (``tail``: its lanes
        past ``count`` are masked too)."""
        b = self.b
        block = self.i64(self.block)
        whole = b.mul(b.sdiv(end, block), block)
        plain_end = self.plain_end(rows, whole)
        with for_range(b, 0, plain_end, self.block, name="plain_keys") as j0:
            body(j0, block, "plain")
        with for_range(b, plain_end, whole, self.block, name="keys") as j0:
            body(j0, block, "edge")
        with b.if_then(b.icmp_signed("<", whole, end)):
            body(whole, b.sub(end, whole), "tail")

    def plain_end(self, rows, whole: ir.Value) -> ir.Value:
        """Where the plain key blocks end: 0 with a mask buffer or a row past ``Tq``; with
        ``causal``, the whole blocks wholly at or below the first row's diagonal."""
        b = self.b
        if self.k.mask is not None:
            return self.i64(0)
        limit = whole
        if self.k.causal:
            seen = self.add(self.add(rows[0][0], self.offset), 1)      # keys the first row sees
            seen = b.select(b.icmp_signed("<", seen, self.i64(0)), self.i64(0), seen)
            seen = b.mul(b.sdiv(seen, self.i64(self.block)), self.i64(self.block))
            limit = b.select(b.icmp_signed("<", seen, whole), seen, whole)
        return b.select(rows[-1][1], limit, self.i64(0))

    # -- scores --------------------------------------------------------------------------

    def scores(self, src: str, width: int, rows, j0: ir.Value, count: ir.Value, tail: bool,
               t_buf: Buffer, t_base: ir.Value) -> list[list[ir.Value]]:
        """``src[row] . t_buf[:, j0 + c*W ..]`` for each row and key vector (``src`` an
        operand's name, ``t_buf`` the transposed operand of ``width`` rows of ``Tk``): R x V
        vectors."""
        src_rows = self.operands[src]
        b = self.b
        acc = self.slots(self.row_count * self.key_vectors, self.vty, 0.0)
        masks = [self.key_lanes(count, c) if tail else None for c in range(self.key_vectors)]
        row_base = [self.row(src, i) for i, _ in rows]
        with for_range(b, 0, width, name="dot") as dd:
            base = self.add(t_base, self.mul(dd, self.tk))
            keys = [self.load(t_buf, self.add(self.add(base, j0), c * self.w), masks[c])
                    for c in range(self.key_vectors)]
            for r in range(self.row_count):
                x = splat(b, b.load(self.at(src_rows, self.add(row_base[r], dd))), self.w)
                for c in range(self.key_vectors):
                    slot = acc[r * self.key_vectors + c]
                    b.store(self.ev.fma(x, keys[c], b.load(slot)), slot)
        return [[b.load(acc[r * self.key_vectors + c]) for c in range(self.key_vectors)] for r in range(self.row_count)]

    def key_lanes(self, count: ir.Value, c: int) -> ir.Value:
        """The lanes of key vector ``c`` below ``count`` keys."""
        return lane_mask(self.b, self.w, self.b.sub(count, self.i64(c * self.w)))

    def allowed(self, row: tuple[ir.Value, ir.Value], j: ir.Value, count: ir.Value, c: int,
                tail: bool) -> ir.Value:
        """Which keys ``j .. j+W`` row ``row`` may attend (a real row, a key below ``Tk``,
        the causal rule, the mask)."""
        b = self.b
        i, real = row
        keep = splat(b, real, self.w)
        if tail:
            keep = b.and_(keep, self.key_lanes(count, c))
        if self.k.causal:
            lanes = ir.Constant(ir.VectorType(I64, self.w), list(range(self.w)))
            keys = b.add(splat(b, j, self.w), lanes)
            limit = splat(b, self.add(i, self.offset), self.w)
            keep = b.and_(keep, b.icmp_signed("<=", keys, limit))
        if self.k.mask is not None:
            keep = b.and_(keep, self.mask_lanes(i, j, count, c, tail))
        return keep

    def mask_lanes(self, i: ir.Value, j: ir.Value, count: ir.Value, c: int, tail: bool) -> ir.Value:
        b = self.b
        offset = self.add(self.mask_base, self.mul(i, self.mask_row_stride))
        if not self.mask_keys_contiguous:
            value = b.load(self.at(self.k.mask, offset))
            return splat(b, b.icmp_unsigned("!=", value, ir.Constant(I8, 0)), self.w)
        lanes = self.key_lanes(count, c) if tail else None
        vec = load_vector(b, self.at(self.k.mask, self.add(offset, self.mul(j, self.mask_key_stride))),
                          self.w, lanes)
        return b.icmp_unsigned("!=", vec, const(vec.type, 0))

    def query_scores(self, rows, j0: ir.Value, count: ir.Value, mode: str, kt_base: ir.Value
                     ) -> list[list[ir.Value]]:
        """The block's scaled and masked scores ``q . k``."""
        s = self.scores("q", self.d, rows, j0, count, mode == "tail", self.k.kt, kt_base)
        return self.masked_scores(s, rows, j0, count, mode)

    def statistics_slots(self) -> tuple[list[ir.Value], list[ir.Value]]:
        """Each row's running maximum ``m`` and sum ``l`` (see :meth:`online_update`)."""
        return self.slots(self.row_count, self.sty, -math.inf), self.slots(self.row_count, self.sty, 0.0)

    def reset_statistics(self, m_slots: list[ir.Value], l_slots: list[ir.Value]) -> None:
        self.set_all(m_slots, -math.inf)
        self.set_all(l_slots, 0.0)

    def masked_scores(self, s: list[list[ir.Value]], rows, j0: ir.Value, count: ir.Value,
                      mode: str) -> list[list[ir.Value]]:
        """Scaled scores, ``-inf`` where a key is not allowed (none is in a ``plain`` block)."""
        b = self.b
        if mode == "plain":
            return [[self.ev.mul(x, self.k.scale) for x in line] for line in s]
        tail = mode == "tail"
        out = []
        for r, row in enumerate(rows):
            line = []
            for c in range(self.key_vectors):
                x = self.ev.mul(s[r][c], self.k.scale)
                keep = self.allowed(row, self.add(j0, c * self.w), count, c, tail)
                line.append(b.select(keep, x, const(self.vty, -math.inf)))
            out.append(line)
        return out

    def row_max(self, line: list[ir.Value]) -> ir.Value:
        v = line[0]
        for x in line[1:]:
            v = self.ev.max(v, x)
        return _horizontal(self.ev, "max", v)

    def row_sum(self, line: list[ir.Value]) -> ir.Value:
        v = line[0]
        for x in line[1:]:
            v = self.ev.add(v, x)
        return _horizontal(self.ev, "sum", v)

    def finite_or_zero(self, m: ir.Value) -> ir.Value:
        """``m``, or 0 where it is ``-inf`` (no key allowed yet: ``exp(-inf - 0) = 0``)."""
        return self.b.select(self.b.fcmp_ordered("==", m, const(self.sty, -math.inf)), const(self.sty, 0.0), m)

    def online_update(self, r: int, line: list[ir.Value], m_slot, l_slot) -> tuple[list[ir.Value], ir.Value]:
        """Fold a block's masked scores into row ``r``'s running ``(m, l)``: returns the
        block's probabilities ``exp(s - m')`` and the factor ``exp(m - m')``."""
        b = self.b
        m_old = b.load(m_slot)
        m_new = self.es.max(m_old, self.row_max(line))
        m_use = self.finite_or_zero(m_new)
        corr = exp_nonpositive(self.b, self.es.sub(m_old, m_use))
        p = [exp_nonpositive(self.b, self.ev.sub(x, splat(b, m_use, self.w))) for x in line]
        b.store(self.es.fma(b.load(l_slot), corr, self.row_sum(p)), l_slot)
        b.store(m_new, m_slot)
        return p, corr

    # -- forward -------------------------------------------------------------------------

    def forward_head(self) -> None:
        b, k = self.b, self.k
        h = self.head
        kt_base = self.mul(h, self.mul(self.tk, self.d))        # kt is dense
        vecs = self.row_vectors(self.dv)
        acc = self.slots(self.row_count * len(vecs), self.vty, 0.0)
        m_slots, l_slots = self.statistics_slots()
        p_block = alloca(b, ir.ArrayType(self.sty, self.row_count * self.block))
        with for_range(b, 0, self.tq, self.row_count, name="qblock") as i0:
            rows = self.rows(i0)
            self.set_all(acc, 0.0)
            self.reset_statistics(m_slots, l_slots)

            def block(j0: ir.Value, count: ir.Value, mode: str) -> None:
                s = self.query_scores(rows, j0, count, mode, kt_base)
                for r in range(self.row_count):
                    p, corr = self.online_update(r, s[r], m_slots[r], l_slots[r])
                    self.spill(p_block, r, p)
                    factor = splat(b, corr, self.w)
                    for c in range(len(vecs)):
                        slot = acc[r * len(vecs) + c]
                        b.store(self.ev.mul(b.load(slot), factor), slot)
                with for_range(b, 0, count, name="key") as jj:
                    row = self.row("v", self.add(j0, jj))
                    values = [self.load(k.v, self.add(row, c), mask) for c, mask in vecs]
                    for r in range(self.row_count):
                        p = splat(b, self.spilled(p_block, r, jj), self.w)
                        for c, value in enumerate(values):
                            slot = acc[r * len(vecs) + c]
                            b.store(self.ev.fma(p, value, b.load(slot)), slot)

            self.key_blocks(rows, self.key_end(rows), block)
            for r, (i, real) in enumerate(rows):
                with b.if_then(real):
                    if k.lse is not None:
                        b.store(self.log_sum_exp(m_slots[r], l_slots[r]),
                                self.at(k.lse, self.add(self.mul(h, self.tq), i)))
                    total = b.load(l_slots[r])
                    empty = b.fcmp_ordered("==", total, const(self.sty, 0.0))
                    divisor = splat(b, b.select(empty, const(self.sty, 1.0), total), self.w)
                    zero = splat(b, empty, self.w)
                    base = self.row("out", i)
                    for c, (offset, mask) in enumerate(vecs):
                        value = self.ev.div(b.load(acc[r * len(vecs) + c]), divisor)
                        value = b.select(zero, const(self.vty, 0.0), value)
                        self.store(value, k.out, self.add(base, offset), mask)

    def spill(self, block: ir.Value, r: int, vectors: list[ir.Value]) -> None:
        """Store row ``r``'s vectors into the stack block."""
        b = self.b
        for c, x in enumerate(vectors):
            ptr = b.gep(block, [self.i64(0), self.i64(r * self.block + c * self.w)], inbounds=True)
            store_vector(b, x, ptr, None)

    def spilled(self, block: ir.Value, r: int, jj: ir.Value) -> ir.Value:
        b = self.b
        return b.load(b.gep(block, [self.i64(0), self.add(jj, r * self.block)], inbounds=True))

    # -- backward ------------------------------------------------------------------------

    def backward_head(self) -> None:
        b, k = self.b, self.k
        dk, dv_out = k.extra
        h = self.head
        k_base = self.mul(h, self.mul(self.tk, self.d))         # kt and vt are dense
        v_base = self.mul(h, self.mul(self.tk, self.dv))
        self.zero_rows("dk", self.d)
        self.zero_rows("dv", self.dv)
        dvecs, vvecs = self.row_vectors(self.d), self.row_vectors(self.dv)
        dq_acc = self.slots(self.row_count * len(dvecs), self.vty, 0.0)
        m_slots, l_slots = self.statistics_slots()
        p_block = alloca(b, ir.ArrayType(self.sty, self.row_count * self.block))
        ds_block = alloca(b, ir.ArrayType(self.sty, self.row_count * self.block))
        with for_range(b, 0, self.tq, self.row_count, name="qblock") as i0:
            rows = self.rows(i0)
            end = self.key_end(rows)
            self.set_all(dq_acc, 0.0)
            self.reset_statistics(m_slots, l_slots)

            def statistics(j0: ir.Value, count: ir.Value, mode: str) -> None:
                s = self.query_scores(rows, j0, count, mode, k_base)
                for r in range(self.row_count):
                    self.online_update(r, s[r], m_slots[r], l_slots[r])

            lse, delta = [], []
            if k.lse is None:
                self.key_blocks(rows, end, statistics)
                lse = [self.log_sum_exp(m_slots[r], l_slots[r]) for r in range(self.row_count)]
            else:
                lse = [b.load(self.at(k.lse, self.add(self.mul(h, self.tq), i))) for i, _ in rows]
            for i, _real in rows:
                o_row, do_row = self.row("o", i), self.row("do", i)
                prods = [self.ev.mul(self.load(k.do, self.add(do_row, c), m), self.load(k.o, self.add(o_row, c), m))
                         for c, m in vvecs]
                delta.append(self.row_sum(prods))

            def gradients(j0: ir.Value, count: ir.Value, mode: str) -> None:
                s = self.query_scores(rows, j0, count, mode, k_base)
                dp = self.scores("do", self.dv, rows, j0, count, mode == "tail", k.vt, v_base)
                for r in range(self.row_count):
                    p = [exp_nonpositive(self.b, self.ev.sub(x, splat(b, lse[r], self.w))) for x in s[r]]
                    ds = [self.ev.mul(self.ev.mul(pc, self.ev.sub(dpc, splat(b, delta[r], self.w))), k.scale)
                          for pc, dpc in zip(p, dp[r])]
                    self.spill(p_block, r, p)
                    self.spill(ds_block, r, ds)
                with for_range(b, 0, count, name="key") as jj:
                    j = self.add(j0, jj)
                    ps = [splat(b, self.spilled(p_block, r, jj), self.w) for r in range(self.row_count)]
                    dss = [splat(b, self.spilled(ds_block, r, jj), self.w) for r in range(self.row_count)]
                    self.accumulate_key(dv_out, self.row("dv", j), vvecs, ps,
                                        k.do, [self.row("do", i) for i, _ in rows])
                    self.accumulate_key(dk, self.row("dk", j), dvecs, dss,
                                        k.q, [self.row("q", i) for i, _ in rows])
                    key_row = self.row("k", j)
                    for c, (offset, mask) in enumerate(dvecs):
                        key = self.load(k.k, self.add(key_row, offset), mask)
                        for r in range(self.row_count):
                            slot = dq_acc[r * len(dvecs) + c]
                            b.store(self.ev.fma(dss[r], key, b.load(slot)), slot)

            self.key_blocks(rows, end, gradients)
            for r, (i, real) in enumerate(rows):
                with b.if_then(real):
                    base = self.row("dq", i)
                    for c, (offset, mask) in enumerate(dvecs):
                        self.store(b.load(dq_acc[r * len(dvecs) + c]), k.out, self.add(base, offset), mask)

    def log_sum_exp(self, m_slot: ir.Value, l_slot: ir.Value) -> ir.Value:
        """A row's ``m + log(l)``, or +inf where no key is allowed (``l = 0``: every
        ``exp(s - lse)`` is then 0)."""
        b = self.b
        total = b.load(l_slot)
        value = self.es.add(self.finite_or_zero(b.load(m_slot)), self.es.log(total))
        return b.select(b.fcmp_ordered("==", total, const(self.sty, 0.0)), const(self.sty, math.inf), value)

    def accumulate_key(self, out: Buffer, out_row: ir.Value, vecs, weights: list[ir.Value],
                       src: Buffer, src_rows: list[ir.Value]) -> None:
        """``out[out_row, :] += sum_r weights[r] * src[src_rows[r], :]`` (rows in order)."""
        for offset, mask in vecs:
            ptr = self.add(out_row, offset)
            total = self.load(out, ptr, mask)
            for r in range(self.row_count):
                total = self.ev.fma(weights[r], self.load(src, self.add(src_rows[r], offset), mask), total)
            self.store(total, out, ptr, mask)

    def zero_rows(self, name: str, width: int) -> None:
        """Rows ``[0, Tk)`` of output ``name`` (``width`` elements each) = 0."""
        zero = const(self.vty, 0.0)
        with for_range(self.b, 0, self.tk, name="zero") as j:
            row = self.row(name, j)
            for offset, mask in self.row_vectors(width):
                self.store(zero, self.operands[name], self.add(row, offset), mask)


__all__ = ["BLOCKS", "emit_attention", "lower_attention"]
