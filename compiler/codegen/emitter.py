"""The Emitter: what an elementwise op's ``emit`` rule builds its body with.

An op's ``emit(e, *operands)`` receives LLVM values -- scalars, or vectors of
the kernel's width -- and returns one, calling only methods of ``e``::

    @relu.def_emit
    def _(e, x):
        return e.relu(x)

Every method works on scalars and vectors alike and dispatches on the LLVM
type of its operands (``float``/``double``/``i32``/``i64``/``i1``), so a rule
need not care which dtype or width it is emitted for.  Python numbers are
accepted wherever a value is and become constants of the other operand's
type.  ``e.dtype`` is the op's operand dtype (the common dtype of its non-bool
operands), ``e.out_dtype`` its result dtype, ``e.const(v)`` a constant of
``e.dtype`` (splat to the kernel width).

Semantics follow numpy: ``max``/``min`` propagate NaN, ``cmp("ne")`` is true
for NaN, float->int casts truncate toward zero (saturating, NaN -> 0),
anything->bool is ``x != 0``.  ``exp log tanh sigmoid`` are the polynomial
approximations of :mod:`compiler.codegen.vmath`; ``sqrt`` and ``fma`` are
LLVM intrinsics (one instruction each on x86).
"""

from __future__ import annotations

import math
from typing import Any

from llvmlite import ir

from ..ir.types import DType
from . import vmath
from .llvmutil import (F32, F64, I1, I8, call_overloaded, const, constant_value, dtype_of, element,
                       intrinsic, scalar_type, type_suffix, value_type, with_element)

Val = ir.Value | int | float | bool

_FCMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
PREDICATES = tuple(_FCMP)


