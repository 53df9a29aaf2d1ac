"""Contractions: ``matmul`` with numpy semantics, and ``matmul_lowp``: low-precision
products (int8 operands with i32 sums, f32 operands rounded to bf16) that native code
computes with AVX-512 VNNI / AVX-512 BF16 where the CPU has them."""

from __future__ import annotations

import numpy as np

from ..ir.core import Value
from ..ir.types import DType, TensorType
from .base import CONTRACTION, ShapeError, attr, broadcast_shapes, define, dim_str, same_dtype
from .rules import unbroadcast


def _matmul_rule(lhs: TensorType, rhs: TensorType) -> TensorType:
    for x in (lhs, rhs):
        if x.dtype in (DType.i8, DType.u8):
            raise ShapeError(f"does not take {x.dtype.dsl_name} tensors alone: write matmul(a, b, dtype=i32) "
                             "for products summed in i32 (matmul_lowp), or cast to f32 first, e.g. cast(x, f32)")
    t = same_dtype([lhs, rhs])
    if t.dtype is DType.bool:
        raise ShapeError("expects numeric operands, got bool")
    return TensorType(t.dtype, _matmul_shape(lhs, rhs))


def _matmul_shape(lhs: TensorType, rhs: TensorType) -> tuple:
    """numpy ``matmul``'s result shape (batch dims broadcast; a rank-1 operand's axis dropped)."""
    if lhs.rank == 0 or rhs.rank == 0:
        raise ShapeError(f"operands must have rank >= 1, got {lhs.dsl_str()} and {rhs.dsl_str()}")
    k_lhs = lhs.shape[-1]
    k_rhs = rhs.shape[-2] if rhs.rank >= 2 else rhs.shape[0]
    if k_lhs != k_rhs:
        raise ShapeError(f"inner dims do not match: {lhs.dsl_str()} @ {rhs.dsl_str()} "
                         f"contracts {dim_str(k_lhs)} with {dim_str(k_rhs)}")
    try:
        batch = broadcast_shapes(lhs.shape[:-2], rhs.shape[:-2])
    except ShapeError as e:
        raise ShapeError(f"batch dims of {lhs.dsl_str()} and {rhs.dsl_str()} do not broadcast: "
                         f"{str(e).rsplit(': ', 1)[-1]}") from None
    rows = (lhs.shape[-2],) if lhs.rank >= 2 else ()
    cols = (rhs.shape[-1],) if rhs.rank >= 2 else ()
    return batch + rows + cols


matmul = define(
    "matmul", operands=("lhs", "rhs"), kind=CONTRACTION, infer=_matmul_rule,
    doc="""Matrix product with numpy ``matmul`` semantics.

    Rank >= 2 operands multiply over their last two axes and broadcast the
    leading (batch) axes: ``[.., M, K] @ [.., K, N] -> [.., M, N]``.  A rank-1
    ``lhs`` ``[K]`` acts as ``[1, K]`` and a rank-1 ``rhs`` ``[K]`` as
    ``[K, 1]``; the added axis is dropped from the result (so ``[K] @ [K]``
    is a scalar).  The contracted dims must be equal (the same symbol, or the
    same integer).

    %2 = "dl.matmul"(%0, %1) : (tensor<?x784xf32, "N">, tensor<784x10xf32>) -> tensor<?x10xf32, "N">
    """)


@matmul.def_reference
def _(lhs, rhs):
    return np.matmul(lhs, rhs)


def _as_matrix(b, x: Value, vector_axis: int) -> Value:
    """``x`` itself when rank >= 2; a rank-1 ``[K]`` as ``[1, K]`` (axis 0) or ``[K, 1]`` (axis 1)."""
    if x.type.rank >= 2:
        return x
    shape = (1, x.type.shape[0]) if vector_axis == 0 else (x.type.shape[0], 1)
    return b.reshape(x, shape=shape)


def _swap_last(b, x: Value) -> Value:
    """Transpose the last two axes."""
    rank = x.type.rank
    return b.transpose(x, perm=(*range(rank - 2), rank - 1, rank - 2))


