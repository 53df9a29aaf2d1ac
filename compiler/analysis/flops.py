"""FLOP counts of dl ops, as polynomials in the symbolic dims.

The cost model, per op (``n`` = elements of the result, symbols kept):

- ``matmul`` and ``matmul_lowp`` ``[.., M, K] @ [.., K, N]``: ``2 * batch * M * N * K`` (one
  multiply and one add per term);
- ``conv2d`` and its two gradients: ``2 * N * OH * OW * OC * KH * KW * C / groups``
  each (every one of them forms the same products);
- elementwise ops: ``n`` FLOPs, except the transcendental ones
  (:data:`TRANSCENDENTAL`: exp, log, sqrt, tanh, sigmoid, pow, the special
  functions erf expm1 log1p sin cos and the activations built on them), which count
  ``n`` *transcendental* evaluations instead, reported separately since one
  costs tens of FLOPs;
- reductions (``sum mean max min prod any all argmax argmin``), ``cumsum`` and
  ``top_k``: one FLOP per element of the operand (a selection's comparisons beyond
  the first are not counted);
- pooling (``max_pool2d``, ``avg_pool2d`` and their gradient ops): one FLOP
  per window element of each pooled element (a compare or an add; the
  average's division counted for the first);
- composites (softmax, losses, one_hot): the cost of their decomposition
  into primitive ops, from the op table's ``decompose`` rule, with common
  subexpressions counted once (softmax's rule spells ``exp(z)`` twice);
- layout ops, constants, iota, dim_size: nothing (data movement).

Symbolic dims stay symbolic: ``cost.flops`` is a :class:`Poly` such as
``813568*N + 5120``; ``evaluate({"N": 128})`` gives a number.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..ir.builder import Builder, new_function
from ..ir.core import Function, Op
from ..ir.dims import evaluate, free_symbols, parse_dim
from ..ir.types import Dim
from ..ops import conv
from ..ops.base import COMPOSITE, ELEMENTWISE, REDUCTION, get_op
from ..ops.conv import CONV_OPS
from ..ops.pool import WINDOWED, window_of

TRANSCENDENTAL = frozenset({"exp", "log", "sqrt", "tanh", "sigmoid", "pow",
                            "erf", "expm1", "log1p", "sin", "cos", "softplus", "silu", "gelu", "elu", "selu"})

Monomial = tuple[str, ...]   # sorted symbol names, repeated for powers


@dataclass(frozen=True, slots=True)
class Poly:
    """A polynomial with integer coefficients in symbolic dims, e.g. ``2*N*M + 10``."""

    terms: tuple[tuple[Monomial, int], ...] = ()

    @staticmethod
    def of(value: int | Dim) -> Poly:
        """The constant ``value``, or the symbol it names (a dim computed from symbols,
        ``max(N-1,0)``, counts as one symbol named by its text)."""
        if not isinstance(value, int):
            return Poly((((str(value),), 1),))
        return Poly._from({(): int(value)})

    @staticmethod
    def product(dims: Iterable[Dim]) -> Poly:
        """The product of ``dims`` (an element count for a shape)."""
        out = Poly.of(1)
        for d in dims:
            out = out * Poly.of(d)
        return out

    @staticmethod
    def _from(terms: dict[Monomial, int]) -> Poly:
        return Poly(tuple(sorted((m, c) for m, c in terms.items() if c != 0)))

    def __add__(self, other: Poly | int) -> Poly:
        other = other if isinstance(other, Poly) else Poly.of(other)
        terms = dict(self.terms)
        for m, c in other.terms:
            terms[m] = terms.get(m, 0) + c
        return Poly._from(terms)

    __radd__ = __add__

    def __mul__(self, other: Poly | int) -> Poly:
        other = other if isinstance(other, Poly) else Poly.of(other)
        terms: dict[Monomial, int] = {}
        for m1, c1 in self.terms:
            for m2, c2 in other.terms:
                m = tuple(sorted(m1 + m2))
                terms[m] = terms.get(m, 0) + c1 * c2
        return Poly._from(terms)

    __rmul__ = __mul__

    @property
    def symbols(self) -> set[str]:
        """The symbols the value depends on (those inside a computed dim's text too)."""
        return {s for m, _ in self.terms for name in m for s in free_symbols(parse_dim(name))}

    def evaluate(self, bindings: dict[str, int] | None = None) -> int:
        """The value with every symbol bound (``KeyError`` for an unbound one)."""
        total = 0
        for m, c in self.terms:
            value = c
            for s in m:
                value *= evaluate(parse_dim(s), bindings or {})
            total += value
        return total

    def __str__(self) -> str:
        if not self.terms:
            return "0"
        ordered = sorted(self.terms, key=lambda t: (-len(t[0]), t[0]))
        return " + ".join(_term_str(m, c) for m, c in ordered)


def _term_str(monomial: Monomial, coefficient: int) -> str:
    powers: dict[str, int] = {}
    for s in monomial:
        powers[s] = powers.get(s, 0) + 1
    factors = [s if p == 1 else f"{s}^{p}" for s, p in powers.items()]
    if coefficient != 1 or not factors:
        factors.insert(0, str(coefficient))
    return "*".join(factors)


@dataclass(frozen=True, slots=True)
class Cost:
    """FLOPs and transcendental evaluations of an op or a function."""

    flops: Poly = field(default_factory=Poly)
    transcendentals: Poly = field(default_factory=Poly)

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.flops + other.flops, self.transcendentals + other.transcendentals)


