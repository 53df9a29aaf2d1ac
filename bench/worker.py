"""A benchmark worker: one process per implementation family and thread count.

``bench.run`` starts ``python -m bench.worker --family F --threads N`` with the
environment from :func:`worker_env` and talks to it in JSON lines (requests on
stdin, one reply line each on the original stdout; anything the libraries
print goes to stderr).  Requests:

``{"cmd": "describe"}``
    versions, thread settings, BLAS kernel, CPU affinity.
``{"cmd": "prepare", "impl": I, "case": C, "target_s": T, "warmup_s": W, "warmup_calls": K}``
    build and check the runnable, call it once (``first_call_s``: compile
    time for JIT peers), warm up (K calls and W seconds at least), and pick the number of
    calls per measurement so that one lasts about ``T`` seconds.
``{"cmd": "time", "impl": I, "case": C}``
    one measurement: an untimed call (short calls only), then ``n`` timed
    calls; replies with seconds per call, the CPU time this process used
    (``cpu_s``, all threads), from which the orchestrator tells how busy the
    machine was with other work meanwhile, and the CPU time per timed call
    (``cpu_per_call_s``: a figure that waiting for a core does not inflate).
``{"cmd": "release", "impl": I, "case": C}`` and ``{"cmd": "quit"}``.

Failures reply ``{"ok": false, "reason": ...}``; the worker keeps serving.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from typing import IO, Any

OPENBLAS_TUNING_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
FAMILY_MODULES = {"dlc": "dlc_impl", "numpy": "numpy_impl", "torch": "torch_impl", "jax": "jax_impl"}
SHORT_CALL_S = 0.05   # calls shorter than this get an untimed call before each measurement


def worker_env(family: str, threads: int, base: dict[str, str]) -> dict[str, str]:
    """The environment a worker of ``family`` runs with at ``threads`` threads.

    Only numpy's worker loses OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (they select
    a slower OpenBLAS kernel); every other worker keeps the environment as is.
    dlc gets DLC_NUM_THREADS; JAX gets its thread flags in XLA_FLAGS, which it
    reads at import.
    """
    env = dict(base)
    env["PYTHONUNBUFFERED"] = "1"
    if family == "numpy":
        for var in OPENBLAS_TUNING_VARS:
            env.pop(var, None)
    elif family == "dlc":
        env["DLC_NUM_THREADS"] = str(threads)
    elif family == "jax":
        env["JAX_PLATFORMS"] = "cpu"
        flags = env.get("XLA_FLAGS", "")
        if threads == 1:
            flags = (flags + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()
        env["XLA_FLAGS"] = flags
    return env


def pin_to_cpus(threads: int) -> list[int]:
    """Restrict this process to its first ``threads`` allowed CPUs; returns them.

    Libraries that size their pools from the CPU count then see ``threads``
    cores, and a 1-thread run cannot borrow the second core.
    """
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[:max(1, threads)]
    os.sched_setaffinity(0, chosen)
    return chosen


def os_thread_count() -> int | None:
    """Threads this process has now (``/proc/self/task``): evidence of what the thread settings did."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


