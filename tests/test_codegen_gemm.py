"""The GEMM kernel (compiler/codegen/gemm.py) against numpy: every layout, odd shapes,
epilogues, in-place updates, batches, and targets narrower than the host."""

from __future__ import annotations

import math

import numpy as np
import pytest

import runtime
from compiler.codegen.target import CodegenOptions, Target
from compiler.ir.builder import new_function
from compiler.ir.core import Module
from compiler.ir.types import DType, TensorType

F32, F64 = DType.f32, DType.f64
SIZES = [(1, 1, 1), (3, 17, 5), (17, 33, 31), (8, 16, 32), (33, 7, 65), (9, 100, 47), (64, 48, 16),
         (1, 70, 300), (1, 9, 512)]   # one row: the wide blocks, then panels


def matmul_function(name: str, dtype: DType, trans_a: bool, trans_b: bool, epilogue: bool = False):
    a_t = TensorType(dtype, ("K", "M") if trans_a else ("M", "K"))
    b_t = TensorType(dtype, ("N", "K") if trans_b else ("K", "N"))
    params = [("a", a_t), ("b", b_t)] + ([("bias", TensorType(dtype, ("N",)))] if epilogue else [])
    f, bld = new_function(name, params)
    a, b = f.params[0], f.params[1]
    if trans_a:
        a = bld.transpose(a, perm=(1, 0))
    if trans_b:
        b = bld.transpose(b, perm=(1, 0))
    c = bld.matmul(a, b)
    if epilogue:
        c = bld.relu(bld.add(c, f.params[2]))
    f.outputs = [c]
    return f


def layouts_module(dtype: DType) -> Module:
    fns = [matmul_function(f"mm_{int(ta)}{int(tb)}", dtype, ta, tb) for ta in (False, True) for tb in (False, True)]
    fns.append(matmul_function("mm_epilogue", dtype, False, False, epilogue=True))
    return Module(fns)


@pytest.fixture(scope="module")
def f32_module():
    return runtime.compile(layouts_module(F32), cache=False, passes="")


def operands(rng, m, k, n, ta, tb, dtype):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    want = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
    return a, b, want


@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
def test_layouts_and_odd_shapes(f32_module, ta, tb):
    rng = np.random.default_rng(1)
    fn = f32_module[f"mm_{int(ta)}{int(tb)}"]
    for m, k, n in SIZES:
        a, b, want = operands(rng, m, k, n, ta, tb, np.float32)
        got = fn(a, b)
        assert got.shape == (m, n)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.sqrt(k), err_msg=str((m, k, n)))


def test_transposed_operands_are_not_copied(f32_module):
    from compiler.codegen.driver import lower_module

    (prog,) = lower_module(Module([matmul_function("t", F32, True, True)]))
    assert len(prog.kernels) == 1 and prog.temps == []
    assert prog.kernels[0].trans_a and prog.kernels[0].trans_b


def test_epilogue_bias_relu(f32_module):
    rng = np.random.default_rng(2)
    for m, k, n in [(5, 9, 40), (128, 20, 10), (1, 3, 1), (1, 5, 270)]:
        a, b, want = operands(rng, m, k, n, False, False, np.float32)
        bias = rng.standard_normal(n).astype(np.float32)
        got = f32_module.mm_epilogue(a, b, bias)
        np.testing.assert_allclose(got, np.maximum(want + bias, 0), rtol=1e-4, atol=1e-4)


def test_zero_sized_dims(f32_module):
    got = f32_module.mm_00(np.ones((0, 3), np.float32), np.ones((3, 4), np.float32))
    assert got.shape == (0, 4)
    got = f32_module.mm_00(np.ones((2, 0), np.float32), np.ones((0, 5), np.float32))
    np.testing.assert_array_equal(got, np.zeros((2, 5)))


