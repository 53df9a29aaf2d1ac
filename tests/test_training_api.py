"""The Keras-shaped training surface: validation split, callbacks, schedules, ``import dlc``.

Tiny hand-built models on the interpreter backend, a few steps each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_training_models import blobs, classifier_module

from compiler.diagnostics import ArgumentTypeError, ArgumentValueError, DlRuntimeError
from compiler.schedules import CosineDecay, ExponentialDecay, LinearWarmup, OneCycle, PiecewiseConstantDecay
from runtime.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
from runtime.model import Model


def clf(seed: int = 0) -> Model:
    return Model(classifier_module({"name": "adam", "learning_rate": 0.1}), seed=seed, backend="interp")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return blobs(40)


# --- validation ----------------------------------------------------------------------------

def test_validation_split_holds_out_the_last_fraction(data) -> None:
    """As Keras: the last 25 % (10 of 40) validate, before shuffling, and are never trained on."""
    x, y = data
    model = clf()
    history = model.fit(x, y, epochs=2, batch_size=8, validation_split=0.25, verbose=0)
    assert history.train_samples == 30 and history.validation_samples == 10
    assert history.calls_per_epoch == [4, 4]          # ceil(30 / 8): the held-out rows are not trained
    assert history.history["val_loss"][-1] == pytest.approx(model.evaluate(x[30:], y[30:])["loss"], rel=1e-6)
    same = clf()
    same.fit(x[:30], y[:30], epochs=2, batch_size=8, validation_data=(x[30:], y[30:]), verbose=0)
    for name, w in model.weights.items():
        np.testing.assert_array_equal(w, same.weights[name])


@pytest.mark.parametrize("kwargs, error, message", [
    ({"validation_split": 1.0}, ArgumentValueError, "'validation_split' must be in [0, 1), got 1.0"),
    ({"validation_split": -0.1}, ArgumentValueError, "must be in [0, 1)"),
    ({"validation_split": "0.2"}, ArgumentTypeError, "must be a number in [0, 1)"),
    ({"validation_split": 1e-17}, ArgumentValueError, "leaves 40 to train on and 0 to validate on"),
    ({"validation_split": 0.2, "validation_data": "x"}, ArgumentValueError, "not both"),
])
def test_validation_misuse(data, kwargs, error, message) -> None:
    x, y = data
    with pytest.raises(error) as info:
        clf().fit(x, y, epochs=1, verbose=0, **kwargs)
    assert message in str(info.value)


def test_a_small_validation_split_keeps_one_sample(data) -> None:
    x, y = data
    # int(40 * 0.975) = 39 rows train, 1 validates: allowed (only an empty side is an error)
    history = clf().fit(x, y, epochs=1, verbose=0, validation_split=0.025)
    assert history.validation_samples == 1


def test_empty_validation_data_is_an_error(data) -> None:
    x, y = data
    with pytest.raises(DlRuntimeError, match="the validation data is empty"):
        clf().fit(x, y, epochs=1, verbose=0, validation_data=(x[:0], y[:0]))


# --- callbacks -----------------------------------------------------------------------------

class Recorder(Callback):
    """Records every hook with its logs' keys; replaces val_loss by a scripted sequence."""

    def __init__(self, val_losses: list[float] | None = None):
        super().__init__()
        self.calls: list[tuple] = []
        self.val_losses = val_losses
        self.weights: list[dict[str, np.ndarray]] = []

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin",))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end", sorted(logs)))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_epoch_end(self, epoch, logs=None):
        if self.val_losses is not None:
            logs["val_loss"] = self.val_losses[epoch]
        self.weights.append(self.model.get_weights())
        self.calls.append(("epoch_end", epoch, sorted(logs)))

    def on_batch_end(self, batch, logs=None):       # the older name, called by on_train_batch_end
        self.calls.append(("batch_end", batch, sorted(logs)))


def test_callbacks_follow_the_keras_protocol(data) -> None:
    x, y = data
    recorder = Recorder()
    clf().fit(x, y, epochs=2, batch_size=16, validation_split=0.2, verbose=0, callbacks=[recorder])
    logs = ["accuracy", "loss", "val_accuracy", "val_loss"]
    batch = ["accuracy", "loss"]
    assert recorder.calls == [
        ("train_begin",),
        ("epoch_begin", 0), ("batch_end", 0, batch), ("batch_end", 1, batch), ("epoch_end", 0, logs),
        ("epoch_begin", 1), ("batch_end", 0, batch), ("batch_end", 1, batch), ("epoch_end", 1, logs),
        ("train_end", logs)]
    assert recorder.params["steps"] == 2 and recorder.params["metrics"] == ["loss", "accuracy", "val_loss",
                                                                             "val_accuracy"]


