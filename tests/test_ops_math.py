"""The elementwise math ops (compiler/ops/math.py, compiler/ops/activations.py, integer pow).

For each op:

* the reference (interpreter) against the numpy function of the same name, on
  special values (NaN, ±inf, ±0, halves, huge and tiny numbers) and integer
  extremes -- bit for bit, signed zeros included;
* native code against the interpreter on random shapes with 0-sized dims,
  rank 0 and 1-element axes, the same special values mixed in;
* autodiff's gradient against finite differences in f64 (``gradcheck``), and
  the second derivative (grad of grad) against finite differences of the first;
* the ``.dl`` front end: ops by name, attributes by keyword, the ``swish`` alias.

Where numpy has no function of that name (``erf`` and the activations), the
reference is checked against ``math.erf`` and the written-out Keras formula.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
from test_codegen_vmath import ulp_distance

import runtime
from compiler.checking.gradcheck import gradcheck
from compiler.codegen.vmath import ULP_BOUNDS
from compiler.ir.builder import new_function
from compiler.ir.core import Module
from compiler.ir.interpreter import interpret
from compiler.ir.types import DType, TensorType
from compiler.ops import OPS
from compiler.passes import grad

F32, F64, I32, I64 = DType.f32, DType.f64, DType.i32, DType.i64
FLOATS = {"f32": np.float32, "f64": np.float64}
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 3.0, -3.0,
           1e-30, -1e-30, 1e-310, 3e38, -3e38, 1e300, -1e300, 7.0, -7.0, 1e6 + 0.5, 100.25]

UNARY_FLOAT = ("erf", "log1p", "expm1", "sin", "cos", "softplus", "silu", "gelu", "elu", "selu",
               "leaky_relu", "hard_sigmoid")
UNARY_ANY = ("floor", "ceil", "round", "isnan", "isinf")
BINARY = ("mod", "floor_div", "pow")
TRANSCENDENTAL = ("erf", "log1p", "expm1", "sin", "cos")


def T(dtype: DType, *shape) -> TensorType:
    return TensorType(dtype, tuple(shape))


def run_op(name: str, *arrays: np.ndarray, **attrs) -> np.ndarray:
    """One op through the interpreter, on operands of exactly these shapes and dtypes."""
    types = [T(DType.from_name(_dsl(a.dtype)), *a.shape) for a in arrays]
    func, b = new_function("f", [(f"x{i}", t) for i, t in enumerate(types)])
    func.outputs = [b.emit(name, *func.params, **attrs)]
    return interpret(func, list(arrays))[0]


def _dsl(dtype: np.dtype) -> str:
    return {"float32": "f32", "float64": "f64", "int32": "i32", "int64": "i64", "bool": "bool"}[np.dtype(dtype).name]


def specials(dtype) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.array(SPECIAL, dtype=np.float64).astype(dtype)


def assert_same(got: np.ndarray, want: np.ndarray, what: str = "") -> None:
    """Equal bit for bit up to NaN payloads: same dtype, shape, values, signs of zero."""
    assert got.dtype == want.dtype and got.shape == want.shape, (what, got.dtype, want.dtype, got.shape)
    np.testing.assert_array_equal(got, want, err_msg=what)
    if want.dtype.kind == "f":
        zero = want == 0
        np.testing.assert_array_equal(np.signbit(got[zero]), np.signbit(want[zero]), err_msg=f"{what}: sign of 0")


# ---------------------------------------------------------------------------
# The reference against numpy


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("name", ["log1p", "expm1", "sin", "cos", "floor", "ceil", "round", "isnan", "isinf"])
def test_unary_reference_is_numpy(name, dtype):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = np.concatenate([specials(FLOATS[dtype]), rng.normal(0, 10, 50).astype(FLOATS[dtype])])
    with np.errstate(all="ignore"):
        assert_same(run_op(name, x), getattr(np, name)(x), name)


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("name", ["floor", "ceil", "round", "isnan", "isinf"])
def test_unary_on_ints_is_numpy(name, dtype):
    info = np.iinfo(dtype)
    x = np.array([info.min, info.min + 1, -3, -1, 0, 1, 2, info.max], dtype)
    assert_same(run_op(name, x), getattr(np, name)(x), name)


def test_round_is_half_to_even():
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999997, 2.5000002, 8388609.0], np.float32)
    np.testing.assert_array_equal(run_op("round", x), [0.0, 2.0, 2.0, -0.0, -2.0, 0.0, 3.0, 8388609.0])
    assert np.signbit(run_op("round", x)[3])


def float_pairs(dtype) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of special and ordinary values (both orders, all signs)."""
    vals = np.concatenate([specials(dtype), np.array([5.0, -5.0, 5.5, -5.5, 0.1, 1e-3, 3.0, 360.0], dtype)])
    a, b = np.meshgrid(vals, vals)
    return a.ravel(), b.ravel()


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("name,fn", [("mod", np.remainder), ("floor_div", np.floor_divide), ("pow", np.power)])
def test_float_binary_reference_is_numpy(name, fn, dtype):
    a, b = float_pairs(FLOATS[dtype])
    with np.errstate(all="ignore"):
        assert_same(run_op(name, a, b), fn(a, b), name)
    assert np.mod is np.remainder                     # numpy's two names for dl.mod


