"""LLVM code for the elementwise and reduction kernels of loop IR.

Each kernel becomes an internal LLVM function.  Loop nests are written so the
innermost loop runs over contiguous memory, ``W`` lanes at a time (explicit
``<W x T>`` vectors, W from the target: 16 f32 lanes on AVX-512), with one
masked iteration for the tail, so every shape is handled and nothing is left
to the auto-vectoriser.

*Axis collapsing*: adjacent loop axes that every load walks contiguously (or
broadcasts over entirely) merge into one, so ``[N, 512] + [N, 512]`` is one
flat loop and a bias add ``[N, 10] + [10]`` keeps two.

*Loads* per vector iteration are: a vector load (the innermost axis walks the
buffer's last dim), a scalar load splat to all lanes (the buffer does not
depend on the innermost axis; LLVM hoists it), or -- when the innermost axis
strides through memory (a transpose) -- the whole kernel runs scalar.
*Takes* (reads at computed coordinates) are a vector load when the last
coordinate is the innermost loop index plus or minus an invariant (a slice
with step 1, a flip: reversed lanes, a gathered row), masked to the lanes
inside the guard clamps around it (a part of a concatenation along the last
axis, ``loops.GUARD``); any other take makes the kernel run scalar, as a
strided load does.

*Reductions* keep several vector accumulators: with the innermost axis
reduced, 4 x W partial results per output element, combined by a shuffle
tree at the end; with it kept, a block of 4 x W outputs accumulates in
registers while the reduced axes are walked.  ``argmax``/``argmin`` run scalar.

*Tasks* (:func:`run_split`): a kernel with enough work runs as tasks on the
module's thread pool (threads.py), split over its outermost loop -- for a
reduction, over output elements only, so each output is reduced whole by one
task in the serial order and results do not depend on the thread count.  A
large reduction to one element sums fixed chunks (bounds from the size only)
into slots that are combined in order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from llvmlite import ir

from ..ir.dims import DimExpr
from ..ir.types import Dim, DType
from ..ops.base import get_op
from . import storage
from .emitter import Emitter, from_memory, to_memory
from .llvmutil import I32, I64, const, for_range, intrinsic, memory_type, splat, type_suffix, value_type
from .loops import (
    EXPENSIVE,
    GUARD,
    Acc,
    Apply,
    Buffer,
    Const,
    DimValue,
    Elementwise,
    Expr,
    Iota,
    Load,
    Reduce,
    Take,
    loads,
    remap,
    walk,
)
from .threads import parallel_call, pool
from .threads import split as split_range

UNROLL = 4          # vector accumulators per reduction
SUM_BLOCK = 64      # steps a float sum adds into its partial sums before folding them (_row)


# ---------------------------------------------------------------------------
# Kernel context: pointers, dims, strides


class KernelContext:
    """What kernel code needs from its LLVM function: buffer pointers and dim values."""

    def __init__(self, b: ir.IRBuilder, storage: dict[Buffer, ir.Value], symbols: dict[str, ir.Value],
                 lanes: int, scratch: ir.Value | None = None):
        self.b = b
        self.storage = storage
        self.symbols = symbols
        self.lanes = lanes
        self.scratch = scratch
        # (t, ntasks) when the kernel body is one task of a parallel kernel (see threads.py)
        self.task: tuple[ir.Value, ir.Value] | None = None
        self.entry = b.block        # cached values are built here, so they dominate every use
        self._ptrs: dict[Buffer, ir.Value] = {}
        self._strides: dict[Buffer, list[ir.Value]] = {}
        self._dims: dict[DimExpr, ir.Value] = {}

    def dim(self, d: Dim) -> ir.Value:
        """A dim's value: a constant, a symbol's argument, or an expression of symbols
        (``max(N-1,0)``) computed once in the entry block."""
        if isinstance(d, int):
            return ir.Constant(I64, d)
        if isinstance(d, str):
            return self.symbols[d]
        if d not in self._dims:
            args = [self.dim(a) for a in d.args]        # first: each goes to the entry block itself
            with self.b.goto_block(self.entry):
                self._dims[d] = self._dim_expr(d, args)
        return self._dims[d]

    def _dim_expr(self, d: DimExpr, args: list[ir.Value]) -> ir.Value:
        b = self.b
        if d.op == "add":
            out = args[0]
            for a in args[1:]:
                out = b.add(out, a)
            return out
        if d.op == "mul":
            return b.mul(args[0], args[1])
        if d.op == "floordiv":          # rounding down: sdiv truncates, so step back on a remainder < 0
            q, r = b.sdiv(args[0], args[1]), b.srem(args[0], args[1])
            return b.sub(q, b.zext(b.icmp_signed("<", r, ir.Constant(I64, 0)), I64))
        if d.op in ("max", "min"):
            out = args[0]
            for a in args[1:]:
                out = b.select(b.icmp_signed(">" if d.op == "max" else "<", out, a), out, a)
            return out
        value, n = args                 # wrap: value + n where value < 0
        return b.select(b.icmp_signed("<", value, ir.Constant(I64, 0)), b.add(value, n), value)

    def product(self, dims) -> ir.Value:
        """The product of ``dims`` (static factors folded)."""
        static = math.prod(d for d in dims if isinstance(d, int))
        out: ir.Value = ir.Constant(I64, static)
        for d in dims:
            if not isinstance(d, int):
                out = self.dim(d) if (isinstance(out, ir.Constant) and out.constant == 1) \
                    else self.b.mul(out, self.dim(d), flags=["nsw"])
        return out

    def pointer(self, buf: Buffer) -> ir.Value:
        """``buf``'s first element, typed."""
        if buf not in self._ptrs:
            raw = self.storage[buf.storage]
            with self.b.goto_block(self.entry):
                self._ptrs[buf] = self.b.bitcast(raw, memory_type(buf.dtype).as_pointer())
        return self._ptrs[buf]

    def strides(self, buf: Buffer) -> list[ir.Value]:
        """Element strides of ``buf``'s dims (row-major)."""
        if buf not in self._strides:
            with self.b.goto_block(self.entry):
                self._strides[buf] = [self.product(buf.shape[k + 1:]) for k in range(buf.rank)]
        return self._strides[buf]


def unit_stride(buf: Buffer, k: int) -> bool:
    """Whether dim ``k`` of ``buf`` has stride 1 (every later dim is a static 1)."""
    return all(d == 1 for d in buf.shape[k + 1:])


def lane_mask(b: ir.IRBuilder, width: int, remaining: ir.Value) -> ir.Value:
    """``<0, 1, .., W-1> < remaining``: the live lanes of a tail iteration."""
    rem = b.trunc(remaining, I32)
    return b.icmp_signed("<", ir.Constant(ir.VectorType(I32, width), list(range(width))),
                         splat(b, rem, width))


