"""The typed AST of the .dl language: frozen dataclasses, each with a ``span``.

The parser (:mod:`frontend_dsl.parser`) builds these from Lark's parse tree;
the lowering (:mod:`frontend_dsl.lower`) turns them into dl IR.  Nothing here
knows about Lark.  Spans are :class:`~compiler.diagnostics.Location` values,
so every diagnostic and every IR op can point at the user's source.
"""

from __future__ import annotations

from dataclasses import dataclass

from compiler.diagnostics import Location

# --------------------------------------------------------------------- types


@dataclass(frozen=True, slots=True)
class TypeExpr:
    """A tensor type as written: ``f32[N, 784]``; ``f32[]`` is a scalar.

    ``dims`` holds ints (static) and strs (symbols).  The dtype name is checked
    during lowering, so a typo gets a diagnostic rather than a parse error.
    """

    dtype: str
    dims: tuple[int | str, ...]
    span: Location


# --------------------------------------------------------------- expressions


@dataclass(frozen=True, slots=True)
class Number:
    """A numeric literal; ``is_float`` tells ``2.0`` from ``2``."""

    value: int | float
    is_float: bool
    span: Location


@dataclass(frozen=True, slots=True)
class Bool:
    value: bool
    span: Location


@dataclass(frozen=True, slots=True)
class String:
    value: str
    span: Location


@dataclass(frozen=True, slots=True)
class Name:
    id: str
    span: Location


@dataclass(frozen=True, slots=True)
class ListExpr:
    """``[a, b, c]``: axes, shapes, ``wrt=`` lists, dense constants."""

    items: tuple[Expr, ...]
    span: Location


@dataclass(frozen=True, slots=True)
class Unary:
    """``-x``; ``op`` is the op-table name (``neg``)."""

    op: str
    operand: Expr
    span: Location


@dataclass(frozen=True, slots=True)
class Binary:
    """``lhs <op> rhs``; ``op`` is the op-table name (``add``, ``matmul``, ``lt``...)."""

    op: str
    lhs: Expr
    rhs: Expr
    span: Location


@dataclass(frozen=True, slots=True)
class Keyword:
    """``name=value`` inside a call."""

    name: str
    value: Expr
    span: Location


@dataclass(frozen=True, slots=True)
class Call:
    """``func(args..., key=value...)``; ``func_span`` covers just the callee name."""

    func: str
    args: tuple[Expr, ...]
    kwargs: tuple[Keyword, ...]
    span: Location
    func_span: Location


@dataclass(frozen=True, slots=True)
class Slice:
    """``lo:hi:step`` inside an index; a missing bound is None (numpy's default)."""

    lo: Expr | None
    hi: Expr | None
    step: Expr | None
    span: Location


@dataclass(frozen=True, slots=True)
class Ellipsis_:
    """``...`` inside an index: as many full slices as the rank needs."""

    span: Location


@dataclass(frozen=True, slots=True)
class Index:
    """``value[items...]``: numpy's basic indexing (``None`` adds an axis)."""

    value: Expr
    items: tuple[Expr | Slice | Ellipsis_, ...]
    span: Location


@dataclass(frozen=True, slots=True)
class Attribute:
    """``value.name``: a layer's parameter, e.g. ``hidden.kernel``."""

    value: Expr
    name: str
    span: Location
    name_span: Location


Expr = Number | Bool | String | Name | ListExpr | Unary | Binary | Call | Index | Attribute

# The spelling of each operator, for diagnostics.
OPERATOR_TEXT = {
    "add": "+", "sub": "-", "mul": "*", "div": "/", "floor_div": "//", "matmul": "@", "pow": "**",
    "neg": "-", "eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">=",
}

# ---------------------------------------------------------------- statements


@dataclass(frozen=True, slots=True)
class Let:
    """``let a = e`` or ``let a, b = f(...)`` (a function with several results)."""

    names: tuple[Name, ...]
    value: Expr
    span: Location


