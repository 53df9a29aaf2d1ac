"""Loss ops, with Keras semantics: a scalar (the pred dtype), the mean over the batch.

Each loss is a composite: its ``decompose`` spells it in primitive dl ops,
and its own VJP is the direct, numerically stable gradient (softmax minus
one-hot, not the chain rule through log and softmax).  ``n`` below is the
number of elements averaged over, read at run time (``dim_size``) where the
batch is symbolic; ``eps = 1e-7`` (Keras' ``epsilon()``), and
``clip(p) = min(max(p, eps), 1 - eps)``.

=================================  ============================================================
``mse(p, t)``                      ``sum((p - t)^2) / n``, n = all elements
``mae(p, t)``                      ``sum(|p - t|) / n``
``binary_crossentropy(p, t)``      ``-sum(t log clip(p) + (1 - t) log(1 - clip(p))) / n``
``  from_logits``                  ``sum(max(x, 0) - x t + log(1 + exp(-|x|))) / n``
``sparse_categorical_crossentropy`` ``-sum(log clip(p)[.., label]) / n``, n = elements of labels
``  from_logits``                  ``-sum(log_softmax(x)[.., label]) / n``
``categorical_crossentropy(p, t)`` ``-sum(t log clip(p)) / n``, n = elements of ``p.shape[:-1]``
``  from_logits``                  ``-sum(t log_softmax(x)) / n``
=================================  ============================================================

Unlike Keras, the probability forms do not first renormalize ``p`` to sum to
1 along the class axis (identical for softmax outputs); a label outside
``[0, C)`` contributes 0.  Gradients through the clip are zero where ``p``
lies outside ``[eps, 1 - eps]``, as in Keras.

A probability loss of a sigmoid or (last-axis) softmax output is the logits
loss: ``binary_crossentropy(sigmoid(z), t)`` *is*
``binary_crossentropy(z, t, from_logits=true)``, and likewise the categorical
losses of ``softmax(z)`` -- the exact value, which the clip would cap at
``-log(eps) = 16.1`` once the activation saturates, and the direct gradient
``sigmoid(z) - t`` / ``softmax(z) - one_hot``.  Each loss's ``canonical`` rule
builds it so (:meth:`Builder.emit`), so the interpreter, native code fused or
not, the value and the gradient all compute that one meaning; a loss op that
is parsed or copied keeps the form it has (its ``from_logits`` says which).
"""

from __future__ import annotations

import numpy as np

from ..ir.core import Value
from ..ir.types import TensorType
from .base import COMPOSITE, OpDef, ShapeError, attr, define, shape_str
from .nn import stable_log_softmax
from .reductions import quiet_mean
from .rules import element_count, label_mask

EPSILON = 1e-7


# ---------------------------------------------------------------------------
# Shape rules


def _float(t: TensorType, what: str) -> None:
    if not t.dtype.is_float:
        raise ShapeError(f"{what} must be f32 or f64, got {t.dsl_str()}")


def _pair_rule(pred: TensorType, target: TensorType, **_attrs) -> TensorType:
    """pred and target: one float dtype, one shape; the loss is a scalar."""
    _float(pred, "predictions")
    if target.dtype != pred.dtype:
        raise ShapeError(f"targets {target.dsl_str()} and predictions {pred.dsl_str()} "
                         "have different dtypes")
    if target.shape != pred.shape:
        raise ShapeError(f"targets {target.dsl_str()} do not match predictions {pred.dsl_str()}")
    return TensorType(pred.dtype, ())


def _categorical_rule(pred: TensorType, target: TensorType, **attrs) -> TensorType:
    if pred.rank == 0:
        raise ShapeError("predictions need a class axis (rank >= 1)")
    return _pair_rule(pred, target, **attrs)


