"""The .dl frontend: parsing to a typed AST, lowering every construct to dl IR,
symbolic dims, user-function inlining, gradients, and the model contract."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import lark
import numpy as np
import pytest

from compiler.diagnostics import DlError, DlErrors
from compiler.ir.core import Function, Module
from compiler.ir.interpreter import interpret
from compiler.ir.types import DType, TensorType
from frontend_dsl import ast, compile_file, compile_source, parse

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.dl"))

F32 = DType.f32


def fn(source: str, name: str | None = None) -> Function:
    module = compile_source(source, "test.dl")
    return module.get(name) if name else module.functions[-1]


def op_names(func: Function) -> list[str]:
    return [op.name for op in func.ops]


def unary_fn(expr: str, params: str = "x: f32[N, 3], y: f32[N, 3]") -> Function:
    return fn(f"fn f({params}) {{ return {expr} }}")


# ---------------------------------------------------------------------------
# Parsing


def walk(node: object):
    yield node
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        for f in dataclasses.fields(node):
            yield from walk(getattr(node, f.name))
    elif isinstance(node, (tuple, list)):
        for item in node:
            yield from walk(item)


EVERYTHING = """
# every construct of the language
fn pair(a: f32[B, 3]) -> (f32[B, 3], f32[]) { return a, sum(a) }
fn helper(a: f32[B, 3], b: f32[]) -> (f32[], f32[B, 3]) {
    let s, t = pair(a)
    return sum(a, axis=[0, 1], keepdims=false) + t, s * b
}
fn g(x: f32[N, 3], k: i32[N]) -> bool[N, 3] {
    let c = -x ** 2 + (x - 1) * 2.5 / x @ transpose(x, perm=[1, 0]) @ x
    return x >= 0.5
}
fn dg = grad(helper, wrt=[a])
fn vg = value_and_grad(helper)
model m {
    input x: f32[N, 3]
    target y: i32[N]
    param w: f32[3, 3] = normal(mean=0.0, std=0.1)
    let h = dense(x @ w, 4, activation=relu, name="hidden", kernel_init=he_normal)
    let z = h[:, 1:3] @ hidden.kernel[0:2, ...] + h[..., None][:, 0, 0][:, None]
    output p = dense(h + z, 2, activation=softmax)
    loss sparse_categorical_crossentropy(p, y, from_logits=false)
    optimizer adam(lr=0.01)
    metrics [accuracy, sparse_categorical_accuracy]
}
"""


@pytest.mark.parametrize("source", [EVERYTHING, *(p.read_text() for p in EXAMPLES)],
                         ids=["everything", *(p.stem for p in EXAMPLES)])
def test_no_lark_tree_survives_the_transformer(source: str) -> None:
    program = parse(source, "t.dl")
    nodes = list(walk(program))
    assert not any(isinstance(n, (lark.Tree, lark.Token)) for n in nodes)
    kinds = {type(n).__name__ for n in nodes}
    if source is EVERYTHING:
        assert {"FnDef", "GradDef", "ModelDef", "Let", "Return", "Binary", "Unary", "Call",
                "Keyword", "ListExpr", "String", "Number", "Name", "InputDecl", "TargetDecl",
                "ParamDecl", "OutputDecl", "LossDecl", "OptimizerDecl", "MetricsDecl", "Index", "Slice",
                "Ellipsis_", "Attribute"} <= kinds


def test_the_everything_source_compiles() -> None:
    module = compile_source(EVERYTHING, "everything.dl")
    assert [f.name for f in module.functions] == ["pair", "helper", "g", "dg", "vg", "predict", "loss",
                                                  "evaluate"]
    assert module.get("vg").output_names == ["helper_0", "helper_1", "d_a", "d_b"]


def test_ast_nodes_carry_spans() -> None:
    program = parse("fn f(x: f32[N]) -> f32[N] {\n    return x * 2.0\n}\n", "s.dl")
    fndef = program.items[0]
    assert isinstance(fndef, ast.FnDef)
    assert (fndef.name.span.line, fndef.name.span.col) == (1, 4)
    ret = fndef.body[0]
    assert isinstance(ret, ast.Return)
    mul = ret.values[0]
    assert isinstance(mul, ast.Binary) and mul.op == "mul"
    assert (mul.span.line, mul.span.col, mul.span.end_col) == (2, 12, 19)
    assert fndef.params[0].type == ast.TypeExpr("f32", ("N",), fndef.params[0].type.span)


def test_precedence_follows_python() -> None:
    ret = parse("fn f(x: f32[]) { return -x ** 2 + x * x @ x < x }", "p.dl").items[0].body[0]
    cmp = ret.values[0]
    assert cmp.op == "lt"
    add = cmp.lhs
    assert add.op == "add"
    assert isinstance(add.lhs, ast.Unary) and add.lhs.operand.op == "pow"   # -(x ** 2)
    assert add.rhs.op == "matmul" and add.rhs.lhs.op == "mul"              # (x * x) @ x


def test_numbers_strings_and_booleans() -> None:
    call = parse('fn f(x: f32[]) { return g(1, 2.0, 1e-3, .5, true, "a\\"b") }', "n.dl").items[0].body[0].values[0]
    values = [a.value for a in call.args]
    assert values == [1, 2.0, 1e-3, 0.5, True, 'a"b']
    assert [getattr(a, "is_float", None) for a in call.args[:4]] == [False, True, True, True]


def test_keywords_are_not_reserved_where_a_name_is_expected() -> None:
    f = fn("fn loss(input: f32[N], output: f32[N]) { let model = input + output\n return model }")
    assert f.name == "loss" and op_names(f) == ["add"]


# ---------------------------------------------------------------------------
# Expressions -> ops


@pytest.mark.parametrize("expr, op", [
    ("x + y", "add"), ("x - y", "sub"), ("x * y", "mul"), ("x / y", "div"),
    ("x ** y", "pow"), ("x == y", "eq"), ("x != y", "ne"), ("x < y", "lt"),
    ("x <= y", "le"), ("x > y", "gt"), ("x >= y", "ge"), ("-x", "neg"),
])
def test_operators_lower_to_ops(expr: str, op: str) -> None:
    f = unary_fn(expr)
    assert op_names(f) == [op]
    assert f.outputs[0].type.shape == ("N", 3)


def test_matmul_operator() -> None:
    f = unary_fn("x @ w", "x: f32[N, 3], w: f32[3, 5]")
    assert op_names(f) == ["matmul"]
    assert f.outputs[0].type == TensorType(F32, ("N", 5))


def test_literals_take_the_dtype_of_the_other_operand() -> None:
    f = unary_fn("x * 2", "x: f64[N]")
    const = f.ops[0]
    assert const.name == "constant" and const.attrs["dtype"] is DType.f64
    assert const.result.type == TensorType(DType.f64, ())
    g = unary_fn("k + 1", "k: i32[N]")
    assert g.ops[0].attrs["dtype"] is DType.i32 and g.outputs[0].type.dtype is DType.i32


def test_literal_expressions_fold_at_compile_time() -> None:
    f = unary_fn("x * (2.0 * 3.0 - 1)", "x: f32[N]")
    assert op_names(f) == ["constant", "mul"]
    assert float(f.ops[0].attrs["value"]) == 5.0
    g = unary_fn("-(2 ** 3)", "x: f32[N]")
    assert op_names(g) == ["constant"] and int(g.ops[0].attrs["value"]) == -8


def test_float_literal_with_int_tensor_is_an_error() -> None:
    with pytest.raises(DlError, match="float literal 2.5 used with an i32 tensor"):
        unary_fn("k * 2.5", "k: i32[N]")


def test_ops_carry_the_source_location_of_their_expression() -> None:
    module = compile_source("fn f(x: f32[N], y: f32[N]) -> f32[N] {\n  let z = exp(x)\n  return z + y\n}\n",
                            "loc.dl")
    exp, add = module.get("f").ops
    assert (exp.loc.file, exp.loc.line, exp.loc.col, exp.loc.end_col) == ("loc.dl", 2, 11, 17)
    assert (add.loc.line, add.loc.col, add.loc.end_col) == (3, 10, 15)


# ---------------------------------------------------------------------------
# Calls of built-in ops


def test_reduction_with_axis_alias_and_keepdims() -> None:
    f = unary_fn("sum(x * 2.0, axis=1, keepdims=false)")
    s = f.ops[-1]
    assert s.name == "sum" and s.attrs["axes"] == (1,) and s.attrs["keepdims"] is False
    assert f.outputs[0].type == TensorType(F32, ("N",))


def test_attributes_by_position_after_the_tensors() -> None:
    f = unary_fn("mean(x, [0, 1], true)")
    assert f.ops[0].attrs == {"axes": (0, 1), "keepdims": True}
    assert f.outputs[0].type.shape == (1, 1)


def test_dtype_dims_and_int_attributes() -> None:
    f = unary_fn("cast(x, i32)")
    assert f.ops[0].attrs["dtype"] is DType.i32
    g = unary_fn("reshape(x, shape=[N, 3, 1])")
    assert g.ops[0].attrs["shape"] == ("N", 3, 1)
    h = unary_fn("one_hot(k, 10)", "k: i32[N]")
    assert h.outputs[0].type == TensorType(F32, ("N", 10))
    t = unary_fn("transpose(x)")
    assert t.outputs[0].type.shape == (3, "N")


def test_literal_operands_of_calls() -> None:
    f = unary_fn("maximum(x, 0.0)")
    assert op_names(f) == ["constant", "maximum"]
    g = unary_fn("select(x > 0.0, x, 0.0)")
    consts = [op for op in g.ops if op.name == "constant"]
    assert [c.attrs["dtype"] for c in consts] == [F32, F32]   # 0.0 becomes f32, not bool


def test_unknown_dim_in_a_shape_attribute() -> None:
    with pytest.raises(DlError, match="unknown dim 'K'"):
        unary_fn("reshape(x, shape=[K, 3])")


def test_dims_are_not_values() -> None:
    with pytest.raises(DlError, match="'N' is a dim, not a value"):
        unary_fn("x * N")


# ---------------------------------------------------------------------------
# User functions


def test_user_functions_are_inlined_with_symbols_renamed() -> None:
    module = compile_source("""
