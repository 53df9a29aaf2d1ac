"""What the runtime trusts, and what it must not: the process's address space,
files on disk (the compile cache, temp folders), names that become paths."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------
# MCJIT in a fragmented address space

# Compiles a small function, then lays out the address space so that the only free
# one-page holes near the top sit 4 GiB apart (PROT_NONE reservations between them),
# with all free room for bigger mappings below them, then loads and calls the code.
# LLVM's default section memory manager put each section in its own mapping: the code
# (several pages) went below the reservations, each one-page constant pool into a hole
# more than 4 GiB away, and the 32-bit PC-relative relocation between them made LLVM
# abort the process (RuntimeDyldELF: Assertion `isInt<32>(RealOffset)' failed).
_FRAGMENTED_LOAD = textwrap.dedent("""
    import ctypes, mmap
    import numpy as np
    from compiler.codegen.driver import compile_to_object
    from compiler.codegen.target import CodegenOptions
    from compiler.passes import run_pipeline
    from frontend_dsl.api import compile_source
    from runtime.compiled import CompiledModule
    from runtime.native import NativeLibrary

    options = CodegenOptions()
    module = run_pipeline(compile_source("fn f(x: f32[N]) -> f32[N] {\\n"
                                         "  return exp(x) * 0.5 + 1.25\\n}\\n", "<t>"), "default")
    obj, infos = compile_to_object(module, options)

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    PROT_NONE, MAP_PRIVATE, MAP_ANONYMOUS, MAP_NORESERVE = 0, 0x2, 0x20, 0x4000
    MAP_FIXED_NOREPLACE = 0x100000
    FLAGS = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE
    PAGE, GAP = mmap.PAGESIZE, 1 << 32

    def reserve(size, at):
        addr = libc.mmap(at, size, PROT_NONE, FLAGS | MAP_FIXED_NOREPLACE, -1, 0)
        if addr != at:      # an older kernel treats the flag as a hint
            raise SystemExit(f"could not reserve {size:#x} bytes at {at:#x}: {addr}")

    # fill every gap under 64 GiB between mappings, so no old hole takes a section
    spans = sorted(tuple(int(x, 16) for x in line.split()[0].split("-"))
                   for line in open("/proc/self/maps"))
    for (_, end), (start, _) in zip(spans, spans[1:]):
        if 0 < start - end < (64 << 30):
            reserve(start - end, end)
    probe = libc.mmap(None, PAGE, PROT_NONE, FLAGS, -1, 0)   # the highest free page
    libc.munmap(probe, PAGE)
    top = probe + PAGE
    for _ in range(3):      # [hole: 1 page][4 GiB reserved], three times, going down
        top -= PAGE + GAP
        reserve(GAP, top)

    compiled = CompiledModule(NativeLibrary(obj), infos, obj, options.target)
    x = np.linspace(-1, 1, 37, dtype=np.float32)
    np.testing.assert_allclose(compiled.f(x), np.exp(x) * 0.5 + 1.25, rtol=1e-6)
    print("loaded and ran")
""")


@pytest.mark.skipif(sys.platform != "linux" or platform.machine() != "x86_64",
                    reason="lays out a Linux x86-64 address space by hand")
def test_module_loads_in_a_fragmented_address_space():
    # in a subprocess: the unfixed loader aborts the whole process
    result = subprocess.run([sys.executable, "-c", _FRAGMENTED_LOAD], cwd=ROOT,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "DLC_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loaded and ran" in result.stdout
