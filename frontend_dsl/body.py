"""Expressions and statements of the .dl language, lowered into one function.

:class:`Body` lowers ``let`` / ``return`` statements and expressions through
a :class:`~compiler.ir.builder.Builder`, inside ``b.at(span)`` so every op
carries the source location of the expression it came from.  Names live in
scoped symbol tables (:class:`Scope`).  Callables are user functions (inlined
at each call), gradient functions, ``dense`` (in models) and the ops of
:data:`compiler.ops.OPS` -- the language keeps no op list of its own.

Literals have no dtype of their own (:class:`Lit`): ``x * 2`` takes ``x``'s
dtype.  An int literal fits any numeric dtype, a float literal only a float
one (``i * 2.5`` with an ``i32`` tensor is an error: cast first).  Two
literals fold at compile time.

A value whose definition failed is *poisoned*: using it raises
:class:`Poisoned`, which callers swallow, so one mistake is reported once
rather than at every later use.
"""

from __future__ import annotations

import difflib
import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np

from compiler.diagnostics import DlError, DlErrors, DlTypeError, Location, NameResolutionError
from compiler.ir.builder import Builder
from compiler.ir.core import Function, Op, Value
from compiler.ir.types import Dim, DType, TensorType, shape_problem
from compiler.ops import OPS, OpDef

from . import ast

if TYPE_CHECKING:
    from .lower import _Lowerer
    from .model import ModelLowering

GRAD_TRANSFORMS = ("grad", "value_and_grad")
DTYPE_NAMES = ("f32", "f64", "i32", "i64", "bool")

# ---------------------------------------------------------------------------
# Values during lowering


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
        out = list(self.names)
        if self.parent is not None:
            out += self.parent.all_names()
        return out


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


# ---------------------------------------------------------------------------
# Types


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
    return TensorType(DType.from_name(t.dtype), tuple(t.dims))


# ---------------------------------------------------------------------------
# Constant (attribute) values


@dataclass(frozen=True)
class Word:
    """A bare name used as a constant: a dtype, an activation, a symbol..."""

    name: str
    span: Location


def _fold(op: str, lhs: Lit, rhs: Lit, span: Location) -> Lit:
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


def _fits(lit: Lit, dtype: DType) -> bool:
    if lit.kind == "bool":
        return dtype is DType.bool
    if dtype is DType.bool:
        return False
    return dtype.is_float or lit.kind == "int"


_INT_RANGE = {DType.i32: (-(2 ** 31), 2 ** 31 - 1), DType.i64: (-(2 ** 63), 2 ** 63 - 1)}


# ---------------------------------------------------------------------------
# Bodies: expressions and statements of a function or model


