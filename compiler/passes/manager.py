"""The pass manager: named passes, pipelines as strings, verify-each, IR dumps, timing.

A pass is a function ``(module, ctx) -> Module`` registered under a name::

    @register_pass("dce", "remove ops whose results no output uses")
    def dce(module: Module, ctx: PassContext) -> Module:
        ...
        ctx.count("ops-removed", n)
        return module

Passes may mutate the module they are given and return it, or return a new
one.  ``ctx`` (a :class:`PassContext`) carries the pass's options and named
statistics counters.

:func:`run_pipeline` runs a pipeline -- a comma-separated string such as
``"autodiff,dce"``, or a list of names; a named pipeline from
:data:`PIPELINES` expands in place -- and, like ``mlir-opt``, can verify the
IR after every pass, print it before/after passes
(``// -----// IR Dump After dce //----- //``), report the wall time of each
pass (``--time-passes``, laid out like MLIR's ``-mlir-timing`` report) and
per-pass statistics (ops before/after plus the pass's own counters).

What else watches a pipeline registers from above as a
:class:`PassInstrumentation` (MLIR's ``PassInstrumentation``, LLVM's
``PassInstrumentationCallbacks``): the manager calls its hooks before and
after each pass and knows nothing more of it.  The differential checker
(:class:`compiler.checking.pass_checker.PassChecker`) is one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..diagnostics import DlError, VerifyError
from ..ir.core import Module


class PipelineError(DlError):
    """A pipeline that names an unknown pass or is otherwise malformed."""


class PassVerifyError(VerifyError):
    """The IR failed verification after a pass: a bug in that pass."""


@dataclass(frozen=True, slots=True)
class PassInfo:
    """A registered pass: its name, one-line description and entry point."""

    name: str
    description: str
    run: Callable[[Module, PassContext], Module]


PASSES: dict[str, PassInfo] = {}

# Named pipelines, in one place.  Later passes (fuse) are added here by the
# engineers who write them.  ``dlc passes`` lists them.
PIPELINES: dict[str, str] = {
    "default": "autodiff,canonicalize,cse,dce",
    "train": "autodiff,canonicalize,cse,dce",
    "inference": "canonicalize,cse,dce",
}


def register_pass(name: str, description: str) -> Callable[[Callable], Callable]:
    """Decorator: enter ``fn(module, ctx) -> Module`` in :data:`PASSES` as ``name``."""

    def decorate(fn: Callable[[Module, PassContext], Module]) -> Callable[[Module, PassContext], Module]:
        assert name not in PASSES, f"pass {name} registered twice"
        assert name not in PIPELINES, f"pass {name} would shadow the pipeline of that name"
        PASSES[name] = PassInfo(name, description, fn)
        return fn

    return decorate


class PassContext:
    """What a pass gets besides the module: its options and its statistics counters."""

    def __init__(self, pass_name: str, options: dict[str, Any] | None = None):
        self.pass_name = pass_name
        self.options: dict[str, Any] = dict(options or {})
        self.counters: dict[str, int] = {}

    def get(self, key: str, default: Any = None) -> Any:
        """The option ``key`` given to this pass, or ``default``."""
        return self.options.get(key, default)

    def count(self, counter: str, n: int = 1) -> None:
        """Add ``n`` to the named statistic (shown by ``stats=True``)."""
        self.counters[counter] = self.counters.get(counter, 0) + n


@dataclass(slots=True)
class PassRecord:
    """What happened in one run of one pass."""

    name: str
    seconds: float
    verify_seconds: float
    ops_before: int
    ops_after: int
    counters: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class PipelineReport:
    """Timing and statistics of a pipeline run; fill one by passing ``report=``."""

    records: list[PassRecord] = field(default_factory=list)
    input_verify_seconds: float = 0.0

    @property
    def total_seconds(self) -> float:
        return self.input_verify_seconds + sum(r.seconds + r.verify_seconds for r in self.records)

    def timing_table(self) -> str:
        """The wall-time report, laid out like MLIR's ``-mlir-timing``."""
        total = self.total_seconds
        rows: list[tuple[float, str]] = [(r.seconds, r.name) for r in self.records]
        verify = self.input_verify_seconds + sum(r.verify_seconds for r in self.records)
        if verify > 0:
            rows.append((verify, "(verifier)"))
        lines = [_RULE, "                         ... Execution time report ...", _RULE,
                 f"  Total Execution Time: {total:.4f} seconds", "",
                 "  ----Wall Time----  ----Name----"]
        for seconds, name in rows:
            lines.append(f"  {seconds:8.4f} ({_percent(seconds, total):5.1f}%)  {name}")
        lines.append(f"  {total:8.4f} (100.0%)  Total")
        return "\n".join(lines) + "\n"

    def stats_table(self) -> str:
        """Per-pass statistics: ops before and after, and each pass's own counters."""
        lines = [_RULE, "                         ... Pass statistics report ...", _RULE]
        for r in self.records:
            lines.append(f"'{r.name}'")
            entries = [("ops-before", r.ops_before), ("ops-after", r.ops_after),
                       *sorted(r.counters.items())]
            width = max(len(str(v)) for _, v in entries)
            for key, value in entries:
                lines.append(f"  (S) {value:>{width}} {key}")
        return "\n".join(lines) + "\n"