def test_stop_training_from_a_batch_ends_fit_cleanly(data) -> None:
    x, y = data
    model = clf()
    stopper = LambdaCallback(on_batch_end=lambda batch, logs: setattr(model, "stop_training", batch == 1))
    history = model.fit(x, y, epochs=5, batch_size=8, verbose=0, callbacks=[stopper])
    assert model.step == 2 and history.epoch == [0] and model.epochs_trained == 1


def test_early_stopping_restores_the_best_weights(data) -> None:
    x, y = data
    model = clf()
    script = Recorder(val_losses=[1.0, 0.5, 0.6, 0.7, 0.8, 0.9])
    stop = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    history = model.fit(x, y, epochs=6, batch_size=16, validation_split=0.2, verbose=0, callbacks=[script, stop])
    assert history.epoch == [0, 1, 2, 3] and stop.stopped_epoch == 3 and stop.best_epoch == 1
    assert history.history["val_loss"] == [1.0, 0.5, 0.6, 0.7]
    for name, w in model.get_weights().items():
        np.testing.assert_array_equal(w, script.weights[1][name])
    assert not np.array_equal(script.weights[1]["dense_1.kernel"], script.weights[3]["dense_1.kernel"])


def test_model_checkpoint_saves_only_improvements(tmp_path: Path, data) -> None:
    x, y = data
    model = clf()
    script = Recorder(val_losses=[1.0, 0.5, 0.6, 0.4])
    checkpoint = ModelCheckpoint(tmp_path / "best-{epoch:02d}.npz", save_best_only=True)
    model.fit(x, y, epochs=4, batch_size=16, validation_split=0.2, verbose=0, callbacks=[script, checkpoint])
    assert [p.name for p in checkpoint.saved] == ["best-01.npz", "best-02.npz", "best-04.npz"]
    again = clf()
    again.load_weights(tmp_path / "best-02.npz")
    assert again.step == 4 and again.epochs_trained == 2
    for name, w in again.get_weights().items():
        np.testing.assert_array_equal(w, script.weights[1][name])


def test_reduce_lr_on_plateau_and_the_learning_rate_log(data) -> None:
    x, y = data
    model = clf()
    script = Recorder(val_losses=[1.0, 1.0, 1.0, 0.1, 1.0])
    reduce = ReduceLROnPlateau(factor=0.5, patience=1, min_lr=0.03)
    history = model.fit(x, y, epochs=5, batch_size=16, validation_split=0.2, verbose=0, callbacks=[script, reduce])
    # the rate each epoch trained with (logged before that epoch's reduction, as Keras):
    # epoch 1 does not improve -> 0.05; epoch 2 neither -> 0.025, held at min_lr 0.03
    assert history.history["learning_rate"] == [0.1, 0.1, 0.05, 0.03, 0.03]
    assert model.learning_rate == 0.03


def step_rates(model: Model) -> list[float]:
    """Spy on the learning rate argument of every training step."""
    seen: list[float] = []
    train_step = model.backend.train_step

    def spy(args):
        seen.append(float(args[-1]))
        return train_step(args)
    model.backend.train_step = spy
    return seen


def test_learning_rate_scheduler_sets_each_epochs_rate(data) -> None:
    x, y = data
    model = clf()
    seen = step_rates(model)
    history = model.fit(x, y, epochs=3, batch_size=20, verbose=0,
                        callbacks=[LearningRateScheduler(lambda epoch, lr: 0.2 * 0.5 ** epoch)])
    assert seen == pytest.approx([0.2, 0.2, 0.1, 0.1, 0.05, 0.05])
    assert history.history["learning_rate"] == pytest.approx([0.2, 0.1, 0.05])


