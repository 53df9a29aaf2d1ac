"""Data-parallel training on this machine: an MNIST epoch on 1 rank x 2 threads against
2 ranks x 1 thread, and the allreduce of the MNIST MLP's gradient buffer against its step
time, with an estimate for 8-64 ranks (docs/distributed.md shows a run).

    python -m bench.distributed [--reps 3] [--json bench/out/distributed.json]

Needs ``pip install '.[distributed]'`` (mpirun beside the Python running this).
``--worker`` is one rank of the allreduce measurement (run under mpirun by the above).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "examples" / "mnist_mlp.dl"
GLOBAL_BATCH = 128
# (name, one-way latency in s, bandwidth in bytes/s): assumed networks for the estimate
NETWORKS = [("shared memory (measured here)", None, None), ("10 Gb Ethernet", 30e-6, 1.25e9),
            ("100 Gb/s InfiniBand", 2e-6, 12e9)]
RANKS = [2, 8, 16, 32, 64]


def launcher() -> list[str]:
    """``mpirun -n 2`` (with ``--oversubscribe`` for Open MPI) from beside this Python."""
    here = os.path.dirname(sys.executable)
    path = shutil.which("mpirun", path=here) or shutil.which("mpirun") or shutil.which("mpiexec")
    if path is None:
        sys.exit("bench.distributed: no mpirun; pip install '.[distributed]'")
    version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    return [path, "-n", "2", *(["--oversubscribe"] if "Open MPI" in version else [])]


def env(threads: int) -> dict[str, str]:
    return dict(os.environ, DLC_NUM_THREADS=str(threads), PYTHONPATH=str(ROOT),
                OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def epoch(distributed: bool, out: Path) -> dict[str, float]:
    """One MNIST epoch (global batch 128) through ``dlc train``: its seconds and the CPU
    seconds of all its processes (compile included; the cache is warm after the first)."""
    cmd = [sys.executable, "-m", "runtime.cli", "train", str(MODEL), "--epochs", "1", "--no-validate",
           "--quiet", "--metrics-out", str(out)]
    if distributed:
        cmd = [*launcher(), *cmd, "--distributed", "--batch-size", str(GLOBAL_BATCH // 2)]
    else:
        cmd += ["--batch-size", str(GLOBAL_BATCH)]
    before = os.times()
    subprocess.run(cmd, env=env(1 if distributed else 2), check=True, capture_output=True, cwd=ROOT)
    after = os.times()
    report = json.loads(out.read_text())
    return {"epoch_seconds": report["epoch_seconds"][0],
            "cpu_seconds": sum(after[2:4]) - sum(before[2:4]),     # children's user + system
            "train_accuracy": report["history"]["accuracy"][0]}


def worker(reps: int) -> None:
    """One rank: time the split step's two calls at batch 64 and the allreduce of its buffer."""
    from runtime.distributed import Distributed, Sync, mpi
    from runtime.model import load_model

    comm = mpi().COMM_WORLD
    model = load_model(MODEL, seed=0)
    sync = Sync(model, Distributed(), comm, model._split_backend())
    rng = np.random.default_rng(comm.Get_rank())
    batch = [rng.random((GLOBAL_BATCH // 2, 784), dtype=np.float32), rng.integers(0, 10, GLOBAL_BATCH // 2, np.int32)]
    lr = np.array(1e-4, dtype=np.float32)
    flat = sync.buffer.array
    tiny = np.zeros(1, np.float32)

    def timed(fn: Any, n: int) -> float:
        """Median seconds of ``fn`` over ``reps`` runs of ``n`` calls, the ranks starting together."""
        samples = []
        for _ in range(reps):
            comm.Barrier()
            start = time.perf_counter()
            for _ in range(n):
                fn()
            samples.append((time.perf_counter() - start) / n)
        return statistics.median(samples)

    sync.rows(0, GLOBAL_BATCH)
    tensors = model._tensors
    grads_args = [*tensors[:4], *sync._grads, *batch]
    apply_args = [*tensors[:4], *tensors[4:], *sync._grads, lr]
    result = {
        "step_seconds": timed(lambda: sync.step(model, batch, lr), 50),
        "grads_seconds": timed(lambda: sync._grads_call(grads_args), 50),
        "apply_seconds": timed(lambda: sync._apply_call(apply_args), 50),
        "allreduce_seconds": timed(lambda: sync.allreduce(flat, sync.MPI.SUM, "bench"), 200),
        "allreduce_blocking_seconds": timed(lambda: comm.Allreduce(sync.MPI.IN_PLACE, flat, op=sync.MPI.SUM), 200),
        "allreduce_4_bytes_seconds": timed(lambda: comm.Allreduce(sync.MPI.IN_PLACE, tiny, op=sync.MPI.SUM), 500),
        "buffer_bytes": flat.nbytes,
    }
    if comm.Get_rank() == 0:
        print(json.dumps(result))


def ring_allreduce(ranks: int, nbytes: int, latency: float, bandwidth: float) -> float:
    """Seconds of a ring allreduce (reduce-scatter + allgather): 2(K-1) messages of n/K bytes."""
    return 2 * (ranks - 1) * latency + 2 * (ranks - 1) / ranks * nbytes / bandwidth


def estimate(measured: dict[str, float]) -> list[dict[str, Any]]:
    """Step time and efficiency at K ranks, 64 rows per rank (weak scaling), communication
    not overlapped with computation."""
    compute = measured["grads_seconds"] + measured["apply_seconds"]
    nbytes = measured["buffer_bytes"]
    # shared memory: fit latency and bandwidth to the two measured sizes
    local_latency = measured["allreduce_4_bytes_seconds"] / 2
    local_bandwidth = nbytes / max(measured["allreduce_seconds"] - 2 * local_latency, 1e-9)
    rows = []
    for name, latency, bandwidth in NETWORKS:
        if latency is None or bandwidth is None:
            latency, bandwidth = local_latency, local_bandwidth
        for k in RANKS:
            comm = ring_allreduce(k, nbytes, latency, bandwidth)
            rows.append({"network": name, "ranks": k, "allreduce_ms": comm * 1e3,
                         "step_ms": (compute + comm) * 1e3, "efficiency": compute / (compute + comm),
                         "samples_per_second": k * GLOBAL_BATCH // 2 / (compute + comm)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.distributed", description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", default=str(ROOT / "bench" / "out" / "distributed.json"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.reps)
        return 0
    epochs: dict[str, list[dict[str, float]]] = {"1 rank x 2 threads": [], "2 ranks x 1 thread": []}
    with tempfile.TemporaryDirectory() as tmp:
        epoch(False, Path(tmp) / "warm.json")       # fill the object cache
        for _ in range(args.reps):                  # alternating, so a busy spell hits both
            epochs["1 rank x 2 threads"].append(epoch(False, Path(tmp) / "one.json"))
            epochs["2 ranks x 1 thread"].append(epoch(True, Path(tmp) / "two.json"))
    run = subprocess.run([*launcher(), sys.executable, "-m", "bench.distributed", "--worker", "--reps", "5"],
                         env=env(1), check=True, capture_output=True, text=True, cwd=ROOT)
    measured = json.loads(run.stdout.strip().splitlines()[-1])
    report = {"epochs": epochs, "step": measured, "estimate": estimate(measured),
              "load_average": os.getloadavg()}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    for name, runs in epochs.items():
        print(f"{name}: epoch {statistics.median(r['epoch_seconds'] for r in runs):.2f} s, "
              f"CPU {statistics.median(r['cpu_seconds'] for r in runs):.2f} s (median of {len(runs)})")
    print("per rank, batch 64, 1 thread: " + ", ".join(
        f"{k.removesuffix('_seconds')} {v * 1e3:.3f} ms" for k, v in measured.items() if k.endswith("seconds")))
    print(f"gradient buffer: {measured['buffer_bytes']:,} bytes")
    for row in report["estimate"]:
        print(f"{row['network']:>32} K={row['ranks']:>2}: allreduce {row['allreduce_ms']:.2f} ms, "
              f"step {row['step_ms']:.2f} ms, efficiency {row['efficiency']:.0%}, "
              f"{row['samples_per_second']:,.0f} samples/s")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
