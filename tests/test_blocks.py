"""Blocks (functions that call layers, expanded per call) and ``use "file.dl"`` imports."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from compiler.diagnostics import DlError, DlErrors
from compiler.ir.interpreter import interpret
from frontend_dsl import compile_file, compile_source

MLP = """
fn mlp(x: f32[N, D], hidden: int, width: int) -> f32[N, D] {
    let h = dense(x, hidden, activation=relu)
    return dense(h, width, name="out")
}
"""


def model(body: str, functions: str = MLP) -> str:
    return (f"{functions}\nmodel m {{\n input x: f32[N, 3]\n target y: f32[N, 3]\n {body}\n"
            " loss mse(p, y)\n optimizer sgd\n}\n")


def param_names(module) -> list[str]:
    return [p["name"] for p in module.attrs["model"]["params"]]


def errors(source: str, file: str = "m.dl") -> list[DlError]:
    with pytest.raises(DlError) as info:
        compile_source(source, file)
    return info.value.errors if isinstance(info.value, DlErrors) else [info.value]


def test_each_call_of_a_block_creates_its_own_parameters_under_its_own_name() -> None:
    module = compile_source(model("let a = mlp(x, 8, 3)\n output p = mlp(a, hidden=4, width=3)"), "m.dl")
    assert param_names(module) == [
        "mlp_1.dense_1.kernel", "mlp_1.dense_1.bias", "mlp_1.out.kernel", "mlp_1.out.bias",
        "mlp_2.dense_1.kernel", "mlp_2.dense_1.bias", "mlp_2.out.kernel", "mlp_2.out.bias"]
    shapes = {p.name: p.type.dsl_str() for p in module.get("predict").params}
    assert shapes["mlp_1.dense_1.kernel"] == "f32[3, 8]"
    assert shapes["mlp_2.dense_1.kernel"] == "f32[3, 4]"


def test_a_block_computes_what_its_body_says_with_the_call_s_parameters() -> None:
    module = compile_source(model("output p = mlp(mlp(x, 8, 3), 4, 3)"), "m.dl")
    f = module.get("predict")
    rng = np.random.default_rng(0)
    params = [rng.standard_normal([int(d) for d in p.type.shape]).astype(np.float32) for p in f.params[:-1]]
    x = rng.standard_normal((5, 3)).astype(np.float32)
    # the outer call is named first (mlp_1, hidden 4); the inner one (mlp_2) creates its parameters first
    assert param_names(module)[0] == "mlp_2.dense_1.kernel"
    inner, outer = params[:4], params[4:]

    def mlp(v, w1, b1, w2, b2):
        return np.maximum(v @ w1 + b1, 0) @ w2 + b2
    assert [p.shape for p in outer][0] == (3, 4)
    np.testing.assert_allclose(interpret(f, [*params, x])[0], mlp(mlp(x, *inner), *outer), rtol=1e-5, atol=1e-5)


def test_name_nests_and_the_model_reaches_a_block_s_parameters_by_path() -> None:
    functions = MLP + """
fn two(x: f32[N, D], width: int) -> f32[N, D] {
    let a = mlp(x, 2, width, name="first")
    return a + 0.0 * sum(first.out.bias)
}
"""
    module = compile_source(model("output p = two(x, 3, name=\"blk\") + 0.0 * sum(blk.first.out.kernel)",
                                  functions), "m.dl")
    assert param_names(module) == ["blk.first.dense_1.kernel", "blk.first.dense_1.bias",
                                   "blk.first.out.kernel", "blk.first.out.bias"]


def test_block_errors_are_located_and_name_the_call() -> None:
    [e] = errors(model("output p = mlp(x, 8)"))
    assert "missing: width" in str(e.notes) and e.loc.line == 10
    [e] = errors(model("output p = mlp(x, 8, 4.5)"))
    assert "argument 'width' of 'mlp' must be an integer" in e.message
    [e] = errors(model("output p = mlp(x, 8, 4)"))    # returns [N, 4], declared [N, 3]
    assert "declared f32[N, 3], computed f32[N, 4]" in e.message
    assert any("in the call of 'mlp' (named 'mlp_1')" in n for n in e.notes)


def test_a_block_cannot_be_used_outside_a_model() -> None:
    [e] = errors(MLP + "fn g = grad(mlp)\n")
    assert "'mlp' is a block (it calls the layer 'dense' at m.dl:" in e.message
    assert "inside a model" in e.message and e.loc.line == 6
    recursive = "fn f(x: f32[N, 3], k: int) -> f32[N, 3] { return f(x, k) }\n"
    [e] = errors(model("output p = f(x, 1)", recursive))
    assert "recursive call to 'f'" in e.message


def test_floor_div_and_mod_of_two_constants_fold_for_shapes() -> None:
    functions = """
