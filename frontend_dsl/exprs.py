"""Expressions and statements of the .dl language, lowered into one function.

:class:`Body` lowers ``let`` / ``return`` statements and expressions through
a :class:`~compiler.ir.builder.Builder`, inside ``b.at(span)`` so every op
carries the source location of the expression it came from.  Names live in
scoped symbol tables (:class:`~.scope.Scope`).  Callables are user functions
(inlined at each call, found through a :class:`FunctionTable`), gradient
functions, the layers of :data:`.layers.LAYERS` (in models) and the ops of
:data:`compiler.ops.OPS` -- the language keeps no op list of its own.

Literals have no dtype of their own (:class:`~.scope.Lit`): ``x * 2`` takes
``x``'s dtype.  An int literal fits any numeric dtype, a float literal only a
float one (``i * 2.5`` with an ``i32`` tensor is an error: cast first).  Two
literals fold at compile time.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from compiler.diagnostics import DlError, DlTypeError, Location, NameResolutionError, SizeError
from compiler.ir import dims
from compiler.ir.builder import Builder
from compiler.ir.core import Function, Op, Value
from compiler.ir.types import Dim, DType, TensorType, number_problem
from compiler.ops import OPS, OpDef, get_op
from compiler.ops.base import COMPOSITE, ELEMENTWISE
from compiler.passes.autodiff import inline_function

from . import ast
from .blocks import expand_block, unify_types
from .constants import INT_RANGE, convert_attr, fits, fold
from .layers import LAYERS
from .layers.base import LAYER_OPS, ParamHost
from .scope import POISON, Lit, Poisoned, Scope, Word, collect_errors, did_you_mean, raise_all

GRAD_TRANSFORMS = ("grad", "value_and_grad")


class FunctionTable(Protocol):
    """The file's functions, as a body calling them sees them (lowered on demand)."""

    def is_function(self, name: str) -> bool: ...

    def function(self, name: str, call_span: Location | None = None) -> Function: ...

    def names(self) -> list[str]: ...

    def block(self, name: str) -> tuple[ast.FnDef, str] | None:
        """The definition of ``name`` and why it is a block, if it is one (see
        :mod:`frontend_dsl.blocks`)."""
        ...


