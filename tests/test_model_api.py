"""The Model API on tiny hand-built models (interpreter backend): fit, evaluate, predict,
checkpoints, reproducibility, partial batches, Ctrl-C, and every bad-input path."""

from __future__ import annotations

import math
import os
import signal
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_training_models import blobs, classifier_module, linear_module

from compiler.diagnostics import DlRuntimeError
from compiler.ir.interpreter import interpret
from runtime.checkpoint import load_checkpoint
from runtime.model import Model


def clf(optimizer: dict | None = None, seed: int = 0, **kw) -> Model:
    return Model(classifier_module(optimizer or {"name": "adam", "learning_rate": 0.1}, **kw),
                 seed=seed, backend="interp")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return blobs(90)


def test_fit_learns_and_reports_like_keras(data) -> None:
    x, y = data
    model = clf()
    history = model.fit(x, y, epochs=4, batch_size=32, validation_data=(x[:30], y[:30]), verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 4 for v in history.history.values()) and history.epoch == [0, 1, 2, 3]
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert model.evaluate(x, y)["accuracy"] >= 0.95
    # one backend call per step, the last partial batch included: ceil(90 / 32) = 3
    assert history.calls_per_epoch == [3, 3, 3, 3] and model.step == 12
    assert len(history.epoch_seconds) == 4 and all(s > 0 for s in history.samples_per_second)


def test_partial_last_batch_is_trained() -> None:
    x, y = blobs(10)
    model = clf({"name": "sgd", "learning_rate": 0.1})
    start = [t.copy() for t in model._tensors]
    model.fit(x, y, epochs=1, batch_size=4, shuffle=False, verbose=0)
    step = model.module.get("train_step")
    tensors = start
    for lo, hi in [(0, 4), (4, 8), (8, 10)]:
        out = interpret(step, [*tensors, x[lo:hi], y[lo:hi], np.float32(0.1)])
        tensors = out[1:1 + len(tensors)]
    for name, expected in zip(model.param_names, tensors):
        np.testing.assert_array_equal(model.weights[name], expected)
    assert model.step == 3


def test_shuffled_epochs_see_every_sample_once_with_its_own_target() -> None:
    x, y = blobs(10)
    model = clf({"name": "sgd", "learning_rate": 0.1})
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    run = model.backend.train_step

    def spy(args: list[np.ndarray]) -> list[np.ndarray]:
        seen.append((args[-3].copy(), args[-2].copy()))    # the batch buffers are reused
        return run(args)

    model.backend.train_step = spy
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert [len(bx) for bx, _ in seen] == [4, 4, 2] * 2
    row_of = {row.tobytes(): i for i, row in enumerate(x)}
    epochs = []
    for batches in (seen[:3], seen[3:]):
        rows = [row_of[r.tobytes()] for bx, _ in batches for r in bx]
        assert sorted(rows) == list(range(10))
        assert np.array_equal(np.concatenate([by for _, by in batches]), y[rows])
        epochs.append(rows)
    assert epochs[0] != epochs[1] and epochs[0] != list(range(10))


def test_same_seed_is_bit_identical_and_seeds_differ(data) -> None:
    x, y = data
    runs = []
    for seed in (5, 5, 6):
        model = clf(seed=seed)
        initial = model.weights
        model.fit(x, y, epochs=2, batch_size=16, verbose=0)
        runs.append((initial, model.weights))
    for name in runs[0][1]:
        assert np.array_equal(runs[0][0][name], runs[1][0][name])
        assert np.array_equal(runs[0][1][name], runs[1][1][name])
    assert not np.array_equal(runs[0][0]["dense_1.kernel"], runs[2][0]["dense_1.kernel"])


def test_initializers_follow_the_model(data) -> None:
    model = clf()
    w = model.weights
    limit = math.sqrt(6 / (4 + 8))
    assert np.all(np.abs(w["dense_1.kernel"]) <= limit) and w["dense_1.kernel"].std() > limit / 4
    assert not w["dense_1.bias"].any() and w["dense_1.kernel"].dtype == np.float32


def test_evaluate_is_the_mean_over_all_samples(data) -> None:
    x, y = data
    model = clf()
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    whole = model.evaluate(x, y, batch_size=len(x))
    batched = model.evaluate(x, y, batch_size=7)
    assert whole.keys() == {"loss", "accuracy"}
    assert batched["accuracy"] == pytest.approx(whole["accuracy"], abs=1e-6)
    assert batched["loss"] == pytest.approx(whole["loss"], rel=1e-5)


