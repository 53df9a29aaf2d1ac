"""Finite-difference gradient checking (compiler/checking/gradcheck.py) and `dlc gradcheck`."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from compiler.checking.gradcheck import GradcheckError, _int_range, gradcheck, to_float64
from compiler.diagnostics import AutodiffError, DlError
from compiler.ir.builder import new_function
from compiler.ir.core import Module
from compiler.ir.interpreter import interpret
from compiler.ir.printer import print_module
from compiler.ir.types import DType, TensorType
from compiler.ops import OPS
from runtime.commands import gradcheck as command

F32, F64, I32 = DType.f32, DType.f64, DType.i32
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def T(*shape: int | str, dtype: DType = F32) -> TensorType:
    return TensorType(dtype, tuple(shape))


def mlp_loss() -> Module:
    """A two-layer classifier in f32 with a symbolic batch and integer labels."""
    f, b = new_function("loss", [("w1", T(4, 5)), ("b1", T(5)), ("w2", T(5, 3)),
                                 ("x", T("N", 4)), ("y", T("N", dtype=I32))])
    w1, b1, w2, x, y = f.params
    h = b.tanh(b.add(b.matmul(x, w1), b1))
    logits = b.matmul(h, w2)
    scale = b.constant(0.5, F32)
    f.outputs = [b.sparse_categorical_crossentropy(b.mul(logits, scale), y, from_logits=True)]
    return Module([f])


# ---------------------------------------------------------------------------
# float64 copies


def test_to_float64_retypes_params_constants_and_dtype_attrs():
    f, b = new_function("f", [("x", T("N", 3)), ("k", T("N", dtype=I32))])
    x, k = f.params
    dense = b.constant(np.array([1.0, 2.0, 3.0], np.float32), F32)
    hot = b.one_hot(k, depth=3)
    f.outputs = [b.sum(b.mul(b.add(x, dense), hot)), b.sum(k)]
    g = to_float64(f)
    assert [p.type for p in g.params] == [T("N", 3, dtype=F64), T("N", dtype=I32)]
    assert g.output_types == [T(dtype=F64), T(dtype=I32)]
    consts = [op for op in g.ops if op.name == "constant"]
    assert consts[0].attrs["dtype"] is F64 and consts[0].attrs["value"].dtype == np.float64
    assert [op.attrs["dtype"] for op in g.ops if op.name == "one_hot"] == [F64]
    xs = np.arange(6.0).reshape(2, 3)
    ks = np.array([0, 2], np.int32)
    expected = interpret(f, [xs.astype(np.float32), ks])
    got = interpret(g, [xs, ks])
    assert got[0].dtype == np.float64
    np.testing.assert_allclose(got[0], expected[0])
    assert got[1] == expected[1]
    assert [p.type for p in f.params][0] == T("N", 3), "the original is left alone"


# ---------------------------------------------------------------------------
# The check


def test_correct_gradients_pass_with_a_table():
    report = gradcheck(mlp_loss(), "loss", seed=1, bindings={"N": 5})
    assert report.passed
    assert report.bindings == {"N": 5}
    assert [a.name for a in report.args] == ["w1", "b1", "w2", "x"]
    assert [a.shape for a in report.args] == [(4, 5), (5,), (5, 3), (5, 4)]
    assert all(a.checked == a.total for a in report.args)
    assert report.max_rel_error < 1e-6
    text = str(report)
    lines = text.splitlines()
    assert lines[0] == "gradcheck @loss: float64, eps=1e-06, tol=0.0001, seed=1, N=5"
    assert lines[2].split() == ["argument", "shape", "checked", "max", "abs", "error", "rel",
                                "error", "status"]
    assert lines[3].split()[:4] == ["w1", "[4,", "5]", "20/20"] and lines[3].endswith("ok")
    assert lines[-1].startswith("PASSED: max relative error")


def test_a_wrong_vjp_rule_is_caught(monkeypatch):
    # tanh' = 1 - tanh^2; pretend it were 1 - tanh.
    monkeypatch.setattr(OPS["tanh"], "vjp",
                        lambda b, op, ct: [b.mul(ct, b.sub(b.scalar_like(1.0, ct), op.result))])
    report = gradcheck(mlp_loss(), "loss", wrt=["w1", "w2"])
    by_name = {a.name: a for a in report.args}
    assert not by_name["w1"].ok and by_name["w1"].rel_error > 1e-2
    assert by_name["w2"].ok, "w2 does not go through tanh's rule"
    assert not report.passed
    assert str(report).splitlines()[-1].startswith("FAILED: max relative error")


def test_sampling_large_arguments(monkeypatch):
    f, b = new_function("f", [("w", T(10, 10))])
    f.outputs = [b.sum(b.mul(b.tanh(f.params[0]), f.params[0]))]
    report = gradcheck(Module([f]), "f", max_elements=7)
    (arg,) = report.args
    assert (arg.checked, arg.total) == (7, 100) and arg.ok


def test_fixed_inputs_and_seed_reproducibility():
    first = gradcheck(mlp_loss(), "loss", seed=3)
    again = gradcheck(mlp_loss(), "loss", seed=3)
    other = gradcheck(mlp_loss(), "loss", seed=4)
    assert first.value == again.value != other.value
    fixed = gradcheck(mlp_loss(), "loss", seed=3, inputs={"x": np.zeros((3, 4))})
    assert fixed.passed and fixed.value != first.value


def test_integer_arguments_are_drawn_in_their_class_range():
    module = mlp_loss()
    f = module.get("loss")
    assert _int_range(f, f.param("y"), {"N": 3}) == 3
    g, b = new_function("g", [("k", T(4, dtype=I32))])
    g.outputs = [b.one_hot(g.params[0], depth=7)]
    assert _int_range(g, g.params[0], {}) == 7


def test_errors_are_dl_errors():
    with pytest.raises(GradcheckError, match="no function named 'nope'"):
        gradcheck(mlp_loss(), "nope")
    with pytest.raises(AutodiffError, match="cannot differentiate with respect to 'y'"):
        gradcheck(mlp_loss(), "loss", wrt=["y"])


# ---------------------------------------------------------------------------
# The command


def run_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="dlc gradcheck")
    command.add_arguments(parser)
    return command.run(parser.parse_args(argv))


def write_ir(tmp_path: Path, module: Module) -> str:
    path = tmp_path / "loss.mlir"
    path.write_text(print_module(module))
    return str(path)


def test_command_passes_and_prints_the_table(tmp_path, capsys):
    path = write_ir(tmp_path, mlp_loss())
    assert run_command([path, "--fn", "loss", "--wrt", "w1,w2", "--dim", "N=4", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("gradcheck @loss: float64, eps=1e-06, tol=0.0001, seed=2, N=4\n")
    assert [line.split()[0] for line in out.splitlines()[3:5]] == ["w1", "w2"]


def test_command_exits_1_above_tolerance(tmp_path, capsys, monkeypatch):
    path = write_ir(tmp_path, mlp_loss())
    monkeypatch.setattr(OPS["tanh"], "vjp", lambda b, op, ct: [ct])
    assert run_command([path, "--fn", "loss"]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_command_rejects_bad_dims(tmp_path):
    path = write_ir(tmp_path, mlp_loss())
    with pytest.raises(DlError, match="--dim expects SYMBOL=SIZE with a positive size, got 'N=0'"):
        run_command([path, "--fn", "loss", "--dim", "N=0"])


def test_command_missing_file(tmp_path):
    with pytest.raises(DlError, match="no such file"):
        run_command([str(tmp_path / "absent.mlir"), "--fn", "loss"])


def test_dlc_gradcheck_through_the_cli(capsys):
    from runtime.cli import main

    path = str(EXAMPLES / "sigmoid_chain.dl")
    assert main(["gradcheck", path, "--fn", "chain_loss", "--wrt", "w1,w2,w3", "--dim", "N=4"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()[3:6]] == ["w1", "w2", "w3"]
    assert out.splitlines()[-1].startswith("PASSED")


def test_dlc_gradcheck_reports_user_errors_at_the_source_line(capsys):
    from runtime.cli import main

    path = str(EXAMPLES / "mnist_mlp.dl")
    assert main(["gradcheck", path, "--fn", "predict"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:")
    assert "error: grad needs a scalar float output, but 'predict' returns f32[N, 10]" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------------------
# Every example's loss


EXPECTED_EXAMPLES = {"linear_regression.dl", "xor.dl", "student_pass.dl", "student_grade.dl",
                     "sigmoid_chain.dl", "mnist_mlp.dl"}


def test_the_examples_are_there():
    assert EXPECTED_EXAMPLES <= {p.name for p in EXAMPLES.glob("*.dl")}


# Examples whose loss at seed 0 has a relu / max-pool kink within 1e-6 of a checked point: the
# central difference at that step straddles it. mnist_cnn_bn's first conv kernel (every element
# moves all of its channel through the batch statistics): max abs error 4.4e-3 at eps 1e-6 and
# 1.0 at 1e-5, but 1.7e-8 at 1e-7, and 1.2e-8 / 1.7e-9 at eps 1e-6 with seeds 1 and 2.
KINK_EPS = {"mnist_cnn_bn.dl": 1e-7}


@pytest.mark.parametrize("example", sorted(EXPECTED_EXAMPLES | {p.name for p in EXAMPLES.glob("*.dl")}))
def test_example_loss_gradient(example):
    """The model's loss, differentiated with respect to every parameter."""
    from frontend_dsl.api import compile_file

    module = compile_file(str(EXAMPLES / example))
    params = [p["name"] for p in module.attrs["model"]["params"]]
    report = gradcheck(module, "loss", wrt=params, bindings={"N": 3}, max_elements=24,
                       eps=KINK_EPS.get(example, 1e-6))
    assert report.passed, str(report)
    # Parameters come from their initializers, so no loss is saturated and every
    # gradient compared is a real one, not a trivially matching zero -- except an
    # attention key bias's, which is zero exactly: it adds q . b_k to every score of
    # a query's row, and softmax does not change when a row is shifted.
    real = [a for a in report.args if not a.name.endswith("attn.key_bias")]
    assert all(a.max_grad > 1e-6 for a in real), str(report)
