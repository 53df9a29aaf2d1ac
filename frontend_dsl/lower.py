"""Lower the typed AST to a dl IR :class:`~compiler.ir.core.Module`.

Every op is built through :class:`~compiler.ir.builder.Builder` inside
``b.at(span)``, so it carries the source location of the expression it came
from.  Names live in scoped symbol tables (:class:`Scope`); callables are
user functions (inlined at each call), gradient functions (built by the
autodiff pass) and the ops of :data:`compiler.ops.OPS` -- the language keeps
no op list of its own.

Errors are collected, not raised one at a time: each function, gradient
definition and model statement is lowered separately, and everything that
went wrong is raised together as one :class:`DlErrors`.  A value whose
definition failed is *poisoned*: using it fails quietly, so one mistake is
reported once rather than at every later use.

Literals have no dtype of their own: ``x * 2`` takes ``x``'s dtype.  An int
literal fits any numeric dtype, a float literal only a float one (``i * 2.5``
with an ``i32`` tensor is an error: cast first).  Two literals fold at
compile time.

A ``model`` lowers to three functions and ``module.attrs["model"]`` (see
:func:`_Lowerer._model` and ``docs/language.md``).
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from compiler.diagnostics import DlError, DlErrors, DlTypeError, Location, NameResolutionError
from compiler.ir.builder import Builder, new_function
from compiler.ir.core import Function, Module, Op, Value
from compiler.ir.types import Dim, DType, TensorType
from compiler.metrics import METRICS
from compiler.ops import OPS, OpDef
from compiler.optimizers import OPTIMIZERS

from . import ast

MODEL_FUNCTIONS = ("predict", "loss", "evaluate")
GRAD_TRANSFORMS = ("grad", "value_and_grad")
DTYPE_NAMES = ("f32", "f64", "i32", "i64", "bool")

# dense(..., activation=NAME): the op applied after the affine map (None: identity).
ACTIVATIONS: dict[str, str | None] = {
    "relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softmax": "softmax",
    "linear": None, "none": None,
}
DENSE_ARGS = ("x", "units", "activation", "name", "kernel_init", "bias_init", "use_bias")


def lower_program(program: ast.Program, *, defer_grads: bool = False) -> Module:
    """Lower a parsed program to a dl IR module.

    With ``defer_grads`` each gradient function is left as a placeholder
    (same parameters, no body, ``attrs["grad_of"]``) for the ``autodiff``
    pass to build, so the pass pipeline can show it working.

    Raises :class:`DlErrors` holding every independent error found.
    """
    return _Lowerer(program).run(defer_grads=defer_grads)


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


class _Poison:
    """Bound to a name whose definition failed (an error was already reported)."""


POISON = _Poison()


class _Poisoned(Exception):
    """An expression used a poisoned name: fail quietly, the cause is reported."""


Bound = Value | Lit | _Poison


@dataclass
class _Binding:
    value: Bound
    span: Location


class Scope:
    """A scoped symbol table: names to values, looked up through the parents."""

    def __init__(self, parent: Scope | None = None):
        self.parent = parent
        self.names: dict[str, _Binding] = {}

    def lookup(self, name: str) -> _Binding | None:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.names:
                return scope.names[name]
            scope = scope.parent
        return None

    def define(self, name: ast.Name, value: Bound) -> None:
        """Bind ``name``; a second definition in the same scope is an error."""
        previous = self.lookup(name.id)
        if previous is not None:
            raise NameResolutionError(f"'{name.id}' is already defined", name.span,
                                      notes=[f"previous definition at {previous.span}"])
        self.names[name.id] = _Binding(value, name.span)

    def poison(self, names: Iterable[ast.Name]) -> None:
        for n in names:
            if n.id not in self.names:
                self.names[n.id] = _Binding(POISON, n.span)

    def all_names(self) -> list[str]:
        out = list(self.names)
        if self.parent is not None:
            out += self.parent.all_names()
        return out


def _did_you_mean(name: str, candidates: Iterable[str]) -> list[str]:
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.5)
    return [f"did you mean '{close[0]}'?"] if close else []


def _collect(errors: list[DlError], e: DlError) -> None:
    errors.extend(e.errors if isinstance(e, DlErrors) else [e])


def _raise_all(errors: list[DlError]) -> None:
    if errors:
        raise DlErrors(errors)


# ---------------------------------------------------------------------------
# The module-level lowerer


class _Lowerer:
    """Lowers a whole program; functions are lowered on demand (a call may come first)."""

    def __init__(self, program: ast.Program):
        self.program = program
        self.module = Module()
        self.errors: list[DlError] = []
        self.defs: dict[str, ast.FnDef | ast.GradDef] = {}
        self.done: dict[str, Function | None] = {}   # None: lowering failed (reported)
        self.active: list[str] = []                  # call stack, for recursion
        self.order: dict[str, tuple[int, int]] = {}  # function name -> source position
        self.grad_specs: dict[str, dict[str, Any]] = {}
        self.model: ast.ModelDef | None = None

    def run(self, *, defer_grads: bool) -> Module:
        self._collect_definitions()
        for item in self.program.items:
            if isinstance(item, ast.ModelDef):
                if item is self.model:
                    self._guarded(self._model, item)
            elif item.name.id in self.defs:
                try:
                    self.function(item.name.id)
                except _Poisoned:
                    pass  # its errors are collected
        _raise_all(self.errors)
        self.module.functions.sort(key=lambda f: self.order.get(f.name, (1 << 30, 0)))
        if defer_grads:
            self._defer_grads()
        return self.module

    def _guarded(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except _Poisoned:
            return None
        except DlError as e:
            _collect(self.errors, e)
            return None

    def _collect_definitions(self) -> None:
        """Top-level names: functions, gradient functions and at most one model."""
        seen: dict[str, Location] = {}

        def claim(name: str, span: Location, what: str) -> bool:
            if name in seen:
                self.errors.append(NameResolutionError(
                    f"{what} '{name}' is already defined", span,
                    notes=[f"previous definition at {seen[name]}"]))
                return False
            seen[name] = span
            return True

        for item in self.program.items:
            if isinstance(item, ast.ModelDef):
                if self.model is not None:
                    self.errors.append(NameResolutionError(
                        "only one model per file is supported", item.name.span,
                        notes=[f"the first model is at {self.model.name.span}"]))
                    continue
                self.model = item
                for fname in MODEL_FUNCTIONS:
                    self.order[fname] = (item.span.line, item.span.col)
                claim(item.name.id, item.name.span, "model")
                continue
            if claim(item.name.id, item.name.span, "function"):
                self.defs[item.name.id] = item
                self.order[item.name.id] = (item.span.line, item.span.col)
        # the model generates predict, loss and evaluate: user functions may not take those names
        if self.model is not None:
            for fname in MODEL_FUNCTIONS:
                item = self.defs.get(fname)
                if item is not None:
                    self.errors.append(NameResolutionError(
                        f"function '{fname}' clashes with the function the model generates",
                        item.name.span, notes=[f"model '{self.model.name.id}' at {self.model.name.span} "
                                               "defines predict, loss and evaluate"]))
                    del self.defs[fname]

    # -- functions ---------------------------------------------------------

    def is_function(self, name: str) -> bool:
        return name in self.defs

    def function(self, name: str, call_span: Location | None = None) -> Function:
        """The lowered function ``name`` (lowering it now if needed).

        Raises :class:`_Poisoned` if it failed (its errors are already
        collected) and a :class:`NameResolutionError` for a recursive call.
        """
        if name in self.done:
            result = self.done[name]
            if result is None:
                raise _Poisoned()
            return result
        if name in self.active:
            chain = " -> ".join([*self.active[self.active.index(name):], name])
            raise NameResolutionError(f"recursive call to '{name}' ({chain}); recursion is not supported",
                                      call_span)
        self.active.append(name)
        try:
            item = self.defs[name]
            if isinstance(item, ast.FnDef):
                result = self._guarded(self._fn, item)
            else:
                result = self._guarded(self._grad, item)
        finally:
            self.active.pop()
        self.done[name] = result
        if result is None:
            raise _Poisoned()
        return result

    def _fn(self, fn: ast.FnDef) -> Function:
        errors: list[DlError] = []
        params, broken = self._params(fn.params, errors)
        symbols = {s for _, t in params for s in t.symbols}
        returns = self._return_types(fn, symbols, errors)

        # Lower the body even after a signature error, so its own errors show too.
        func, b = new_function(fn.name.id, params, loc=fn.name.span)
        scope = Scope()
        for value in func.params:
            scope.names[value.name or ""] = _Binding(value, fn.name.span)
        scope.poison(broken)
        body = _Body(self, b, scope, symbols)
        failed = False
        returned: ast.Return | None = None
        for stmt in fn.body:
            if returned is not None:
                errors.append(NameResolutionError("unreachable statement after 'return'", stmt.span))
                break
            try:
                if isinstance(stmt, ast.Let):
                    body.let(stmt)
                else:
                    returned = stmt
                    func.outputs, func.output_names = body.returns(stmt, returns, fn.name.id)
            except _Poisoned:
                failed = True
                if isinstance(stmt, ast.Let):
                    scope.poison(stmt.names)
            except DlError as e:
                _collect(errors, e)
                if isinstance(stmt, ast.Let):
                    scope.poison(stmt.names)
        if returned is None:
            errors.append(NameResolutionError(f"function '{fn.name.id}' has no 'return'", fn.name.span))
        _raise_all(errors)
        if failed:
            raise _Poisoned()
        self.module.add(func)
        return func

    def _return_types(self, fn: ast.FnDef, symbols: set[str],
                      errors: list[DlError]) -> list[TensorType] | None:
        """The declared return types; None when omitted or when one does not resolve."""
        if fn.returns is None:
            return None
        out: list[TensorType] = []
        for t in fn.returns:
            try:
                out.append(resolve_type(t, symbols, what="return type"))
            except DlError as e:
                _collect(errors, e)
        return out if len(out) == len(fn.returns) else None

    def _params(self, params: tuple[ast.Param, ...],
                errors: list[DlError]) -> tuple[list[tuple[str, TensorType]], list[ast.Name]]:
        """The parameters that resolve, and the names of those that do not."""
        out: list[tuple[str, TensorType]] = []
        broken: list[ast.Name] = []
        seen: dict[str, Location] = {}
        for p in params:
            if p.name.id in seen:
                errors.append(NameResolutionError(f"parameter '{p.name.id}' is already defined", p.name.span,
                                                  notes=[f"previous definition at {seen[p.name.id]}"]))
                continue
            seen[p.name.id] = p.name.span
            try:
                out.append((p.name.id, resolve_type(p.type, None)))
            except DlError as e:
                _collect(errors, e)
                broken.append(p.name)
        return out, broken

    def _grad(self, g: ast.GradDef) -> Function:
        """``fn g = grad(f, wrt=[...])``: the autodiff pass builds the function."""
        call = g.transform
        if call.func not in GRAD_TRANSFORMS:
            raise NameResolutionError(
                f"'fn {g.name.id} = ...' must be grad(f, wrt=[...]) or value_and_grad(f, wrt=[...]), "
                f"not '{call.func}'", call.func_span)
        if len(call.args) != 1 or not isinstance(call.args[0], ast.Name):
            raise DlTypeError(f"{call.func} takes one function name, e.g. {call.func}(loss, wrt=[w])",
                              call.span)
        target_name = call.args[0]
        if not self.is_function(target_name.id):
            raise NameResolutionError(f"unknown function '{target_name.id}'", target_name.span,
                                      notes=_did_you_mean(target_name.id, self.defs))
        wrt_expr: ast.Expr | None = None
        for kw in call.kwargs:
            if kw.name != "wrt":
                raise DlTypeError(f"unknown keyword argument '{kw.name}' for {call.func} (allowed: wrt)",
                                  kw.span)
            wrt_expr = kw.value
        target = self.function(target_name.id, target_name.span)
        wrt = self._wrt(target, wrt_expr, call)
        from compiler.passes.autodiff import grad

        with_value = call.func == "value_and_grad"
        func = grad(self.module, target.name, wrt, new_name=g.name.id, with_value=with_value,
                    loc=g.name.span)
        self.grad_specs[func.name] = {"fn": target.name, "wrt": list(wrt), "with_value": with_value}
        return func

    def _wrt(self, target: Function, expr: ast.Expr | None, call: ast.Call) -> list[str]:
        names = [p.name for p in target.params]
        if expr is None:
            wrt = [p.name for p in target.params if p.type.dtype.is_float]
            if not wrt:
                raise DlTypeError(f"'{target.name}' has no float parameter to differentiate", call.span)
            return [w for w in wrt if w is not None]
        items = expr.items if isinstance(expr, ast.ListExpr) else (expr,)
        out: list[str] = []
        for item in items:
            if not isinstance(item, ast.Name):
                raise DlTypeError("wrt= takes parameter names, e.g. wrt=[w, b]", item.span)
            if item.id not in names:
                raise NameResolutionError(
                    f"'{item.id}' is not a parameter of '{target.name}' "
                    f"(parameters: {', '.join(n for n in names if n)})", item.span,
                    notes=_did_you_mean(item.id, [n for n in names if n]))
            if item.id in out:
                raise NameResolutionError(f"'{item.id}' appears twice in wrt=", item.span)
            out.append(item.id)
        if not out:
            raise DlTypeError("wrt= names no parameter", expr.span)
        return out

    def _defer_grads(self) -> None:
        """Replace each gradient function by a placeholder for the autodiff pass."""
        for i, f in enumerate(self.module.functions):
            spec = self.grad_specs.get(f.name)
            if spec is None:
                continue
            placeholder = Function(f.name, [Value(p.type, None, j, p.name) for j, p in enumerate(f.params)],
                                   loc=f.loc)
            placeholder.attrs["grad_of"] = dict(spec)
            self.module.functions[i] = placeholder

    # -- models ------------------------------------------------------------

    def _model(self, m: ast.ModelDef) -> None:
        _ModelLowering(self, m).run()


# ---------------------------------------------------------------------------
# Types


def resolve_type(t: ast.TypeExpr, symbols: set[str] | None, *, what: str = "") -> TensorType:
    """A written type as a :class:`TensorType`.

    ``symbols``, if given, is the set of dims already bound: a return type
    may only use the symbols its parameters introduced.
    """
    if t.dtype not in DTYPE_NAMES:
        raise DlTypeError(f"unknown dtype '{t.dtype}' (dtypes: {', '.join(DTYPE_NAMES)})", t.span,
                          notes=_did_you_mean(t.dtype, DTYPE_NAMES))
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
class _Word:
    """A bare name used as a constant: a dtype, an activation, a symbol..."""

    name: str
    span: Location


def _fold(op: str, lhs: Lit, rhs: Lit, span: Location) -> Lit:
    """Two literals combined at compile time."""
    a, b = lhs.value, rhs.value
    if isinstance(a, bool) or isinstance(b, bool):
        if op in ("eq", "ne"):
            return Lit((a == b) if op == "eq" else (a != b), span)
        raise DlTypeError("arithmetic on true/false is not allowed", span)
    try:
        if op == "add":
            return Lit(a + b, span)
        if op == "sub":
            return Lit(a - b, span)
        if op == "mul":
            return Lit(a * b, span)
        if op == "div":
            return Lit(a / b, span)
        if op == "pow":
            value = a ** b
            if isinstance(value, complex):
                raise DlTypeError("constant expression has no real value", span)
            return Lit(value, span)
    except ZeroDivisionError:
        raise DlTypeError("division by zero in a constant expression", span) from None
    except OverflowError:
        raise DlTypeError("constant expression overflows", span) from None
    comparisons = {"eq": a == b, "ne": a != b, "lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}
    if op in comparisons:
        return Lit(comparisons[op], span)
    raise DlTypeError(f"'{ast.OPERATOR_TEXT.get(op, op)}' needs tensor operands, not two numbers", span)


def _fits(lit: Lit, dtype: DType) -> bool:
    if lit.kind == "bool":
        return dtype is DType.bool
    if dtype is DType.bool:
        return False
    return dtype.is_float or lit.kind == "int"


_INT_RANGE = {DType.i32: (-(2 ** 31), 2 ** 31 - 1), DType.i64: (-(2 ** 63), 2 ** 63 - 1)}


# ---------------------------------------------------------------------------
# Bodies: expressions and statements of a function or model


class _Body:
    """Lowers statements and expressions into one function through its builder."""

    def __init__(self, lowerer: _Lowerer, b: Builder, scope: Scope, symbols: set[str],
                 model: _ModelLowering | None = None):
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
        _raise_all(errors)

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
                _collect(errors, e)
        _raise_all(errors)
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
            hint = _did_you_mean(e.id, self.scope.all_names())
            if not hint and (e.id in OPS or self.lowerer.is_function(e.id)):
                hint = [f"'{e.id}' is a function; call it as {e.id}(...)"]
            raise NameResolutionError(f"unknown name '{e.id}'", e.span, notes=hint)
        if binding.value is POISON:
            raise _Poisoned()
        return binding.value  # type: ignore[return-value]

    def unary(self, e: ast.Unary) -> Value | Lit:
        v = self.single(e.operand)
        if isinstance(v, Lit):
            if v.kind == "bool":
                raise DlTypeError("cannot negate true/false", e.span)
            return Lit(-v.value, e.span)
        return self.emit(e.op, [v], {}, e.span, display="-")

    def binary(self, e: ast.Binary) -> Value | Lit:
        lhs, rhs = self.single(e.lhs), self.single(e.rhs)
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
                                  notes=_did_you_mean(c.func, known))

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
                                  notes=_did_you_mean(kw.name, allowed))
            if key in target:
                raise DlTypeError(f"argument '{key}' of '{op.name}' given twice", kw.span)
            target[key] = kw.value
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
        attr_values = {k: self.attr(op, k, e) for k, e in attrs.items()}
        return self.emit(op.name, operands, attr_values, c.span)

    def attr(self, op: OpDef, key: str, expr: ast.Expr) -> Any:
        """A compile-time attribute value, converted by the attribute's kind."""
        kind = op.attrs[key].kind
        value = self.const(expr)
        where = f"argument '{key}' of '{op.name}'"
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
                raise _Poisoned()
            if binding is not None:
                raise DlTypeError(f"'{expr.id}' is a tensor; this argument must be a compile-time "
                                  "constant", expr.span)
            return _Word(expr.id, expr.span)
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
                                  notes=_did_you_mean(kw.name, [n for n in names if n]))
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
        if isinstance(value, _Word):
            return value.name
        if not isinstance(value, str):
            raise bad("a name or a string")
        return value
    if kind == "scalar":
        if not isinstance(value, (bool, int, float)):
            raise bad("a number")
        return value
    if kind == "dtype":
        name = value.name if isinstance(value, _Word) else value
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
            elif isinstance(v, _Word) and v.name in symbols:
                dims.append(v.name)
            elif isinstance(v, _Word):
                raise NameResolutionError(f"unknown dim '{v.name}' in {where}", v.span,
                                          notes=_did_you_mean(v.name, symbols))
            else:
                raise bad("a list of dims, e.g. [N, 784]")
        return tuple(dims)
    if kind == "dense":
        if isinstance(value, _Word) or _contains_word(value):
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
    return isinstance(value, (_Word, str))


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


