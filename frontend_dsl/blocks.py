"""Blocks: functions that call layers, expanded at each call inside a model.

A function whose body calls a layer that creates parameters (``dense``,
``layer_norm``, ...), calls another block, or takes a compile-time parameter
(``heads: int``) is a **block**.  A block is not lowered once, as other
functions are; each call of it inside a model lowers its body again, at the
call, so each call creates its own parameters, under its own name::

    fn mlp(x: f32[N, D], hidden: int, width: int) -> f32[N, D] {
        return dense(dense(x, hidden, activation=gelu), width, name="out")
    }
    model m { ... let h = mlp(x, hidden=512, width=128) ... }

creates ``mlp_1.dense_1.kernel`` and ``mlp_1.out.kernel``; a second call
creates ``mlp_2.*``.  A call is named ``<function>_<k>`` (counted per
function, as layers are counted per kind) unless it gives ``name="..."``;
a layer inside is named as in a model, then prefixed with the call's name;
nested blocks nest the names (``block_1.attn.q.kernel``).  The body sees
only its parameters (not the model's names); ``q.kernel`` in the body is its
own layer's parameter, and the model reaches it as ``block_1.q.kernel``.

:class:`ScopedHost` is the naming; :func:`block_reason` says whether a
function is a block; :func:`expand_block` lowers one call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from compiler.diagnostics import DlError, DlErrors, DlTypeError, Location, NameResolutionError
from compiler.ir.core import Value
from compiler.ir.types import Dim, TensorType

from . import ast
from .constants import bind_args, convert_attr, resolve_type
from .layers import LAYERS
from .layers.base import ParamHost
from .scope import Binding, Lit, Poisoned, Scope, collect_errors, raise_all


class Body(Protocol):
    """The expression lowering (:class:`frontend_dsl.exprs.Body`), as a block's call sees it."""

    params: ParamHost | None
    scope: Scope
    expanding: list[str]

    def const(self, expr: ast.Expr) -> Any: ...

    def single(self, e: ast.Expr) -> Value | Lit: ...

    def materialize(self, lit: Lit, dtype: Any) -> Value: ...

    def nested(self, scope: Scope, symbols: set[str], host: ParamHost, dims: dict[str, Dim],
               block: str) -> Body:
        """A lowering into the same function for a block's body: its own names and host."""
        ...

    def let(self, stmt: ast.Let) -> None: ...

    def returns(self, stmt: ast.Return, declared: list[TensorType] | None,
                fn_name: str) -> tuple[list[Value], list[str | None]]: ...


class ScopedHost:
    """The model as a block's call sees it: names prefixed with the call's name, layers
    counted afresh (``block_1.dense_1``)."""

    def __init__(self, parent: ParamHost, prefix: str):
        self.parent = parent
        self.prefix = prefix                    # fully qualified: "block_1", "block_1.attn"
        self.counts: dict[str, int] = {}

    def qualify(self, name: str) -> str:
        return f"{self.prefix}.{name}"

    def auto_name(self, layer: str) -> str:
        self.counts[layer] = self.counts.get(layer, 0) + 1
        return f"{layer}_{self.counts[layer]}"

    def param_named(self, name: str) -> Value | None:
        return self._root().param_named(self.qualify(name))

    def param_names(self) -> list[str]:
        mine = f"{self.prefix}."
        return [n.removeprefix(mine) for n in self._root().param_names() if n.startswith(mine)]

    def _root(self) -> ParamHost:
        host: ParamHost = self.parent
        while isinstance(host, ScopedHost):
            host = host.parent
        return host

    def new_param(self, name: ast.Name, t: TensorType, init: dict[str, Any]) -> Value:
        return self.parent.new_param(name, t, init)

    def new_state(self, name: ast.Name, t: TensorType, init: dict[str, Any]) -> Value:
        return self.parent.new_state(name, t, init)

    def update_state(self, state: Value, new: Value, span: Location) -> None:
        self.parent.update_state(state, new, span)

    def random_key(self, layer_name: str, span: Location) -> Value:
        return self.parent.random_key(layer_name, span)

    def by_mode(self, training: Value, inference: Value, span: Location) -> Value:
        return self.parent.by_mode(training, inference, span)

    def record_layer(self, name: str, kind: str, output: Value, tensors: list[str]) -> None:
        self.parent.record_layer(name, kind, output, tensors)      # ``name`` is already qualified


def block_reason(fn: ast.FnDef, is_block: Callable[[str], bool], is_function: Callable[[str], bool]) -> str | None:
    """Why ``fn`` is a block (a compile-time parameter, a layer or block it calls), or None."""
    for node in ast.walk(fn.body):
        if not isinstance(node, ast.Call):
            continue
        if is_function(node.func):
            if is_block(node.func):
                return f"it calls '{node.func}' at {node.func_span}, which creates parameters"
        else:
            layer = LAYERS.get(node.func)
            if layer is not None and not layer.stateless and layer.claims_call(node):
                return f"it calls the layer '{node.func}' at {node.func_span}"
    for p in fn.params:
        if p.kind is not None:
            return f"it takes the compile-time parameter '{p.name.id}'"
    return None