class Body:
    """Lowers statements and expressions into one function through its builder."""

    def __init__(self, functions: FunctionTable, b: Builder, scope: Scope, symbols: set[str],
                 params: ParamHost | None = None):
        self.functions = functions
        self.b = b
        self.scope = scope
        self.symbols = symbols
        self.params = params    # the model, inside a model block: layers add parameters to it
        self.dims: dict[str, Dim] = {}      # in a block's call: its symbols -> the call's dims
        self.expanding: list[str] = []      # the blocks being expanded, outermost first

    def nested(self, scope: Scope, symbols: set[str], host: ParamHost, dims: dict[str, Dim],
               block: str) -> Body:
        """A lowering into the same function for the body of a call of ``block``."""
        inner = Body(self.functions, self.b, scope, symbols, params=host)
        inner.dims = dict(dims)
        inner.expanding = [*self.expanding, block]
        return inner

    # -- statements --------------------------------------------------------

    def let(self, stmt: ast.Let) -> None:
        try:
            value = self.expr(stmt.value)
        except SizeError as e:
            if e.loc != stmt.value.span or len(stmt.names) != 1 or not e.problem:
                raise
            raise SizeError(f"'{stmt.names[0].id}' ({e.type_text}) {e.problem}", e.loc) from None
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
        if isinstance(e, ast.Index):
            return self.index(e)
        if isinstance(e, ast.Attribute):
            return self.attribute(e)
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
            if not hint and (e.id in OPS or self.functions.is_function(e.id)):
                hint = [f"'{e.id}' is a function; call it as {e.id}(...)"]
            raise NameResolutionError(f"unknown name '{e.id}'", e.span, notes=hint)
        if binding.value is POISON:
            raise Poisoned()
        return binding.value  # type: ignore[return-value]

    # -- indexing and attributes ---------------------------------------------

    def index(self, e: ast.Index) -> Value:
        """``x[...]``: numpy's basic indexing -- ints, ``a:b:s`` slices, ``...``, ``None`` --
        plus one integer tensor (a gather along its axis), as ``slice``, ``gather``,
        ``squeeze`` and ``expand_dims`` ops."""
        x = self.single(e.value)
        if isinstance(x, Lit):
            raise DlTypeError("a number cannot be indexed", e.value.span)
        items = _IndexItems(self, e, x.type)
        with self.b.at(e.span):
            out = x
            if items.sliced():
                out = self.emit("slice", [out], items.bounds(), e.span)
            if items.tensor is not None:
                idx, axis = items.tensor
                out = self.emit("gather", [out, idx], {"axis": axis}, e.span)
            if items.dropped:
                out = self.emit("squeeze", [out], {"axis": tuple(items.dropped)}, e.span)
            if items.added:
                out = self.emit("expand_dims", [out], {"axis": tuple(items.added)}, e.span)
        return out

    def attribute(self, e: ast.Attribute) -> Value:
        """``layer.param``: a parameter a layer of this model created (``hidden.kernel``)."""
        path = _dotted(e)
        if path is None:
            raise DlTypeError("only a layer's name has attributes, e.g. hidden.kernel", e.span)
        full = ".".join(path)
        head = path[0]
        if self.params is None:
            raise NameResolutionError(f"'{full}': layer parameters exist only inside a model", e.span)
        value = self.params.param_named(full)
        if value is not None:
            return value
        if self.scope.lookup(head) is not None:
            raise NameResolutionError(
                f"'{head}' is a value, not a layer: '{full}' names nothing (a layer is named by its "
                f"name=\"...\" argument, or dense_1, dense_2, ... in order)", e.span)
        known = self.params.param_names()
        raise NameResolutionError(f"no parameter '{full}' (parameters so far: {', '.join(known) or 'none'})",
                                  e.span, notes=did_you_mean(full, known))

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
            return fold(e.op, lhs, rhs, e.span)
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
        if not fits(lit, dtype):
            if lit.kind == "float" and dtype.is_int:
                raise DlTypeError(f"float literal {lit.text()} used with an {dtype.dsl_name} tensor; "
                                  "cast the tensor with cast(x, f32) or write an integer", lit.span)
            raise DlTypeError(f"{lit.kind} literal {lit.text()} used with a {dtype.dsl_name} tensor",
                              lit.span)
        if dtype in INT_RANGE:
            low, high = INT_RANGE[dtype]
            if not low <= lit.value <= high:
                raise DlTypeError(f"integer literal {lit.text()} is out of range for {dtype.dsl_name}",
                                  lit.span)
        if dtype.is_float and not math.isfinite(float(lit.value)):
            raise DlTypeError(f"literal {lit.text()} is not a finite number", lit.span)
        if dtype.is_float and number_problem(lit.value, dtype) is not None:     # 70000.0 as f16
            raise DlTypeError(f"literal {lit.text()} used with a {dtype.dsl_name} tensor: "
                              f"{number_problem(lit.value, dtype)}", lit.span)
        with self.b.at(lit.span):
            return self.b.constant(lit.value, dtype)

    def materialize_all(self, operands: list[Value | Lit]) -> list[Value]:
        """Give each literal the dtype of a tensor operand it fits (else the first one's)."""
        tensors = [v for v in operands if isinstance(v, Value)]
        out = []
        for v in operands:
            if isinstance(v, Lit):
                fitting = [t for t in tensors if fits(v, t.type.dtype)]
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
        block = self.functions.block(c.func)
        if block is not None:
            return expand_block(self, block[0], c, block[1])
        if self.functions.is_function(c.func):
            return self.inline(c)
        layer = LAYERS.get(c.func)
        if layer is not None and layer.claims_call(c):
            if self.params is None and not layer.stateless:
                raise DlTypeError(f"{c.func}(...) creates parameters, so it can only be used inside a model",
                                  c.func_span)
            return layer.lower(c, self, self.params)
        if c.func in GRAD_TRANSFORMS:
            raise DlTypeError(f"{c.func}(...) defines a function: write 'fn name = {c.func}(f, wrt=[...])' "
                              "at the top level and call it", c.func_span)
        folded = self.int_fold(c)
        if folded is not None:
            return folded
        opdef = get_op(c.func)          # an op's name or an alias of it (swish)
        if opdef is not None:
            for kw in c.kwargs:         # softmax(x, mask=m) calls masked_softmax
                if kw.name in opdef.variants:
                    opdef = OPS[opdef.variants[kw.name]]
                    break
            result = self.op_call(opdef, c)
            if self.params is not None and opdef.name in LAYER_OPS and isinstance(result, Value):
                self.params.record_layer(self.params.auto_name(opdef.name), opdef.name, result, [])
            return result
        known = [*OPS, *self.functions.names(), *(n for n, d in LAYERS.items() if self.params or d.stateless)]
        raise NameResolutionError(f"unknown function '{c.func}'", c.func_span,
                                  notes=did_you_mean(c.func, known))

    def op_call(self, op: OpDef, c: ast.Call) -> Any:
        """A call of a built-in op: positional tensors, then attributes by position or keyword."""
        operand_names = list(op.operands)
        attr_names = list(op.attrs)
        tensors: dict[str, ast.Expr] = {}
        attrs: dict[str, ast.Expr] = {}
        extra: list[ast.Expr] = []
        positional = list(c.args)
        if op.variadic:
            k = len(operand_names) - 1
            positional = list(c.args[:k])
            if len(c.args) > k and isinstance(c.args[k], ast.ListExpr):
                # concat([a, b], 1): the variadic tensors as a list, then attributes by position
                extra = list(c.args[k].items)
                positional += [None] * (len(operand_names) - k) + list(c.args[k + 1:])
            else:
                extra = list(c.args[k:])
        for i, arg in enumerate(positional):
            if arg is None:
                continue
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
        defaults = {n: self.materialize(Lit(op.operand_defaults[n], c.span), None) for n in operand_names
                    if n not in tensors and n in op.operand_defaults}     # attention's mask: true
        missing = [n for n in operand_names if n not in tensors and n not in defaults] if not op.variadic else []
        if missing or (op.variadic and not extra):
            got = len(tensors) + len(extra)
            want = len(operand_names)
            raise DlTypeError(f"'{op.name}' takes {want} tensor argument{'s' if want != 1 else ''} "
                              f"({', '.join(operand_names)}), got {got}", c.span,
                              notes=[f"signature: {_signature(op)}"])
        values = [defaults[n] if n in defaults else self.single(tensors[n])
                  for n in operand_names if n in tensors or n in defaults]
        values += [self.single(e) for e in extra]
        operands = self.materialize_all(values)
        attr_values = {k: self.attr(op, k, e, spelled.get(k, k)) for k, e in attrs.items()}
        return self.emit(op.name, operands, attr_values, c.span)

    def int_fold(self, c: ast.Call) -> Lit | None:
        """``floor_div(a, b)`` / ``mod(a, b)`` of two compile-time integers, folded; else None."""
        if c.func not in _INT_FOLDS or len(c.args) != 2 or c.kwargs:
            return None
        values = []
        for arg in c.args:
            try:
                values.append(self.const(arg))
            except DlTypeError:
                return None
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return None
        return Lit(_fold_ints(c, values), c.span)

    def attr(self, op: OpDef, key: str, expr: ast.Expr, written: str) -> Any:
        """A compile-time attribute value, converted by the attribute's kind."""
        kind = op.attrs[key].kind
        value = self.const(expr)
        where = f"argument '{written}' of '{op.name}'"
        out = convert_attr(value, kind, where, expr.span, self.symbols)
        if kind == "dims" and self.dims:
            out = tuple(self.dims.get(d, d) if isinstance(d, str) else d for d in out)
        return out

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
        if isinstance(expr, ast.Call) and expr.func in _INT_FOLDS and len(expr.args) == 2 and not expr.kwargs:
            return _fold_ints(expr, [self.const(a) for a in expr.args])
        raise DlTypeError("this argument must be a compile-time constant", expr.span)

    # -- user functions --------------------------------------------------------

    def inline(self, c: ast.Call) -> Value | tuple[Value, ...]:
        """A call of a user function: check the arguments, then copy its body here."""
        callee = self.functions.function(c.func, c.func_span)
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
            args.append((v, expr.span))
        binding = unify_call(callee, args)
        return self.copy_body(callee, [v for v, _ in args], binding, c.span)

    def apply_unary(self, name: str, x: Value, span: Location, what: str) -> Value:
        """``name(x)``: a function of the file taking and returning one tensor, or an
        elementwise op (or softmax-like composite) of one operand whose attributes all
        have defaults.  ``what`` names the use in errors (``activation``)."""
        if self.functions.is_function(name):
            callee = self.functions.function(name, span)
            if len(callee.params) != 1 or len(callee.outputs) != 1:
                raise DlTypeError(f"function '{name}' takes {len(callee.params)} argument(s) and returns "
                                  f"{len(callee.outputs)} value(s); as an {what} it must take one tensor "
                                  "and return one", span)
            out = self.copy_body(callee, [x], unify_call(callee, [(x, span)]), span)
            assert isinstance(out, Value)
        else:
            opdef = get_op(name)        # an op's name or an alias of it (swish)
            if (opdef is None or opdef.kind not in (ELEMENTWISE, COMPOSITE) or len(opdef.operands) != 1
                    or opdef.variadic or any(spec.required for spec in opdef.attrs.values())):
                usable = sorted(n for n, d in OPS.items() if d.kind == ELEMENTWISE and len(d.operands) == 1
                                and not any(spec.required for spec in d.attrs.values()))
                raise NameResolutionError(f"unknown {what} '{name}': not a function of this file or an "
                                          "elementwise op of one tensor", span,
                                          notes=did_you_mean(name, [*usable, *self.functions.names()]))
            out = self.emit(opdef.name, [x], {}, span)
        if out.type != x.type:
            raise DlTypeError(f"{what} '{name}' turns {x.type.dsl_str()} into {out.type.dsl_str()}; "
                              "it must keep the shape and dtype", span)
        return out

    def copy_body(self, callee: Function, args: list[Value], binding: dict[str, Dim],
                  span: Location) -> Value | tuple[Value, ...]:
        def substitute(op: Op) -> dict[str, Any]:
            return substitute_dims(op, binding)

        try:
            env = inline_function(self.b, callee, args, attrs=substitute)
        except DlError as e:
            e.notes.append(f"while inlining the call to '{callee.name}' at {span}")
            raise
        outputs = tuple(env[v] for v in callee.outputs)
        return outputs[0] if len(outputs) == 1 else outputs