fn flat(a: f32[B, 2, 3]) -> f32[B, 6] { return reshape(a, [B, 6]) * 2.0 }
fn caller(x: f32[N, 2, 3]) -> f32[N, 6] { return flat(x) + 1.0 }
""", "inl.dl")
    caller = module.get("caller")
    assert op_names(caller) == ["reshape", "constant", "mul", "constant", "add"]
    assert caller.ops[0].attrs["shape"] == ("N", 6)
    assert caller.ops[0].loc.line == 2           # inlined ops keep the callee's location
    x = np.arange(12, dtype=np.float32).reshape(2, 2, 3)
    (out,) = interpret(caller, [x])
    np.testing.assert_allclose(out, x.reshape(2, 6) * 2 + 1)


def test_static_dims_bind_symbols_of_the_callee() -> None:
    f = fn("""
fn scale(v: f32[K]) -> f32[K] { return v * 3.0 }
fn use(w: f32[5]) -> f32[5] { return scale(w) }
""", "use")
    assert f.outputs[0].type == TensorType(F32, (5,))


def test_multiple_returns_and_destructuring_let() -> None:
    module = compile_source("""
fn stats(x: f32[N]) -> (f32[], f32[]) { return mean(x), max(x) }
fn spread(x: f32[N]) -> f32[] {
    let m, top = stats(x)
    return top - m
}
""", "multi.dl")
    stats = module.get("stats")
    assert len(stats.outputs) == 2
    (out,) = interpret(module.get("spread"), [np.array([1.0, 2.0, 6.0], np.float32)])
    assert out == pytest.approx(3.0)


def test_keyword_arguments_to_user_functions() -> None:
    f = fn("""
