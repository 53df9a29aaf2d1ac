"""Is the default pipeline better than no optimization?  The MNIST training step, both ways.

::

    python -m bench.pipeline                 # bench/mlp_sgd.dl and examples/mnist_mlp.dl, batch 128
    python -m bench.pipeline --batch 1 --json out.json

For each model, the training step (``@train_step``, as ``Model.fit`` runs it)
is compiled three ways:

- ``none``: no dl passes, no fusion, no memory planning (every op its own
  kernel, every temporary its own workspace region);
- ``passes``: the default pass pipeline only (canonicalize, cse, dce...);
- ``default``: what ``runtime.compile`` does: passes, fusion and matmul
  epilogues, memory planning.

and reports kernels, temporaries, workspace slots, the peak temporary bytes at
the batch size, and the step time (median of repetitions, each timing enough
calls through the pre-validated call path to last ~0.2 s).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODELS = (ROOT / "bench" / "mlp_sgd.dl", ROOT / "examples" / "mnist_mlp.dl")
CONFIGS = {
    "none": ("", dict(fuse=False, plan_memory=False)),
    "passes": ("default", dict(fuse=False, plan_memory=False)),
    "default": ("default", dict(fuse=True, plan_memory=True)),
}


def prepare(path: Path, config: str, batch: int) -> tuple[dict[str, Any], Any, list]:
    """The step of model ``path`` compiled as ``config``: its figures, a bound call, its arguments."""
    import runtime
    from compiler.analysis.stats import with_train_step
    from compiler.codegen.driver import lower_module
    from compiler.codegen.loops import nbytes
    from compiler.codegen.target import CodegenOptions
    from compiler.ir.core import Module
    from runtime.commands import load_module

    passes, flags = CONFIGS[config]
    options = CodegenOptions(**flags)
    module, _ = with_train_step(load_module(str(path)))
    compiled = runtime.compile(module, passes=passes, cache=False, options=options)
    func = compiled.module.get("train_step")
    (prog,) = lower_module(Module([func]), options)
    bindings = {s: batch for s in prog.symbols}
    temps = prog.memory.before if prog.memory else prog.temps
    slots = [s[0] for s in prog.memory.slots] if prog.memory else prog.temps
    step = compiled.train_step
    args = _arguments(step, batch)
    row = {"model": path.stem, "config": config, "batch": batch, "ops": len(func.ops),
           "kernels": len(prog.kernels), "temporaries": len(temps), "slots": len(slots),
           "peak_temp_bytes": sum(nbytes(b, bindings) for b in slots), "samples_us": [],
           "_keep": compiled}
    return row, step.bind(*args, reuse_outputs=True), args


def measure(path: Path, batch: int, reps: int) -> list[dict[str, Any]]:
    """Rows for every config; repetitions interleave the configs, so a busy spell on the
    machine hits them all alike; each figure is the median."""
    prepared = [prepare(path, config, batch) for config in CONFIGS]
    calls = [_calls_for(call, args, 0.2) for _, call, args in prepared]
    for rep in range(reps):
        for j in range(len(prepared)):
            row, call, args = prepared[(j + rep) % len(prepared)]
            n = calls[(j + rep) % len(prepared)]
            call(*args)
            start = time.perf_counter()
            for _ in range(n):
                call(*args)
            row["samples_us"].append((time.perf_counter() - start) / n * 1e6)
    rows = []
    for row, _, _ in prepared:
        row.pop("_keep")
        row["step_us"] = statistics.median(row["samples_us"])
        rows.append(row)
    return rows


def _arguments(step: Any, batch: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    args = []
    for name, t in step.info.params:
        shape = tuple(batch if isinstance(d, str) else d for d in t.shape)
        if name == "y" or t.dtype.is_int:
            args.append(rng.integers(0, 10, shape).astype(t.dtype.np))
        elif name == "lr":
            args.append(np.array(1e-3, t.dtype.np))
        elif "velocity" in name:
            args.append(np.zeros(shape, t.dtype.np))
        else:
            args.append((rng.standard_normal(shape) * 0.05).astype(t.dtype.np))
    return args


def _calls_for(call: Any, args: list, seconds: float) -> int:
    call(*args)
    start = time.perf_counter()
    call(*args)
    one = max(time.perf_counter() - start, 1e-7)
    return max(3, int(seconds / one))


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the rows, with each config's step time over ``none``'s."""
    head = ("| model | config | dl ops | kernels | temporaries | slots | peak temp KiB | step µs | vs none |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    base = {(r["model"], r["batch"]): r["step_us"] for r in rows if r["config"] == "none"}
    lines = [head]
    for r in rows:
        ratio = r["step_us"] / base[(r["model"], r["batch"])] if (r["model"], r["batch"]) in base else float("nan")
        lines.append(f"| {r['model']} (N={r['batch']}) | {r['config']} | {r['ops']} | {r['kernels']} | "
                     f"{r['temporaries']} | {r['slots']} | {r['peak_temp_bytes'] / 1024:.1f} | "
                     f"{r['step_us']:.1f} | {ratio:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m bench.pipeline``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, action="append", help="batch size (repeatable; default 128)")
    parser.add_argument("--reps", type=int, default=7, help="repetitions per row (default 7)")
    parser.add_argument("--model", action="append", help="a .dl model (default: the MNIST MLPs)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    rows = []
    for path in [Path(m) for m in args.model] if args.model else MODELS:
        for batch in args.batch or [128]:
            rows += measure(path, batch, args.reps)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
