"""``dlc check FILE``: parse, lower and verify; print a one-line summary."""

from __future__ import annotations

import argparse

from . import load_module, model_param_count

NAME = "check"
HELP = "parse, lower and verify a .dl file (or dl IR text) and report errors"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dlc check``."""
    parser.add_argument("file", help="a .dl source file or dl IR text (.mlir)")


def run(args: argparse.Namespace) -> int:
    """Print ``FILE: ok (4 functions, 9 params)``; errors propagate as DlErrors."""
    module = load_module(args.file)
    n = len(module.functions)
    parts = [f"{n} function{'s' if n != 1 else ''}"]
    params = model_param_count(module)
    if params is not None:
        parts.append(f"{params} param{'s' if params != 1 else ''}")
    print(f"{args.file}: ok ({', '.join(parts)})")
    return 0
