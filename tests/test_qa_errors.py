"""User mistakes found by QA: each gives a clear DlError (exit status 1 from the CLI), early, and
corrupts nothing.

Optimizer hyperparameters out of range, a bad learning rate passed to ``fit``, output paths
that cannot be written (checked before training, not after), files named exactly as given,
garbage where a checkpoint or array is expected, OS errors and warnings on the command line.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest

import runtime.commands.check as check_command
from compiler.diagnostics import DlError, DlRuntimeError
from frontend_dsl import compile_source
from runtime.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from runtime.cli import main
from runtime.model import load_model

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
XOR = str(EXAMPLES / "xor.dl")
XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
XOR_Y = np.array([[0], [1], [1], [0]], np.float32)


def _model_with_optimizer(optimizer: str) -> str:
    return f"""model m {{
    input x: f32[N, 1]
    target y: f32[N, 1]
    param w: f32[1, 1] = zeros
    output p = x @ w
    loss mse(p, y)
    optimizer {optimizer}
}}
"""


@pytest.mark.parametrize("optimizer, message", [
    ("sgd(lr=-0.1)", "optimizer 'sgd': learning_rate must be a positive number, got -0.1"),
    ("sgd(lr=0)", "learning_rate must be a positive number, got 0"),
    ("sgd(momentum=1.5)", "momentum must be in [0, 1], got 1.5"),
    ("adam(beta_1=1)", "beta_1 must be in [0, 1), got 1"),
    ("adamw(weight_decay=-1)", "weight_decay must be a number >= 0, got -1"),
    ("rmsprop(rho=2)", "rho must be in [0, 1), got 2"),
    ("sgd(clipnorm=-1)", "clipnorm must be a number >= 0 (0: off), got -1"),
    ("adam(weight_decay=-0.5)", "weight_decay must be a number >= 0, got -0.5"),
])
def test_optimizer_hyperparameters_out_of_range_are_located_errors(optimizer: str, message: str) -> None:
    source = _model_with_optimizer(optimizer)
    with pytest.raises(DlError) as info:
        compile_source(source, "m.dl")
    rendered = info.value.render()
    assert message in rendered
    line = source.splitlines()[6]
    assert f"m.dl:7:{line.index('=') + 2}: error:" in rendered      # at the value after '='


def test_valid_hyperparameters_still_compile() -> None:
    module = compile_source(_model_with_optimizer("sgd(lr=0.5, momentum=0.9, nesterov=true)"), "m.dl")
    assert module.attrs["model"]["optimizer"]["momentum"] == 0.9


@pytest.mark.parametrize("lr", [-1.0, 0.0, float("nan"), float("inf"), "fast"])
def test_fit_refuses_a_bad_learning_rate_and_changes_nothing(lr: object) -> None:
    model = load_model(XOR, seed=0, backend="interp")
    before = model.weights
    with pytest.raises(DlRuntimeError, match="'learning_rate' must be a positive number"):
        model.fit(XOR_X, XOR_Y, epochs=1, verbose=0, learning_rate=lr)
    assert model.step == 0 and model.learning_rate == 0.1
    for name, value in model.weights.items():
        np.testing.assert_array_equal(value, before[name])


def test_checkpoint_save_refuses_a_directory_and_a_missing_folder(tmp_path: Path) -> None:
    ckpt = Checkpoint("m", {"w": np.ones(2, np.float32)})
    with pytest.raises(DlRuntimeError, match="is a directory"):
        save_checkpoint(tmp_path, ckpt)
    with pytest.raises(DlRuntimeError, match="does not exist"):
        save_checkpoint(tmp_path / "no" / "w.npz", ckpt)
    assert list(tmp_path.iterdir()) == []          # no temporary file left behind


def test_checkpoint_file_mode_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "w.npz", Checkpoint("m", {"w": np.ones(2, np.float32)}))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    np.testing.assert_array_equal(load_checkpoint(path).params["w"], np.ones(2, np.float32))


def test_loading_garbage_or_a_directory_as_a_checkpoint(tmp_path: Path) -> None:
    garbage = tmp_path / "w.npz"
    garbage.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DlRuntimeError, match=r"corrupt or not a dlc checkpoint \(not an .npz archive\)"):
        load_checkpoint(garbage)
    with pytest.raises(DlRuntimeError, match="is a directory, not a checkpoint file"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("option", ["--save", "--metrics-out"])
def test_train_checks_output_paths_before_training(tmp_path: Path, capsys, option: str) -> None:
    rc = main(["train", XOR, "--backend", "interp", "--quiet", "--epochs", "1", option, str(tmp_path)])
    out, err = capsys.readouterr()
    assert rc == 1
    assert f"error: {option} {tmp_path}: is a directory, not a file" in err
    assert "model xor" not in out                  # failed before training, not after it


def test_predict_writes_exactly_the_named_file(tmp_path: Path, capsys) -> None:
    weights, points, out = tmp_path / "w.npz", tmp_path / "x.npy", tmp_path / "predictions"
    load_model(XOR, seed=0, backend="interp").save(weights)
    np.save(points, XOR_X)
    rc = main(["predict", XOR, "--backend", "interp", "--weights", str(weights), "--input", str(points),
               "--output", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert out.is_file() and not Path(f"{out}.npy").exists()
    assert np.load(out).shape == (4, 1)
    assert main(["predict", XOR, "--backend", "interp", "--weights", str(weights), "--input", str(points),
                 "--output", str(tmp_path)]) == 1
    assert "--output" in capsys.readouterr().err


def test_predict_refuses_a_file_that_is_not_an_array(tmp_path: Path, capsys) -> None:
    weights, junk = tmp_path / "w.npz", tmp_path / "x.npy"
    load_model(XOR, seed=0, backend="interp").save(weights)
    junk.write_bytes(b"\x80\x04 not numpy at all")
    rc = main(["predict", XOR, "--backend", "interp", "--weights", str(weights), "--input", str(junk)])
    assert rc == 1
    assert f"error: {junk}: not a .npy or .npz array file" in capsys.readouterr().err


def test_an_os_error_is_a_user_error_without_traceback(monkeypatch, capsys) -> None:
    def refuse(args: object) -> int:
        raise PermissionError(13, "Permission denied", "/cache/entry.tmp", None, "/cache/entry")

    monkeypatch.setattr(check_command, "run", refuse)
    assert main(["check", XOR]) == 1
    err = capsys.readouterr().err
    assert err == "error: /cache/entry.tmp -> /cache/entry: Permission denied\n"


def test_warnings_print_as_one_line(monkeypatch, capsys) -> None:
    def warn(args: object) -> int:
        warnings.warn("dlc cache: discarding abc.dlco: truncated header; recompiling", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(check_command, "run", warn)
    assert main(["check", XOR]) == 0
    assert capsys.readouterr().err == "warning: dlc cache: discarding abc.dlco: truncated header; recompiling\n"


def test_label_column_without_a_csv_is_an_error(capsys) -> None:
    rc = main(["train", XOR, "--backend", "interp", "--quiet", "--label-column", "y"])
    assert rc == 1
    assert "error: --label-column applies to a .csv data file, not to xor" in capsys.readouterr().err


def test_an_unusable_cache_folder_costs_the_cache_not_the_compilation(tmp_path, monkeypatch):
    import warnings

    import numpy as np

    import runtime
    from runtime.cache import CacheWarning

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    monkeypatch.setenv("DLC_CACHE_DIR", str(not_a_dir))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mod = runtime.compile("fn f(x: f32[3]) -> f32[3] { return x * 2.0 }")
    assert any(issubclass(w.category, CacheWarning) and "cannot write" in str(w.message) for w in caught)
    np.testing.assert_array_equal(mod.f(np.ones(3, np.float32)), np.full(3, 2.0, np.float32))


def test_compiling_a_directory_says_so(tmp_path):
    import pytest

    import runtime
    from compiler.diagnostics import DlError

    folder = tmp_path / "model.dl"
    folder.mkdir()
    with pytest.raises(DlError, match="is a directory"):
        runtime.compile(str(folder))


def test_two_kinds_of_gradient_clipping_are_an_error() -> None:
    """Keras's rule: clipnorm, global_clipnorm and clipvalue exclude each other."""
    with pytest.raises(DlError) as info:
        compile_source(_model_with_optimizer("sgd(clipnorm=1.0, clipvalue=0.5)"), "m.dl")
    assert "optimizer 'sgd': give one of clipnorm, global_clipnorm, clipvalue, not clipnorm and clipvalue" \
        in info.value.render()
    with pytest.raises(DlError) as info:
        compile_source(_model_with_optimizer("adam(clipping=1.0)"), "m.dl")
    assert "weight_decay, clipnorm, global_clipnorm, clipvalue" in info.value.render()
