"""The per-pass differential checker: it names the pass that changes results."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

from compiler.checking.pass_checker import PassChecker, PassCheckError
from compiler.ir.builder import Builder, new_function
from compiler.ir.core import Module
from compiler.ir.types import DType, TensorType
from compiler.passes import PASSES, PassContext, register_pass, run_pipeline
from compiler.passes.autodiff import autodiff

EXAMPLES = sorted(Path("examples").glob("*.dl"))
F32 = DType.f32


def T(*shape, dtype: DType = F32) -> TensorType:
    return TensorType(dtype, tuple(shape))


# ---------------------------------------------------------------------------
# Deliberately broken passes, registered while this module's tests run


def perturb_constant(module: Module, ctx: PassContext) -> Module:
    """Test only: multiply the first float constant of every function by 1.5."""
    for func in module.functions:
        for op in func.ops:
            if op.name == "constant" and op.result.type.dtype.is_float:
                op.attrs["value"] = np.asarray(op.attrs["value"]) * 1.5
                break
    return module


def wrong_autodiff(module: Module, ctx: PassContext) -> Module:
    """Test only: the autodiff pass, then every gradient it built doubled."""
    built = [f.name for f in module.functions if "grad_of" in f.attrs]
    module = autodiff(module, ctx)
    for name in built:
        func = module.get(name)
        b = Builder(func)
        func.outputs = [b.mul(v, b.constant(2.0, v.type.dtype)) for v in func.outputs]
    return module


def argmax_to_argmin(module: Module, ctx: PassContext) -> Module:
    """Test only: argmax(x) -> argmax(-x)."""
    for func in module.functions:
        for op in list(func.ops):
            if op.name == "argmax":
                neg = Builder.make("neg", [op.operands[0]], {}, op.loc)
                func.ops.insert(func.ops.index(op), neg)
                op.operands = [neg.result]
    return module


def drop_param(module: Module, ctx: PassContext) -> Module:
    """Test only: remove the last parameter of every function."""
    for func in module.functions:
        func.params = func.params[:-1]
    return module


BROKEN_PASSES = {
    "test-perturb-constant": (perturb_constant, "test only: multiply the first float constant by 1.5"),
    "test-wrong-autodiff": (wrong_autodiff, "test only: autodiff, then double every gradient"),
    "test-argmax-to-argmin": (argmax_to_argmin, "test only: argmax(x) -> argmax(-x)"),
    "test-drop-param": (drop_param, "test only: remove the last parameter of every function"),
}


@pytest.fixture(autouse=True, scope="module")
def broken_passes():
    """Register the broken passes for this module only, so other tests see the real registry."""
    for name, (fn, description) in BROKEN_PASSES.items():
        register_pass(name, description)(fn)
    yield
    for name in BROKEN_PASSES:
        del PASSES[name]


def _load(path, defer_grads: bool = False) -> Module:
    from frontend_dsl.api import compile_file

    return compile_file(path, defer_grads=defer_grads)


# ---------------------------------------------------------------------------


def test_a_pass_that_changes_a_constant_is_named():
    module = _load("examples/student_pass.dl")
    with pytest.raises(PassCheckError) as info:
        run_pipeline(module, "canonicalize,cse,test-perturb-constant,dce", instrumentations=[PassChecker(module)])
    err = info.value
    assert err.message.startswith("pass 'test-perturb-constant' changed the results of @")
    assert any("max abs difference" in n for n in err.notes)
    assert err.loc is not None and err.loc.file == "examples/student_pass.dl"


def test_without_the_checker_the_broken_pass_goes_unnoticed():
    run_pipeline(_load("examples/student_pass.dl"), "test-perturb-constant")


def test_a_wrong_gradient_built_by_a_pass_is_caught_by_finite_differences():
    module = _load("examples/sigmoid_chain.dl", defer_grads=True)
    with pytest.raises(PassCheckError) as info:
        run_pipeline(module, "test-wrong-autodiff,canonicalize", instrumentations=[PassChecker(module)])
    err = info.value
    assert "pass 'test-wrong-autodiff' built a wrong gradient: @dchain_loss" in err.message
    assert any("FAIL" in n for n in err.notes)


def test_the_real_autodiff_is_gradchecked_and_later_passes_compared():
    module = _load("examples/sigmoid_chain.dl", defer_grads=True)
    checker = PassChecker(module)
    for name in ["autodiff", "canonicalize", "cse", "dce"]:
        module = PASSES[name].run(module, PassContext(name))
        checker.run_after_pass(name, module)
    report = checker.report
    assert report.gradchecked == {"autodiff": ["dchain_loss"]}
    assert "dchain_loss" in report.compared["canonicalize"]
    assert set(report.compared["dce"]) == {f.name for f in module.functions}
    assert report.skipped == {}


def test_integer_outputs_must_match_exactly():
    f, b = new_function("f", [("x", T("N", 5))])
    f.outputs = [b.argmax(f.params[0])]
    with pytest.raises(PassCheckError) as info:
        module = Module([f])
        run_pipeline(module, "test-argmax-to-argmin", instrumentations=[PassChecker(module)])
    assert any("elements differ (must be equal)" in n for n in info.value.notes)


def test_equal_nans_are_not_a_difference():
    f, b = new_function("f", [("x", T(6))])
    f.outputs = [b.log(f.params[0])]      # standard normal inputs: some logs are NaN
    module = Module([f])
    run_pipeline(module, "canonicalize,cse,dce", instrumentations=[PassChecker(module)])


def test_a_changed_signature_is_reported():
    f, b = new_function("f", [("x", T(3)), ("y", T(3))])
    f.outputs = [f.params[0]]
    with pytest.raises(PassCheckError, match="pass 'test-drop-param' changed the signature of @f"):
        module = Module([f])
        run_pipeline(module, "test-drop-param", instrumentations=[PassChecker(module)], verify_each=False)


def test_model_parameters_come_from_their_initializers():
    module = _load("examples/mnist_mlp.dl")
    checker = PassChecker(module)
    loss = module.get("loss")
    inputs = dict(zip([p.name for p in loss.params], checker._cases["loss"].inputs))
    limit = np.sqrt(6 / (784 + 512))                       # glorot_uniform
    assert np.abs(inputs["dense_1.kernel"]).max() <= limit
    assert not inputs["dense_1.bias"].any()                # zeros
    assert inputs["y"].min() >= 0 and inputs["y"].max() < 10   # labels below the class count


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_default_pipeline_preserves_every_example(path):
    module = _load(path, defer_grads=True)
    run_pipeline(module, "default", instrumentations=[PassChecker(module)])


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_optimizing_the_training_step_preserves_it(path):
    from compiler.train_step import build_train_step

    module = _load(path)
    build_train_step(module)
    run_pipeline(module, "canonicalize,cse,dce", instrumentations=[PassChecker(module)])


def test_the_command_line_flag_names_the_pass():
    from runtime.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["opt", "examples/student_pass.dl", "--passes", "inference,test-perturb-constant",
                     "--check-each-pass"])
    assert code == 1
    assert "error: pass 'test-perturb-constant' changed the results of @" in err.getvalue()
    assert "Traceback" not in err.getvalue()
    assert out.getvalue() == ""
