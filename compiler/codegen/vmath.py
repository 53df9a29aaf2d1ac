"""Vector math: exp, log, tanh and sigmoid as branch-free polynomial code.

LLVM turns ``llvm.exp.v16f32`` into sixteen scalar ``expf`` calls, so the hot
transcendental functions are generated here instead, for ``f32`` and ``f64``,
scalar or any vector width.  Every function is straight-line code (selects,
no branches), built with ``llvmlite.ir.IRBuilder``; special values (NaN, ±inf,
±0, subnormals) are handled by selects.

Methods (series coefficients are exact rationals, computed below with
:class:`fractions.Fraction`, then rounded once to the working precision; the
f32 ``log``/``tanh`` use minimax polynomials whose float32 coefficients are
tabled below with how they were fitted):

* ``exp``: ``x = n ln2 + r`` with ``|r| <= ln2/2`` (Cody-Waite, ln2 split in
  a short high part and a low part so ``n * ln2_hi`` is exact), Taylor
  polynomial of degree 7 (f32) / 13 (f64) for ``e^r``, scaling by ``2^n`` in
  two steps so subnormal results and overflow to inf come out right.
* ``log``: ``x = m 2^k`` with ``m`` in ``[sqrt(1/2), sqrt(2))``, ``f = m - 1``.
  f32 (division-free): ``k`` and ``m`` by integer operations on the bit
  pattern, ``log1p(f) = f + f² q(f)`` with a degree-7 minimax ``q``, plus
  ``k ln2`` by one FMA.  f64: ``s = f / (2 + f)``,
  ``log(1 + f) = f - f²/2 + s (f²/2 + R)`` and ``R`` the atanh series in ``s²``
  (fdlibm's arrangement, Taylor coefficients ``2/(2k+1)``).  Subnormal inputs
  are scaled by ``2^23``/``2^52``.
* ``tanh`` (on ``|x|``, sign restored at the end, so ``tanh(-0) = -0``): f32:
  ``|x| < 0.3``: a minimax odd polynomial to ``x^7``; otherwise
  ``m / (m + 2)`` with ``m = expm1(2|x|)`` inlined (``|x|`` clamped to 10, one
  division; computed on halves to save two operations, see ``_tanh_f32``).  f64: ``|x| < 0.625``:
  the odd Taylor series (Bernoulli numbers, 22 terms); otherwise ``1 - 2 / (exp(2|x|) + 1)``.
* ``sigmoid``: ``1 / (1 + e)`` or ``e / (1 + e)`` with ``e = exp(-|x|)``.

Measured error bounds (tests/test_codegen_vmath.py checks them on numpy's
validation sets and on dense samples): see ``ULP_BOUNDS``.
"""

from __future__ import annotations

import math
from decimal import Decimal, getcontext, localcontext
from fractions import Fraction
from functools import cache

import numpy as np
from llvmlite import ir

from .llvmutil import I1, I32, I64, call_overloaded, const, element, with_element

# Maximum error in units in the last place, per function and dtype, that the
# test suite asserts (against correctly rounded references where available).
ULP_BOUNDS: dict[tuple[str, str], int] = {
    ("exp", "f32"): 2, ("exp", "f64"): 2,
    ("log", "f32"): 2, ("log", "f64"): 2,
    ("tanh", "f32"): 2, ("tanh", "f64"): 3,
    ("sigmoid", "f32"): 2, ("sigmoid", "f64"): 3,
    ("expm1", "f32"): 1, ("expm1", "f64"): 2,
    ("log1p", "f32"): 1, ("log1p", "f64"): 1,
    ("sin", "f32"): 1, ("sin", "f64"): 1,
    ("cos", "f32"): 1, ("cos", "f64"): 1,
    ("erf", "f32"): 1, ("erf", "f64"): 1,
}

getcontext().prec = 60
_LN2 = Decimal("0.693147180559945309417232121458176568075500134360255254120680")
_LOG2E = 1 / _LN2


class _Format:
    """Bit layout and range constants of one float format."""

    def __init__(self, fty: ir.Type):
        self.is_f32 = isinstance(fty, ir.FloatType)
        self.mant = 23 if self.is_f32 else 52
        self.bias = 127 if self.is_f32 else 1023
        self.ebits = 8 if self.is_f32 else 11
        self.ity = I32 if self.is_f32 else I64
        self.np = np.float32 if self.is_f32 else np.float64
        # exp's clamp: below lo the result rounds to 0, above hi it overflows.
        self.exp_lo, self.exp_hi = (-104.0, 89.0) if self.is_f32 else (-746.0, 710.0)

    def round(self, value: Fraction | Decimal | float) -> float:
        """``value`` rounded to this format, as a Python float."""
        if isinstance(value, Fraction):
            value = value.numerator / Decimal(value.denominator)
        return float(self.np(float(value))) if self.is_f32 else float(value)

    def split(self, value: Decimal, bits: int) -> tuple[float, float]:
        """``value = hi + lo`` with ``hi`` holding only ``bits`` significant bits."""
        exp = math.floor(math.log2(float(value)))
        scale = Decimal(2) ** (bits - 1 - exp)
        hi = float(int(value * scale) / scale)
        return hi, self.round(value - Decimal(hi))


# -- exact series coefficients ----------------------------------------------------

@cache
def _bernoulli(n: int) -> Fraction:
    """B_n (with B_1 = +1/2), by the Akiyama-Tanigawa algorithm."""
    a = [Fraction(0)] * (n + 1)
    for m in range(n + 1):
        a[m] = Fraction(1, m + 1)
        for j in range(m, 0, -1):
            a[j - 1] = j * (a[j - 1] - a[j])
    return a[0]


def tanh_coefficients(terms: int) -> list[Fraction]:
    """Coefficients of x, x^3, x^5, ... in the Taylor series of tanh."""
    out = []
    for n in range(1, terms + 1):
        b = _bernoulli(2 * n)
        out.append(Fraction(2 ** (2 * n) * (2 ** (2 * n) - 1)) * b / math.factorial(2 * n))
    return out


def exp_coefficients(degree: int) -> list[Fraction]:
    return [Fraction(1, math.factorial(k)) for k in range(degree + 1)]


