"""Convolutions (compiler/ops/conv.py): the references against naive loops, shape rules and
their errors, the padding conveniences, gradients by finite differences in f64 (and grad of
grad), and native code against the interpreter on random geometries, bit-identical across
thread counts."""

from __future__ import annotations

import numpy as np
import pytest

from compiler.checking.gradcheck import gradcheck
from compiler.diagnostics import DlTypeError
from compiler.ir.builder import new_function
from compiler.ir.core import Module
from compiler.ir.interpreter import interpret
from compiler.ir.types import DType, TensorType
from compiler.ops import OPS
from compiler.ops.base import ShapeError
from compiler.ops.conv import conv_padding, conv_shape, out_size, same_padding, transpose_padding
from compiler.passes import grad, inline_function

F32, F64 = DType.f32, DType.f64


def T(dtype: DType, *shape) -> TensorType:
    return TensorType(dtype, tuple(shape))


# ---------------------------------------------------------------------------
# Independent formulas: loops over output positions and taps, bounds checked per tap


def naive_pairs(image, kernel, out_hw, strides, padding, dilations, groups):
    """Every (image index, output index, kernel index) whose product the convolution sums,
    as slices of the channels of one group: bounds checked tap by tap, no padded copy."""
    n, h, wd, c = image
    kh, kw, cg, oc = kernel
    ocg = oc // groups
    for b, oy, ox, i, j in np.ndindex(n, *out_hw, kh, kw):
        iy = oy * strides[0] + i * dilations[0] - padding[0]
        ix = ox * strides[1] + j * dilations[1] - padding[2]
        if 0 <= iy < h and 0 <= ix < wd:
            for g in range(groups):
                yield ((b, iy, ix, slice(g * cg, (g + 1) * cg)), (b, oy, ox, slice(g * ocg, (g + 1) * ocg)),
                       (i, j, slice(None), slice(g * ocg, (g + 1) * ocg)))


def _out_hw(h, wd, kh, kw, strides, padding, dilations):
    return (out_size(h, kh, strides[0], dilations[0], padding[0], padding[1]),
            out_size(wd, kw, strides[1], dilations[1], padding[2], padding[3]))


def naive_conv2d(x, w, strides, padding, dilations, groups):
    out_hw = _out_hw(*x.shape[1:3], *w.shape[:2], strides, padding, dilations)
    y = np.zeros((x.shape[0], *out_hw, w.shape[3]))
    for xi, yi, wi in naive_pairs(x.shape, w.shape, out_hw, strides, padding, dilations, groups):
        y[yi] += x[xi].astype(np.float64) @ w[wi]
    return y


def naive_backprop_input(dy, w, input_size, strides, padding, dilations, groups):
    dx = np.zeros((dy.shape[0], *input_size, w.shape[2] * groups))
    for xi, yi, wi in naive_pairs(dx.shape, w.shape, dy.shape[1:3], strides, padding, dilations, groups):
        dx[xi] += w[wi] @ dy[yi].astype(np.float64)
    return dx


