"""Loop IR decisions (fusion, epilogues, views, in-place scheduling), vectorised
assembly, reductions over every axis combination, random programs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runtime
from compiler.codegen.bufferize import lower_function
from compiler.codegen.driver import lower_module, stage_text
from compiler.codegen.loops import Elementwise, Matmul, Reduce, print_program
from compiler.codegen.target import CodegenOptions, Target
from compiler.ir.builder import new_function
from compiler.ir.core import Module
from compiler.ir.interpreter import interpret
from compiler.ir.types import DType, TensorType

F32 = DType.f32


def T(*shape, dtype: DType = F32) -> TensorType:
    return TensorType(dtype, tuple(shape))


def program(f):
    (prog,) = lower_module(Module([f]))
    return prog


# ---------------------------------------------------------------------------
# Fusion and bufferization decisions


def test_single_use_chain_is_one_loop_nest():
    f, b = new_function("f", [("x", T("N", 64)), ("bias", T(64))])
    x, bias = f.params
    f.outputs = [b.tanh(b.mul(b.add(b.exp(b.neg(x)), bias), b.constant(0.5, F32)))]
    prog = program(f)
    assert len(prog.kernels) == 1 and isinstance(prog.kernels[0], Elementwise)
    assert prog.temps == []
    assert "tanh(mul(add(exp(neg(%x[i0, i1])), %bias[i1]), 0.5:f32))" in print_program(prog)


def test_multi_use_value_is_materialized_once():
    f, b = new_function("f", [("x", T("N", 8))])
    e = b.exp(f.params[0])
    f.outputs = [b.add(e, b.constant(1.0, F32)), b.mul(e, e)]
    prog = program(f)
    text = print_program(prog)
    assert text.count("exp(") == 1 and len(prog.temps) == 1


def test_cheap_values_are_recomputed_not_stored():
    f, b = new_function("f", [("x", T("N", 8)), ("y", T("N", 8))])
    x, y = f.params
    mask = b.gt(x, b.constant(0.0, F32))            # one cheap op of leaves, used twice
    f.outputs = [b.select(mask, y, x), b.sum(b.select(mask, x, y), axes=(1,))]
    prog = program(f)
    assert prog.temps == [] and print_program(prog).count("gt(%x[i0, i1], 0.0:f32)") == 2


def test_decomposed_duplicates_are_merged():
    f, b = new_function("f", [("x", T("N", 10))])
    x = f.params[0]
    f.outputs = [b.softmax(x), b.log_softmax(x)]       # both expand to max / sub / exp / sum
    text = print_program(program(f))
    # one shared max/sum pair, which row-softmax fusion turns into one softmax_stats pass
    assert text.count("reduce.softmax_stats") == 1 and "reduce.max" not in text and "reduce.sum" not in text
    assert text.count("elementwise") == 2
    unfused = print_program(lower_function(f, fuse=False))
    assert unfused.count("reduce.max") == 1 and unfused.count("reduce.sum") == 1


def test_producer_chain_fuses_into_reduction_and_epilogue_into_matmul():
    f, b = new_function("f", [("x", T("N", 16)), ("w", T(16, 8)), ("bias", T(8))])
    x, w, bias = f.params
    h = b.relu(b.add(b.matmul(x, w), bias))
    f.outputs = [b.sum(b.exp(h), axes=(1,)), h]      # h has two uses: materialized
    prog = program(f)
    kinds = [type(k) for k in prog.kernels]
    assert kinds == [Matmul, Reduce]
    assert prog.kernels[0].epilogue is not None and "relu(add(acc, %bias[i1]))" in print_program(prog)
    assert "exp(" in print_program(prog).split("reduce.sum")[1]


def test_reshape_is_a_view_and_squeezes_are_index_maps():
    f, b = new_function("f", [("x", T("N", 4, 6))])
    x = f.params[0]
    flat = b.reshape(x, shape=("N", 24))
    f.outputs = [b.exp(flat), b.reshape(b.exp(x), shape=("N", 1, 4, 6))]
    prog = program(f)
    assert [v.base.name for v in prog.views] == ["%x"]
    assert len(prog.kernels) == 2 and prog.temps == []


# ---------------------------------------------------------------------------
# In-place outputs


def _update(reads_transposed: bool):
    f, b = new_function("upd", [("w", T(8, 8)), ("g", T(8, 8))])
    w, g = f.params
    src = b.transpose(w, perm=(1, 0)) if reads_transposed else w
    new_w = b.sub(src, g)
    f.outputs = [new_w, b.sum(w)]             # w is also read by another kernel
    f.attrs["inplace"] = ((0, "w"),)
    return f


def test_in_place_writer_is_scheduled_after_other_readers():
    prog = program(_update(False))
    assert [type(k) for k in prog.kernels] == [Reduce, Elementwise]
    assert prog.kernels[1].out.inplace_of is prog.params[0]
    mod = runtime.compile(Module([_update(False)]), cache=False, passes="")
    w = np.arange(64, dtype=np.float32).reshape(8, 8)
    g = np.ones((8, 8), np.float32)
    total = w.sum()
    new, s = mod.upd(w, g)
    assert new is w and s == total
    np.testing.assert_array_equal(w, np.arange(64).reshape(8, 8) - 1)


def test_in_place_output_reading_other_elements_goes_through_a_temporary():
    f = _update(True)
    prog = program(f)
    assert isinstance(prog.kernels[-1], Elementwise) and prog.kernels[-1].out.inplace_of is not None
    assert any(t.name.endswith("_out0") for t in prog.temps)   # computed aside, copied last
    mod = runtime.compile(Module([f]), cache=False, passes="")
    w0 = np.arange(64, dtype=np.float32).reshape(8, 8)
    w = w0.copy()
    mod.upd(w, np.zeros((8, 8), np.float32))
    np.testing.assert_array_equal(w, w0.T)


# ---------------------------------------------------------------------------
# Vectorisation (assembly)


@pytest.fixture(scope="module")
def kernels_module():
    f, b = new_function("ew", [("x", T("N", 100)), ("y", T(100))])
    f.outputs = [b.mul(b.add(f.params[0], f.params[1]), b.exp(f.params[0]))]
    g, b2 = new_function("red", [("x", T("N", 100))])
    g.outputs = [b2.sum(g.params[0], axes=(1,)), b2.max(g.params[0], axes=(0,))]
    return Module([f, g])


def test_host_assembly_uses_wide_vector_registers(kernels_module):
    asm = stage_text(kernels_module, "asm")
    width = CodegenOptions().target.vector_bits
    reg = {512: "%zmm", 256: "%ymm", 128: "%xmm"}[width]
    for fn in ("dlc_ew", "dlc_red"):
        # the entry point and its kernels' functions (a splittable kernel's loop nest lives
        # in one out-of-line ``<fn>.k<i>.part``, called directly or by the pool's tasks)
        bodies = [part.split(".Lfunc_end", 1)[0] for part in asm.split(f"\n{fn}")[1:]]
        assert bodies and any(reg in body for body in bodies), fn
    assert "expf" not in asm                       # vector math, no libm calls


def test_narrow_targets_are_correct(kernels_module):
    generic = Target.generic()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((13, 100)).astype(np.float32)
    y = rng.standard_normal(100).astype(np.float32)
    for target in (generic, Target(generic.triple, "haswell", "+avx,+avx2,+fma,+sse4.2")):
        mod = runtime.compile(kernels_module, cache=False, passes="", options=CodegenOptions(target=target))
        np.testing.assert_allclose(mod.ew(x, y), (x + y) * np.exp(x), rtol=1e-5)
        s, m = mod.red(x)
        np.testing.assert_allclose(s, x.sum(1), rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(m, x.max(0))
    assert "%ymm" in stage_text(kernels_module, "asm", CodegenOptions(target=Target(
        generic.triple, "haswell", "+avx,+avx2,+fma,+sse4.2")))


# ---------------------------------------------------------------------------
# Reductions over every axis combination


AXES = [None, ()] + [c for r in (1, 2, 3) for c in itertools.combinations(range(3), r)]


@pytest.fixture(scope="module")
def reductions():
    fns = []
    for op in ("sum", "max", "min", "mean"):
        for i, axes in enumerate(AXES):
            for keep in (False, True):
                f, b = new_function(f"{op}_{i}_{int(keep)}", [("x", T("N", 6, 35))])
                f.outputs = [b.emit(op, f.params[0], axes=axes, keepdims=keep)]
                fns.append(f)
    return runtime.compile(Module(fns), cache=False, passes="")


@pytest.mark.parametrize("op", ["sum", "max", "min", "mean"])
def test_reductions_over_every_axis_combination(reductions, op):
    rng = np.random.default_rng(1)
    for n in (1, 7, 20):
        x = rng.standard_normal((n, 6, 35)).astype(np.float32)
        for i, _axes in enumerate(AXES):
            for keep in (False, True):
                name = f"{op}_{i}_{int(keep)}"
                want = interpret(reductions.module.get(name), [x])[0]
                got = reductions[name](x)
                assert got.shape == want.shape, name
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"{name} N={n}")


def test_nan_propagates_through_max_reductions(reductions):
    x = np.zeros((3, 6, 35), np.float32)
    x[1, 2, 30] = np.nan
    got = reductions[f"max_{AXES.index((2,))}_0"](x)
    assert np.isnan(got[1, 2]) and not np.isnan(got[0]).any()


# ---------------------------------------------------------------------------
# Random elementwise / reduction programs


UNARY = ["neg", "exp", "tanh", "sigmoid", "relu", "abs", "square"]
BINARY = ["add", "sub", "mul", "maximum", "minimum"]


@st.composite
def programs(draw):
    """A random DAG over x: f32[N, 5] and y: f32[5]: unary, binary (broadcasting),
    reductions with keepdims, several uses of some values, one or two outputs."""
    steps = draw(st.lists(st.tuples(st.sampled_from(UNARY + BINARY + ["sum", "max"]),
                                    st.integers(0, 99), st.integers(0, 99), st.integers(0, 1)),
                          min_size=1, max_size=7))
    outs = draw(st.lists(st.integers(0, 99), min_size=1, max_size=2))
    return steps, outs


def build_random(steps, outs):
    f, b = new_function("rnd", [("x", T("N", 5)), ("y", T(5))])
    values = list(f.params)
    for name, i, j, axis in steps:
        a, c = values[i % len(values)], values[j % len(values)]
        if name in UNARY:
            v = b.emit(name, a)
        elif name in BINARY:
            v = b.emit(name, a, c)
        else:
            v = b.emit(name, a, axes=(axis % a.type.rank,), keepdims=True) if a.type.rank else b.neg(a)
        values.append(v)
    f.outputs = [values[2 + (k % (len(values) - 2))] for k in outs]
    return f


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.integers(1, 9))
def test_random_programs_match_the_interpreter(prog, n):
    f = build_random(*prog)
    mod = runtime.compile(Module([f]), cache=False, passes="", options=CodegenOptions(opt_level=1))
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    y = rng.standard_normal(5).astype(np.float32)
    want = interpret(f, [x, y])
    got = mod.rnd(x, y)
    got = list(got) if isinstance(got, tuple) else [got]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_functions_whose_c_symbols_clash_are_an_error():
    from compiler.codegen.driver import llvm_module
    from compiler.diagnostics import LoweringError

    fns = []
    for name in ("a.b", "a_b"):
        f, b = new_function(name, [("x", T(3))])
        f.outputs = [b.neg(f.params[0])]
        fns.append(f)
    with pytest.raises(LoweringError, match="both be the C symbol dlc_a_b"):
        llvm_module(Module(fns))