def expand_block(body: Body, fn: ast.FnDef, c: ast.Call, reason: str) -> Value | tuple[Value, ...]:
    """Lower the call ``c`` of the block ``fn`` into ``body``'s function, with its own
    parameter namespace."""
    name = fn.name.id
    if body.params is None:
        raise DlTypeError(f"'{name}' is a block ({reason}), so it can only be called inside a "
                          "model", c.func_span)
    if name in body.expanding:
        chain = " -> ".join([*body.expanding[body.expanding.index(name):], name])
        raise NameResolutionError(f"recursive call to '{name}' ({chain}); recursion is not supported",
                                  c.func_span)
    call_name, c = _call_name(fn, c, body)
    given = bind_args(name, tuple(p.name.id for p in fn.params), c)
    missing = [p.name.id for p in fn.params if p.name.id not in given]
    if missing:
        raise DlTypeError(f"'{name}' takes {', '.join(p.name.id for p in fn.params)}", c.span,
                          notes=[f"missing: {', '.join(missing)}"])
    scope = Scope()
    tensor_args: list[tuple[str, TensorType, Value, Location]] = []
    for p in fn.params:
        expr = given[p.name.id]
        if p.kind is not None:
            value = convert_attr(body.const(expr), p.kind, f"argument '{p.name.id}' of '{name}'",
                                 expr.span, set())
            scope.names[p.name.id] = Binding(Lit(value, expr.span), p.name.span)
            continue
        assert p.type is not None
        want = resolve_type(p.type, None)
        v = body.single(expr)
        if isinstance(v, Lit):
            v = body.materialize(v, want.dtype)
        tensor_args.append((p.name.id, want, v, expr.span))
        scope.names[p.name.id] = Binding(v, p.name.span)
    binding = unify_types(name, [(n, t) for n, t, _, _ in tensor_args], [(v, s) for _, _, v, s in tensor_args])
    symbols = {s for _, t, _, _ in tensor_args for s in t.symbols}
    host = ScopedHost(body.params, body.params.qualify(call_name))
    inner = body.nested(scope, symbols, host, binding, name)
    try:
        return _lower_body(inner, fn, symbols, binding)
    except DlError as e:
        for each in (e.errors if isinstance(e, DlErrors) else [e]):
            each.notes.append(f"in the call of '{name}' (named '{host.prefix}') at {c.span}")
        raise


def _call_name(fn: ast.FnDef, c: ast.Call, body: Body) -> tuple[str, ast.Call]:
    """The call's name (``name="..."`` unless the block has a parameter of that name, else
    ``<function>_<k>``) and the call without that keyword."""
    assert body.params is not None
    default = body.params.auto_name(fn.name.id)     # counted even when named, as layers are
    if any(p.name.id == "name" for p in fn.params):
        return default, c
    for kw in c.kwargs:
        if kw.name == "name":
            value = convert_attr(body.const(kw.value), "str", f"argument 'name' of '{fn.name.id}'",
                                 kw.value.span, set())
            rest = tuple(k for k in c.kwargs if k is not kw)
            return value, ast.Call(c.func, c.args, rest, c.span, c.func_span)
    return default, c


def _lower_body(inner: Body, fn: ast.FnDef, symbols: set[str],
                binding: dict[str, Dim]) -> Value | tuple[Value, ...]:
    """The block's statements, in ``inner``; its declared return types are checked with the
    call's dims put in for its symbols."""
    errors: list[DlError] = []
    declared: list[TensorType] | None = None
    if fn.returns is not None:
        declared = [_substitute(resolve_type(t, symbols, what="return type"), binding) for t in fn.returns]
    returned: tuple[Value, ...] | None = None
    failed = False
    for stmt in fn.body:
        if returned is not None:
            errors.append(NameResolutionError("unreachable statement after 'return'", stmt.span))
            break
        try:
            if isinstance(stmt, ast.Let):
                inner.let(stmt)
            else:
                values, _ = inner.returns(stmt, declared, fn.name.id)
                returned = tuple(values)
        except Poisoned:
            failed = True
            if isinstance(stmt, ast.Let):
                inner.scope.poison(stmt.names)
        except DlError as e:
            collect_errors(errors, e)
            if isinstance(stmt, ast.Let):
                inner.scope.poison(stmt.names)
    if returned is None and not errors and not failed:
        errors.append(NameResolutionError(f"function '{fn.name.id}' has no 'return'", fn.name.span))
    raise_all(errors)
    if failed or returned is None:
        raise Poisoned()
    return returned[0] if len(returned) == 1 else returned


def _substitute(t: TensorType, binding: dict[str, Dim]) -> TensorType:
    return TensorType(t.dtype, tuple(binding.get(d, d) if isinstance(d, str) else d for d in t.shape))


def unify_types(fname: str, params: list[tuple[str, TensorType]],
                args: list[tuple[Value, Location]]) -> dict[str, Dim]:
    """Check arguments against parameter types; bind the symbolic dims of the parameters."""
    binding: dict[str, Dim] = {}
    for (pname, want), (v, span) in zip(params, args):
        got = v.type
        message = (f"argument '{pname}' of '{fname}' expects {want.dsl_str()}, "
                   f"got {got.dsl_str()}")
        if want.dtype != got.dtype or want.rank != got.rank:
            raise DlTypeError(message, span)
        for wd, gd in zip(want.shape, got.shape):
            if isinstance(wd, int):
                if wd != gd:
                    raise DlTypeError(message, span)
            elif wd in binding and binding[wd] != gd:
                raise DlTypeError(f"{message}: dim {wd} is {binding[wd]} from an earlier argument "
                                  f"but {gd} here", span)
            else:
                binding[wd] = gd
    return binding
