"""Layers of model blocks: one definition each (frontend_dsl/layers/), found by name."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.diagnostics import DlError, DlErrors
from compiler.initializers import INITIALIZERS, compute_fans, initialize
from compiler.ir.interpreter import interpret
from frontend_dsl import compile_source
from frontend_dsl.layers import LAYERS


def model(body: str, functions: str = "") -> str:
    return (f"{functions}\nmodel m {{\n input x: f32[N, 4]\n target y: f32[N, 3]\n {body}\n"
            " loss mse(p, y)\n optimizer sgd\n}\n")


def messages(source: str) -> list[str]:
    with pytest.raises(DlError) as info:
        compile_source(source, "m.dl")
    errors = info.value.errors if isinstance(info.value, DlErrors) else [info.value]
    return [e.message for e in errors]


def predict(module, x: np.ndarray) -> np.ndarray:
    f = module.get("predict")
    rng = np.random.default_rng(0)
    params = [rng.standard_normal([int(d) for d in p.type.shape]).astype(np.float32)
              for p in f.params[:-1]]
    return params, interpret(f, [*params, x])[0]


def test_the_layer_table_holds_dense_with_its_build_rule() -> None:
    assert "dense" in LAYERS and LAYERS["dense"].build is not None
    assert LAYERS["dense"].aliases == {"kernel_initializer": "kernel_init", "bias_initializer": "bias_init"}


def test_activation_may_be_a_function_of_the_file() -> None:
    module = compile_source(model("output p = dense(x, 3, activation=mish)",
                                  "fn mish(t: f32[N, K]) -> f32[N, K] { return t * tanh(t) }"), "m.dl")
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    (w, b), p = predict(module, x)
    h = x @ w + b
    np.testing.assert_allclose(p, h * np.tanh(h), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name, numpy_fn", [
    ("sigmoid", lambda h: 1 / (1 + np.exp(-h))),
    ("log_softmax", lambda h: h - h.max(-1, keepdims=True)
     - np.log(np.exp(h - h.max(-1, keepdims=True)).sum(-1, keepdims=True))),
    ("abs", np.abs),
    ("swish", lambda h: h / (1 + np.exp(-h))),           # an alias of silu
    ("softplus", lambda h: np.log1p(np.exp(h))),
    ("linear", lambda h: h),
])
def test_activation_may_be_any_op_of_one_tensor(name, numpy_fn) -> None:
    module = compile_source(model(f"output p = dense(x, 3, activation={name})"), "m.dl")
    x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    (w, b), p = predict(module, x)
    np.testing.assert_allclose(p, numpy_fn(x @ w + b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation, functions, message", [
    ("swoosh", "", "unknown activation 'swoosh'"),
    ("sum", "", "unknown activation 'sum'"),                      # a reduction, not elementwise
    ("two", "fn two(a: f32[N, K], b: f32[N, K]) -> f32[N, K] { return a + b }",
     "as an activation it must take one tensor"),
    ("first", "fn first(a: f32[N, K]) -> f32[N] { return sum(a, axis=1) }",
     "it must keep the shape and dtype"),
    ("3", "", "must name an activation"),
])
def test_activation_errors(activation: str, functions: str, message: str) -> None:
    found = messages(model(f"output p = dense(x, 3, activation={activation})", functions))
    assert any(message in m for m in found), found


def test_keras_keyword_names_and_lecun_initializers() -> None:
    module = compile_source(model(
        "output p = dense(x, 3, kernel_initializer=lecun_normal, bias_initializer=ones)"), "m.dl")
    assert module.attrs["model"]["params"] == [
        {"name": "dense_1.kernel", "init": {"name": "lecun_normal"}},
        {"name": "dense_1.bias", "init": {"name": "ones"}},
    ]
    found = messages(model("output p = dense(x, 3, kernel_init=zeros, kernel_initializer=ones)"))
    assert any("given twice" in m for m in found), found


@pytest.mark.parametrize("name, bound", [("lecun_uniform", "uniform"), ("lecun_normal", "normal")])
def test_lecun_initializers_have_kerass_scale(name: str, bound: str) -> None:
    assert name in INITIALIZERS
    shape = (400, 300)
    fan_in, _ = compute_fans(shape)
    w = initialize({"name": name}, shape, np.float64, np.random.default_rng(0))
    if bound == "uniform":
        limit = np.sqrt(3.0 / fan_in)
        assert np.abs(w).max() <= limit and np.abs(w).max() > 0.99 * limit
        assert np.std(w) == pytest.approx(limit / np.sqrt(3), rel=0.02)
    else:   # truncated at two std of the untruncated normal, then rescaled to std sqrt(1/fan_in)
        assert np.std(w) == pytest.approx(np.sqrt(1.0 / fan_in), rel=0.02)


def test_pooling_layers_take_kerass_arguments_inside_and_outside_models() -> None:
    import runtime

    mod = runtime.compile("""