fn sub2(a: f32[N], b: f32[N]) -> f32[N] { return a - b }
fn g(x: f32[N], y: f32[N]) -> f32[N] { return sub2(b=x, a=y) }
""", "g")
    (out,) = interpret(f, [np.array([1.0], np.float32), np.array([5.0], np.float32)])
    assert out[0] == 4.0


def test_argument_type_mismatch_when_calling_a_user_function() -> None:
    with pytest.raises(DlError, match="argument 'b' of 'pair' expects f32\\[K\\], got f32\\[M\\]: dim K is N"):
        compile_source("""
fn pair(a: f32[K], b: f32[K]) -> f32[K] { return a + b }
fn g(x: f32[N], y: f32[M]) -> f32[N] { return pair(x, y) }
""", "mm.dl")


def test_functions_may_be_called_before_their_definition() -> None:
    module = compile_source("""
fn first(x: f32[N]) -> f32[N] { return second(x) }
fn second(x: f32[N]) -> f32[N] { return exp(x) }
""", "order.dl")
    assert [f.name for f in module.functions] == ["first", "second"]


def test_return_type_checked_with_symbols() -> None:
    with pytest.raises(DlError, match="declared f32\\[N, 3\\], computed f32\\[3, N\\]"):
        fn("fn f(x: f32[N, 3]) -> f32[N, 3] { return transpose(x) }")


def test_missing_and_unreachable_returns() -> None:
    with pytest.raises(DlError, match="has no 'return'"):
        fn("fn f(x: f32[N]) { let y = x }")
    with pytest.raises(DlError, match="unreachable statement"):
        fn("fn f(x: f32[N]) { return x\n let y = x }")


# ---------------------------------------------------------------------------
# Gradients


GRAD_SOURCE = """
fn loss(x: f32[N, 3], w: f32[3], b: f32[]) -> f32[] { return mean(square(x @ w + b)) }
fn dloss = grad(loss, wrt=[w, b])
fn vg = value_and_grad(loss, wrt=[w])
fn dall = grad(loss)
"""


def test_grad_and_value_and_grad_functions() -> None:
    module = compile_source(GRAD_SOURCE, "g.dl")
    assert [f.name for f in module.functions] == ["loss", "dloss", "vg", "dall"]
    dloss, vg, dall = module.get("dloss"), module.get("vg"), module.get("dall")
    assert dloss.output_names == ["d_w", "d_b"]
    assert [t for t in dloss.output_types] == [TensorType(F32, (3,)), TensorType(F32, ())]
    assert vg.output_names == ["loss", "d_w"]
    assert dall.output_names == ["d_x", "d_w", "d_b"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    w = rng.normal(size=3).astype(np.float32)
    b = np.float32(0.5)
    dw, db = interpret(dloss, [x, w, np.asarray(b)])
    r = x @ w + b
    np.testing.assert_allclose(dw, 2 * x.T @ r / 4, rtol=1e-5)
    np.testing.assert_allclose(db, 2 * r.mean(), rtol=1e-5)


def test_deferred_gradients_are_placeholders_for_the_autodiff_pass() -> None:
    module = compile_source(GRAD_SOURCE, "g.dl", defer_grads=True)
    placeholder = module.get("dloss")
    assert placeholder.ops == [] and placeholder.outputs == []
    assert placeholder.attrs["grad_of"] == {"fn": "loss", "wrt": ["w", "b"], "with_value": False}
    assert module.get("vg").attrs["grad_of"]["with_value"] is True
    assert [p.name for p in placeholder.params] == ["x", "w", "b"]


def test_gradient_functions_can_be_called_and_differentiated_again() -> None:
    module = compile_source("""