def int_pairs(dtype) -> tuple[np.ndarray, np.ndarray]:
    info = np.iinfo(dtype)
    vals = np.array([info.min, info.min + 1, -7, -3, -2, -1, 0, 1, 2, 3, 7, info.max - 1, info.max], dtype)
    a, b = np.meshgrid(vals, vals)
    return a.ravel(), b.ravel()


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("name,fn", [("mod", np.remainder), ("floor_div", np.floor_divide)])
def test_int_division_reference_is_numpy(name, fn, dtype):
    a, b = int_pairs(dtype)
    with np.errstate(all="ignore"):
        want = fn(a, b)                      # x // 0 = x % 0 = 0, MIN // -1 = MIN (numpy warns)
    assert_same(run_op(name, a, b), want, name)
    info = np.iinfo(dtype)
    assert want[(a == info.min) & (b == -1)].tolist() == ([info.min] if name == "floor_div" else [0])


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_int_pow(dtype):
    a, b = int_pairs(dtype)
    b = np.where(b < 0, b, b % 70).astype(dtype)       # some exponents past the bit width
    got = run_op("pow", a, b)
    ok = b >= 0
    assert_same(got[ok], np.power(a[ok], b[ok]))      # wraps, as numpy's
    # negative exponents (numpy raises): the integer part of the true power
    want = np.where(a == 1, 1, np.where(a == -1, np.where(b % 2 == 0, 1, -1), 0)).astype(dtype)
    assert_same(got[~ok], want[~ok])
    wrapped = (3 ** 70 + 2 ** 63) % 2 ** 64 - 2 ** 63               # 3**70 modulo 2**64, signed
    assert run_op("pow", np.array([3], np.int64), np.array([70], np.int64))[0] == wrapped


@pytest.mark.parametrize("dtype", ["f32", "f64", "i32"])
def test_clip_is_numpy_clip(dtype):
    np_dtype = FLOATS.get(dtype, np.int32)
    x = (specials(np_dtype) if dtype != "i32" else np.arange(-13, 13, dtype=np.int32))[:, None]
    lo = np.array([-1, 0, 2, 1], np_dtype)
    hi = np.array([1, 0, 1, 5], np_dtype)                  # lo > hi in column 2: the result is hi
    assert_same(run_op("clip", x, lo, hi), np.clip(x, lo, hi))
    if dtype != "i32":
        nan = np.array(np.nan, np_dtype)
        assert np.isnan(run_op("clip", np.array([1.0], np_dtype), nan, np.array(2.0, np_dtype))).all()
        assert np.isnan(np.clip(np.array([1.0], np_dtype), nan, 2.0)).all()


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_erf_reference(dtype):
    x = np.concatenate([specials(FLOATS[dtype]), np.linspace(-7, 7, 141, dtype=FLOATS[dtype])])
    want = np.array([math.erf(v) if not np.isnan(v) else np.nan for v in x.astype(np.float64)])
    assert_same(run_op("erf", x), want.astype(FLOATS[dtype]))


