"""Benchmark dlc against numpy, PyTorch (eager and torch.compile) and JAX.

    python bench/run.py --setup      # first time: create bench/.venv with the peers
    python bench/run.py              # every case, 1 and 2 threads (~10 min)
    python bench/run.py --quick      # fewer cases and repetitions (< 2 min)

Each figure is the median of repeated measurements after warm-up.  All
implementations of a case are measured in the same run, interleaved: every
repetition times each implementation once, in rotating order, each in its
own long-lived worker process (one per library and thread count; see
bench/worker.py).  Prints a markdown table with the issue's targets
(PASS/MISS) and writes every number, sample and setting to a JSON file.

This orchestrator needs only the standard library; the workers run in the
bench venv (``--setup``) or the interpreter given with ``--python``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):          # run as a script: python bench/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import cases as C  # noqa: E402
from bench.client import REPO_ROOT, WorkerClient, WorkerFailed  # noqa: E402
from bench.report import Result, summary, table, to_json  # noqa: E402
from bench.setup_env import VENV_DIR, setup, venv_python  # noqa: E402
from bench.worker import worker_env  # noqa: E402

OUT = REPO_ROOT / "bench" / "out"   # every run's JSON, named after the CPU it ran on


@dataclass(frozen=True)
class Settings:
    """Repetitions and durations of one run."""

    reps: int              # interleaved repetitions per case (median taken)
    target_s: float        # about how long one measurement lasts
    warmup_s: float        # warm-up time after the first call
    epoch_reps: int        # repetitions of the (long) epoch case
    compile_reps: int      # cold + warm compile measurements
    quiet_wait_s: float    # how long to wait for a quiet machine before each measurement
    quiet_cores: float = 0.25   # "quiet": other work keeps at most this many cores busy
    quiet_window_s: float = 0.05
    prepare_timeout_s: float = 900.0


DEFAULT_SETTINGS = Settings(reps=7, target_s=0.1, warmup_s=0.2, epoch_reps=3, compile_reps=3,
                            quiet_wait_s=1.0)
QUICK_SETTINGS = Settings(reps=3, target_s=0.03, warmup_s=0.05, epoch_reps=2, compile_reps=1,
                          quiet_wait_s=0.3)
GIVE_UP_AFTER = 3   # consecutive waits in vain: the machine is busy, stop waiting this case

PEER_CHOICES = ("numpy", "torch", "torch.eager", "torch.compile", "jax")


class UsageError(Exception):
    """A bad command-line value; printed as ``error: ...``."""


def parse_peers(text: str | None, quick: bool) -> tuple[str, ...]:
    """``--peers`` to implementation names, in table order.

    ``torch`` means eager and torch.compile, except under ``--quick``, where
    torch.compile (tens of seconds of compiling) runs only if named.
    """
    names = [n.strip() for n in (text or "numpy,torch,jax").split(",") if n.strip()]
    chosen: set[str] = set()
    for name in names:
        if name not in PEER_CHOICES:
            raise UsageError(f"unknown peer {name!r}; choose from {', '.join(PEER_CHOICES)}")
        if name == "torch":
            chosen.add(C.TORCH)
            if not quick:
                chosen.add(C.TORCH_COMPILE)
        elif name == "torch.eager":
            chosen.add(C.TORCH)
        else:
            chosen.add(name)
    return tuple(p for p in C.PEERS if p in chosen)


def parse_threads(text: str) -> tuple[int, ...]:
    """``--threads 1,2`` to a sorted tuple of positive ints."""
    try:
        counts = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise UsageError(f"--threads takes a comma-separated list of integers, got {text!r}") from None
    if not counts or counts[0] < 1:
        raise UsageError("--threads needs at least one positive thread count")
    return tuple(counts)


def log(message: str) -> None:
    """Progress, on stderr so the table on stdout stays clean."""
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# Worker cases: interleaved repetitions across the worker processes


class Session:
    """The worker processes of one thread count, started on first use."""

    def __init__(self, python: str, threads: int, env: dict[str, str]) -> None:
        self.python, self.threads, self.env = python, threads, env
        self.clients: dict[str, WorkerClient] = {}

    def client(self, family: str) -> WorkerClient:
        if family not in self.clients:
            self.clients[family] = WorkerClient(self.python, family, self.threads, self.env)
        return self.clients[family]

    def describe(self, families: list[str]) -> dict[str, Any]:
        out = {}
        for family in families:
            try:
                out[family] = self.client(family).request({"cmd": "describe"}, 300)["info"]
            except WorkerFailed as e:
                out[family] = {"error": str(e)}
        return out

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def measure(session: Session, case: C.Case, impls: tuple[str, ...], settings: Settings) -> Result:
    """Prepare every implementation, then time them interleaved; medians into a Result."""
    result = Result(case, session.threads)
    ready = prepare_all(session, case, impls, settings, result)
    reps = settings.epoch_reps if case.is_epoch else settings.reps
    seconds: dict[str, list[float]] = {impl: [] for impl in ready}
    cpu: dict[str, list[float]] = {impl: [] for impl in ready}
    in_vain = 0
    for rep in range(reps):
        for impl in rotated(list(ready), rep):
            if impl in result.na:
                continue
            if wait_for_quiet(settings, settings.quiet_wait_s if in_vain < GIVE_UP_AFTER else 0.0):
                in_vain = 0
            else:
                in_vain += 1
            expected = ready[impl]["per_call_s"] * ready[impl]["n"]
            busy_before, start = machine_busy_seconds(), time.perf_counter()
            reply = _ask(session, impl, {"cmd": "time", "impl": impl, "case": case.id},
                         max(120.0, 20 * expected), result)
            if reply is not None:
                seconds[impl].append(reply["seconds"])
                if reply.get("cpu_per_call_s"):
                    cpu[impl].append(reply["cpu_per_call_s"])
                others = machine_busy_seconds() - busy_before - reply["cpu_s"]
                result.background.append(max(0.0, others) / (time.perf_counter() - start))
    for impl in ready:
        if impl not in result.na and seconds[impl]:
            result.add_samples(impl, [case.figure(s) for s in seconds[impl]])
            if cpu[impl]:
                result.add_cpu_samples(impl, [case.figure(s) for s in cpu[impl]])
        _ask(session, impl, {"cmd": "release", "impl": impl, "case": case.id}, 60, result, quiet=True)
    return result


def prepare_all(session: Session, case: C.Case, impls: tuple[str, ...], settings: Settings,
                result: Result) -> dict[str, dict[str, Any]]:
    """Build, check and warm up each implementation of ``case``; the prepared ones' replies.

    An epoch is warmed up by one call and timed one call at a time.
    """
    is_epoch = case.is_epoch
    ready = {}
    for impl in impls:
        if impl not in case.impls:
            continue
        reply = _ask(session, impl, {"cmd": "prepare", "impl": impl, "case": case.id,
                                     "target_s": 0.0 if is_epoch else settings.target_s,
                                     "warmup_s": 0.0 if is_epoch else settings.warmup_s,
                                     "warmup_calls": 1 if is_epoch else 2},
                     settings.prepare_timeout_s, result)
        if reply is not None:
            ready[impl] = reply
            result.extras[impl] = {k: reply[k] for k in ("build_s", "first_call_s", "per_call_s", "n",
                                                         "os_threads")}
    return ready


def machine_busy_seconds() -> float:
    """CPU-seconds all CPUs have spent busy since boot (``/proc/stat``; 0 where unreadable)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(settings: Settings, max_wait_s: float) -> bool:
    """Wait until other work keeps at most ``settings.quiet_cores`` cores busy.

    Samples ``/proc/stat`` over windows of ``quiet_window_s`` (at least one,
    which also lets the last worker's spinning threads go to sleep: OpenBLAS
    spins about 0.1 s after a call).  Returns whether it got quiet within
    ``max_wait_s``.
    """
    deadline = time.perf_counter() + max_wait_s
    while True:
        before = machine_busy_seconds()
        time.sleep(settings.quiet_window_s)
        if (machine_busy_seconds() - before) / settings.quiet_window_s <= settings.quiet_cores:
            return True
        if time.perf_counter() >= deadline:
            return False