class Body:
    """Lowers statements and expressions into one function through its builder."""

    def __init__(self, lowerer: _Lowerer, b: Builder, scope: Scope, symbols: set[str],
                 model: ModelLowering | None = None):
        self.lowerer = lowerer
        self.b = b
        self.scope = scope
        self.symbols = symbols
        self.model = model

    # -- statements --------------------------------------------------------

    def let(self, stmt: ast.Let) -> None:
        value = self.expr(stmt.value)
        if len(stmt.names) == 1:
            if isinstance(value, tuple):
                raise DlTypeError(f"this call returns {len(value)} values; bind them with "
                                  f"'let {', '.join(f'v{i}' for i in range(len(value)))} = ...'",
                                  stmt.value.span)
            self.scope.define(stmt.names[0], value)
            return
        values = value if isinstance(value, tuple) else (value,)
        if len(values) != len(stmt.names):
            raise DlTypeError(f"{len(stmt.names)} names are bound but the value has {len(values)}",
                              stmt.value.span)
        errors: list[DlError] = []
        for name, v in zip(stmt.names, values):
            try:
                self.scope.define(name, v)
            except DlError as e:
                errors.append(e)
        raise_all(errors)

    def returns(self, stmt: ast.Return, declared: list[TensorType] | None,
                fn_name: str) -> tuple[list[Value], list[str | None]]:
        """The values of a ``return``, checked against the declared return types."""
        if declared is not None and len(declared) != len(stmt.values):
            raise DlTypeError(f"'{fn_name}' returns {len(stmt.values)} value(s) but its declared "
                              f"return type has {len(declared)}", stmt.span)
        errors: list[DlError] = []
        values: list[Value] = []
        for i, expr in enumerate(stmt.values):
            try:
                want = declared[i] if declared is not None else None
                v = self.value(expr, want.dtype if want else None)
                if want is not None and v.type != want:
                    raise DlTypeError(f"return type mismatch: declared {want.dsl_str()}, "
                                      f"computed {v.type.dsl_str()}", expr.span)
                values.append(v)
            except DlError as e:
                collect_errors(errors, e)
        raise_all(errors)
        names = [e.id if isinstance(e, ast.Name) else None for e in stmt.values]
        return values, names

    # -- expressions -------------------------------------------------------

    def value(self, expr: ast.Expr, dtype: DType | None = None) -> Value:
        """An expression that must be one tensor (a literal becomes a constant)."""
        v = self.expr(expr)
        if isinstance(v, tuple):
            raise DlTypeError(f"this call returns {len(v)} values where one is expected", expr.span)
        if isinstance(v, Lit):
            return self.materialize(v, dtype)
        return v

    def expr(self, e: ast.Expr) -> Value | Lit | tuple[Value, ...]:
        if isinstance(e, ast.Number):
            return Lit(e.value, e.span)
        if isinstance(e, ast.Bool):
            return Lit(e.value, e.span)
        if isinstance(e, ast.Name):
            return self.name(e)
        if isinstance(e, ast.Unary):
            return self.unary(e)
        if isinstance(e, ast.Binary):
            return self.binary(e)
        if isinstance(e, ast.Call):
            return self.call(e)
        if isinstance(e, ast.String):
            raise DlTypeError("a string is not a tensor (strings are only used as arguments such as "
                              "name=\"...\")", e.span)
        if isinstance(e, ast.ListExpr):
            raise DlTypeError("a list is not a tensor (lists are only used as arguments such as "
                              "axes=[0, 1]); use constant(value=[...], dtype=f32, shape=[...])", e.span)
        raise AssertionError(f"unknown expression {e!r}")

    def name(self, e: ast.Name) -> Value | Lit:
        binding = self.scope.lookup(e.id)
        if binding is None:
            if e.id in self.symbols:
                raise NameResolutionError(
                    f"'{e.id}' is a dim, not a value; use dim_size(x, axis=...) for its runtime size",
                    e.span)
            hint = did_you_mean(e.id, self.scope.all_names())
            if not hint and (e.id in OPS or self.lowerer.is_function(e.id)):
                hint = [f"'{e.id}' is a function; call it as {e.id}(...)"]
            raise NameResolutionError(f"unknown name '{e.id}'", e.span, notes=hint)
        if binding.value is POISON:
            raise Poisoned()
        return binding.value  # type: ignore[return-value]

    def unary(self, e: ast.Unary) -> Value | Lit:
        v = self.single(e.operand)
        if isinstance(v, Lit):
            if v.kind == "bool":
                raise DlTypeError("cannot negate true/false", e.span)
            return Lit(-v.value, e.span)
        return self.emit(e.op, [v], {}, e.span, display="-")

    def binary(self, e: ast.Binary) -> Value | Lit:
        """A binary operator; a left-leaning chain ``a + b + c + ...`` is walked in a loop."""
        spine = [e]
        while isinstance(spine[-1].lhs, ast.Binary):
            spine.append(spine[-1].lhs)
        acc = self.single(spine[-1].lhs)
        for node in reversed(spine):
            acc = self.apply_binary(node, acc, self.single(node.rhs))
        return acc

    def apply_binary(self, e: ast.Binary, lhs: Value | Lit, rhs: Value | Lit) -> Value | Lit:
        if isinstance(lhs, Lit) and isinstance(rhs, Lit):
            return _fold(e.op, lhs, rhs, e.span)
        operands = self.materialize_all([lhs, rhs])
        return self.emit(e.op, operands, {}, e.span, display=ast.OPERATOR_TEXT[e.op])

    def single(self, e: ast.Expr) -> Value | Lit:
        v = self.expr(e)
        if isinstance(v, tuple):
            raise DlTypeError(f"this call returns {len(v)} values where one is expected; "
                              "bind them with 'let a, b = ...'", e.span)
        return v

    # -- literals ------------------------------------------------------------

    def materialize(self, lit: Lit, dtype: DType | None) -> Value:
        """A literal as a rank-0 constant of ``dtype`` (default: f32, i32 or bool)."""
        if dtype is None:
            dtype = {"bool": DType.bool, "int": DType.i32, "float": DType.f32}[lit.kind]
        if not _fits(lit, dtype):
            if lit.kind == "float" and dtype.is_int:
                raise DlTypeError(f"float literal {lit.text()} used with an {dtype.dsl_name} tensor; "
                                  "cast the tensor with cast(x, f32) or write an integer", lit.span)
            raise DlTypeError(f"{lit.kind} literal {lit.text()} used with a {dtype.dsl_name} tensor",
                              lit.span)
        if dtype in _INT_RANGE:
            low, high = _INT_RANGE[dtype]
            if not low <= lit.value <= high:
                raise DlTypeError(f"integer literal {lit.text()} is out of range for {dtype.dsl_name}",
                                  lit.span)
        if dtype.is_float and not math.isfinite(float(lit.value)):
            raise DlTypeError(f"literal {lit.text()} is not a finite number", lit.span)
        if dtype.is_float and abs(float(lit.value)) > float(np.finfo(dtype.np).max):
            raise DlTypeError(f"literal {lit.text()} is out of range for {dtype.dsl_name}", lit.span)
        with self.b.at(lit.span):
            return self.b.constant(lit.value, dtype)

    def materialize_all(self, operands: list[Value | Lit]) -> list[Value]:
        """Give each literal the dtype of a tensor operand it fits (else the first one's)."""
        tensors = [v for v in operands if isinstance(v, Value)]
        out = []
        for v in operands:
            if isinstance(v, Lit):
                fitting = [t for t in tensors if _fits(v, t.type.dtype)]
                chosen = fitting[0] if fitting else (tensors[0] if tensors else None)
                v = self.materialize(v, chosen.type.dtype if chosen else None)
            out.append(v)
        return out

    # -- building ops --------------------------------------------------------

    def emit(self, name: str, operands: list[Value], attrs: dict[str, Any], span: Location,
             display: str | None = None) -> Any:
        """Build op ``name`` at ``span``; shape-rule errors name the operator as written."""
        try:
            with self.b.at(span):
                return self.b.emit(name, *operands, **attrs)
        except DlTypeError as e:
            if display is not None and e.message.startswith(f"{name}: "):
                e.message = f"'{display}': {e.message[len(name) + 2:]}"
                e.args = (e.message,)
            raise

    # -- calls -----------------------------------------------------------------

    def call(self, c: ast.Call) -> Value | Lit | tuple[Value, ...]:
        if self.lowerer.is_function(c.func):
            return self.inline(c)
        if c.func == "dense":
            return self.dense(c)
        if c.func in GRAD_TRANSFORMS:
            raise DlTypeError(f"{c.func}(...) defines a function: write 'fn name = {c.func}(f, wrt=[...])' "
                              "at the top level and call it", c.func_span)
        opdef = OPS.get(c.func)
        if opdef is not None:
            return self.op_call(opdef, c)
        known = [*OPS, *self.lowerer.defs, *(["dense"] if self.model else [])]
        raise NameResolutionError(f"unknown function '{c.func}'", c.func_span,
                                  notes=did_you_mean(c.func, known))

    def op_call(self, op: OpDef, c: ast.Call) -> Any:
        """A call of a built-in op: positional tensors, then attributes by position or keyword."""
        operand_names = list(op.operands)
        attr_names = list(op.attrs)
        tensors: dict[str, ast.Expr] = {}
        attrs: dict[str, ast.Expr] = {}
        if op.variadic:
            extra: list[ast.Expr] = list(c.args[len(operand_names) - 1:])
            positional = list(c.args[:len(operand_names) - 1])
        else:
            extra, positional = [], list(c.args)
        for i, arg in enumerate(positional):
            if i < len(operand_names):
                tensors[operand_names[i]] = arg
            elif i - len(operand_names) < len(attr_names):
                attrs[attr_names[i - len(operand_names)]] = arg
            else:
                raise DlTypeError(f"too many arguments to '{op.name}': it takes at most "
                                  f"{len(operand_names) + len(attr_names)} ({_signature(op)})", arg.span)
        spelled: dict[str, str] = {}   # attribute -> the keyword as written (axis= for axes)
        for kw in c.kwargs:
            key = kw.name
            if key == "axis" and "axis" not in op.attrs and "axes" in op.attrs:
                key = "axes"
            if key in operand_names and not op.variadic:
                target = tensors
            elif key in op.attrs:
                target = attrs
            else:
                allowed = [*(operand_names if not op.variadic else []), *attr_names]
                raise DlTypeError(f"unknown keyword argument '{kw.name}' for '{op.name}' "
                                  f"(allowed: {', '.join(allowed) or 'none'})", kw.span,
                                  notes=did_you_mean(kw.name, allowed))
            if key in target:
                raise DlTypeError(f"argument '{key}' of '{op.name}' given twice", kw.span)
            target[key] = kw.value
            spelled[key] = kw.name
        missing = [n for n in operand_names if n not in tensors] if not op.variadic else []
        if missing or (op.variadic and not extra):
            got = len(tensors) + len(extra)
            want = len(operand_names)
            raise DlTypeError(f"'{op.name}' takes {want} tensor argument{'s' if want != 1 else ''} "
                              f"({', '.join(operand_names)}), got {got}", c.span,
                              notes=[f"signature: {_signature(op)}"])
        values = [self.single(tensors[n]) for n in operand_names if n in tensors]
        values += [self.single(e) for e in extra]
        operands = self.materialize_all(values)
        attr_values = {k: self.attr(op, k, e, spelled.get(k, k)) for k, e in attrs.items()}
        return self.emit(op.name, operands, attr_values, c.span)

    def attr(self, op: OpDef, key: str, expr: ast.Expr, written: str) -> Any:
        """A compile-time attribute value, converted by the attribute's kind."""
        kind = op.attrs[key].kind
        value = self.const(expr)
        where = f"argument '{written}' of '{op.name}'"
        return convert_attr(value, kind, where, expr.span, self.symbols)

    def const(self, expr: ast.Expr) -> Any:
        """An expression evaluated at compile time: numbers, bools, strings, lists, bare names."""
        if isinstance(expr, ast.ListExpr):
            return [self.const(i) for i in expr.items]
        if isinstance(expr, ast.String):
            return expr.value
        if isinstance(expr, ast.Name):
            binding = self.scope.lookup(expr.id)
            if binding is not None and isinstance(binding.value, Lit):
                return binding.value.value
            if binding is not None and binding.value is POISON:
                raise Poisoned()
            if binding is not None:
                raise DlTypeError(f"'{expr.id}' is a tensor; this argument must be a compile-time "
                                  "constant", expr.span)
            return Word(expr.id, expr.span)
        if isinstance(expr, (ast.Number, ast.Bool, ast.Unary, ast.Binary)):
            v = self.expr(expr)
            if isinstance(v, Lit):
                return v.value
        raise DlTypeError("this argument must be a compile-time constant", expr.span)

    # -- user functions --------------------------------------------------------

    def inline(self, c: ast.Call) -> Value | tuple[Value, ...]:
        """A call of a user function: check the arguments, then copy its body here."""
        callee = self.lowerer.function(c.func, c.func_span)
        names = [p.name for p in callee.params]
        given: dict[str, ast.Expr] = {}
        if len(c.args) > len(names):
            raise DlTypeError(f"'{callee.name}' takes {len(names)} argument{'s' if len(names) != 1 else ''} "
                              f"({', '.join(n or '?' for n in names)}), got {len(c.args) + len(c.kwargs)}",
                              c.args[len(names)].span)
        for p, arg in zip(names, c.args):
            given[p or ""] = arg
        for kw in c.kwargs:
            if kw.name not in names:
                raise DlTypeError(f"unknown keyword argument '{kw.name}' for '{callee.name}' "
                                  f"(parameters: {', '.join(n or '?' for n in names)})", kw.span,
                                  notes=did_you_mean(kw.name, [n for n in names if n]))
            if kw.name in given:
                raise DlTypeError(f"argument '{kw.name}' of '{callee.name}' given twice", kw.span)
            given[kw.name] = kw.value
        missing = [n for n in names if n not in given]
        if missing:
            raise DlTypeError(f"'{callee.name}' takes {len(names)} argument{'s' if len(names) != 1 else ''} "
                              f"({', '.join(n or '?' for n in names)}), got {len(given)}", c.span,
                              notes=[f"missing: {', '.join(n or '?' for n in missing)}"])
        args = []
        for p in callee.params:
            expr = given[p.name or ""]
            v = self.single(expr)
            if isinstance(v, Lit):
                v = self.materialize(v, p.type.dtype)
            args.append((v, expr))
        binding = unify_call(callee, args)
        return self.copy_body(callee, [v for v, _ in args], binding, c)

    def copy_body(self, callee: Function, args: list[Value], binding: dict[str, Dim],
                  c: ast.Call) -> Value | tuple[Value, ...]:
        from compiler.passes.autodiff import inline_function

        def substitute(op: Op) -> dict[str, Any]:
            return substitute_dims(op, binding)

        try:
            env = inline_function(self.b, callee, args, attrs=substitute)
        except DlError as e:
            e.notes.append(f"while inlining the call to '{callee.name}' at {c.span}")
            raise
        outputs = tuple(env[v] for v in callee.outputs)
        return outputs[0] if len(outputs) == 1 else outputs

    # -- layers ------------------------------------------------------------------

    def dense(self, c: ast.Call) -> Value:
        if self.model is None:
            raise DlTypeError("dense(...) creates parameters, so it can only be used inside a model",
                              c.func_span)
        return self.model.dense(self, c)


