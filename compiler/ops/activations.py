"""Activation functions and ``clip``: elementwise ops whose emit rules compose the
Emitter's primitives, so each fuses into its consumer's loop nest as one expression.

Definitions follow Keras 3 (``keras.activations``), numerically stable forms:

* ``softplus(x) = log1p(exp(-|x|)) + max(x, 0)`` (= ``log(1 + e^x)``, never overflows);
* ``silu(x) = x sigmoid(x)`` (``swish`` names the same op);
* ``gelu(x)`` exact ``x/2 (1 + erf(x/sqrt 2))``, or with ``approximate=true`` the
  tanh form ``x/2 (1 + tanh(u))``, ``u = sqrt(2/pi) (x + 0.044715 x³)``, computed
  as ``x sigmoid(2u)`` (the same function, without the cancellation of
  ``1 + tanh(u)`` for negative ``x``); Keras' ``activations.gelu`` and PyTorch
  default to the exact form, whose ``1 + erf`` does cancel: for ``x < -3`` its
  error is about ``|x| 2^-53`` (``2^-24`` for f32) absolute rather than relative,
  as in Keras and PyTorch;
* ``elu(x; alpha=1) = x if x > 0 else alpha expm1(x)``;
  ``selu(x) = scale elu(x; alpha)`` with Keras' ``alpha = 1.67326...``,
  ``scale = 1.05070...``;
* ``leaky_relu(x; alpha=0.2) = x if x >= 0 else alpha x``;
* ``hard_sigmoid(x) = relu6(x + 3) / 6`` (Keras 3; Keras 2 used ``0.2 x + 0.5``
  clipped, a different slope);
* ``clip(x, lo, hi) = min(max(x, lo), hi)``, numpy's ``clip`` with tensor bounds
  that broadcast (a literal bound in ``.dl`` becomes a constant of ``x``'s dtype).

All but ``clip`` are float only.  numpy has no activation functions: each
reference is the formula above in numpy, in the operand's dtype (``softplus``
is ``np.logaddexp(0, x)``).
"""

from __future__ import annotations

import math

import numpy as np

from ..ir.types import TensorType
from .base import ELEMENTWISE, attr, define
from .elementwise import _float_rule, _numeric_rule, _sigmoid, _unary
from .rules import unbroadcast

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
GELU_TANH_K = math.sqrt(2 / math.pi)     # gelu's tanh form: tanh(K (x + C x^3))
GELU_TANH_C = 0.044715


def _scalar(x: np.ndarray, value: float) -> np.generic:
    return x.dtype.type(value)


# ---------------------------------------------------------------------------
# softplus, silu


softplus = _unary("softplus", """Elementwise ``log(1 + exp(x))``, as ``log1p(exp(-|x|)) + max(x, 0)`` (float only).

    %1 = "dl.softplus"(%0) : (tensor<?x3xf32, "N">) -> tensor<?x3xf32, "N">
    """, lambda x: np.logaddexp(_scalar(x, 0), x), infer=_float_rule)


@softplus.def_vjp
def _(b, op, ct):
    return [b.mul(ct, b.sigmoid(op.operands[0]))]      # d softplus(x) = sigmoid(x) dx


@softplus.def_emit
def _(e, x):
    return e.add(e.log1p(e.exp(e.neg(e.abs(x)))), e.relu(x))


silu = define(
    "silu", operands=("x",), kind=ELEMENTWISE, infer=_float_rule, aliases=("swish",),
    doc="""Elementwise ``x sigmoid(x)`` (float only); ``swish`` is another name for it.

    %1 = "dl.silu"(%0) : (tensor<?x3xf32, "N">) -> tensor<?x3xf32, "N">
    """)
silu.def_reference(lambda x: x * _sigmoid(x))


@silu.def_vjp
def _(b, op, ct):
    # d x s(x) = (s + x s (1 - s)) dx = s (1 + x (1 - s)) dx
    x = op.operands[0]
    s = b.sigmoid(x)
    one = b.scalar_like(1.0, x)
    return [b.mul(ct, b.mul(s, b.add(one, b.mul(x, b.sub(one, s)))))]


silu.def_emit(lambda e, x: e.mul(x, e.sigmoid(x)))


# ---------------------------------------------------------------------------
# gelu


def _gelu_tanh_inner(x):
    """``K (x + C x³)`` for numpy arrays (the tanh form's argument)."""
    return (x + x * x * x * _scalar(x, GELU_TANH_C)) * _scalar(x, GELU_TANH_K)


