"""The native thread pool (compiler/codegen/threads.py) and the parallel GEMM: results equal
numpy's and are bit-identical for 1, 2 and 3 threads; the pool survives many calls, concurrent
callers and libraries being freed; an idle pool uses no CPU."""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import runtime
from compiler.codegen import threads
from runtime.model import load_model

MATMULS = """
fn mm(a: f32[M, K], b: f32[K, N]) -> f32[M, N] { return a @ b }
fn mm_tb(a: f32[M, K], b: f32[N, K]) -> f32[M, N] { return a @ transpose(b) }
fn mm_ta(a: f32[K, M], b: f32[K, N]) -> f32[M, N] { return transpose(a) @ b }
fn dense(a: f32[M, K], b: f32[K, N], bias: f32[N]) -> f32[M, N] { return relu(a @ b + bias) }
fn total(x: f32[R, C]) -> f32[] { return sum(x) }
fn rows(x: f32[R, C]) -> f32[R] { return sum(x, axis=1) }
"""
# (M, K, N): split over columns and over rows, K slices (K > KC), the small path (M < 16),
# the narrow tile (N <= 16), tails everywhere.
SHAPES = [(67, 301, 45), (300, 100, 10), (45, 900, 130), (5, 400, 300), (1, 600, 700), (200, 77, 333)]
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lib():
    return runtime.compile(MATMULS, cache=False)


def with_threads(lib, n: int) -> None:
    threads.set_num_threads(lib._library, n)


def test_gemm_matches_numpy_and_is_identical_across_thread_counts(lib):
    rng = np.random.default_rng(0)
    for m, k, n in SHAPES:
        a = rng.standard_normal((m, k)).astype(np.float32)
        b = rng.standard_normal((k, n)).astype(np.float32)
        bias = rng.standard_normal(n).astype(np.float32)
        want = a.astype(np.float64) @ b
        results = {}
        for t in (1, 2, 3):
            with_threads(lib, t)
            got = (lib.mm(a, b), lib.mm_tb(a, np.ascontiguousarray(b.T)), lib.mm_ta(np.ascontiguousarray(a.T), b),
                   lib.dense(a, b, bias))
            for g in got[:3]:
                np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-4 * np.sqrt(k), err_msg=str((m, k, n, t)))
            np.testing.assert_allclose(got[3], np.maximum(want + bias, 0), rtol=1e-4, atol=1e-4 * np.sqrt(k))
            results[t] = got
        for t in (2, 3):
            for g1, gt in zip(results[1], results[t]):
                assert np.array_equal(g1, gt), (m, k, n, t)
    with_threads(lib, threads.num_threads())


def test_reductions_identical_across_thread_counts(lib):
    x = np.random.default_rng(1).standard_normal((300, 1001)).astype(np.float32)
    outs = []
    for t in (1, 2, 3):
        with_threads(lib, t)
        outs.append((lib.total(x), lib.rows(x)))
    for o in outs[1:]:
        assert np.array_equal(o[0], outs[0][0]) and np.array_equal(o[1], outs[0][1])
    np.testing.assert_allclose(outs[0][1], x.astype(np.float64).sum(axis=1), rtol=1e-4, atol=1e-3)
    with_threads(lib, threads.num_threads())


def test_training_step_identical_across_thread_counts(monkeypatch):
    rng = np.random.default_rng(2)
    x = rng.random((128, 784), dtype=np.float32)
    y = rng.integers(0, 10, 128)
    weights = []
    for t in (1, 2, 3):
        monkeypatch.setenv("DLC_NUM_THREADS", str(t))
        threads.num_threads.cache_clear()
        assert threads.num_threads() == t
        model = load_model(ROOT / "bench" / "mlp_sgd.dl", seed=0, backend="native")
        model.fit(x, y, epochs=1, batch_size=64, shuffle=False, verbose=0)
        weights.append({k: v.copy() for k, v in model.weights.items()})
    threads.num_threads.cache_clear()
    for w in weights[1:]:
        for name, value in weights[0].items():
            assert np.array_equal(w[name], value), name