fn f(x: f32[N, 6, 5, 3]) -> (f32[N, 3, 2, 3], f32[N, 2, 2, 3], f32[N, 3, 3, 3]) {
    return max_pool(x, 2), avg_pool(x, pool_size=[3, 2], strides=[3, 2]), max_pool(x, 2, padding=same)
}""")
    x = np.random.default_rng(0).standard_normal((2, 6, 5, 3)).astype(np.float32)
    a, b, c = mod.f(x)
    np.testing.assert_array_equal(a, x[:, :6, :4].reshape(2, 3, 2, 2, 2, 3).max(axis=(2, 4)))
    np.testing.assert_allclose(b, x[:, :6, :4].reshape(2, 2, 3, 2, 2, 3).mean(axis=(2, 4)), rtol=1e-6)
    # "same": one extra column of padding on the right, never read
    padded = np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 0)), constant_values=-np.inf)
    np.testing.assert_array_equal(c, padded.reshape(2, 3, 2, 3, 2, 3).max(axis=(2, 4)))


@pytest.mark.parametrize("call, message", [
    ("max_pool(x, 2)", "takes NHWC images"),
    ("max_pool(y, 2, padding=full)", "padding must be 'valid', 'same'"),
    ("max_pool(y, [2, 2, 2])", "takes an int or 2 ints"),
])
def test_pooling_layer_errors(call: str, message: str) -> None:
    with pytest.raises(DlError) as info:
        compile_source(f"fn f(x: f32[N, 4], y: f32[N, 4, 4, 1]) {{ return {call} }}", "p.dl")
    errors = info.value.errors if isinstance(info.value, DlErrors) else [info.value]
    assert any(message in e.message for e in errors), [e.message for e in errors]


def test_the_conv2d_layer_creates_hwio_kernels_and_the_op_stays_callable() -> None:
    from compiler.ir.interpreter import interpret as run

    module = compile_source("""
