"""``matmul_lowp`` (compiler/ops/contraction.py, compiler/codegen/gemm_lowp.py): int8 products
with wrapping i32 sums and ``precision="bf16"`` products.

int8 is exact integer arithmetic, so native code (``vpdpbusd`` where the CPU has AVX-512
VNNI, the widened i32 GEMM elsewhere) must equal the interpreter bit for bit -- at the
extremes (255 x -128, -128 x -128) and where the i32 sums wrap.  ``precision="bf16"``
rounds the operands to bf16 and sums in f32 in an unspecified order (``vdpbf16ps`` sums
pairs), so native code is checked against the interpreter within f32 summation error and
against f64 products of the unrounded operands within the bf16 rounding bound; where the
order cannot matter (K <= 2, special values) results are exact.  The shapes cover 0-sized
dims, K = 0 and 1, sizes that are not multiples of the packing (4 or 2 per word, 16 lanes,
64-column panels, 6-row tiles) and that cross the blocks (MC = 120 rows, NC = 1024
columns, K slices of 2048 int8 / 1024 bf16 elements), batch dims with broadcasting, rank-1
and transposed operands.
"""

from __future__ import annotations

import re

import ml_dtypes
import numpy as np
import pytest

import runtime
from compiler.codegen import gemm_lowp, threads
from compiler.codegen.driver import stage_text
from compiler.codegen.target import CodegenOptions, Target, host_target, named_target
from compiler.diagnostics import DlError, SizeLimitError
from compiler.ir.interpreter import interpret
from compiler.ir.parser import parse_module
from compiler.ir.printer import print_module
from compiler.ops.contraction import bf16_operand
from frontend_dsl.api import compile_source

RNG = np.random.default_rng(19)
HOST = set(host_target().features.split(","))
VNNI = {"+avx512f", "+avx512vnni"} <= HOST
BF16 = {"+avx512f", "+avx512bf16"} <= HOST
# the host (VNNI / BF16 kernels where it has them) and a CPU without either (the widening path)
TARGETS = {"host": CodegenOptions(), "x86-64-v4": CodegenOptions(target=named_target("x86-64-v4"))}

INT_SRC = """
fn uxi(a: u8[M, K], b: i8[K, N]) -> i32[M, N] { return matmul(a, b, dtype=i32) }
fn ixi(a: i8[M, K], b: i8[K, N]) -> i32[M, N] { return matmul(a, b, dtype=i32) }
fn uxu(a: u8[M, K], b: u8[K, N]) -> i32[M, N] { return matmul(a, b, dtype=i32) }
fn ixu(a: i8[M, K], b: u8[K, N]) -> i32[M, N] { return matmul(a, b, dtype=i32) }
fn tt(a: u8[K, M], b: i8[N, K]) -> i32[M, N] { return matmul(transpose(a), transpose(b), dtype=i32) }
fn batched(a: i8[B, M, K], b: u8[K, N]) -> i32[B, M, N] { return matmul(a, b, dtype=i32) }
fn bcast(a: u8[2, 1, M, K], b: i8[3, K, N]) -> i32[2, 3, M, N] { return matmul(a, b, dtype=i32) }
fn vec(a: u8[K], b: i8[K, N]) -> i32[N] { return matmul(a, b, dtype=i32) }
fn dot(a: i8[K], b: i8[K]) -> i32[] { return matmul(a, b, dtype=i32) }
fn mixed(a: i32[M, K], b: i8[K, N]) -> i32[M, N] { return matmul(a, b, dtype=i32) }
"""