class _IndexItems:
    """The items of ``x[...]`` resolved against ``x``'s type: slice bounds per axis, the axes
    an int drops, the output positions ``None`` adds, and at most one integer tensor."""

    def __init__(self, body: Body, e: ast.Index, t: TensorType):
        self.rank = t.rank
        self.start: list[Dim | None] = [None] * t.rank
        self.stop: list[Dim | None] = [None] * t.rank
        self.step: list[int | None] = [None] * t.rank
        self.dropped: list[int] = []          # axes of the sliced value an int removes
        self.added: list[int] = []            # output positions of the new axes
        self.tensor: tuple[Value, int] | None = None
        items = list(e.items)
        ellipses = [i for i, item in enumerate(items) if isinstance(item, ast.Ellipsis_)]
        if len(ellipses) > 1:
            raise DlTypeError("an index can hold only one '...'", items[ellipses[1]].span)
        consuming = [i for i in items if not (isinstance(i, ast.Ellipsis_) or _is_none(body, i))]
        if len(consuming) > t.rank:
            raise DlTypeError(f"too many indices for {t.dsl_str()}: {len(consuming)} for rank {t.rank}",
                              e.span)
        fill = [ast.Slice(None, None, None, e.span)] * (t.rank - len(consuming))
        if ellipses:
            items[ellipses[0]:ellipses[0] + 1] = fill
        else:
            items += fill
        axis = position = 0                   # the input axis and the output position
        for item in items:
            if _is_none(body, item):
                self.added.append(position)
                position += 1
                continue
            dim = t.shape[axis]
            if isinstance(item, ast.Slice):
                self.start[axis], self.stop[axis] = (_slice_bound(body, b, "a slice bound")
                                                     for b in (item.lo, item.hi))
                self.step[axis] = _bound(body, item.step, "a slice step")
                if self.step[axis] == 0:
                    raise DlTypeError("slice step cannot be zero", item.step.span)   # type: ignore[union-attr]
                position += 1
            else:
                value = body.single(item)
                if isinstance(value, Lit):
                    i = _bound(body, item, "an index")
                    assert i is not None
                    if isinstance(dim, int) and not -dim <= i < dim:
                        raise DlTypeError(f"index {i} is out of range for axis {axis} of {t.dsl_str()} "
                                          f"(size {dim})", item.span)
                    if not isinstance(dim, int):
                        raise DlTypeError(f"an integer index into dim {dim} (axis {axis} of {t.dsl_str()}) "
                                          "is not supported: whether it is in range depends on the call; "
                                          f"slice it instead (x[{i}:{i + 1}] keeps the axis)", item.span)
                    self.start[axis], self.stop[axis] = i, (i + 1 if i != -1 else None)
                    self.dropped.append(axis)
                else:
                    if not value.type.dtype.is_int:
                        raise DlTypeError(f"an index tensor must hold integers, got {value.type.dsl_str()}",
                                          item.span)
                    if self.tensor is not None:
                        raise DlTypeError("only one integer-tensor index is supported; index one axis "
                                          "at a time", item.span)
                    self.tensor = (value, axis)
                    position += value.type.rank
            axis += 1
        if self.tensor is not None and (self.dropped or self.added):
            raise DlTypeError("an integer-tensor index cannot be mixed with integer or None indices "
                              "(numpy's rules for that mix are subtle); index in two steps", e.span)

    def sliced(self) -> bool:
        return any(v is not None for v in (*self.start, *self.stop, *self.step))

    def bounds(self) -> dict[str, Any]:
        return {"start": tuple(self.start), "stop": tuple(self.stop), "step": tuple(self.step)}


