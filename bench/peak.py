"""The CPU's measured FMA peak, and what names the CPU, for bench/run.py's report.

:func:`fma_peak` compiles (with llvmlite, for the host CPU) a loop of
``CHAINS`` independent chains of vector FMAs -- ``acc_j = fma(acc_j, x, y)``
on the widest vectors dlc uses (zmm with AVX-512, else ymm) -- runs it on
this thread and divides its floating-point operations by the thread's CPU
time: GFLOP/s per core.  Enough independent chains hide the FMA latency
(4 cycles x 2 ports on Zen 4 and Intel cores: 8 in flight; 12 of 32 zmm
leave room), so the loop runs at the FMA throughput.  Each sgemm figure of
the report is shown as a fraction of it (times the thread count).

Run alone: ``python -m bench.peak`` prints the JSON of :func:`cpu_report`.
"""

from __future__ import annotations

import ctypes
import json
import re
import time
from pathlib import Path
from typing import Any

CHAINS = 12
ITERATIONS = 8_000_000     # x 12 chains x 16 lanes x 2 flops: ~3 GFLOP, ~13 ms at 250 GFLOP/s
REPEATS = 5
INTERESTING = ("sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512vnni", "avx512bf16",
               "avx512fp16", "amx-tile", "amx-bf16", "amx-int8", "avxvnni")


def _probe_ir(lanes: int, chains: int) -> str:
    """``void probe(i64 n, float x, float y, float* out)``: ``chains`` FMA chains, n steps."""
    from llvmlite import ir

    f32 = ir.FloatType()
    vec = ir.VectorType(f32, lanes)
    i64 = ir.IntType(64)
    mod = ir.Module("dlc.bench.peak")
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [i64, f32, f32, f32.as_pointer()]), "probe")
    n, x, y, out = fn.args
    fma = ir.Function(mod, ir.FunctionType(vec, [vec] * 3), f"llvm.fma.v{lanes}f32")
    entry, loop, done = (fn.append_basic_block(s) for s in ("entry", "loop", "done"))
    b = ir.IRBuilder(entry)

    def splat(v: ir.Value) -> ir.Value:
        one = b.insert_element(ir.Constant(vec, ir.Undefined), v, ir.Constant(ir.IntType(32), 0))
        return b.shuffle_vector(one, ir.Constant(vec, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), lanes),
                                                                                  [0] * lanes))

    vx, vy = splat(x), splat(y)
    start = [b.fadd(vy, splat(ir.Constant(f32, float(j)))) for j in range(chains)]
    b.branch(loop)
    b.position_at_end(loop)
    i = b.phi(i64)
    accs = [b.phi(vec) for _ in range(chains)]
    nxt = [b.call(fma, [acc, vx, vy]) for acc in accs]
    i2 = b.add(i, ir.Constant(i64, 1))
    i.add_incoming(ir.Constant(i64, 0), entry)
    i.add_incoming(i2, loop)
    for acc, s, v in zip(accs, start, nxt):
        acc.add_incoming(s, entry)
        acc.add_incoming(v, loop)
    b.cbranch(b.icmp_signed("<", i2, n), loop, done)
    b.position_at_end(done)
    total = nxt[0]
    for v in nxt[1:]:
        total = b.fadd(total, v)
    b.store(b.extract_element(total, ir.Constant(ir.IntType(32), 0)), out)
    b.ret_void()
    return str(mod)


def fma_peak(iterations: int = ITERATIONS, repeats: int = REPEATS, chains: int = CHAINS) -> dict[str, Any]:
    """The measured f32 FMA throughput of one core: ``gflops`` (best of ``repeats``, in
    this thread's CPU time), with the vector width and chain count it used."""
    import llvmlite.binding as llvm

    from compiler.codegen.target import ensure_llvm, host_target

    ensure_llvm()
    target = host_target()
    lanes = target.lanes()
    ref = llvm.parse_assembly(_probe_ir(lanes, chains))
    ref.verify()
    machine = llvm.Target.from_triple(target.triple).create_target_machine(
        cpu=target.cpu, features=target.features, opt=3)
    engine = llvm.create_mcjit_compiler(ref, machine)
    engine.finalize_object()
    probe = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_float, ctypes.c_float,
                             ctypes.POINTER(ctypes.c_float))(engine.get_function_address("probe"))
    sink = ctypes.c_float()
    probe(1000, 0.999, 1e-3, ctypes.byref(sink))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.thread_time()
        probe(iterations, 0.999, 1e-3, ctypes.byref(sink))
        best = min(best, time.thread_time() - t0)
    flops = 2.0 * iterations * chains * lanes
    return {"gflops": flops / max(best, 1e-9) / 1e9, "vector_bits": lanes * 32, "chains": chains,
            "seconds": best}


def cpu_name() -> str:
    """The CPU's marketing name (``/proc/cpuinfo``), else LLVM's name for it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    from compiler.codegen.target import host_target

    return host_target().cpu


def cpu_report(with_peak: bool = True) -> dict[str, Any]:
    """The CPU's name, LLVM name, features (all, and the SIMD ones that matter here), cache
    sizes, and (``with_peak``) the measured FMA peak."""
    from compiler.codegen import blocking
    from compiler.codegen.target import host_target

    target = host_target()
    enabled = {f[1:] for f in target.features.split(",") if f.startswith("+")}
    caches = blocking.read_cache_sizes()
    report: dict[str, Any] = {
        "name": cpu_name(), "llvm_cpu": target.cpu,
        "simd": [f for f in INTERESTING if f in enabled], "features": target.features,
        "caches": {"l1d": caches.l1d, "l2": caches.l2, "l3": caches.l3},
        "gemm_blocking_rule": blocking.blocking_for(caches).key(),
    }
    if with_peak:
        report["fma_peak"] = fma_peak()
    return report


def slug(cpu: dict[str, Any]) -> str:
    """A file name part naming the CPU: its name and LLVM's (``Intel(R) Xeon(R) Processor`` on
    Emerald Rapids -> ``intel-xeon-processor-emeraldrapids``)."""
    text = re.sub(r"\((r|tm)\)", "", f"{cpu['name']} {cpu['llvm_cpu']}".lower())
    text = re.sub(r"[^a-z0-9.]+", "-", text).strip("-")
    return text[:80] or "cpu"


def header(cpu: dict[str, Any]) -> str:
    """The table's first line: the CPU, its SIMD features and the measured peak."""
    peak = cpu.get("fma_peak")
    peak_text = (f"; FMA peak {peak['gflops']:.0f} GFLOP/s per core ({peak['vector_bits']}-bit, measured)"
                 if peak else "")
    return f"CPU: {cpu['name']} ({cpu['llvm_cpu']}); {', '.join(cpu['simd']) or 'no SIMD extensions'}{peak_text}"


if __name__ == "__main__":
    print(json.dumps(cpu_report(), indent=1))
