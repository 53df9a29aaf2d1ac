"""Loop IR: buffers and kernels, the level between dl IR and LLVM IR.

A :class:`Program` is one dl function after bufferization:

* **buffers** -- ``param`` (caller-owned inputs), ``output`` (allocated by the
  runtime; an in-place output shares its parameter's memory), ``temp``
  (carved out of one 64-byte-aligned workspace allocated once per call and
  freed on return), ``const`` (dense constants, in the object's read-only
  data) and ``view`` (a reshape: another shape over the same memory, no copy).
  All buffers are dense, row-major.
* **kernels**, run in order:

  - :class:`Elementwise` -- one loop nest over ``shape`` storing an
    expression tree.  A fused chain of elementwise ops, a broadcast, a
    transpose or a copy are all this kernel: what differs is the tree and
    the *index maps* of its loads.
  - :class:`Reduce` -- ``sum mean max min prod any all argmax argmin`` of an
    expression over ``axes`` (the expression fuses the producers of the reduced
    operand), and ``softmax_stats`` (a row's maximum and its sum of
    exponentials, two outputs).
  - :class:`Scan` -- a running sum of an expression along one axis (``scan.py``).
  - :class:`TopK` -- the ``k`` largest of an expression along the last axis, or
    their indices (``topk.py``).
  - :class:`Pool` -- 2-D pooling of NHWC images and its gradients, reading
    whole buffers (``pool.py``).
  - :class:`Matmul` -- ``[batch.., M, K] @ [batch.., K, N]``, operands in
    either layout (``trans_a``/``trans_b``: a transpose feeding a matmul is
    not copied), with an optional *epilogue* expression applied to each
    result element (``Acc``) before it is stored (bias, activation, an
    optimizer update...).
  - :class:`Scatter` -- ``out = base``, then ``out[index(i)] += value(i)`` over
    the updates, in order (``scatter_add`` and its along-axis form).
  - :class:`Conv` -- a ``conv2d`` or one of its gradients: a :class:`Matmul`
    whose A operand is implicit (image patches), emitted by ``conv.py``.

Expressions (:data:`Expr`): :class:`Load` (a buffer read through an index
map: for each buffer dim, the loop axis indexing it, or ``None`` for a
broadcast size-1 dim read at 0), :class:`Const`, :class:`Iota` (the loop
index along an axis), :class:`DimValue` (a dim's runtime size),
:class:`Apply` (an elementwise op of the op table, emitted by its ``emit``
rule), :class:`Acc` (the matmul accumulator, in epilogues) and :class:`Take`
(a buffer read at *computed* coordinates: slices, gathers, concatenations).

A :class:`Take` is deliberately not a :class:`Load`: every rewrite that
pattern-matches loads with their index maps leaves it alone, while
:func:`buffers_read` (and so ``Kernel.reads()``, scheduling, liveness and the
in-place analyses) sees the buffer it reads.

``print_program`` gives the text form that ``dlc ir FILE --stage loops`` shows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..ir.dims import DimExpr, evaluate
from ..ir.types import Dim, DType
from ..ops.conv import ConvShape
from ..ops.random import PHILOX_OPS

PARAM, OUTPUT, TEMP, CONST, VIEW = "param", "output", "temp", "const", "view"


@dataclass(eq=False)
class Buffer:
    """A dense row-major array of ``dtype`` and ``shape`` (dims may be symbols)."""

    name: str
    dtype: DType
    shape: tuple[Dim, ...]
    role: str
    index: int = -1                       # position among params / outputs
    base: Buffer | None = None            # views: the buffer whose memory this is
    data: np.ndarray | None = None        # consts
    inplace_of: Buffer | None = None      # outputs written into a parameter's memory

    @property
    def root(self) -> Buffer:
        """The buffer that owns the memory (follows views)."""
        buf = self
        while buf.base is not None:
            buf = buf.base
        return buf

    @property
    def storage(self) -> Buffer:
        """The memory's identity at run time: an in-place output is its parameter."""
        root = self.root
        return root.inplace_of or root

    @property
    def rank(self) -> int:
        return len(self.shape)

    def type_str(self) -> str:
        return f"{self.dtype.dsl_name}[{', '.join(str(d) for d in self.shape)}]"

    def __repr__(self) -> str:
        return f"<Buffer {self.name}: {self.type_str()} {self.role}>"


# -- expressions ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Load:
    """``buffer[index]``: ``index[k]`` is the loop axis indexing buffer dim k (None: 0)."""

    buffer: Buffer
    index: tuple[int | None, ...]

    @property
    def dtype(self) -> DType:
        return self.buffer.dtype


@dataclass(frozen=True, eq=False)
class Const:
    value: Any
    dtype: DType


@dataclass(frozen=True, eq=False)
class Iota:
    """The loop index along ``axis``, as ``dtype``."""

    axis: int
    dtype: DType


@dataclass(frozen=True, eq=False)
class DimValue:
    """The runtime size of ``dim`` (an int or a symbol), as ``dtype``."""

    dim: Dim
    dtype: DType


@dataclass(frozen=True, eq=False)
class Apply:
    """Elementwise op ``op`` (an op-table name) over ``args``; ``in_dtype`` is its operand dtype,
    ``attrs`` its attributes as sorted ``(name, value)`` pairs (the emitter's ``e.attrs``)."""

    op: str
    args: tuple[Expr, ...]
    dtype: DType
    in_dtype: DType
    attrs: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True, eq=False)
class Acc:
    """A matmul's accumulated result, inside its epilogue."""

    dtype: DType


@dataclass(frozen=True, eq=False)
class Take:
    """``buffer[index[0], .., index[r-1]]`` at computed coordinates: ``index[k]`` is an i64
    expression (of iotas, constants, dims, loads, elementwise ops) giving the coordinate along
    buffer dim k.  Whoever builds one guarantees every coordinate is in range at every loop
    position the kernel computes (clamped where a select discards the value)."""

    buffer: Buffer
    index: tuple[Expr, ...]

    @property
    def dtype(self) -> DType:
        return self.buffer.dtype


