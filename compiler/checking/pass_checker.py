"""The per-pass differential checker: which pass changed the results?

``run_pipeline(module, pipeline, instrumentations=[PassChecker(module)])``
(``--check-each-pass`` on the command line) runs every function of the module through the
reference interpreter on seeded random inputs before the first pass, and
again after each pass; the first pass after which a function's outputs
differ beyond tolerance is named in a :class:`PassCheckError`::

    error: pass 'canonicalize' changed the results of @loss
    note: output 0 ('loss'): max abs difference 0.75 (rtol 0.0001, atol 1e-05)

Inputs: symbolic dims are bound to small sizes (3 unless ``bindings`` says
otherwise); float arguments are standard normal, except the parameters of a
model, which are drawn from their declared initializers (so a softmax
classifier is not driven into saturation); integer arguments are labels in
``[0, C)`` with ``C`` read from their use (see :func:`compiler.checking.gradcheck.random_inputs`).
Float outputs compare with ``numpy.allclose(rtol, atol, equal_nan=True)``
against the outputs before the pass; integer and bool outputs must be equal.

A gradient function a pass builds (a placeholder marked
``attrs["grad_of"]`` that has a body after the pass: the ``autodiff``
pass) has nothing to compare with; it is checked against central finite
differences of the function it differentiates, in float64, through
:func:`compiler.checking.gradcheck.gradcheck`.  A function that appears from nowhere
is recorded and checked by the passes after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..diagnostics import DlError
from ..initializers import model_param_values
from ..ir.core import Function, Module
from ..ir.types import TensorType
from ..passes.manager import PassInstrumentation
from .gradcheck import gradcheck, random_inputs

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 1e-5
GRADCHECK_TOL = 1e-4


class PassCheckError(DlError):
    """A pass changed what a function computes (or built a wrong gradient)."""


@dataclass(slots=True)
class _Case:
    """One function's inputs and its outputs after the last pass."""

    signature: list[tuple[str | None, TensorType]]
    inputs: list[np.ndarray]
    outputs: list[np.ndarray]


@dataclass(slots=True)
class CheckReport:
    """What the checker did: comparisons and gradient checks per pass."""

    compared: dict[str, list[str]] = field(default_factory=dict)     # pass -> functions
    gradchecked: dict[str, list[str]] = field(default_factory=dict)  # pass -> functions
    skipped: dict[str, str] = field(default_factory=dict)            # function -> why