def naive_backprop_filter(x, dy, filter_size, strides, padding, dilations, groups):
    dw = np.zeros((*filter_size, x.shape[3] // groups, dy.shape[3]))
    for xi, yi, wi in naive_pairs(x.shape, dw.shape, dy.shape[1:3], strides, padding, dilations, groups):
        dw[wi] += np.outer(x[xi], dy[yi])
    return dw


# ---------------------------------------------------------------------------
# Random geometries: odd sizes, stride > kernel, dilation, padding > kernel, 1x1 images,
# batch 0 and 1, groups and depthwise


def random_geometry(rng: np.random.Generator, max_hw: int = 9) -> dict:
    """Attributes and shapes of a random valid convolution."""
    while True:
        groups = int(rng.choice([1, 1, 1, 2, 3]))
        cg, ocg = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        depthwise = rng.random() < 0.2
        if depthwise:
            groups, cg, ocg = int(rng.integers(2, 6)), 1, int(rng.choice([1, 1, 2]))
        geo = {"strides": tuple(int(s) for s in rng.integers(1, 5, 2)),
               "dilations": tuple(int(d) for d in rng.choice([1, 1, 2, 3], 2)),
               "padding": tuple(int(p) for p in rng.choice([0, 0, 1, 2, 5], 4)),
               "groups": groups}
        kernel = (int(rng.integers(1, 5)), int(rng.integers(1, 5)), cg, ocg * groups)
        image = (int(rng.choice([1, 2, 3, 5, 7, max_hw])), int(rng.choice([1, 2, 4, 6, max_hw])), cg * groups)
        try:
            s = conv_shape(int(rng.choice([0, 1, 1, 2, 3])), image, kernel, **geo)
        except ShapeError:
            continue
        return {"shape": s, "geo": geo}


GEOMETRIES = [random_geometry(np.random.default_rng(seed)) for seed in range(40)]


def _ids(case: dict) -> str:
    s = case["shape"]
    return (f"n{s.n}_{s.h}x{s.w}x{s.c}_k{s.kh}x{s.kw}_oc{s.oc}_s{s.strides[0]}{s.strides[1]}"
            f"_d{s.dilations[0]}{s.dilations[1]}_p{''.join(map(str, s.padding))}_g{s.groups}")


@pytest.mark.parametrize("case", GEOMETRIES, ids=_ids)
def test_references_equal_naive_loops(case):
    s, geo = case["shape"], case["geo"]
    rng = np.random.default_rng(1)
    x = rng.standard_normal(s.x_shape)
    w = rng.standard_normal(s.w_shape)
    dy = rng.standard_normal(s.y_shape)
    y = OPS["conv2d"].reference(x, w, **geo)
    np.testing.assert_allclose(y, naive_conv2d(x, w, **geo), rtol=1e-12, atol=1e-12)
    dx = OPS["conv2d_backprop_input"].reference(dy, w, input_size=(s.h, s.w), **geo)
    np.testing.assert_allclose(dx, naive_backprop_input(dy, w, (s.h, s.w), **geo), rtol=1e-12, atol=1e-12)
    dw = OPS["conv2d_backprop_filter"].reference(x, dy, filter_size=(s.kh, s.kw), **geo)
    np.testing.assert_allclose(dw, naive_backprop_filter(x, dy, (s.kh, s.kw), **geo), rtol=1e-12, atol=1e-12)
    # the three are one bilinear form: <conv(x, w), dy> = <x, conv^T(dy, w)> = <w, corr(x, dy)>
    inner = np.vdot(y, dy)
    assert np.vdot(x, dx) == pytest.approx(inner, rel=1e-10, abs=1e-10)
    assert np.vdot(w, dw) == pytest.approx(inner, rel=1e-10, abs=1e-10)


def test_reference_keeps_f32_and_accumulates_in_f64():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 4)).astype(np.float32)
    y = OPS["conv2d"].reference(x, w, strides=(1, 2), padding=(1, 1, 0, 1), dilations=(1, 1), groups=1)
    assert y.dtype == np.float32
    want = naive_conv2d(x.astype(np.float64), w.astype(np.float64), (1, 2), (1, 1, 0, 1), (1, 1), 1)
    np.testing.assert_array_equal(y, want.astype(np.float32))


def test_conv1d_and_transpose_references():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 11, 4))
    w = rng.standard_normal((3, 2, 6))
    y = OPS["conv1d"].reference(x, w, strides=(2,), padding=(1, 2), dilations=(2,), groups=2)
    want = naive_conv2d(x[:, None], w[None], (1, 2), (0, 0, 1, 2), (1, 2), 2)[:, 0]
    np.testing.assert_allclose(y, want, rtol=1e-12)
    # conv2d_transpose is the gradient of the conv2d it inverts the shape of
    xt = rng.standard_normal((2, 4, 3, 6))
    wt = rng.standard_normal((3, 3, 5, 6))
    yt = OPS["conv2d_transpose"].reference(xt, wt, strides=(2, 2), padding=(1, 0, 0, 1), dilations=(1, 1),
                                           output_padding=(1, 0), groups=1)
    assert yt.shape == (2, (4 - 1) * 2 + 3 - 1 + 1, (3 - 1) * 2 + 3 - 1, 5)
    np.testing.assert_allclose(yt, naive_backprop_input(xt, wt, yt.shape[1:3], (2, 2), (1, 0, 0, 1), (1, 1), 1),
                               rtol=1e-12)


# ---------------------------------------------------------------------------
# Shape rules


def build(name: str, types: list[TensorType], **attrs):
    func, b = new_function("f", [(f"x{i}", t) for i, t in enumerate(types)])
    return b.emit(name, *func.params, **attrs).type


def error(name: str, types: list[TensorType], **attrs) -> str:
    with pytest.raises(DlTypeError) as info:
        build(name, types, **attrs)
    return info.value.message


def test_output_shapes_with_a_symbolic_batch():
    assert build("conv2d", [T(F32, "N", 28, 28, 1), T(F32, 3, 3, 1, 8)], padding=(1, 1, 1, 1)) == \
        T(F32, "N", 28, 28, 8)
    assert build("conv2d", [T(F32, "N", 28, 28, 3), T(F32, 5, 5, 3, 4)], strides=(2, 3)) == T(F32, "N", 12, 8, 4)
    assert build("conv2d", [T(F64, "B", 9, 9, 6), T(F64, 3, 3, 1, 6)], groups=6, dilations=(2, 2)) == \
        T(F64, "B", 5, 5, 6)
    assert build("conv2d_backprop_input", [T(F32, "N", 12, 8, 4), T(F32, 5, 5, 3, 4)], input_size=(28, 28),
                 strides=(2, 3)) == T(F32, "N", 28, 28, 3)
    assert build("conv2d_backprop_filter", [T(F32, "N", 28, 28, 3), T(F32, "N", 12, 8, 4)], filter_size=(5, 5),
                 strides=(2, 3)) == T(F32, 5, 5, 3, 4)
    assert build("conv1d", [T(F32, "N", 100, 4), T(F32, 5, 4, 8)]) == T(F32, "N", 96, 8)
    assert build("conv2d_transpose", [T(F32, "N", 7, 7, 16), T(F32, 3, 3, 8, 16)], strides=(2, 2),
                 padding=(1, 1, 1, 1), output_padding=(1, 1)) == T(F32, "N", 14, 14, 8)


