"""Vector math (compiler/codegen/vmath.py): the ULP bounds it documents, checked.

Through the whole pipeline (an elementwise kernel per function and dtype, so
the vector body and the masked tail both run) against

* numpy's validation sets (``umath-validation-set-{exp,log,tanh}.csv``:
  inputs with correctly rounded results, special values, subnormals),
* dense samples, against float64 numpy rounded to float32 (f32), or
  float64 numpy itself (f64: our bound plus numpy's own 1 ulp).
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import llvmlite.binding as llvm
import numpy as np
import pytest
from llvmlite import ir

import runtime
from compiler.codegen.target import CodegenOptions, host_target, target_machine
from compiler.codegen.vmath import ULP_BOUNDS, tanh_coefficients
from compiler.ir.builder import new_function
from compiler.ir.core import Module
from compiler.ir.types import DType, TensorType
from runtime.native import NativeLibrary

FUNCS = ("exp", "log", "tanh", "sigmoid")
DTYPES = {"f32": DType.f32, "f64": DType.f64}
CSV_DIR = Path(np.__file__).parent / "_core" / "tests" / "data"


@pytest.fixture(scope="module")
def compiled():
    fns = []
    for name in FUNCS:
        for dname, dtype in DTYPES.items():
            f, b = new_function(f"{name}_{dname}", [("x", TensorType(dtype, ("N",)))])
            f.outputs = [b.emit(name, f.params[0])]
            fns.append(f)
    return runtime.compile(Module(fns), cache=False, passes="")


def ulp_distance(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Distance in units in the last place (0 where both are NaN, or equal)."""
    itype = np.int32 if got.dtype == np.float32 else np.int64
    def ordered(v):
        i = v.view(itype).astype(np.int64)
        return np.where(i < 0, np.iinfo(itype).min - i, i).astype(object)
    d = np.abs(ordered(got) - ordered(want))
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    return np.where(same, 0, d).astype(np.float64)


def sigmoid_ref(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


def validation_rows(name: str, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    tag = {"f32": "np.float32", "f64": "np.float64"}[dtype]
    utype, ftype = (np.uint32, np.float32) if dtype == "f32" else (np.uint64, np.float64)
    rows = [line.split(",") for line in (CSV_DIR / f"umath-validation-set-{name}.csv").read_text().splitlines()
            if line.startswith(tag)]
    x = np.array([int(r[1], 16) for r in rows], dtype=utype).view(ftype)
    y = np.array([int(r[2], 16) for r in rows], dtype=utype).view(ftype)
    return x, y


@pytest.mark.parametrize("dtype", ["f32", "f64"])
@pytest.mark.parametrize("name", ["exp", "log", "tanh"])
def test_numpy_validation_sets(compiled, name, dtype):
    x, want = validation_rows(name, dtype)
    got = compiled[f"{name}_{dtype}"](x)
    worst = ulp_distance(got, want)
    assert worst.max() <= ULP_BOUNDS[(name, dtype)], (x[worst.argmax()], got[worst.argmax()])


def dense_samples(name: str) -> np.ndarray:
    rng = np.random.default_rng(7)
    wide = np.exp(rng.uniform(-103, 88, 30_000))
    if name == "log":
        tiny = np.array([1e-45, 3e-42, 1.17e-38, 1.0, 1.0000001, 0.99999994])
        return np.concatenate([wide, rng.uniform(0, 4, 20_000), tiny])
    near = rng.uniform(-12, 12, 30_000)
    edge = np.array([0.0, -0.0, 0.625, -0.625, 0.62499994, 88.7, 88.8, -87.3, -103.9, -104.5, 89.5,
                     0.3, -0.3, 0.29999998, 0.30000001, 9.0, 9.1, 10.0, 10.000001, -10.5, 1e-20, 2e-45])
    return np.concatenate([near, wide * rng.choice([-1, 1], wide.size), edge])


REFS = {"exp": np.exp, "log": np.log, "tanh": np.tanh, "sigmoid": sigmoid_ref}


@pytest.mark.parametrize("name", FUNCS)
def test_f32_dense_against_correctly_rounded(compiled, name):
    x = dense_samples(name).astype(np.float32)
    with np.errstate(all="ignore"):
        want = REFS[name](x.astype(np.float64)).astype(np.float32)   # f64 then one rounding
    got = compiled[f"{name}_f32"](x)
    worst = ulp_distance(got, want)
    assert worst.max() <= ULP_BOUNDS[(name, "f32")], (x[worst.argmax()], got[worst.argmax()])


@pytest.mark.parametrize("name", FUNCS)
def test_f64_dense_against_numpy(compiled, name):
    x = dense_samples(name) * (1 + np.random.default_rng(3).uniform(-1e-9, 1e-9))
    with np.errstate(all="ignore"):
        want = REFS[name](x)
    got = compiled[f"{name}_f64"](x)
    worst = ulp_distance(got, want)
    assert worst.max() <= ULP_BOUNDS[(name, "f64")] + 1, (x[worst.argmax()], got[worst.argmax()])


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_special_values(compiled, dtype):
    ftype = np.float32 if dtype == "f32" else np.float64
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, -1.0, 1e-30], dtype=ftype)
    with np.errstate(all="ignore"):
        for name in FUNCS:
            got = compiled[f"{name}_{dtype}"](x)
            want = REFS[name](x.astype(np.float64)).astype(ftype)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
            ok = ~np.isnan(want)
            assert ulp_distance(got[ok], want[ok]).max() <= 3, name