BF16_SRC = """
fn h(a: f32[M, K], b: f32[K, N]) -> f32[M, N] { return matmul(a, b, precision="bf16") }
fn ht(a: f32[K, M], b: f32[N, K]) -> f32[M, N] { return matmul(transpose(a), transpose(b), precision="bf16") }
fn hb(a: f32[B, M, K], b: f32[B, K, N]) -> f32[B, M, N] { return matmul(a, b, precision="bf16") }
fn hh(a: bf16[M, K], b: bf16[K, N]) -> bf16[M, N] { return matmul(a, b, precision="bf16") }
fn hw(a: bf16[M, K], b: f32[K, N]) -> f32[M, N] { return matmul(a, b, dtype=f32) }
fn hm(a: bf16[M, K], b: f32[K, N]) -> f32[M, N] { return matmul(a, b, precision="bf16") }
fn loss(x: f32[M, K], w: f32[K, N]) -> f32[] { return sum(matmul(x, w, precision="bf16")) }
fn dloss = grad(loss, wrt=[w])
"""

INT_SHAPES = [(1, 1, 1), (0, 3, 4), (3, 0, 4), (3, 4, 0), (2, 1, 5), (3, 5, 7), (8, 4, 32), (9, 17, 33),
              (17, 63, 45), (130, 3, 31), (5, 1030, 70), (129, 2050, 97), (7, 40, 1100)]


@pytest.fixture(scope="module", params=list(TARGETS))
def int_mod(request):
    return request.param, runtime.compile(INT_SRC, cache=False, options=TARGETS[request.param])


@pytest.fixture(scope="module")
def int_ir():
    return compile_source(INT_SRC, "int.dl")


def ints(dtype: str, shape: tuple) -> np.ndarray:
    if dtype == "u8":
        return RNG.integers(0, 256, shape).astype(np.uint8)
    if dtype == "i8":
        return RNG.integers(-128, 128, shape).astype(np.int8)
    return RNG.integers(-2**31, 2**31, shape).astype(np.int32)


def wrapped(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """numpy's int32 matmul, modulo 2**32 (computed exactly in int64 first)."""
    return np.matmul(a.astype(np.int64), b.astype(np.int64)).astype(np.int32)


def check_int(mod, ir, name: str, a: np.ndarray, b: np.ndarray, exact: np.ndarray | None = None) -> None:
    got = mod[name](a, b)
    want = interpret(ir.get(name), [a, b])[0]
    assert got.dtype == want.dtype == np.int32 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(want, wrapped(a, b) if exact is None else exact)


# -- int8 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, da, db", [("uxi", "u8", "i8"), ("ixi", "i8", "i8"), ("uxu", "u8", "u8"),
                                          ("ixu", "i8", "u8")])
@pytest.mark.parametrize("m, k, n", INT_SHAPES)
def test_int8_equals_interpreter_bit_for_bit(int_mod, int_ir, name, da, db, m, k, n):
    check_int(int_mod[1], int_ir, name, ints(da, (m, k)), ints(db, (k, n)))


@pytest.mark.parametrize("name, va, vb", [("uxi", 255, -128), ("uxi", 255, 127), ("ixi", -128, -128),
                                          ("ixi", -128, 127), ("uxi", 0, -128), ("uxu", 255, 255),
                                          ("ixu", -128, 255), ("ixu", 127, 0)])
def test_int8_extremes(int_mod, int_ir, name, va, vb):
    da = np.uint8 if name[0] == "u" else np.int8
    db = np.uint8 if name[-1] == "u" else np.int8
    for m, k, n in [(1, 1, 1), (9, 67, 33), (3, 1027, 40)]:
        check_int(int_mod[1], int_ir, name, np.full((m, k), va, da), np.full((k, n), vb, db))


