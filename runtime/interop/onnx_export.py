"""A dl function as an ONNX graph.

::

    proto = export_function(module.get("predict"), weights)   # an onnx.ModelProto
    save_onnx(proto, "model.onnx")
    model.export("model.onnx")                                # the same for a runtime Model

Parameters named in ``weights`` become initializers; the others are the
graph's inputs, with a symbolic dim as an ONNX ``dim_param`` of the same name
(``N``), so one graph serves every batch size.  Each op goes through its
export rule in :mod:`.onnx_table`; an op without one is written as its
``decompose`` rule's expansion (the losses, ``var``, ``one_hot``).  A
symbolic dim an op needs (``reshape(x, [N, 784])``) is read at run time from
a graph input that has it (``Shape``).  The result passes
``onnx.checker.check_model(full_check=True)`` before anything is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from compiler import __version__
from compiler.diagnostics import DlError, LoweringError
from compiler.ir.builder import new_function
from compiler.ir.core import Function, Op, Value
from compiler.ir.types import Dim, DType
from compiler.ops.base import get_op

from . import require
from .onnx_table import DL_TO_ONNX, EXPORTS, OPSET

IR_VERSION = 9       # ONNX IR version written (opset 18 needs 8 or later)


class OnnxExportError(DlError):
    """A function dlc cannot write as ONNX (an op without an export or decompose rule)."""


class Exporter:
    """Builds the ONNX graph of one function; what the export rules of :mod:`.onnx_table` call."""

    def __init__(self, func: Function):
        self.onnx = require("onnx", "onnx")
        self.func = func
        self.nodes: list[Any] = []
        self.names: dict[Value, str] = {}
        self._used: set[str] = set()
        self._dim_sources: dict[str, tuple[str, int]] = {}    # symbol -> (graph input, axis)

    def fresh(self, hint: str) -> str:
        k = len(self._used)
        name = f"{hint}_{k}"
        while name in self._used:
            k += 1
            name = f"{hint}_{k}"
        self._used.add(name)
        return name

    def node(self, op_type: str, inputs: list[str], num_outputs: int = 1, **attrs: Any) -> list[str]:
        """Append an ONNX node; its output names.  numpy arrays become tensor attributes."""
        from onnx import helper, numpy_helper

        outputs = [self.fresh(op_type.lower()) for _ in range(num_outputs)]
        attrs = {k: numpy_helper.from_array(v) if isinstance(v, np.ndarray) else v for k, v in attrs.items()}
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=outputs[0], **attrs))
        return outputs

    def const(self, array: np.ndarray) -> str:
        return self.node("Constant", [], value=np.asarray(array))[0]

    def scalar(self, value: float, dtype: DType) -> str:
        return self.const(np.array(value, dtype=dtype.np))

    def shape(self, dims: tuple[Dim, ...]) -> str:
        """A 1-D int64 tensor holding ``dims``; a symbol is read from a graph input that has it."""
        if all(isinstance(d, int) for d in dims):
            return self.const(np.array(dims, dtype=np.int64))
        parts = []
        for d in dims:
            if isinstance(d, int):
                parts.append(self.const(np.array([d], dtype=np.int64)))
            elif isinstance(d, str):
                source, axis = self._dim_sources[d]
                parts += self.node("Shape", [source], start=axis, end=axis + 1)
            else:
                raise OnnxExportError(f"dim {d} is computed from symbols; the export takes static "
                                      "dims and plain symbols only")
        return self.node("Concat", parts, axis=0)[0]

    # -- the function ------------------------------------------------------------

    def value_info(self, name: str, v: Value) -> Any:
        from onnx import helper

        dims = [d if isinstance(d, int) else str(d) for d in v.type.shape]
        return helper.make_tensor_value_info(name, DL_TO_ONNX[v.type.dtype], dims)

    def export_op(self, op: Op, inputs: list[str]) -> list[str]:
        mapping = EXPORTS.get(op.name)
        if mapping is not None:
            assert mapping.export is not None   # EXPORTS holds only entries with an export rule
            return mapping.export(self, op, *inputs)
        opdef = get_op(op.name)
        if opdef is None or opdef.decompose is None:
            raise OnnxExportError(f"dl.{op.name} has no ONNX form (no export rule in "
                                  "runtime/interop/onnx_table.py, no decompose rule)", op.loc)
        scratch, sb = new_function("decompose", [(f"a{i}", v.type) for i, v in enumerate(op.operands)])
        stand_in = Op(op.name, list(scratch.params), list(op.results), dict(op.attrs), op.loc)
        with sb.at(op.loc):
            outs = opdef.decompose(sb, stand_in)
        names = dict(zip(scratch.params, inputs))
        for inner in scratch.ops:
            names.update(zip(inner.results, self.export_op(inner, [names[v] for v in inner.operands])))
        return [names[v] for v in outs]

    def build(self, weights: dict[str, np.ndarray], name: str, opset: int) -> Any:
        from onnx import helper, numpy_helper

        func = self.func
        inputs, initializers = [], []
        for p in func.params:
            pname = p.name
            assert pname is not None        # a Function's parameters are named
            self.names[p] = pname
            self._used.add(pname)
            if pname in weights:
                initializers.append(numpy_helper.from_array(
                    np.array(weights[pname], dtype=p.type.dtype.np, order="C"), pname))
            else:
                inputs.append(self.value_info(pname, p))
                for axis, d in enumerate(p.type.shape):
                    if isinstance(d, str):
                        self._dim_sources.setdefault(d, (pname, axis))
        for op in func.ops:
            self.names.update(zip(op.results, self.export_op(op, [self.names[v] for v in op.operands])))
        outputs = []
        out_names = func.output_names or [None] * len(func.outputs)
        for i, (v, wanted) in enumerate(zip(func.outputs, out_names)):
            out = wanted or f"output_{i}"
            if out in self._used:
                out = self.fresh(out)
            self._used.add(out)
            self.nodes.append(helper.make_node("Identity", [self.names[v]], [out], name=f"{out}_identity"))
            outputs.append(self.value_info(out, v))
        self._drop_identities({o.name for o in outputs})
        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                  producer_name="dlc", producer_version=__version__)
        model.ir_version = IR_VERSION
        return model

    def _drop_identities(self, outputs: set[str]) -> None:
        """Name an output where it is made, instead of through an Identity, where that is the
        Identity's only source (not a graph input, initializer, or another output)."""
        producers = {out: n for n in self.nodes for out in n.output}
        for ident in [n for n in self.nodes if n.op_type == "Identity" and n.output[0] in outputs]:
            src = ident.input[0]
            producer = producers.get(src)
            if producer is None or src in outputs or sum(src in n.input for n in self.nodes) != 1:
                continue
            producer.output[list(producer.output).index(src)] = ident.output[0]
            self.nodes.remove(ident)
            producers[ident.output[0]] = producer