@pytest.mark.parametrize("name, types, attrs, message", [
    ("conv2d", [T(F32, "N", 8, 8, 3), T(F32, 3, 3, 4, 8)], {}, "channel mismatch: the input has 3 channels, "
                                                              "the kernel expects 4"),
    ("conv2d", [T(F32, "N", 8, 8, 6), T(F32, 3, 3, 3, 9)], {"groups": 3},
     "channel mismatch: the input has 6 channels, the kernel expects 3 x 3 groups = 9"),
    ("conv2d", [T(F32, "N", 8, 8, 6), T(F32, 3, 3, 2, 8)], {"groups": 3},
     "groups = 3 does not divide the kernel's 8 output channels"),
    ("conv2d", [T(F32, "N", 8, 8, 5), T(F32, 3, 3, 1, 6)], {"groups": 2},
     "groups = 2 does not divide the 5 input channels"),
    ("conv2d", [T(F32, "N", 4, 4, 1), T(F32, 3, 3, 1, 1)], {"dilations": (2, 1)},
     "the kernel's dilated extent 5x3 exceeds the padded input 4x4: no output position"),
    ("conv2d", [T(F32, "N", 4, 4, 1), T(F32, 3, 3, 1, 1)], {"strides": (0, 1)}, "'strides' must be >= 1"),
    ("conv2d", [T(F32, "N", 4, 4, 1), T(F32, 3, 3, 1, 1)], {"padding": (1, 1)}, "'padding' needs 4 values"),
    ("conv2d", [T(F32, "N", 4, 4, 1), T(F32, 3, 3, 1, 1)], {"padding": (1, 1, -1, 0)}, "'padding' must be >= 0"),
    ("conv2d", [T(F32, "N", 4, 4, 1), T(F32, 3, 3, 1, 1)], {"groups": 0}, "'groups' must be >= 1"),
    ("conv2d", [T(F32, "N", "H", 4, 1), T(F32, 3, 3, 1, 1)], {}, "must have static dims (only the batch"),
    ("conv2d", [T(F32, "N", 4, 4), T(F32, 3, 3, 1, 1)], {}, "the input must have rank 4 ([N, H, W, C])"),
    ("conv2d", [T(DType.i32, "N", 4, 4, 1), T(DType.i32, 3, 3, 1, 1)], {}, "expects float operands"),
    ("conv2d", [T(F32, "N", 4, 4, 1), T(F64, 3, 3, 1, 1)], {}, "different dtypes"),
    ("conv2d_backprop_input", [T(F32, "N", 5, 5, 4), T(F32, 3, 3, 2, 4)], {"input_size": (8, 8)},
     "has 5x5 positions, but the convolution gives 6x6"),
    ("conv2d_backprop_input", [T(F32, "N", 6, 6, 5), T(F32, 3, 3, 2, 4)], {"input_size": (8, 8)},
     "has 5 channels, the kernel"),
    ("conv2d_backprop_filter", [T(F32, "N", 8, 8, 2), T(F32, "M", 6, 6, 4)], {"filter_size": (3, 3)},
     "batch dims differ"),
    ("conv2d_backprop_filter", [T(F32, "N", 8, 8, 2), T(F32, "N", 6, 6, 4)], {"filter_size": (2, 3)},
     "has 6x6 positions, but the convolution gives 7x6"),
    ("conv2d_transpose", [T(F32, "N", 7, 7, 16), T(F32, 3, 3, 8, 16)], {"strides": (2, 2),
                                                                       "output_padding": (2, 0)},
     "output_padding must be smaller than the stride, got 2 >= 2 (vertical)"),
    ("conv1d", [T(F32, "N", 10, 4), T(F32, 3, 4, 8)], {"strides": (1, 1)}, "'strides' needs 1 values"),
])
def test_shape_errors(name, types, attrs, message):
    assert message in error(name, types, **attrs)


# ---------------------------------------------------------------------------
# Padding conveniences