# ---------------------------------------------------------------------------
# Models


@dataclass
class _Declared:
    """A declared model tensor (param, input, target or output)."""

    name: str
    value: Value
    span: Location
    init: dict[str, Any] | None = None


@dataclass
class _ModelState:
    params: list[_Declared] = field(default_factory=list)
    inputs: list[_Declared] = field(default_factory=list)
    targets: list[_Declared] = field(default_factory=list)
    outputs: list[_Declared] = field(default_factory=list)
    loss: tuple[Value, ast.LossDecl, dict[str, Any]] | None = None
    optimizer: tuple[dict[str, Any], ast.OptimizerDecl] | None = None
    metrics: ast.MetricsDecl | None = None
    dense_count: int = 0


class _ModelLowering:
    """One ``model`` block: a full function first, then predict / loss / evaluate sliced from it.

    The full function takes ``params..., inputs..., targets...`` and returns
    every output, the loss and the metrics; each generated function keeps
    only the ops its outputs need.
    """

    def __init__(self, lowerer: _Lowerer, m: ast.ModelDef):
        self.lowerer = lowerer
        self.m = m
        self.state = _ModelState()
        self.declared: dict[str, Location] = {}
        self.full, b = new_function(f"{m.name.id}.full", [], loc=m.name.span)
        self.body = _Body(lowerer, b, Scope(), set(), model=self)

    def run(self) -> None:
        errors: list[DlError] = []
        failed = False
        for stmt in self.m.body:
            try:
                self.statement(stmt)
            except _Poisoned:
                failed = True
                self.body.scope.poison(_defined_names(stmt))
            except DlError as e:
                _collect(errors, e)
                self.body.scope.poison(_defined_names(stmt))
        if not errors and not failed:
            self.check_complete(errors)
        _raise_all(errors)
        if failed:
            raise _Poisoned()
        metric_values = self.build_metrics()
        self.emit_functions(metric_values)

    # -- statements --------------------------------------------------------

    def statement(self, stmt: ast.ModelStmt) -> None:
        s = self.state
        if isinstance(stmt, ast.Let):
            self.body.let(stmt)
        elif isinstance(stmt, (ast.InputDecl, ast.TargetDecl)):
            t = resolve_type(stmt.type, None)
            self.body.symbols.update(t.symbols)
            value = Value(t, None, 0, stmt.name.id)
            self.body.scope.define(stmt.name, value)
            group = s.inputs if isinstance(stmt, ast.InputDecl) else s.targets
            group.append(_Declared(stmt.name.id, value, stmt.name.span))
        elif isinstance(stmt, ast.ParamDecl):
            t = resolve_type(stmt.type, None)
            if not t.is_static:
                raise DlTypeError(f"parameter '{stmt.name.id}' needs a static shape, got {t.dsl_str()}",
                                  stmt.type.span)
            init = self.initializer(stmt.init, default=None if stmt.init else _default_init(t))
            value = self.new_param(stmt.name, t, init)
            self.body.scope.define(stmt.name, value)
        elif isinstance(stmt, ast.OutputDecl):
            value = self.body.value(stmt.value)
            self.body.scope.define(stmt.name, value)
            s.outputs.append(_Declared(stmt.name.id, value, stmt.name.span))
        elif isinstance(stmt, ast.LossDecl):
            self.once(stmt, "loss")
            value = self.body.value(stmt.value)
            if not value.type.dtype.is_float or value.type.rank != 0:
                raise DlTypeError(f"the loss must be a float scalar (f32[]), got {value.type.dsl_str()}",
                                  stmt.value.span, notes=["reduce it, e.g. with mean(...)"])
            s.loss = (value, stmt, self.loss_spec(stmt.value))
        elif isinstance(stmt, ast.OptimizerDecl):
            self.once(stmt, "optimizer")
            s.optimizer = (self.optimizer(stmt.value), stmt)
        elif isinstance(stmt, ast.MetricsDecl):
            self.once(stmt, "metrics")
            self.check_metrics(stmt)
            s.metrics = stmt
        else:
            raise AssertionError(f"unknown model statement {stmt!r}")

    def once(self, stmt: ast.ModelStmt, what: str) -> None:
        """``loss``, ``optimizer`` and ``metrics`` may each be declared once."""
        first = self.declared.get(what)
        if first is not None:
            raise NameResolutionError(f"model '{self.m.name.id}' declares '{what}' more than once",
                                      stmt.span, notes=[f"first declared at {first}"])
        self.declared[what] = stmt.span

    def new_param(self, name: ast.Name, t: TensorType, init: dict[str, Any]) -> Value:
        for p in self.state.params:
            if p.name == name.id:
                raise NameResolutionError(f"parameter '{name.id}' is already defined", name.span,
                                          notes=[f"previous definition at {p.span}"])
        value = Value(t, None, 0, name.id)
        self.state.params.append(_Declared(name.id, value, name.span, init))
        return value

    def check_complete(self, errors: list[DlError]) -> None:
        s, where, name = self.state, self.m.name.span, self.m.name.id
        if not s.outputs:
            errors.append(NameResolutionError(f"model '{name}' has no output "
                                              "(declare one with 'output name = ...')", where))
        if s.loss is None:
            errors.append(NameResolutionError(f"model '{name}' has no loss "
                                              "(declare one with 'loss mse(pred, y)')", where))
        if s.optimizer is None:
            errors.append(NameResolutionError(f"model '{name}' has no optimizer "
                                              "(declare one with 'optimizer sgd(lr=0.01)')", where))
        if s.metrics is not None and s.metrics.names and not s.targets:
            errors.append(DlTypeError("metrics need a target; declare one with 'target y: ...'",
                                      s.metrics.span))

    # -- initializers, optimizer, loss, metrics ----------------------------------

    def initializer(self, expr: ast.Expr | None, default: dict[str, Any] | None) -> dict[str, Any]:
        """``zeros`` / ``normal(std=0.1)`` as ``{"name": "normal", "std": 0.1}``."""
        if expr is None:
            assert default is not None
            return default
        from compiler.initializers import INITIALIZERS

        name, args, kwargs, name_span = _named_call(expr, "an initializer such as zeros or normal(std=0.1)")
        if name not in INITIALIZERS:
            raise NameResolutionError(f"unknown initializer '{name}' "
                                      f"(initializers: {', '.join(sorted(INITIALIZERS))})", name_span,
                                      notes=_did_you_mean(name, INITIALIZERS))
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
                                  notes=_did_you_mean(kw.name, allowed))
        for key, value_expr in pairs:
            if key in spec:
                raise DlTypeError(f"argument '{key}' of '{name}' given twice", value_expr.span)
            spec[key] = convert_attr(self.body.const(value_expr), "float",
                                     f"argument '{key}' of '{name}'", value_expr.span, set())
        return spec

    def optimizer(self, expr: ast.Expr) -> dict[str, Any]:
        name, args, kwargs, name_span = _named_call(expr, "an optimizer such as sgd(lr=0.01)")
        if name not in OPTIMIZERS:
            raise NameResolutionError(f"unknown optimizer '{name}' "
                                      f"(optimizers: {', '.join(sorted(OPTIMIZERS))})", name_span,
                                      notes=_did_you_mean(name, OPTIMIZERS))
        opt = OPTIMIZERS[name]
        if args:
            raise DlTypeError("optimizer hyperparameters are given by keyword, e.g. lr=0.01", args[0].span)
        given: dict[str, float | bool] = {}
        for kw in kwargs:
            key = opt.aliases.get(kw.name, kw.name)
            if key not in opt.hyperparams:
                known = [*opt.hyperparams, *opt.aliases]
                raise DlTypeError(f"unknown hyperparameter '{kw.name}' for optimizer '{name}' "
                                  f"(hyperparameters: {', '.join(_hyperparam_names(opt))})", kw.span,
                                  notes=_did_you_mean(kw.name, known))
            kind = "bool" if isinstance(opt.hyperparams[key], bool) else "float"
            given[kw.name] = convert_attr(self.body.const(kw.value), kind,
                                          f"hyperparameter '{kw.name}' of '{name}'", kw.value.span, set())
        return {"name": name, **opt.resolve(given)}

    def loss_spec(self, expr: ast.Expr) -> dict[str, Any]:
        """The loss's description for ``attrs["model"]``: the callee and its constant keywords."""
        if not isinstance(expr, ast.Call):
            return {"name": "custom"}
        spec: dict[str, Any] = {"name": expr.func}
        for kw in expr.kwargs:
            try:
                value = self.body.const(kw.value)
            except DlError:
                continue
            if isinstance(value, (bool, int, float, str)):
                spec[kw.name] = value
        return spec

    def check_metrics(self, stmt: ast.MetricsDecl) -> None:
        seen: set[str] = set()
        for n in stmt.names:
            if n.id not in METRICS:
                raise NameResolutionError(f"unknown metric '{n.id}' (metrics: {', '.join(sorted(METRICS))})",
                                          n.span, notes=_did_you_mean(n.id, METRICS))
            if n.id in seen:
                raise NameResolutionError(f"metric '{n.id}' is listed twice", n.span)
            seen.add(n.id)

    def build_metrics(self) -> list[Value]:
        s = self.state
        if s.metrics is None:
            return []
        output, target = s.outputs[0].value, s.targets[0].value
        values = []
        errors: list[DlError] = []
        for n in s.metrics.names:
            try:
                with self.body.b.at(n.span):
                    values.append(METRICS[n.id].build(self.body.b, output, target))
            except DlError as e:
                errors.append(DlTypeError(f"metric '{n.id}' does not fit output '{s.outputs[0].name}' "
                                          f"({output.type.dsl_str()}) and target '{s.targets[0].name}' "
                                          f"({target.type.dsl_str()}): {e.message}", n.span))
        _raise_all(errors)
        return values

    # -- layers --------------------------------------------------------------------

    def dense(self, body: _Body, c: ast.Call) -> Value:
        """``dense(x, units, activation=relu)``: ``activation(x @ kernel + bias)`` with new params."""
        given = _bind_args("dense", DENSE_ARGS, c)
        for key in ("x", "units"):
            if key not in given:
                raise DlTypeError("'dense' takes x and units, e.g. dense(x, 512, activation=relu)", c.span)
        x = body.single(given["x"])
        if isinstance(x, Lit):
            raise DlTypeError("dense needs a tensor input", given["x"].span)
        if not x.type.dtype.is_float or x.type.rank == 0 or not isinstance(x.type.shape[-1], int):
            raise DlTypeError(f"dense needs a float input of rank >= 1 whose last dim is static, "
                              f"got {x.type.dsl_str()}", given["x"].span)
        units = convert_attr(body.const(given["units"]), "int", "argument 'units' of 'dense'",
                             given["units"].span, set())
        if units <= 0:
            raise DlTypeError(f"dense needs a positive number of units, got {units}", given["units"].span)
        activation = self.activation(body, given.get("activation"))
        self.state.dense_count += 1
        layer = f"dense_{self.state.dense_count}"
        if "name" in given:
            layer = convert_attr(body.const(given["name"]), "str", "argument 'name' of 'dense'",
                                 given["name"].span, set())
        use_bias = True
        if "use_bias" in given:
            use_bias = convert_attr(body.const(given["use_bias"]), "bool", "argument 'use_bias' of 'dense'",
                                    given["use_bias"].span, set())
        kernel_type = TensorType(x.type.dtype, (x.type.shape[-1], units))
        kernel_init = self.initializer(given.get("kernel_init"), {"name": "glorot_uniform"})
        span = c.span
        kernel = self.new_param(ast.Name(f"{layer}.kernel", span), kernel_type, kernel_init)
        bias = None
        if use_bias:
            bias_init = self.initializer(given.get("bias_init"), {"name": "zeros"})
            bias = self.new_param(ast.Name(f"{layer}.bias", span), TensorType(x.type.dtype, (units,)),
                                  bias_init)
        h = body.emit("matmul", [x, kernel], {}, span)
        if bias is not None:
            h = body.emit("add", [h, bias], {}, span)
        if activation is not None:
            h = body.emit(activation, [h], {}, span)
        return h

    def activation(self, body: _Body, expr: ast.Expr | None) -> str | None:
        if expr is None:
            return None
        value = body.const(expr)
        name = value.name if isinstance(value, _Word) else value
        if not isinstance(name, str) or name not in ACTIVATIONS:
            shown = name if isinstance(name, str) else str(value)
            raise NameResolutionError(f"unknown activation '{shown}' (activations: {', '.join(ACTIVATIONS)})",
                                      expr.span, notes=_did_you_mean(str(shown), ACTIVATIONS))
        return ACTIVATIONS[name]

    # -- the generated functions -------------------------------------------------

    def emit_functions(self, metric_values: list[Value]) -> None:
        s = self.state
        assert s.loss is not None and s.optimizer is not None
        params = [p.value for p in s.params]
        inputs = [i.value for i in s.inputs]
        targets = [t.value for t in s.targets]
        self.check_outputs_use_no_target()
        loss_value = s.loss[0]
        module = self.lowerer.module
        module.add(_extract(self.full, "predict", [*params, *inputs], [o.value for o in s.outputs],
                            [o.name for o in s.outputs]))
        module.add(_extract(self.full, "loss", [*params, *inputs, *targets], [loss_value], ["loss"]))
        metric_names = [n.id for n in s.metrics.names] if s.metrics else []
        module.add(_extract(self.full, "evaluate", [*params, *inputs, *targets],
                            [loss_value, *metric_values], ["loss", *metric_names]))
        module.attrs["model"] = {
            "name": self.m.name.id,
            "inputs": [i.name for i in s.inputs],
            "targets": [t.name for t in s.targets],
            "params": [{"name": p.name, "init": p.init} for p in s.params],
            "outputs": [o.name for o in s.outputs],
            "loss": s.loss[2],
            "optimizer": s.optimizer[0],
            "metrics": metric_names,
        }

    def check_outputs_use_no_target(self) -> None:
        targets = {t.value: t.name for t in self.state.targets}
        errors: list[DlError] = []
        for out in self.state.outputs:
            used = _parameters_used(self.full.ops, out.value) & set(targets)
            if used:
                names = ", ".join(sorted(targets[v] for v in used))
                errors.append(DlTypeError(f"output '{out.name}' depends on target {names}; outputs may "
                                          "use only parameters and inputs", out.span))
        _raise_all(errors)


