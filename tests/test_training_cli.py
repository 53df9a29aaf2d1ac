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


def test_class_weight_option_weights_the_loss(tmp_path: Path) -> None:
    losses = {}
    for weights in (None, "0=1,1=1", "0=1,1=4", "balanced"):
        rc, report = train(tmp_path, "student_pass", "--epochs", "1", "--no-test",
                           *(["--class-weight", weights] if weights else []))
        assert rc == 0
        losses[weights] = report["history"]["loss"][0]
    # weights of 1 train as no weights (to rounding: the weighted step differentiates the loss's
    # primitive form); weighting class 1 by 4 raises the loss
    assert losses["0=1,1=1"] == pytest.approx(losses[None], rel=1e-5)
    assert losses["0=1,1=4"] > 1.5 * losses[None]
    assert losses["balanced"] != losses[None]


def test_student_grade_reaches_the_noise_floor(tmp_path: Path) -> None:
    rc, report = train(tmp_path, "student_grade", "--epochs", "40")
    assert rc == 0 and report["test"]["mae"] < 4.0   # the grades carry N(0, 4²) noise


def test_sigmoid_chain_loss_falls(tmp_path: Path) -> None:
    rc, report = train(tmp_path, "sigmoid_chain", "--epochs", "20")
    losses = report["history"]["loss"]
    assert rc == 0 and losses[-1] < 0.05 * losses[0]


def test_validation_is_not_the_test_split(tmp_path: Path, capsys) -> None:
    """val_* comes from --validation-split (held out of training); the test split is evaluated
    once, at the end, and reported as "test"; --quiet still names the data set."""
    rc, report = train(tmp_path, "linear_regression", "--epochs", "2", "--validation-split", "0.2")
    out = capsys.readouterr().out
    assert rc == 0 and report["train_samples"] == 800 and report["validation_samples"] == 200
    assert report["steps_per_epoch"] == 25 and report["backend_calls_per_epoch"] == [25, 25]
    assert len(report["history"]["val_loss"]) == 2 and report["test_samples"] == 200
    assert "model linear_regression on linear_regression (800 training samples)" in out
    assert "validation (the last 0.2 of the training data, 200 samples): loss=" in out
    assert out.count("test: loss=") == 1
    rc, report = train(tmp_path, "linear_regression", "--epochs", "1")
    assert rc == 0 and "val_loss" not in report["history"] and report["validation"] is None


def test_validation_data_and_no_test(tmp_path: Path, capsys) -> None:
    csv = tmp_path / "val.csv"
    csv.write_text("x,y\n" + "".join(f"{v},{2 * v + 3}\n" for v in (0.1, 0.2, 0.3)))
    rc, report = train(tmp_path, "linear_regression", "--epochs", "1", "--no-test",
                       "--validation-data", str(csv), "--label-column", "y")
    assert rc == 0 and report["validation_samples"] == 3 and report["validation"] == str(csv)
    assert report["test"] is None and report["test_samples"] == 0
    assert "test: loss=" not in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--validation-split", "1.5"], "--validation-split must be in [0, 1), got 1.5"),
    (["--validation-split", "0.2", "--validation-data", "xor"], "--validation-split or --validation-data, not both"),
    (["--validation-data", "xor"], "data set 'xor' does not fit model 'linear_regression': validation input 'x'"),
])
def test_validation_option_errors(capsys, args: list[str], message: str) -> None:
    rc = main(["train", str(EXAMPLES / "linear_regression.dl"), "--backend", "interp", "--quiet", *args])
    err = capsys.readouterr().err
    assert rc == 1 and message in err and "Traceback" not in err


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
    (["--class-weight", "0=1,1:5"], "--class-weight: '1:5' is not CLASS=WEIGHT"),
    (["--class-weight", "0=1"], "class weights need a classification loss (binary_crossentropy"),
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
    # (an earlier test may have compiled xor already: a cache hit has no LLVM stages, so only
    # the stages of both paths are asserted here; tests/test_gemm_library.py times a cold one)
    assert all(stage in err for stage in ("frontend", "cache lookup", "model set-up", "(unattributed)"))
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
    assert "model linear_regression on linear_regression (1000 training samples): 1 epoch x 1 step (batch 1000)" in out


# --- callbacks, checkpoints and resuming from the command line --------------------------

def test_early_stopping_flag(tmp_path: Path, capsys) -> None:
    """All-zero data: the loss is 0 from the first step and can never improve."""
    flat = tmp_path / "flat.npz"
    np.savez(flat, x=np.zeros((40, 1), np.float32), y=np.zeros((40, 1), np.float32))
    rc, report = train(tmp_path, "linear_regression", "--data", str(flat), "--epochs", "10", "--early-stopping", "1")
    assert rc == 0 and len(report["history"]["loss"]) == 2
    out = capsys.readouterr().out
    assert "early stopping: loss did not improve for 1 epoch after epoch 1; stopped after epoch 2" in out
    assert "model linear_regression on flat (40 training samples): 2 epochs x 2 steps" in out


