"""Masks and attention (compiler/ops/attention.py, compiler/codegen/attention.py).

* the references against independent float64 numpy formulas: ``tril``/``triu`` as numpy's,
  ``attention`` as ``softmax(q k^T / sqrt(D) + where(mask, 0, -inf)) v`` written out;
* fully masked rows give zeros (not NaN), large logits (1e4) stay finite, T = 1, batch 0;
* native code against the unfused reference and a float64 oracle within a few ULP on random
  shapes (T not a multiple of the key block, D not a multiple of the vector width);
* results identical across 1, 2 and 3 threads;
* gradients by finite differences in f64, and gradients of gradients;
* the language: ``softmax(x, mask=m)``, ``attention(q, k, v)`` without a mask.
"""

from __future__ import annotations

import numpy as np
import pytest

import runtime
from compiler.checking.gradcheck import gradcheck
from compiler.diagnostics import DlError, DlTypeError
from compiler.ir.builder import new_function
from compiler.ir.core import Function, Module
from compiler.ir.interpreter import interpret
from compiler.ir.types import DType, TensorType
from compiler.ops.attention import attention_np, causal_mask_np
from compiler.passes.autodiff import grad, inline_function
from frontend_dsl.api import compile_source

F32, F64, BOOL = DType.f32, DType.f64, DType.bool


def T(dtype: DType, *shape) -> TensorType:
    return TensorType(dtype, tuple(shape))


