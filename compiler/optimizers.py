"""The optimizers a model can declare: names, hyperparameters, Keras defaults, update rules.

Each :class:`OptimizerDef` carries everything about one optimizer: its
hyperparameters with Keras's defaults, the state it keeps, and its update rule
written in dl ops through a :class:`~compiler.ir.builder.Builder`.  The
training step (``compiler/train_step.py``) calls the rule once per parameter,
so forward, backward and update compile into one native function.

The formulas are Keras 3's (``keras/src/optimizers/*.py``), with ``g`` the
gradient, ``lr`` the learning rate and ``t`` the 1-based step count:

- **sgd**: without momentum ``p -= lr·g``; with momentum
  ``m = momentum·m − lr·g`` then ``p += m``, or with Nesterov
  ``p += momentum·m − lr·g`` (using the new ``m``).
- **rmsprop**: ``v = rho·v + (1−rho)·g²``; centered:
  ``a = rho·a + (1−rho)·g``, ``denom = v − a² + epsilon``, else
  ``denom = v + epsilon``; ``inc = lr·g / sqrt(denom)`` (epsilon *inside* the
  square root, as Keras 3); with momentum ``mom = momentum·mom + inc``,
  ``p -= mom``, else ``p -= inc``.
- **adam**: ``alpha = lr·sqrt(1 − beta_2^t) / (1 − beta_1^t)``,
  ``m += (g − m)·(1 − beta_1)``, ``v += (g² − v)·(1 − beta_2)``,
  ``p -= alpha·m / (sqrt(v) + epsilon)`` (epsilon *outside* the root).
- **adamw**: first the decoupled decay ``p -= p·weight_decay·lr``, then the
  Adam update of the decayed ``p``.

**Gradient clipping** (Keras's ``clipnorm=`` and ``global_clipnorm=``, accepted by
every optimizer, off unless given; at most one of them): before the update
rule, ``clipnorm=c`` scales each parameter's gradient to norm at most ``c``,
``g·c / max(‖g‖, c)``; ``global_clipnorm=c`` scales all gradients by one
factor, ``g·c / max(G, c)`` with ``G = sqrt(Σ‖g‖²)`` over every parameter
(TensorFlow's ``clip_by_global_norm``).  :func:`clip_gradients` emits it.

State tensors are named ``<optimizer>.<slot>.<param>`` (one per parameter and
slot, the parameter's type, starting at zero), e.g.
``rmsprop.velocity.dense_1.kernel``, plus shared state named
``<optimizer>.<slot>``: Adam's step count ``adam.iterations`` (``i64[]``, the
number of steps applied so far).  The learning rate is a runtime argument of
the training step (a schedule needs no recompile); every other
hyperparameter is a constant in the IR.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from .ir.builder import Builder
from .ir.core import Value
from .ir.types import DType, TensorType

Hyperparams = dict[str, float | bool]

# The per-parameter update rule: (b, hyperparams, lr, shared values, param, grad, slots)
#   -> (new param, new slots by slot name)
UpdateRule = Callable[[Builder, Hyperparams, Value, dict[str, Value], Value, Value, dict[str, Value]],
                      tuple[Value, dict[str, Value]]]
# Once per step, before the per-parameter rules: (b, hyperparams, lr, shared state)
#   -> (new shared state by slot name, values the per-parameter rules read)
PrepareRule = Callable[[Builder, Hyperparams, Value, dict[str, Value]],
                       tuple[dict[str, Value], dict[str, Value]]]


@dataclass(eq=False)
class OptimizerDef:
    name: str
    hyperparams: dict[str, float | bool]   # name -> Keras default
    doc: str = ""
    aliases: dict[str, str] = field(default_factory=lambda: {"lr": "learning_rate"})
    update: UpdateRule | None = None
    prepare: PrepareRule | None = None
    slots: Callable[[Hyperparams], list[str]] = lambda hp: []
    shared_slots: dict[str, TensorType] = field(default_factory=dict)

    def accepts(self, key: str) -> bool:
        """Whether ``key`` (after aliases) is a hyperparameter of this optimizer (its own, or a
        clipping one, :data:`CLIPPING`)."""
        key = self.aliases.get(key, key)
        return key in self.hyperparams or key in CLIPPING

    def resolve(self, given: dict[str, float | bool]) -> dict[str, float | bool]:
        """Hyperparameters with aliases applied and defaults filled (clipping ones only when
        given: they have no default).

        Raises ``KeyError`` naming an unknown hyperparameter.
        """
        out = dict(self.hyperparams)
        for key, value in given.items():
            key = self.aliases.get(key, key)
            if not self.accepts(key):
                raise KeyError(key)
            out[key] = value
        return out

    def check(self, key: str, value: float | bool) -> str | None:
        """Why ``value`` is not a valid setting of hyperparameter ``key``, or None if it is.

        ``key`` may be an alias (``lr``).  Ranges: :data:`HYPERPARAM_RANGES`.
        """
        key = self.aliases.get(key, key)
        if isinstance(self.hyperparams.get(key), bool):
            return None if isinstance(value, bool) else f"{key} must be true or false, got {value!r}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{key} must be a number, got {value!r}"
        rule = HYPERPARAM_RANGES.get(key)
        if rule is None:
            return None
        accepts, wanted = rule
        return None if math.isfinite(value) and accepts(float(value)) else f"{key} must be {wanted}, got {value:g}"

    def def_update(self, fn: UpdateRule) -> UpdateRule:
        self.update = fn
        return fn

    def def_prepare(self, fn: PrepareRule) -> PrepareRule:
        self.prepare = fn
        return fn

    def slot_name(self, slot: str, param: str | None = None) -> str:
        """The name of a state tensor: ``rmsprop.velocity.dense_1.kernel`` or ``adam.iterations``."""
        return f"{self.name}.{slot}" if param is None else f"{self.name}.{slot}.{param}"


# Valid values of each numeric hyperparameter: (test, what the message asks for).
# A decay rate of 1 would never update its average (and divides by zero in
# Adam's bias correction), so betas and rho stay below 1.
HYPERPARAM_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "learning_rate": (lambda v: v > 0, "a positive number"),
    "momentum": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "rho": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "beta_1": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "beta_2": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "epsilon": (lambda v: v >= 0, "a number >= 0"),
    "weight_decay": (lambda v: v >= 0, "a number >= 0"),
    "clipnorm": (lambda v: v > 0, "a positive number"),
    "global_clipnorm": (lambda v: v > 0, "a positive number"),
}

# Keras's gradient-clipping arguments, taken by every optimizer; at most one is given.
CLIPPING = ("clipnorm", "global_clipnorm")


def clipping_problem(hp: dict[str, float | bool]) -> str | None:
    """Why the clipping settings in ``hp`` conflict (Keras allows one of them), or None."""
    given = [k for k in CLIPPING if k in hp]
    return f"give at most one of {' and '.join(given)}" if len(given) > 1 else None


def clip_gradients(b: Builder, hp: Hyperparams, grads: list[Value]) -> list[Value]:
    """The gradients after the clipping ``hp`` asks for (see the module docstring)."""
    if "clipnorm" in hp:
        return [_scale_to(b, g, b.sqrt(b.sum(b.square(g))), float(hp["clipnorm"])) for g in grads]
    if "global_clipnorm" in hp and grads:
        first = grads[0]
        squares = [b.sum(b.square(g)) for g in grads]
        squares = [s if s.type.dtype == first.type.dtype else b.cast(s, dtype=first.type.dtype) for s in squares]
        total = squares[0]
        for s in squares[1:]:
            total = b.add(total, s)
        norm = b.sqrt(total)                                     # G = sqrt(sum of |g|^2)
        return [_scale_to(b, g, norm if norm.type.dtype == g.type.dtype else b.cast(norm, dtype=g.type.dtype),
                          float(hp["global_clipnorm"])) for g in grads]
    return grads


def _scale_to(b: Builder, g: Value, norm: Value, c: float) -> Value:
    """g·c / max(norm, c): ``g`` unchanged when ``norm <= c``, else scaled to norm ``c``."""
    limit = _const(b, c, norm)
    return b.mul(g, b.div(limit, b.maximum(norm, limit)))

OPTIMIZERS: dict[str, OptimizerDef] = {
    o.name: o for o in [
        OptimizerDef("sgd", {"learning_rate": 0.01, "momentum": 0.0, "nesterov": False},
                     "Stochastic gradient descent, with optional (Nesterov) momentum."),
        OptimizerDef("rmsprop", {"learning_rate": 0.001, "rho": 0.9, "momentum": 0.0,
                                 "epsilon": 1e-7, "centered": False},
                     "RMSprop: divide the gradient by a running RMS of recent gradients."),
        OptimizerDef("adam", {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999,
                              "epsilon": 1e-7},
                     "Adam: bias-corrected first and second moment estimates."),
        OptimizerDef("adamw", {"learning_rate": 0.001, "weight_decay": 0.004, "beta_1": 0.9,
                               "beta_2": 0.999, "epsilon": 1e-7},
                     "AdamW: Adam with decoupled weight decay."),
    ]
}


def _const(b: Builder, value: float, like: Value) -> Value:
    return b.scalar_like(float(value), like)


def _lr_for(b: Builder, lr: Value, param: Value) -> Value:
    """The learning rate in the parameter's dtype."""
    if lr.type.dtype == param.type.dtype:
        return lr
    return b.cast(lr, dtype=param.type.dtype)


