"""``x[...]`` indexing and ``layer.param`` names in .dl source."""

from __future__ import annotations

import numpy as np
import pytest

import runtime
from compiler.diagnostics import DlError, DlErrors
from compiler.ir.interpreter import interpret
from frontend_dsl import compile_source

X = np.arange(4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3) - 20.0

CASES = {
    "x[0]": lambda x: x[0],
    "x[-1]": lambda x: x[-1],
    "x[1:3]": lambda x: x[1:3],
    "x[:, 1:4:2]": lambda x: x[:, 1:4:2],
    "x[::-1]": lambda x: x[::-1],
    "x[:, -2:]": lambda x: x[:, -2:],
    "x[:, :, 1]": lambda x: x[:, :, 1],
    "x[..., 0]": lambda x: x[..., 0],
    "x[1, ..., 2]": lambda x: x[1, ..., 2],
    "x[:, None]": lambda x: x[:, None],
    "x[None, ..., None]": lambda x: x[None, ..., None],
    "x[2, 1:, None, ::2]": lambda x: x[2, 1:, None, ::2],
    "x[:, 10:20]": lambda x: x[:, 10:20],          # empty, as numpy
    "x[3:1]": lambda x: x[3:1],
    "-x[0, 0]": lambda x: -x[0, 0],
    "x[0][1][2]": lambda x: x[0][1][2],
    "x[1, 2, 0]": lambda x: x[1, 2, 0],            # rank 0
}


@pytest.mark.parametrize("expr", CASES)
def test_static_indexing_matches_numpy_natively_and_in_the_interpreter(expr: str) -> None:
    want = CASES[expr](X)
    source = f"fn f(x: f32[4, 5, 3]) {{ return {expr} }}"
    module = compile_source(source, "i.dl")
    got = interpret(module.get("f"), [X])[0]
    assert got.shape == want.shape and np.array_equal(got, want)
    native = runtime.compile(source).f(X)
    assert native.shape == want.shape and np.array_equal(native, want)


def test_indexing_a_symbolic_batch_and_gathering_with_a_tensor() -> None:
    mod = runtime.compile("""
fn f(x: f32[N, 5], i: i32[4]) -> (f32[N], f32[N, 4], f32[N, 2], f32[5]) {
    return x[:, 4], x[:, i], x[..., 1:3], x[i[0:1], :][0]
}""")
    x = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    i = np.array([4, 0, -1, 2], np.int32)
    a, b, c, d = mod.f(x, i)
    np.testing.assert_array_equal(a, x[:, 4])
    np.testing.assert_array_equal(b, x[:, i])
    np.testing.assert_array_equal(c, x[..., 1:3])
    np.testing.assert_array_equal(d, x[i[0:1], :][0])


def test_an_index_gradient_is_a_zero_filled_scatter() -> None:
    mod = runtime.compile("""
fn f(x: f32[4, 3]) -> f32[] { return sum(x[1:3, ::2] * 2.0) + x[0, 1] }
fn df = grad(f, wrt=[x])
""")
    g = mod.df(np.ones((4, 3), np.float32))
    want = np.zeros((4, 3), np.float32)
    want[1:3, ::2] = 2.0
    want[0, 1] += 1.0
    np.testing.assert_array_equal(g, want)


def errors(source: str) -> list[str]:
    with pytest.raises(DlError) as info:
        compile_source(source, "e.dl")
    found = info.value.errors if isinstance(info.value, DlErrors) else [info.value]
    return [f"{e.loc.line}:{e.loc.col}: {e.message}" if e.loc else e.message for e in found]


@pytest.mark.parametrize("expr, message", [
    ("x[0, 0, 0]", "too many indices for f32[4, 5]"),
    ("x[4]", "index 4 is out of range for axis 0 of f32[4, 5] (size 4)"),
    ("x[-5]", "index -5 is out of range"),
    ("x[::0]", "slice step cannot be zero"),
    ("x[..., ...]", "only one '...'"),
    ("x[1.5]", "an index must be a compile-time integer"),
    ("x[x]", "an index tensor must hold integers"),
    ("x[0, i]", "cannot be mixed with integer or None indices"),
    ("x[i, i]", "only one integer-tensor index"),
    ("3[0]", "a number cannot be indexed"),
    ("y[0]", "an integer index into dim N (axis 0 of f32[N]) is not supported"),
    ("y[N*N:]", "can multiply a dim by an integer, not by another dim"),
    ("y[:N//0]", "a dim can only be divided (//) by a positive integer"),
    ("y[:N/2]", "built from dims, integers, +, -, * and //"),
    ("y[::N]", "a slice step must be a compile-time integer"),
])
def test_index_errors_are_located(expr: str, message: str) -> None:
    found = errors(f"fn f(x: f32[4, 5], i: i32[2], y: f32[N]) {{\n  return {expr}\n}}")
    assert any(message in m and m.startswith("2:") for m in found), found


MODEL = """
model m {{
    input x: f32[N, 4]
    target y: f32[N, 2]
    let h = dense(x, 3, activation=tanh, name="hidden")
    output p = dense(h, 2)
    loss mse(p, y) + {penalty}
    optimizer sgd(lr=0.1)
}}
"""


def test_layer_parameters_are_names_in_expressions() -> None:
    module = compile_source(MODEL.format(penalty="0.01 * sum(square(hidden.kernel)) + sum(dense_2.bias)"), "m.dl")
    loss = module.get("loss")
    names = [p.name for p in loss.params]
    assert names[:4] == ["hidden.kernel", "hidden.bias", "dense_2.kernel", "dense_2.bias"]
    rng = np.random.default_rng(0)
    args = [rng.standard_normal([int(d) for d in p.type.concrete_shape({"N": 5})]).astype(np.float32)
            for p in loss.params]
    w1, b1, w2, b2, x, y = args
    p = np.tanh(x @ w1 + b1) @ w2 + b2
    want = np.mean((p - y) ** 2) + 0.01 * np.sum(w1 ** 2) + np.sum(b2)
    assert interpret(loss, args)[0] == pytest.approx(want, rel=1e-5)


def test_a_model_with_a_weight_penalty_trains(tmp_path) -> None:
    path = tmp_path / "m.dl"
    path.write_text(MODEL.format(penalty="0.001 * sum(square(hidden.kernel))"))
    model = runtime.load_model(str(path), seed=0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = np.stack([x[:, 0] - x[:, 1], x[:, 2] * 0.5], axis=1).astype(np.float32)
    history = model.fit(x, y, epochs=30, batch_size=16, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize("penalty, message", [
    ("sum(hidden.gamma)", "no parameter 'hidden.gamma'"),
    ("sum(h.kernel)", "'h' is a value, not a layer"),
    ("sum(later.kernel)", "parameters so far: hidden.kernel, hidden.bias"),
])
def test_unknown_layer_parameters(penalty: str, message: str) -> None:
    found = errors(MODEL.format(penalty=penalty))
    assert any(message in m for m in found), found


def test_attributes_outside_a_model() -> None:
    found = errors("fn f(x: f32[3]) {\n  return x + w.kernel\n}")
    assert any("exist only inside a model" in m for m in found), found
