"""Static statistics of a module: op counts, FLOPs and bytes, read from the IR alone.

Per function (:func:`function_stats`): op counts by op, the cost of one call
(:mod:`.flops`), the bytes of its arguments, the bytes of every value its
ops produce (``intermediates``: an upper bound on temporary memory, no
buffer reuse) and the peak of live intermediates in program order.

Per convolution (:func:`conv_costs`): each ``conv2d`` and gradient op (and
the ``conv1d`` / ``conv2d_transpose`` composites) with its source location,
its operand and result types, the parameter it convolves with (when the
kernel is one) and its FLOPs.

Per model (:func:`model_stats`): the parameter count (as Keras counts it)
and the bytes of parameters, of their gradients and of the optimizer state,
the forward cost (``@predict``) and the cost of one training step
(``@train_step`` as :func:`compiler.train_step.build_train_step` builds it;
:func:`with_train_step` adds it to a copy of the module).

Sizes with symbolic dims are :class:`~.flops.Poly` polynomials; the report
evaluates them with every symbol bound to a batch size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..diagnostics import DlError
from ..ir.core import Function, Module, Op, Value
from ..ir.types import TensorType
from ..ops.conv import CONV_OPS
from .flops import Cost, Poly, cost_by_op, function_cost, op_cost

TRAIN_STEP = "train_step"


def value_bytes(t: TensorType) -> Poly:
    """The bytes of a dense tensor of type ``t``."""
    return Poly.product(t.shape) * t.dtype.itemsize


@dataclass(slots=True)
class FunctionStats:
    """What one function of a module does per call."""

    name: str
    op_counts: dict[str, int]
    cost: Cost
    cost_by_op: dict[str, Cost]
    argument_bytes: Poly
    intermediate_bytes: Poly
    func: Function = field(repr=False)
    convs: list[ConvCost] = field(default_factory=list)

    @property
    def num_ops(self) -> int:
        return sum(self.op_counts.values())

    def peak_live_bytes(self, bindings: dict[str, int]) -> int:
        """The most bytes of op results alive at once, running the ops in order."""
        return peak_live_bytes(self.func, bindings)


CONVOLUTIONS = (*CONV_OPS, "conv1d", "conv2d_transpose")


@dataclass(slots=True)
class ConvCost:
    """One convolution op of a function: where it is, what it convolves, what it costs."""

    op: str
    location: str
    operands: tuple[str, ...]
    result: str
    kernel: str | None      # the parameter convolved with, when the kernel operand is one
    cost: Cost


def conv_costs(func: Function) -> list[ConvCost]:
    """Every convolution op of ``func`` (forward and gradients), in program order."""
    params = {id(p) for p in func.params}
    out = []
    for op in func.ops:
        if op.name in CONVOLUTIONS:
            # the second operand is the kernel, except for the kernel gradient (image, output gradient)
            w = op.operands[1] if op.name != "conv2d_backprop_filter" else None
            kernel = w.name if w is not None and id(w) in params else None
            out.append(ConvCost(op.name, _where(op), tuple(v.type.dsl_str() for v in op.operands),
                                op.result.type.dsl_str(), kernel, op_cost(op)))
    return out


def _where(op: Op) -> str:
    return "(no source location)" if op.loc.line <= 0 else str(op.loc)


def function_stats(func: Function) -> FunctionStats:
    """Op counts (most frequent first), cost and bytes of ``func``."""
    counts: dict[str, int] = {}
    for op in func.ops:
        counts[op.name] = counts.get(op.name, 0) + 1
    ordered = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    arguments = sum((value_bytes(p.type) for p in func.params), Poly())
    intermediates = sum((value_bytes(r.type) for op in func.ops for r in op.results), Poly())
    return FunctionStats(func.name, ordered, function_cost(func), cost_by_op(func), arguments,
                         intermediates, func, conv_costs(func))


def peak_live_bytes(func: Function, bindings: dict[str, int]) -> int:
    """Peak bytes of live op results: each lives from its op to its last use (outputs: the end)."""
    end = len(func.ops)
    last_use: dict[Value, int] = {v: end for v in func.outputs}
    for i, op in enumerate(func.ops):
        for v in op.operands:
            last_use[v] = max(last_use.get(v, i), i)
    dying: dict[int, list[Value]] = {}
    for i, op in enumerate(func.ops):
        for r in op.results:
            dying.setdefault(last_use.get(r, i), []).append(r)
    live = peak = 0
    for i, op in enumerate(func.ops):
        live += sum(value_bytes(r.type).evaluate(bindings) for r in op.results)
        peak = max(peak, live)
        live -= sum(value_bytes(v.type).evaluate(bindings) for v in dying.get(i, []))
    return peak


@dataclass(slots=True)
class ModelStats:
    """Model-level figures: parameters, gradients, optimizer state, forward and training cost."""

    name: str
    params: list[tuple[str, TensorType]]
    optimizer: str | None
    state: list[tuple[str, TensorType]]
    forward: FunctionStats | None
    train_step: FunctionStats | None
    train_step_note: str | None = None

    @property
    def param_count(self) -> int:
        return sum(t.num_elements() for _, t in self.params)

    @property
    def param_bytes(self) -> int:
        return sum(value_bytes(t).evaluate() for _, t in self.params)

    @property
    def gradient_bytes(self) -> int:
        """One gradient per float parameter, of the parameter's type."""
        return sum(value_bytes(t).evaluate() for _, t in self.params if t.dtype.is_float)

    @property
    def state_bytes(self) -> int:
        return sum(value_bytes(t).evaluate() for _, t in self.state)


