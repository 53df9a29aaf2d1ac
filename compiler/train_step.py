"""The compiled training step: forward, backward and optimizer update as one dl function.

:func:`build_train_step` adds to a model module (see ``docs/architecture.md``,
"Model blocks in IR")::

    train_step(params..., model_state..., opt_state..., inputs..., targets..., lr: f32[]
               [, seed: i64[], step: i64[]])
        -> (loss, new_params..., new_model_state..., new_opt_state..., metrics...)

It is built from ``grad(loss, wrt=params, with_value=True)`` (the autodiff
pass) inlined, followed by the optimizer's update rule for each parameter
(``compiler/optimizers.py``), followed by the model's metrics.  Ops are
value-numbered while they are inlined, so the forward pass the metrics
share with the loss is computed once.  ``attrs["inplace"]`` pairs every new
parameter and state output with the parameter it replaces, so the runtime
updates weights, model state and optimizer state in their own buffers.

``loss`` is the model's *training* form.  A model with non-trainable state
(batch norm's moving statistics) or random numbers (dropout) has a ``loss``
that also returns the state's new values and the training-form metrics; the
step returns both (the state is never differentiated and no optimizer sees
it).  A model that draws random numbers takes ``seed`` and ``step`` and
derives the step's key ``fold_in(seed, step)`` (``compiler/ops/random.py``),
so a run is reproducible from its seed.  A model whose two forms agree takes
its metrics from ``evaluate``.

:func:`train_signature` describes the layout (names, types, which state slot
belongs to which parameter) without building anything; the runtime uses it
to allocate optimizer state and to read the outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .diagnostics import DlError, Location
from .ir.builder import Builder, new_function
from .ir.core import Function, Module, Op, Value
from .ir.types import DType, TensorType
from .optimizers import OPTIMIZERS, OptimizerDef, clip_gradients, clipping_problem, decay_weight
from .passes.cse import attr_key
from .passes.dce import dce_function

TRAIN_STEP = "train_step"
GRADS_STEP, APPLY_STEP = "train_grads", "train_apply"     # the step in two (build_split_step)
LR_NAME = "lr"
SEED_NAME, STEP_NAME = "seed", "step"      # the random key's parts, for models that draw numbers
SAMPLE_WEIGHT = "sample_weight"            # the weighted step's per-sample weights (build_weighted_step)
WEIGHTED_LOSS = "loss.weighted"


class TrainingError(DlError):
    """A model that cannot be trained as declared (bad optimizer, missing functions)."""


@dataclass(frozen=True)
class StateSlot:
    """One optimizer state tensor: its name, type, and the parameter it belongs to."""

    name: str
    type: TensorType
    slot: str                 # "velocity", "momentum", "iterations", ...
    param: str | None         # None for shared state (Adam's step count)


@dataclass(frozen=True)
class TrainSignature:
    """The layout of ``train_step``'s arguments and results for one model."""

    model_name: str
    optimizer: OptimizerDef
    hyperparams: dict[str, float | bool]
    params: tuple[tuple[str, TensorType], ...]
    state: tuple[StateSlot, ...]                      # the optimizer's
    inputs: tuple[tuple[str, TensorType], ...]
    targets: tuple[tuple[str, TensorType], ...]
    metrics: tuple[str, ...]
    model_state: tuple[tuple[str, TensorType], ...] = ()   # non-trainable (moving statistics)
    random: bool = False                              # takes seed and step (the model draws numbers)
    metrics_from_loss: bool = False                   # training-form metrics, returned by @loss

    @property
    def learning_rate(self) -> float:
        return float(self.hyperparams["learning_rate"])

    weighted: bool = False                            # takes sample_weight after the targets

    @property
    def arg_names(self) -> list[str]:
        return ([n for n, _ in self.params] + [n for n, _ in self.model_state] + [s.name for s in self.state]
                + [n for n, _ in self.inputs] + [n for n, _ in self.targets]
                + ([SAMPLE_WEIGHT] if self.weighted else []) + [LR_NAME]
                + ([SEED_NAME, STEP_NAME] if self.random else []))

    @property
    def weight_type(self) -> TensorType:
        """``sample_weight``'s type: ``f32[N]``, N the batch dim of the first target."""
        return TensorType(DType.f32, (self.targets[0][1].shape[0],))

    @property
    def output_names(self) -> list[str]:
        return (["loss"] + [f"new.{n}" for n, _ in self.params] + [f"new.{n}" for n, _ in self.model_state]
                + [f"new.{s.name}" for s in self.state] + list(self.metrics))

    def initial_state(self) -> dict[str, np.ndarray]:
        """Every optimizer state tensor at its starting value (zero, or the optimizer's
        ``slot_init``: Adagrad's accumulator), C-contiguous."""
        init = self.optimizer.slot_init(self.hyperparams)
        return {s.name: np.full(s.type.concrete_shape({}), init.get(s.slot, 0), dtype=s.type.dtype.np)
                for s in self.state}