_RULE = "===" + "-" * 73 + "==="


def _percent(part: float, total: float) -> float:
    return 100.0 * part / total if total > 0 else 0.0


def parse_pipeline(pipeline: str | Iterable[str]) -> list[str]:
    """Pass names of a pipeline, with named pipelines (:data:`PIPELINES`) expanded.

    ``"autodiff, dce"`` and ``["autodiff", "dce"]`` are the same pipeline;
    empty entries are ignored.  Every unknown name is reported at once, in a
    :class:`PipelineError` that lists the available passes and pipelines.
    """
    names = _split(pipeline)
    out: list[str] = []
    unknown: list[str] = []
    _expand(names, out, unknown, seen=())
    if unknown:
        quoted = ", ".join(f"'{n}'" for n in unknown)
        noun = "pass" if len(unknown) == 1 else "passes"
        raise PipelineError(
            f"unknown {noun} {quoted}",
            notes=[f"available passes: {', '.join(sorted(PASSES))}",
                   f"available pipelines: {', '.join(sorted(PIPELINES))}"])
    return out


def _split(pipeline: str | Iterable[str]) -> list[str]:
    items = pipeline.split(",") if isinstance(pipeline, str) else list(pipeline)
    return [n.strip() for n in items if n.strip()]


def _expand(names: list[str], out: list[str], unknown: list[str], seen: tuple[str, ...]) -> None:
    for name in names:
        if name in PASSES:
            out.append(name)
        elif name in PIPELINES:
            if name in seen:
                raise PipelineError(f"pipeline '{name}' includes itself")
            _expand(_split(PIPELINES[name]), out, unknown, (*seen, name))
        elif name not in unknown:
            unknown.append(name)


class PassInstrumentation:
    """Hooks a pipeline run calls around each pass; subclass and override what you need.

    ``run_after_pass`` sees the module the pass returned, already verified
    when the pipeline verifies each pass.  A hook may raise (a
    :class:`~compiler.diagnostics.DlError` stops the pipeline with it).
    """

    def run_before_pass(self, pass_name: str, module: Module) -> None:
        """Called before pass ``pass_name`` runs on ``module``."""

    def run_after_pass(self, pass_name: str, module: Module) -> None:
        """Called after pass ``pass_name`` returned ``module``."""


def count_ops(module: Module) -> int:
    """Number of ops in all functions of ``module``."""
    return sum(len(f.ops) for f in module.functions)