def _sparse_rule(pred: TensorType, labels: TensorType, **_attrs) -> TensorType:
    """pred [.., C] float, labels [..] int; the loss is a scalar."""
    _float(pred, "predictions")
    if pred.rank == 0:
        raise ShapeError("predictions need a class axis (rank >= 1)")
    if not labels.dtype.is_int:
        raise ShapeError(f"labels must be i32 or i64, got {labels.dsl_str()}")
    if labels.shape != pred.shape[:-1]:
        raise ShapeError(f"labels {labels.dsl_str()} do not match predictions {pred.dsl_str()}: "
                         f"expected labels of shape {shape_str(pred.shape[:-1])}")
    return TensorType(pred.dtype, ())


def _loss(name: str, operands: tuple[str, str], infer, doc: str, logits: bool) -> OpDef:
    attrs = {"from_logits": attr("bool", False)} if logits else {}
    return define(name, operands=operands, kind=COMPOSITE, infer=infer, attrs=attrs, doc=doc)


def _of_logits(activation: str):
    """The ``canonical`` rule of a loss whose probabilities may come from ``activation``."""

    def canonical(operands: list[Value], attrs: dict) -> tuple[list[Value], dict] | None:
        # loss(activation(z), t) -> loss(z, t, from_logits=true)
        if attrs.get("from_logits", False) or len(operands) != 2:
            return None
        probs, target = operands
        act = probs.owner
        if act is None or act.name != activation:
            return None
        if activation == "softmax" and act.attrs["axis"] % probs.type.rank != probs.type.rank - 1:
            return None         # the classes are the last axis; another softmax is no logits form
        return [act.operands[0], target], {**attrs, "from_logits": True}

    return canonical


# ---------------------------------------------------------------------------
# Helpers shared by references, decompositions and VJPs


def _np_clip(p: np.ndarray) -> np.ndarray:
    return np.clip(p, EPSILON, 1.0 - EPSILON)


def _clip(b, p: Value) -> Value:
    """``min(max(p, eps), 1 - eps)``."""
    return b.maximum(b.minimum(p, b.scalar_like(1.0 - EPSILON, p)), b.scalar_like(EPSILON, p))


def _inside_clip(b, p: Value) -> Value:
    """Where the clip passes ``p`` through (the clip's gradient is 1 there, 0 elsewhere)."""
    return b.logical_and(b.ge(p, b.scalar_like(EPSILON, p)), b.le(p, b.scalar_like(1.0 - EPSILON, p)))


def _scale(b, ct: Value, pred: Value, sample_axes_only: bool) -> Value:
    """``ct / n``: n counts all of pred's elements, or those of ``pred.shape[:-1]``."""
    axes = tuple(range(pred.type.rank - 1)) if sample_axes_only else None
    return b.div(ct, element_count(b, pred, axes, pred.type.dtype))


def _zero(b, like: Value) -> Value:
    return b.scalar_like(0.0, like)


def _log1p(b, u: Value) -> Value:
    """``log(1 + u)`` to a few ulp for tiny ``u`` too, as numpy's ``log1p`` (the reference):
    Kahan's ``log(w) * u / (w - 1)`` with ``w = 1 + u``, and ``u`` itself where ``w`` rounds
    to 1 (``log(1 + e^-30)`` is 9.4e-14, not 0)."""
    w = b.add(_one(b, u), u)
    w_minus_1 = b.sub(w, _one(b, u))
    return b.select(b.eq(w_minus_1, _zero(b, u)), u, b.mul(b.log(w), b.div(u, w_minus_1)))


def _one(b, like: Value) -> Value:
    return b.scalar_like(1.0, like)


# ---------------------------------------------------------------------------
# mse, mae

mse = _loss("mse", ("pred", "target"), _pair_rule, """Mean squared error ``mean((pred - target)^2)``.

    %2 = "dl.mse"(%0, %1) : (tensor<?x1xf32, "N">, tensor<?x1xf32, "N">) -> tensor<f32>
    """, logits=False)