def test_a_schedule_sets_every_steps_rate_without_recompiling(data) -> None:
    x, y = data
    model = clf()
    seen = step_rates(model)
    schedule = CosineDecay(0.1, decay_steps=4)
    model.fit(x, y, epochs=3, batch_size=20, verbose=0, learning_rate=schedule)
    expected = [0.1 * 0.5 * (1 + np.cos(np.pi * min(s, 4) / 4)) for s in range(6)]
    assert seen == pytest.approx(expected, abs=1e-8) and model.lr_schedule is schedule


def test_csv_logger_and_terminate_on_nan(tmp_path: Path, data) -> None:
    x, y = data
    log = tmp_path / "log.csv"
    model = clf()
    model.fit(x, y, epochs=2, batch_size=20, verbose=0, callbacks=[CSVLogger(log)])
    rows = log.read_text().splitlines()
    assert rows[0] == "epoch,accuracy,loss" and [r.split(",")[0] for r in rows[1:]] == ["0", "1"]
    model.fit(x * np.float32(1e30), y, epochs=3, batch_size=20, verbose=0, learning_rate=1e30,
              allow_nonfinite=True, callbacks=[TerminateOnNaN()])
    assert model.epochs_trained == 3 and model.step < 4 + 6


@pytest.mark.parametrize("kwargs, message", [
    ({"callbacks": EarlyStopping()}, "'callbacks' must be a list of Callback objects"),
    ({"callbacks": [print]}, "holds a builtin_function_or_method, not a Callback"),
    ({"callbacks": [EarlyStopping()]}, "EarlyStopping monitors 'val_loss', which fit does not log (it logs: loss, accuracy); validate"),
    ({"callbacks": [ReduceLROnPlateau(monitor="loss")], "learning_rate": CosineDecay(0.1, 10)},
     "ReduceLROnPlateau sets the learning rate, but fit's learning_rate is a schedule"),
    ({"learning_rate": lambda step: 0.1}, "must be a positive number or a dlc.schedules schedule"),
    ({"learning_rate": -1.0}, "'learning_rate' must be a positive number, got -1.0"),
])
def test_callback_and_schedule_misuse(data, kwargs, message) -> None:
    x, y = data
    model = clf()
    with pytest.raises(DlRuntimeError) as info:
        model.fit(x, y, epochs=1, verbose=0, **kwargs)
    assert message in str(info.value) and model.step == 0


@pytest.mark.parametrize("make, message", [
    (lambda: EarlyStopping(patience=-1), "patience must be a non-negative integer"),
    (lambda: EarlyStopping(mode="up"), "mode must be 'auto', 'min' or 'max'"),
    (lambda: ReduceLROnPlateau(factor=2), "factor must be in (0, 1)"),
    (lambda: CosineDecay(0.1, decay_steps=0), "decay_steps must be a positive integer"),
    (lambda: CosineDecay(0.1, 10, warmup_steps=5), "warmup_steps needs warmup_target"),
    (lambda: PiecewiseConstantDecay([10, 5], [1.0, 0.5, 0.1]), "boundaries must increase"),
    (lambda: PiecewiseConstantDecay([10], [1.0]), "1 boundaries need 2 values, got 1"),
    (lambda: OneCycle(0.1, 100, pct_start=1.5), "pct_start must be in (0, 1)"),
])
def test_constructor_errors(make, message) -> None:
    with pytest.raises(DlRuntimeError) as info:
        make()
    assert message in str(info.value)


def test_schedule_formulas() -> None:
    """Keras's formulas (PyTorch's for one-cycle), at hand-computed points."""
    assert ExponentialDecay(0.1, 10, 0.5)(5) == pytest.approx(0.1 * 0.5 ** 0.5)
    assert ExponentialDecay(0.1, 10, 0.5, staircase=True)(19) == pytest.approx(0.05)
    steps = PiecewiseConstantDecay([2, 4], [1.0, 0.5, 0.1])
    assert [steps(s) for s in range(6)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.1]
    warm = CosineDecay(0.0001, 10, warmup_target=0.1, warmup_steps=5)
    assert warm(0) == pytest.approx(0.0001) and warm(5) == pytest.approx(0.1) and warm(15) == pytest.approx(0.0)
    assert warm(10) == pytest.approx(0.05)
    assert CosineDecay(0.1, 10, alpha=0.1)(100) == pytest.approx(0.01)
    ramp = LinearWarmup(0.1, 4, after=ExponentialDecay(0.1, 1, 0.5))
    assert [ramp(s) for s in range(6)] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.05])
    cycle = OneCycle(1.0, 100, pct_start=0.25, div_factor=10, final_div_factor=100)
    assert cycle(0) == pytest.approx(0.1) and cycle(24) == pytest.approx(1.0) and cycle(99) == pytest.approx(0.001)