def test_int8_sums_wrap_modulo_2_to_32(int_mod, int_ir):
    # 255 * 127 * K passes 2**31 - 1 at K = 66312 and 2**32 at K = 132623: the sums wrap as
    # numpy's int32 matmul does (sums in i32 modulo 2**32; vpdpbusd does not saturate)
    for k in (66311, 66312, 140000):
        a = np.full((2, k), 255, np.uint8)
        a[1, ::3] = 0
        b = np.full((k, 3), 127, np.int8)
        b[::5, 2] = -128
        check_int(int_mod[1], int_ir, "uxi", a, b)
        exact = a.astype(np.int64) @ b.astype(np.int64)
        assert (exact[0, :2] > 2**31 - 1).all() == (k > 66311)      # these really wrapped
    for k in (65793, 65794):        # 255 * -128 * K passes -2**31 at K = 65794
        a, b = np.full((1, k), 255, np.uint8), np.full((k, 2), -128, np.int8)
        check_int(int_mod[1], int_ir, "uxi", a, b)
        assert (255 * -128 * k < -2**31) == (k == 65794)
    a8 = np.full((1, 140000), -128, np.int8)
    check_int(int_mod[1], int_ir, "ixi", a8, np.full((140000, 1), -128, np.int8))   # 2**14 * 140000


def test_int8_transposed_batched_broadcast_and_vectors(int_mod, int_ir):
    mod = int_mod[1]
    for m, k, n in [(3, 5, 7), (33, 70, 40), (0, 4, 2), (2, 0, 3)]:
        a, b = ints("u8", (k, m)), ints("i8", (n, k))
        check_int(mod, int_ir, "tt", a, b, wrapped(a.T, b.T))
        a, b = ints("i8", (4, m, k)), ints("u8", (k, n))
        np.testing.assert_array_equal(mod["batched"](a, b), wrapped(a, b))
        a, b = ints("u8", (2, 1, m, k)), ints("i8", (3, k, n))
        np.testing.assert_array_equal(mod["bcast"](a, b), wrapped(a, b))
        np.testing.assert_array_equal(interpret(int_ir.get("bcast"), [a, b])[0], wrapped(a, b))
        a, b = ints("u8", (k,)), ints("i8", (k, n))
        np.testing.assert_array_equal(mod["vec"](a, b), wrapped(a, b))
        a, b = ints("i8", (k,)), ints("i8", (k,))
        np.testing.assert_array_equal(mod["dot"](a, b), wrapped(a, b))
    a = ints("u8", (0, 3, 4))
    np.testing.assert_array_equal(mod["batched"](a.astype(np.int8), ints("u8", (4, 5))), np.zeros((0, 3, 5), np.int32))


def test_int8_with_an_i32_operand_widens(int_mod, int_ir):
    a, b = ints("i32", (5, 9)), ints("i8", (9, 4))
    check_int(int_mod[1], int_ir, "mixed", a, b)


def _refused_as_too_large(mod, ir, fn: str, da, db) -> None:
    """Zero-byte operands whose product would hold 2^64 elements: a SizeLimitError from the
    call's checks (before native code runs) and from the interpreter."""
    a, b = np.zeros((2 ** 40, 0), da), np.zeros((0, 2 ** 24), db)
    for run in (lambda: getattr(mod, fn)(a, b), lambda: interpret(ir.get(fn), [a, b])):
        with pytest.raises(SizeLimitError, match=r"with M=1099511627776, K=0, N=16777216, the result "
                                                 r"of dl.matmul_lowp at .* would hold 2\^64 elements"):
            run()


def test_int8_products_too_large_are_refused(int_mod, int_ir):
    _refused_as_too_large(int_mod[1], int_ir, "uxi", np.uint8, np.int8)


def test_rank_0_operands_are_an_error():
    for call in ("matmul(s, b, dtype=i32)", 'matmul(x, x, precision="bf16")'):
        with pytest.raises(DlError, match="rank >= 1"):
            compile_source(f"fn f(s: u8[], b: i8[3, 4], x: f32[]) {{ return {call} }}", "r.dl")


def test_int8_threads_agree(int_ir):
    mod = runtime.compile(INT_SRC, cache=False)
    a, b = ints("u8", (70, 300)), ints("i8", (300, 200))
    want = wrapped(a, b)
    try:
        for t in (1, 2, 3):
            threads.set_num_threads(mod._library, t)
            np.testing.assert_array_equal(mod["uxi"](a, b), want)
    finally:
        threads.set_num_threads(mod._library, threads.num_threads())