def _signature(op: OpDef) -> str:
    parts = list(op.operands)
    for key, spec in op.attrs.items():
        default = spec.default
        if spec.required:
            parts.append(f"{key}=...")
        elif isinstance(default, bool):
            parts.append(f"{key}={'true' if default else 'false'}")
        elif isinstance(default, DType):
            parts.append(f"{key}={default.dsl_name}")
        else:
            parts.append(f"{key}={'none' if default is None else default}")
    return f"{op.name}({', '.join(parts)})"


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


def unify_call(callee: Function, args: list[tuple[Value, ast.Expr]]) -> dict[str, Dim]:
    """Check arguments against the callee's parameter types; bind its symbolic dims."""
    binding: dict[str, Dim] = {}
    for p, (v, expr) in zip(callee.params, args):
        want, got = p.type, v.type
        message = (f"argument '{p.name}' of '{callee.name}' expects {want.dsl_str()}, "
                   f"got {got.dsl_str()}")
        if want.dtype != got.dtype or want.rank != got.rank:
            raise DlTypeError(message, expr.span)
        for wd, gd in zip(want.shape, got.shape):
            if isinstance(wd, int):
                if wd != gd:
                    raise DlTypeError(message, expr.span)
            elif wd in binding and binding[wd] != gd:
                raise DlTypeError(f"{message}: dim {wd} is {binding[wd]} from an earlier argument "
                                  f"but {gd} here", expr.span)
            else:
                binding[wd] = gd
    return binding


def substitute_dims(op: Op, binding: dict[str, Dim]) -> dict[str, Any]:
    """``op``'s attributes with symbols in ``dims`` attributes replaced per ``binding``."""
    opdef = OPS[op.name]
    out = dict(op.attrs)
    for key, spec in opdef.attrs.items():
        if spec.kind == "dims" and out.get(key) is not None:
            out[key] = tuple(binding.get(d, d) if isinstance(d, str) else d for d in out[key])
    return out