def test_save_best_keeps_the_best_epoch(tmp_path: Path) -> None:
    from runtime.checkpoint import load_checkpoint

    best = tmp_path / "best.npz"
    # lr 1.0 makes SGD overshoot: the validation loss rises after epoch 1
    rc, report = train(tmp_path, "linear_regression", "--epochs", "4", "--validation-split", "0.5", "--lr", "1.0",
                       "--save", str(best), "--save-best")
    val = report["history"]["val_loss"]
    assert rc == 0 and int(np.argmin(val)) == 0 and load_checkpoint(best).epoch == 1


def test_checkpoint_every_and_resume(tmp_path: Path, capsys) -> None:
    from runtime.checkpoint import load_checkpoint

    pattern = str(tmp_path / "ckpt-{epoch}.npz")
    rc, _ = train(tmp_path, "linear_regression", "--epochs", "4", "--checkpoint-every", "2", "--save", pattern)
    assert rc == 0 and sorted(p.name for p in tmp_path.glob("ckpt-*")) == ["ckpt-2.npz", "ckpt-4.npz"]
    assert load_checkpoint(tmp_path / "ckpt-2.npz").step == 64
    rc, report = train(tmp_path, "linear_regression", "--resume", str(tmp_path / "ckpt-2.npz"), "--epochs", "3",
                       "--save", str(tmp_path / "resumed.npz"))
    assert rc == 0 and len(report["history"]["loss"]) == 1
    resumed = load_checkpoint(tmp_path / "resumed.npz")
    assert (resumed.step, resumed.epoch) == (96, 3)
    capsys.readouterr()
    rc = main(["train", str(EXAMPLES / "linear_regression.dl"), "--backend", "interp", "--quiet",
               "--resume", str(tmp_path / "resumed.npz"), "--epochs", "3"])
    err = capsys.readouterr().err
    assert rc == 1 and "has already trained 3 epochs; --epochs 3 counts those too" in err


def test_initial_weights_start_a_fresh_optimizer(tmp_path: Path) -> None:
    from runtime.checkpoint import load_checkpoint

    rc, _ = train(tmp_path, "linear_regression", "--epochs", "1", "--save", str(tmp_path / "a.npz"))
    rc, _ = train(tmp_path, "linear_regression", "--epochs", "1", "--initial-weights", str(tmp_path / "a.npz"),
                  "--save", str(tmp_path / "b.npz"))
    b = load_checkpoint(tmp_path / "b.npz")
    assert rc == 0 and (b.step, b.epoch) == (32, 1)


def test_progress_modes(tmp_path: Path, capsys) -> None:
    assert main(["train", str(EXAMPLES / "linear_regression.dl"), "--backend", "interp", "--epochs", "2",
                 "--progress", "epoch"]) == 0
    out = capsys.readouterr().out
    assert "epoch 1: loss=" in out and "epoch 2: loss=" in out and " samples/s)" in out
    assert main(["train", str(EXAMPLES / "linear_regression.dl"), "--backend", "interp", "--epochs", "2",
                 "--progress", "none"]) == 0
    captured = capsys.readouterr()
    assert "epoch 1: loss=" not in captured.out and "epoch 1" not in captured.err


@pytest.mark.parametrize("args, message", [
    (["--save-best"], "--save-best writes the checkpoint --save names; give --save PATH"),
    (["--checkpoint-every", "0", "--save", "w.npz"], "--checkpoint-every must be at least 1, got 0"),
    (["--early-stopping", "-1"], "--early-stopping must be at least 0, got -1"),
    (["--save", "w-{step}.npz"], "--save w-{step}.npz: braces may only name the epoch"),
    (["--early-stopping", "2", "--monitor", "val_mae"], "EarlyStopping monitors 'val_mae', which fit does not log"),
    (["--resume", "a.npz", "--initial-weights", "b.npz"], "not allowed with argument"),
])
def test_callback_flag_errors(tmp_path: Path, monkeypatch, capsys, args: list[str], message: str) -> None:
    monkeypatch.chdir(tmp_path)
    rc = main(["train", str(EXAMPLES / "linear_regression.dl"), "--backend", "interp", "--quiet", *args])
    err = capsys.readouterr().err
    assert rc in (1, 2) and message in err and "Traceback" not in err


def test_resume_needs_the_same_optimizer(tmp_path: Path, capsys) -> None:
    source = (EXAMPLES / "linear_regression.dl").read_text().replace("sgd(lr=0.05)", "adam(lr=0.05)")
    (tmp_path / "adam.dl").write_text(source)
    weights = tmp_path / "sgd.npz"
    assert train(tmp_path, "linear_regression", "--epochs", "1", "--save", str(weights))[0] == 0
    rc = main(["train", str(tmp_path / "adam.dl"), "--backend", "interp", "--quiet", "--resume", str(weights)])
    err = capsys.readouterr().err
    assert rc == 1 and "cannot resume: the checkpoint holds the state of optimizer 'sgd'" in err
    assert "--initial-weights" in err


