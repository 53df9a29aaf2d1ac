"""Known-open defects: findings the fuzzer reports as known rather than new.

Each entry names one defect that is being fixed elsewhere, says what
happens, and recognises its findings (``matches``).  Some also recognise the
*cases* that would hit it (``avoids``): the seeded run in the test suite
(``tests/test_fuzz.py``) skips those (a hang or a runaway allocation costs
the suite a case timeout) and fails on any finding not listed here.  When a
fix lands, delete its entry: the suite then holds the fix to the fuzzer.
"""

from __future__ import annotations

import re
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


_VALUES = re.compile(r"native np\.float32\(([-0-9.e+]+)\).*f64 interpreter np\.float64\(([-0-9.e+]+)\)")


def _f32_rounding_drift(case: Case, outcome: Outcome) -> bool:
    """A native f32 scalar within 1e-4 (relative) of the float64 answer: a long reduction's
    rounding, not a wrong formula."""
    if outcome.kind != "mismatch" or "values differ beyond the tolerance" not in outcome.error:
        return False
    found = _VALUES.search(outcome.message)
    if found is None:
        return False
    native, exact = (float(v) for v in found.groups())
    return exact != 0 and abs(native - exact) <= 1e-4 * abs(exact)


# Every defect the fuzzer found while it was being written is fixed, each with a regression test
# (tests/test_fuzz_regressions.py and the safety issue's tests).  Open ones, with a way to
# recognise their findings:
KNOWN_OPEN: tuple[KnownDefect, ...] = (
    KnownDefect(
        "f32-long-reduction-on-narrow-targets",
        "on scalar code (vector_lanes=1) a full f32 reduction adds ~5,000 terms per chunk into one "
        "accumulator: up to ~3e-5 relative error on 327,680 terms where numpy sums pairwise (4 lanes "
        "1.8e-6, 16 lanes 2.7e-7); fix: two-level accumulation in kernels._Reduction._row",
        _f32_rounding_drift),
)


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