def test_same_padding_gives_ceil_of_size_over_stride():
    for size in range(1, 12):
        for k in (1, 2, 3, 4, 5):
            for stride in (1, 2, 3):
                for dil in (1, 2):
                    lo, hi = same_padding(size, k, stride, dil)
                    assert 0 <= hi - lo <= 1
                    assert out_size(size, k, stride, dil, lo, hi) == -(-size // stride)
    assert conv_padding("same", (28, 28), (3, 3)) == (1, 1, 1, 1)
    assert conv_padding("same", (28, 27), (4, 2), (2, 1)) == (1, 1, 0, 1)
    assert conv_padding("valid", (28, 28), (3, 3)) == (0, 0, 0, 0)
    assert conv_padding([[1, 2], [0, 3]], (28, 28), (3, 3)) == (1, 2, 0, 3)
    with pytest.raises(ShapeError, match="must be 'valid', 'same'"):
        conv_padding("full", (4, 4), (3, 3))
    with pytest.raises(ShapeError, match="explicit padding"):
        conv_padding([[1, 2, 3]], (4, 4), (3, 3))


@pytest.mark.parametrize("k, s, d", [(3, 2, 1), (2, 2, 1), (1, 3, 1), (5, 1, 1), (3, 3, 2), (4, 2, 1)])
def test_transpose_same_padding_gives_size_times_stride(k, s, d):
    padding, extra = transpose_padding("same", (7, 5), (k, k), (s, s), (d, d))
    out = build("conv2d_transpose", [T(F32, "N", 7, 5, 2), T(F32, k, k, 3, 2)], strides=(s, s),
                dilations=(d, d), padding=padding, output_padding=extra)
    assert out.shape[1:3] == (7 * s, 5 * s)
    padding, extra = transpose_padding("valid", (7, 5), (k, k), (s, s), (d, d))
    out = build("conv2d_transpose", [T(F32, "N", 7, 5, 2), T(F32, k, k, 3, 2)], strides=(s, s),
                dilations=(d, d), padding=padding, output_padding=extra)
    assert out.shape[1:3] == ((7 - 1) * s + d * (k - 1) + 1, (5 - 1) * s + d * (k - 1) + 1)


# ---------------------------------------------------------------------------
# Gradients: finite differences in f64, and grad of grad


def _module(name: str, types: list[TensorType], body) -> Module:
    func, b = new_function(name, [(f"x{i}", t) for i, t in enumerate(types)])
    func.outputs = [body(b, *func.params)]
    return Module([func])


def _loss_of(op: str, attrs: dict):
    """``sum(tanh(op(a, b)) * c)``: a scalar whose gradient reaches every operand."""
    def body(b, a, w, c):
        return b.sum(b.mul(b.tanh(b.emit(op, a, w, **attrs)), c))
    return body


GRAD_CASES = [
    ("conv2d", (2, 5, 6, 4), (3, 2, 2, 6), {"strides": (2, 1), "padding": (1, 0, 2, 1), "dilations": (1, 2),
                                            "groups": 2}),
    ("conv2d", (1, 4, 4, 3), (2, 2, 1, 3), {"groups": 3, "padding": (3, 0, 0, 3)}),
    ("conv2d_backprop_input", (2, 3, 4, 6), (3, 3, 2, 6), {"input_size": (5, 8), "strides": (2, 2),
                                                           "padding": (1, 1, 1, 1), "groups": 2}),
    ("conv2d_backprop_filter", (2, 5, 5, 2), (2, 2, 3, 3), {"filter_size": (2, 2), "strides": (2, 2),
                                                            "dilations": (2, 1), "padding": (0, 1, 1, 0)}),
    ("conv1d", (2, 9, 3), (3, 3, 4), {"strides": (2,), "padding": (2, 1), "dilations": (1,)}),
    ("conv2d_transpose", (2, 3, 2, 4), (3, 2, 3, 4), {"strides": (2, 3), "padding": (1, 0, 0, 2),
                                                      "output_padding": (1, 2)}),
]


@pytest.mark.parametrize("op, xs, ws, attrs", GRAD_CASES, ids=lambda c: c if isinstance(c, str) else None)
def test_gradients_by_finite_differences(op, xs, ws, attrs):
    out = build(op, [T(F64, *xs), T(F64, *ws)], **attrs)
    m = _module("loss", [T(F64, *xs), T(F64, *ws), out], _loss_of(op, attrs))
    report = gradcheck(m, "loss", ["x0", "x1"], seed=4, max_elements=200)
    assert report.passed, report


@pytest.mark.parametrize("op, xs, ws, attrs", GRAD_CASES[:4], ids=lambda c: c if isinstance(c, str) else None)
def test_grad_of_grad(op, xs, ws, attrs):
    """``h = <v, d loss / d a>``: its gradient differentiates the gradient ops' VJPs."""
    out = build(op, [T(F64, *xs), T(F64, *ws)], **attrs)
    types = [T(F64, *xs), T(F64, *ws), out]
    m = _module("loss", types, _loss_of(op, attrs))
    dloss = grad(m, "loss", ["x0", "x1"], new_name="dloss")
    h, b = new_function("h", [(f"x{i}", t) for i, t in enumerate(types)] + [("v0", types[0]), ("v1", types[1])])
    env = inline_function(b, dloss, h.params[:3])
    da, dw = (env[v] for v in dloss.outputs)
    h.outputs = [b.add(b.sum(b.mul(da, h.params[3])), b.sum(b.mul(dw, h.params[4])))]
    m.functions.append(h)
    names = [n.name for n in dloss.ops]
    assert any(n.startswith("conv2d") for n in names)
    report = gradcheck(m, "h", ["x0", "x1", "x2"], seed=5, max_elements=100)
    assert report.passed, report


# ---------------------------------------------------------------------------
# Native code against the interpreter


def _conv_functions(name: str, s, geo: dict, dtype: DType = F32) -> list:
    """The three kernels of one geometry as functions ``<name>_{fwd,inp,flt}`` over a symbolic batch."""
    xs, ys = ("N", *s.x_shape[1:]), ("N", *s.y_shape[1:])
    out = []
    for suffix, (t0, t1), body in [
            ("fwd", (xs, s.w_shape), lambda b, a, c: b.conv2d(a, c, **geo)),
            ("inp", (ys, s.w_shape), lambda b, a, c: b.conv2d_backprop_input(a, c, input_size=(s.h, s.w), **geo)),
            ("flt", (xs, ys), lambda b, a, c: b.conv2d_backprop_filter(a, c, filter_size=(s.kh, s.kw), **geo))]:
        func, b = new_function(f"{name}_{suffix}", [("a", T(dtype, *t0)), ("b", T(dtype, *t1))])
        func.outputs = [body(b, *func.params)]
        out.append(func)
    return out


def _check_native(lib, module: Module, name: str, s, batches=(0, 1, 5), seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    dtype = module.get(f"{name}_fwd").params[0].type.dtype
    for n in batches:
        x = rng.standard_normal((n, *s.x_shape[1:])).astype(dtype.np)
        w = rng.standard_normal(s.w_shape).astype(dtype.np)
        dy = rng.standard_normal((n, *s.y_shape[1:])).astype(dtype.np)
        for suffix, args in (("fwd", (x, w)), ("inp", (dy, w)), ("flt", (x, dy))):
            fn = f"{name}_{suffix}"
            (want,) = interpret(module.get(fn), list(args))
            got = lib[fn](*args)
            assert got.dtype == want.dtype and got.shape == want.shape
            tol = 1e-12 if dtype is F64 else 2e-5
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, float(np.abs(want).max(initial=0))),
                                       err_msg=f"{fn} at N={n}")


