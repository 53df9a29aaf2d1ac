"""Elementwise ops: numpy broadcasting, one scalar/vector emitter each.

Binary arithmetic (``add sub mul div pow maximum minimum``) takes two operands
of one dtype and broadcasts them as numpy does; comparisons do the same and
give ``bool``; ``select`` broadcasts all three operands.  ``div`` and the
transcendental unary ops (``exp log sqrt tanh sigmoid reciprocal``) take float
operands only (integer division is ``floor_div``, in ``math.py``); ``pow`` takes
ints too.  ``neg abs relu square sign`` work on every numeric dtype.

Every op here has an ``emit`` rule written against the codegen ``Emitter``
(``compiler/codegen/emitter.py``), which works on scalars and vectors alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..ir.types import DType, TensorType
from .base import ELEMENTWISE, OpDef, ShapeError, broadcast_rule, broadcast_shapes, define, required
from .rules import unbroadcast

# ---------------------------------------------------------------------------
# Shape rules


def _numeric_rule(*types: TensorType, **_attrs: Any) -> TensorType:
    """Same dtype, numpy broadcasting, any dtype but bool."""
    out = broadcast_rule(*types)
    if out.dtype is DType.bool:
        raise ShapeError("expects numeric operands, got bool")
    return out


def _float_rule(*types: TensorType, **_attrs: Any) -> TensorType:
    """Same dtype, numpy broadcasting, f32 or f64 only."""
    out = broadcast_rule(*types)
    if not out.dtype.is_float:
        raise ShapeError(f"expects float operands (f32 or f64), got {out.dtype.dsl_name}; "
                         "cast the operand first")
    return out


def _compare_rule(*types: TensorType, **_attrs: Any) -> TensorType:
    """Same dtype, numpy broadcasting; the result is bool."""
    return broadcast_rule(*types).with_dtype(DType.bool)


def _logical_rule(*types: TensorType, **_attrs: Any) -> TensorType:
    """bool operands, numpy broadcasting."""
    for t in types:
        if t.dtype is not DType.bool:
            raise ShapeError(f"expects bool operands, got {t.dsl_str()}")
    return broadcast_rule(*types)


def _binary(name: str, doc: str, reference: Callable, infer: Callable = _numeric_rule,
            differentiable: bool = True) -> OpDef:
    """Define a broadcasting binary elementwise op with its numpy reference."""
    op = define(name, operands=("lhs", "rhs"), kind=ELEMENTWISE, infer=infer, doc=doc,
                differentiable=differentiable)
    op.def_reference(reference)
    return op


def _unary(name: str, doc: str, reference: Callable, infer: Callable = _numeric_rule,
           differentiable: bool = True) -> OpDef:
    """Define a unary elementwise op with its numpy reference."""
    op = define(name, operands=("x",), kind=ELEMENTWISE, infer=infer, doc=doc,
                differentiable=differentiable)
    op.def_reference(reference)
    return op


# ---------------------------------------------------------------------------
# Binary arithmetic

add = define(
    "add", operands=("lhs", "rhs"), kind=ELEMENTWISE, infer=_numeric_rule,
    doc="""Elementwise sum with numpy broadcasting.

    %2 = "dl.add"(%0, %1) : (tensor<?x512xf32, "N">, tensor<512xf32>) -> tensor<?x512xf32, "N">
    """)


@add.def_reference
def _(lhs, rhs):
    return np.add(lhs, rhs)


@add.def_vjp
def _(b, op, ct):
    # d(x + y) = dx + dy; broadcasting is undone by summing over broadcast axes.
    x, y = op.operands
    return [unbroadcast(b, ct, x.type), unbroadcast(b, ct, y.type)]


@add.def_emit
def _(e, lhs, rhs):
    return e.add(lhs, rhs)


sub = _binary("sub", """Elementwise difference ``lhs - rhs`` with numpy broadcasting.

    %2 = "dl.sub"(%0, %1) : (tensor<4x3xf32>, tensor<3xf32>) -> tensor<4x3xf32>
    """, np.subtract)

mul = _binary("mul", """Elementwise product with numpy broadcasting.

    %2 = "dl.mul"(%0, %1) : (tensor<?x3xf32, "N">, tensor<f32>) -> tensor<?x3xf32, "N">
    """, np.multiply)

div = _binary("div", """Elementwise quotient ``lhs / rhs`` (float dtypes only; IEEE: x/0 = ±inf).

    %2 = "dl.div"(%0, %1) : (tensor<4x3xf64>, tensor<4x1xf64>) -> tensor<4x3xf64>
    """, np.divide, infer=_float_rule)


def _power(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """numpy ``power``; for ints a negative exponent gives the integer part of the true
    power (1 for 1, ±1 for -1, else 0, ``0 ** -n`` included) where numpy raises."""
    if lhs.dtype.kind == "f":
        return np.power(lhs, rhs)
    negative = rhs < 0
    power = np.power(lhs, np.where(negative, 0, rhs).astype(rhs.dtype))
    one = lhs.dtype.type(1)
    inverse = np.where(lhs == 1, one, np.where(lhs == -1, np.where(rhs % 2 == 0, one, -one), 0))
    return np.where(negative, inverse, power).astype(power.dtype)


pow_ = _binary("pow", """Elementwise power ``lhs ** rhs`` (numpy ``power``): floats, and ints (wrapping
    as numpy's; a negative integer exponent gives the integer part of the true power: 1 for
    ``1``, ±1 for ``-1``, 0 otherwise, where numpy raises).  Differentiable for floats.

    %2 = "dl.pow"(%0, %1) : (tensor<3xf32>, tensor<f32>) -> tensor<3xf32>
    """, _power)

def ieee_maximum(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """numpy's ``maximum`` (NaN propagates) with ``+0.0 > -0.0``, as IEEE 754-2019's
    ``maximum`` and LLVM's ``llvm.maximum`` (native code) have it: on equal zeros numpy
    returns its second operand, which would make the sign depend on the operand order."""
    out = np.maximum(lhs, rhs)
    if out.dtype.kind != "f":
        return out
    return np.where((lhs == 0) & (rhs == 0), np.where(np.signbit(lhs), rhs, lhs), out)


def ieee_minimum(lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """numpy's ``minimum`` (NaN propagates) with ``-0.0 < +0.0`` (see :func:`ieee_maximum`)."""
    out = np.minimum(lhs, rhs)
    if out.dtype.kind != "f":
        return out
    return np.where((lhs == 0) & (rhs == 0), np.where(np.signbit(lhs), lhs, rhs), out)


