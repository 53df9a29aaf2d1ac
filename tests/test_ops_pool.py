"""Pooling (compiler/ops/pool.py, compiler/codegen/pool.py).

* the op references against an independent numpy formula (``sliding_window_view``
  over the padded image, ``np.add.at`` for the gradients) on random shapes:
  odd sizes, strides above the pool size, padding as large as or larger than the
  window, 1x1 and 0-row images, NaN, ±inf and -0.0 inputs;
* native code against the interpreter, bit for bit (the sign of zero included),
  at batch 0, 1 and 5, with channel counts that are not a multiple of the lanes;
* bit identity across 1, 2 and 3 threads;
* gradients by finite differences in f64, and gradients of gradients;
* shape rules, Keras padding, the loop IR and in-place / softmax-fusion safety.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import runtime
from compiler.analysis.flops import op_cost
from compiler.checking.gradcheck import gradcheck
from compiler.codegen import threads
from compiler.codegen.driver import stage_text
from compiler.codegen.target import CodegenOptions
from compiler.diagnostics import DlTypeError
from compiler.ir.builder import new_function
from compiler.ir.core import Function, Module
from compiler.ir.interpreter import interpret
from compiler.ir.types import DType, TensorType
from compiler.ops import OPS
from compiler.ops.pool import make_window, resolve_padding
from compiler.passes.autodiff import grad, inline_function

F32, F64 = DType.f32, DType.f64


def T(dtype: DType, *shape) -> TensorType:
    return TensorType(dtype, tuple(shape))


# (H, W, C, pool_size, strides, padding): odd sizes, strides > pool, padding >= pool,
# 1x1 images, a 0-row image, channel counts around the vector width
CONFIGS = [
    (5, 7, 3, (2, 2), (2, 2), (0, 0, 0, 0)),
    (6, 6, 17, (3, 3), (2, 2), (1, 1, 1, 1)),
    (7, 5, 1, (2, 3), (3, 4), (0, 1, 2, 0)),         # strides above the pool size
    (4, 4, 33, (2, 2), (1, 1), (3, 2, 2, 4)),        # padding larger than the window
    (1, 1, 5, (1, 1), (1, 1), (0, 0, 0, 0)),         # 1x1 image
    (1, 1, 16, (3, 2), (2, 2), (2, 1, 1, 1)),        # 1x1 image, windows in the padding
    (3, 8, 2, (3, 1), (1, 3), (0, 0, 0, 0)),
    (0, 3, 4, (2, 2), (1, 1), (1, 1, 0, 0)),         # no rows: every window empty
    (4, 6, 20, (2, 2), (2, 2), (0, 0, 0, 0)),        # windows tile the image: the gradient skips zeroing
    (7, 6, 3, (3, 2), (3, 3), (0, 0, 0, 0)),         # disjoint windows, elements between them
]


def random_configs(count: int, seed: int) -> list:
    """Window configurations drawn at random (seeded): sizes 0-9, channels 1-40, pools 1-4,
    strides 1-5, padding 0-5 on each side, kept where the window fits."""
    rng = np.random.default_rng(seed)
    out: list = []
    while len(out) < count:
        h, w = (int(v) for v in rng.integers(0, 10, 2))
        pool, strides = tuple(int(v) for v in rng.integers(1, 5, 2)), tuple(int(v) for v in rng.integers(1, 6, 2))
        padding = tuple(int(v) for v in rng.integers(0, 6, 4))
        if h + padding[0] + padding[1] >= pool[0] and w + padding[2] + padding[3] >= pool[1]:
            out.append((h, w, int(rng.integers(1, 41)), pool, strides, padding))
    return out


CONFIGS += random_configs(8, seed=2026)
CONFIG_IDS = [f"{h}x{w}x{c}_p{p[0]}{p[1]}_s{s[0]}{s[1]}_pad{''.join(map(str, pad))}"
              for h, w, c, p, s, pad in CONFIGS]


def attrs_of(config) -> dict:
    _, _, _, pool, strides, padding = config
    return {"pool_size": pool, "strides": strides, "padding": padding}


def special_values(shape, dtype, rng: np.random.Generator) -> np.ndarray:
    """Normal values with NaN, ±inf, ±0.0 and repeated values sprinkled in."""
    x = rng.standard_normal(shape).astype(dtype)
    picks = rng.random(shape)
    x[picks < 0.04] = np.nan
    x[(picks >= 0.04) & (picks < 0.08)] = np.inf
    x[(picks >= 0.08) & (picks < 0.14)] = -np.inf
    x[(picks >= 0.14) & (picks < 0.20)] = -0.0
    x[(picks >= 0.20) & (picks < 0.26)] = 0.0
    x[(picks >= 0.26) & (picks < 0.32)] = 1.5
    return x


# ---------------------------------------------------------------------------
# An independent numpy formula


def windows(a: np.ndarray, attrs: dict, fill) -> np.ndarray:
    """``[N, OH, OW, C, ph*pw]``: every window of the padded image, row-major inside."""
    (ph, pw), (sh, sw), (top, bottom, left, right) = attrs["pool_size"], attrs["strides"], attrs["padding"]
    padded = np.pad(a, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=fill)
    v = sliding_window_view(padded, (ph, pw), axis=(1, 2))[:, ::sh, ::sw]
    return v.reshape(*v.shape[:4], ph * pw)


def valid_mask(x: np.ndarray, attrs: dict) -> np.ndarray:
    return windows(np.ones((1, *x.shape[1:3], 1), bool), attrs, False)


def numpy_first_max(x: np.ndarray, attrs: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, offset of the first maximum inside the image, whether the window has any)."""
    valid = valid_mask(x, attrs)
    key = np.where(valid, windows(x, attrs, 0), -np.inf)
    arg = np.argmax(key, axis=-1)                  # numpy: the first maximum, NaN first
    value = np.take_along_axis(key, arg[..., None], -1)[..., 0]
    # a window whose image elements are all -inf: its first element inside the image
    first_inside = np.argmax(np.broadcast_to(valid, key.shape), axis=-1)
    arg = np.where(value == -np.inf, first_inside, arg)
    return value, arg, np.broadcast_to(valid.any(-1), value.shape)