def test_predict_batches_and_concatenates(data) -> None:
    x, _ = data
    model = clf()
    probs = model.predict(x, batch_size=16)
    assert probs.shape == (90, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(probs, model.predict(x, batch_size=90))


def test_weights_are_copies_and_set_weights_checks(data) -> None:
    model = clf()
    w = model.weights
    w["dense_1.kernel"][:] = 7
    assert not np.any(model.weights["dense_1.kernel"] == 7)
    model.set_weights({"dense_1.bias": np.ones(8)})
    assert model.weights["dense_1.bias"].dtype == np.float32 and model.weights["dense_1.bias"].sum() == 8
    with pytest.raises(DlRuntimeError, match="parameter 'dense_1.bias' has shape \\[8\\], got \\[9\\]"):
        model.set_weights({"dense_1.bias": np.ones(9)})
    with pytest.raises(DlRuntimeError, match="has no parameter 'w'"):
        model.set_weights({"w": np.ones(9)})


def test_summary_lists_parameters() -> None:
    text = str(clf())
    assert "dense_1.kernel" in text and "f32[4, 8]" in text
    assert "total parameters: 67" in text and "optimizer: adam(" in text and "backend: interp" in text


# --- checkpoints ---------------------------------------------------------------------

def test_checkpoint_round_trip_resumes_exactly(tmp_path: Path, data) -> None:
    x, y = data
    straight = clf()
    straight.fit(x, y, epochs=2, batch_size=32, shuffle=False, verbose=0)
    first = clf()
    first.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    path = first.save(tmp_path / "ckpt.npz")
    resumed = clf(seed=99)
    resumed.load_weights(path)
    assert resumed.step == 3 and resumed.epochs_trained == 1
    for name, value in first.optimizer_state.items():
        assert np.array_equal(resumed.optimizer_state[name], value)
    resumed.fit(x, y, epochs=1, batch_size=32, shuffle=False, verbose=0)
    for name, value in straight.weights.items():
        assert np.array_equal(resumed.weights[name], value), name
    assert int(resumed.optimizer_state["adam.iterations"]) == 6
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]  # no temporary file left behind


def test_checkpoint_records_the_signature(tmp_path: Path) -> None:
    model = clf()
    model.save(tmp_path / "c.npz")
    ckpt = load_checkpoint(tmp_path / "c.npz")
    assert ckpt.model_name == "clf" and ckpt.optimizer == "adam" and ckpt.step == 0
    assert list(ckpt.params) == model.param_names
    assert set(ckpt.state) == set(model.state_names)
    with zipfile.ZipFile(tmp_path / "c.npz") as z:
        assert "param/dense_1.kernel.npy" in z.namelist() and "__meta__.npy" in z.namelist()


def test_save_overwrites_atomically(tmp_path: Path) -> None:
    model = clf()
    path = tmp_path / "c.npz"
    path.write_bytes(b"old")
    model.save(path)
    assert load_checkpoint(path).model_name == "clf"
    with pytest.raises(DlRuntimeError, match="directory .* does not exist"):
        model.save(tmp_path / "no" / "c.npz")


def test_loading_another_models_checkpoint_names_the_tensor(tmp_path: Path) -> None:
    clf(hidden=16, name="wide").save(tmp_path / "wide.npz")
    with pytest.raises(DlRuntimeError, match="parameter 'dense_1.kernel' has shape \\[4, 16\\] in the checkpoint "
                                             "but \\[4, 8\\] in model 'clf' \\(the checkpoint is of model 'wide'\\)"):
        clf().load_weights(tmp_path / "wide.npz")
    lin = Model(linear_module({"name": "sgd"}), backend="interp")
    lin.save(tmp_path / "lin.npz")
    with pytest.raises(DlRuntimeError, match="checkpoint has no parameter 'dense_2.kernel'"):
        clf().load_weights(tmp_path / "lin.npz")