def run_pipeline(module: Module, pipeline: str | Iterable[str], *,
                 verify_each: bool = True,
                 print_after: None | str | Iterable[str] = None,
                 print_before: None | str | Iterable[str] = None,
                 print_after_change: bool = False,
                 time_passes: bool = False,
                 stats: bool = False,
                 out: TextIO | None = None,
                 options: dict[str, dict[str, Any]] | None = None,
                 report: PipelineReport | None = None,
                 instrumentations: Iterable[PassInstrumentation] = ()) -> Module:
    """Run the passes of ``pipeline`` over ``module`` and return the result.

    - ``verify_each``: verify the input and the IR after every pass (when the
      verifier is available).  Invalid input raises the verifier's own
      errors; a pass that leaves invalid IR raises :class:`PassVerifyError`
      naming the pass, with the verifier's findings as notes.
    - ``print_before`` / ``print_after``: ``"all"``, a pass name or a set of
      names; the module is printed to ``out`` (default ``sys.stderr``) under an
      MLIR-style ``// -----// IR Dump After NAME //----- //`` header.
    - ``print_after_change``: print after a pass only when it changed the
      printed IR (implies ``print_after="all"`` when that is not given).
    - ``time_passes`` / ``stats``: print the timing and statistics reports to
      ``out`` at the end.  ``report``, if given, is filled with both.
    - ``options``: per-pass options, ``{"pass-name": {"key": value}}``.
    - ``instrumentations``: :class:`PassInstrumentation` objects whose hooks
      run before and after every pass, in the order given (e.g. the
      differential checker, :mod:`compiler.checking.pass_checker`).
    """
    names = parse_pipeline(pipeline)
    out = out if out is not None else sys.stderr
    options = options or {}
    report = report if report is not None else PipelineReport()
    after = _selection(print_after if print_after is not None or not print_after_change else "all")
    before = _selection(print_before)
    verify = _verifier() if verify_each else None

    if verify is not None:
        report.input_verify_seconds = _verify(verify, module, None)
    instrumentations = list(instrumentations)
    for name in names:
        if before(name):
            _dump(out, f"Before {name}", _print(module))
        text_before = _print(module) if print_after_change and after(name) else None
        ops_before = count_ops(module)
        for hook in instrumentations:
            hook.run_before_pass(name, module)
        ctx = PassContext(name, options.get(name))
        start = time.perf_counter()
        result = PASSES[name].run(module, ctx)
        seconds = time.perf_counter() - start
        assert isinstance(result, Module), f"pass {name} returned {type(result).__name__}, not a Module"
        module = result
        verify_seconds = _verify(verify, module, name) if verify is not None else 0.0
        report.records.append(PassRecord(name, seconds, verify_seconds, ops_before,
                                         count_ops(module), dict(ctx.counters)))
        for hook in instrumentations:
            hook.run_after_pass(name, module)
        if after(name):
            text = _print(module)
            if text_before is None or text != text_before:
                _dump(out, f"After {name}", text)
    if time_passes:
        out.write(report.timing_table())
    if stats:
        out.write(report.stats_table())
    return module


def _selection(spec: None | str | Iterable[str]) -> Callable[[str], bool]:
    if spec is None:
        return lambda name: False
    if spec == "all":
        return lambda name: True
    chosen = set(_split(spec)) if isinstance(spec, str) else set(spec)
    unknown = sorted(chosen - set(PASSES))
    if unknown:
        raise PipelineError(f"cannot print around unknown pass '{unknown[0]}'",
                            notes=[f"available passes: {', '.join(sorted(PASSES))}"])
    return lambda name: name in chosen


def _dump(out: TextIO, what: str, text: str) -> None:
    out.write(f"// -----// IR Dump {what} //----- //\n")
    out.write(text if text.endswith("\n") else text + "\n")
    out.write("\n")


def _print(module: Module) -> str:
    from ..ir.printer import print_module

    return print_module(module)


def _verifier() -> Callable[[Module], Any] | None:
    """The IR verifier, or None while the verifier module does not exist."""
    try:
        from ..ir.verifier import verify_module
    except ModuleNotFoundError as e:
        if e.name and e.name.endswith("verifier"):
            return None
        raise
    return verify_module


def _verify(verify: Callable[[Module], Any], module: Module, after: str | None) -> float:
    """Verify ``module``; the input's own errors pass through, a pass's are wrapped."""
    start = time.perf_counter()
    try:
        verify(module)
    except DlError as e:
        if after is None:
            raise
        raise PassVerifyError(f"pass '{after}' produced invalid IR",
                              notes=e.render().splitlines()) from e
    return time.perf_counter() - start
