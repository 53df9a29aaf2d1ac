"""Small and skinny products (compiler/codegen/gemm.py): the shallow path (K <= SHALLOW_K),
narrow products (N <= one vector), one-row products; every layout, tails around the
thresholds, fused epilogues (bias + relu, an in-place SGD update), bit-identical results
for 1, 2 and 3 threads, and targets narrower than the host."""

from __future__ import annotations

import numpy as np
import pytest

import runtime
from compiler.codegen import gemm, threads
from compiler.codegen.target import CodegenOptions, Target
from compiler.ir.builder import new_function
from compiler.ir.core import Module
from compiler.ir.types import DType, TensorType

F32 = DType.f32
LAYOUTS = [(False, False), (False, True), (True, False), (True, True)]


def _matmul(name: str, trans_a: bool, trans_b: bool, epilogue: str | None = None):
    a_t = TensorType(F32, ("K", "M") if trans_a else ("M", "K"))
    b_t = TensorType(F32, ("N", "K") if trans_b else ("K", "N"))
    params = [("a", a_t), ("b", b_t)]
    if epilogue == "bias_relu":
        params.append(("bias", TensorType(F32, ("N",))))
    if epilogue == "sgd":
        params = [("w", TensorType(F32, ("M", "N"))), *params, ("lr", TensorType(F32, ()))]
    f, bld = new_function(name, params)
    by_name = dict(zip([p[0] for p in params], f.params))
    a, b = by_name["a"], by_name["b"]
    if trans_a:
        a = bld.transpose(a, perm=(1, 0))
    if trans_b:
        b = bld.transpose(b, perm=(1, 0))
    c = bld.matmul(a, b)
    if epilogue == "bias_relu":
        c = bld.relu(bld.add(c, by_name["bias"]))
    if epilogue == "sgd":
        c = bld.sub(by_name["w"], bld.mul(by_name["lr"], c))
        f.attrs["inplace"] = ((0, "w"),)
    f.outputs = [c]
    return f


EPILOGUE_LAYOUTS = [(False, False), (True, False), (False, True)]   # the MNIST step's


def _module() -> Module:
    fns = [_matmul(f"mm_{int(ta)}{int(tb)}", ta, tb) for ta, tb in LAYOUTS]
    for ta, tb in EPILOGUE_LAYOUTS:
        tag = f"{int(ta)}{int(tb)}"
        fns += [_matmul(f"dense_{tag}", ta, tb, "bias_relu"), _matmul(f"sgd_{tag}", ta, tb, "sgd")]
    return Module(fns)


@pytest.fixture(scope="module")
def lib():
    return runtime.compile(_module(), cache=False, passes="")


def _operands(rng, m, k, n, ta, tb):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    want = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
    return a, b, want


def _check_all(fns, rng, m, k, n, ta, tb):
    """Plain, bias + relu and in-place SGD results of one shape against float64 numpy."""
    tag = f"{int(ta)}{int(tb)}"
    a, b, want = _operands(rng, m, k, n, ta, tb)
    tol = dict(rtol=1e-4, atol=1e-5 * max(k, 1) ** 0.5 * 4)
    where = str((m, k, n, ta, tb))
    got = fns[f"mm_{tag}"](a, b)
    assert got.shape == (m, n)
    np.testing.assert_allclose(got, want, err_msg=where, **tol)
    if (ta, tb) not in EPILOGUE_LAYOUTS:
        return got
    bias = rng.standard_normal(n).astype(np.float32)
    np.testing.assert_allclose(fns[f"dense_{tag}"](a, b, bias), np.maximum(want + bias, 0), err_msg=where, **tol)
    w = rng.standard_normal((m, n)).astype(np.float32)
    w0 = w.astype(np.float64)
    lr = np.array(0.25, np.float32)
    out = fns[f"sgd_{tag}"](w, a, b, lr)
    assert out is w
    np.testing.assert_allclose(w, w0 - 0.25 * want, err_msg=where, **tol)
    return got


# M around PACK_MIN_M and the shallow path's 4-row blocks; K around SHALLOW_K; N around one
# vector, the shallow path's 64-column panels and their tails
SHAPES = [(m, k, n) for m in (1, 3, 15, 16, 17, 21, 70) for k in (1, 2, 7, 10, 33, 64, 65)
          for n in (1, 9, 16, 17, 40, 64, 65, 130)]


@pytest.mark.parametrize("ta,tb", LAYOUTS)
def test_shapes_around_the_thresholds(lib, ta, tb):
    rng = np.random.default_rng(11)
    for m, k, n in SHAPES:
        _check_all(lib, rng, m, k, n, ta, tb)


def test_mnist_shapes(lib):
    # the batch-1 step's outer product with the SGD update (dW1 = x^T dh, K = 1), the backward
    # dh = g W2^T (K = 10) at batch 1 and 128, the classifier's products (N = 10)
    rng = np.random.default_rng(12)
    for m, k, n, ta, tb in [(784, 1, 512, True, False), (128, 10, 512, False, True), (1, 10, 512, False, True),
                            (128, 512, 10, False, False), (512, 128, 10, True, False), (512, 1, 10, True, False),
                            (1, 784, 512, False, False)]:
        _check_all(lib, rng, m, k, n, ta, tb)