def _gelu_reference(x: np.ndarray, *, approximate: bool) -> np.ndarray:
    from .math import _erf

    if approximate:
        return x * _sigmoid(_gelu_tanh_inner(x) * _scalar(x, 2))
    return _scalar(x, 0.5) * x * (1 + _erf(x * _scalar(x, 1 / math.sqrt(2))))


gelu = define(
    "gelu", operands=("x",), kind=ELEMENTWISE, infer=_float_rule,
    attrs={"approximate": attr("bool", False)},
    doc="""Elementwise Gaussian error linear unit ``x/2 (1 + erf(x/sqrt 2))``; with ``approximate``
    the tanh form ``x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``, computed as ``x sigmoid(2 sqrt(2/pi)
    (x + 0.044715 x^3))`` (float only).

    %1 = "dl.gelu"(%0) {approximate = false} : (tensor<?x3xf32, "N">) -> tensor<?x3xf32, "N">
    """)
gelu.def_reference(_gelu_reference)


@gelu.def_vjp
def _(b, op, ct):
    x = op.operands[0]
    half, one = b.scalar_like(0.5, x), b.scalar_like(1.0, x)
    if op.attrs["approximate"]:
        # t = tanh(K (x + C x^3)):  d = (1 + t)/2 + x/2 (1 - t^2) K (1 + 3 C x^2)
        x2 = b.square(x)
        inner = b.mul(b.scalar_like(GELU_TANH_K, x), b.add(x, b.mul(b.scalar_like(GELU_TANH_C, x), b.mul(x2, x))))
        t = b.tanh(inner)
        dinner = b.mul(b.scalar_like(GELU_TANH_K, x), b.add(one, b.mul(b.scalar_like(3 * GELU_TANH_C, x), x2)))
        slope = b.add(b.mul(half, b.add(one, t)),
                      b.mul(b.mul(half, x), b.mul(b.sub(one, b.square(t)), dinner)))
    else:
        # d = Phi(x) + x phi(x),  Phi(x) = (1 + erf(x/sqrt 2))/2,  phi(x) = exp(-x^2/2)/sqrt(2 pi)
        cdf = b.mul(half, b.add(one, b.erf(b.mul(x, b.scalar_like(1 / math.sqrt(2), x)))))
        pdf = b.mul(b.scalar_like(1 / math.sqrt(2 * math.pi), x), b.exp(b.mul(b.scalar_like(-0.5, x), b.square(x))))
        slope = b.add(cdf, b.mul(x, pdf))
    return [b.mul(ct, slope)]


@gelu.def_emit
def _(e, x):
    if e.attrs["approximate"]:
        inner = e.mul(e.add(x, e.mul(e.mul(e.mul(x, x), x), GELU_TANH_C)), GELU_TANH_K)
        return e.mul(x, e.sigmoid(e.mul(inner, 2.0)))
    return e.mul(e.mul(x, 0.5), e.add(e.erf(e.mul(x, 1 / math.sqrt(2))), 1.0))


# ---------------------------------------------------------------------------
# elu, selu, leaky_relu


def _elu_reference(x: np.ndarray, *, alpha: float) -> np.ndarray:
    return np.where(x > 0, x, _scalar(x, alpha) * np.expm1(x)).astype(x.dtype)


elu = define(
    "elu", operands=("x",), kind=ELEMENTWISE, infer=_float_rule, attrs={"alpha": attr("float", 1.0)},
    doc="""Elementwise exponential linear unit ``x if x > 0 else alpha (exp(x) - 1)`` (default
    ``alpha = 1``; float only).

    %1 = "dl.elu"(%0) {alpha = 1.0 : f64} : (tensor<?x3xf32, "N">) -> tensor<?x3xf32, "N">
    """)
elu.def_reference(_elu_reference)

selu = _unary("selu", """Elementwise scaled ELU ``scale elu(x; alpha)`` with Keras' constants
    ``alpha = 1.6732632423543772``, ``scale = 1.0507009873554805`` (float only).

    %1 = "dl.selu"(%0) : (tensor<?x3xf32, "N">) -> tensor<?x3xf32, "N">
    """, lambda x: _scalar(x, SELU_SCALE) * _elu_reference(x, alpha=SELU_ALPHA), infer=_float_rule)


def _elu_slope(b, x, alpha: float, scale: float):
    """``scale`` where ``x > 0``, ``scale alpha exp(x)`` elsewhere: d elu / dx times ``scale``."""
    negative_side = b.mul(b.scalar_like(scale * alpha, x), b.exp(x))
    return b.select(b.gt(x, b.scalar_like(0.0, x)), b.scalar_like(scale, x), negative_side)


@elu.def_vjp
def _(b, op, ct):
    return [b.mul(ct, _elu_slope(b, op.operands[0], op.attrs["alpha"], 1.0))]


