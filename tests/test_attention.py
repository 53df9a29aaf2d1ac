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
from compiler.codegen import threads
from compiler.codegen.driver import stage_text
from compiler.diagnostics import DlError, DlTypeError
from compiler.ir.builder import new_function
from compiler.ir.core import Function, Module
from compiler.ir.interpreter import interpret
from compiler.ir.types import DType, TensorType
from compiler.ops.attention import attention_grad_np, attention_np, causal_mask_np
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


def test_sinusoidal_positions_are_the_transformers():
    f, b = new_function("f", [])
    f.outputs = [b.sinusoidal_positions(shape=(50, 16))]
    (pe,) = interpret(f, [])
    t, i = np.arange(50)[:, None], np.arange(8)[None, :]
    angle = t / 10000.0 ** (2 * i / 16)
    np.testing.assert_allclose(pe[:, 0::2], np.sin(angle), atol=2e-6)
    np.testing.assert_allclose(pe[:, 1::2], np.cos(angle), atol=2e-6)
    lib = runtime.compile(Module([f]), cache=False, passes="")
    np.testing.assert_allclose(lib.f(), pe, atol=1e-5)


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
# native code: the fused kernels


def grad_function(f: Function) -> Function:
    """``attention_grad`` of ``f``'s attention: ``(q, k, v, mask, o, do) -> dq, dk, dv``."""
    q, k, v, mask = f.params
    o_type = f.outputs[0].type
    g, b = new_function("g", [(p.name, p.type) for p in f.params] + [("o", o_type), ("do", o_type)])
    g.outputs = list(b.attention_grad(*g.params, **f.ops[-1].attrs))
    return g


def ulps(got: np.ndarray, want: np.ndarray, scale: np.ndarray) -> float:
    """The largest error of ``got`` against float64 ``want`` in units of f32 epsilon times
    ``scale`` (the magnitude the result is a weighted sum of)."""
    if got.size == 0:
        return 0.0
    return float(np.max(np.abs(got.astype(np.float64) - want) / (np.finfo(np.float32).eps * scale)))


NATIVE_CASES = [
    *CASES,
    ((2, 2, 16, 32), (2, 2, 300, 32), 32, (2, 1, 16, 300), {}),            # many key blocks, a 4-d mask
    ((1, 1, 70, 8), (1, 1, 70, 8), 8, (70, 70), {"causal": True}),         # a dense [T, T] mask
]


@pytest.fixture(scope="module")
def native_cases():
    funcs = []
    for n, (shape_q, shape_k, dv, mask_shape, attrs) in enumerate(NATIVE_CASES):
        f = attention_function(shape_q, shape_k, dv, mask_shape, **attrs)
        f.name = f"f{n}"
        g = grad_function(f)
        g.name = f"g{n}"
        funcs += [f, g]
    return runtime.compile(Module(funcs), cache=False, passes="")


@pytest.mark.parametrize("n", range(len(NATIVE_CASES)))
def test_native_matches_the_reference_and_the_float64_oracle(native_cases, n):
    shape_q, shape_k, dv, mask_shape, attrs = NATIVE_CASES[n]
    rng = np.random.default_rng(10 + n)
    q, k = rng.standard_normal(shape_q).astype(np.float32), rng.standard_normal(shape_k).astype(np.float32)
    v = rng.standard_normal((*shape_k[:-1], dv)).astype(np.float32)
    mask = rng.random(mask_shape) < 0.8
    if mask.ndim >= 2:
        mask[..., 0, :] = False                         # a fully masked query row
    out = native_cases[f"f{n}"](q, k, v, mask)
    (ref,) = interpret(native_cases.module.get(f"f{n}"), [q, k, v, mask])
    scale = attrs.get("scale", 1 / np.sqrt(shape_q[-1]))
    allowed = mask & causal_mask_np(shape_q[-2], shape_k[-2]) if attrs.get("causal") else mask
    exact = oracle(q, k, v, allowed, scale)
    vmax = max(float(np.abs(v).max(initial=0)), 1.0)
    assert ulps(out, exact, vmax) <= 16
    assert ulps(ref, exact, vmax) <= 16
    assert not np.isnan(out).any()
    dead = ~np.broadcast_to(allowed, (*shape_q[:-1], shape_k[-2])).any(-1)
    assert np.all(out[dead] == 0)                      # no key: zeros, not NaN
    do = rng.standard_normal(out.shape).astype(np.float32)
    grads = native_cases[f"g{n}"](q, k, v, mask, ref, do)
    want = attention_grad_np(*(a.astype(np.float64) for a in (q, k, v)), mask, ref.astype(np.float64),
                             do.astype(np.float64), scale=attrs.get("scale"), causal=attrs.get("causal", False))
    refs = interpret(native_cases.module.get(f"g{n}"), [q, k, v, mask, ref, do])
    for got, r, w in zip(grads, refs, want):
        size = max(float(np.abs(w).max(initial=0)), 1.0)
        assert ulps(got, w, size) <= 64 and ulps(r, w, size) <= 64
        assert not np.isnan(got).any()


