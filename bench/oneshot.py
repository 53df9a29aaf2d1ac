"""One-shot measurements that need a process of their own.

``python -m bench.oneshot compile [--model xor]``
    time ``load_model`` of the bench MLP (or of ``examples/xor.dl``) and its first
    training step in a fresh process (the cache
    directory comes from DLC_CACHE_DIR, set by the caller: empty for a cold
    compile, filled for a warm one).
``python -m bench.oneshot forget-models``
    delete every entry of the cache in DLC_CACHE_DIR but the GEMM library's
    (compiled once per machine, ``compiler/codegen/library.py``): what a
    model's first compile finds on a machine where dlc has run before.
``python -m bench.oneshot train --impl I --threads N``
    one training epoch on MNIST (batch 128) with implementation ``I``.
``python -m bench.oneshot cpu``
    the CPU's name, features and measured FMA peak (``bench/peak.py``).
``python -m bench.oneshot peak-rss -- CMD...``
    run ``CMD`` as this process's only child and report its peak RSS:
    ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``.

Each prints one JSON object on its last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any


def compile_once(model: str = "mlp") -> dict[str, Any]:
    """``load_model`` timing of the bench MLP or of XOR (see
    :func:`bench.peers.dlc_impl.time_load_model` and ``time_load_xor``)."""
    start = time.perf_counter()
    from .peers import Unavailable, dlc_impl
    try:
        dlc_impl.runtime_module("compile", "load_model")
        imported = time.perf_counter()
        timed = dlc_impl.time_load_xor if model == "xor" else dlc_impl.time_load_model
        result: dict[str, Any] = timed()
    except Unavailable as e:
        return {"ok": False, "reason": str(e)}
    result["import_s"] = imported - start
    return {"ok": True, **result}


def forget_models() -> dict[str, Any]:
    """Empty the cache of DLC_CACHE_DIR but for GEMM library entries (their header names a
    library and no functions)."""
    from runtime.cache import ALIAS_SUFFIX, SUFFIX, ObjectCache

    store = ObjectCache()
    kept = 0
    for path in store.entries() + sorted(store.directory.glob(f"*{ALIAS_SUFFIX}")):
        if path.suffix == SUFFIX:
            entry = store.load(path.stem)
            if entry is not None and "library" in entry.header and "functions" not in entry.header:
                kept += 1
                continue
        path.unlink()
    return {"ok": True, "kept": kept}


def train_once(impl: str, threads: int) -> dict[str, Any]:
    """Build the epoch runnable of ``impl`` and run one epoch."""
    from .cases import BY_ID, FAMILY
    from .peers import Unavailable
    from .worker import Worker, pin_to_cpus

    worker = Worker(FAMILY[impl], threads, pin_to_cpus(threads))
    if worker.load_error is not None:
        return {"ok": False, "reason": worker.load_error}
    start = time.perf_counter()
    try:
        worker.module.build(impl, BY_ID["epoch"])()
    except Unavailable as e:
        return {"ok": False, "reason": str(e)}
    return {"ok": True, "seconds": time.perf_counter() - start}


def peak_rss(command: list[str]) -> dict[str, Any]:
    """Run ``command`` (its stdout captured) and report its RSS high-water mark in MB."""
    proc = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss   # KiB on Linux
    child: Any = None
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if lines:
        try:
            child = json.loads(lines[-1])
        except json.JSONDecodeError:
            child = None
    return {"ok": proc.returncode == 0, "peak_rss_mb": peak_kb / 1024.0,
            "returncode": proc.returncode, "child": child}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench.oneshot``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    compile_cmd = sub.add_parser("compile")
    compile_cmd.add_argument("--model", choices=("mlp", "xor"), default="mlp")
    sub.add_parser("forget-models")
    sub.add_parser("cpu")
    train = sub.add_parser("train")
    train.add_argument("--impl", required=True)
    train.add_argument("--threads", type=int, default=1)
    rss = sub.add_parser("peak-rss")
    rss.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.what == "compile":
        result = compile_once(args.model)
    elif args.what == "forget-models":
        result = forget_models()
    elif args.what == "cpu":
        from .peak import cpu_report
        result = cpu_report()
    elif args.what == "train":
        result = train_once(args.impl, args.threads)
    else:
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        result = peak_rss(command)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