def test_many_calls_and_concurrent_callers(lib):
    with_threads(lib, 2)
    rng = np.random.default_rng(3)
    a = rng.standard_normal((64, 256)).astype(np.float32)
    b = rng.standard_normal((256, 96)).astype(np.float32)
    want = lib.mm(a, b)
    for _ in range(200):
        assert np.array_equal(lib.mm(a, b), want)
    failures = []

    def hammer():
        for _ in range(150):
            if not np.array_equal(lib.mm(a, b), want):
                failures.append(1)

    workers = [threading.Thread(target=hammer) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not failures


def test_libraries_freed_while_their_pool_is_warm():
    rng = np.random.default_rng(4)
    a = rng.standard_normal((48, 200)).astype(np.float32)
    b = rng.standard_normal((200, 64)).astype(np.float32)
    for _ in range(4):
        mod = runtime.compile(MATMULS)          # a fresh library each time (disk cache after the first)
        threads.set_num_threads(mod._library, 3)
        np.testing.assert_allclose(mod.mm(a, b), a @ b, rtol=1e-4, atol=1e-4)
        del mod
        gc.collect()                     # joins the workers before the code is freed


def test_idle_pool_uses_no_cpu(lib):
    with_threads(lib, 2)
    a = np.ones((128, 512), np.float32)
    lib.mm(a, np.ones((512, 128), np.float32))
    time.sleep(0.05)                     # past the spinning phase: workers sleep in futex
    start = time.process_time()
    time.sleep(0.3)
    assert time.process_time() - start < 0.05


def _task_threads() -> set[str]:
    return {p.name for p in Path("/proc/self/task").iterdir()}


def test_small_products_stay_on_the_calling_thread():
    # a small batch-1 layer (1 x 128 @ 128 x 128: 16K multiply-adds, a 64 KB weight) is not
    # worth waking a worker for: it never starts one, however many threads the library may
    # use.  (The MNIST MLP's 1 x 784 @ 784 x 512 is: reading its 1.6 MB weight takes ~19 us
    # on one Zen 5 core, ~9 us on two.)
    mod = runtime.compile(MATMULS, cache=False)
    with_threads(mod, 4)
    before = _task_threads()
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((1, 128)).astype(np.float32), rng.standard_normal((128, 128)).astype(np.float32)
    for _ in range(3):
        np.testing.assert_allclose(mod.mm(a, b), a.astype(np.float64) @ b, rtol=1e-4, atol=1e-3)
    assert _task_threads() == before
    b = rng.standard_normal((784, 512)).astype(np.float32)
    big = rng.standard_normal((256, 784)).astype(np.float32)
    mod.mm(big, b)                       # 100M multiply-adds: split, so workers start
    assert len(_task_threads() - before) >= 1
    del mod
    gc.collect()


def test_back_to_back_jobs_of_different_sizes_stay_exact():
    """Parallel jobs with different task counts, back to back (a GEMM, an elementwise split,
    a 64-chunk reduction): a worker still leaving one job while the next is posted must
    neither take a task of the new job twice nor lose count of them.  (That race once
    hung the caller or ran a task twice -- wrong results -- about once a minute in three
    processes calling this function; here it runs for two seconds.)"""
    mod = runtime.compile("""
fn f(a: f32[M, K], b: f32[K, N], x: f32[P]) -> (f32[M, N], f32[P], f32[]) {
    return a @ b, exp(x) * 2.0, sum(x * 3.0)
}
""", cache=False)
    with_threads(mod, 2)
    rng = np.random.default_rng(7)
    a = rng.standard_normal((128, 128)).astype(np.float32)
    b = rng.standard_normal((128, 256)).astype(np.float32)
    x = rng.standard_normal(1 << 18).astype(np.float32)
    want = mod.f(a, b, x)
    end = time.perf_counter() + 2.0
    while time.perf_counter() < end:
        for got, expected in zip(mod.f(a, b, x), want):
            assert np.array_equal(got, expected)