@pytest.mark.parametrize("causal,tq,tk", [(True, 100, 100), (True, 61, 130), (False, 50, 130)])
def test_unmasked_key_blocks_match_the_oracle(causal, tq, tk):
    """Without a mask buffer, key blocks below every row's diagonal skip the masking."""
    f, b = new_function("f", [("q", T(F32, 2, 3, tq, 8)), ("k", T(F32, 2, 3, tk, 8)), ("v", T(F32, 2, 3, tk, 8)),
                              ("w", T(F32, 2, 3, tq, 8))])
    out = b.attention(*f.params[:3], b.constant(True, BOOL), causal=causal)
    f.outputs = [b.sum(b.mul(out, f.params[3])), out]
    g = grad(Module([f]), "f", ["q", "k", "v"], new_name="g", with_value=True)
    lib = runtime.compile(Module([g]), cache=False, passes="")
    rng = np.random.default_rng(12)
    q, k, v, w = (rng.standard_normal(p.type.shape).astype(np.float32) for p in f.params)
    _loss, got, *grads = lib.g(q, k, v, w)
    allowed = causal_mask_np(tq, tk) if causal else np.array(True)
    assert ulps(got, oracle(q, k, v, allowed, 1 / np.sqrt(8)), 4.0) <= 16
    want = attention_grad_np(*(a.astype(np.float64) for a in (q, k, v)), np.array(True), got.astype(np.float64),
                             w.astype(np.float64), scale=None, causal=causal)
    for got_grad, exact in zip(grads, want):
        assert ulps(got_grad, exact, max(float(np.abs(exact).max()), 1.0)) <= 64


def test_large_logits_natively():
    rng = np.random.default_rng(3)
    q = (rng.standard_normal((1, 1, 40, 8)) * 100).astype(np.float32)
    k = (rng.standard_normal((1, 1, 40, 8)) * 100).astype(np.float32)      # scores around 1e4
    v = rng.standard_normal((1, 1, 40, 8)).astype(np.float32)
    f = attention_function((1, 1, 40, 8), (1, 1, 40, 8), 8, (), causal=True)
    lib = runtime.compile(Module([f]), cache=False, passes="")
    out = lib.f(q, k, v, np.array(True))
    (ref,) = interpret(f, [q, k, v, np.array(True)])
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_results_identical_across_thread_counts():
    f = attention_function(("B", 4, 64, 32), ("B", 4, 64, 32), 32, (), causal=True)
    g = grad_function(f)
    lib = runtime.compile(Module([f, g]), cache=False, passes="")
    rng = np.random.default_rng(8)
    q, k, v, do = (rng.standard_normal((8, 4, 64, 32)).astype(np.float32) for _ in range(4))
    mask = np.array(True)
    results = []
    for t in (1, 2, 3):
        threads.set_num_threads(lib._library, t)
        out = np.array(lib.f(q, k, v, mask), copy=True)
        results.append([out, *(np.array(r, copy=True) for r in lib.g(q, k, v, mask, out, do))])
    threads.set_num_threads(lib._library, threads.num_threads())
    for res in results[1:]:
        for a, c in zip(res, results[0]):
            np.testing.assert_array_equal(a, c)


def test_the_fused_kernel_stores_no_score_matrix():
    f = attention_function(("B", 4, "T", 32), ("B", 4, "T", 32), 32, (), causal=True)
    g = grad_function(f)
    text = stage_text(Module([f, g]), "loops")
    assert "attention.forward" in text and "attention.backward" in text
    assert "T, T]" not in text                         # no [.., T, T] buffer: memory O(T*D)