# ---------------------------------------------------------------------------
# SGD

sgd = OPTIMIZERS["sgd"]
sgd.slots = lambda hp: ["momentum"] if float(hp["momentum"]) != 0.0 else []


@sgd.def_update
def _sgd_update(b: Builder, hp: Hyperparams, lr: Value, shared: dict[str, Value],
                p: Value, g: Value, slots: dict[str, Value]) -> tuple[Value, dict[str, Value]]:
    lr = _lr_for(b, lr, p)
    step = b.mul(g, lr)                                         # lr·g
    if float(hp["momentum"]) == 0.0:
        return b.sub(p, step), {}                               # p − lr·g
    momentum = _const(b, float(hp["momentum"]), p)
    m = b.sub(b.mul(slots["momentum"], momentum), step)        # m = momentum·m − lr·g
    if hp["nesterov"]:
        return b.add(p, b.sub(b.mul(m, momentum), step)), {"momentum": m}   # p + momentum·m − lr·g
    return b.add(p, m), {"momentum": m}                         # p + m


# ---------------------------------------------------------------------------
# RMSprop

rmsprop = OPTIMIZERS["rmsprop"]
rmsprop.slots = lambda hp: (["velocity"]
                            + (["momentum"] if float(hp["momentum"]) > 0.0 else [])
                            + (["average_gradient"] if hp["centered"] else []))


