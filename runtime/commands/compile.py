"""``dlc compile FILE -o DIR``: ahead-of-time native code in a directory.

With ``--train-step`` a model's training step is exported too; ``--cpu NAME``
(``--features``) compiles for another CPU than this one.  The directory holds
``module.o`` (object code for this CPU; ``gemm_library.o``, the GEMM code it calls, beside it), ``manifest.json``
(every function's signature, symbolic dims and in-place pairs, the target and
a checksum) and, when a C compiler is installed, ``libdlc_module.so`` with a C
header ``dlc_module.h``.  ``runtime.load_compiled(DIR)`` loads it without the
frontend or LLVM's optimizer.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from compiler.diagnostics import DlError
from compiler.ir.core import Module

from .pass_flags import DEFAULT_PIPELINE, add_pass_arguments, load_for_passes, run_passes

NAME = "compile"
HELP = "compile a .dl file (or dl IR text) to native code in a directory (AOT)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dlc compile``."""
    parser.add_argument("file", help="a .dl source file or dl IR text (.mlir)")
    parser.add_argument("--output", "-o", metavar="DIR", required=True,
                        help="the directory to write (created if missing)")
    add_pass_arguments(parser, default=DEFAULT_PIPELINE)
    parser.add_argument("--no-cache", action="store_true", help="do not use the object cache")
    parser.add_argument("--cpu", metavar="NAME",
                        help="the CPU to compile for (default: this one): an LLVM CPU name such as "
                             "znver4 or sapphirerapids, or a portable level x86-64, x86-64-v2, -v3, -v4")
    parser.add_argument("--features", metavar="LIST",
                        help="LLVM target features, e.g. +avx2,+fma (default: this CPU's for this CPU, "
                             "a portable level's own, else none)")
    parser.add_argument("--train-step", action="store_true",
                        help="also export the model's training step (train_step: parameters, optimizer "
                             "state, a batch and the learning rate in; loss, updated weights in place out)")


def run(args: argparse.Namespace) -> int:
    """Compile every function of the module and write the AOT directory; with
    ``--time-passes``, report where the time went, from the process's start to the
    written directory."""
    from compiler.codegen.driver import StageTimer
    from compiler.codegen.target import CodegenOptions, host_target, named_target
    from runtime.compiled import compile as compile_module
    from runtime.compiled import compile_for_target, signature_text, write_compiled

    timer = StageTimer()
    started = since_process_start() if getattr(args, "own_process", False) else None
    if started is not None:
        timer.add_earlier("start-up and imports", started)
    with timer("target detection"):
        target = named_target(args.cpu, args.features)
    with timer("frontend"):
        module = load_for_passes(args.file, args)
    if args.train_step:
        with timer("training step (autodiff, optimizer)"):
            _add_train_step(module, args.file)
    module = run_passes(module, args, timer=timer)
    if target == host_target():            # loaded (and so checked) here, then written
        compiled = compile_module(module, passes="", cache=not args.no_cache)
        for stage, seconds in compiled.timings.stages.items():
            timer.add(stage, seconds)
        infos = [fn.info for fn in compiled.functions.values()]
        with timer("write output (AOT directory, shared library)"):
            out = compiled.save(args.output)
        count = len(compiled.objects)
    else:                                  # another CPU's code: compiled, never loaded here
        objects, infos, gemm = compile_for_target(module, CodegenOptions(target=target), timer)
        with timer("write output (AOT directory, shared library)"):
            out = write_compiled(args.output, objects, infos, target, gemm)
        count = len(objects)
    timer.finish()
    if args.time_passes:
        sys.stderr.write(timer.report())
    for info in infos:
        print(f"  {info.symbol}: {signature_text(info)}")
    extra = " (+ shared library and C header)" if (out / "libdlc_module.so").exists() else ""
    written = ", ".join(["module.o", *(f"module.{i}.o" for i in range(1, count))])
    print(f"wrote {out}/manifest.json and {written}{extra}")
    if getattr(args, "own_process", False):
        _exit_now()
    return 0


def _exit_now() -> None:
    """End this process here, with status 0, skipping the interpreter's teardown.

    Everything is written and flushed; what is left is freeing the compiler's objects one
    by one and LLVM's teardown, 0.1-0.2 s -- longer than writing the directory, and past
    the end of the --time-passes report.  (clang's ``-disable-free`` skips the same work
    for the same reason.)  Only ``dlc compile`` run as its own process does this: it
    starts no threads, holds no temporary files and registers no exit handlers."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def since_process_start() -> float | None:
    """Seconds since this process started: the interpreter's start-up and the imports
    before the command ran (Linux: ``/proc/self/stat``'s start time, in clock ticks since
    boot, so to 10 ms; None where that cannot be read)."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        start = int(fields[19]) / os.sysconf("SC_CLK_TCK")        # field 22: starttime
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - start)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _add_train_step(module: Module, file: str) -> None:
    """Add the model's ``train_step`` (as ``Model`` builds it) to ``module``; a
    :class:`DlError` when the file declares no model."""
    from compiler.train_step import build_train_step

    if "model" not in module.attrs:
        raise DlError(f"{file}: --train-step needs a model block (`model NAME {{ ... }}`) to train")
    build_train_step(module)
