"""``dlc train / evaluate / predict`` on the examples, in-process (interpreter backend, fast).

These are the acceptance checks of the small examples: linear regression
recovers w = 2, b = 3; xor classifies all four points; the student models
learn their documented rules; the sigmoid chain's loss falls.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.cli import main
from runtime.data import load_data
from runtime.model import Model, load_model

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def train(tmp_path: Path, example: str, *extra: str) -> tuple[int, dict]:
    out = tmp_path / f"{example}.json"
    rc = main(["train", str(EXAMPLES / f"{example}.dl"), "--backend", "interp", "--quiet",
               "--metrics-out", str(out), *extra])
    return rc, json.loads(out.read_text()) if out.exists() else {}


def test_linear_regression_recovers_slope_and_intercept(tmp_path: Path, capsys) -> None:
    rc, report = train(tmp_path, "linear_regression", "--save", str(tmp_path / "w.npz"))
    assert rc == 0
    (w,), b = report["weights"]["w"], report["weights"]["b"]
    assert abs(w[0] - 2.0) < 0.05 and abs(b[0] - 3.0) < 0.05
    out = capsys.readouterr().out
    assert "test: loss=" in out and "compile time:" in out and "time per epoch:" in out
    assert report["epochs"] == 20 and report["steps_per_epoch"] == 32
    assert report["backend_calls_per_epoch"] == [32] * 20
    assert len(report["history"]["loss"]) == 20 and report["test"]["loss"] < 0.02
    assert (tmp_path / "w.npz").exists()


def test_xor_classifies_all_four_points(tmp_path: Path, capsys) -> None:
    weights = tmp_path / "xor.npz"
    rc, report = train(tmp_path, "xor", "--save", str(weights))
    assert rc == 0 and report["test"]["accuracy"] == 1.0
    points = tmp_path / "points.npy"
    np.save(points, np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32))
    out = tmp_path / "p.npy"
    assert main(["predict", str(EXAMPLES / "xor.dl"), "--weights", str(weights), "--input", str(points),
                 "--output", str(out), "--backend", "interp"]) == 0
    probs = np.load(out)
    assert probs.shape == (4, 1) and (probs[:, 0] > 0.5).tolist() == [False, True, True, False]
    capsys.readouterr()
    assert main(["predict", str(EXAMPLES / "xor.dl"), "--weights", str(weights), "--input", str(points),
                 "--backend", "interp"]) == 0
    assert capsys.readouterr().out.startswith("p = array([[")


def test_student_pass_learns_the_rule(tmp_path: Path) -> None:
    rc, report = train(tmp_path, "student_pass", "--epochs", "20")
    assert rc == 0 and report["test"]["accuracy"] > 0.8
    assert report["history"]["loss"][-1] < report["history"]["loss"][0]


def test_student_grade_reaches_the_noise_floor(tmp_path: Path) -> None:
    rc, report = train(tmp_path, "student_grade", "--epochs", "40")
    assert rc == 0 and report["test"]["mae"] < 4.0   # the grades carry N(0, 4²) noise


def test_sigmoid_chain_loss_falls(tmp_path: Path) -> None:
    rc, report = train(tmp_path, "sigmoid_chain", "--epochs", "20")
    losses = report["history"]["loss"]
    assert rc == 0 and losses[-1] < 0.05 * losses[0]
    assert "val_loss" in report["history"]


def test_lr_and_batch_size_options(tmp_path: Path) -> None:
    rc, report = train(tmp_path, "linear_regression", "--epochs", "2", "--batch-size", "300", "--lr", "0.01")
    assert rc == 0 and report["learning_rate"] == 0.01 and report["steps_per_epoch"] == 4


def test_mnist_model_on_a_subset_then_evaluate(tmp_path: Path, capsys) -> None:
    mnist = load_data("mnist")
    subset = tmp_path / "subset.npz"
    np.savez(subset, x=mnist.x_train[:1500], y=mnist.y_train[:1500], x_test=mnist.x_test[:500],
             y_test=mnist.y_test[:500])
    weights = tmp_path / "w.npz"
    rc, report = train(tmp_path, "mnist_mlp", "--data", str(subset), "--epochs", "2", "--batch-size", "128",
                       "--save", str(weights))
    assert rc == 0 and report["steps_per_epoch"] == 12 and report["test"]["accuracy"] > 0.8
    capsys.readouterr()
    assert main(["evaluate", str(EXAMPLES / "mnist_mlp.dl"), "--weights", str(weights), "--data", str(subset),
                 "--backend", "interp"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("mnist_mlp on subset (test, 500 samples): loss=")
    assert f"accuracy={report['test']['accuracy']:.4f}" in out


def test_mnist_is_the_default_data_of_the_mnist_model() -> None:
    from runtime.data import default_data_name

    model = load_model(EXAMPLES / "mnist_mlp.dl", backend="interp")
    assert default_data_name(model.data_spec) == "mnist" and model.data_spec.num_classes == 10
    assert model.state_names[0] == "rmsprop.velocity.dense_1.kernel"


# --- errors reach the user as messages, never tracebacks ------------------------------

@pytest.mark.parametrize("args, message", [
    (["--data", "no/such/file.npz"], "no/such/file.npz: no such file"),
    (["--data", "nonsense"], "nonsense: no such file or directory, and not a known data set"),
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--lr", "-1"], "--lr must be a positive number"),
    (["--save", "no/such/dir/w.npz"], "--save no/such/dir/w.npz: directory"),
])
def test_train_errors(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    rc = main(["train", str(EXAMPLES / "linear_regression.dl"), "--backend", "interp", "--quiet", *args])
    err = capsys.readouterr().err
    assert rc == 1 and message in err and "Traceback" not in err


def test_csv_data_needs_a_label_column(tmp_path: Path, capsys) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text("x,y\n1,5\n2,7\n3,9\n")
    assert main(["train", str(EXAMPLES / "linear_regression.dl"), "--backend", "interp", "--data", str(csv),
                 "--quiet"]) == 1
    assert "a CSV data file needs --label-column NAME" in capsys.readouterr().err
    assert main(["train", str(EXAMPLES / "linear_regression.dl"), "--backend", "interp", "--data", str(csv),
                 "--label-column", "y", "--quiet", "--epochs", "1"]) == 0


def test_wrong_data_for_the_model(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.ones((10, 3)), y=np.ones((10, 1)))
    assert main(["train", str(EXAMPLES / "linear_regression.dl"), "--backend", "interp", "--data", str(bad)]) == 1
    assert "training input 'x': expected shape f32[N, 1], got [10, 3]" in capsys.readouterr().err
    np.savez(bad, x=np.ones((10, 784)), y=np.full(10, 10))
    assert main(["train", str(EXAMPLES / "mnist_mlp.dl"), "--backend", "interp", "--data", str(bad)]) == 1
    assert "label 10 at row 0 is out of range [0, 10)" in capsys.readouterr().err


def test_plot_without_matplotlib_says_how_to_install(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import matplotlib -> ImportError
    rc = main(["train", str(EXAMPLES / "linear_regression.dl"), "--backend", "interp", "--plot", "c.png"])
    err = capsys.readouterr().err
    assert rc == 1 and "pip install 'dlc[plot]'" in err


def test_evaluate_and_predict_errors(tmp_path: Path, capsys) -> None:
    weights = tmp_path / "lin.npz"
    Model(load_model(EXAMPLES / "linear_regression.dl", backend="interp").module, backend="interp").save(weights)
    rc = main(["evaluate", str(EXAMPLES / "xor.dl"), "--weights", str(weights), "--backend", "interp"])
    assert rc == 1 and "checkpoint has no parameter 'hidden.kernel' that model 'xor' needs " \
                       "(the checkpoint is of model 'linear_regression')" in capsys.readouterr().err
    x = tmp_path / "x.npy"
    np.save(x, np.ones((3, 2), np.float32))
    rc = main(["predict", str(EXAMPLES / "linear_regression.dl"), "--weights", str(weights), "--input", str(x),
               "--backend", "interp"])
    assert rc == 1 and "prediction input 'x': expected shape f32[N, 1], got [3, 2]" in capsys.readouterr().err
    rc = main(["predict", str(EXAMPLES / "linear_regression.dl"), "--weights", str(tmp_path / "none.npz"),
               "--input", str(x), "--backend", "interp"])
    assert rc == 1 and "no such checkpoint file" in capsys.readouterr().err


def test_ctrl_c_saves_the_last_completed_step(tmp_path: Path, monkeypatch, capsys) -> None:
    def interrupted_fit(self, *args, **kwargs):
        self.step = 7
        raise KeyboardInterrupt

    monkeypatch.setattr(Model, "fit", interrupted_fit)
    weights = tmp_path / "w.npz"
    rc = main(["train", str(EXAMPLES / "linear_regression.dl"), "--backend", "interp", "--quiet",
               "--save", str(weights)])
    err = capsys.readouterr().err
    assert rc == 130 and "interrupted after 7 steps" in err and weights.exists()


def test_a_file_without_a_model_block(tmp_path: Path, capsys) -> None:
    source = tmp_path / "f.dl"
    source.write_text("fn f(x: f32[N]) -> f32[N] {\n    return x * 2.0\n}\n")
    assert main(["train", str(source), "--backend", "interp"]) == 1
    assert "f.dl: no model block to load" in capsys.readouterr().err


def test_train_and_evaluate_take_the_pass_flags(tmp_path: Path, capsys) -> None:
    """Training compiles, so it takes the pass flags like every compiling command."""
    xor = str(EXAMPLES / "xor.dl")
    assert main(["train", xor, "--epochs", "1", "--quiet", "--time-passes", "--pass-stats",
                 "--save", str(tmp_path / "w.npz")]) == 0
    err = capsys.readouterr().err
    assert "canonicalize" in err and "Total" in err and "ops-before" in err
    # --time-passes covers the whole load, source to callable, not only the passes
    assert "Model load time report" in err
    assert all(stage in err for stage in ("frontend", "LLVM optimization", "machine code", "(unattributed)"))
    assert main(["evaluate", xor, "--weights", str(tmp_path / "w.npz"), "--passes", "no-such-pass"]) == 1
    assert "no-such-pass" in capsys.readouterr().err


def test_load_model_takes_a_pipeline() -> None:
    """``passes=`` picks what runs before native codegen; no passes still trains."""
    model = load_model(EXAMPLES / "xor.dl", seed=0, backend="native", passes="")
    data = load_data("xor", seed=0)
    history = model.fit(data.x_train, data.y_train, epochs=2, batch_size=4, verbose=0)
    assert len(history.history["loss"]) == 2


def test_the_summary_counts_one_epoch_in_the_singular(tmp_path: Path, capsys) -> None:
    assert main(["train", str(EXAMPLES / "linear_regression.dl"), "--backend", "interp", "--quiet",
                 "--epochs", "1", "--batch-size", "1000"]) == 0
    out = capsys.readouterr().out
    assert "model linear_regression: 1 epoch x 1 step (batch 1000)" in out