def test_f64_and_narrow_targets():
    """f64, and the same code built for AVX2 (8 lanes) and baseline SSE2 (4 lanes), still right."""
    rng = np.random.default_rng(3)
    host = runtime.compile(layouts_module(F64), cache=False, passes="")
    generic = Target.generic()
    avx2 = Target(generic.triple, "haswell", "+avx,+avx2,+fma,+sse4.2")
    narrow = [runtime.compile(layouts_module(F32), cache=False, passes="",
                              options=CodegenOptions(target=t)) for t in (avx2, generic)]
    for m, k, n in SIZES[:5]:
        for ta in (False, True):
            for tb in (False, True):
                a, b, want = operands(rng, m, k, n, ta, tb, np.float64)
                np.testing.assert_allclose(host[f"mm_{int(ta)}{int(tb)}"](a, b), want, rtol=1e-12, atol=1e-12)
                for mod in narrow:
                    got = mod[f"mm_{int(ta)}{int(tb)}"](a.astype(np.float32), b.astype(np.float32))
                    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.sqrt(k))


def test_in_place_update_fused_into_the_gemm_epilogue():
    """w_new = w - lr * (x^T @ g) written into w's own buffer, read and written per element."""
    from compiler.codegen.driver import lower_module
    from compiler.codegen.loops import Matmul

    f, b = new_function("step", [("w", TensorType(F32, (33, 20))), ("x", TensorType(F32, ("N", 33))),
                                 ("g", TensorType(F32, ("N", 20)))])
    w, x, g = f.params
    f.outputs = [b.sub(w, b.mul(b.constant(0.1, F32), b.matmul(b.transpose(x, perm=(1, 0)), g)))]
    f.attrs["inplace"] = ((0, "w"),)
    (prog,) = lower_module(Module([f]))
    assert len(prog.kernels) == 1 and isinstance(prog.kernels[0], Matmul)
    assert prog.kernels[0].out.inplace_of is prog.params[0]

    mod = runtime.compile(Module([f]), cache=False, passes="")
    rng = np.random.default_rng(4)
    wv = rng.standard_normal((33, 20)).astype(np.float32)
    xv, gv = rng.standard_normal((7, 33)).astype(np.float32), rng.standard_normal((7, 20)).astype(np.float32)
    want = wv - 0.1 * (xv.T @ gv)
    out = mod.step(wv, xv, gv)
    assert out is wv
    np.testing.assert_allclose(wv, want, rtol=1e-5, atol=1e-5)


def test_batched_broadcast():
    f, b = new_function("bmm", [("a", TensorType(F32, (2, 1, "M", "K"))), ("b", TensorType(F32, (3, "K", 19)))])
    f.outputs = [b.matmul(*f.params)]
    mod = runtime.compile(Module([f]), cache=False, passes="")
    rng = np.random.default_rng(5)
    a = rng.standard_normal((2, 1, 9, 21)).astype(np.float32)
    bb = rng.standard_normal((3, 21, 19)).astype(np.float32)
    np.testing.assert_allclose(mod.bmm(a, bb), a @ bb, rtol=1e-4, atol=1e-4)


def test_epilogue_with_a_transposed_read_is_not_fused():
    """c + t^T cannot be a vectorised epilogue (t^T strides through memory): kept apart, right."""
    from compiler.codegen.driver import lower_module

    f, b = new_function("mmt", [("a", TensorType(F32, (5, 7))), ("b", TensorType(F32, (7, 19))),
                                ("t", TensorType(F32, (19, 5)))])
    a, bm, t = f.params
    f.outputs = [b.add(b.matmul(a, bm), b.transpose(t, perm=(1, 0)))]
    (prog,) = lower_module(Module([f]))
    assert prog.kernels[0].epilogue is None and len(prog.kernels) == 2
    mod = runtime.compile(Module([f]), cache=False, passes="")
    rng = np.random.default_rng(6)
    av, bv, tv = (rng.standard_normal(s).astype(np.float32) for s in ((5, 7), (7, 19), (19, 5)))
    np.testing.assert_allclose(mod.mmt(av, bv, tv), av @ bv + tv.T, rtol=1e-5, atol=1e-5)