def rotated(items: list[str], shift: int) -> list[str]:
    """``items`` rotated left by ``shift``: who goes first changes every repetition."""
    if not items:
        return []
    shift %= len(items)
    return items[shift:] + items[:shift]


def _ask(session: Session, impl: str, request: dict[str, Any], timeout_s: float, result: Result,
         quiet: bool = False) -> dict[str, Any] | None:
    """Send a request; on failure record the reason as this implementation's n/a."""
    family = C.FAMILY[impl]
    try:
        reply = session.client(family).request(request, timeout_s)
    except WorkerFailed as e:
        if quiet:
            return None
        # The worker is gone, and with it whatever it had prepared for this case.
        for other in C.IMPLS:
            if C.FAMILY[other] == family and (other == impl or other in result.extras):
                result.na.setdefault(other, str(e))
        return None
    if reply.get("ok"):
        return reply
    if not quiet:
        result.na.setdefault(impl, reply.get("reason", "failed"))
    return None


def describe_result(result: Result) -> str:
    """One progress line: figures and n/a reasons."""
    parts = [f"{impl} {value:.4g}" for impl, value in result.figures.items()]
    parts += [f"{impl} n/a ({reason})" for impl, reason in result.na.items()]
    threads = f"[{result.threads} thr] " if result.threads else ""
    return f"{threads}{result.case.id} ({result.case.unit}): " + ", ".join(parts)


