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
from .optimizers import OPTIMIZERS, OptimizerDef, clip_gradients, clipping_problem
from .passes.cse import attr_key

TRAIN_STEP = "train_step"
LR_NAME = "lr"
SEED_NAME, STEP_NAME = "seed", "step"      # the random key's parts, for models that draw numbers


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

    @property
    def arg_names(self) -> list[str]:
        return ([n for n, _ in self.params] + [n for n, _ in self.model_state] + [s.name for s in self.state]
                + [n for n, _ in self.inputs] + [n for n, _ in self.targets] + [LR_NAME]
                + ([SEED_NAME, STEP_NAME] if self.random else []))

    @property
    def output_names(self) -> list[str]:
        return (["loss"] + [f"new.{n}" for n, _ in self.params] + [f"new.{n}" for n, _ in self.model_state]
                + [f"new.{s.name}" for s in self.state] + list(self.metrics))

    def initial_state(self) -> dict[str, np.ndarray]:
        """Every optimizer state tensor at its starting value (zeros), C-contiguous."""
        return {s.name: np.zeros(s.type.concrete_shape({}), dtype=s.type.dtype.np) for s in self.state}


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
    from .passes.autodiff import gradient_function
    from .passes.dce import dce_function

    sig = train_signature(module)
    loss = module.get("loss")
    # A cross-entropy of softmax/sigmoid probabilities was built from the logits
    # (compiler/ops/losses.py), so its gradient is (softmax - one_hot) / N, not a
    # chain through clipped probabilities.
    if not metrics:
        sig = replace(sig, metrics=())
    grad_name = _fresh_name(module, f"{name}.grad")
    grad_fn = gradient_function(module, "loss", [n for n, _ in sig.params], new_name=grad_name,
                                with_value=True, loc=loss.loc)

    scalar = TensorType(DType.i64, ())
    arg_types = ([t for _, t in sig.params] + [t for _, t in sig.model_state] + [s.type for s in sig.state]
                 + [t for _, t in sig.inputs] + [t for _, t in sig.targets] + [TensorType(DType.f32, ())]
                 + ([scalar, scalar] if sig.random else []))
    func, b = new_function(name, list(zip(sig.arg_names, arg_types)), loc=loss.loc)
    func.attrs["mode"] = "training"
    args = {p.name: p for p in func.params}
    data_args = [args[n] for n, _ in (*sig.inputs, *sig.targets)]
    model_args = [args[n] for n, _ in (*sig.params, *sig.model_state)] + data_args
    loss_args = list(model_args)
    if sig.random:
        with b.at(loss.loc):
            loss_args.append(b.fold_in(args[SEED_NAME], args[STEP_NAME]))

    inliner = _ValueNumbering(b)
    results = inliner.inline(grad_fn, loss_args)
    loss_value, grads = results[0], results[-len(sig.params):]
    n_model_state = len(sig.model_state)
    new_model_state = results[1:1 + n_model_state]

    new_params, new_state = _apply_optimizer(b, sig, args, grads, loss.loc)
    metric_values: list[Value] = []
    if sig.metrics and sig.metrics_from_loss:
        start = 1 + n_model_state
        metric_values = results[start:start + len(sig.metrics)]
    elif sig.metrics:
        metric_values = inliner.inline(module.get("evaluate"), model_args, outputs=range(1, 1 + len(sig.metrics)))

    func.outputs = [loss_value, *new_params, *new_model_state, *new_state, *metric_values]
    func.output_names = sig.output_names
    n_params = len(sig.params)
    func.attrs["inplace"] = tuple(
        [(1 + i, n) for i, (n, _) in enumerate(sig.params)]
        + [(1 + n_params + k, n) for k, (n, _) in enumerate(sig.model_state)]
        + [(1 + n_params + n_model_state + j, s.name) for j, s in enumerate(sig.state)])
    dce_function(func)
    module.replace(func)
    return func


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
            p_new, s_new = opt.update(b, hp, lr, aux, args[pname], g, slots)
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
