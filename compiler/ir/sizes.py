"""How large a tensor may be, and the one place sizes are checked against it.

**The rule.**  A tensor's *extent* is the product of its dims, each 0 counted
as 1 (as numpy counts when it checks a shape); its extent times its element
size must be at most :data:`MAX_BYTES` = 2^62 bytes.  So every element
count, byte size, stride and loop bound of a tensor -- and the sum of a few
of them, as a workspace offset is -- fits a signed 64-bit integer with room
to spare, and native code computes them in ``i64`` without overflow.  A
broadcast view (``broadcast_to(x, [2^32, 2^32])``) is a tensor like any
other: a reduction over it counts its elements, materialized or not.

Where it is checked (docs/ops.md, "Sizes and overflow"):

* **compile time**, static dims: every type written in ``.dl`` source
  (``frontend_dsl.body.resolve_type``), every op result
  (``Builder.make``) and every type of IR text (the verifier) -- a located
  :class:`~compiler.diagnostics.SizeError`; a symbolic dim counts as 1 there;
* **call time**, symbolic dims bound by the arguments: the compiled
  function's tensors, loop nests and workspace (``runtime.compiled``, from
  the plan recorded in ``FunctionInfo``) and the interpreter's op results --
  a :class:`~compiler.diagnostics.SizeLimitError` before native code (or the
  op) runs;
* an **allocation** that cannot be made (more than the machine's memory, or
  refused) is an :class:`~compiler.diagnostics.AllocationError` saying how
  many GiB were asked and how much the machine has.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from ..diagnostics import AllocationError, SizeLimitError
from .dims import evaluate
from .types import Dim, TensorType

MAX_BYTES = 1 << 62

Bindings = Mapping[str, int]


def extent(shape: Iterable[Dim], bindings: Bindings | None = None) -> int:
    """The product of ``shape``'s dims, each 0 (and each dim whose symbols ``bindings`` lacks) counted as 1."""
    n = 1
    for d in shape:
        n *= max(_value(d, bindings), 1)
    return n


def _value(d: Dim, bindings: Bindings | None) -> int:
    """``d``'s value, or 1 where a symbol it depends on is not bound."""
    value = _bound_value(d, bindings)
    return 1 if value is None else value


def power(n: int) -> str:
    """``2^64`` for a power of two, else the number (and its magnitude when large)."""
    if n >= 1024 and n & (n - 1) == 0:
        return f"2^{n.bit_length() - 1}"
    if n < 10 ** 6:
        return str(n)
    return f"{n} (about 2^{math.log2(n):.1f})"


def size_problem(itemsize: int, shape: tuple[Dim, ...], bindings: Bindings | None = None) -> str | None:
    """Why a tensor of ``shape`` (symbols bound by ``bindings``) breaks the rule, as a phrase
    (``would hold 2^64 elements (2^66 bytes; ...)``), or None when it keeps it."""
    span = extent(shape, bindings)
    nbytes = span * itemsize
    if nbytes <= MAX_BYTES:
        return None
    limit = f"a tensor may span at most {power(MAX_BYTES)} bytes"
    values = [d if isinstance(d, int) else _bound_value(d, bindings) for d in shape]
    if 0 in values:
        return (f"would span {power(span)} elements along its nonzero dims "
                f"({power(nbytes)} bytes; {limit})")
    least = " at least" if None in values else ""
    return f"would hold{least} {power(span)} elements ({power(nbytes)} bytes; {limit})"


def _bound_value(d: Dim, bindings: Bindings | None) -> int | None:
    """``d``'s value, or None where a symbol it depends on is not bound."""
    try:
        return evaluate(d, bindings or {})
    except KeyError:
        return None


def type_problem(t: TensorType, bindings: Bindings | None = None) -> str | None:
    """:func:`size_problem` for a tensor type."""
    return size_problem(t.dtype.itemsize, t.shape, bindings)


def check_call_sizes(where: str, sizes: Iterable[tuple[str, int, tuple[Dim, ...]]],
                     bindings: Bindings) -> None:
    """Raise :class:`SizeLimitError` for the first ``(what, itemsize, shape)`` of ``sizes``
    that breaks the rule with ``bindings`` (a call's dims): ``where`` names the function."""
    for what, itemsize, shape in sizes:
        problem = size_problem(itemsize, shape, bindings)
        if problem is not None:
            raise SizeLimitError(f"{call_text(where, bindings)}{what} {problem}")


def call_text(where: str, bindings: Bindings) -> str:
    """``@f: with N=3, `` (or ``@f: `` when the call binds no dims): a message's start."""
    if not bindings:
        return f"{where}: "
    return f"{where}: with {', '.join(f'{k}={v}' for k, v in bindings.items())}, "


# ---------------------------------------------------------------------------
# Allocations


@functools.cache
def physical_memory() -> int:
    """Bytes of physical memory of this machine (0 where the system does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def gib(nbytes: int) -> str:
    """``12.5 GiB``, ``4,096.0 GiB``."""
    return f"{nbytes / 2 ** 30:,.1f} GiB"


def allocation_error(what: str, nbytes: int) -> AllocationError:
    """The error for an allocation of ``nbytes`` for ``what`` that cannot be made."""
    memory = physical_memory()
    has = f"this machine has {gib(memory)} of memory" if memory else "the allocation failed"
    return AllocationError(f"{what} needs {gib(nbytes)} ({nbytes} bytes); {has}")


def check_allocation(what: str, nbytes: int) -> None:
    """Raise :class:`AllocationError` when ``nbytes`` is more than the machine's memory
    (an allocation that could only end in the out-of-memory killer, or a refusal)."""
    memory = physical_memory()
    if nbytes > MAX_BYTES or (memory and nbytes > memory):
        raise allocation_error(what, nbytes)


@contextmanager
def allocating(what: str, nbytes: int) -> Iterator[None]:
    """Around code that allocates ``nbytes`` for ``what``: :func:`check_allocation` first,
    and a ``MemoryError`` inside becomes an :class:`AllocationError` saying the same."""
    check_allocation(what, nbytes)
    try:
        yield
    except AllocationError:
        raise
    except MemoryError:
        raise allocation_error(what, nbytes) from None


__all__ = [
    "MAX_BYTES",
    "allocating",
    "allocation_error",
    "call_text",
    "check_allocation",
    "check_call_sizes",
    "extent",
    "gib",
    "physical_memory",
    "power",
    "size_problem",
    "type_problem",
]