# ---------------------------------------------------------------------------
# Process cases: compile time, peak memory


def run_json(command: list[str], env: dict[str, str], timeout_s: float = 900) -> dict[str, Any]:
    """Run a ``bench.oneshot`` command; its last stdout line is JSON."""
    try:
        proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True,
                              text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"ok": False, "reason": f"timed out after {timeout_s:g} s"}
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"ok": False, "reason": f"exit code {proc.returncode}: {tail}"}


PACKAGES = ("compiler", "runtime", "frontend_dsl", "dlc")   # what `pip install .` byte-compiles


def byte_compile(python: str) -> None:
    """Compile the project's Python bytecode, as ``pip install`` does for an installed dlc.
    The processes below import dlc from this tree; where PYTHONDONTWRITEBYTECODE is set
    (as on the machines this project runs on) nothing would ever write the bytecode, and
    each fresh process would compile dlc's sources again (measured: cold 0.43 -> 0.38 s,
    import 151 -> 102 ms)."""
    subprocess.run([python, "-m", "compileall", "-q", *PACKAGES], cwd=REPO_ROOT, check=False,
                   capture_output=True)


def measure_compile(python: str, env: dict[str, str], settings: Settings) -> list[Result]:
    """dlc's ``load_model`` of the bench MLP and its first step in fresh processes (the
    bytecode compiled first: :func:`byte_compile`): cold (every cache entry
    but the GEMM library's, which is built once per machine, removed), then warm.  The
    first use on a fresh machine (an empty cache: the library compiles too) is kept in
    the cold row's extras as ``first_use_s``.  XOR's row: cold as the MLP's, in the same
    cache after the MLP's warm run.  The import row: each of those processes' import of
    dlc's runtime and compiler (``import_s``)."""
    byte_compile(python)
    cold, warm, imports = Result(C.COMPILE_COLD, 0), Result(C.COMPILE_WARM, 0), Result(C.COMPILE_IMPORT, 0)
    xor = Result(C.COMPILE_XOR, 0)
    rows = {"cold": cold, "warm": warm, "xor": xor}
    samples: dict[str, list[float]] = {kind: [] for kind in rows}
    extras: dict[str, list[dict]] = {kind: [] for kind in rows}
    import_s: list[float] = []
    compile_cmd = [python, "-m", "bench.oneshot", "compile"]
    for _ in range(settings.compile_reps):
        with tempfile.TemporaryDirectory(prefix="dlc-bench-cache-") as cache:
            run_env = {**env, "DLC_CACHE_DIR": cache}
            first = run_json(compile_cmd, run_env)
            run_json([python, "-m", "bench.oneshot", "forget-models"], run_env)
            for kind in ("cold", "warm", "xor"):
                if kind == "xor":
                    run_json([python, "-m", "bench.oneshot", "forget-models"], run_env)
                reply = run_json(compile_cmd + (["--model", "xor"] if kind == "xor" else []), run_env)
                if kind == "cold" and first.get("ok"):
                    reply["first_use_s"] = first["seconds"]
                if not reply.get("ok"):
                    rows[kind].na[C.DLC] = reply.get("reason", "failed")
                    continue
                samples[kind].append(reply["seconds"])
                extras[kind].append({k: v for k, v in reply.items() if k != "ok"})
                import_s.append(reply["import_s"])
    for kind, result in rows.items():
        if samples[kind] and C.DLC not in result.na:
            result.add_samples(C.DLC, [result.case.figure(s) for s in samples[kind]])
            result.extras[C.DLC] = extras[kind]
    if import_s:
        imports.add_samples(C.DLC, [imports.case.figure(s) for s in import_s])
    else:
        imports.na[C.DLC] = cold.na.get(C.DLC, "no compile process succeeded")
    return [cold, xor, warm, imports]


