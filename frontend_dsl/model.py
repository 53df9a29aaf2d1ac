"""Lower a ``model`` block: parameters, state, layers, loss, optimizer, metrics.

The statements are lowered into one *full* function of ``params...,
state..., inputs..., targets..., rng`` returning every output, the loss and
the metrics; ``predict``, ``loss`` and ``evaluate`` are then sliced from it,
each keeping only the ops its results need, and ``module.attrs["model"]``
describes the model (see ``docs/architecture.md``, "Model blocks in IR").

**Modes.** A layer that computes differently in training and at inference
(dropout, batch norm) builds both forms and joins them with a *mode select*
(:meth:`ModelLowering.by_mode`), a placeholder op of the full function that
never leaves this module: slicing a function in the *training* form follows
its first operand, in the *inference* form its second.  So the statements
are lowered once, everything downstream of a layer is shared, and each
generated function holds one form only: ``loss`` (and the training step
built from it) the training form, ``predict`` and ``evaluate`` the
inference form.  Each function says which in ``attrs["mode"]``.

**State** (batch norm's moving statistics) are further parameters after the
trainable ones; the training form computes their new values
(:meth:`ModelLowering.update_state`), which ``loss`` returns after the loss.
**Randomness**: the training form takes one more parameter, ``rng: i64[]``
(the step's key), and each layer folds a constant of its name into it.
"""

from __future__ import annotations

import inspect
import zlib
from dataclasses import dataclass, field
from typing import Any

from compiler.diagnostics import DlError, DlRuntimeError, DlTypeError, Location, NameResolutionError
from compiler.ir.builder import new_function
from compiler.ir.core import Function, Module, Op, Value
from compiler.ir.types import DType, TensorType
from compiler.metrics import METRICS
from compiler.optimizers import OPTIMIZERS, clipping_problem
from compiler.schedules import SCHEDULES, schedule_from_spec, schedule_spec

from . import ast
from .constants import convert_attr, initializer_spec, named_call, resolve_type
from .exprs import Body, FunctionTable
from .scope import Poisoned, Scope, collect_errors, did_you_mean, nesting_limit, raise_all

MODEL_FUNCTIONS = ("predict", "loss", "evaluate")
TRAINING, INFERENCE = "training", "inference"     # Function.attrs["mode"] of the model's functions
RNG_NAME = "rng"                                  # the training form's key parameter
MODE_SELECT = "mode_select"                       # the placeholder op of the full function (never in IR)


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
    state: list[_Declared] = field(default_factory=list)          # non-trainable (moving statistics)
    updates: dict[Value, Value] = field(default_factory=dict)     # state -> its value after a step
    inputs: list[_Declared] = field(default_factory=list)
    targets: list[_Declared] = field(default_factory=list)
    outputs: list[_Declared] = field(default_factory=list)
    loss: tuple[Value, ast.LossDecl, dict[str, Any]] | None = None
    optimizer: tuple[dict[str, Any], ast.OptimizerDecl] | None = None
    lr_schedule: dict[str, Any] | None = None      # adam(lr=cosine(...)): the schedule, as data
    penalties: list[tuple[Value, Location]] = field(default_factory=list)   # regularizers' terms of the loss
    metrics: ast.MetricsDecl | None = None
    layer_counts: dict[str, int] = field(default_factory=dict)   # layer -> calls so far
    layers: list[dict[str, Any]] = field(default_factory=list)   # each layer call, for summary()


