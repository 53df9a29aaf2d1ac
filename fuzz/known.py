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
from dataclasses import dataclass
from typing import Callable

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


KNOWN_OPEN: tuple[KnownDefect, ...] = (
    KnownDefect(
        "interpreter-empty-reduction",
        "the interpreter's max, min and argmax (and softmax's max) over a zero-length axis raise "
        "numpy's ValueError (`dlc run --interp` exits 70); native code gives -inf, +inf, 0",
        lambda case, o: _exception(o, "ValueError", "zero-size array to reduction operation",
                                   "argmax of an empty sequence")),
    KnownDefect(
        "sign-nan",
        "native sign(NaN) is 0, the interpreter's NaN",
        lambda case, o: (o.kind == "mismatch" and o.error.endswith("NaN in different places")
                         and re.search(r"\bsign\b", case.text) is not None)),
    KnownDefect(
        "cast-nan-inf-to-int",
        "float -> int casts of NaN and ±inf: native code and numpy (INT_MIN) give different integers "
        "(and so does all integer arithmetic downstream)",
        lambda case, o: (o.kind == "mismatch" and o.error.endswith("values differ") and "cast" in case.text
                         and re.search(r"\b(nan|inf)\b", o.details) is not None)),
    KnownDefect(
        "checkpoint-field-types",
        "checkpoint metadata with fields of the wrong type (a string shape, a params entry that is "
        "not an object, a step that is not a number) raises TypeError, KeyError or ValueError",
        lambda case, o: (_file_kind(case) == "checkpoint" and o.kind == "exception"
                         and o.error in ("TypeError", "KeyError", "ValueError", "AttributeError", "IndexError")
                         and o.where.startswith("runtime/checkpoint.py"))),
    KnownDefect(
        "cache-header-trusted",
        "an object-cache entry's JSON header (the functions' signatures) is neither checksummed nor "
        "validated: a damaged header raises TypeError, KeyError or ValueError on load or call",
        lambda case, o: _file_kind(case) == "cache_object" and o.kind in ("exception", "mismatch", "signal")),
    KnownDefect(
        "huge-literal-folding",
        "folding `2 ** 99999` gives an int too large for a float (OverflowError); "
        "`2 ** 99999999999` folds for minutes (a hang)",
        lambda case, o: (_exception(o, "OverflowError", "int too large to convert to float")
                         or (o.kind == "timeout" and "**" in case.text)),
        avoids=lambda case: re.search(r"\*\*\s*\(?\s*9{8,}", case.text) is not None),
    KnownDefect(
        "recursion-deep-programs",
        "deep or long programs (a chain of a few hundred fused elementwise lets) exhaust Python's "
        "recursion limit in codegen (loops.remap): RecursionError",
        lambda case, o: o.kind == "exception" and o.error == "RecursionError",
        avoids=lambda case: case.mode == "deep"),
    KnownDefect(
        "size-overflow",
        "sizes beyond what numpy can allocate reach the runtime unchecked: a huge zero-stride view "
        "argument is copied (MemoryError), a huge static output is allocated (ValueError)",
        lambda case, o: (o.kind == "exception" and o.where.startswith("runtime/compiled.py")
                         and o.error in ("MemoryError", "ValueError")
                         and any(t in o.message for t in ("Unable to allocate", "array is too big",
                                                          "Maximum allowed dimension")))),
    # Found by this fuzzer (not on the safety issue's list when it was written):
    KnownDefect(
        "python-int-out-of-range",
        "a Python int too large for a rank-0 integer parameter raises OverflowError in the "
        "argument check instead of an ArgumentTypeError",
        lambda case, o: (_exception(o, "OverflowError", "too large to convert", "out of bounds")
                         and o.where.startswith("runtime/compiled.py"))),
    KnownDefect(
        "matmul-epilogue-cast",
        "a matmul whose fused epilogue casts to another dtype fails in codegen: the GEMM is emitted "
        "for the cast's element type (`cast(x @ x, f32)` with x: f64[3, 3] or i32[2, 2]: TypeError: "
        "Type of #1 arg mismatch; with elementwise ops between them: ValueError: Operands must be "
        "the same type)",
        lambda case, o: (o.kind == "exception" and (o.where.startswith("compiler/codegen/gemm.py")
                                                    or "Operands must be the same type" in o.message))),
    KnownDefect(
        "pow-special-values",
        "native pow misses IEEE pow's special cases and gives NaN where numpy gives a number: "
        "(-inf) ** -0.15 (numpy 0.0), (-1) ** inf (numpy 1.0)",
        lambda case, o: (o.kind == "mismatch" and o.error.endswith("NaN in different places")
                         and ("**" in case.text or "pow" in case.text)
                         and re.search(r"native np\.float(32|64)\(nan\)", o.message) is not None)),
    KnownDefect(
        "zip-compression-method",
        "a damaged .npz (data or checkpoint) whose zip header names an unknown compression method "
        "raises zipfile's NotImplementedError instead of a DlRuntimeError",
        lambda case, o: (o.kind == "exception" and o.error == "NotImplementedError"
                         and o.where.startswith(("runtime/data.py", "runtime/checkpoint.py")))),
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
