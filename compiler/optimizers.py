"""The optimizers a model can declare: names, hyperparameters, Keras defaults, update rules.

Each :class:`OptimizerDef` carries everything about one optimizer: its
hyperparameters with Keras's defaults, the state it keeps, and its update rule
written in dl ops through a :class:`~compiler.ir.builder.Builder`.  The
training step (``compiler/train_step.py``) calls the rule once per parameter,
so forward, backward and update compile into one native function.

The formulas are Keras 3's (``keras/src/optimizers/*.py``), with ``g`` the
gradient, ``lr`` the learning rate and ``t`` the 1-based step count:

- **sgd**: without momentum ``p -= lr·g`` -- for a gradient that is a scatter of rows
  into zeros (an embedding's), only the rows the batch touched, in place (see
  :func:`sparse_sgd_rows`); with momentum
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
- **adamw**: Adam with ``weight_decay`` 0.004 by default.
- **adagrad** (accumulators start at ``initial_accumulator_value``),
  **adadelta**, **adamax**, **nadam** (its shared ``u_product`` starts at 1),
  **lion**: Keras 3's rules, written out by each
  update rule below and in docs/training.md.

Every optimizer also takes Keras's base-optimizer options
(:data:`COMMON_HYPERPARAMS`, off unless given): ``weight_decay`` (decoupled:
``p -= p·weight_decay·lr`` before the update), and one of ``clipnorm``
(each gradient scaled to at most that L2 norm: ``g·c / max(‖g‖, c)``),
``global_clipnorm`` (every gradient scaled by ``c / max(‖all g‖, c)``) or
``clipvalue`` (each element clipped to ``[−c, c]``), applied to the
gradients first (:func:`clip_gradients`, :func:`decay_weight`).

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

from .ir import dims
from .ir.builder import Builder
from .ir.core import Value
from .ir.types import Dim, DType, TensorType
from .ops.rules import zeros

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
    # starting values of slots that do not start at zero (Adagrad's accumulator)
    slot_init: Callable[[Hyperparams], dict[str, float]] = lambda hp: {}

    def resolve(self, given: dict[str, float | bool]) -> dict[str, float | bool]:
        """Hyperparameters with aliases applied and defaults filled (the common options
        only when given).

        Raises ``KeyError`` naming an unknown hyperparameter.
        """
        out = dict(self.hyperparams)
        for key, value in given.items():
            key = self.aliases.get(key, key)
            if self.default(key) is None:
                raise KeyError(key)
            out[key] = value
        return out

    def default(self, key: str) -> float | bool | None:
        """The default of hyperparameter ``key`` (an alias is resolved), None if it has none."""
        key = self.aliases.get(key, key)
        return self.hyperparams.get(key, COMMON_HYPERPARAMS.get(key))

    def names(self) -> list[str]:
        """Every hyperparameter this optimizer takes: its own, then the common options."""
        return [*self.hyperparams, *(k for k in COMMON_HYPERPARAMS if k not in self.hyperparams)]

    def check(self, key: str, value: float | bool) -> str | None:
        """Why ``value`` is not a valid setting of hyperparameter ``key``, or None if it is.

        ``key`` may be an alias (``lr``).  Ranges: :data:`HYPERPARAM_RANGES`.
        """
        key = self.aliases.get(key, key)
        if isinstance(self.default(key), bool):
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
    "initial_accumulator_value": (lambda v: v >= 0, "a number >= 0"),
    "clipnorm": (lambda v: v >= 0, "a number >= 0 (0: off)"),
    "global_clipnorm": (lambda v: v >= 0, "a number >= 0 (0: off)"),
    "clipvalue": (lambda v: v >= 0, "a number >= 0 (0: off)"),
}

# Keras's base-optimizer options, which every optimizer takes; 0 is off.
COMMON_HYPERPARAMS: dict[str, float | bool] = {
    "weight_decay": 0.0, "clipnorm": 0.0, "global_clipnorm": 0.0, "clipvalue": 0.0,
}
CLIPPING = ("clipnorm", "global_clipnorm", "clipvalue")


def clipping_problem(hp: Hyperparams) -> str | None:
    """Why these hyperparameters cannot be used together (Keras: one kind of clipping)."""
    given = [k for k in CLIPPING if float(hp.get(k, 0.0)) > 0]
    return None if len(given) <= 1 else f"give one of {', '.join(CLIPPING)}, not {' and '.join(given)}"


def clip_gradients(b: Builder, hp: Hyperparams, grads: list[Value]) -> list[Value]:
    """The gradients after the clipping ``hp`` asks for (Keras 3's ``_clip_gradients``)."""
    clipnorm, global_clipnorm = float(hp.get("clipnorm", 0.0)), float(hp.get("global_clipnorm", 0.0))
    clipvalue = float(hp.get("clipvalue", 0.0))
    if clipnorm > 0:                                   # g·c / max(‖g‖, c), each tensor
        return [_scale_to_norm(b, g, b.sqrt(b.sum(b.square(g))), clipnorm) for g in grads]
    if global_clipnorm > 0 and grads:                  # g·c / max(‖(g₁, g₂, ...)‖, c)
        squares = [b.sum(b.square(g)) for g in grads]
        total = squares[0]
        for sq in squares[1:]:
            total = b.add(total, sq if sq.type.dtype == total.type.dtype else b.cast(sq, dtype=total.type.dtype))
        norm = b.sqrt(total)
        return [_scale_to_norm(b, g, norm if norm.type.dtype == g.type.dtype else b.cast(norm, dtype=g.type.dtype),
                               global_clipnorm) for g in grads]
    if clipvalue > 0:                                  # min(max(g, −c), c)
        return [b.minimum(b.maximum(g, _const(b, -clipvalue, g)), _const(b, clipvalue, g)) for g in grads]
    return grads


def _scale_to_norm(b: Builder, g: Value, norm: Value, c: float) -> Value:
    return b.div(b.mul(g, _const(b, c, g)), b.maximum(norm, _const(b, c, norm)))


def decay_weight(b: Builder, hp: Hyperparams, lr: Value, p: Value) -> Value:
    """``p − p·weight_decay·lr`` (decoupled weight decay, before the update), or ``p``."""
    wd = float(hp.get("weight_decay", 0.0))
    if wd == 0 or not p.type.dtype.is_float:
        return p
    return b.sub(p, b.mul(b.mul(p, _const(b, wd, p)), _lr_for(b, lr, p)))

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
        OptimizerDef("adagrad", {"learning_rate": 0.001, "initial_accumulator_value": 0.1, "epsilon": 1e-7},
                     "Adagrad: divide by the root of the sum of all squared gradients so far."),
        OptimizerDef("adadelta", {"learning_rate": 0.001, "rho": 0.95, "epsilon": 1e-7},
                     "Adadelta: steps scaled by running RMS of updates over running RMS of gradients."),
        OptimizerDef("adamax", {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
                     "Adamax: Adam with the infinity norm in place of the second moment."),
        OptimizerDef("nadam", {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
                     "Nadam: Adam with Nesterov momentum (Dozat's momentum schedule)."),
        OptimizerDef("lion", {"learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.99},
                     "Lion: the sign of an interpolated momentum."),
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


def sparse_sgd_rows(b: Builder, p: Value, g: Value, lr: Value) -> Value | None:
    """``p − lr·g`` touching only the rows of ``p`` the batch read, when ``g`` is
    ``scatter_add(zeros, ids, ct, axis=0)`` (an embedding table's gradient); None otherwise.

    Bit-identical to the dense update: each distinct id's gradient row is summed in the
    dense scatter's order (into a table with one row per batch position, at the first
    position holding that id: ``scatter_min`` of the positions), then the first position
    adds ``−0.0 − G·lr`` to the parameter row -- ``p + (−0.0 − x)`` is ``p − x`` exactly,
    signed zeros and a NaN's sign included -- and every other position of that id adds
    ``−0.0``, which changes nothing; untouched rows keep ``p`` (the dense ``p − lr·0``).
    The scatter writes the parameter in place, so a step costs the batch's rows, not the
    table.  Used where the batch's positions can be counted as one dim (at most one
    symbolic dim in the ids' shape)."""
    owner = g.owner
    if owner is None or owner.name != "scatter_add" or owner.attrs["axis"] % g.type.rank != 0:
        return None
    base, ids, ct = owner.operands
    count = _positions(ids.type.shape)
    if not _is_zeros(base) or count is None:
        return None
    rank, rest = ids.type.rank, p.type.shape[1:]
    flat = _flat_positions(b, ids)
    first = b.scatter_min(b.broadcast_to(b.constant(2 ** 62, DType.i64), shape=(p.type.shape[0],)),
                          ids, flat, axis=0)               # each id's first position
    slot = b.gather(first, ids, axis=0)
    rows = b.scatter_add(zeros(b, TensorType(g.type.dtype, (count, *rest))), slot, ct, axis=0)
    step = b.mul(b.gather(rows, flat, axis=0), lr)         # G·lr, at every position of the id
    is_first = b.eq(slot, flat)
    if rest:
        is_first = b.expand_dims(is_first, axis=tuple(range(rank, rank + len(rest))))
    nothing = b.constant(-0.0, g.type.dtype)
    return b.scatter_add(p, ids, b.where(is_first, b.sub(nothing, step), nothing), axis=0)


def _is_zeros(v: Value) -> bool:
    """Whether ``v`` is +0.0 everywhere: a scalar constant 0, possibly broadcast."""
    owner = v.owner
    if owner is not None and owner.name == "broadcast_to":
        owner = owner.operands[0].owner
    if owner is None or owner.name != "constant":
        return False
    value = owner.attrs["value"]
    return getattr(value, "ndim", 0) == 0 and float(value) == 0.0 and math.copysign(1.0, float(value)) > 0


def _positions(shape: tuple[Dim, ...]) -> Dim | None:
    """The number of elements of ``shape`` as one dim, or None (a product of two symbols)."""
    static = math.prod(d for d in shape if isinstance(d, int))
    symbolic = [d for d in shape if not isinstance(d, int)]
    if len(symbolic) > 1:
        return None
    return dims.scale(symbolic[0], static) if symbolic else static


def _flat_positions(b: Builder, ids: Value) -> Value:
    """The row-major position of every element of ``ids`` (i64, ``ids``'s shape)."""
    shape = ids.type.shape
    flat = b.iota(shape=shape, axis=len(shape) - 1, dtype=DType.i64)
    stride: Value | None = None
    for axis in range(len(shape) - 2, -1, -1):
        size = shape[axis + 1]
        extent = (b.constant(size, DType.i64) if isinstance(size, int)
                  else b.dim_size(ids, axis=axis + 1, dtype=DType.i64))
        stride = extent if stride is None else b.mul(stride, extent)
        flat = b.add(flat, b.mul(b.iota(shape=shape, axis=axis, dtype=DType.i64), stride))
    return flat

sgd = OPTIMIZERS["sgd"]
sgd.slots = lambda hp: ["momentum"] if float(hp["momentum"]) != 0.0 else []


@sgd.def_update
def _sgd_update(b: Builder, hp: Hyperparams, lr: Value, shared: dict[str, Value],
                p: Value, g: Value, slots: dict[str, Value]) -> tuple[Value, dict[str, Value]]:
    lr = _lr_for(b, lr, p)
    if float(hp["momentum"]) == 0.0:
        sparse = sparse_sgd_rows(b, p, g, lr)
        if sparse is not None:
            return sparse, {}
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


adamw.def_update(_adam_update)      # the decay is every optimizer's (decay_weight), 0.004 by default


# ---------------------------------------------------------------------------
# Adagrad, Adadelta, Adamax, Lion (Keras 3)

adagrad = OPTIMIZERS["adagrad"]
adagrad.slots = lambda hp: ["accumulator"]
adagrad.slot_init = lambda hp: {"accumulator": float(hp["initial_accumulator_value"])}


@adagrad.def_update
def _adagrad_update(b: Builder, hp: Hyperparams, lr: Value, shared: dict[str, Value],
                    p: Value, g: Value, slots: dict[str, Value]) -> tuple[Value, dict[str, Value]]:
    acc = b.add(slots["accumulator"], b.square(g))                                   # acc += g²
    step = b.div(b.mul(_lr_for(b, lr, p), g), b.sqrt(b.add(acc, _const(b, float(hp["epsilon"]), p))))
    return b.sub(p, step), {"accumulator": acc}                                      # p − lr·g / sqrt(acc + ε)


adadelta = OPTIMIZERS["adadelta"]
adadelta.slots = lambda hp: ["accumulated_grad", "accumulated_delta_var"]


@adadelta.def_update
def _adadelta_update(b: Builder, hp: Hyperparams, lr: Value, shared: dict[str, Value],
                     p: Value, g: Value, slots: dict[str, Value]) -> tuple[Value, dict[str, Value]]:
    rho, eps = float(hp["rho"]), _const(b, float(hp["epsilon"]), p)
    acc_g = b.add(b.mul(_const(b, rho, p), slots["accumulated_grad"]),
                  b.mul(_const(b, 1.0 - rho, p), b.square(g)))                        # a_g = ρ·a_g + (1 − ρ)·g²
    delta = b.neg(b.div(b.mul(b.sqrt(b.add(slots["accumulated_delta_var"], eps)), g),
                        b.sqrt(b.add(acc_g, eps))))                                  # δ = −rms(a_δ)·g / rms(a_g)
    acc_d = b.add(b.mul(_const(b, rho, p), slots["accumulated_delta_var"]),
                  b.mul(_const(b, 1.0 - rho, p), b.square(delta)))                    # a_δ = ρ·a_δ + (1 − ρ)·δ²
    return b.add(p, b.mul(_lr_for(b, lr, p), delta)), {"accumulated_grad": acc_g, "accumulated_delta_var": acc_d}


adamax = OPTIMIZERS["adamax"]
adamax.slots = lambda hp: ["momentum", "norm"]
adamax.shared_slots = {"iterations": ITERATIONS}


@adamax.def_prepare
def _adamax_prepare(b: Builder, hp: Hyperparams, lr: Value,
                    shared: dict[str, Value]) -> tuple[dict[str, Value], dict[str, Value]]:
    """t = iterations + 1;  step size lr / (1 − beta_1^t)."""
    it = b.add(shared["iterations"], b.scalar_like(1, shared["iterations"]))
    t = b.cast(it, dtype=lr.type.dtype)
    correction = b.sub(_const(b, 1.0, lr), b.pow(_const(b, float(hp["beta_1"]), lr), t))
    return {"iterations": it}, {"alpha": b.div(lr, correction)}


@adamax.def_update
def _adamax_update(b: Builder, hp: Hyperparams, lr: Value, shared: dict[str, Value],
                   p: Value, g: Value, slots: dict[str, Value]) -> tuple[Value, dict[str, Value]]:
    m = b.add(slots["momentum"], b.mul(b.sub(g, slots["momentum"]),
                                        _const(b, 1.0 - float(hp["beta_1"]), p)))     # m += (g − m)(1 − β1)
    u = b.maximum(b.mul(_const(b, float(hp["beta_2"]), p), slots["norm"]), b.abs(g))  # u = max(β2·u, |g|)
    alpha = shared["alpha"] if shared["alpha"].type.dtype == p.type.dtype else b.cast(shared["alpha"],
                                                                                       dtype=p.type.dtype)
    step = b.div(b.mul(alpha, m), b.add(u, _const(b, float(hp["epsilon"]), p)))
    return b.sub(p, step), {"momentum": m, "norm": u}                  # p − lr·m / ((1 − β1^t)(u + ε))


lion = OPTIMIZERS["lion"]
lion.slots = lambda hp: ["momentum"]


@lion.def_update
def _lion_update(b: Builder, hp: Hyperparams, lr: Value, shared: dict[str, Value],
                 p: Value, g: Value, slots: dict[str, Value]) -> tuple[Value, dict[str, Value]]:
    b1, b2, m = float(hp["beta_1"]), float(hp["beta_2"]), slots["momentum"]
    direction = b.sign(b.add(b.mul(m, _const(b, b1, p)), b.mul(g, _const(b, 1.0 - b1, p))))
    new_m = b.add(b.mul(m, _const(b, b2, p)), b.mul(g, _const(b, 1.0 - b2, p)))       # m = β2·m + (1 − β2)·g
    return b.sub(p, b.mul(_lr_for(b, lr, p), direction)), {"momentum": new_m}  # p − lr·sign(β1·m + (1 − β1)·g)


nadam = OPTIMIZERS["nadam"]
nadam.slots = lambda hp: ["momentum", "velocity"]
nadam.shared_slots = {"iterations": ITERATIONS, "u_product": TensorType(DType.f32, ())}
nadam.slot_init = lambda hp: {"u_product": 1.0}


@nadam.def_prepare
def _nadam_prepare(b: Builder, hp: Hyperparams, lr: Value,
                   shared: dict[str, Value]) -> tuple[dict[str, Value], dict[str, Value]]:
    """t = iterations + 1;  u_t = β1·(1 − 0.5·0.96^t), u_{t+1} likewise;  the product of the
    u's so far (shared, starting at 1) times u_t;  β2^t."""
    it = b.add(shared["iterations"], b.scalar_like(1, shared["iterations"]))
    t = b.cast(it, dtype=lr.type.dtype)
    beta_1, one, half = _const(b, float(hp["beta_1"]), lr), _const(b, 1.0, lr), _const(b, 0.5, lr)

    def u(step: Value) -> Value:                 # β1·(1 − 0.5·0.96^step)
        return b.mul(beta_1, b.sub(one, b.mul(half, b.pow(_const(b, 0.96, lr), step))))
    u_t, u_next = u(t), u(b.add(t, one))
    product = shared["u_product"] if shared["u_product"].type.dtype == lr.type.dtype else \
        b.cast(shared["u_product"], dtype=lr.type.dtype)
    u_product = b.mul(product, u_t)
    new_product = u_product if u_product.type.dtype == shared["u_product"].type.dtype else \
        b.cast(u_product, dtype=shared["u_product"].type.dtype)
    return {"iterations": it, "u_product": new_product}, {
        "u_t": u_t, "u_next": u_next, "u_product": u_product, "u_product_next": b.mul(u_product, u_next),
        "beta_2_power": b.pow(_const(b, float(hp["beta_2"]), lr), t), "lr": lr}


@nadam.def_update
def _nadam_update(b: Builder, hp: Hyperparams, lr: Value, shared: dict[str, Value],
                  p: Value, g: Value, slots: dict[str, Value]) -> tuple[Value, dict[str, Value]]:
    aux = {k: v if v.type.dtype == p.type.dtype else b.cast(v, dtype=p.type.dtype) for k, v in shared.items()}
    one = _const(b, 1.0, p)
    m = b.add(slots["momentum"], b.mul(b.sub(g, slots["momentum"]), _const(b, 1.0 - float(hp["beta_1"]), p)))
    v = b.add(slots["velocity"], b.mul(b.sub(b.square(g), slots["velocity"]), _const(b, 1.0 - float(hp["beta_2"]), p)))
    # m̂ = u_{t+1}·m / (1 − Πu·u_{t+1}) + (1 − u_t)·g / (1 − Πu);  v̂ = v / (1 − β2^t)
    m_hat = b.add(b.div(b.mul(aux["u_next"], m), b.sub(one, aux["u_product_next"])),
                  b.div(b.mul(b.sub(one, aux["u_t"]), g), b.sub(one, aux["u_product"])))
    v_hat = b.div(v, b.sub(one, aux["beta_2_power"]))
    step = b.div(b.mul(m_hat, aux["lr"]), b.add(b.sqrt(v_hat), _const(b, float(hp["epsilon"]), p)))
    return b.sub(p, step), {"momentum": m, "velocity": v}                   # p − m̂·lr / (sqrt(v̂) + ε)