class ModelLowering:
    """One ``model`` block: a full function first, then predict / loss / evaluate sliced from it.

    The full function takes ``params..., inputs..., targets...`` and returns
    every output, the loss and the metrics; each generated function keeps
    only the ops its outputs need.
    """

    def __init__(self, module: Module, functions: FunctionTable, m: ast.ModelDef):
        self.module = module
        self.m = m
        self.state = _ModelState()
        self.declared: dict[str, Location] = {}
        self.attempted: set[type] = set()   # kinds of statement seen, even if they failed
        self.full, b = new_function(f"{m.name.id}.full", [], loc=m.name.span)
        self.body = Body(functions, b, Scope(), set(), params=self)
        self.rng: Value | None = None           # the training form's key, once a layer asks for it
        self.mode_selects = 0

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
            init = initializer_spec(stmt.init, None if stmt.init else _default_init(t), self.body.const)
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

    def auto_name(self, layer: str) -> str:
        """The next default name for a ``layer`` call: ``dense_1``, ``dense_2``, ... (as Keras)."""
        count = self.state.layer_counts.get(layer, 0) + 1
        self.state.layer_counts[layer] = count
        return f"{layer}_{count}"

    def qualify(self, name: str) -> str:
        """A layer's full name: the model's own layers are named as written (a block's
        call prefixes its name, see :mod:`frontend_dsl.blocks`)."""
        return name

    def param_named(self, name: str) -> Value | None:
        """The parameter ``name`` (``hidden.kernel``, or a ``param`` statement's), if declared so far."""
        return next((p.value for p in self.state.params if p.name == name), None)

    def param_names(self) -> list[str]:
        return [p.name for p in self.state.params]

    def record_layer(self, name: str, kind: str, output: Value, tensors: list[str]) -> None:
        """A layer call, in call order, for ``attrs["model"]["layers"]`` (``summary()``'s rows):
        its name, kind (``dense``), output type (``f32[N, 128]``) and the parameters and state
        it created."""
        self.state.layers.append({"name": name, "kind": kind, "output": output.type.dsl_str(),
                                  "tensors": list(tensors)})

    def new_param(self, name: ast.Name, t: TensorType, init: dict[str, Any]) -> Value:
        """A new parameter (of a layer) that no name in the model's scope refers to."""
        value = Value(t, None, 0, name.id)
        self.add_param(name, value, init)
        return value

    def add_param(self, name: ast.Name, value: Value, init: dict[str, Any]) -> None:
        """Enter a parameter in declaration order; parameter and state names are unique."""
        self._check_unique(name)
        self.state.params.append(_Declared(name.id, value, name.span, init))

    def _check_unique(self, name: ast.Name) -> None:
        for p in [*self.state.params, *self.state.state]:
            if p.name == name.id:
                raise NameResolutionError(f"parameter '{name.id}' is already defined", name.span,
                                          notes=[f"previous definition at {p.span}"])

    # -- state, randomness and modes (the layers' side: ParamHost) ----------------------

    def new_state(self, name: ast.Name, t: TensorType, init: dict[str, Any]) -> Value:
        """A new non-trainable state value (of a layer), read by both forms."""
        self._check_unique(name)
        value = Value(t, None, 0, name.id)
        self.state.state.append(_Declared(name.id, value, name.span, init))
        return value

    def update_state(self, state: Value, new: Value, span: Location) -> None:
        """``state``'s value after a training step is ``new`` (computed in the training form)."""
        assert any(s.value is state for s in self.state.state), "not a state value of this model"
        if new.type != state.type:
            raise DlTypeError(f"the new value of state '{state.name}' is {new.type.dsl_str()}, "
                              f"the state is {state.type.dsl_str()}", span)
        self.state.updates[state] = new

    def add_penalty(self, penalty: Value, span: Location) -> None:
        """A regularizer's penalty (a scalar): added to the loss, in training and evaluation."""
        self.state.penalties.append((penalty, span))

    def random_key(self, layer_name: str, span: Location) -> Value:
        """``fold_in(rng, crc32(layer name))``: the layer's key in the training form."""
        if self.rng is None:
            self.rng = Value(TensorType(DType.i64, ()), None, 0, RNG_NAME)
        b = self.body.b
        with b.at(span):
            salt = b.constant(zlib.crc32(layer_name.encode()), DType.i64)
            return b.fold_in(self.rng, salt)

    def by_mode(self, training: Value, inference: Value, span: Location) -> Value:
        """A value that is ``training`` in the training form and ``inference`` in the inference
        form (a mode select, resolved when the functions are sliced)."""
        assert training.type == inference.type, (training.type, inference.type)
        if training is inference:
            return training
        op = Op(MODE_SELECT, [training, inference], [], {}, span)
        op.results = [Value(training.type, op, 0)]
        self.body.b.func.ops.append(op)
        self.mode_selects += 1
        return op.results[0]

    @property
    def has_modes(self) -> bool:
        """Whether the training form differs from the inference form (a layer computes
        differently, draws random numbers or updates state)."""
        return bool(self.mode_selects or self.state.state or self.rng is not None)

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

    def optimizer(self, expr: ast.Expr) -> dict[str, Any]:
        name, args, kwargs, name_span = named_call(expr, "an optimizer such as sgd(lr=0.01)")
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
            if opt.default(key) is None:
                known = [*opt.names(), *opt.aliases]
                raise DlTypeError(f"unknown hyperparameter '{kw.name}' for optimizer '{name}' "
                                  f"(hyperparameters: {', '.join(_hyperparam_names(opt))})", kw.span,
                                  notes=did_you_mean(kw.name, known))
            if key == "learning_rate" and isinstance(kw.value, ast.Call) and kw.value.func in SCHEDULES:
                self.state.lr_schedule = self.lr_schedule(kw.value)
                given[kw.name] = schedule_from_spec(self.state.lr_schedule)(0)     # the first step's rate
                continue
            kind = "bool" if isinstance(opt.default(key), bool) else "float"
            given[kw.name] = convert_attr(self.body.const(kw.value), kind,
                                          f"hyperparameter '{kw.name}' of '{name}'", kw.value.span, set())
            problem = opt.check(kw.name, given[kw.name]) or clipping_problem(given)
            if problem is not None:
                raise DlTypeError(f"optimizer '{name}': {problem}", kw.value.span)
        resolved = opt.resolve(given)
        problem = clipping_problem(resolved)
        if problem is not None:
            raise DlTypeError(f"optimizer '{name}': {problem}", expr.span)
        return {"name": name, **resolved}

    def lr_schedule(self, call: ast.Call) -> dict[str, Any]:
        """``cosine(1e-3, decay_steps=1000)`` in an optimizer's ``lr=``: the schedule of
        ``compiler/schedules.py`` it names, checked, as data (``attrs["model"]["lr_schedule"]``)."""
        def value(expr: ast.Expr) -> Any:
            if isinstance(expr, ast.Call) and expr.func in SCHEDULES:
                return schedule_from_spec(self.lr_schedule(expr))
            return self.body.const(expr)
        cls = SCHEDULES[call.func]
        names = [p for p in inspect.signature(cls).parameters]
        for kw in call.kwargs:
            if kw.name not in names:
                raise DlTypeError(f"unknown argument '{kw.name}' for schedule '{call.func}' "
                                  f"(arguments: {', '.join(names)})", kw.span, notes=did_you_mean(kw.name, names))
        if len(call.args) > len(names):
            raise DlTypeError(f"too many arguments to schedule '{call.func}' (it takes {', '.join(names)})",
                              call.args[len(names)].span)
        args, kwargs = [value(a) for a in call.args], {kw.name: value(kw.value) for kw in call.kwargs}
        try:
            inspect.signature(cls).bind(*args, **kwargs)
        except TypeError as e:            # a required argument missing, or one given twice
            raise DlTypeError(f"schedule '{call.func}': {e} (arguments: {', '.join(names)})", call.span) from None
        try:
            schedule = cls(*args, **kwargs)
        except DlRuntimeError as e:
            raise DlTypeError(f"schedule '{call.func}': {e.message}", call.span) from None
        return schedule_spec(schedule)

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
                    values += METRICS[n.id].values(self.body.b, output, target)
            except DlError as e:
                errors.append(DlTypeError(f"metric '{n.id}' does not fit output '{s.outputs[0].name}' "
                                          f"({output.type.dsl_str()}) and target '{s.targets[0].name}' "
                                          f"({target.type.dsl_str()}): {e.message}", n.span))
        raise_all(errors)
        return values

    # -- the generated functions -------------------------------------------------

    def emit_functions(self, metric_values: list[Value]) -> None:
        """Slice ``predict`` and ``evaluate`` (inference form) and ``loss`` (training form) from
        the full function; describe the model in ``module.attrs["model"]``.

        ``loss`` returns the loss alone for a model whose two forms are the same; otherwise
        (:attr:`has_modes`) it also returns every state's new value and the metrics in the
        training form, which the training step reports (as Keras does)."""
        s = self.state
        assert s.loss is not None and s.optimizer is not None
        params = [p.value for p in s.params]
        state = [p.value for p in s.state]
        inputs = [i.value for i in s.inputs]
        targets = [t.value for t in s.targets]
        self.check_outputs_use_no_target()
        loss_value = self.with_penalties(s.loss[0])
        module = self.module
        declared = s.metrics.names if s.metrics else []
        metric_names = [name for n in declared for name in METRICS[n.id].output_names(n.id)]
        module.add(_extract(self.full, "predict", [*params, *state, *inputs], [o.value for o in s.outputs],
                            [o.name for o in s.outputs], INFERENCE))
        loss_outputs, loss_names = [loss_value], ["loss"]
        if self.has_modes:
            loss_outputs += [s.updates.get(v, v) for v in state] + metric_values
            loss_names += [f"new.{p.name}" for p in s.state] + metric_names
        rng = [self.rng] if self.rng is not None else []
        module.add(_extract(self.full, "loss", [*params, *state, *inputs, *targets, *rng], loss_outputs,
                            loss_names, TRAINING))
        module.add(_extract(self.full, "evaluate", [*params, *state, *inputs, *targets],
                            [loss_value, *metric_values], ["loss", *metric_names], INFERENCE))
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
        if s.layers:
            module.attrs["model"]["layers"] = s.layers
        if s.lr_schedule is not None:
            module.attrs["model"]["lr_schedule"] = s.lr_schedule
        if s.state:
            module.attrs["model"]["state"] = [{"name": p.name, "init": p.init} for p in s.state]
        if self.rng is not None:
            module.attrs["model"]["rng"] = RNG_NAME

    def with_penalties(self, loss: Value) -> Value:
        """The loss plus every regularizer's penalty (``kernel_regularizer=l2(...)``)."""
        b = self.body.b
        for penalty, span in self.state.penalties:
            with b.at(span):
                term = penalty if penalty.type.dtype == loss.type.dtype else b.cast(penalty, dtype=loss.type.dtype)
                loss = b.add(loss, term)
        return loss

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
    return [f"{k} ({inverse[k]})" if k in inverse else k for k in opt.names()]


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
             output_names: list[str], mode: str) -> Function:
    """A new function of ``params`` computing ``outputs`` in ``mode`` (``training`` or
    ``inference``) with just the ops they need: each mode select is replaced by its operand
    for that mode."""
    pick = 0 if mode == TRAINING else 1

    def operands(op: Op) -> list[Value]:
        return [op.operands[pick]] if op.name == MODE_SELECT else op.operands

    needed: set[Op] = set()
    stack = list(outputs)
    while stack:
        v = stack.pop()
        if v.owner is not None and v.owner not in needed:
            needed.add(v.owner)
            stack.extend(operands(v.owner))
    env: dict[Value, Value] = {p: Value(p.type, None, i, p.name) for i, p in enumerate(params)}
    func = Function(name, [env[p] for p in params], loc=full.loc)
    for op in full.ops:
        if op not in needed:
            continue
        if op.name == MODE_SELECT:
            env[op.results[0]] = env[op.operands[pick]]
            continue
        copy = Op(op.name, [env[v] for v in op.operands], [], dict(op.attrs), op.loc)
        copy.results = [Value(r.type, copy, r.index) for r in op.results]
        env.update(zip(op.results, copy.results))
        func.ops.append(copy)
    func.outputs = [env[v] for v in outputs]
    func.output_names = list(output_names)
    func.attrs["mode"] = mode
    return func
