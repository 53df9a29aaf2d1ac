"""Plain SGD on an embedding table updates only the rows the batch read, bit-identically."""

from __future__ import annotations

import numpy as np
import pytest

import runtime
from compiler.ir.builder import new_function
from compiler.ir.core import Module
from compiler.ir.interpreter import interpret
from compiler.ir.types import DType, TensorType
from compiler.ops.rules import zeros
from compiler.optimizers import sparse_sgd_rows
from compiler.passes.autodiff import gradient_function
from compiler.train_step import build_train_step, train_signature
from frontend_dsl import compile_source

F32, I32 = DType.f32, DType.i32


def _dense_and_sparse(rank: int) -> Module:
    """@dense: p - lr * scatter_add(zeros, ids, ct); @sparse: the same by sparse_sgd_rows."""
    ids_shape = ("N", 3)[:rank] if rank else ()
    params = [("p", TensorType(F32, (11, 4))), ("ids", TensorType(I32, ids_shape)),
              ("ct", TensorType(F32, (*ids_shape, 4))), ("lr", TensorType(F32, ()))]
    funcs = []
    for name in ("dense", "sparse"):
        f, b = new_function(name, params)
        p, ids, ct, lr = f.params
        g = b.scatter_add(zeros(b, p.type), ids, ct, axis=0)
        out = sparse_sgd_rows(b, p, g, lr) if name == "sparse" else b.sub(p, b.mul(g, lr))
        assert out is not None
        f.outputs = [out]
        funcs.append(f)
    return Module(funcs)


@pytest.mark.parametrize("rank", [1, 2])
def test_the_sparse_update_is_bit_identical_to_the_dense_one(rank: int) -> None:
    module = _dense_and_sparse(rank)
    native = runtime.compile(module, cache=False, passes="")
    rng = np.random.default_rng(rank)
    for n in (0, 1, 2, 7, 40):
        shape = (n, 3)[:rank]
        ids = rng.integers(-11, 11, shape).astype(np.int32)
        if ids.size > 2:
            ids.flat[1] = ids.flat[0]                       # a repeated id, and its negative twin
            ids.flat[2] = ids.flat[0] - 11 if ids.flat[0] >= 0 else ids.flat[0] + 11
        ct = (rng.standard_normal((*shape, 4)) * 10.0 ** rng.integers(-6, 6, (*shape, 4))).astype(np.float32)
        if ct.size > 8:
            ct.flat[:3] = [np.nan, -0.0, np.inf]
        p = rng.standard_normal((11, 4)).astype(np.float32)
        p[0, :2] = [-0.0, np.nan]
        lr = np.float32(0.37)
        want = native.dense(p, ids, ct, lr)
        for got in (native.sparse(p, ids, ct, lr), interpret(module.get("sparse"), [p, ids, ct, lr])[0]):
            assert got.tobytes() == want.tobytes(), n
        assert interpret(module.get("dense"), [p, ids, ct, lr])[0].tobytes() == want.tobytes()


SOURCE = """
model m {
    input tokens: i32[N, 5]
    target topic: i32[N]
    let words = embedding(tokens, 50, 8, name="words")
    output probs = dense(mean(words, axis=1), 3, activation=softmax)
    loss sparse_categorical_crossentropy(probs, topic)
    optimizer sgd(lr=0.5)
}
"""


def test_a_train_step_updates_the_table_in_place_touching_only_the_batch_rows() -> None:
    module = compile_source(SOURCE, "m.dl")
    step = build_train_step(module)
    assert not any(op.name == "sub" and op.result.type.shape == (50, 8) for op in step.ops)
    sig = train_signature(module)
    grad = gradient_function(module, "loss", [n for n, _ in sig.params], new_name="g", with_value=True)
    native = runtime.compile(module, cache=False)
    rng = np.random.default_rng(0)
    table = rng.standard_normal((50, 8)).astype(np.float32)
    kernel = rng.standard_normal((8, 3)).astype(np.float32)
    bias = np.zeros(3, np.float32)
    tokens = rng.integers(0, 50, (6, 5)).astype(np.int32)
    tokens[1, :3] = tokens[0, 0]
    topic = rng.integers(0, 3, 6).astype(np.int32)
    lr = np.float32(0.5)
    grads = interpret(grad, [table, kernel, bias, tokens, topic])
    dense = table - grads[1] * lr
    interp = interpret(step, [table, kernel, bias, tokens, topic, lr])
    assert interp[1].tobytes() == dense.tobytes()
    untouched = np.setdiff1d(np.arange(50), tokens)
    before = table.copy()
    out = native.train_step(table, kernel, bias, tokens, topic, lr)
    assert out[1] is table or np.shares_memory(out[1], table)          # written in place
    np.testing.assert_array_equal(table[untouched], before[untouched])
    np.testing.assert_allclose(table, dense, rtol=1e-5, atol=1e-7)