@dataclass(frozen=True, slots=True)
class Return:
    values: tuple[Expr, ...]
    span: Location


def children(node: object) -> list[object]:
    """The expressions directly inside ``node`` (a statement or an expression), in source
    order: what a walk over a function body visits next."""
    if isinstance(node, Call):
        return [*node.args, *(kw.value for kw in node.kwargs)]
    if isinstance(node, Let):
        return [node.value]
    if isinstance(node, Return):
        return list(node.values)
    if isinstance(node, Binary):
        return [node.lhs, node.rhs]
    if isinstance(node, (Unary,)):
        return [node.operand]
    if isinstance(node, ListExpr):
        return list(node.items)
    if isinstance(node, Index):
        return [node.value, *node.items]
    if isinstance(node, Slice):
        return [e for e in (node.lo, node.hi, node.step) if e is not None]
    if isinstance(node, Attribute):
        return [node.value]
    return []


def walk(body: tuple[object, ...] | list[object]) -> list[object]:
    """Every statement and expression of ``body``, depth first (each node before what it holds)."""
    out: list[object] = []
    stack = list(reversed(body))
    while stack:
        node = stack.pop()
        out.append(node)
        stack += reversed(children(node))
    return out


@dataclass(frozen=True, slots=True)
class Param:
    """A function parameter ``name: type``, or a compile-time constant ``name: int``
    (``kind`` is one of :data:`CONST_KINDS`, and ``type`` is None)."""

    name: Name
    type: TypeExpr | None
    span: Location
    kind: str | None = None


# The kinds of a compile-time parameter (fn block(x: f32[N, T, D], heads: int)).
CONST_KINDS = ("int", "float", "bool")


@dataclass(frozen=True, slots=True)
class FnDef:
    """``fn name(params) -> returns { body }``; ``returns`` is None when omitted."""

    name: Name
    params: tuple[Param, ...]
    returns: tuple[TypeExpr, ...] | None
    body: tuple[Let | Return, ...]
    span: Location


@dataclass(frozen=True, slots=True)
class GradDef:
    """``fn name = grad(f, wrt=[...])`` or ``value_and_grad(...)``."""

    name: Name
    transform: Call
    span: Location


# ---------------------------------------------------------------- models


@dataclass(frozen=True, slots=True)
class InputDecl:
    name: Name
    type: TypeExpr
    span: Location


@dataclass(frozen=True, slots=True)
class TargetDecl:
    name: Name
    type: TypeExpr
    span: Location


@dataclass(frozen=True, slots=True)
class ParamDecl:
    """``param w: f32[1, 1] = normal(std=0.1)``; ``init`` is None when omitted."""

    name: Name
    type: TypeExpr
    init: Expr | None
    span: Location


@dataclass(frozen=True, slots=True)
class OutputDecl:
    name: Name
    value: Expr
    span: Location


@dataclass(frozen=True, slots=True)
class LossDecl:
    value: Expr
    span: Location


@dataclass(frozen=True, slots=True)
class OptimizerDecl:
    """``optimizer rmsprop(lr=0.001)`` or ``optimizer sgd``."""

    value: Expr
    span: Location


@dataclass(frozen=True, slots=True)
class MetricsDecl:
    names: tuple[Name, ...]
    span: Location


ModelStmt = Let | InputDecl | TargetDecl | ParamDecl | OutputDecl | LossDecl | OptimizerDecl | MetricsDecl


@dataclass(frozen=True, slots=True)
class ModelDef:
    name: Name
    body: tuple[ModelStmt, ...]
    span: Location


@dataclass(frozen=True, slots=True)
class Use:
    """``use "std/nn.dl"``: the functions of another file."""

    path: str
    span: Location


Item = FnDef | GradDef | ModelDef | Use


@dataclass(frozen=True, slots=True)
class Program:
    """A whole ``.dl`` file."""

    items: tuple[Item, ...]
    file: str