Expr = Load | Const | Iota | DimValue | Apply | Acc | Take

# The attrs of a take coordinate's ``minimum``/``maximum`` that only keeps a read inside its
# buffer where a select discards the value (``indexing.clamp``): a vectorised take may mask
# the lanes it would change instead (``kernels.Indexer.take``).
GUARD = (("guard", True),)


def children(expr: Expr) -> tuple[Expr, ...]:
    """The subexpressions of ``expr``: an op's arguments, a take's coordinates."""
    if isinstance(expr, Apply):
        return expr.args
    if isinstance(expr, Take):
        return expr.index
    return ()


# The most nodes (loads, constants, ops...) a value's expression may hold before bufferization
# materializes it (``Lowering.define``): a single-use chain of 10,000 elementwise ops becomes
# a kernel per ~64 nodes, not one expression 10,000 deep.  So no expression of a program has
# more than ``3 * MAX_EXPR_NODES + 1`` nodes (the widest elementwise op, ``select``, over
# three operands at the bound), which keeps the recursive functions below and the emitters
# (kernels.py) far from Python's recursion limit, and each kernel's LLVM function small.
# No fused kernel of a real model comes near it: the largest (optimizer updates, loss
# gradients) hold about 15 nodes.
MAX_EXPR_NODES = 64


def walk(expr: Expr) -> Iterator[Expr]:
    """Every node of ``expr``, parents before children, left to right (into a take's
    coordinates too); iterative, so a deep expression cannot exhaust Python's stack."""
    stack = [expr]
    while stack:
        e = stack.pop()
        yield e
        stack.extend(reversed(list(children(e))))


def expr_size(expr: Expr, limit: int | None = None) -> int:
    """The number of nodes of ``expr`` (a shared subexpression counts at each use);
    counting stops just past ``limit``, when given."""
    n = 0
    for _ in walk(expr):
        n += 1
        if limit is not None and n > limit:
            break
    return n


def loads(expr: Expr) -> list[Load]:
    """The :class:`Load` nodes of ``expr`` (those inside a take's coordinates included).
    Not the reads of takes: use :func:`buffers_read` for every buffer an expression reads."""
    return [e for e in walk(expr) if isinstance(e, Load)]


def takes(expr: Expr) -> list[Take]:
    return [e for e in walk(expr) if isinstance(e, Take)]


def buffers_read(expr: Expr) -> list[Buffer]:
    """Every buffer ``expr`` reads, through loads and takes."""
    return [e.buffer for e in walk(expr) if isinstance(e, (Load, Take))]


def has_take(expr: Expr) -> bool:
    return any(isinstance(e, Take) for e in walk(expr))


def remap(expr: Expr, axis_map: list[int | None]) -> Expr:
    """``expr`` over new loop axes: old axis ``a`` becomes ``axis_map[a]`` (None: index 0)."""
    if isinstance(expr, Load):
        index = tuple(None if a is None else axis_map[a] for a in expr.index)
        return Load(expr.buffer, index)
    if isinstance(expr, Iota):
        new = axis_map[expr.axis]
        return Const(0, expr.dtype) if new is None else Iota(new, expr.dtype)
    if isinstance(expr, Apply):
        return replace(expr, args=tuple(remap(a, axis_map) for a in expr.args))
    if isinstance(expr, Take):
        return Take(expr.buffer, tuple(remap(a, axis_map) for a in expr.index))
    return expr


def replace_loads(expr: Expr, fn) -> Expr:
    """``expr`` with every load ``l`` replaced by ``fn(l)`` (a take's own read is no load:
    it stays, with the loads in its coordinates replaced)."""
    if isinstance(expr, Load):
        return fn(expr)
    if isinstance(expr, Apply):
        return replace(expr, args=tuple(replace_loads(a, fn) for a in expr.args))
    if isinstance(expr, Take):
        return Take(expr.buffer, tuple(replace_loads(a, fn) for a in expr.index))
    return expr


def replace_buffer(expr: Expr, old: Buffer, new: Buffer) -> Expr:
    """``expr`` reading ``new`` wherever it read ``old``, through loads and takes."""
    if isinstance(expr, Load):
        return Load(new, expr.index) if expr.buffer is old else expr
    if isinstance(expr, Apply):
        return replace(expr, args=tuple(replace_buffer(a, old, new) for a in expr.args))
    if isinstance(expr, Take):
        return Take(new if expr.buffer is old else expr.buffer,
                    tuple(replace_buffer(a, old, new) for a in expr.index))
    return expr


