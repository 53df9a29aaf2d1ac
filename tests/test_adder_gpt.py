"""The adder GPT example: its generated data, and a tiny version trained a few steps from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from frontend_dsl import compile_file
from runtime.cli import main
from runtime.data import load_data

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _value(digits: np.ndarray) -> np.ndarray:
    return digits @ (10 ** np.arange(digits.shape[1] - 1, -1, -1))


def test_adder_data_is_correct_seeded_and_held_out() -> None:
    d = load_data("adder_gpt", seed=4)
    assert d.x_train.shape == (50000, 9) and d.y_train.shape == (50000, 4) and d.x_test.shape == (2000, 9)
    for x, y in ((d.x_train, d.y_train), (d.x_test, d.y_test)):
        a, b = _value(x[:, :3]), _value(x[:, 3:6])
        assert (_value(y[:, ::-1]) == a + b).all()                 # the answer is a + b, reversed
        assert (x[:, 6:] == y[:, :3]).all()                        # the input holds the answer shifted by one
    train = set(map(bytes, d.x_train[:, :6].astype(np.int8)))
    assert not any(bytes(row) in train for row in d.x_test[:, :6].astype(np.int8))
    assert (load_data("adder_gpt", seed=4).x_train == d.x_train).all()
    assert not (load_data("adder_gpt", seed=5).x_train == d.x_train).all()


def test_the_example_is_a_two_block_four_head_gpt_of_width_128() -> None:
    module = compile_file(EXAMPLES / "adder_gpt.dl")
    params = {p.name: p.type.dsl_str() for p in module.get("predict").params}
    assert params["transformer_block_2.attn.query_kernel"] == "f32[128, 128]"
    assert params["transformer_block_2.mlp.up.kernel"] == "f32[128, 512]"
    assert "transformer_block_3.ln1.gamma" not in params
    assert module.attrs["model"]["metrics"] == ["sequence_accuracy"]


TINY = """use "std/nn.dl"
model tiny_adder {
    input tokens: i32[N, 3]
    target answer: i32[N, 2]
    let x = embedding(tokens, 10, 16, name="tok")
    let h = transformer_block(x + position_embedding(x, 3, 16), heads=2, dim=16)
    output digits = dense(layer_norm(h), 10, name="head")[:, 1:, :]
    loss sparse_categorical_crossentropy(digits, answer, from_logits=true)
    optimizer adamw(lr=0.01, global_clipnorm=1.0)
    metrics [sequence_accuracy]
}
"""


def test_a_tiny_adder_trains_a_few_steps_from_the_cli(tmp_path: Path) -> None:
    source = tmp_path / "tiny_adder.dl"
    source.write_text(TINY)
    out = tmp_path / "report.json"
    assert main(["train", str(source), "--data", "adder_gpt", "--epochs", "3", "--batch-size", "16",
                 "--quiet", "--seed", "0", "--backend", "interp", "--metrics-out", str(out)]) == 0
    report = json.loads(out.read_text())
    losses = report["history"]["loss"]           # 1-digit problems: 80 to train on, 20 held out
    assert losses[-1] < losses[0] < 2.4          # chance is ln 10 = 2.30
    assert 0.0 <= report["test"]["sequence_accuracy"] <= 1.0
