"""``CodegenOptions.flush_denormals`` (x86 MXCSR flush-to-zero and denormals-are-zero for the
duration of a call, on the pool's workers too) and its default-on use by models."""

from __future__ import annotations

import numpy as np
import pytest

import runtime
from compiler.codegen import threads
from compiler.codegen.target import CodegenOptions
from compiler.diagnostics import ArgumentTypeError
from runtime.model import load_model

SOURCE = """
fn mul(a: f32[N], b: f32[N]) -> f32[N] { return a * b }
fn mm(a: f32[M, K], b: f32[K, N]) -> f32[M, N] { return a @ b }
fn mul64(a: f64[N], b: f64[N]) -> f64[N] { return a * b }
"""
TINY32 = np.float32(1e-20)          # squared: 1e-40, an f32 subnormal
SUB32 = np.float32(1e-39)           # itself an f32 subnormal
TINY64 = 1e-160                     # squared: 1e-320, an f64 subnormal


@pytest.fixture(scope="module")
def flushing():
    return runtime.compile(SOURCE, cache=False, options=CodegenOptions(flush_denormals=True))


@pytest.fixture(scope="module")
def ieee():
    return runtime.compile(SOURCE, cache=False)


def test_subnormal_results_and_inputs_become_signed_zeros(flushing, ieee):
    a = np.array([TINY32, -TINY32, 1.0, 0.0], np.float32)
    got = flushing.mul(a, np.array([TINY32, TINY32, SUB32, -1.0], np.float32))
    np.testing.assert_array_equal(got, [0.0, -0.0, 0.0, -0.0])
    assert list(np.signbit(got)) == [False, True, False, True]
    # the IEEE build keeps gradual underflow, as numpy does
    want = a * np.array([TINY32, TINY32, SUB32, -1.0], np.float32)
    assert want[0] > 0 and want[2] == SUB32
    np.testing.assert_array_equal(ieee.mul(a, np.array([TINY32, TINY32, SUB32, -1.0], np.float32)), want)


def test_normal_values_nan_and_inf_are_untouched(flushing, ieee):
    a = np.array([np.nan, np.inf, -np.inf, 3.0, np.finfo(np.float32).tiny, -0.0], np.float32)
    b = np.array([1.0, 2.0, 0.5, 1e-30, 1.0, 1.0], np.float32)
    np.testing.assert_array_equal(flushing.mul(a, b), ieee.mul(a, b))


def test_f64_flushes_too(flushing):
    x = np.array([TINY64, 1.0], np.float64)
    np.testing.assert_array_equal(flushing.mul64(x, np.array([TINY64, 2.0])), [0.0, 2.0])


def test_the_callers_mode_is_restored(flushing):
    flushing.mul(np.full(4, TINY32), np.full(4, TINY32))
    # this thread's own arithmetic (numpy's loops) underflows gradually again
    assert np.float32(TINY32) * np.float32(TINY32) > 0
    assert np.multiply(np.full(64, TINY32), np.full(64, TINY32)).min() > 0


@pytest.mark.parametrize("n", [1, 2, 4])
def test_workers_run_their_tasks_in_the_callers_mode(flushing, ieee, n):
    threads.set_num_threads(flushing._library, n)
    threads.set_num_threads(ieee._library, n)
    try:
        big = np.full(1 << 21, TINY32, np.float32)        # split into tasks on every thread
        assert not flushing.mul(big, big).any()
        assert (ieee.mul(big, big) > 0).all()
        a = np.full((256, 512), TINY32, np.float32)
        b = np.full((512, 256), TINY32, np.float32)
        assert not flushing.mm(a, b).any()
        assert (ieee.mm(a, b) > 0).all()
    finally:
        threads.set_num_threads(flushing._library, threads.num_threads())
        threads.set_num_threads(ieee._library, threads.num_threads())


def _mxcsr_setter():
    """A native ``void set(i32)`` loading the calling thread's MXCSR (made with llvmlite), and
    the engine that holds it."""
    import ctypes

    import llvmlite.binding as llvm
    from llvmlite import ir

    from compiler.codegen.target import ensure_llvm

    ensure_llvm()
    mod = ir.Module("mxcsr")
    mod.triple = llvm.get_process_triple()
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [ir.IntType(32)]), "set_mxcsr")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    threads.set_fp_control(b, fn.args[0])
    b.ret_void()
    # a target machine of its own: the engine owns (and frees) the one it is given
    machine = llvm.Target.from_default_triple().create_target_machine()
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(str(mod)), machine)
    engine.finalize_object()
    return ctypes.CFUNCTYPE(None, ctypes.c_int32)(engine.get_function_address("set_mxcsr")), engine


