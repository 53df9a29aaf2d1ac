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
  - :class:`Reduce` -- ``sum mean max min argmax`` of an expression over
    ``axes`` (the expression fuses the producers of the reduced operand).
  - :class:`Matmul` -- ``[batch.., M, K] @ [batch.., K, N]``, operands in
    either layout (``trans_a``/``trans_b``: a transpose feeding a matmul is
    not copied), with an optional *epilogue* expression applied to each
    result element (``Acc``) before it is stored (bias, activation, an
    optimizer update...).

Expressions (:data:`Expr`): :class:`Load` (a buffer read through an index
map: for each buffer dim, the loop axis indexing it, or ``None`` for a
broadcast size-1 dim read at 0), :class:`Const`, :class:`Iota` (the loop
index along an axis), :class:`DimValue` (a dim's runtime size),
:class:`Apply` (an elementwise op of the op table, emitted by its ``emit``
rule) and :class:`Acc` (the matmul accumulator, in epilogues).

``print_program`` gives the text form that ``dlc ir FILE --stage loops`` shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Union

import numpy as np

from ..ir.types import Dim, DType

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
    """Elementwise op ``op`` (an op-table name) over ``args``; ``in_dtype`` is its operand dtype."""

    op: str
    args: tuple[Expr, ...]
    dtype: DType
    in_dtype: DType


@dataclass(frozen=True, eq=False)
class Acc:
    """A matmul's accumulated result, inside its epilogue."""

    dtype: DType


Expr = Union[Load, Const, Iota, DimValue, Apply, Acc]


def walk(expr: Expr) -> Iterator[Expr]:
    """Every node of ``expr``, parents before children."""
    yield expr
    if isinstance(expr, Apply):
        for a in expr.args:
            yield from walk(a)


def loads(expr: Expr) -> list[Load]:
    return [e for e in walk(expr) if isinstance(e, Load)]


def remap(expr: Expr, axis_map: list[int | None]) -> Expr:
    """``expr`` over new loop axes: old axis ``a`` becomes ``axis_map[a]`` (None: index 0)."""
    if isinstance(expr, Load):
        index = tuple(None if a is None else axis_map[a] for a in expr.index)
        return Load(expr.buffer, index)
    if isinstance(expr, Iota):
        new = axis_map[expr.axis]
        return Const(0, expr.dtype) if new is None else Iota(new, expr.dtype)
    if isinstance(expr, Apply):
        return Apply(expr.op, tuple(remap(a, axis_map) for a in expr.args), expr.dtype, expr.in_dtype)
    return expr


def replace_loads(expr: Expr, fn) -> Expr:
    """``expr`` with every load ``l`` replaced by ``fn(l)``."""
    if isinstance(expr, Load):
        return fn(expr)
    if isinstance(expr, Apply):
        return Apply(expr.op, tuple(replace_loads(a, fn) for a in expr.args), expr.dtype, expr.in_dtype)
    return expr


def identity_index(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


# -- kernels -----------------------------------------------------------------------------------


@dataclass(eq=False)
class Elementwise:
    """``out[i] = expr(i)`` for every index ``i`` of ``shape`` (``out`` has ``shape``)."""

    out: Buffer
    shape: tuple[Dim, ...]
    expr: Expr

    def reads(self) -> list[Buffer]:
        return [ld.buffer for ld in loads(self.expr)]


@dataclass(eq=False)
class Reduce:
    """``out = kind over axes of expr`` where ``expr`` ranges over ``shape``.

    ``out`` holds the kept axes in order (with or without keepdims' 1s: the
    same memory layout).  ``kind`` is ``sum mean max min argmax``.
    """

    out: Buffer
    kind: str
    shape: tuple[Dim, ...]
    axes: tuple[int, ...]
    expr: Expr

    def reads(self) -> list[Buffer]:
        return [ld.buffer for ld in loads(self.expr)]


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

    @property
    def dtype(self) -> DType:
        return self.out.dtype

    def reads(self) -> list[Buffer]:
        extra = [ld.buffer for ld in loads(self.epilogue)] if self.epilogue is not None else []
        return [self.a, self.b, *extra]


Kernel = Union[Elementwise, Reduce, Matmul]


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
        size *= d if isinstance(d, int) else bindings[d]
    return size


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
                syms.append(d)
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
    return f"{e.op}({', '.join(expr_str(a) for a in e.args)})"


def _dims(shape: tuple[Dim, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def kernel_str(k: Kernel) -> str:
    """One kernel as a line (or two, for a matmul with an epilogue)."""
    if isinstance(k, Elementwise):
        idx = ", ".join(f"i{a}" for a in range(len(k.shape)))
        return f"elementwise {_dims(k.shape)}: {k.out.name}[{idx}] = {expr_str(k.expr)}"
    if isinstance(k, Reduce):
        axes = ", ".join(f"i{a}" for a in k.axes)
        return (f"reduce.{k.kind} {_dims(k.shape)} over ({axes}): "
                f"{k.out.name} = {expr_str(k.expr)}")
    a = f"{k.a.name}{'^T' if k.trans_a else ''}"
    b = f"{k.b.name}{'^T' if k.trans_b else ''}"
    batch = f"batch {_dims(k.batch)} " if k.batch else ""
    text = f"matmul {batch}[M={k.m}, N={k.n}, K={k.k}]: {k.out.name} = {a} @ {b}"
    if k.epilogue is not None:
        text += f"\n      epilogue: {expr_str(k.epilogue)}"
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
    lines.append("}")
    return "\n".join(lines)
