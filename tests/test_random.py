"""Random numbers (compiler/ops/random.py, compiler/codegen/philox.py).

* Philox-4x32-10 against Random123's published known-answer vectors, in the
  numpy reference and in the LLVM code (scalar and 16 lanes, one counter each);
* native code equal to the interpreter bit for bit (uniform, bernoulli,
  fold_in; normal to a few ulp: it goes through log and cos), at several
  batch sizes (vector body and masked tail) and 1 or 2 threads;
* the conventions the module docstring fixes (element i is counter i; keys
  split into words; fold_in's domain word);
* statistics: means, variances, a Kolmogorov-Smirnov distance, the keep
  rate of bernoulli, independence of folded keys.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest
from llvmlite import ir

import runtime
from compiler.codegen import philox as native_philox
from compiler.codegen import threads
from compiler.codegen.target import CodegenOptions, host_target, target_machine
from compiler.diagnostics import DlTypeError
from compiler.ir.builder import new_function
from compiler.ir.core import Module
from compiler.ir.interpreter import interpret
from compiler.ir.types import DType, TensorType
from compiler.ops.random import element_words, fold_in_reference, join64, linear_index, philox4x32, split64
from runtime.native import NativeLibrary

F32, F64, I64, BOOL = DType.f32, DType.f64, DType.i64, DType.bool

# Random123 tests/kat_vectors, the three "philox4x32 10" lines: counter (4 words), key (2), output (4).
KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff), (0xffffffff, 0xffffffff),
     (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
]


def T(dtype: DType, *shape) -> TensorType:
    return TensorType(dtype, tuple(shape))


# ---------------------------------------------------------------------------
# Philox itself


@pytest.mark.parametrize("counter, key, want", KAT)
def test_reference_reproduces_random123_known_answers(counter, key, want):
    assert [int(w) for w in philox4x32(counter, key)] == list(want)


def _philox_library(width: int) -> tuple[NativeLibrary, str]:
    """``kat(const u32 *in, u32 *out)``: ``width`` counters (in[0:4w], word-major), one key
    (in[4w:4w+2]) -> out[0:4w], through ``compiler/codegen/philox.py``."""
    i32 = ir.IntType(32)
    ptr = i32.as_pointer()
    module = ir.Module("kat")
    module.triple = host_target().triple
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ptr, ptr]), "kat")
    b = ir.IRBuilder(fn.append_basic_block())
    src, dst = fn.args
    vty = i32 if width == 1 else ir.VectorType(i32, width)

    def load(offset: int) -> ir.Value:
        p = b.gep(src, [ir.Constant(i32, offset)])
        return b.load(p) if width == 1 else b.load(b.bitcast(p, vty.as_pointer()), align=4)

    def splat(v: ir.Value) -> ir.Value:
        if width == 1:
            return v
        one = b.insert_element(ir.Constant(vty, ir.Undefined), v, ir.Constant(i32, 0))
        return b.shuffle_vector(one, one, ir.Constant(ir.VectorType(i32, width), [0] * width))

    counter = tuple(load(k * width) for k in range(4))
    key = tuple(splat(b.load(b.gep(src, [ir.Constant(i32, 4 * width + k)]))) for k in range(2))
    words = native_philox.philox4x32(b, counter, key)     # type: ignore[arg-type]
    for k, w in enumerate(words):
        p = b.gep(dst, [ir.Constant(i32, k * width)])
        if width == 1:
            b.store(w, p)
        else:
            b.store(w, b.bitcast(p, vty.as_pointer()), align=4)
    b.ret_void()
    import llvmlite.binding as llvm
    parsed = llvm.parse_assembly(str(module))
    parsed.verify()
    obj = target_machine(CodegenOptions()).emit_object(parsed)
    return NativeLibrary(obj), "kat"


@pytest.mark.parametrize("width", [1, 16])
def test_native_philox_reproduces_known_answers_in_every_lane(width):
    lib, name = _philox_library(width)
    kat = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)(lib.address(name))
    for counter, key, want in KAT:
        # lane j gets the KAT counter plus j in word 0 (lane 0 is the published vector)
        lanes = np.array([[(counter[0] + j) % 2**32, *counter[1:]] for j in range(width)], np.uint32)
        src = np.concatenate([lanes.T.ravel(), np.array(key, np.uint32)])
        out = np.zeros(4 * width, np.uint32)
        kat(src.ctypes.data, out.ctypes.data)
        got = out.reshape(4, width)
        assert [int(w) for w in got[:, 0]] == list(want)
        expected = philox4x32(tuple(lanes.T), key)
        for k in range(4):
            np.testing.assert_array_equal(got[k], expected[k])


def test_keys_and_counters_map_to_words_as_documented():
    key = np.int64(-2)                        # bits 0xffffffff_fffffffe
    lo, hi = split64(key)
    assert (int(lo), int(hi)) == (0xFFFFFFFE, 0xFFFFFFFF)
    assert int(join64(lo, hi)) == -2
    # element i is the counter (i_lo, i_hi, 0, 0)
    i = np.int64(5 * 2**32 + 7)
    assert [int(w) for w in element_words(key, i)] == [int(w) for w in philox4x32((7, 5, 0, 0), (lo, hi))]
    # fold_in: words 0 and 1 of the counter (data, 0, 1)
    w = philox4x32((9, 0, 0, 1), (lo, hi))
    assert int(fold_in_reference(key, np.int64(9))) == int(join64(w[0], w[1]))
    assert [int(w) for w in element_words(np.int64(0), np.int64(0))] == list(KAT[0][2])


# ---------------------------------------------------------------------------
# Native code against the interpreter


def _sampler() -> Module:
    """Functions of a key and an f32[N, 37] input (N: the batch) drawing random tensors."""
    fns = []
    f, b = new_function("uniform", [("key", T(I64)), ("x", T(F32, "N", 37))])
    f.outputs = [b.add(f.params[1], b.random_uniform(f.params[0], shape=("N", 37))),
                 b.random_uniform(f.params[0], shape=(3, "N", 5), minval=-2.0, maxval=3.0, dtype=F64)]
    fns.append(f)
    f, b = new_function("normal", [("key", T(I64)), ("x", T(F32, "N", 37))])
    f.outputs = [b.random_normal(f.params[0], shape=("N", 37)),
                 b.random_normal(f.params[0], shape=("N", 2), dtype=F64, mean=1.0, stddev=2.0)]
    fns.append(f)
    f, b = new_function("bits", [("key", T(I64)), ("x", T(F32, "N", 37))])
    n = b.dim_size(f.params[1], axis=0)
    f.outputs = [b.bernoulli(b.fold_in(f.params[0], n), shape=("N", 37), p=0.3),
                 b.fold_in(f.params[0], b.iota(dtype=I64, shape=("N",), axis=0))]
    fns.append(f)
    return Module(fns)


@pytest.fixture(scope="module")
def sampler():
    module = _sampler()
    return module, runtime.compile(module, cache=False, passes="")


@pytest.mark.parametrize("n", [1, 7, 128])
@pytest.mark.parametrize("key", [0, 12345, -(2**62) + 3])
def test_native_equals_interpreter_bit_for_bit(sampler, n, key):
    module, compiled = sampler
    args = [np.array(key, np.int64), np.zeros((n, 37), np.float32)]
    for fn in ("uniform", "bits"):
        want = interpret(module.get(fn), args)
        got = compiled[fn](*args)
        for g, w in zip(got, want):
            assert g.dtype == w.dtype and g.shape == w.shape
            np.testing.assert_array_equal(g, w, err_msg=fn)
    want = interpret(module.get("normal"), args)
    got = compiled["normal"](*args)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=2e-6)     # log and cos: a few ulp
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12, atol=1e-12)


def test_values_do_not_depend_on_the_thread_count(sampler):
    _, compiled = sampler
    args = [np.array(77, np.int64), np.zeros((4096, 37), np.float32)]
    results = []
    try:
        for t in (1, 2):
            threads.set_num_threads(compiled._library, t)
            results.append([*compiled["uniform"](*args), *compiled["normal"](*args), *compiled["bits"](*args)])
    finally:
        threads.set_num_threads(compiled._library, threads.num_threads())
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_one_tensor_is_a_prefix_of_a_longer_one():
    """Element i is counter i: a batch of 3 rows is the first 3 rows of a batch of 128."""
    module = _sampler()
    key = np.array(5, np.int64)
    small = interpret(module.get("uniform"), [key, np.zeros((3, 37), np.float32)])[0]
    large = interpret(module.get("uniform"), [key, np.zeros((128, 37), np.float32)])[0]
    np.testing.assert_array_equal(small, large[:3])
    assert not np.array_equal(large[:3], large[3:6])


def test_random_ops_check_their_key_and_attributes():
    f, b = new_function("f", [("k", T(DType.i32)), ("k2", T(I64, 2)), ("k3", T(I64))])
    with pytest.raises(DlTypeError, match="i64\\[\\]"):
        b.random_uniform(f.params[0], shape=(2,))
    with pytest.raises(DlTypeError, match="i64\\[\\]"):
        b.random_normal(f.params[1], shape=(2,))
    with pytest.raises(DlTypeError, match="probability"):
        b.bernoulli(f.params[2], shape=(2,), p=1.5)
    with pytest.raises(DlTypeError, match="f32 or f64"):
        b.random_uniform(f.params[2], shape=(2,), dtype=I64)


# ---------------------------------------------------------------------------
# Statistics (interpreter and native draw the same numbers; these use native code)


def _draw(sampler, fn: str, key: int, n: int) -> list[np.ndarray]:
    _, compiled = sampler
    return list(compiled[fn](np.array(key, np.int64), np.zeros((n, 37), np.float32)))


def _ks_distance(sample: np.ndarray, cdf) -> float:
    xs = np.sort(sample.ravel().astype(np.float64))
    n = len(xs)
    c = cdf(xs)
    return float(max(np.max(np.arange(1, n + 1) / n - c), np.max(c - np.arange(n) / n)))


def test_uniform_statistics(sampler):
    u32, u64 = _draw(sampler, "uniform", 3, 4096)       # u32 = 0 + uniform [0, 1)
    n = u32.size
    assert u32.min() >= 0.0 and u32.max() < 1.0
    assert abs(u32.mean() - 0.5) < 4 * math.sqrt(1 / 12 / n)
    assert abs(u32.var() - 1 / 12) < 0.01 * (1 / 12)
    assert _ks_distance(u32, lambda x: x) < 1.63 / math.sqrt(n)        # alpha = 1%
    assert u64.min() >= -2.0 and u64.max() < 3.0
    assert abs(u64.mean() - 0.5) < 4 * math.sqrt(25 / 12 / u64.size)


def test_normal_statistics(sampler):
    z32, z64 = _draw(sampler, "normal", 11, 4096)
    n = z32.size
    assert abs(z32.mean()) < 4 / math.sqrt(n)
    assert abs(z32.std() - 1.0) < 0.01
    erf = np.vectorize(math.erf)
    assert _ks_distance(z32, lambda x: 0.5 * (1 + erf(x / math.sqrt(2)))) < 1.63 / math.sqrt(n)
    assert np.abs(z32).max() <= math.sqrt(-2 * math.log(2.0 ** -24)) + 1e-5
    assert abs(z64.mean() - 1.0) < 4 * 2 / math.sqrt(z64.size)
    assert abs(z64.std() - 2.0) < 0.1


def test_bernoulli_keep_rate_and_fold_in_independence(sampler):
    mask, keys = _draw(sampler, "bits", 8, 4096)
    assert mask.dtype == np.bool_
    n = mask.size
    assert abs(mask.mean() - 0.3) < 4 * math.sqrt(0.3 * 0.7 / n)
    assert len(set(keys.tolist())) == len(keys)          # 4096 distinct derived keys
    # the bits of derived keys look uniform: each of the 64 bits is set about half the time
    bits = (keys.view(np.uint64)[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 4 * 0.5 / math.sqrt(len(keys)))


def test_linear_index_is_row_major():
    np.testing.assert_array_equal(linear_index((2, 3)), [[0, 1, 2], [3, 4, 5]])