def _is_none(body: Body, item: Any) -> bool:
    """``None`` in an index (numpy's newaxis), unless a value is bound to that name."""
    return isinstance(item, ast.Name) and item.id == "None" and body.scope.lookup("None") is None


def _bound(body: Body, expr: ast.Expr | None, what: str) -> int | None:
    """A compile-time integer of an index or slice (None when not written)."""
    if expr is None:
        return None
    value = body.const(expr)
    if isinstance(value, bool) or not isinstance(value, int):
        raise DlTypeError(f"{what} must be a compile-time integer", expr.span)
    return value


def _slice_bound(body: Body, expr: ast.Expr | None, what: str) -> Dim | None:
    """A slice bound: a compile-time integer, or an expression of the signature's dims
    (``N-1``, ``N//2``, ``2*N``) that the call's sizes decide (None when not written)."""
    if expr is None or not _mentions_dim(body, expr):
        return _bound(body, expr, what)
    return _dim_expr(body, expr)


def _is_dim_name(body: Body, e: ast.Expr) -> bool:
    return isinstance(e, ast.Name) and e.id in body.symbols and body.scope.lookup(e.id) is None


def _mentions_dim(body: Body, e: ast.Expr) -> bool:
    if isinstance(e, ast.Unary):
        return _mentions_dim(body, e.operand)
    if isinstance(e, ast.Binary):
        return _mentions_dim(body, e.lhs) or _mentions_dim(body, e.rhs)
    return _is_dim_name(body, e)


