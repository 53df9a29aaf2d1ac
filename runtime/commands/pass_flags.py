"""Pass flags shared by every command that compiles, and running them.

A command adds the flags with :func:`add_pass_arguments`, loads its input
with :func:`load_for_passes` (which leaves ``grad(...)`` functions as
placeholders when the pipeline builds them with ``autodiff``) and runs the
passes with :func:`run_passes`::

    def add_arguments(parser):
        parser.add_argument("file")
        add_pass_arguments(parser)

    def run(args):
        module = run_passes(load_for_passes(args.file, args), args)

Flags (like ``mlir-opt``'s): ``--passes a,b,c`` (names or named pipelines),
``--print-ir-before/--print-ir-after NAME|all``, ``--print-ir-after-change``,
``--verify-each`` (the default) / ``--no-verify``, ``--time-passes``,
``--pass-stats``, ``--check-each-pass`` (the differential checker), and
``--pass-option PASS.KEY=VALUE``; with ``after=True`` also ``--after PASS``
(the default pipeline up to and including PASS).  IR dumps and reports go
to stderr, so stdout stays the command's own output.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any, TextIO

from compiler.diagnostics import DlError
from compiler.ir.core import Module

from . import load_module

if TYPE_CHECKING:
    from compiler.codegen.driver import StageTimer

DEFAULT_PIPELINE = "default"


def add_pass_arguments(parser: argparse.ArgumentParser, *, default: str | None = None,
                       after: bool = False) -> None:
    """Add the pass flags; ``default`` is the pipeline run when ``--passes`` is not given."""
    group = parser.add_argument_group("passes")
    shown = f"default: {default}" if default else "default: none"
    group.add_argument("--passes", metavar="PIPELINE", default=default,
                       help=f"comma-separated passes or named pipelines to run ({shown}; "
                            "see dlc passes)")
    if after:
        group.add_argument("--after", metavar="PASS",
                           help=f"run the pipeline (--passes, else '{DEFAULT_PIPELINE}') up to "
                                "and including PASS")
    group.add_argument("--print-ir-after", metavar="NAME|all",
                       help="print the IR after these passes (comma-separated, or all)")
    group.add_argument("--print-ir-before", metavar="NAME|all",
                       help="print the IR before these passes (comma-separated, or all)")
    group.add_argument("--print-ir-after-change", action="store_true",
                       help="print the IR after a pass only when it changed")
    group.add_argument("--verify-each", dest="verify_each", action="store_true", default=True,
                       help="verify the IR after every pass (the default)")
    group.add_argument("--no-verify", dest="verify_each", action="store_false",
                       help="do not verify the IR between passes")
    group.add_argument("--time-passes", action="store_true",
                       help="print the wall time of each pass")
    group.add_argument("--pass-stats", action="store_true",
                       help="print per-pass statistics (ops before/after, patterns applied)")
    group.add_argument("--check-each-pass", action="store_true",
                       help="run the interpreter on random inputs before and after each pass "
                            "and name the first pass that changes a result")
    group.add_argument("--pass-option", action="append", default=[], metavar="PASS.KEY=VALUE",
                       help="an option for one pass, e.g. canonicalize.finite-math=true; repeatable")


def selected_passes(args: argparse.Namespace) -> list[str]:
    """The pass names the flags ask for, named pipelines expanded (empty: no passes)."""
    from compiler.passes import PASSES, parse_pipeline

    spec = getattr(args, "passes", None)
    last = getattr(args, "after", None)
    if last is None:
        return parse_pipeline(spec) if spec else []
    pipeline = spec or DEFAULT_PIPELINE
    names = parse_pipeline(pipeline)
    if last not in PASSES:
        raise DlError(f"--after: unknown pass '{last}'",
                      notes=[f"available passes: {', '.join(sorted(PASSES))}"])
    if last not in names:
        raise DlError(f"--after: pass '{last}' is not in the pipeline '{pipeline}' "
                      f"({', '.join(names) or 'empty'})")
    return names[:names.index(last) + 1]


def load_for_passes(path: str, args: argparse.Namespace) -> Module:
    """The module of ``path``; ``grad(...)`` stays a placeholder when the passes include autodiff."""
    return load_module(path, defer_grads="autodiff" in selected_passes(args))


def pass_options(items: list[str]) -> dict[str, dict[str, Any]]:
    """``--pass-option PASS.KEY=VALUE`` items as ``{pass: {key: value}}``.

    Values ``true``/``false`` become bools, integers and decimals numbers,
    anything else stays a string.
    """
    from compiler.passes import PASSES

    options: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, text = item.partition("=")
        name, dot, key = target.partition(".")
        if not sep or not dot or not name or not key:
            raise DlError(f"--pass-option expects PASS.KEY=VALUE, got '{item}'")
        if name not in PASSES:
            raise DlError(f"--pass-option: unknown pass '{name}'",
                          notes=[f"available passes: {', '.join(sorted(PASSES))}"])
        options.setdefault(name, {})[key] = _option_value(text)
    return options


def _option_value(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def run_passes(module: Module, args: argparse.Namespace, out: TextIO | None = None,
               timer: StageTimer | None = None) -> Module:
    """Run the passes the flags select over ``module`` (dumps and reports to ``out``, stderr);
    with ``timer``, the passes' times are charged to it instead of printed."""
    from compiler.checking.pass_checker import PassChecker
    from compiler.passes import PipelineReport, run_pipeline

    names = selected_passes(args)
    options = pass_options(args.pass_option)
    if not names:
        return module
    report = PipelineReport()
    start = time.perf_counter()
    result = run_pipeline(
        module, names,
        verify_each=args.verify_each,
        print_after=args.print_ir_after,
        print_before=args.print_ir_before,
        print_after_change=args.print_ir_after_change,
        time_passes=args.time_passes and timer is None,
        stats=args.pass_stats,
        out=out if out is not None else sys.stderr,
        options=options,
        report=report,
        instrumentations=[PassChecker(module)] if args.check_each_pass else [],
    )
    if timer is not None:
        timer.add_pipeline(report, time.perf_counter() - start)
    return result