def model_info(module: Module, loc: Location | None = None) -> dict[str, Any]:
    """The module's ``attrs["model"]``, or a :class:`TrainingError` if it has none."""
    info = module.attrs.get("model")
    if not isinstance(info, dict):
        raise TrainingError("this module has no model block to train", loc)
    for fn in ("loss", "predict", "evaluate"):
        if fn not in module:
            raise TrainingError(f"model '{info.get('name')}' has no @{fn} function", loc)
    return info


def optimizer_of(info: dict[str, Any], loc: Location | None = None) -> tuple[OptimizerDef, dict[str, float | bool]]:
    """The model's optimizer definition and its hyperparameters (defaults filled)."""
    spec = dict(info.get("optimizer") or {"name": "rmsprop"})
    name = str(spec.pop("name", "rmsprop"))
    opt = OPTIMIZERS.get(name)
    if opt is None:
        raise TrainingError(f"unknown optimizer '{name}' (known: {', '.join(OPTIMIZERS)})", loc)
    try:
        hyperparams = opt.resolve(spec)
    except KeyError as e:
        raise TrainingError(f"optimizer '{name}' has no hyperparameter '{e.args[0]}'", loc) from None
    for key, value in hyperparams.items():
        problem = opt.check(key, value)
        if problem is not None:
            raise TrainingError(f"optimizer '{name}': {problem}", loc)
    problem = clipping_problem(hyperparams)
    if problem is not None:
        raise TrainingError(f"optimizer '{name}': {problem}", loc)
    return opt, hyperparams


def train_signature(module: Module) -> TrainSignature:
    """Names and types of ``train_step``'s arguments and results for ``module``'s model."""
    info = model_info(module, module.get("loss").loc if "loss" in module else None)
    loss = module.get("loss")
    opt, hp = optimizer_of(info, loss.loc)
    param_names = [p["name"] for p in info["params"]]
    by_name = {p.name: p.type for p in loss.params}
    params = tuple((n, by_name[n]) for n in param_names)
    state: list[StateSlot] = []
    for slot in opt.slots(hp):
        state += [StateSlot(opt.slot_name(slot, n), t, slot, n) for n, t in params]
    state += [StateSlot(opt.slot_name(slot), t, slot, None) for slot, t in opt.shared_slots.items()]
    inputs = tuple((n, by_name[n]) for n in info["inputs"])
    targets = tuple((n, by_name[n]) for n in info["targets"])
    model_state = tuple((n, _param_type(loss, by_name, n, "state")) for n in state_names(info, loss.loc))
    metrics = _metric_names(module.get("evaluate"), info)
    random = info.get("rng") is not None
    metrics_from_loss = len(loss.outputs) > 1
    if (model_state or metrics_from_loss) and len(loss.outputs) != 1 + len(model_state) + len(metrics):
        raise TrainingError(f"@loss returns {len(loss.outputs)} values; the training form of a model with "
                            "state or random numbers returns the loss, each state's new value and the "
                            f"metrics ({1 + len(model_state) + len(metrics)} values)", loss.loc)
    if random and (not loss.params or loss.params[-1].name != info["rng"]):
        raise TrainingError(f"@loss of a model that draws random numbers takes its key "
                            f"'{info['rng']}' last", loss.loc)
    return TrainSignature(str(info["name"]), opt, hp, params, tuple(state), inputs, targets, metrics,
                          model_state, random, metrics_from_loss)


def state_names(info: dict[str, Any], loc: Location | None = None) -> list[str]:
    """The names of the model's non-trainable state (``attrs["model"]["state"]``), in order."""
    entries = info.get("state", [])
    if not isinstance(entries, (list, tuple)) or not all(
            isinstance(s, dict) and isinstance(s.get("name"), str) for s in entries):
        raise TrainingError("the model's 'state' attribute must be a list of {name, init} records", loc)
    return [s["name"] for s in entries]


def _param_type(loss: Function, by_name: dict[str | None, TensorType], name: str, what: str) -> TensorType:
    """The type of ``@loss``'s parameter ``name`` (a model tensor of kind ``what``)."""
    if name not in by_name:
        raise TrainingError(f"the model's {what} '{name}' is not a parameter of @loss", loss.loc)
    return by_name[name]


