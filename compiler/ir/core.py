"""The dl IR data model: Module -> Function -> ops; values in SSA form.

A :class:`Value` is a function parameter or the result of an :class:`Op`, and
carries its :class:`TensorType`.  A function has one straight-line block of
ops (structured control flow, if it ever comes, nests regions as MLIR does)
and a list of output values, printed as ``func.return``.

The data model holds no use-lists: passes rebuild functions through a
:class:`~compiler.ir.builder.Builder` with a value map, which keeps every
rewrite a pure function from IR to IR.

Attribute values are plain Python: ``int``, ``float``, ``bool``, ``str``,
``DType``, tuples of those (``axes=(0, 1)``, ``shape=("N", 784)``), and
``numpy.ndarray`` for dense constants.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..diagnostics import UNKNOWN, Location
from .types import TensorType

Attr = Any


@dataclass(eq=False, slots=True)
class Value:
    """An SSA value.  ``owner`` is the defining op, or ``None`` for a parameter."""

    type: TensorType
    owner: Op | None = None
    index: int = 0
    name: str | None = None  # parameters keep their source name

    @property
    def is_param(self) -> bool:
        return self.owner is None

    def __repr__(self) -> str:
        where = self.name if self.owner is None else f"{self.owner.name}#{self.index}"
        return f"<Value {where}: {self.type}>"


@dataclass(eq=False, slots=True)
class Op:
    """One operation: ``name`` is the op table key without the ``dl.`` prefix."""

    name: str
    operands: list[Value]
    results: list[Value]
    attrs: dict[str, Attr] = field(default_factory=dict)
    loc: Location = UNKNOWN

    @property
    def result(self) -> Value:
        assert len(self.results) == 1, f"{self.name} has {len(self.results)} results"
        return self.results[0]

    def __repr__(self) -> str:
        return f"<Op dl.{self.name} at {self.loc}>"


@dataclass(eq=False, slots=True)
class Function:
    """A function: named parameters, a straight-line body and its outputs.

    ``attrs`` holds function-level facts, e.g. ``inplace`` (a tuple of
    ``(output_index, param_name)`` pairs: that output may be written into that
    parameter's buffer, as a training step does for weights and optimizer
    state).
    """

    name: str
    params: list[Value]
    ops: list[Op] = field(default_factory=list)
    outputs: list[Value] = field(default_factory=list)
    output_names: list[str | None] = field(default_factory=list)
    attrs: dict[str, Attr] = field(default_factory=dict)
    loc: Location = UNKNOWN

    @property
    def param_types(self) -> list[TensorType]:
        return [p.type for p in self.params]

    @property
    def output_types(self) -> list[TensorType]:
        return [v.type for v in self.outputs]

    def param(self, name: str) -> Value:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def symbols(self) -> list[str]:
        """Symbolic dims of the signature, in order of first appearance."""
        seen: list[str] = []
        for p in self.params:
            for s in p.type.symbols:
                if s not in seen:
                    seen.append(s)
        return seen

    def walk(self) -> Iterator[Op]:
        yield from self.ops


@dataclass(eq=False, slots=True)
class Module:
    """A list of functions with unique names; model metadata rides in ``attrs``.

    Lookups by name (``get``, ``in``, ``add``, ``replace``) take constant time
    through an index of positions.  Change ``functions`` through ``add``,
    ``replace`` and ``remove``; the index notices a list that was replaced,
    grown, shrunk or reordered (and rebuilds itself), not one function swapped
    for another of a different name in place.
    """

    functions: list[Function] = field(default_factory=list)
    attrs: dict[str, Attr] = field(default_factory=dict)
    _positions: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _indexed: tuple[list[Function] | None, int] = field(default=(None, 0), init=False, repr=False)

    def _position(self, name: str) -> int | None:
        """Where function ``name`` is in ``functions``, or None."""
        indexed, length = self._indexed
        if indexed is not self.functions or length != len(self.functions):
            self._reindex()
        i = self._positions.get(name)
        if i is not None and self.functions[i].name != name:     # reordered since
            self._reindex()
            i = self._positions.get(name)
        return i

    def _reindex(self) -> None:
        self._positions = {}
        for i, f in enumerate(self.functions):
            self._positions.setdefault(f.name, i)
        self._indexed = (self.functions, len(self.functions))

    def get(self, name: str) -> Function:
        i = self._position(name)
        if i is None:
            raise KeyError(name)
        return self.functions[i]

    def __contains__(self, name: str) -> bool:
        return self._position(name) is not None

    def add(self, func: Function) -> Function:
        assert func.name not in self, f"duplicate function @{func.name}"
        self.functions.append(func)
        self._positions[func.name] = len(self.functions) - 1
        self._indexed = (self.functions, len(self.functions))
        return func

    def replace(self, func: Function) -> None:
        """Put ``func`` in place of the function of the same name (or add it at the end)."""
        i = self._position(func.name)
        if i is None:
            self.add(func)
        else:
            self.functions[i] = func

    def remove(self, func: Function) -> None:
        self.functions.remove(func)
        self._reindex()
