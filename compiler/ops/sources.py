"""Ops with no operands: constants."""

from __future__ import annotations

import numpy as np

from ..ir.types import DType, TensorType
from .base import SOURCE, ShapeError, attr, define, required


def _constant_rule(*, value, dtype: DType, shape) -> TensorType:
    if isinstance(value, np.ndarray) and value.ndim > 0:
        if tuple(value.shape) != tuple(shape):
            raise ShapeError(f"dense value of shape {list(value.shape)} does not match shape {list(shape)}")
    return TensorType(dtype, tuple(shape))


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