fn cube(x: f32[]) -> f32[] { return x * x * x }
fn d1 = grad(cube)
fn d2 = grad(d1)
fn twice_slope(x: f32[]) -> f32[] { return d1(x) * 2.0 }
""", "gg.dl")
    x = np.asarray(np.float32(2.0))
    assert interpret(module.get("d1"), [x])[0] == pytest.approx(12.0)
    assert interpret(module.get("d2"), [x])[0] == pytest.approx(12.0)
    assert interpret(module.get("twice_slope"), [x])[0] == pytest.approx(24.0)


def test_grad_errors() -> None:
    with pytest.raises(DlError, match="unknown function 'nothere'"):
        compile_source("fn d = grad(nothere)", "e.dl")
    with pytest.raises(DlError, match="must be grad"):
        compile_source("fn f(x: f32[]) -> f32[] { return x }\nfn d = hessian(f)", "e.dl")
    with pytest.raises(DlError, match="defines a function"):
        compile_source("fn f(x: f32[]) -> f32[] { return grad(f) }", "e.dl")


# ---------------------------------------------------------------------------
# Models


def test_mnist_model_follows_the_contract() -> None:
    module = compile_file(ROOT / "examples" / "mnist_mlp.dl")
    assert [f.name for f in module.functions] == ["predict", "loss", "evaluate"]
    params = ["dense_1.kernel", "dense_1.bias", "dense_2.kernel", "dense_2.bias"]
    assert module.attrs["model"] == {
        "name": "mnist_mlp",
        "inputs": ["x"],
        "targets": ["y"],
        "params": [{"name": "dense_1.kernel", "init": {"name": "glorot_uniform"}},
                   {"name": "dense_1.bias", "init": {"name": "zeros"}},
                   {"name": "dense_2.kernel", "init": {"name": "glorot_uniform"}},
                   {"name": "dense_2.bias", "init": {"name": "zeros"}}],
        "outputs": ["probs"],
        "loss": {"name": "sparse_categorical_crossentropy"},
        "optimizer": {"name": "rmsprop", "learning_rate": 0.001, "rho": 0.9, "momentum": 0.0,
                      "epsilon": 1e-7, "centered": False},
        "metrics": ["accuracy"],
        "layers": [{"name": "dense_1", "kind": "dense", "output": "f32[N, 512]",
                    "tensors": ["dense_1.kernel", "dense_1.bias"]},
                   {"name": "dense_2", "kind": "dense", "output": "f32[N, 10]",
                    "tensors": ["dense_2.kernel", "dense_2.bias"]}],
    }
    predict, loss, evaluate = module.functions
    assert [p.name for p in predict.params] == [*params, "x"]
    assert [p.name for p in loss.params] == [*params, "x", "y"]
    assert [p.name for p in evaluate.params] == [*params, "x", "y"]
    assert predict.param_types[:4] == [TensorType(F32, (784, 512)), TensorType(F32, (512,)),
                                       TensorType(F32, (512, 10)), TensorType(F32, (10,))]
    assert predict.params[4].type == TensorType(F32, ("N", 784))
    assert loss.params[5].type == TensorType(DType.i32, ("N",))
    assert predict.output_names == ["probs"]
    assert predict.output_types == [TensorType(F32, ("N", 10))]
    assert op_names(predict) == ["matmul", "add", "relu", "matmul", "add", "softmax"]
    assert loss.output_types == [TensorType(F32, ())] and loss.output_names == ["loss"]
    assert evaluate.output_names == ["loss", "accuracy"]
    assert evaluate.output_types == [TensorType(F32, ()), TensorType(F32, ())]
    assert predict.ops[0].loc.line == 13 and loss.ops[0].loc.line == 13


def test_linear_regression_functions_compute_what_they_say() -> None:
    module = compile_file(ROOT / "examples" / "linear_regression.dl")
    w = np.array([[2.0]], np.float32)
    b = np.array([3.0], np.float32)
    x = np.array([[0.0], [1.0], [2.0]], np.float32)
    y = np.array([[3.0], [5.5], [6.0]], np.float32)
    (pred,) = interpret(module.get("predict"), [w, b, x])
    np.testing.assert_allclose(pred, 2 * x + 3)
    loss, mae = interpret(module.get("evaluate"), [w, b, x, y])
    assert loss == pytest.approx(np.mean((pred - y) ** 2))
    assert mae == pytest.approx(np.mean(np.abs(pred - y)))


def model_source(output_type: str, target_type: str, metrics: str, loss: str = "mse(p, y)") -> str:
    return f"""
