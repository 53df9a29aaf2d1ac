"""The verifier: each broken invariant is found, named, located, and reported with the others."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ir_text import mlp_module, random_module

from compiler.diagnostics import DlErrors, Location, VerifyError, register_source
from compiler.ir import (
    Function,
    Module,
    Op,
    Value,
    VerifyErrors,
    function_errors,
    new_function,
    verify_function,
    verify_module,
)
from compiler.ir.types import DType, TensorType

F32 = DType.f32


def t(*shape, dtype=F32) -> TensorType:
    return TensorType(dtype, tuple(shape))


def messages(func: Function) -> list[str]:
    return [e.message for e in function_errors(func)]


def small() -> tuple[Function, list[Op]]:
    """f(x: f32[2], y: f32[2]) = neg(add(x, y))."""
    f, b = new_function("f", [("x", t(2)), ("y", t(2))])
    s = b.add(*f.params)
    n = b.neg(s)
    f.outputs = [n]
    return f, list(f.ops)


def test_valid_modules_verify() -> None:
    verify_module(mlp_module())
    f, _ = small()
    verify_function(f)


@settings(max_examples=40, deadline=None)
@given(st.randoms(use_true_random=False))
def test_random_valid_modules_verify_and_a_wrong_result_type_is_caught(rng: random.Random) -> None:
    module = random_module(rng)
    verify_module(module)
    ops = [(f, op) for f in module.functions for op in f.ops]
    if not ops:
        return
    func, op = rng.choice(ops)
    old = op.results[0].type
    op.results[0].type = old.with_shape(old.shape + (7,))
    errors = function_errors(func)
    assert errors and errors[0].loc == op.loc
    assert errors[0].message.startswith(f"dl.{op.name}: ")


def test_use_before_definition() -> None:
    f, (add, neg) = small()
    f.ops = [neg, add]
    assert messages(f) == ["dl.neg: operand 0 (%1) is used before its definition"]


def test_values_from_another_function() -> None:
    f, (add, neg) = small()
    g, gb = new_function("g", [("z", t(2))])
    foreign = gb.neg(g.params[0])
    neg.operands = [foreign]
    add.operands = [add.operands[0], g.params[0]]
    assert messages(f) == [
        "dl.add: operand 1 is parameter %z of another function",
        "dl.neg: operand 0 is defined outside @f (by dl.neg at <unknown>:0:0)",
    ]


def test_a_value_defined_twice_and_an_op_listed_twice() -> None:
    f, (add, neg) = small()
    neg.results = list(add.results)
    assert messages(f) == [
        "dl.neg: result 0 (%0) records a different defining op or index",
        "dl.neg: result 0 (%0) is defined twice",
        "@f: output 0 is not defined in the function",
    ]
    f, (add, neg) = small()
    f.ops = [add, add, neg]
    assert messages(f) == ["dl.add: the op appears twice in the function"]


def test_unknown_op_and_wrong_arity() -> None:
    f, (add, neg) = small()
    add.name = "frobnicate"
    neg.operands = [f.params[0], f.params[1]]
    assert messages(f) == ["dl.frobnicate: unknown op 'dl.frobnicate'",
                           "dl.neg: takes 1 operand(s), got 2"]


def test_attribute_schema_and_missing_defaults() -> None:
    f, b = new_function("f", [("x", t(2, 3))])
    s = b.sum(f.params[0], axes=(1,))
    r = b.reshape(s, shape=(2,))
    f.outputs = [r]
    sum_op, reshape_op = f.ops
    sum_op.attrs = {"axes": (1,)}                                   # keepdims left out
    reshape_op.attrs = {"shape": (2,), "order": "C"}
    assert messages(f) == [
        "dl.sum: attribute 'keepdims' is missing (the builder fills defaults)",
        "dl.reshape: unknown attribute 'order' (allowed: shape)",
    ]
    sum_op.attrs = {"axes": "1", "keepdims": False}
    reshape_op.attrs = {}
    assert messages(f) == [
        "dl.sum: attribute 'axes' expects a list of integers, got '1'",
        "dl.reshape: missing required attribute 'shape'",
    ]


def test_result_types_must_match_the_shape_rule() -> None:
    f, (add, neg) = small()
    add.results[0].type = t(3)
    assert messages(f) == [
        "dl.add: result 0 has type tensor<3xf32>, but the shape rule gives tensor<2xf32>",
        "dl.neg: result 0 has type tensor<2xf32>, but the shape rule gives tensor<3xf32>",
    ]
    f, (add, neg) = small()
    f.params[1].type = t(5)
    assert messages(f) == ["dl.add: shapes [2] and [5] do not broadcast: dim 2 vs 5"]
    f, (add, neg) = small()
    add.results.append(Value(t(2), add, 1))
    assert messages(f) == ["dl.add: has 2 result(s), the op defines 1"]


def test_malformed_types_and_parameters() -> None:
    f, (add, neg) = small()
    f.params[0].type = t(-1)
    f.params[1].type = t("N,M")
    neg.results[0].type = "f32[2]"
    assert messages(f) == [
        "@f: parameter %x has a negative dim -1 in tensor<-1xf32>",
        "@f: parameter %y has an invalid symbol name 'N,M' in tensor<?xf32, \"N,M\">",
        "dl.neg: result 0 (%1) has a non-tensor type 'f32[2]'",
    ]
    g = Function("g", [Value(t(), None, 0, "a"), Value(t(), None, 1, "a"), Value(t(), None, 2, "9"),
                       Value(t(), None, 3, "has space")])
    g.outputs = [g.params[0]]
    assert messages(g) == [
        "@g: parameter %a is defined twice",
        "@g: parameter name '9' is not a valid IR name (a letter, '_', '$', '.' or '-' first)",
        "@g: parameter name 'has space' is not a valid IR name (a letter, '_', '$', '.' or '-' first)",
    ]


def test_outputs_and_output_names() -> None:
    f, (add, neg) = small()
    g, gb = new_function("g", [("z", t(2))])
    f.outputs = [neg.results[0], g.params[0]]
    f.output_names = ["y"]
    assert messages(f) == ["@f: output 1 is not defined in the function",
                           "@f: 1 output name(s) for 2 output(s)"]


def test_inplace_pairs() -> None:
    f, b = new_function("step", [("w", t(2)), ("m", t(3)), ("g", t(2))])
    w, m, g = f.params
    f.outputs = [b.sub(w, g), b.neg(m)]
    f.attrs["inplace"] = ((0, "w"), (1, "m"))
    verify_function(f)
    f.attrs["inplace"] = ((0, "w"), (0, "g"), (1, "w"), (2, "m"), (1, "v"))
    assert messages(f) == [
        "@step: inplace pair [0, \"g\"]: output 0 is written in place twice",
        "@step: inplace pair [1, \"w\"]: output 1 has type tensor<3xf32>, but %w has type tensor<2xf32>",
        "@step: inplace pair [1, \"w\"]: %w is overwritten twice",
        "@step: inplace pair [2, \"m\"]: there is no output 2",
        "@step: inplace pair [1, \"v\"]: there is no parameter %v",
    ]
    f.attrs["inplace"] = ((0, "w", 1),)
    assert messages(f) == [
        "@step: attribute 'inplace' must be a list of [output index, parameter name] pairs"]


def test_duplicate_function_names() -> None:
    f, _ = small()
    g, _ = small()
    with pytest.raises(VerifyErrors) as info:
        verify_module(Module([f, g]))
    assert [e.message for e in info.value.errors] == ["@f: duplicate function name"]


def test_all_findings_are_raised_together_at_the_users_lines() -> None:
    source = "fn f(x: f32[2], y: f32[3]) {\n    let s = x + y\n    return -s\n}\n"
    register_source("user.dl", source)
    f, b = new_function("f", [("x", t(2)), ("y", t(2))], loc=Location("user.dl", 1, 1))
    with b.at(Location("user.dl", 2, 13, 2, 18)):
        s = b.add(*f.params)
    with b.at(Location("user.dl", 3, 12, 3, 14).as_backward()):
        n = b.neg(s)
    f.outputs = [n]
    f.params[1].type = t(3)
    n.type = t(4)
    with pytest.raises(DlErrors) as info:
        verify_module(Module([f]))
    err = info.value
    assert isinstance(err, VerifyError) and all(isinstance(e, VerifyError) for e in err.errors)
    assert err.render() == (
        "user.dl:2:13: error: dl.add: shapes [2] and [3] do not broadcast: dim 2 vs 3\n"
        "    let s = x + y\n"
        "            ^^^^^\n"
        "user.dl:3:12: error: in backward of this line: dl.neg: result 0 has type tensor<4xf32>, "
        "but the shape rule gives tensor<2xf32>\n"
        "    return -s\n"
        "           ^^")


def test_dense_attribute_values_must_be_numeric() -> None:
    f, b = new_function("f", [])
    c = b.constant(np.array([1.0, 2.0], dtype=np.float32), F32)
    f.outputs = [c]
    f.ops[0].attrs["value"] = "1.0"
    assert messages(f) == ["dl.constant: attribute 'value' expects a number or a dense array, got '1.0'"]