def _defined_names(stmt: ast.ModelStmt) -> list[ast.Name]:
    if isinstance(stmt, ast.Let):
        return list(stmt.names)
    if isinstance(stmt, (ast.InputDecl, ast.TargetDecl, ast.ParamDecl, ast.OutputDecl)):
        return [stmt.name]
    return []


def _default_init(t: TensorType) -> dict[str, Any]:
    """Keras's Dense defaults: glorot_uniform for matrices, zeros for vectors and scalars."""
    return {"name": "glorot_uniform"} if t.rank >= 2 else {"name": "zeros"}


def _hyperparam_names(opt: Any) -> list[str]:
    inverse = {v: k for k, v in opt.aliases.items()}
    return [f"{k} ({inverse[k]})" if k in inverse else k for k in opt.hyperparams]


def _named_call(expr: ast.Expr, what: str) -> tuple[str, tuple[ast.Expr, ...], tuple[ast.Keyword, ...], Location]:
    """``name`` or ``name(args)`` (or ``"name"``) as its parts."""
    if isinstance(expr, ast.Name):
        return expr.id, (), (), expr.span
    if isinstance(expr, ast.String):
        return expr.value, (), (), expr.span
    if isinstance(expr, ast.Call):
        return expr.func, expr.args, expr.kwargs, expr.func_span
    raise DlTypeError(f"expected {what}", expr.span)


