"""Run ONNX's backend node tests through dlc's importer and print the counts.

::

    python bench/onnx_conformance.py                 # all cases, the reference interpreter
    python bench/onnx_conformance.py --failures      # and each failed / unsupported case, why
    python bench/onnx_conformance.py --native        # native code instead (slower: a compile per case)

What each status means: runtime/interop/conformance.py.  docs/interop.md
holds the latest counts.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.interop.conformance import by_op, collect, run_case, summarize  # noqa: E402


def _native(graph, args):
    import runtime
    from compiler.ir.core import Module

    fn = runtime.compile(Module([graph.function]))[graph.function.name]
    out = fn(*args)
    return list(out) if isinstance(out, tuple) else [out]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--failures", action="store_true", help="list failed and unsupported cases")
    parser.add_argument("--native", action="store_true", help="run native code, not the interpreter")
    parser.add_argument("--ops", action="store_true", help="counts per op type")
    args = parser.parse_args()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # the case generators' numpy overflow warnings
        cases = collect()
    outcomes = [run_case(c, _native if args.native else None) for c in cases]
    counts = summarize(outcomes)
    attempted = counts["passed"] + counts["failed"] + counts["unsupported"]
    print(f"{len(outcomes)} ONNX node test cases; {attempted} use only ops dlc imports: "
          + ", ".join(f"{k} {v}" for k, v in counts.items()))
    if args.ops:
        for op, c in by_op(outcomes).items():
            print(f"  {op:24} " + "  ".join(f"{k} {v}" for k, v in c.items()))
    if args.failures:
        for o in outcomes:
            if o.status in ("failed", "unsupported"):
                print(f"  {o.status:12} {o.name}: {o.detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
