"""What a layer is: one definition holding its arguments, parameters and forward.

A layer (``dense``, ``dropout``, ``batch_norm``, ``layer_norm``, ...) is
sugar inside a ``model`` block that creates parameters (and non-trainable
state) and computes with them.  Like an op of :mod:`compiler.ops`, a layer is defined once, in one
file, and found by name through :data:`LAYERS`::

    dense = define_layer("dense", args=("x", "units", "activation", ...),
                         required=("x", "units"), usage="dense(x, 512, activation=relu)",
                         doc="...")

    @dense.def_build
    def _(call: LayerCall) -> Value:
        x = call.tensor("x")
        kernel = call.param("kernel", TensorType(...), call.initializer("kernel_init", GLOROT))
        return call.emit("matmul", x, kernel)

The build function sees a :class:`LayerCall`: the call's arguments, bound
by position or keyword and checked against ``args``, converters that report
mistakes at the argument's source span, and the model to create parameters
in (named ``<layer name>.<param>``, e.g. ``dense_1.kernel``).  A layer that
behaves differently in training and at inference (dropout, batch norm)
builds both forms and returns ``call.by_mode(training=..., inference=...)``;
its non-trainable state comes from ``call.state(...)`` and its new value
after a training step goes to ``call.update_state(...)``; its random numbers
come from ``call.random_key()`` (see ``docs/language.md``, "Randomness,
modes and state").  The lowering
supplies the two sides through the :class:`Expressions` and
:class:`ParamHost` protocols, so this package imports nothing above it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from compiler.diagnostics import DlTypeError, Location
from compiler.ir.core import Value
from compiler.ir.types import DType, TensorType

from .. import ast
from ..constants import bind_args, convert_attr, initializer_spec, named_call
from ..scope import Lit, Word

# activation=NAME: Keras's names that are not op names (None: identity).  Any other name is a
# function of the file or an elementwise op of one tensor (relu, tanh, softmax, ...).
ACTIVATION_ALIASES: dict[str, str | None] = {"linear": None, "none": None}


class Expressions(Protocol):
    """The expression lowering, as a layer sees it."""

    def single(self, e: ast.Expr) -> Value | Lit: ...

    def const(self, expr: ast.Expr) -> Any: ...

    def emit(self, name: str, operands: list[Value], attrs: dict[str, Any], span: Location,
             display: str | None = None) -> Any: ...

    def apply_unary(self, name: str, x: Value, span: Location, what: str) -> Value: ...


class ParamHost(Protocol):
    """The model a layer adds its parameters and state to, and the modes it computes in."""

    def new_param(self, name: ast.Name, t: TensorType, init: dict[str, Any]) -> Value: ...

    def new_state(self, name: ast.Name, t: TensorType, init: dict[str, Any]) -> Value: ...

    def update_state(self, state: Value, new: Value, span: Location) -> None: ...

    def add_penalty(self, penalty: Value, span: Location) -> None: ...

    def random_key(self, layer_name: str, span: Location) -> Value: ...

    def by_mode(self, training: Value, inference: Value, span: Location) -> Value: ...

    def auto_name(self, layer: str) -> str: ...

    def qualify(self, name: str) -> str: ...

    def param_named(self, name: str) -> Value | None: ...

    def param_names(self) -> list[str]: ...

    def record_layer(self, name: str, kind: str, output: Value, tensors: list[str]) -> None: ...


@dataclass(eq=False)
class LayerDef:
    """Everything about one layer.  See the module docstring.

    ``aliases`` maps other keyword spellings (Keras's ``kernel_initializer``)
    to an argument name.
    """

    name: str
    args: tuple[str, ...]
    required: tuple[str, ...]
    usage: str
    doc: str
    aliases: dict[str, str]
    stateless: bool = False        # creates no parameters: usable outside a model too
    build: Callable[[LayerCall], Value] | None = None
    # A layer named like an op (conv2d): which calls are the layer's (the rest are the op's)
    claims: Callable[[ast.Call], bool] | None = None

    def claims_call(self, c: ast.Call) -> bool:
        return self.claims is None or self.claims(c)

    def def_build(self, fn: Callable[[LayerCall], Value]) -> Callable[[LayerCall], Value]:
        self.build = fn
        return fn

    def lower(self, c: ast.Call, exprs: Expressions, host: ParamHost | None) -> Value:
        """Lower one call of this layer inside a model."""
        assert self.build is not None, f"layer {self.name} has no build rule"
        call = LayerCall(self, c, exprs, host)
        output = self.build(call)
        if host is not None:           # summary()'s row: the call's name, kind, output and tensors
            host.record_layer(call.name, self.name, output, call.created)
        return output


LAYERS: dict[str, LayerDef] = {}

# Ops that Keras models as layers (``Flatten``): a model's ``summary()`` lists their calls in a
# model as layers too (``flatten_1``), without parameters.
LAYER_OPS: frozenset[str] = frozenset({"flatten"})

# kernel_regularizer=NAME(...): the factors each takes (l1 of sum(|w|), l2 of sum(w²)), and
# their default (Keras's L1(0.01), L2(0.01), L1L2(l1=0, l2=0))
REGULARIZERS: dict[str, tuple[tuple[str, ...], float]] = {
    "l1": (("l1",), 0.01), "l2": (("l2",), 0.01), "l1_l2": (("l1", "l2"), 0.0),
}


def define_layer(name: str, *, args: tuple[str, ...], required: tuple[str, ...], usage: str,
                 doc: str, aliases: dict[str, str] | None = None, stateless: bool = False,
                 claims: Callable[[ast.Call], bool] | None = None) -> LayerDef:
    """Create a layer definition and enter it in :data:`LAYERS`."""
    assert name not in LAYERS, f"layer {name} defined twice"
    assert set(required) <= set(args), required
    assert set((aliases or {}).values()) <= set(args), aliases
    layer = LayerDef(name, args, required, usage, doc, dict(aliases or {}), stateless, claims=claims)
    LAYERS[name] = layer
    return layer


class LayerCall:
    """One call of a layer: its bound arguments, and where its parameters go."""

    def __init__(self, layer: LayerDef, c: ast.Call, exprs: Expressions, host: ParamHost | None):
        self.layer = layer
        self.span = c.span
        self.exprs = exprs
        self.host = host
        self.given = bind_args(layer.name, layer.args, c, layer.aliases)
        missing = [key for key in layer.required if key not in self.given]
        if missing:
            raise DlTypeError(f"'{layer.name}' takes {', '.join(layer.required)}, "
                              f"e.g. {layer.usage}", c.span, notes=[f"missing: {', '.join(missing)}"])
        default_name = host.auto_name(layer.name) if host else layer.name   # counted even when named
        local_name = self.str("name", None) or default_name
        self.name = host.qualify(local_name) if host else local_name   # inside a block: block_1.dense_1
        self.created: list[str] = []     # the parameters and state this call made, in order

    # -- arguments -------------------------------------------------------------

    def has(self, key: str) -> bool:
        return key in self.given

    def span_of(self, key: str) -> Location:
        return self.given[key].span if key in self.given else self.span

    def tensor(self, key: str) -> Value:
        """A tensor argument."""
        v = self.exprs.single(self.given[key])
        if isinstance(v, Lit):
            raise DlTypeError(f"{self.layer.name} needs a tensor for '{key}'", self.span_of(key))
        return v

    def _const(self, key: str, kind: str, default: Any) -> Any:
        if key not in self.given:
            return default
        return convert_attr(self.exprs.const(self.given[key]), kind,
                            f"argument '{key}' of '{self.layer.name}'", self.span_of(key), set())

    def int(self, key: str, default: int | None = None) -> Any:
        return self._const(key, "int", default)

    def float(self, key: str, default: float | None = None) -> Any:
        return self._const(key, "float", default)

    def bool(self, key: str, default: bool | None = None) -> Any:
        return self._const(key, "bool", default)

    def str(self, key: str, default: str | None = None) -> Any:
        return self._const(key, "str", default)

    def initializer(self, key: str, default: dict[str, Any]) -> dict[str, Any]:
        """An initializer argument (``kernel_init=normal(std=0.1)``), or ``default``."""
        return initializer_spec(self.given.get(key), default, self.exprs.const)

    def activate(self, key: str, x: Value) -> Value:
        """``x`` through the activation argument ``key``: a function of the file, an
        elementwise op of one tensor by name, or ``linear``/``none`` (and no argument):
        identity."""
        if key not in self.given:
            return x
        expr = self.given[key]
        value = self.exprs.const(expr)
        name = value.name if isinstance(value, Word) else value
        if not isinstance(name, str):
            raise DlTypeError(f"argument '{key}' of '{self.layer.name}' must name an activation "
                              "(relu, tanh, a function of this file, ...)", expr.span)
        name = ACTIVATION_ALIASES.get(name, name)
        if name is None:
            return x
        return self.exprs.apply_unary(name, x, expr.span, "activation")

    # -- building --------------------------------------------------------------

    def ints(self, key: str, count: int, default: tuple[int, ...] | None = None) -> tuple[int, ...] | None:
        """An int or a list of ``count`` ints (``pool_size=2`` is ``(2, 2)``), or ``default``."""
        if key not in self.given:
            return default
        value = self._const(key, "ints", default)
        if len(value) == 1:
            value = value * count
        if len(value) != count:
            raise DlTypeError(f"argument '{key}' of '{self.layer.name}' takes an int or {count} ints, "
                              f"got {list(value)}", self.span_of(key))
        return tuple(value)

    def regularize(self, key: str, param: Value) -> None:
        """The regularizer argument ``key`` (``kernel_regularizer=l2(0.01)``) of ``param``:
        its penalty joins the model's loss, as Keras adds ``model.losses`` to it.

        ``l1(f)``: ``f·sum(|w|)``; ``l2(f)``: ``f·sum(w²)`` (both ``f`` = 0.01 by
        default, Keras's); ``l1_l2(l1=a, l2=b)``: both (0 by default)."""
        if key not in self.given:
            return
        expr = self.given[key]
        name, args, kwargs, span = named_call(expr, "a regularizer: l1(0.01), l2(0.01) or l1_l2(l1=..., l2=...)")
        if name not in REGULARIZERS:
            raise DlTypeError(f"unknown regularizer '{name}' (regularizers: {', '.join(REGULARIZERS)})", span)
        names, default = REGULARIZERS[name]
        if len(args) > len(names):
            raise DlTypeError(f"too many arguments to regularizer '{name}' (it takes {', '.join(names)})",
                              args[len(names)].span)
        factors = dict.fromkeys(names, default)
        for key_name, value_expr in [*zip(names, args), *((kw.name, kw.value) for kw in kwargs)]:
            if key_name not in names:
                raise DlTypeError(f"unknown argument '{key_name}' for regularizer '{name}' "
                                  f"(it takes {', '.join(names)})", value_expr.span)
            value = self.exprs.const(value_expr)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise DlTypeError(f"regularizer '{name}': {key_name} must be a number >= 0, got {value!r}",
                                  value_expr.span)
            factors[key_name] = float(value)
        terms = []
        for which, factor in factors.items():
            if factor:
                magnitude = self.emit("abs" if which == "l1" else "square", param)
                terms.append(self.emit("mul", self.constant(factor, param.type.dtype), self.emit("sum", magnitude)))
        if terms:
            total = terms[0] if len(terms) == 1 else self.emit("add", *terms)
            assert self.host is not None, f"layer {self.layer.name} is stateless"
            self.host.add_penalty(total, self.span_of(key))

    def param(self, suffix: str, t: TensorType, init: dict[str, Any]) -> Value:
        """A new model parameter ``<layer name>.<suffix>``."""
        assert self.host is not None, f"layer {self.layer.name} is stateless"
        self.created.append(f"{self.name}.{suffix}")
        return self.host.new_param(ast.Name(f"{self.name}.{suffix}", self.span), t, init)

    def state(self, suffix: str, t: TensorType, init: dict[str, Any]) -> Value:
        """A new non-trainable model state value ``<layer name>.<suffix>`` (batch norm's moving
        mean): read by both modes, updated by the training step (:meth:`update_state`), saved
        in checkpoints, never differentiated or seen by the optimizer."""
        self.created.append(f"{self.name}.{suffix}")
        return self.host.new_state(ast.Name(f"{self.name}.{suffix}", self.span), t, init)

    def update_state(self, state: Value, new: Value) -> None:
        """The value ``state`` takes after a training step (the training form computes it)."""
        self.host.update_state(state, new, self.span)

    def random_key(self) -> Value:
        """This layer's random key in the training form (``i64[]``): the step's key with a
        constant of the layer's name folded in, so layers draw independent numbers."""
        return self.host.random_key(self.name, self.span)

    def by_mode(self, *, training: Value, inference: Value) -> Value:
        """The layer's result: ``training`` in the training form of the model's functions
        (the loss and the training step), ``inference`` in the inference form (predict,
        evaluate).  Both have the same type."""
        return self.host.by_mode(training, inference, self.span)

    def float_in(self, key: str, default: float, low: float, high: float, *,
                 high_open: bool = False) -> float:
        """A float argument in ``[low, high]`` (``[low, high)`` with ``high_open``)."""
        value = self.float(key, default)
        if not (low <= value < high if high_open else low <= value <= high):
            bound = f"[{low:g}, {high:g}{')' if high_open else ']'}"
            raise DlTypeError(f"argument '{key}' of '{self.layer.name}' must be in {bound}, got {value:g}",
                              self.span_of(key))
        return value

    def emit(self, op: str, *operands: Value, **attrs: Any) -> Value:
        """Op ``op`` at the layer call's source location."""
        return self.exprs.emit(op, list(operands), attrs, self.span)

    def constant(self, value: float, dtype: DType) -> Value:
        """A rank-0 constant at the layer call's source location."""
        return self.emit("constant", value=value, dtype=dtype, shape=())