# --- batches from an iterable ----------------------------------------------------------------

def batches_of(x, y, size: int):
    for lo in range(0, len(x), size):
        yield x[lo:lo + size], y[lo:lo + size]


def test_fit_from_a_generator_equals_fit_on_the_same_batches(data) -> None:
    x, y = data
    arrays, fed = clf(), clf()
    arrays.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0)
    history = fed.fit(batches_of(x, y, 16), epochs=1, verbose=0)
    assert fed.step == 3 and history.train_samples == 40 and history.calls_per_epoch == [3]
    for name, w in arrays.weights.items():
        np.testing.assert_array_equal(w, fed.weights[name])


def test_steps_per_epoch_carries_one_generator_across_epochs(data) -> None:
    x, y = data
    model = clf()
    stream = (batch for _ in range(3) for batch in batches_of(x, y, 10))   # 12 batches
    history = model.fit(stream, epochs=4, steps_per_epoch=3, verbose=0, validation_data=(x[:8], y[:8]))
    assert history.epoch == [0, 1, 2, 3] and model.step == 12 and len(history.history["val_loss"]) == 4


def test_a_list_of_batches_serves_every_epoch(data) -> None:
    x, y = data
    model = clf()
    model.fit(list(batches_of(x, y, 20)), epochs=3, verbose=0)
    assert model.step == 6 and model.epochs_trained == 3


def test_a_generator_that_runs_out_stops_training_with_a_warning(data) -> None:
    x, y = data
    model = clf()
    with pytest.warns(UserWarning, match="the batches ran out at step 2 of epoch 2"):
        history = model.fit(batches_of(x, y, 16), epochs=5, steps_per_epoch=2, verbose=0)
    assert model.step == 3 and history.epoch == [0, 1]
    with pytest.warns(UserWarning, match="ran out at step 1 of epoch 2"):
        history = clf().fit(batches_of(x, y, 16), epochs=3, verbose=0)
    assert history.epoch == [0]


def test_a_diverging_batch_keeps_the_weights_before_it(data) -> None:
    from runtime.model import NonFiniteLossError

    x, y = data
    model = clf()
    huge = (x[:20] / np.abs(x[:20]).max() * np.float32(3e38)).astype(np.float32)    # finite; x @ w overflows
    first = next(batches_of(x, y, 20))
    with pytest.raises(NonFiniteLossError, match="the loss is (nan|inf) at epoch 1, step 2") as info:
        model.fit(iter([first, (huge, y[:20])]), epochs=1, verbose=0)
    assert "from before step 2 of this epoch (training step 2)" in str(info.value.render())
    assert model.step == 1
    after_one = clf()
    after_one.fit(iter([first]), epochs=1, verbose=0)
    for name, w in after_one.weights.items():
        np.testing.assert_array_equal(w, model.weights[name])


@pytest.mark.parametrize("call, message", [
    (lambda m, x, y: m.fit(x, epochs=1, verbose=0), "without y, argument 'x' must yield (x, y) batches"),
    (lambda m, x, y: m.fit(x, y, steps_per_epoch=2, verbose=0), "steps_per_epoch is for batches from an iterable"),
    (lambda m, x, y: m.fit(batches_of(x, y, 8), steps_per_epoch=0, verbose=0), "steps_per_epoch must be a positive integer"),
    (lambda m, x, y: m.fit(batches_of(x, y, 8), validation_split=0.2, verbose=0), "validation_split needs arrays"),
    (lambda m, x, y: m.fit(iter([x[:4]]), verbose=0), "batch 1 is a ndarray, not an (x, y) pair"),
    (lambda m, x, y: m.fit(iter([(x[:4, :2], y[:4])]), verbose=0), "batch 1 input 'x': expected shape f32[N, 4], got [4, 2]"),
    (lambda m, x, y: m.fit(iter([]), verbose=0), "the batch iterable yielded no batches"),
])
def test_batch_feed_misuse(data, call, message) -> None:
    x, y = data
    model = clf()
    with pytest.raises(DlRuntimeError) as info:
        call(model, x, y)
    assert message in str(info.value) and model.step == 0


