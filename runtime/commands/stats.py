"""``dlc stats FILE``: op counts, FLOPs and bytes of every function, read from the IR.

For a model also the parameter count, the bytes of parameters, gradients
and optimizer state, and the FLOPs of a forward call and of one training
step (``@train_step``, built as training builds it).  The figures are for
the IR after ``--passes`` (default: the ``inference`` pipeline); symbolic
dims print as formulas and are evaluated at ``--batch`` (default 128).
"""

from __future__ import annotations

import argparse
import json

from compiler.diagnostics import DlError

from . import pick_function
from .gradcheck import _parse_dims as parse_dims
from .pass_flags import add_pass_arguments, load_for_passes, run_passes

NAME = "stats"
HELP = "count ops, FLOPs and bytes per function (and per training step for a model)"

DEFAULT_BATCH = 128


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dlc stats``."""
    parser.add_argument("file", help="a .dl source file or dl IR text (.mlir)")
    parser.add_argument("--fn", metavar="NAME", action="append",
                        help="report only this function (repeatable; default: all)")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, metavar="N",
                        help=f"size every symbolic dim takes in the numbers (default {DEFAULT_BATCH})")
    parser.add_argument("--dim", action="append", default=[], metavar="SYM=N",
                        help="size of one symbolic dim, overriding --batch; repeatable")
    parser.add_argument("--no-train-step", action="store_true",
                        help="do not build a training step for a model")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    add_pass_arguments(parser, default="inference")


def run(args: argparse.Namespace) -> int:
    """Print the statistics report."""
    from compiler.analysis.stats import (
        bindings_for,
        format_report,
        model_stats,
        to_json,
        with_train_step,
    )

    if args.batch < 1:
        raise DlError(f"--batch must be positive, got {args.batch}")
    module = load_for_passes(args.file, args)
    note = None
    if not args.no_train_step:
        module, note = with_train_step(module)
    module = run_passes(module, args)
    functions = ([pick_function(module, name, args.file) for name in args.fn] if args.fn
                 else list(module.functions))
    functions = [f for f in functions if "grad_of" not in f.attrs]
    bindings = bindings_for(module, args.batch, parse_dims(args.dim))
    model = model_stats(module, note)
    if args.json:
        print(json.dumps(to_json(module, functions, bindings, model), indent=2))
    else:
        print(format_report(module, functions, bindings, model), end="")
    return 0

