"""The ONNX backend node tests, run through dlc's importer.

The ``onnx`` package ships a test case per op and variant
(``onnx.backend.test.case.node``: a one-node model, inputs, expected
outputs, tolerances).  :func:`run_case` imports a case's model
(:mod:`.onnx_import`), runs the dl function with the reference interpreter
(or native code) and compares with ONNX's expected outputs at the case's
tolerances.  A case ends in one of:

- ``passed`` -- every output within ``rtol``/``atol`` (ONNX's 1e-3/1e-7);
- ``failed`` -- a wrong number or shape, or an error while running;
- ``unsupported`` -- every op of the case has an import rule, but the rule
  refuses this variant (a dtype dlc lacks, such as f16 or u8; an attribute
  value it has no meaning for);
- ``no rule`` -- an op of the case has no import rule (outside dlc's set).

``python bench/onnx_conformance.py`` runs them all and prints the counts
(docs/interop.md shows them); ``tests/test_onnx.py`` runs a fast subset.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from compiler.diagnostics import DlError

from . import require
from .onnx_import import OnnxImportError, import_onnx
from .onnx_table import IMPORTS

STATUSES = ("passed", "failed", "unsupported", "no rule")


@dataclass
class Outcome:
    name: str
    status: str
    ops: tuple[str, ...]
    detail: str = ""


def collect(modules: list[str] | None = None) -> list[Any]:
    """ONNX's node test cases: all of them, or those of the named case modules (``"add"``,
    ``"gemm"``: files of ``onnx/backend/test/case/node/``), which is much faster."""
    require("onnx", "onnx")
    node = importlib.import_module("onnx.backend.test.case.node")
    if modules is None:
        return list(node.collect_testcases())
    for name in modules:
        importlib.import_module(f"onnx.backend.test.case.node.{name}")
    return list(node._NodeTestCases)    # the cases defined so far (the module's own registry)


def case_ops(case: Any) -> tuple[str, ...]:
    return tuple(sorted({n.op_type for n in case.model.graph.node}))


def run_case(case: Any, run: Callable[[Any, list[np.ndarray]], list[np.ndarray]] | None = None) -> Outcome:
    """Import ``case.model``, run it on each data set, compare; see the module docstring."""
    ops = case_ops(case)
    missing = [op for op in ops if op not in IMPORTS]
    if missing:
        return Outcome(case.name, "no rule", ops, ", ".join(missing))
    names = [vi.name for vi in case.model.graph.input]
    bound: dict[str, np.ndarray] = {}
    try:
        graph = import_onnx(case.model)
    except OnnxImportError as e:
        if not e.bindable or len(case.data_sets) != 1:
            return Outcome(case.name, "unsupported", ops, e.message.splitlines()[-1].strip())
        # an input that stands for an attribute (axes, a shape): specialize to the case's value
        bound = {n: _array(x) for n, x in zip(names, case.data_sets[0][0]) if n in e.bindable}
        try:
            graph = import_onnx(case.model, bind=bound)
        except OnnxImportError as e2:
            return Outcome(case.name, "unsupported", ops, e2.message.splitlines()[-1].strip())
    run = run or _interpret
    for inputs, expected in case.data_sets:
        fed = [_array(x) for n, x in zip(names, inputs) if n not in bound]
        try:
            got = run(graph, [*graph.weights.values(), *fed])
        except DlError as e:
            return Outcome(case.name, "failed", ops, f"{type(e).__name__}: {e.message}")
        problem = _compare(got, [_array(e) for e in expected], case.rtol, case.atol)
        if problem:
            return Outcome(case.name, "failed", ops, problem)
    return Outcome(case.name, "passed", ops)


def _array(x: Any) -> np.ndarray:
    """A data set's value as numpy (some cases hold TensorProtos)."""
    if hasattr(x, "dims"):
        from onnx import numpy_helper

        return numpy_helper.to_array(x)
    return np.asarray(x)


def _interpret(graph: Any, args: list[np.ndarray]) -> list[np.ndarray]:
    from compiler.ir.interpreter import interpret

    return interpret(graph.function, args)


def _compare(got: list[np.ndarray], expected: list[np.ndarray], rtol: float, atol: float) -> str:
    if len(got) != len(expected):
        return f"{len(got)} outputs, expected {len(expected)}"
    for i, (a, e) in enumerate(zip(got, expected)):
        a, e = np.asarray(a), np.asarray(e)
        if a.shape != e.shape:
            return f"output {i}: shape {list(a.shape)}, expected {list(e.shape)}"
        if a.dtype != e.dtype:
            return f"output {i}: {a.dtype}, expected {e.dtype}"
        if e.dtype.kind in "biu":
            if not np.array_equal(a, e):
                return f"output {i}: {int((a != e).sum())} of {e.size} elements differ"
        elif not np.allclose(a, e, rtol=rtol, atol=atol, equal_nan=True):
            err = np.nanmax(np.abs(a.astype(np.float64) - e)) if e.size else 0.0
            return f"output {i}: max abs error {err:.3g} (rtol {rtol}, atol {atol})"
    return ""


def summarize(outcomes: list[Outcome]) -> dict[str, int]:
    counts = Counter(o.status for o in outcomes)
    return {s: counts.get(s, 0) for s in STATUSES}


def by_op(outcomes: list[Outcome]) -> dict[str, dict[str, int]]:
    """Counts per op type, for the cases whose ops all have import rules."""
    table: dict[str, Counter[str]] = {}
    for o in outcomes:
        if o.status == "no rule":
            continue
        for op in o.ops:
            table.setdefault(op, Counter())[o.status] += 1
    return {op: {s: c.get(s, 0) for s in STATUSES[:3]} for op, c in sorted(table.items())}