# -- bf16 -------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=list(TARGETS))
def bf_mod(request):
    return request.param, runtime.compile(BF16_SRC, cache=False, options=TARGETS[request.param])


@pytest.fixture(scope="module")
def bf_ir():
    return compile_source(BF16_SRC, "bf.dl")


def bf16_bound(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The exact product of the unrounded operands (f64) and a bound of ``precision="bf16"``'s
    error: each operand's rounding (2^-9 relative, twice) and f32 sums (K 2^-24), relative to
    sum |a||b|, plus what bf16 subnormals counted as zero can lose."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    k = a.shape[-1]
    mag = np.abs(a64) @ np.abs(b64)
    tiny = 2.0 ** -126 * (np.abs(b64).sum(axis=-2, keepdims=True) + np.abs(a64).sum(axis=-1, keepdims=True))
    return a64 @ b64, (2 * 2.0 ** -8 + (k + 2) * 2.0 ** -24) * mag + tiny + 1e-44


@pytest.mark.parametrize("m, k, n", INT_SHAPES + [(64, 600, 50)])
def test_bf16_against_interpreter_and_f64(bf_mod, bf_ir, m, k, n):
    mod = bf_mod[1]
    a = RNG.standard_normal((m, k)).astype(np.float32)
    b = (RNG.standard_normal((k, n)) * 1e3).astype(np.float32)
    got = mod["h"](a, b)
    want = interpret(bf_ir.get("h"), [a, b])[0]
    assert got.dtype == want.dtype == np.float32 and got.shape == want.shape == (m, n)
    # the same rounded operands, f32 sums in another order
    ra, rb = bf16_operand(a).astype(np.float64), bf16_operand(b).astype(np.float64)
    sums = np.abs(ra) @ np.abs(rb)
    assert (np.abs(got - want) <= (k + 2) * 2.0 ** -23 * sums).all()
    exact, bound = bf16_bound(a, b)
    assert (np.abs(got - exact) <= bound).all()
    # and the rounding is really to bf16: a plain f32 product is far more accurate
    if k >= 16 and m * n:
        assert np.abs(want - exact).max() > 100 * np.abs(a.astype(np.float64) @ b - exact).max()


def test_bf16_short_sums_are_exact(bf_mod, bf_ir):
    # K <= 2: one rounding of the operands, products exact in f32, at most one addition
    for k in (1, 2):
        a = RNG.standard_normal((9, k)).astype(np.float32)
        b = RNG.standard_normal((k, 33)).astype(np.float32)
        got = bf_mod[1]["h"](a, b)
        np.testing.assert_array_equal(got, interpret(bf_ir.get("h"), [a, b])[0])
        np.testing.assert_array_equal(got, bf16_operand(a) @ bf16_operand(b))


def test_bf16_products_too_large_are_refused(bf_mod, bf_ir):
    _refused_as_too_large(bf_mod[1], bf_ir, "h", np.float32, np.float32)


def test_bf16_rounds_to_nearest_even(bf_mod):
    # halfway cases of bf16 (8 significant bits): 1 + 2^-8 -> 1, 1 + 3 * 2^-8 -> 1 + 2^-6,
    # just above halfway -> up; each times 1 with K = 1 shows the rounded operand
    vals = np.array([1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8, 1 + 2.0 ** -8 + 2.0 ** -20, -(1 + 2.0 ** -8),
                     3.0e38, 2.0 ** -126, 1.1754942e-38, -1.0e-39, 0.1], np.float32)
    want = vals.astype(ml_dtypes.bfloat16).astype(np.float32)
    want[np.abs(want) < 2.0 ** -126] = 0.0          # bf16 subnormals count as zero
    got = bf_mod[1]["h"](vals.reshape(-1, 1), np.ones((1, 1), np.float32))
    np.testing.assert_array_equal(got.ravel(), want)
    assert got[0, 0] == 1.0 and got[1, 0] == 1 + 2.0 ** -6 and got[2, 0] == 1 + 2.0 ** -7


def test_bf16_special_values(bf_mod, bf_ir):
    nan, inf = np.float32("nan"), np.float32("inf")
    a = np.array([[nan, 1.0, 2.0], [inf, 1.0, 0.0], [inf, 0.0, 0.0], [-0.0, -0.0, -0.0],
                  [inf, -inf, 0.0], [1e-39, 0.0, 0.0]], np.float32)
    b = np.array([[1.0, 0.0], [2.0, 3.0], [4.0, -1.0]], np.float32)
    big = b.copy()
    big[0, 1] = 1e30        # a subnormal operand (1e-39) times a huge one: 0, not 1e-9
    # NaN spreads along its row; inf * 0 and inf - inf are NaN; zeros come out as zeros
    # (their sign is not specified); a bf16 subnormal operand counts as 0
    want_big = np.array([[nan, nan], [inf, inf], [inf, inf], [0, 0], [nan, nan], [0, 0]], np.float32)
    want = np.array([[nan, nan], [inf, nan], [inf, nan], [0, 0], [nan, nan], [0, 0]], np.float32)
    for rhs, expected in ((big, want_big), (b, want)):
        np.testing.assert_array_equal(bf_mod[1]["h"](a, rhs), expected)
        np.testing.assert_array_equal(interpret(bf_ir.get("h"), [a, rhs])[0], expected)


def test_bf16_transposed_batched_and_storage_operands(bf_mod, bf_ir):
    mod = bf_mod[1]
    a = RNG.standard_normal((40, 7)).astype(np.float32)
    b = RNG.standard_normal((9, 40)).astype(np.float32)
    got = mod["ht"](a, b)
    np.testing.assert_allclose(got, bf16_operand(a.T) @ bf16_operand(b.T), rtol=1e-5, atol=1e-5)
    a3 = RNG.standard_normal((3, 5, 70)).astype(np.float32)
    b3 = RNG.standard_normal((3, 70, 33)).astype(np.float32)
    np.testing.assert_allclose(mod["hb"](a3, b3), bf16_operand(a3) @ bf16_operand(b3), rtol=1e-5, atol=1e-5)
    assert mod["hb"](a3[:0], b3[:0]).shape == (0, 5, 33)
    # bf16 operands and result: f32 sums rounded once
    ab = RNG.standard_normal((6, 50)).astype(ml_dtypes.bfloat16)
    bb = RNG.standard_normal((50, 4)).astype(ml_dtypes.bfloat16)
    got = mod["hh"](ab, bb)
    assert got.dtype == ml_dtypes.bfloat16
    want = interpret(bf_ir.get("hh"), [ab, bb])[0]
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=2 ** -7)
    # mixed float operands, f32 result, default precision: the widened f32 product
    bw = RNG.standard_normal((50, 4)).astype(np.float32)
    np.testing.assert_allclose(mod["hw"](ab, bw), ab.astype(np.float32) @ bw, rtol=1e-5, atol=1e-5)