def test_a_feed_whose_weights_overflowed_earlier_says_so(data) -> None:
    from runtime.model import NonFiniteLossError

    x, y = data
    model = clf()
    big = x[:20] * np.float32(1e30)
    with pytest.raises(NonFiniteLossError, match="were already NaN or infinite before that step"):
        model.fit(iter([(big, y[:20])] * 4), epochs=1, verbose=0, learning_rate=1e30)


# --- model.export: one entry for every format ---------------------------------------------------

def test_export_picks_the_format_from_the_suffix(tmp_path: Path, data) -> None:
    from runtime.checkpoint import load_checkpoint

    model = clf()
    model.fit(*data, epochs=1, verbose=0)
    assert load_checkpoint(model.export(tmp_path / "w.npz")).step == model.step
    pytest.importorskip("safetensors")
    assert model.export(tmp_path / "w.safetensors").stat().st_size > 0
    pytest.importorskip("onnx")
    assert model.export(tmp_path / "m.onnx").read_bytes()[:2] != b""


def test_export_aot_writes_code_and_weights_that_predict_alike(tmp_path: Path, data) -> None:
    import runtime

    x, y = data
    model = Model(classifier_module({"name": "adam", "learning_rate": 0.1}), seed=0, backend="native")
    model.fit(x, y, epochs=1, verbose=0)
    folder = model.export(tmp_path / "clf")
    loaded = runtime.load_compiled(folder)
    weights = np.load(folder / "weights.npz")
    args = [weights[f"param/{n}"] for n in model.param_names]
    np.testing.assert_array_equal(np.asarray(loaded["predict"](*args, x)), model.predict(x))


@pytest.mark.parametrize("path, fmt, message", [
    ("m.bin", None, "m.bin from its suffix; pass format= (onnx, aot, safetensors, npz)"),
    ("m.onnx", "tflite", "unknown format 'tflite'"),
    ("m.bin", "safetensors", "format 'safetensors' writes a .safetensors file"),
])
def test_export_errors(tmp_path: Path, path: str, fmt: str | None, message: str) -> None:
    with pytest.raises(ArgumentValueError) as info:
        clf().export(tmp_path / path, format=fmt)
    assert message in str(info.value)


def test_summary_prints_once_and_returns_nothing(capsys) -> None:
    model = clf()
    assert model.summary() is None
    out = capsys.readouterr().out
    assert out == str(model) + "\n" and out.count('Model "clf"') == 1
    assert "FLOPs per sample: " in out and " per sample + " in out and "training step memory at batch 32: " in out
    assert repr(model) == "<Model 'clf': 67 parameters, step 0, backend interp>"
    lines: list[str] = []
    model.summary(print_fn=lines.append)
    assert lines == [str(model)]


# --- schedules in the .dl optimizer line ---------------------------------------------------

SCHEDULED = """model sched {{
    input x: f32[N, 1]
    target y: f32[N, 1]
    param w: f32[1, 1] = zeros
    param b: f32[1] = zeros
    output pred = x @ w + b
    loss mse(pred, y)
    optimizer sgd(lr={lr})
}}
"""


def scheduled(tmp_path: Path, lr: str) -> Path:
    path = tmp_path / "sched.dl"
    path.write_text(SCHEDULED.format(lr=lr))
    return path


def test_a_schedule_in_the_optimizer_line(tmp_path: Path) -> None:
    from runtime.model import load_model

    model = load_model(scheduled(tmp_path, "warmup(0.1, 2, after=cosine(0.1, decay_steps=4))"), backend="interp")
    seen = step_rates(model)
    x = np.linspace(-1, 1, 40, dtype=np.float32)[:, None]
    model.fit(x, 2 * x, epochs=2, batch_size=10, verbose=0)
    cosine = [0.1 * 0.5 * (1 + np.cos(np.pi * min(s, 4) / 4)) for s in range(6)]
    assert seen == pytest.approx([0.05, 0.1, *cosine], abs=1e-8)
    model.fit(x, 2 * x, epochs=1, batch_size=10, verbose=0, learning_rate=0.01)     # a number replaces it
    assert model.lr_schedule is None and seen[-4:] == pytest.approx([0.01] * 4)