NATIVE = GEOMETRIES[:10]


@pytest.fixture(scope="module")
def native():
    import runtime

    funcs = [f for i, case in enumerate(NATIVE) for f in _conv_functions(f"g{i}", case["shape"], case["geo"])]
    module = Module(funcs)
    return module, runtime.compile(module, cache=False, passes="")


@pytest.mark.parametrize("i", range(len(NATIVE)), ids=[_ids(c) for c in NATIVE])
def test_native_matches_interpreter(native, i):
    module, lib = native
    _check_native(lib, module, f"g{i}", NATIVE[i]["shape"])


# The kernels' other paths: deep taps sliced by whole taps (3x3x160 > 1152), one tap sliced by
# channels (1x1x1200), the filter gradient reading A in place (Cg % 8 == 0), partial column panels
# (OC 37), a C wider than tall (batch 1, 1x1 image: split by columns), f64.
PATHS = [
    ("taps", (2, 6, 5, 160), (3, 3, 160, 40), {"padding": (1, 1, 1, 1)}, F32),
    ("chunks", (1, 3, 4, 1200), (1, 1, 1200, 33), {}, F32),
    ("vector_filter", (3, 7, 6, 32), (3, 2, 16, 38), {"strides": (2, 1), "padding": (2, 0, 1, 1), "groups": 2}, F32),
    ("wide", (1, 1, 1, 24), (1, 1, 24, 200), {}, F32),
    ("strided_input", (2, 9, 10, 16), (3, 3, 16, 24), {"strides": (2, 3), "padding": (1, 1, 1, 1)}, F32),
    ("f64", (2, 6, 7, 16), (3, 3, 8, 20), {"padding": (1, 0, 0, 1), "groups": 2, "dilations": (2, 1)}, F64),
    ("depthwise", (3, 9, 8, 40), (3, 3, 1, 40), {"strides": (2, 1), "padding": (1, 1, 0, 2), "groups": 40}, F32),
    ("depthwise_f64", (2, 7, 7, 24), (5, 5, 1, 24), {"strides": (1, 2), "padding": (2, 2, 2, 2), "dilations": (1, 2),
                                                     "groups": 24}, F64),
    ("multiplier", (2, 6, 5, 4), (3, 3, 1, 12), {"padding": (1, 1, 1, 1), "groups": 4}, F32),
    ("many_taps", (2, 9, 9, 8), (7, 7, 8, 16), {"padding": (3, 3, 2, 4)}, F32),      # the kernel gradient's tap loop
    ("many_taps_depthwise", (2, 8, 8, 4), (6, 5, 1, 4), {"padding": (2, 3, 2, 2), "groups": 4}, F32),
    # one input channel: the forward runs directly, each source value broadcast over the outputs
    ("one_channel", (3, 11, 9, 1), (3, 3, 1, 37), {"strides": (2, 1), "padding": (1, 1, 0, 2), "dilations": (1, 2)},
     F32),
    ("one_channel_f64", (2, 5, 6, 1), (5, 5, 1, 8), {"padding": (2, 2, 2, 2)}, F64),
    ("one_channel_1x1_image", (2, 1, 1, 1), (1, 1, 1, 20), {}, F32),
]


