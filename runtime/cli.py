"""The ``dlc`` command line: ``dlc COMMAND [options]``.

Commands are modules of :mod:`runtime.commands` listed in :data:`COMMANDS`;
adding one is adding its name there (see ``runtime/commands/__init__.py``
for what a command module defines).  :func:`main` turns every
:class:`~compiler.diagnostics.DlError` into ``file:line:col: error: ...`` on
stderr and exit status 1 (an ``OSError`` from the file system too, as
``error: path: reason``); no Python traceback reaches a user.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from types import ModuleType
from typing import TextIO

from compiler import __version__
from compiler.diagnostics import DlError

# One line per command: the module runtime/commands/<name>.py.
COMMANDS = [
    "check",
    "ir",
    "run",
    "train",
    "evaluate",
    "predict",
    "generate",
    "compile",
    "cache",
    "opt",
    "passes",
    "graph",
    "stats",
    "gradcheck",
    "export",
    "import",
]

EXIT_USER_ERROR = 1
EXIT_INTERNAL_ERROR = 70      # EX_SOFTWARE
EXIT_INTERRUPTED = 130        # 128 + SIGINT


def command_modules() -> list[ModuleType]:
    return [importlib.import_module(f"runtime.commands.{name}") for name in COMMANDS]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="dlc", description="dlc: a small machine-learning compiler for .dl models")
    parser.add_argument("--version", action="version", version=f"dlc {__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help="on an internal error, show the Python traceback")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in command_modules():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``dlc`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:       # --help, --version, or a usage error (already printed)
        return e.code if isinstance(e.code, int) else 0
    # the process is this command (not a caller of main): --time-passes counts its start-up
    args.own_process = argv is None
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.handler(args))
    except DlError as e:
        print(e.render(), file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as e:          # the file system said no (a read-only cache folder, a full disk): not a bug
        if args.traceback:
            raise
        print(f"error: {_os_error_text(e)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("dlc: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:       # e.g. `dlc ir ... | head`
        sys.stderr.close()
        return 0
    except Exception as e:  # noqa: BLE001  (an internal error: report it without a traceback)
        if args.traceback:
            raise
        print(f"dlc: internal error: {type(e).__name__}: {e}\n"
              "(this is a bug in dlc; run with --traceback for details)", file=sys.stderr)
        return EXIT_INTERNAL_ERROR


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    """Warnings (a discarded cache entry) as one ``warning: ...`` line, not Python's file:line form."""
    print(f"warning: {message}", file=file or sys.stderr)


def _os_error_text(e: OSError) -> str:
    """``path: reason`` for an OSError, naming both paths of a failed rename."""
    paths = " -> ".join(str(p) for p in (e.filename, e.filename2) if p is not None)
    reason = e.strerror or str(e)
    return f"{paths}: {reason}" if paths else reason


if __name__ == "__main__":
    sys.exit(main())