maximum = _binary("maximum", """Elementwise maximum with numpy broadcasting; NaN propagates,
    and ``maximum(-0.0, 0.0) = 0.0`` in either order.

    %2 = "dl.maximum"(%0, %1) : (tensor<?x3xf32, "N">, tensor<f32>) -> tensor<?x3xf32, "N">
    """, ieee_maximum)

minimum = _binary("minimum", """Elementwise minimum with numpy broadcasting; NaN propagates,
    and ``minimum(-0.0, 0.0) = -0.0`` in either order.

    %2 = "dl.minimum"(%0, %1) : (tensor<?x3xf32, "N">, tensor<f32>) -> tensor<?x3xf32, "N">
    """, ieee_minimum)


@sub.def_vjp
def _(b, op, ct):
    # d(x - y) = dx - dy
    x, y = op.operands
    return [unbroadcast(b, ct, x.type), unbroadcast(b, b.neg(ct), y.type)]


@mul.def_vjp
def _(b, op, ct):
    # d(x * y) = y dx + x dy
    x, y = op.operands
    return [unbroadcast(b, b.mul(ct, y), x.type), unbroadcast(b, b.mul(ct, x), y.type)]


@div.def_vjp
def _(b, op, ct):
    # d(x / y) = dx / y - (x / y) dy / y
    x, y = op.operands
    dx = b.div(ct, y)
    dy = b.neg(b.mul(dx, op.result))
    return [unbroadcast(b, dx, x.type), unbroadcast(b, dy, y.type)]


@pow_.def_vjp
def _(b, op, ct):
    # d(x ** y) = y x**(y-1) dx + x**y log(x) dy   (log(0) read as log(1): 0**y has dy = 0)
    x, y = op.operands
    if not x.type.dtype.is_float:
        return [None, None]                                     # integer powers pass none
    dx = b.mul(ct, b.mul(y, b.pow(x, b.sub(y, b.scalar_like(1.0, y)))))
    safe_x = b.select(b.eq(x, b.scalar_like(0.0, x)), b.scalar_like(1.0, x), x)
    dy = b.mul(ct, b.mul(op.result, b.log(safe_x)))
    return [unbroadcast(b, dx, x.type), unbroadcast(b, dy, y.type)]


