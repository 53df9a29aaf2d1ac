"""A target that misbehaves on request, so tests can check the runner catches it all.

Not one of :data:`fuzz.targets.TARGETS` (the fuzzer never picks it); the
case text says what to do: ``ok``, ``reject`` (a DlError), ``raise`` (a
ValueError), ``mismatch``, ``segv`` (the worker dies of SIGSEGV), ``exit``
(it exits with status 3) or ``hang``.  Anything else counts its lines, so
the minimiser has something to shrink: a text is a finding when it holds a
line ``bug``.
"""

from __future__ import annotations

import os
import random
import signal
import time

from compiler.diagnostics import DlError

from ..oracle import Mismatch

NAME = "selftest"
SUFFIX = ".txt"
TIMEOUT = 3.0


def generate(rng: random.Random) -> tuple[str, str]:
    return rng.choice(["ok", "reject"]), "selftest"


def run(text: str, stats: dict[str, int]) -> None:
    action = text.strip()
    stats["runs"] = 1
    if action == "reject":
        raise DlError("rejected on request")
    if action == "raise":
        raise ValueError("raised on request")
    if action == "mismatch":
        raise Mismatch("requested", "a mismatch on request")
    if action == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if action == "exit":
        os._exit(3)
    if action == "hang":
        time.sleep(60)
    if any(line.strip() == "bug" for line in text.splitlines()):
        raise ValueError("a line says bug")
