"""Storage dtypes in native code: f16 and bf16 compute in f32, i8 and u8 in i32.

A value of a storage dtype lives in a wider register (``llvmutil.scalar_type``) and
always holds a value of its dtype:

- :func:`widen` turns a loaded element into its register form (exact);
- :func:`narrow` turns a register into the element to store, rounding to nearest
  even (f16, bf16) or wrapping (i8, u8);
- :func:`fit` is ``widen(narrow(x))``: the kernels apply it to every elementwise
  op's result, so an op on f16 is computed in f32 and rounded once, as numpy's
  float16 functions do, and fusion does not change a result;
- :func:`cast_to_storage` converts any dtype to a storage dtype with one rounding
  (f64 and int sources go through f32 rounded to odd, which leaves the final
  rounding to nearest even correct).

f16 uses the F16C instructions (``vcvtph2ps`` / ``vcvtps2ph``, what LLVM makes of
``fpext``/``fptrunc`` on ``half``) when the target has them
(:func:`enable_half_instructions`, set per module from the target's features);
elsewhere integer and float arithmetic that gives the same bits.  Without F16C,
LLVM calls ``__truncsfhf2``, which MCJIT cannot resolve, so that path is never
left to LLVM.  bf16 always uses integer arithmetic: AVX-512 BF16's
``vcvtneps2bf16`` flushes subnormal inputs to zero (measured: 2**-130 gives 0,
ml_dtypes gives 0x0008), which would make results depend on the CPU.
"""

from __future__ import annotations

from llvmlite import ir

from ..ir.types import DType
from .llvmutil import (
    F32,
    HALF,
    I1,
    I8,
    I16,
    I32,
    I64,
    call_overloaded,
    const,
    element,
    intrinsic,
    type_suffix,
    with_element,
)


def enable_half_instructions(module: ir.Module, on: bool) -> None:
    """Whether ``module``'s f16 conversions may use F16C (set when the module is created
    from the target's features; off, the default, is correct on every x86-64)."""
    module.dlc_f16c = on


def _half_instructions(b: ir.IRBuilder) -> bool:
    return getattr(b.module, "dlc_f16c", False)


def widen(b: ir.IRBuilder, v: ir.Value, dtype: DType) -> ir.Value:
    """A loaded element of storage dtype ``dtype`` (``half``, ``i16`` bits, ``i8``) as
    held in registers (f32 or i32); exact."""
    if dtype is DType.f16:
        if _half_instructions(b):
            return b.fpext(v, with_element(v.type, F32))
        return _half_bits_to_float(b, b.bitcast(v, with_element(v.type, I16)))
    if dtype is DType.bf16:
        wide = b.zext(v, with_element(v.type, I32))
        return b.bitcast(b.shl(wide, const(wide.type, 16)), with_element(v.type, F32))
    if dtype is DType.i8:
        return b.sext(v, with_element(v.type, I32))
    assert dtype is DType.u8, dtype
    return b.zext(v, with_element(v.type, I32))


def narrow(b: ir.IRBuilder, v: ir.Value, dtype: DType) -> ir.Value:
    """A register (f32 or i32) as the element of storage dtype ``dtype`` to store:
    rounded to nearest even (ties to even, overflow to inf, NaN kept) or wrapped."""
    if dtype is DType.f16:
        if _half_instructions(b):
            return b.fptrunc(v, with_element(v.type, HALF))
        return b.bitcast(_float_to_half_bits(b, v), with_element(v.type, HALF))
    if dtype is DType.bf16:
        return _float_to_bfloat_bits(b, v)
    assert dtype in (DType.i8, DType.u8), dtype
    return b.trunc(v, with_element(v.type, I8))


def fit(b: ir.IRBuilder, v: ir.Value, dtype: DType) -> ir.Value:
    """A register brought to a value of ``dtype``: rounded or wrapped for a storage dtype,
    unchanged for any other."""
    if not dtype.is_storage:
        return v
    return widen(b, narrow(b, v, dtype), dtype)


