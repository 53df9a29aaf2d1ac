"""``Model.summary()``'s layer table (Keras's ``model.summary()``): one row per layer call --
name, kind, output type with the batch dim as its symbol, parameter count -- recorded by the
frontend in ``attrs["model"]["layers"]``."""

from __future__ import annotations

from pathlib import Path

import pytest

import runtime
from frontend_dsl.api import compile_source

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def rows(example: str) -> list[tuple[str, str, str, int]]:
    return runtime.load_model(EXAMPLES / example, backend="interp").layer_rows()


def test_mlp_rows_are_keras_rows() -> None:
    assert rows("mnist_mlp.dl") == [("dense_1", "dense", "f32[N, 512]", 784 * 512 + 512),
                                     ("dense_2", "dense", "f32[N, 10]", 512 * 10 + 10)]


def test_cnn_rows_list_convolutions_pooling_and_flatten() -> None:
    # the counts of Keras's mnist_cnn example: 320, 18,496, 204,928, 1,290
    assert rows("mnist_cnn.dl") == [
        ("conv2d_1", "conv2d", "f32[N, 26, 26, 32]", 320),
        ("max_pool_1", "max_pool", "f32[N, 13, 13, 32]", 0),
        ("conv2d_2", "conv2d", "f32[N, 11, 11, 64]", 18_496),
        ("max_pool_2", "max_pool", "f32[N, 5, 5, 64]", 0),
        ("flatten_1", "flatten", "f32[N, 1600]", 0),
        ("dropout_1", "dropout", "f32[N, 1600]", 0),
        ("dense_1", "dense", "f32[N, 128]", 204_928),
        ("dropout_2", "dropout", "f32[N, 128]", 0),
        ("dense_2", "dense", "f32[N, 10]", 1_290),
    ]


def test_batch_norm_counts_its_moving_statistics_as_keras() -> None:
    table = rows("fmnist_mlp_dropout_bn.dl")
    assert [r[:2] for r in table] == [("dense_1", "dense"), ("batch_norm_1", "batch_norm"), ("dropout_1", "dropout"),
                                      ("dense_2", "dense"), ("batch_norm_2", "batch_norm"), ("dropout_2", "dropout"),
                                      ("dense_3", "dense")]
    assert table[0] == ("dense_1", "dense", "f32[N, 512]", 784 * 512)          # use_bias=false
    assert table[1] == ("batch_norm_1", "batch_norm", "f32[N, 512]", 4 * 512)  # gamma, beta, mean, variance
    model = runtime.load_model(EXAMPLES / "fmnist_mlp_dropout_bn.dl", backend="interp")
    total = sum(t.num_elements() for _, t in [*model.signature.params, *model.signature.model_state])
    assert sum(r[3] for r in table) == total


def test_embedding_row_and_no_row_for_an_expression() -> None:
    # `let document = mean(words, axis=1)` is no layer: Keras lists layers only
    assert rows("text_classifier.dl") == [("words", "embedding", "f32[N, 32, 32]", 1000 * 32),
                                          ("dense_1", "dense", "f32[N, 64]", 32 * 64 + 64),
                                          ("dense_2", "dense", "f32[N, 4]", 64 * 4 + 4)]


SOURCE = """
model m {
    input x: f32[B, 6]
    target y: f32[B, 1]
    param w: f32[6, 1] = zeros
    let h = dense(x, 3, name="hidden")
    output out = matmul(x, w) + dense(h, 1)
    loss mse(out, y)
    optimizer sgd(lr=0.1)
}
"""


def test_the_table_prints_before_the_parameters() -> None:
    model = runtime.load_model(compile_source(SOURCE, "m.dl"), backend="interp")
    assert model.layer_rows() == [("hidden", "dense", "f32[B, 3]", 21), ("dense_2", "dense", "f32[B, 1]", 4)]  # counted even when named, as Keras
    text = str(model)
    lines = text.splitlines()
    assert lines.index(next(s for s in lines if s.startswith("layer (kind)"))) < lines.index(
        next(s for s in lines if s.startswith("parameter")))
    assert any(s.split() == ["hidden", "(dense)", "f32[B,", "3]", "21"] for s in lines)
    assert "w " in text and "total parameters: 31" in text     # a `param` is a parameter, not a layer


@pytest.mark.parametrize("example", ["mnist_cnn.dl", "fmnist_mlp_dropout_bn.dl"])
def test_a_warm_load_keeps_the_layers(example, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DLC_CACHE_DIR", str(tmp_path / "cache"))
    cold = runtime.load_model(EXAMPLES / example, backend="interp")
    import frontend_dsl.api as api

    def fail(*args, **kwargs):
        raise AssertionError("the frontend ran on a warm load")

    monkeypatch.setattr(api, "compile_source", fail)
    monkeypatch.setattr(api, "compile_file", fail)
    warm = runtime.load_model(EXAMPLES / example, backend="interp")
    assert warm.layer_rows() == cold.layer_rows() and len(warm.layer_rows()) >= 7
    assert str(warm) == str(cold)


def test_layers_inside_blocks_get_rows_under_their_block_names() -> None:
    """A block's layers (std/nn.dl's transformer_block) are rows named by their call path."""
    got = rows("adder_gpt.dl")
    names = [r[0] for r in got]
    assert names[:3] == ["tok", "pos.table", "transformer_block_1.ln1"]
    assert ("transformer_block_2.attn", "multi_head_attention", "f32[N, 9, 128]", 4 * (128 * 128 + 128)) in got
    assert ("transformer_block_1.mlp.up", "dense", "f32[N, 9, 512]", 128 * 512 + 512) in got
    model = runtime.load_model(EXAMPLES / "adder_gpt.dl", backend="interp")
    assert sum(r[3] for r in got) == sum(w.size for w in model.weights.values())
