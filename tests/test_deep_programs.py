"""Programs deeper than Python's stack: no step may recurse on their structure.

Python's default recursion limit is 1000 frames, so a chain of ``DEPTH`` ops
(a few thousand) breaks any step that recurses once per op -- parsing,
lowering, a pass, the printer or parser, bufferization or an emitter.  Each
test takes such a chain through one step.  ``DEPTH`` keeps the file fast; the
same programs at 10,000 lets were run by hand through every command (see the
numbers in ``docs/codegen.md``, "Deep programs").
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from compiler.codegen.bufferize import lower_function
from compiler.codegen.loops import MAX_EXPR_NODES, Matmul, expr_size
from compiler.ir.builder import new_function
from compiler.ir.interpreter import interpret
from compiler.ir.parser import parse_module
from compiler.ir.printer import print_module
from compiler.ir.types import DType, TensorType
from compiler.passes.manager import run_pipeline
from frontend_dsl import compile_source
from runtime.cli import main

DEPTH = 1200                    # ops in a chain: more than Python's stack holds frames
SLOPE = 1.001


def chain_source(depth: int = DEPTH) -> str:
    """``f(x) = x * SLOPE ** depth``, one let per factor; ``dloss`` = d/dx sum(f(x) * x)
    = 2 x SLOPE ** depth, whose backward pass is another chain of ``depth`` ops."""
    lines = ["fn f(x: f32[N]) -> f32[N] {", "    let v0 = x"]
    lines += [f"    let v{i} = v{i - 1} * {SLOPE}" for i in range(1, depth + 1)]
    lines += [f"    return v{depth}", "}",
              "fn loss(x: f32[N]) -> f32[] {", "    return sum(f(x) * x)", "}",
              "fn dloss = grad(loss)"]
    return "\n".join(lines) + "\n"


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def chain_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("deep") / "chain.dl"
    path.write_text(chain_source())
    return path


def printed_array(out: str) -> np.ndarray:
    """The array ``dlc run`` printed after its ``name: type`` line."""
    body = out.split("\n", 1)[1]
    return np.array(body.replace("[", " ").replace("]", " ").split(), dtype=np.float64)


# ---------------------------------------------------------------------------
# The command line, step by step


def test_check(chain_file: Path) -> None:
    code, out, err = run_cli(["check", str(chain_file)])
    assert (code, err) == (0, "")
    assert "ok (3 functions)" in out


def test_ir_after_every_pass_and_its_text_reads_back(chain_file: Path, tmp_path: Path) -> None:
    code, out, err = run_cli(["ir", str(chain_file), "--passes", "default", "--print-ir-after", "all"])
    assert code == 0
    for name in ("autodiff", "canonicalize", "cse", "dce"):
        assert f"IR Dump After {name}" in err
    # f, loss and dloss (whose backward chain, x * SLOPE * SLOPE ..., cse merges with its forward)
    assert out.count('"dl.mul"') >= 3 * DEPTH
    text = tmp_path / "chain.mlir"
    text.write_text(out)
    code, again, _ = run_cli(["ir", str(text)])
    assert (code, again) == (0, out)


# ``asm`` goes through every codegen step (``llvm`` and ``llvm-opt`` print steps on its way)
@pytest.mark.parametrize("stage, marker", [("loops", "loops @dloss"), ("asm", "ret")])
def test_codegen_stages(chain_file: Path, stage: str, marker: str) -> None:
    code, out, err = run_cli(["ir", str(chain_file), "--fn", "dloss", "--stage", stage])
    assert (code, err) == (0, "")
    assert marker in out


def test_run_the_gradient_natively(chain_file: Path) -> None:
    x = np.array([1.0, 2.0, -0.5], dtype=np.float32)
    code, out, err = run_cli(["run", str(chain_file), "--fn", "dloss", "-i", f"x={x.tolist()}"])
    assert (code, err) == (0, "")
    np.testing.assert_allclose(printed_array(out), 2 * x * SLOPE ** DEPTH, rtol=1e-3)


def test_train_a_model_with_a_deep_forward(tmp_path: Path) -> None:
    # pred = (x * 0.999 ** DEPTH) @ w + b: learns w and b of y = 2 x + 3 through the chain
    lets = [f"    let h{i} = h{i - 1} * 0.999" for i in range(1, DEPTH + 1)]
    source = "\n".join(["model deep {", "    input x: f32[N, 1]", "    target y: f32[N, 1]",
                        "    param w: f32[1, 1] = normal(std=0.1)", "    param b: f32[1] = zeros",
                        "    let h0 = x", *lets, f"    output pred = h{DEPTH} @ w + b",
                        "    loss mse(pred, y)", "    optimizer sgd(lr=0.1)", "}"]) + "\n"
    model = tmp_path / "deep.dl"
    model.write_text(source)
    x = np.random.default_rng(0).uniform(-1, 1, (64, 1)).astype(np.float32)
    data = tmp_path / "data.npz"
    np.savez(data, x=x, y=2 * x + 3)
    metrics = tmp_path / "metrics.json"
    code, _, err = run_cli(["train", str(model), "--data", str(data), "--epochs", "20", "--quiet",
                            "--no-test", "--metrics-out", str(metrics)])
    assert code == 0, err
    report = json.loads(metrics.read_text())
    assert report["backend"] == "native"
    losses = report["history"]["loss"]
    assert losses[-1] < losses[0] / 10


# ---------------------------------------------------------------------------
# Fusion is bounded


def _sum_chain(n: int):
    t = TensorType(DType.f32, ("N",))
    f, b = new_function("f", [("x", t)])
    acc = f.params[0]
    for _ in range(n):
        acc = b.add(acc, f.params[0])
    f.outputs = [acc]
    return f


def test_a_long_fused_chain_is_cut_into_bounded_kernels() -> None:
    f = _sum_chain(10_000)
    prog = lower_function(f)
    sizes = [expr_size(k.epilogue if isinstance(k, Matmul) else k.expr) for k in prog.kernels]
    assert max(sizes) <= 3 * MAX_EXPR_NODES + 1
    assert len(prog.kernels) >= 10_000 * 2 // (3 * MAX_EXPR_NODES + 1)
    x = np.array([1.0, -2.0], dtype=np.float32)
    assert interpret(f, [x])[0].tolist() == [10_001.0, -20_002.0]


def test_a_short_chain_is_still_one_kernel() -> None:
    prog = lower_function(_sum_chain(MAX_EXPR_NODES // 2 - 1))
    assert len(prog.kernels) == 1


def test_ten_thousand_terms_through_the_frontend_and_passes() -> None:
    source = "fn f(x: f32[N]) -> f32[N] {\n    return " + " + ".join(["x"] * 10_000) + "\n}\n"
    module = run_pipeline(compile_source(source, "sum.dl"), "default")
    assert len(module.get("f").ops) == 9_999
    assert print_module(parse_module(print_module(module))) == print_module(module)
    prog = lower_function(module.get("f"))
    assert max(expr_size(k.expr) for k in prog.kernels) <= 3 * MAX_EXPR_NODES + 1


# ---------------------------------------------------------------------------
# Long chains of definitions


def test_a_long_chain_of_calls_defined_callers_first() -> None:
    # f1499 calls f1498 ... calls f0, each defined before its callee
    n = 1500
    lines = [f"fn f{i}(x: f32[N]) -> f32[N] {{ return f{i - 1}(x) }}" for i in range(n - 1, 0, -1)]
    lines.append("fn f0(x: f32[N]) -> f32[N] { return x * 2.0 }")
    module = compile_source("\n".join(lines), "calls.dl")
    assert [op.name for op in module.get(f"f{n - 1}").ops] == ["constant", "mul"]
    assert module.functions[0].name == f"f{n - 1}"              # source order kept


def test_a_long_chain_of_gradients_defined_outermost_first() -> None:
    # g1499 = grad(g1498) ... g1 = grad(g0): built by the frontend, and by the autodiff pass
    n = 1500
    lines = [f"fn g{i} = grad(g{i - 1})" for i in range(n - 1, 0, -1)]
    lines.append("fn g0(x: f32[]) -> f32[] { return x * x }")
    source = "\n".join(lines)
    module = compile_source(source, "grads.dl")
    deferred = run_pipeline(compile_source(source, "grads.dl", defer_grads=True), "autodiff")
    x = np.array(3.0, dtype=np.float32)
    for m in (module, deferred):
        assert float(interpret(m.get("g1"), [x])[0]) == 6.0
        assert float(interpret(m.get("g2"), [x])[0]) == 2.0
        assert float(interpret(m.get(f"g{n - 1}"), [x])[0]) == 0.0