def test_workers_follow_the_callers_mode_not_the_one_they_started_in(ieee):
    """Workers started under one MXCSR take the caller's current one with each job (a thread
    can change its mode between calls: a library built with -ffast-math sets FTZ/DAZ when
    loaded), so every task of a call computes alike, whatever the thread count."""
    set_mxcsr, engine = _mxcsr_setter()
    threads.set_num_threads(ieee._library, 4)
    big = np.full(1 << 21, TINY32, np.float32)
    try:
        assert (ieee.mul(big, big) > 0).all()          # workers start in IEEE mode
        set_mxcsr(0x1F80 | threads.MXCSR_FLUSH)
        try:                                           # (back to back: the workers awake)
            results = [ieee.mul(big, big) for _ in range(20)]
        finally:
            set_mxcsr(0x1F80)                          # (before numpy looks: DAZ reads them as 0)
        assert not any(r.any() for r in results)       # caller and workers flushed
        assert (ieee.mul(big, big) > 0).all()
    finally:
        threads.set_num_threads(ieee._library, threads.num_threads())
    del engine


def test_option_must_be_a_bool():
    with pytest.raises(ArgumentTypeError, match="flush_denormals"):
        runtime.compile(SOURCE, cache=False, options=CodegenOptions(flush_denormals=1))


MODEL = """
model tiny {
    input x: f32[N, 2]
    target y: i32[N]
    output logits = dense(x, 2)
    loss sparse_categorical_crossentropy(logits, y, from_logits=true)
    optimizer sgd(lr=0.1)
}
"""


def _tiny_logits(flush: bool | None, backend: str, tmp_path) -> np.ndarray:
    path = tmp_path / "tiny.dl"
    path.write_text(MODEL)
    kwargs = {} if flush is None else {"flush_denormals": flush}
    model = load_model(path, backend=backend, **kwargs)
    model.set_weights({name: (np.full(w.shape, TINY32, np.float32) if w.ndim == 2 else np.zeros(w.shape, np.float32))
                       for name, w in model.weights.items()})
    return model.predict(np.full((3, 2), TINY32, np.float32))


def test_models_flush_by_default_and_can_keep_ieee_underflow(tmp_path):
    np.testing.assert_array_equal(_tiny_logits(None, "native", tmp_path), np.zeros((3, 2)))
    kept = _tiny_logits(False, "native", tmp_path)
    assert (kept > 0).all()
    # the interpreter is IEEE arithmetic always: it agrees with flush_denormals=False
    np.testing.assert_array_equal(_tiny_logits(None, "interp", tmp_path), kept)


def test_model_argument_must_be_a_bool(tmp_path):
    path = tmp_path / "tiny.dl"
    path.write_text(MODEL)
    with pytest.raises(ArgumentTypeError, match="flush_denormals"):
        load_model(path, flush_denormals="no")


def test_cli_flag_keeps_ieee_underflow(tmp_path, capsys):
    """``dlc predict --no-flush-denormals`` against the default, on weights and inputs whose
    products are subnormal."""
    from runtime.cli import main

    path = tmp_path / "tiny.dl"
    path.write_text(MODEL)
    weights = tmp_path / "w.npz"
    model = load_model(path)
    model.set_weights({name: (np.full(w.shape, TINY32, np.float32) if w.ndim == 2 else
                              np.zeros(w.shape, np.float32)) for name, w in model.weights.items()})
    model.save(weights)
    np.save(tmp_path / "x.npy", np.full((3, 2), TINY32, np.float32))
    outputs = {}
    for flag in ([], ["--no-flush-denormals"]):
        out = tmp_path / f"out{len(flag)}.npy"
        assert main(["predict", str(path), "--weights", str(weights), "--input", str(tmp_path / "x.npy"),
                     "--output", str(out), *flag]) == 0
        outputs[bool(flag)] = np.load(out)
    np.testing.assert_array_equal(outputs[False], np.zeros((3, 2)))
    assert (outputs[True] > 0).all()
