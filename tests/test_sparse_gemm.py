"""The zero-skipping GEMM path (compiler/codegen/sparse_gemm.py): it must agree with the
dense kernel and with numpy on every shape and layout it takes, keep numpy's NaN
semantics (0 * inf), and give bit-identical results across thread counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_codegen_gemm import F32, layouts_module
from test_codegen_threads import with_threads

import runtime
from compiler.codegen import gemm, threads
from compiler.codegen.target import CodegenOptions
from runtime.model import load_model

ROOT = Path(__file__).resolve().parent.parent
# around the limits (MIN_M 8, MIN_K 16, MIN_N 64, MAX_K 4096), the group size (4 rows: a
# last group of 1 row takes the lone-row blocks), the column-chunk width (16) and the block
# widths (64, 128); some below the limits (the dense kernel)
SHAPES = [(128, 784, 512), (8, 16, 64), (9, 17, 65), (33, 100, 130), (70, 40, 200), (13, 4096, 65),
          (129, 128, 512), (10, 4097, 64), (7, 300, 64), (5, 9, 64), (1, 31, 96), (40, 15, 128)]


@pytest.fixture(scope="module")
def modules():
    on = runtime.compile(layouts_module(F32), cache=False, passes="")
    off = runtime.compile(layouts_module(F32), cache=False, passes="",
                          options=CodegenOptions(skip_zeros=False))
    return on, off


def sparse(rng, shape, density=0.2):
    a = rng.random(shape, dtype=np.float32)
    a[rng.random(shape) >= density] = 0
    return a


@pytest.mark.parametrize("ta", [False, True])
def test_agrees_with_numpy_and_the_dense_kernel(modules, ta):
    on, off = modules
    rng = np.random.default_rng(0)
    name = f"mm_{int(ta)}0"
    for m, k, n in SHAPES:
        a = sparse(rng, (k, m) if ta else (m, k))
        b = rng.standard_normal((k, n)).astype(np.float32)
        want = (a.T if ta else a).astype(np.float64) @ b
        got, dense = on[name](a, b), off[name](a, b)
        tol = 1e-4 * np.sqrt(k)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=tol, err_msg=str((m, k, n)))
        np.testing.assert_allclose(got, dense, rtol=1e-4, atol=tol, err_msg=str((m, k, n)))


def test_narrower_vector_targets():
    """AVX2 (8 lanes: 2-vector blocks) and baseline SSE2 (4 lanes) take the path too."""
    from compiler.codegen.target import Target

    generic = Target.generic()
    rng = np.random.default_rng(6)
    for target in (Target(generic.triple, "haswell", "+avx,+avx2,+fma,+sse4.2"), generic):
        mod = runtime.compile(layouts_module(F32), cache=False, passes="", options=CodegenOptions(target=target))
        for m, k, n in [(33, 100, 130), (9, 17, 65)]:
            for ta in (False, True):
                a = sparse(rng, (k, m) if ta else (m, k))
                b = rng.standard_normal((k, n)).astype(np.float32)
                want = (a.T if ta else a).astype(np.float64) @ b
                np.testing.assert_allclose(mod[f"mm_{int(ta)}0"](a, b), want, rtol=1e-4, atol=1e-4 * np.sqrt(k))


def test_the_option_decides_whether_the_path_exists():
    from compiler.codegen.driver import llvm_module

    assert "dlc.gemm.sparse" in str(llvm_module(layouts_module(F32), CodegenOptions()))
    assert "dlc.gemm.sparse" not in str(llvm_module(layouts_module(F32), CodegenOptions(skip_zeros=False)))
    assert CodegenOptions().key() != CodegenOptions(skip_zeros=False).key()


@pytest.mark.parametrize("extra", [0, 1])
def test_the_density_limit_is_decided_on_all_of_a(modules, extra):
    """The path is chosen from the count of all of A's non-zeros (at most 3/10 of them:
    skip zeros), even though the count stops early once it is over the limit: a dense
    first chunk does not decide it, and one non-zero past the limit in A's very last
    element does.  Which path ran shows in the bits: with K over one slice (800: three
    of 267) the dense kernel adds the slices' sums, ``1e8 + (4 + 4)``, the skipping one
    sums every term in one chain, ``(1e8 + 4) + 4`` (each 4 a tie, rounded to even: 1e8)."""
    on, off = modules
    m, k, n = gemm.PACK_B_MIN_M + 8, 800, 64     # rows enough for the packed (K-sliced) dense path
    b = np.zeros((k, n), np.float32)
    b[0], b[400], b[401] = 1e8, 4, 4
    a = np.zeros((m, k), np.float32)
    a[:, [0, 400, 401]] = 1
    limit = m * k * 3 // 10
    filler = np.flatnonzero((a == 0).ravel())          # where B's rows are zero: adds exact zeros
    rows = filler // k
    first_rows = filler[rows < 8]                       # rows 0..7 dense: the first chunk over 3/10
    rest = filler[rows >= 8][:limit - 3 * m - len(first_rows)]
    flat = a.ravel()
    flat[first_rows] = 0.5
    flat[rest] = 0.5
    assert np.count_nonzero(a) == limit and a[-1, -1] == 0
    a[-1, -1] = 0.5 if extra else 0
    want = np.float32(1e8) + np.float32(8) if extra else np.float32(1e8)
    got, dense = on.mm_00(a, b), off.mm_00(a, b)
    assert (got == want).all()
    assert (dense == np.float32(1e8) + np.float32(8)).all()


def test_zero_times_inf_is_still_nan(modules):
    """A non-finite B sends the product to the dense kernel: 0 * inf = NaN, as numpy says."""
    on, _ = modules
    rng = np.random.default_rng(1)
    a = sparse(rng, (16, 64))
    a[:, 5] = 0                                     # a column of A that is all zeros ...
    b = rng.standard_normal((64, 128)).astype(np.float32)
    b[5, 7] = np.inf                                # ... meets an inf in B
    b[9, 3] = np.nan
    with np.errstate(invalid="ignore"):
        want = a @ b
    got = on.mm_00(a, b)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(got[:, 7]).all()


def test_nan_in_a_propagates(modules):
    on, _ = modules
    rng = np.random.default_rng(2)
    a = sparse(rng, (12, 80))
    a[3, 10] = np.nan
    b = rng.standard_normal((80, 64)).astype(np.float32)
    got = on.mm_00(a, b)
    assert np.isnan(got[3]).all() and not np.isnan(np.delete(got, 3, axis=0)).any()


def test_epilogue_on_the_skipping_path(modules):
    on, _ = modules
    rng = np.random.default_rng(3)
    for m, k, n in [(128, 784, 512), (9, 50, 70)]:
        a = sparse(rng, (m, k))
        b = rng.standard_normal((k, n)).astype(np.float32)
        bias = rng.standard_normal(n).astype(np.float32)
        want = np.maximum(a.astype(np.float64) @ b + bias, 0)
        np.testing.assert_allclose(on.mm_epilogue(a, b, bias), want, rtol=1e-4, atol=1e-3)


def test_identical_across_thread_counts(modules):
    on, _ = modules
    lib = on
    rng = np.random.default_rng(4)
    cases = [(on.mm_00, sparse(rng, (130, 300)), rng.standard_normal((300, 200)).astype(np.float32)),
             (on.mm_10, sparse(rng, (128, 783)), rng.standard_normal((128, 512)).astype(np.float32))]
    results = []
    for t in (1, 2, 3):
        with_threads(lib, t)
        results.append([fn(a, b) for fn, a, b in cases])
    with_threads(lib, threads.num_threads())
    for other in results[1:]:
        for got, first in zip(other, results[0]):
            assert np.array_equal(got, first)


def test_training_on_mostly_zero_images(monkeypatch):
    """The MNIST step's forward (x @ W1) and weight gradient (x^T @ dh, fused with the SGD
    update in place) on image-like data: a float64 numpy step's weights, and
    bit-identical across thread counts."""
    rng = np.random.default_rng(5)
    x = sparse(rng, (128, 784), density=0.19)
    y = rng.integers(0, 10, 128).astype(np.int32)
    results = []
    for t in (1, 2):
        monkeypatch.setenv("DLC_NUM_THREADS", str(t))
        threads.num_threads.cache_clear()
        model = load_model(ROOT / "bench" / "mlp_sgd.dl", seed=0, backend="native")
        start = {k: v.astype(np.float64) for k, v in model.weights.items()}
        model.fit(x, y, epochs=1, batch_size=128, shuffle=False, verbose=0)
        results.append(model.weights)
    threads.num_threads.cache_clear()
    for name, value in results[0].items():
        assert np.array_equal(results[1][name], value), name
    w1, b1, w2, b2 = (start[f"dense_{i}.{p}"] for i in (1, 2) for p in ("kernel", "bias"))
    pre = x @ w1 + b1
    h = np.maximum(pre, 0)
    z = h @ w2 + b2
    probs = np.exp(z - z.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    dz = probs
    dz[np.arange(128), y] -= 1
    dz /= 128
    dh = (dz @ w2.T) * (pre > 0)
    lr = model.learning_rate
    want = {"dense_1.kernel": w1 - lr * (x.T @ dh), "dense_1.bias": b1 - lr * dh.sum(axis=0),
            "dense_2.kernel": w2 - lr * (h.T @ dz), "dense_2.bias": b2 - lr * dz.sum(axis=0)}
    for name, value in want.items():
        np.testing.assert_allclose(results[0][name], value, rtol=1e-4, atol=1e-5, err_msg=name)