def test_bf16_operands_packed_as_they_are(bf_mod, bf_ir):
    # a bf16 operand is the kernel's own form (no f32 copy): exact for K <= 2, its subnormals 0
    for m, k, n in [(3, 1, 5), (9, 2, 70), (13, 77, 40), (130, 1100, 65), (0, 3, 2), (2, 0, 3)]:
        a = RNG.standard_normal((m, k)).astype(ml_dtypes.bfloat16)
        b = RNG.standard_normal((k, n)).astype(np.float32)
        if a.size:
            a.flat[0] = ml_dtypes.bfloat16(1e-39)            # a bf16 subnormal: counts as 0
        got = bf_mod[1]["hm"](a, b)
        want = interpret(bf_ir.get("hm"), [a, b])[0]
        assert got.dtype == want.dtype == np.float32 and got.shape == (m, n)
        ra = bf16_operand(a.astype(np.float32)).astype(np.float64)
        rb = bf16_operand(b).astype(np.float64)
        assert ra.size == 0 or ra.flat[0] == 0.0
        if k <= 2:
            np.testing.assert_array_equal(got, want)
        assert (np.abs(got - want) <= (k + 2) * 2.0 ** -23 * (np.abs(ra) @ np.abs(rb))).all()


def test_bf16_gradient(bf_mod, bf_ir):
    # d sum(x @ w) / dw = x^T @ ones, in the same precision: the rounded x's column sums
    x = RNG.standard_normal((5, 300)).astype(np.float32)
    w = RNG.standard_normal((300, 3)).astype(np.float32)
    dw = bf_mod[1]["dloss"](x, w)
    want = np.repeat(bf16_operand(x).astype(np.float64).sum(axis=0)[:, None], 3, axis=1)
    np.testing.assert_allclose(dw, want, rtol=1e-5, atol=1e-5)
    (dw_ref,) = interpret(bf_ir.get("dloss"), [x, w])
    np.testing.assert_allclose(dw, dw_ref, rtol=1e-5, atol=1e-5)


