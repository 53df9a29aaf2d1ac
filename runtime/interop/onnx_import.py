"""ONNX graphs into dl: a function, its weights, and a ``.dl`` model file.

::

    graph = import_onnx("model.onnx")          # an ImportedGraph
    graph.function                             # dl IR: weights first, then the graph's inputs
    graph.weights                              # {param name: array} from the initializers
    source = graph.model_source(loss="sparse_categorical_crossentropy")   # a .dl model file
    model = load_onnx("model.onnx")            # a runtime Model with the weights set

Each node goes through its import rule in :mod:`.onnx_table`.  Float
initializers become parameters (trainable weights); integer ones,
``Constant`` nodes and what a rule computes from constants alone stay
constants, folded at import: a ``Shape -> Gather -> Concat -> Reshape`` chain
becomes one ``reshape`` with symbolic dims.  Nodes without a rule are gathered
and reported together, with their names, in one :class:`OnnxImportError`.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compiler.diagnostics import DlError, DlTypeError
from compiler.ir.builder import Builder
from compiler.ir.core import Function, Op, Value
from compiler.ir.types import Dim, DType, TensorType

from . import require
from .onnx_table import IMPORTS, ONNX_DTYPES


class OnnxImportError(DlError):
    """An ONNX model that dlc cannot read: unsupported ops (all listed), dtypes or attributes.

    ``bindable`` names the graph inputs that were needed as constants (a
    Reshape's shape, a ReduceSum's axes fed as inputs): :func:`import_onnx`
    with ``bind={name: value}`` specializes the graph to those values.
    """

    def __init__(self, message: str, bindable: list[str] | None = None):
        super().__init__(message)
        self.bindable = bindable or []


class _Unsupported(Exception):
    def __init__(self, node: Node, reason: str, input_name: str | None = None):
        self.node, self.reason, self.input_name = node, reason, input_name


def _param_name(v: Value) -> str:
    """The name of a parameter the importer made (it names every one: weights and inputs)."""
    assert v.name is not None
    return v.name


class Node:
    """One ONNX node with its attributes decoded to Python values."""

    def __init__(self, proto: Any, index: int):
        from onnx import helper

        self.op_type: str = proto.op_type
        self.domain: str = proto.domain
        self.name: str = proto.name or f"#{index} ({proto.op_type})"
        self.inputs: list[str] = list(proto.input)
        self.outputs: list[str] = list(proto.output)
        self._attrs = {a.name: a for a in proto.attribute}
        self._helper = helper

    def has_attr(self, name: str) -> bool:
        return name in self._attrs

    def attr(self, name: str, default: Any = None) -> Any:
        """The attribute's value (numpy arrays for tensors, lists for repeated fields)."""
        if name not in self._attrs:
            return default
        value = self._helper.get_attribute_value(self._attrs[name])
        if hasattr(value, "dims"):                     # a TensorProto
            from onnx import numpy_helper

            return numpy_helper.to_array(value)
        if isinstance(value, bytes):
            return value.decode()
        return value

    def describe(self) -> str:
        return f"'{self.name}' ({self.op_type})"


def identifier(name: str, taken: set[str]) -> str:
    """``name`` as a .dl identifier (``fc1.weight`` -> ``fc1_weight``), unique among ``taken``."""
    ident = re.sub(r"\W+", "_", name).strip("_") or "t"
    if ident[0].isdigit():
        ident = f"t_{ident}"
    base, k = ident, 1
    while ident in taken:
        k += 1
        ident = f"{base}_{k}"
    taken.add(ident)
    return ident


@dataclass
class ImportedGraph:
    """What :func:`import_onnx` makes of a model."""

    function: Function
    weights: dict[str, np.ndarray]            # parameter name -> value (the float initializers)
    inputs: list[str]                          # the graph's inputs, as parameter names
    origin: dict[Op, str] = field(default_factory=dict)   # op -> the ONNX node it came from
    name: str = "imported"
    source_file: str = "model.onnx"
    producer: str = ""

    @property
    def param_names(self) -> list[str]:
        return list(self.weights)

    def model_source(self, *, loss: str | None = None, optimizer: str = "adam(lr=0.001)",
                     weights_file: str | None = None) -> str:
        """A ``.dl`` file with this graph as its model (see :mod:`.dl_source`)."""
        from .dl_source import model_source

        return model_source(self, loss=loss, optimizer=optimizer, weights_file=weights_file)


