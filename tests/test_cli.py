"""The ``dlc`` command line: check, ir, run, error handling; in-process through
``main([...])`` plus one smoke test of the installed console script."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime import cli
from runtime.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.dl"))


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def at_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)


# ---------------------------------------------------------------------------
# dlc, --version, --help


def test_version() -> None:
    code, out, _ = run_cli("--version")
    assert code == 0 and out.startswith("dlc ")


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_every_command_has_help(command: str) -> None:
    code, out, _ = run_cli(command, "--help")
    assert code == 0
    assert out.startswith(f"usage: dlc {command}")


def test_usage_errors_exit_2() -> None:
    code, _, err = run_cli("check")
    assert code == 2 and "required" in err
    code, _, err = run_cli("no-such-command")
    assert code == 2 and "invalid choice" in err


def test_commands_are_modules_listed_by_name() -> None:
    modules = cli.command_modules()
    assert [m.NAME for m in modules] == cli.COMMANDS
    for m in modules:
        assert callable(m.add_arguments) and callable(m.run) and m.HELP


# ---------------------------------------------------------------------------
# dlc check


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_check_every_example(path: Path) -> None:
    rel = path.relative_to(ROOT).as_posix()
    code, out, err = run_cli("check", rel)
    assert code == 0, err
    assert out.startswith(f"{rel}: ok (") and err == ""


def test_check_summary_counts_functions_and_params() -> None:
    code, out, _ = run_cli("check", "examples/xor.dl")
    assert code == 0
    assert out == "examples/xor.dl: ok (3 functions, 9 params)\n"   # 2*2 + 2 + 2*1 + 1
    code, out, _ = run_cli("check", "examples/mnist_mlp.dl")
    assert out == f"examples/mnist_mlp.dl: ok (3 functions, {784 * 512 + 512 + 512 * 10 + 10} params)\n"


def test_check_a_file_without_a_model(tmp_path: Path) -> None:
    path = tmp_path / "f.dl"
    path.write_text("fn f(x: f32[N]) -> f32[N] { return x }\n")
    code, out, _ = run_cli("check", str(path))
    assert code == 0 and out == f"{path}: ok (1 function)\n"


def test_check_reports_errors_with_carets(tmp_path: Path) -> None:
    path = tmp_path / "bad.dl"
    path.write_text("fn f(x: f32[N]) -> f32[N] {\n    return y\n}\n")
    code, out, err = run_cli("check", str(path))
    assert code == 1 and out == ""
    assert err == f"{path}:2:12: error: unknown name 'y'\n    return y\n           ^\n"


# ---------------------------------------------------------------------------
# dlc ir


def test_ir_prints_the_module() -> None:
    code, out, _ = run_cli("ir", "examples/linear_regression.dl")
    assert code == 0
    for fn in ("predict", "loss", "evaluate"):
        assert f"func.func @{fn}(" in out
    assert '"dl.matmul"' in out and "loc(" not in out


def test_ir_one_function_with_locations() -> None:
    code, out, _ = run_cli("ir", "examples/mnist_mlp.dl", "--fn", "predict", "--debug-locations")
    assert code == 0
    assert out.count("func.func") == 1 and "@predict" in out
    assert 'loc("examples/mnist_mlp.dl":13:' in out   # the first dense(...) line


def test_ir_unknown_function() -> None:
    code, _, err = run_cli("ir", "examples/xor.dl", "--fn", "train")
    assert code == 1
    assert err.startswith("error: no function 'train' in examples/xor.dl (functions: predict, loss, evaluate)")


def test_ir_reads_ir_text_and_prints_it_back(tmp_path: Path) -> None:
    _, text, _ = run_cli("ir", "examples/sigmoid_chain.dl", "--debug-locations")
    path = tmp_path / "chain.mlir"
    path.write_text(text)
    code, again, err = run_cli("ir", str(path), "--debug-locations")
    assert code == 0, err
    assert again == text
    code, out, _ = run_cli("check", str(path))
    assert code == 0 and out == f"{path}: ok (6 functions, 3 params)\n"


def test_ir_shows_the_gradient_function() -> None:
    code, out, _ = run_cli("ir", "examples/sigmoid_chain.dl", "--fn", "dchain_loss")
    assert code == 0
    assert '{dl.name = "d_w1"}' in out and '"dl.sigmoid"' in out


# ---------------------------------------------------------------------------
# dlc run


def test_run_with_literal_inputs_prints_results() -> None:
    code, out, err = run_cli("run", "examples/linear_regression.dl", "--input", "x=[[1],[2]]",
                             "--input", "w=[[2]]", "--input", "b=[3]")
    assert code == 0, err
    assert out == "pred: f32[2, 1]\n[[5.]\n [7.]]\n"


def test_run_with_npy_inputs_and_npz_output(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 1)).astype(np.float32)
    y = rng.normal(size=(5, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "y.npz", y=y, other=x)
    out_path = tmp_path / "out.npz"
    code, out, err = run_cli("run", "examples/sigmoid_chain.dl", "--fn", "dchain_loss",
                             "-i", f"x={tmp_path / 'x.npy'}", "-i", f"y={tmp_path / 'y.npz'}",
                             "-i", "w1=0.5", "-i", "w2=1", "-i", "w3=-0.25", "-o", str(out_path))
    assert code == 0, err
    assert out == f"wrote {out_path} (3 arrays)\n"
    saved = np.load(out_path)
    assert sorted(saved.files) == ["d_w1", "d_w2", "d_w3"]
    # finite differences of the loss in float64 agree with the saved gradient
    def loss(w1: float, w2: float, w3: float) -> float:
        s = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
        l3 = s(w3 * s(w2 * s(w1 * x.astype(np.float64))))
        return float(np.mean((l3 - y) ** 2))
    eps = 1e-5
    numeric = (loss(0.5 + eps, 1, -0.25) - loss(0.5 - eps, 1, -0.25)) / (2 * eps)
    assert float(saved["d_w1"]) == pytest.approx(numeric, rel=1e-3)


def test_run_defaults_to_predict_and_saves_npy(tmp_path: Path) -> None:
    out_path = tmp_path / "pred.npy"
    code, _, err = run_cli("run", "examples/linear_regression.dl", "-i", "x=[[0]]", "-i", "w=[[1]]",
                           "-i", "b=[0.5]", "-o", str(out_path))
    assert code == 0, err
    np.testing.assert_array_equal(np.load(out_path), np.array([[0.5]], np.float32))


@pytest.mark.parametrize("inputs, message", [
    (["x=[[1]]", "w=[[2]]"], "missing --input for 1 parameter of 'predict': b: f32[1]"),
    (["x=[[1]]", "w=[[2]]", "b=[3]", "q=1"], "'predict' has no parameter 'q'"),
    (["x=[[1]]", "w=[[2]]", "b=[3]", "b=[4]"], "--input b given twice"),
    (["x", "w=[[2]]", "b=[3]"], "--input expects NAME=VALUE"),
    (["x=[[1]]", "w=[[2]]", "b=nope.npy"], "input 'b': no such file: nope.npy"),
    (["x=[[1]]", "w=[[2]]", "b=hello"], "input 'b': 'hello' is neither a file nor a number or list"),
    (["x=[[1]]", "w=[[2]]", "b=[true]"], "input 'b' must be f32"),
    (["x=[[1, 2]]", "w=[[2]]", "b=[3]"], "argument 'x'"),
])
def test_run_input_errors(inputs: list[str], message: str) -> None:
    argv = ["run", "examples/linear_regression.dl"]
    for item in inputs:
        argv += ["--input", item]
    code, _, err = run_cli(*argv)
    assert code == 1
    assert message in err and "Traceback" not in err


def test_run_refuses_floats_for_int_parameters(tmp_path: Path) -> None:
    path = tmp_path / "k.dl"
    path.write_text("fn twice(k: i32[N]) -> i32[N] { return k * 2 }\n")
    code, out, _ = run_cli("run", str(path), "-i", "k=[1, 2, 3]")
    assert code == 0 and out == "result0: i32[3]\n[2 4 6]\n"
    code, _, err = run_cli("run", str(path), "-i", "k=[1.5]")
    assert code == 1 and "input 'k' must be i32 (i32[N]), got float64 values" in err


def test_run_needs_fn_when_ambiguous(tmp_path: Path) -> None:
    path = tmp_path / "two.dl"
    path.write_text("fn a(x: f32[]) -> f32[] { return x }\nfn b(x: f32[]) -> f32[] { return x }\n")
    code, _, err = run_cli("run", str(path), "-i", "x=1")
    assert code == 1 and "choose one with --fn (a, b)" in err


# ---------------------------------------------------------------------------
# Errors never show a traceback


def test_internal_errors_are_reported_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.commands import check

    def broken(args: object) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr(check, "run", broken)
    code, _, err = run_cli("check", "examples/xor.dl")
    assert code == cli.EXIT_INTERNAL_ERROR
    assert "internal error: RuntimeError: boom" in err and "Traceback" not in err
    with pytest.raises(RuntimeError):
        run_cli("--traceback", "check", "examples/xor.dl")


def test_keyboard_interrupt_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.commands import check

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(check, "run", interrupted)
    code, _, err = run_cli("check", "examples/xor.dl")
    assert code == 130 and err == "dlc: interrupted\n"


def test_installed_console_script() -> None:
    script = Path(sys.executable).parent / "dlc"
    assert script.exists(), "the dlc console script is not installed (pip install -e .)"
    done = subprocess.run([str(script), "check", "examples/xor.dl"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "examples/xor.dl: ok (3 functions, 9 params)\n"
    done = subprocess.run([str(script), "check", "tests/diagnostics/unknown_name.dl"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr == (ROOT / "tests" / "diagnostics" / "unknown_name.expected").read_text()