def measure_memory(python: str, impls: tuple[str, ...], threads: int,
                   env: dict[str, str]) -> Result:
    """Peak RSS of one training epoch per implementation, each in its own process."""
    result = Result(C.MEMORY, 0)
    for impl in impls:
        if impl not in C.MEMORY.impls:
            continue
        child = [python, "-m", "bench.oneshot", "train", "--impl", impl, "--threads", str(threads)]
        reply = run_json([python, "-m", "bench.oneshot", "peak-rss", "--", *child],
                         worker_env(C.FAMILY[impl], threads, env))
        child_reply = reply.get("child") or {}
        if reply.get("ok") and child_reply.get("ok"):
            result.add_samples(impl, [reply["peak_rss_mb"]])
            result.extras[impl] = {"epoch_s": child_reply.get("seconds"), "threads": threads}
        else:
            result.na[impl] = child_reply.get("reason") or reply.get("reason") or \
                f"training process failed (exit code {reply.get('returncode')})"
    return result


def speedup(results: list[Result]) -> Result | None:
    """The 2-thread / 1-thread ratio of sgemm 1024 for every implementation measured at both."""
    by_threads = {r.threads: r for r in results if r.case.id == "sgemm-1024"}
    if 1 not in by_threads or 2 not in by_threads:
        return None
    row = Result(C.SPEEDUP, 0, background=by_threads[1].background + by_threads[2].background)
    for impl in C.SPEEDUP.impls:
        one, two = by_threads[1].figures.get(impl), by_threads[2].figures.get(impl)
        if one and two:
            row.figures[impl] = two / one
        elif impl in by_threads[1].na or impl in by_threads[2].na:
            row.na[impl] = by_threads[1].na.get(impl) or by_threads[2].na[impl]
    return row


def slowdowns(results: list[Result]) -> list[Result]:
    """For each training-step and inference case measured at 1 and 2 threads: dlc's
    2-thread time over its 1-thread time (the target: at most 1, never slower on 2 threads)."""
    rows = []
    for case_id, scaling in C.SCALING.items():
        by_threads = {r.threads: r for r in results if r.case.id == case_id}
        if 1 not in by_threads or 2 not in by_threads:
            continue
        one, two = by_threads[1], by_threads[2]
        row = Result(scaling, 0, background=one.background + two.background)
        if one.figures.get(C.DLC) and two.figures.get(C.DLC):
            row.figures[C.DLC] = two.figures[C.DLC] / one.figures[C.DLC]
        else:
            row.na[C.DLC] = one.na.get(C.DLC) or two.na.get(C.DLC) or "not measured"
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------
# The run