class Importer:
    """Walks an ONNX graph, building the dl function; what the rules of :mod:`.onnx_table` call."""

    def __init__(self, proto: Any, source_file: str, bind: dict[str, np.ndarray] | None = None):
        self.proto = proto
        self.bind = bind or {}
        self.file = source_file
        self.opsets = {o.domain or "ai.onnx": o.version for o in proto.opset_import}
        self.func = Function(_graph_name(proto, source_file), [])
        self.b = Builder(self.func)
        self.env: dict[str, Any] = {}
        self.names: set[str] = set()
        self.weights: dict[str, np.ndarray] = {}
        self._weight_values: dict[int, Value] = {}     # id(initializer array) -> its parameter
        self._weight_of: dict[int, str] = {}
        self._array_of: dict[str, np.ndarray] = {}     # parameter name -> initializer, in order
        self.inputs: list[Value] = []
        self.origin: dict[Op, str] = {}
        self._node: Node | None = None

    # -- what rules call -------------------------------------------------------

    def opset(self, node: Node) -> int:
        return self.opsets.get("ai.onnx", 1)

    @property
    def current_node(self) -> Node:
        """The node being imported (import rules, and so the helpers below, run only
        inside :meth:`_import_node`, which sets it)."""
        assert self._node is not None
        return self._node

    def unsupported(self, node: Node, reason: str) -> _Unsupported:
        return _Unsupported(node, reason)

    def dtype(self, onnx_type: int, node: Node) -> DType:
        if onnx_type not in ONNX_DTYPES:
            raise _Unsupported(node, f"element type {_type_name(onnx_type)}")
        return ONNX_DTYPES[onnx_type]

    def dtype_of(self, np_dtype: np.dtype, node: Node | None) -> DType:
        try:
            return DType.from_numpy(np_dtype)
        except KeyError:
            raise _Unsupported(node or self.current_node, f"element type {np_dtype}") from None

    def constant(self, x: Any, node: Node, what: str, bindable: bool = False) -> np.ndarray:
        """``x`` as a constant array: an input dlc needs at import time.  ``bindable``: one
        that stands for an attribute (a shape, axes), which a graph input may be bound to."""
        if isinstance(x, np.ndarray):       # an initializer used as a shape is a constant too
            return x
        name = x.name if bindable and isinstance(x, Value) and x in self.inputs else None
        raise _Unsupported(node, f"its {what} is computed at run time (dlc needs it constant)", name)

    def dims_of(self, x: Any) -> tuple[Dim, ...]:
        if isinstance(x, np.ndarray):
            return tuple(x.shape)
        return x.type.shape

    def dtype_of_value(self, x: Any) -> DType:
        if isinstance(x, np.ndarray):
            return self.dtype_of(x.dtype, self._node)
        return x.type.dtype

    def scalar(self, value: float, dtype: DType) -> np.ndarray:
        return np.array(value, dtype=dtype.np)

    def value(self, x: Any) -> Value:
        """``x`` as an IR value: a weight's parameter, or a constant op."""
        if isinstance(x, Value):
            return x
        if id(x) in self._weight_of:
            return self._weight_values[id(x)]
        if x.dtype == object:
            raise _Unsupported(self.current_node, "a shape with symbolic dims used as data")
        dtype = self.dtype_of(x.dtype, self._node)
        return self.b.constant(x if x.ndim else x.item(), dtype, tuple(x.shape))

    def emit(self, name: str, *inputs: Any, **attrs: Any) -> list[Any]:
        """dl op ``name`` of ``inputs``: folded to a constant when every input is one."""
        given = [x for x in inputs if x is not None]
        if given and all(isinstance(x, np.ndarray) and x.dtype != object and id(x) not in self._weight_of
                         for x in given):
            return self._fold(name, given, attrs)
        given = given[:1] + self._match_dtypes(given[1:]) if name == "select" else self._match_dtypes(given)
        try:
            result = self.b.emit(name, *(self.value(x) for x in given), **attrs)
        except DlTypeError as e:
            raise _Unsupported(self.current_node, e.message) from None
        return list(result) if isinstance(result, tuple) else [result]

    def _match_dtypes(self, inputs: list[Any]) -> list[Any]:
        """Constants take the dtype of the first non-constant input (ONNX's Pow mixes them)."""
        values = [x for x in inputs if isinstance(x, Value) or id(x) in self._weight_of]
        if not values:
            return inputs
        dtype = self.value(values[0]).type.dtype.np
        return [x.astype(dtype) if isinstance(x, np.ndarray) and id(x) not in self._weight_of
                and x.dtype != object and x.dtype != dtype and x.dtype != np.bool_ else x for x in inputs]

    def _fold(self, name: str, arrays: list[np.ndarray], attrs: dict[str, Any]) -> list[Any]:
        from compiler.ir.builder import new_function
        from compiler.ir.interpreter import interpret

        scratch, sb = new_function("fold", [])
        try:
            consts = [sb.constant(a if a.ndim else a.item(), self.dtype_of(a.dtype, self._node), a.shape)
                      for a in arrays]
            result = sb.emit(name, *consts, **attrs)
        except DlTypeError as e:
            raise _Unsupported(self.current_node, e.message) from None
        scratch.outputs = list(result) if isinstance(result, tuple) else [result]
        return interpret(scratch, [])

    def product(self, dims: tuple[Dim, ...], node: Node) -> Dim:
        """The product of ``dims``: an int, or the one symbol times static 1s."""
        symbols = [d for d in dims if isinstance(d, str)]
        static = int(np.prod([d for d in dims if isinstance(d, int)], dtype=np.int64))
        if not symbols:
            return static
        if len(symbols) == 1 and static == 1:
            return symbols[0]
        raise _Unsupported(node, f"a dim that is a product of symbolic dims ({', '.join(map(str, dims))})")

    def reshape_dims(self, x: Any, spec: np.ndarray, node: Node, zero_copies: bool) -> tuple[Dim, ...]:
        """Reshape's target: 0 copies the input's dim (unless ``allowzero``), -1 is what is left."""
        src = self.dims_of(x)
        dims: list[Dim | None] = []
        for i, d in enumerate(np.ravel(spec)):
            d = d if isinstance(d, str) else int(d)
            if d == 0 and zero_copies:
                d = src[i]
            dims.append(None if d == -1 else d)
        if None in dims:
            known = [d for d in dims if d is not None]
            rest = list(src)
            for d in known:                      # cancel what the known dims account for
                if d in rest and isinstance(d, str):
                    rest.remove(d)
            static_src = int(np.prod([d for d in rest if isinstance(d, int)], dtype=np.int64))
            static_known = int(np.prod([d for d in known if isinstance(d, int)], dtype=np.int64))
            symbols = [d for d in rest if isinstance(d, str)]
            if static_known == 0 or static_src % static_known:
                raise _Unsupported(node, f"reshape of {list(src)} to {list(np.ravel(spec))}")
            dims[dims.index(None)] = self.product((*symbols, static_src // static_known), node)
        return tuple(dims)   # type: ignore[arg-type]

    def reshape_or_fold(self, x: Any, dims: tuple[Dim, ...]) -> list[Any]:
        if isinstance(x, np.ndarray) and id(x) not in self._weight_of:
            return [x.reshape(dims)]
        return self.emit("reshape", x, shape=dims)

    # -- the walk ----------------------------------------------------------------

    def run(self) -> ImportedGraph:
        from onnx import numpy_helper

        graph = self.proto.graph
        initializers = {t.name: t for t in graph.initializer}
        for init in graph.initializer:
            array = numpy_helper.to_array(init)
            self.env[init.name] = array
            if array.dtype.kind == "f":
                self._declare_weight(init.name, array)
        for vi in graph.input:
            if vi.name in self.bind:
                self.env[vi.name] = np.asarray(self.bind[vi.name])
            elif vi.name not in initializers:
                self._declare_input(vi)
        problems: list[_Unsupported] = []
        poisoned: set[str] = set()
        for index, proto in enumerate(graph.node):
            node = Node(proto, index)
            if any(i in poisoned for i in node.inputs if i):
                poisoned.update(node.outputs)
                continue
            try:
                self._import_node(node)
            except _Unsupported as e:
                problems.append(e)
                poisoned.update(node.outputs)
        if problems:
            onnx_names = {v.name: k for k, v in self.env.items() if isinstance(v, Value)}
            bindable = [onnx_names[p.input_name] for p in problems if p.input_name in onnx_names]
            raise OnnxImportError(_problem_text(self.file, problems), bindable)
        outputs: list[Value] = []
        names: list[str | None] = []
        for vi in graph.output:
            outputs.append(self.value(self.env[vi.name]))
            names.append(identifier(vi.name, self.names))
        self.func.outputs, self.func.output_names = outputs, names
        used = {id(v) for op in self.func.ops for v in op.operands} | {id(v) for v in outputs}
        params = [self._weight_values[id(a)] for a in self._array_of.values()
                  if id(self._weight_values[id(a)]) in used]
        self.func.params = params + self.inputs
        for i, p in enumerate(self.func.params):
            p.index = i
        weights = {_param_name(p): self._array_of[_param_name(p)] for p in params}
        producer = f"{self.proto.producer_name} {self.proto.producer_version}".strip()
        return ImportedGraph(self.func, weights, [_param_name(v) for v in self.inputs], self.origin,
                             self.func.name, self.file, producer)

    def _declare_weight(self, onnx_name: str, array: np.ndarray) -> None:
        dtype = self.dtype_of(array.dtype, None) if array.dtype in (np.float32, np.float64) else None
        if dtype is None:
            raise OnnxImportError(f"{self.file}: initializer '{onnx_name}' has element type {array.dtype} "
                                  "(dlc reads f32 and f64 weights)")
        name = identifier(onnx_name, self.names)
        self._weight_values[id(array)] = Value(TensorType(dtype, tuple(array.shape)), None, 0, name)
        self._weight_of[id(array)] = name
        self._array_of[name] = array

    def _declare_input(self, vi: Any) -> None:
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            raise OnnxImportError(f"{self.file}: input '{vi.name}' is not a tensor")
        if tt.elem_type not in ONNX_DTYPES:
            raise OnnxImportError(f"{self.file}: input '{vi.name}' has element type "
                                  f"{_type_name(tt.elem_type)} (dlc has f32, f64, i32, i64, bool)")
        dims: list[Dim] = []
        for k, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
            else:
                symbol = re.sub(r"\W+", "_", d.dim_param) if d.dim_param else f"{vi.name}_dim{k}"
                dims.append(symbol if symbol[:1].isalpha() else f"d_{symbol}")
        value = Value(TensorType(ONNX_DTYPES[tt.elem_type], tuple(dims)), None, 0,
                      identifier(vi.name, self.names))
        self.inputs.append(value)
        self.env[vi.name] = value

    def _import_node(self, node: Node) -> None:
        self._node = node
        if node.domain not in ("", "ai.onnx"):
            raise _Unsupported(node, f"domain '{node.domain}'")
        mapping = IMPORTS.get(node.op_type)
        if mapping is None:
            raise _Unsupported(node, "no import rule")
        assert mapping.import_ is not None     # IMPORTS holds only entries with an import rule
        inputs = [self.env[i] if i else None for i in node.inputs]
        while inputs and inputs[-1] is None:
            inputs.pop()
        try:
            inspect.signature(mapping.import_).bind(self, node, *inputs)
        except TypeError:
            raise _Unsupported(node, f"{len(inputs)} inputs (dlc reads fewer)") from None
        first = len(self.func.ops)
        results = mapping.import_(self, node, *inputs)
        for op in self.func.ops[first:]:
            self.origin[op] = node.describe()
        for name, result in zip(node.outputs, results):
            if name:
                self.env[name] = result


def _graph_name(proto: Any, file: str) -> str:
    name = proto.graph.name or Path(file).stem
    return identifier(name, set())


def _type_name(onnx_type: int) -> str:
    from onnx import TensorProto

    try:
        return TensorProto.DataType.Name(onnx_type)
    except ValueError:
        return str(onnx_type)


def _problem_text(file: str, problems: list[_Unsupported]) -> str:
    missing = [p for p in problems if p.reason == "no import rule"]
    other = [p for p in problems if p.reason != "no import rule"]
    lines = [f"{file}: dlc cannot import {len(problems)} node(s) of this model:"]
    if missing:
        by_type: dict[str, list[str]] = {}
        for p in missing:
            by_type.setdefault(p.node.op_type, []).append(f"'{p.node.name}'")
        lines += [f"  unsupported op {op}: {', '.join(names)}" for op, names in sorted(by_type.items())]
    lines += [f"  {p.node.describe()}: {p.reason}" for p in other]
    return "\n".join(lines)


def read_model(path: str | Path) -> Any:
    """The ModelProto in ``path``, checked by ``onnx.checker``; errors are DlErrors."""
    onnx = require("onnx", "onnx")
    path = Path(path)
    if not path.is_file():
        raise OnnxImportError(f"{path}: no such file")
    try:
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto)
    except Exception as e:  # noqa: BLE001  (protobuf's and the checker's errors: a bad file, not a bug)
        raise OnnxImportError(f"{path}: not a valid ONNX model ({type(e).__name__}: {e})") from None
    return proto


def import_onnx(source: str | Path | Any, bind: dict[str, np.ndarray] | None = None) -> ImportedGraph:
    """An ONNX model (a path, or a ModelProto) as a dl function and its weights; ``bind``
    makes graph inputs constants (by ONNX name; see :class:`OnnxImportError`)."""
    if isinstance(source, (str, Path)):
        proto, file = read_model(source), str(source)
    else:
        proto, file = source, "model.onnx"
    return Importer(proto, file, bind).run()


def load_onnx(path: str | Path, *, loss: str | None = None, optimizer: str = "adam(lr=0.001)",
              backend: str = "auto", seed: int = 0) -> Any:
    """A trainable :class:`runtime.model.Model` from an ONNX file, its weights set.

    ``loss`` (default: from the last op, see :func:`.dl_source.default_loss`)
    and ``optimizer`` (``.dl`` syntax) complete the model for ``fit``.
    """
    from frontend_dsl.api import compile_source

    from ..model import Model

    graph = import_onnx(path)
    source = graph.model_source(loss=loss, optimizer=optimizer)
    module = compile_source(source, f"{Path(path).with_suffix('.dl')}")
    model = Model(module, seed=seed, backend=backend, source=str(path))
    model.set_weights(graph.weights)
    return model
