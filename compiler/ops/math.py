"""Elementwise math beyond the arithmetic core: special functions, rounding, integer
division, float classification.

* ``erf log1p expm1 sin cos`` (float only) compute through the polynomial code
  of ``compiler/codegen/vmath.py``; their measured error bounds are in
  ``vmath.ULP_BOUNDS`` and ``docs/ops.md``.
* ``floor ceil round`` take every numeric dtype (ints pass through unchanged, as
  in numpy 2); ``round`` is numpy's: half to even.  Their gradient is zero almost
  everywhere, so they are declared non-differentiable, as ``sign`` is.
* ``floor_div`` and ``mod`` are numpy's ``floor_divide`` and ``remainder`` for
  ints and floats: the remainder has the divisor's sign; for ints ``x // 0 =
  x % 0 = 0`` and ``MIN // -1 = MIN`` (wrapped), numpy's answers.
* ``isnan isinf`` give bool (always false for ints).

numpy has no ``erf``: its reference is the C library's ``erf`` (Python's
``math.erf``) in float64, rounded to the operand's dtype.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir.types import DType, TensorType
from .base import ELEMENTWISE, broadcast_rule, define
from .elementwise import _float_rule, _numeric_rule, _unary
from .rules import unbroadcast

# ---------------------------------------------------------------------------
# Special functions (float only)

_erf64 = np.frompyfunc(math.erf, 1, 1)


def _erf(x: np.ndarray) -> np.ndarray:
    """erf through float64 ``math.erf``, rounded once to ``x``'s dtype."""
    return np.asarray(_erf64(np.asarray(x, np.float64)), np.float64).astype(x.dtype)


erf = _unary("erf", """Elementwise error function ``2/sqrt(pi) integral_0^x exp(-t^2) dt`` (float only).

    %1 = "dl.erf"(%0) : (tensor<?x3xf32, "N">) -> tensor<?x3xf32, "N">
    """, _erf, infer=_float_rule)

log1p = _unary("log1p", """Elementwise ``log(1 + x)``, accurate for small ``x`` (float only; log1p(-1) = -inf).

    %1 = "dl.log1p"(%0) : (tensor<?x3xf32, "N">) -> tensor<?x3xf32, "N">
    """, np.log1p, infer=_float_rule)

expm1 = _unary("expm1", """Elementwise ``exp(x) - 1``, accurate for small ``x`` (float only).

    %1 = "dl.expm1"(%0) : (tensor<?x3xf32, "N">) -> tensor<?x3xf32, "N">
    """, np.expm1, infer=_float_rule)

sin = _unary("sin", """Elementwise sine (float only; sin(±inf) = nan).

    %1 = "dl.sin"(%0) : (tensor<?x3xf64, "N">) -> tensor<?x3xf64, "N">
    """, np.sin, infer=_float_rule)

cos = _unary("cos", """Elementwise cosine (float only; cos(±inf) = nan).

    %1 = "dl.cos"(%0) : (tensor<?x3xf64, "N">) -> tensor<?x3xf64, "N">
    """, np.cos, infer=_float_rule)


@erf.def_vjp
def _(b, op, ct):
    x = op.operands[0]                                  # d erf(x) = 2/sqrt(pi) exp(-x^2) dx
    slope = b.mul(b.scalar_like(2 / math.sqrt(math.pi), x), b.exp(b.neg(b.square(x))))
    return [b.mul(ct, slope)]


@log1p.def_vjp
def _(b, op, ct):
    x = op.operands[0]                                  # d log1p(x) = dx / (1 + x)
    return [b.div(ct, b.add(b.scalar_like(1.0, x), x))]


@expm1.def_vjp
def _(b, op, ct):
    y = op.result                                       # d expm1(x) = (expm1(x) + 1) dx
    return [b.mul(ct, b.add(y, b.scalar_like(1.0, y)))]


@sin.def_vjp
def _(b, op, ct):
    return [b.mul(ct, b.cos(op.operands[0]))]           # d sin(x) = cos(x) dx


@cos.def_vjp
def _(b, op, ct):
    return [b.neg(b.mul(ct, b.sin(op.operands[0])))]    # d cos(x) = -sin(x) dx


