"""The examples that go past the MLP train from the CLI: embeddings, slices, concat, skips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from runtime.cli import main
from runtime.data import load_data

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def train(tmp_path: Path, example: str, *extra: str) -> dict:
    out = tmp_path / f"{example}.json"
    assert main(["train", str(EXAMPLES / f"{example}.dl"), "--quiet", "--seed", "0",
                 "--metrics-out", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_text_classifier_learns_the_topics_from_its_default_data(tmp_path: Path) -> None:
    report = train(tmp_path, "text_classifier")        # the generated set, its 3 x 64 default
    assert report["epochs"] == 3
    assert report["test"]["accuracy"] > 0.93


def test_mnist_residual_learns_on_a_subset(tmp_path: Path) -> None:
    mnist = load_data("mnist")
    subset = tmp_path / "subset.npz"
    np.savez(subset, x=mnist.x_train[:3000], y=mnist.y_train[:3000], x_test=mnist.x_test[:1000],
             y_test=mnist.y_test[:1000])
    report = train(tmp_path, "mnist_residual", "--data", str(subset), "--epochs", "2", "--batch-size", "64")
    assert report["test"]["accuracy"] > 0.85


def test_mnist_cnn_learns_from_raw_bytes_on_a_subset(tmp_path: Path) -> None:
    mnist = load_data("mnist")                      # float [N, 784]; the model wants u8 [N, 28, 28, 1]
    as_bytes = (mnist.x_train[:2000] * 255).round().astype(np.uint8).reshape(-1, 28, 28, 1)
    test = (mnist.x_test[:500] * 255).round().astype(np.uint8).reshape(-1, 28, 28, 1)
    subset = tmp_path / "subset.npz"
    np.savez(subset, x=as_bytes, y=mnist.y_train[:2000], x_test=test, y_test=mnist.y_test[:500])
    report = train(tmp_path, "mnist_cnn", "--data", str(subset), "--epochs", "2", "--batch-size", "64")
    assert report["test"]["accuracy"] > 0.85


def test_mnist_cnn_bn_trains_a_few_steps_and_predicts_per_sample(tmp_path: Path) -> None:
    """conv -> batch_norm -> relu -> pool twice, dense, dropout: a few steps on a small slice, then
    predict in inference form (moving statistics), the same for a row alone as in a batch."""
    mnist = load_data("mnist")
    # 40 steps: with momentum 0.9 the moving statistics average the last ~10 batches, whose
    # weights still move fast after 20 steps (test accuracy 0.43 there, 0.785 after 40)
    as_bytes = (mnist.x_train[:1280] * 255).round().astype(np.uint8).reshape(-1, 28, 28, 1)
    test = (mnist.x_test[:200] * 255).round().astype(np.uint8).reshape(-1, 28, 28, 1)
    subset = tmp_path / "subset.npz"
    np.savez(subset, x=as_bytes, y=mnist.y_train[:1280], x_test=test, y_test=mnist.y_test[:200])
    weights = tmp_path / "w.npz"
    report = train(tmp_path, "mnist_cnn_bn", "--data", str(subset), "--epochs", "2", "--batch-size", "64",
                   "--save", str(weights))
    assert report["history"]["loss"][1] < report["history"]["loss"][0]
    assert report["test"]["accuracy"] > 0.5
    from runtime.model import load_model
    model = load_model(EXAMPLES / "mnist_cnn_bn.dl", seed=0)
    model.load_weights(weights)
    assert any(np.any(s != 0) for s in model.model_state.values())     # trained moving statistics
    batch = model.predict(test[:128], batch_size=128)
    alone = np.concatenate([model.predict(test[i:i + 1], batch_size=1) for i in range(128)])
    np.testing.assert_allclose(alone, batch, rtol=0, atol=1e-6)


def test_mnist_cnn_bn_same_seed_gives_bit_identical_weights_at_one_and_two_threads() -> None:
    """Three steps of the example (convolutions, batch statistics, dropout masks) at batch 128,
    where the conv, pool and matmul kernels split into tasks: the weights, the moving statistics
    and the optimizer's state are bit-identical at 1 and 2 threads; another seed differs."""
    mnist = load_data("mnist")
    x = (mnist.x_train[:384] * 255).round().astype(np.uint8).reshape(-1, 28, 28, 1)
    y = mnist.y_train[:384]
    from runtime.model import load_model

    def train_three_steps(seed: int, num_threads: int) -> dict[str, np.ndarray]:
        model = load_model(EXAMPLES / "mnist_cnn_bn.dl", seed=seed, backend="native")
        model.backend.compiled.set_num_threads(num_threads)
        model.fit(x, y, epochs=1, batch_size=128, verbose=0)
        assert model.step == 3
        optimizer = {f"optimizer/{name}": v for name, v in model.optimizer_state.items()}
        return {**model.weights, **model.model_state, **optimizer}

    results = [train_three_steps(0, t) for t in (1, 2, 1)]
    for other in results[1:]:
        for name, w in results[0].items():
            np.testing.assert_array_equal(w, other[name], err_msg=name)
    assert not np.array_equal(train_three_steps(1, 1)["dense_2.kernel"], results[0]["dense_2.kernel"])
