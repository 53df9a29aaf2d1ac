"""cse: hash-consing by op name, operand identities, attributes (arrays by value) and result types."""

from __future__ import annotations

import numpy as np

from compiler.ir.builder import new_function
from compiler.ir.core import Module
from compiler.ir.interpreter import interpret
from compiler.ir.printer import print_module
from compiler.ir.types import DType, TensorType
from compiler.passes import PipelineReport, run_pipeline
from compiler.passes.cse import attr_key, cse_function

F32 = DType.f32


def T(*shape, dtype: DType = F32) -> TensorType:
    return TensorType(dtype, tuple(shape))


def test_duplicates_merge_and_users_follow():
    f, b = new_function("f", [("x", T("N", 4)), ("w", T(4, 4))])
    x, w = f.params
    h1 = b.relu(b.matmul(x, w))
    h2 = b.relu(b.matmul(x, w))
    f.outputs = [b.add(h1, h2), h2]
    assert cse_function(f) == 2
    assert [op.name for op in f.ops] == ["matmul", "relu", "add"]
    add = f.ops[2]
    assert add.operands[0] is add.operands[1] is f.ops[1].result
    assert f.outputs[1] is f.ops[1].result


def test_constants_merge_by_value_and_dtype():
    f, b = new_function("f", [])
    a = b.constant(np.array([1.0, 2.0]), F32)
    same = b.constant(np.array([1.0, 2.0]), F32)
    other = b.constant(np.array([1.0, 3.0]), F32)
    wider = b.constant(np.array([1.0, 2.0]), DType.f64)
    scalar = b.constant(0.5, F32)
    scalar_again = b.constant(0.5, F32)
    f.outputs = [a, same, other, wider, scalar, scalar_again]
    assert cse_function(f) == 2
    assert f.outputs[0] is f.outputs[1] and f.outputs[4] is f.outputs[5]
    assert len({id(v) for v in f.outputs}) == 4


def test_signed_zeros_and_nans_keep_their_bits():
    assert attr_key(0.0) != attr_key(-0.0)
    assert attr_key(float("nan")) == attr_key(float("nan"))
    assert attr_key(np.array([0.0])) != attr_key(np.array([-0.0]))
    assert attr_key(np.array([1.0], np.float32)) != attr_key(np.array([1.0], np.float64))
    assert attr_key((1, "N")) == attr_key((1, "N")) != attr_key((1, "M"))


def test_different_attributes_operands_or_order_do_not_merge():
    f, b = new_function("f", [("x", T(2, 3)), ("y", T(2, 3))])
    x, y = f.params
    f.outputs = [b.sum(x, axes=(0,)), b.sum(x, axes=(1,)), b.sub(x, y), b.sub(y, x),
                 b.sum(x, axes=(0,), keepdims=True)]
    assert cse_function(f) == 0
    assert len(f.ops) == 5


def test_cse_pass_counts_and_keeps_results():
    from compiler.train_step import build_train_step
    from frontend_dsl.api import compile_file

    module = compile_file("examples/student_grade.dl")
    build_train_step(module)
    step = module.get("train_step")
    rng = np.random.default_rng(1)
    args = [rng.standard_normal(p.type.concrete_shape({"N": 4})).astype(p.type.dtype.np)
            for p in step.params]
    expected = interpret(step, args)
    report = PipelineReport()
    run_pipeline(module, "cse", report=report)
    merged = report.records[0].counters["ops-merged"]
    assert merged > 0 and report.records[0].ops_after == report.records[0].ops_before - merged
    for e, g in zip(expected, interpret(module.get("train_step"), args)):
        np.testing.assert_array_equal(g, e)


def test_cse_is_idempotent():
    from frontend_dsl.api import compile_file

    once = run_pipeline(compile_file("examples/mnist_mlp.dl"), "cse")
    text = print_module(once)
    assert print_module(run_pipeline(once, "cse")) == text
    assert isinstance(once, Module)
