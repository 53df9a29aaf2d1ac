"""``dlc ir FILE``: print a module's IR at a stage of the pipeline.

The command is a small pipeline: :func:`load_module` reads ``.dl`` source or
dl IR text, :func:`transform` is where passes run (``--after PASS`` plugs in
there), and :data:`STAGES` maps ``--stage`` to the function that renders the
module at that stage (codegen adds ``loops``, ``llvm``, ... as entries).
"""

from __future__ import annotations

import argparse
from typing import Callable

from compiler.ir.core import Module

from . import load_module, pick_function

NAME = "ir"
HELP = "print the dl IR of a .dl file or of IR text"


def _print_dl(module: Module, args: argparse.Namespace) -> str:
    """The dl IR text (MLIR generic form); just ``--fn`` when given."""
    from compiler.ir.printer import print_module

    if args.fn is not None:
        func = pick_function(module, args.fn, args.file)
        module = Module([func])
    return print_module(module, debug_locations=args.debug_locations)


# --stage NAME -> renderer(module, args) -> text
STAGES: dict[str, Callable[[Module, argparse.Namespace], str]] = {
    "dl": _print_dl,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dlc ir``."""
    parser.add_argument("file", help="a .dl source file or dl IR text (.mlir)")
    parser.add_argument("--fn", metavar="NAME", help="print only this function")
    parser.add_argument("--debug-locations", action="store_true",
                        help="end every op with its source location, loc(\"file.dl\":line:col)")
    parser.add_argument("--stage", choices=list(STAGES), default="dl",
                        help="what to print (default: dl, the tensor-level IR)")


def transform(module: Module, args: argparse.Namespace) -> Module:
    """The module after the passes the arguments ask for (none yet)."""
    return module


def run(args: argparse.Namespace) -> int:
    """Print the module (or one function) at the requested stage."""
    module = transform(load_module(args.file), args)
    text = STAGES[args.stage](module, args)
    print(text, end="" if text.endswith("\n") else "\n")
    return 0