fn raw(x: f32[N, 6, 6, 2], w: f32[3, 3, 2, 4]) -> f32[N, 4, 4, 4] { return conv2d(x, w) }
model m {
    input x: f32[N, 6, 6, 2]
    target y: i32[N]
    let c = conv2d(x, filters=4, kernel=3, padding=same, activation=relu, name="c1")
    let d = conv2d(c, 3, kernel_size=[2, 3], strides=2, use_bias=false)
    output p = dense(flatten(d), 2, activation=softmax)
    loss sparse_categorical_crossentropy(p, y)
    optimizer sgd
}""", "c.dl")
    params = module.attrs["model"]["params"]
    assert [p["name"] for p in params] == ["c1.kernel", "c1.bias", "conv2d_2.kernel", "dense_1.kernel",
                                           "dense_1.bias"]
    predict = module.get("predict")
    assert [tuple(p.type.shape) for p in predict.params[:3]] == [(3, 3, 2, 4), (4,), (2, 3, 4, 3)]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 6, 2)).astype(np.float32)
    k1 = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)
    b1 = rng.standard_normal(4).astype(np.float32)
    k2 = rng.standard_normal((2, 3, 4, 3)).astype(np.float32)

    def conv(img, k, pad, stride):
        img = np.pad(img, ((0, 0), pad[0], pad[1], (0, 0)))
        kh, kw = k.shape[:2]
        oh, ow = (img.shape[1] - kh) // stride + 1, (img.shape[2] - kw) // stride + 1
        out = np.zeros((img.shape[0], oh, ow, k.shape[3]), np.float64)
        for i in range(oh):
            for j in range(ow):
                patch = img[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
                out[:, i, j] = np.tensordot(patch, k, axes=([1, 2, 3], [0, 1, 2]))
        return out

    c = np.maximum(conv(x, k1, ((1, 1), (1, 1)), 1) + b1, 0)
    d = conv(c, k2, ((0, 0), (0, 0)), 2)
    got = run(module.get("raw"), [x, k1])[0]
    np.testing.assert_allclose(got, conv(x, k1, ((0, 0), (0, 0)), 1), rtol=1e-4, atol=1e-4)
    full = module.get("predict")
    w3 = rng.standard_normal((18, 2)).astype(np.float32)      # d: [2, 3, 2, 3]
    b3 = np.zeros(2, np.float32)
    probs = run(full, [k1, b1, k2, w3, b3, x])[0]
    z = d.reshape(2, -1) @ w3
    e = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(1, keepdims=True), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("call, message", [
    ("conv2d(y, filters=4, kernel=3)", "takes float NHWC images"),
    ("conv2d(x, filters=3, kernel=3, groups=2)", "groups dividing"),
    ("conv2d(x, filters=4, kernel=[3, 3, 3])", "takes an int or 2 ints"),
    ("conv2d(x, filters=4, kernel=3, padding=full)", "padding must be 'valid', 'same'"),
    ("conv2d(x, filters=4)", "'conv2d' takes x, filters, kernel"),
])
def test_conv2d_layer_errors(call: str, message: str) -> None:
    source = (f"model m {{\n input x: f32[N, 6, 6, 2]\n input y: f32[N, 4]\n target t: f32[N, 1]\n"
              f" let c = {call}\n output p = dense(flatten(c), 1)\n loss mse(p, t)\n optimizer sgd\n}}")
    with pytest.raises(DlError) as info:
        compile_source(source, "c.dl")
    errors = info.value.errors if isinstance(info.value, DlErrors) else [info.value]
    assert any(message in e.message for e in errors), [e.message for e in errors]


def test_the_embedding_layer_on_edges_natively_and_in_the_interpreter() -> None:
    import runtime
    from compiler.diagnostics import DlIndexError
    from compiler.ir.interpreter import interpret as run

    source = """
model m {
    input ids: i32[N, 3]
    target y: f32[N, 3, 4]
    output e = embedding(ids, 5, 4, name="words")
    loss mse(e, y)
    optimizer sgd
}"""
    module = compile_source(source, "e.dl")
    native = runtime.compile(module)
    table = np.array([[0.0, -0.0, np.nan, np.inf], [1, 2, 3, 4], [-np.inf, 5, 6, 7], [8, 9, 10, 11],
                      [12, 13, 14, 15]], np.float32)
    for ids in (np.zeros((0, 3), np.int32),                      # an empty batch
                np.array([[0, -1, 4], [-5, 2, 0]], np.int32)):   # negative ids count from the end
        want = table[ids]
        got = native.predict(table, ids)
        assert got.shape == want.shape == run(module.get("predict"), [table, ids])[0].shape
        np.testing.assert_array_equal(got, want)                 # NaN, inf and -0.0 pass through
        np.testing.assert_array_equal(run(module.get("predict"), [table, ids])[0], want)
        assert np.array_equal(np.signbit(got), np.signbit(want))
    for bad in (5, -6, 2 ** 31 - 1):
        ids = np.array([[0, bad, 1]], np.int32)
        with pytest.raises(DlIndexError):
            native.predict(table, ids)
        with pytest.raises(DlIndexError):
            run(module.get("predict"), [table, ids])
