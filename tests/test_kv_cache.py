"""Generation with a key/value cache: ``decode`` (compiler/decode.py) against ``predict``, the
session (runtime/decode.py) against generation without a cache, and the fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from compiler.decode import DecodeError, build_decode
from compiler.diagnostics import DlIndexError, DlRuntimeError
from compiler.ir import parse_module, print_module
from compiler.ir.interpreter import interpret
from frontend_dsl.api import compile_source
from runtime.cli import main
from runtime.commands.generate import generate
from runtime.decode import DecodeSession
from runtime.model import Model, load_model

ROOT = Path(__file__).resolve().parents[1]
VOCAB, L = 16, 12

# 2 pre-norm blocks, d = 32, 2 heads, a 12-position table, 16 tokens
TINY = f"""use "std/nn.dl"
model tiny_lm {{
    input tokens: i32[N, T]
    target next: i32[N, T]
    let x = embedding(tokens, {VOCAB}, 32, name="tok")
    let h = transformer_block(x + position_embedding(x, {L}, 32), heads=2, dim=32)
    let h2 = transformer_block(h, heads=2, dim=32)
    output logits = dense(h2, {VOCAB}, name="head", kernel_init=normal(std=1.0))
    loss sparse_categorical_crossentropy(logits, next, from_logits=true)
    optimizer adam
}}
"""


def _model(source: str, backend: str, tmp_path: Path, name: str = "lm.dl") -> Model:
    path = tmp_path / name
    path.write_text(source)
    return load_model(path, seed=1, backend=backend)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    """The reference: predict and generation without a cache in the interpreter (native code
    is compiled for ``decode`` only, by ``DecodeSession(backend="native")``)."""
    return _model(TINY, "interp", tmp_path_factory.mktemp("kv"))


def _tokens(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, VOCAB, shape).astype(np.int32)


@pytest.mark.parametrize("backend", ["interp", "native"])
@pytest.mark.parametrize("batch", [1, 3])
def test_decode_logits_equal_predicts_at_the_same_positions(model: Model, backend: str, batch: int) -> None:
    tokens = _tokens((batch, L))
    full = model.predict(tokens)
    session = DecodeSession(model, batch=batch, backend=backend)
    assert session.max_len == L                                   # the position table's size
    parts = [session.feed(tokens[:, :5]), session.feed(tokens[:, 5:6]), session.feed(tokens[:, 6:7]),
             session.feed(tokens[:, 7:])]                         # prefill S=5, two S=1 steps, S=5
    assert [p.shape for p in parts] == [(batch, 5, VOCAB), (batch, 1, VOCAB), (batch, 1, VOCAB),
                                        (batch, 5, VOCAB)]
    np.testing.assert_allclose(np.concatenate(parts, axis=1), full, rtol=1e-5, atol=1e-5 * np.abs(full).max())
    assert session.pos == L


def test_native_decode_equals_the_interpreter(model: Model) -> None:
    tokens = _tokens((2, 7), seed=4)
    a, b = DecodeSession(model, batch=2), DecodeSession(model, batch=2, backend="native")
    for lo, hi in ((0, 4), (4, 5), (5, 7)):
        x, y = a.feed(tokens[:, lo:hi]), b.feed(tokens[:, lo:hi])
        np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-5 * np.abs(x).max())
    for got, want in zip(b.caches, a.caches):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_greedy_generation_with_the_cache_is_the_no_cache_path_over_the_first_L_tokens(model: Model) -> None:
    cached = generate(model, [1, 2, 3], 14, 0.0, cache=True)
    plain = generate(model, [1, 2, 3], 14, 0.0, cache=False, context=L)
    assert len(cached) == len(plain) == 17
    assert cached[:L + 1] == plain[:L + 1]      # token L is still predicted from all L before it
    assert cached[L + 1:] != plain[L + 1:]      # then the cache sees the last L // 2, not a window of L
    native = DecodeSession(model, backend="native")
    prompt = np.array([[1, 2, 3]], np.int32)
    assert native.generate(prompt, 14, lambda z: np.argmax(z, axis=-1))[0].tolist() == cached


def test_a_full_cache_is_refilled_from_the_last_half(model: Model) -> None:
    session = DecodeSession(model, backend="native")
    prompt = _tokens((1, 20), seed=2)                      # longer than L: its last L tokens are fed
    picks: list[np.ndarray] = []

    def pick(logits: np.ndarray) -> np.ndarray:
        picks.append(logits.copy())
        return np.argmax(logits, axis=-1)

    out = session.generate(prompt, 4, pick)
    assert out.shape == (1, 24) and (out[:, :20] == prompt).all()
    # the first pick sees the prompt's last L tokens, as predict does
    np.testing.assert_allclose(picks[0][0], model.predict(prompt[:, -L:])[0, -1], rtol=1e-5, atol=1e-4)
    # then the cache is full: the next sees the last L // 2 tokens, at positions 0 ..
    recent = out[:, 21 - L // 2:21]
    np.testing.assert_allclose(picks[1][0], model.predict(recent)[0, -1], rtol=1e-5, atol=1e-4)
    assert session.pos == L // 2 + 2
    assert (session.generate(prompt, 0, pick) == prompt).all() and session.pos == 0
    with pytest.raises(DlRuntimeError, match=r"the prompts must be \[N, P\] tokens with P >= 1"):
        session.generate(prompt[:, :0], 3, pick)
    with pytest.raises(DlRuntimeError, match=r"decodes 1 sequence\(s\), got 2 prompts"):
        session.generate(np.concatenate([prompt, prompt]), 3, pick)


def test_feed_refuses_no_tokens_an_overflow_and_a_wrong_batch(model: Model) -> None:
    session = DecodeSession(model, backend="native")
    with pytest.raises(DlRuntimeError, match=r"at least one new token \(S >= 1\)"):
        session.feed(np.zeros((1, 0), np.int32))
    session.feed(_tokens((1, L)))
    with pytest.raises(DlRuntimeError, match="overflow the cache of 12 positions"):
        session.feed(_tokens((1, 1)))
    with pytest.raises(DlRuntimeError, match=r"decode takes tokens \[1, S\], got shape \[2, 1\]"):
        session.feed(_tokens((2, 1)))
    with pytest.raises(DlRuntimeError, match="at least 1 sequence"):
        DecodeSession(model, batch=0)
    # the function itself, called with no tokens: an index error, not a read outside the buffers
    weights = model._tensors[:model._n_model]
    with pytest.raises(DlIndexError, match=r"gather: an index is out of range \[-S, S\) for axis 2"):
        session.backend.call("decode", [*weights, np.zeros((1, 0), np.int32), np.array(0, np.int32),
                                        *session.caches])


def test_a_static_sequence_length_and_sinusoidal_positions(tmp_path: Path) -> None:
    static = TINY.replace("i32[N, T]", "i32[N, 8]").replace(f"position_embedding(x, {L}, 32)",
                                                             "position_embedding(x, 8, 32)")
    sinusoidal = TINY.replace(f"x + position_embedding(x, {L}, 32)",
                              "x + sinusoidal_positions(shape=[T, 32])")
    # T = 16 = the head size = the vocabulary: the sequence axis is told apart by where it is
    ambiguous = static.replace("i32[N, 8]", "i32[N, 16]").replace("position_embedding(x, 8, 32)",
                                                                  "position_embedding(x, 16, 32)")
    tokens = _tokens((2, 8), seed=5)
    # (source, the caches' length -- sinusoidal: no table, the default context --, predict's width)
    for source, max_len, width in ((static, 8, 8), (sinusoidal, 64, 8), (ambiguous, 16, 16)):
        model = _model(source, "interp", tmp_path)
        session = DecodeSession(model, batch=2, default_context=64)
        assert session.max_len == max_len
        got = np.concatenate([session.feed(tokens[:, :3]), session.feed(tokens[:, 3:4]),
                              session.feed(tokens[:, 4:])], axis=1)
        padded = np.zeros((2, width), np.int32)        # a static T takes all of it; a causal
        padded[:, :8] = tokens                          # model never looks at the padding
        want = model.predict(padded)[:, :8]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


UNFUSED = f"""use "std/nn.dl"
model unfused {{
    input tokens: i32[N, T]
    target next: i32[N, T]
    let x = embedding(tokens, {VOCAB}, 16, name="tok")
    output logits = dense(x + causal_self_attention(x, heads=2, dim=16), {VOCAB}, name="head")
    loss sparse_categorical_crossentropy(logits, next, from_logits=true)
    optimizer adam
}}
"""


@pytest.mark.parametrize(("body", "message"), [
    ("x + causal_self_attention(x, heads=2, dim=16)", r"dl.matmul multiplies two sequences \(a \[T, T\] score"),
    ("x + flip(x, axis=1)", r"dl.slice \(in the decomposition of dl.flip\) slices along the sequence axis"),
    ("x + iota(f32, [T, T], axis=0) @ x",
     r"dl.iota builds a \[T, T\] tensor over positions x positions"),
    ("x + multi_head_attention(x, 2, 16, causal=false)", "dl.attention is not causal"),
    ("x + mean(x, axes=[1], keepdims=true)", "dl.mean reduces over the sequence axis"),
    ("x + cumsum(x, axis=1)", "dl.cumsum reads across positions"),
    ("x + softmax(x, axis=1)", "dl.softmax normalizes over the sequence axis"),
])
def test_a_model_that_mixes_positions_is_a_decode_error_at_its_line(body: str, message: str) -> None:
    source = UNFUSED.replace("x + causal_self_attention(x, heads=2, dim=16)", body)
    module = compile_source(source, "mixes.dl")
    with pytest.raises(DecodeError, match="cannot run this model with a KV cache: " + message) as e:
        build_decode(module)
    assert e.value.loc is not None and e.value.loc.line > 0
    if "std/nn.dl" not in e.value.loc.file:
        assert e.value.loc.file == "mixes.dl" and e.value.loc.line == 6


def test_decode_is_a_verified_function_with_in_place_caches() -> None:
    module = compile_source(TINY, "tiny.dl")
    func, sig = build_decode(module, max_len=6)
    assert [p.name for p in func.params][-6:] == ["tokens", "pos", "kv.0.key", "kv.0.value",
                                                  "kv.1.key", "kv.1.value"]
    assert sig.max_len == 6 and [t.shape for _, t in sig.caches] == [("N", 2, 6, 16)] * 4
    assert func.attrs["inplace"] == ((1, "kv.0.key"), (2, "kv.0.value"), (3, "kv.1.key"), (4, "kv.1.value"))
    params = [np.random.default_rng(i).normal(size=[int(d) for d in p.type.shape]).astype(np.float32)
              for i, p in enumerate(func.params[:-6])]
    caches = [np.zeros((1, 2, 6, 16), np.float32) for _ in range(4)]
    out = interpret(func, [*params, np.array([[3, 4]], np.int32), np.array(1, np.int32), *caches])
    assert out[0].shape == (1, 2, VOCAB)
    assert (out[1][:, :, [0, 3, 4, 5]] == 0).all() and (out[1][:, :, 1:3] != 0).all()   # rows pos..pos+S
    with pytest.raises(DecodeError, match="at least 1 position"):
        build_decode(module, max_len=0)
    with pytest.raises(DecodeError, match=r"a context of 13 positions is longer than the model's position "
                                          r"table \(12 rows\)"):
        build_decode(module, max_len=13)


def test_dlc_generate_falls_back_without_a_cache_with_a_note(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "unfused.dl"
    source.write_text(UNFUSED)
    weights = tmp_path / "w.npz"
    load_model(source, seed=1, backend="interp").save(weights)
    base = ["generate", str(source), "--weights", str(weights), "--prompt", "\x01\x02", "--tokens", "4",
            "--temperature", "0", "--backend", "interp"]
    assert main(base) == 0
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("note: generating without a KV cache: ")
    assert "std/nn.dl:22:" in err and "dl.matmul multiplies two sequences" in err
    assert main([*base, "--no-cache"]) == 0
    assert capsys.readouterr() == (out, "")


def test_dlc_generate_on_char_gpt_with_and_without_the_cache(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    example = ROOT / "examples" / "char_gpt.dl"
    weights = tmp_path / "char.npz"
    load_model(example, seed=0, backend="interp").save(weights)
    base = ["generate", str(example), "--weights", str(weights), "--prompt", "The ", "--tokens", "3",
            "--temperature", "0", "--backend", "interp"]
    assert main(base) == 0
    cached = capsys.readouterr()
    assert cached.err == "" and cached.out.startswith("The ") and len(cached.out.encode()) >= 8
    assert main([*base, "--no-cache"]) == 0
    assert capsys.readouterr().out == cached.out


def test_dlc_ir_prints_decode_and_names_the_op_it_cannot_follow(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ir", str(ROOT / "examples" / "char_gpt.dl"), "--fn", "decode"]) == 0
    text = capsys.readouterr().out
    assert "func.func @decode(" in text and '%pos: tensor<i32> {dl.name = "pos"}' in text
    assert 'tensor<?x4x64x32xf32, "N"> {dl.name = "kv.1.value"}' in text and "inplace = [[1, " in text
    module = parse_module(text, "decode.mlir")
    assert print_module(module) == text                  # print(parse(print(m))) == print(m)
    assert main(["ir", str(ROOT / "examples" / "adder_gpt.dl"), "--fn", "decode"]) == 1
    err = capsys.readouterr().err
    assert "adder_gpt.dl:20:21: error: cannot run this model with a KV cache: dl.slice slices along the " \
           "sequence axis" in err


def test_a_batch_generates_what_each_sequence_does_alone(model: Model) -> None:
    prompts = np.array([[1, 2, 3, 4], [5, 6, 7, 8]], np.int32)
    greedy = lambda z: np.argmax(z, axis=-1)  # noqa: E731
    both = DecodeSession(model, batch=2).generate(prompts, 15, greedy)
    alone = DecodeSession(model)
    assert both.shape == (2, 19)
    for row in range(2):
        assert (alone.generate(prompts[row:row + 1], 15, greedy)[0] == both[row]).all()


def test_the_session_reads_the_models_weights_as_they_are_now(tmp_path: Path) -> None:
    model = _model(TINY, "interp", tmp_path)
    session = DecodeSession(model)
    weights = model.get_weights()
    model.set_weights({name: w * 0.5 if name.startswith("head.") else w for name, w in weights.items()})
    tokens = _tokens((1, 4), seed=9)
    want = model.predict(tokens)
    np.testing.assert_allclose(session.feed(tokens), want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("body", [
    "x + softmax(x, axis=-1) * 2.0",
    "x + transpose(transpose(x, [1, 0, 2]) * 0.5, [1, 0, 2])",
    "x + reshape(softmax(reshape(x, [N, T, 4, 4]), axis=-1), [N, T, 16])",
    "x + concat([x[:, :, 8:], x[:, :, :8]], axis=2)",
    "x + std(x, axes=[2], keepdims=true) + logsumexp(x, axes=[2], keepdims=true)",
    "x + sinusoidal_positions(shape=[T, 16]) + expand_dims(squeeze(x[:, :, 0:1], axis=[2]), axis=[2])",
    "x + multi_head_attention(layer_norm(x), 2, 16) + multi_head_attention(x, 4, 16, name=\"second\")",
])
def test_position_wise_ops_are_followed(body: str, tmp_path: Path) -> None:
    model = _model(UNFUSED.replace("x + causal_self_attention(x, heads=2, dim=16)", body), "interp", tmp_path)
    session = DecodeSession(model, batch=2, default_context=8)
    tokens = _tokens((2, 7), seed=3)
    got = np.concatenate([session.feed(tokens[:, :4]), session.feed(tokens[:, 4:5]), session.feed(tokens[:, 5:])],
                         axis=1)
    want = model.predict(tokens)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_generate_keeps_one_session_per_model_and_thread(model: Model) -> None:
    """Repeated generation derives and loads ``decode`` once (DecodeSession.of), and the
    shared session gives what a fresh one gives; another thread gets its own."""
    import threading

    from runtime.commands.generate import generate
    from runtime.decode import DecodeSession

    first = generate(model, [1, 2, 3], 12, 0.0)
    session = DecodeSession.of(model, default_context=64)
    assert generate(model, [1, 2, 3], 12, 0.0) == first
    assert DecodeSession.of(model, default_context=64) is session
    others: list[DecodeSession] = []
    t = threading.Thread(target=lambda: others.append(DecodeSession.of(model, default_context=64)))
    t.start()
    t.join()
    assert others[0] is not session