# -- instruction selection, the DSL, errors -----------------------------------------------------


def _count(asm: str, mnemonic: str) -> int:
    return len(re.findall(rf"\b{mnemonic}\b", asm))


@pytest.mark.skipif(not (VNNI and BF16), reason="the host has no AVX-512 VNNI / BF16")
def test_the_host_uses_vnni_and_bf16_instructions():
    asm = stage_text(compile_source(INT_SRC + BF16_SRC.replace("fn dloss = grad(loss, wrt=[w])", ""), "x.dl"),
                     "asm")
    assert _count(asm, "vpdpbusd") >= 16 and _count(asm, "vdpbf16ps") >= 16


def test_default_precision_never_uses_them():
    # opt-in: a @ b, matmul(a, b) and f32/bf16 products without precision= stay f32 FMAs
    src = """
    fn f(a: f32[M, K], b: f32[K, N]) -> f32[M, N] { return a @ b }
    fn g(a: bf16[M, K], b: bf16[K, N]) -> bf16[M, N] { return matmul(a, b) }
    fn h(a: bf16[M, K], b: f32[K, N]) -> f32[M, N] { return matmul(a, b, dtype=f32) }
    fn i(a: i32[M, K], b: i32[K, N]) -> i32[M, N] { return a @ b }
    """
    asm = stage_text(compile_source(src, "d.dl"), "asm")
    assert _count(asm, "vpdpbusd") == 0 and _count(asm, "vdpbf16ps") == 0


@pytest.mark.parametrize("target", ["x86-64-v4", "generic"])
def test_without_the_instructions_the_widening_path(target):
    options = CodegenOptions(target=Target.generic() if target == "generic" else named_target(target))
    asm = stage_text(compile_source(INT_SRC, "x.dl"), "asm", options)
    assert _count(asm, "vpdpbusd") == 0 and _count(asm, "vdpbf16ps") == 0
    mod = runtime.compile(INT_SRC, cache=False, options=options)
    a, b = ints("i8", (19, 70)), ints("u8", (70, 21))
    np.testing.assert_array_equal(mod["ixu"](a, b), wrapped(a, b))


def test_kernel_form_and_native():
    m = compile_source(INT_SRC + BF16_SRC, "x.dl")
    ops = {f.name: f.ops[-1] for f in m.functions if f.ops and f.ops[-1].name == "matmul_lowp"}
    v4 = CodegenOptions(target=named_target("x86-64-v4"))
    assert not gemm_lowp.native(ops["uxi"], v4) and not gemm_lowp.native(ops["h"], v4)
    assert gemm_lowp.native(ops["uxi"], CodegenOptions()) == VNNI
    assert gemm_lowp.native(ops["h"], CodegenOptions()) == BF16
    assert not gemm_lowp.native(ops["uxi"], CodegenOptions(vector_lanes=8))


