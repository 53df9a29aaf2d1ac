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
operands), ``e.out_dtype`` its result dtype, ``e.attrs`` the op's attributes
(``leaky_relu``'s ``alpha``), ``e.const(v)`` a constant of ``e.dtype`` (splat to
the kernel width).

Semantics follow numpy: ``max``/``min`` propagate NaN, ``cmp("ne")`` is true
for NaN, float->int casts truncate toward zero (saturating, NaN -> 0),
anything->bool is ``x != 0``.  ``exp log tanh sigmoid expm1 log1p sin cos
erf`` are the polynomial approximations of :mod:`compiler.codegen.vmath`;
``sqrt``, ``fma``, ``floor``, ``ceil`` and ``round`` are LLVM intrinsics (one
instruction each on x86).
"""

from __future__ import annotations

import math
from typing import Any

from llvmlite import ir

from ..ir.types import DType
from . import philox, storage, vmath
from .llvmutil import (
    F32,
    F64,
    I1,
    I8,
    call_overloaded,
    const,
    constant_value,
    dtype_of,
    element,
    intrinsic,
    scalar_type,
    type_suffix,
    value_type,
    with_element,
)

Val = ir.Value | int | float | bool

_FCMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
PREDICATES = tuple(_FCMP)


class Emitter:
    """Builds scalar or vector bodies of elementwise ops (see the module docstring)."""

    def __init__(self, builder: ir.IRBuilder, width: int, dtype: DType = DType.f32,
                 out_dtype: DType | None = None, attrs: dict[str, Any] | None = None):
        self.b = builder
        self.width = width
        self.dtype = dtype
        self.out_dtype = out_dtype or dtype
        self.attrs = attrs or {}

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
        """``a / b``: IEEE division for floats; floor division for ints (see ``floor_div``)."""
        a, b = self._pair(a, b)
        if self._is_float(a):
            return self.b.fdiv(a, b)
        return self.floor_div(a, b)

    def floor_div(self, a: Val, b: Val) -> ir.Value:
        """numpy ``floor_divide``: see :meth:`divmod`."""
        return self.divmod(a, b)[0]

    def mod(self, a: Val, b: Val) -> ir.Value:
        """numpy ``remainder`` (the sign of the divisor): see :meth:`divmod`."""
        return self.divmod(a, b)[1]

    def divmod(self, a: Val, b: Val) -> tuple[ir.Value, ir.Value]:
        """numpy's ``(a // b, a % b)``.

        Ints: floor division and a remainder with the divisor's sign; ``x // 0 =
        x % 0 = 0`` and ``MIN // -1 = MIN`` (wrapped), as numpy gives, and never
        a division the CPU traps on (x86 ``idiv`` faults on both).  Floats:
        numpy's ``npy_divmod`` step by step (``fmod``, then the quotient
        ``(a - mod) / b`` snapped to an integer), so NaN, ±inf and signed
        zeros come out as numpy's; ``x // 0`` is ``x / 0`` and ``x % 0`` NaN.
        """
        a, b = self._pair(a, b)
        if self._is_float(a):
            return self._float_divmod(a, b)
        zero, one = const(b.type, 0), const(b.type, 1)
        by_zero = self.b.icmp_signed("==", b, zero)
        by_minus_one = self.b.icmp_signed("==", b, const(b.type, -1))
        safe = self.b.select(self.b.or_(by_zero, by_minus_one), one, b)
        q = self.b.sdiv(a, safe)
        r = self.b.srem(a, safe)
        # floor: step down when the remainder is non-zero and the signs differ
        adjust = self.b.and_(self.b.icmp_signed("!=", r, zero),
                             self.b.icmp_signed("<", self.b.xor(r, safe), zero))
        q = self.b.select(adjust, self.b.sub(q, one), q)
        r = self.b.select(adjust, self.b.add(r, safe), r)
        q = self.b.select(by_minus_one, self.b.sub(zero, a), q)
        q = self.b.select(by_zero, zero, q)
        r = self.b.select(self.b.or_(by_zero, by_minus_one), zero, r)
        return q, r

    def _float_divmod(self, a: ir.Value, b: ir.Value) -> tuple[ir.Value, ir.Value]:
        fb = self.b
        zero, one = const(a.type, 0.0), const(a.type, 1.0)
        mod = fb.frem(a, b)                                  # C fmod
        div = fb.fdiv(fb.fsub(a, mod), b)
        mod_nonzero = fb.fcmp_unordered("!=", mod, zero)     # C's `if (mod)`: true for NaN
        signs_differ = fb.xor(fb.fcmp_ordered("<", b, zero), fb.fcmp_ordered("<", mod, zero))
        adjust = fb.and_(mod_nonzero, signs_differ)
        mod_adj = fb.select(adjust, fb.fadd(mod, b), mod)
        div = fb.select(adjust, fb.fsub(div, one), div)
        mod_adj = fb.select(mod_nonzero, mod_adj, call_overloaded(fb, "copysign", [zero, b]))
        floored = call_overloaded(fb, "floor", [div])
        up = fb.fcmp_ordered(">", fb.fsub(div, floored), const(a.type, 0.5))
        floored = fb.select(up, fb.fadd(floored, one), floored)
        quotient = fb.fdiv(a, b)
        floored = fb.select(fb.fcmp_unordered("!=", div, zero), floored,
                            call_overloaded(fb, "copysign", [zero, quotient]))
        by_zero = fb.fcmp_ordered("==", b, zero)
        return fb.select(by_zero, quotient, floored), fb.select(by_zero, mod, mod_adj)

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

    def expm1(self, a: Val) -> ir.Value:
        return vmath.call(self.b, "expm1", self._val(a))

    def log1p(self, a: Val) -> ir.Value:
        return vmath.call(self.b, "log1p", self._val(a))

    def sin(self, a: Val) -> ir.Value:
        return vmath.call(self.b, "sin", self._val(a))

    def cos(self, a: Val) -> ir.Value:
        return vmath.call(self.b, "cos", self._val(a))

    def erf(self, a: Val) -> ir.Value:
        return vmath.call(self.b, "erf", self._val(a))

    def floor(self, a: Val) -> ir.Value:
        """Round toward -inf (``llvm.floor``); ints unchanged."""
        return self._rounding("floor", a)

    def ceil(self, a: Val) -> ir.Value:
        """Round toward +inf (``llvm.ceil``); ints unchanged."""
        return self._rounding("ceil", a)

    def round(self, a: Val) -> ir.Value:
        """Round half to even, as numpy's ``round`` (``llvm.roundeven``); ints unchanged."""
        return self._rounding("roundeven", a)

    def _rounding(self, intrinsic_name: str, a: Val) -> ir.Value:
        a = self._val(a)
        return call_overloaded(self.b, intrinsic_name, [a]) if self._is_float(a) else a

    def isnan(self, a: Val) -> ir.Value:
        """True where ``a`` is NaN (never for ints and bools)."""
        a = self._val(a)
        if not self._is_float(a):
            return const(with_element(a.type, I1), 0)
        return self.b.fcmp_unordered("uno", a, a)

    def isinf(self, a: Val) -> ir.Value:
        """True where ``a`` is +inf or -inf (never for ints and bools)."""
        a = self._val(a)
        if not self._is_float(a):
            return const(with_element(a.type, I1), 0)
        return self.b.fcmp_ordered("==", call_overloaded(self.b, "fabs", [a]), const(a.type, math.inf))

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
            return self._int_pow(a, b)
        k = constant_value(b)
        if k is not None:
            special = self._pow_constant(a, float(k))
            if special is not None:
                return special
        return self._pow_general(a, b)

    def _int_pow(self, a: ir.Value, b: ir.Value) -> ir.Value:
        """Integer ``a ** b`` (see :func:`_int_pow_function`)."""
        return self.b.call(_int_pow_function(self.b.module, a.type), [a, b])

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

    # -- random numbers (conventions: compiler/ops/random.py) ------------------------------

    def fold_in(self, key: Val, data: Val) -> ir.Value:
        """A new i64 key from ``key`` and ``data`` (i64): Philox-4x32-10, see ``fold_in``."""
        key, data = self._pair(key, data)
        return philox.fold_in(self.b, key, data)

    def philox_uniform(self, key: Val, counter: Val) -> ir.Value:
        """Uniform ``[0, 1)`` of ``e.out_dtype`` for each i64 ``counter`` under i64 ``key``."""
        key, counter = self._pair(key, counter)
        w = philox.element_words(self.b, key, counter)
        if self.out_dtype is DType.f32:
            return philox.unit_f32(self.b, w[0])
        return philox.unit_f64(self.b, w[0], w[1])

    def philox_normal(self, key: Val, counter: Val) -> ir.Value:
        """Standard normal ``e.out_dtype`` for each i64 ``counter``: Box-Muller,
        ``sqrt(-2 log u1) cos(2 pi u2)`` over the counter's Philox words."""
        key, counter = self._pair(key, counter)
        w = philox.element_words(self.b, key, counter)
        if self.out_dtype is DType.f32:
            u1 = philox.unit_f32(self.b, w[0], plus_one=True)
            u2 = philox.unit_f32(self.b, w[1])
        else:
            u1 = self.b.fadd(philox.unit_f64(self.b, w[0], w[1]), const(with_element(w[0].type, F64),
                                                                         2.0 ** -53))
            u2 = philox.unit_f64(self.b, w[2], w[3])
        radius = self.sqrt(self.mul(const(u1.type, -2.0), self.log(u1)))
        return self.mul(radius, self.cos(self.mul(const(u2.type, 2 * math.pi), u2)))

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

    def cast(self, x: Val, dtype: DType, source: DType | None = None) -> ir.Value:
        """numpy ``astype`` (see the module docstring for float->int and ->bool) from
        ``source`` (default: the dtype of ``x``'s register type, which cannot tell a
        storage dtype from the type it computes in: f16 from f32, u8 from i32)."""
        x = self._val(x)
        src = source or dtype_of(x.type)
        if src is dtype:
            return x
        if dtype.is_storage:
            return storage.cast_to_storage(self.b, x, src, dtype)
        src = dtype_of(x.type)          # a storage source is held as its compute type
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


