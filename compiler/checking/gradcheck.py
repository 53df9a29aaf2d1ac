"""Finite-difference gradient checking: autodiff against the reference interpreter.

``gradcheck(module, "loss")`` evaluates, in float64, the gradient that
:func:`compiler.passes.autodiff.grad` builds and compares it with central
finite differences of the function itself, both run by the numpy reference
interpreter:

- the function is first rebuilt in float64 (:func:`to_float64`: every ``f32``
  parameter, ``dtype`` attribute and dense constant becomes ``f64``; the shape
  rules run again), so finite differences are not drowned by rounding;
- symbolic dims are bound to small sizes (3 unless ``bindings`` says
  otherwise); float arguments are standard normal; integer arguments (labels)
  are drawn from ``[0, C)``, where ``C`` is found from their use (the last dim
  of the float operand they are used with, e.g. the logits of a sparse
  cross-entropy, or a ``depth`` attribute), or given in ``int_ranges``;
- for each argument, up to ``max_elements`` entries are perturbed one at a
  time, plus one random direction over the whole tensor; the error is
  ``max |analytic - numeric| / max(max |analytic|, max |numeric|, 1e-3 |f|, 1e-6)``.
  The floor ``1e-3 |f|`` keeps finite-difference rounding noise (about
  ``|f| 2^-52 / eps``) from failing gradients that are zero or nearly so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..diagnostics import DlError
from ..initializers import model_param_values
from ..ir.builder import new_function
from ..ir.core import Function, Module, Op, Value
from ..ir.types import DType, TensorType
from ..ops.base import get_op
from ..passes.autodiff import check_request, grad, inline_function

DEFAULT_DIM = 3
_FLOOR = 1e-6           # smallest gradient scale an error is measured against
_VALUE_FRACTION = 1e-3  # ... and, relative to |f|, below which FD noise dominates


class GradcheckError(DlError):
    """A gradcheck request that cannot be carried out (unknown function, bad inputs)."""


@dataclass(slots=True)
class ArgCheck:
    """The comparison for one argument."""

    name: str
    shape: tuple[int, ...]
    checked: int          # elements perturbed one at a time
    total: int            # elements in the argument
    max_abs_error: float  # over the checked elements and the random direction
    rel_error: float      # max_abs_error relative to the gradient's magnitude
    ok: bool
    max_grad: float = 0.0  # largest |autodiff derivative| compared: 0 means nothing was tested


@dataclass(slots=True)
class GradcheckReport:
    """The result of :func:`gradcheck`; ``str(report)`` is a table."""

    fn: str
    eps: float
    tol: float
    seed: int
    bindings: dict[str, int]
    args: list[ArgCheck] = field(default_factory=list)
    value: float = float("nan")

    @property
    def passed(self) -> bool:
        return all(a.ok for a in self.args)

    @property
    def max_rel_error(self) -> float:
        return max((a.rel_error for a in self.args), default=0.0)

    def format(self) -> str:
        """A table: one row per argument, and a verdict."""
        dims = ", ".join(f"{k}={v}" for k, v in self.bindings.items())
        head = (f"gradcheck @{self.fn}: float64, eps={self.eps:g}, tol={self.tol:g}, "
                f"seed={self.seed}" + (f", {dims}" if dims else ""))
        header = ("argument", "shape", "checked", "max abs error", "rel error", "status")
        rows = [(a.name, _shape_str(a.shape), f"{a.checked}/{a.total}",
                 f"{a.max_abs_error:.3e}", f"{a.rel_error:.3e}", "ok" if a.ok else "FAIL")
                for a in self.args]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = [head, f"value: {self.value:.6g}"]
        for r in [header, *rows]:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        verdict = "PASSED" if self.passed else "FAILED"
        lines.append(f"{verdict}: max relative error {self.max_rel_error:.3e} (tolerance {self.tol:g})")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _shape_str(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


# ---------------------------------------------------------------------------
# float64 copies of functions


def to_float64(func: Function, name: str | None = None) -> Function:
    """A copy of ``func`` computing in float64 instead of float32.

    Parameters of type f32 become f64, as do ``dtype`` attributes equal to f32
    (constants, casts, one_hot, iota) and f32 dense constants; every op is
    rebuilt through the builder, so shape rules derive the new result types.
    """
    params = [(p.name, _f64(p.type)) for p in func.params]
    new, b = new_function(name or func.name, params, loc=func.loc)
    env = inline_function(b, func, new.params, attrs=_f64_attrs)
    new.outputs = [env[v] for v in func.outputs]
    new.output_names = list(func.output_names)
    return new


def _f64(t: TensorType) -> TensorType:
    return t.with_dtype(DType.f64) if t.dtype is DType.f32 else t


def _f64_attrs(op: Op) -> dict[str, Any]:
    opdef = get_op(op.name)
    assert opdef is not None, f"unknown op dl.{op.name}"
    attrs = dict(op.attrs)
    for key, spec in opdef.attrs.items():
        value = attrs.get(key)
        if spec.kind == "dtype" and value is DType.f32:
            attrs[key] = DType.f64
        elif spec.kind == "dense" and isinstance(value, np.ndarray) and value.dtype == np.float32:
            attrs[key] = value.astype(np.float64)
    return attrs


# ---------------------------------------------------------------------------
# The check


def gradcheck(module: Module, fn_name: str, wrt: list[str] | None = None, *, seed: int = 0,
              eps: float = 1e-6, tol: float = 1e-4, bindings: dict[str, int] | None = None,
              int_ranges: dict[str, int] | None = None,
              inputs: dict[str, np.ndarray] | None = None,
              max_elements: int = 64, grad_fn: str | None = None) -> GradcheckReport:
    """Compare autodiff's gradient of ``@fn_name`` with central finite differences.

    ``wrt`` defaults to every float parameter.  A model's parameters are drawn from their declared initializers (so a
    softmax is not saturated and its gradient not trivially zero). ``inputs`` fixes the values of
    some arguments (others are random); ``int_ranges`` gives the exclusive
    upper bound of integer arguments.  ``grad_fn`` names an existing gradient
    function of the module to check (same parameters as ``@fn_name``, the
    gradients for ``wrt`` as its last outputs, as the ``autodiff`` pass builds
    them) instead of building one.  Returns a :class:`GradcheckReport`;
    ``report.passed`` tells whether every argument is within ``tol``.
    """
    from ..ir.interpreter import interpret

    if fn_name not in module:
        known = ", ".join(f.name for f in module.functions) or "none"
        raise GradcheckError(f"no function named '{fn_name}'",
                             notes=[f"functions in this module: {known}"])
    original = module.get(fn_name)
    if wrt is None:
        wrt = [p.name for p in original.params if p.type.dtype.is_float]
    check_request(original, wrt, original.loc)  # errors name the user's types, not f64 ones
    func64 = to_float64(original)
    if grad_fn is None:
        dfunc = grad(Module([func64]), fn_name, wrt, new_name=f"{fn_name}__grad", loc=func64.loc)
    elif grad_fn in module:
        dfunc = to_float64(module.get(grad_fn))
    else:
        raise GradcheckError(f"no gradient function named '{grad_fn}'")

    sizes = _bind_symbols(func64, bindings or {})
    rng = np.random.default_rng(seed)
    fixed = {**model_param_values(module, original, seed), **(inputs or {})}
    args = _random_args(func64, sizes, rng, int_ranges or {}, fixed)

    def f(values: dict[str, np.ndarray]) -> float:
        return float(interpret(func64, [values[p.name] for p in func64.params])[0])

    report = GradcheckReport(fn_name, eps, tol, seed, sizes, value=f(args))
    analytic = interpret(dfunc, [args[p.name] for p in func64.params])[-len(wrt):]
    floor = max(_FLOOR, _VALUE_FRACTION * abs(report.value))
    for name, g in zip(wrt, analytic):
        report.args.append(_check_argument(f, args, name, np.asarray(g, dtype=np.float64),
                                           eps, tol, max_elements, rng, floor))
    return report


def random_inputs(func: Function, *, seed: int = 0, bindings: dict[str, int] | None = None,
                  int_ranges: dict[str, int] | None = None
                  ) -> tuple[dict[str, int], dict[str, np.ndarray]]:
    """Random arguments for ``func`` drawn as :func:`gradcheck` draws them.

    Returns the sizes of the symbolic dims (``bindings``, else 3 each) and
    one array per parameter by name: floats standard normal, bools fair
    coins, integers in ``[0, C)`` with ``C`` read from their use (labels
    below the class count) or from ``int_ranges``.
    """
    sizes = _bind_symbols(func, bindings or {})
    rng = np.random.default_rng(seed)
    return sizes, _random_args(func, sizes, rng, int_ranges or {}, {})


def _bind_symbols(func: Function, given: dict[str, int]) -> dict[str, int]:
    return {s: int(given.get(s, DEFAULT_DIM)) for s in func.symbols}


def _random_args(func: Function, sizes: dict[str, int], rng: np.random.Generator,
                 int_ranges: dict[str, int], fixed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    args: dict[str, np.ndarray] = {}
    for p in func.params:
        assert p.name is not None
        shape = p.type.concrete_shape(sizes)
        dtype = p.type.dtype
        if p.name in fixed:
            args[p.name] = np.asarray(fixed[p.name], dtype=dtype.np)
        elif dtype.is_float:
            args[p.name] = rng.standard_normal(shape).astype(dtype.np)
        elif dtype is DType.bool:
            args[p.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            high = int_ranges.get(p.name) or _int_range(func, p, sizes)
            args[p.name] = rng.integers(0, high, shape).astype(dtype.np)
    return args


def _int_range(func: Function, param: Value, sizes: dict[str, int]) -> int:
    """Exclusive upper bound for an integer argument, read from how it is used.

    A ``depth`` attribute (one_hot) gives it directly; otherwise, used next to
    a float operand of one more rank (``logits[.., C]`` with ``labels[..]``)
    the bound is that operand's last dim, ``C``.  An argument that is only ever
    cast (data, such as ``u8`` image bytes) takes 256 values, so it is not
    mostly zeros.  Failing all: 2.
    """
    uses = [op for op in func.ops if param in op.operands]
    if uses and all(op.name == "cast" for op in uses):
        return 256
    for op in func.ops:
        if param not in op.operands:
            continue
        depth = op.attrs.get("depth")
        if isinstance(depth, int) and depth > 0:
            return depth
        for other in op.operands:
            t = other.type
            if t.dtype.is_float and t.rank == param.type.rank + 1:
                return max(int(t.concrete_shape(sizes)[-1]), 1)
    return 2


def _check_argument(f: Callable[[dict[str, np.ndarray]], float], args: dict[str, np.ndarray],
                    name: str, g: np.ndarray, eps: float, tol: float, max_elements: int,
                    rng: np.random.Generator, floor: float) -> ArgCheck:
    x = args[name]
    total = x.size
    flat = list(range(total)) if total <= max_elements else sorted(
        rng.choice(total, size=max_elements, replace=False).tolist())
    analytic: list[float] = []
    numeric: list[float] = []
    for i in flat:
        direction = np.zeros(total)
        direction[i] = 1.0
        analytic.append(float(g.reshape(-1)[i]))
        numeric.append(_directional(f, args, name, direction.reshape(x.shape), eps))
    if total > 0:
        direction = rng.standard_normal(x.shape)
        analytic.append(float(np.sum(g * direction)))
        numeric.append(_directional(f, args, name, direction, eps))
    a = np.asarray(analytic)
    n = np.asarray(numeric)
    abs_err = float(np.max(np.abs(a - n))) if a.size else 0.0
    scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(n), initial=0.0)), floor)
    rel = abs_err / scale if np.isfinite(abs_err) else float("inf")
    ok = bool(np.isfinite(rel) and rel <= tol)
    max_grad = float(np.max(np.abs(a), initial=0.0))
    return ArgCheck(name, tuple(x.shape), len(flat), total, abs_err, rel, ok, max_grad)


def _directional(f: Callable[[dict[str, np.ndarray]], float], args: dict[str, np.ndarray],
                 name: str, direction: np.ndarray, eps: float) -> float:
    """Central difference of ``f`` along ``direction`` in argument ``name``."""
    x = args[name]
    plus = dict(args)
    minus = dict(args)
    plus[name] = x + eps * direction
    minus[name] = x - eps * direction
    return (f(plus) - f(minus)) / (2.0 * eps)

