"""The codegen side of the CLI: ``dlc ir --stage``, ``dlc compile``, ``dlc cache``,
and ``dlc run`` on native code (``--interp`` for the interpreter)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from runtime.cli import main
from runtime.compiled import load_compiled

XOR = str(Path(__file__).resolve().parents[1] / "examples" / "xor.dl")
INPUTS = ["--input", "x=[[0,0],[0,1],[1,0],[1,1]]", "--input", "hidden.kernel=[[1,-1],[1,-1]]",
          "--input", "hidden.bias=[-0.5,1.5]", "--input", "out.kernel=[[2],[2]]", "--input", "out.bias=[-3]"]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DLC_CACHE_DIR", str(tmp_path / "cache"))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("stage,marker", [
    ("loops", "loops @predict(N)"),
    ("llvm", "define i32 @\"dlc_predict\"(i8** %\"buffers\", i64* %\"dims\")"),
    ("llvm-opt", "@dlc_predict("),
    ("asm", "dlc_predict:"),
])
def test_ir_codegen_stages(capsys, stage, marker):
    status, out, err = run(capsys, "ir", XOR, "--fn", "predict", "--stage", stage)
    assert status == 0, err
    assert marker in out
    if stage == "loops":
        assert "epilogue: sigmoid(add(acc, %hidden.bias[i1]))" in out


def test_run_native_matches_interp(capsys, tmp_path):
    native, interp = tmp_path / "native.npy", tmp_path / "interp.npy"
    assert run(capsys, "run", XOR, *INPUTS, "--output", str(native))[0] == 0
    assert run(capsys, "run", XOR, *INPUTS, "--interp", "--output", str(interp))[0] == 0
    np.testing.assert_allclose(np.load(native), np.load(interp), rtol=1e-6)
    assert np.load(native).shape == (4, 1)


def test_compile_writes_an_aot_directory(capsys, tmp_path):
    status, out, err = run(capsys, "compile", XOR, "-o", str(tmp_path / "aot"))
    assert status == 0, err
    assert "dlc_predict: predict(" in out
    manifest = json.loads((tmp_path / "aot" / "manifest.json").read_text())
    assert {f["name"] for f in manifest["functions"]} == {"predict", "loss", "evaluate"}
    mod = load_compiled(tmp_path / "aot")
    p = mod.predict(np.eye(2, dtype=np.float32), np.zeros(2, np.float32), np.ones((2, 1), np.float32),
                    np.zeros(1, np.float32), np.zeros((3, 2), np.float32))
    np.testing.assert_allclose(p, np.full((3, 1), 1 / (1 + np.exp(-1.0))), rtol=1e-6)


def test_compile_exports_the_training_step_and_the_thread_controls(capsys, tmp_path):
    from runtime import load_model

    status, out, err = run(capsys, "compile", XOR, "-o", str(tmp_path / "aot"), "--train-step")
    assert status == 0, err
    assert "dlc_train_step: train_step(" in out
    header = (tmp_path / "aot" / "dlc_module.h").read_text()
    assert "int32_t dlc_train_step(void **buffers" in header
    assert "void dlc_set_num_threads(int32_t n);" in header and "void dlc_threads_shutdown(void);" in header
    # the exported step computes what the Model's own step does, bit for bit
    model = load_model(XOR, seed=3)
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    y = np.array([[0], [1], [1], [0]], np.float32)
    args = model._step_args([x, y], np.float32(0.1))
    want = model.backend.train_step([a.copy() for a in args])
    got = load_compiled(tmp_path / "aot").train_step(*[a.copy() for a in args])
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    source = tmp_path / "plain.dl"
    source.write_text("fn f(x: f32[N]) -> f32[N] {\n    return x + 1.0\n}\n")
    status, _, err = run(capsys, "compile", str(source), "-o", str(tmp_path / "plain"), "--train-step")
    assert status == 1 and "--train-step needs a model block" in err


def test_compile_for_another_cpu_writes_its_target_and_never_runs_its_code(capsys, tmp_path):
    from compiler.codegen.target import PORTABLE_CPUS, host_target
    from compiler.diagnostics import DlRuntimeError

    # a portable level this machine has: written for it, and it runs here
    status, out, err = run(capsys, "compile", XOR, "-o", str(tmp_path / "v2"), "--cpu", "x86-64-v2")
    assert status == 0, err
    manifest = json.loads((tmp_path / "v2" / "manifest.json").read_text())
    assert manifest["target"]["cpu"] == "x86-64-v2"
    assert manifest["target"]["features"] == PORTABLE_CPUS["x86-64-v2"]
    mod = load_compiled(tmp_path / "v2")
    p = mod.predict(np.eye(2, dtype=np.float32), np.zeros(2, np.float32), np.ones((2, 1), np.float32),
                    np.zeros(1, np.float32), np.zeros((3, 2), np.float32))
    np.testing.assert_allclose(p, np.full((3, 1), 1 / (1 + np.exp(-1.0))), rtol=1e-6)
    # a feature this machine lacks: compiled without being loaded, and refused when loaded
    have = set(host_target().features.split(","))
    lacking = next((f for f in ("+xop", "+tbm", "+fma4", "+sse4a") if f not in have), None)
    if lacking is None:
        pytest.skip("this CPU has every feature the test could ask for")
    status, out, err = run(capsys, "compile", XOR, "-o", str(tmp_path / "other"), "--cpu", "x86-64",
                           "--features", lacking)
    assert status == 0, err
    assert "dlc_predict: predict(" in out
    with pytest.raises(DlRuntimeError, match=lacking[1:]):
        load_compiled(tmp_path / "other")


def test_compile_takes_the_pass_flags(capsys, tmp_path):
    status, out, err = run(capsys, "compile", XOR, "-o", str(tmp_path / "aot"), "--time-passes",
                           "--print-ir-after", "canonicalize")
    assert status == 0, err
    assert "canonicalize" in err and "Total" in err
    assert "Compile time report" in err and "LLVM optimization" in err and "native load and link" in err
    assert "IR Dump After canonicalize" in err
    status, _, err = run(capsys, "compile", XOR, "-o", str(tmp_path / "aot2"), "--passes", "no-such-pass")
    assert status == 1 and "no-such-pass" in err


def _report_rows(err: str) -> dict[str, float]:
    """The rows of a --time-passes report: stage name -> seconds."""
    rows = {}
    for line in err.split("----Name----", 1)[1].strip().splitlines():
        seconds, _, rest = line.strip().partition(" (")
        name = rest.split(")", 1)[1].strip()
        if name == "Total":
            break
        rows[name] = float(seconds)
    return rows


def test_compile_time_passes_lists_every_stage_to_the_written_directory(capsys, tmp_path):
    from compiler.passes.manager import parse_pipeline

    status, _, err = run(capsys, "compile", XOR, "-o", str(tmp_path / "aot"), "--time-passes", "--no-cache",
                         "--train-step")
    assert status == 0, err
    rows = _report_rows(err)
    expected = {"target detection", "frontend", "training step (autodiff, optimizer)", "IR verifier",
                "pass manager", "cache lookup", "loop lowering", "LLVM IR build", "LLVM IR text",
                "LLVM parse and verify", "LLVM optimization", "machine code", "native load and link",
                "write output (AOT directory, shared library)", "garbage collection", "(unattributed)"}
    expected |= {f"pass {name}" for name in parse_pipeline("default")}
    library = {"GEMM library (cache read)", "GEMM library (compile, once per machine)", "GEMM library (cache write)"}
    # called in-process (not as its own process), so no start-up row
    assert expected <= set(rows) <= expected | library, set(rows) ^ expected
    assert all(seconds >= 0 for seconds in rows.values())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the process's start is read from /proc")
def test_compile_time_passes_counts_the_start_up_of_its_own_process(tmp_path):
    import subprocess

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "runtime.cli", "compile", XOR, "-o", str(tmp_path / "aot"),
                           "--time-passes"], cwd=root, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rows = _report_rows(proc.stderr)
    assert rows["start-up and imports"] > 0 and all(seconds >= 0 for seconds in rows.values())
    # the process ends right after the directory is written (no teardown): all of it is there
    assert "wrote" in proc.stdout and load_compiled(tmp_path / "aot").functions


def test_the_process_start_is_read_on_linux():
    from runtime.commands.compile import since_process_start

    seconds = since_process_start()
    if sys.platform.startswith("linux"):
        assert seconds is not None and seconds >= 0
    else:
        assert seconds is None or seconds >= 0


def test_cache_info_and_clear(capsys, tmp_path):
    run(capsys, "ir", XOR, "--stage", "loops")
    assert run(capsys, "run", XOR, *INPUTS)[0] == 0
    status, out, _ = run(capsys, "cache", "info")
    assert status == 0 and str(tmp_path / "cache") in out and "entries:   1" in out
    status, out, _ = run(capsys, "cache", "clear")
    assert status == 0 and "removed 1 entry" in out
    assert "entries:   0" in run(capsys, "cache", "info")[1]


def test_bad_native_input_is_a_clean_error(capsys):
    bad = [a if not a.startswith("x=") else "x=[[0,0,0]]" for a in INPUTS]
    status, out, err = run(capsys, "run", XOR, *bad)
    assert status == 1
    assert "argument 'x'" in err and "Traceback" not in err
