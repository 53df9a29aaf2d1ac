"""The metrics a model can declare (``metrics [accuracy, mae]``), written in dl ops.

Each :class:`MetricDef` builds its value from the model's first output and
first target through a :class:`~compiler.ir.builder.Builder`; the result is a
``f32[]`` scalar averaged over the batch, as Keras reports it.  The model
lowering appends these to the ``evaluate`` function (after the loss).

``accuracy`` picks its variant from the shapes, like Keras's
``compile_utils.get_metric``: a last output dim of 1 means binary accuracy;
integer labels with one dim fewer (or a last dim of 1 against several
classes) mean sparse categorical accuracy; otherwise categorical accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .ir.builder import Builder
from .ir.core import Value
from .ir.types import DType

MetricBuild = Callable[[Builder, Value, Value], Value]


@dataclass(frozen=True)
class MetricDef:
    """A metric: its documentation and how to build it (``build(b, output, target)``)."""

    doc: str
    build: MetricBuild


def _as_f32_scalar(b: Builder, v: Value) -> Value:
    return v if v.type.dtype is DType.f32 else b.cast(v, dtype=DType.f32)


def _fraction_true(b: Builder, hits: Value) -> Value:
    """Mean of a bool tensor as ``f32[]``."""
    return b.mean(b.cast(hits, dtype=DType.f32))


def _drop_trailing_one(b: Builder, v: Value) -> Value:
    """``[N, 1]`` -> ``[N]`` (labels given as a column)."""
    return b.reshape(v, shape=v.type.shape[:-1])


def _like_output(b: Builder, target: Value, output: Value) -> Value:
    """The target reshaped to the output's shape when they differ only by a trailing 1."""
    t, o = target.type.shape, output.type.shape
    if t == o:
        return target
    if t == o[:-1] and o[-1:] == (1,):
        return b.reshape(target, shape=o)
    if o == t[:-1] and t[-1:] == (1,):
        return _drop_trailing_one(b, target)
    return target


def binary_accuracy(b: Builder, output: Value, target: Value) -> Value:
    """Fraction of ``(output > 0.5) == target`` (Keras ``binary_accuracy``, threshold 0.5)."""
    target = _like_output(b, target, output)
    predicted = b.gt(output, b.scalar_like(0.5, output))
    if target.type.dtype is DType.bool:
        return _fraction_true(b, b.eq(predicted, target))
    predicted = b.cast(predicted, dtype=target.type.dtype)
    return _fraction_true(b, b.eq(predicted, target))


def sparse_categorical_accuracy(b: Builder, output: Value, target: Value) -> Value:
    """Fraction of ``argmax(output, -1) == label`` for integer labels (Keras semantics)."""
    labels = target
    if labels.type.rank == output.type.rank and labels.type.shape[-1:] == (1,):
        labels = _drop_trailing_one(b, labels)
    predicted = b.argmax(output, axis=-1)
    if labels.type.dtype is not predicted.type.dtype:
        labels = b.cast(labels, dtype=predicted.type.dtype)
    return _fraction_true(b, b.eq(predicted, labels))


def sequence_accuracy(b: Builder, output: Value, target: Value) -> Value:
    """Exact match: the fraction of samples whose every position is right, ``all(argmax(output,
    -1) == labels)`` over each sample's positions (labels ``[N, T..]``, scores ``[N, T.., C]``);
    for teacher-forced sequence models it equals greedy decoding's exact match."""
    labels = target
    predicted = b.argmax(output, axis=-1)
    if labels.type.dtype is not predicted.type.dtype:
        labels = b.cast(labels, dtype=predicted.type.dtype)
    hits = b.eq(predicted, labels)
    if hits.type.rank > 1:
        hits = b.all(hits, axes=tuple(range(1, hits.type.rank)))
    return _fraction_true(b, hits)


def categorical_accuracy(b: Builder, output: Value, target: Value) -> Value:
    """Fraction of ``argmax(output, -1) == argmax(target, -1)`` for one-hot targets."""
    return _fraction_true(b, b.eq(b.argmax(output, axis=-1), b.argmax(target, axis=-1)))


def accuracy(b: Builder, output: Value, target: Value) -> Value:
    """Binary, sparse categorical or categorical accuracy, chosen from the shapes as Keras does."""
    o, t = output.type, target.type
    output_last = o.shape[-1] if o.rank else 1
    target_last = t.shape[-1] if t.rank else 1
    if output_last == 1:
        return binary_accuracy(b, output, target)
    if t.rank < o.rank or (target_last == 1 and output_last != 1):
        return sparse_categorical_accuracy(b, output, target)
    return categorical_accuracy(b, output, target)


def _float_target(b: Builder, target: Value, output: Value) -> Value:
    target = _like_output(b, target, output)
    if target.type.dtype is not output.type.dtype:
        target = b.cast(target, dtype=output.type.dtype)
    return target


def mae(b: Builder, output: Value, target: Value) -> Value:
    """Mean absolute error ``mean(|output - target|)``."""
    return _as_f32_scalar(b, b.mae(output, _float_target(b, target, output)))


def mse(b: Builder, output: Value, target: Value) -> Value:
    """Mean squared error ``mean((output - target)^2)``."""
    return _as_f32_scalar(b, b.mse(output, _float_target(b, target, output)))


METRICS: dict[str, MetricDef] = {
    "accuracy": MetricDef(accuracy.__doc__ or "", accuracy),
    "binary_accuracy": MetricDef(binary_accuracy.__doc__ or "", binary_accuracy),
    "sparse_categorical_accuracy": MetricDef(sparse_categorical_accuracy.__doc__ or "",
                                             sparse_categorical_accuracy),
    "categorical_accuracy": MetricDef(categorical_accuracy.__doc__ or "", categorical_accuracy),
    "sequence_accuracy": MetricDef(sequence_accuracy.__doc__ or "", sequence_accuracy),
    "mae": MetricDef(mae.__doc__ or "", mae),
    "mse": MetricDef(mse.__doc__ or "", mse),
}
