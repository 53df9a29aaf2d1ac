"""Per-sample weights for ``fit``: ``sample_weight=`` as given, or ``class_weight=`` turned
into one weight per sample from the integer labels, as Keras does.

The weights are checked here (length, finite, not negative; class keys inside
the label range; a classification loss for class weights) before anything is
compiled; the weighted training step itself is
:func:`compiler.train_step.build_weighted_step`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from compiler.diagnostics import ArgumentTypeError, ArgumentValueError
from compiler.ir.core import Module, Op
from compiler.ops.losses import CLASSIFICATION_LOSSES, LOSS_OPS

BALANCED = "balanced"


def loss_ops(module: Module) -> list[Op]:
    """The loss ops in the model's ``@loss`` (``dl.sparse_categorical_crossentropy``, ...)."""
    return [op for op in module.get("loss").ops if op.name in LOSS_OPS]


def sample_weights(sample_weight: Any, class_weight: Any, targets: np.ndarray, n: int,
                   module: Module) -> np.ndarray | None:
    """The ``f32[n]`` weights of ``fit(sample_weight=..., class_weight=...)``, or None for neither.

    ``targets`` is the model's (first) target array, ``n`` the number of samples.
    """
    if sample_weight is not None and class_weight is not None:
        raise ArgumentValueError("fit: give sample_weight or class_weight, not both "
                                 "(multiply the class weights into the sample weights)")
    if sample_weight is not None:
        return check_sample_weight(sample_weight, n, "fit: argument 'sample_weight'")
    if class_weight is not None:
        return class_sample_weights(class_weight, targets, module)
    return None


def check_sample_weight(value: Any, n: int, what: str) -> np.ndarray:
    """``value`` as a C-contiguous ``f32[n]``: n finite, non-negative numbers."""
    try:
        w = np.asarray(value)
    except (TypeError, ValueError) as e:
        raise ArgumentTypeError(f"{what} must be an array of {n} numbers ({e})") from None
    if w.dtype.kind not in "biuf":
        raise ArgumentTypeError(f"{what} must hold numbers, got dtype {w.dtype}")
    if w.ndim == 2 and w.shape[1] == 1:
        w = w[:, 0]
    if w.shape != (n,):
        raise ArgumentValueError(f"{what} has shape {list(w.shape)}: one weight per training sample "
                                 f"is shape [{n}]")
    w = np.ascontiguousarray(w, dtype=np.float32)
    bad = ~np.isfinite(w)
    if bad.any():
        raise ArgumentValueError(f"{what}: weight {int(np.argmax(bad))} is {w[bad][0]}; "
                                 "weights must be finite")
    if (w < 0).any():
        i = int(np.argmax(w < 0))
        raise ArgumentValueError(f"{what}: weight {i} is {w[i]:g}; weights must not be negative")
    return w


def class_sample_weights(class_weight: Any, targets: np.ndarray, module: Module) -> np.ndarray:
    """One weight per sample, ``class_weight[label]`` (1 for a class the dict leaves out), as
    Keras's ``class_weight``; ``"balanced"`` gives class ``c`` the weight
    ``n_samples / (n_classes * count(c))`` over the classes present (scikit-learn's)."""
    what = "fit: argument 'class_weight'"
    losses = loss_ops(module)
    if not losses or any(op.name not in CLASSIFICATION_LOSSES for op in losses):
        raise ArgumentValueError(f"{what}: class weights need a classification loss "
                                 f"({', '.join(CLASSIFICATION_LOSSES)}); this model's loss is "
                                 f"{', '.join(op.name for op in losses) or 'not a loss op'}")
    labels, n_classes = class_labels(targets, losses[0])
    if isinstance(class_weight, str):
        if class_weight != BALANCED:
            raise ArgumentValueError(f"{what} must be a dict {{class: weight}} or '{BALANCED}', "
                                     f"got '{class_weight}'")
        present, counts = np.unique(labels, return_counts=True)
        table = {int(c): len(labels) / (len(present) * int(k)) for c, k in zip(present, counts)}
    elif isinstance(class_weight, Mapping):
        table = {_class_key(k, n_classes, what): _class_value(v, k, what) for k, v in class_weight.items()}
    else:
        raise ArgumentTypeError(f"{what} must be a dict {{class: weight}} or '{BALANCED}', "
                                f"got {type(class_weight).__name__}")
    outside = (labels < 0) | (labels >= n_classes)
    if outside.any():
        i = int(np.argmax(outside))
        raise ArgumentValueError(f"{what}: target {i} is class {labels[i]}, outside the model's "
                                 f"labels 0..{n_classes - 1}")
    lookup = np.ones(n_classes, dtype=np.float32)
    for c, value in table.items():
        lookup[c] = value
    return np.ascontiguousarray(lookup[labels], dtype=np.float32)


def class_labels(targets: np.ndarray, loss: Any) -> tuple[np.ndarray, int]:
    """The integer class of every sample (the argmax of one-hot rows, else the rounded label,
    as Keras reads them) and the number of classes (2 for binary cross-entropy, else the
    width of the loss op ``loss``'s predictions)."""
    y = np.asarray(targets)
    if y.ndim > 1 and y.shape[-1] > 1:
        y = np.argmax(y, axis=-1)
    labels = np.rint(y.reshape(len(y), -1)[:, 0]).astype(np.int64)
    width = loss.operands[0].type.shape[-1] if loss.operands[0].type.rank else 1
    n_classes = 2 if loss.name == "binary_crossentropy" or not isinstance(width, int) else width
    return labels, n_classes


def parse_class_weight(text: str) -> dict[int, float] | str:
    """The CLI's ``--class-weight 0=1,1=5`` (or ``balanced``) as ``fit``'s ``class_weight``."""
    text = text.strip()
    if text == BALANCED:
        return BALANCED
    table: dict[int, float] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            table[int(key)] = float(value)
        except ValueError:
            raise ArgumentValueError(f"--class-weight: '{part}' is not CLASS=WEIGHT (e.g. "
                                     f"--class-weight 0=1,1=5, or --class-weight {BALANCED})") from None
    return table


def _class_key(key: Any, n_classes: int, what: str) -> int:
    if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
        raise ArgumentTypeError(f"{what}: class {key!r} is not an integer class index")
    if not 0 <= int(key) < n_classes:
        raise ArgumentValueError(f"{what}: class {int(key)} is outside the model's labels "
                                 f"0..{n_classes - 1}")
    return int(key)


def _class_value(value: Any, key: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ArgumentTypeError(f"{what}: the weight of class {key} must be a number, "
                                f"got {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v) or v < 0:
        raise ArgumentValueError(f"{what}: the weight of class {key} is {v:g}; weights must be "
                                 "finite and not negative")
    return v