def _dim_expr(body: Body, e: ast.Expr) -> Dim:
    """``e`` as a dim expression (``compiler/ir/dims.py``): dims, integers, ``+ - * //``."""
    if _is_dim_name(body, e):
        return e.id                                  # type: ignore[union-attr]
    if isinstance(e, ast.Unary) and e.op == "neg":
        return dims.scale(_dim_expr(body, e.operand), -1)
    if isinstance(e, ast.Binary) and e.op in ("add", "sub", "mul", "floor_div"):
        lhs, rhs = _dim_expr(body, e.lhs), _dim_expr(body, e.rhs)
        if e.op == "add":
            return dims.add(lhs, rhs)
        if e.op == "sub":
            return dims.sub(lhs, rhs)
        if e.op == "mul":
            if not (isinstance(lhs, int) or isinstance(rhs, int)):
                raise DlTypeError("a slice bound can multiply a dim by an integer, not by another dim",
                                  e.span)
            return dims.scale(rhs, lhs) if isinstance(lhs, int) else dims.scale(lhs, rhs)  # type: ignore[arg-type]
        if not isinstance(rhs, int) or rhs < 1:
            raise DlTypeError("a dim can only be divided (//) by a positive integer", e.rhs.span)
        return dims.floordiv(lhs, rhs)
    if _mentions_dim(body, e):
        raise DlTypeError("a slice bound over dims is built from dims, integers, +, -, * and //",
                          e.span)
    return _bound(body, e, "a term of a slice bound")   # type: ignore[return-value]


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


# floor_div(a, b) and mod(a, b) of two compile-time integers fold (in shapes: the size of a
# head is floor_div(dim, heads)); the ops themselves are for tensors.
_INT_FOLDS = {"floor_div": lambda a, b: a // b, "mod": lambda a, b: a % b}


def _fold_ints(c: ast.Call, values: list[Any]) -> int:
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        raise DlTypeError(f"{c.func}(...) is a compile-time constant only of two integers", c.span)
    if values[1] == 0:
        raise DlTypeError("division by zero in a constant expression", c.span)
    return _INT_FOLDS[c.func](*values)


def _dotted(e: ast.Attribute) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None if the chain does not start at a name."""
    parts = [e.name]
    node: ast.Expr = e.value
    while isinstance(node, ast.Attribute):
        parts.append(node.name)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def unify_call(callee: Function, args: list[tuple[Value, Location]]) -> dict[str, Dim]:
    """Check arguments against the callee's parameter types; bind its symbolic dims."""
    return unify_types(callee.name, [(p.name or "?", p.type) for p in callee.params], args)


def substitute_dims(op: Op, binding: dict[str, Dim]) -> dict[str, Any]:
    """``op``'s attributes with symbols in ``dims`` and ``bounds`` attributes replaced per ``binding``."""
    opdef = OPS[op.name]
    out = dict(op.attrs)
    for key, spec in opdef.attrs.items():
        if spec.kind in ("dims", "bounds") and out.get(key) is not None:
            out[key] = tuple(None if d is None else dims.substitute(d, binding) for d in out[key])
    return out
