"""``dlc ir FILE``: print a module's IR at a stage of the pipeline.

The command is a small pipeline: :func:`load_module` reads ``.dl`` source or
dl IR text, :func:`transform` is where passes run (``--after PASS`` plugs in
there), and :data:`STAGES` maps ``--stage`` to the function that renders the
module at that stage (codegen adds ``loops``, ``llvm``, ... as entries).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from compiler.ir.core import Module

from . import pick_function
from .pass_flags import add_pass_arguments, load_for_passes, run_passes

NAME = "ir"
HELP = "print the dl IR of a .dl file or of IR text"


def chosen_module(module: Module, args: argparse.Namespace) -> Module:
    """The module holding just ``--fn``, when given; ``train_step`` (``compiler/train_step.py``)
    and ``decode`` (``compiler/decode.py``, the KV-cache form of ``predict`` with caches of
    the position table's size, else 64) are built for a model file, so they can be printed
    at every stage."""
    if args.fn is None:
        return module
    if args.fn == "train_step":
        from compiler.analysis.stats import with_train_step

        module, _ = with_train_step(module)
    if args.fn == "decode" and "decode" not in module and isinstance(module.attrs.get("model"), dict):
        from compiler.decode import decode_module

        module, _ = decode_module(module, default_len=64)
    return Module([pick_function(module, args.fn, args.file)])


def _print_dl(module: Module, args: argparse.Namespace) -> str:
    """The dl IR text (MLIR generic form); just ``--fn`` when given (``--fn train_step``:
    the model's training step, built as training builds it)."""
    from compiler.ir.printer import print_module

    return print_module(chosen_module(module, args), debug_locations=args.debug_locations)


def _print_upstream_mlir(module: Module, args: argparse.Namespace) -> str:
    """The functions (just ``--fn`` when given) in upstream MLIR dialects (func, linalg,
    tensor, arith, math), as stock ``mlir-opt`` reads them (runtime/interop/mlir_export.py)."""
    from ..interop.mlir_export import export_mlir

    return export_mlir(chosen_module(module, args).functions)


# --stage NAME -> renderer(module, args) -> text
STAGES: dict[str, Callable[[Module, argparse.Namespace], str]] = {
    "dl": _print_dl,
    "mlir": _print_upstream_mlir,
}


def _codegen_stage(stage: str) -> Callable[[Module, argparse.Namespace], str]:
    """A renderer for a codegen stage (``compiler/codegen/driver.py``): the module as
    ``runtime.compile`` would build it, after the default pass pipeline."""

    def render(module: Module, args: argparse.Namespace) -> str:
        from compiler.codegen.driver import lower_module, memory_report, stage_text
        from compiler.passes import run_pipeline

        module = run_pipeline(chosen_module(module, args), "default")
        if getattr(args, "memory", False):
            programs = lower_module(module)
            symbols = {s for p in programs for s in p.symbols}
            return memory_report(programs, {s: args.batch for s in symbols})
        return stage_text(module, stage)

    return render


for _stage in ("loops", "llvm", "llvm-opt", "asm"):      # loop IR, LLVM IR, optimized, assembly
    STAGES[_stage] = _codegen_stage(_stage)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dlc ir``."""
    parser.add_argument("file", help="a .dl source file or dl IR text (.mlir)")
    parser.add_argument("--fn", metavar="NAME", help="print only this function")
    parser.add_argument("--debug-locations", action="store_true",
                        help="end every op with its source location, loc(\"file.dl\":line:col)")
    parser.add_argument("--stage", "--emit", choices=list(STAGES), default="dl",
                        help="what to print (default: dl, the tensor-level IR; mlir: upstream MLIR "
                             "dialects, linalg/tensor/arith/math, for mlir-opt)")
    parser.add_argument("--memory", action="store_true",
                        help="with --stage loops: kernels and peak temporary bytes before and after "
                             "memory planning, instead of the loop IR")
    parser.add_argument("--batch", type=int, default=128, metavar="N",
                        help="size of every symbolic dim in --memory figures (default 128)")
    add_pass_arguments(parser, after=True)


def transform(module: Module, args: argparse.Namespace) -> Module:
    """The module after the passes the arguments ask for (``--passes``, ``--after``)."""
    return run_passes(module, args)


def run(args: argparse.Namespace) -> int:
    """Print the module (or one function) at the requested stage."""
    module = transform(load_for_passes(args.file, args), args)
    text = STAGES[args.stage](module, args)
    print(text, end="" if text.endswith("\n") else "\n")
    return 0
