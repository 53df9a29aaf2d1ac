"""A 2x2, stride-2 max pool fused into the direct convolution before it
(``bufferize.fuse_pools``, ``conv.pool_fusable``; docs/codegen.md, "Convolution"): which
layers fuse, and that the fused kernel's results are bit for bit those of the separate pool
kernel -- NaN, inf and the sign of zero included -- on any thread count and batch, and agree
with the interpreter."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.codegen import bufferize
from compiler.codegen.bufferize import lower_function
from compiler.codegen.loops import Conv, Pool
from compiler.ir.builder import new_function
from compiler.ir.core import Module
from compiler.ir.interpreter import interpret
from compiler.ir.types import DType, TensorType

# (name, H, W, C, OC, groups, conv attrs, pool attrs, fused)
CASES = [
    ("mnist", 28, 28, 1, 32, 1, {}, {}, True),
    ("odd-drops-last-row-and-column", 9, 11, 1, 20, 1, {}, {}, True),
    ("same-padding", 7, 6, 1, 20, 1, {"padding": (1, 1, 1, 1)}, {}, True),
    ("stride-2-conv", 13, 12, 1, 16, 1, {"strides": (2, 2)}, {}, True),
    ("depthwise-24", 9, 10, 24, 24, 24, {"padding": (1, 1, 1, 1)}, {}, True),
    ("one-channel-5x5", 12, 12, 1, 7, 1, {"padding": (2, 2, 2, 2)}, {}, True),
    ("pool-3", 11, 11, 1, 20, 1, {}, {"pool_size": (3, 3), "strides": (3, 3)}, False),
    ("pool-2-stride-1", 8, 9, 1, 20, 1, {}, {"strides": (1, 1)}, False),
    ("pool-padding", 8, 9, 1, 20, 1, {}, {"padding": (0, 1, 0, 0)}, False),
    ("gemm-path", 8, 8, 3, 20, 1, {}, {}, False),          # three input channels: the GEMM path
    ("wide-scratch", 6, 6, 1, 160, 1, {}, {}, False),      # two rows of tiles over the stack bound
]
IDS = [c[0] for c in CASES]


def layer(h, w, c, oc, groups, conv_attrs, pool_attrs, dtype=DType.f32):
    ksize = 5 if conv_attrs.get("padding") == (2, 2, 2, 2) else 3
    """``max_pool(conv2d(x, k) * scale + bias)``: the epilogue's ``scale`` (-1 on some channels)
    turns the conv's +0.0 into -0.0, so windows hold both zeros."""
    func, b = new_function("layer", [("x", TensorType(dtype, ("N", h, w, c))),
                                     ("k", TensorType(dtype, (ksize, ksize, c // groups, oc))),
                                     ("scale", TensorType(dtype, (oc,))), ("bias", TensorType(dtype, (oc,)))])
    x, k, scale, bias = func.params
    conv = b.conv2d(x, k, groups=groups, **conv_attrs)
    pool = {"pool_size": (2, 2), "strides": (2, 2), **pool_attrs}
    func.outputs = [b.max_pool2d(b.add(b.mul(conv, scale), bias), **pool)]
    return func


def arguments(func, batch, seed):
    """Random operands with NaN, inf and zero regions in the image, zeros in the bias."""
    rng = np.random.default_rng(seed)
    dtype = np.float32 if func.params[0].type.dtype is DType.f32 else np.float64
    x = rng.standard_normal((batch, *func.params[0].type.shape[1:])).astype(dtype)
    if batch:
        flat = x.reshape(-1)
        flat[rng.integers(0, flat.size, 3)] = np.nan
        flat[rng.integers(0, flat.size, 3)] = np.inf
        flat[rng.integers(0, flat.size, 2)] = -np.inf
        x[0, : x.shape[1] // 2] = 0.0                 # conv output +0.0 there (then -0.0 by scale)
    k = rng.standard_normal(func.params[1].type.shape).astype(dtype)
    oc = func.params[2].type.shape[0]
    scale = np.where(np.arange(oc) % 3 == 0, -1.0, 1.0).astype(dtype)
    bias = np.where(np.arange(oc) % 2 == 0, 0.0, rng.standard_normal(oc)).astype(dtype)
    return [x, k, scale, bias]


def same_bits(got: np.ndarray, want: np.ndarray) -> bool:
    return (got.shape == want.shape and got.dtype == want.dtype
            and np.array_equal(got, want, equal_nan=True)
            and np.array_equal(np.signbit(got), np.signbit(want)))


def compiled(func, fuse_pools: bool, monkeypatch):
    import runtime

    monkeypatch.setattr(bufferize, "FUSE_POOLS", fuse_pools)
    try:
        return runtime.compile(Module([func]), cache=False, passes="")
    finally:
        monkeypatch.setattr(bufferize, "FUSE_POOLS", True)


def results(lib, args) -> list[np.ndarray]:
    """The layer's result on 1, 2 and 3 threads."""
    from compiler.codegen import threads

    out = []
    try:
        for n in (1, 2, 3):
            threads.set_num_threads(lib._library, n)
            out.append(np.array(lib.layer(*args), copy=True))
    finally:
        threads.set_num_threads(lib._library, threads.num_threads())
    return out


@pytest.mark.parametrize("dtype", [DType.f32, DType.f64])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_fused_pool_is_bit_identical_to_the_separate_pool(case, dtype, monkeypatch):
    _, h, w, c, oc, groups, conv_attrs, pool_attrs, fused = case
    func = layer(h, w, c, oc, groups, conv_attrs, pool_attrs, dtype)
    prog = lower_function(func)
    convs = [k for k in prog.kernels if isinstance(k, Conv)]
    assert len(convs) == 1 and convs[0].epilogue is not None
    assert (convs[0].pooled is not None) == fused
    assert bool([k for k in prog.kernels if isinstance(k, Pool)]) == (not fused)
    if fused:       # the full-resolution image is never allocated
        assert all(len(buf.shape) != 4 or buf.shape[1:] != convs[0].out.shape[1:] for buf in prog.temps)
    one, separate = compiled(func, True, monkeypatch), compiled(func, False, monkeypatch)
    for batch in (0, 1, 5):
        args = arguments(func, batch, seed=batch + 7 * len(case[0]))
        got = results(one, args)
        want = results(separate, args)
        assert all(same_bits(g, want[0]) for g in got + want[1:])
        (ref,) = interpret(func, args)
        np.testing.assert_allclose(got[0], ref, rtol=1e-4 if dtype is DType.f32 else 1e-12, atol=1e-4)
        assert np.array_equal(np.isnan(got[0]), np.isnan(ref))


def test_a_pool_whose_input_is_read_again_is_not_fused():
    """The training step's case: the pool gradient reads the conv's result, so it is stored
    and the pool stays a kernel of its own."""
    func, b = new_function("f", [("x", TensorType(DType.f32, ("N", 10, 10, 1))),
                                 ("k", TensorType(DType.f32, (3, 3, 1, 8))),
                                 ("dy", TensorType(DType.f32, ("N", 4, 4, 8)))])
    x, k, dy = func.params
    act = b.relu(b.conv2d(x, k))
    func.outputs = [b.max_pool2d(act, pool_size=(2, 2), strides=(2, 2)),
                    b.max_pool2d_grad(act, dy, pool_size=(2, 2), strides=(2, 2))]
    prog = lower_function(func)
    assert all(k.pooled is None for k in prog.kernels if isinstance(k, Conv))
    assert len([k for k in prog.kernels if isinstance(k, Pool)]) == 2


@pytest.mark.parametrize("lanes", [1, 2])
def test_fused_pool_on_narrow_vectors(lanes):
    """A fused pool runs on the direct path even where the convolution alone would take the
    GEMM path (fewer than 4 lanes): it stays right."""
    import runtime
    from compiler.codegen.target import CodegenOptions

    func = layer(9, 11, 1, 20, 1, {"padding": (1, 1, 1, 1)}, {})
    lib = runtime.compile(Module([func]), cache=False, passes="", options=CodegenOptions(vector_lanes=lanes))
    for batch in (0, 3):
        args = arguments(func, batch, seed=lanes)
        (ref,) = interpret(func, args)
        got = lib.layer(*args)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
        assert np.array_equal(np.isnan(got), np.isnan(ref))
