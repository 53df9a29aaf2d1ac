"""Low-precision products against the widened and f32 paths, one thread, CPU time.

``python -m bench.matmul_lowp [SIZE ...]`` times, interleaved call by call in one process
(best of 7, ``time.process_time``: the machine may be shared), ``matmul(a, b, dtype=i32)``
(AVX-512 VNNI where the CPU has it) against ``cast(a, i32) @ cast(b, i32)`` (the widening
path), an i32 GEMM on pre-widened operands and the f32 ``a @ b``; and
``matmul(a, b, precision="bf16")`` (AVX-512 BF16) against the f32 ``a @ b``.  Square
products of each SIZE (default 512 1024), then a few model shapes.  docs/codegen.md,
"Low-precision GEMM", has the numbers.
"""

from __future__ import annotations

import sys
import time

import numpy as np

import runtime
from compiler.codegen import threads

SOURCE = """
fn vnni(a: u8[M, K], b: i8[K, N]) -> i32[M, N] { return matmul(a, b, dtype=i32) }
fn vnni_s(a: i8[M, K], b: i8[K, N]) -> i32[M, N] { return matmul(a, b, dtype=i32) }
fn wide(a: u8[M, K], b: i8[K, N]) -> i32[M, N] { return cast(a, i32) @ cast(b, i32) }
fn i32mm(a: i32[M, K], b: i32[K, N]) -> i32[M, N] { return a @ b }
fn sgemm(a: f32[M, K], b: f32[K, N]) -> f32[M, N] { return a @ b }
fn bf16(a: f32[M, K], b: f32[K, N]) -> f32[M, N] { return matmul(a, b, precision="bf16") }
"""

SHAPES = [(1, 512, 1000), (32, 784, 128), (128, 784, 512), (1024, 64, 1024), (1024, 4096, 64)]


def main(sizes: list[int]) -> None:
    mod = runtime.compile(SOURCE, cache=False)
    threads.set_num_threads(mod._library, 1)
    rng = np.random.default_rng(0)
    shapes = [(n, n, n) for n in sizes] + SHAPES
    for m, k, n in shapes:
        au = rng.integers(0, 256, (m, k)).astype(np.uint8)
        bi = rng.integers(-128, 128, (k, n)).astype(np.int8)
        af = rng.standard_normal((m, k)).astype(np.float32)
        bf = rng.standard_normal((k, n)).astype(np.float32)
        cases = {"int8 vnni u8xi8": (mod["vnni"], au, bi), "int8 vnni i8xi8": (mod["vnni_s"], au.view(np.int8), bi),
                 "widened (cast + i32)": (mod["wide"], au, bi),
                 "i32 gemm": (mod["i32mm"], au.astype(np.int32), bi.astype(np.int32)),
                 "f32 sgemm": (mod["sgemm"], af, bf), "precision=bf16": (mod["bf16"], af, bf)}
        reps = max(1, int(2e8 / (m * n * k + 1)))
        best = dict.fromkeys(cases, float("inf"))
        for _ in range(7):
            for name, (f, x, y) in cases.items():
                start = time.process_time()
                for _ in range(reps):
                    f(x, y)
                best[name] = min(best[name], (time.process_time() - start) / reps)
        print(f"{m}x{k}x{n}:")
        for name, t in best.items():
            print(f"  {name:22s} {t * 1e3:9.3f} ms  {2 * m * n * k / t / 1e9:7.1f} GOP/s  "
                  f"x{best['widened (cast + i32)'] / t:5.2f} widened  x{best['f32 sgemm'] / t:5.2f} sgemm")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [512, 1024])