def _route_to_winner(b, op, ct, x_wins):
    """The cotangent goes to ``x`` where ``x_wins``, to ``y`` elsewhere."""
    x, y = op.operands
    zero = b.scalar_like(0.0, ct)
    return [unbroadcast(b, b.select(x_wins, ct, zero), x.type),
            unbroadcast(b, b.select(x_wins, zero, ct), y.type)]


@maximum.def_vjp
def _(b, op, ct):
    # d max(x, y) = dx where x >= y, dy elsewhere (ties go to x)
    return _route_to_winner(b, op, ct, b.ge(*op.operands))


@minimum.def_vjp
def _(b, op, ct):
    # d min(x, y) = dx where x <= y, dy elsewhere (ties go to x)
    return _route_to_winner(b, op, ct, b.le(*op.operands))


sub.def_emit(lambda e, lhs, rhs: e.sub(lhs, rhs))
mul.def_emit(lambda e, lhs, rhs: e.mul(lhs, rhs))
div.def_emit(lambda e, lhs, rhs: e.div(lhs, rhs))
pow_.def_emit(lambda e, lhs, rhs: e.pow(lhs, rhs))
maximum.def_emit(lambda e, lhs, rhs: e.max(lhs, rhs))
minimum.def_emit(lambda e, lhs, rhs: e.min(lhs, rhs))


# ---------------------------------------------------------------------------
# Comparisons and logic (never differentiable)

_COMPARE_DOC = """Elementwise comparison ``lhs {sym} rhs`` with numpy broadcasting; the result is bool.

    %2 = "dl.{name}"(%0, %1) : (tensor<?x3xf32, "N">, tensor<f32>) -> tensor<?x3xi1, "N">
    """

_COMPARISONS = {"eq": ("==", np.equal), "ne": ("!=", np.not_equal), "lt": ("<", np.less),
                "le": ("<=", np.less_equal), "gt": (">", np.greater), "ge": (">=", np.greater_equal)}


def _define_comparison(name: str, sym: str, fn: Callable) -> OpDef:
    op = _binary(name, _COMPARE_DOC.format(sym=sym, name=name), fn, infer=_compare_rule,
                 differentiable=False)
    op.def_emit(lambda e, lhs, rhs: e.cmp(name, lhs, rhs))
    return op


eq, ne, lt, le, gt, ge = (_define_comparison(n, s, f) for n, (s, f) in _COMPARISONS.items())

logical_and = _binary("logical_and", """Elementwise ``lhs and rhs`` of bool tensors.

    %2 = "dl.logical_and"(%0, %1) : (tensor<3xi1>, tensor<3xi1>) -> tensor<3xi1>
    """, np.logical_and, infer=_logical_rule, differentiable=False)

logical_or = _binary("logical_or", """Elementwise ``lhs or rhs`` of bool tensors.

    %2 = "dl.logical_or"(%0, %1) : (tensor<3xi1>, tensor<i1>) -> tensor<3xi1>
    """, np.logical_or, infer=_logical_rule, differentiable=False)

logical_not = _unary("logical_not", """Elementwise ``not x`` of a bool tensor.

    %1 = "dl.logical_not"(%0) : (tensor<3xi1>) -> tensor<3xi1>
    """, np.logical_not, infer=_logical_rule, differentiable=False)

logical_and.def_emit(lambda e, lhs, rhs: e.logical_and(lhs, rhs))
logical_or.def_emit(lambda e, lhs, rhs: e.logical_or(lhs, rhs))
logical_not.def_emit(lambda e, x: e.logical_not(x))


# ---------------------------------------------------------------------------
# select


def _select_rule(cond: TensorType, on_true: TensorType, on_false: TensorType) -> TensorType:
    if cond.dtype is not DType.bool:
        raise ShapeError(f"condition must be bool, got {cond.dsl_str()}")
    dtype = broadcast_rule(on_true, on_false).dtype
    return TensorType(dtype, broadcast_shapes(cond.shape, on_true.shape, on_false.shape))


select = define(
    "select", operands=("cond", "on_true", "on_false"), kind=ELEMENTWISE, infer=_select_rule,
    doc="""``on_true`` where ``cond`` holds, else ``on_false``; all three broadcast (numpy ``where``).

    %3 = "dl.select"(%0, %1, %2) : (tensor<?x3xi1, "N">, tensor<?x3xf32, "N">, tensor<f32>) -> tensor<?x3xf32, "N">
    """)