def export_function(func: Function, weights: dict[str, np.ndarray] | None = None, *,
                    name: str | None = None, opset: int = OPSET) -> Any:
    """``func`` as a checked ONNX ModelProto; ``weights`` (by parameter name) become initializers."""
    onnx = require("onnx", "onnx")
    weights = dict(weights or {})
    unknown = sorted(set(weights) - {p.name for p in func.params})
    if unknown:
        raise OnnxExportError(f"@{func.name} has no parameter '{unknown[0]}' to take a weight")
    try:
        model = Exporter(func).build(weights, name or func.name, opset)
    except LoweringError as e:
        raise OnnxExportError(e.message, e.loc) from None
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # noqa: BLE001  (a graph the checker rejects is dlc's bug: say so)
        raise AssertionError(f"dlc wrote an ONNX graph the checker rejects: {e}") from e
    return model


def export_model(model: Any, path: str | Path) -> Path:
    """A :class:`runtime.model.Model`'s ``predict`` with its current weights (and non-trainable
    state, such as batch norm's moving statistics), written as ONNX."""
    path = Path(path)
    if path.suffix != ".onnx":
        raise DlError(f"{path}: export writes ONNX, to a file named *.onnx")
    constants = {**model.weights, **model.model_state}
    return save_onnx(export_function(model.module.get("predict"), constants, name=model.name), path)


def save_onnx(model: Any, path: str | Path) -> Path:
    """Write a ModelProto to ``path`` (an error for a path that cannot be written)."""
    from ..checkpoint import check_writable

    path = Path(path)
    check_writable(path)
    try:
        path.write_bytes(model.SerializeToString())
    except OSError as e:
        raise DlError(f"{path}: cannot write ({e.strerror or e})") from None
    return path
