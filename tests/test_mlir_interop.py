"""dlc's IR through upstream MLIR tools and back, and the training step as IR.

Tests that run ``mlir-opt-22`` skip, saying so, where Debian's ``mlir-22-tools``
is not installed (``.ci/run`` installs it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from compiler.ir.core import Module
from compiler.ir.parser import parse_module
from compiler.ir.printer import print_module
from runtime.cli import main

ROOT = Path(__file__).resolve().parents[1]
MLIR_OPT = shutil.which("mlir-opt-22") or shutil.which("mlir-opt")
needs_mlir = pytest.mark.skipif(MLIR_OPT is None, reason="mlir-opt-22 is not installed (apt-get install mlir-22-tools)")


def dlc_ir(capsys: pytest.CaptureFixture, *argv: str) -> str:
    assert main(["ir", *argv]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("stage", ["dl", "loops"])
def test_the_training_step_prints_at_every_stage(capsys: pytest.CaptureFixture, stage: str) -> None:
    text = dlc_ir(capsys, str(ROOT / "examples/linear_regression.dl"), "--fn", "train_step", "--stage", stage)
    assert "train_step" in text


def test_the_printed_training_step_round_trips_with_its_inplace_pairs(capsys: pytest.CaptureFixture) -> None:
    text = dlc_ir(capsys, str(ROOT / "examples/mnist_mlp.dl"), "--fn", "train_step")
    assert "inplace = [[1, 0], [2, 1], [3, 2], [4, 3], [5, 4]" in text      # by argument position
    module = parse_module(text, "step.mlir")
    step = module.get("train_step")
    assert step.attrs["inplace"][:2] == ((1, "dense_1.kernel"), (2, "dense_1.bias"))
    assert print_module(module) == text


@needs_mlir
def test_parameter_names_and_inplace_pairs_survive_mlir_opt_renaming_the_arguments(
        capsys: pytest.CaptureFixture) -> None:
    text = dlc_ir(capsys, str(ROOT / "examples/linear_regression.dl"), "--fn", "train_step")
    assert '%w: tensor<1x1xf32> {dl.name = "w"}' in text
    back = subprocess.run([MLIR_OPT, "--allow-unregistered-dialect"], input=text, capture_output=True,
                          text=True, check=True).stdout
    assert '%arg0: tensor<1x1xf32> {dl.name = "w"}' in back and "%w" not in back
    step = parse_module(back, "back.mlir").get("train_step")
    assert [p.name for p in step.params[:2]] == ["w", "b"]         # read back from dl.name
    assert step.attrs["inplace"] == ((1, "w"), (2, "b"))
    assert print_module(Module([step])) == text


def _example_modules():
    from compiler.analysis.stats import with_train_step
    from frontend_dsl.api import compile_file

    for path in sorted((ROOT / "examples").glob("*.dl")):
        module, _ = with_train_step(compile_file(str(path)))
        yield path.stem, module


@needs_mlir
@pytest.mark.parametrize("form", ["custom", "generic"])
def test_every_example_comes_back_from_mlir_opt(form: str) -> None:
    """dlc -> mlir-opt (its own formatting, or --mlir-print-op-generic) -> dlc gives the same
    functions: the same ops, attributes, types, argument and output names."""
    flags = ["--allow-unregistered-dialect"] + (["--mlir-print-op-generic"] if form == "generic" else [])
    count = expected = 0
    for name, module in _example_modules():
        expected += len(module.functions)
        text = print_module(module)
        back = subprocess.run([MLIR_OPT, *flags], input=text, capture_output=True, text=True, check=True).stdout
        parsed = parse_module(back, f"{name}.mlir")
        assert [f.name for f in parsed.functions] == [f.name for f in module.functions]
        assert print_module(Module([], parsed.attrs)) == print_module(Module([], module.attrs))
        for original, func in zip(module.functions, parsed.functions):
            # mlir-opt calls the arguments %argN; their dl.name attributes give the names back
            assert print_module(Module([func])) == print_module(Module([original]))
            count += 1
    assert count == expected >= 40      # every function of every example, training steps included
