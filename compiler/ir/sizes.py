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
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from ..diagnostics import SizeLimitError
from .types import Dim, TensorType

MAX_BYTES = 1 << 62

Bindings = Mapping[str, int]


def extent(shape: Iterable[Dim], bindings: Bindings | None = None) -> int:
    """The product of ``shape``'s dims, each 0 (and each symbol ``bindings`` lacks) counted as 1."""
    n = 1
    for d in shape:
        if isinstance(d, str):
            d = (bindings or {}).get(d, 1)
        n *= max(d, 1)
    return n


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
    values = [(bindings or {}).get(d) if isinstance(d, str) else d for d in shape]
    if 0 in values:
        return (f"would span {power(span)} elements along its nonzero dims "
                f"({power(nbytes)} bytes; {limit})")
    least = " at least" if None in values else ""
    return f"would hold{least} {power(span)} elements ({power(nbytes)} bytes; {limit})"


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


__all__ = ["MAX_BYTES", "call_text", "check_call_sizes", "extent", "power", "size_problem", "type_problem"]