def test_checkpoint_with_another_optimizer_loads_weights_only(tmp_path: Path, data) -> None:
    x, y = data
    sgd = clf({"name": "sgd", "momentum": 0.9})
    sgd.fit(x, y, epochs=1, batch_size=32, verbose=0)
    sgd.save(tmp_path / "c.npz")
    adam = clf()
    adam.load_weights(tmp_path / "c.npz")
    assert all(np.array_equal(adam.weights[n], v) for n, v in sgd.weights.items())
    assert adam.step == 0 and not any(v.any() for v in adam.optimizer_state.values())


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "c.npz"
    clf().save(path)
    raw = path.read_bytes()
    path.write_bytes({"truncate": raw[: len(raw) // 2], "garbage": b"\x00garbage" * 50, "empty": b""}[damage])
    with pytest.raises(DlRuntimeError, match="c.npz: corrupt or not a dlc checkpoint"):
        clf().load_weights(path)


def test_npz_that_is_not_a_checkpoint(tmp_path: Path) -> None:
    np.savez(tmp_path / "plain.npz", w=np.ones(3))
    with pytest.raises(DlRuntimeError, match="not a dlc checkpoint \\(no __meta__ record\\)"):
        clf().load_weights(tmp_path / "plain.npz")
    with pytest.raises(DlRuntimeError, match="no such checkpoint file"):
        clf().load_weights(tmp_path / "missing.npz")


# --- bad input -----------------------------------------------------------------------

@pytest.mark.parametrize("make, message", [
    (lambda x, y: (x[:, :3], y), "training input 'x': expected shape f32\\[N, 4\\], got \\[90, 3\\]"),
    (lambda x, y: (np.where(np.arange(90)[:, None] == 40, np.nan, x), y), "training input 'x' contains NaN \\(first at row 40"),
    (lambda x, y: (x, np.where(np.arange(90) == 7, 3, y)), "label 3 at row 7 is out of range \\[0, 3\\)"),
    (lambda x, y: (x, y[:50]), "50 targets for 90 inputs"),
    (lambda x, y: (x[:0], y[:0]), "training data is empty"),
])
def test_bad_training_data_is_rejected_before_any_step(data, make, message: str) -> None:
    model = clf()
    before = model.weights
    with pytest.raises(DlRuntimeError, match=message):
        model.fit(*make(*data), epochs=1, verbose=0)
    assert model.step == 0 and all(np.array_equal(model.weights[n], v) for n, v in before.items())


def test_bad_arguments(data) -> None:
    x, y = data
    model = clf()
    with pytest.raises(DlRuntimeError, match="batch_size must be a positive integer, got 0"):
        model.fit(x, y, batch_size=0, verbose=0)
    ready = np.ascontiguousarray(x[:3], dtype=np.float32)      # what predict's fast path takes
    for bad in (0, -1, True, 1.5):
        with pytest.raises(DlRuntimeError, match=f"batch_size must be a positive integer, got {bad}"):
            model.predict(ready, batch_size=bad)
    assert model.predict(ready, batch_size=np.int64(2)).shape[0] == 3
    with pytest.raises(DlRuntimeError, match="epochs must be a positive integer"):
        model.fit(x, y, epochs=-1, verbose=0)
    with pytest.raises(DlRuntimeError, match="validation input 'x': expected shape"):
        model.fit(x, y, validation_data=(x[:, :2], y), verbose=0)
    with pytest.raises(DlRuntimeError, match="evaluation target 'y': label 9"):
        model.evaluate(x, np.full(90, 9))
    with pytest.raises(DlRuntimeError, match="prediction input 'x' contains inf"):
        model.predict(np.full((2, 4), np.inf))
    with pytest.raises(DlRuntimeError, match="unknown backend 'gpu'"):
        Model(classifier_module({"name": "sgd"}), backend="gpu")


# --- Ctrl-C --------------------------------------------------------------------------

def test_ctrl_c_stops_between_steps_and_leaves_the_model_usable(data) -> None:
    x, y = data
    model = clf({"name": "sgd", "learning_rate": 0.1})
    step_fn = model.module.get("train_step")
    real = model.backend.train_step
    snapshots = []

    def interrupted_step(args):
        snapshots.append([a.copy() for a in args[:4]])
        out = real(args)
        if len(snapshots) == 2:
            os.kill(os.getpid(), signal.SIGINT)   # arrives while "native" code runs
        return out

    model.backend.train_step = interrupted_step
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0)
    # the step in which Ctrl-C arrived was applied completely; nothing after it
    assert model.step == 2
    expected = interpret(step_fn, [*snapshots[1], x[16:32], y[16:32], np.float32(0.1)])[1:5]
    for name, value in zip(model.param_names, expected):
        np.testing.assert_array_equal(model.weights[name], value)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    model.backend.train_step = real
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert model.step == 2 + 6 and math.isfinite(model.evaluate(x, y)["loss"])


def test_predict_fast_path_agrees_with_the_full_path_and_keeps_its_checks(data) -> None:
    """A ready input (exact dtype, C-contiguous, finite, one batch) skips prepare_inputs;
    every other input still takes the full path with its conversions and errors."""
    x, _ = data
    model = clf()
    ready = np.ascontiguousarray(x[:5], dtype=np.float32)
    want = model.predict(ready.astype(np.float64))          # converted: the full path
    first = model.predict(ready)
    np.testing.assert_array_equal(first, want)
    kept = first.copy()
    second = model.predict(ready[::-1].copy())
    np.testing.assert_array_equal(first, kept)              # fresh outputs, never reused
    np.testing.assert_array_equal(second, want[::-1])
    np.testing.assert_array_equal(model.predict(np.asfortranarray(ready)), want)
    for bad, message in [(np.where(np.arange(4) == 2, np.nan, ready[:1]).astype(np.float32), "contains NaN"),
                         (np.full((1, 4), np.inf, np.float32), "contains inf"),
                         (np.ones((1, 5), np.float32), "expected shape")]:
        with pytest.raises(DlRuntimeError, match=message):
            model.predict(bad)
    huge = np.full((2, 4), 3e38, np.float32)                # finite, but its f32 sum overflows
    np.testing.assert_array_equal(model.predict(huge), model.predict(huge.astype(np.float64)))