def _metric_names(evaluate: Function, info: dict[str, Any]) -> tuple[str, ...]:
    """The names of ``evaluate``'s outputs after the loss (its output names, else the model's)."""
    count = len(evaluate.outputs) - 1
    names = list(evaluate.output_names[1:]) if len(evaluate.output_names) == count + 1 else []
    if not names:
        names = list(info.get("metrics", []))[:count]
    return tuple(name or f"metric_{i}" for i, name in enumerate(names + [None] * (count - len(names)), 1))


def build_train_step(module: Module, *, name: str = TRAIN_STEP, metrics: bool = True) -> Function:
    """Add ``train_step`` to ``module`` and return it (replacing an older one of that name).

    ``metrics=False`` leaves the model's metrics out (outputs end after the
    new optimizer state).
    """
    sig = train_signature(module)
    if not metrics:
        sig = replace(sig, metrics=())
    func = _build_step(module, sig, name)
    module.replace(func)
    return func


def build_weighted_step(module: Module) -> Module:
    """The training step with per-sample weights, ``train_step`` of a new module: the
    arguments of :func:`build_train_step`'s with ``sample_weight: f32[N]`` after the
    targets, the same outputs; beside it ``evaluate`` with ``sample_weight`` after the
    targets (its loss weighted: validation data with weights).

    Its loss is ``@loss`` with every loss op replaced by its weighted form
    (:func:`compiler.ops.losses.weighted_loss`: Keras's ``sum(w * loss) / count``),
    differentiated by autodiff; the metrics stay unweighted.  Built only for
    ``fit(sample_weight=..., class_weight=...)``: the unweighted step keeps the
    loss ops' own fused gradients.  A :class:`TrainingError` when ``@loss`` has no
    loss op to weight.
    """
    sig = replace(train_signature(module), weighted=True)
    work = Module(list(module.functions), dict(module.attrs))     # ``module`` itself is left as it is
    work.replace(weighted_loss_function(work, sig))
    step = _build_step(work, sig, TRAIN_STEP, loss_fn=WEIGHTED_LOSS)
    evaluate = weighted_loss_function(module, sig, source="evaluate", name="evaluate")
    return Module([step, evaluate], dict(module.attrs))


def weighted_loss_function(module: Module, sig: TrainSignature, *, source: str = "loss",
                           name: str = WEIGHTED_LOSS) -> Function:
    """``@loss`` (or ``source``: ``@evaluate``) as ``name``, taking ``sample_weight`` after the
    targets (before a random key), each loss op replaced by its sample-weighted form."""
    from .ops.base import ShapeError
    from .ops.losses import LOSS_OPS, weighted_loss

    loss = module.get(source)
    at = len(sig.params) + len(sig.model_state) + len(sig.inputs) + len(sig.targets)
    params = [(p.name or f"arg{i}", p.type) for i, p in enumerate(loss.params)]
    params.insert(at, (SAMPLE_WEIGHT, sig.weight_type))
    func, b = new_function(name, params, loc=loss.loc)
    func.attrs.update(loss.attrs)
    weight = func.params[at]
    env: dict[Value, Value] = dict(zip(loss.params, func.params[:at] + func.params[at + 1:]))
    weighted = 0
    for op in loss.ops:
        operands = [env[v] for v in op.operands]
        if op.name in LOSS_OPS:
            with b.at(op.loc):
                try:
                    env[op.results[0]] = weighted_loss(b, op.name, operands, op.attrs, weight)
                except ShapeError as e:
                    raise TrainingError(f"cannot weight this loss by sample: {e}", op.loc) from None
            weighted += 1
            continue
        copy = Builder.make(op.name, operands, dict(op.attrs), op.loc)
        func.ops.append(copy)
        env.update(zip(op.results, copy.results))
    if not weighted:
        raise TrainingError("sample or class weights need the model's loss to use a loss op "
                            f"({', '.join(LOSS_OPS)}); this @loss has none", loss.loc)
    func.outputs = [env[v] for v in loss.outputs]
    func.output_names = list(loss.output_names)
    return func


def _build_step(module: Module, sig: TrainSignature, name: str, loss_fn: str = "loss") -> Function:
    """The training step function of ``sig`` (see :func:`build_train_step`), not yet in a module."""
    loss = module.get("loss")
    func, b = new_function(name, list(zip(sig.arg_names, _arg_types(sig))), loc=loss.loc)
    func.attrs["mode"] = "training"
    args = {p.name: p for p in func.params}
    fb = _ForwardBackward(module, sig, b, args, name, loss_fn)
    new_params, new_state = _apply_optimizer(b, sig, args, fb.grads, loss.loc)
    func.outputs = [fb.loss, *new_params, *fb.new_model_state, *new_state, *fb.metrics()]
    func.output_names = sig.output_names
    n_params, n_model_state = len(sig.params), len(sig.model_state)
    func.attrs["inplace"] = tuple(
        [(1 + i, n) for i, (n, _) in enumerate(sig.params)]
        + [(1 + n_params + k, n) for k, (n, _) in enumerate(sig.model_state)]
        + [(1 + n_params + n_model_state + j, s.name) for j, s in enumerate(sig.state)])
    dce_function(func)
    return func


