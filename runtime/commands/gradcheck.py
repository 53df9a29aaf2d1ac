"""``dlc gradcheck FILE --fn NAME``: autodiff gradients against finite differences.

Runs :func:`compiler.checking.gradcheck.gradcheck` over a ``.dl`` file or IR text,
prints its table and exits 1 when an argument's relative error exceeds
``--tol``.
"""

from __future__ import annotations

import argparse

from compiler.checking.gradcheck import gradcheck
from compiler.diagnostics import DlError

from . import load_module

NAME = "gradcheck"
HELP = "check autodiff gradients against central finite differences (float64, interpreter)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dlc gradcheck``."""
    parser.add_argument("file", help="a .dl source file or dl IR text (.mlir)")
    parser.add_argument("--fn", required=True, help="the function to check (scalar float output)")
    parser.add_argument("--wrt", default=None,
                        help="comma-separated parameters to differentiate (default: every float one)")
    parser.add_argument("--tol", type=float, default=1e-4,
                        help="largest accepted relative error (default 1e-4)")
    parser.add_argument("--eps", type=float, default=1e-6,
                        help="finite-difference step (default 1e-6)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    parser.add_argument("--dim", action="append", default=[], metavar="SYM=N",
                        help="size of a symbolic dim (default 3); repeatable")


def run(args: argparse.Namespace) -> int:
    """Print the gradcheck table; 0 when every argument is within tolerance, else 1."""
    dims = _parse_dims(args.dim)
    wrt = [w.strip() for w in args.wrt.split(",") if w.strip()] if args.wrt else None
    module = load_module(args.file)
    report = gradcheck(module, args.fn, wrt, seed=args.seed, eps=args.eps, tol=args.tol,
                       bindings=dims)
    print(report.format())
    return 0 if report.passed else 1


def _parse_dims(items: list[str]) -> dict[str, int]:
    dims: dict[str, int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip().isdigit() or int(value) < 1:
            raise DlError(f"--dim expects SYMBOL=SIZE with a positive size, got '{item}'")
        dims[name.strip()] = int(value)
    return dims
