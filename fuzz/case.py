"""What the fuzzer passes around: a :class:`Case` (an input for one target) and the
:class:`Outcome` of running it.

A case is text, always: ``.dl`` source, IR text, or a small line-oriented
script (``runtime_args``, ``files``).  Its first line may hold directives
(``# fuzz: seed=12 trusted=f0``) that make the case self-contained: the
worker derives every random choice it makes while running the case (inputs,
codegen options, file edits) from them, so a case replays exactly and can be
minimised line by line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

OK = "ok"                # accepted and checked (compiled, run, compared ...)
REJECTED = "rejected"    # a DlError: a clean, user-facing diagnostic
FINDING = "finding"      # anything else: see Outcome.kind

REPO_ROOT = Path(__file__).resolve().parents[1]
DLC_PACKAGES = ("compiler", "frontend_dsl", "runtime")

_DIRECTIVE = re.compile(r"^\s*(?:#|//)\s*fuzz:(.*)$", re.M)


@dataclass(frozen=True)
class Case:
    """One input for one target, and where it came from (reproducible from the seed)."""

    target: str
    seed: int          # the run's seed
    index: int         # the case's number within its target
    mode: str          # how it was made: "generated", "mutated example", ...
    text: str


@dataclass
class Outcome:
    """What running a case did.  For findings, ``kind`` is one of ``exception`` (not a
    DlError), ``mismatch`` (native code disagrees with the interpreter, or another
    oracle said no), ``signal`` (the worker died of one), ``exit`` (the worker
    exited) or ``timeout`` (a hang)."""

    status: str
    kind: str = ""
    error: str = ""           # exception class, mismatch class, signal name, ...
    message: str = ""
    where: str = ""           # innermost frame in dlc's own code, "path:line (function)"
    details: str = ""         # traceback, mismatch report, the worker's last output
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def signature(self) -> str:
        """What makes two findings "the same": kind, error and place."""
        return "|".join((self.kind, self.error, self.where))


def directives(text: str) -> dict[str, str]:
    """``key=value`` pairs from the case's ``# fuzz:`` (or ``// fuzz:``) lines."""
    found: dict[str, str] = {}
    for match in _DIRECTIVE.finditer(text):
        for item in match.group(1).split():
            key, _, value = item.partition("=")
            found[key] = value
    return found


def int_directive(text: str, key: str, default: int = 0) -> int:
    """An integer directive, or ``default`` when it is missing or garbled (a minimised case)."""
    try:
        return int(directives(text).get(key, default))
    except ValueError:
        return default


def dlc_frame(tb_frames: list[tuple[str, int, str]]) -> str:
    """The innermost of ``(file, line, function)`` frames that lies in dlc's packages, or
    failing that in the fuzzer itself (``harness: ...``: a bug in the fuzzer)."""
    for packages, label in ((DLC_PACKAGES, ""), (("fuzz",), "harness: ")):
        for filename, line, function in reversed(tb_frames):
            parts = Path(filename).parts
            starts = [i for i, part in enumerate(parts) if part in packages]
            if starts:
                rel = "/".join(parts[starts[-1]:])
                return f"{label}{rel}:{line} ({function})"
    return ""