def keras_formula(name: str, x: np.ndarray, **attrs) -> np.ndarray:
    """The activation as Keras 3 writes it, in float64."""
    x = x.astype(np.float64)
    erf = np.vectorize(math.erf)
    if name == "softplus":
        return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)
    if name == "silu":
        return x / (1 + np.exp(-x))
    if name == "gelu" and attrs.get("approximate"):
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    if name == "gelu":
        return 0.5 * x * (1 + erf(x / np.sqrt(2)))
    if name == "elu":
        return np.where(x > 0, x, attrs.get("alpha", 1.0) * np.expm1(x))
    if name == "selu":
        return 1.0507009873554804934193349852946 * np.where(x > 0, x, 1.6732632423543772848170429916717
                                                            * np.expm1(x))
    if name == "leaky_relu":
        return np.where(x >= 0, x, attrs.get("alpha", 0.2) * x)
    if name == "hard_sigmoid":
        return np.minimum(np.maximum(x + 3, 0), 6) / 6
    raise AssertionError(name)


ACTIVATION_CASES = [("softplus", {}), ("silu", {}), ("gelu", {}), ("gelu", {"approximate": True}),
                    ("elu", {}), ("elu", {"alpha": 0.3}), ("selu", {}), ("leaky_relu", {}),
                    ("leaky_relu", {"alpha": 0.01}), ("hard_sigmoid", {})]


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("name,attrs", ACTIVATION_CASES, ids=lambda v: str(v) if v else "")
def test_activation_reference_is_the_keras_formula(name, attrs, dtype):
    x = np.concatenate([specials(FLOATS[dtype])[:19], np.linspace(-12, 12, 97, dtype=FLOATS[dtype])])
    got = run_op(name, x, **attrs)
    assert got.dtype == FLOATS[dtype]
    with np.errstate(all="ignore"):
        want = keras_formula(name, x, **attrs)
    eps = np.finfo(FLOATS[dtype]).eps
    # relative; exact gelu's 1 + erf cancels for x < -3, where the error is a few eps absolute
    atol = 8 * eps if name == "gelu" else 0
    np.testing.assert_allclose(got, want, rtol=4 * eps, atol=atol, equal_nan=True)
    assert np.signbit(got[4]) == (name in ("leaky_relu", "elu", "selu", "silu", "gelu")), "f(-0)"


def test_leaky_relu_and_elu_attributes_reach_native_code():
    f, b = new_function("f", [("x", T(F32, "N"))])
    x = f.params[0]
    f.outputs = [b.leaky_relu(x, alpha=0.5), b.leaky_relu(x), b.elu(x, alpha=2.0), b.gelu(x, approximate=True)]
    compiled = runtime.compile(Module([f]), cache=False, passes="")
    v = np.array([-2.0, -1.0, 0.0, 3.0], np.float32)
    got = compiled["f"](v)
    np.testing.assert_array_equal(got[0], [-1.0, -0.5, 0.0, 3.0])
    np.testing.assert_allclose(got[1], [-0.4, -0.2, 0.0, 3.0], rtol=1e-7)
    np.testing.assert_allclose(got[2], 2 * np.expm1(np.minimum(v, 0)) + np.maximum(v, 0), rtol=2e-7)
    np.testing.assert_allclose(got[3], keras_formula("gelu", v, approximate=True), rtol=1e-6)


# ---------------------------------------------------------------------------
# Native code against the interpreter

SHAPES = [(0, 3), (2, 0), (1, 1), (1, 17), (5, 3), (3, 33)]


def _native_cases() -> dict[str, tuple[str, DType, dict]]:
    cases: dict[str, tuple[str, DType, dict]] = {}
    for dname, dtype in (("f32", F32), ("f64", F64)):
        for name in UNARY_FLOAT + UNARY_ANY + ("mod", "floor_div", "clip"):     # float pow: test_codegen_ops
            cases[f"{name}_{dname}"] = (name, dtype, {})
        cases[f"gelu_tanh_{dname}"] = ("gelu", dtype, {"approximate": True})
        cases[f"elu_a_{dname}"] = ("elu", dtype, {"alpha": 0.25})
    for dname, dtype in (("i32", I32), ("i64", I64)):
        for name in UNARY_ANY + BINARY + ("clip",):
            cases[f"{name}_{dname}"] = (name, dtype, {})
    return cases


NATIVE = _native_cases()