def oracle(q, k, v, allowed, scale) -> np.ndarray:
    """float64 attention written out independently: an additive -inf mask, then softmax;
    a row with no allowed key is 0."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    s = np.einsum("...id,...jd->...ij", q, k) * scale
    allowed = np.broadcast_to(allowed, s.shape)
    out = np.zeros((*s.shape[:-1], v.shape[-1]))
    for idx in np.ndindex(*s.shape[:-1]):
        row, keep = s[idx], allowed[idx]
        if not keep.any():
            continue
        w = np.exp(row[keep] - row[keep].max())
        out[idx] = (w / w.sum()) @ v[idx[:-1]][keep]
    return out


def attention_function(shape_q, shape_k, dv: int, mask_shape, dtype=F32, **attrs) -> Function:
    *batch, tk, d = shape_k
    f, b = new_function("f", [("q", T(dtype, *shape_q)), ("k", T(dtype, *shape_k)),
                              ("v", T(dtype, *batch, tk, dv)), ("mask", T(BOOL, *mask_shape))])
    f.outputs = [b.attention(*f.params, **attrs)]
    return f


# ---------------------------------------------------------------------------
# references


@pytest.mark.parametrize("k", [-2, 0, 1, 5])
def test_tril_and_triu_are_numpys_on_the_last_two_axes(k):
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 5)).astype(np.float32)
    f, b = new_function("f", [("x", T(F32, 2, 3, 4, 5))])
    f.outputs = [b.tril(f.params[0], k=k), b.triu(f.params[0], k=k)]
    lo, hi = interpret(f, [x])
    np.testing.assert_array_equal(lo, np.tril(x, k))
    np.testing.assert_array_equal(hi, np.triu(x, k))
    lib = runtime.compile(Module([f]), cache=False, passes="")
    for got, want in zip(lib.f(x), (lo, hi)):
        np.testing.assert_array_equal(got, want)


def test_causal_mask_is_aligned_at_the_bottom_right():
    np.testing.assert_array_equal(causal_mask_np(3, 3), np.tril(np.ones((3, 3), bool)))
    np.testing.assert_array_equal(causal_mask_np(1, 4), np.ones((1, 4), bool))
    np.testing.assert_array_equal(causal_mask_np(2, 4), [[1, 1, 1, 0], [1, 1, 1, 1]])


CASES = [
    # (q shape, k shape, dv, mask shape, attrs)
    ((2, 3, 5, 8), (2, 3, 7, 8), 8, (), {}),
    ((1, 2, 1, 4), (1, 2, 1, 4), 4, (), {"causal": True}),                 # T = 1
    ((2, 2, 37, 5), (2, 2, 37, 5), 3, (37,), {"causal": True}),            # T, D off every block
    ((3, 9, 16), (3, 70, 16), 17, (3, 9, 70), {"scale": 0.3}),             # Tq != Tk, one batch dim
    ((0, 2, 4, 8), (0, 2, 4, 8), 8, (), {}),                               # batch 0
]


@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
def test_reference_equals_the_float64_oracle(case):
    shape_q, shape_k, dv, mask_shape, attrs = case
    rng = np.random.default_rng(1)
    q, k = rng.standard_normal(shape_q), rng.standard_normal(shape_k)
    v = rng.standard_normal((*shape_k[:-1], dv))
    mask = rng.random(mask_shape) < 0.7
    got = attention_np(q, k, v, mask, scale=attrs.get("scale"), causal=attrs.get("causal", False))
    allowed = mask & causal_mask_np(shape_q[-2], shape_k[-2]) if attrs.get("causal") else mask
    want = oracle(q, k, v, allowed, attrs.get("scale", 1 / np.sqrt(shape_q[-1])))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_fully_masked_rows_give_zeros_and_zero_gradients():
    f = attention_function((1, 3, 4), (1, 5, 4), 4, (1, 3, 5))
    rng = np.random.default_rng(2)
    q, k, v = (rng.standard_normal(s).astype(np.float32) for s in ((1, 3, 4), (1, 5, 4), (1, 5, 4)))
    mask = np.ones((1, 3, 5), bool)
    mask[0, 1] = False                                  # query 1 sees no key
    (out,) = interpret(f, [q, k, v, mask])
    assert np.all(out[0, 1] == 0) and np.all(np.isfinite(out))
    f2, b = new_function("loss", [(p.name, p.type) for p in f.params])
    out = b.attention(*f2.params)
    f2.outputs = [b.sum(b.mul(out, out))]
    g = grad(Module([f2]), "loss", ["q", "k", "v"], new_name="dloss")
    dq, dk, dv = interpret(g, [q, k, v, mask])[-3:]
    assert np.all(dq[0, 1] == 0)
    assert all(np.all(np.isfinite(d)) for d in (dq, dk, dv))


def test_large_logits_stay_finite():
    rng = np.random.default_rng(3)
    q = rng.standard_normal((1, 6, 8)).astype(np.float32) * 100
    k = rng.standard_normal((1, 6, 8)).astype(np.float32) * 100      # scores around 1e4
    v = rng.standard_normal((1, 6, 8)).astype(np.float32)
    f = attention_function((1, 6, 8), (1, 6, 8), 8, (), causal=True)
    (out,) = interpret(f, [q, k, v, np.array(True)])
    want = oracle(q, k, v, causal_mask_np(6, 6), 1 / np.sqrt(8))
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


def test_shape_rule_errors():
    f, b = new_function("f", [("q", T(F32, 2, 5, 8)), ("k", T(F32, 2, 6, 4)), ("m", T(BOOL, 5, 4))])
    with pytest.raises(DlTypeError, match="same head size"):
        b.attention(f.params[0], f.params[1], f.params[1], b.constant(True, BOOL))
    with pytest.raises(DlTypeError, match="does not broadcast"):
        b.attention(f.params[0], f.params[0], f.params[0], f.params[2])


# ---------------------------------------------------------------------------
# gradients


def loss_module(causal: bool, masked: bool) -> Module:
    f, b = new_function("loss", [("q", T(F32, 2, 4, 3)), ("k", T(F32, 2, 5, 3)), ("v", T(F32, 2, 5, 2)),
                                 ("w", T(F32, 2, 4, 2))])
    mask = b.constant(np.array([[1, 1, 0, 1, 1]] * 3 + [[0] * 5], bool), BOOL) if masked \
        else b.constant(True, BOOL)
    out = b.attention(*f.params[:3], mask, causal=causal, scale=0.7)
    f.outputs = [b.sum(b.mul(out, f.params[3]))]
    return Module([f])


@pytest.mark.parametrize("causal,masked", [(False, False), (True, False), (True, True)])
def test_gradients_match_finite_differences(causal, masked):
    report = gradcheck(loss_module(causal, masked), "loss", ["q", "k", "v"], seed=4)
    assert report.passed, report


def test_gradients_of_gradients_match_finite_differences():
    m = loss_module(True, True)
    g = grad(m, "loss", ["q", "k", "v"], new_name="dloss")
    # a scalar of the first gradients: its gradient is a second derivative of the loss
    f, b = new_function("second", [(p.name, p.type) for p in m.get("loss").params])
    env = inline_function(b, g, list(f.params))
    dq, dk, dv = (env[v] for v in g.outputs[-3:])
    f.outputs = [b.add(b.add(b.sum(b.mul(dq, dq)), b.sum(b.mul(dk, dk))), b.sum(b.mul(dv, dv)))]
    report = gradcheck(Module([f]), "second", ["q", "k", "v"], seed=5)
    assert report.passed, report


# ---------------------------------------------------------------------------
# the language


def test_softmax_with_a_mask_and_attention_without_one_in_the_language():
    m = compile_source("""
