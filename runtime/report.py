"""A classifier's report from its predictions: confusion matrix, precision, recall, F1,
top-k accuracy and (binary) ROC AUC, computed in numpy over a whole split.

``dlc evaluate --report`` prints it; :func:`classification_report` returns it
as plain data.  These are whole-split figures (not means of per-batch values,
which would be wrong for precision and recall).

- **multi-class** (an output ``[N, C]``, ``C >= 2``; integer or one-hot labels):
  the predicted class is the argmax; the confusion matrix has a row per true
  class and a column per predicted class; precision, recall and F1 per class
  (0 where undefined: no predictions or no samples of that class), their
  unweighted means (``macro``), accuracy, and top-k accuracy for
  ``k < C`` (the true class among the k highest scores; ties broken by index).
- **binary** (an output ``[N, 1]`` or ``[N]`` of probabilities, labels 0/1;
  logits when any value lies outside [0, 1]): the positive class is score
  ``>= 0.5`` (logit ``>= 0``); the 2x2 confusion matrix, precision, recall,
  F1 and accuracy of the positive class, and ROC AUC, the probability that a
  positive scores above a negative (ties count one half; the Mann-Whitney U
  statistic), undefined (None) unless both classes occur.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from compiler.diagnostics import DlRuntimeError


def classification_report(scores: np.ndarray, labels: np.ndarray, top_k: int = 5) -> dict[str, Any]:
    """The report of ``scores`` (the model's output for N samples) against ``labels``."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim == 2 and scores.shape[1] >= 2:
        if labels.ndim == 2 and labels.shape == scores.shape:       # one-hot targets
            labels = labels.argmax(axis=1)
        return _multiclass(scores, labels.reshape(-1).astype(np.int64), top_k)
    if scores.ndim in (1, 2) and scores.reshape(len(scores), -1).shape[1] == 1:
        return _binary(scores.reshape(-1), labels.reshape(-1))
    raise DlRuntimeError(f"a classification report needs an output of class scores [N, C] or a binary "
                         f"probability [N, 1]; this model's output has shape {list(scores.shape)}")


def _multiclass(scores: np.ndarray, labels: np.ndarray, top_k: int) -> dict[str, Any]:
    n, classes = scores.shape
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise DlRuntimeError(f"labels must be in [0, {classes}) for a report on {classes} classes")
    predicted = scores.argmax(axis=1)
    confusion = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    hits = np.diag(confusion).astype(np.float64)
    precision = _ratio(hits, confusion.sum(axis=0))
    recall = _ratio(hits, confusion.sum(axis=1))
    f1 = _ratio(2 * precision * recall, precision + recall)
    report: dict[str, Any] = {
        "kind": "multiclass", "samples": n, "accuracy": float(hits.sum() / max(n, 1)),
        "confusion_matrix": confusion.tolist(),
        "precision": precision.tolist(), "recall": recall.tolist(), "f1": f1.tolist(),
        "support": confusion.sum(axis=1).tolist(),
        "macro_precision": float(precision.mean()), "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
    }
    if top_k < classes:
        top = np.argsort(-scores, axis=1, kind="stable")[:, :top_k]
        report[f"top_{top_k}_accuracy"] = float((top == labels[:, None]).any(axis=1).mean()) if n else 0.0
    return report


def _binary(scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise DlRuntimeError("a binary report needs labels 0 and 1")
    truth = labels.astype(bool)
    logits = scores.size > 0 and (scores.min() < 0 or scores.max() > 1)
    predicted = scores >= (0.0 if logits else 0.5)
    tp, fp = int((predicted & truth).sum()), int((predicted & ~truth).sum())
    fn, tn = int((~predicted & truth).sum()), int((~predicted & ~truth).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"kind": "binary", "samples": int(len(scores)), "accuracy": (tp + tn) / max(len(scores), 1),
            "confusion_matrix": [[tn, fp], [fn, tp]], "precision": precision, "recall": recall, "f1": f1,
            "auc": roc_auc(scores, truth)}


def roc_auc(scores: np.ndarray, truth: np.ndarray) -> float | None:
    """P(a positive scores above a negative), ties one half; None without both classes."""
    positives, negatives = int(truth.sum()), int((~truth).sum())
    if positives == 0 or negatives == 0:
        return None
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.float64)
    sorted_scores = scores[order]
    # average ranks (1-based) over runs of equal scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(scores)]
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + 1 + end) / 2.0
    u = ranks[truth].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    out = np.zeros(len(top), dtype=np.float64)
    np.divide(top, bottom, out=out, where=bottom != 0)
    return out


def format_report(report: dict[str, Any], class_names: list[str] | None = None) -> str:
    """The report as text: the confusion matrix, then the per-class table (or binary figures)."""
    matrix = np.array(report["confusion_matrix"])
    width = max(5, len(str(matrix.max())) + 1)
    lines = ["confusion matrix (rows: true class, columns: predicted):"]
    names = class_names or [str(i) for i in range(len(matrix))]
    lines.append(" " * 8 + "".join(f"{n:>{width}}" for n in names))
    lines += [f"{names[i]:>6}  " + "".join(f"{v:>{width}}" for v in row) for i, row in enumerate(matrix)]
    if report["kind"] == "binary":
        auc = "n/a (one class only)" if report["auc"] is None else f"{report['auc']:.4f}"
        lines.append(f"precision={report['precision']:.4f}  recall={report['recall']:.4f}  "
                     f"f1={report['f1']:.4f}  accuracy={report['accuracy']:.4f}  auc={auc}")
        return "\n".join(lines)
    lines.append(f"{'class':>6}  {'precision':>9}  {'recall':>9}  {'f1':>9}  {'support':>8}")
    for i, name in enumerate(names):
        lines.append(f"{name:>6}  {report['precision'][i]:>9.4f}  {report['recall'][i]:>9.4f}  "
                     f"{report['f1'][i]:>9.4f}  {report['support'][i]:>8}")
    lines.append(f"{'macro':>6}  {report['macro_precision']:>9.4f}  {report['macro_recall']:>9.4f}  "
                 f"{report['macro_f1']:>9.4f}  {report['samples']:>8}")
    extra = [f"accuracy={report['accuracy']:.4f}"]
    extra += [f"{k}={v:.4f}" for k, v in report.items() if k.startswith("top_")]
    lines.append("  ".join(extra))
    return "\n".join(lines)


__all__ = ["classification_report", "format_report", "roc_auc"]
