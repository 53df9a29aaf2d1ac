"""A short autotune of the GEMM blocking at first use, once per machine (as ATLAS / TVM do).

``compiler/codegen/blocking.py`` chooses ``MC``/``NC`` from the cache sizes;
the first compile in a process whose options leave the blocking to the CPU
calls :func:`ensure_tuned`, which reads the machine's choice from the cache
folder (``gemm-blocking-<key>.json`` beside the GEMM library, keyed by the CPU
name, its features, the dlc version and the code generator's sources) or, the
first time, times 2-3 candidates on one representative product and writes the
fastest there.  Then
it registers the choice (``blocking.choose``) for every later compile.  The
hot path never tunes: a compiled model's blocking is fixed in its code.

Every candidate gives bit-identical results (the blocking never changes a sum's
order), so the choice only changes speed.  ``DLC_AUTOTUNE=0`` disables it: the
rule's choice, and the cached one is neither read nor written.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compiler.codegen import blocking as B
from compiler.codegen.target import CodegenOptions, Target, host_target

from .cache import default_directory

ENV = "DLC_AUTOTUNE"
FORMAT = "dlc-gemm-blocking-1"
SHAPE = (1024, 1024, 1024)   # M, K, N of the representative product (several MC blocks, 3 K slices)
REPEATS = 3

Compiler = Callable[..., Any]   # runtime.compile (passed in: compiled.py calls this module)

_LOCK = threading.RLock()
_DONE: set[str] = set()


def enabled() -> bool:
    return os.environ.get(ENV, "1").strip() not in ("0", "off", "false", "no")


def choice_path(target: Target, directory: Path | None = None) -> Path:
    """Where the choice for ``target`` is kept (CPU name + features + dlc version + the code
    generator's sources, hashed: a change of the GEMM kernels, which may move the best
    blocking, tunes again, as it builds a new GEMM library)."""
    from compiler import __version__
    from compiler.codegen.cache import source_fingerprint

    parts = [FORMAT, target.cpu, target.features, __version__, source_fingerprint()]
    key = hashlib.sha256("|".join(parts).encode()).hexdigest()
    return (directory or default_directory()) / f"gemm-blocking-{key[:16]}.json"


def candidates() -> list[B.Blocking]:
    """The rule's choice, today's constants, and the rule's with half the rows (distinct)."""
    rule = B.blocking_for(B.read_cache_sizes())
    half = B.Blocking(max(B.MIN_MC, rule.mc // 2 // 16 * 16), rule.nc)
    out: list[B.Blocking] = []
    for c in (rule, B.DEFAULT, half):
        if c not in out:
            out.append(c)
    return out


def _matmul_module() -> Any:
    from compiler.ir.builder import new_function
    from compiler.ir.core import Module
    from compiler.ir.types import DType, TensorType

    f, bld = new_function("mm", [("a", TensorType(DType.f32, ("M", "K"))), ("b", TensorType(DType.f32, ("K", "N")))])
    f.outputs = [bld.matmul(f.params[0], f.params[1])]
    return Module([f])


def time_candidates(target: Target, cands: list[B.Blocking], compile_module: Compiler,
                    shape: tuple[int, int, int] = SHAPE, repeats: int = REPEATS) -> dict[str, float]:
    """The best CPU time (process time, all threads: the machine may be shared) of the
    product ``shape`` under each blocking, in seconds, by :meth:`Blocking.key`."""
    import numpy as np

    m, k, n = shape
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    mod = _matmul_module()
    out: dict[str, float] = {}
    for cand in cands:
        fn = compile_module(mod, cache=False, passes="", options=CodegenOptions(target=target, blocking=cand))["mm"]
        fn(a, b)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.process_time()
            fn(a, b)
            best = min(best, time.process_time() - t0)
        out[cand.key()] = best
    return out


def read_choice(path: Path) -> B.Blocking | None:
    """The blocking written at ``path``; None when missing or not a valid choice."""
    try:
        d = json.loads(path.read_text())
        if d.get("format") != FORMAT:
            return None
        return B.Blocking(int(d["choice"]["mc"]), int(d["choice"]["nc"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def tune(target: Target, path: Path, compile_module: Compiler, shape: tuple[int, int, int] = SHAPE) -> B.Blocking:
    """Time the candidates, write the fastest to ``path`` (best effort), return it."""
    cands = candidates()
    timings = time_candidates(target, cands, compile_module, shape)
    best = min(cands, key=lambda c: timings[c.key()])
    record = {"format": FORMAT, "cpu": target.cpu, "features": target.features, "shape": list(shape),
              "cpu_seconds": timings, "choice": {"mc": best.mc, "nc": best.nc}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record, indent=1) + "\n")
        tmp.replace(path)
    except OSError:
        pass   # an unwritable cache folder: tune again next process, never fail a compile
    return best


def ensure_tuned(options: CodegenOptions, compile_module: Compiler, directory: Path | None = None,
                 shape: tuple[int, int, int] = SHAPE) -> B.Blocking | None:
    """Register this machine's tuned blocking, once per process, when ``options`` leave it to
    the host CPU and tuning is enabled; returns the choice (None: the rule applies).
    ``compile_module`` is ``runtime.compile`` (it compiles the candidates)."""
    if options.blocking is not None or options.target != host_target() or not enabled():
        return None
    target = options.target
    with _LOCK:
        if B.target_key(target) in _DONE:
            return None
        _DONE.add(B.target_key(target))
        path = choice_path(target, directory)
        choice = read_choice(path) or tune(target, path, compile_module, shape)
        B.choose(target, choice)
        return choice


def forget() -> None:
    """Back to the rule in this process (the next compile looks for a choice again)."""
    with _LOCK:
        for key in list(_DONE):
            _DONE.discard(key)
        B.choose(host_target(), None)


__all__ = ["ENV", "candidates", "choice_path", "ensure_tuned", "enabled", "forget", "read_choice", "time_candidates",
           "tune"]
