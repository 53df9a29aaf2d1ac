"""dlc generate: sampling text from a language model, token by token."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from runtime.cli import main
from runtime.commands.generate import generate
from runtime.model import load_model

TINY = """use "std/nn.dl"
model tiny_lm {
    input tokens: i32[N, T]
    target next: i32[N, T]
    let x = embedding(tokens, 128, 16, name="tok")
    let h = transformer_block(x + position_embedding(x, 8, 16), heads=2, dim=16)
    output logits = dense(h, 128, name="head", kernel_init=normal(std=1.0))
    loss sparse_categorical_crossentropy(logits, next, from_logits=true)
    optimizer adam
}
"""


@pytest.fixture()
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    source = tmp_path / "tiny_lm.dl"
    source.write_text(TINY)
    weights = tmp_path / "w.npz"
    load_model(source, seed=1, backend="interp").save(weights)
    return source, weights


def test_greedy_generation_appends_the_argmax_at_the_last_position(tiny: tuple[Path, Path]) -> None:
    source, weights = tiny
    model = load_model(source, weights=weights, backend="interp")
    out = generate(model, list(b"ab"), 10, 0.0, context=8, cache=False)
    assert out[:2] == list(b"ab") and len(out) == 12
    for i in range(2, 12):                               # each token: argmax given the last 8 before it
        seen = np.array([out[max(0, i - 8):i]], np.int32)
        assert out[i] == int(np.argmax(model.predict(seen)[0, -1]))
    cached = generate(model, list(b"ab"), 10, 0.0, context=8)   # the KV cache (tests/test_kv_cache.py)
    assert cached[:9] == out[:9]                         # the same while the 8 positions last


def test_sampling_is_seeded_and_the_cli_prints_prompt_and_text(tiny: tuple[Path, Path],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    source, weights = tiny
    model = load_model(source, weights=weights, backend="interp")
    a = generate(model, list(b"hi"), 6, 1.0, seed=3)
    assert a == generate(model, list(b"hi"), 6, 1.0, seed=3)
    assert main(["generate", str(source), "--weights", str(weights), "--prompt", "hi", "--tokens", "6",
                 "--temperature", "1", "--seed", "3", "--backend", "interp"]) == 0
    assert capsys.readouterr().out == bytes(a).decode("utf-8", errors="replace") + "\n"


def test_generate_errors_are_user_errors(tiny: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    source, weights = tiny
    base = ["generate", str(source), "--weights", str(weights), "--backend", "interp"]
    assert main([*base, "--prompt", "é"]) == 1            # UTF-8 bytes 195, 169: outside 128 tokens
    assert "outside the model's vocabulary of 128 tokens" in capsys.readouterr().err
    assert main([*base, "--prompt", ""]) == 1
    assert "the prompt is empty" in capsys.readouterr().err
    adder = Path(__file__).resolve().parents[1] / "examples" / "adder_gpt.dl"
    adder_weights = weights.with_name("adder.npz")
    load_model(adder, backend="interp").save(adder_weights)      # its output is the answer positions only
    assert main(["generate", str(adder), "--weights", str(adder_weights), "--prompt", "1",
                 "--backend", "interp"]) == 1
    assert "needs logits at every input position: output digits is f32[N, 4, 10]" in capsys.readouterr().err
