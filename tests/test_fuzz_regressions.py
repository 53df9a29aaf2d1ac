"""Defects the fuzzer (python -m fuzz) found, each kept fixed by a test of its own."""

from __future__ import annotations

import numpy as np
import pytest

import runtime
from compiler.diagnostics import DlError
from runtime.checkpoint import load_checkpoint
from runtime.data import load_data


def test_a_matmul_whose_result_is_cast_compiles_and_computes() -> None:
    # the cast used to be fused into the GEMM's epilogue, which stores the GEMM's own dtype
    mod = runtime.compile("""
fn f(x: f64[3, 3]) -> f32[3, 3] { return cast(x @ x, f32) }
fn g(x: i32[2, 2]) -> f32[2, 2] { return cast(x @ x, f32) * 2.0 }
fn h(x: f32[2, 3], w: f32[3, 4]) -> f64[2, 4] { return cast(relu(x @ w) + 1.0, f64) }
""")
    x = np.arange(9, dtype=np.float64).reshape(3, 3)
    np.testing.assert_array_equal(mod.f(x), (x @ x).astype(np.float32))
    i = np.array([[1, 2], [3, 4]], np.int32)
    np.testing.assert_array_equal(mod.g(i), (i @ i).astype(np.float32) * 2)
    a, w = np.ones((2, 3), np.float32), np.full((3, 4), -0.5, np.float32)
    np.testing.assert_array_equal(mod.h(a, w), np.maximum(a @ w, 0).astype(np.float64) + 1.0)


def _unknown_compression(path) -> None:
    """Mark the archive's first member as stored with a compression method zipfile lacks."""
    data = bytearray(path.read_bytes())
    central = data.find(b"PK\x01\x02")
    data[8] = data[central + 10] = 99
    path.write_bytes(bytes(data))


def test_an_npz_with_an_unknown_compression_method_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((3, 4), np.float32), y=np.zeros(3, np.int32))
    _unknown_compression(path)
    with pytest.raises(DlError, match="d.npz"):
        load_data(str(path))


def test_a_checkpoint_with_an_unknown_compression_method_is_a_clear_error(tmp_path) -> None:
    path = tmp_path / "w.npz"
    np.savez(path, w=np.ones((2, 2), np.float32))
    _unknown_compression(path)
    with pytest.raises(DlError, match="w.npz.*compression method"):
        load_checkpoint(path)


def test_long_float_sums_on_scalar_code_stay_accurate() -> None:
    # one lane used to add all 65,536 terms of a row into one accumulator (4.7e-6 relative
    # here, 2.9e-5 on the fuzzer's cross-entropy); sums now fold their partial sums every
    # SUM_BLOCK steps
    from compiler.codegen.target import CodegenOptions

    mod = runtime.compile("fn g(x: f32[N, M]) -> f32[N] { return sum(x, axis=1) }", cache=False,
                          options=CodegenOptions(vector_lanes=1))
    x = np.random.default_rng(3).uniform(0.0, 3.0, (5, 65536)).astype(np.float32)
    exact = x.astype(np.float64).sum(axis=1)
    assert np.max(np.abs(mod.g(x) - exact) / exact) < 2e-6