model m {{
    input x: {output_type}
    target y: {target_type}
    output p = x * 1.0
    loss {loss}
    optimizer sgd
    metrics [{metrics}]
}}
"""


def evaluate(source: str, x: np.ndarray, y: np.ndarray) -> list[float]:
    module = compile_source(source, "metrics.dl")
    return [float(v) for v in interpret(module.get("evaluate"), [x, y])[1:]]


def test_accuracy_picks_binary_sparse_or_categorical() -> None:
    p = np.array([[0.2], [0.7], [0.9], [0.4]], np.float32)
    t = np.array([[0.0], [1.0], [0.0], [0.0]], np.float32)
    assert evaluate(model_source("f32[N, 1]", "f32[N, 1]", "accuracy, binary_accuracy"), p, t) == [0.75, 0.75]

    probs = np.array([[0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.3, 0.5]], np.float32)
    labels = np.array([1, 0, 0], np.int32)
    src = model_source("f32[N, 3]", "i32[N]", "accuracy, sparse_categorical_accuracy",
                       loss="sparse_categorical_crossentropy(p, y)")
    assert evaluate(src, probs, labels) == pytest.approx([2 / 3, 2 / 3])

    onehot = np.eye(3, dtype=np.float32)[[1, 2, 2]]
    src = model_source("f32[N, 3]", "f32[N, 3]", "accuracy, categorical_accuracy",
                       loss="categorical_crossentropy(p, y)")
    assert evaluate(src, probs, onehot) == pytest.approx([2 / 3, 2 / 3])


def test_regression_metrics() -> None:
    p = np.array([[1.0], [2.0], [4.0]], np.float32)
    t = np.array([[1.5], [2.0], [2.0]], np.float32)
    mae, mse = evaluate(model_source("f32[N, 1]", "f32[N, 1]", "mae, mse"), p, t)
    assert mae == pytest.approx(np.mean(np.abs(p - t)))
    assert mse == pytest.approx(np.mean((p - t) ** 2))


def test_dense_layer_options() -> None:
    module = compile_source("""