def _product_grads(b, op, ct, product, grad_type) -> list[Value]:
    """``[dA, dB]`` of ``C = A @ B`` with numpy matmul's shapes: ``dA = dC @ B^T``,
    ``dB = A^T @ dC`` by ``product(x, y)``, summed over broadcast batch axes and shaped as
    the operands (a rank-1 operand's added axis dropped); ``grad_type(t)`` is the type a
    gradient is summed in for an operand's type ``t``."""
    lhs, rhs = op.operands
    a, m = _as_matrix(b, lhs, 0), _as_matrix(b, rhs, 1)
    full = _matmul_shape(a.type, m.type)
    g = ct if ct.type.shape == full else b.reshape(ct, shape=full)
    da = unbroadcast(b, product(g, _swap_last(b, m)), grad_type(a.type))
    dm = unbroadcast(b, product(_swap_last(b, a), g), grad_type(m.type))
    if da.type.shape != lhs.type.shape:
        da = b.reshape(da, shape=lhs.type.shape)
    if dm.type.shape != rhs.type.shape:
        dm = b.reshape(dm, shape=rhs.type.shape)
    return [da, dm]


@matmul.def_vjp
def _(b, op, ct):
    return _product_grads(b, op, ct, b.matmul, lambda t: t)


matmul.lowers_to("matmul")
matmul.computes_widened()


# ---------------------------------------------------------------------------
# matmul_lowp: low-precision products (opt-in)

LOWP_INT_OPERANDS = (DType.i8, DType.u8, DType.i32)
LOWP_FLOAT_OPERANDS = (DType.f16, DType.bf16, DType.f32)
LOWP_FLOAT_RESULTS = (DType.f32, DType.bf16, DType.f16)
PRECISIONS = ("default", "bf16")
BF16_TINY = 2.0 ** -126          # the smallest normal bf16 (and f32): below it an operand counts as 0


def _matmul_lowp_rule(lhs: TensorType, rhs: TensorType, dtype: DType | None = None,
                      precision: str = "default") -> TensorType:
    if lhs.dtype in LOWP_INT_OPERANDS and rhs.dtype in LOWP_INT_OPERANDS:
        if precision != "default":
            raise ShapeError(f"precision=\"{precision}\" rounds float operands; "
                             f"got {lhs.dtype.dsl_name} and {rhs.dtype.dsl_name}")
        out = dtype or DType.i32
        if out is not DType.i32:
            raise ShapeError(f"integer operands sum in i32 (dtype=i32), not {out.dsl_name}")
    elif lhs.dtype in LOWP_FLOAT_OPERANDS and rhs.dtype in LOWP_FLOAT_OPERANDS:
        out = dtype or (lhs.dtype if lhs.dtype == rhs.dtype else DType.f32)
        if out not in LOWP_FLOAT_RESULTS:
            raise ShapeError(f"float operands sum in f32 and give f32, bf16 or f16, not {out.dsl_name}")
    else:
        raise ShapeError(f"takes i8/u8/i32 operands (summed in i32) or f16/bf16/f32 operands "
                         f"(summed in f32), got {lhs.dtype.dsl_name} and {rhs.dtype.dsl_name}")
    return TensorType(out, _matmul_shape(lhs, rhs))


matmul_lowp = define(
    "matmul_lowp", operands=("lhs", "rhs"), kind=CONTRACTION, infer=_matmul_lowp_rule,
    attrs={"dtype": attr("dtype"), "precision": attr("str", "default", choices=PRECISIONS)},
    doc="""``matmul`` of low-precision operands, summed in a wider type (JAX's
    ``preferred_element_type`` and ``precision``); shapes as ``matmul``.  The language
    calls it as ``matmul(a, b, dtype=..)`` or ``matmul(a, b, precision=..)``.

    Integer operands (``i8``, ``u8``, ``i32``, mixed) are multiplied and summed in i32
    (``dtype`` i32, the default), wrapping modulo 2^32 like numpy's int32 ``matmul``: exact
    while the sums fit.  Float operands (``f16 bf16 f32``, mixed) are summed in f32; the
    result is ``dtype`` (default: the operands' dtype when they agree, else f32), rounded
    once.  ``precision="bf16"`` first rounds each float operand to bf16 (to nearest even;
    NaN stays NaN, inf inf) and counts a result below 2^-126 in magnitude (a bf16
    subnormal) as zero, as AVX-512 BF16's ``vdpbf16ps`` does; the products are exact in
    f32 and summed in f32 in an unspecified order (pairs first on AVX-512 BF16), so
    results differ from a sequential f32 sum by rounding, and a subnormal sum may flush
    to zero.  Native code uses ``vpdpbusd`` (AVX-512 VNNI) for i8/u8 operands and
    ``vdpbf16ps`` (AVX-512 BF16) for ``precision="bf16"`` where the CPU has them, else
    the operands widened (and rounded) and the i32/f32 GEMM.

    %2 = "dl.matmul_lowp"(%0, %1) {dtype = i32, precision = "default"} : (tensor<?x64xui8, "N">, tensor<64x10xi8>) -> tensor<?x10xi32, "N">
    """)