fn heads(x: f32[N, D], h: int, dim: int) -> f32[N, D] {
    let hd = floor_div(dim, h)
    return reshape(reshape(x, [N, h, hd]), [N, dim]) + 0.0 * cast(mod(dim, h), f32)
}
"""
    module = compile_source(model("output p = heads(x, 3, 3) + dense(x, 3)", functions), "m.dl")
    assert "reshape" in [op.name for op in module.get("predict").ops]


# ---------------------------------------------------------------------------
# use


def test_use_finds_a_file_next_to_the_user_then_the_shipped_library(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "blocks.dl").write_text(MLP)
    main = tmp_path / "main.dl"
    main.write_text('use "lib/blocks.dl"\nuse "std/nn.dl"\n' + model("output p = mlp(x, 4, 3)", ""))
    assert param_names(compile_file(main))[0] == "mlp_1.dense_1.kernel"


def test_use_errors_missing_file_cycle_clash_and_model(tmp_path: Path) -> None:
    [e] = errors('use "nowhere.dl"\n', str(tmp_path / "a.dl"))
    assert "cannot find 'nowhere.dl'" in e.message and e.loc.line == 1
    (tmp_path / "a.dl").write_text('use "b.dl"\nfn fa(x: f32[]) -> f32[] { return x }\n')
    (tmp_path / "b.dl").write_text('use "a.dl"\nfn fb(x: f32[]) -> f32[] { return x }\n')
    with pytest.raises(DlError) as info:
        compile_file(tmp_path / "a.dl")
    assert "'use' cycle:" in str(info.value) and "a.dl -> " in str(info.value)
    (tmp_path / "c.dl").write_text('fn mlp(x: f32[]) -> f32[] { return x }\n')
    [e] = errors('use "c.dl"\n' + MLP, str(tmp_path / "d.dl"))
    assert "function 'mlp' is already defined" in e.message
    assert str(tmp_path / "c.dl") in e.notes[0]
    (tmp_path / "e.dl").write_text(model("output p = dense(x, 3)", ""))
    [e] = errors('use "e.dl"\n', str(tmp_path / "f.dl"))
    assert "holds a model ('m')" in e.message


def test_a_file_used_twice_is_read_once(tmp_path: Path) -> None:
    (tmp_path / "base.dl").write_text("fn sq(x: f32[N]) -> f32[N] { return x * x }\n")
    (tmp_path / "mid.dl").write_text('use "base.dl"\nfn sq2(x: f32[N]) -> f32[N] { return sq(sq(x)) }\n')
    main = tmp_path / "main.dl"
    main.write_text('use "base.dl"\nuse "mid.dl"\nfn f(x: f32[N]) -> f32[N] { return sq2(x) }\n')
    out = interpret(compile_file(main).get("f"), [np.array([2.0], np.float32)])[0]
    assert out.tolist() == [16.0]


# ---------------------------------------------------------------------------
# std/nn.dl


def _numpy_attention(x, wq, bq, wk, bk, wv, bv, wo, bo, heads):
    b, t, d = x.shape
    hd = d // heads

    def split(v):
        return v.reshape(b, t, heads, hd).transpose(0, 2, 1, 3)
    q, k, v = split(x @ wq + bq), split(x @ wk + bk), split(x @ wv + bv)
    s = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd)
    s = np.where(np.tril(np.ones((t, t), bool)), s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return (p @ v).transpose(0, 2, 1, 3).reshape(b, t, d) @ wo + bo


def test_std_causal_self_attention_matches_a_float64_numpy_reference() -> None:
    source = ('use "std/nn.dl"\nmodel m {\n input x: f32[B, T, 8]\n target y: f32[B, T, 8]\n'
              ' output p = causal_self_attention(x, 2, 8)\n loss mse(p, y)\n optimizer sgd\n}\n')
    f = compile_source(source, "m.dl").get("predict")
    rng = np.random.default_rng(3)
    params = [rng.standard_normal([int(d) for d in p.type.shape]).astype(np.float32) * 0.5
              for p in f.params[:-1]]
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    want = _numpy_attention(x.astype(np.float64), *(p.astype(np.float64) for p in params), heads=2)
    np.testing.assert_allclose(interpret(f, [*params, x])[0], want, rtol=1e-4, atol=1e-5)
    # causality: changing the last position changes no earlier output
    x2 = x.copy()
    x2[:, -1] += 1.0
    out, out2 = interpret(f, [*params, x])[0], interpret(f, [*params, x2])[0]
    np.testing.assert_array_equal(out[:, :-1], out2[:, :-1])


def test_std_transformer_block_twice_makes_two_sets_of_weights() -> None:
    source = ('use "std/nn.dl"\nmodel m {\n input x: f32[B, T, 16]\n target y: f32[B, T, 16]\n'
              ' let h = transformer_block(x + sinusoidal_positions(shape=[T, 16]), heads=4, dim=16)\n'
              ' output p = transformer_block(h, heads=4, dim=16)\n loss mse(p, y)\n optimizer sgd\n}\n')
    module = compile_source(source, "m.dl")
    names = param_names(module)
    assert len(names) == 2 * 16 and "transformer_block_1.attn.query_kernel" in names
    assert "transformer_block_2.mlp.up.kernel" in names
    shapes = {p.name: p.type.dsl_str() for p in module.get("predict").params}
    assert shapes["transformer_block_2.mlp.up.kernel"] == "f32[16, 64]"


def _layer_norm(x, gamma, beta, eps=1e-5):
    mu = x.mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + eps) * gamma + beta


def test_std_transformer_block_is_gpt2_s_pre_norm_block() -> None:
    source = ('use "std/nn.dl"\nmodel m {\n input x: f32[B, T, 8]\n target y: f32[B, T, 8]\n'
              ' output p = transformer_block(x, heads=2, dim=8)\n loss mse(p, y)\n optimizer sgd\n}\n')
    f = compile_source(source, "m.dl").get("predict")
    rng = np.random.default_rng(5)
    w = {p.name: rng.standard_normal([int(d) for d in p.type.shape]) * 0.4 for p in f.params[:-1]}
    x = rng.standard_normal((2, 4, 8))
    got = interpret(f, [*(v.astype(np.float32) for v in w.values()), x.astype(np.float32)])[0]

    def p(name):
        return w[f"transformer_block_1.{name}"]
    h = _layer_norm(x, p("ln1.gamma"), p("ln1.beta"))
    attn = [p(f"attn.{k}") for k in ("query_kernel", "query_bias", "key_kernel", "key_bias", "value_kernel",
                                      "value_bias", "output_kernel", "output_bias")]
    a = x + _numpy_attention(h, *attn, heads=2)
    h = _layer_norm(a, p("ln2.gamma"), p("ln2.beta"))
    up = h @ p("mlp.up.kernel") + p("mlp.up.bias")
    gelu = up / 2 * (1 + np.vectorize(math.erf)(up / np.sqrt(2)))
    want = a + gelu @ p("mlp.down.kernel") + p("mlp.down.bias")
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