def test_divergence_after_a_checkpoint_names_it(tmp_path: Path, capsys) -> None:
    """lr 2.5 diverges in epoch 2: epoch 1's --save-best checkpoint exists and the note says so."""
    best = tmp_path / "best.npz"
    rc, _ = train(tmp_path, "linear_regression", "--epochs", "4", "--validation-split", "0.5", "--lr", "2.5",
                  "--save", str(best), "--save-best")
    err = capsys.readouterr().err
    assert rc == 1 and f"the checkpoints written before that epoch stay: {best}" in err and best.exists()


# --- a model with two inputs, from the command line ----------------------------------------

TWO_INPUTS = """model two_inputs {
    input a: f32[N, 3]
    input b: f32[N, 2]
    target y: f32[N, 1]
    param wa: f32[3, 1] = zeros
    param wb: f32[2, 1] = zeros
    param c: f32[1] = zeros
    output pred = a @ wa + b @ wb + c
    loss mse(pred, y)
    optimizer sgd(lr=0.1)
    metrics [mae]
}
"""


@pytest.fixture
def two_inputs(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(64, 3)).astype(np.float32), rng.normal(size=(64, 2)).astype(np.float32)
    y = (a @ [[1.0], [2.0], [-1.0]] + b @ [[0.5], [3.0]] + 1.0).astype(np.float32)
    (tmp_path / "two.dl").write_text(TWO_INPUTS)
    return tmp_path / "two.dl", {"a": a, "b": b, "y": y}


def run_two(source: Path, *args: str) -> tuple[int, dict]:
    out = source.parent / "m.json"
    out.unlink(missing_ok=True)
    rc = main(["train", str(source), "--backend", "interp", "--quiet", "--metrics-out", str(out), *args])
    return rc, json.loads(out.read_text()) if out.exists() else {}


def test_two_inputs_from_a_named_npz(two_inputs) -> None:
    source, arrays = two_inputs
    data = source.parent / "d.npz"
    np.savez(data, **{k: v[:48] for k, v in arrays.items()}, **{f"{k}_test": v[48:] for k, v in arrays.items()})
    rc, report = run_two(source, "--data", str(data), "--epochs", "30", "--batch-size", "16")
    assert rc == 0 and report["train_samples"] == 48 and report["test_samples"] == 16
    assert report["test"]["loss"] < 0.05 * report["history"]["loss"][0]


def test_two_inputs_from_input_files(two_inputs, capsys) -> None:
    source, arrays = two_inputs
    for name, array in arrays.items():
        np.save(source.parent / f"{name}.npy", array)
    files = [f"--input={n}={source.parent / n}.npy" for n in arrays]
    rc, report = run_two(source, *files, "--epochs", "2", "--validation-split", "0.25")
    assert rc == 0 and report["train_samples"] == 48 and report["validation_samples"] == 16
    weights = source.parent / "w.npz"
    assert run_two(source, *files, "--epochs", "1", "--save", str(weights))[0] == 0
    capsys.readouterr()
    assert main(["evaluate", str(source), "--weights", str(weights), "--backend", "interp", *files]) == 0
    assert capsys.readouterr().out.startswith("two_inputs on inputs (train, 64 samples): loss=")


@pytest.mark.parametrize("make, message", [
    (lambda d: ["--data", str(d / "x.npz")], "x.npz: no array for 'b' (found: a, y)"),
    (lambda d: ["--data", str(d / "xy.npz")], "missing array 'y'"),
    (lambda d: ["--input", f"a={d}/a.npy", "--input", f"b={d}/b.npy"], "--input: no file for 'y'"),
    (lambda d: ["--input", f"q={d}/a.npy"], "'q' is none of the model's inputs or targets"),
    (lambda d: ["--input", "a.npy"], "--input a.npy: expected NAME=FILE"),
    (lambda d: ["--input", f"a={d}/a.npy", "--input", f"b={d}/a.npy", "--input", f"y={d}/y.npy"],
     "training input 'b': expected shape f32[N, 2], got [64, 3]"),
])
def test_two_input_data_errors(two_inputs, capsys, make, message) -> None:
    source, arrays = two_inputs
    d = source.parent
    np.savez(d / "x.npz", a=arrays["a"], y=arrays["y"])
    np.savez(d / "xy.npz", x=arrays["a"])
    for name, array in arrays.items():
        np.save(d / f"{name}.npy", array)
    rc = main(["train", str(source), "--backend", "interp", "--quiet", *make(d)])
    err = capsys.readouterr().err
    assert rc == 1 and message in err and "Traceback" not in err
    assert "model 'two_inputs' takes inputs a: f32[N, 3], b: f32[N, 2]; targets y: f32[N, 1]" in err


def test_the_summary_rate_agrees_with_its_epoch_time(tmp_path: Path, capsys) -> None:
    rc, report = train(tmp_path, "linear_regression", "--epochs", "3")
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("time per epoch:"))
    seconds, rate = line.split(": ")[1].split(", ")[:2]
    mean = float(np.mean(report["epoch_seconds"]))
    assert rc == 0 and seconds == f"{mean:.2f} s" and rate == f"{1000 / mean:,.0f} samples/s"