def test_a_gradient_reuses_the_forward_statistics_natively():
    """In one function the backward kernel reads the forward's row log-sum-exp and its
    transposed keys; the gradients equal the interpreter's (the unfused composition)."""
    shape = ("B", 2, "T", 12)
    f, b = new_function("loss", [("q", T(F32, *shape)), ("k", T(F32, *shape)), ("v", T(F32, *shape)),
                                 ("w", T(F32, *shape))])
    out = b.attention(*f.params[:3], b.constant(True, BOOL), causal=True)
    f.outputs = [b.sum(b.mul(out, f.params[3]))]
    m = Module([f])
    g = grad(m, "loss", ["q", "k", "v"], new_name="dloss")
    loops = [line for line in stage_text(Module([g]), "loops").splitlines() if "attention." in line]
    forward, backward = loops
    lse = forward.split(": ")[1].split(" = ")[0].split(", ")[1]        # the forward's second output
    assert backward.rstrip(")").endswith(lse)
    assert sum("= %k[i0, i1, i3, i2]" in line for line in stage_text(Module([g]), "loops").splitlines()) == 1
    lib = runtime.compile(Module([g]), cache=False, passes="")
    rng = np.random.default_rng(9)
    args = [rng.standard_normal((3, 2, 21, 12)).astype(np.float32) for _ in range(4)]
    for got, want in zip(lib.dloss(*args), interpret(g, args)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


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


def test_the_layer_reads_its_heads_in_place_and_its_gradients_match():
    """q, k and v are read where the projections wrote them ([N, T, heads, key_dim]) and the
    output and gradients written in that layout, so no transposed copy is made but the keys'
    (and values') for the scores; the gradients equal the interpreter's."""
    m = compile_source(LAYER_MODEL.format(args='name="att", causal=true', extra=""), "m.dl")
    loss = m.get("loss")
    names = [p.name for p in loss.params if p.name.startswith("att.")]
    g = grad(m, "loss", names, new_name="dloss")
    text = stage_text(Module([g]), "loops")
    copies = [line for line in text.splitlines() if "elementwise" in line]
    assert len(copies) == 2 and all("[i0, i3, i1, i2]" in line for line in copies), text      # kt, vt
    lib = runtime.compile(Module([g]), cache=False, passes="")
    rng = np.random.default_rng(13)
    args = [rng.standard_normal([int(d) if isinstance(d, int) else 3 for d in p.type.shape]).astype(np.float32)
            for p in loss.params]
    for got, want in zip(lib.dloss(*args), interpret(g, args)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------
# edges: special values, empty sequences, sizes beyond int64


def _same(got: np.ndarray, want: np.ndarray) -> None:
    """Equal within f32 rounding, with NaN where the other has NaN and +-inf alike."""
    assert np.array_equal(np.isnan(got), np.isnan(want))
    finite = np.isfinite(want)
    assert np.array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)])
    np.testing.assert_allclose(got[finite], want[finite], rtol=2e-5, atol=2e-6)


def test_special_values_agree_natively_and_in_the_interpreter():
    """NaN, +-inf and -0.0 in q, k and v: native code computes what the interpreter does
    (a NaN or inf score makes its row NaN; an inf value poisons the rows that weigh it)."""
    f = attention_function((1, 2, 6, 4), (1, 2, 6, 4), 4, (), causal=True)
    lib = runtime.compile(Module([f]), cache=False)
    rng = np.random.default_rng(5)
    q, k, v = (rng.standard_normal((1, 2, 6, 4)).astype(np.float32) for _ in range(3))
    q[0, 0, 1, 0], k[0, 1, 3, 2], v[0, 0, 4, 1] = np.nan, np.inf, -np.inf
    q[0, 1, 0, :], v[0, 1, 2, :] = -0.0, -0.0
    mask = np.ones((), bool)
    want = interpret(f, [q, k, v, mask])[0]
    got = lib.f(q, k, v, mask)
    _same(got, want)
    assert np.isnan(got[0, 0, 1]).all()                   # the NaN query's row


@pytest.mark.parametrize("tq,tk", [(0, 5), (3, 0), (0, 0)])
def test_empty_sequences_agree_natively_and_in_the_interpreter(tq, tk):
    """No queries: an empty result; no keys: every row is fully masked, so zeros."""
    f = attention_function((2, tq, 4), (2, tk, 4), 3, ())
    lib = runtime.compile(Module([f]), cache=False)
    q, k, v = np.ones((2, tq, 4), np.float32), np.ones((2, tk, 4), np.float32), np.ones((2, tk, 3), np.float32)
    want = interpret(f, [q, k, v, np.ones((), bool)])[0]
    got = lib.f(q, k, v, np.ones((), bool))
    assert got.shape == want.shape == (2, tq, 3)
    assert np.array_equal(got, want) and np.all(got == 0)


def test_a_batch_beyond_int64_is_refused_at_compile_time():
    """The shared size rule covers attention: [2^60, 4, 8] f32 operands span 2^67 bytes."""
    with pytest.raises(DlError, match=r"would hold 2\^65 elements \(2\^67 bytes"):
        attention_function((2**60, 4, 8), (2**60, 4, 8), 8, ())