def test_shallow_sums_in_order_of_k(lib):
    # the shallow path adds the K products of each element in order, with fused multiply-adds,
    # starting from zero: integer-valued data makes that exact, and a single term exact too
    mod = lib
    rng = np.random.default_rng(13)
    a = rng.integers(-8, 8, (40, gemm.SHALLOW_K)).astype(np.float32)
    b = rng.integers(-8, 8, (gemm.SHALLOW_K, 300)).astype(np.float32)
    np.testing.assert_array_equal(mod.mm_00(a, b), a @ b)
    a1, b1 = rng.standard_normal((50, 1)).astype(np.float32), rng.standard_normal((1, 77)).astype(np.float32)
    np.testing.assert_array_equal(mod.mm_00(a1, b1), a1 * b1)


# big enough to be split into tasks: by rows on the shallow path, by rows or columns elsewhere
SPLIT_SHAPES = [(1500, 1, 700), (1203, 10, 517), (997, 64, 300), (4000, 33, 16), (3001, 130, 10), (2, 3000, 700)]


def test_identical_across_thread_counts(lib):
    rng = np.random.default_rng(14)
    for m, k, n in SPLIT_SHAPES:
        for ta, tb in LAYOUTS:
            tag = f"{int(ta)}{int(tb)}"
            a, b, want = _operands(rng, m, k, n, ta, tb)
            bias = rng.standard_normal(n).astype(np.float32)
            w = rng.standard_normal((m, n)).astype(np.float32)
            results = []
            for t in (1, 2, 3):
                threads.set_num_threads(lib._library, t)
                got = [lib[f"mm_{tag}"](a, b)]
                if (ta, tb) in EPILOGUE_LAYOUTS:
                    wt = w.copy()
                    lib[f"sgd_{tag}"](wt, a, b, np.array(0.5, np.float32))
                    got += [lib[f"dense_{tag}"](a, b, bias), wt]
                results.append(got)
            threads.set_num_threads(lib._library, threads.num_threads())
            np.testing.assert_allclose(results[0][0], want, rtol=1e-4, atol=1e-4 * k ** 0.5)
            for other in results[1:]:
                for x, y in zip(results[0], other):
                    assert np.array_equal(x, y), (m, k, n, ta, tb)


def test_narrow_targets():
    """AVX2 (8 lanes) and baseline SSE2 (4 lanes) builds of the same products."""
    generic = Target.generic()
    avx2 = Target(generic.triple, "haswell", "+avx,+avx2,+fma,+sse4.2")
    layouts = [(False, True)]
    fns = [runtime.compile(Module([_matmul(f"mm_{int(ta)}{int(tb)}", ta, tb) for ta, tb in layouts]
                                  + [_matmul("sgd_10", True, False, "sgd")]),
                           cache=False, passes="", options=CodegenOptions(target=t)) for t in (avx2, generic)]
    rng = np.random.default_rng(15)
    for mod in fns:
        for m, k, n in [(17, 1, 9), (33, 10, 70), (20, 64, 8), (1, 40, 100), (70, 65, 17), (16, 7, 5)]:
            for ta, tb in layouts:
                a, b, want = _operands(rng, m, k, n, ta, tb)
                np.testing.assert_allclose(mod[f"mm_{int(ta)}{int(tb)}"](a, b), want, rtol=1e-4, atol=1e-4 * k ** 0.5)
            a, b, want = _operands(rng, m, k, n, True, False)
            w = rng.standard_normal((m, n)).astype(np.float32)
            w0 = w.astype(np.float64)
            mod.sgd_10(w, a, b, np.array(0.5, np.float32))
            np.testing.assert_allclose(w, w0 - 0.5 * want, rtol=1e-4, atol=1e-4 * k ** 0.5)


def test_narrow_dot_products(lib):
    # N <= one vector, rows of A contiguous in k (row-major A, or a transposed A of one row):
    # dot products over k, every N from 1 to 16 around the depth thresholds, odd row counts
    rng = np.random.default_rng(16)
    for k in (gemm.DOT_MIN_K_FEW - 1, gemm.DOT_MIN_K_FEW, gemm.DOT_MIN_K - 1, gemm.DOT_MIN_K, 100, 257):
        for n in range(1, 17):
            for m in (1, 2, 15, 17, 33):
                _check_all(lib, rng, m, k, n, False, n % 2 == 0)
            _check_all(lib, rng, 1, k, n, True, False)


def test_narrow_with_a_transposed(lib):
    # N <= one vector, A transposed (h^T @ g, the MNIST dW2): C^T tiles, vectors along i,
    # transposed in registers; M around the 32-row blocks, K around COLUMN_MIN_K
    rng = np.random.default_rng(17)
    for k in (gemm.COLUMN_MIN_K - 1, gemm.COLUMN_MIN_K, 40, 129):
        for n in (1, 2, 3, 5, 8, 10, 13, 16):
            for m in (2, 16, 31, 32, 33, 70):
                _check_all(lib, rng, m, k, n, True, n % 3 == 0)
