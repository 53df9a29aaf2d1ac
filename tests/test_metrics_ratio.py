"""Metrics beyond accuracy: precision and recall over all batches (not a mean of per-batch
ratios), top-k accuracies; numpy references on small data, both backends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compiler.diagnostics import DlError
from compiler.metrics import combine_metrics, metric_names
from runtime.model import Model, load_model

BINARY = """
model pr {
    input x: f32[N, 2]
    target y: f32[N, 1]
    output p = dense(x, 1, activation=sigmoid)
    loss binary_crossentropy(p, y)
    optimizer sgd(lr=0.1)
    metrics [accuracy, precision, recall]
}
"""

TOPK = """
model topk {
    input x: f32[N, 4]
    target y: TARGET
    output p = dense(x, 8, activation=softmax)
    loss LOSS(p, y)
    optimizer sgd(lr=0.1)
    metrics [METRIC]
}
"""

RNG = np.random.default_rng(0)
X2 = RNG.normal(size=(50, 2)).astype(np.float32)
Y2 = (RNG.uniform(size=(50, 1)) > 0.3).astype(np.float32)
X4 = RNG.normal(size=(40, 4)).astype(np.float32)
LABELS = RNG.integers(0, 8, size=40)


def model(tmp_path: Path, source: str, backend: str) -> Model:
    path = tmp_path / "m.dl"
    path.write_text(source)
    return load_model(str(path), seed=0, backend=backend)


@pytest.mark.parametrize("backend", ["interp", "native"])
def test_precision_and_recall_count_over_all_batches(tmp_path: Path, backend) -> None:
    m = model(tmp_path, BINARY, backend)
    result = m.evaluate(X2, Y2, batch_size=7)
    predicted, actual = m.predict(X2) > 0.5, Y2 > 0.5
    tp = np.sum(predicted & actual)
    assert list(result) == ["loss", "accuracy", "precision", "recall"]
    assert result["precision"] == pytest.approx(tp / predicted.sum(), rel=1e-6)
    assert result["recall"] == pytest.approx(tp / actual.sum(), rel=1e-6)
    # not the mean of per-batch precisions (which this data makes differ)
    per_batch = [np.sum(predicted[i:i + 7] & actual[i:i + 7]) / max(predicted[i:i + 7].sum(), 1)
                 for i in range(0, 50, 7)]
    assert abs(np.mean(per_batch) - result["precision"]) > 1e-3
    history = m.fit(X2, Y2, epochs=1, batch_size=7, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "precision", "recall"}


@pytest.mark.parametrize("backend", ["interp", "native"])
@pytest.mark.parametrize("sparse", [True, False])
def test_top_k_accuracy_matches_numpy(tmp_path: Path, backend, sparse) -> None:
    source = (TOPK.replace("TARGET", "i64[N]" if sparse else "f32[N, 8]")
              .replace("LOSS", "sparse_categorical_crossentropy" if sparse else "categorical_crossentropy")
              .replace("METRIC", "sparse_top_k_categorical_accuracy" if sparse else "top_k_categorical_accuracy"))
    m = model(tmp_path, source, backend)
    y = LABELS if sparse else np.eye(8, dtype=np.float32)[LABELS]
    name = "sparse_top_k_categorical_accuracy" if sparse else "top_k_categorical_accuracy"
    scores = m.predict(X4)
    # in the top 5: fewer than 5 classes score strictly higher than the label's
    expected = np.mean(np.sum(scores > scores[np.arange(40), LABELS][:, None], axis=1) < 5)
    assert 0.3 < expected < 1.0
    assert m.evaluate(X4, y, batch_size=9)[name] == pytest.approx(expected, abs=1e-6)


def test_combine_metrics_divides_the_parts() -> None:
    logs = {"loss": 1.0, "precision.true_positives": 0.2, "precision.predicted_positives": 0.4,
            "recall.true_positives": 0.2, "recall.actual_positives": 0.0}
    assert combine_metrics(logs) == {"loss": 1.0, "precision": 0.5, "recall": 0.0}   # 0/0 is 0, as Keras
    assert metric_names(list(logs)[1:]) == ["precision", "recall"]


def test_precision_needs_a_target_of_the_outputs_shape(tmp_path: Path) -> None:
    source = TOPK.replace("TARGET", "i64[N]").replace("LOSS", "sparse_categorical_crossentropy") \
                 .replace("METRIC", "precision")
    with pytest.raises(DlError, match="metric 'precision' does not fit output 'p'"):
        model(tmp_path, source, "interp")
