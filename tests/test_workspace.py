"""Each native entry point keeps its workspace between calls (compiler/codegen/llvm.py):
results stay right when the needed size grows and shrinks, when callers on several threads
share one entry point (a busy kept workspace makes a caller allocate its own), and after a
call that stops at a failed run-time check."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import runtime
from compiler.diagnostics import DlIndexError

SOURCE = """
fn mlp(x: f32[N, K], w: f32[K, H], v: f32[H, C]) -> f32[N, C] {
    let h = relu(x @ w)
    return softmax(h @ v)
}
fn pick(table: f32[V, D], ids: i32[N]) -> f32[N, D] { return exp(gather(table, ids, axis=0)) * 2.0 }
"""


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _reference(x: np.ndarray, w: np.ndarray, v: np.ndarray) -> np.ndarray:
    h = np.maximum(x.astype(np.float64) @ w, 0)
    return _softmax(h @ v)


@pytest.fixture(scope="module")
def lib():
    return runtime.compile(SOURCE, cache=False)


def _operands(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    return (rng.normal(size=(n, 96)).astype(np.float32), rng.normal(size=(96, 80)).astype(np.float32) / 10,
            rng.normal(size=(80, 7)).astype(np.float32))


def test_the_kept_workspace_serves_growing_and_shrinking_sizes(lib) -> None:
    rng = np.random.default_rng(0)
    for n in (2, 300, 1, 0, 1000, 17, 1000, 3):
        x, w, v = _operands(rng, n)
        np.testing.assert_allclose(lib.mlp(x, w, v), _reference(x, w, v), rtol=2e-5, atol=1e-6)


def test_callers_on_several_threads_share_an_entry_point(lib) -> None:
    failures: list[str] = []

    def caller(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for i in range(15):
            x, w, v = _operands(rng, 50 + 97 * ((seed + i) % 5))
            got = lib.mlp(x, w, v)
            if not np.allclose(got, _reference(x, w, v), rtol=2e-5, atol=1e-6):
                failures.append(f"thread {seed}, call {i}")

    workers = [threading.Thread(target=caller, args=(seed,)) for seed in range(6)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    assert failures == []


def test_a_failed_check_hands_the_workspace_back(lib) -> None:
    table = np.arange(12, dtype=np.float32).reshape(6, 2) / 10
    good = np.array([0, 5, -1, 2] * 50, dtype=np.int32)
    for _ in range(3):
        with pytest.raises(DlIndexError):
            lib.pick(table, np.array([0, 6] * 100, dtype=np.int32))
        np.testing.assert_allclose(lib.pick(table, good), np.exp(table[good].astype(np.float64)) * 2, rtol=1e-6)