@rmsprop.def_update
def _rmsprop_update(b: Builder, hp: Hyperparams, lr: Value, shared: dict[str, Value],
                    p: Value, g: Value, slots: dict[str, Value]) -> tuple[Value, dict[str, Value]]:
    lr = _lr_for(b, lr, p)
    rho = float(hp["rho"])
    new: dict[str, Value] = {}
    # v = rho·v + (1 − rho)·g²
    v = b.add(b.mul(_const(b, rho, p), slots["velocity"]), b.mul(_const(b, 1.0 - rho, p), b.square(g)))
    new["velocity"] = v
    if hp["centered"]:
        # a = rho·a + (1 − rho)·g;  denom = v − a² + epsilon
        a = b.add(b.mul(_const(b, rho, p), slots["average_gradient"]), b.mul(_const(b, 1.0 - rho, p), g))
        new["average_gradient"] = a
        denom = b.add(b.sub(v, b.square(a)), _const(b, float(hp["epsilon"]), p))
    else:
        denom = b.add(v, _const(b, float(hp["epsilon"]), p))   # v + epsilon
    inc = b.div(b.mul(lr, g), b.sqrt(denom))                     # lr·g / sqrt(denom)
    if float(hp["momentum"]) > 0.0:
        mom = b.add(b.mul(_const(b, float(hp["momentum"]), p), slots["momentum"]), inc)
        new["momentum"] = mom                                    # mom = momentum·mom + inc
        return b.sub(p, mom), new
    return b.sub(p, inc), new


