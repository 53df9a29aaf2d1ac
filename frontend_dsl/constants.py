"""Compile-time values of the ``.dl`` language: types, literals, attributes, initializers.

Written types resolve to :class:`TensorType` (:func:`resolve_type`); two
literals fold (:func:`fold`); a constant argument becomes an op attribute of
the kind its schema names (:func:`convert_attr`); ``normal(std=0.1)``
becomes an initializer spec (:func:`initializer_spec`).  Nothing here builds
IR.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from compiler.diagnostics import DlTypeError, Location, NameResolutionError, SizeError
from compiler.initializers import INITIALIZERS
from compiler.ir.sizes import type_problem as size_problem
from compiler.ir.types import Dim, DType, TensorType, shape_problem

from . import ast
from .scope import Lit, Word, did_you_mean

DTYPE_NAMES = ("f32", "f64", "i32", "i64", "bool", "f16", "bf16", "i8", "u8")

def resolve_type(t: ast.TypeExpr, symbols: set[str] | None, *, what: str = "") -> TensorType:
    """A written type as a :class:`TensorType`.

    ``symbols``, if given, is the set of dims already bound: a return type
    may only use the symbols its parameters introduced.
    """
    if t.dtype not in DTYPE_NAMES:
        raise DlTypeError(f"unknown dtype '{t.dtype}' (dtypes: {', '.join(DTYPE_NAMES)})", t.span,
                          notes=did_you_mean(t.dtype, DTYPE_NAMES))
    problem = shape_problem(t.dims)
    if problem is not None:
        raise DlTypeError(problem, t.span)
    for d in t.dims:
        if isinstance(d, int) and d <= 0:
            raise DlTypeError(f"dims must be positive, got {d}", t.span)
        if symbols is not None and isinstance(d, str) and d not in symbols:
            raise NameResolutionError(
                f"dim '{d}' in the {what or 'type'} is not bound by any parameter", t.span)
    out = TensorType(DType.from_name(t.dtype), tuple(t.dims))
    too_large = size_problem(out)
    if too_large is not None:
        raise SizeError(f"{out.dsl_str()} {too_large}", t.span)
    return out



def fold(op: str, lhs: Lit, rhs: Lit, span: Location) -> Lit:
    """Two literals combined at compile time.

    Integer results stay within 64 bits (-2^63 .. 2^63), as literals do, so
    folding is cheap: ``2 ** 99999999999`` is an error, not a huge number.
    """
    a, b = lhs.value, rhs.value
    if isinstance(a, bool) or isinstance(b, bool):
        if op in ("eq", "ne"):
            return Lit((a == b) if op == "eq" else (a != b), span)
        raise DlTypeError("arithmetic on true/false is not allowed", span)
    try:
        if op == "add":
            return _int_in_range(Lit(a + b, span))
        if op == "sub":
            return _int_in_range(Lit(a - b, span))
        if op == "mul":
            return _int_in_range(Lit(a * b, span))
        if op == "div":
            return Lit(a / b, span)
        if op == "floor_div":                   # rounds down, as Python and numpy do
            return _int_in_range(Lit(a // b, span))
        if op == "pow":
            if isinstance(a, int) and isinstance(b, int) and abs(a) > 1 and b >= 64:
                raise _overflow(span)           # at least 2^64: not worth computing
            value = a ** b
            if isinstance(value, complex):
                raise DlTypeError("constant expression has no real value", span)
            return _int_in_range(Lit(value, span))
    except ZeroDivisionError:
        raise DlTypeError("division by zero in a constant expression", span) from None
    except OverflowError:
        raise DlTypeError("constant expression overflows", span) from None
    comparisons = {"eq": a == b, "ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}
    if op in comparisons:
        return Lit(comparisons[op], span)
    raise DlTypeError(f"'{ast.OPERATOR_TEXT.get(op, op)}' needs tensor operands, not two numbers", span)


def _overflow(span: Location) -> DlTypeError:
    return DlTypeError("constant expression overflows i64", span)


def _int_in_range(lit: Lit) -> Lit:
    """``lit``, if it is not an integer beyond 64 bits."""
    if isinstance(lit.value, int) and not -2 ** 63 <= lit.value <= 2 ** 63:
        raise _overflow(lit.span)
    return lit


def fits(lit: Lit, dtype: DType) -> bool:
    if lit.kind == "bool":
        return dtype is DType.bool
    if dtype is DType.bool:
        return False
    return dtype.is_float or lit.kind == "int"


INT_RANGE = {DType.i32: (-(2 ** 31), 2 ** 31 - 1), DType.i64: (-(2 ** 63), 2 ** 63 - 1),
             DType.i8: (-128, 127), DType.u8: (0, 255)}


def convert_attr(value: Any, kind: str, where: str, span: Location, symbols: set[str]) -> Any:
    """A constant as an attribute of ``kind`` (see :class:`compiler.ops.base.AttrSpec`)."""

    def bad(expected: str) -> DlTypeError:
        return DlTypeError(f"{where} must be {expected}", span)

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if kind == "int":
        if not is_int(value):
            raise bad("an integer")
        return value
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if kind == "str":
        if isinstance(value, Word):
            return value.name
        if not isinstance(value, str):
            raise bad("a name or a string")
        return value
    if kind == "scalar":
        if not isinstance(value, (bool, int, float)):
            raise bad("a number")
        return value
    if kind == "dtype":
        name = value.name if isinstance(value, Word) else value
        if not isinstance(name, str) or name not in DTYPE_NAMES:
            raise bad(f"a dtype ({', '.join(DTYPE_NAMES)})")
        return DType.from_name(name)
    if kind in ("ints", "optional_ints"):
        items = value if isinstance(value, list) else [value]
        if not all(is_int(v) for v in items):
            raise bad("an integer or a list of integers")
        return tuple(items)
    if kind == "bounds":
        items = value if isinstance(value, list) else [value]
        if not all(is_int(v) or (isinstance(v, Word) and v.name == "none") for v in items):
            raise bad("an integer or a list of integers and 'none's")
        return tuple(None if isinstance(v, Word) else v for v in items)
    if kind == "dims":
        if not isinstance(value, list):
            raise bad("a list of dims, e.g. [N, 784]")
        dims: list[Dim] = []
        for v in value:
            if is_int(v):
                dims.append(v)
            elif isinstance(v, Word) and v.name in symbols:
                dims.append(v.name)
            elif isinstance(v, Word):
                raise NameResolutionError(f"unknown dim '{v.name}' in {where}", v.span,
                                          notes=did_you_mean(v.name, symbols))
            else:
                raise bad("a list of dims, e.g. [N, 784]")
        return tuple(dims)
    if kind == "dense":
        if isinstance(value, Word) or _contains_word(value):
            raise bad("a number or a list of numbers")
        try:
            array = np.asarray(value)
        except ValueError:
            raise bad("a rectangular list of numbers") from None
        if array.dtype == object:
            raise bad("a rectangular list of numbers")
        return array if array.ndim else value
    raise AssertionError(f"unknown attribute kind {kind}")


def _contains_word(value: Any) -> bool:
    if isinstance(value, list):
        return any(_contains_word(v) for v in value)
    return isinstance(value, (Word, str))


def initializer_spec(expr: ast.Expr | None, default: dict[str, Any] | None,
                     const: Callable[[ast.Expr], Any]) -> dict[str, Any]:
    """``zeros`` / ``normal(std=0.1)`` as ``{"name": "normal", "std": 0.1}``.

    ``const`` evaluates an argument at compile time; with no ``expr`` the
    result is ``default``.
    """
    if expr is None:
        assert default is not None
        return default
    name, args, kwargs, name_span = named_call(expr, "an initializer such as zeros or normal(std=0.1)")
    if name not in INITIALIZERS:
        raise NameResolutionError(f"unknown initializer '{name}' "
                                  f"(initializers: {', '.join(sorted(INITIALIZERS))})", name_span,
                                  notes=did_you_mean(name, INITIALIZERS))
    allowed = list(INITIALIZERS[name].defaults)
    spec: dict[str, Any] = {"name": name}
    if len(args) > len(allowed):
        raise DlTypeError(f"too many arguments to initializer '{name}' "
                          f"(it takes: {', '.join(allowed) or 'none'})", args[len(allowed)].span)
    pairs = list(zip(allowed, args)) + [(kw.name, kw.value) for kw in kwargs]
    for kw in kwargs:
        if kw.name not in allowed:
            raise DlTypeError(f"unknown keyword argument '{kw.name}' for initializer '{name}' "
                              f"(allowed: {', '.join(allowed) or 'none'})", kw.span,
                              notes=did_you_mean(kw.name, allowed))
    for key, value_expr in pairs:
        if key in spec:
            raise DlTypeError(f"argument '{key}' of '{name}' given twice", value_expr.span)
        spec[key] = convert_attr(const(value_expr), "float",
                                 f"argument '{key}' of '{name}'", value_expr.span, set())
    return spec


def named_call(expr: ast.Expr, what: str) -> tuple[str, tuple[ast.Expr, ...], tuple[ast.Keyword, ...], Location]:
    """``name`` or ``name(args)`` (or ``"name"``) as its parts."""
    if isinstance(expr, ast.Name):
        return expr.id, (), (), expr.span
    if isinstance(expr, ast.String):
        return expr.value, (), (), expr.span
    if isinstance(expr, ast.Call):
        return expr.func, expr.args, expr.kwargs, expr.func_span
    raise DlTypeError(f"expected {what}", expr.span)


def bind_args(fname: str, names: tuple[str, ...], c: ast.Call,
              aliases: dict[str, str] | None = None) -> dict[str, ast.Expr]:
    """``c``'s arguments by name: positional in the order of ``names``, then keywords
    (a keyword in ``aliases`` stands for the name it maps to)."""
    aliases = aliases or {}
    given: dict[str, ast.Expr] = {}
    if len(c.args) > len(names):
        raise DlTypeError(f"too many arguments to '{fname}' (it takes {', '.join(names)})", c.args[len(names)].span)
    for key, arg in zip(names, c.args):
        given[key] = arg
    for kw in c.kwargs:
        key = aliases.get(kw.name, kw.name)
        if key not in names:
            allowed = [*names, *aliases]
            raise DlTypeError(f"unknown keyword argument '{kw.name}' for '{fname}' "
                              f"(allowed: {', '.join(names)})", kw.span, notes=did_you_mean(kw.name, allowed))
        if key in given:
            raise DlTypeError(f"argument '{key}' of '{fname}' given twice", kw.span)
        given[key] = kw.value
    return given
