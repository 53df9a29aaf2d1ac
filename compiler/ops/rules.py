"""Helpers shared by VJP rules, written in dl ops through a Builder."""

from __future__ import annotations

from ..ir.core import Value
from ..ir.types import DType, TensorType


def zeros(b, t: TensorType) -> Value:
    """A tensor of zeros of type ``t``; symbolic dims go through ``broadcast_to``."""
    if t.is_static:
        return b.constant(0.0, t.dtype, t.shape)
    return b.broadcast_to(b.constant(0.0, t.dtype), shape=t.shape)


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


def element_count(b, x: Value, axes: tuple[int, ...] | None, dtype: DType) -> Value:
    """The number of elements of ``x`` over ``axes`` (None: all) as a rank-0 ``dtype`` tensor.

    Static dims fold into one constant; each symbolic dim is read at run time
    with ``dim_size``, so a mean over a symbolic batch stays exact.
    """
    from .base import normalize_axes

    static = 1
    symbolic: list[int] = []
    for axis in normalize_axes(axes, x.type.rank):
        d = x.type.shape[axis]
        if isinstance(d, int):
            static *= d
        else:
            symbolic.append(axis)
    total = b.constant(static, dtype) if static != 1 or not symbolic else None
    for axis in symbolic:
        size = b.dim_size(x, axis=axis, dtype=dtype)
        total = size if total is None else b.mul(total, size)
    return total


def expand_reduced(b, ct: Value, target: TensorType, axes: tuple[int, ...] | None,
                   keepdims: bool) -> Value:
    """Bring a reduction's cotangent back to the shape of the reduced operand.

    Re-inserts the reduced axes as 1s (when ``keepdims`` was false) and
    broadcasts over them.
    """
    from .base import normalize_axes

    reduced = normalize_axes(axes, target.rank)
    kept = tuple(1 if i in reduced else d for i, d in enumerate(target.shape))
    if ct.type.shape != kept:
        ct = b.reshape(ct, shape=kept)
    if kept != target.shape:
        ct = b.broadcast_to(ct, shape=target.shape)
    return ct


def label_mask(b, labels: Value, shape: tuple) -> Value:
    """A bool ``[.., C]`` tensor, true where the class index equals the label.

    ``labels`` has shape ``shape[:-1]``; this is ``one_hot`` as a mask, built
    from ``iota`` and ``eq`` so the class count ``C`` may be symbolic.  A label
    outside ``[0, C)`` gives an all-false row.
    """
    classes = b.iota(dtype=labels.type.dtype, shape=shape, axis=len(shape) - 1)
    return b.eq(classes, b.reshape(labels, shape=(*labels.type.shape, 1)))