def _scratch_elements(k, lanes: int, blocking=None, **dims: int) -> int:
    """gemm.scratch_elements of matmul ``k`` at these dim values (under ``blocking``, else
    the default), run as native code."""
    import ctypes

    import llvmlite.binding as llvm
    from llvmlite import ir

    from compiler.codegen import gemm
    from compiler.codegen.kernels import KernelContext
    from compiler.codegen.llvmutil import I64
    from compiler.codegen.target import ensure_llvm

    mod = ir.Module("scratch")
    if blocking is not None:
        gemm.set_blocking(mod, blocking)
    fn = ir.Function(mod, ir.FunctionType(I64, [I64] * len(dims)), "scratch")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    b.ret(gemm.scratch_elements(KernelContext(b, {}, dict(zip(dims, fn.args)), lanes), k))
    ensure_llvm()
    ref = llvm.parse_assembly(str(mod))
    engine = llvm.create_mcjit_compiler(ref, llvm.Target.from_default_triple().create_target_machine())
    engine.finalize_object()
    call = ctypes.CFUNCTYPE(ctypes.c_int64, *[ctypes.c_int64] * len(dims))(engine.get_function_address("scratch"))
    return call(*dims.values())


def test_packing_scratch_is_sized_to_the_product():
    # The packing region of one task is what the product needs (a kc x min(N, NC) block of B,
    # kc x min(M, MC) of A), not the blocking constants' worst case: a workspace of tens of
    # MB is mapped and faulted in again on every call.
    from compiler.codegen import gemm
    from compiler.codegen.loops import Buffer, Load, Matmul

    a = Buffer("%a", F32, ("M", "K"), "param")
    bm = Buffer("%b", F32, ("K", "N"), "param")
    out = Buffer("%c", F32, ("M", "N"), "output")
    plain = Matmul(out, a, bm, False, False, "M", "N", "K")
    kc = min(784, gemm.KC)
    assert _scratch_elements(plain, 16, M=128, N=512, K=784) == kc * (512 + 128)     # the MLP forward
    assert _scratch_elements(plain, 16, M=128, N=10, K=512) == max(512 * 32, gemm.KC * (32 + 128))
    assert _scratch_elements(plain, 16, M=4, N=40, K=9) == 9 * (64 + 8)
    big = _scratch_elements(plain, 16, M=4096, N=8192, K=4096)
    assert big == gemm.KC * (gemm.DEFAULT.nc + gemm.DEFAULT.mc)                       # capped by the blocks
    # ... by the module's blocking (blocking.py), within the runtime's bound
    other = gemm.Blocking(64, 1024)
    assert _scratch_elements(plain, 16, other, M=4096, N=8192, K=4096) == gemm.KC * (1024 + 64)
    assert gemm.KC * (gemm.MAX_NC + gemm.MAX_MC) <= gemm.KC * gemm.scratch_columns(16)
    # an epilogue reading the output (W -= lr * g) keeps all of K in one slice
    w = Buffer("%w", F32, ("M", "N"), "param")
    update = Matmul(Buffer("%c", F32, ("M", "N"), "output", inplace_of=w), a, bm, False, False,
                    "M", "N", "K", epilogue=Load(w, (0, 1)))
    assert _scratch_elements(update, 16, M=784, N=512, K=1000) == 1000 * (512 + 128)


def test_one_gemm_driver_per_module():
    # every matmul kernel of a module shares the driver of its dtype and B layout; a kernel
    # adds only its batch loop and a store function holding its epilogue
    from compiler.codegen.driver import llvm_module
    from compiler.codegen.target import CodegenOptions

    text = str(llvm_module(layouts_module(F32), CodegenOptions()))
    drivers = [line for line in text.splitlines() if line.startswith("define") and "dlc.gemm.driver" in line]
    assert len(drivers) == 2, drivers                                   # B row-major, B transposed
    stores = [line for line in text.splitlines() if line.startswith("define") and ".store\"(" in line]
    assert len(stores) == 1, stores                                     # mm_epilogue's bias + relu