def test_dsl_spelling_and_ir_round_trip():
    m = compile_source(INT_SRC + BF16_SRC, "x.dl")
    text = print_module(m)
    assert '"dl.matmul_lowp"(%a, %b) {dtype = i32, precision = "default"}' in text
    assert '{dtype = unit, precision = "bf16"}' in text
    assert print_module(parse_module(text)) == text


@pytest.mark.parametrize("call, message", [
    ("matmul(a8, b8)", "does not take u8 tensors alone: write matmul(a, b, dtype=i32)"),
    ("a8 @ b8", "does not take u8"),
    ("matmul(a8, b8, dtype=f32)", "integer operands sum in i32"),
    ("matmul(a8, b8, dtype=i64)", "integer operands sum in i32"),
    ('matmul(a8, b8, precision="bf16")', 'precision="bf16" rounds float operands'),
    ('matmul(x, y, precision="fp8")', "must be one of default, bf16"),
    ("matmul(x, y, dtype=i32)", "float operands sum in f32"),
    ("matmul(a8, y, dtype=i32)", "takes i8/u8/i32 operands"),
    ("matmul(d, d, dtype=f32)", "takes i8/u8/i32 operands"),
])
def test_errors(call, message):
    src = (f"fn f(a8: u8[2, 3], b8: u8[3, 4], x: f32[2, 3], y: f32[3, 4], d: f64[3, 3]) {{ "
           f"return {call} }}")
    with pytest.raises(DlError) as info:
        compile_source(src, "e.dl")
    assert message in str(info.value)


# -- ONNX MatMulInteger -----------------------------------------------------------------------


@pytest.mark.parametrize("za, zb", [(None, None), (128, None), (None, -5), (7, -5), (255, "per-column"),
                                    ("per-row", 3)])
def test_onnx_matmul_integer_imports_with_onnxruntimes_numbers(za, zb):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    from compiler.ir.core import Module
    from runtime.interop.onnx_import import import_onnx

    m, k, n = 6, 70, 9
    w = ints("i8", (k, n))
    inits = [numpy_helper.from_array(w, "w")]
    inputs = ["x", "w", "", ""]
    if za is not None:
        value = ints("u8", (m,)) if za == "per-row" else np.array(za, np.uint8)
        inits.append(numpy_helper.from_array(value, "za"))
        inputs[2] = "za"
    if zb is not None:
        value = ints("i8", (n,)) if zb == "per-column" else np.array(zb, np.int8)
        inits.append(numpy_helper.from_array(value, "zb"))
        inputs[3] = "zb"
    while inputs[-1] == "":
        inputs.pop()
    graph = helper.make_graph([helper.make_node("MatMulInteger", inputs, ["y"])], "q",
                              [helper.make_tensor_value_info("x", TensorProto.UINT8, [m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    x = ints("u8", (m, k))
    zero_a = np.zeros((m, 1), np.int64) if za is None else numpy_helper.to_array(inits[1]).astype(np.int64)
    zero_a = zero_a.reshape(-1, 1) if zero_a.ndim == 1 else zero_a
    zero_b = np.int64(0) if zb is None else numpy_helper.to_array(inits[-1]).astype(np.int64)
    want = ((x.astype(np.int64) - zero_a) @ (w.astype(np.int64) - zero_b)).astype(np.int32)
    if za != "per-row":         # onnxruntime takes one zero point for A only
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        np.testing.assert_array_equal(session.run(None, {"x": x})[0], want)
    imported = import_onnx(proto)
    assert "matmul_lowp" in [op.name for op in imported.function.ops]
    weights = list(imported.weights.values())
    np.testing.assert_array_equal(interpret(imported.function, [*weights, x])[0], want)
    module = Module()
    module.functions.append(imported.function)
    native = runtime.compile(module, cache=False)
    np.testing.assert_array_equal(native[imported.function.name](*weights, x), want)