@pytest.mark.parametrize("lr, message, column", [
    ("cosine(0.1, decay_steps=0)", "schedule 'cosine': CosineDecay: decay_steps must be a positive integer, got 0", 22),
    ("cosine(0.1, decay=10)", "unknown argument 'decay' for schedule 'cosine' (arguments: initial_learning_rate, decay_steps", 34),
    ("cosine(0.1)", "schedule 'cosine': missing a required argument: 'decay_steps'", 22),
    ("exponential(0.1, 10, 0.5, true, 7)", "too many arguments to schedule 'exponential'", 54),
])
def test_schedule_errors_point_at_the_line(tmp_path: Path, lr: str, message: str, column: int) -> None:
    from compiler.diagnostics import DlError
    from runtime.model import load_model

    with pytest.raises(DlError) as info:
        load_model(scheduled(tmp_path, lr), backend="interp")
    text = info.value.render()
    assert message in text and f"sched.dl:8:{column}:" in text, text


def test_clipping_weight_decay_and_adamax_compile_natively_as_interpreted() -> None:
    from test_training_models import linear_module

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(64, 3)).astype(np.float32), rng.normal(size=(64, 2)).astype(np.float32)
    for optimizer in ({"name": "adam", "global_clipnorm": 0.1, "weight_decay": 0.05},   # a compile each: slow
                      {"name": "adamax", "learning_rate": 0.01}):
        models = [Model(linear_module(optimizer), seed=1, backend=b) for b in ("native", "interp")]
        for m in models:
            m.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False)
        for name, w in models[0].weights.items():
            np.testing.assert_allclose(w, models[1].weights[name], rtol=1e-5, atol=1e-6, err_msg=str(optimizer))


# --- evaluate --report ------------------------------------------------------------------------

