"""Contractions: ``matmul`` with numpy semantics."""

from __future__ import annotations

import numpy as np

from ..ir.core import Value
from ..ir.types import DType, TensorType
from .base import CONTRACTION, ShapeError, broadcast_shapes, define, dim_str, same_dtype
from .rules import unbroadcast


def _matmul_rule(lhs: TensorType, rhs: TensorType) -> TensorType:
    t = same_dtype([lhs, rhs])
    if t.dtype is DType.bool:
        raise ShapeError("expects numeric operands, got bool")
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
    return TensorType(t.dtype, batch + rows + cols)


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


@matmul.def_vjp
def _(b, op, ct):
    # C = A @ B:  dA = dC @ B^T,  dB = A^T @ dC  (summed over broadcast batch axes)
    lhs, rhs = op.operands
    a, m = _as_matrix(b, lhs, 0), _as_matrix(b, rhs, 1)
    full = _matmul_rule(a.type, m.type)
    g = ct if ct.type.shape == full.shape else b.reshape(ct, shape=full.shape)
    da = unbroadcast(b, b.matmul(g, _swap_last(b, m)), a.type)
    dm = unbroadcast(b, b.matmul(_swap_last(b, a), g), m.type)
    if da.type.shape != lhs.type.shape:
        da = b.reshape(da, shape=lhs.type.shape)
    if dm.type.shape != rhs.type.shape:
        dm = b.reshape(dm, shape=rhs.type.shape)
    return [da, dm]


matmul.lowers_to("matmul")
matmul.computes_widened()