# ---------------------------------------------------------------------------
# Adam and AdamW

ITERATIONS = TensorType(DType.i64, ())


def _adam_prepare(b: Builder, hp: Hyperparams, lr: Value,
                  shared: dict[str, Value]) -> tuple[dict[str, Value], dict[str, Value]]:
    """t = iterations + 1;  alpha = lr·sqrt(1 − beta_2^t) / (1 − beta_1^t)."""
    it = b.add(shared["iterations"], b.scalar_like(1, shared["iterations"]))
    t = b.cast(it, dtype=lr.type.dtype)
    one = _const(b, 1.0, lr)
    beta_1_power = b.pow(_const(b, float(hp["beta_1"]), lr), t)
    beta_2_power = b.pow(_const(b, float(hp["beta_2"]), lr), t)
    alpha = b.div(b.mul(lr, b.sqrt(b.sub(one, beta_2_power))), b.sub(one, beta_1_power))
    return {"iterations": it}, {"alpha": alpha}


def _adam_moments(b: Builder, hp: Hyperparams, alpha: Value, p: Value, g: Value,
                  slots: dict[str, Value]) -> tuple[Value, dict[str, Value]]:
    """The Adam step of ``p`` (already decayed, for AdamW) and the new moments."""
    m, v = slots["momentum"], slots["velocity"]
    m = b.add(m, b.mul(b.sub(g, m), _const(b, 1.0 - float(hp["beta_1"]), p)))           # m += (g − m)(1 − β1)
    v = b.add(v, b.mul(b.sub(b.square(g), v), _const(b, 1.0 - float(hp["beta_2"]), p)))  # v += (g² − v)(1 − β2)
    alpha = alpha if alpha.type.dtype == p.type.dtype else b.cast(alpha, dtype=p.type.dtype)
    step = b.div(b.mul(m, alpha), b.add(b.sqrt(v), _const(b, float(hp["epsilon"]), p)))
    return b.sub(p, step), {"momentum": m, "velocity": v}     # p − alpha·m / (sqrt(v) + ε)


adam = OPTIMIZERS["adam"]
adam.slots = lambda hp: ["momentum", "velocity"]
adam.shared_slots = {"iterations": ITERATIONS}
adam.def_prepare(_adam_prepare)


@adam.def_update
def _adam_update(b: Builder, hp: Hyperparams, lr: Value, shared: dict[str, Value],
                 p: Value, g: Value, slots: dict[str, Value]) -> tuple[Value, dict[str, Value]]:
    return _adam_moments(b, hp, shared["alpha"], p, g, slots)


adamw = OPTIMIZERS["adamw"]
adamw.slots = lambda hp: ["momentum", "velocity"]
adamw.shared_slots = {"iterations": ITERATIONS}
adamw.def_prepare(_adam_prepare)


@adamw.def_update
def _adamw_update(b: Builder, hp: Hyperparams, lr: Value, shared: dict[str, Value],
                  p: Value, g: Value, slots: dict[str, Value]) -> tuple[Value, dict[str, Value]]:
    decay = b.mul(b.mul(p, _const(b, float(hp["weight_decay"]), p)), _lr_for(b, lr, p))
    return _adam_moments(b, hp, shared["alpha"], b.sub(p, decay), g, slots)  # p −= p·wd·lr first