@pytest.mark.parametrize("m,n", [(37, 70), (128, 64), (16, 33)])
def test_k_slices_direct_and_epilogue_tiles_agree(f32_module, m, n):
    # K over KC: partial sums go through C.  Whole tiles of a plain product are written
    # straight from the micro-kernel's registers, partial ones (and an epilogue's last
    # slice) through the store function; both add the slices in the same order, so the
    # epilogue kernel equals relu(plain + bias) bit for bit.
    from compiler.codegen import gemm

    rng = np.random.default_rng(7)
    k = 2 * gemm.KC + 5
    a, b, want = operands(rng, m, k, n, False, False, np.float32)
    bias = rng.standard_normal(n).astype(np.float32)
    plain = f32_module.mm_00(a, b)
    np.testing.assert_allclose(plain, want, rtol=1e-4, atol=1e-4 * np.sqrt(k))
    np.testing.assert_array_equal(f32_module.mm_epilogue(a, b, bias), np.maximum(plain + bias, 0))
    at = np.ascontiguousarray(a.T)
    np.testing.assert_array_equal(f32_module.mm_10(at, b), plain)      # A packed from its transpose
    bt = np.ascontiguousarray(b.T)
    np.testing.assert_array_equal(f32_module.mm_01(a, bt), plain)      # B packed from its transpose