def build_split_step(module: Module) -> Module:
    """The training step as two functions, in a new module: for data-parallel training,
    where the gradients are summed across processes between the two.

    ::

        train_grads(params..., model_state..., grad.<param>..., inputs..., targets... [, seed, step])
            -> (loss, grads..., new_model_state..., metrics...)
        train_apply(params..., opt_state..., grad.<param>..., lr) -> (new_params..., new_opt_state...)

    ``train_grads`` writes each gradient in place into its ``grad.<param>``
    buffer (never read: the caller's memory, e.g. views of one flat array)
    and the new model state over the old; ``train_apply`` is the optimizer's
    update, in place over the parameters and optimizer state.  Together they
    compute what ``train_step`` computes in one call.
    """
    sig = train_signature(module)
    loss = module.get("loss")
    grad_args = [(grad_name(n), t) for n, t in sig.params]
    data = [*sig.inputs, *sig.targets]
    scalar = TensorType(DType.i64, ())
    grads_fn, b = new_function(GRADS_STEP, [*sig.params, *sig.model_state, *grad_args, *data]
                               + ([(SEED_NAME, scalar), (STEP_NAME, scalar)] if sig.random else []), loc=loss.loc)
    grads_fn.attrs["mode"] = "training"
    args = {p.name: p for p in grads_fn.params}
    fb = _ForwardBackward(module, sig, b, args, GRADS_STEP)
    grads_fn.outputs = [fb.loss, *fb.grads, *fb.new_model_state, *fb.metrics()]
    grads_fn.output_names = (["loss"] + [grad_name(n) for n, _ in sig.params]
                             + [f"new.{n}" for n, _ in sig.model_state] + list(sig.metrics))
    n_params = len(sig.params)
    grads_fn.attrs["inplace"] = tuple([(1 + i, grad_name(n)) for i, (n, _) in enumerate(sig.params)]
                                      + [(1 + n_params + k, n) for k, (n, _) in enumerate(sig.model_state)])
    dce_function(grads_fn)

    state_args = [(s.name, s.type) for s in sig.state]
    apply_fn, b = new_function(APPLY_STEP, [*sig.params, *state_args, *grad_args, (LR_NAME, TensorType(DType.f32, ()))],
                               loc=loss.loc)
    apply_fn.attrs["mode"] = "training"
    args = {p.name: p for p in apply_fn.params}
    new_params, new_state = _apply_optimizer(b, sig, args, [args[grad_name(n)] for n, _ in sig.params], loss.loc)
    apply_fn.outputs = [*new_params, *new_state]
    apply_fn.output_names = [f"new.{n}" for n, _ in (*sig.params, *state_args)]
    apply_fn.attrs["inplace"] = tuple(enumerate([n for n, _ in (*sig.params, *state_args)]))
    dce_function(apply_fn)
    return Module([grads_fn, apply_fn], dict(module.attrs))


def grad_name(param: str) -> str:
    """The name of the gradient buffer of ``param`` in :func:`build_split_step`'s functions."""
    return f"grad.{param}"


def _arg_types(sig: TrainSignature) -> list[TensorType]:
    """The types of ``train_step``'s arguments, in :attr:`TrainSignature.arg_names` order."""
    scalar = TensorType(DType.i64, ())
    return ([t for _, t in sig.params] + [t for _, t in sig.model_state] + [s.type for s in sig.state]
            + [t for _, t in sig.inputs] + [t for _, t in sig.targets]
            + ([sig.weight_type] if sig.weighted else []) + [TensorType(DType.f32, ())]
            + ([scalar, scalar] if sig.random else []))