def _int_pow_function(module: ir.Module, ty: ir.Type) -> ir.Function:
    """``dlc.ipow.<type>(a, b)``: integer ``a ** b`` by square-and-multiply, wrapping as
    numpy's does, in a loop that runs while some lane's exponent has bits left (so a
    small exponent costs a few steps).  A negative ``b`` gives the integer part of the
    true power: 1 for ``a = 1``, ±1 for ``a = -1`` (by the parity of ``b``), 0
    otherwise (``0 ** -n`` included); numpy raises there instead."""
    symbol = f"dlc.ipow.{type_suffix(ty)}"
    fn = module.globals.get(symbol)
    if fn is not None:
        return fn
    fn = ir.Function(module, ir.FunctionType(ty, [ty, ty]), symbol)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    a, exponent = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    one, zero = const(ty, 1), const(ty, 0)
    negative = b.icmp_signed("<", exponent, zero)
    start = b.select(negative, zero, exponent)
    entry = b.block
    head, body, done = (fn.append_basic_block(n) for n in ("head", "body", "done"))
    b.branch(head)
    b.position_at_end(head)
    acc, base, e = (b.phi(ty) for _ in range(3))
    more = b.icmp_signed("!=", e, zero)
    if isinstance(ty, ir.VectorType):
        more = call_overloaded(b, "vector.reduce.or", [more], ret=I1)
    b.cbranch(more, body, done)
    b.position_at_end(body)
    bit = b.trunc(e, with_element(ty, I1))
    next_acc = b.select(bit, b.mul(acc, base), acc)
    next_base = b.mul(base, base)
    next_e = b.lshr(e, one)
    b.branch(head)
    for phi, first, later in ((acc, one, next_acc), (base, a, next_base), (e, start, next_e)):
        phi.add_incoming(first, entry)
        phi.add_incoming(later, body)
    b.position_at_end(done)
    minus_one = b.select(b.trunc(exponent, with_element(ty, I1)), const(ty, -1), one)
    inverse = b.select(b.icmp_signed("==", a, one), one,
                       b.select(b.icmp_signed("==", a, const(ty, -1)), minus_one, zero))
    b.ret(b.select(negative, inverse, acc))
    return fn


def to_memory(b: ir.IRBuilder, v: ir.Value, dtype: DType | None = None) -> ir.Value:
    """A register value as stored in memory (bools become bytes; a storage ``dtype``'s
    register is rounded or wrapped to it, ``storage.narrow``)."""
    if dtype is not None and dtype.is_storage:
        return storage.narrow(b, v, dtype)
    return b.zext(v, with_element(v.type, I8)) if element(v.type) == I1 else v


def from_memory(b: ir.IRBuilder, v: ir.Value, dtype: DType) -> ir.Value:
    """A loaded value as held in registers (bytes become bools, ``x != 0``; a storage
    dtype's element is widened, ``storage.widen``)."""
    if dtype is DType.bool:
        return b.icmp_unsigned("!=", v, const(v.type, 0))
    if dtype.is_storage:
        return storage.widen(b, v, dtype)
    return v


__all__ = ["Emitter", "PREDICATES", "to_memory", "from_memory"]
