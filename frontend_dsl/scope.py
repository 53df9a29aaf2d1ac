"""What names are bound to while a ``.dl`` file is lowered, and how errors are gathered.

The bottom floor of the lowering: :class:`Scope` (a scoped symbol table of
:class:`Binding`), :class:`Lit` (a literal not yet given a dtype),
:class:`Word` (a bare name used as a constant), and *poison*: a name whose
definition failed is bound to :data:`POISON`, and using it raises
:class:`Poisoned`, which callers swallow, so one mistake is reported once
rather than at every later use.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from compiler.diagnostics import DlError, DlErrors, DlTypeError, Location, NameResolutionError
from compiler.ir.core import Value

from . import ast


@dataclass(frozen=True, slots=True)
class Lit:
    """A literal not yet given a dtype; it takes the dtype of the tensor it meets."""

    value: int | float | bool
    span: Location

    @property
    def kind(self) -> str:
        if isinstance(self.value, bool):
            return "bool"
        return "int" if isinstance(self.value, int) else "float"

    def text(self) -> str:
        if isinstance(self.value, bool):
            return "true" if self.value else "false"
        return repr(self.value)


@dataclass(frozen=True)
class Word:
    """A bare name used as a constant: a dtype, an activation, a symbol..."""

    name: str
    span: Location


class Poison:
    """Bound to a name whose definition failed (an error was already reported)."""


POISON = Poison()


class Poisoned(Exception):
    """An expression used a poisoned name: fail quietly, the cause is reported."""


Bound = Value | Lit | Poison


@dataclass
class Binding:
    value: Bound
    span: Location


class Scope:
    """A scoped symbol table: names to values, looked up through the parents."""

    def __init__(self, parent: Scope | None = None):
        self.parent = parent
        self.names: dict[str, Binding] = {}

    def lookup(self, name: str) -> Binding | None:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.names:
                return scope.names[name]
            scope = scope.parent
        return None

    def define(self, name: ast.Name, value: Bound) -> None:
        """Bind ``name``; defining a name visible here again (no shadowing) is an error."""
        previous = self.lookup(name.id)
        if previous is not None:
            raise NameResolutionError(f"'{name.id}' is already defined", name.span,
                                      notes=[f"previous definition at {previous.span}"])
        self.names[name.id] = Binding(value, name.span)

    def poison(self, names: Iterable[ast.Name]) -> None:
        """Mark names whose definition failed, so later uses stay quiet."""
        for n in names:
            if n.id not in self.names:
                self.names[n.id] = Binding(POISON, n.span)

    def all_names(self) -> list[str]:
        out: list[str] = []
        scope: Scope | None = self
        while scope is not None:
            out += scope.names
            scope = scope.parent
        return out


# ---------------------------------------------------------------------------
# Gathering errors


@contextmanager
def nesting_limit(span: Location) -> Iterator[None]:
    """Report an expression too deep for Python's stack as an error at ``span``."""
    try:
        yield
    except RecursionError:
        raise DlTypeError("this expression is nested too deeply to compile; split it with 'let'",
                          span) from None


def did_you_mean(name: str, candidates: Iterable[str]) -> list[str]:
    """A note suggesting the closest candidate, if any is close."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.5)
    return [f"did you mean '{close[0]}'?"] if close else []


def collect_errors(errors: list[DlError], e: DlError) -> None:
    """Append ``e`` (or each error of a ``DlErrors``) to ``errors``."""
    errors.extend(e.errors if isinstance(e, DlErrors) else [e])


def raise_all(errors: list[DlError]) -> None:
    """Raise the collected errors together, if there are any."""
    if errors:
        raise DlErrors(errors)