mae = _loss("mae", ("pred", "target"), _pair_rule, """Mean absolute error ``mean(|pred - target|)``.

    %2 = "dl.mae"(%0, %1) : (tensor<?x1xf32, "N">, tensor<?x1xf32, "N">) -> tensor<f32>
    """, logits=False)


@mse.def_reference
def _(pred, target):
    return np.asarray(quiet_mean(np.square(pred - target)), dtype=pred.dtype)


@mae.def_reference
def _(pred, target):
    return np.asarray(quiet_mean(np.abs(pred - target)), dtype=pred.dtype)


def _mse_elements(b, operands: list[Value], attrs: dict) -> Value:
    pred, target = operands
    return b.square(b.sub(pred, target))


def _mae_elements(b, operands: list[Value], attrs: dict) -> Value:
    pred, target = operands
    return b.abs(b.sub(pred, target))


@mse.def_decompose
def _(b, op):
    return [b.mean(_mse_elements(b, op.operands, op.attrs))]


@mae.def_decompose
def _(b, op):
    return [b.mean(_mae_elements(b, op.operands, op.attrs))]


@mse.def_vjp
def _(b, op, ct):
    # d/dp = 2 (p - t) / n,  d/dt = -d/dp
    pred, target = op.operands
    scale = b.mul(_scale(b, ct, pred, False), b.scalar_like(2.0, pred))
    dp = b.mul(scale, b.sub(pred, target))
    return [dp, b.neg(dp)]


@mae.def_vjp
def _(b, op, ct):
    # d/dp = sign(p - t) / n,  d/dt = -d/dp
    pred, target = op.operands
    dp = b.mul(_scale(b, ct, pred, False), b.sign(b.sub(pred, target)))
    return [dp, b.neg(dp)]


# ---------------------------------------------------------------------------
# binary_crossentropy

binary_crossentropy = _loss(
    "binary_crossentropy", ("pred", "target"), _pair_rule,
    """Binary cross-entropy, mean over all elements.  Probabilities are clipped to
    ``[eps, 1 - eps]``: ``-mean(t log p + (1 - t) log(1 - p))``; with ``from_logits``
    the stable form ``mean(max(x, 0) - x t + log(1 + exp(-|x|)))``, which is also what
    the loss of a ``sigmoid`` output is built as.

    %2 = "dl.binary_crossentropy"(%0, %1) {from_logits = true} : (tensor<?x1xf32, "N">, tensor<?x1xf32, "N">) -> tensor<f32>
    """, logits=True)
binary_crossentropy.def_canonical(_of_logits("sigmoid"))


@binary_crossentropy.def_reference
def _(pred, target, *, from_logits: bool):
    if from_logits:
        x = pred
        loss = quiet_mean(np.maximum(x, 0) - x * target + np.log1p(np.exp(-np.abs(x))))
    else:
        p = _np_clip(pred)
        loss = -quiet_mean(target * np.log(p) + (1 - target) * np.log(1 - p))
    return np.asarray(loss, dtype=pred.dtype)


def _binary_crossentropy_elements(b, operands: list[Value], attrs: dict) -> Value:
    x, t = operands
    one = _one(b, x)
    if attrs["from_logits"]:
        softplus = _log1p(b, b.exp(b.neg(b.abs(x))))
        return b.add(b.sub(b.relu(x), b.mul(x, t)), softplus)
    p = _clip(b, x)
    return b.neg(b.add(b.mul(t, b.log(p)), b.mul(b.sub(one, t), b.log(b.sub(one, p)))))


@binary_crossentropy.def_decompose
def _(b, op):
    return [b.mean(_binary_crossentropy_elements(b, op.operands, op.attrs))]


