"""An imported graph written as a readable ``.dl`` model file.

Every op of the dl function becomes one ``let`` statement calling the op by
its name (``.dl`` calls every op of the op table that way), ``+ - * / @ **``
for the arithmetic ones, with attributes by keyword where they differ from
the op's default.  Scalar constants are written inline as literals; other
constants as ``constant(value=[...], dtype=..., shape=[...])``.  A comment
names the ONNX node each group of statements came from.  The weights go to a
checkpoint beside the file; ``param`` declarations give their shapes.

The model block needs a loss, a target and an optimizer, which ONNX does not
have: :func:`default_loss` picks the loss from the last op (a softmax output
trains with sparse categorical cross-entropy, a sigmoid output with binary
cross-entropy, anything else with mean squared error) unless one is given.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np

from compiler.diagnostics import DlError
from compiler.ir.core import Op, Value
from compiler.ir.types import DType, TensorType
from compiler.ops.base import ELEMENTWISE, get_op

ImportedGraph = Any         # runtime.interop.onnx_import.ImportedGraph (which imports this module)

INFIX = {"add": "+", "sub": "-", "mul": "*", "div": "/", "matmul": "@", "pow": "**"}
LOSSES = ("sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy", "mse", "mae")
_METRIC = {"sparse_categorical_crossentropy": "accuracy", "categorical_crossentropy": "categorical_accuracy",
           "binary_crossentropy": "binary_accuracy", "mse": "mae", "mae": "mae"}


def default_loss(output: Value) -> str:
    """The loss an imported model trains with unless told: from the op that makes ``output``."""
    op = output.owner.name if output.owner is not None else ""
    if op == "softmax" and output.type.rank >= 1:
        return "sparse_categorical_crossentropy"
    if op == "sigmoid":
        return "binary_crossentropy"
    return "mse"


def type_text(t: TensorType) -> str:
    return t.dsl_str()


def number(value: Any, dtype: DType) -> str:
    """A literal of ``dtype``: ``true``, ``3``, ``0.5``; a DlError for NaN and infinities."""
    if dtype is DType.bool:
        return "true" if bool(value) else "false"
    if dtype.is_int:
        return str(int(value))
    value = float(value)
    if not math.isfinite(value):
        raise DlError(f"the constant {value} has no .dl literal (only finite numbers do)")
    return repr(value)


def _nested(array: np.ndarray, dtype: DType) -> str:
    if array.ndim == 0:
        return number(array.item(), dtype)
    return "[" + ", ".join(_nested(a, dtype) for a in array) + "]"


def attr_text(value: Any, kind: str = "") -> str:
    """An attribute's value in .dl syntax; a string is a symbol (``[N, 784]``) unless ``kind`` is str."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, DType):
        return value.dsl_name
    if isinstance(value, float):
        return number(value, DType.f64)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(attr_text(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"' if kind == "str" else value
    return str(value)


class _Writer:
    def __init__(self, graph: ImportedGraph):
        self.graph = graph
        self.names: dict[Value, str] = {p: p.name for p in graph.function.params}
        self.inline: dict[Value, str] = {}          # scalar constants written where they are used
        self.lines: list[str] = []
        self.count = 0
        self.taken = {p.name for p in graph.function.params} | set(graph.function.output_names)

    def name(self, v: Value) -> str:
        return self.inline.get(v) or self.names[v]

    def fresh(self, v: Value) -> str:
        self.count += 1
        while f"h{self.count}" in self.taken:
            self.count += 1
        self.names[v] = f"h{self.count}"
        return self.names[v]

    def body(self) -> list[str]:
        func = self.graph.function
        uses: dict[Value, list[Op]] = {}
        for op in func.ops:
            for v in op.operands:
                uses.setdefault(v, []).append(op)
        last_origin = None
        for op in func.ops:
            if op.name == "constant" and self._inlinable(op, uses.get(op.result, []), func.outputs):
                t = op.result.type
                self.inline[op.result] = number(np.asarray(op.attrs["value"]).item(), t.dtype)
                continue
            origin = self.graph.origin.get(op)
            lhs = ", ".join(self.fresh(r) for r in op.results)
            line = f"    let {lhs} = {self.expr(op)}"
            if origin is not None and origin != last_origin:      # the first op of each ONNX node
                line = f"{line:<44}  # {origin}"
                last_origin = origin
            self.lines.append(line)
        return self.lines

    def _inlinable(self, op: Op, users: list[Op], outputs: list[Value]) -> bool:
        """A scalar constant whose every user is an elementwise op with a non-constant operand
        (a literal takes the dtype of the tensor it meets)."""
        t = op.result.type
        if t.shape or op.result in outputs or not users:
            return False
        value = np.asarray(op.attrs["value"]).item()
        if t.dtype.is_float and not math.isfinite(value):
            return False
        for user in users:
            opdef = get_op(user.name)
            if opdef is None or opdef.kind != ELEMENTWISE or user.name == "cast":
                return False
            if all(v.owner is not None and v.owner.name == "constant" for v in user.operands):
                return False
        return True

    def expr(self, op: Op) -> str:
        if op.name == "constant":
            t = op.result.type
            value = np.asarray(op.attrs["value"])
            if t.is_static:     # every dim an int
                value = np.broadcast_to(value, cast(tuple[int, ...], t.shape))
            return (f"constant(value={_nested(value, t.dtype)}, dtype={t.dtype.dsl_name}, "
                    f"shape={attr_text(tuple(t.shape) if t.is_static else op.attrs['shape'])})")
        operands = [self.name(v) for v in op.operands]
        if op.name in INFIX and not op.attrs:
            return f"{operands[0]} {INFIX[op.name]} {operands[1]}"
        opdef = get_op(op.name)
        assert opdef is not None
        attrs = [f"{k}={attr_text(v, opdef.attrs[k].kind)}" for k, v in op.attrs.items()
                 if v is not None and not _is_default(v, opdef.attrs[k].default)]
        return f"{op.name}({', '.join(operands + attrs)})"


def _is_default(value: Any, default: Any) -> bool:
    if isinstance(value, np.ndarray) or isinstance(default, np.ndarray):
        return False
    return type(value) is type(default) and value == default


def model_source(graph: ImportedGraph, *, loss: str | None, optimizer: str,
                 weights_file: str | None) -> str:
    """The ``.dl`` text of ``graph`` as a model named after it."""
    func = graph.function
    if not func.outputs:
        raise DlError(f"{graph.source_file}: the graph has no outputs")
    first = func.outputs[0]
    loss = loss or default_loss(first)
    if loss not in LOSSES:
        raise DlError(f"unknown loss '{loss}' for an imported model (choose from {', '.join(LOSSES)})")
    writer = _Writer(graph)
    body = writer.body()
    taken = {p.name for p in func.params} | set(func.output_names)
    target = next(n for n in ("y", "target", "y_true", "labels") if n not in taken)
    if loss == "sparse_categorical_crossentropy":
        target_type = TensorType(DType.i32, first.type.shape[:-1])
    else:
        target_type = first.type
    header = [f"# Imported from {graph.source_file}" + (f" (producer: {graph.producer})" if graph.producer else "")
              + " by `dlc import`.",
              "# The weights are in " + (weights_file or "the checkpoint written beside this file")
              + " (dlc train/evaluate/predict --weights ...).",
              "# The loss, target and optimizer are dlc's choice (ONNX has none): change them to fine-tune.",
              ""]
    lines = [*header, f"model {graph.name} {{"]
    lines += [f"    input {name}: {type_text(func.param(name).type)}" for name in graph.inputs]
    lines.append(f"    target {target}: {type_text(target_type)}")
    lines += [f"    param {p.name}: {type_text(p.type)}" for p in func.params if p.name in graph.weights]
    lines.append("")
    lines += body
    lines.append("")
    for name, v in zip(func.output_names, func.outputs):
        lines.append(f"    output {name} = {writer.name(v)}")
    lines += ["", f"    loss {loss}({func.output_names[0]}, {target})",
              f"    optimizer {optimizer}", f"    metrics [{_METRIC[loss]}]", "}", ""]
    return "\n".join(lines)
