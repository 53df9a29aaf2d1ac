"""Training that goes wrong: a loss that becomes NaN or infinite (the NaN trap), data that
does not fit the model (checked before compiling), and saves killed half-way."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import runtime
from runtime.cli import main
from runtime.model import NonFiniteLossError

ROOT = Path(__file__).resolve().parents[1]

def _model(name: str, body: str, lr: str) -> str:
    """A one-input regression model; ``body`` (params, lets, output) starts on line 5."""
    return (f"model {name} {{\n    input x: f32[N, 1]\n    target y: f32[N, 1]\n\n"
            f"{textwrap.indent(textwrap.dedent(body), '    ')}\n"
            f"    loss mse(pred, y)\n    optimizer sgd(lr={lr})\n}}\n")


# log of a negative number: NaN in the very first step's forward pass, line 8
LOG_OF_NEGATIVE = _model("logm", """\
    param w: f32[1, 1] = normal(mean=-1.0, std=0.1)

    let z = x @ w
    output pred = log(z)
""", "0.01")

# the weights grow until h * h (line 9) overflows f32, a few steps in
SQUARE_BLOWS_UP = _model("blowup", """\
    param w: f32[1, 1] = normal(std=0.1)
    param b: f32[1] = zeros

    let h = x @ w + b
    output pred = h * h
""", "10.0")

# the first update overflows: the weights are infinite before step 2
HUGE_STEP = _model("huge", """\
    param w: f32[1, 1] = normal(std=0.1)

    output pred = x @ w