@select.def_reference
def _(cond, on_true, on_false):
    return np.where(cond, on_true, on_false)


@select.def_vjp
def _(b, op, ct):
    # d select(c, x, y) = select(c, dx, 0) + select(c, 0, dy); no gradient for c
    cond, x, y = op.operands
    zero = b.scalar_like(0.0, ct)
    return [None, unbroadcast(b, b.select(cond, ct, zero), x.type),
            unbroadcast(b, b.select(cond, zero, ct), y.type)]


select.def_emit(lambda e, cond, on_true, on_false: e.select(cond, on_true, on_false))


# ---------------------------------------------------------------------------
# Unary


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, keeping the dtype."""
    z = np.exp(-np.abs(x))                      # in (0, 1]: never overflows
    denom = x.dtype.type(1) + z
    return np.where(x >= 0, 1 / denom, z / denom).astype(x.dtype)


neg = _unary("neg", """Elementwise negation ``-x``.

    %1 = "dl.neg"(%0) : (tensor<?x3xf32, "N">) -> tensor<?x3xf32, "N">
    """, np.negative)

exp = _unary("exp", """Elementwise ``e ** x`` (float only).

    %1 = "dl.exp"(%0) : (tensor<?x3xf32, "N">) -> tensor<?x3xf32, "N">
    """, np.exp, infer=_float_rule)

log = _unary("log", """Elementwise natural logarithm (float only; log(0) = -inf, log(x<0) = nan).

    %1 = "dl.log"(%0) : (tensor<?x3xf32, "N">) -> tensor<?x3xf32, "N">
    """, np.log, infer=_float_rule)

sqrt = _unary("sqrt", """Elementwise square root (float only).

    %1 = "dl.sqrt"(%0) : (tensor<3xf64>) -> tensor<3xf64>
    """, np.sqrt, infer=_float_rule)

tanh = _unary("tanh", """Elementwise hyperbolic tangent (float only).

    %1 = "dl.tanh"(%0) : (tensor<?x3xf32, "N">) -> tensor<?x3xf32, "N">
    """, np.tanh, infer=_float_rule)

sigmoid = _unary("sigmoid", """Elementwise logistic function ``1 / (1 + exp(-x))`` (float only).

    %1 = "dl.sigmoid"(%0) : (tensor<?x3xf32, "N">) -> tensor<?x3xf32, "N">
    """, _sigmoid, infer=_float_rule)

relu = _unary("relu", """Elementwise ``max(x, 0)``.

    %1 = "dl.relu"(%0) : (tensor<?x512xf32, "N">) -> tensor<?x512xf32, "N">
    """, lambda x: ieee_maximum(x, np.zeros((), x.dtype)))

abs_ = _unary("abs", """Elementwise absolute value.

    %1 = "dl.abs"(%0) : (tensor<3xi32>) -> tensor<3xi32>
    """, np.abs)

square = _unary("square", """Elementwise ``x * x``.

    %1 = "dl.square"(%0) : (tensor<?x3xf32, "N">) -> tensor<?x3xf32, "N">
    """, np.square)

reciprocal = _unary("reciprocal", """Elementwise ``1 / x`` (float only).

    %1 = "dl.reciprocal"(%0) : (tensor<3xf32>) -> tensor<3xf32>
    """, np.reciprocal, infer=_float_rule)

sign = _unary("sign", """Elementwise sign: -1, 0 or 1 in the operand's dtype; ``sign(nan) = nan``,
    ``sign(-0.0) = 0.0``.  Not differentiable.

    %1 = "dl.sign"(%0) : (tensor<3xf32>) -> tensor<3xf32>
    """, np.sign, differentiable=False)


@neg.def_vjp
def _(b, op, ct):
    return [b.neg(ct)]                                          # d(-x) = -dx


@exp.def_vjp
def _(b, op, ct):
    return [b.mul(ct, op.result)]                               # d exp(x) = exp(x) dx


@log.def_vjp
def _(b, op, ct):
    return [b.div(ct, op.operands[0])]                          # d log(x) = dx / x


@sqrt.def_vjp
def _(b, op, ct):
    y = op.result                                               # d sqrt(x) = dx / (2 sqrt(x))
    return [b.div(ct, b.mul(b.scalar_like(2.0, y), y))]


@tanh.def_vjp
def _(b, op, ct):
    y = op.result                                               # d tanh(x) = (1 - tanh(x)^2) dx
    return [b.mul(ct, b.sub(b.scalar_like(1.0, y), b.square(y)))]


@sigmoid.def_vjp
def _(b, op, ct):
    y = op.result                                               # d s(x) = s(x) (1 - s(x)) dx
    return [b.mul(ct, b.mul(y, b.sub(b.scalar_like(1.0, y), y)))]


@relu.def_vjp
def _(b, op, ct):
    # d relu(x) = [x > 0] dx, read from the output: relu(x) > 0 exactly when x > 0 (NaN
    # neither), and the mask from y leaves x used by relu alone, so a producer's epilogue
    # (a conv's or matmul's bias + relu) fuses instead of x being kept for the backward.
    y = op.result
    return [b.select(b.gt(y, b.scalar_like(0, y)), ct, b.scalar_like(0, ct))]


@abs_.def_vjp
def _(b, op, ct):
    return [b.mul(ct, b.sign(op.operands[0]))]                 # d |x| = sign(x) dx


@square.def_vjp
def _(b, op, ct):
    x = op.operands[0]                                          # d x^2 = 2 x dx
    return [b.mul(ct, b.mul(b.scalar_like(2, x), x))]


@reciprocal.def_vjp
def _(b, op, ct):
    return [b.neg(b.mul(ct, b.square(op.result)))]              # d (1/x) = -dx / x^2


neg.def_emit(lambda e, x: e.neg(x))
exp.def_emit(lambda e, x: e.exp(x))
log.def_emit(lambda e, x: e.log(x))
sqrt.def_emit(lambda e, x: e.sqrt(x))
tanh.def_emit(lambda e, x: e.tanh(x))
sigmoid.def_emit(lambda e, x: e.sigmoid(x))
relu.def_emit(lambda e, x: e.relu(x))
abs_.def_emit(lambda e, x: e.abs(x))
square.def_emit(lambda e, x: e.mul(x, x))
reciprocal.def_emit(lambda e, x: e.div(e.const(1.0), x))


@sign.def_emit
def _(e, x):
    # NaN fails both comparisons: it is passed through (numpy: sign(nan) = nan)
    zero = e.const(0)
    negative_or_zero = e.select(e.cmp("lt", x, zero), e.const(-1), zero)
    signed = e.select(e.cmp("gt", x, zero), e.const(1), negative_or_zero)
    return e.select(e.cmp("ne", x, x), x, signed) if e.dtype.is_float else signed


# ---------------------------------------------------------------------------
# cast


def _cast_rule(x: TensorType, *, dtype: DType) -> TensorType:
    return x.with_dtype(dtype)


cast = define(
    "cast", operands=("x",), kind=ELEMENTWISE, infer=_cast_rule,
    attrs={"dtype": required("dtype")},
    doc="""Convert to ``dtype`` (numpy ``astype``, except float->int: truncation toward zero,
    saturating -- out-of-range values and ``±inf`` give the int's min/max, ``nan`` gives 0;
    anything->bool is ``x != 0``).  Differentiable only from float to float; a cast to
    or from an int or bool passes no gradient.

    %1 = "dl.cast"(%0) {dtype = f32} : (tensor<?xi64, "N">) -> tensor<?xf32, "N">
    """)


@cast.def_reference
def _(x, *, dtype: DType):
    if np.issubdtype(x.dtype, np.floating) and dtype.is_int:
        return saturating_to_int(x, dtype.np)
    return x.astype(dtype.np)


def saturating_to_int(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float -> int truncating toward zero and saturating, ``nan -> 0`` (LLVM's
    ``fptosi.sat`` / ``fptoui.sat``, Rust's ``as``); numpy's ``astype`` leaves those
    cases undefined."""
    info = np.iinfo(dtype)
    low, high = float(info.min), float(info.max) + 1    # both exact in every float dtype
    t = np.trunc(x)
    in_range = (t >= low) & (t < high)      # false for nan
    out = np.where(in_range, t, 0).astype(dtype)
    out[t >= high] = info.max
    out[t < low] = info.min
    return out


@cast.def_vjp
def _(b, op, ct):
    # d cast(x) = cast back of the cotangent, between float dtypes only
    x = op.operands[0]
    if not (x.type.dtype.is_float and op.result.type.dtype.is_float):
        return [None]
    return [b.cast(ct, dtype=x.type.dtype)]


cast.def_emit(lambda e, x: e.cast(x, e.out_dtype, source=e.dtype))