@selu.def_vjp
def _(b, op, ct):
    return [b.mul(ct, _elu_slope(b, op.operands[0], SELU_ALPHA, SELU_SCALE))]


def _emit_elu(e, x, alpha: float):
    return e.select(e.cmp("gt", x, 0.0), x, e.mul(e.expm1(x), alpha))


elu.def_emit(lambda e, x: _emit_elu(e, x, e.attrs["alpha"]))
selu.def_emit(lambda e, x: e.mul(_emit_elu(e, x, SELU_ALPHA), SELU_SCALE))

leaky_relu = define(
    "leaky_relu", operands=("x",), kind=ELEMENTWISE, infer=_float_rule, attrs={"alpha": attr("float", 0.2)},
    doc="""Elementwise ``x if x >= 0 else alpha x`` (default ``alpha = 0.2``, Keras'
    ``negative_slope``; float only).

    %1 = "dl.leaky_relu"(%0) {alpha = 0.2 : f64} : (tensor<?x3xf32, "N">) -> tensor<?x3xf32, "N">
    """)
leaky_relu.def_reference(lambda x, *, alpha: np.where(x >= 0, x, _scalar(x, alpha) * x).astype(x.dtype))


@leaky_relu.def_vjp
def _(b, op, ct):
    x = op.operands[0]                        # d = dx where x >= 0, alpha dx elsewhere
    return [b.select(b.ge(x, b.scalar_like(0.0, x)), ct, b.mul(ct, b.scalar_like(op.attrs["alpha"], ct)))]


leaky_relu.def_emit(lambda e, x: e.select(e.cmp("ge", x, 0.0), x, e.mul(x, e.attrs["alpha"])))


# ---------------------------------------------------------------------------
# hard_sigmoid


def _hard_sigmoid(x: np.ndarray) -> np.ndarray:
    relu6 = np.minimum(np.maximum(x + _scalar(x, 3), _scalar(x, 0)), _scalar(x, 6))
    return relu6 / _scalar(x, 6)


hard_sigmoid = _unary("hard_sigmoid", """Elementwise ``relu6(x + 3) / 6 = clip((x + 3) / 6, 0, 1)``
    (Keras 3; float only).

    %1 = "dl.hard_sigmoid"(%0) : (tensor<?x3xf32, "N">) -> tensor<?x3xf32, "N">
    """, _hard_sigmoid, infer=_float_rule)


@hard_sigmoid.def_vjp
def _(b, op, ct):
    # d = dx / 6 on -3 < x < 3, 0 outside
    x = op.operands[0]
    inside = b.logical_and(b.gt(x, b.scalar_like(-3.0, x)), b.lt(x, b.scalar_like(3.0, x)))
    return [b.select(inside, b.mul(ct, b.scalar_like(1 / 6, ct)), b.scalar_like(0.0, ct))]


@hard_sigmoid.def_emit
def _(e, x):
    return e.div(e.min(e.max(e.add(x, 3.0), 0.0), 6.0), 6.0)


# ---------------------------------------------------------------------------
# clip


def _clip_rule(x: TensorType, lo: TensorType, hi: TensorType) -> TensorType:
    return _numeric_rule(x, lo, hi)


clip = define(
    "clip", operands=("x", "lo", "hi"), kind=ELEMENTWISE, infer=_clip_rule,
    doc="""Elementwise ``min(max(x, lo), hi)`` (numpy ``clip``): all three broadcast; NaN in any
    operand gives NaN; where ``lo > hi`` the result is ``hi``.

    %3 = "dl.clip"(%0, %1, %2) : (tensor<?x3xf32, "N">, tensor<f32>, tensor<f32>) -> tensor<?x3xf32, "N">
    """)
clip.def_reference(lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi))


@clip.def_vjp
def _(b, op, ct):
    # out = min(max(x, lo), hi), ties as maximum/minimum give them (to the first operand):
    # dx where lo <= x and max(x, lo) <= hi; dlo where x < lo <= hi; dhi where max(x, lo) > hi.
    x, lo, hi = op.operands
    if not x.type.dtype.is_float:
        return [None, None, None]
    zero = b.scalar_like(0.0, ct)
    below_hi = b.le(b.maximum(x, lo), hi)
    to_x = b.logical_and(b.ge(x, lo), below_hi)
    to_lo = b.logical_and(b.lt(x, lo), below_hi)
    return [unbroadcast(b, b.select(to_x, ct, zero), x.type),
            unbroadcast(b, b.select(to_lo, ct, zero), lo.type),
            unbroadcast(b, b.select(below_hi, zero, ct), hi.type)]


clip.def_emit(lambda e, x, lo, hi: e.min(e.max(x, lo), hi))