class Worker:
    """Holds prepared runnables of one family and answers requests."""

    def __init__(self, family: str, threads: int, cpus: list[int]) -> None:
        self.family = family
        self.threads = threads
        self.cpus = cpus
        self.module: Any = None
        self.load_error: str | None = None
        try:
            self.module = importlib.import_module(f"bench.peers.{FAMILY_MODULES[family]}")
            self.module.limit_threads(threads)
        except Exception as e:
            self.load_error = f"{family} not importable: {type(e).__name__}: {e}"
        # (impl, case) -> (runnable, calls per measurement, seconds per call at warm-up)
        self.runnables: dict[tuple[str, str], tuple[Callable[[], object], int, float]] = {}

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer one request (see the module docstring)."""
        cmd = request.get("cmd")
        if cmd == "describe":
            return {"ok": True, "info": self.describe()}
        if self.load_error is not None:
            return {"ok": False, "reason": self.load_error}
        key = (str(request.get("impl", "")), str(request.get("case", "")))
        if cmd == "prepare":
            return self.prepare(key, float(request["target_s"]), float(request["warmup_s"]),
                                int(request.get("warmup_calls", 2)))
        if cmd == "time":
            return self.time(key)
        if cmd == "release":
            self.runnables.pop(key, None)
            gc.collect()
            return {"ok": True}
        return {"ok": False, "reason": f"unknown command {cmd!r}"}

    def describe(self) -> dict[str, Any]:
        """Common facts (threads, CPUs, BLAS as threadpoolctl sees it) plus the family's own."""
        from .peers.numpy_impl import blas_info
        info: dict[str, Any] = {
            "family": self.family, "threads": self.threads, "cpus": self.cpus,
            "python": sys.version.split()[0],
            "env": {v: os.environ.get(v) for v in (*OPENBLAS_TUNING_VARS, "DLC_NUM_THREADS", "XLA_FLAGS")},
            "numpy_blas": blas_info(),
        }
        if self.load_error is not None:
            info["error"] = self.load_error
        else:
            info.update(self.module.describe(self.threads))
        return info

    def prepare(self, key: tuple[str, str], target_s: float, warmup_s: float,
                warmup_calls: int) -> dict[str, Any]:
        """Build, check and warm up a runnable; choose calls per measurement.

        After the first call, at least ``warmup_calls`` calls and ``warmup_s``
        seconds of warm-up; their mean time per call sets ``n``.
        """
        from .cases import BY_ID
        from .peers import Unavailable
        impl, case_id = key
        start = time.perf_counter()
        try:
            run = self.module.build(impl, BY_ID[case_id])
            built = time.perf_counter()
            run()
        except Unavailable as e:
            return {"ok": False, "reason": str(e)}
        first = time.perf_counter()
        calls, warm_start = 0, time.perf_counter()
        while calls < warmup_calls or time.perf_counter() - warm_start < warmup_s:
            run()
            calls += 1
        per_call = (time.perf_counter() - warm_start) / calls
        n = max(1, round(target_s / per_call))
        self.runnables[key] = (run, n, per_call)
        return {"ok": True, "n": n, "build_s": built - start, "first_call_s": first - built,
                "per_call_s": per_call, "os_threads": os_thread_count()}

    def time(self, key: tuple[str, str]) -> dict[str, Any]:
        """One measurement: seconds per call over ``n`` calls, garbage collector off."""
        if key not in self.runnables:
            return {"ok": False, "reason": f"{key} was not prepared"}
        run, n, per_call = self.runnables[key]
        cpu_start = time.process_time()
        gc.collect()
        gc.disable()
        try:
            if per_call < SHORT_CALL_S:
                run()      # wakes thread pools and caches after the other workers ran
            start, cpu_loop = time.perf_counter(), time.process_time()
            for _ in range(n):
                run()
            seconds = (time.perf_counter() - start) / n
            cpu_per_call = (time.process_time() - cpu_loop) / n
        finally:
            gc.enable()
        return {"ok": True, "seconds": seconds, "n": n, "cpu_s": time.process_time() - cpu_start,
                "cpu_per_call_s": cpu_per_call}


def serve(worker: Worker, requests: IO[str], replies: IO[str]) -> None:
    """Answer JSON-line requests until ``quit`` or end of input."""
    for line in requests:
        if not line.strip():
            continue
        request = json.loads(line)
        if request.get("cmd") == "quit":
            break
        try:
            reply = worker.handle(request)
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            first_line = (str(e).strip().splitlines() or [""])[0]
            reply = {"ok": False, "reason": f"{type(e).__name__}: {first_line}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench.worker``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", required=True, choices=sorted(FAMILY_MODULES))
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args(argv)
    cpus = pin_to_cpus(args.threads)
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())   # library prints cannot corrupt replies
    serve(Worker(args.family, args.threads, cpus), sys.stdin, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