def _bind_args(fname: str, names: tuple[str, ...], c: ast.Call) -> dict[str, ast.Expr]:
    given: dict[str, ast.Expr] = {}
    if len(c.args) > len(names):
        raise DlTypeError(f"too many arguments to '{fname}' (it takes {', '.join(names)})", c.args[len(names)].span)
    for key, arg in zip(names, c.args):
        given[key] = arg
    for kw in c.kwargs:
        if kw.name not in names:
            raise DlTypeError(f"unknown keyword argument '{kw.name}' for '{fname}' "
                              f"(allowed: {', '.join(names)})", kw.span, notes=_did_you_mean(kw.name, names))
        if kw.name in given:
            raise DlTypeError(f"argument '{kw.name}' of '{fname}' given twice", kw.span)
        given[kw.name] = kw.value
    return given


def _parameters_used(ops: list[Op], value: Value) -> set[Value]:
    """The function parameters ``value`` depends on."""
    producers = {r: op for op in ops for r in op.results}
    seen: set[int] = set()
    params: set[Value] = set()
    stack = [value]
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if v.owner is None:
            params.add(v)
        elif v in producers:
            stack.extend(producers[v].operands)
    return params


def _extract(full: Function, name: str, params: list[Value], outputs: list[Value],
             output_names: list[str]) -> Function:
    """A new function of ``params`` computing ``outputs`` with just the ops they need."""
    needed: set[Op] = set()
    stack = list(outputs)
    while stack:
        v = stack.pop()
        if v.owner is not None and v.owner not in needed:
            needed.add(v.owner)
            stack.extend(v.owner.operands)
    env: dict[Value, Value] = {p: Value(p.type, None, i, p.name) for i, p in enumerate(params)}
    func = Function(name, [env[p] for p in params], loc=full.loc)
    for op in full.ops:
        if op not in needed:
            continue
        copy = Op(op.name, [env[v] for v in op.operands], [], dict(op.attrs), op.loc)
        copy.results = [Value(r.type, copy, r.index) for r in op.results]
        env.update(zip(op.results, copy.results))
        func.ops.append(copy)
    func.outputs = [env[v] for v in outputs]
    func.output_names = list(output_names)
    return func
