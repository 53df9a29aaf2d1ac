"""Ops with no operands: constants."""

from __future__ import annotations

import numpy as np

from ..ir.types import DType, TensorType
from .base import SOURCE, ShapeError, attr, define, required


def _constant_rule(*, value, dtype: DType, shape) -> TensorType:
    if isinstance(value, np.ndarray) and value.ndim > 0:
        if tuple(value.shape) != tuple(shape):
            raise ShapeError(f"dense value of shape {list(value.shape)} does not match shape {list(shape)}")
    bad = _out_of_range(value, dtype)
    if bad is not None:
        raise ShapeError(f"value {bad} is out of range for {dtype.dsl_name}")
    return TensorType(dtype, tuple(shape))


def _out_of_range(value, dtype: DType) -> int | float | None:
    """An element of ``value`` that ``dtype`` cannot hold -- an integer beyond its range, a
    finite number beyond its largest -- or None.  (nan and inf are floats like any other.)"""
    flat = np.asarray(value).ravel()
    if flat.size == 0 or dtype is DType.bool:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        if dtype.is_int:
            info = np.iinfo(dtype.np)
            if flat.dtype.kind == "f":          # exactly: both bounds are powers of two
                bad = (flat < float(info.min)) | (flat >= float(info.max) + 1)
            else:
                bad = (flat < info.min) | (flat > info.max)
        else:
            bad = np.isinf(flat.astype(dtype.np)) & np.isfinite(flat)
    hits = np.flatnonzero(bad)
    return flat[hits[0]].item() if hits.size else None


constant = define(
    "constant", operands=(), kind=SOURCE, differentiable=False,
    attrs={"value": required("dense"), "dtype": required("dtype"), "shape": attr("dims", ())},
    infer=_constant_rule,
    doc="""A constant tensor: a scalar ``value`` splatted over ``shape``, or a dense array.

    %0 = "dl.constant"() {dtype = f32, shape = [], value = 1.0} : () -> tensor<f32>
    %1 = "dl.constant"() {dtype = f32, shape = [2], value = dense<[1.0, 2.0]> : tensor<2xf32>} : () -> tensor<2xf32>
    """)


@constant.def_reference
def _(*, value, dtype: DType, shape):
    # `shape` arrives concrete: the interpreter binds symbols in "dims" attributes.
    value = np.asarray(value, dtype=dtype.np)
    return value.copy() if value.ndim > 0 else np.full(shape, value, dtype=dtype.np)


def _iota_rule(*, dtype: DType, shape, axis: int) -> TensorType:
    rank = len(shape)
    if not -rank <= axis < rank:
        raise ShapeError(f"axis {axis} is out of range for rank {rank}")
    if dtype is DType.bool:
        raise ShapeError("iota needs a numeric dtype, got bool")
    return TensorType(dtype, tuple(shape))


iota = define(
    "iota", operands=(), kind=SOURCE, differentiable=False,
    attrs={"dtype": required("dtype"), "shape": required("dims"), "axis": attr("int", 0)},
    infer=_iota_rule,
    doc="""The index along ``axis``, broadcast over ``shape``: ``out[i0, .., ik] = i_axis``.

    %0 = "dl.iota"() {axis = 1, dtype = i64, shape = [4, 10]} : () -> tensor<4x10xi64>
    """)


@iota.def_reference
def _(*, dtype: DType, shape, axis: int):
    rank = len(shape)
    axis = axis % rank
    index = np.arange(shape[axis], dtype=dtype.np)
    view = [1] * rank
    view[axis] = shape[axis]
    return np.broadcast_to(index.reshape(view), tuple(shape)).copy()


constant.lowers_to("constant")
iota.lowers_to("iota")


# A constant of a storage dtype holds its value rounded (f16, bf16) to that dtype.
constant.takes_storage()
