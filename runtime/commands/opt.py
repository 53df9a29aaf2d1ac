"""``dlc opt FILE --passes a,b,c``: run passes over IR text or a ``.dl`` file and print the result.

The ``mlir-opt`` of dlc: reads dl IR text (``.mlir``) or ``.dl`` source,
runs the pipeline (no passes: parse, verify and print back), and prints the
module -- to stdout, or to ``-o FILE``.  Every pass flag applies
(``--print-ir-after``, ``--time-passes``, ``--check-each-pass``, ...; see
``runtime/commands/pass_flags.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from compiler.diagnostics import DlError
from compiler.ir.core import Module

from . import pick_function
from .pass_flags import add_pass_arguments, load_for_passes, run_passes

NAME = "opt"
HELP = "run passes over dl IR text (or a .dl file) and print the resulting IR"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dlc opt``."""
    parser.add_argument("file", help="dl IR text (.mlir) or a .dl source file")
    parser.add_argument("--fn", metavar="NAME", help="print only this function")
    parser.add_argument("--debug-locations", action="store_true",
                        help="end every op with its source location; gradient ops print as "
                             "loc(\"backward\"(...)) of the user's line")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the IR to FILE instead of stdout")
    add_pass_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Load, run the passes, print."""
    from compiler.ir.printer import print_module

    module = run_passes(load_for_passes(args.file, args), args)
    if args.fn is not None:
        module = Module([pick_function(module, args.fn, args.file)], dict(module.attrs))
    text = print_module(module, debug_locations=args.debug_locations)
    if args.output:
        try:
            Path(args.output).write_text(text)
        except OSError as e:
            raise DlError(f"cannot write {args.output}: {e.strerror or e}") from None
    else:
        print(text, end="")
    return 0
