"""Source locations and the one error hierarchy of dlc.

Every user-facing mistake is a :class:`DlError`.  An error holds a message and,
where it has one, a :class:`Location`; ``render()`` prints it the way compilers
do::

    model.dl:3:12: error: unknown name 'w3'
        let y = w3 @ x
                ^^

Several independent errors travel together as a :class:`DlErrors` so a user
sees all of them at once.  Internal invariants may ``assert``; user mistakes
never do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Location:
    """A span in a source file: 1-based line and column, end exclusive.

    ``backward_of`` marks gradient code: the location is that of the forward
    op the gradient op was derived from (printed ``backward of file:line``).
    """

    file: str
    line: int
    col: int
    end_line: int | None = None
    end_col: int | None = None
    backward: bool = False

    def as_backward(self) -> Location:
        return Location(self.file, self.line, self.col, self.end_line, self.end_col, True)

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}:{self.col}"
        return f"backward of {text}" if self.backward else text


UNKNOWN = Location("<unknown>", 0, 0)

# Source texts by file name, so an error can show the offending line even when
# it is raised far from the frontend (verifier, autodiff, codegen).
_SOURCES: dict[str, str] = {}


def register_source(file: str, text: str) -> None:
    """Remember a source text so diagnostics for ``file`` can quote it."""
    _SOURCES[file] = text


def source_line(file: str, line: int) -> str | None:
    """Line ``line`` (1-based) of ``file``, counted as both parsers count: at ``\n`` only
    (``str.splitlines`` would also split at ``\f``, ``\v``, U+2028, ...)."""
    text = _SOURCES.get(file)
    if text is None:
        path = Path(file)
        if not path.is_file():
            return None
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            return None
    lines = text.split("\n")
    if 1 <= line <= len(lines):
        return lines[line - 1].removesuffix("\r")
    return None


def abbreviate(text: str, limit: int = 40) -> str:
    """``text`` for a message: a literal thousands of digits long as its ends and length."""
    if len(text) <= limit:
        return text
    return f"{text[:10]}...{text[-6:]} ({len(text)} characters)"


class DlError(Exception):
    """A user-facing error: a message and an optional source location."""

    kind = "error"

    def __init__(self, message: str, loc: Location | None = None, notes: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.loc = loc
        self.notes = list(notes or [])

    def render(self) -> str:
        """``file:line:col: error: message``, the source line and carets."""
        loc = self.loc
        if loc is None or loc.line <= 0:
            head = f"error: {self.message}"
            return "\n".join([head, *(f"note: {n}" for n in self.notes)])
        where = f"{loc.file}:{loc.line}:{loc.col}"
        prefix = "error: in backward of this line: " if loc.backward else "error: "
        out = [f"{where}: {prefix}{self.message}"]
        text = source_line(loc.file, loc.line)
        if text is not None:
            out.append(text)
            start = max(loc.col - 1, 0)
            if loc.end_line == loc.line and loc.end_col is not None and loc.end_col > loc.col:
                width = loc.end_col - loc.col
            else:
                width = 1
            width = max(1, min(width, max(len(text) - start, 1)))
            out.append(" " * start + "^" * width)
        out.extend(f"note: {n}" for n in self.notes)
        return "\n".join(out)

    def __str__(self) -> str:
        return self.render()


class DlErrors(DlError):
    """Several independent errors, reported together, in source order."""

    def __init__(self, errors: Sequence[DlError]):
        assert errors, "DlErrors needs at least one error"
        self.errors = sorted(errors, key=_error_order)
        super().__init__(self.errors[0].message, self.errors[0].loc)

    def render(self) -> str:
        return "\n".join(e.render() for e in self.errors)


def _error_order(e: DlError) -> tuple[int, int]:
    return (e.loc.line, e.loc.col) if e.loc else (0, 0)


class ParseError(DlError):
    """Malformed source text (.dl or IR text)."""


class NameResolutionError(DlError):
    """An unknown or duplicate name."""


class DlTypeError(DlError):
    """A dtype, shape, arity or attribute mismatch."""


class VerifyError(DlError):
    """IR that breaks an invariant (dominance, types against shape rules)."""


class AutodiffError(DlError):
    """A function that cannot be differentiated as asked."""


class LoweringError(DlError):
    """IR that cannot be lowered to native code."""


class DlRuntimeError(DlError):
    """A failure while loading or calling compiled code, or reading data."""


class SizeError(DlTypeError):
    """A tensor whose static dims break the size limit (``compiler/ir/sizes.py``).

    ``type_text`` (``f32[4294967296, 4294967296]``) and ``problem`` (``would hold
    2^64 elements ...``) let the frontend say it again with the name the user gave
    the value (``'t' (f32[...]) would hold ...``)."""

    def __init__(self, message: str, loc: Location | None = None, *, type_text: str = "",
                 problem: str = ""):
        super().__init__(message, loc)
        self.type_text = type_text
        self.problem = problem


class SizeLimitError(DlRuntimeError, ValueError):
    """A call whose dims make a tensor, loop nest or workspace break the size limit."""


class AllocationError(DlRuntimeError, MemoryError):
    """Memory that cannot be allocated: more than the machine has, or refused."""


class ArgumentTypeError(DlRuntimeError, TypeError):
    """A Python API argument of the wrong type (or count, name, dtype); the message names it."""


class ArgumentValueError(DlRuntimeError, ValueError):
    """A Python API argument of the right type but a wrong value (range, rank, shape, layout)."""


class DlIndexError(DlRuntimeError, IndexError):
    """An index outside its dimension (``gather``, ``take_along_axis``, the scatters) when a
    function runs: raised by the reference interpreter and by calls into native code."""