@pytest.mark.parametrize("m,k,n", [(70, 2 * 384 + 5, 100), (128, 10, 512), (33, 1, 70), (128, 0, 512)])
def test_inf_and_nan_through_direct_tiles_and_thread_counts(f32_module, m, k, n):
    # The packed micro-kernel writes whole tiles straight into C (prefetching them first),
    # adding later K slices to what C holds; the shallow path (K <= 64: the MLP's dh) writes
    # C from registers too.  An inf in A and a NaN in B reach exactly numpy's elements (inf
    # times a value of either sign, plus a NaN column), on 1, 2 and 3 threads alike.
    from compiler.codegen import threads

    rng = np.random.default_rng(11)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    if k:
        a[m // 2, k - 1] = np.inf
        b[0, n - 3] = np.nan
    with np.errstate(invalid="ignore", over="ignore"):
        want = a.astype(np.float64) @ b.astype(np.float64)
    results = []
    for t in (1, 2, 3):
        threads.set_num_threads(f32_module._library, t)
        results.append(f32_module.mm_00(a, b))
    threads.set_num_threads(f32_module._library, threads.num_threads())
    got = results[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4, atol=1e-4 * np.sqrt(max(k, 1)))
    for other in results[1:]:
        np.testing.assert_array_equal(other, got)


# -- batched matmuls that are one GEMM (bufferize.flatten_batched_matmuls) ---------------------


def _dense_over_sequence(n: object, t: object) -> Module:
    """``y = gelu(x @ w + bias) * s`` over ``x [n, t, 6]`` (an epilogue with a load of the output's
    shape and one along j) and the kernel gradient ``sum over n of x^T @ g``."""
    f, b = new_function("fwd", [("x", TensorType(F32, (n, t, 6))), ("w", TensorType(F32, (6, 5))),
                                ("bias", TensorType(F32, (5,))), ("s", TensorType(F32, (n, t, 5)))])
    x, w, bias, s = f.params
    f.outputs = [b.mul(b.gelu(b.add(b.matmul(x, w), bias)), s)]
    g, bg = new_function("dw", [("x", TensorType(F32, (n, t, 6))), ("g", TensorType(F32, (n, t, 5)))])
    x, gy = g.params
    g.outputs = [bg.sum(bg.matmul(bg.transpose(x, perm=(0, 2, 1)), gy), axes=(0,))]
    return Module([f, g])


def test_a_dense_layer_over_a_sequence_is_one_gemm():
    from compiler.codegen.driver import lower_module
    from compiler.codegen.loops import Matmul, Reduce

    fwd, dw = lower_module(_dense_over_sequence("N", 3))
    (mm,) = [k for k in fwd.kernels if isinstance(k, Matmul)]
    assert mm.batch == () and str(mm.m) == "3*N" and mm.epilogue is not None and len(fwd.kernels) == 1
    (mm,) = dw.kernels                     # the sum over the batch is the GEMM's own K
    assert isinstance(mm, Matmul) and mm.trans_a and str(mm.k) == "3*N" and not any(
        isinstance(k, Reduce) for k in dw.kernels)
    # two symbolic dims: N*T is no dim, the matmul stays batched (and right)
    fwd2, dw2 = lower_module(_dense_over_sequence("N", "T"))
    assert [k.batch for k in fwd2.kernels if isinstance(k, Matmul)] == [("N",)]
    for module in (_dense_over_sequence("N", 3), _dense_over_sequence("N", "T")):
        mod = runtime.compile(module, cache=False, passes="")
        rng = np.random.default_rng(8)
        for n in (0, 1, 4):
            x, s, gy = (rng.standard_normal((n, 3, c)).astype(np.float32) for c in (6, 5, 5))
            w, bias = rng.standard_normal((6, 5)).astype(np.float32), rng.standard_normal(5).astype(np.float32)
            h = x.astype(np.float64) @ w + bias
            erf = np.vectorize(math.erf, otypes=[np.float64])
            want = 0.5 * h * (1 + erf(h / np.sqrt(2))) * s
            np.testing.assert_allclose(mod.fwd(x, w, bias, s), want.reshape(n, 3, 5), rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(mod.dw(x, gy), np.einsum("ntk,ntj->kj", x, gy), rtol=1e-5, atol=1e-5)


def test_a_batched_epilogue_reading_rows_stays_batched():
    """An epilogue reading a per-row value ``r[n, t]`` is not a load the flat GEMM can make: the
    matmul keeps its batch, and the result is right."""
    from compiler.codegen.driver import lower_module
    from compiler.codegen.loops import Matmul

    f, b = new_function("rows", [("x", TensorType(F32, ("N", 3, 6))), ("w", TensorType(F32, (6, 5))),
                                 ("r", TensorType(F32, ("N", 3, 1)))])
    x, w, r = f.params
    f.outputs = [b.mul(b.matmul(x, w), r)]
    (prog,) = lower_module(Module([f]))
    assert [k.batch for k in prog.kernels if isinstance(k, Matmul)] == [("N",)]
    mod = runtime.compile(Module([f]), cache=False, passes="")
    rng = np.random.default_rng(9)
    xv, wv, rv = (rng.standard_normal(s).astype(np.float32) for s in ((4, 3, 6), (6, 5), (4, 3, 1)))
    np.testing.assert_allclose(mod.rows(xv, wv, rv), (xv @ wv) * rv, rtol=1e-5, atol=1e-5)


# One row of A against a transposed B whose rows are whole vectors (K a multiple of W: 8 and 16
# lanes): dot products over B's rows in place (``_Gemm.single_row_dot``); other K take the panels.
ONE_ROW_BT = [(1, 128, 1600), (1, 16, 17), (1, 32, 33), (1, 144, 47), (1, 48, 64), (1, 130, 50), (1, 8, 100),
              (1, 0, 40)]


def test_one_row_against_transposed_b(f32_module):
    rng = np.random.default_rng(4)
    for ta in (False, True):
        fn = f32_module[f"mm_{int(ta)}1"]
        for m, k, n in ONE_ROW_BT:
            a, b, want = operands(rng, m, k, n, ta, True, np.float32)
            got = fn(a, b)
            assert got.shape == (m, n)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.sqrt(max(k, 1)), err_msg=str((m, k, n)))


def test_one_row_against_transposed_b_nonfinite_and_epilogue():
    f = matmul_function("bt_epilogue", F32, False, True)
    bld_f, bld = new_function("bt_relu", [("a", TensorType(F32, ("M", "K"))), ("b", TensorType(F32, ("N", "K"))),
                                          ("bias", TensorType(F32, ("N",)))])
    a, b, bias = bld_f.params
    bld_f.outputs = [bld.relu(bld.add(bld.matmul(a, bld.transpose(b, perm=(1, 0))), bias))]
    mod = runtime.compile(Module([f, bld_f]), cache=False, passes="")
    rng = np.random.default_rng(5)
    a = rng.standard_normal((1, 64)).astype(np.float32)
    b = rng.standard_normal((70, 64)).astype(np.float32)
    b[3, 5], b[20, 63], b[40, 0] = np.inf, np.nan, -np.inf      # rows 3, 20, 40 only
    bias = rng.standard_normal(70).astype(np.float32)
    want = a.astype(np.float64) @ b.T.astype(np.float64)
    with np.errstate(invalid="ignore"):
        got = mod.bt_epilogue(a, b)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(mod.bt_relu(a, b, bias), np.maximum(want + bias, 0), rtol=1e-4, atol=1e-4)
    assert np.isnan(got[0, 20]) and np.isfinite(np.delete(got[0], [3, 20, 40])).all()


def test_one_row_against_transposed_b_bit_identical_on_1_2_3_threads(f32_module):
    from compiler.codegen import threads

    rng = np.random.default_rng(6)
    a, b, _ = operands(rng, 1, 128, 1600, False, True, np.float32)
    fn = f32_module["mm_01"]
    results = []
    for t in (1, 2, 3):
        threads.set_num_threads(f32_module._library, t)
        results.append(np.array(fn(a, b), copy=True))
    threads.set_num_threads(f32_module._library, threads.num_threads())
    assert all(np.array_equal(results[0].view(np.uint32), r.view(np.uint32)) for r in results[1:])


def _same_bits_but_nan_payloads(x: np.ndarray, y: np.ndarray) -> bool:
    """Equal bit for bit (so -0 is not +0), a NaN equal to any NaN: which NaN an operation
    returns depends on its operands' order in the machine instruction, which compilers
    choose freely."""
    nan = np.isnan(x)
    return bool(np.array_equal(nan, np.isnan(y))
                and np.array_equal(np.where(nan, 0, x).view(np.uint32), np.where(nan, 0, y).view(np.uint32)))


# One row of A against a narrow row-major B (a classifier's 10 outputs at batch 1): B read in
# place (``_dot_row_function``), in the order the packed dot kernel sums a row of a batch.
@pytest.mark.parametrize("k", [80, 100, 512, 37, 33])
def test_one_row_narrow_product_gives_the_bits_of_its_row_in_a_batch(f32_module, k):
    fn = f32_module["mm_00"]
    rng = np.random.default_rng(k)
    for n in (1, 3, 4, 5, 10, 12):
        for case in ("plain", "signed zeros", "non-finite"):
            a = rng.standard_normal((3, k)).astype(np.float32)
            b = rng.standard_normal((k, n)).astype(np.float32)
            if case == "signed zeros":            # every product -0: sums of -0 stay -0, or
                a[0] = -0.0                        # become +0 where the dot kernel adds 0 * 0
                b[:, 0] = np.abs(b[:, 0])
            elif case == "non-finite":
                a[0, 5], b[7, n - 1], b[9, 0] = np.inf, np.nan, -np.inf
            with np.errstate(invalid="ignore"):
                batch = fn(a, b)
                one = fn(np.ascontiguousarray(a[:1]), b)
                want = a[:1].astype(np.float64) @ b.astype(np.float64)
            assert _same_bits_but_nan_payloads(one, batch[:1]), (k, n, case)
            finite = np.isfinite(want)
            np.testing.assert_allclose(one[finite], want[finite], rtol=1e-4, atol=1e-4 * np.sqrt(k))
            assert np.array_equal(np.isnan(one), np.isnan(want)), (k, n, case)
