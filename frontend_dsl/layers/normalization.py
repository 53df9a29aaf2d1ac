"""Normalization layers, as Keras's: ``batch_norm``, ``layer_norm``, ``group_norm``.

Each normalizes over some axes, ``(x - mean) / sqrt(var + epsilon)``, then
scales by ``gamma`` and shifts by ``beta`` (per channel: the last axis).
Statistics are two-pass in the input's dtype (f32 for f32 models): the mean
first, then the mean of squared deviations from it -- so the variance never
suffers the cancellation of ``E[x^2] - E[x]^2``, and the deviations ``x -
mean`` are shared with the normalization.  Batch norm's first pass sums
``x - moving_mean`` (a shift with no gradient), so its error follows the
distance of the batch mean from the moving mean rather than the size of the
mean (see docs/language.md for measured errors).  The variance is the biased one
(divided by the count, not count - 1), as Keras uses for normalizing and for
the moving average.

The gradient of each layer is autodiff's over these ops, so in training
mode batch norm's gradient flows through the batch statistics (the full
one, not the "moving statistics are constants" shortcut); it is checked by
finite differences in ``tests/test_stateful_layers.py``.
"""

from __future__ import annotations

from typing import Any

from compiler.diagnostics import DlTypeError
from compiler.ir.core import Value
from compiler.ir.types import TensorType

from .base import LayerCall, define_layer

_INIT_ALIASES = {"beta_initializer": "beta_init", "gamma_initializer": "gamma_init"}


def _channels(call: LayerCall, min_rank: int) -> tuple[Value, int]:
    """The input and its number of channels (its last dim, which must be static)."""
    x = call.tensor("x")
    t = x.type
    if not t.dtype.is_float or t.rank < min_rank or not isinstance(t.shape[-1], int):
        raise DlTypeError(f"{call.layer.name} needs a float input of rank >= {min_rank} whose last dim "
                          f"(the channels) is static, got {t.dsl_str()}", call.span_of("x"))
    return x, t.shape[-1]


def _gamma_beta(call: LayerCall, x: Value, channels: int) -> tuple[Value | None, Value | None]:
    """The scale ``gamma`` (ones) and offset ``beta`` (zeros), each ``[channels]``, unless the call
    says ``scale=false`` / ``center=false``."""
    t = TensorType(x.type.dtype, (channels,))
    gamma = call.param("gamma", t, call.initializer("gamma_init", {"name": "ones"})) \
        if call.bool("scale", True) else None
    beta = call.param("beta", t, call.initializer("beta_init", {"name": "zeros"})) \
        if call.bool("center", True) else None
    return gamma, beta


def _epsilon(call: LayerCall) -> float:
    epsilon = call.float("epsilon", 1e-3)
    if not epsilon > 0:
        raise DlTypeError(f"argument 'epsilon' of '{call.layer.name}' must be positive, got {epsilon:g}",
                          call.span_of("epsilon"))
    return epsilon


def _moments(call: LayerCall, x: Value, axes: tuple[int, ...], keepdims: bool,
             shift: Value | None = None) -> tuple[Value, Value, Value]:
    """``(mean, x - mean, var)`` over ``axes``, two-pass, biased variance.

    With ``shift`` (an estimate of the mean, no gradient), the first pass sums ``x - shift``:
    the rounding error of the mean is then relative to ``|mean - shift|``, not ``|mean|``."""
    if shift is not None:
        x = call.emit("sub", x, shift)
    mean = call.emit("mean", x, axes=axes, keepdims=keepdims)
    centered = call.emit("sub", x, mean)
    var = call.emit("mean", call.emit("mul", centered, centered), axes=axes, keepdims=keepdims)
    if shift is not None:
        mean = call.emit("add", mean, shift)
    return mean, centered, var


def _normalize(call: LayerCall, centered: Value, var: Value, epsilon: float,
               gamma: Value | None, beta: Value | None) -> Value:
    """``centered / sqrt(var + epsilon) * gamma + beta``; the factor ``gamma / sqrt(var +
    epsilon)`` is computed per channel (or per row) before it meets the big tensor."""
    dtype = centered.type.dtype
    inv = call.emit("reciprocal", call.emit("sqrt", call.emit("add", var, call.constant(epsilon, dtype))))
    if gamma is not None:
        inv = call.emit("mul", inv, gamma)
    y = call.emit("mul", centered, inv)
    return call.emit("add", y, beta) if beta is not None else y


# ---------------------------------------------------------------------------
# batch_norm

batch_norm = define_layer(
    "batch_norm",
    args=("x", "momentum", "epsilon", "center", "scale", "axis", "name", "beta_init", "gamma_init",
          "moving_mean_init", "moving_variance_init"),
    required=("x",), usage="batch_norm(h, momentum=0.99, epsilon=0.001)",
    aliases={**_INIT_ALIASES, "moving_mean_initializer": "moving_mean_init",
             "moving_variance_initializer": "moving_variance_init"},
    doc="Keras's ``BatchNormalization`` over the channel axis ``axis`` (default -1, the last: the "
        "features of ``[N, F]``, the channels of NHWC ``[N, H, W, C]``; ``axis=1`` for NCHW).  "
        "Training: normalizes with the batch's mean and "
        "(biased) variance over all other axes and moves the state ``moving_mean`` / "
        "``moving_variance`` towards them (``moving = moving * momentum + batch * (1 - momentum)``); "
        "inference: normalizes with the moving statistics.  Then ``* gamma + beta``.  Defaults "
        "as Keras: momentum 0.99, epsilon 0.001, gamma ones, beta zeros, moving mean zeros, "
        "moving variance ones.")