class _ForwardBackward:
    """The loss and its gradients (and the new model state), emitted into ``b``'s function
    whose parameters ``args`` include the model's tensors and data by name; then, on
    request, the metrics (sharing the forward pass)."""

    def __init__(self, module: Module, sig: TrainSignature, b: Builder, args: dict[str, Value], name: str,
                 loss_fn: str = "loss"):
        from .passes.autodiff import gradient_function

        self.module, self.sig = module, sig
        loss = module.get(loss_fn)
        # A cross-entropy of softmax/sigmoid probabilities was built from the logits
        # (compiler/ops/losses.py), so its gradient is (softmax - one_hot) / N, not a
        # chain through clipped probabilities.
        grad_fn = gradient_function(module, loss_fn, [n for n, _ in sig.params],
                                    new_name=_fresh_name(module, f"{name}.grad"), with_value=True, loc=loss.loc)
        data_args = [args[n] for n, _ in (*sig.inputs, *sig.targets)]
        self.model_args = [args[n] for n, _ in (*sig.params, *sig.model_state)] + data_args
        loss_args = self.model_args + ([args[SAMPLE_WEIGHT]] if sig.weighted else [])
        if sig.random:
            with b.at(loss.loc):
                loss_args.append(b.fold_in(args[SEED_NAME], args[STEP_NAME]))
        self.inliner = _ValueNumbering(b)
        self.results = self.inliner.inline(grad_fn, loss_args)
        self.loss = self.results[0]
        self.grads = self.results[-len(sig.params):]
        self.new_model_state = self.results[1:1 + len(sig.model_state)]

    def metrics(self) -> list[Value]:
        """The model's metrics: from the training form of ``@loss``, else from ``@evaluate``."""
        sig = self.sig
        if sig.metrics and sig.metrics_from_loss:
            start = 1 + len(sig.model_state)
            return self.results[start:start + len(sig.metrics)]
        if sig.metrics:
            return self.inliner.inline(self.module.get("evaluate"), self.model_args,
                                       outputs=range(1, 1 + len(sig.metrics)))
        return []


def _fresh_name(module: Module, base: str) -> str:
    name, i = base, 1
    while name in module:
        name, i = f"{base}{i}", i + 1
    return name


def _apply_optimizer(b: Builder, sig: TrainSignature, args: dict[str, Value], grads: list[Value],
                     loc: Location) -> tuple[list[Value], list[Value]]:
    """Emit the optimizer's update for every parameter; new params and new state in signature order."""
    opt, hp = sig.optimizer, sig.hyperparams
    lr = args[LR_NAME]
    shared = {s.slot: args[s.name] for s in sig.state if s.param is None}
    with b.at(loc):
        grads = clip_gradients(b, hp, grads)
        new_shared, aux = opt.prepare(b, hp, lr, shared) if opt.prepare else ({}, {})
        new_slots: dict[str, Value] = {}
        new_params = []
        for (pname, _), g in zip(sig.params, grads):
            slots = {s.slot: args[s.name] for s in sig.state if s.param == pname}
            assert opt.update is not None, f"optimizer {opt.name} has no update rule"
            p_new, s_new = opt.update(b, hp, lr, aux, decay_weight(b, hp, lr, args[pname]), g, slots)
            new_params.append(p_new)
            new_slots.update({opt.slot_name(slot, pname): v for slot, v in s_new.items()})
        new_slots.update({opt.slot_name(slot): v for slot, v in new_shared.items()})
    return new_params, [new_slots[s.name] for s in sig.state]


class _ValueNumbering:
    """Inlines functions into one body, reusing an earlier identical op instead of a copy.

    Every dl op is pure, so two ops with the same name, the same (already
    numbered) operands and equal attributes compute the same value.  This is
    how the metrics taken from ``evaluate`` share the forward pass that the
    gradient function already computes.
    """

    def __init__(self, b: Builder):
        self.b = b
        self.table: dict[tuple, Op] = {}

    def inline(self, func: Function, args: list[Value], outputs: Any = None) -> list[Value]:
        """Copy the ops of ``func`` that ``outputs`` (indices; default all) need; return those outputs."""
        wanted = [func.outputs[i] for i in (outputs if outputs is not None else range(len(func.outputs)))]
        live = _live_ops(func, wanted)
        env: dict[Value, Value] = dict(zip(func.params, args))
        for op in func.ops:
            if op not in live:
                continue
            operands = [env[v] for v in op.operands]
            key = (op.name, tuple(id(v) for v in operands),
                   tuple((k, attr_key(a)) for k, a in sorted(op.attrs.items())))
            copy = self.table.get(key)
            if copy is None:
                copy = Builder.make(op.name, operands, dict(op.attrs), op.loc)
                self.b.func.ops.append(copy)
                self.table[key] = copy
            env.update(zip(op.results, copy.results))
        return [env[v] for v in wanted]


def _live_ops(func: Function, wanted: list[Value]) -> set[Op]:
    live_values = set(wanted)
    live: set[Op] = set()
    for op in reversed(func.ops):
        if any(r in live_values for r in op.results):
            live.add(op)
            live_values.update(op.operands)
    return live