def log_coefficients(terms: int) -> list[Fraction]:
    """2/3, 2/5, 2/7, ...: the atanh series ``log((1+s)/(1-s)) = 2s + 2s³/3 + ...``."""
    return [Fraction(2, 2 * k + 1) for k in range(1, terms + 1)]


# Minimax coefficients for the f32 fast paths (float32 values, as hex), fitted in
# float64 by Lawson's iteratively reweighted least squares on 20001 points,
# minimising the relative error of the whole result; the fitted bound is noted.

# (log1p(f) - f) / f² on f in [sqrt(1/2) - 1, sqrt(2) - 1]: log1p error 2^-25.0.
_LOG1P_F32 = [float.fromhex(h) for h in (
    "-0x1.fffffap-2", "0x1.5556f4p-2", "-0x1.00049ap-2", "0x1.98d2bep-3", "-0x1.535d26p-3",
    "0x1.318536p-3", "-0x1.2504f0p-3", "0x1.65c7e4p-4")]
# (tanh x - x) / x³ as a polynomial in z = x², |x| <= 0.3: tanh error 2^-26.3.
_TANH_SMALL_F32 = [float.fromhex(h) for h in ("-0x1.55549ep-2", "0x1.10b012p-3", "-0x1.9c99c6p-5")]
# (e^r - 1 - r) / r² on |r| <= ln2/2: e^r error 2^-28.2.
_EXPM1_F32 = [float.fromhex(h) for h in (
    "0x1.fffffcp-2", "0x1.55549p-3", "0x1.5558f4p-5", "0x1.123a6ap-7", "0x1.6a233cp-10")]


# -- building blocks -----------------------------------------------------------------

def _fmuladd(b: ir.IRBuilder, x: ir.Value, y: ir.Value, z: ir.Value) -> ir.Value:
    """``x*y + z``, fused where the target has FMA (never a libm call)."""
    return call_overloaded(b, "fmuladd", [x, y, z])


