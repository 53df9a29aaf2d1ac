"""GEMM blocking chosen per CPU (compiler/codegen/blocking.py): the rule from cache sizes,
and that two blockings give bit-identical results (MC and NC never change an element's
summation order; KC, which would, is the same on every CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import runtime
from compiler.codegen import blocking as B
from compiler.codegen.target import CodegenOptions
from compiler.ir.core import Module
from compiler.ir.types import DType
from tests.test_codegen_gemm import matmul_function


def test_rule_from_cache_sizes():
    # 2 MiB L2, 300 MiB L3 (Emerald Rapids): 512 KiB / 1536 B = 341 -> 336 rows, NC capped
    assert B.blocking_for(B.CacheSizes(48 << 10, 2 << 20, 300 << 20)) == B.Blocking(336, B.MAX_NC)
    # 512 KiB L2, 4 MiB L3: 128 KiB / 1536 B = 85 -> 80 rows; 2 MiB / 1536 B = 1365 -> 1344 columns
    assert B.blocking_for(B.CacheSizes(32 << 10, 512 << 10, 4 << 20)) == B.Blocking(80, 1344)
    # a huge L2 caps at MAX_MC, a tiny one stops at MIN_MC
    assert B.blocking_for(B.CacheSizes(0, 64 << 20, 0)) == B.Blocking(B.MAX_MC, B.DEFAULT.nc)
    assert B.blocking_for(B.CacheSizes(0, 64 << 10, 0)).mc == B.MIN_MC
    # nothing known: today's constants
    assert B.blocking_for(B.CacheSizes()) == B.DEFAULT


def test_cache_sizes_read_from_sysfs_layout(tmp_path: Path):
    for i, (level, kind, size) in enumerate([("1", "Data", "48K"), ("1", "Instruction", "32K"),
                                              ("2", "Unified", "2048K"), ("3", "Unified", "300M")]):
        d = tmp_path / f"index{i}"
        d.mkdir()
        (d / "level").write_text(level + "\n")
        (d / "type").write_text(kind + "\n")
        (d / "size").write_text(size + "\n")
    assert B.read_cache_sizes(tmp_path) == B.CacheSizes(48 << 10, 2 << 20, 300 << 20)
    assert B.read_cache_sizes(tmp_path / "missing") == B.CacheSizes()


def test_blocking_out_of_range_is_refused():
    with pytest.raises(ValueError):
        B.Blocking(B.MAX_MC + 1, 1024)


def test_blocking_enters_the_cache_key():
    a = CodegenOptions(blocking=B.Blocking(32, 256))
    b = CodegenOptions(blocking=B.Blocking(64, 256))
    assert a.key() != b.key()


@pytest.mark.parametrize("ta,tb", [(False, False), (True, True)])
def test_two_blockings_give_bit_identical_results(ta, tb):
    """Shapes that cross several MC and NC blocks of the small blocking and several K slices
    (530 rows: two balanced blocks of 272 and 258 under MC 512, rather than 512 and 18)."""
    mod = Module([matmul_function("mm", DType.f32, ta, tb)])
    small = runtime.compile(mod, cache=False, passes="", options=CodegenOptions(blocking=B.Blocking(32, 256)))
    big = runtime.compile(mod, cache=False, passes="", options=CodegenOptions(blocking=B.Blocking(512, 4096)))
    rng = np.random.default_rng(7)
    for m, k, n in [(200, 900, 600), (77, 1000, 300), (530, 400, 100)]:
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        x, y = small["mm"](a, b), big["mm"](a, b)
        want = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
        np.testing.assert_allclose(x, want, rtol=1e-4, atol=1e-3)
        assert x.tobytes() == y.tobytes()