erf.def_emit(lambda e, x: e.erf(x))
log1p.def_emit(lambda e, x: e.log1p(x))
expm1.def_emit(lambda e, x: e.expm1(x))
sin.def_emit(lambda e, x: e.sin(x))
cos.def_emit(lambda e, x: e.cos(x))


# ---------------------------------------------------------------------------
# Rounding (every numeric dtype; no gradient)

floor = _unary("floor", """Elementwise round toward -inf; ints unchanged; gradient zero (not differentiable).

    %1 = "dl.floor"(%0) : (tensor<3xf32>) -> tensor<3xf32>
    """, np.floor, differentiable=False)

ceil = _unary("ceil", """Elementwise round toward +inf; ints unchanged; gradient zero (not differentiable).

    %1 = "dl.ceil"(%0) : (tensor<3xf32>) -> tensor<3xf32>
    """, np.ceil, differentiable=False)

round_ = _unary("round", """Elementwise round to the nearest integer, halves to even (numpy ``round``:
    round(2.5) = 2, round(-0.5) = -0); ints unchanged; gradient zero (not differentiable).

    %1 = "dl.round"(%0) : (tensor<3xf32>) -> tensor<3xf32>
    """, np.round, differentiable=False)

floor.def_emit(lambda e, x: e.floor(x))
ceil.def_emit(lambda e, x: e.ceil(x))
round_.def_emit(lambda e, x: e.round(x))


# ---------------------------------------------------------------------------
# Floor division and remainder (ints and floats, numpy's sign rules)


floor_div = define(
    "floor_div", operands=("lhs", "rhs"), kind=ELEMENTWISE, infer=_numeric_rule, differentiable=False,
    doc="""Elementwise floor division ``lhs // rhs`` with numpy broadcasting (numpy ``floor_divide``);
    ints: ``x // 0 = 0``, ``MIN // -1 = MIN``; floats: ``x // 0 = x / 0``.  Gradient zero (not differentiable).

    %2 = "dl.floor_div"(%0, %1) : (tensor<?x3xi64, "N">, tensor<i64>) -> tensor<?x3xi64, "N">
    """)
floor_div.def_reference(np.floor_divide)
floor_div.def_emit(lambda e, lhs, rhs: e.floor_div(lhs, rhs))

mod = define(
    "mod", operands=("lhs", "rhs"), kind=ELEMENTWISE, infer=_numeric_rule,
    doc="""Elementwise remainder ``lhs - floor(lhs / rhs) rhs`` with the sign of ``rhs`` (numpy
    ``remainder``, Python's ``%``); ints: ``x % 0 = 0``; floats: ``x % 0 = nan``.

    %2 = "dl.mod"(%0, %1) : (tensor<?x3xf32, "N">, tensor<f32>) -> tensor<?x3xf32, "N">
    """)
mod.def_reference(np.remainder)
mod.def_emit(lambda e, lhs, rhs: e.mod(lhs, rhs))


@mod.def_vjp
def _(b, op, ct):
    # d (x mod y) = dx - floor(x / y) dy  (floats; ints pass no gradient)
    x, y = op.operands
    if not x.type.dtype.is_float:
        return [None, None]
    dy = b.neg(b.mul(ct, b.floor_div(x, y)))
    return [unbroadcast(b, ct, x.type), unbroadcast(b, dy, y.type)]


# ---------------------------------------------------------------------------
# Classification (bool results)


def _classify_rule(x: TensorType) -> TensorType:
    return broadcast_rule(x).with_dtype(DType.bool)


isnan = _unary("isnan", """Elementwise ``x != x``: true where ``x`` is NaN (always false for ints and bools).

    %1 = "dl.isnan"(%0) : (tensor<?x3xf32, "N">) -> tensor<?x3xi1, "N">
    """, np.isnan, infer=_classify_rule, differentiable=False)

isinf = _unary("isinf", """Elementwise: true where ``x`` is +inf or -inf (always false for ints and bools).

    %1 = "dl.isinf"(%0) : (tensor<?x3xf32, "N">) -> tensor<?x3xi1, "N">
    """, np.isinf, infer=_classify_rule, differentiable=False)

isnan.def_emit(lambda e, x: e.isnan(x))
isinf.def_emit(lambda e, x: e.isinf(x))