def test_tanh_series_is_exact():
    # tanh x = x - x^3/3 + 2x^5/15 - 17x^7/315 + 62x^9/2835 - ...
    from fractions import Fraction
    assert tanh_coefficients(5) == [Fraction(1), Fraction(-1, 3), Fraction(2, 15), Fraction(-17, 315),
                                    Fraction(62, 2835)]


@pytest.mark.parametrize("name", FUNCS)
def test_f32_bit_pattern_sweep(compiled, name):
    # every 2039th f32 bit pattern of both signs (2.1M inputs): all binades,
    # subnormals and the range-reduction boundaries of every branch
    bits = np.arange(0, 0x7F800000, 2039, dtype=np.uint32)
    x = np.concatenate([bits, bits | np.uint32(1 << 31)]).view(np.float32)
    with np.errstate(all="ignore"):
        want = REFS[name](x.astype(np.float64)).astype(np.float32)
    got = compiled[f"{name}_f32"](x)
    worst = ulp_distance(got, want)
    assert worst.max() <= ULP_BOUNDS[(name, "f32")], (x[worst.argmax()], got[worst.argmax()])


@pytest.mark.parametrize("dtype", ["f32", "f64"])
def test_signed_zero_and_saturation(compiled, dtype):
    ftype = np.float32 if dtype == "f32" else np.float64
    x = np.array([0.0, -0.0, 20.0, -20.0, 1e30, -np.inf], dtype=ftype)
    got = compiled[f"tanh_{dtype}"](x)
    np.testing.assert_array_equal(got, [0.0, -0.0, 1.0, -1.0, 1.0, -1.0])
    assert not np.signbit(got[0]) and np.signbit(got[1])
    with np.errstate(divide="ignore"):
        np.testing.assert_array_equal(compiled[f"log_{dtype}"](x[:2]), [-np.inf, -np.inf])


@pytest.mark.parametrize("name", FUNCS)
def test_inlined_into_the_loop(name):
    # a call per vector cost tanh ~10% of its throughput: the optimized module
    # must have no call left to the vmath function (nor the function itself)
    from compiler.codegen.driver import stage_text
    f, b = new_function(f"v{name}", [("x", TensorType(DType.f32, ("N",)))])
    f.outputs = [b.emit(name, f.params[0])]
    text = stage_text(Module([f]), "llvm-opt")
    assert f"@dlc.vmath.{name}." not in text
    assert "fdiv" in text or "fmul" in text      # the math itself is there


def _exp_pair_library(fty: ir.Type, width: int) -> NativeLibrary:
    """``pair(const T *x, T *out)``: ``out[0:W] = exp(x)``, ``out[W:2W] = exp_nonpositive(x)``."""
    from compiler.codegen import vmath
    ptr = fty.as_pointer()
    vty = ir.VectorType(fty, width)
    module = ir.Module("pair")
    module.triple = host_target().triple
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ptr, ptr]), "pair")
    b = ir.IRBuilder(fn.append_basic_block())
    src, dst = fn.args
    x = b.load(b.bitcast(src, vty.as_pointer()), align=4)
    for k, value in enumerate((vmath.exp(b, x), vmath.exp_nonpositive(b, x))):
        b.store(value, b.bitcast(b.gep(dst, [ir.Constant(ir.IntType(64), k * width)]), vty.as_pointer()), align=4)
    b.ret_void()
    parsed = llvm.parse_assembly(str(module))
    parsed.verify()
    return NativeLibrary(target_machine(CodegenOptions()).emit_object(parsed))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_exp_of_nonpositive_arguments_is_exp_where_the_result_is_normal(dtype):
    """The softmax exp of the fused attention kernels: exp's bits for x in [lowest, 0] (and a
    little above 0), 0 below the smallest normal result and at -inf, NaN for NaN."""
    fty = ir.FloatType() if dtype == np.float32 else ir.DoubleType()
    width = 16
    lib = _exp_pair_library(fty, width)
    fn = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)(lib.address("pair"))
    lowest = float(np.log(np.finfo(dtype).tiny))
    rng = np.random.default_rng(0)
    samples = [rng.uniform(lowest + 0.5, 0.5, 4096).astype(dtype),
               np.array([0.0, -0.0, -1e-30, 1e-7, -0.3465, -87.0, -700.0, -np.inf, np.nan, lowest - 1,
                         -1e30, 0.25, -5.0, -20.0, -40.5, -80.25], dtype)]
    for x in samples:
        for start in range(0, x.size, width):
            chunk = np.ascontiguousarray(x[start:start + width])
            if chunk.size < width:
                continue
            out = np.empty(2 * width, dtype)
            fn(chunk.ctypes.data, out.ctypes.data)
            full, fast = out[:width], out[width:]
            normal = chunk >= lowest
            np.testing.assert_array_equal(fast[normal], full[normal])
            assert np.all(fast[~normal & ~np.isnan(chunk)] == 0)
            assert np.all(np.isnan(fast[np.isnan(chunk)]))
