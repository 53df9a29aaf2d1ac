"""Fashion-MNIST (shipped in examples/data/fashion-mnist) and the regularized example that
trains on it: examples/fmnist_mlp_dropout_bn.dl, from the CLI, predicting the same
probabilities for a row whatever the batch it is in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime import data as D
from runtime.model import load_model, model_data_spec, model_module

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "fmnist_mlp_dropout_bn.dl"


@pytest.fixture(scope="module")
def fashion() -> D.Dataset:
    return D.load_fashion_mnist()


def test_shipped_fashion_mnist(fashion):
    ds = fashion
    assert ds.name == "fashion-mnist"
    assert ds.x_train.shape == (60000, 784) and ds.x_train.dtype == np.float32
    assert ds.x_test.shape == (10000, 784) and ds.y_test.dtype == np.int32
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    # balanced, as examples/data/fashion-mnist/README.md says
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    folder = D.shipped_mnist_dir("fashion-mnist")
    assert "MIT" in (folder / "README.md").read_text() and "Zalando SE" in (folder / "LICENSE").read_text()


def test_fashion_models_default_to_fashion_mnist():
    module, _ = model_module(EXAMPLE)
    spec = model_data_spec(module)
    assert D.default_data_name(spec) == "fashion-mnist"
    mnist, _ = model_module(ROOT / "examples" / "mnist_mlp.dl")
    assert D.default_data_name(model_data_spec(mnist)) == "mnist"


def test_the_example_trains_from_the_cli_and_predicts_alike_at_any_batch_size(fashion, tmp_path):
    subset = tmp_path / "fmnist_small.npz"
    np.savez(subset, x=fashion.x_train[:512], y=fashion.y_train[:512],
             x_test=fashion.x_test[:256], y_test=fashion.y_test[:256])
    weights = tmp_path / "w.npz"
    run = subprocess.run([sys.executable, "-m", "runtime.cli", "train", str(EXAMPLE), "--data", str(subset),
                          "--epochs", "2", "--batch-size", "64", "--seed", "1", "--save", str(weights),
                          "--quiet"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "test: loss=" in run.stdout
    model = load_model(EXAMPLE, weights=weights)
    assert model.step == 16
    assert np.abs(model.model_state["batch_norm_1.moving_mean"]).max() > 0
    x = fashion.x_test[:128]
    batch = model.predict(x, batch_size=128)
    single = np.concatenate([model.predict(x[i:i + 1], batch_size=1) for i in range(len(x))])
    np.testing.assert_allclose(single, batch, rtol=0, atol=1e-6)
    assert model.evaluate(fashion.x_test[:256], fashion.y_test[:256])["accuracy"] > 0.5