def _build(key: str):
    """``key(x: [N, M], y: [M] or [1, M], s: []) -> op(x[, y[, y]]), op(s[, s[, s]])``."""
    name, dtype, attrs = NATIVE[key]
    arity = len(OPS[name].operands)
    f, b = new_function(key, [("x", T(dtype, "N", "M")), ("y", T(dtype, "M")), ("z", T(dtype, 1, "M")),
                              ("s", T(dtype))])
    x, y, z, s = f.params
    operands = [x, y, z][:arity]
    f.outputs = [b.emit(name, *operands, **attrs), b.emit(name, *[s] * arity, **attrs)]
    return f


@pytest.fixture(scope="module")
def native():
    return runtime.compile(Module([_build(k) for k in NATIVE]), cache=False, passes="")


def _values(dtype: DType, shape: tuple, rng: np.random.Generator, positive: bool) -> np.ndarray:
    if dtype.is_int:
        info = np.iinfo(dtype.np)
        pool = np.array([info.min, info.max, -1, 0, 1, 2, 3, 31, 63, -2], dtype.np)
        v = rng.integers(-20, 20, shape).astype(dtype.np)
        return np.where(rng.random(shape) < 0.3, rng.choice(pool, shape), v).astype(dtype.np)
    v = rng.normal(0, 4, shape)
    if positive:
        v = np.abs(v) + 0.1
    with np.errstate(over="ignore"):
        return np.where(rng.random(shape) < 0.3, rng.choice(specials(dtype.np), shape), v).astype(dtype.np)


def assert_native_close(name: str, got: np.ndarray, want: np.ndarray, x: np.ndarray, what: str) -> None:
    """Exact ops bit for bit; the transcendental ones within their ULP bound plus the
    reference's own error; activations relative to ``max(|result|, |x| eps)``."""
    if want.dtype.kind != "f" or name in ("floor", "ceil", "round", "mod", "floor_div", "clip",
                                           "leaky_relu", "hard_sigmoid"):
        assert_same(got, want, what)
        return
    assert got.dtype == want.dtype and got.shape == want.shape, what
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=what)
    dname = "f32" if want.dtype == np.float32 else "f64"
    if name in TRANSCENDENTAL:
        # numpy's own f32 sin/cos err up to about 1.5 ULP; f64 ones (the C library's) under 1
        slack = 2 if dname == "f32" else 1
        worst = ulp_distance(got, want).max(initial=0)
        assert worst <= ULP_BOUNDS[(name, dname)] + slack, what
        return
    eps = np.finfo(want.dtype).eps
    with np.errstate(all="ignore"):
        scale = np.maximum(np.abs(want), np.abs(x) * eps if name == "gelu" else 0)
        bad = (got != want) & ~np.isnan(want) & ~(np.abs(got - want) <= 16 * eps * scale)
    assert not bad.any(), (what, x[bad], got[bad], want[bad])


@pytest.mark.parametrize("key", list(NATIVE))
def test_native_matches_interpreter(native, key):
    name, dtype, _ = NATIVE[key]
    func = native.module.get(key)
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    for n, m in SHAPES:
        x = _values(dtype, (n, m), rng, positive=False)
        divisor = name in ("mod", "floor_div")
        y = _values(dtype, (m,), rng, positive=False)
        z = _values(dtype, (1, m), rng, positive=False)
        if name == "clip" and not dtype.is_int:
            y, z = -np.abs(y), np.abs(z)
        s = _values(dtype, (), rng, positive=divisor)
        args = [x, y, z, s]
        want = interpret(func, [a.copy() for a in args])
        got = native[key](*args)
        for i, (g, w) in enumerate(zip(got, want)):
            assert_native_close(name, g, w, x if i == 0 else s, f"{key} output {i} at {n}x{m}")