""", "1e38")


def _model_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "m.dl"
    path.write_text(text)
    return path


def _data(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(0).uniform(1, 3, (n, 1)).astype(np.float32)
    return x, 3 * x


def _all_finite(model) -> bool:
    return all(np.isfinite(w).all() for w in model.weights.values())


@pytest.mark.parametrize("backend", ["native", "interp"])
def test_nan_in_the_forward_pass_stops_training_at_its_line(tmp_path, backend):
    model = runtime.load_model(_model_file(tmp_path, LOG_OF_NEGATIVE), backend=backend)
    before = model.weights
    with pytest.raises(NonFiniteLossError) as caught:
        model.fit(*_data(), epochs=3, batch_size=8, verbose=0)
    error = caught.value
    assert "the loss is nan at epoch 1, step 1 of 8" in error.message and "dl.log" in error.message
    assert (error.loc.line, error.loc.col) == (8, 19)
    assert "    output pred = log(z)" in str(error)
    assert model.step == 0 and model.epochs_trained == 0
    assert all(np.array_equal(before[n], w) for n, w in model.weights.items())


@pytest.mark.parametrize("backend", ["native", "interp"])
def test_a_loss_that_overflows_later_keeps_the_weights_before_that_step(tmp_path, backend):
    model = runtime.load_model(_model_file(tmp_path, SQUARE_BLOWS_UP), backend=backend)
    with pytest.raises(NonFiniteLossError) as caught:
        model.fit(*_data(), epochs=3, batch_size=8, shuffle=False, verbose=0)
    error = caught.value
    assert "at epoch 1, step 4 of 8" in error.message and error.loc.line == 9
    assert model.step == 3 and _all_finite(model)
    x, y = _data()
    loss = model.backend.call("loss", [*model.weights.values(), x[24:32], y[24:32]])[0]
    assert not np.isfinite(loss)                 # the very step that failed, from these weights


def test_an_update_that_overflows_is_named(tmp_path):
    model = runtime.load_model(_model_file(tmp_path, HUGE_STEP))
    before = model.weights
    with pytest.raises(NonFiniteLossError, match="step 2 of 8; step 1's update made the weights NaN"):
        model.fit(*_data(), epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert model.step == 0 and all(np.array_equal(before[n], w) for n, w in model.weights.items())


def test_the_trap_replays_a_shuffled_epoch(tmp_path):
    model = runtime.load_model(_model_file(tmp_path, SQUARE_BLOWS_UP), seed=3)
    x, y = _data()
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)  # a finite first epoch: shuffling moves on
    with pytest.raises(NonFiniteLossError, match="at epoch 2, step"):
        model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    assert _all_finite(model) and model.epochs_trained == 1


def test_allow_nonfinite_trains_on(tmp_path):
    model = runtime.load_model(_model_file(tmp_path, LOG_OF_NEGATIVE))
    history = model.fit(*_data(), epochs=2, batch_size=8, verbose=0, allow_nonfinite=True)
    assert np.isnan(history.history["loss"]).all() and model.step == 16


def test_dlc_train_stops_and_saves_nothing(tmp_path, capsys):
    source = _model_file(tmp_path, LOG_OF_NEGATIVE)
    x, y = _data()
    data = tmp_path / "d.npz"
    np.savez(data, x=x, y=y)
    save = tmp_path / "w.npz"
    save.write_bytes(b"the user's earlier checkpoint")
    argv = ["train", str(source), "--data", str(data), "--epochs", "2", "--quiet", "--save", str(save)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"{source}:8:19: error: training diverged: the loss is nan at epoch 1, step 1" in err
    assert "--allow-nonfinite" in err and "nothing was saved" in err
    assert save.read_bytes() == b"the user's earlier checkpoint"
    assert main(argv + ["--allow-nonfinite"]) == 0


def test_dlc_train_checks_the_data_before_compiling(tmp_path, capsys, monkeypatch):
    import runtime.model

    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled before checking the data")

    monkeypatch.setattr(runtime.model, "make_backend", no_compiling)
    data = tmp_path / "d.npz"
    np.savez(data, x=np.ones((10, 3)), y=np.ones(10))
    assert main(["train", "examples/xor.dl", "--data", str(data), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "data set 'd' does not fit model 'xor': training input 'x': expected shape f32[N, 2], got [10, 3]" in err
    assert "model 'xor' takes inputs x: f32[N, 2]; targets y: f32[N, 1]" in err
    assert "the data set has x float64 [10, 3], y float64 [10]" in err


# ---------------------------------------------------------------------------
# saves killed half-way

_SLOW_SAVE = textwrap.dedent("""
    import sys, time
    import numpy as np
    from runtime.checkpoint import Checkpoint, save_checkpoint

    def stuck(f, **arrays):
        f.write(b"half a checkpoint")
        f.flush()
        print("writing", flush=True)
        time.sleep(60)

    np.savez = stuck
    save_checkpoint(sys.argv[1], Checkpoint("m", {"w": np.ones(3, np.float32)}))
""")


def _killed_save(target: Path) -> Path:
    """Run a save in a subprocess, kill -9 it mid-write; the temporary file it left."""
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_SAVE, str(target)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    (left,) = [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}")]
    return left


def test_the_next_save_removes_what_a_killed_save_left(tmp_path):
    from runtime.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

    target = tmp_path / "w.npz"
    left = _killed_save(target)
    assert not target.exists()
    ours_alive = tmp_path / f".w.npz.dlc-tmp-{socket.gethostname()}-{os.getpid()}-0000"
    other_host = tmp_path / f".w.npz.dlc-tmp-elsewhere-{left.name.rsplit('-', 2)[1]}-0000"
    not_ours = tmp_path / ".w.npz.1234.tmp"
    for keep in (ours_alive, other_host, not_ours):
        keep.write_bytes(b"")
    save_checkpoint(target, Checkpoint("m", {"w": np.zeros(3, np.float32)}))
    assert not left.exists()
    assert ours_alive.exists() and other_host.exists() and not_ours.exists()
    assert load_checkpoint(target).params["w"].tolist() == [0, 0, 0]


def test_the_cache_removes_what_a_killed_write_left(tmp_path):
    from runtime.cache import ObjectCache

    target = tmp_path / "cache" / ("ab" * 32 + ".dlco")
    target.parent.mkdir()
    left = _killed_save(target)
    ObjectCache(target.parent).store("cd" * 32, b"object", {})
    assert not left.exists()