@pytest.fixture(scope="module")
def paths():
    import runtime

    funcs = []
    for name, xs, ws, geo, dtype in PATHS:
        full = {"strides": (1, 1), "padding": (0, 0, 0, 0), "dilations": (1, 1), "groups": 1, **geo}
        funcs += _conv_functions(name, conv_shape(xs[0], xs[1:], ws, **full), geo, dtype)
    module = Module(funcs)
    return module, runtime.compile(module, cache=False, passes="")


@pytest.mark.parametrize("name, xs, ws, geo, dtype", PATHS, ids=[p[0] for p in PATHS])
def test_native_paths_match_interpreter(paths, name, xs, ws, geo, dtype):
    module, lib = paths
    full = {"strides": (1, 1), "padding": (0, 0, 0, 0), "dilations": (1, 1), "groups": 1, **geo}
    _check_native(lib, module, name, conv_shape(xs[0], xs[1:], ws, **full), batches=(0, xs[0]))


def test_paths_are_the_ones_named():
    """The PATHS cases reach the plan they are named after."""
    from compiler.codegen.conv import UNROLL_TAPS, plan
    from compiler.codegen.loops import Buffer, conv_kernel

    def plan_of(kind, xs, ws, geo):
        full = {"strides": (1, 1), "padding": (0, 0, 0, 0), "dilations": (1, 1), "groups": 1, **geo}
        s = conv_shape(xs[0], xs[1:], ws, **full)
        buf = Buffer("%t", F32, (1, 1, 1, 1), "temp")
        return plan(conv_kernel(kind, s, buf, buf, buf), 16)

    (taps,) = plan_of("forward", *PATHS[0][1:4]).subgrids
    assert taps.slices == 2                                       # 5 + 4 taps of 160 channels
    (chunks,) = plan_of("forward", *PATHS[1][1:4]).subgrids
    assert (chunks.chunks, chunks.chunk, chunks.slices) == (2, 600, 2)
    (grid,) = plan_of("input", *PATHS[0][1:4]).subgrids
    assert grid.slices == 1 and grid.identity                     # 9 taps of 40 output channels
    # a stride-(2, 3) input gradient: one grid per residue class, each with only its taps
    grids = plan_of("input", *PATHS[4][1:4]).subgrids
    assert len(grids) == 6 and sorted(len(g.taps) for g in grids) == [1, 1, 1, 2, 2, 2]
    assert sum(g.height * g.width for g in grids) == 9 * 10
    filter_plan = plan_of("filter", *PATHS[2][1:4])
    assert filter_plan.rows == 3 * 2 * 16 and filter_plan.filter_indirect
    assert not plan_of("filter", (1, 5, 5, 3), (3, 3, 3, 8), {}).filter_indirect
    for kind in ("forward", "input", "filter"):
        assert plan_of(kind, *PATHS[6][1:4]).depthwise and plan_of(kind, *PATHS[7][1:4]).depthwise
        assert not plan_of(kind, *PATHS[8][1:4]).depthwise          # 3 outputs per channel: a GEMM per group
        assert not plan_of(kind, *PATHS[10][1:4]).depthwise         # 30 taps: a GEMM per group
    assert plan_of("filter", *PATHS[9][1:4]).taps > UNROLL_TAPS
    for case in PATHS[11:14]:
        assert plan_of("forward", *case[1:4]).broadcast                  # one channel: direct
        assert not plan_of("input", *case[1:4]).depthwise and not plan_of("filter", *case[1:4]).depthwise
    assert not plan_of("forward", *PATHS[3][1:4]).broadcast


def test_one_channel_forward_with_nan_inf_and_epilogue():
    """The direct one-channel forward: NaN and inf inputs reach exactly the outputs whose
    windows hold them; bias + relu run in its store."""
    import runtime
    from frontend_dsl import compile_source

    src = ("fn f(x: f32[N, 7, 6, 1], w: f32[3, 3, 1, 20], b: f32[20]) -> f32[N, 7, 6, 20] {\n"
           "    return relu(conv2d(x, w, padding=[1, 1, 1, 1]) + b)\n}\n")
    lib = runtime.compile(src, cache=False)
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 7, 6, 1)).astype(np.float32)
    x[0, 3, 2, 0], x[1, 0, 0, 0] = np.nan, np.inf
    w = rng.standard_normal((3, 3, 1, 20)).astype(np.float32)
    b = rng.standard_normal(20).astype(np.float32)
    got = lib.f(x, w, b)
    (want,) = interpret(compile_source(src).get("f"), [x, w, b])
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
    assert np.isnan(got[0, 2:5, 1:4]).all() and not np.isnan(np.delete(got[0].reshape(42, 20), [13, 14, 15, 19, 20,
                                                                                             21, 25, 26, 27], 0)).any()