@pytest.mark.parametrize("dtype", [I32, I64])
def test_int_division_extremes_natively(dtype):
    # x86's idiv faults on MIN / -1 and on / 0: native code must give numpy's answers instead
    info = np.iinfo(dtype.np)
    a = np.array([info.min, info.min, 7, -7, 0, info.max, info.min, -7], dtype.np)
    b = np.array([-1, 0, 0, 0, 0, -1, 1, 2], dtype.np)
    f, bld = new_function("f", [("a", T(dtype, "N")), ("b", T(dtype, "N"))])
    f.outputs = [bld.floor_div(*f.params), bld.mod(*f.params), bld.pow(f.params[0], bld.abs(f.params[1]))]
    compiled = runtime.compile(Module([f]), cache=False, passes="")
    q, r, p = compiled["f"](a, b)
    with np.errstate(all="ignore"):
        assert_same(q, np.floor_divide(a, b))
        assert_same(r, np.remainder(a, b))
    assert q.tolist() == [info.min, 0, 0, 0, 0, -info.max, info.min, -4]
    assert r.tolist() == [0, 0, 0, 0, 0, 0, 0, 1]
    assert_same(p, np.power(a, np.abs(b)))


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_sin_cos_of_huge_arguments(native, dtype):
    # past 2^28 the lanes go to the C library's sin/cos; a vector may mix both paths
    np_dtype = FLOATS[dtype]
    x = np.array([1e9, 0.5, 3e38 if dtype == "f32" else 1e300, -2.0 ** 28, 2.0 ** 28 + 4, -7e22, 1.0, 2.5e8,
                  np.inf, 268435456.0, -1e30, 3.0, 1e20, 5e15, 0.25, -0.25, 1e10] * 3, np_dtype).reshape(3, -1)
    for name in ("sin", "cos"):
        want = getattr(np, name)(x.astype(np.float64)).astype(np_dtype)
        got = native[f"{name}_{dtype}"](x, x[0], x[:1], x[0, 0])[0]
        assert ulp_distance(got, want).max() <= 1, (name, got, want)


# ---------------------------------------------------------------------------
# Gradients: first order by gradcheck, second order by grad of grad

GRAD_CASES = [("erf", {}, "any"), ("log1p", {}, "pos"), ("expm1", {}, "any"), ("sin", {}, "any"),
              ("cos", {}, "any"), ("softplus", {}, "any"), ("silu", {}, "any"), ("gelu", {}, "any"),
              ("gelu", {"approximate": True}, "any"), ("elu", {"alpha": 0.7}, "away0"), ("selu", {}, "away0"),
              ("leaky_relu", {"alpha": 0.1}, "away0"), ("hard_sigmoid", {}, "any"), ("mod", {}, "any"),
              ("clip", {}, "any"), ("pow", {}, "pos")]


def _grad_module(name: str, attrs: dict) -> Module:
    """``f(x, y, z) = sum(w * op(x[, y[, z]]))`` in f32 (gradcheck runs it in f64)."""
    arity = len(OPS[name].operands)
    f, b = new_function("f", [("x", T(F32, 4, 3)), ("y", T(F32, 3)), ("z", T(F32)), ("w", T(F32, 4, 3))])
    x, y, z, w = f.params
    out = b.emit(name, *[x, y, z][:arity], **attrs)
    f.outputs = [b.sum(b.mul(out, w))]
    return Module([f])


def _domain(kind: str, rng: np.random.Generator, shape: tuple) -> np.ndarray:
    v = rng.normal(0, 1.5, shape)
    if kind == "pos":
        return np.abs(v) + 0.3
    if kind == "away0":
        return np.sign(v) * (np.abs(v) + 0.2)
    return v


@pytest.mark.parametrize("name,attrs,kind", GRAD_CASES, ids=lambda v: str(v) if v else "")
def test_gradcheck(name, attrs, kind):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    module = _grad_module(name, attrs)
    arity = len(OPS[name].operands)
    inputs = {"x": _domain(kind, rng, (4, 3)), "y": rng.normal(0, 1, 3) * 2 - (0 if arity != 3 else 2),
              "z": np.array(abs(rng.normal()) + 0.5)}
    wrt = ["x", "y", "z"][:arity]
    report = gradcheck(module, "f", wrt=wrt, inputs=inputs, seed=1)
    assert report.passed, str(report)
    assert all(a.max_grad > 1e-6 for a in report.args), str(report)


