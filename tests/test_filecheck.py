"""FileCheck golden tests: every ``tests/ir/*.mlir`` file runs its ``// RUN:`` lines.

A RUN line is a small shell pipeline, executed in-process (fast, no
subprocesses)::

    // RUN: parse-print %s | filecheck %s
    // RUN: not verify %s 2>&1 | filecheck %s --check-prefix=ERR

- ``%s`` is the test file's path; stages are separated by `` | `` (spaces
  around the bar); ``2>&1`` sends a stage's stderr into the pipe;
  ``not`` inverts a stage's exit status, as lit's ``not`` does.
- Every stage must succeed (lit's ``pipefail``); ``filecheck`` is the
  ``filecheck`` package's matcher, given the pipe as its input.
- Tools are Python functions in :data:`TOOLS`.  Adding one (``dlc opt
  --passes=...`` say) is one registered function::

      @tool("my-tool")
      def my_tool(args: list[str], stdin: str) -> ToolResult:
          ...
          return ToolResult(stdout=text)

Diagnostics name the file as ``%s`` was given, so a CHECK line for one
matches ``{{.*}}name.mlir:[[# @LINE + 1]]:5: error: ...``.
"""

from __future__ import annotations

import contextlib
import io
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from compiler.diagnostics import DlError
from compiler.ir import parse_module, print_module, verify_module

IR_DIR = Path(__file__).parent / "ir"


@dataclass
class ToolResult:
    """What a tool did: its stdout, stderr and exit status."""

    stdout: str = ""
    stderr: str = ""
    code: int = 0


Tool = Callable[[list[str], str], ToolResult]
TOOLS: dict[str, Tool] = {}


def tool(name: str) -> Callable[[Tool], Tool]:
    """Register ``fn(args, stdin) -> ToolResult`` as the RUN-line command ``name``."""
    def register(fn: Tool) -> Tool:
        assert name not in TOOLS, f"tool {name} registered twice"
        TOOLS[name] = fn
        return fn
    return register


def _read_input(args: list[str], stdin: str) -> tuple[str, str]:
    """The IR text and its file name: the one positional argument, or stdin for ``-``."""
    files = [a for a in args if not a.startswith("--")]
    if len(files) != 1:
        raise ValueError(f"expected one input file, got {files}")
    if files[0] == "-":
        return stdin, "<stdin>"
    return Path(files[0]).read_text(), files[0]


def _failure(error: DlError) -> ToolResult:
    return ToolResult(stderr=error.render() + "\n", code=1)


@tool("parse-print")
def parse_print(args: list[str], stdin: str) -> ToolResult:
    """Parse (and verify) IR text and print it back.

    ``--debug-locations`` prints ``loc(...)``; ``--no-verify`` skips the verifier.
    """
    text, file = _read_input(args, stdin)
    try:
        module = parse_module(text, file, verify="--no-verify" not in args)
    except DlError as e:
        return _failure(e)
    return ToolResult(stdout=print_module(module, debug_locations="--debug-locations" in args))


@tool("verify")
def verify(args: list[str], stdin: str) -> ToolResult:
    """Parse without verifying, then run the verifier; prints nothing on success."""
    text, file = _read_input(args, stdin)
    try:
        verify_module(parse_module(text, file, verify=False))
    except DlError as e:
        return _failure(e)
    return ToolResult()


@tool("roundtrip")
def roundtrip(args: list[str], stdin: str) -> ToolResult:
    """Check ``print(parse(print(parse(text)))) == print(parse(text))``, with and without locations."""
    text, file = _read_input(args, stdin)
    try:
        module = parse_module(text, file)
        for debug in (False, True):
            first = print_module(module, debug_locations=debug)
            second = print_module(parse_module(first, file + ".printed"), debug_locations=debug)
            if first != second:
                return ToolResult(stdout=first, stderr=second,
                                  code=1)
    except DlError as e:
        return _failure(e)
    return ToolResult()


@tool("dlc")
def dlc(args: list[str], stdin: str) -> ToolResult:
    """The ``dlc`` CLI (``runtime.cli.main(argv)``), run in-process."""
    try:
        from runtime.cli import main
    except ImportError as e:
        return ToolResult(stderr=f"dlc: the CLI is not available ({e})\n", code=127)
    out, err = io.StringIO(), io.StringIO()
    saved_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(args)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.stdin = saved_stdin
    return ToolResult(out.getvalue(), err.getvalue(), int(code or 0))


@tool("filecheck")
def filecheck(args: list[str], stdin: str) -> ToolResult:
    """The ``filecheck`` package's matcher over ``stdin`` (its usual options apply)."""
    from filecheck.finput import FInput
    from filecheck.matcher import Matcher
    from filecheck.options import parse_argv_options
    from filecheck.parser import Parser

    opts = parse_argv_options(["filecheck", *args])
    err = io.StringIO()
    with contextlib.redirect_stdout(err), contextlib.redirect_stderr(err):
        matcher = Matcher(opts, FInput("<stdin>", FInput.canonicalize_line_ends(stdin)),
                          Parser.from_opts(opts))
        code = matcher.run()
    return ToolResult(stderr=err.getvalue(), code=code)