def identity_index(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


# -- kernels -----------------------------------------------------------------------------------


@dataclass(eq=False)
class Elementwise:
    """``out[i] = expr(i)`` for every index ``i`` of ``shape`` (``out`` has ``shape``).

    ``extra`` holds more outputs of the same shape computed in the same loop,
    ``buf[i] = e(i)`` for each ``(buf, e)`` (a *multi-output* kernel, made by
    ``bufferize.fuse_sibling_outputs``: an optimizer's moments and weights in one
    pass).  Every expression reads memory as it was before the kernel: an
    element's values are all computed before any of them is stored.
    """

    out: Buffer
    shape: tuple[Dim, ...]
    expr: Expr
    extra: tuple[tuple[Buffer, Expr], ...] = ()

    def outputs(self) -> list[tuple[Buffer, Expr]]:
        """Every (output, expression) pair, the extra ones first."""
        return [*self.extra, (self.out, self.expr)]

    def reads(self) -> list[Buffer]:
        return list(dict.fromkeys(b for _, e in self.outputs() for b in buffers_read(e)))

    def writes(self) -> list[Buffer]:
        return [buf for buf, _ in self.outputs()]


@dataclass(eq=False)
class Reduce:
    """``out = kind over axes of expr`` where ``expr`` ranges over ``shape``.

    ``out`` holds the kept axes in order (with or without keepdims' 1s: the
    same memory layout).  ``kind`` is ``sum mean max min prod any all argmax argmin``, or
    ``softmax_stats`` over the last axis: ``out = M = max(expr)`` and two more
    outputs, ``extra = (S, log(S))`` with ``S = sum(exp(expr - M))`` (a row
    softmax's statistics, see :func:`fuse_row_softmax`).
    """

    out: Buffer
    kind: str
    shape: tuple[Dim, ...]
    axes: tuple[int, ...]
    expr: Expr
    extra: tuple[Buffer, ...] = ()

    def reads(self) -> list[Buffer]:
        return buffers_read(self.expr)

    def writes(self) -> list[Buffer]:
        return [self.out, *self.extra]


@dataclass(eq=False)
class Matmul:
    """``out[b.., i, j] = epilogue(sum_k A[b.., i, k] B[b.., k, j])``.

    ``a`` is stored ``[.., M, K]`` (or ``[.., K, M]`` when ``trans_a``), ``b``
    ``[.., K, N]`` (or ``[.., N, K]`` when ``trans_b``); ``a_batch``/``b_batch``
    map each operand batch dim to an output batch axis (None: broadcast).
    The epilogue's loop axes are the output's: batch axes, then i, then j.
    """

    out: Buffer
    a: Buffer
    b: Buffer
    trans_a: bool
    trans_b: bool
    m: Dim
    n: Dim
    k: Dim
    batch: tuple[Dim, ...] = ()
    a_batch: tuple[int | None, ...] = ()
    b_batch: tuple[int | None, ...] = ()
    epilogue: Expr | None = None
    extra: tuple[tuple[Buffer, Expr], ...] = ()

    @property
    def dtype(self) -> DType:
        return self.out.dtype

    def epilogues(self) -> list[Expr]:
        """The epilogue and the expressions of ``extra``: more outputs of C's shape that
        the store computes from the same sum (``Acc``), stored before C (a plain matmul
        only; ``bufferize.fuse_epilogues``)."""
        return ([] if self.epilogue is None else [self.epilogue]) + [e for _, e in self.extra]

    def reads(self) -> list[Buffer]:
        return [self.a, self.b, *dict.fromkeys(b for e in self.epilogues() for b in buffers_read(e))]

    def writes(self) -> list[Buffer]:
        return [self.out, *(buf for buf, _ in self.extra)]


@dataclass(eq=False)
class Scan:
    """``out[.., i, ..] = expr[.., 0, ..] + .. + expr[.., i, ..]`` along ``axis`` (``out`` and
    ``expr`` range over ``shape``); ``exclusive`` stops before ``i`` (0 first), ``reverse``
    runs from the end.  Emitted by ``scan.py``."""

    out: Buffer
    shape: tuple[Dim, ...]
    axis: int
    expr: Expr
    reverse: bool = False
    exclusive: bool = False

    def reads(self) -> list[Buffer]:
        return buffers_read(self.expr)

    def writes(self) -> list[Buffer]:
        return [self.out]


@dataclass(eq=False)
class TopK:
    """Per row of ``expr`` (ranging over ``shape``; rows along the last axis), the ``k``
    largest values in descending order (``result = "values"``) or their indices (``"indices"``),
    into ``out`` of shape ``[.., k]``.  Emitted by ``topk.py``."""

    out: Buffer
    shape: tuple[Dim, ...]
    k: int
    expr: Expr
    result: str = "values"

    def reads(self) -> list[Buffer]:
        return buffers_read(self.expr)

    def writes(self) -> list[Buffer]:
        return [self.out]


@dataclass(eq=False)
class Scatter:
    """``out = base``, then ``out[index(i)] += value(i)`` for every ``i`` of ``shape``, in
    row-major order (one thread: repeated coordinates add up in a fixed order); with
    ``combine = "min"``, ``out[index(i)] = min(out[index(i)], value(i))`` (integers).

    ``base`` is an expression over ``out``'s shape; ``index`` gives one i64 coordinate of
    ``out`` per dim as an expression over ``shape`` (in range at every position, as a
    :class:`Take`'s); ``value`` is an expression over ``shape``.  The kernel reads ``out``
    (it accumulates), so it never writes over a buffer another expression of it reads.
    """

    out: Buffer
    base: Expr
    shape: tuple[Dim, ...]
    index: tuple[Expr, ...]
    value: Expr
    combine: str = "add"

    def exprs(self) -> list[Expr]:
        return [self.base, *self.index, self.value]

    def reads(self) -> list[Buffer]:
        return [b for e in self.exprs() for b in buffers_read(e)]

    def writes(self) -> list[Buffer]:
        return [self.out]


@dataclass(eq=False)
class Pool:
    """2-D pooling over NHWC images with window ``window`` (a ``compiler.ops.pool.Window``),
    emitted by ``pool.py``.  ``kind``: ``max avg gather`` compute each output window from
    ``inputs`` ``(x,)``, ``(x,)``, ``(x, g)``; ``max_grad avg_grad`` compute the input-shaped
    gradient from ``(x, dy)``, ``(dy,)``.  Its operands are read from memory (windows read
    many elements each), never fused into; a 2x2, stride-2 max pool may be fused into the
    direct convolution that produces its operand (``Conv.pooled``)."""

    out: Buffer
    kind: str
    inputs: tuple[Buffer, ...]
    window: Any
    count_include_pad: bool = False

    def reads(self) -> list[Buffer]:
        return list(self.inputs)

    def writes(self) -> list[Buffer]:
        return [self.out]


@dataclass(eq=False)
class Attention:
    """Fused scaled dot-product attention over ``[*batch, T, D]`` buffers, emitted by
    ``attention.py``.  ``kind`` ``forward``: ``out = attention(q, k, v, mask)``; ``backward``:
    ``out = dq`` and ``extra = (dk, dv)`` from ``(q, k, v, mask, o, do)``.  ``kt`` (and ``vt``
    for the backward) are ``k`` (``v``) with the last two axes swapped, so the scores of
    ``W`` keys are one vector; ``mask`` is None when every key is allowed (a broadcast bool
    buffer otherwise).  Operands are read from memory, never fused."""

    out: Buffer
    kind: str
    q: Buffer
    k: Buffer
    v: Buffer
    kt: Buffer
    mask: Buffer | None
    scale: float
    causal: bool
    vt: Buffer | None = None
    o: Buffer | None = None
    do: Buffer | None = None
    extra: tuple[Buffer, ...] = ()
    lse: Buffer | None = None       # each query row's log-sum-exp: the forward's extra output,
                                    # read by the backward of the same attention (else recomputed)
    index: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # operand (q k v o do) -> its buffer's index map (Load.index), a permutation keeping D last;
    # absent: dense [*batch, T, D]
    shapes: dict[str, tuple[Dim, ...]] = field(default_factory=dict)     # q, k, v: [*batch, T, D]

    def inputs(self) -> list[Buffer]:
        lse = self.lse if self.kind == "backward" else None
        return [b for b in (self.q, self.k, self.v, self.kt, self.mask, self.vt, self.o, self.do, lse)
                if b is not None]

    def replace(self, old: Buffer, new: Buffer) -> None:
        """Read or write ``new`` where the kernel reads or writes ``old``."""
        for name in ("out", "q", "k", "v", "kt", "mask", "vt", "o", "do", "lse"):
            if getattr(self, name) is old:
                setattr(self, name, new)
        self.extra = tuple(new if b is old else b for b in self.extra)

    def reads(self) -> list[Buffer]:
        return self.inputs()

    def writes(self) -> list[Buffer]:
        lse = [self.lse] if self.kind == "forward" and self.lse is not None else []
        return [self.out, *self.extra, *lse]


CONV_KINDS = {"conv2d": "forward", "conv2d_backprop_input": "input", "conv2d_backprop_filter": "filter"}


@dataclass(eq=False)
class Conv(Matmul):
    """A convolution computed as the GEMM it is (docs/codegen.md, "Convolution"), with an
    implicit operand: ``kind`` ``forward`` (``out = conv2d(a, b)``, ``a`` the image, ``b``
    the kernel), ``input`` (the input gradient ``conv2d_backprop_input(a, b)``, ``a`` the
    output gradient) or ``filter`` (the kernel gradient ``conv2d_backprop_filter(a, b)``,
    ``a`` the image, ``b`` the output gradient); ``shape`` is the convolution's geometry
    (:class:`compiler.ops.conv.ConvShape`).

    As a :class:`Matmul` its result is ``out`` as ``[*batch, m, n]`` (``out``'s own shape:
    ``n`` its channels), so epilogue fusion, in-place updates and memory planning treat it
    as any GEMM; ``k`` is the contraction length per image.  Codegen: ``conv.py``."""

    kind: str = "forward"
    shape: ConvShape | None = None
    # a 2x2, stride-2 max pool fused into a forward convolution (``bufferize.fuse_pools``):
    # the pooled result, written instead of ``out`` (which then only gives the epilogue its
    # index space; nothing is stored there)
    pooled: Buffer | None = None

    def writes(self) -> list[Buffer]:
        if self.pooled is not None:
            return [self.pooled, *(buf for buf, _ in self.extra)]
        return super().writes()


@dataclass(eq=False)
class LowpMatmul(Matmul):
    """``matmul_lowp`` in a kernel form (``gemm_lowp.py``): ``precision`` ``default`` (u8/i8
    operands, i32 result, by ``vpdpbusd``) or ``bf16`` (f32/bf16 operands, f32 result, by
    ``vdpbf16ps``).  It takes no epilogue."""

    precision: str = "default"

    @property
    def group(self) -> int:
        """Elements of K per 32-bit word."""
        return 4 if self.precision == "default" else 2


def conv_kernel(kind: str, shape: ConvShape, out: Buffer, a: Buffer, b: Buffer) -> Conv:
    """The :class:`Conv` kernel computing ``out`` from ``a`` and ``b``."""
    s = shape
    k = {"forward": s.kh * s.kw * s.cg, "input": s.kh * s.kw * s.ocg, "filter": s.oh * s.ow}[kind]
    dims = tuple(out.shape)
    return Conv(out, a, b, False, False, dims[-2], dims[-1], k, dims[:-2], kind=kind, shape=shape)



Kernel = Elementwise | Reduce | Matmul | Scan | TopK | Scatter | Pool | Attention   # a Conv is a Matmul


@dataclass(eq=False)
class Program:
    """One function in loop IR: its buffers and the kernels that run in order."""

    name: str
    symbols: list[str]
    params: list[Buffer]
    outputs: list[Buffer]
    buffers: list[Buffer] = field(default_factory=list)    # temps, consts, views
    kernels: list[Kernel] = field(default_factory=list)
    # the dl ops (of the function lowered, before composite expansion) each kernel computes
    kernel_ops: dict[Kernel, list[Any]] = field(default_factory=dict)
    # the workspace plan (bufferize.plan_memory), None when memory was not planned
    memory: MemoryPlan | None = None
    # run-time checks: a flag buffer (an i64[] count of bad elements, written by a kernel)
    # -> the error it means; the entry point returns 2 + its position when the count is not 0
    checks: dict[Buffer, str] = field(default_factory=dict)

    @property
    def temps(self) -> list[Buffer]:
        return [b for b in self.buffers if b.role == TEMP]

    @property
    def consts(self) -> list[Buffer]:
        return [b for b in self.buffers if b.role == CONST]

    @property
    def views(self) -> list[Buffer]:
        return [b for b in self.buffers if b.role == VIEW]


@dataclass(eq=False)
class MemoryPlan:
    """How temporaries share the workspace (``bufferize.plan_memory``).

    ``before``: the temporaries as bufferization made them, each its own
    region; ``slots``: the regions after planning, each a list of buffers
    whose lifetimes (kernel index ranges ``live``) are disjoint, the first
    being the slot's own temporary (the largest) and the others views of it;
    ``inplace``: (buffer, operand) pairs where an elementwise kernel writes
    over an operand at its last use.
    """

    before: list[Buffer]
    slots: list[list[Buffer]]
    live: dict[Buffer, tuple[int, int]]
    inplace: list[tuple[Buffer, Buffer]] = field(default_factory=list)


def nbytes(buf: Buffer, bindings: dict[str, int]) -> int:
    """``buf``'s size in bytes with symbolic dims bound by ``bindings``."""
    size = buf.dtype.itemsize
    for d in buf.shape:
        size *= evaluate(d, bindings)
    return size


SizeCheck = tuple[str, int, tuple[Dim, ...]]     # (what, bytes per element, shape)


def size_checks(prog: Program) -> list[SizeCheck]:
    """Every tensor and loop nest of ``prog`` whose size depends on a symbolic dim, named by
    the dl op it belongs to: what the runtime checks against the size limit
    (``compiler/ir/sizes.py``) once the call binds the dims, before native code runs.
    (Static ones were checked when their ops were built.)"""
    checks: dict[tuple[int, tuple[Dim, ...]], str] = {}

    def add(what: str, dtype: DType, shape: tuple[Dim, ...]) -> None:
        if not all(isinstance(d, int) for d in shape):
            checks.setdefault((dtype.itemsize, tuple(shape)), what)

    for k in prog.kernels:
        op = _main_op(prog, k)
        of = f"dl.{op.name} at {op.loc}" if op is not None else f"kernel {prog.kernels.index(k)}"
        for buf in k.reads():
            add(f"argument '{buf.name[1:]}'" if buf.role == PARAM else f"an operand of {of}",
                buf.dtype, buf.shape)
        if isinstance(k, Reduce):
            add(f"the operand of {of}", k.expr.dtype, k.shape)
        elif isinstance(k, Elementwise):
            for buf, _ in k.outputs():
                add(f"the result of {of}", buf.dtype, k.shape)
        elif isinstance(k, Matmul):
            for buf, _ in k.extra:
                add(f"the result of {of}", buf.dtype, buf.shape)
        add(f"the result of {of}", k.out.dtype, k.out.shape)
    return [(what, itemsize, shape) for (itemsize, shape), what in checks.items()]


def _main_op(prog: Program, k: Kernel) -> Any:
    """The dl op whose result kernel ``k`` computes: its matmul, else the last op fused in."""
    ops = prog.kernel_ops.get(k, [])
    if isinstance(k, Matmul):
        for op in ops:
            if op.name == "matmul":
                return op
    return ops[-1] if ops else None


def size_formula(buffers: list[Buffer]) -> str:
    """The total bytes of ``buffers`` as a formula in their symbolic dims: ``2096*N + 2088``."""
    terms: dict[tuple[str, ...], int] = {}
    for b in buffers:
        coeff = b.dtype.itemsize
        syms: list[str] = []
        for d in b.shape:
            if isinstance(d, int):
                coeff *= d
            else:
                syms.append(f"({d})" if isinstance(d, DimExpr) and d.op == "add" else str(d))
        key = tuple(sorted(syms))
        terms[key] = terms.get(key, 0) + coeff
    parts = [("*".join([str(c), *k]) if k else str(c)) if c != 1 or not k else "*".join(k)
             for k, c in sorted(terms.items(), key=lambda kc: (-len(kc[0]), kc[0]))]
    return " + ".join(parts) if parts else "0"


# -- printing ----------------------------------------------------------------------------------


def axis_name(a: int | None) -> str:
    return "0" if a is None else f"i{a}"


def expr_str(e: Expr) -> str:
    """Text form of an expression: ``add(%t0[i0, i1], %b[i1])``."""
    if isinstance(e, Load):
        return f"{e.buffer.name}[{', '.join(axis_name(a) for a in e.index)}]"
    if isinstance(e, Const):
        return f"{e.value!r}:{e.dtype.dsl_name}"
    if isinstance(e, Iota):
        return f"iota(i{e.axis}):{e.dtype.dsl_name}"
    if isinstance(e, DimValue):
        return f"dim({e.dim}):{e.dtype.dsl_name}"
    if isinstance(e, Acc):
        return "acc"
    if isinstance(e, Take):
        return f"take {e.buffer.name}[{', '.join(expr_str(a) for a in e.index)}]"
    attrs = "".join(f", {k}={v}" for k, v in e.attrs)
    return f"{e.op}({', '.join(expr_str(a) for a in e.args)}{attrs})"


def _dims(shape: tuple[Dim, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def kernel_str(k: Kernel) -> str:
    """One kernel as a line (or two, for a matmul with an epilogue)."""
    if isinstance(k, Elementwise):
        idx = ", ".join(f"i{a}" for a in range(len(k.shape)))
        return f"elementwise {_dims(k.shape)}: " + "; ".join(
            f"{buf.name}[{idx}] = {expr_str(e)}" for buf, e in k.outputs())
    if isinstance(k, Reduce):
        axes = ", ".join(f"i{a}" for a in k.axes)
        outs = ", ".join(b.name for b in k.writes())
        return f"reduce.{k.kind} {_dims(k.shape)} over ({axes}): {outs} = {expr_str(k.expr)}"
    if isinstance(k, Scan):
        how = "".join(f" {flag}" for flag, on in (("reverse", k.reverse), ("exclusive", k.exclusive)) if on)
        return f"scan.sum{how} {_dims(k.shape)} along i{k.axis}: {k.out.name} = {expr_str(k.expr)}"
    if isinstance(k, TopK):
        return f"top_k.{k.result} {_dims(k.shape)} k={k.k}: {k.out.name} = {expr_str(k.expr)}"
    if isinstance(k, Scatter):
        where = ", ".join(expr_str(e) for e in k.index)
        update = "+=" if k.combine == "add" else f"{k.combine}="
        return (f"scatter_{k.combine} {_dims(k.shape)}: {k.out.name} = {expr_str(k.base)}; "
                f"{k.out.name}[{where}] {update} {expr_str(k.value)}")
    if isinstance(k, Pool):
        return pool_str(k)
    if isinstance(k, Attention):
        outs = ", ".join(b.name for b in k.writes())
        args = ", ".join(b.name for b in k.inputs())
        how = f"scale={k.scale:g}{', causal' if k.causal else ''}"
        return f"attention.{k.kind} {_dims(k.shapes['q'])} {how}: {outs} = attention({args})"
    if isinstance(k, Conv):
        return _conv_str(k)
    a = f"{k.a.name}{'^T' if k.trans_a else ''}"
    b = f"{k.b.name}{'^T' if k.trans_b else ''}"
    batch = f"batch {_dims(k.batch)} " if k.batch else ""
    what = f"matmul_lowp.{'int8' if k.precision == 'default' else 'bf16'}" if isinstance(k, LowpMatmul) else "matmul"
    text = f"{what} {batch}[M={k.m}, N={k.n}, K={k.k}]: {k.out.name} = {a} @ {b}"
    for buf, e in k.extra:
        text += f"\n      also: {buf.name} = {expr_str(e)}"
    if k.epilogue is not None:
        text += f"\n      epilogue: {expr_str(k.epilogue)}"
    return text


def pool_str(k: Pool) -> str:
    """``pool.max [N, 14, 14, 8] window 2x2 strides 2x2 padding [0, 0, 0, 0]: %out0 = pool(%x)``."""
    w = k.window
    shape = (k.out.shape[0], *(w.size if k.kind.endswith("_grad") else w.out), k.out.shape[3])
    how = ", count_include_pad" if k.count_include_pad and k.kind.startswith("avg") else ""
    args = ", ".join(b.name for b in k.inputs)
    return (f"pool.{k.kind} {_dims(shape)} window {w.pool[0]}x{w.pool[1]} strides {w.strides[0]}x"
            f"{w.strides[1]} padding {list(w.padding)}{how}: {k.out.name} = pool({args})")


def _conv_str(k: Conv) -> str:
    """``conv2d [N, 28x28x32 -> 28x28x64, kernel 3x3, ...]: %out0 = conv(%x, %w)``."""
    s = k.shape
    geo = (f"{s.n}, {s.h}x{s.w}x{s.c} -> {s.oh}x{s.ow}x{s.oc}, kernel {s.kh}x{s.kw}, "
           f"strides {s.strides[0]}x{s.strides[1]}, padding {','.join(map(str, s.padding))}, "
           f"dilations {s.dilations[0]}x{s.dilations[1]}, groups {s.groups}")
    op = {"forward": "conv", "input": "conv^T", "filter": "corr"}[k.kind]
    name = {"forward": "conv2d", "input": "conv2d.input", "filter": "conv2d.filter"}[k.kind]
    text = f"{name} [{geo}]: {k.out.name} = {op}({k.a.name}, {k.b.name})"
    if k.epilogue is not None:
        text += f"\n      epilogue: {expr_str(k.epilogue)}"
    if k.pooled is not None:
        text += f"\n      max_pool 2x2 strides 2x2: {k.pooled.name} (of the epilogue's result, which is not stored)"
    return text


def print_program(p: Program) -> str:
    """The text form of a program (stable: used in tests and ``dlc ir --stage loops``)."""
    lines = [f"loops @{p.name}({', '.join(p.symbols)}) {{"]
    for b in p.params:
        lines.append(f"  param  {b.name}: {b.type_str()}")
    for b in p.outputs:
        extra = f" inplace({b.inplace_of.name})" if b.inplace_of is not None else ""
        lines.append(f"  output {b.name}: {b.type_str()}{extra}")
    for b in p.buffers:
        if b.role == TEMP:
            lines.append(f"  temp   {b.name}: {b.type_str()}")
        elif b.role == CONST:
            lines.append(f"  const  {b.name}: {b.type_str()}")
        else:
            assert b.base is not None
            lines.append(f"  view   {b.name}: {b.type_str()} = {b.base.name}")
    for i, k in enumerate(p.kernels):
        lines.append(f"  k{i}: {kernel_str(k)}")
        if k.out in p.checks:
            lines.append(f"      check: {k.out.name} == 0, else error: {p.checks[k.out]}")
    lines.append("}")
    return "\n".join(lines)


# -- row softmax fusion ------------------------------------------------------------------------
#
# A softmax over the last axis expands (``softmax``'s ``decompose`` rule) to
#
#     M = max(E) over the row;  T = E - M;  S = sum(exp(T)) over the row;
#     probs = exp(T) / S;  log_probs = T - log(S)
#
# -- four kernels and three passes over the row before any consumer.  When
# every use of ``M`` and ``S`` is one of those two forms,
# :func:`fuse_row_softmax` merges the ``max`` and the ``sum`` reductions into
# one ``softmax_stats`` reduction writing ``M``, ``S`` and ``log(S)`` (one
# pass, *online*: see ``kernels._emit_softmax_stats``; consumers read
# ``log(S)`` instead of taking a log per element), and inlines the elementwise
# temporaries between them and their consumers into those, so the normalized
# output, the loss and the gradient are each computed in the pass that
# consumes them.  The consumers keep their forms: ``(E - M) - log(S)`` is
# exact to a few ULP for any magnitude of ``E``, where ``E - (M + log(S))``
# would lose the low bits of ``log(S)`` to the rounding of ``M + log(S)``
# (``E`` near 1e4 in f32: errors of 1e-4).

EXPENSIVE = frozenset({"exp", "log", "tanh", "sigmoid", "pow", "sqrt", "div",
                       "erf", "expm1", "log1p", "sin", "cos", "softplus", "silu", "gelu", "elu", "selu"})
EXPENSIVE |= PHILOX_OPS          # random numbers: ten rounds of Philox multiplies each


def same_expr(a: Expr, b: Expr) -> bool:
    """Structural equality of two expressions (same loads, constants and ops)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, Load):
        return a.buffer is b.buffer and a.index == b.index
    if isinstance(a, Const):
        return a.value == b.value and a.dtype is b.dtype
    if isinstance(a, Iota):
        return a.axis == b.axis and a.dtype is b.dtype
    if isinstance(a, DimValue):
        return a.dim == b.dim and a.dtype is b.dtype
    if isinstance(a, Apply):
        return (a.op == b.op and a.dtype is b.dtype and a.attrs == b.attrs and len(a.args) == len(b.args)
                and all(same_expr(x, y) for x, y in zip(a.args, b.args)))
    if isinstance(a, Take):
        return (a.buffer is b.buffer and len(a.index) == len(b.index)
                and all(same_expr(x, y) for x, y in zip(a.index, b.index)))
    return True


def _inlinable_producers(prog: Program) -> dict[Buffer, Elementwise]:
    """Temporaries written whole by an elementwise kernel of their own shape (no views)."""
    viewed = {b.base for b in prog.buffers if b.base is not None}
    return {k.out: k for k in prog.kernels
            if isinstance(k, Elementwise) and not k.extra and k.out.role == TEMP and k.out.base is None
            and k.out not in viewed and tuple(k.shape) == tuple(k.out.shape)}


def _expand(expr: Expr, shape: tuple[Dim, ...], producers: dict[Buffer, Elementwise]) -> Expr | None:
    """``expr`` with identity loads of inlinable temporaries replaced by their definitions,
    through any number of them; None if that grows past ``MAX_EXPR_NODES`` (no fusion then)."""
    ident = identity_index(len(shape))

    def inlinable(ld: Load) -> Elementwise | None:
        k = producers.get(ld.buffer)
        return k if k is not None and ld.index == ident and tuple(k.shape) == tuple(shape) else None

    def inline(ld: Load) -> Expr:
        k = inlinable(ld)
        return ld if k is None else k.expr

    for _ in range(MAX_EXPR_NODES):         # each round inlines one more level of producers
        if not any(inlinable(ld) for ld in loads(expr)):
            return expr
        expr = replace_loads(expr, inline)
        if expr_size(expr, MAX_EXPR_NODES) > MAX_EXPR_NODES:
            return None
    return None


def _is_apply(e: Expr, op: str) -> bool:
    return isinstance(e, Apply) and e.op == op


def _shifted(e: Expr, row: Expr, m_load: Load) -> bool:
    """Whether ``e`` is ``row - M``."""
    return (_is_apply(e, "sub") and same_expr(e.args[0], row)
            and isinstance(e.args[1], Load) and e.args[1].buffer is m_load.buffer
            and e.args[1].index == m_load.index)


def _uses_ok(e: Expr, row: Expr, m_load: Load, s: Buffer) -> bool:
    """Every use of ``M`` and ``S`` in ``e`` is ``exp(row - M) / S`` or ``(row - M) - log(S)``."""
    if isinstance(e, Load):
        return e.buffer is not m_load.buffer and e.buffer is not s
    if isinstance(e, Take):
        return not _touches(e, {m_load.buffer, s})
    if not isinstance(e, Apply):
        return True
    a = e.args
    if (e.op == "div" and _is_apply(a[0], "exp") and _shifted(a[0].args[0], row, m_load)
            and isinstance(a[1], Load) and a[1].buffer is s):
        return True
    if (e.op == "sub" and _shifted(a[0], row, m_load) and _is_apply(a[1], "log")
            and isinstance(a[1].args[0], Load) and a[1].args[0].buffer is s):
        return True
    return all(_uses_ok(x, row, m_load, s) for x in a)


def _touches(e: Expr, bufs: set[Buffer]) -> bool:
    return any(b in bufs for b in buffers_read(e))


def _kernel_exprs(k: Kernel) -> list[Expr]:
    if isinstance(k, (Pool, Attention)):
        return []
    if isinstance(k, Matmul):
        return k.epilogues()
    if isinstance(k, Scatter):
        return k.exprs()
    if isinstance(k, Elementwise):
        return [e for _, e in k.outputs()]
    return [k.expr]


def _softmax_match(prog: Program, mx: Reduce) -> Reduce | None:
    """The ``sum(exp(E - M))`` reduction pairing with ``max`` reduction ``mx``, if every use fits."""
    m = mx.out
    rank = len(mx.shape)
    if (mx.kind != "max" or not m.dtype.is_float or mx.axes != (rank - 1,) or rank == 0
            or m.role != TEMP or m.base is not None):
        return None
    if any(b.base is m for b in prog.buffers):
        return None
    producers = _inlinable_producers(prog)
    row = _expand(mx.expr, mx.shape, producers)
    if row is None:
        return None
    m_load = Load(m, (*range(rank - 1), None) if m.rank == rank else tuple(range(rank - 1)))
    for k in prog.kernels:
        if not (isinstance(k, Reduce) and k.kind == "sum" and k.axes == mx.axes
                and tuple(k.shape) == tuple(mx.shape) and k.out.role == TEMP and k.out.base is None
                and tuple(k.out.shape) == tuple(m.shape)):
            continue
        e = _expand(k.expr, k.shape, producers)
        if e is None or not (_is_apply(e, "exp") and _shifted(e.args[0], row, m_load)):
            continue
        if any(b.base is k.out for b in prog.buffers):
            continue
        if _all_uses_ok(prog, mx, k, row, m_load, producers):
            return k
    return None


def _all_uses_ok(prog: Program, mx: Reduce, s_kernel: Reduce, row: Expr, m_load: Load,
                 producers: dict[Buffer, Elementwise]) -> bool:
    """Whether every kernel reading ``M`` or ``S`` (through inlinable temporaries) fits the forms."""
    s = s_kernel.out
    watched = {mx.out, s}
    readers: dict[Buffer, list[Kernel]] = {}
    for k in prog.kernels:
        for buf in dict.fromkeys(k.reads()):
            readers.setdefault(buf, []).append(k)

    def valid(k: Kernel, depth: int = 0) -> bool:
        if k is s_kernel or k is mx:
            return True
        if isinstance(k, (Scatter, Pool, Attention)):  # reads M or S from memory: they must stay
            return False
        if isinstance(k, Matmul):
            return not any(_touches(e, watched) for e in k.epilogues()) and \
                k.a not in watched and k.b not in watched
        e = _expand(k.expr, k.shape, producers)
        if e is None:
            return False
        if _uses_ok(e, row, m_load, s):
            return True
        # an intermediate (``E - M`` alone): fine when every reader inlines it and fits
        # (``depth``: a chain of intermediates longer than any expression is given up on)
        if k.out not in producers or depth >= MAX_EXPR_NODES:
            return False
        ident = identity_index(len(k.shape))
        for r in readers.get(k.out, []):
            if isinstance(r, (Matmul, Scatter, Pool, Attention)) or tuple(r.shape) != tuple(k.shape):
                return False
            if any(ld.index != ident for ld in loads(r.expr) if ld.buffer is k.out):
                return False
            if any(t.buffer is k.out for t in takes(r.expr)):
                return False
            if not valid(r, depth + 1):
                return False
        return True

    suspects = {k for b in watched for k in readers.get(b, [])}
    return all(valid(k) for k in suspects)


def _merge_ops(prog: Program, into: Kernel, gone: Kernel) -> None:
    merged = list(prog.kernel_ops.get(into, [])) + list(prog.kernel_ops.pop(gone, []))
    prog.kernel_ops[into] = list(dict.fromkeys(merged))


def _cheap(e: Expr) -> bool:
    ops = [n for n in walk(e) if isinstance(n, Apply)]
    return len(ops) <= 3 and not any(n.op in EXPENSIVE for n in ops)


def _inline_from(prog: Program, seeds: set[Buffer]) -> None:
    """Inline the elementwise temporaries computed from ``seeds`` into their readers.

    A temporary is inlined when all its readers are elementwise or reduction
    kernels over its shape reading it at the element they compute, and it is
    either cheap or read by one kernel only (so no work is duplicated beyond
    a few adds).
    """
    family = set(seeds)
    changed = True
    while changed:
        changed = False
        producers = _inlinable_producers(prog)
        for k in list(prog.kernels):
            if not isinstance(k, (Elementwise, Reduce)) or not _touches(k.expr, family):
                continue
            family.add(k.out)
            if k.out not in producers:
                continue
            readers = [r for r in prog.kernels if r is not k and k.out in r.reads()]
            ident = identity_index(len(k.shape))
            if not readers or not all(
                    isinstance(r, (Elementwise, Reduce)) and tuple(r.shape) == tuple(k.shape)
                    and all(ld.index == ident for ld in loads(r.expr) if ld.buffer is k.out)
                    and not any(t.buffer is k.out for t in takes(r.expr))
                    for r in readers):
                continue
            if len(readers) > 1 and not _cheap(k.expr):
                continue
            inlined = [replace_loads(r.expr, lambda ld, k=k: k.expr if ld.buffer is k.out else ld)
                       for r in readers]
            if any(expr_size(e, MAX_EXPR_NODES) > MAX_EXPR_NODES for e in inlined):
                continue                    # a reader would outgrow the bound on expressions
            for r, expr in zip(readers, inlined):
                r.expr = expr
                merged = list(prog.kernel_ops.get(r, [])) + list(prog.kernel_ops.get(k, []))
                prog.kernel_ops[r] = list(dict.fromkeys(merged))
            prog.kernel_ops.pop(k, None)
            prog.kernels.remove(k)
            changed = True
            break


def fuse_row_softmax(prog: Program) -> int:
    """Merge each last-axis softmax's ``max`` and ``sum`` reductions (see above) into one
    ``softmax_stats`` pass; returns how many."""
    count = 0
    seeds: set[Buffer] = set()
    for mx in list(prog.kernels):
        if not isinstance(mx, Reduce) or mx not in prog.kernels:
            continue
        sk = _softmax_match(prog, mx)
        if sk is None:
            continue
        s = sk.out
        log_s = Buffer(f"{s.name}_log", s.dtype, s.shape, TEMP)
        prog.buffers.append(log_s)
        mx.kind = "softmax_stats"
        mx.extra = (s, log_s)
        prog.kernels.remove(sk)
        _merge_ops(prog, mx, sk)
        for k in prog.kernels:
            if not isinstance(k, (Matmul, Scatter, Pool, Attention)):    # _softmax_match: none reads S
                k.expr = _read_log(k.expr, s, log_s)
        seeds.update(mx.writes())
        count += 1
    if seeds:
        _inline_from(prog, seeds)
    return count


def _read_log(e: Expr, s: Buffer, log_s: Buffer) -> Expr:
    """``e`` with every ``log(s[..])`` replaced by ``log_s[..]``."""
    if not isinstance(e, Apply):
        return e
    if e.op == "log" and isinstance(e.args[0], Load) and e.args[0].buffer is s:
        return Load(log_s, e.args[0].index)
    return replace(e, args=tuple(_read_log(a, s, log_s) for a in e.args))
