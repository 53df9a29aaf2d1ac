"""Learning-rate schedules: the learning rate of each training step, as Keras computes it.

The learning rate is an argument of the compiled ``train_step`` (a runtime
scalar, see ``compiler/train_step.py``), so a schedule changes it every step
without recompiling anything::

    schedule = CosineDecay(1e-3, decay_steps=1000)
    model.fit(x, y, epochs=5, learning_rate=schedule)

A schedule is called with the number of steps applied so far (``Model.step``,
0 for the first step; Keras's ``optimizer.iterations``) and returns a
positive float.  Formulas are Keras 3's where Keras has the schedule
(``ExponentialDecay``, ``PiecewiseConstantDecay``, ``CosineDecay`` with its
linear warm-up) and PyTorch's ``OneCycleLR`` (cosine annealing) for
:class:`OneCycle`.  Every constructor checks its arguments
(:class:`~compiler.diagnostics.ArgumentValueError` naming the argument).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from compiler.diagnostics import ArgumentTypeError, ArgumentValueError


class LearningRateSchedule:
    """The base class: ``schedule(step) -> learning rate``; subclasses define :meth:`__call__`."""

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


def _positive(value: Any, what: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArgumentTypeError(f"{what} must be a number, got {value!r}")
    ok = value >= 0 if allow_zero else value > 0
    if not (math.isfinite(value) and ok):
        raise ArgumentValueError(f"{what} must be a {'non-negative' if allow_zero else 'positive'} "
                                 f"number, got {value!r}")
    return float(value)


def _steps(value: Any, what: str, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise ArgumentValueError(f"{what} must be a {'non-negative' if allow_zero else 'positive'} "
                                 f"integer, got {value!r}")
    return value


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate · decay_rate ^ (step / decay_steps)``; with ``staircase`` the
    exponent is floored, which makes it a step decay (× ``decay_rate`` every ``decay_steps``)."""

    def __init__(self, initial_learning_rate: float, decay_steps: int, decay_rate: float,
                 staircase: bool = False):
        self.initial_learning_rate = _positive(initial_learning_rate, "ExponentialDecay: initial_learning_rate")
        self.decay_steps = _steps(decay_steps, "ExponentialDecay: decay_steps")
        self.decay_rate = _positive(decay_rate, "ExponentialDecay: decay_rate")
        self.staircase = bool(staircase)

    def __call__(self, step: int) -> float:
        exponent = step / self.decay_steps
        if self.staircase:
            exponent = math.floor(exponent)
        return self.initial_learning_rate * self.decay_rate ** exponent


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` up to step ``boundaries[0]`` (inclusive), ``values[1]`` up to
    ``boundaries[1]``, ..., ``values[-1]`` after the last boundary (Keras's rule)."""

    def __init__(self, boundaries: Sequence[int], values: Sequence[float]):
        self.boundaries = [_steps(b, "PiecewiseConstantDecay: boundaries[]", allow_zero=True) for b in boundaries]
        self.values = [_positive(v, "PiecewiseConstantDecay: values[]") for v in values]
        if len(self.values) != len(self.boundaries) + 1:
            raise ArgumentValueError(f"PiecewiseConstantDecay: {len(self.boundaries)} boundaries need "
                                     f"{len(self.boundaries) + 1} values, got {len(self.values)}")
        if any(a >= b for a, b in zip(self.boundaries, self.boundaries[1:])):
            raise ArgumentValueError(f"PiecewiseConstantDecay: boundaries must increase, got {self.boundaries}")

    def __call__(self, step: int) -> float:
        for boundary, value in zip(self.boundaries, self.values):
            if step <= boundary:
                return value
        return self.values[-1]


class CosineDecay(LearningRateSchedule):
    """Cosine decay from ``initial_learning_rate`` to ``alpha`` times it over ``decay_steps``
    (then constant); with ``warmup_steps``, first a linear warm-up from
    ``initial_learning_rate`` to ``warmup_target``, which the decay then starts from.

    Step ``s`` of the decay: ``lr0 · ((1 − alpha) · 0.5 · (1 + cos(π · min(s, decay_steps) /
    decay_steps)) + alpha)``, as Keras 3's ``CosineDecay``.
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int, alpha: float = 0.0,
                 warmup_target: float | None = None, warmup_steps: int = 0):
        self.initial_learning_rate = _positive(initial_learning_rate, "CosineDecay: initial_learning_rate")
        self.decay_steps = _steps(decay_steps, "CosineDecay: decay_steps")
        self.alpha = _positive(alpha, "CosineDecay: alpha", allow_zero=True)
        if self.alpha >= 1:
            raise ArgumentValueError(f"CosineDecay: alpha must be in [0, 1), got {alpha!r}")
        self.warmup_target = None if warmup_target is None else _positive(warmup_target,
                                                                           "CosineDecay: warmup_target")
        self.warmup_steps = _steps(warmup_steps, "CosineDecay: warmup_steps", allow_zero=True)
        if self.warmup_steps and self.warmup_target is None:
            raise ArgumentValueError("CosineDecay: warmup_steps needs warmup_target (the rate the warm-up reaches)")

    def __call__(self, step: int) -> float:
        peak = self.initial_learning_rate if self.warmup_target is None else self.warmup_target
        if step < self.warmup_steps:
            return self.initial_learning_rate + (peak - self.initial_learning_rate) * step / self.warmup_steps
        fraction = min(step - self.warmup_steps, self.decay_steps) / self.decay_steps
        return peak * ((1.0 - self.alpha) * 0.5 * (1.0 + math.cos(math.pi * fraction)) + self.alpha)


class LinearWarmup(LearningRateSchedule):
    """A linear ramp from ``target / warmup_steps`` (step 0) to ``target`` over ``warmup_steps``,
    then ``after`` (a schedule, counted from the end of the warm-up) or ``target``."""

    def __init__(self, target: float, warmup_steps: int, after: LearningRateSchedule | None = None):
        self.target = _positive(target, "LinearWarmup: target")
        self.warmup_steps = _steps(warmup_steps, "LinearWarmup: warmup_steps")
        if after is not None and not callable(after):
            raise ArgumentTypeError(f"LinearWarmup: after must be a schedule, got {type(after).__name__}")
        self.after = after

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.target * (step + 1) / self.warmup_steps
        return self.after(step - self.warmup_steps) if self.after is not None else self.target


class OneCycle(LearningRateSchedule):
    """The one-cycle policy (PyTorch's ``OneCycleLR``, cosine annealing): from
    ``max_learning_rate / div_factor`` up to ``max_learning_rate`` over the first
    ``pct_start`` of ``total_steps``, then down to ``initial / final_div_factor``."""

    def __init__(self, max_learning_rate: float, total_steps: int, pct_start: float = 0.3,
                 div_factor: float = 25.0, final_div_factor: float = 1e4):
        self.max_learning_rate = _positive(max_learning_rate, "OneCycle: max_learning_rate")
        self.total_steps = _steps(total_steps, "OneCycle: total_steps")
        self.pct_start = _positive(pct_start, "OneCycle: pct_start")
        if self.pct_start >= 1:
            raise ArgumentValueError(f"OneCycle: pct_start must be in (0, 1), got {pct_start!r}")
        self.div_factor = _positive(div_factor, "OneCycle: div_factor")
        self.final_div_factor = _positive(final_div_factor, "OneCycle: final_div_factor")

    def __call__(self, step: int) -> float:
        initial = self.max_learning_rate / self.div_factor
        final = initial / self.final_div_factor
        up = float(self.pct_start * self.total_steps) - 1
        down = float(self.total_steps) - 1
        step = min(step, self.total_steps - 1)
        if step <= up:
            return _cosine_anneal(initial, self.max_learning_rate, step / up if up > 0 else 1.0)
        return _cosine_anneal(self.max_learning_rate, final, (step - up) / (down - up))


def _cosine_anneal(start: float, end: float, fraction: float) -> float:
    """From ``start`` (fraction 0) to ``end`` (fraction 1) along half a cosine."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * fraction) + 1.0)


# The names of the .dl optimizer line (``adam(lr=cosine(1e-3, decay_steps=1000))``): one
# constructor each.
SCHEDULES: dict[str, type[LearningRateSchedule]] = {
    "exponential": ExponentialDecay,
    "step": PiecewiseConstantDecay,
    "cosine": CosineDecay,
    "warmup": LinearWarmup,
    "one_cycle": OneCycle,
}


def schedule_spec(schedule: LearningRateSchedule) -> dict[str, Any]:
    """``schedule`` as plain data (its name in :data:`SCHEDULES` and its arguments), as the
    ``.dl`` optimizer line stores it in the model's attributes."""
    names = {cls: name for name, cls in SCHEDULES.items()}
    if type(schedule) not in names:
        raise ArgumentTypeError(f"{type(schedule).__name__} is not one of the named schedules ({', '.join(SCHEDULES)})")
    return {"name": names[type(schedule)],
            **{k: schedule_spec(v) if isinstance(v, LearningRateSchedule) else v for k, v in vars(schedule).items()}}


def schedule_from_spec(spec: dict[str, Any]) -> LearningRateSchedule:
    """The schedule :func:`schedule_spec` describes."""
    args = {k: schedule_from_spec(v) if isinstance(v, dict) else v for k, v in spec.items() if k != "name"}
    return SCHEDULES[spec["name"]](**args)


def check_learning_rate(value: Any, what: str) -> float | LearningRateSchedule:
    """A positive finite number (a constant rate) or a schedule; else a clear error."""
    if isinstance(value, LearningRateSchedule):
        return value
    if callable(value):
        raise ArgumentTypeError(f"{what} must be a positive number or a dlc.schedules schedule "
                                f"(a function of the step: subclass LearningRateSchedule), "
                                f"got {type(value).__name__}")
    try:
        lr = float(value)
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"{what} must be a positive number, got {value!r}") from None
    if not (math.isfinite(lr) and lr > 0):
        raise ArgumentValueError(f"{what} must be a positive number, got {value!r}")
    return lr


def scheduled_rate(schedule: LearningRateSchedule, step: int) -> float:
    """``schedule(step)``, checked: a finite number >= 0 (a decay may end at 0)."""
    value = schedule(step)
    try:
        lr = float(value)
    except (TypeError, ValueError):
        lr = math.nan
    if not (math.isfinite(lr) and lr >= 0):
        raise ArgumentValueError(f"{schedule!r} gave the learning rate {value!r} at step {step}; "
                                 "a learning rate is a finite number >= 0")
    return lr


__all__ = ["LearningRateSchedule", "ExponentialDecay", "PiecewiseConstantDecay", "CosineDecay",
           "LinearWarmup", "OneCycle", "SCHEDULES", "check_learning_rate", "scheduled_rate", "schedule_spec",
           "schedule_from_spec"]