class Emitter:
    """Builds scalar or vector bodies of elementwise ops (see the module docstring)."""

    def __init__(self, builder: ir.IRBuilder, width: int, dtype: DType = DType.f32,
                 out_dtype: DType | None = None):
        self.b = builder
        self.width = width
        self.dtype = dtype
        self.out_dtype = out_dtype or dtype

    def for_op(self, dtype: DType, out_dtype: DType) -> Emitter:
        """The same builder and width, for an op of another dtype."""
        return Emitter(self.b, self.width, dtype, out_dtype)

    # -- values ----------------------------------------------------------------------

    def const(self, value: Any, dtype: DType | None = None) -> ir.Constant:
        """A constant of ``dtype`` (default ``e.dtype``), splat to the kernel width."""
        return const(value_type(dtype or self.dtype, self.width), value)

    def _val(self, v: Val, like: ir.Value | None = None) -> ir.Value:
        if isinstance(v, ir.Value):
            return v
        ty = like.type if like is not None else value_type(self.dtype, self.width)
        return const(ty, v)

    def _pair(self, a: Val, b: Val) -> tuple[ir.Value, ir.Value]:
        if not isinstance(a, ir.Value):
            b = self._val(b)
            return self._val(a, b), b
        return a, self._val(b, a)

    @staticmethod
    def _is_float(v: ir.Value) -> bool:
        return isinstance(element(v.type), (ir.FloatType, ir.DoubleType))

    @staticmethod
    def _is_bool(v: ir.Value) -> bool:
        return element(v.type) == I1

    # -- arithmetic ------------------------------------------------------------------

    def add(self, a: Val, b: Val) -> ir.Value:
        a, b = self._pair(a, b)
        return self.b.fadd(a, b) if self._is_float(a) else self.b.add(a, b)

    def sub(self, a: Val, b: Val) -> ir.Value:
        a, b = self._pair(a, b)
        return self.b.fsub(a, b) if self._is_float(a) else self.b.sub(a, b)

    def mul(self, a: Val, b: Val) -> ir.Value:
        a, b = self._pair(a, b)
        return self.b.fmul(a, b) if self._is_float(a) else self.b.mul(a, b)

    def div(self, a: Val, b: Val) -> ir.Value:
        """``a / b``: IEEE division for floats; floor division for ints (x // 0 = 0, as numpy)."""
        a, b = self._pair(a, b)
        if self._is_float(a):
            return self.b.fdiv(a, b)
        zero = const(b.type, 0)
        safe = self.b.select(self.b.icmp_signed("==", b, zero), const(b.type, 1), b)
        q = self.b.sdiv(a, safe)
        # floor: step down when the remainder is non-zero and the signs differ
        r = self.b.srem(a, safe)
        adjust = self.b.and_(self.b.icmp_signed("!=", r, zero),
                             self.b.icmp_signed("<", self.b.xor(r, safe), zero))
        q = self.b.select(adjust, self.b.sub(q, const(q.type, 1)), q)
        return self.b.select(self.b.icmp_signed("==", b, zero), zero, q)

    def neg(self, a: Val) -> ir.Value:
        a = self._val(a)
        return self.b.fneg(a) if self._is_float(a) else self.b.sub(const(a.type, 0), a)

    def fma(self, a: Val, b: Val, c: Val) -> ir.Value:
        """``a * b + c`` with one rounding (``llvm.fma``); ints multiply and add."""
        a, b = self._pair(a, b)
        c = self._val(c, a)
        if not self._is_float(a):
            return self.b.add(self.b.mul(a, b), c)
        return call_overloaded(self.b, "fma", [a, b, c])

    def sqrt(self, a: Val) -> ir.Value:
        return call_overloaded(self.b, "sqrt", [self._val(a)])

    def exp(self, a: Val) -> ir.Value:
        return vmath.call(self.b, "exp", self._val(a))

    def log(self, a: Val) -> ir.Value:
        return vmath.call(self.b, "log", self._val(a))

    def tanh(self, a: Val) -> ir.Value:
        return vmath.call(self.b, "tanh", self._val(a))

    def sigmoid(self, a: Val) -> ir.Value:
        return vmath.call(self.b, "sigmoid", self._val(a))

    def abs(self, a: Val) -> ir.Value:
        a = self._val(a)
        if self._is_float(a):
            return call_overloaded(self.b, "fabs", [a])
        if self._is_bool(a):
            return a
        return call_overloaded(self.b, "abs", [a, ir.Constant(I1, 0)])

    def max(self, a: Val, b: Val) -> ir.Value:
        """numpy ``maximum``: NaN if either operand is NaN."""
        a, b = self._pair(a, b)
        if self._is_float(a):
            return call_overloaded(self.b, "maximum", [a, b])
        if self._is_bool(a):
            return self.b.or_(a, b)
        return call_overloaded(self.b, "smax", [a, b])

    def min(self, a: Val, b: Val) -> ir.Value:
        """numpy ``minimum``: NaN if either operand is NaN."""
        a, b = self._pair(a, b)
        if self._is_float(a):
            return call_overloaded(self.b, "minimum", [a, b])
        if self._is_bool(a):
            return self.b.and_(a, b)
        return call_overloaded(self.b, "smin", [a, b])

    def relu(self, a: Val) -> ir.Value:
        a = self._val(a)
        return self.max(a, const(a.type, 0))

    def pow(self, a: Val, b: Val) -> ir.Value:
        """``a ** b`` for floats with numpy's special cases; small constant exponents are
        multiplications (``x**2 = x*x``), others ``exp(b log|a|)`` (in f64 for f32 operands)."""
        a, b = self._pair(a, b)
        if not self._is_float(a):
            ty = with_element(a.type, F64)
            res = self.pow(self.b.sitofp(a, ty), self.b.sitofp(b, ty))
            return self.cast(res, dtype_of(a.type))
        k = constant_value(b)
        if k is not None:
            special = self._pow_constant(a, float(k))
            if special is not None:
                return special
        return self._pow_general(a, b)

    def _pow_constant(self, a: ir.Value, k: float) -> ir.Value | None:
        if k == 0.5:
            return self.sqrt(a)
        if k == int(k) and abs(k) <= 4:
            n = int(abs(k))
            if n == 0:
                return const(a.type, 1.0)
            result = a
            for _ in range(n - 1):
                result = self.b.fmul(result, a)
            return self.b.fdiv(const(a.type, 1.0), result) if k < 0 else result
        return None

    def _pow_general(self, a: ir.Value, b: ir.Value) -> ir.Value:
        wide = with_element(a.type, F64)
        narrow = element(a.type) == F32
        x = self.b.fpext(a, wide) if narrow else a
        y = self.b.fpext(b, wide) if narrow else b
        ax = call_overloaded(self.b, "fabs", [x])
        mag = vmath.exp(self.b, self.b.fmul(y, vmath.log(self.b, ax)))
        # negative base: defined for integer exponents only, negative for odd ones
        y_int = self.b.fcmp_ordered("==", call_overloaded(self.b, "floor", [y]), y)
        big = self.b.fcmp_ordered(">=", call_overloaded(self.b, "fabs", [y]), const(wide, 2.0 ** 62))
        ity = with_element(wide, ir.IntType(64))
        yi = self.b.fptosi(self.b.select(big, const(wide, 0.0), y), ity)
        odd = self.b.and_(y_int, self.b.trunc(yi, with_element(wide, I1)))
        # an odd power keeps the base's sign, -0.0 and -inf included: (-0)**-1 = -inf
        one = const(wide, 1.0)
        sign_bit = self.b.fcmp_ordered("<", call_overloaded(self.b, "copysign", [one, x]), const(wide, 0.0))
        res = self.b.select(self.b.and_(odd, sign_bit), self.b.fneg(mag), mag)
        # a finite negative base to a non-integer power is nan; (-inf)**0.5 = inf
        finite_negative = self.b.and_(self.b.fcmp_ordered("<", x, const(wide, 0.0)),
                                      self.b.fcmp_ordered(">", x, const(wide, -math.inf)))
        res = self.b.select(self.b.and_(finite_negative, self.b.not_(y_int)), const(wide, math.nan), res)
        # x**0 = 1 and 1**y = 1, even for NaN; (-1)**±inf = 1
        infinite_y = self.b.fcmp_ordered("==", call_overloaded(self.b, "fabs", [y]), const(wide, math.inf))
        unit = self.b.or_(self.b.or_(self.b.fcmp_ordered("==", y, const(wide, 0.0)), self.b.fcmp_ordered("==", x, one)),
                          self.b.and_(self.b.fcmp_ordered("==", x, const(wide, -1.0)), infinite_y))
        res = self.b.select(unit, one, res)
        return self.b.fptrunc(res, a.type) if narrow else res

    # -- comparison and logic ------------------------------------------------------------

    def cmp(self, pred: str, a: Val, b: Val) -> ir.Value:
        """Compare with ``pred`` in ``eq ne lt le gt ge``; a bool (i1) result."""
        a, b = self._pair(a, b)
        op = _FCMP[pred]
        if self._is_float(a):
            if pred == "ne":
                return self.b.fcmp_unordered(op, a, b)
            return self.b.fcmp_ordered(op, a, b)
        if self._is_bool(a):
            return self.b.icmp_unsigned(op, a, b)
        return self.b.icmp_signed(op, a, b)

    def select(self, c: Val, a: Val, b: Val) -> ir.Value:
        a, b = self._pair(a, b)
        c = self._to_bool(self._val(c, a))
        return self.b.select(c, a, b)

    def logical_and(self, a: Val, b: Val) -> ir.Value:
        a, b = self._pair(a, b)
        return self.b.and_(self._to_bool(a), self._to_bool(b))

    def logical_or(self, a: Val, b: Val) -> ir.Value:
        a, b = self._pair(a, b)
        return self.b.or_(self._to_bool(a), self._to_bool(b))

    def logical_not(self, a: Val) -> ir.Value:
        a = self._to_bool(self._val(a))
        return self.b.xor(a, const(a.type, 1))

    def _to_bool(self, a: ir.Value) -> ir.Value:
        return a if self._is_bool(a) else self.cast(a, DType.bool)

    # -- conversion -------------------------------------------------------------------------

    def cast(self, x: Val, dtype: DType) -> ir.Value:
        """numpy ``astype`` (see the module docstring for float->int and ->bool)."""
        x = self._val(x)
        src = dtype_of(x.type)
        dst_ty = with_element(x.type, scalar_type(dtype))
        if src is dtype:
            return x
        if dtype is DType.bool:
            if self._is_float(x):
                return self.b.fcmp_unordered("!=", x, const(x.type, 0.0))
            return self.b.icmp_unsigned("!=", x, const(x.type, 0))
        if src is DType.bool:
            return self.b.uitofp(x, dst_ty) if dtype.is_float else self.b.zext(x, dst_ty)
        if src.is_float and dtype.is_float:
            return self.b.fpext(x, dst_ty) if dtype is DType.f64 else self.b.fptrunc(x, dst_ty)
        if src.is_int and dtype.is_int:
            return self.b.sext(x, dst_ty) if dtype is DType.i64 else self.b.trunc(x, dst_ty)
        if src.is_int:
            return self.b.sitofp(x, dst_ty)
        name = f"llvm.fptosi.sat.{type_suffix(dst_ty)}.{type_suffix(x.type)}"
        return self.b.call(intrinsic(self.b.module, name, dst_ty, [x.type]), [x])


def to_memory(b: ir.IRBuilder, v: ir.Value) -> ir.Value:
    """A register value as stored in memory (bools become bytes)."""
    return b.zext(v, with_element(v.type, I8)) if element(v.type) == I1 else v


def from_memory(b: ir.IRBuilder, v: ir.Value, dtype: DType) -> ir.Value:
    """A loaded value as held in registers (bytes become bools, ``x != 0``)."""
    if dtype is DType.bool:
        return b.icmp_unsigned("!=", v, const(v.type, 0))
    return v


__all__ = ["Emitter", "PREDICATES", "to_memory", "from_memory"]