def model_stats(module: Module, train_step_note: str | None = None) -> ModelStats | None:
    """Figures for the module's model (None without a model block).

    The training step is read from ``@train_step`` when the module has one
    (see :func:`with_train_step`); ``train_step_note`` says why it has none.
    """
    info = module.attrs.get("model")
    if not isinstance(info, dict) or "loss" not in module:
        return None
    loss = module.get("loss")
    types = {p.name: p.type for p in loss.params}
    params = [(p["name"], types[p["name"]]) for p in info.get("params", []) if p.get("name") in types]
    optimizer, state = _optimizer_state(module)
    forward = function_stats(module.get("predict")) if "predict" in module else None
    step = function_stats(module.get(TRAIN_STEP)) if TRAIN_STEP in module else None
    return ModelStats(str(info.get("name", "model")), params, optimizer, state, forward, step,
                      train_step_note if step is None else None)


def _optimizer_state(module: Module) -> tuple[str | None, list[tuple[str, TensorType]]]:
    """The optimizer's name and state tensors, from the training signature (None, [] without)."""
    try:
        from ..train_step import train_signature

        sig = train_signature(module)
    except (ImportError, DlError):
        return None, []
    return sig.optimizer.name, [(s.name, s.type) for s in sig.state]


def with_train_step(module: Module) -> tuple[Module, str | None]:
    """A shallow copy of ``module`` with ``@train_step`` built, and why not if it cannot be.

    The original module is not changed.  Without a model, or when the model
    cannot be trained, the module comes back as it is with a note.
    """
    if not isinstance(module.attrs.get("model"), dict):
        return module, None
    if TRAIN_STEP in module:
        return module, None
    copy = Module(list(module.functions), dict(module.attrs))
    try:
        from ..train_step import build_train_step

        build_train_step(copy)
    except ImportError:
        return module, "compiler.train_step is not available"
    except DlError as e:
        return module, f"cannot build a training step: {e.message}"
    return copy, None


# ---------------------------------------------------------------------------
# The text report


def bindings_for(module: Module, batch: int, dims: dict[str, int] | None = None) -> dict[str, int]:
    """Every symbolic dim of the module bound to ``batch``, unless ``dims`` names it."""
    symbols = {s for f in module.functions for p in f.params for s in p.type.symbols}
    symbols |= {s for f in module.functions for op in f.ops for r in op.results for s in r.type.symbols}
    bound = {s: batch for s in sorted(symbols)}
    bound.update(dims or {})
    return bound


def format_report(module: Module, functions: list[Function], bindings: dict[str, int],
                  model: ModelStats | None) -> str:
    """The ``dlc stats`` text: the model's figures, then one block per function."""
    lines: list[str] = []
    where = ", ".join(f"{k}={v}" for k, v in bindings.items())
    if model is not None:
        lines += _model_lines(model, bindings)
        lines.append("")
    for func in functions:
        lines += _function_lines(function_stats(func), bindings)
        lines.append("")
    if where:
        lines.append(f"symbolic dims evaluated at {where} (--batch, --dim)")
    return "\n".join(lines).rstrip() + "\n"


def _model_lines(m: ModelStats, bindings: dict[str, int]) -> list[str]:
    lines = [f"model {m.name}: {m.param_count:,} parameters in {len(m.params)} tensors",
             f"  parameters        {_bytes(m.param_bytes)}",
             f"  gradients         {_bytes(m.gradient_bytes)}"]
    if m.optimizer is not None:
        lines.append(f"  optimizer state   {_bytes(m.state_bytes)}  "
                     f"({m.optimizer}: {len(m.state)} tensors)")
    if m.forward is not None:
        lines.append(f"  forward (@{m.forward.name})")
        lines += _cost_lines(m.forward, bindings, indent="    ")
    if m.train_step is not None:
        lines.append(f"  training step (@{m.train_step.name}: forward, backward, update, metrics)")
        lines += _cost_lines(m.train_step, bindings, indent="    ")
    elif m.train_step_note:
        lines.append(f"  training step: {m.train_step_note}")
    return lines