@binary_crossentropy.def_vjp
def _(b, op, ct):
    x, t = op.operands
    scale = _scale(b, ct, x, False)
    if op.attrs["from_logits"]:
        # d/dx = (sigmoid(x) - t) / n,  d/dt = -x / n
        return [b.mul(scale, b.sub(b.sigmoid(x), t)), b.mul(scale, b.neg(x))]
    # p = clip(x):  d/dx = (p - t) / (p (1 - p) n) inside the clip, 0 outside;
    #               d/dt = (log(1 - p) - log(p)) / n
    one = _one(b, x)
    p = _clip(b, x)
    grad = b.div(b.sub(p, t), b.mul(p, b.sub(one, p)))
    dx = b.select(_inside_clip(b, x), b.mul(scale, grad), _zero(b, x))
    dt = b.mul(scale, b.sub(b.log(b.sub(one, p)), b.log(p)))
    return [dx, dt]


# ---------------------------------------------------------------------------
# sparse_categorical_crossentropy

sparse_categorical_crossentropy = _loss(
    "sparse_categorical_crossentropy", ("pred", "labels"), _sparse_rule,
    """Cross-entropy of class probabilities (or logits) ``pred [.., C]`` against integer
    ``labels [..]``: ``-mean(log clip(p)[.., label])``; with ``from_logits``
    ``-mean(log_softmax(x)[.., label])``, which is also what the loss of a ``softmax``
    output is built as.

    %2 = "dl.sparse_categorical_crossentropy"(%0, %1) {from_logits = true} : (tensor<?x10xf32, "N">, tensor<?xi64, "N">) -> tensor<f32>
    """, logits=True)
sparse_categorical_crossentropy.def_canonical(_of_logits("softmax"))


def _np_log_probs(pred: np.ndarray, from_logits: bool) -> np.ndarray:
    return stable_log_softmax(pred, -1) if from_logits else np.log(_np_clip(pred))


def _log_probs(b, pred: Value, from_logits: bool) -> Value:
    return b.log_softmax(pred, axis=-1) if from_logits else b.log(_clip(b, pred))


@sparse_categorical_crossentropy.def_reference
def _(pred, labels, *, from_logits: bool):
    mask = labels[..., None] == np.arange(pred.shape[-1])
    picked = np.sum(np.where(mask, _np_log_probs(pred, from_logits), 0), axis=-1)
    return np.asarray(-quiet_mean(picked), dtype=pred.dtype)


def _sparse_categorical_crossentropy_elements(b, operands: list[Value], attrs: dict) -> Value:
    pred, labels = operands
    log_p = _log_probs(b, pred, attrs["from_logits"])
    mask = label_mask(b, labels, pred.type.shape)
    return b.neg(b.sum(b.select(mask, log_p, _zero(b, pred)), axes=(-1,)))


@sparse_categorical_crossentropy.def_decompose
def _(b, op):
    return [b.mean(_sparse_categorical_crossentropy_elements(b, op.operands, op.attrs))]


@sparse_categorical_crossentropy.def_vjp
def _(b, op, ct):
    pred, labels = op.operands
    scale = _scale(b, ct, pred, True)
    mask = label_mask(b, labels, pred.type.shape)
    if op.attrs["from_logits"]:
        # d/dx = (softmax(x) - one_hot(label)) / n
        one_hot = b.cast(mask, dtype=pred.type.dtype)
        return [b.mul(scale, b.sub(b.softmax(pred, axis=-1), one_hot)), None]
    # d/dp = -1 / (clip(p) n) at the label, inside the clip; 0 elsewhere
    hit = b.logical_and(mask, _inside_clip(b, pred))
    grad = b.neg(b.div(scale, _clip(b, pred)))
    return [b.select(hit, grad, _zero(b, pred)), None]


# ---------------------------------------------------------------------------
# categorical_crossentropy

categorical_crossentropy = _loss(
    "categorical_crossentropy", ("pred", "target"), _categorical_rule,
    """Cross-entropy of class probabilities (or logits) ``pred [.., C]`` against a target
    distribution (e.g. one-hot) of the same shape: ``-mean(sum(t log clip(p), -1))``; with
    ``from_logits`` ``-mean(sum(t log_softmax(x), -1))``, which is also what the loss of a
    ``softmax`` output is built as.

    %2 = "dl.categorical_crossentropy"(%0, %1) : (tensor<?x10xf32, "N">, tensor<?x10xf32, "N">) -> tensor<f32>
    """, logits=True)