class PassChecker(PassInstrumentation):
    """Runs the interpreter before the first pass and after each, comparing outputs.

    A pass instrumentation: construct it on the module a pipeline starts from
    and hand it to :func:`~compiler.passes.manager.run_pipeline`.
    """

    def __init__(self, module: Module, *, seed: int = 0, bindings: dict[str, int] | None = None,
                 rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL,
                 gradcheck_tol: float = GRADCHECK_TOL):
        self.seed = seed
        self.bindings = dict(bindings or {})
        self.rtol = rtol
        self.atol = atol
        self.gradcheck_tol = gradcheck_tol
        self.report = CheckReport()
        self._cases: dict[str, _Case] = {}
        self._placeholders: dict[str, dict[str, Any]] = {}
        for func in module.functions:
            self._record(module, func)

    # -- recording -----------------------------------------------------------------

    def _record(self, module: Module, func: Function) -> None:
        """Remember ``func``'s inputs and outputs (or its gradient spec, for a placeholder)."""
        if _is_placeholder(func):
            self._placeholders[func.name] = dict(func.attrs["grad_of"])
            return
        inputs = self._inputs(module, func)
        try:
            outputs = _run(func, inputs)
        except DlError as e:
            self.report.skipped[func.name] = f"the interpreter cannot run it: {e.message}"
            self._cases.pop(func.name, None)
            return
        self._cases[func.name] = _Case(_signature(func), inputs, outputs)

    def _inputs(self, module: Module, func: Function) -> list[np.ndarray]:
        """Seeded random arguments; a model's parameters drawn from their initializers."""
        _, args = random_inputs(func, seed=self.seed, bindings=self.bindings)
        initialized = model_param_values(module, func, self.seed)
        return [initialized.get(p.name, args[p.name]) for p in func.params]  # type: ignore[index]

    # -- checking ------------------------------------------------------------------

    def run_after_pass(self, pass_name: str, module: Module) -> None:
        """Check every function of ``module`` as it stands after ``pass_name``.

        Raises :class:`PassCheckError` naming the pass and the function.
        """
        for func in module.functions:
            if _is_placeholder(func):
                self._placeholders[func.name] = dict(func.attrs["grad_of"])
            elif func.name in self._placeholders:
                self._check_gradient(pass_name, module, func)
                del self._placeholders[func.name]
                self._record(module, func)
            elif func.name in self._cases:
                self._compare(pass_name, func)
            else:
                self._record(module, func)

    def _compare(self, pass_name: str, func: Function) -> None:
        case = self._cases[func.name]
        if _signature(func) != case.signature:
            raise PassCheckError(f"pass '{pass_name}' changed the signature of @{func.name}",
                                 func.loc)
        try:
            outputs = _run(func, case.inputs)
        except DlError as e:
            raise PassCheckError(f"after pass '{pass_name}', @{func.name} no longer runs",
                                 func.loc, notes=e.render().splitlines()) from e
        problems = self._differences(func, case.outputs, outputs)
        if problems:
            raise PassCheckError(f"pass '{pass_name}' changed the results of @{func.name}",
                                 func.loc, notes=problems)
        case.outputs = outputs
        self.report.compared.setdefault(pass_name, []).append(func.name)

    def _differences(self, func: Function, before: list[np.ndarray],
                     after: list[np.ndarray]) -> list[str]:
        """One note per output that differs beyond tolerance."""
        notes: list[str] = []
        if len(before) != len(after):
            return [f"{len(before)} outputs before, {len(after)} after"]
        for i, (old, new) in enumerate(zip(before, after)):
            label = _output_label(func, i)
            if old.shape != new.shape or old.dtype != new.dtype:
                notes.append(f"{label}: {old.dtype}{list(old.shape)} before, "
                             f"{new.dtype}{list(new.shape)} after")
            elif old.dtype.kind == "f":
                if not np.allclose(new, old, rtol=self.rtol, atol=self.atol, equal_nan=True):
                    notes.append(f"{label}: max abs difference {_max_diff(old, new):.6g} "
                                 f"(rtol {self.rtol:g}, atol {self.atol:g})")
            elif not np.array_equal(old, new):
                count = int(np.sum(old != new))
                notes.append(f"{label}: {count} of {old.size} elements differ (must be equal)")
        return notes

    def _check_gradient(self, pass_name: str, module: Module, func: Function) -> None:
        """A gradient function built by ``pass_name``, against finite differences."""
        spec = self._placeholders[func.name]
        fn, wrt = str(spec["fn"]), [str(w) for w in spec["wrt"]]
        report = gradcheck(module, fn, wrt, grad_fn=func.name, seed=self.seed,
                           tol=self.gradcheck_tol, bindings=self.bindings)
        if not report.passed:
            raise PassCheckError(
                f"pass '{pass_name}' built a wrong gradient: @{func.name} (d {fn} / d "
                f"{', '.join(wrt)}) disagrees with finite differences",
                func.loc, notes=report.format().splitlines())
        self.report.gradchecked.setdefault(pass_name, []).append(func.name)


# ---------------------------------------------------------------------------
# Helpers


def _is_placeholder(func: Function) -> bool:
    return "grad_of" in func.attrs and not func.ops and not func.outputs


def _signature(func: Function) -> list[tuple[str | None, TensorType]]:
    return [(p.name, p.type) for p in func.params]


def _run(func: Function, inputs: list[np.ndarray]) -> list[np.ndarray]:
    from ..ir.interpreter import interpret

    return [np.asarray(a) for a in interpret(func, [a.copy() for a in inputs])]


def _output_label(func: Function, i: int) -> str:
    name = func.output_names[i] if i < len(func.output_names) else None
    return f"output {i} ('{name}')" if name else f"output {i}"


def _max_diff(old: np.ndarray, new: np.ndarray) -> float:
    """The largest absolute difference; equal NaNs and equal infinities count as 0."""
    a, b = old.astype(np.float64), new.astype(np.float64)
    if np.any(np.isnan(a) != np.isnan(b)):
        return float("inf")
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - b)
    return float(np.max(np.where(np.isnan(diff), 0.0, diff), initial=0.0))