@pytest.mark.parametrize("groups", [1, 5])
def test_bias_and_activation_fuse_into_the_epilogue(groups):
    import runtime
    from compiler.codegen.bufferize import lower_function
    from compiler.codegen.loops import Conv

    c = 5 if groups > 1 else 37
    func, b = new_function("layer", [("x", T(F32, "N", 9, 8, 5)), ("w", T(F32, 3, 3, 5 // groups, c)),
                                     ("bias", T(F32, c))])
    conv = b.conv2d(func.params[0], func.params[1], padding=(1, 1, 1, 1), groups=groups)
    func.outputs = [b.relu(b.add(conv, func.params[2]))]
    prog = lower_function(func)
    assert len(prog.kernels) == 1 and isinstance(prog.kernels[0], Conv)
    assert prog.kernels[0].epilogue is not None
    lib = runtime.compile(Module([func]), cache=False, passes="")
    rng = np.random.default_rng(6)
    args = [rng.standard_normal((3, 9, 8, 5)).astype(np.float32),
            rng.standard_normal((3, 3, 5 // groups, c)).astype(np.float32), rng.standard_normal(c).astype(np.float32)]
    np.testing.assert_allclose(lib.layer(*args), interpret(func, args)[0], rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("channels", [1, 3])
def test_conv_relu_pool_layer_gradient_keeps_no_image_sized_elementwise_kernel(channels):
    """A conv -> bias -> relu -> max-pool layer and its gradient: relu's backward mask reads
    relu's output, so bias + relu stay in the forward conv's epilogue (a one-channel input
    too: the first conv of the MNIST CNN), and canonicalize moves the mask onto the pooled
    gradient, into the input-gradient conv's epilogue. No elementwise kernel is left over
    the conv's image; native code agrees with the interpreter, bit for bit on 1, 2, 3 threads."""
    import runtime
    from compiler.codegen import threads
    from compiler.codegen.bufferize import lower_function
    from compiler.codegen.loops import Conv, Elementwise
    from compiler.passes import run_pipeline

    types = [T(F32, "N", 11, 10, channels), T(F32, 3, 3, channels, 24), T(F32, 24), T(F32, 3, 3, 24, 24),
             T(F32, "N", 4, 4, 24)]

    def body(b, x, w, bias, w2, r):
        act = b.relu(b.add(b.conv2d(x, w), bias))                                  # [N, 9, 8, 24]
        pooled = b.max_pool2d(act, pool_size=(2, 2), strides=(2, 2))           # [N, 4, 4, 24]
        return b.sum(b.mul(b.conv2d(pooled, w2, padding=(1, 1, 1, 1)), r))
    m = _module("loss", types, body)
    grad(m, "loss", ["x1", "x2", "x3"], new_name="dloss")
    m = run_pipeline(m, "canonicalize,cse,dce")
    prog = lower_function(m.get("dloss"))
    convs = [k for k in prog.kernels if isinstance(k, Conv)]
    assert all(k.epilogue is not None for k in convs if k.kind in ("forward", "input")), prog
    image = ("N", 9, 8, 24)
    assert not [k for k in prog.kernels if isinstance(k, Elementwise) and tuple(k.shape) == image]
    lib = runtime.compile(m, cache=False, passes="")
    rng = np.random.default_rng(channels)
    args = [rng.standard_normal((5, *t.shape[1:]) if t.shape[0] == "N" else t.shape).astype(np.float32)
            for t in types]
    want = interpret(m.get("dloss"), args)
    results = []
    for n in (1, 2, 3):
        threads.set_num_threads(lib._library, n)
        results.append([np.array(r, copy=True) for r in lib.dloss(*args)])
    threads.set_num_threads(lib._library, threads.num_threads())
    for got, expected in zip(results[0], want):                # sums of ~200 terms in another order
        np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-6 * np.abs(expected).max())
    for other in results[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(results[0], other))


def test_strided_input_gradient_places_each_residue_class_and_its_epilogue():
    """A stride-(2, 3) input gradient runs one GEMM per residue class of the input pixels;
    each class's rows are scattered back to their pixels with the epilogue (a bias and a
    ReLU) read at those pixels."""
    import runtime

    func, b = new_function("dx", [("dy", T(F32, "N", 4, 4, 24)), ("w", T(F32, 3, 4, 16, 24)),
                                  ("bias", T(F32, 9, 11, 16))])
    dx = b.conv2d_backprop_input(func.params[0], func.params[1], input_size=(9, 11), strides=(2, 3),
                                 padding=(1, 0, 2, 1))
    func.outputs = [b.relu(b.add(dx, func.params[2]))]
    lib = runtime.compile(Module([func]), cache=False, passes="")
    rng = np.random.default_rng(9)
    args = [rng.standard_normal(shape).astype(np.float32) for shape in ((3, 4, 4, 24), (3, 4, 16, 24), (9, 11, 16))]
    np.testing.assert_allclose(lib.dx(*args), interpret(func, args)[0], rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("groups", [1, 8])
def test_in_place_kernel_update_sees_the_whole_gradient(groups):
    """``w -= lr * dw`` in place: the filter gradient's epilogue reads ``w``, so the K slices
    (a batch of 3 x 20 x 20 pixels is several) accumulate elsewhere first."""
    import runtime
    from compiler.codegen.bufferize import lower_function

    oc = 16 if groups == 1 else 8
    func, b = new_function("step", [("w", T(F32, 3, 3, 8 // groups, oc)), ("x", T(F32, "N", 20, 20, 8)),
                                    ("dy", T(F32, "N", 20, 20, oc))])
    w, x, dy = func.params
    dw = b.conv2d_backprop_filter(x, dy, filter_size=(3, 3), padding=(1, 1, 1, 1), groups=groups)
    func.outputs = [b.sub(w, b.mul(b.constant(0.01, F32), dw))]
    func.attrs["inplace"] = ((0, "w"),)
    prog = lower_function(func)
    assert len(prog.kernels) == 1 and prog.kernels[0].out.inplace_of is prog.params[0]
    lib = runtime.compile(Module([func]), cache=False, passes="")
    rng = np.random.default_rng(7)
    wv = rng.standard_normal((3, 3, 8 // groups, oc)).astype(np.float32)
    xv = rng.standard_normal((3, 20, 20, 8)).astype(np.float32)
    dyv = rng.standard_normal((3, 20, 20, oc)).astype(np.float32)
    want = interpret(func, [wv.copy(), xv, dyv])[0]
    lib.step(wv, xv, dyv)
    np.testing.assert_allclose(wv, want, rtol=1e-5, atol=1e-5)


def test_results_are_identical_across_thread_counts():
    import runtime
    from compiler.codegen import threads

    s = conv_shape(1, (20, 19, 16), (3, 3, 16, 48), strides=(1, 1), padding=(1, 1, 1, 1), dilations=(1, 1), groups=1)
    d = conv_shape(1, (20, 19, 48), (3, 3, 1, 48), strides=(1, 1), padding=(1, 1, 1, 1), dilations=(1, 1), groups=48)
    funcs = _conv_functions("t", s, {"padding": (1, 1, 1, 1)})
    funcs += _conv_functions("d", d, {"padding": (1, 1, 1, 1), "groups": 48})
    o = conv_shape(1, (20, 19, 1), (3, 3, 1, 48), strides=(1, 1), padding=(1, 1, 1, 1), dilations=(1, 1), groups=1)
    funcs += _conv_functions("o", o, {"padding": (1, 1, 1, 1)})
    lib = runtime.compile(Module(funcs), cache=False, passes="")
    rng = np.random.default_rng(8)
    x = rng.standard_normal((6, 20, 19, 16)).astype(np.float32)
    w = rng.standard_normal((3, 3, 16, 48)).astype(np.float32)
    dy = rng.standard_normal((6, 20, 19, 48)).astype(np.float32)
    results = []
    for n in (1, 2, 3):
        threads.set_num_threads(lib._library, n)
        xd = np.concatenate([x, x, x], axis=3)
        wd = w[:, :, :1, :]
        results.append((lib.t_fwd(x, w), lib.t_inp(dy, w), lib.t_flt(x, dy),
                        lib.d_fwd(xd, wd), lib.d_inp(dy, wd), lib.d_flt(xd, dy), lib.o_fwd(x[..., :1], wd)))
    threads.set_num_threads(lib._library, threads.num_threads())
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("features", ["", "+avx,+avx2,+fma,+sse4.2"], ids=["sse2", "avx2"])
def test_narrower_machines_code_is_right(features):
    """Code for plain SSE2 (4 lanes: 4-row tiles, the kernel gradient packed) and AVX2 (8
    lanes: 6-row tiles)."""
    import runtime
    from compiler.codegen.target import CodegenOptions, Target

    generic = Target.generic()
    target = generic if not features else Target(generic.triple, "haswell", features)
    case = PATHS[2]
    full = {"strides": (1, 1), "padding": (0, 0, 0, 0), "dilations": (1, 1), "groups": 1, **case[3]}
    s = conv_shape(case[1][0], case[1][1:], case[2], **full)
    d = conv_shape(2, (5, 6, 9), (3, 3, 1, 9), strides=(1, 2), padding=(1, 1, 1, 1), dilations=(1, 1), groups=9)
    module = Module(_conv_functions("s", s, case[3]) + _conv_functions("odd", NATIVE[3]["shape"], NATIVE[3]["geo"])
                    + _conv_functions("d", d, {"strides": (1, 2), "padding": (1, 1, 1, 1), "groups": 9}))
    lib = runtime.compile(module, cache=False, passes="", options=CodegenOptions(target=target))
    _check_native(lib, module, "s", s, batches=(2,))
    _check_native(lib, module, "odd", NATIVE[3]["shape"], batches=(3,))
    _check_native(lib, module, "d", d, batches=(2,))