model m {
    input x: f32[N, 4]
    target y: f32[N, 2]
    output p = dense(x, 2, activation=tanh, name="head", kernel_init=uniform(low=-1.0, high=1.0),
                     bias_init=constant(value=0.5))
    output q = dense(x, 3, use_bias=false)
    loss mse(p, y)
    optimizer sgd(lr=0.1, momentum=0.9, nesterov=true)
}
""", "dense.dl")
    model = module.attrs["model"]
    assert model["params"] == [
        {"name": "head.kernel", "init": {"name": "uniform", "low": -1.0, "high": 1.0}},
        {"name": "head.bias", "init": {"name": "constant", "value": 0.5}},
        {"name": "dense_2.kernel", "init": {"name": "glorot_uniform"}},
    ]
    assert model["optimizer"] == {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True}
    assert model["outputs"] == ["p", "q"] and model["metrics"] == []
    predict = module.get("predict")
    assert op_names(predict) == ["matmul", "add", "tanh", "matmul"]
    assert predict.output_types == [TensorType(F32, ("N", 2)), TensorType(F32, ("N", 3))]
    # the loss uses only p: q's ops are not in it
    assert op_names(module.get("loss")) == ["matmul", "add", "tanh", "mse"]


def test_default_param_initializers_and_explicit_params() -> None:
    module = compile_source("""