# ---------------------------------------------------------------------------
# Running RUN lines

def run_lines(path: Path) -> list[str]:
    """The RUN commands of a test file, with ``\\`` continuations joined."""
    commands: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        _, marker, command = line.partition("// RUN:")
        if not marker:
            continue
        command = pending + command.strip()
        if command.endswith("\\"):
            pending = command[:-1].rstrip() + " "
            continue
        pending = ""
        commands.append(command)
    return commands


def run_pipeline(command: str, path: Path) -> tuple[bool, str]:
    """Run one RUN line; returns (success, a transcript of every stage for the report)."""
    words = [str(path) if w == "%s" else w for w in shlex.split(command)]
    stages: list[list[str]] = [[]]
    for w in words:
        if w == "|":
            stages.append([])
        else:
            stages[-1].append(w)
    data, ok, transcript = "", True, []
    for stage in stages:
        result, stage_ok = _run_stage(stage, data)
        data = result.stdout
        ok = ok and stage_ok
        transcript.append(f"$ {' '.join(stage)}  (exit {result.code})\n"
                          f"--- stdout ---\n{result.stdout}--- stderr ---\n{result.stderr}")
    return ok, "\n".join(transcript)


def _run_stage(words: list[str], stdin: str) -> tuple[ToolResult, bool]:
    invert = bool(words) and words[0] == "not"
    if invert:
        words = words[1:]
    merge = "2>&1" in words
    words = [w for w in words if w != "2>&1"]
    if not words or words[0] not in TOOLS:
        name = words[0] if words else "(nothing)"
        return ToolResult(stderr=f"unknown tool '{name}' (known: {', '.join(sorted(TOOLS))})\n",
                          code=127), False
    result = TOOLS[words[0]](words[1:], stdin)
    if merge:
        result = ToolResult(result.stdout + result.stderr, "", result.code)
    succeeded = result.code == 0
    if result.code == 127:      # a missing tool is never an expected failure
        return result, False
    return result, succeeded != invert


def check_file(path: Path) -> None:
    """Run every RUN line of ``path``; fail the test with the transcript of the first failing one."""
    commands = run_lines(path)
    if not commands:
        pytest.fail(f"{path.name} has no '// RUN:' line")
    for command in commands:
        ok, transcript = run_pipeline(command, path)
        if not ok:
            pytest.fail(f"RUN line failed: {command}\n\n{transcript}", pytrace=False)


@pytest.mark.parametrize("path", sorted(IR_DIR.glob("*.mlir")), ids=lambda p: p.name)
def test_ir_file(path: Path) -> None:
    check_file(path)


# ---------------------------------------------------------------------------
# The harness itself can fail

def test_there_are_ir_tests() -> None:
    assert len(list(IR_DIR.glob("*.mlir"))) >= 6


def test_a_wrong_check_line_fails(tmp_path: Path) -> None:
    path = tmp_path / "wrong.mlir"
    path.write_text(
        "// RUN: parse-print %s | filecheck %s\n"
        "// CHECK: func.func @g\n"
        "func.func @f(%x: tensor<f32>) -> (tensor<f32>) {\n"
        "  func.return %x : tensor<f32>\n"
        "}\n")
    ok, transcript = run_pipeline(run_lines(path)[0], path)
    assert not ok
    assert "func.func @g" in transcript


def test_not_inverts_and_an_unexpected_success_fails(tmp_path: Path) -> None:
    path = tmp_path / "valid.mlir"
    path.write_text("func.func @f(%x: tensor<f32>) -> (tensor<f32>) {\n"
                    "  func.return %x : tensor<f32>\n}\n")
    assert run_pipeline("verify %s", path)[0]
    assert not run_pipeline("not verify %s", path)[0]
    bad = tmp_path / "bad.mlir"
    bad.write_text("func.func @f(%x: tensor<f32>) -> (tensor<f32>) {\n"
                   "  func.return %y : tensor<f32>\n}\n")
    assert not run_pipeline("verify %s", bad)[0]
    assert run_pipeline("not verify %s", bad)[0]


def test_unknown_tool_fails_even_under_not(tmp_path: Path) -> None:
    path = tmp_path / "x.mlir"
    path.write_text("")
    ok, transcript = run_pipeline("not no-such-tool %s", path)
    assert not ok
    assert "unknown tool 'no-such-tool'" in transcript


def test_run_lines_join_continuations(tmp_path: Path) -> None:
    path = tmp_path / "c.mlir"
    path.write_text("// RUN: parse-print %s \\\n// RUN:   | filecheck %s\n// RUN: verify %s\n")
    assert run_lines(path) == ["parse-print %s | filecheck %s", "verify %s"]