def numpy_scatter(x_shape, attrs: dict, offsets: np.ndarray, keep: np.ndarray, values: np.ndarray
                  ) -> np.ndarray:
    """Add ``values[n, oh, ow, c]`` at window offsets ``offsets[n, oh, ow, c, j]`` where ``keep``,
    in row-major window order (``np.add.at`` adds in index order, one at a time)."""
    (_, pw), (sh, sw), (top, bottom, left, right) = attrs["pool_size"], attrs["strides"], attrs["padding"]
    n, h, w, c = x_shape
    padded = np.zeros((n, h + top + bottom, w + left + right, c), values.dtype)
    nn, oh, ow, cc, _ = np.indices(offsets.shape)
    rows, cols = oh * sh + offsets // pw, ow * sw + offsets % pw
    spread = np.broadcast_to(values[..., None], offsets.shape)
    np.add.at(padded, (nn[keep], rows[keep], cols[keep], cc[keep]), spread[keep])
    return padded[:, top:top + h, left:left + w]


def numpy_average(x: np.ndarray, attrs: dict, include: bool) -> tuple[np.ndarray, np.ndarray]:
    """(the averages, their divisors)."""
    valid = valid_mask(x, attrs)
    total = np.where(valid, windows(x, attrs, 0), 0).sum(-1)
    count = np.full(valid.shape[:-1], valid.shape[-1]) if include else np.maximum(valid.sum(-1), 1)
    count = count.astype(x.dtype)
    return total / count, count


def run_op(name: str, arrays: list[np.ndarray], **attrs) -> np.ndarray:
    """One op through the interpreter."""
    func, b = new_function("f", [(f"x{i}", T(DType.from_numpy(a.dtype), *a.shape)) for i, a in enumerate(arrays)])
    func.outputs = [b.emit(name, *func.params, **attrs)]
    (out,) = interpret(func, arrays)
    return out


