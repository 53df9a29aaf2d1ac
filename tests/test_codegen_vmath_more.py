"""Vector math for expm1, log1p, sin, cos and erf: the ULP bounds vmath.ULP_BOUNDS states.

Measured as tests/test_codegen_vmath.py measures exp and log, through whole
kernels (vector body and masked tail):

* numpy's validation sets (correctly rounded results) for expm1, log1p, sin, cos;
* f32: a sweep of every 4093rd bit pattern of both signs against float64
  rounded once to float32 (numpy's float64 functions; ``math.erf`` for erf);
* f64: dense samples against numpy's float64 functions (the C library's, under
  1 ULP themselves: our bound plus one), and erf against a 50-digit reference;
* special values (NaN, ±inf, ±0, subnormals) exactly.
"""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from test_codegen_vmath import ulp_distance, validation_rows

import runtime
from compiler.codegen.vmath import SINCOS_VECTOR_LIMIT, ULP_BOUNDS, _erf_decimal, cos_coefficients, sin_coefficients
from compiler.ir.builder import new_function
from compiler.ir.core import Module
from compiler.ir.types import DType, TensorType

FUNCS = ("expm1", "log1p", "sin", "cos", "erf")
DTYPES = {"f32": DType.f32, "f64": DType.f64}
_erf64 = np.frompyfunc(math.erf, 1, 1)
REFS = {"expm1": np.expm1, "log1p": np.log1p, "sin": np.sin, "cos": np.cos,
        "erf": lambda x: np.asarray(_erf64(x), np.float64)}


@pytest.fixture(scope="module")
def compiled():
    fns = []
    for name in FUNCS:
        for dname, dtype in DTYPES.items():
            f, b = new_function(f"{name}_{dname}", [("x", TensorType(dtype, ("N",)))])
            f.outputs = [b.emit(name, f.params[0])]
            fns.append(f)
    return runtime.compile(Module(fns), cache=False, passes="")


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("name", ["expm1", "log1p", "sin", "cos"])
def test_numpy_validation_sets(compiled, name, dtype):
    x, want = validation_rows(name, dtype)
    got = compiled[f"{name}_{dtype}"](x)
    worst = ulp_distance(got, want)
    assert worst.max() <= ULP_BOUNDS[(name, dtype)], (x[worst.argmax()], got[worst.argmax()])


@pytest.mark.parametrize("name", FUNCS)
def test_f32_bit_pattern_sweep(compiled, name):
    bits = np.arange(0, 0x7F800000, 4093, dtype=np.uint32)
    x = np.concatenate([bits, bits | np.uint32(1 << 31)]).view(np.float32)
    with np.errstate(all="ignore"):
        want = REFS[name](x.astype(np.float64)).astype(np.float32)
    got = compiled[f"{name}_f32"](x)
    worst = ulp_distance(got, want)
    assert worst.max() <= ULP_BOUNDS[(name, "f32")], (x[worst.argmax()], got[worst.argmax()])


def dense_samples(name: str) -> np.ndarray:
    rng = np.random.default_rng(11)
    wide = np.exp(rng.uniform(-40, 6, 20_000)) * rng.choice([-1, 1], 20_000)
    near = rng.uniform(-8, 8, 20_000)
    if name == "log1p":
        return np.concatenate([np.abs(wide) - 0.9999, near + 7.0, np.exp(rng.uniform(-700, 700, 5000))])
    if name == "expm1":
        return np.concatenate([wide, near * 80])
    if name in ("sin", "cos"):
        # up to the vector path's limit, past it (the C library's lanes), and near multiples of pi/2
        far = rng.uniform(-1, 1, 5000) * 10.0 ** rng.uniform(0, 12, 5000)
        multiples = np.round(rng.uniform(-1e6, 1e6, 2000)) * (np.pi / 2)
        return np.concatenate([wide, near * 1000, far, multiples, [SINCOS_VECTOR_LIMIT, -SINCOS_VECTOR_LIMIT]])
    return np.concatenate([wide, near])


@pytest.mark.parametrize("name", FUNCS)
def test_f64_dense_against_numpy(compiled, name):
    x = dense_samples(name)
    with np.errstate(all="ignore"):
        want = REFS[name](x)
    got = compiled[f"{name}_f64"](x)
    worst = ulp_distance(got, want)
    assert worst.max() <= ULP_BOUNDS[(name, "f64")] + 1, (x[worst.argmax()], got[worst.argmax()])


def test_erf_f64_against_50_digits(compiled):
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.uniform(-6.5, 6.5, 150), np.exp(rng.uniform(-30, 0, 30)),
                        [0.99999999, 1.0, 1.5, 2.25, 3.25, 4.5, 5.9, 6.0]])
    want = np.array([float(_erf_decimal(Decimal(v))) for v in x])   # correctly rounded
    got = compiled["erf_f64"](x)
    assert ulp_distance(got, want).max() <= ULP_BOUNDS[("erf", "f64")]


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_special_values(compiled, dtype):
    ftype = np.float32 if dtype == "f32" else np.float64
    tiny = np.finfo(ftype).smallest_subnormal
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, tiny, -tiny, -1.0, -2.0, 1e-30, 1e30], dtype=ftype)
    for name in FUNCS:
        got = compiled[f"{name}_{dtype}"](x)
        with np.errstate(all="ignore"):
            want = REFS[name](x.astype(np.float64)).astype(ftype)
        np.testing.assert_array_equal(got, want, err_msg=name)
        number = ~np.isnan(want)                     # a NaN's sign bit is not specified
        np.testing.assert_array_equal(np.signbit(got[number]), np.signbit(want[number]), err_msg=name)


def test_series_are_exact():
    from fractions import Fraction
    assert sin_coefficients(3) == [Fraction(1), Fraction(-1, 6), Fraction(1, 120)]
    assert cos_coefficients(3) == [Fraction(1), Fraction(-1, 2), Fraction(1, 24)]
    assert abs(_erf_decimal(Decimal(1)) - Decimal("0.84270079294971486934122063508260925929606699796630")) < 1e-45
