"""Helpers shared by VJP rules, written in dl ops through a Builder."""

from __future__ import annotations

from ..ir.core import Value
from ..ir.types import TensorType


def unbroadcast(b, ct: Value, target: TensorType) -> Value:
    """Sum ``ct`` over the axes along which ``target`` was broadcast.

    The cotangent of a broadcast operand is the cotangent of the result summed
    over the leading axes the operand lacked and over the axes where it had a
    static 1, then reshaped to the operand's shape.
    """
    shape = ct.type.shape
    if shape == target.shape:
        return ct
    lead = len(shape) - len(target.shape)
    axes = list(range(lead))
    for i, d in enumerate(target.shape):
        if d == 1 and shape[lead + i] != 1:
            axes.append(lead + i)
    out = b.sum(ct, axes=tuple(axes), keepdims=False) if axes else ct
    if out.type.shape != target.shape:
        out = b.reshape(out, shape=target.shape)
    return out