fn f(x: f32[N, 4], m: bool[N, 4]) -> f32[N, 4] {
  return softmax(x, mask=m)
}
fn g(q: f32[N, 3, 2], k: f32[N, 5, 2], v: f32[N, 5, 2]) -> f32[N, 3, 2] {
  return attention(q, k, v, causal=true)
}
""", "t.dl")
    x = np.array([[1, 2, 3, 4], [0, 0, 0, 0]], np.float32)
    mask = np.array([[True, False, True, False], [False] * 4])
    (p,) = interpret(m.get("f"), [x, mask])
    e = np.exp([1 - 3, 3 - 3])
    np.testing.assert_allclose(p[0], [e[0] / e.sum(), 0, e[1] / e.sum(), 0], rtol=1e-6)
    np.testing.assert_array_equal(p[1], 0)
    rng = np.random.default_rng(6)
    q, k, v = (rng.standard_normal(s).astype(np.float32) for s in ((2, 3, 2), (2, 5, 2), (2, 5, 2)))
    (out,) = interpret(m.get("g"), [q, k, v])
    np.testing.assert_allclose(out, oracle(q, k, v, causal_mask_np(3, 5), 1 / np.sqrt(2)), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# the layer


LAYER_MODEL = """
model m {{
    input x: f32[N, 5, 6]
    {extra}
    target y: f32[N, 5, 4]
    output p = multi_head_attention(x, 2, 4, {args})
    loss mse(p, y)
    optimizer adam(lr=0.01)
}}
"""


def layer_oracle(params: dict[str, np.ndarray], x, context, heads: int, key_dim: int, causal: bool):
    """The layer in float64 numpy: projections, heads, oracle attention, output projection."""
    def split(h):
        n, t, _ = h.shape
        return h.reshape(n, t, heads, key_dim).transpose(0, 2, 1, 3)

    q = split(x @ params["att.query_kernel"] + params["att.query_bias"])
    k = split(context @ params["att.key_kernel"] + params["att.key_bias"])
    v = split(context @ params["att.value_kernel"] + params["att.value_bias"])
    allowed = causal_mask_np(q.shape[2], k.shape[2]) if causal else np.array(True)
    o = oracle(q, k, v, allowed, 1 / np.sqrt(key_dim)).transpose(0, 2, 1, 3).reshape(x.shape[0], x.shape[1], -1)
    return o @ params["att.output_kernel"] + params["att.output_bias"]


@pytest.mark.parametrize("args,extra,key_dim,causal", [
    ('name="att"', "", 2, True),
    ('name="att", causal=false, key_dim=3, context=c', "input c: f32[N, 7, 3]", 3, False),
])
def test_multi_head_attention_layer_is_the_keras_computation(args, extra, key_dim, causal):
    m = compile_source(LAYER_MODEL.format(args=args, extra=extra), "m.dl")
    f = m.get("predict")
    rng = np.random.default_rng(7)
    names = [p.name for p in f.params]
    values = [rng.standard_normal([int(d) for d in p.type.shape]).astype(np.float32) * 0.5
              for p in f.params if p.name.startswith("att.")]
    x = rng.standard_normal((3, 5, 6)).astype(np.float32)
    c = rng.standard_normal((3, 7, 3)).astype(np.float32)
    inputs = [x, c] if extra else [x]
    (p,) = interpret(f, [*values, *inputs])
    params = dict(zip(names, values))
    want = layer_oracle(params, x, c if extra else x, 2, key_dim, causal)
    np.testing.assert_allclose(p, want, rtol=1e-4, atol=1e-5)
    lib = runtime.compile(m, cache=False)
    np.testing.assert_allclose(lib.predict(*values, *inputs), p, rtol=2e-5, atol=1e-6)


def test_multi_head_attention_layer_errors():
    for args, message in [("3, 4", "not a multiple of heads"), ("2, 0", "positive dim"),
                          ("2, 4, mask=x", "mask must be bool")]:
        source = LAYER_MODEL.format(args="", extra="").replace("multi_head_attention(x, 2, 4, )",
                                                                f"multi_head_attention(x, {args})")
        with pytest.raises(DlError, match=message):
            compile_source(source, "m.dl")