def cast_to_storage(b: ir.IRBuilder, x: ir.Value, source: DType, dtype: DType) -> ir.Value:
    """``x`` (a register of dtype ``source``) converted to storage dtype ``dtype``, in
    register form, as numpy's ``astype`` (ml_dtypes' for bf16): one rounding to nearest
    even for a float result; for an int result, wrapping from ints and truncation toward
    zero, saturating (NaN -> 0), from floats (the ``cast`` op's rule)."""
    if dtype.is_float:
        if source is DType.bool:
            f = b.uitofp(x, with_element(x.type, F32))
        elif source is DType.f64:
            f = _round_to_odd_f32(b, x)
        elif source.is_float:
            f = x
        else:
            f = _int_to_f32_odd(b, x)
        return fit(b, f, dtype)
    wide = with_element(x.type, I32)
    if source is DType.bool:
        return b.zext(x, wide)
    if source.is_float:
        signed = dtype is DType.i8
        name = f"llvm.fpto{'s' if signed else 'u'}i.sat.{type_suffix(with_element(x.type, I8))}.{type_suffix(x.type)}"
        narrow_int = b.call(intrinsic(b.module, name, with_element(x.type, I8), [x.type]), [x])
        return b.sext(narrow_int, wide) if signed else b.zext(narrow_int, wide)
    if element(x.type) == I64:
        x = b.trunc(x, wide)
    return fit(b, x, dtype)


# -- f16 without F16C ----------------------------------------------------------------------


def _half_bits_to_float(b: ir.IRBuilder, h: ir.Value) -> ir.Value:
    """f16 bits (i16) -> f32, exact: subnormals renormalised by one float subtraction,
    inf and NaN (payload kept) given the f32 exponent."""
    ity = with_element(h.type, I32)
    fty = with_element(h.type, F32)
    u = b.zext(h, ity)
    o = b.shl(b.and_(u, const(ity, 0x7FFF)), const(ity, 13))       # exponent and mantissa
    exp = b.and_(o, const(ity, 0x7C00 << 13))
    o = b.add(o, const(ity, (127 - 15) << 23))                     # rebias the exponent
    special = b.icmp_unsigned("==", exp, const(ity, 0x7C00 << 13))
    o_special = b.add(o, const(ity, (128 - 16) << 23))             # inf, NaN: all ones
    tiny = b.icmp_unsigned("==", exp, const(ity, 0))
    renormalised = b.fsub(b.bitcast(b.add(o, const(ity, 1 << 23)), fty),
                          b.bitcast(const(ity, 113 << 23), fty))     # zero, subnormal
    o = b.select(special, o_special, o)
    o = b.select(tiny, b.bitcast(renormalised, ity), o)
    sign = b.shl(b.and_(u, const(ity, 0x8000)), const(ity, 16))
    return b.bitcast(b.or_(o, sign), fty)


def _float_to_half_bits(b: ir.IRBuilder, f: ir.Value) -> ir.Value:
    """f32 -> f16 bits (i16), rounding to nearest even as ``vcvtps2ph`` does: overflow
    to inf, subnormal results by one float addition, NaN quietened with the top of its
    payload kept."""
    ity = with_element(f.type, I32)
    fty = with_element(f.type, F32)
    u = b.bitcast(f, ity)
    sign = b.and_(u, const(ity, 0x80000000))
    a = b.xor(u, sign)                                             # |f| as bits
    # inf or NaN, or too large (|f| >= 65536: rounds to inf)
    is_nan = b.icmp_unsigned(">", a, const(ity, 0x7F800000))
    nan = b.or_(const(ity, 0x7E00), b.and_(b.lshr(a, const(ity, 13)), const(ity, 0x1FF)))
    big = b.select(is_nan, nan, const(ity, 0x7C00))
    # a subnormal or zero result: align the 10 mantissa bits at the bottom of a float
    magic = const(ity, ((127 - 15) + (23 - 10) + 1) << 23)
    sub = b.sub(b.bitcast(b.fadd(b.bitcast(a, fty), b.bitcast(magic, fty)), ity), magic)
    # a normal result: rebias, then round to nearest even in the integer bits
    odd = b.and_(b.lshr(a, const(ity, 13)), const(ity, 1))
    normal = b.lshr(b.add(b.add(a, const(ity, ((15 - 127) << 23) + 0xFFF)), odd), const(ity, 13))
    out = b.select(b.icmp_unsigned("<", a, const(ity, 113 << 23)), sub, normal)
    out = b.select(b.icmp_unsigned(">=", a, const(ity, (127 + 16) << 23)), big, out)
    out = b.or_(out, b.lshr(sign, const(ity, 16)))
    return b.trunc(out, with_element(f.type, I16))