def _horner(b: ir.IRBuilder, x: ir.Value, coeffs: list[float]) -> ir.Value:
    """``c0 + c1 x + c2 x² + ...`` by Horner's rule."""
    ty = x.type
    acc: ir.Value = const(ty, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc = _fmuladd(b, acc, x, const(ty, c))
    return acc


def _select(b: ir.IRBuilder, cond: ir.Value, a: ir.Value, c: ir.Value) -> ir.Value:
    return b.select(cond, a, c)


def _pow2(b: ir.IRBuilder, n: ir.Value, fmt: _Format, fty: ir.Type) -> ir.Value:
    """``2.0**n`` for integer ``n`` in the normal exponent range."""
    ity = n.type
    biased = b.add(n, const(ity, fmt.bias))
    return b.bitcast(b.shl(biased, const(ity, fmt.mant)), fty)


# -- the functions ---------------------------------------------------------------------

def exp(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """``e**x`` for float scalars or vectors."""
    ty = x.type
    fmt = _Format(element(ty))
    ity = with_element(ty, fmt.ity)
    degree = 7 if fmt.is_f32 else 13
    ln2_hi, ln2_lo = fmt.split(_LN2, 11 if fmt.is_f32 else 32)

    isnan = b.fcmp_unordered("uno", x, x)
    xc = _select(b, b.fcmp_ordered("<", x, const(ty, fmt.exp_lo)), const(ty, fmt.exp_lo), x)
    xc = _select(b, b.fcmp_ordered(">", xc, const(ty, fmt.exp_hi)), const(ty, fmt.exp_hi), xc)
    xc = _select(b, isnan, const(ty, 0.0), xc)

    # n = round(x / ln2) by the add-and-subtract-a-magic-number trick (exact, no rint call).
    magic = const(ty, 1.5 * 2.0 ** fmt.mant)
    t = b.fmul(xc, const(ty, fmt.round(_LOG2E)))
    n = b.fsub(b.fadd(t, magic), magic)
    r = b.fsub(xc, b.fmul(n, const(ty, ln2_hi)))
    r = b.fsub(r, b.fmul(n, const(ty, ln2_lo)))

    coeffs = [fmt.round(c) for c in exp_coefficients(degree)]
    q = _horner(b, r, coeffs[2:])                 # (e^r - 1 - r) / r²
    p = b.fadd(const(ty, 1.0), _fmuladd(b, b.fmul(r, r), q, r))

    ni = b.fptosi(n, ity)
    n1 = b.ashr(ni, const(ity, 1))
    n2 = b.sub(ni, n1)
    res = b.fmul(b.fmul(p, _pow2(b, n1, fmt, ty)), _pow2(b, n2, fmt, ty))
    return _select(b, isnan, x, res)


def exp_nonpositive(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """``e**x`` for the arguments of a softmax (``x <= 0``, ``-inf``; NaN stays NaN), with
    :func:`exp`'s reduction and polynomial, so equal to it wherever the result is a normal
    number, but cheaper: one power of two (nothing to overflow below ``x = 88``) and no upper
    clamp.  Below the smallest normal result (``x < -87.3`` in f32) it gives 0 where
    :func:`exp` gives a subnormal (at most ``2^-126`` apart: nothing next to a softmax's sum,
    which is at least 1).  The fused attention kernels spend a quarter to a half of their
    time here."""
    ty = x.type
    fmt = _Format(element(ty))
    degree = 7 if fmt.is_f32 else 13
    ln2_hi, ln2_lo = fmt.split(_LN2, 11 if fmt.is_f32 else 32)
    lowest = fmt.round(-(fmt.bias - 1) * _LN2)        # e**lowest: the smallest normal, about

    xc = call_overloaded(b, "maxnum", [x, const(ty, lowest)])      # NaN -> lowest, fixed below
    magic = const(ty, 1.5 * 2.0 ** fmt.mant)
    n = b.fsub(b.fadd(b.fmul(xc, const(ty, fmt.round(_LOG2E))), magic), magic)
    r = b.fsub(xc, b.fmul(n, const(ty, ln2_hi)))
    r = b.fsub(r, b.fmul(n, const(ty, ln2_lo)))
    coeffs = [fmt.round(c) for c in exp_coefficients(degree)]
    p = b.fadd(const(ty, 1.0), _fmuladd(b, b.fmul(r, r), _horner(b, r, coeffs[2:]), r))
    res = b.fmul(p, _pow2(b, b.fptosi(n, with_element(ty, fmt.ity)), fmt, ty))
    res = _select(b, b.fcmp_ordered("<", x, const(ty, lowest)), const(ty, 0.0), res)
    return _select(b, b.fcmp_unordered("uno", x, x), x, res)


def log(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """Natural logarithm for float scalars or vectors."""
    if _Format(element(x.type)).is_f32:
        return _log_f32(b, x)
    return _log_f64(b, x)


def _log_f64(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """log for f64: fdlibm's ``s = f / (2 + f)`` arrangement with the atanh series."""
    ty = x.type
    fmt = _Format(element(ty))
    ity = with_element(ty, fmt.ity)
    terms = 9
    ln2_hi, ln2_lo = fmt.split(_LN2, 40)

    # Subnormal inputs: scale into the normal range first.
    min_normal = const(ty, 2.0 ** (1 - fmt.bias))
    small = b.fcmp_ordered("<", x, min_normal)
    xs = _select(b, small, b.fmul(x, const(ty, 2.0 ** fmt.mant)), x)
    eadj = _select(b, small, const(ity, fmt.mant), const(ity, 0))

    bits = b.bitcast(xs, ity)
    expo = b.and_(b.lshr(bits, const(ity, fmt.mant)), const(ity, (1 << fmt.ebits) - 1))
    e = b.sub(b.sub(expo, const(ity, fmt.bias)), eadj)
    mbits = b.or_(b.and_(bits, const(ity, (1 << fmt.mant) - 1)), const(ity, fmt.bias << fmt.mant))
    m = b.bitcast(mbits, ty)                                  # in [1, 2)
    big = b.fcmp_ordered(">", m, const(ty, math.sqrt(2.0)))
    m = _select(b, big, b.fmul(m, const(ty, 0.5)), m)         # in [sqrt(1/2), sqrt(2))
    e = _select(b, big, b.add(e, const(ity, 1)), e)

    f = b.fsub(m, const(ty, 1.0))                             # exact (Sterbenz)
    s = b.fdiv(f, b.fadd(const(ty, 2.0), f))
    z = b.fmul(s, s)
    coeffs = [fmt.round(c) for c in log_coefficients(terms)]
    rpoly = b.fmul(z, _horner(b, z, coeffs))
    hfsq = b.fmul(const(ty, 0.5), b.fmul(f, f))
    ef = b.sitofp(e, ty)
    inner = _fmuladd(b, s, b.fadd(hfsq, rpoly), b.fmul(ef, const(ty, ln2_lo)))
    res = b.fsub(b.fmul(ef, const(ty, ln2_hi)), b.fsub(b.fsub(hfsq, inner), f))

    inf = const(ty, math.inf)
    res = _select(b, b.fcmp_ordered("==", x, inf), inf, res)
    res = _select(b, b.fcmp_ordered("==", x, const(ty, 0.0)), const(ty, -math.inf), res)
    invalid = b.fcmp_unordered("ult", x, const(ty, 0.0))     # x < 0 or NaN
    return _select(b, invalid, const(ty, math.nan), res)


def tanh(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """Hyperbolic tangent for float scalars or vectors."""
    if _Format(element(x.type)).is_f32:
        return _tanh_f32(b, x)
    return _tanh_f64(b, x)


def _tanh_f64(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """tanh for f64 on ``a = |x|``, sign restored at the end (so ``tanh(-0) = -0``):
    odd Taylor series (22 terms) below 0.625, else ``1 - 2/(e^{2a} + 1)``."""
    ty = x.type
    fmt = _Format(element(ty))
    a = call_overloaded(b, "fabs", [x])

    coeffs = [fmt.round(c) for c in tanh_coefficients(22)]
    z = b.fmul(a, a)
    q = _horner(b, z, coeffs[1:])                             # (tanh a - a) / a³
    small = _fmuladd(b, b.fmul(a, z), q, a)

    e = exp(b, b.fadd(a, a))
    large = b.fsub(const(ty, 1.0), b.fdiv(const(ty, 2.0), b.fadd(e, const(ty, 1.0))))
    res = _select(b, b.fcmp_ordered("<", a, const(ty, 0.625)), small, large)
    return call_overloaded(b, "copysign", [res, x])


def _log_f32(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """log for f32, division-free.

    ``x = 2^k m`` with ``m`` in ``[sqrt(1/2), sqrt(2))`` by integer operations on
    the bit pattern (subtracting the bits of ``sqrt(1/2)`` moves the mantissa
    boundary there), ``f = m - 1`` (exact), ``log1p(f) = f + f² q(f)`` with the
    minimax ``q`` of ``_LOG1P_F32`` and ``k ln2`` added by one FMA.
    """
    ty = x.type
    ity = with_element(ty, I32)
    ln2 = float(np.float32(float(_LN2)))

    small = b.fcmp_ordered("<", x, const(ty, 2.0 ** -126))     # subnormal (or <= 0)
    xs = _select(b, small, b.fmul(x, const(ty, 2.0 ** 23)), x)
    bits = b.bitcast(xs, ity)
    tmp = b.sub(bits, const(ity, 0x3F3504F3))                  # bits of sqrt(1/2)
    k = b.ashr(tmp, const(ity, 23))
    m = b.bitcast(b.sub(bits, b.and_(tmp, const(ity, -(1 << 23)))), ty)
    kf = b.fsub(b.sitofp(k, ty), _select(b, small, const(ty, 23.0), const(ty, 0.0)))

    f = b.fsub(m, const(ty, 1.0))
    p = _fmuladd(b, b.fmul(f, f), _horner(b, f, _LOG1P_F32), f)
    # k ln2 with ln2 rounded to f32: its error (k 1.9e-9) is < 0.1 ULP of the result
    res = _fmuladd(b, kf, const(ty, ln2), p)

    res = _select(b, b.fcmp_unordered("uge", x, const(ty, math.inf)), x, res)   # +inf, NaN
    res = _select(b, b.fcmp_ordered("==", x, const(ty, 0.0)), const(ty, -math.inf), res)
    return _select(b, b.fcmp_ordered("<", x, const(ty, 0.0)), const(ty, math.nan), res)


def _tanh_f32(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """tanh for f32 on ``a = |x|``, sign restored at the end (so ``tanh(-0) = -0``):
    ``a < 0.3``: ``a + a³ P(a²)`` (minimax ``_TANH_SMALL_F32``); otherwise
    ``m / (m + 2)`` with ``m = expm1(2a)`` (below 0.3 its three roundings reach
    3 ULP where the result sits at the bottom of a binade).

    ``|x|`` is clamped to 10 (``tanh`` is 1 in f32 from 9.1 on), so the inlined
    ``expm1`` needs no overflow or subnormal handling.  It works on halves, to
    save the doubling and a multiply: ``n = round(a 2/ln2)`` by one FMA with a
    magic number, ``h = a - n ln2/2 = r/2`` where ``2a = n ln2 + r`` (one FMA),
    ``p/2 = h + h² Q'(h)`` with ``Q'(h) = 2 Q(2h)`` (``Q`` the minimax
    ``_EXPM1_F32``: ``e^r - 1 = p = r + r² Q(r)``; the coefficients scale by
    powers of two, so this is ``p/2`` exactly as ``p`` would round), and
    ``m = 2^(n+1) (p/2) + (2^n - 1)`` (exact for ``n = 0``, so tiny ``x`` keep
    full relative accuracy).
    """
    ty = x.type
    ity = with_element(ty, I32)
    ln2 = float(np.float32(float(_LN2)))
    a = call_overloaded(b, "fabs", [x])
    ac = _select(b, b.fcmp_ordered(">", a, const(ty, 10.0)), const(ty, 10.0), a)   # keeps NaN
    # n = round(a 2/ln2) by adding and subtracting 1.5 2^23 + 128: the low bits of
    # the sum hold n + 128, the biased exponent of 2^(n+1).
    magic = const(ty, 1.5 * 2.0 ** 23 + 128)
    shifted = _fmuladd(b, ac, const(ty, 2 * float(np.float32(float(_LOG2E)))), magic)
    n = b.fsub(shifted, magic)                                   # 0..29
    # One FMA with ln2 rounded to f32: its error (n 1.9e-9) moves the result by
    # < 0.05 ULP, as tanh's sensitivity to e^{2a} falls with e^{-2a}.
    h = _fmuladd(b, n, const(ty, -ln2 / 2), ac)
    q = _horner(b, h, [c * 2.0 ** (k + 1) for k, c in enumerate(_EXPM1_F32)])
    p_half = _fmuladd(b, b.fmul(h, h), q, h)
    bits2 = b.shl(b.bitcast(shifted, ity), const(ity, 23))
    scale2 = b.bitcast(bits2, ty)                                          # 2^(n+1)
    # 2^n - 1 by an integer subtract and an add rather than one FMA: the loop is
    # bound by the FMA pipes (14 multiplies and FMAs and a division per vector).
    scale = b.bitcast(b.sub(bits2, const(ity, 1 << 23)), ty)              # 2^n
    m = _fmuladd(b, scale2, p_half, b.fsub(scale, const(ty, 1.0)))
    large = b.fdiv(m, b.fadd(m, const(ty, 2.0)))

    z = b.fmul(a, a)
    small = _fmuladd(b, b.fmul(a, z), _horner(b, z, _TANH_SMALL_F32), a)
    res = _select(b, b.fcmp_ordered("<", a, const(ty, 0.3)), small, large)
    return call_overloaded(b, "copysign", [res, x])


def sigmoid(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """The logistic function: ``1 / (1 + e)`` for ``x >= 0`` and ``e / (1 + e)``
    for ``x < 0``, with ``e = exp(-|x|)`` (never overflows, keeps subnormal results)."""
    ty = x.type
    e = exp(b, b.fneg(call_overloaded(b, "fabs", [x])))
    denom = b.fadd(const(ty, 1.0), e)
    num = _select(b, b.fcmp_ordered("<", x, const(ty, 0.0)), e, const(ty, 1.0))
    return b.fdiv(num, denom)


# -- expm1, log1p, sin, cos, erf ------------------------------------------------------
#
# sin and cos compute in f64 for both dtypes (an f32 operand is widened, the
# result rounded once at the end), so one algorithm per function serves both and
# the f32 results are within about half an ULP; the f32 forms use shorter series.
# erf computes f64 operands so and f32 operands in f32 (_erf_f32: within 1 ULP).
# expm1 and log1p compute in the operand's dtype (f32: shorter series, ln2 split
# for an exact k ln2_hi), within 1 ULP too (tests/test_codegen_vmath_more.py).


def _widen(b: ir.IRBuilder, x: ir.Value) -> tuple[ir.Value, bool]:
    """``x`` as f64 (scalar or vector), and whether it was f32."""
    if isinstance(element(x.type), ir.FloatType):
        return b.fpext(x, with_element(x.type, ir.DoubleType())), True
    return x, False


def _narrow(b: ir.IRBuilder, x: ir.Value, narrow: bool) -> ir.Value:
    return b.fptrunc(x, with_element(x.type, ir.FloatType())) if narrow else x


def _two_sum(b: ir.IRBuilder, a: ir.Value, c: ir.Value) -> tuple[ir.Value, ir.Value]:
    """``a + c = s + err`` exactly (Knuth's TwoSum, no ordering needed)."""
    s = b.fadd(a, c)
    cc = b.fsub(s, a)
    err = b.fadd(b.fsub(a, b.fsub(s, cc)), b.fsub(c, cc))
    return s, err


def _keep_zero(b: ir.IRBuilder, x: ir.Value, res: ir.Value) -> ir.Value:
    """``x`` where it is ±0 (so f(-0) = -0 for the odd functions), else ``res``."""
    return b.select(b.fcmp_ordered("==", x, const(x.type, 0.0)), x, res)


def expm1(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """``e**x - 1``, accurate near 0, for float scalars or vectors.

    ``x = n ln2 + r`` (Cody-Waite as in ``exp``), ``p = e^r - 1 = r + r² Q(r)``
    (Taylor, degree 13 for f64 and 8 for f32 operands), then
    ``2^n p + (2^n - 1)`` by one FMA (exact ``2^n - 1`` for ``|n| <= 53``, 24 in f32;
    beyond, its rounding is below half an ULP of the result);
    from ``n > 56`` on the ``- 1`` is below half an ULP and the result is
    ``(p + 1) 2^n`` scaled in two steps as ``exp`` does; below ``x = -40`` it is
    ``-1``.
    """
    xd = x
    ty = xd.type
    fmt = _Format(element(ty))
    ity = with_element(ty, fmt.ity)
    ln2_hi, ln2_lo = fmt.split(_LN2, 16 if fmt.is_f32 else 32)    # n ln2_hi exact for |n| < 2^8 / 2^21
    top = fmt.exp_hi if fmt.is_f32 else 710.0
    xc = _select(b, b.fcmp_ordered("<", xd, const(ty, -40.0)), const(ty, -40.0), xd)
    xc = _select(b, b.fcmp_ordered(">", xc, const(ty, top)), const(ty, top), xc)
    xc = _select(b, b.fcmp_unordered("uno", xd, xd), const(ty, 0.0), xc)

    magic = const(ty, 1.5 * 2.0 ** fmt.mant)
    n = b.fsub(_fmuladd(b, xc, const(ty, float(_LOG2E)), magic), magic)
    r1 = _fmuladd(b, b.fneg(n), const(ty, ln2_hi), xc)          # exact
    n_lo = b.fmul(n, const(ty, ln2_lo))
    r = b.fsub(r1, n_lo)
    r_err = b.fsub(b.fsub(r1, r), n_lo)                          # r1 - n ln2_lo = r + r_err
    coeffs = [fmt.round(c) for c in exp_coefficients(8 if fmt.is_f32 else 13)]
    # e^(r + r_err) - 1 = p + r_err (1 + p) to first order in r_err
    p = _fmuladd(b, b.fmul(r, r), _horner(b, r, coeffs[2:]), _fmuladd(b, r_err, b.fadd(r, const(ty, 1.0)), r))

    ni = b.fptosi(n, ity)
    small_n = b.icmp_signed("<=", ni, const(ity, 56))
    scale = _pow2(b, _select(b, small_n, ni, const(ity, 0)), fmt, ty)
    mid = _fmuladd(b, scale, p, b.fsub(scale, const(ty, 1.0)))
    n1 = b.ashr(ni, const(ity, 1))
    big = b.fmul(b.fmul(b.fadd(p, const(ty, 1.0)), _pow2(b, n1, fmt, ty)), _pow2(b, b.sub(ni, n1), fmt, ty))
    res = _select(b, small_n, mid, big)
    res = _select(b, b.icmp_signed("<", ni, const(ity, -56)), const(ty, -1.0), res)
    return _select(b, b.fcmp_unordered("uno", xd, xd), xd, _keep_zero(b, xd, res))


def log1p(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """``log(1 + x)``, accurate near 0, for float scalars or vectors.

    ``u = 1 + x`` and its rounding error ``c`` (TwoSum, exact), ``u = 2^k m``
    with ``m`` in ``[sqrt(1/2), sqrt(2))`` by the bit pattern, and
    ``log1p(x) = k ln2 + log(m) + c/u`` with ``log(m)`` as ``_log_f64``
    computes it (the atanh series in ``s = f/(2+f)``, 9 terms for f64, 5 for
    f32 operands).
    """
    xd = x
    ty = xd.type
    fmt = _Format(element(ty))
    ity = with_element(ty, fmt.ity)
    ln2_hi, ln2_lo = fmt.split(_LN2, 16 if fmt.is_f32 else 40)    # k ln2_hi exact

    u, c = _two_sum(b, const(ty, 1.0), xd)
    bits = b.bitcast(u, ity)
    expo = b.and_(b.lshr(bits, const(ity, fmt.mant)), const(ity, (1 << fmt.ebits) - 1))
    e = b.sub(expo, const(ity, fmt.bias))
    m = b.bitcast(b.or_(b.and_(bits, const(ity, (1 << fmt.mant) - 1)), const(ity, fmt.bias << fmt.mant)), ty)
    big = b.fcmp_ordered(">", m, const(ty, math.sqrt(2.0)))
    m = _select(b, big, b.fmul(m, const(ty, 0.5)), m)
    e = _select(b, big, b.add(e, const(ity, 1)), e)

    f = b.fsub(m, const(ty, 1.0))
    s = b.fdiv(f, b.fadd(const(ty, 2.0), f))
    z = b.fmul(s, s)
    coeffs = [fmt.round(c) for c in log_coefficients(5 if fmt.is_f32 else 9)]
    rpoly = b.fmul(z, _horner(b, z, coeffs))
    hfsq = b.fmul(const(ty, 0.5), b.fmul(f, f))
    ef = b.sitofp(e, ty)
    low = _fmuladd(b, ef, const(ty, ln2_lo), b.fdiv(c, u))
    inner = _fmuladd(b, s, b.fadd(hfsq, rpoly), low)
    res = b.fsub(b.fmul(ef, const(ty, ln2_hi)), b.fsub(b.fsub(hfsq, inner), f))

    inf = const(ty, math.inf)
    res = _select(b, b.fcmp_ordered("==", xd, inf), inf, res)
    res = _select(b, b.fcmp_ordered("==", xd, const(ty, -1.0)), const(ty, -math.inf), res)
    invalid = b.fcmp_unordered("ult", xd, const(ty, -1.0))   # x < -1 or NaN
    return _select(b, invalid, const(ty, math.nan), _keep_zero(b, xd, res))


# sin and cos: Cody-Waite reduction by pi/2 in f64 up to this |x| (the
# reduction stays exact there, see _sincos); larger finite inputs go to the C
# library's sin/cos lane by lane, behind a branch taken only when a vector has
# such a lane.
SINCOS_VECTOR_LIMIT = 2.0 ** 28
_PI = Decimal("3.14159265358979323846264338327950288419716939937510582097494459230781640628620899863")


def sin_coefficients(terms: int) -> list[Fraction]:
    """(-1)^k / (2k+1)!: ``sin x = x - x³/6 + x⁵/120 - ...``."""
    return [Fraction((-1) ** k, math.factorial(2 * k + 1)) for k in range(terms)]


def cos_coefficients(terms: int) -> list[Fraction]:
    """(-1)^k / (2k)!: ``cos x = 1 - x²/2 + x⁴/24 - ...``."""
    return [Fraction((-1) ** k, math.factorial(2 * k)) for k in range(terms)]


def _pio2_parts() -> tuple[float, float, float]:
    """pi/2 as the sum of three doubles, each the rounding of what the others leave."""
    pio2 = _PI / 2
    p1 = float(pio2)
    p2 = float(pio2 - Decimal(p1))
    return p1, p2, float(pio2 - Decimal(p1) - Decimal(p2))


def sin(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """Sine for float scalars or vectors (see :func:`_sincos`)."""
    return _sincos(b, x, quadrant_shift=0)


def cos(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """Cosine for float scalars or vectors: ``sin`` a quadrant further on."""
    return _sincos(b, x, quadrant_shift=1)


def _sincos(b: ir.IRBuilder, x: ir.Value, quadrant_shift: int) -> ir.Value:
    """``sin(x + quadrant_shift pi/2)`` in f64 (f32 operands widened).

    Reduction: ``n = rint(x 2/pi)``, ``r = x - n pi/2`` with pi/2 split in three
    doubles ``P1 + P2 + P3``: ``x - n P1`` by one FMA is exact (both are
    multiples of ``2^-53``, the difference is below 1), the rest is carried as a
    double-double ``hi + lo``.  For ``|x| <= 2^28`` this leaves an absolute
    error far below an ULP of the smallest ``|r|`` a double in that range can
    have (about ``2^-75``).  Then ``sin(hi + lo) = hi + hi z S(z) + lo (1 - z/2)``
    and ``cos(hi + lo) = w + (((1 - w) - z/2) + z² C(z) - hi lo)`` with
    ``w = 1 - z/2``, ``z = hi²`` (its rounding error added back), and ``S``,
    ``C`` the Taylor series (9 terms each for f64, 5 and 6 for f32 operands),
    chosen by the quadrant ``n + quadrant_shift mod 4``.
    """
    xd, narrow = _widen(b, x)
    ty = xd.type
    ity = with_element(ty, I64)
    p1, p2, p3 = _pio2_parts()
    a = call_overloaded(b, "fabs", [xd])
    in_range = b.fcmp_ordered("<=", a, const(ty, SINCOS_VECTOR_LIMIT))
    xr = _select(b, in_range, xd, const(ty, 0.0))

    magic = const(ty, 1.5 * 2.0 ** 52)
    n = b.fsub(_fmuladd(b, xr, const(ty, float(2 / _PI)), magic), magic)
    r1 = _fmuladd(b, b.fneg(n), const(ty, p1), xr)                # exact
    t2 = b.fmul(n, const(ty, p2))
    t2_err = _fmuladd(b, n, const(ty, p2), b.fneg(t2))            # n P2 = t2 + t2_err exactly
    rh, rh_err = _two_sum(b, r1, b.fneg(t2))
    rl = b.fsub(b.fsub(rh_err, t2_err), b.fmul(n, const(ty, p3)))
    hi = b.fadd(rh, rl)
    lo = b.fsub(rl, b.fsub(hi, rh))

    z = b.fmul(hi, hi)
    z_err = _fmuladd(b, hi, hi, b.fneg(z))
    s_terms, c_terms = (5, 6) if narrow else (9, 9)
    s_coeffs = [float(c) for c in sin_coefficients(s_terms)]
    c_coeffs = [float(c) for c in cos_coefficients(c_terms)]
    half_z = b.fmul(z, const(ty, 0.5))
    sin_tail = _fmuladd(b, lo, b.fsub(const(ty, 1.0), half_z), b.fmul(b.fmul(hi, z), _horner(b, z, s_coeffs[1:])))
    sin_r = b.fadd(hi, sin_tail)
    w = b.fsub(const(ty, 1.0), half_z)
    w_err = b.fsub(b.fsub(const(ty, 1.0), w), half_z)
    cos_tail = _fmuladd(b, b.fmul(z, z), _horner(b, z, c_coeffs[2:]), b.fneg(b.fmul(hi, lo)))
    cos_tail = b.fsub(b.fadd(w_err, cos_tail), b.fmul(const(ty, 0.5), z_err))
    cos_r = b.fadd(w, cos_tail)

    q = b.and_(b.add(b.fptosi(n, ity), const(ity, quadrant_shift)), const(ity, 3))
    odd = b.trunc(q, with_element(ty, I1))                        # q = 1, 3: the cosine
    negative = b.icmp_unsigned(">=", q, const(ity, 2))            # q = 2, 3: negated
    res = _select(b, odd, cos_r, sin_r)
    res = _select(b, negative, b.fneg(res), res)
    if quadrant_shift == 0:
        res = _keep_zero(b, xd, res)
    res = _select(b, b.fcmp_unordered("uge", a, const(ty, math.inf)), const(ty, math.nan), res)  # ±inf, NaN
    res = _libm_lanes(b, "cos" if quadrant_shift else "sin", xd, res,
                      b.fcmp_ordered("<", a, const(ty, math.inf)), in_range)
    return _narrow(b, res, narrow)


def _libm_lanes(b: ir.IRBuilder, name: str, x: ir.Value, res: ir.Value, finite: ir.Value,
                in_range: ir.Value) -> ir.Value:
    """``res``, with the lanes that are finite but not ``in_range`` replaced by the C
    library's ``name(x)`` (f64).  The calls sit in a function of their own
    (:func:`_libm_function`), called only when some lane needs it, so the common case
    costs one test and a branch, and the inlined copies of the caller stay small."""
    need = b.and_(finite, b.xor(in_range, const(in_range.type, 1)))
    vector = isinstance(x.type, ir.VectorType)
    any_lane = call_overloaded(b, "vector.reduce.or", [need], ret=I1) if vector else need
    start = b.block
    slow = b.append_basic_block(f"{name}.libm")
    done = b.append_basic_block(f"{name}.done")
    b.cbranch(any_lane, slow, done)
    b.position_at_end(slow)
    fixed = b.call(_libm_function(b.module, name, x.type), [x, res, need])
    b.branch(done)
    b.position_at_end(done)
    out = b.phi(res.type)
    out.add_incoming(res, start)
    out.add_incoming(fixed, slow)
    return out


def _libm_function(module: ir.Module, name: str, ty: ir.Type) -> ir.Function:
    """``dlc.vmath.<name>_libm.<type>(x, res, need)``: ``res`` with the lanes where
    ``need`` holds replaced by ``name(x)`` of the C library, one call per such lane."""
    from .llvmutil import type_suffix

    symbol = f"dlc.vmath.{name}_libm.{type_suffix(ty)}"
    fn = module.globals.get(symbol)
    if fn is not None:
        return fn
    libm = module.globals.get(name)
    if libm is None:
        libm = ir.Function(module, ir.FunctionType(ir.DoubleType(), [ir.DoubleType()]), name)
    mask_ty = with_element(ty, I1)
    fn = ir.Function(module, ir.FunctionType(ty, [ty, ty, mask_ty]), symbol)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    x, res, need = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    if not isinstance(ty, ir.VectorType):
        b.ret(b.select(need, b.call(libm, [x]), res))
        return fn
    for i in range(ty.count):
        lane = ir.Constant(I32, i)
        value = b.call(libm, [b.extract_element(x, lane)])
        keep = b.extract_element(res, lane)
        res = b.insert_element(res, b.select(b.extract_element(need, lane), value, keep), lane)
    b.ret(res)
    return fn


# erf: |x| < 1: x + x (F(x²) - 1) with F(t) = erf(sqrt t)/sqrt t; 1 <= |x| < 6:
# 1 - exp(-x²) G(|x|) with G(x) = erfc(x) e^{x²} on five intervals; from 6 on,
# erf rounds to ±1 in f64.  F and G are polynomials in u in [-1, 1] (the
# interval mapped linearly) interpolating the function at the Chebyshev nodes,
# computed once from erf evaluated to 50 digits (see erf_polynomial).
_ERF_INTERVALS = ((1.0, 1.5), (1.5, 2.25), (2.25, 3.25), (3.25, 4.5), (4.5, 6.0))
_ERF_F64_DEGREES = (12, 13)     # (F, G) for f64 operands


def _erf_decimal(x: Decimal) -> Decimal:
    """erf(x) by its Taylor series, to about 50 significant digits for |x| <= 6."""
    with localcontext() as ctx:
        ctx.prec = 90
        t = x * x
        term, total, k = x, x, 0
        while True:
            k += 1
            term = -term * t / k
            add = term / (2 * k + 1)
            total += add
            if k > 2 * t and abs(add) < Decimal(10) ** -70:
                break
        return 2 * total / _PI.sqrt()


def _interpolate(f, lo: Decimal, hi: Decimal, degree: int) -> list[Decimal]:
    """Monomial coefficients in ``u`` in [-1, 1] of the polynomial of ``degree``
    through ``f`` at the Chebyshev nodes of [lo, hi] (``x = mid + half u``)."""
    with localcontext() as ctx:
        ctx.prec = 60
        mid, half = (lo + hi) / 2, (hi - lo) / 2
        us = [Decimal(math.cos(math.pi * (k + 0.5) / (degree + 1))) for k in range(degree + 1)]
        rows = [[u ** j if j else Decimal(1) for j in range(degree + 1)] + [f(mid + half * u)] for u in us]
        size = degree + 1
        for i in range(size):                      # Gauss-Jordan with partial pivoting
            pivot = max(range(i, size), key=lambda r: abs(rows[r][i]))
            rows[i], rows[pivot] = rows[pivot], rows[i]
            for r in range(size):
                if r != i:
                    m = rows[r][i] / rows[i][i]
                    rows[r] = [v - m * w for v, w in zip(rows[r], rows[i])]
        return [rows[i][size] / rows[i][i] for i in range(size)]


@cache
def erf_polynomial(which: str, lo: float, hi: float, degree: int) -> tuple[float, ...]:
    """Coefficients (doubles) in ``u = (v - mid) / half`` of the interpolant of
    ``which``: ``"F"`` (``v = x²``, ``F(v) - 1 = erf(sqrt v)/sqrt v - 1``) or ``"G"``
    (``v = x``, ``G(v) = erfc(v) exp(v²)``) on [lo, hi]."""
    def fn(v: Decimal) -> Decimal:
        if which == "F":
            if v == 0:
                return 2 / _PI.sqrt() - 1
            root = v.sqrt()
            return _erf_decimal(root) / root - 1
        return (1 - _erf_decimal(v)) * (v * v).exp()

    return tuple(float(c) for c in _interpolate(fn, Decimal(lo), Decimal(hi), degree))


def _in_u(b: ir.IRBuilder, v: ir.Value, lo: ir.Value | float, hi: ir.Value | float) -> ir.Value:
    ty = v.type
    lo_v = lo if isinstance(lo, ir.Value) else const(ty, lo)
    hi_v = hi if isinstance(hi, ir.Value) else const(ty, hi)
    mid = b.fmul(b.fadd(lo_v, hi_v), const(ty, 0.5))
    inv_half = b.fdiv(const(ty, 2.0), b.fsub(hi_v, lo_v))
    return b.fmul(b.fsub(v, mid), inv_half)


def erf(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """The error function for float scalars or vectors: f64 as _ERF_INTERVALS says, f32 by
    :func:`_erf_f32`.

    ``|x| >= 1``: ``exp(-x²)`` as ``exp(-h) (1 - l)`` with ``x² = h + l`` exactly
    (one FMA), ``G`` with its interval's coefficients chosen lane by lane by
    selects; the sign is restored by ``copysign`` (so erf(-0) = -0).
    """
    if isinstance(element(x.type), ir.FloatType):
        return _erf_f32(b, x)
    xd = x
    ty = xd.type
    f_degree, g_degree = _ERF_F64_DEGREES
    a = call_overloaded(b, "fabs", [xd])
    t = b.fmul(a, a)

    small_poly = erf_polynomial("F", 0.0, 1.0, f_degree)                 # F(t) - 1
    small = _fmuladd(b, a, _horner(b, b.fsub(b.fmul(t, const(ty, 2.0)), const(ty, 1.0)), list(small_poly)), a)

    ac = _select(b, b.fcmp_ordered("<", a, const(ty, 1.0)), const(ty, 1.0), a)
    ac = _select(b, b.fcmp_unordered("ult", ac, const(ty, 6.0)), ac, const(ty, 6.0))   # NaN -> 6
    polys = [erf_polynomial("G", lo, hi, g_degree) for lo, hi in _ERF_INTERVALS]
    coeffs = [const(ty, p) for p in polys[0]]
    lo_v, hi_v = const(ty, _ERF_INTERVALS[0][0]), const(ty, _ERF_INTERVALS[0][1])
    for (lo, hi), poly in zip(_ERF_INTERVALS[1:], polys[1:]):
        past = b.fcmp_ordered(">=", ac, const(ty, lo))
        coeffs = [_select(b, past, const(ty, c), old) for c, old in zip(poly, coeffs)]
        lo_v = _select(b, past, const(ty, lo), lo_v)
        hi_v = _select(b, past, const(ty, hi), hi_v)
    u = _in_u(b, ac, lo_v, hi_v)
    g = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        g = _fmuladd(b, g, u, c)
    h = b.fmul(ac, ac)
    l_ = _fmuladd(b, ac, ac, b.fneg(h))
    erfc = b.fmul(b.fmul(exp(b, b.fneg(h)), b.fsub(const(ty, 1.0), l_)), g)
    large = b.fsub(const(ty, 1.0), erfc)
    large = _select(b, b.fcmp_ordered(">=", a, const(ty, 6.0)), const(ty, 1.0), large)

    res = _select(b, b.fcmp_ordered("<", a, const(ty, 1.0)), small, large)
    res = _select(b, b.fcmp_unordered("uno", xd, xd), xd, call_overloaded(b, "copysign", [res, xd]))
    return res


# erf in f32 arithmetic (f32 operands): the same two forms, in f32 and with shorter
# polynomials -- |x| < 1: x + x (F(x²) - 1), F of degree 7 in u = 2x² - 1; 1 <= |x| <
# ERF_F32_ONE: 1 - exp(-x²) G(|x|) with G of degree 11 on that one interval; from
# ERF_F32_ONE on (erfc < 2^-25) erf rounds to ±1 in f32.  Within 1 ULP of the correctly
# rounded erf (tests/test_codegen_vmath_more.py), 4-5x the speed of the f64 form on
# AVX-512: no widening to two f64 vectors, no interval selects, no division.
ERF_F32_ONE = 3.9375
_ERF_F32_DEGREES = (7, 11)


def _erf_f32(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """The error function of f32 scalars or vectors, computed in f32 (see ERF_F32_ONE)."""
    ty = x.type
    f_degree, g_degree = _ERF_F32_DEGREES
    a = call_overloaded(b, "fabs", [x])
    t = b.fmul(a, a)
    small_poly = erf_polynomial("F", 0.0, 1.0, f_degree)                 # F(t) - 1
    small = _fmuladd(b, a, _horner(b, _fmuladd(b, t, const(ty, 2.0), const(ty, -1.0)), list(small_poly)), a)

    ac = _select(b, b.fcmp_ordered("<", a, const(ty, 1.0)), const(ty, 1.0), a)
    ac = _select(b, b.fcmp_unordered("ult", ac, const(ty, ERF_F32_ONE)), ac, const(ty, ERF_F32_ONE))  # NaN too
    mid, half = (1.0 + ERF_F32_ONE) / 2, (ERF_F32_ONE - 1.0) / 2
    u = b.fmul(b.fsub(ac, const(ty, mid)), const(ty, 1.0 / half))
    g = _horner(b, u, list(erf_polynomial("G", 1.0, ERF_F32_ONE, g_degree)))
    h = b.fmul(ac, ac)
    l_ = _fmuladd(b, ac, ac, b.fneg(h))
    erfc = b.fmul(b.fmul(exp(b, b.fneg(h)), b.fsub(const(ty, 1.0), l_)), g)
    large = b.fsub(const(ty, 1.0), erfc)
    large = _select(b, b.fcmp_ordered(">=", a, const(ty, ERF_F32_ONE)), const(ty, 1.0), large)

    res = _select(b, b.fcmp_ordered("<", a, const(ty, 1.0)), small, large)
    return _select(b, b.fcmp_unordered("uno", x, x), x, call_overloaded(b, "copysign", [res, x]))


FUNCTIONS = {"exp": exp, "log": log, "tanh": tanh, "sigmoid": sigmoid, "expm1": expm1,
             "log1p": log1p, "sin": sin, "cos": cos, "erf": erf}


def call(b: ir.IRBuilder, name: str, x: ir.Value) -> ir.Value:
    """``name(x)`` through one internal function per module, function and type
    (``dlc.vmath.exp.v16f32``), built once and marked ``alwaysinline``.

    Inlined, the loop keeps the function's constants in registers and makes no
    call: ``tanh`` on 2^20 f32 ran 1.1x as fast as
    through a call per vector (exp 1.2x, sigmoid 1.1x, log about the same).  The
    price is LLVM's time for every copy: a kernel holds eight of each use (vector
    body and masked tail in each of the four places its task body ends up
    inlined, as the optimized IR of a one-op kernel shows).  The test
    suite's CPU time did not move measurably (148 s -> 153 s); a module of 24
    functions made of nothing but vmath calls compiles in 3.1 s instead of 1.1."""
    from .llvmutil import type_suffix

    symbol = f"dlc.vmath.{name}.{type_suffix(x.type)}"
    fn = b.module.globals.get(symbol)
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(x.type, [x.type]), symbol)
        fn.linkage = "internal"
        fn.attributes.add("nounwind")
        fn.attributes.add("alwaysinline")
        body = ir.IRBuilder(fn.append_basic_block("entry"))
        body.ret(FUNCTIONS[name](body, fn.args[0]))
    return b.call(fn, [x])

__all__ = ["exp", "log", "tanh", "sigmoid", "expm1", "log1p", "sin", "cos", "erf", "call", "FUNCTIONS",
           "ULP_BOUNDS"]
