"""Multi-output elementwise kernels (``bufferize.fuse_sibling_outputs``): a function output
read by one later elementwise kernel of its shape, element for element, is computed and
stored in that kernel's loop (Adam's moments and weights in one pass). Results are the
unfused kernels' bit for bit, the interpreter's, and the same on 1, 2 and 3 threads."""

from __future__ import annotations

import numpy as np
import pytest

import runtime
from compiler.codegen import threads
from compiler.codegen.driver import stage_text
from compiler.codegen.target import CodegenOptions
from compiler.ir.interpreter import interpret
from frontend_dsl import compile_source

SOURCE = """
fn adamish(m: f32[R, C], v: f32[R, C], w: f32[R, C], g: f32[R, C]) -> (f32[R, C], f32[R, C], f32[R, C]) {
    let m2 = m + (g - m) * 0.1
    let v2 = v + (g * g - v) * 0.001
    return m2, v2, w - m2 * 0.01 / (sqrt(v2) + 0.0000001)
}
fn twice(m: f32[R, C], g: f32[R, C]) -> (f32[R, C], f32[R, C], f32[R, C]) {
    let m2 = exp(m) + g
    return m2, sqrt(m2) * 2.0, m2 - g
}
fn transposed(m: f32[N, N], g: f32[N, N]) -> (f32[N, N], f32[N, N]) {
    let m2 = exp(m) + g
    return m2, sqrt(transpose(m2)) * 2.0
}
"""


def loop_lines(fn: str, fuse: bool = True) -> list[str]:
    module = compile_source(SOURCE)
    text = stage_text(module, "loops", CodegenOptions(fuse=fuse))
    body = text.split(f"@{fn}")[1].split("\n\n")[0]
    return [line.strip() for line in body.splitlines() if "elementwise" in line]


def test_adam_like_update_is_one_kernel_with_three_outputs() -> None:
    (line,) = loop_lines("adamish")
    assert line.count("%out0[i0, i1] =") == line.count("%out1[i0, i1] =") == line.count("%out2[i0, i1] =") == 1
    # the weights' update recomputes m2 and v2 from the loads: nothing reads %out0 / %out1 back
    assert "%out0[i0, i1])" not in line.split("%out2[i0, i1] =")[1]
    assert all(line.count("] = ") == 1 for line in loop_lines("adamish", fuse=False))


@pytest.mark.parametrize("fn", ["twice", "transposed"])
def test_output_read_twice_or_transposed_is_not_folded(fn: str) -> None:
    lines = loop_lines(fn)
    assert all(line.count("] = ") == 1 for line in lines)       # one output per kernel
    assert len(lines) == (3 if fn == "twice" else 2)


def adam_inputs(rows: int, cols: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    m, v, w, g = (rng.normal(size=(rows, cols)).astype(np.float32) for _ in range(4))
    v = np.abs(v)
    if m.size:
        flat = g.reshape(-1)
        flat[::7] = 0.0
        flat[1::11] = np.nan
        flat[2::13] = np.inf
        flat[3::17] = -np.inf
        v.reshape(-1)[4::19] = 1e-40                 # subnormal
        m.reshape(-1)[5::23] = -0.0
    return [m, v, w, g]


@pytest.fixture(scope="module")
def compiled():
    return (runtime.compile(SOURCE, cache=False),
            runtime.compile(SOURCE, cache=False, options=CodegenOptions(fuse=False)))


@pytest.mark.parametrize("shape", [(0, 5), (1, 1), (1, 17), (3, 33), (37, 129), (301, 517)])
def test_fused_equals_unfused_and_interpreter_bitwise(compiled, shape) -> None:
    fused, unfused = compiled
    args = adam_inputs(*shape)
    got = fused["adamish"](*args)
    want = unfused["adamish"](*args)
    ref = interpret(compile_source(SOURCE).get("adamish"), args)
    for a, b, r in zip(got, want, ref):
        assert a.shape == shape
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
        assert np.array_equal(a.view(np.uint32), np.asarray(r, np.float32).view(np.uint32))


@pytest.mark.parametrize("fn", ["twice", "transposed"])
def test_unfolded_kernels_still_match_numpy(compiled, fn) -> None:
    fused, _ = compiled
    rng = np.random.default_rng(3)
    m, g = (rng.normal(size=(9, 9)).astype(np.float32) for _ in range(2))
    got = fused[fn](m, g)
    ref = interpret(compile_source(SOURCE).get(fn), [m, g])
    for a, r in zip(got, ref):
        np.testing.assert_allclose(a, r, rtol=2e-6)      # exp: within an ulp or two of numpy's


def test_large_fused_kernel_is_bit_identical_on_1_2_3_threads(compiled) -> None:
    fused, _ = compiled
    args = adam_inputs(1000, 777, seed=5)                  # above two tasks' work: split
    results = []
    for t in (1, 2, 3):
        threads.set_num_threads(fused._library, t)
        results.append([np.array(r, copy=True) for r in fused["adamish"](*args)])
    threads.set_num_threads(fused._library, threads.num_threads())
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


MATMUL_SOURCE = """
fn adam_mm(x: f32[N, A], d: f32[N, B], m: f32[A, B], v: f32[A, B], w: f32[A, B]) -> (f32[A, B], f32[A, B], f32[A, B]) {
    let g = transpose(x) @ d
    let m2 = m + (g - m) * 0.1
    let v2 = v + (g * g - v) * 0.001
    return m2, v2, w - m2 * 0.01 / (sqrt(v2) + 0.0000001)
}
"""


def test_multi_output_kernel_becomes_the_matmul_epilogue() -> None:
    text = stage_text(compile_source(MATMUL_SOURCE), "loops")
    assert "elementwise" not in text.split("@adam_mm")[1]
    assert text.count("      also: ") == 2 and "epilogue: sub(%w[i0, i1]" in text


@pytest.mark.parametrize("n,a,b", [(0, 3, 5), (1, 1, 1), (1, 37, 129), (5, 16, 64), (33, 40, 17), (3, 1600, 128)])
def test_matmul_with_extra_outputs_matches_unfused_and_interpreter(n, a, b) -> None:
    fused = runtime.compile(MATMUL_SOURCE, cache=False)
    unfused = runtime.compile(MATMUL_SOURCE, cache=False, options=CodegenOptions(fuse=False))
    rng = np.random.default_rng(n + a + b)
    x = rng.normal(size=(n, a)).astype(np.float32)
    d = rng.normal(size=(n, b)).astype(np.float32)
    m, v, w = (rng.normal(size=(a, b)).astype(np.float32) for _ in range(3))
    v = np.abs(v)
    if n:
        d[0, ::3] = np.nan
        x[-1, ::5] = np.inf
    got = fused["adam_mm"](x, d, m, v, w)
    want = unfused["adam_mm"](x, d, m, v, w)
    with np.errstate(invalid="ignore", over="ignore"):
        ref = interpret(compile_source(MATMUL_SOURCE).get("adam_mm"), [x, d, m, v, w])
    for g, u, r in zip(got, want, ref):
        assert g.shape == (a, b)
        assert np.array_equal(g.view(np.uint32), u.view(np.uint32))
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-5)