def op_cost(op: Op) -> Cost:
    """The cost of one op under the model in the module docstring."""
    opdef = get_op(op.name)
    assert opdef is not None, f"unknown op dl.{op.name}"
    if op.name in ("matmul", "matmul_lowp"):      # (integer multiply-adds count as flops too)
        k = op.operands[0].type.shape[-1]
        return Cost(flops=Poly.product(op.result.type.shape) * Poly.of(k) * 2)
    if op.name in CONV_OPS:
        s = conv.shape_of(op)
        return Cost(flops=Poly.of(s.n) * (2 * s.macs_per_image))
    if opdef.kind == ELEMENTWISE:
        n = Poly.product(op.result.type.shape)
        return Cost(transcendentals=n) if op.name in TRANSCENDENTAL else Cost(flops=n)
    if opdef.kind == REDUCTION or op.name in ("cumsum", "top_k"):
        return Cost(flops=Poly.product(op.operands[0].type.shape))
    if op.name in WINDOWED:
        pooled = op.operands[-1] if op.name.endswith("_grad") else op.result
        return Cost(flops=Poly.product(pooled.type.shape) * window_of(op).elements)
    if opdef.kind == COMPOSITE and opdef.decompose is not None:
        return sum((op_cost(o) for o in decomposition(op)), Cost())
    return Cost()


def decomposition(op: Op) -> list[Op]:
    """The ops a composite ``op`` expands to (its ``decompose`` rule), duplicates merged."""
    from ..passes.cse import cse_function

    opdef = get_op(op.name)
    assert opdef is not None and opdef.decompose is not None, f"dl.{op.name} has no decomposition"
    params = [(f"arg{i}", v.type) for i, v in enumerate(op.operands)]
    scratch, b = new_function(f"decompose.{op.name}", params, loc=op.loc)
    copy = Builder.make(op.name, list(scratch.params), dict(op.attrs), op.loc)
    scratch.outputs = list(opdef.decompose(b, copy))
    cse_function(scratch)
    return scratch.ops


def function_cost(func: Function) -> Cost:
    """The total cost of one call of ``func``."""
    return sum((op_cost(op) for op in func.ops), Cost())


def cost_by_op(func: Function) -> dict[str, Cost]:
    """The cost of ``func`` per op name, in order of first appearance."""
    out: dict[str, Cost] = {}
    for op in func.ops:
        out[op.name] = out.get(op.name, Cost()) + op_cost(op)
    return out