def _align(elem: ir.Type) -> int:
    """The natural alignment of one element (vector accesses promise no more)."""
    if isinstance(elem, ir.IntType):
        return max(elem.width // 8, 1)
    return {ir.HalfType: 2, ir.FloatType: 4}.get(type(elem), 8)


def load_vector(b: ir.IRBuilder, ptr: ir.Value, width: int, mask: ir.Value | None) -> ir.Value:
    """``width`` consecutive elements from ``ptr`` (masked lanes read as 0, never touched)."""
    elem = ptr.type.pointee
    vty = ir.VectorType(elem, width)
    vptr = b.bitcast(ptr, vty.as_pointer())
    align = _align(elem)
    if mask is None:
        return b.load(vptr, align=align)
    fn = intrinsic(b.module, f"llvm.masked.load.{type_suffix(vty)}.p0", vty,
                   [vptr.type, I32, mask.type, vty])
    return b.call(fn, [vptr, ir.Constant(I32, align), mask, const(vty, 0)])


def store_vector(b: ir.IRBuilder, value: ir.Value, ptr: ir.Value, mask: ir.Value | None) -> None:
    """Store ``value``'s lanes at ``ptr`` (masked lanes leave memory untouched)."""
    vty = value.type
    elem = vty.element
    vptr = b.bitcast(ptr, vty.as_pointer())
    align = _align(elem)
    if mask is None:
        b.store(value, vptr, align=align)
        return
    fn = intrinsic(b.module, f"llvm.masked.store.{type_suffix(vty)}.p0", ir.VoidType(),
                   [vty, vptr.type, I32, mask.type])
    b.call(fn, [value, vptr, ir.Constant(I32, align), mask])


# ---------------------------------------------------------------------------
# Loop spaces and expression emission


@dataclass
class Space:
    """Loop axes after collapsing: group ``g`` walks original axes ``groups[g]`` as one index."""

    groups: list[list[int]]
    dims: list[list[Dim]] = field(default_factory=list)

    @property
    def group_of(self) -> dict[int, int]:
        return {a: g for g, axes in enumerate(self.groups) for a in axes}

    @staticmethod
    def plain(shape: tuple[Dim, ...]) -> Space:
        return Space([[a] for a in range(len(shape))], [[d] for d in shape])


def collapse(shape: tuple[Dim, ...], exprs: list[Expr], reduced: tuple[int, ...] = ()) -> Space:
    """Merge adjacent axes that all loads walk contiguously (see the module docstring)."""
    groups: list[list[int]] = []
    lds = [ld for e in exprs for ld in loads(e)]
    iotas = {n.axis for e in exprs for n in walk(e) if isinstance(n, Iota)}
    for a in range(len(shape)):
        if groups and _mergeable(a - 1, a, lds, iotas, reduced):
            groups[-1].append(a)
        else:
            groups.append([a])
    return Space(groups, [[shape[a] for a in g] for g in groups])


def _mergeable(a: int, b: int, lds: list[Load], iotas: set[int], reduced: tuple[int, ...]) -> bool:
    if a in iotas or b in iotas or ((a in reduced) != (b in reduced)):
        return False
    for ld in lds:
        pa = [k for k, x in enumerate(ld.index) if x == a]
        pb = [k for k, x in enumerate(ld.index) if x == b]
        if len(pa) > 1 or len(pb) > 1:
            return False
        if not pa and not pb:
            continue
        if not (pa and pb and pb[0] == pa[0] + 1):
            return False
    return True


class ExprEmitter:
    """Emits loop-IR expressions at a loop position, scalar or ``width`` lanes wide."""

    def __init__(self, kc: KernelContext, space: Space, vec_group: int | None):
        self.kc = kc
        self.space = space
        self.vec_group = vec_group
        self.group_of = space.group_of
        self._terms: dict[int, list[tuple[int, ir.Value, bool]]] = {}

    def terms(self, ld: Load) -> list[tuple[int, ir.Value, bool]]:
        """(group, stride, unit) for each group the load's address depends on."""
        key = id(ld)
        if key not in self._terms:
            strides = self.kc.strides(ld.buffer)
            out = []
            for k, a in enumerate(ld.index):
                if a is None:
                    continue
                g = self.group_of[a]
                if a == self.space.groups[g][-1]:
                    out.append((g, strides[k], unit_stride(ld.buffer, k)))
            self._terms[key] = out
        return self._terms[key]

    def vectorizable(self, exprs: list[Expr]) -> bool:
        """Whether every load is contiguous or invariant along the vector group, and every take
        walks its buffer's last dim one element per lane (:meth:`unit_step`)."""
        for e in exprs:
            for ld in loads(e):
                for g, _, unit in self.terms(ld):
                    if g == self.vec_group and not unit:
                        return False
            if any(isinstance(n, Take) and self.unit_step(n) is None for n in walk(e)):
                return False
        return True

    def address(self, ld: Load, index: list[ir.Value]) -> ir.Value:
        b = self.kc.b
        offset: ir.Value | None = None
        for g, stride, unit in self.terms(ld):
            term = index[g] if unit else b.mul(index[g], stride, flags=["nsw"])
            offset = term if offset is None else b.add(offset, term, flags=["nsw"])
        base = self.kc.pointer(ld.buffer)
        return base if offset is None else b.gep(base, [offset], inbounds=True)

    def emit(self, expr: Expr, index: list[ir.Value], width: int,
             mask: ir.Value | None = None, acc: ir.Value | None = None) -> ir.Value:
        """``expr`` at loop position ``index`` (the vector group's entry is the first lane)."""
        b = self.kc.b
        memo: dict[int, ir.Value] = {}

        def go(e: Expr) -> ir.Value:
            if id(e) in memo:
                return memo[id(e)]
            if isinstance(e, Load):
                ptr = self.address(e, index)
                along = [unit for g, _, unit in self.terms(e) if g == self.vec_group]
                if width > 1 and along:
                    assert along[0], "a strided load in a vectorised loop (see vectorizable)"
                    v = load_vector(b, ptr, width, mask)
                else:
                    v = splat(b, b.load(ptr), width)
                out = from_memory(b, v, e.dtype)
            elif isinstance(e, Const):
                out = const(value_type(e.dtype, width), e.value)
            elif isinstance(e, DimValue):
                out = Emitter(b, width, DType.i64).cast(splat(b, self.kc.dim(e.dim), width), e.dtype)
            elif isinstance(e, Iota):
                g = self.group_of[e.axis]
                i = splat(b, index[g], width)
                if width > 1 and g == self.vec_group:
                    i = b.add(i, ir.Constant(ir.VectorType(I64, width), list(range(width))))
                out = Emitter(b, width, DType.i64).cast(i, e.dtype)
            elif isinstance(e, Acc):
                assert acc is not None
                out = acc
            elif isinstance(e, Take):
                out = from_memory(b, self.take(e, index, width, mask, go), e.dtype)
            else:
                assert isinstance(e, Apply)
                args = [go(a) for a in e.args]
                opdef = get_op(e.op)
                out = opdef.emit(Emitter(b, width, e.in_dtype, e.dtype, dict(e.attrs)), *args)
                out = storage.fit(b, out, e.dtype)     # an f16 result rounded, a u8 one wrapped
            memo[id(e)] = out
            return out

        return go(expr)

    # -- takes: reads at computed coordinates --------------------------------------------

    def take(self, t: Take, index: list[ir.Value], width: int, mask: ir.Value | None,
             go: Callable[[Expr], ir.Value]) -> ir.Value:
        """``t``'s elements (in memory form): one scalar load, or -- in a vectorised loop, which
        :meth:`vectorizable` allows only for contiguous takes -- one vector load.  (One load per
        lane was measured slower than running the whole kernel scalar: a concatenation along
        the last axis of [1024, 512] f32 pairs took 1130 us against 268 scalar.)"""
        b = self.kc.b
        if width > 1:
            step = self.unit_step(t)
            assert step is not None, "a strided take in a vectorised loop (see vectorizable)"
            return self._take_vector(t, index, width, mask, step)
        offset = self._offset(t, [go(c) for c in t.index])
        base = self.kc.pointer(t.buffer)
        return b.load(base if offset is None else b.gep(base, [offset], inbounds=True))

    def _offset(self, t: Take, coords: list[ir.Value]) -> ir.Value | None:
        """The element offset of scalar coordinates ``coords`` in ``t.buffer`` (row-major);
        None for a rank-0 buffer."""
        b = self.kc.b
        offset: ir.Value | None = None
        for coord, stride, k in zip(coords, self.kc.strides(t.buffer), range(t.buffer.rank)):
            term = coord if unit_stride(t.buffer, k) else b.mul(coord, stride, flags=["nsw"])
            offset = term if offset is None else b.add(offset, term, flags=["nsw"])
        return offset

    def unit_step(self, t: Take) -> int | None:
        """+1 or -1 when ``t`` walks its buffer's last dim one element forward or backward per
        lane of the vector group (the last coordinate is that loop index plus or minus an
        invariant, every other coordinate invariant), else None.  The last coordinate may be
        wrapped in guard clamps (``loops.GUARD``) when it walks forward: the lanes outside
        them are masked (:meth:`_take_vector`)."""
        if self.vec_group is None or t.buffer.rank == 0:
            return None
        *outer, last = t.index
        if not all(self.invariant(c) for c in outer):
            return None
        last, guards = _unguarded(last)
        if not all(self.invariant(bound) for _, bound in guards):
            return None
        step = None
        if self._is_vec_iota(last):
            step = 1
        elif isinstance(last, Apply) and last.op in ("add", "sub") and len(last.args) == 2:
            x, y = last.args
            if self._is_vec_iota(x) and self.invariant(y):
                step = 1
            elif last.op == "add" and self._is_vec_iota(y) and self.invariant(x):
                step = 1
            elif last.op == "sub" and self._is_vec_iota(y) and self.invariant(x):
                step = -1
        return None if guards and step == -1 else step

    def _is_vec_iota(self, e: Expr) -> bool:
        return isinstance(e, Iota) and self.group_of[e.axis] == self.vec_group

    def invariant(self, e: Expr) -> bool:
        """Whether ``e`` has one value across the lanes of the vector group."""
        for n in walk(e):
            if isinstance(n, Iota) and self.group_of[n.axis] == self.vec_group:
                return False
            if isinstance(n, Load) and any(g == self.vec_group for g, _, _ in self.terms(n)):
                return False
            if isinstance(n, Take):
                return False
        return True

    def _take_vector(self, t: Take, index: list[ir.Value], width: int, mask: ir.Value | None,
                     step: int) -> ir.Value:
        """A contiguous take (see :meth:`unit_step`) as one vector load; reversed lanes for
        ``step == -1`` (the load ends at lane 0's element; masked lanes are never touched)."""
        b = self.kc.b
        last, guards = _unguarded(t.index[-1])
        if guards:
            # lane j reads coordinate c + j; the lanes a guard would clamp are masked (their
            # value is discarded), and no lane outside [lo, hi] is touched
            c = self.emit(last, index, 1)
            offset = self._offset(t, [self.emit(x, index, 1) for x in t.index[:-1]] + [c])
            lanes = b.add(splat(b, c, width), ir.Constant(ir.VectorType(I64, width), list(range(width))))
            for op, bound in guards:
                inside = b.icmp_signed("<=" if op == "minimum" else ">=", lanes,
                                       splat(b, self.emit(bound, index, 1), width))
                mask = inside if mask is None else b.and_(mask, inside)
            # no ``inbounds``: lane 0's address may lie outside the buffer (a masked lane)
            return load_vector(b, b.gep(self.kc.pointer(t.buffer), [offset]), width, mask)
        offset = self._offset(t, [self.emit(c, index, 1) for c in t.index])
        base = self.kc.pointer(t.buffer)
        if step == 1:
            return load_vector(b, b.gep(base, [offset], inbounds=True), width, mask)
        reverse = ir.Constant(ir.VectorType(I32, width), list(range(width - 1, -1, -1)))
        if mask is not None:
            mask = b.shuffle_vector(mask, mask, reverse)
        # no ``inbounds``: in a masked tail the first lanes' addresses may precede the buffer
        start = b.gep(base, [b.sub(offset, ir.Constant(I64, width - 1))])
        v = load_vector(b, start, width, mask)
        return b.shuffle_vector(v, v, reverse)


def _unguarded(e: Expr) -> tuple[Expr, list[tuple[str, Expr]]]:
    """``e`` without its guard clamps (``loops.GUARD``), and the clamps as (op, bound)."""
    guards: list[tuple[str, Expr]] = []
    while isinstance(e, Apply) and e.op in ("minimum", "maximum") and e.attrs == GUARD:
        guards.append((e.op, e.args[1]))
        e = e.args[0]
    return e, guards


# ---------------------------------------------------------------------------
# Parallel kernels

MIN_TASK_WORK = 1 << 17     # cost units (see element_cost) per task at least; less work, fewer tasks
TASKS_PER_THREAD = 4        # tasks per thread at most: a descheduled thread holds less up
EXPENSIVE_COST = 8          # an exp, log, div ... costs this many loads, stores or cheap ops
FLAT_GRAIN = 64             # elements: where a split of a contiguous axis may cut (whole vectors
                            # of any lane count, whole cache lines of any dtype)

Bounds = tuple[ir.Value, ir.Value]


def element_cost(expr: Expr) -> int:
    """Rough work per loop iteration: 1 per load, cheap op and the store, EXPENSIVE_COST per
    ``exp log tanh sigmoid pow sqrt div`` (each shared subexpression counted once)."""
    nodes = {id(e): e for e in walk(expr) if isinstance(e, (Load, Apply, Take))}
    return 1 + sum(EXPENSIVE_COST if isinstance(e, Apply) and e.op in EXPENSIVE else 1
                   for e in nodes.values())


@dataclass
class Split:
    """How a kernel divides into tasks: loop level ``[0, prod(dims))`` cut at multiples of
    ``grain``.  The level never reduces, so every output element is computed by one task,
    in the same order whatever the split: results do not depend on the thread count."""

    dims: list[Dim]
    grain: int


def run_split(kc: KernelContext, iterations: list[Dim], cost: int, split: Split | None,
              body: Callable[[KernelContext, Bounds | None], None]) -> None:
    """Emit a kernel whose loop nest ``body(kc, bounds)`` may run as tasks on the thread pool.

    ``body`` emits the nest with the split level restricted to ``bounds = (lo, hi)`` (None:
    the whole level).  With ``iterations x cost`` statically below two tasks' work, or no
    split, the nest is emitted inline.  Otherwise it goes into ``<kernel>.part(args.., t,
    ntasks)`` (one out-of-line copy for both callers: compile time) and the kernel picks ``ntasks = min(threads x
    TASKS_PER_THREAD, work / MIN_TASK_WORK, blocks)`` at run time: with one task or one
    thread it calls the part directly (a small symbolic-size kernel never wakes a worker);
    otherwise the tasks run through ``dlc.pool.run``, claimed dynamically.
    """
    if split is None or kc.task is not None:
        body(kc, None)
        return
    b = kc.b
    iters = kc.product(iterations)
    if isinstance(iters, ir.Constant) and iters.constant * cost < 2 * MIN_TASK_WORK:
        body(kc, None)
        return
    if all(isinstance(d, int) for d in split.dims) and math.prod(split.dims) <= split.grain:
        body(kc, None)
        return
    part, pkc = _part_function(kc)
    t, ntasks = part.args[-2], part.args[-1]
    pkc.task = (t, ntasks)
    body(pkc, split_range(pkc.b, pkc.product(split.dims), t, ntasks, split.grain))
    pkc.b.ret_void()

    grain = ir.Constant(I64, split.grain)
    blocks = b.sdiv(b.add(kc.product(split.dims), ir.Constant(I64, split.grain - 1)), grain)
    _launch(b, part, list(b.function.args), b.mul(iters, ir.Constant(I64, cost)), blocks)


def _launch(b: ir.IRBuilder, part: ir.Function, args: list[ir.Value], work: ir.Value,
            blocks: ir.Value) -> None:
    """Call ``part(*args, t, ntasks)`` for ``ntasks = min(threads x TASKS_PER_THREAD, work /
    MIN_TASK_WORK, blocks)`` tasks: on the pool, or directly with one task or one thread."""
    by_work = b.sdiv(work, ir.Constant(I64, MIN_TASK_WORK))
    size = b.call(pool(b.module).size, [])
    n = _min(b, _min(b, b.mul(size, ir.Constant(I64, TASKS_PER_THREAD)), by_work), blocks)
    one = ir.Constant(I64, 1)
    with b.if_else(b.and_(b.icmp_signed(">", size, one), b.icmp_signed(">", n, one))) as (parallel, serial):
        with parallel:
            parallel_call(b, part, args, n)
        with serial:
            b.call(part, [*args, ir.Constant(I64, 0), one])


def _min(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    return b.select(b.icmp_signed("<", x, y), x, y)


def _part_function(kc: KernelContext, extra: tuple[ir.Type, ...] = ()
                   ) -> tuple[ir.Function, KernelContext]:
    """``<kernel>.part``: the kernel function's arguments, ``extra`` ones, then ``(t, ntasks)``,
    with a context whose buffers and dims are its arguments."""
    fn = kc.b.function
    fnty = ir.FunctionType(ir.VoidType(), [a.type for a in fn.args] + list(extra) + [I64, I64])
    part = ir.Function(kc.b.module, fnty, f"{fn.name}.part")
    part.linkage = "internal"
    part.attributes.add("nounwind")
    part.attributes.add("noinline")
    for src, arg in zip(fn.args, part.args):
        arg.name = src.name
        if isinstance(arg.type, ir.PointerType):
            arg.add_attribute("noalias")
    part.args[-2].name, part.args[-1].name = "task", "ntasks"
    position = {id(a): i for i, a in enumerate(fn.args)}
    storage = {buf: part.args[position[id(v)]] for buf, v in kc.storage.items()}
    symbols = {s: part.args[position[id(v)]] for s, v in kc.symbols.items()}
    b = ir.IRBuilder(part.append_basic_block("entry"))
    return part, KernelContext(b, storage, symbols, kc.lanes, kc.scratch)


# ---------------------------------------------------------------------------
# Elementwise kernels


def emit_elementwise(kc: KernelContext, k: Elementwise) -> None:
    """``out[i] = expr(i)`` over ``k.shape`` (and ``k.extra``'s outputs: every value of an
    element computed before any is stored), vectorised along the innermost axis; a large
    one split into tasks over its outermost loop (a flat loop: in FLAT_GRAIN chunks)."""
    b = kc.b
    k, out_index = _without_unit_axes(k)
    outs = k.outputs()
    out_loads = [Load(buf, out_index) for buf, _ in outs]
    space = collapse(k.shape, [e for _, e in outs] + out_loads)
    if not space.groups:
        ee = ExprEmitter(kc, space, None)
        values = [ee.emit(e, [], 1) for _, e in outs]
        for (buf, _), value in zip(outs, values):
            b.store(to_memory(b, value, buf.dtype), kc.pointer(buf))
        return
    split = Split(space.dims[0], FLAT_GRAIN if len(space.groups) == 1 else 1)
    cost = sum(element_cost(e) for _, e in outs) - len(outs) + 1
    run_split(kc, list(k.shape), cost, split,
              lambda c, bounds: _elementwise_nest(c, k, space, out_loads, bounds))


def _without_unit_axes(k: Elementwise) -> tuple[Elementwise, tuple[int | None, ...]]:
    """``k`` over its loop axes of extent other than a static 1, and the index of its
    outputs over those (None for each axis dropped).

    An axis of extent 1 only ever indexes dims of extent 1, at 0, so a load's index there
    is None (0) and the loop goes.  It matters where a load skips the axis: ``x[N, 1] +
    bias[1]`` reads ``bias[i1]``, which no load of ``x`` matches on ``i0``, so the two
    axes did not collapse (``collapse``) and the kernel ran one masked lane per row (a
    dense layer of one unit: 22 -> 3.4 us for 4096 rows, Zen 5).  Elementwise, so every
    element is computed as before: the same bits."""
    axis_map = _unit_axis_map(k.shape)
    if axis_map is None:
        return k, tuple(range(len(k.shape)))
    shape = tuple(d for d in k.shape if d != 1)
    dropped = Elementwise(k.out, shape, remap(k.expr, axis_map),
                          tuple((buf, remap(e, axis_map)) for buf, e in k.extra))
    return dropped, tuple(axis_map)


def _reduce_without_unit_axes(k: Reduce) -> Reduce:
    """A sum/mean/max/min/prod/any/all kernel without its loop axes of static extent 1
    (as :func:`_without_unit_axes`; the output's layout is the same), unless it reduces
    only such axes.  For a kernel that runs as one serial nest (``emit_reduce``): a mean
    over ``[N, 1]`` of ``x[i0, i1] - bias[i1]`` ran one masked lane per row, and runs as
    the vector loop of a mean over ``[N]`` -- still serial, so no task function is
    added (a full reduction's chunked one cost the XOR step's cold compile ~20 ms), and
    below two tasks' work the same sums as the ``[N]`` kernel."""
    axis_map = _unit_axis_map(k.shape)
    if axis_map is None or all(axis_map[a] is None for a in k.axes):
        return k
    axes = tuple(m for m in (axis_map[a] for a in k.axes) if m is not None)
    return Reduce(k.out, k.kind, tuple(d for d in k.shape if d != 1), axes, remap(k.expr, axis_map), k.extra)


def _unit_axis_map(shape: tuple[Dim, ...]) -> list[int | None] | None:
    """Where each loop axis goes when those of static extent 1 are dropped (None: dropped),
    or None when there are none."""
    if 1 not in shape:
        return None
    axis_map: list[int | None] = []
    kept = 0
    for d in shape:
        axis_map.append(None if d == 1 else kept)
        kept += d != 1
    return axis_map


def _elementwise_nest(kc: KernelContext, k: Elementwise, space: Space, out_loads: list[Load],
                      bounds: Bounds | None) -> None:
    b = kc.b
    vec = len(space.groups) - 1
    ee = ExprEmitter(kc, space, vec)
    outs = k.outputs()
    width = kc.lanes if ee.vectorizable([e for _, e in outs]) and kc.lanes > 1 else 1
    extents = [kc.product(d) for d in space.dims]

    def body(index: list[ir.Value], w: int, mask: ir.Value | None) -> None:
        values = [ee.emit(e, index, w, mask) for _, e in outs]
        for (buf, _), value, out_load in zip(outs, values, out_loads):
            ptr = ee.address(out_load, index)
            if w == 1:
                b.store(to_memory(b, value, buf.dtype), ptr)
            else:
                store_vector(b, to_memory(b, value, buf.dtype), ptr, mask)

    _nest(kc, extents, vec, width, body, bounds)


def _nest(kc: KernelContext, extents: list[ir.Value], vec: int, width: int, body,
          bounds: Bounds | None = None) -> None:
    """Loops over ``extents`` (the first over ``bounds`` when given); the last runs ``width``
    lanes at a time with a masked tail."""
    b = kc.b
    index: list[ir.Value] = []

    def level(g: int) -> None:
        lo, hi = bounds if bounds is not None and g == 0 else (ir.Constant(I64, 0), extents[g])
        if g < vec:
            with for_range(b, lo, hi, name=f"g{g}") as i:
                index.append(i)
                level(g + 1)
                index.pop()
            return
        if width == 1:
            with for_range(b, lo, hi, name=f"g{g}") as i:
                body([*index, i], 1, None)
            return
        main = b.add(lo, b.and_(b.sub(hi, lo), ir.Constant(I64, -width)))
        with for_range(b, lo, main, width, name=f"v{g}") as i:
            body([*index, i], width, None)
        with b.if_then(b.icmp_signed("<", main, hi)):
            body([*index, main], width, lane_mask(b, width, b.sub(hi, main)))

    level(0)


# ---------------------------------------------------------------------------
# Reductions


def _identity(kind: str, dtype: DType) -> float | int:
    if kind in ("sum", "mean", "any"):
        return 0
    if kind in ("prod", "all"):
        return 1
    big = math.inf if dtype.is_float else (2 ** 31 - 1 if dtype is DType.i32 else 2 ** 63 - 1)
    if kind == "min":
        return big
    return -big if dtype.is_float else -big - 1


def _combine(e: Emitter, kind: str, a: ir.Value, x: ir.Value) -> ir.Value:
    if kind in ("sum", "mean"):
        return e.add(a, x)
    if kind == "max":
        return e.max(a, x)
    if kind == "prod":
        return e.mul(a, x)
    if kind == "any":
        return e.logical_or(a, x)
    if kind == "all":
        return e.logical_and(a, x)
    return e.min(a, x)


def _horizontal(e: Emitter, kind: str, v: ir.Value) -> ir.Value:
    """Combine the lanes of ``v`` by halving (a shuffle tree)."""
    b = e.b
    width = v.type.count if isinstance(v.type, ir.VectorType) else 1
    while width > 1:
        half = width // 2
        lo = b.shuffle_vector(v, v, ir.Constant(ir.VectorType(I32, half), list(range(half))))
        hi = b.shuffle_vector(v, v, ir.Constant(ir.VectorType(I32, half), list(range(half, width))))
        v = _combine(e, kind, lo, hi)
        width = half
    return b.extract_element(v, ir.Constant(I32, 0)) if isinstance(v.type, ir.VectorType) else v


def emit_reduce(kc: KernelContext, k: Reduce) -> None:
    """``out = kind over axes of expr`` (see the module docstring).  A large one is split
    into tasks over its output elements only (a kept axis), so each output is reduced by one
    task in the same order as on one thread; a reduction to one element runs on one thread."""
    cost = element_cost(k.expr)
    if k.kind in ("argmax", "argmin"):
        kept = [a for a in range(len(k.shape)) if a not in k.axes]
        split = Split([k.shape[kept[0]]], 1) if kept else None
        run_split(kc, list(k.shape), cost, split, lambda c, bounds: _emit_argmax(c, k, bounds))
    elif k.kind == "softmax_stats":
        rank = len(k.shape)
        across = _lse_across_rows(kc, k)
        split = Split([k.shape[0]], kc.lanes if across else 1) if rank >= 2 else None
        run_split(kc, list(k.shape), cost + 2 * EXPENSIVE_COST, split,
                  lambda c, bounds: _emit_softmax_stats(c, k, across, bounds))
    else:
        space = collapse(k.shape, [k.expr], k.axes)
        how = _reduction_split(space, k.axes)
        if len(space.groups) > 1:
            # loops that did not collapse; without the unit axes they may (one reduced loop
            # left runs as the serial nest it was, only vectorized)
            flat = _reduce_without_unit_axes(k)
            if flat is not k:
                k = flat
                space = collapse(k.shape, [k.expr], k.axes)
                how = _reduction_split(space, k.axes)
        elif how is None and space.groups:
            _full_reduction(kc, k, space, cost)
            return
        group, split = how if how is not None else (None, None)
        run_split(kc, list(k.shape), cost, split,
                  lambda c, bounds: _Reduction(c, k, space, {} if bounds is None else {group: bounds}).emit())


def _reduction_split(space: Space, axes: tuple[int, ...]) -> tuple[int, Split] | None:
    """The loop group a reduction splits over and how: the outermost kept group outside the
    innermost one (whole output rows), else the innermost group itself when it is kept, in
    FLAT_GRAIN chunks (whole blocks of output vectors).  None: a reduction to one element."""
    kept = [g for g, group in enumerate(space.groups) if group[0] not in axes]
    inner = len(space.groups) - 1
    outer = [g for g in kept if g != inner]
    if outer:
        return outer[0], Split(space.dims[outer[0]], 1)
    if kept:
        return inner, Split(space.dims[inner], FLAT_GRAIN)
    return None


FULL_CHUNKS = 64    # a large reduction to one element: this many partial results


def _full_reduction(kc: KernelContext, k: Reduce, space: Space, cost: int) -> None:
    """A reduction of one flat loop to one element, in a fixed order whatever the threads.

    Below two tasks' work it is the plain serial loop.  Above, the loop is cut into
    FULL_CHUNKS chunks (bounds that depend on the size only, in FLAT_GRAIN multiples);
    each chunk's result goes to its own slot, tasks taking whole chunks, and the slots
    are combined in chunk order on the calling thread -- the same sums on any number of
    threads (and a shorter rounding chain than one running sum).

    Both are one function, ``k<i>.part(.., slots, chunks, t, ntasks)``: the serial loop
    is its one chunk, called directly (the same loop, so the same sums, as a loop of its
    own would give).  A loop of its own beside the part was a second copy of the
    reduction in every kernel of symbolic size, a loss's mean over the batch among them:
    compile time for nothing.
    """
    b = kc.b
    n = kc.product(space.dims[0])
    least = -(-2 * MIN_TASK_WORK // cost)               # elements of two tasks' work
    if isinstance(n, ir.Constant) and n.constant < least:
        _Reduction(kc, k, space, {}).emit()
        return
    slots_ty = ir.ArrayType(value_type(k.out.dtype, 1), FULL_CHUNKS)
    slots = alloca(b, slots_ty)
    part, pkc = _part_function(kc, (slots_ty.as_pointer(), I64))
    pb = pkc.b
    slots_arg, chunks_arg, t, ntasks = part.args[-4:]
    chunks_arg.name = "chunks"
    pkc.task = (t, ntasks)
    first, last = split_range(pb, chunks_arg, t, ntasks, 1)
    with for_range(pb, first, last, name="chunk") as c:
        lo, hi = split_range(pb, pkc.product(space.dims[0]), c, chunks_arg, FLAT_GRAIN)
        slot = pb.gep(slots_arg, [ir.Constant(I64, 0), c], inbounds=True)
        _Reduction(pkc, k, space, {0: (lo, hi)}, result=slot).emit()
    pb.ret_void()

    full = ir.Constant(I64, FULL_CHUNKS)
    args = [*b.function.args, slots]

    def chunked() -> None:
        _launch(b, part, [*args, full], b.mul(n, ir.Constant(I64, cost)), full)

    if isinstance(n, ir.Constant):
        chunks: ir.Value = full
        chunked()
    else:
        small = b.icmp_signed("<", n, ir.Constant(I64, least))
        chunks = b.select(small, ir.Constant(I64, 1), full)
        with b.if_else(small) as (serial, large):
            with serial:
                one = ir.Constant(I64, 1)
                b.call(part, [*args, one, ir.Constant(I64, 0), one])
            with large:
                chunked()
    e = Emitter(b, 1, k.out.dtype)
    # in chunk order, as a loop (unrolled, the 63 combines were a third of the kernel's IR)
    acc = alloca(b, slots_ty.element)
    b.store(b.load(b.gep(slots, [ir.Constant(I64, 0), ir.Constant(I64, 0)])), acc)
    with for_range(b, 1, chunks, name="chunk") as c:
        b.store(_combine(e, k.kind, b.load(acc), b.load(b.gep(slots, [ir.Constant(I64, 0), c]))), acc)
    total = b.load(acc)
    if k.kind == "mean":
        total = e.div(total, e.cast(n, k.out.dtype))
    b.store(to_memory(b, total), kc.pointer(k.out))


class _Reduction:
    """A sum/mean/max/min/prod/any/all kernel: loop groups after collapsing, split into kept
    and reduced."""

    def __init__(self, kc: KernelContext, k: Reduce, space: Space, bounds: dict[int, Bounds],
                 result: ir.Value | None = None):
        self.kc, self.k, self.b = kc, k, kc.b
        self.dtype = k.out.dtype
        self.bounds = bounds            # a group's share of a task (run_split, _full_reduction)
        self.result = result            # a reduction to one element: where its chunk's value goes
        self.reduced = [g for g, axes in enumerate(space.groups) if axes[0] in k.axes]
        self.kept = [g for g, axes in enumerate(space.groups) if axes[0] not in k.axes]
        self.extents = [kc.product(d) for d in space.dims]
        self.inner = len(space.groups) - 1 if space.groups else None
        self.ee = ExprEmitter(kc, space, self.inner)
        vector = self.inner is not None and kc.lanes > 1 and self.ee.vectorizable([k.expr])
        self.lanes = kc.lanes if vector else 1
        # Several accumulators hide the add latency of a cheap input; an expensive input
        # (exp, log ...) is throughput-bound and its code is emitted once.
        self.unroll = UNROLL if self.lanes > 1 and isinstance(k.expr, Load) else 1
        self.ident = const(value_type(self.dtype, self.lanes), _identity(k.kind, self.dtype))
        self.e = Emitter(self.b, self.lanes, self.dtype)
        self.index: list[ir.Value | None] = [None] * len(space.groups)
        self.out_strides = _row_major_strides(self.b, [self.extents[g] for g in self.kept])

    def emit(self) -> None:
        if self.inner is None or self.inner in self.reduced:
            self._loops(self.kept, "k", self._row)
        else:
            self._loops([g for g in self.kept if g != self.inner], "k", self._columns)

    def _loops(self, groups: list[int], name: str, body) -> None:
        if not groups:
            body()
            return
        lo, hi = self._range(groups[0])
        with for_range(self.b, lo, hi, name=f"{name}{groups[0]}") as i:
            self.index[groups[0]] = i
            self._loops(groups[1:], name, body)

    def _range(self, g: int) -> Bounds:
        return self.bounds.get(g, (ir.Constant(I64, 0), self.extents[g]))

    def _over_reduced(self, body) -> None:
        """Loops over the reduced groups other than the innermost (vectorised) one."""
        self._loops([g for g in self.reduced if g != self.inner], "r", body)

    def _at(self, value: ir.Value) -> list:
        index = list(self.index)
        index[self.inner] = value
        return index

    def _accumulate(self, acc: ir.Value, position: ir.Value | None, mask: ir.Value | None = None) -> None:
        """``acc = combine(acc, expr at position)`` (masked lanes contribute the identity)."""
        b = self.b
        index = self.index if position is None else self._at(position)
        x = self.ee.emit(self.k.expr, index, self.lanes, mask)
        if mask is not None:
            x = b.select(mask, x, self.ident)
        b.store(_combine(self.e, self.k.kind, b.load(acc), x), acc)

    def _finish(self, value: ir.Value) -> ir.Value:
        if self.k.kind != "mean":
            return value
        width = value.type.count if isinstance(value.type, ir.VectorType) else 1
        e = Emitter(self.b, width, self.dtype)
        count = self.kc.product([d for a, d in enumerate(self.k.shape) if a in self.k.axes])
        return e.div(value, e.cast(splat(self.b, count, width), self.dtype))

    def _out_ptr(self, index: list) -> ir.Value:
        b = self.b
        offset: ir.Value = ir.Constant(I64, 0)
        for g, stride in zip(self.kept, self.out_strides):
            offset = b.add(offset, b.mul(index[g], stride))
        return b.gep(self.kc.pointer(self.k.out), [offset], inbounds=True)

    def _row(self) -> None:
        """The innermost axis is reduced: vector partial sums, then one output element.

        A float sum adds at most ``SUM_BLOCK`` steps into its partial sums before
        folding them into a second set (two-level summation): a long row on a
        narrow target would otherwise add thousands of terms into one
        accumulator, with an error growing with their count (one lane over
        5,120 terms: 2.9e-5 relative where numpy's pairwise sum has 1e-7)."""
        b, lanes = self.b, self.lanes
        accs = [alloca(b, self.ident.type) for _ in range(self.unroll)]
        for a in accs:
            b.store(self.ident, a)
        blocked = self.k.kind in ("sum", "mean") and self.dtype.is_float
        outer = [alloca(b, self.ident.type) for _ in range(self.unroll)] if blocked else accs
        for a in outer:
            b.store(self.ident, a)

        def fold() -> None:
            """outer += accs; accs = identity (blocked sums only)."""
            if not blocked:
                return
            for o, a in zip(outer, accs):
                b.store(_combine(self.e, self.k.kind, b.load(o), b.load(a)), o)
                b.store(self.ident, a)

        def accumulate() -> None:
            if self.inner is None:                         # rank 0: one element
                self._accumulate(accs[0], None)
                fold()
                return
            lo, n = self._range(self.inner)
            step = lanes * self.unroll
            main = b.add(lo, b.and_(b.sub(n, lo), ir.Constant(I64, -step)))
            if blocked:
                span = ir.Constant(I64, step * SUM_BLOCK)
                with for_range(b, lo, main, span, name="redb") as jb:
                    end = b.add(jb, span)
                    end = b.select(b.icmp_signed("<", end, main), end, main)
                    with for_range(b, jb, end, step, name="red") as j:
                        for u, acc in enumerate(accs):
                            self._accumulate(acc, b.add(j, ir.Constant(I64, u * lanes)))
                    fold()
            else:
                with for_range(b, lo, main, step, name="red") as j:
                    for u, acc in enumerate(accs):
                        self._accumulate(acc, b.add(j, ir.Constant(I64, u * lanes)))
            if lanes > 1:
                rest = b.add(main, b.and_(b.sub(n, main), ir.Constant(I64, -lanes)))
                with for_range(b, main, rest, lanes, name="red1") as j:
                    self._accumulate(accs[0], j)
                with b.if_then(b.icmp_signed("<", rest, n)):
                    self._accumulate(accs[-1], rest, lane_mask(b, lanes, b.sub(n, rest)))
            fold()

        self._over_reduced(accumulate)
        total = b.load(outer[0])
        for a in outer[1:]:
            total = _combine(self.e, self.k.kind, total, b.load(a))
        scalar = _horizontal(self.e, self.k.kind, total)
        if self.result is not None:
            b.store(scalar, self.result)
        else:
            b.store(to_memory(b, self._finish(scalar)), self._out_ptr(self.index))

    def _columns(self) -> None:
        """The innermost axis is kept: blocks of outputs accumulate in registers."""
        b, lanes = self.b, self.lanes
        lo, n = self._range(self.inner)

        def block(j: ir.Value, count: int, mask: ir.Value | None) -> None:
            accs = [alloca(b, self.ident.type) for _ in range(count)]
            for a in accs:
                b.store(self.ident, a)
            positions = [b.add(j, ir.Constant(I64, u * lanes)) for u in range(count)]
            self._over_reduced(lambda: [self._accumulate(a, p, mask) for a, p in zip(accs, positions)])
            for a, p in zip(accs, positions):
                value = to_memory(b, self._finish(b.load(a)))
                ptr = self._out_ptr(self._at(p))
                if lanes == 1:
                    b.store(value, ptr)
                else:
                    store_vector(b, value, ptr, mask)

        step = lanes * self.unroll
        main = b.add(lo, b.and_(b.sub(n, lo), ir.Constant(I64, -step)))
        with for_range(b, lo, main, step, name="col") as j:
            block(j, self.unroll, None)
        if lanes == 1:
            return
        rest = b.add(main, b.and_(b.sub(n, main), ir.Constant(I64, -lanes)))
        with for_range(b, main, rest, lanes, name="col1") as j:
            block(j, 1, None)
        with b.if_then(b.icmp_signed("<", rest, n)):
            block(rest, 1, lane_mask(b, lanes, b.sub(n, rest)))


def _row_major_strides(b: ir.IRBuilder, extents: list[ir.Value]) -> list[ir.Value]:
    out = []
    for i in range(len(extents)):
        s: ir.Value = ir.Constant(I64, 1)
        for x in extents[i + 1:]:
            s = b.mul(s, x)
        out.append(s)
    return out


def _emit_argmax(kc: KernelContext, k: Reduce, bounds: Bounds | None) -> None:
    """Index of the first maximum (``argmin``: minimum; NaN counts as either, as numpy),
    scalar loops; the first kept axis over ``bounds`` when given."""
    b = kc.b
    ee = ExprEmitter(kc, Space.plain(k.shape), None)
    (axis,) = k.axes
    src_dtype = k.expr.dtype
    kept = [a for a in range(len(k.shape)) if a != axis]
    extents = [kc.dim(d) for d in k.shape]
    out_strides = _row_major_strides(b, [extents[a] for a in kept])
    index: list[ir.Value | None] = [None] * len(k.shape)
    e = Emitter(b, 1, src_dtype)

    def per_output() -> None:
        best = alloca(b, value_type(src_dtype, 1))
        where = alloca(b, I64)
        extremum = "max" if k.kind == "argmax" else "min"
        b.store(const(best.type.pointee, _identity(extremum, src_dtype)), best)
        b.store(ir.Constant(I64, 0), where)
        with for_range(b, 0, extents[axis], name="am") as i:
            index[axis] = i
            x = ee.emit(k.expr, index, 1)
            cur = b.load(best)
            better = e.cmp("gt" if k.kind == "argmax" else "lt", x, cur)
            if src_dtype.is_float:
                first_nan = b.and_(e.cmp("ne", x, x), e.cmp("eq", cur, cur))
                better = b.or_(better, first_nan)
            with b.if_then(better):
                b.store(x, best)
                b.store(i, where)
        offset: ir.Value = ir.Constant(I64, 0)
        for a, stride in zip(kept, out_strides):
            offset = b.add(offset, b.mul(index[a], stride))
        result = Emitter(b, 1, DType.i64).cast(b.load(where), k.out.dtype)
        b.store(to_memory(b, result), b.gep(kc.pointer(k.out), [offset], inbounds=True))

    def over(level: int) -> None:
        if level == len(kept):
            per_output()
            return
        lo, hi = bounds if bounds is not None and level == 0 else (ir.Constant(I64, 0), extents[kept[level]])
        with for_range(b, lo, hi, name=f"k{kept[level]}") as i:
            index[kept[level]] = i
            over(level + 1)

    over(0)


LSE_ACROSS_ROWS = 2     # rows of at most this many vectors run one row per lane


def _emit_softmax_stats(kc: KernelContext, k: Reduce, across: bool, bounds: Bounds | None) -> None:
    """The row maximum ``M`` (into ``k.out``), ``S = sum(exp(x - M))`` and ``log(S)``
    (into ``k.extra``) over the last axis in one pass: the *online* log-sum-exp.

    A running maximum ``m`` and sum ``s`` of ``exp(x - m)`` take each element
    ``x`` once: when ``x > m``, ``s' = s * exp(m - x) + 1`` and ``m' = x``;
    otherwise ``s' = s + exp(x - m)`` -- one ``exp(-|x - m|)`` per element,
    and ``exp`` never overflows.  ``x == m`` counts as ``exp(0)`` so that
    ``-inf`` entries never form ``-inf - -inf``; a row holding ``+inf`` gets
    ``S = nan``, as the unfused ``sum(exp(x - max(x)))`` does.  ``M`` and ``S``
    are stored apart (not as ``M + log(S)``, which would round away the low bits
    of ``x - M`` for large ``x``): consumers compute ``exp(x - M) / S`` and
    ``(x - M) - log(S)``.

    Two layouts: a matrix whose (static) rows span at most
    ``LSE_ACROSS_ROWS`` vectors runs one row per lane (W rows at a time, the
    row's elements read lane by lane), so a 10-class row costs no horizontal
    work; longer rows run W elements of one row at a time, each lane its own
    ``(m, s)``, combined at the end as ``s = sum_l s_l * exp(m_l - m)``.
    ``fuse_row_softmax`` (loops.py) makes these kernels.  ``bounds``: the rows (first axis)
    of one task, in whole multiples of W rows when ``across``.
    """
    assert k.axes == (len(k.shape) - 1,), "softmax_stats reduces the last axis only"
    if across:
        _logsumexp_across_rows(kc, k, bounds)
    else:
        _logsumexp_along_rows(kc, k, bounds)


def _lse_across_rows(kc: KernelContext, k: Reduce) -> bool:
    """Whether a softmax_stats kernel runs one row per lane (narrow static rows of a matrix)."""
    width = k.shape[-1]
    return (len(k.shape) == 2 and kc.lanes > 1 and isinstance(width, int)
            and width <= LSE_ACROSS_ROWS * kc.lanes)


def _lse_update(e: Emitter, m_slot: ir.Value, s_slot: ir.Value, x: ir.Value) -> None:
    """One online log-sum-exp step: fold ``x`` into the running ``(m, s)`` (see above)."""
    b = e.b
    m, s = b.load(m_slot), b.load(s_slot)
    ty = m.type
    above = e.cmp("gt", x, m)
    diff = e.select(e.cmp("eq", x, m), const(ty, 0.0), e.sub(x, m))
    d = e.exp(e.neg(e.abs(diff)))
    b.store(e.select(above, e.fma(s, d, const(ty, 1.0)), e.add(s, d)), s_slot)
    b.store(e.max(m, x), m_slot)


def _stats(e: Emitter, m: ir.Value, s: ir.Value) -> tuple[ir.Value, ir.Value, ir.Value]:
    """The row's ``M``, ``S`` and ``log(S)`` from the final ``(m, s)``; ``S`` is nan where
    the maximum ``m`` is +inf."""
    ty = m.type
    s = e.select(e.cmp("eq", m, const(ty, math.inf)), const(ty, math.nan), s)
    return m, s, e.log(s)


def _logsumexp_across_rows(kc: KernelContext, k: Reduce, bounds: Bounds | None) -> None:
    """Rank 2, narrow rows: lane ``l`` reduces row ``r + l``; W rows per iteration."""
    b, lanes = kc.b, kc.lanes
    dtype = k.out.dtype
    rows, cols = kc.dim(k.shape[0]), kc.dim(k.shape[1])
    ee = ExprEmitter(kc, Space.plain(k.shape), None)
    e = Emitter(b, lanes, dtype)
    vty = value_type(dtype, lanes)
    last = b.sub(rows, ir.Constant(I64, 1))
    lo, hi = bounds if bounds is not None else (ir.Constant(I64, 0), rows)
    with for_range(b, lo, hi, lanes, name="lse_rows") as r:
        m_slot, s_slot = alloca(b, vty), alloca(b, vty)
        b.store(const(vty, -math.inf), m_slot)
        b.store(const(vty, 0.0), s_slot)
        # lanes past the last row recompute the last row; their results are not stored
        row_of = [b.select(b.icmp_signed("<", b.add(r, ir.Constant(I64, lane)), rows),
                           b.add(r, ir.Constant(I64, lane)), last) for lane in range(lanes)]
        with for_range(b, 0, cols, name="lse_col") as c:
            x: ir.Value = ir.Constant(vty, ir.Undefined)
            for lane, row in enumerate(row_of):
                x = b.insert_element(x, ee.emit(k.expr, [row, c], 1), ir.Constant(I32, lane))
            _lse_update(e, m_slot, s_slot, x)
        live = lane_mask(b, lanes, b.sub(rows, r))
        for buf, value in zip(k.writes(), _stats(e, b.load(m_slot), b.load(s_slot))):
            store_vector(b, to_memory(b, value), b.gep(kc.pointer(buf), [r], inbounds=True), live)


def _logsumexp_along_rows(kc: KernelContext, k: Reduce, bounds: Bounds | None) -> None:
    """Any rank: one row at a time, W elements per step, lanes combined per row."""
    b = kc.b
    dtype = k.out.dtype
    rank = len(k.shape)
    inner = rank - 1
    space = Space([[a] for a in range(rank)], [[d] for d in k.shape])
    ee = ExprEmitter(kc, space, inner)
    lanes = kc.lanes if kc.lanes > 1 and ee.vectorizable([k.expr]) else 1
    e = Emitter(b, lanes, dtype)
    vty = value_type(dtype, lanes)
    minus_inf = const(vty, -math.inf)
    extents = [kc.dim(d) for d in k.shape]
    out_strides = _row_major_strides(b, extents[:-1])
    index: list[ir.Value | None] = [None] * rank

    def per_row() -> None:
        m_slot, s_slot = alloca(b, vty), alloca(b, vty)
        b.store(minus_inf, m_slot)
        b.store(const(vty, 0.0), s_slot)
        n = extents[inner]
        main = b.and_(n, ir.Constant(I64, -lanes))
        with for_range(b, 0, main, lanes, name="lse") as j:
            index[inner] = j
            _lse_update(e, m_slot, s_slot, ee.emit(k.expr, index, lanes))
        if lanes > 1:
            with b.if_then(b.icmp_signed("<", main, n)):
                index[inner] = main
                mask = lane_mask(b, lanes, b.sub(n, main))
                _lse_update(e, m_slot, s_slot,
                            b.select(mask, ee.emit(k.expr, index, lanes, mask), minus_inf))
        m_vec, s_vec = b.load(m_slot), b.load(s_slot)
        m = _horizontal(e, "max", m_vec)
        m_all = splat(b, m, lanes)
        scale = e.select(e.cmp("eq", m_vec, m_all), const(vty, 1.0), e.exp(e.sub(m_vec, m_all)))
        s = _horizontal(e, "sum", e.mul(s_vec, scale))
        offset: ir.Value = ir.Constant(I64, 0)
        for a, stride in enumerate(out_strides):
            offset = b.add(offset, b.mul(index[a], stride))
        for buf, value in zip(k.writes(), _stats(Emitter(b, 1, dtype), m, s)):
            b.store(to_memory(b, value), b.gep(kc.pointer(buf), [offset], inbounds=True))

    def over(level: int) -> None:
        if level == inner:
            per_row()
            return
        lo, hi = bounds if bounds is not None and level == 0 else (ir.Constant(I64, 0), extents[level])
        with for_range(b, lo, hi, name=f"k{level}") as i:
            index[level] = i
            over(level + 1)

    over(0)


def alloca(b: ir.IRBuilder, ty: ir.Type) -> ir.Value:
    """A stack slot in the entry block (so mem2reg turns it into registers)."""
    fn = b.function
    entry = fn.entry_basic_block
    with b.goto_block(entry):
        if entry.instructions:
            b.position_before(entry.instructions[0])
        return b.alloca(ty)


__all__ = ["KernelContext", "ExprEmitter", "Space", "collapse", "emit_elementwise", "emit_reduce",
           "load_vector", "store_vector", "lane_mask", "unit_stride", "alloca"]
