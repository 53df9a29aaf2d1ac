"""Lower a ``model`` block: parameters, layers, loss, optimizer, metrics.

The statements are lowered into one *full* function of ``params...,
inputs..., targets...`` returning every output, the loss and the metrics;
``predict``, ``loss`` and ``evaluate`` are then sliced from it, each keeping
only the ops its results need, and ``module.attrs["model"]`` describes the
model (see ``docs/language.md`` for the contract).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from compiler.diagnostics import DlError, DlTypeError, Location, NameResolutionError
from compiler.ir.builder import new_function
from compiler.ir.core import Function, Op, Value
from compiler.ir.types import TensorType
from compiler.metrics import METRICS
from compiler.optimizers import OPTIMIZERS

from . import ast
from .body import (Body, Lit, Poisoned, Scope, Word, collect_errors, convert_attr, did_you_mean,
                   nesting_limit, raise_all, resolve_type)

if TYPE_CHECKING:
    from .lower import _Lowerer

MODEL_FUNCTIONS = ("predict", "loss", "evaluate")

# dense(..., activation=NAME): the op applied after the affine map (None: identity).
ACTIVATIONS: dict[str, str | None] = {
    "relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "softmax": "softmax",
    "linear": None, "none": None,
}
DENSE_ARGS = ("x", "units", "activation", "name", "kernel_init", "bias_init", "use_bias")


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


class ModelLowering:
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
        self.attempted: set[type] = set()   # kinds of statement seen, even if they failed
        self.full, b = new_function(f"{m.name.id}.full", [], loc=m.name.span)
        self.body = Body(lowerer, b, Scope(), set(), model=self)

    def run(self) -> None:
        """Lower every statement (collecting errors), then add the three functions."""
        errors: list[DlError] = []
        failed = False
        for stmt in self.m.body:
            try:
                with nesting_limit(stmt.span):
                    self.statement(stmt)
            except Poisoned:
                failed = True
                self.body.scope.poison(_defined_names(stmt))
            except DlError as e:
                collect_errors(errors, e)
                self.body.scope.poison(_defined_names(stmt))
        self.check_complete(errors)
        raise_all(errors)
        if failed:
            raise Poisoned()
        metric_values = self.build_metrics()
        self.emit_functions(metric_values)

    # -- statements --------------------------------------------------------

    def statement(self, stmt: ast.ModelStmt) -> None:
        """Lower one model statement, recording what it declares."""
        s = self.state
        self.attempted.add(type(stmt))
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
            value = Value(t, None, 0, stmt.name.id)
            self.body.scope.define(stmt.name, value)
            self.add_param(stmt.name, value, init)
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
        """A new parameter (of a layer) that no name in the model's scope refers to."""
        value = Value(t, None, 0, name.id)
        self.add_param(name, value, init)
        return value

    def add_param(self, name: ast.Name, value: Value, init: dict[str, Any]) -> None:
        """Enter a parameter in declaration order; parameter names are unique."""
        for p in self.state.params:
            if p.name == name.id:
                raise NameResolutionError(f"parameter '{name.id}' is already defined", name.span,
                                          notes=[f"previous definition at {p.span}"])
        self.state.params.append(_Declared(name.id, value, name.span, init))

    def check_complete(self, errors: list[DlError]) -> None:
        """Missing statements (a statement that is there but failed was reported already)."""
        s, where, name = self.state, self.m.name.span, self.m.name.id
        if ast.OutputDecl not in self.attempted:
            errors.append(NameResolutionError(f"model '{name}' has no output "
                                              "(declare one with 'output name = ...')", where))
        if ast.LossDecl not in self.attempted:
            errors.append(NameResolutionError(f"model '{name}' has no loss "
                                              "(declare one with 'loss mse(pred, y)')", where))
        if ast.OptimizerDecl not in self.attempted:
            errors.append(NameResolutionError(f"model '{name}' has no optimizer "
                                              "(declare one with 'optimizer sgd(lr=0.01)')", where))
        if s.metrics is not None and s.metrics.names and ast.TargetDecl not in self.attempted:
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
            spec[key] = convert_attr(self.body.const(value_expr), "float",
                                     f"argument '{key}' of '{name}'", value_expr.span, set())
        return spec

    def optimizer(self, expr: ast.Expr) -> dict[str, Any]:
        name, args, kwargs, name_span = _named_call(expr, "an optimizer such as sgd(lr=0.01)")
        if name not in OPTIMIZERS:
            raise NameResolutionError(f"unknown optimizer '{name}' "
                                      f"(optimizers: {', '.join(sorted(OPTIMIZERS))})", name_span,
                                      notes=did_you_mean(name, OPTIMIZERS))
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
                                  notes=did_you_mean(kw.name, known))
            kind = "bool" if isinstance(opt.hyperparams[key], bool) else "float"
            given[kw.name] = convert_attr(self.body.const(kw.value), kind,
                                          f"hyperparameter '{kw.name}' of '{name}'", kw.value.span, set())
            problem = opt.check(kw.name, given[kw.name])
            if problem is not None:
                raise DlTypeError(f"optimizer '{name}': {problem}", kw.value.span)
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
                                          n.span, notes=did_you_mean(n.id, METRICS))
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
        raise_all(errors)
        return values

    # -- layers --------------------------------------------------------------------

    def dense(self, body: Body, c: ast.Call) -> Value:
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

    def activation(self, body: Body, expr: ast.Expr | None) -> str | None:
        if expr is None:
            return None
        value = body.const(expr)
        name = value.name if isinstance(value, Word) else value
        if not isinstance(name, str) or name not in ACTIVATIONS:
            shown = name if isinstance(name, str) else str(value)
            raise NameResolutionError(f"unknown activation '{shown}' (activations: {', '.join(ACTIVATIONS)})",
                                      expr.span, notes=did_you_mean(str(shown), ACTIVATIONS))
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
        raise_all(errors)


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
                              f"(allowed: {', '.join(names)})", kw.span, notes=did_you_mean(kw.name, names))
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