def system_info() -> dict[str, Any]:
    """CPU, cores, OS, Python, commit, load and the BLAS-tuning variables as set here."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                            capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": sys.version.split()[0], "commit": commit or None,
            "loadavg": list(os.getloadavg()),
            "env": {v: os.environ.get(v) for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                    "DLC_NUM_THREADS", "XLA_FLAGS")}}


def order_results(results: list[Result]) -> list[Result]:
    """Table order: cases as in bench/cases.py, each case's thread counts ascending."""
    index = {c.id: i for i, c in enumerate(C.ALL_CASES)}
    index[C.SPEEDUP.id] = index["sgemm-dh"] + 0.5
    for case_id, scaling in C.SCALING.items():
        index[scaling.id] = index[case_id] + 0.5
    return sorted(results, key=lambda r: (index[r.case.id], r.threads))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the selected cases; returns the report as JSON-ready data."""
    settings = QUICK_SETTINGS if args.quick else DEFAULT_SETTINGS
    if args.reps:
        settings = Settings(**{**asdict(settings), "reps": args.reps, "epoch_reps": args.reps})
    selected = C.select(args.cases.split(",") if args.cases else None, args.quick)
    threads = parse_threads(args.threads)
    impls = (C.DLC, *parse_peers(args.peers, args.quick))
    python = args.python or (str(venv_python()) if venv_python().exists() else sys.executable)
    env = dict(os.environ)
    log(f"interpreter {python}; implementations {', '.join(impls)}; threads {threads}; "
        f"{len(selected)} cases")
    started = datetime.datetime.now(datetime.UTC)
    info = system_info()
    cpu = measure_cpu(python, env)
    peak = (cpu.get("fma_peak") or {}).get("gflops")
    if peak:
        log(f"{cpu['name']} ({cpu['llvm_cpu']}): FMA peak {peak:.0f} GFLOP/s per core")
    results: list[Result] = []
    workers: dict[int, Any] = {}
    worker_cases = [c for c in selected if c in C.WORKER_CASES]
    families = sorted({C.FAMILY[i] for i in impls})
    for n in threads if worker_cases else ():
        session = Session(python, n, env)
        try:
            workers[n] = session.describe(families)
            for case in worker_cases:
                result = measure(session, case, impls, settings)
                log(describe_result(result))
                results.append(result)
        finally:
            session.close()
    extra = speedup(results)
    if extra is not None:
        results.append(extra)
    results += slowdowns(results)
    base = worker_env("dlc", max(threads), env)
    if any(c in selected for c in (C.COMPILE_COLD, C.COMPILE_XOR, C.COMPILE_WARM, C.COMPILE_IMPORT)):
        for result in measure_compile(python, base, settings):
            if result.case in selected:
                log(describe_result(result))
                results.append(result)
    if C.MEMORY in selected:
        result = measure_memory(python, impls, max(threads), env)
        log(describe_result(result))
        results.append(result)
    results = order_results(results)
    info["loadavg_end"] = list(os.getloadavg())
    return {
        "date": started.isoformat(timespec="seconds"),
        "seconds": (datetime.datetime.now(datetime.UTC) - started).total_seconds(),
        "command": " ".join(["python bench/run.py", *sys.argv[1:]]),
        "interpreter": python, "system": info, "cpu": cpu, "settings": asdict(settings),
        "threads": list(threads), "implementations": list(impls), "workers": workers,
        "summary": summary(results), "results": [to_json(r, peak) for r in results],
        "table": table(results, impls, peak, cpu_header(cpu)),
    }


def measure_cpu(python: str, env: dict[str, str]) -> dict[str, Any]:
    """The CPU's name, features and measured FMA peak (bench/peak.py, in a process of its own);
    the name alone (from here) when that fails."""
    cpu = run_json([python, "-m", "bench.oneshot", "cpu"], env, timeout_s=120)
    if "name" in cpu:
        return cpu
    log(f"the FMA peak probe failed: {cpu.get('reason')}")
    return {"name": system_info()["cpu"], "llvm_cpu": "?", "simd": [], "features": ""}


def cpu_header(cpu: dict[str, Any]) -> str:
    """The table's first line: the CPU, its SIMD features and the measured peak."""
    from bench.peak import header
    return header(cpu)


def default_json(report: dict[str, Any]) -> Path:
    """``bench/out/<cpu>-<date>.json``: one file per run, named after its CPU, so figures from
    different CPUs are never mixed."""
    from bench.peak import slug
    stamp = report["date"].replace(":", "").replace("+0000", "Z")
    return OUT / f"{slug(report['cpu'])}-{stamp}.json"


README = REPO_ROOT / "bench" / "README.md"
README_HEADING = "## Last measured"