def _function_lines(s: FunctionStats, bindings: dict[str, int]) -> list[str]:
    counts = ", ".join(f"{name} {n}" for name, n in s.op_counts.items())
    lines = [f"@{s.name}: {s.num_ops} ops" + (f" ({counts})" if counts else "")]
    lines += _cost_lines(s, bindings, indent="  ")
    heavy = [(name, c) for name, c in s.cost_by_op.items() if c.flops.terms or c.transcendentals.terms]
    if heavy:
        lines.append("  FLOPs by op:")
        width = max(len(name) for name, _ in heavy)
        for name, c in heavy:
            text = _poly(c.flops, bindings)
            if c.transcendentals.terms:
                text += f" + {_poly(c.transcendentals, bindings)} transcendental"
            lines.append(f"    {name:<{width}}  {text}")
    if s.convs:
        lines.append("  FLOPs per convolution:")
        lines += [f"    {line}" for line in _conv_lines(s.convs, bindings)]
    return lines


def _conv_lines(convs: list[ConvCost], bindings: dict[str, int]) -> list[str]:
    """``conv2d  f.dl:8:24  f32[N, 28, 28, 1] * f32[3, 3, 1, 32] -> f32[N, 26, 26, 32]  (kernel k)  FLOPs``."""
    rows = [(c.op, c.location, f"{' * '.join(c.operands)} -> {c.result}"
             + (f" (kernel {c.kernel})" if c.kernel else ""), _poly(c.cost.flops, bindings)) for c in convs]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return [f"{op:<{widths[0]}}  {where:<{widths[1]}}  {shapes:<{widths[2]}}  {flops}"
            for op, where, shapes, flops in rows]


def _cost_lines(s: FunctionStats, bindings: dict[str, int], indent: str) -> list[str]:
    return [
        f"{indent}FLOPs             {_poly(s.cost.flops, bindings)}",
        f"{indent}transcendental    {_poly(s.cost.transcendentals, bindings)}",
        f"{indent}arguments         {_bytes_poly(s.argument_bytes, bindings)}",
        f"{indent}intermediates     {_bytes_poly(s.intermediate_bytes, bindings)}"
        f"  (peak live {_bytes(s.peak_live_bytes(bindings))})",
    ]


def _poly(p: Poly, bindings: dict[str, int]) -> str:
    """``104,208,640 (814130*N)``: the value, and the formula when it has symbols."""
    value = f"{p.evaluate(bindings):,}"
    return value if not p.symbols else f"{value} ({p})"


def _bytes_poly(p: Poly, bindings: dict[str, int]) -> str:
    text = _bytes(p.evaluate(bindings))
    return text if not p.symbols else f"{text} ({p} B)"


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n:,} B ({n / size:.2f} {unit})"
    return f"{n:,} B"


def to_json(module: Module, functions: list[Function], bindings: dict[str, int],
            model: ModelStats | None) -> dict[str, Any]:
    """The same figures as :func:`format_report`, as JSON-ready data (numbers evaluated)."""
    def cost(c: Cost) -> dict[str, Any]:
        return {"flops": c.flops.evaluate(bindings), "flops_formula": str(c.flops),
                "transcendentals": c.transcendentals.evaluate(bindings)}

    def func_json(s: FunctionStats) -> dict[str, Any]:
        return {"name": s.name, "ops": s.num_ops, "op_counts": s.op_counts, **cost(s.cost),
                "argument_bytes": s.argument_bytes.evaluate(bindings),
                "intermediate_bytes": s.intermediate_bytes.evaluate(bindings),
                "peak_live_bytes": s.peak_live_bytes(bindings),
                "convolutions": [{"op": c.op, "location": c.location, "operands": list(c.operands),
                                  "result": c.result, "kernel": c.kernel, **cost(c.cost)} for c in s.convs]}

    out: dict[str, Any] = {"bindings": bindings,
                           "functions": [func_json(function_stats(f)) for f in functions]}
    if model is not None:
        out["model"] = {
            "name": model.name, "param_count": model.param_count,
            "param_bytes": model.param_bytes, "gradient_bytes": model.gradient_bytes,
            "optimizer": model.optimizer, "optimizer_state_bytes": model.state_bytes,
            "forward": func_json(model.forward) if model.forward else None,
            "train_step": func_json(model.train_step) if model.train_step else None,
        }
    return out