matmul_lowp.takes_storage()


def bf16_operand(x: np.ndarray) -> np.ndarray:
    """An f32 array rounded to bf16 (to nearest even), back in f32, with bf16 subnormals
    counted as zero: what ``precision="bf16"`` multiplies."""
    r = np.asarray(x, np.float32).astype(DType.bf16.np).astype(np.float32)
    return np.where(np.abs(r) < np.float32(BF16_TINY), np.float32(0), r)


@matmul_lowp.def_reference
def _(lhs, rhs, dtype=None, precision="default"):
    if np.asarray(lhs).dtype.kind in "iu":
        wide = np.matmul(np.asarray(lhs, np.int64), np.asarray(rhs, np.int64))
        return wide.astype(np.int32)            # modulo 2**32, as numpy's int32 matmul
    if precision == "bf16":
        return np.matmul(bf16_operand(lhs), bf16_operand(rhs))
    # the interpreter passes f32 (storage operands widened to f32): f32 sums; an f64 caller
    # (finite differences) gets f64 sums, rounded to the result dtype by the interpreter
    wide = np.result_type(np.asarray(lhs).dtype, np.asarray(rhs).dtype, np.float32)
    return np.matmul(np.asarray(lhs, wide), np.asarray(rhs, wide))


_BF16_KERNEL = (DType.f32, DType.bf16)        # operands the bf16 kernel packs itself


def lowp_kernel_form(op) -> bool:
    """Whether native code has a kernel of its own for ``op`` (``gemm_lowp.py``): i8/u8
    operands with i32 sums, or f32/bf16 operands and an f32 result with
    ``precision="bf16"``.  Every other ``matmul_lowp`` is its decomposition (widening
    casts around one of these or around ``matmul``)."""
    lhs, rhs = (v.type.dtype for v in op.operands)
    out = op.result.type.dtype
    if op.attrs["precision"] == "bf16":
        return lhs in _BF16_KERNEL and rhs in _BF16_KERNEL and out is DType.f32
    return lhs in (DType.i8, DType.u8) and rhs in (DType.i8, DType.u8)


matmul_lowp.def_expand(lambda op: not lowp_kernel_form(op))


def _bf16_rounded(b, x: Value) -> Value:
    """``bf16_operand`` in dl ops: f32 -> bf16 -> f32, subnormals to zero."""
    r = b.cast(b.cast(x, dtype=DType.bf16), dtype=DType.f32)
    tiny = b.lt(b.abs(r), b.constant(BF16_TINY, DType.f32))
    return b.select(tiny, b.constant(0.0, DType.f32), r)


@matmul_lowp.def_decompose
def _(b, op):
    # the widening path: what native code runs where the CPU lacks VNNI / AVX-512 BF16,
    # and how the other operand dtypes reach a kernel form
    lhs, rhs = op.operands
    out = op.result.type.dtype
    if out is DType.i32:
        wide = [v if v.type.dtype is DType.i32 else b.cast(v, dtype=DType.i32) for v in (lhs, rhs)]
        return [b.matmul(*wide)]
    wide = [v if v.type.dtype is DType.f32 else b.cast(v, dtype=DType.f32) for v in (lhs, rhs)]
    if op.attrs["precision"] != "bf16":
        r = b.matmul(*wide)
    elif lowp_kernel_form(op):
        r = b.matmul(*(_bf16_rounded(b, v) for v in wide))
    else:                   # the kernel form: f32 or bf16 operands, an f32 result
        packed = [v if v.type.dtype in _BF16_KERNEL else w for v, w in zip((lhs, rhs), wide)]
        r = b.matmul_lowp(*packed, dtype=DType.f32, precision="bf16")
    return [r if out is DType.f32 else b.cast(r, dtype=out)]


@matmul_lowp.def_vjp
def _(b, op, ct):
    # as matmul's, the products in the same precision, each gradient in its operand's dtype;
    # integer operands pass none
    if op.result.type.dtype.is_int:
        return [None, None]
    p = op.attrs["precision"]
    grads = _product_grads(b, op, ct, lambda x, y: b.matmul_lowp(x, y, dtype=DType.f32, precision=p),
                           lambda t: TensorType(DType.f32, t.shape))
    return [v if v.type.dtype is t.type.dtype else b.cast(v, dtype=t.type.dtype)
            for v, t in zip(grads, op.operands)]


matmul_lowp.lowers_to("matmul_lowp")

# matmul(a, b, dtype=i32) and matmul(a, b, precision="bf16") call matmul_lowp
matmul.variants["dtype"] = "matmul_lowp"
matmul.variants["precision"] = "matmul_lowp"