def same_bits(got: np.ndarray, want: np.ndarray) -> bool:
    """Equal values, NaN where NaN, and the same sign of zero."""
    return (got.shape == want.shape and got.dtype == want.dtype
            and np.array_equal(got, want, equal_nan=True)
            and np.array_equal(np.signbit(got), np.signbit(want)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index", range(len(CONFIGS)), ids=CONFIG_IDS)
def test_reference_matches_an_independent_numpy_formula(index, dtype):
    config = CONFIGS[index]
    h, w, c = config[:3]
    attrs = attrs_of(config)
    rng = np.random.default_rng(index)
    x = special_values((3, h, w, c), dtype, rng)
    g = rng.standard_normal(x.shape).astype(dtype)
    value, arg, found = numpy_first_max(x, attrs)
    assert same_bits(run_op("max_pool2d", [x], **attrs), value.astype(dtype))
    dy = rng.standard_normal(value.shape).astype(dtype)
    assert same_bits(run_op("max_pool2d_grad", [x, dy], **attrs),
                     numpy_scatter(x.shape, attrs, arg[..., None], found[..., None], dy))
    picked = np.take_along_axis(windows(g, attrs, 0), arg[..., None], -1)[..., 0]
    assert same_bits(run_op("max_pool2d_gather", [x, g], **attrs), np.where(found, picked, 0).astype(dtype))

    finite = np.nan_to_num(x, nan=0.5, posinf=3.0, neginf=-3.0)
    valid = np.broadcast_to(valid_mask(x, attrs), (*dy.shape, attrs["pool_size"][0] * attrs["pool_size"][1]))
    every = np.broadcast_to(np.arange(valid.shape[-1]), valid.shape)
    for include in (False, True):
        want, count = numpy_average(finite, attrs, include)
        got = run_op("avg_pool2d", [finite], count_include_pad=include, **attrs)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
        dx = run_op("avg_pool2d_grad", [dy], count_include_pad=include, input_size=(h, w), **attrs)
        assert same_bits(dx, numpy_scatter(x.shape, attrs, every, valid, dy / count))


def test_first_maximum_ties_nan_and_signed_zero():
    attrs = {"pool_size": (1, 4), "strides": (1, 4), "padding": (0, 0, 0, 0)}
    rows = np.array([[-0.0, 0.0, 0.0, -1.0],        # ties: the first, so -0.0
                     [0.0, -0.0, 2.0, 2.0],         # the first of two 2.0s
                     [1.0, np.nan, 5.0, np.nan],    # NaN is the largest; the first NaN
                     [-np.inf, -np.inf, -np.inf, -np.inf]], np.float32)
    x = rows.reshape(1, 4, 4, 1)
    y = run_op("max_pool2d", [x], **attrs)[0, :, 0, 0]
    assert np.signbit(y[0]) and y[0] == 0 and y[1] == 2.0 and np.isnan(y[2]) and y[3] == -np.inf
    dy = np.array([1.0, 2.0, 3.0, 4.0], np.float32).reshape(1, 4, 1, 1)
    dx = run_op("max_pool2d_grad", [x, dy], **attrs)[0, :, :, 0]
    np.testing.assert_array_equal(dx, [[1, 0, 0, 0], [0, 0, 2, 0], [0, 3, 0, 0], [4, 0, 0, 0]])


def test_padding_is_never_selected_and_empty_windows():
    x = np.full((1, 1, 1, 2), -np.inf, np.float32)
    x[0, 0, 0, 1] = -0.0
    attrs = {"pool_size": (2, 2), "strides": (1, 1), "padding": (1, 2, 1, 2)}   # 3x3 windows
    y = run_op("max_pool2d", [x], **attrs)
    assert y.shape == (1, 3, 3, 2)
    # windows (0|1, 0|1) hold the pixel; the others lie wholly in the padding
    assert np.all(y[0, :2, :2, 0] == -np.inf)
    assert np.all(y[0, :2, :2, 1] == 0) and np.all(np.signbit(y[0, :2, :2, 1]))
    assert np.all(y[0, 2] == -np.inf) and np.all(y[0, :, 2] == -np.inf)
    dx = run_op("max_pool2d_grad", [x, np.ones(y.shape, np.float32)], **attrs)
    np.testing.assert_array_equal(dx, [[[[4.0, 4.0]]]])     # an all -inf window picks its pixel
    pixel = np.full((1, 1, 1, 1), 8.0, np.float32)
    avg = run_op("avg_pool2d", [pixel], **attrs)
    np.testing.assert_array_equal(avg[0, :, :, 0], [[8, 8, 0], [8, 8, 0], [0, 0, 0]])
    avg = run_op("avg_pool2d", [pixel], count_include_pad=True, **attrs)
    np.testing.assert_array_equal(avg[0, :, :, 0], [[2, 2, 0], [2, 2, 0], [0, 0, 0]])


def test_huge_windows_strides_and_padding():
    """Sizes near 2^31: the reference visits only the offsets that reach the image (it once
    looped over all ph*pw of them), native code only positions inside it."""
    big, most = 1 << 30, (1 << 31) - 1
    attrs = {"pool_size": (big, 1), "strides": (big, 1), "padding": (most, most, 0, 0)}
    f, b = new_function("f", [("x", T(F32, 2, 2, 2, 3)), ("dy", T(F32, 2, 4, 2, 3))])
    x, dy = f.params
    f.outputs = [b.max_pool2d(x, **attrs), b.avg_pool2d(x, **attrs), b.max_pool2d_grad(x, dy, **attrs),
                 b.avg_pool2d_grad(dy, input_size=(2, 2), count_include_pad=True, **attrs)]
    rng = np.random.default_rng(5)
    args = [rng.standard_normal(p.type.shape).astype(np.float32) for p in f.params]
    want = interpret(f, args)
    # windows 0 and 3 lie in the padding; window 1 holds image row 0, window 2 row 1
    assert same_bits(want[0][:, 1:3], args[0]) and np.all(want[0][:, [0, 3]] == -np.inf)
    np.testing.assert_array_equal(want[3][:, 0:2], args[1][:, 1:3] / np.float32(big))
    lib = runtime.compile(Module([f]), cache=False, passes="")
    assert all(same_or_nan(g, w) for g, w in zip(lib.f(*args), want))


def test_average_of_negative_zeros_keeps_the_sign():
    x = np.full((1, 2, 2, 1), -0.0, np.float64)
    for include in (False, True):
        y = run_op("avg_pool2d", [x], pool_size=(2, 2), padding=(1, 0, 1, 0), count_include_pad=include)
        assert np.all(y == 0) and np.all(np.signbit(y))


# ---------------------------------------------------------------------------
# Native code against the interpreter


def pool_function(name: str, config, dtype: DType) -> Function:
    """Every pool op and the global pools and flatten over one configuration."""
    h, w, c = config[:3]
    attrs = attrs_of(config)
    window = make_window((h, w), attrs["pool_size"], attrs["strides"], attrs["padding"])
    image, pooled = T(dtype, "N", h, w, c), T(dtype, "N", *window.out, c)
    f, b = new_function(name, [("x", image), ("g", image), ("dy", pooled)])
    x, g, dy = f.params
    f.outputs = [b.max_pool2d(x, **attrs), b.avg_pool2d(x, **attrs),
                 b.avg_pool2d(x, count_include_pad=True, **attrs), b.max_pool2d_gather(x, g, **attrs),
                 b.max_pool2d_grad(x, dy, **attrs), b.avg_pool2d_grad(dy, input_size=(h, w), **attrs),
                 b.avg_pool2d_grad(dy, input_size=(h, w), count_include_pad=True, **attrs),
                 b.global_avg_pool(x), b.flatten(x)]
    if h * w:       # a max over no pixels is an error (as numpy's), tested below
        f.outputs.insert(8, b.global_max_pool(x, keepdims=True))
    return f


NATIVE = [(f"f{i}_{dt}", config, dt) for i, config in enumerate(CONFIGS) for dt in [(F32, F64)[i % 2]]]


@pytest.fixture(scope="module")
def native():
    module = Module([pool_function(name, config, dt) for name, config, dt in NATIVE])
    return runtime.compile(module, cache=False, passes="")


def same_or_nan(got: np.ndarray, want: np.ndarray) -> bool:
    """Bit for bit, except the sign of a NaN (not specified)."""
    nan = np.isnan(want)
    return (got.shape == want.shape and got.dtype == want.dtype and np.array_equal(np.isnan(got), nan)
            and np.array_equal(got[~nan], want[~nan])
            and np.array_equal(np.signbit(got[~nan]), np.signbit(want[~nan])))


@pytest.mark.parametrize("name", [n for n, _, _ in NATIVE])
def test_native_matches_interpreter_bit_for_bit(native, name):
    func = native.module.get(name)
    rng = np.random.default_rng(len(name))
    for n in (0, 1, 5):
        shapes = [tuple(n if d == "N" else d for d in p.type.shape) for p in func.params]
        args = [special_values(s, func.params[0].type.dtype.np, rng) for s in shapes]
        want = interpret(func, [a.copy() for a in args])
        got = native[name](*args)
        for i, (gv, wv) in enumerate(zip(got, want)):
            if i in (7, 8):     # global pools: mean and max reductions, their own order and zero sign
                np.testing.assert_allclose(gv, wv, rtol=1e-6, atol=1e-6, err_msg=f"{name} output {i} N={n}")
            else:
                assert same_or_nan(gv, wv), f"{name} output {i} at N={n}"


def test_global_max_pool_of_no_pixels_is_an_error():
    f, b = new_function("f", [("x", T(F32, "N", 0, 3, 4))])
    with pytest.raises(DlTypeError, match="no extremum of no elements"):
        b.global_max_pool(f.params[0])


@pytest.mark.parametrize("lanes", [1, 4])
def test_other_vector_widths(lanes):
    """Scalar code (1 lane) and narrow vectors: the tails and the scalar paths of the kernels."""
    configs = [CONFIGS[1], CONFIGS[3]]              # 17 and 33 channels, overlapping and padded windows
    module = Module([pool_function(f"f{i}", config, F32) for i, config in enumerate(configs)])
    lib = runtime.compile(module, cache=False, passes="", options=CodegenOptions(vector_lanes=lanes))
    rng = np.random.default_rng(lanes)
    for func in module.functions:
        args = [special_values(tuple(2 if d == "N" else d for d in p.type.shape), np.float32, rng)
                for p in func.params]
        want = interpret(func, [a.copy() for a in args])
        for i, (got, w) in enumerate(zip(lib[func.name](*args), want)):
            if i not in (7, 8):
                assert same_or_nan(got, w), f"{func.name} output {i}"


THREADED = """
fn fwd(x: f32[N, 28, 27, 24], g: f32[N, 28, 27, 24]) -> (f32[N, 14, 13, 24], f32[N, 14, 14, 24], f32[N, 9, 9, 24]) {
  let a = max_pool2d(x, pool_size=[2, 2])
  let b = avg_pool2d(x, pool_size=[3, 3], strides=[2, 2], padding=[1, 1, 1, 2])
  let c = max_pool2d_gather(x, g, pool_size=[3, 3], strides=[3, 3], padding=[0, 0, 0, 0])
  return a, b, c
}
fn bwd(x: f32[N, 28, 27, 24], dy: f32[N, 14, 13, 24], da: f32[N, 14, 14, 24])
    -> (f32[N, 28, 27, 24], f32[N, 28, 27, 24]) {
  let a = max_pool2d_grad(x, dy, pool_size=[3, 3], strides=[2, 2], padding=[1, 0, 1, 0])
  let b = avg_pool2d_grad(da, pool_size=[3, 3], strides=[2, 2], padding=[1, 1, 1, 2], input_size=[28, 27])
  return a, b
}
"""


def test_results_identical_across_thread_counts():
    lib = runtime.compile(THREADED, cache=False)
    parts = [line for line in stage_text(lib.module, "llvm").splitlines()
             if line.startswith("define") and '.part"' in line]
    assert len(parts) == 5          # every pool kernel may split
    rng = np.random.default_rng(3)
    x, g = (special_values((48, 28, 27, 24), np.float32, rng) for _ in range(2))
    dy = rng.standard_normal((48, 14, 13, 24)).astype(np.float32)
    da = rng.standard_normal((48, 14, 14, 24)).astype(np.float32)
    results = []
    for t in (1, 2, 3):
        threads.set_num_threads(lib._library, t)
        results.append([np.array(r, copy=True) for r in (*lib.fwd(x, g), *lib.bwd(x, dy, da))])
    threads.set_num_threads(lib._library, threads.num_threads())
    for res in results[1:]:
        assert all(same_or_nan(a, b) for a, b in zip(res, results[0]))
    want = interpret(lib.module.get("bwd"), [x, dy, da])
    assert all(same_or_nan(a, b) for a, b in zip(results[0][3:], want))


# ---------------------------------------------------------------------------
# Gradients


def weighted_sum(name: str, types: list[TensorType], body) -> Module:
    """``@name(args.., w) = sum(body(args..) * w)``: a scalar for gradcheck."""
    probe, pb = new_function("probe", [(f"a{i}", t) for i, t in enumerate(types)])
    out_type = body(pb, probe.params).type
    f, b = new_function(name, [*[(f"a{i}", t) for i, t in enumerate(types)], ("w", out_type)])
    f.outputs = [b.sum(b.mul(body(b, f.params[:-1]), f.params[-1]))]
    return Module([f])


WINDOW = {"pool_size": (3, 2), "strides": (2, 1), "padding": (1, 1, 0, 1)}
IMAGE = T(F32, "N", 5, 4, 3)
POOLED = T(F32, "N", 3, 4, 3)
GRADCHECKS = {
    "max_pool2d": ([IMAGE], lambda b, p: b.max_pool2d(p[0], **WINDOW)),
    "avg_pool2d": ([IMAGE], lambda b, p: b.avg_pool2d(p[0], **WINDOW)),
    "avg_pool2d_incl": ([IMAGE], lambda b, p: b.avg_pool2d(p[0], count_include_pad=True, **WINDOW)),
    "max_pool2d_grad": ([IMAGE, POOLED], lambda b, p: b.max_pool2d_grad(p[0], p[1], **WINDOW)),
    "max_pool2d_gather": ([IMAGE, IMAGE], lambda b, p: b.max_pool2d_gather(p[0], p[1], **WINDOW)),
    "avg_pool2d_grad": ([POOLED], lambda b, p: b.avg_pool2d_grad(p[0], input_size=(5, 4), **WINDOW)),
    "avg_pool2d_grad_incl": ([POOLED], lambda b, p: b.avg_pool2d_grad(p[0], input_size=(5, 4),
                                                                      count_include_pad=True, **WINDOW)),
    "global_avg_pool": ([IMAGE], lambda b, p: b.global_avg_pool(p[0])),
    "global_max_pool": ([IMAGE], lambda b, p: b.global_max_pool(p[0], keepdims=True)),
    "flatten": ([IMAGE], lambda b, p: b.flatten(p[0])),
}


@pytest.mark.parametrize("name", list(GRADCHECKS))
def test_gradients_by_finite_differences(name):
    types, body = GRADCHECKS[name]
    report = gradcheck(weighted_sum("f", types, body), "f", max_elements=40)
    assert report.passed, str(report)
    for arg in report.args:
        if name in ("max_pool2d_grad", "max_pool2d_gather") and arg.name == "a0":
            assert arg.max_grad == 0, str(report)       # constant in x (almost everywhere)
        else:
            assert arg.max_grad > 0, str(report)


@pytest.mark.parametrize("pool", ["max_pool2d", "avg_pool2d"])
def test_gradient_of_the_gradient(pool):
    """``h(x, v) = <d/dx sum(tanh(pool(x))^2), v>`` differentiated again, by finite differences."""
    m = Module()
    f, b = new_function("f", [("x", IMAGE)])
    t = b.tanh(b.emit(pool, f.params[0], **WINDOW))
    f.outputs = [b.sum(b.mul(t, t))]
    m.functions.append(f)
    df = grad(m, "f", ["x"], new_name="df")
    h, hb = new_function("h", [("x", IMAGE), ("v", IMAGE)])
    dx = inline_function(hb, df, [h.params[0]])[df.outputs[0]]
    h.outputs = [hb.sum(hb.mul(dx, h.params[1]))]
    m.functions.append(h)
    if pool == "max_pool2d":
        assert {"max_pool2d_grad", "max_pool2d_gather"} <= {op.name for op in grad(m, "h", ["x"], new_name="dh").ops}
    report = gradcheck(m, "h", max_elements=40)
    assert report.passed and all(a.max_grad > 0 for a in report.args), str(report)


CNNISH = """
model cnnish {
    input x: f32[N, 6, 6, 2]
    target y: f32[N, 1]

    let h = dense(x, 4, activation=relu, name="pixel")
    let m = max_pool2d(h, pool_size=[2, 2])
    let a = avg_pool2d(m, pool_size=[2, 2], strides=[1, 1], padding=[0, 1, 0, 1])
    output p = dense(flatten(a), 1, activation=sigmoid, name="out")

    loss binary_crossentropy(p, y)
    optimizer adam(lr=0.01)
}
"""


def test_a_model_with_pooling_trains_natively_as_in_the_interpreter(tmp_path):
    from runtime.model import load_model

    path = tmp_path / "cnnish.dl"
    path.write_text(CNNISH)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6, 6, 2)).astype(np.float32)
    y = (x[:, :3].sum(axis=(1, 2, 3)) > 0).astype(np.float32)[:, None]
    native = load_model(path, seed=1, backend="native")
    interp = load_model(path, seed=1, backend="interp")
    loops = stage_text(native.module, "loops")
    assert "pool.max_grad" in loops and "pool.avg_grad" in loops
    lost = [m.fit(x, y, epochs=3, batch_size=8, verbose=0).history["loss"] for m in (native, interp)]
    np.testing.assert_allclose(lost[0], lost[1], rtol=1e-5)
    assert lost[0][-1] < lost[0][0]
    for name, value in interp.weights.items():
        np.testing.assert_allclose(native.weights[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


# ---------------------------------------------------------------------------
# Shape rules, padding, cost, loop IR


def shape_error(name: str, types: list[TensorType], **attrs) -> str:
    f, b = new_function("f", [(f"x{i}", t) for i, t in enumerate(types)])
    with pytest.raises(DlTypeError) as info:
        b.emit(name, *f.params, **attrs)
    return info.value.message


@pytest.mark.parametrize("types, attrs, message", [
    ([T(F32, "N", 4, 4)], {"pool_size": (2, 2)}, "must be an NHWC image batch [N, H, W, C]"),
    ([T(DType.i32, "N", 4, 4, 1)], {"pool_size": (2, 2)}, "must be f32 or f64"),
    ([T(F32, "N", 4, 4, 1)], {"pool_size": (2, 2, 2)}, "pool_size needs 2 values"),
    ([T(F32, "N", 4, 4, 1)], {"pool_size": (2, 0)}, "pool_size must lie in [1, 2^31)"),
    ([T(F32, "N", 4, 4, 1)], {"pool_size": (2, 2), "strides": (0, 1)}, "strides must lie in [1, 2^31)"),
    ([T(F32, "N", 4, 4, 1)], {"pool_size": (2, 2), "padding": (0, 0, -1, 0)}, "padding must lie in [0, 2^31)"),
    ([T(F32, "N", 4, 4, 1)], {"pool_size": (2, 2), "padding": (1, 1)}, "padding needs 4 values"),
    ([T(F32, "N", 4, 4, 1)], {"pool_size": (6, 2), "padding": (1, 0, 0, 0)},
     "the 6x2 window does not fit the padded 5x4 image"),
    ([T(F32, "N", "H", 4, 1)], {"pool_size": (2, 2)}, "pooling needs static height and width"),
])
def test_pool_shape_errors(types, attrs, message):
    assert message in shape_error("max_pool2d", types, **attrs)


def test_gradient_shape_errors():
    assert "the output gradient f32[N, 3, 2, 1] does not match: expected f32[N, 2, 2, 1]" in \
        shape_error("max_pool2d_grad", [T(F32, "N", 4, 4, 1), T(F32, "N", 3, 2, 1)], pool_size=(2, 2))
    assert "the gathered operand f64[N, 4, 4, 1] does not match" in \
        shape_error("max_pool2d_gather", [T(F32, "N", 4, 4, 1), T(F64, "N", 4, 4, 1)], pool_size=(2, 2))
    assert "does not match the 2x2 output of pooling a 5x4 image" in \
        shape_error("avg_pool2d_grad", [T(F32, "N", 3, 2, 1)], pool_size=(2, 2), input_size=(5, 4))
    assert "flatten needs static dims after the batch axis" in shape_error("flatten", [T(F32, "N", "M", 2)])
    assert "must be an NHWC image batch" in shape_error("global_avg_pool", [T(F32, "N", 5)])


@pytest.mark.parametrize("size, pool, strides, want", [
    ((5, 5), (2, 2), None, (0, 1, 0, 1)),          # TF: the odd row of padding at the bottom
    ((6, 7), (3, 3), (2, 2), (0, 1, 1, 1)),
    ((7, 4), (3, 1), (1, 1), (1, 1, 0, 0)),
    ((4, 4), (2, 2), (2, 2), (0, 0, 0, 0)),
    ((1, 1), (3, 3), (1, 1), (1, 1, 1, 1)),
])
def test_same_padding_follows_tensorflow(size, pool, strides, want):
    padding = resolve_padding("same", size, pool, strides)
    assert padding == want
    steps = strides or pool
    assert make_window(size, pool, strides, padding).out == tuple(-(-n // s) for n, s in zip(size, steps))


def test_valid_and_explicit_padding():
    assert resolve_padding("valid", (5, 5), (2, 2)) == (0, 0, 0, 0)
    # a dilated window (a convolution's): 3 taps 2 apart span 5 rows, stride 1 keeps 5 outputs
    assert resolve_padding("same", (5, 6), (3, 3), (1, 2), dilation=(2, 1)) == (2, 2, 0, 1)
    assert resolve_padding([[1, 2], [3, 4]], (5, 5), (2, 2)) == (1, 2, 3, 4)
    with pytest.raises(Exception, match="padding must be 'valid', 'same'"):
        resolve_padding("full", (5, 5), (2, 2))
    with pytest.raises(Exception, match=r"\[\[top, bottom\], \[left, right\]\]"):
        resolve_padding([[1, 2, 3]], (5, 5), (2, 2))


def test_flops_count_each_window_element():
    f, b = new_function("f", [("x", T(F32, "N", 28, 28, 32))])
    y = b.max_pool2d(f.params[0], pool_size=(2, 2))
    b.max_pool2d_grad(f.params[0], y, pool_size=(2, 2))
    assert [str(op_cost(op).flops) for op in f.ops] == ["25088*N", "25088*N"]


def test_loop_ir_shows_the_pool_kernels():
    f, b = new_function("f", [("x", T(F32, "N", 28, 28, 8))])
    f.outputs = [b.max_pool2d(b.relu(f.params[0]), pool_size=(2, 2))]
    text = stage_text(Module([f]), "loops")
    assert "elementwise [N, 28, 28, 8]: %t0[i0, i1, i2, i3] = relu(%x[i0, i1, i2, i3])" in text
    assert "pool.max [N, 14, 14, 8] window 2x2 strides 2x2 padding [0, 0, 0, 0]: %out0 = pool(%t0)" in text


def test_pool_reading_an_inplace_parameter_goes_through_a_temporary():
    """An in-place output written by a pool kernel that reads the parameter, and a pool
    kernel reading that output: both must see the values the interpreter sees."""
    f, b = new_function("f", [("p", T(F32, "N", 4, 4, 3))])
    same = b.avg_pool2d(f.params[0], pool_size=(3, 3), strides=(1, 1), padding=(1, 1, 1, 1))
    f.outputs = [same, b.max_pool2d(same, pool_size=(2, 2))]
    f.attrs["inplace"] = ((0, "p"),)
    lib = runtime.compile(Module([f]), cache=False, passes="")
    p = np.random.default_rng(0).standard_normal((2, 4, 4, 3)).astype(np.float32)
    want = interpret(f, [p.copy()])
    got = lib.f(p)
    assert all(same_or_nan(a, w) for a, w in zip(got, want))
    assert same_or_nan(p, want[0])                  # written in place


def test_pool_beside_a_fused_softmax():
    """Row-softmax fusion rewrites kernels' expressions; pool kernels have none, and one
    reading the softmax's row maximum keeps it from being fused away."""
    f, b = new_function("f", [("x", T(F32, "N", 4, 4, 5))])
    x = f.params[0]
    rowmax = b.max(x, axes=(-1,), keepdims=True)         # the same op as the softmax's own maximum
    f.outputs = [b.softmax(x, axis=-1), b.softmax(b.flatten(b.max_pool2d(x, pool_size=(2, 2)))),
                 b.max_pool2d(rowmax, pool_size=(2, 2))]
    lib = runtime.compile(Module([f]), cache=False)
    x_value = np.random.default_rng(1).standard_normal((3, 4, 4, 5)).astype(np.float32)
    for got, want in zip(lib.f(x_value), interpret(f, [x_value])):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_every_pool_op_is_covered_here():
    covered = {op.name for name in GRADCHECKS for op in
               weighted_sum("f", *GRADCHECKS[name]).functions[0].ops}
    pool_ops = {n for n in OPS if "pool" in n or n == "flatten"}
    assert pool_ops <= covered and len(pool_ops) == 8