@batch_norm.def_build
def _(call: LayerCall) -> Value:
    x, axis = _channel_axis(call)
    channels = x.type.shape[axis]
    assert isinstance(channels, int)
    momentum = call.float_in("momentum", 0.99, 0.0, 1.0)
    epsilon = _epsilon(call)
    gamma, beta = _gamma_beta(call, x, channels)
    dtype = x.type.dtype
    t = TensorType(dtype, (channels,))
    moving_mean = call.state("moving_mean", t, call.initializer("moving_mean_init", {"name": "zeros"}))
    moving_var = call.state("moving_variance", t, call.initializer("moving_variance_init", {"name": "ones"}))

    rank = x.type.rank
    last = axis == rank - 1
    per_channel = (channels,) + (1,) * (rank - 1 - axis)     # a [C] vector against the axis

    def spread(v: Value) -> Value:
        return v if last else call.emit("reshape", v, shape=per_channel)

    def squeeze(v: Value) -> Value:
        return v if last else call.emit("reshape", v, shape=(channels,))

    axes = tuple(i for i in range(rank) if i != axis)
    # shifted by the moving mean: once it has moved near the data's mean, the batch mean
    # keeps its precision however far from zero the activations are
    mean, centered, var = _moments(call, x, axes, keepdims=not last, shift=spread(moving_mean))
    gamma, beta = (None if v is None else spread(v) for v in (gamma, beta))
    training = _normalize(call, centered, var, epsilon, gamma, beta)
    for state, batch in ((moving_mean, mean), (moving_var, var)):
        call.update_state(state, _moving_average(call, state, squeeze(batch), momentum))

    inference = _normalize(call, call.emit("sub", x, spread(moving_mean)), spread(moving_var), epsilon,
                           gamma, beta)
    return call.by_mode(training=training, inference=inference)


def _channel_axis(call: LayerCall) -> tuple[Value, int]:
    """The input and its channel axis (``axis``, default -1, as a non-negative index), whose
    size must be static; the input is a float tensor of rank >= 2."""
    x = call.tensor("x")
    t = x.type
    if not t.dtype.is_float or t.rank < 2:
        raise DlTypeError(f"batch_norm needs a float input of rank >= 2, got {t.dsl_str()}", call.span_of("x"))
    axis = call.int("axis", -1)
    if not -t.rank <= axis < t.rank:
        raise DlTypeError(f"argument 'axis' of 'batch_norm' must be in [{-t.rank}, {t.rank}) for "
                          f"{t.dsl_str()}, got {axis}", call.span_of("axis"))
    axis %= t.rank
    if not isinstance(t.shape[axis], int):
        raise DlTypeError(f"batch_norm needs a static size on its axis {axis} (the channels), got "
                          f"{t.dsl_str()}", call.span_of("axis" if call.has("axis") else "x"))
    return x, axis


def _moving_average(call: LayerCall, moving: Value, batch: Value, momentum: float) -> Value:
    """``moving * momentum + batch * (1 - momentum)``, as Keras."""
    dtype = moving.type.dtype
    kept = call.emit("mul", moving, call.constant(momentum, dtype))
    return call.emit("add", kept, call.emit("mul", batch, call.constant(1.0 - momentum, dtype)))


# ---------------------------------------------------------------------------
# layer_norm

layer_norm = define_layer(
    "layer_norm", args=("x", "epsilon", "center", "scale", "name", "beta_init", "gamma_init"),
    required=("x",), usage="layer_norm(h, epsilon=0.001)", aliases=_INIT_ALIASES,
    doc="Keras's ``LayerNormalization`` over the last axis: each row (sample, position) is "
        "normalized by its own mean and (biased) variance, then ``* gamma + beta`` per feature.  "
        "The same in training and at inference.  Defaults as Keras: epsilon 0.001.")


@layer_norm.def_build
def _(call: LayerCall) -> Value:
    x, channels = _channels(call, 1)
    epsilon = _epsilon(call)
    gamma, beta = _gamma_beta(call, x, channels)
    _, centered, var = _moments(call, x, (x.type.rank - 1,), keepdims=True)
    return _normalize(call, centered, var, epsilon, gamma, beta)


# ---------------------------------------------------------------------------
# group_norm

group_norm = define_layer(
    "group_norm", args=("x", "groups", "epsilon", "center", "scale", "name", "beta_init", "gamma_init"),
    required=("x",), usage="group_norm(h, groups=8)", aliases=_INIT_ALIASES,
    doc="Keras's ``GroupNormalization``: the channels (last axis, ``C``) are split into ``groups`` "
        "groups of ``C / groups``; each sample is normalized per group over its positions and the "
        "group's channels, then ``* gamma + beta`` per channel.  ``groups=1`` normalizes each "
        "sample over everything, ``groups=C`` is instance normalization.  The same in training "
        "and at inference.  Defaults as Keras: 32 groups, epsilon 0.001.")


@group_norm.def_build
def _(call: LayerCall) -> Value:
    x, channels = _channels(call, 2)
    groups = call.int("groups", 32)
    if groups <= 0 or channels % groups:
        raise DlTypeError(f"group_norm needs a number of groups that divides the {channels} channels, "
                          f"got {groups}", call.span_of("groups"))
    epsilon = _epsilon(call)
    gamma, beta = _gamma_beta(call, x, channels)
    shape: tuple[Any, ...] = x.type.shape
    grouped = call.emit("reshape", x, shape=(*shape[:-1], groups, channels // groups))
    rank = len(shape) + 1
    axes = (*range(1, rank - 2), rank - 1)          # all but the batch and the group axes
    _, centered, var = _moments(call, grouped, axes, keepdims=True)
    normalized = _normalize(call, centered, var, epsilon, None, None)
    y = call.emit("reshape", normalized, shape=shape)
    if gamma is not None:
        y = call.emit("mul", y, gamma)
    return call.emit("add", y, beta) if beta is not None else y