model m {
    input x: f32[N, 2]
    target y: f32[N, 1]
    param w: f32[2, 1]
    param b: f32[1]
    output p = sigmoid(x @ w + b)
    loss binary_crossentropy(p, y, from_logits=false)
    optimizer rmsprop
}
""", "p.dl")
    model = module.attrs["model"]
    assert model["params"] == [{"name": "w", "init": {"name": "glorot_uniform"}},
                               {"name": "b", "init": {"name": "zeros"}}]
    assert model["loss"] == {"name": "binary_crossentropy", "from_logits": False}
    assert model["optimizer"]["name"] == "rmsprop" and model["optimizer"]["learning_rate"] == 0.001


@pytest.mark.parametrize("body, message", [
    ("param w: f32[N, 1]", "needs a static shape"),
    ("output p = dense(x, 0)", "positive number of units"),
    ("output p = dense(x, 2, activation=swoosh)", "unknown activation 'swoosh'"),
    ("output p = dense(x, 2, bias=1)", "unknown keyword argument 'bias' for 'dense'"),
    ("optimizer sgd(0.1)", "given by keyword"),
    ("optimizer sgd(nesterov=0.5)", "must be true or false"),
    ("param w: f32[1] = normal(sd=1.0)", "unknown keyword argument 'sd' for initializer 'normal'"),
])
def test_model_statement_errors(body: str, message: str) -> None:
    source = f"model m {{\n input x: f32[N, 2]\n target y: f32[N, 2]\n {body}\n}}"
    with pytest.raises(DlError) as info:
        compile_source(source, "m.dl")
    errors = info.value.errors if isinstance(info.value, DlErrors) else [info.value]
    assert any(message in e.message for e in errors), [e.message for e in errors]


@pytest.mark.parametrize("missing, message", [
    ("output", "has no output"), ("loss", "has no loss"), ("optimizer", "has no optimizer"),
])
def test_incomplete_models(missing: str, message: str) -> None:
    lines = {"output": "output p = x * 2.0", "loss": "loss mse(x, y)", "optimizer": "optimizer sgd"}
    del lines[missing]
    source = "model m {\n input x: f32[N]\n target y: f32[N]\n " + "\n ".join(lines.values()) + "\n}"
    with pytest.raises(DlError, match=message):
        compile_source(source, "m.dl")


def test_model_functions_clash_with_user_functions() -> None:
    source = ("fn loss(a: f32[]) -> f32[] { return a }\n"
              "model m { input x: f32[N]\n output p = x\n loss mean(p)\n optimizer sgd }")
    with pytest.raises(DlError, match="function 'loss' clashes"):
        compile_source(source, "c.dl")


def test_models_can_call_user_functions() -> None:
    module = compile_file(ROOT / "examples" / "sigmoid_chain.dl")
    assert op_names(module.get("predict")) == ["mul", "sigmoid"] * 3
    assert [p.name for p in module.get("predict").params] == ["w1", "w2", "w3", "x"]


# ---------------------------------------------------------------------------
# Examples


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_compiles_with_a_model(path: Path) -> None:
    module = compile_file(path)
    assert isinstance(module, Module)
    assert {"predict", "loss", "evaluate"} <= {f.name for f in module.functions}
    model = module.attrs["model"]
    assert model["name"] == path.stem
    n = len(model["params"])
    predict = module.get("predict")
    assert [p.name for p in predict.params[:n]] == [p["name"] for p in model["params"]]
    assert all(p.type.is_static for p in predict.params[:n])
    assert any(s == "N" for p in predict.params[n:] for s in p.type.symbols)
    assert path.read_text().startswith("#")   # each example says what it is


def test_missing_file() -> None:
    with pytest.raises(DlError, match="no such file"):
        compile_file(ROOT / "examples" / "does_not_exist.dl")
