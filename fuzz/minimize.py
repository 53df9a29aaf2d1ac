"""Delta debugging: the smallest input that still shows the same finding.

:func:`ddmin` is Zeller's algorithm over a list of units, removing chunks
(complements) while the test still holds; :func:`minimize_text` runs it on
lines, then on tokens (``fuzz/mutate.py``), within a deadline.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TypeVar

from .mutate import ATOM

DIRECTIVE = re.compile(r"\s*(#|//)\s*fuzz:")
SPACED_TOKEN = re.compile(r"^\s+|(?:" + ATOM + r")\s*", re.S)
BLOCK_START = re.compile(r"(?m)^(?=(?:fn |model |\s{0,2}func\.func |\s*$|\}))")

T = TypeVar("T")


class Budget:
    """A deadline and a cap on the number of tests, shared by the levels of a minimisation."""

    def __init__(self, seconds: float, tests: int):
        self.deadline = time.monotonic() + seconds
        self.tests_left = tests

    def spend(self) -> bool:
        """Whether one more test may run (and count it)."""
        if self.tests_left <= 0 or time.monotonic() > self.deadline:
            return False
        self.tests_left -= 1
        return True


def ddmin(units: list[T], test: Callable[[list[T]], bool], budget: Budget) -> list[T]:
    """A 1-minimal-ish sublist of ``units`` for which ``test`` holds (it holds for ``units``)."""
    n = 2
    while len(units) >= 2:
        size = -(-len(units) // n)
        chunks = [units[i:i + size] for i in range(0, len(units), size)]
        for i in range(len(chunks)):
            complement = [u for j, c in enumerate(chunks) if j != i for u in c]
            if not budget.spend():
                return units
            if test(complement):
                units, n = complement, max(n - 1, 2)
                break
        else:
            if n >= len(units):
                return units
            n = min(2 * n, len(units))
    return units


def minimize_text(text: str, still_fails: Callable[[str], bool], budget: Budget) -> str:
    """``text`` reduced by blocks (functions, models), lines, then tokens, while
    ``still_fails`` holds.  Leading directive lines (``# fuzz: ...``) are kept whole,
    and dropped at the end only if the finding does not need them."""
    seen: dict[str, bool] = {text: True}

    def test(candidate: str) -> bool:
        if candidate not in seen:
            seen[candidate] = still_fails(candidate)
        return seen[candidate]

    lines = text.splitlines(keepends=True)
    n_head = next((i for i, line in enumerate(lines) if not DIRECTIVE.match(line)), len(lines))
    head, body = "".join(lines[:n_head]), "".join(lines[n_head:])
    for split in (blocks, lambda t: t.splitlines(keepends=True), spaced_tokens):
        body = "".join(ddmin(split(body), lambda units: test(head + "".join(units)), budget))
    if head and budget.spend() and test(body):
        return body
    return head + body


def spaced_tokens(text: str) -> list[str]:
    """Tokens with the whitespace after them, so removing one keeps its neighbours apart."""
    return SPACED_TOKEN.findall(text)


def blocks(text: str) -> list[str]:
    """``text`` cut before each top-level item (``fn``, ``model``, ``func.func``), closing brace
    at the start of a line, and blank line."""
    return [part for part in BLOCK_START.split(text) if part]