categorical_crossentropy.def_canonical(_of_logits("softmax"))


@categorical_crossentropy.def_reference
def _(pred, target, *, from_logits: bool):
    loss = -quiet_mean(np.sum(target * _np_log_probs(pred, from_logits), axis=-1))
    return np.asarray(loss, dtype=pred.dtype)


def _categorical_crossentropy_elements(b, operands: list[Value], attrs: dict) -> Value:
    pred, target = operands
    log_p = _log_probs(b, pred, attrs["from_logits"])
    return b.neg(b.sum(b.mul(target, log_p), axes=(-1,)))


@categorical_crossentropy.def_decompose
def _(b, op):
    return [b.mean(_categorical_crossentropy_elements(b, op.operands, op.attrs))]


@categorical_crossentropy.def_vjp
def _(b, op, ct):
    pred, target = op.operands
    scale = _scale(b, ct, pred, True)
    dt = b.mul(scale, b.neg(_log_probs(b, pred, op.attrs["from_logits"])))
    if op.attrs["from_logits"]:
        # d/dx = (softmax(x) sum(t) - t) / n,  d/dt = -log_softmax(x) / n
        mass = b.sum(target, axes=(-1,), keepdims=True)
        dx = b.mul(scale, b.sub(b.mul(b.softmax(pred, axis=-1), mass), target))
        return [dx, dt]
    # d/dp = -t / (clip(p) n) inside the clip, 0 outside;  d/dt = -log(clip(p)) / n
    grad = b.neg(b.div(b.mul(scale, target), _clip(b, pred)))
    return [b.select(_inside_clip(b, pred), grad, _zero(b, pred)), dt]


# ---------------------------------------------------------------------------
# Sample weights (fit(sample_weight=...), class_weight=...)

_ELEMENTS = {
    "mse": _mse_elements,
    "mae": _mae_elements,
    "binary_crossentropy": _binary_crossentropy_elements,
    "sparse_categorical_crossentropy": _sparse_categorical_crossentropy_elements,
    "categorical_crossentropy": _categorical_crossentropy_elements,
}
LOSS_OPS = tuple(_ELEMENTS)
CLASSIFICATION_LOSSES = ("binary_crossentropy", "sparse_categorical_crossentropy", "categorical_crossentropy")


def weighted_loss(b, name: str, operands: list[Value], attrs: dict, weight: Value) -> Value:
    """The loss ``name`` of ``operands`` with per-sample weights ``weight [N]``, in dl ops
    (differentiated by autodiff), as Keras 3's ``"sum_over_batch_size"`` reduction:
    ``sum(w[i] * e[i, ...]) / count(e)``, where ``e`` is the loss's elements (the tensor
    the unweighted loss is the mean of: ``(p - t)^2`` for mse, one value per label for the
    cross-entropies) and ``w`` is broadcast along the elements' leading (batch) axis.
    The divisor is the element count, not the sum of the weights.

    Raises ShapeError when the elements have no leading axis of ``weight``'s length.
    """
    elements = _ELEMENTS[name](b, operands, attrs)
    et = elements.type
    if et.rank == 0 or et.shape[0] != weight.type.shape[0]:
        raise ShapeError(f"sample weights {weight.type.dsl_str()} do not match the batch axis of "
                         f"the loss {name}'s per-sample values {et.dsl_str()}")
    w = weight if weight.type.dtype is et.dtype else b.cast(weight, dtype=et.dtype)
    if et.rank > 1:
        w = b.reshape(w, shape=(weight.type.shape[0], *([1] * (et.rank - 1))))
    total = b.sum(b.mul(elements, w))
    return b.div(total, element_count(b, elements, None, et.dtype))