def test_classification_report_by_hand() -> None:
    from runtime.report import classification_report, roc_auc

    scores = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])
    labels = np.array([0, 1, 1, 2])
    r = classification_report(scores, labels, top_k=2)
    assert r["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert r["precision"] == [0.5, 1.0, 1.0] and r["recall"] == [1.0, 0.5, 1.0]
    assert r["f1"] == pytest.approx([2 / 3, 2 / 3, 1.0]) and r["accuracy"] == 0.75
    assert r["top_2_accuracy"] == 1.0 and r["support"] == [1, 2, 1]
    # AUC: positives 0.9, 0.4 against negatives 0.4, 0.1 -> (1 + 1 + 0.5 + 1) / 4
    assert roc_auc(np.array([0.9, 0.4, 0.4, 0.1]), np.array([True, True, False, False])) == 0.875
    b = classification_report(np.array([[0.9], [0.4], [0.6], [0.1]]), np.array([1, 1, 0, 0]))
    assert b["confusion_matrix"] == [[1, 1], [1, 1]] and b["precision"] == 0.5 and b["auc"] == 0.75
    assert classification_report(np.array([0.9, 0.8]), np.array([1, 1]))["auc"] is None


def test_evaluate_report_from_the_command_line(tmp_path: Path, capsys) -> None:
    import json

    from runtime.cli import main

    examples = Path(__file__).resolve().parents[1] / "examples"
    weights, out = tmp_path / "w.npz", tmp_path / "m.json"
    assert main(["train", str(examples / "student_pass.dl"), "--backend", "interp", "--quiet", "--epochs", "3",
                 "--save", str(weights)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(examples / "student_pass.dl"), "--weights", str(weights), "--backend", "interp",
                 "--report", "--metrics-out", str(out)]) == 0
    text = capsys.readouterr().out
    report = json.loads(out.read_text())["report"]
    assert "confusion matrix (rows: true class, columns: predicted):" in text and "auc=" in text
    assert report["kind"] == "binary" and sum(map(sum, report["confusion_matrix"])) == 200
    assert report["accuracy"] == pytest.approx(json.loads(out.read_text())["accuracy"], abs=1e-6)
    from runtime.commands.evaluate import classification
    from runtime.model import load_model

    regression = load_model(examples / "linear_regression.dl", backend="interp")
    with pytest.raises(DlRuntimeError, match="--report is for classifiers; model 'linear_regression' has loss 'mse'"):
        classification(regression, np.zeros((2, 1), np.float32), np.zeros((2, 1), np.float32), 32)


# --- L1 / L2 regularizers on layers ------------------------------------------------------------

REGULARIZED = """model reg {{
    input x: f32[N, 3]
    target y: f32[N, 2]
    output pred = dense(x, 2, {args})
    loss mse(pred, y)
    optimizer sgd(lr=0.1)
}}
"""


def regularized(tmp_path: Path, args: str) -> Path:
    path = tmp_path / "reg.dl"
    path.write_text(REGULARIZED.format(args=args))
    return path


def test_regularizers_join_the_loss_and_its_gradient(tmp_path: Path) -> None:
    from runtime.model import load_model

    model = load_model(regularized(tmp_path, "kernel_regularizer=l2(0.5), bias_regularizer=l1_l2(l1=0.25, l2=0.125)"),
                       backend="interp")
    rng = np.random.default_rng(0)
    k, b = rng.normal(size=(3, 2)).astype(np.float32), np.array([0.5, -2.0], np.float32)
    model.set_weights({"dense_1.kernel": k, "dense_1.bias": b})
    x, y = rng.normal(size=(8, 3)).astype(np.float32), rng.normal(size=(8, 2)).astype(np.float32)
    k64, b64, x64, y64 = (a.astype(np.float64) for a in (k, b, x, y))
    pred = x64 @ k64 + b64
    data_loss = ((pred - y64) ** 2).mean()
    penalty = 0.5 * (k64 ** 2).sum() + 0.25 * np.abs(b64).sum() + 0.125 * (b64 ** 2).sum()
    assert model.evaluate(x, y)["loss"] == pytest.approx(data_loss + penalty, rel=1e-5)
    history = model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert history.history["loss"][0] == pytest.approx(data_loss + penalty, rel=1e-5)
    d = 2 * (pred - y64) / pred.size
    grad_k = x64.T @ d + 2 * 0.5 * k64
    grad_b = d.sum(axis=0) + 0.25 * np.sign(b64) + 2 * 0.125 * b64
    np.testing.assert_allclose(model.weights["dense_1.kernel"], k64 - 0.1 * grad_k, rtol=1e-5)
    np.testing.assert_allclose(model.weights["dense_1.bias"], b64 - 0.1 * grad_b, rtol=1e-5)


@pytest.mark.parametrize("args, message", [
    ("kernel_regularizer=l3(0.1)", "unknown regularizer 'l3' (regularizers: l1, l2, l1_l2)"),
    ("kernel_regularizer=l2(-1)", "regularizer 'l2': l2 must be a number >= 0, got -1"),
    ("kernel_regularizer=l1(l2=0.1)", "unknown argument 'l2' for regularizer 'l1' (it takes l1)"),
    ("kernel_regularizer=l1_l2(0.1, 0.2, 0.3)", "too many arguments to regularizer 'l1_l2'"),
])
def test_regularizer_errors_are_located(tmp_path: Path, args: str, message: str) -> None:
    from compiler.diagnostics import DlError
    from runtime.model import load_model

    with pytest.raises(DlError) as info:
        load_model(regularized(tmp_path, args), backend="interp")
    text = info.value.render()
    assert message in text and "reg.dl:4:" in text, text


def test_conv_and_embedding_regularizers(tmp_path: Path) -> None:
    from runtime.model import load_model

    source = tmp_path / "m.dl"
    source.write_text("""model m {
    input ids: i32[N, 4]
    input img: f32[N, 3, 3, 1]
    target y: f32[N, 2]
    let e = mean(embedding(ids, 5, 2, embeddings_regularizer=l1(0.5)), axis=1)
    let c = mean(conv2d(img, filters=2, kernel=3, kernel_regularizer=l2(0.25)), axis=[1, 2])
    output pred = e + c
    loss mse(pred, y)
    optimizer sgd(lr=0.1)
}
""")
    model = load_model(source, backend="interp")
    ids, img = np.zeros((2, 4), np.int32), np.zeros((2, 3, 3, 1), np.float32)
    y = np.zeros((2, 2), np.float32)
    w = model.weights
    data = model.evaluate({"ids": ids, "img": img}, y)["loss"]
    pred = w["embedding_1.embeddings"][0] + w["conv2d_1.bias"]
    penalty = 0.5 * np.abs(w["embedding_1.embeddings"]).sum() + 0.25 * (w["conv2d_1.kernel"] ** 2).sum()
    assert data == pytest.approx(float((pred ** 2).mean() + penalty), rel=1e-5)
