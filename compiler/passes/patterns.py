"""Local rewrite patterns and the one worklist driver that applies them.

A pattern is a small function ``(op, rw) -> replacement | None``: it looks at
one op (and at the ops that define its operands), and either declines
(``None``) or returns the values that replace the op's results -- existing
values, or new ones built with ``rw.b`` (a :class:`~compiler.ir.builder.Builder`
whose ops get the rewritten op's source location).  Each pattern begins with
its identity in a comment::

    @patterns.pattern("neg-neg", "neg")
    def _(op: Op, rw: Rewriter) -> Replacement:
        # neg(neg(x)) -> x
        inner = defining_op(op.operands[0], "neg")
        return inner.operands[0] if inner is not None else None

A replacement must have exactly the type of the result it replaces (shapes
never change: ``x + 0`` with a broadcasting zero becomes ``broadcast_to(x)``).

:func:`apply_patterns` walks a function's ops in order with a worklist: the
operands of each op are first redirected to the replacements of their
definitions, then the op's patterns are tried; ops built by a pattern are
pushed to the front of the worklist so they are rewritten too, and the
replaced op is dropped.  Because producers are visited before their users,
one sweep nearly always reaches the fixed point; the driver sweeps again
until a sweep changes nothing.  Replaced ops are gone; ops whose results
are no longer used stay until the caller runs DCE (``dce_function``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..ir.builder import Builder
from ..ir.core import Function, Op, Value
from ..ir.types import TensorType

Replacement = Value | Sequence[Value] | None
PatternFn = Callable[[Op, "Rewriter"], Replacement]

ANY_OP = "*"
MAX_SWEEPS = 16
REWRITES_PER_OP = 50     # a sweep rewriting more than this per op is looping


@dataclass(frozen=True, slots=True)
class Pattern:
    """A named rewrite of the ops named ``op_name`` (``"*"``: every op)."""

    name: str
    op_name: str
    fn: PatternFn


@dataclass(slots=True)
class PatternSet:
    """Patterns by the op they match, in registration order; ``"*"`` patterns run first."""

    by_op: dict[str, list[Pattern]] = field(default_factory=dict)

    def pattern(self, name: str, *op_names: str) -> Callable[[PatternFn], PatternFn]:
        """Decorator: register ``fn`` as pattern ``name`` for each op in ``op_names``."""

        def register(fn: PatternFn) -> PatternFn:
            assert op_names, f"pattern {name} names no op"
            assert name not in self.names(), f"pattern {name} registered twice"
            for op_name in op_names:
                self.by_op.setdefault(op_name, []).append(Pattern(name, op_name, fn))
            return fn

        return register

    def for_op(self, op_name: str) -> list[Pattern]:
        """The patterns to try on an op named ``op_name``."""
        return [*self.by_op.get(ANY_OP, ()), *self.by_op.get(op_name, ())]

    def names(self) -> list[str]:
        """Every pattern name, once, in registration order."""
        seen: dict[str, None] = {}
        for patterns in self.by_op.values():
            for p in patterns:
                seen.setdefault(p.name, None)
        return list(seen)


class Rewriter:
    """What a pattern gets besides the op: a builder for replacement ops, and options.

    New ops are collected (not yet in the function); the driver inserts the
    ones a successful pattern built and discards those of a pattern that
    declined after all.
    """

    def __init__(self, op: Op, options: dict[str, Any]):
        self.op = op
        self.options = options
        self._scratch = Function("<rewrite>", [])
        self.b = Builder(self._scratch, op.loc)

    @property
    def new_ops(self) -> list[Op]:
        return self._scratch.ops

    def option(self, key: str, default: Any = None) -> Any:
        """A pass option (e.g. ``finite-math``), or ``default``."""
        return self.options.get(key, default)

    def like(self, x: Value, t: TensorType) -> Value | None:
        """``x`` as a value of type ``t``: itself, or broadcast to ``t``'s shape; None if impossible."""
        if x.type == t:
            return x
        if x.type.dtype != t.dtype or not broadcasts_to(x.type.shape, t.shape):
            return None
        return self.b.broadcast_to(x, shape=t.shape)


def broadcasts_to(shape: tuple, target: tuple) -> bool:
    """Whether numpy broadcasting stretches ``shape`` to exactly ``target``."""
    if len(shape) > len(target):
        return False
    lead = len(target) - len(shape)
    return all(d == t or d == 1 for d, t in zip(shape, target[lead:]))


# ---------------------------------------------------------------------------
# Matching helpers


def defining_op(v: Value, *names: str) -> Op | None:
    """The op defining ``v`` when it is one of ``names`` (any op when none given)."""
    op = v.owner
    if op is None or (names and op.name not in names):
        return None
    return op