# -- bf16 ----------------------------------------------------------------------------------


def _float_to_bfloat_bits(b: ir.IRBuilder, f: ir.Value) -> ir.Value:
    """f32 -> bf16 bits (i16), rounding to nearest even in the integer bits (overflow to
    inf, subnormals kept); a NaN is quietened with its sign and the top of its payload."""
    ity = with_element(f.type, I32)
    u = b.bitcast(f, ity)
    odd = b.and_(b.lshr(u, const(ity, 16)), const(ity, 1))
    rounded = b.lshr(b.add(u, b.add(const(ity, 0x7FFF), odd)), const(ity, 16))
    quiet = b.or_(b.lshr(u, const(ity, 16)), const(ity, 0x40))
    out = b.select(b.fcmp_unordered("uno", f, f), quiet, rounded)
    return b.trunc(out, with_element(f.type, I16))


# -- exact narrowing through f32 ---------------------------------------------------------------


def _round_to_odd_f32(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """f64 -> f32 rounded to odd: truncated, with the last bit set when inexact.  Rounding
    that to f16 or bf16 (at least two bits fewer) to nearest even is correct, where going
    through f32 rounded to nearest could round twice."""
    fty = with_element(x.type, F32)
    ity = with_element(x.type, I32)
    r = b.fptrunc(x, fty)
    back = b.fpext(r, x.type)
    bits = b.bitcast(r, ity)
    even = b.icmp_unsigned("==", b.and_(bits, const(ity, 1)), const(ity, 0))
    inexact = b.fcmp_ordered("!=", back, x)                       # never for NaN
    away = b.fcmp_ordered(">", call_overloaded(b, "fabs", [back]), call_overloaded(b, "fabs", [x]))
    toward = b.select(away, b.sub(bits, const(ity, 1)), b.add(bits, const(ity, 1)))
    return b.bitcast(b.select(b.and_(inexact, even), toward, bits), fty)


def _int_to_f32_odd(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """A signed int register (i32 or i64) -> f32 rounded to odd: the magnitude's top 24
    bits, the last one or-ed with every bit below them (see :func:`_round_to_odd_f32`)."""
    lty = with_element(x.type, I64)
    ity = with_element(x.type, I32)
    if element(x.type) != I64:
        x = b.sext(x, lty)
    u = call_overloaded(b, "abs", [x, ir.Constant(I1, 0)])        # INT64_MIN stays 2**63 unsigned
    zeros = call_overloaded(b, "ctlz", [u, ir.Constant(I1, 0)])
    shift = b.sub(const(lty, 40), zeros)                           # bits beyond the top 24
    shift = b.select(b.icmp_signed("<", shift, const(lty, 0)), const(lty, 0), shift)
    below = b.sub(b.shl(const(lty, 1), shift), const(lty, 1))
    sticky = b.zext(b.icmp_unsigned("!=", b.and_(u, below), const(lty, 0)), lty)
    top = b.or_(b.lshr(u, shift), sticky)
    f = b.uitofp(top, with_element(x.type, F32))                   # exact: below 2**24
    scale = b.bitcast(b.shl(b.add(b.trunc(shift, ity), const(ity, 127)), const(ity, 23)),
                      with_element(x.type, F32))                   # 2**shift
    f = b.fmul(f, scale)
    return b.select(b.icmp_signed("<", x, const(lty, 0)), b.fneg(f), f)


__all__ = ["enable_half_instructions", "widen", "narrow", "fit", "cast_to_storage"]