SECOND_ORDER = [("erf", {}, [-1.3, 0.2, 2.1]), ("log1p", {}, [-0.5, 0.3, 4.0]), ("expm1", {}, [-2.0, 1e-3, 1.5]),
                ("sin", {}, [-2.0, 0.4, 7.0]), ("cos", {}, [-2.0, 0.4, 7.0]), ("softplus", {}, [-3.0, 0.2, 5.0]),
                ("silu", {}, [-3.0, 0.2, 2.5]), ("gelu", {}, [-2.5, 0.1, 1.7]),
                ("gelu", {"approximate": True}, [-2.5, 0.1, 1.7]), ("elu", {"alpha": 0.7}, [-2.0, -0.1, 1.0]),
                ("selu", {}, [-2.0, -0.1, 1.0]), ("mod", {}, [2.7, -0.4, 5.3])]


@pytest.mark.parametrize("name,attrs,points", SECOND_ORDER, ids=lambda v: str(v) if v else "")
def test_second_derivative_by_grad_of_grad(name, attrs, points):
    # grad of grad must build (every op a VJP emits has a VJP) and match finite
    # differences of the first derivative
    m = Module()
    f, b = new_function("f", [("x", T(F64))])
    operands = [f.params[0]] + ([b.constant(1.7, F64)] if name == "mod" else [])
    f.outputs = [b.emit(name, *operands, **attrs)]
    m.add(f)
    df = grad(m, "f", ["x"], new_name="df")
    ddf = grad(m, "df", ["x"], new_name="ddf")
    eps = 1e-5
    for x in points:
        d1 = lambda v: float(interpret(df, [np.array(v)])[0])  # noqa: E731
        numeric = (d1(x + eps) - d1(x - eps)) / (2 * eps)
        analytic = float(interpret(ddf, [np.array(x)])[0])
        assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-8), (name, x)
    if name in ("sin", "cos", "expm1", "erf"):
        assert abs(float(interpret(ddf, [np.array(points[0])])[0])) > 1e-3, "a real second derivative"


# ---------------------------------------------------------------------------
# The .dl front end


def test_ops_by_name_and_keyword_from_dl():
    from frontend_dsl import compile_source

    source = """
    fn act(x: f32[N]) -> (f32[N], f32[N], f32[N], f32[N], f32[N], f32[N]) {
        return leaky_relu(x, alpha=0.1), swish(x), gelu(x, approximate=true), clip(x, 0, 6),
               elu(x, 0.5), hard_sigmoid(x)
    }
    fn ints(i: i64[N], j: i64[N]) -> (i64[N], i64[N], i64[N], bool[N]) {
        return mod(i, 3), floor_div(i, j), i ** 2, isnan(round(i))
    }
    """
    module = compile_source(source, "math.dl")
    ops = {op.name for op in module.get("act").ops}
    assert {"leaky_relu", "silu", "gelu", "clip", "elu", "hard_sigmoid"} <= ops
    x = np.array([-4.0, -0.5, 0.0, 2.0, 9.0], np.float32)
    got = interpret(module.get("act"), [x])
    np.testing.assert_allclose(got[0], np.where(x >= 0, x, 0.1 * x), rtol=1e-7)
    np.testing.assert_allclose(got[1], x / (1 + np.exp(-x.astype(np.float64))), rtol=1e-6)
    np.testing.assert_allclose(got[2], keras_formula("gelu", x, approximate=True), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(got[3], np.clip(x, 0, 6))
    np.testing.assert_allclose(got[4], keras_formula("elu", x, alpha=0.5), rtol=1e-6)
    i = np.array([-7, -1, 0, 5, 9], np.int64)
    j = np.array([2, 0, -3, -2, 4], np.int64)
    got = interpret(module.get("ints"), [i, j])
    with np.errstate(all="ignore"):
        for g, w in zip(got, [np.remainder(i, 3), np.floor_divide(i, j), i ** 2, np.zeros(5, bool)]):
            assert_same(g, w)


def test_unknown_attribute_is_a_source_error():
    from compiler.diagnostics import DlError
    from frontend_dsl import compile_source

    with pytest.raises(DlError) as info:
        compile_source("fn f(x: f32[N]) -> f32[N] { return leaky_relu(x, beta=0.1) }", "bad.dl")
    assert "unknown keyword argument 'beta' for 'leaky_relu'" in str(info.value)
    with pytest.raises(DlError) as info:
        compile_source("fn f(x: i32[N]) -> i32[N] { return sin(x) }", "bad.dl")
    assert "expects float operands" in str(info.value)
