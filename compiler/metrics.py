"""The metrics a model can declare (``metrics [accuracy, mae]``), written in dl ops.

Each :class:`MetricDef` builds its value from the model's first output and
first target through a :class:`~compiler.ir.builder.Builder`; the result is a
``f32[]`` scalar averaged over the batch, as Keras reports it.  The model
lowering appends these to the ``evaluate`` function (after the loss).

``accuracy`` picks its variant from the shapes, like Keras's
``compile_utils.get_metric``: a last output dim of 1 means binary accuracy;
integer labels with one dim fewer (or a last dim of 1 against several
classes) mean sparse categorical accuracy; otherwise categorical accuracy.

A *ratio* metric (``precision``, ``recall``) is not a mean over samples, so
the mean of per-batch values would be wrong.  It compiles to two outputs
that are means (``precision.true_positives``, ``precision.predicted_positives``:
the fraction of elements that are true positives, resp. predicted positive),
whose sample-weighted means over batches -- what the runtime keeps, and what
data-parallel training averages -- are the epoch's fractions; :func:`combine_metrics`
divides them at the end, giving Keras's ``TP / (TP + FP)`` over all batches
(0 when nothing is predicted positive, as Keras's ``divide_no_nan``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .diagnostics import DlTypeError
from .ir.builder import Builder
from .ir.core import Value
from .ir.types import DType
from .ops.rules import label_mask

MetricBuild = Callable[[Builder, Value, Value], Value | list[Value]]
TOP_K = 5                 # Keras's default k of the top-k accuracies


@dataclass(frozen=True)
class MetricDef:
    """A metric: its documentation and how to build it (``build(b, output, target)``).

    ``parts`` names a ratio metric's two outputs (numerator, denominator: each
    a mean over the batch); ``build`` then returns both.
    """

    doc: str
    build: MetricBuild
    parts: tuple[str, ...] = ()

    def output_names(self, name: str) -> list[str]:
        """The names of the outputs metric ``name`` compiles to."""
        return [f"{name}.{part}" for part in self.parts] or [name]

    def values(self, b: Builder, output: Value, target: Value) -> list[Value]:
        """The metric's outputs (one, or a ratio's two parts)."""
        built = self.build(b, output, target)
        return built if isinstance(built, list) else [built]


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


def _positive(b: Builder, v: Value) -> Value:
    """``v > 0.5`` (Keras's default threshold) as bool; a bool tensor as it is."""
    return v if v.type.dtype is DType.bool else b.gt(v, b.scalar_like(0.5, v))


def _binary_decisions(b: Builder, output: Value, target: Value, what: str) -> tuple[Value, Value]:
    """(predicted positive, actually positive), elementwise, for precision and recall."""
    target = _like_output(b, target, output)
    if target.type.shape != output.type.shape:
        raise DlTypeError(f"{what} compares each output with the target of the same shape (binary, "
                          "or multi-label); for integer class labels use accuracy")
    return _positive(b, output), _positive(b, target)


def precision(b: Builder, output: Value, target: Value) -> list[Value]:
    """``TP / (TP + FP)`` over all batches, outputs thresholded at 0.5 (Keras ``Precision()``;
    every element is one binary decision)."""
    predicted, actual = _binary_decisions(b, output, target, "precision")
    return [_fraction_true(b, b.logical_and(predicted, actual)), _fraction_true(b, predicted)]


def recall(b: Builder, output: Value, target: Value) -> list[Value]:
    """``TP / (TP + FN)`` over all batches, outputs thresholded at 0.5 (Keras ``Recall()``)."""
    predicted, actual = _binary_decisions(b, output, target, "recall")
    return [_fraction_true(b, b.logical_and(predicted, actual)), _fraction_true(b, actual)]


def _in_top_k(b: Builder, output: Value, labels: Value) -> Value:
    """Whether each label's score is among the ``TOP_K`` largest of its row: fewer than k
    classes score strictly higher (ties at the boundary count as in, as ``in_top_k``)."""
    if labels.type.rank == output.type.rank and labels.type.shape[-1:] == (1,):
        labels = _drop_trailing_one(b, labels)
    if labels.type.shape != output.type.shape[:-1] or not labels.type.dtype.is_int:
        raise DlTypeError("top-k accuracy needs integer labels with one dim fewer than the output "
                          "(sparse) or one-hot targets of its shape")
    mask = label_mask(b, labels, output.type.shape)
    score = b.sum(b.select(mask, output, b.scalar_like(0.0, output)), axes=(-1,), keepdims=True)
    higher = b.sum(b.cast(b.gt(output, score), dtype=DType.i64), axes=(-1,))
    return b.lt(higher, b.constant(TOP_K, DType.i64))


def sparse_top_k_categorical_accuracy(b: Builder, output: Value, target: Value) -> Value:
    """Fraction of integer labels among the 5 highest scores (Keras's default ``k=5``)."""
    return _fraction_true(b, _in_top_k(b, output, target))


def top_k_categorical_accuracy(b: Builder, output: Value, target: Value) -> Value:
    """Fraction of one-hot targets whose class is among the 5 highest scores (``k=5``)."""
    if target.type.shape != output.type.shape:
        raise DlTypeError("top_k_categorical_accuracy needs one-hot targets of the output's shape "
                          "(integer labels: sparse_top_k_categorical_accuracy)")
    return _fraction_true(b, _in_top_k(b, output, b.argmax(target, axis=-1)))


def combine_metrics(logs: dict[str, float]) -> dict[str, float]:
    """``logs`` (means over samples, by output name) with each ratio metric's two parts
    replaced by the ratio, in place of the first part (0 where the denominator is 0)."""
    out: dict[str, float] = {}
    for key, value in logs.items():
        name, _, part = key.rpartition(".")
        metric = METRICS.get(name)
        if metric is None or part not in metric.parts:
            out[key] = value
        elif name not in out:
            numerator, denominator = (logs.get(n, 0.0) for n in metric.output_names(name))
            out[name] = numerator / denominator if denominator else 0.0
    return out


def metric_names(names: list[str] | tuple[str, ...]) -> list[str]:
    """Output names (``signature.metrics``) as :func:`combine_metrics` reports them."""
    return list(combine_metrics(dict.fromkeys(names, 0.0)))


METRICS: dict[str, MetricDef] = {
    "accuracy": MetricDef(accuracy.__doc__ or "", accuracy),
    "binary_accuracy": MetricDef(binary_accuracy.__doc__ or "", binary_accuracy),
    "sparse_categorical_accuracy": MetricDef(sparse_categorical_accuracy.__doc__ or "",
                                             sparse_categorical_accuracy),
    "categorical_accuracy": MetricDef(categorical_accuracy.__doc__ or "", categorical_accuracy),
    "sequence_accuracy": MetricDef(sequence_accuracy.__doc__ or "", sequence_accuracy),
    "mae": MetricDef(mae.__doc__ or "", mae),
    "mse": MetricDef(mse.__doc__ or "", mse),
    "precision": MetricDef(precision.__doc__ or "", precision, ("true_positives", "predicted_positives")),
    "recall": MetricDef(recall.__doc__ or "", recall, ("true_positives", "actual_positives")),
    "top_k_categorical_accuracy": MetricDef(top_k_categorical_accuracy.__doc__ or "",
                                            top_k_categorical_accuracy),
    "sparse_top_k_categorical_accuracy": MetricDef(sparse_top_k_categorical_accuracy.__doc__ or "",
                                                   sparse_top_k_categorical_accuracy),
}
