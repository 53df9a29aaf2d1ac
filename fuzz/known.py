"""Known-open defects: findings the fuzzer reports as known rather than new.

Each entry names one defect that is being fixed elsewhere, says what
happens, and recognises its findings (``matches``).  Some also recognise the
*cases* that would hit it (``avoids``): the seeded run in the test suite
(``tests/test_fuzz.py``) skips those (a hang or a runaway allocation costs
the suite a case timeout) and fails on any finding not listed here.  When a
fix lands, delete its entry: the suite then holds the fix to the fuzzer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .case import Case, Outcome, directives


@dataclass(frozen=True)
class KnownDefect:
    """A defect being fixed, and how to recognise its findings (and cases)."""

    name: str
    description: str
    matches: Callable[[Case, Outcome], bool]
    avoids: Callable[[Case], bool] | None = None


def _exception(outcome: Outcome, error: str, *texts: str) -> bool:
    """An exception of class ``error`` whose message holds one of ``texts``."""
    return (outcome.kind == "exception" and outcome.error == error
            and any(t in outcome.message for t in texts))


def _file_kind(case: Case) -> str:
    return directives(case.text).get("kind", "") if case.target == "files" else ""


# Every defect the fuzzer found is fixed, each with a regression test (tests/test_fuzz_regressions.py
# and the safety issue's tests); list new ones here while they are open, with a way to recognise
# their findings.
KNOWN_OPEN: tuple[KnownDefect, ...] = ()


def classify(case: Case, outcome: Outcome) -> str | None:
    """The name of the known-open defect behind a finding, or None (a new finding)."""
    for defect in KNOWN_OPEN:
        if defect.matches(case, outcome):
            return defect.name
    return None


def avoided(case: Case) -> str | None:
    """The name of the known-open defect ``case`` would hit, for runs that avoid them."""
    for defect in KNOWN_OPEN:
        if defect.avoids is not None and defect.avoids(case):
            return defect.name
    return None
