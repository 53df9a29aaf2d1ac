"""Philox-4x32-10 in LLVM IR, one counter per vector lane.

The native side of ``compiler/ops/random.py`` (whose module docstring fixes
the conventions: how keys and counters map to Philox words, how words
become floats).  Every function here works on scalars and on vectors alike:
a kernel ``W`` lanes wide computes ``W`` independent counters at once, each
round two ``32 x 32 -> 64``-bit multiplications per lane (``vpmuludq`` on
x86), so the numbers are generated inside the fused loop that consumes them
and do not depend on the vector width or the thread count.
"""

from __future__ import annotations

from llvmlite import ir

from ..ops.random import FOLD_IN_DOMAIN, PHILOX_M0, PHILOX_M1, PHILOX_ROUNDS, PHILOX_W0, PHILOX_W1
from .llvmutil import F32, F64, I32, I64, const, with_element

Words = tuple[ir.Value, ir.Value, ir.Value, ir.Value]


def _u32(ty: ir.Type, value: int) -> ir.Constant:
    """The 32-bit pattern ``value`` (0 <= value < 2^32) as a constant of ``ty`` (i32 lanes)."""
    return const(ty, value - (1 << 32) if value >= 1 << 31 else value)


def philox4x32(b: ir.IRBuilder, counter: Words, key: tuple[ir.Value, ir.Value],
               rounds: int = PHILOX_ROUNDS) -> Words:
    """The four output words of Philox-4x32-``rounds`` (i32 lanes in, i32 lanes out)."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    ty = c0.type
    wide = with_element(ty, I64)
    m0, m1 = const(wide, PHILOX_M0), const(wide, PHILOX_M1)
    shift = const(wide, 32)
    for r in range(rounds):
        if r:
            k0 = b.add(k0, _u32(ty, PHILOX_W0))
            k1 = b.add(k1, _u32(ty, PHILOX_W1))
        p0 = b.mul(b.zext(c0, wide), m0)
        p1 = b.mul(b.zext(c2, wide), m1)
        hi0, lo0 = b.trunc(b.lshr(p0, shift), ty), b.trunc(p0, ty)
        hi1, lo1 = b.trunc(b.lshr(p1, shift), ty), b.trunc(p1, ty)
        c0, c1, c2, c3 = b.xor(b.xor(hi1, c1), k0), lo1, b.xor(b.xor(hi0, c3), k1), lo0
    return c0, c1, c2, c3


def split64(b: ir.IRBuilder, x: ir.Value) -> tuple[ir.Value, ir.Value]:
    """An i64 value's (low, high) 32-bit words."""
    ty = with_element(x.type, I32)
    return b.trunc(x, ty), b.trunc(b.lshr(x, const(x.type, 32)), ty)


def element_words(b: ir.IRBuilder, key: ir.Value, counter: ir.Value) -> Words:
    """The words of the elements at linear indices ``counter`` (i64) under ``key`` (i64)."""
    lo, hi = split64(b, counter)
    zero = const(lo.type, 0)
    return philox4x32(b, (lo, hi, zero, zero), split64(b, key))


def fold_in(b: ir.IRBuilder, key: ir.Value, data: ir.Value) -> ir.Value:
    """``fold_in(key, data)``: words 0 and 1 of Philox of ``(data, 0, 1)`` as one i64."""
    lo, hi = split64(b, data)
    w = philox4x32(b, (lo, hi, const(lo.type, 0), const(lo.type, FOLD_IN_DOMAIN)), split64(b, key))
    wide = key.type
    return b.or_(b.zext(w[0], wide), b.shl(b.zext(w[1], wide), const(wide, 32)))


def unit_f32(b: ir.IRBuilder, word: ir.Value, plus_one: bool = False) -> ir.Value:
    """``((word >> 8) [+ 1]) * 2^-24`` as f32: 24 random bits in ``[0, 1)`` (``(0, 1]``
    with ``plus_one``); every step exact."""
    fty = with_element(word.type, F32)
    x = b.uitofp(b.lshr(word, const(word.type, 8)), fty)
    if plus_one:
        x = b.fadd(x, const(fty, 1.0))
    return b.fmul(x, const(fty, 2.0 ** -24))


def unit_f64(b: ir.IRBuilder, w_hi: ir.Value, w_lo: ir.Value) -> ir.Value:
    """``((w_hi >> 11) * 2^32 + w_lo) * 2^-53`` as f64: 53 random bits in ``[0, 1)``."""
    wide = with_element(w_hi.type, I64)
    bits = b.or_(b.shl(b.zext(b.lshr(w_hi, const(w_hi.type, 11)), wide), const(wide, 32)),
                 b.zext(w_lo, wide))
    fty = with_element(w_hi.type, F64)
    return b.fmul(b.uitofp(bits, fty), const(fty, 2.0 ** -53))


__all__ = ["philox4x32", "split64", "element_words", "fold_in", "unit_f32", "unit_f64"]