def _versions(report: dict[str, Any]) -> str:
    """Peer versions, BLAS kernel and LLVM CPU from the workers' descriptions."""
    parts = []
    for _threads, families in sorted(report["workers"].items()):
        dlc, numpy_, torch_, jax_ = (families.get(f, {}) for f in ("dlc", "numpy", "torch", "jax"))
        blas = [b for b in numpy_.get("blas", []) if b.get("internal_api") == "openblas"]
        if blas:
            parts.append(f"numpy {numpy_.get('numpy')} with OpenBLAS {blas[0].get('version')}, "
                         f"{blas[0].get('architecture')} kernel")
        if "torch" in torch_:
            parts.append(f"torch {torch_['torch']} ({torch_.get('cpu_capability')})")
        if "jax" in jax_:
            parts.append(f"jax {jax_['jax']}")
        if "llvm_host_cpu" in dlc:
            parts.append(f"LLVM host CPU {dlc['llvm_host_cpu']}")
        break   # the same at every thread count
    return "; ".join(parts)


def readme_section(report: dict[str, Any]) -> str:
    """The "Last measured" section: when, where, how, and the table."""
    system = report["system"]
    load = f"{system['loadavg'][0]:.1f} at the start, {system['loadavg_end'][0]:.1f} at the end"
    blas_env = ", ".join(f"{k}={v}" for k, v in system["env"].items()
                         if k.startswith("OPENBLAS") and v) or "not set"
    counts = report["summary"]
    return "\n".join([
        README_HEADING, "",
        f"- date: {report['date']} (UTC), commit {system['commit']}, {report['seconds'] / 60:.1f} minutes",
        f"- CPU: {system['cpu']}, {system['cores']} cores; {_versions(report)}",
        f"- command: `{report['command']}`; threads {', '.join(map(str, report['threads']))}",
        f"- load average (1 min): {load}; OPENBLAS tuning variables in the environment: {blas_env}",
        "", report["table"], "",
        f"Targets: {counts['PASS']} PASS, {counts['MISS']} MISS, {counts['n/a']} n/a.", ""])


def update_readme(report: dict[str, Any], path: Path = README) -> None:
    """Replace everything from the "Last measured" heading on with this run's section."""
    text = path.read_text()
    head = text.split(README_HEADING)[0].rstrip("\n")
    path.write_text(head + "\n\n" + readme_section(report))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python bench/run.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"case groups: {', '.join(C.GROUPS)}; case ids: "
               + ", ".join(c.id for c in C.ALL_CASES))
    parser.add_argument("--setup", action="store_true",
                        help=f"create or refresh the bench venv ({VENV_DIR.relative_to(REPO_ROOT)}) first")
    parser.add_argument("--setup-only", action="store_true", help="set up the venv, then stop")
    parser.add_argument("--quick", action="store_true", help="fewer cases and repetitions (< 2 min)")
    parser.add_argument("--cases", help="comma-separated case ids or groups (default: all)")
    parser.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    parser.add_argument("--peers", help=f"comma-separated, from {', '.join(PEER_CHOICES)} "
                                        "(default numpy,torch,jax)")
    parser.add_argument("--json", type=Path,
                        help="where to write the JSON report (default bench/out/<cpu>-<date>.json)")
    parser.add_argument("--reps", type=int, help="repetitions per case (overrides the default)")
    parser.add_argument("--python", help="interpreter for the workers (default: the bench venv's)")
    parser.add_argument("--update-readme", action="store_true",
                        help="write this run into the 'Last measured' section of bench/README.md")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse options, optionally set up the venv, run, print, write JSON."""
    args = build_parser().parse_args(argv)
    try:
        if args.setup or args.setup_only:
            setup()
            if args.setup_only:
                return 0
        report = run(args)
    except (UsageError, C.UnknownCase) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as e:
        print(f"error: {' '.join(map(str, e.cmd))} failed with exit code {e.returncode}", file=sys.stderr)
        return 1
    path = args.json or default_json(report)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    if args.update_readme:
        update_readme(report)
    print(report["table"])
    counts = report["summary"]
    print(f"\ntargets: {counts['PASS']} PASS, {counts['MISS']} MISS, {counts['n/a']} n/a; "
          f"{report['seconds']:.0f} s; JSON in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