def constant_array(v: Value) -> np.ndarray | None:
    """The value of ``v`` when a ``dl.constant`` defines it: dense, or a 0-d splat."""
    op = defining_op(v, "constant")
    if op is None:
        return None
    return np.asarray(op.attrs["value"], dtype=v.type.dtype.np)


def splat_value(v: Value) -> Any | None:
    """The one element of a constant whose elements are all identical (a Python scalar), else None.

    Identical means the same bits: ``[0.0, -0.0]`` is not a splat.
    """
    array = constant_array(v)
    if array is None or array.size == 0:
        return None
    flat = np.ascontiguousarray(array).reshape(-1)
    if flat.tobytes() != flat[:1].tobytes() * flat.size:
        return None
    return flat[0].item()


def is_splat(v: Value, number: float) -> bool:
    """Whether ``v`` is a constant whose every element equals ``number``.

    Comparison is by value, so ``-0.0`` counts as zero and NaN never matches.
    """
    value = splat_value(v)
    return value is not None and not isinstance(value, bool) and value == number


# ---------------------------------------------------------------------------
# The driver


def apply_patterns(func: Function, patterns: PatternSet, options: dict[str, Any] | None = None,
                   counts: dict[str, int] | None = None) -> int:
    """Rewrite ``func`` in place to a fixed point of ``patterns``; returns the rewrites applied.

    ``counts``, if given, is incremented per pattern name.  Ops left unused
    are not removed: run ``dce_function`` afterwards.
    """
    options = options or {}
    total = 0
    for _ in range(MAX_SWEEPS):
        applied = _sweep(func, patterns, options, counts)
        total += applied
        if applied == 0:
            break
    else:
        raise AssertionError(f"canonicalization of @{func.name} did not converge "
                             f"in {MAX_SWEEPS} sweeps (patterns undo each other?)")
    return total


def _sweep(func: Function, patterns: PatternSet, options: dict[str, Any],
           counts: dict[str, int] | None) -> int:
    """One forward walk over ``func``'s ops; returns the number of rewrites."""
    replaced: dict[Value, Value] = {}
    worklist: deque[Op] = deque(func.ops)
    kept: list[Op] = []
    applied = 0
    limit = REWRITES_PER_OP * (len(func.ops) + 1)
    while worklist:
        op = worklist.popleft()
        op.operands = [_resolve(replaced, v) for v in op.operands]
        rewrite = _first_match(op, patterns, options)
        if rewrite is None:
            kept.append(op)
            continue
        name, new_values, new_ops = rewrite
        applied += 1
        assert applied <= limit, f"runaway rewriting in @{func.name} ({name})"
        if counts is not None:
            counts[name] = counts.get(name, 0) + 1
        replaced.update(zip(op.results, new_values))
        worklist.extendleft(reversed(new_ops))
    func.ops = kept
    func.outputs = [_resolve(replaced, v) for v in func.outputs]
    return applied


def _resolve(replaced: dict[Value, Value], v: Value) -> Value:
    while v in replaced:
        v = replaced[v]
    return v


def _first_match(op: Op, patterns: PatternSet, options: dict[str, Any]
                 ) -> tuple[str, list[Value], list[Op]] | None:
    """The first pattern that rewrites ``op``: its name, the replacements and the new ops."""
    for p in patterns.for_op(op.name):
        rw = Rewriter(op, options)
        result = p.fn(op, rw)
        if result is None:
            continue
        values = [result] if isinstance(result, Value) else list(result)
        _check_replacement(op, p.name, values)
        return p.name, values, _used_new_ops(rw.new_ops, values)
    return None


def _check_replacement(op: Op, pattern: str, values: list[Value]) -> None:
    """Internal invariant: one replacement per result, of the same type."""
    assert len(values) == len(op.results), (
        f"pattern {pattern} gave {len(values)} values for the {len(op.results)} results of dl.{op.name}")
    for old, new in zip(op.results, values):
        assert new.type == old.type, (
            f"pattern {pattern} replaced a {old.type} result of dl.{op.name} by a {new.type}")
        assert new is not old, f"pattern {pattern} replaced dl.{op.name} by itself"


def _used_new_ops(new_ops: list[Op], values: list[Value]) -> list[Op]:
    """The new ops the replacement values need (a pattern may build and then abandon some)."""
    needed: set[Value] = set(values)
    used: list[Op] = []
    for op in reversed(new_ops):
        if any(r in needed for r in op.results):
            used.append(op)
            needed.update(op.operands)
    used.reverse()
    return used
