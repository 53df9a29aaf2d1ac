"""The op mapping between dl and ONNX: one entry per op, both directions.

An entry names a dl op and an ONNX op type and says how each turns into the
other.  Most are one line::

    same("exp", "Exp")                                  # operands and meaning equal
    same("div", "Div", both=False)
same("pow", "Pow", both=False)
same("elu", "Elu", attrs={"alpha": ("alpha", 1.0)}) # dl attribute <- (ONNX attribute, ONNX default)

and an op that needs more writes its export rule (dl op -> ONNX nodes, through
the :class:`~runtime.interop.onnx_export.Exporter`) and its import rule (ONNX
node -> dl ops, through the :class:`~runtime.interop.onnx_import.Importer`)
as functions registered with :func:`exports` / :func:`imports`.  An entry may
go one way only: ``expm1`` exports as ``Exp - 1`` (ONNX has no Expm1), and
``Gemm`` imports as ``matmul`` plus ``add`` (dl has no Gemm).  A dl op with no
entry exports through its ``decompose`` rule when it has one (the losses,
``var``, ``one_hot``); an ONNX op with no import rule is unsupported, and the
importer lists every such node in one error.

Adding an op of the op table is adding its line here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from compiler.ir.core import Op
from compiler.ir.types import DType

# The rules' first two arguments: runtime.interop.onnx_export.Exporter (export) and
# runtime.interop.onnx_import.Importer, .Node (import), which import this table.
Exporter = Any
Importer = Any
Node = Any

ExportRule = Callable[..., list[str]]      # (ex, op, *input names) -> output names
ImportRule = Callable[..., list[Any]]      # (im, node, *inputs) -> results (Values or constants)

OPSET = 18          # what export writes: every Reduce* takes its axes as an input from 18 on

# ONNX TensorProto data types <-> dl dtypes
ONNX_DTYPES: dict[int, DType] = {1: DType.f32, 11: DType.f64, 6: DType.i32, 7: DType.i64, 9: DType.bool,
                                 2: DType.u8, 3: DType.i8, 10: DType.f16, 16: DType.bf16}
DL_TO_ONNX: dict[DType, int] = {v: k for k, v in ONNX_DTYPES.items()}

# Keras' SELU constants (dl's selu); ONNX's defaults are the same numbers rounded to f32
SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


@dataclass
class Mapping:
    """How one dl op and one ONNX op type turn into each other (either side may be absent)."""

    dl: str | None
    onnx: str
    export: ExportRule | None = None
    import_: ImportRule | None = None


EXPORTS: dict[str, Mapping] = {}     # dl op name -> its entry
IMPORTS: dict[str, Mapping] = {}     # ONNX op type -> its entry


def _enter(m: Mapping) -> Mapping:
    if m.dl is not None and m.export is not None:
        assert m.dl not in EXPORTS, f"two export rules for dl.{m.dl}"
        EXPORTS[m.dl] = m
    if m.import_ is not None:
        assert m.onnx not in IMPORTS, f"two import rules for ONNX {m.onnx}"
        IMPORTS[m.onnx] = m
    return m


def same(dl: str, onnx: str, attrs: dict[str, tuple[str, Any]] | None = None,
         both: bool = True) -> Mapping:
    """An op whose operands, results and (renamed) attributes mean the same on both sides.

    ``attrs`` maps a dl attribute to ``(ONNX attribute, ONNX default)``; export
    always writes it, import takes the ONNX default when the node omits it.
    ``both=False`` enters only the export direction (the import rule is elsewhere).
    """
    attrs = attrs or {}

    def export(ex: Exporter, op: Op, *names: str) -> list[str]:
        return ex.node(onnx, list(names), num_outputs=len(op.results),
                       **{o: op.attrs[d] for d, (o, _) in attrs.items()})

    def import_(im: Importer, node: Node, *inputs: Any) -> list[Any]:
        given = {d: node.attr(o, default) for d, (o, default) in attrs.items()}
        return im.emit(dl, *inputs, **given)

    return _enter(Mapping(dl, onnx, export, import_ if both else None))


def exports(dl: str, onnx: str) -> Callable[[ExportRule], ExportRule]:
    """Register an export rule for dl op ``dl`` (written as ONNX ``onnx``, plus what it needs)."""
    def register(fn: ExportRule) -> ExportRule:
        _enter(Mapping(dl, onnx, export=fn))
        return fn
    return register


def imports(*onnx_types: str, dl: str | None = None) -> Callable[[ImportRule], ImportRule]:
    """Register an import rule for the ONNX op types ``onnx_types``."""
    def register(fn: ImportRule) -> ImportRule:
        for onnx in onnx_types:
            _enter(Mapping(dl, onnx, import_=fn))
        return fn
    return register


# ---------------------------------------------------------------------------
# Elementwise: the same op on both sides

for _dl, _onnx in [
    ("abs", "Abs"), ("add", "Add"), ("sub", "Sub"), ("mul", "Mul"),
    ("neg", "Neg"), ("exp", "Exp"), ("log", "Log"), ("sqrt", "Sqrt"), ("tanh", "Tanh"),
    ("sigmoid", "Sigmoid"), ("relu", "Relu"), ("erf", "Erf"), ("sin", "Sin"), ("cos", "Cos"),
    ("floor", "Floor"), ("ceil", "Ceil"), ("round", "Round"), ("sign", "Sign"),
    ("reciprocal", "Reciprocal"), ("softplus", "Softplus"), ("isnan", "IsNaN"),
    ("eq", "Equal"), ("gt", "Greater"), ("ge", "GreaterOrEqual"), ("lt", "Less"), ("le", "LessOrEqual"),
    ("logical_and", "And"), ("logical_or", "Or"), ("logical_not", "Not"), ("select", "Where"),
    ("matmul", "MatMul"),
]:
    same(_dl, _onnx)

same("div", "Div", both=False)
same("pow", "Pow", both=False)
same("elu", "Elu", attrs={"alpha": ("alpha", 1.0)})
same("leaky_relu", "LeakyRelu", attrs={"alpha": ("alpha", 0.01)})
same("softmax", "Softmax", attrs={"axis": ("axis", -1)}, both=False)
same("log_softmax", "LogSoftmax", attrs={"axis": ("axis", -1)}, both=False)
same("argmax", "ArgMax", attrs={"axis": ("axis", 0), "keepdims": ("keepdims", 1)}, both=False)
same("argmin", "ArgMin", attrs={"axis": ("axis", 0), "keepdims": ("keepdims", 1)}, both=False)


@imports("Div", dl="div")
def _(im: Importer, node: Node, a: Any, b: Any) -> list[Any]:
    if im.dtype_of_value(a).is_float:
        return im.emit("div", a, b)
    # ONNX's integer division truncates toward zero: floor_div, plus 1 where the signs differ
    # and the division is inexact
    zero = im.scalar(0, im.dtype_of_value(a))
    q, r = im.emit("floor_div", a, b)[0], im.emit("mod", a, b)[0]
    signs = im.emit("ne", im.emit("lt", a, zero)[0], im.emit("lt", b, zero)[0])[0]
    inexact = im.emit("logical_and", signs, im.emit("ne", r, zero)[0])[0]
    return im.emit("select", inexact, im.emit("add", q, im.scalar(1, im.dtype_of_value(a)))[0], q)


@imports("Pow", dl="pow")
def _(im: Importer, node: Node, base: Any, exponent: Any) -> list[Any]:
    # ONNX allows an exponent of another type; the result has the base's
    dtype, other = im.dtype_of_value(base), im.dtype_of_value(exponent)
    if dtype == other:
        return im.emit("pow", base, exponent)
    if dtype.is_float or not other.is_float:
        return im.emit("pow", base, im.emit("cast", exponent, dtype=dtype)[0])
    power = im.emit("pow", im.emit("cast", base, dtype=other)[0], exponent)[0]
    return im.emit("cast", power, dtype=dtype)


@exports("cast", "Cast")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    return ex.node("Cast", [x], to=DL_TO_ONNX[op.attrs["dtype"]])


@imports("Cast", dl="cast")
def _(im: Importer, node: Node, x: Any) -> list[Any]:
    return im.emit("cast", x, dtype=im.dtype(node.attr("to"), node))


@imports("CastLike", dl="cast")
def _(im: Importer, node: Node, x: Any, like: Any) -> list[Any]:
    return im.emit("cast", x, dtype=im.value(like).type.dtype)


@exports("isinf", "IsInf")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    return ex.node("IsInf", [x])


@imports("IsInf", dl="isinf")
def _(im: Importer, node: Node, x: Any) -> list[Any]:
    neg, pos = node.attr("detect_negative", 1), node.attr("detect_positive", 1)
    inf = im.emit("isinf", x)[0]
    if neg and pos:
        return [inf]
    if not neg and not pos:
        return im.emit("logical_and", inf, im.emit("logical_not", inf)[0])
    side = im.emit("gt" if pos else "lt", x, im.scalar(0, im.value(x).type.dtype))[0]
    return im.emit("logical_and", inf, side)


@exports("maximum", "Max")
def _(ex: Exporter, op: Op, a: str, b: str) -> list[str]:
    return ex.node("Max", [a, b])


@exports("minimum", "Min")
def _(ex: Exporter, op: Op, a: str, b: str) -> list[str]:
    return ex.node("Min", [a, b])


@imports("Max", "Min", "Sum", "Mean")
def _(im: Importer, node: Node, *inputs: Any) -> list[Any]:
    """Variadic Max / Min / Sum / Mean: a chain of the binary dl op (Mean divides by the count)."""
    binary = {"Max": "maximum", "Min": "minimum", "Sum": "add", "Mean": "add"}[node.op_type]
    acc = inputs[0]
    for x in inputs[1:]:
        acc = im.emit(binary, acc, x)[0]
    if node.op_type == "Mean":
        acc = im.emit("div", acc, im.scalar(len(inputs), im.value(acc).type.dtype))[0]
    return [acc]


@exports("ne", "Not")
def _(ex: Exporter, op: Op, a: str, b: str) -> list[str]:
    return ex.node("Not", ex.node("Equal", [a, b]))


@exports("square", "Mul")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    return ex.node("Mul", [x, x])


@exports("expm1", "Sub")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    return ex.node("Sub", ex.node("Exp", [x]) + [ex.scalar(1, op.result.type.dtype)])


@exports("log1p", "Log")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    return ex.node("Log", ex.node("Add", [x, ex.scalar(1, op.result.type.dtype)]))


@exports("silu", "Mul")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    return ex.node("Mul", [x, *ex.node("Sigmoid", [x])])


@exports("clip", "Min")
def _(ex: Exporter, op: Op, x: str, lo: str, hi: str) -> list[str]:
    # clip(x, lo, hi) = min(max(x, lo), hi): dl's clip broadcasts all three, ONNX's wants scalars
    return ex.node("Min", ex.node("Max", [x, lo]) + [hi])


@imports("Clip", dl="clip")
def _(im: Importer, node: Node, x: Any, lo: Any = None, hi: Any = None) -> list[Any]:
    dtype = im.value(x).type.dtype
    if im.opset(node) < 11:      # bounds were attributes
        lo, hi = node.attr("min", -math.inf), node.attr("max", math.inf)
        lo, hi = im.scalar(lo, dtype), im.scalar(hi, dtype)
    if lo is None and hi is None:
        return [x]
    if hi is None:
        return im.emit("maximum", x, lo)
    if lo is None:
        return im.emit("minimum", x, hi)
    return im.emit("clip", x, lo, hi)


@exports("gelu", "Erf")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    dtype = op.result.type.dtype
    if op.attrs["approximate"]:
        # x sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3)), as dl computes the tanh form
        cube = ex.node("Mul", [x, *ex.node("Mul", [x, x])])
        inner = ex.node("Add", [x, *ex.node("Mul", [cube[0], ex.scalar(0.044715, dtype)])])
        scaled = ex.node("Mul", inner + [ex.scalar(2 * math.sqrt(2 / math.pi), dtype)])
        return ex.node("Mul", [x, *ex.node("Sigmoid", scaled)])
    # x/2 (1 + erf(x / sqrt 2))
    erf = ex.node("Erf", [*ex.node("Div", [x, ex.scalar(math.sqrt(2), dtype)])])
    half = ex.node("Mul", [x, ex.scalar(0.5, dtype)])
    return ex.node("Mul", half + ex.node("Add", erf + [ex.scalar(1, dtype)]))


@imports("Gelu", dl="gelu")
def _(im: Importer, node: Node, x: Any) -> list[Any]:
    return im.emit("gelu", x, approximate=node.attr("approximate", "none") == "tanh")


@exports("hard_sigmoid", "HardSigmoid")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    return ex.node("HardSigmoid", [x], alpha=1 / 6, beta=0.5)


@imports("HardSigmoid", "HardSwish", dl="hard_sigmoid")
def _(im: Importer, node: Node, x: Any) -> list[Any]:
    alpha, beta = (node.attr("alpha", 0.2), node.attr("beta", 0.5)) if node.op_type == "HardSigmoid" \
        else (1 / 6, 0.5)
    if math.isclose(alpha, 1 / 6, rel_tol=1e-6) and beta == 0.5:
        y = im.emit("hard_sigmoid", x)[0]
    else:       # max(0, min(1, alpha x + beta))
        dtype = im.value(x).type.dtype
        lin = im.emit("add", im.emit("mul", x, im.scalar(alpha, dtype))[0], im.scalar(beta, dtype))[0]
        y = im.emit("clip", lin, im.scalar(0, dtype), im.scalar(1, dtype))[0]
    return im.emit("mul", x, y) if node.op_type == "HardSwish" else [y]


@exports("selu", "Selu")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    return ex.node("Selu", [x], alpha=SELU_ALPHA, gamma=SELU_SCALE)


@imports("Selu", dl="selu")
def _(im: Importer, node: Node, x: Any) -> list[Any]:
    alpha, gamma = node.attr("alpha", SELU_ALPHA), node.attr("gamma", SELU_SCALE)
    if math.isclose(alpha, SELU_ALPHA, rel_tol=1e-6) and math.isclose(gamma, SELU_SCALE, rel_tol=1e-6):
        return im.emit("selu", x)
    elu = im.emit("elu", x, alpha=alpha)[0]       # selu = gamma elu(x; alpha)
    return im.emit("mul", elu, im.scalar(gamma, im.value(x).type.dtype))


@imports("PRelu")
def _(im: Importer, node: Node, x: Any, slope: Any) -> list[Any]:
    # x if x >= 0 else slope x
    dtype = im.value(x).type.dtype
    negative = im.emit("lt", x, im.scalar(0, dtype))[0]
    return im.emit("select", negative, im.emit("mul", x, slope)[0], x)


@imports("Softsign")
def _(im: Importer, node: Node, x: Any) -> list[Any]:
    # x / (1 + |x|)
    dtype = im.value(x).type.dtype
    return im.emit("div", x, im.emit("add", im.emit("abs", x)[0], im.scalar(1, dtype))[0])


@imports("Mish")
def _(im: Importer, node: Node, x: Any) -> list[Any]:
    # x tanh(softplus(x))
    return im.emit("mul", x, im.emit("tanh", im.emit("softplus", x)[0])[0])


@exports("floor_div", "Floor")
def _(ex: Exporter, op: Op, a: str, b: str) -> list[str]:
    if op.result.type.dtype.is_float:
        return ex.node("Floor", ex.node("Div", [a, b]))
    # ints: (a - mod(a, b)) / b, exact (ONNX's integer Div truncates)
    return ex.node("Div", ex.node("Sub", [a, *ex.node("Mod", [a, b], fmod=0)]) + [b])


@exports("mod", "Mod")
def _(ex: Exporter, op: Op, a: str, b: str) -> list[str]:
    if op.result.type.dtype.is_float:       # ONNX's float Mod is C's fmod: a - floor(a / b) b instead
        floor = ex.node("Floor", ex.node("Div", [a, b]))
        return ex.node("Sub", [a, *ex.node("Mul", floor + [b])])
    return ex.node("Mod", [a, b], fmod=0)


@imports("Mod", dl="mod")
def _(im: Importer, node: Node, a: Any, b: Any) -> list[Any]:
    if node.attr("fmod", 0):
        raise im.unsupported(node, "fmod=1 (C's fmod: the remainder with the dividend's sign)")
    return im.emit("mod", a, b)


# ---------------------------------------------------------------------------
# Layout


@exports("transpose", "Transpose")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    perm = op.attrs["perm"]
    return ex.node("Transpose", [x], perm=list(perm if perm is not None else range(op.result.type.rank)[::-1]))


@imports("Transpose", dl="transpose")
def _(im: Importer, node: Node, x: Any) -> list[Any]:
    perm = node.attr("perm", None)
    return im.emit("transpose", x, perm=tuple(perm) if perm is not None else None)


@exports("reshape", "Reshape")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    shape = op.attrs["shape"]
    return ex.node("Reshape", [x, ex.shape(shape)], allowzero=int(0 in shape))


@imports("Reshape", dl="reshape")
def _(im: Importer, node: Node, x: Any, shape: Any) -> list[Any]:
    spec = im.constant(shape, node, "shape", bindable=True)
    return im.emit("reshape", x, shape=im.reshape_dims(x, spec, node, zero_copies=not node.attr("allowzero", 0)))


@imports("Flatten")
def _(im: Importer, node: Node, x: Any) -> list[Any]:
    dims = im.value(x).type.shape
    axis = node.attr("axis", 1) % max(len(dims), 1) if node.attr("axis", 1) < 0 else node.attr("axis", 1)
    return im.emit("reshape", x, shape=(im.product(dims[:axis], node), im.product(dims[axis:], node)))


@imports("Squeeze", "Unsqueeze")
def _(im: Importer, node: Node, x: Any, axes: Any = None) -> list[Any]:
    if axes is None and node.has_attr("axes"):       # before opset 13: an attribute
        axes = np.array(node.attr("axes"), dtype=np.int64)
    dims = list(im.dims_of(x))
    if axes is None:                       # Squeeze: every static 1
        return im.reshape_or_fold(x, tuple(d for d in dims if d != 1))
    axes = [int(a) for a in np.ravel(im.constant(axes, node, "axes", bindable=True))]
    if node.op_type == "Squeeze":
        drop = {a % len(dims) for a in axes}
        return im.reshape_or_fold(x, tuple(d for i, d in enumerate(dims) if i not in drop))
    rank = len(dims) + len(axes)
    for a in sorted(a % rank for a in axes):
        dims.insert(a, 1)
    return im.reshape_or_fold(x, tuple(dims))


@exports("iota", "Range")
def _(ex: Exporter, op: Op) -> list[str]:
    # iota(shape, axis) = Expand(Reshape(Range(0, shape[axis], 1), [1, .., n, .., 1]), shape)
    shape, axis = op.attrs["shape"], op.attrs["axis"] % len(op.attrs["shape"])
    n = ex.node("Reshape", [ex.shape((shape[axis],)), ex.const(np.array([], dtype=np.int64))])[0]
    one, zero = ex.const(np.array(1, dtype=np.int64)), ex.const(np.array(0, dtype=np.int64))
    line = ex.node("Range", [zero, n, one])[0]
    column = tuple(shape[axis] if i == axis else 1 for i in range(len(shape)))
    spread = ex.node("Expand", [ex.node("Reshape", [line, ex.shape(column)])[0], ex.shape(shape)])[0]
    return ex.node("Cast", [spread], to=DL_TO_ONNX[op.attrs["dtype"]])


@exports("broadcast_to", "Expand")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    return ex.node("Expand", [x, ex.shape(op.attrs["shape"])])


@imports("Expand", dl="broadcast_to")
def _(im: Importer, node: Node, x: Any, shape: Any) -> list[Any]:
    # ONNX's Expand broadcasts both ways: the result is broadcast(x.shape, shape)
    from compiler.ops.base import broadcast_shapes

    target = tuple(int(d) if not isinstance(d, str) else d for d in im.constant(shape, node, "shape", bindable=True))
    return im.emit("broadcast_to", x, shape=broadcast_shapes(im.dims_of(x), target))


@imports("Identity")
def _(im: Importer, node: Node, x: Any) -> list[Any]:
    return [x]


@imports("Dropout")
def _(im: Importer, node: Node, x: Any, ratio: Any = None, training_mode: Any = None) -> list[Any]:
    # inference: the identity (training mode, or its mask output, is not supported)
    if len(node.outputs) > 1 and node.outputs[1]:
        raise im.unsupported(node, "its mask output")
    if training_mode is not None and bool(im.constant(training_mode, node, "training_mode", bindable=True)):
        raise im.unsupported(node, "training_mode=true (random masks)")
    return [x]


# ---------------------------------------------------------------------------
# Contraction


@imports("MatMulInteger", dl="matmul_lowp")
def _(im: Importer, node: Node, a: Any, b: Any, a_zero: Any = None, b_zero: Any = None) -> list[Any]:
    # (A - za)(B - zb) = A B - rowsum(A) zb - za colsum(B) + K za zb, every term in i32
    # (modulo 2^32, as the product): A B stays one int8 product (AVX-512 VNNI where the CPU has it)
    if len(im.dims_of(a)) < 2 or len(im.dims_of(b)) < 2:
        raise im.unsupported(node, "a rank-1 operand")
    # as values first: emit would give a constant operand the other's dtype (u8 and i8 mix here)
    y = im.emit("matmul_lowp", im.value(a), im.value(b), dtype=DType.i32)[0]
    k = im.dims_of(a)[-1]
    if not isinstance(k, int):
        raise im.unsupported(node, "a symbolic contraction dim")

    def wide(x: Any) -> Any:
        return im.emit("cast", x, dtype=DType.i32)[0]

    za = zb = None
    if a_zero is not None:
        za = wide(a_zero)
        if len(im.dims_of(a_zero)) == 1:         # one per row of A: a column
            za = im.emit("expand_dims", za, axis=1)[0]
        cols = im.emit("sum", wide(b), axes=(len(im.dims_of(b)) - 2,), keepdims=True)[0]
        y = im.emit("sub", y, im.emit("mul", za, cols)[0])[0]
    if b_zero is not None:
        zb = wide(b_zero)                         # a scalar, or one per column of B
        rows = im.emit("sum", wide(a), axes=(len(im.dims_of(a)) - 1,), keepdims=True)[0]
        y = im.emit("sub", y, im.emit("mul", rows, zb)[0])[0]
    if za is not None and zb is not None:
        both = im.emit("mul", im.emit("mul", za, zb)[0], im.scalar(k, DType.i32))[0]
        y = im.emit("add", y, both)[0]
    return [y]


@imports("Gemm")
def _(im: Importer, node: Node, a: Any, b: Any, c: Any = None) -> list[Any]:
    # alpha A' B' + beta C, with A' = A^T under transA (B' likewise)
    if node.attr("transA", 0):
        a = im.emit("transpose", a, perm=(1, 0))[0]
    if node.attr("transB", 0):
        b = im.emit("transpose", b, perm=(1, 0))[0]
    y = im.emit("matmul", a, b)[0]
    dtype = im.value(y).type.dtype
    if node.attr("alpha", 1.0) != 1.0:
        y = im.emit("mul", y, im.scalar(node.attr("alpha", 1.0), dtype))[0]
    if c is not None:
        if node.attr("beta", 1.0) != 1.0:
            c = im.emit("mul", c, im.scalar(node.attr("beta", 1.0), dtype))[0]
        y = im.emit("add", y, c)[0]
    return [y]


# ---------------------------------------------------------------------------
# Reductions (opset 18: axes an optional input; before, an attribute -- except ReduceSum's, from 13)

_REDUCTIONS = {"sum": "ReduceSum", "mean": "ReduceMean", "max": "ReduceMax", "min": "ReduceMin",
               "prod": "ReduceProd", "logsumexp": "ReduceLogSumExp"}


def _export_reduction(onnx: str) -> ExportRule:
    def export(ex: Exporter, op: Op, x: str) -> list[str]:
        axes = op.attrs["axes"]
        if axes is not None and len(axes) == 0:       # reduces nothing (ONNX's empty axes mean all)
            return ex.node("Identity", [x])
        inputs = [x] if axes is None else [x, ex.const(np.array(axes, dtype=np.int64))]
        return ex.node(onnx, inputs, keepdims=int(op.attrs["keepdims"]))
    return export


for _dl, _onnx in _REDUCTIONS.items():
    _enter(Mapping(_dl, _onnx, export=_export_reduction(_onnx)))


@exports("all", "ReduceMin")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    as_int = ex.node("Cast", [x], to=DL_TO_ONNX[DType.i32])
    reduced = _export_reduction("ReduceMin" if op.name == "all" else "ReduceMax")(ex, op, as_int[0])
    return ex.node("Cast", reduced, to=DL_TO_ONNX[DType.bool])


EXPORTS["any"] = Mapping("any", "ReduceMax", export=EXPORTS["all"].export)


@exports("norm", "ReduceL2")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    return _export_reduction("ReduceL2" if op.attrs["ord"] == 2 else "ReduceL1")(ex, op, x)


@imports("ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceLogSumExp",
         "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum")
def _(im: Importer, node: Node, x: Any, axes: Any = None) -> list[Any]:
    keepdims = bool(node.attr("keepdims", 1))
    if axes is None and node.has_attr("axes"):       # before opset 18 (13 for ReduceSum): an attribute
        axes = np.array(node.attr("axes"), dtype=np.int64)
    axes = None if axes is None else tuple(int(a) for a in np.ravel(im.constant(axes, node, "axes", bindable=True)))
    if axes is not None and len(axes) == 0:
        axes = None
    if axes is None and node.attr("noop_with_empty_axes", 0):
        return [x]
    kind = node.op_type[len("Reduce"):]
    if kind == "SumSquare":
        return im.emit("sum", im.emit("square", x)[0], axes=axes, keepdims=keepdims)
    if kind == "LogSum":
        return im.emit("log", im.emit("sum", x, axes=axes, keepdims=keepdims)[0])
    if kind in ("L1", "L2"):
        return im.emit("norm", x, ord=int(kind[1]), axes=axes, keepdims=keepdims)
    dl = {"Sum": "sum", "Mean": "mean", "Max": "max", "Min": "min", "Prod": "prod",
          "LogSumExp": "logsumexp"}[kind]
    if kind in ("Max", "Min") and im.dtype_of_value(x) is DType.bool:
        dl = "any" if kind == "Max" else "all"
    return im.emit(dl, x, axes=axes, keepdims=keepdims)


@imports("ArgMax", "ArgMin")
def _(im: Importer, node: Node, x: Any) -> list[Any]:
    if node.attr("select_last_index", 0):
        raise im.unsupported(node, "select_last_index=1 (dl's argmax/argmin give the first index)")
    return im.emit(node.op_type.lower(), x, axis=node.attr("axis", 0), keepdims=bool(node.attr("keepdims", 1)))


@imports("Softmax", "LogSoftmax")
def _(im: Importer, node: Node, x: Any) -> list[Any]:
    dl = "softmax" if node.op_type == "Softmax" else "log_softmax"
    dims = im.dims_of(x)
    if im.opset(node) >= 13:
        return im.emit(dl, x, axis=node.attr("axis", -1))
    axis = node.attr("axis", 1) % max(len(dims), 1)
    if axis == len(dims) - 1:
        return im.emit(dl, x, axis=-1)
    # before opset 13: over the axes from `axis` on, flattened into one
    flat = im.emit("reshape", x, shape=(im.product(dims[:axis], node), im.product(dims[axis:], node)))[0]
    return im.emit("reshape", im.emit(dl, flat, axis=1)[0], shape=tuple(dims))


@exports("cumsum", "CumSum")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    axis = ex.const(np.array(op.attrs["axis"], dtype=np.int64))
    return ex.node("CumSum", [x, axis], exclusive=int(op.attrs["exclusive"]), reverse=int(op.attrs["reverse"]))


@imports("CumSum", dl="cumsum")
def _(im: Importer, node: Node, x: Any, axis: Any) -> list[Any]:
    return im.emit("cumsum", x, axis=int(im.constant(axis, node, "axis", bindable=True)),
                   exclusive=bool(node.attr("exclusive", 0)), reverse=bool(node.attr("reverse", 0)))


@exports("top_k", "TopK")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    k = ex.const(np.array([op.attrs["k"]], dtype=np.int64))
    return ex.node("TopK", [x, k], num_outputs=2, axis=-1, largest=1, sorted=1)


@imports("TopK", dl="top_k")
def _(im: Importer, node: Node, x: Any, k: Any) -> list[Any]:
    rank = len(im.dims_of(x))
    if node.attr("axis", -1) % rank != rank - 1 or not node.attr("largest", 1) or not node.attr("sorted", 1):
        raise im.unsupported(node, "only the largest k along the last axis, sorted")
    return im.emit("top_k", x, k=int(np.ravel(im.constant(k, node, "K", bindable=True))[0]))


# ---------------------------------------------------------------------------
# Sources and shapes


@exports("constant", "Constant")
def _(ex: Exporter, op: Op) -> list[str]:
    t = op.result.type
    value = np.asarray(op.attrs["value"]).astype(t.dtype.np)
    if t.is_static:
        return ex.node("Constant", [], value=np.broadcast_to(value, cast(tuple[int, ...], t.shape)).copy())
    return ex.node("ConstantOfShape", [ex.shape(t.shape)], value=value.reshape(1))


@imports("Constant")
def _(im: Importer, node: Node) -> list[Any]:
    for key in ("value", "value_float", "value_int", "value_floats", "value_ints"):
        if node.has_attr(key):
            value = np.asarray(node.attr(key, None))
            if key in ("value_float", "value_floats"):
                value = value.astype(np.float32)
            elif key in ("value_int", "value_ints"):
                value = value.astype(np.int64)
            return [value]
    raise im.unsupported(node, "a sparse or string value")


@imports("ConstantOfShape")
def _(im: Importer, node: Node, shape: Any) -> list[Any]:
    value = node.attr("value", np.zeros(1, np.float32))
    dims = tuple(int(d) if not isinstance(d, str) else d for d in im.constant(shape, node, "input", bindable=True))
    if all(isinstance(d, int) for d in dims):
        return [np.full(dims, np.ravel(value)[0], dtype=value.dtype)]
    return [im.b.constant(np.ravel(value)[0].item(), im.dtype_of(value.dtype, node), dims)]


@exports("dim_size", "Shape")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    axis = op.attrs["axis"] % op.operands[0].type.rank
    size = ex.node("Shape", [x], start=axis, end=axis + 1)
    scalar = ex.node("Reshape", size + [ex.const(np.zeros(0, np.int64))])
    return scalar if op.attrs["dtype"] is DType.i64 else ex.node("Cast", scalar, to=DL_TO_ONNX[op.attrs["dtype"]])


@imports("Shape")
def _(im: Importer, node: Node, x: Any) -> list[Any]:
    # a constant vector of dims: ints where static, symbol names where not (folded by its users)
    dims = im.dims_of(x)
    start, end = node.attr("start", 0), node.attr("end", len(dims))
    return [np.array(dims[slice(start, end)], dtype=object if any(isinstance(d, str) for d in dims) else np.int64)]


@imports("Size")
def _(im: Importer, node: Node, x: Any) -> list[Any]:
    return [np.array(im.product(im.dims_of(x), node), dtype=np.int64)]


# ---------------------------------------------------------------------------
# Indexing: slices, joins, gathers

INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min


@exports("slice", "Slice")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    rank = op.operands[0].type.rank
    pad = (None,) * rank
    start, stop, step = ((tuple(op.attrs[k]) + pad)[:rank] for k in ("start", "stop", "step"))
    axes, starts, ends, steps = [], [], [], []
    for axis, (a, b, s) in enumerate(zip(start, stop, step)):
        if a is None and b is None and s is None:
            continue
        s = 1 if s is None else s
        axes.append(axis)
        steps.append(s)
        starts.append(a if a is not None else (0 if s > 0 else INT64_MAX))     # numpy's defaults,
        ends.append(b if b is not None else (INT64_MAX if s > 0 else INT64_MIN))  # clamped by ONNX
    if not axes:
        return ex.node("Identity", [x])
    ints = [ex.const(np.array(v, dtype=np.int64)) for v in (starts, ends, axes, steps)]
    return ex.node("Slice", [x, *ints])


@exports("flip", "Slice")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    rank = op.operands[0].type.rank
    axes = list(range(rank)) if op.attrs["axis"] is None else [a % rank for a in op.attrs["axis"]]
    if not axes:
        return ex.node("Identity", [x])
    n = len(axes)
    ints = [ex.const(np.array(v, dtype=np.int64))
            for v in ([INT64_MAX] * n, [INT64_MIN] * n, axes, [-1] * n)]
    return ex.node("Slice", [x, *ints])


@imports("Slice", dl="slice")
def _(im: Importer, node: Node, x: Any, starts: Any, ends: Any, axes: Any = None, steps: Any = None) -> list[Any]:
    rank = len(im.dims_of(x))
    starts = im.constant(starts, node, "starts", bindable=True).astype(np.int64)
    ends = im.constant(ends, node, "ends", bindable=True).astype(np.int64)
    axes = (np.arange(len(starts)) if axes is None
            else im.constant(axes, node, "axes", bindable=True).astype(np.int64) % max(rank, 1))
    steps = np.ones(len(starts), np.int64) if steps is None else im.constant(steps, node, "steps").astype(np.int64)
    start: list[int | None] = [None] * rank
    stop: list[int | None] = [None] * rank
    step: list[int | None] = [None] * rank

    def bound(v: int) -> int | None:          # ONNX's "to the end" sentinels are numpy's None
        return None if v >= INT64_MAX // 2 or v <= INT64_MIN // 2 else int(v)

    for a, b, e, s in zip(axes, starts, ends, steps):
        start[int(a)], stop[int(a)], step[int(a)] = bound(b), bound(e), int(s)
    return im.emit("slice", x, start=tuple(start), stop=tuple(stop), step=tuple(step))


@exports("concat", "Concat")
def _(ex: Exporter, op: Op, *xs: str) -> list[str]:
    return ex.node("Concat", list(xs), axis=op.attrs["axis"])


@imports("Concat", dl="concat")
def _(im: Importer, node: Node, *xs: Any) -> list[Any]:
    if any(isinstance(x, np.ndarray) and x.dtype == object for x in xs):
        # shape arithmetic holding symbolic dims: folded here (emit folds numeric constants)
        arrays = [im.constant(x, node, f"input {i}").astype(object) for i, x in enumerate(xs)]
        return [np.concatenate(arrays, axis=node.attr("axis", 0))]
    return im.emit("concat", *xs, axis=node.attr("axis", 0))


@exports("gather", "Gather")
def _(ex: Exporter, op: Op, x: str, indices: str) -> list[str]:
    return ex.node("Gather", [x, indices], axis=op.attrs["axis"])


@imports("Gather", dl="gather")
def _(im: Importer, node: Node, x: Any, indices: Any) -> list[Any]:
    if isinstance(x, np.ndarray) and x.dtype == object:
        # a shape's dims, symbolic ones among them: folded here (emit folds numeric constants)
        taken = np.take(x, im.constant(indices, node, "indices").astype(np.int64), axis=node.attr("axis", 0))
        return [np.asarray(taken, dtype=x.dtype)]       # (a 0-d take of an object array is its element)
    return im.emit("gather", x, indices, axis=node.attr("axis", 0))


@exports("squeeze", "Squeeze")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    t = op.operands[0].type
    axes = op.attrs["axis"]
    if axes is None:
        axes = tuple(i for i, d in enumerate(t.shape) if d == 1)
    return ex.node("Squeeze", [x, ex.const(np.array(axes, dtype=np.int64))])


@exports("expand_dims", "Unsqueeze")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    return ex.node("Unsqueeze", [x, ex.const(np.array(op.attrs["axis"], dtype=np.int64))])


@exports("where", "Where")
def _(ex: Exporter, op: Op, cond: str, a: str, b: str) -> list[str]:
    return ex.node("Where", [cond, a, b])


# ---------------------------------------------------------------------------
# Convolution and pooling: dl is NHWC with HWIO kernels, ONNX NCHW with OIHW kernels,
# so each is written between two transposes (ONNX pads are [top, left, bottom, right]).

NHWC_TO_NCHW = [0, 3, 1, 2]
NCHW_TO_NHWC = [0, 2, 3, 1]


def _onnx_pads(padding: tuple[int, int, int, int]) -> list[int]:
    top, bottom, left, right = padding
    return [top, left, bottom, right]


def _in_nchw(ex: Exporter, x: str, op_type: str, inputs: list[str], **attrs: Any) -> list[str]:
    nchw = ex.node("Transpose", [x], perm=NHWC_TO_NCHW)
    y = ex.node(op_type, nchw + inputs, **attrs)
    return ex.node("Transpose", y, perm=NCHW_TO_NHWC)


@exports("conv2d", "Conv")
def _(ex: Exporter, op: Op, x: str, w: str) -> list[str]:
    kernel = ex.node("Transpose", [w], perm=[3, 2, 0, 1])       # HWIO -> OIHW
    return _in_nchw(ex, x, "Conv", kernel, strides=list(op.attrs["strides"]),
                    pads=_onnx_pads(op.attrs["padding"]), dilations=list(op.attrs["dilations"]),
                    group=op.attrs["groups"])


def _pool_attrs(op: Op) -> dict[str, Any]:
    pool = list(op.attrs["pool_size"])
    strides = op.attrs["strides"]
    return {"kernel_shape": pool, "strides": list(strides) if strides is not None else pool,
            "pads": _onnx_pads(op.attrs["padding"])}


@exports("max_pool2d", "MaxPool")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    return _in_nchw(ex, x, "MaxPool", [], **_pool_attrs(op))


@exports("avg_pool2d", "AveragePool")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    return _in_nchw(ex, x, "AveragePool", [], count_include_pad=int(op.attrs["count_include_pad"]),
                    **_pool_attrs(op))


@exports("flatten", "Flatten")
def _(ex: Exporter, op: Op, x: str) -> list[str]:
    return ex.node("Flatten", [x], axis=1)


def _import_pads(im: Importer, node: Node, x: Any, kernel: list[int], strides: list[int],
                 dilations: list[int]) -> tuple[int, int, int, int]:
    """dl's ``(top, bottom, left, right)`` from a 2-d window's ``pads`` / ``auto_pad``."""
    auto = node.attr("auto_pad", "NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("NOTSET", ""):
        top, left, bottom, right = node.attr("pads", [0, 0, 0, 0])
        return top, bottom, left, right
    if auto == "VALID":
        return 0, 0, 0, 0
    size = im.dims_of(x)[2:4]
    if not all(isinstance(d, int) for d in size):
        raise im.unsupported(node, f"auto_pad={auto} on an image of symbolic size")
    pads: list[int] = []
    for n, k, s, d in zip(size, kernel, strides, dilations):
        total = max((-(-int(n) // s) - 1) * s + (k - 1) * d + 1 - int(n), 0)
        small, large = total // 2, total - total // 2
        pads += [small, large] if auto == "SAME_UPPER" else [large, small]
    return pads[0], pads[1], pads[2], pads[3]


def _window_2d(im: Importer, node: Node, x: Any, kernel: list[int]) -> None:
    """Refuse what dl's 2-d windows do not take: other ranks than NCHW images."""
    if len(im.dims_of(x)) != 4 or len(kernel) != 2:
        raise im.unsupported(node, f"a {len(kernel)}-d window (dlc imports 2-d NCHW {node.op_type})")


def _to_nhwc(im: Importer, x: Any) -> Any:
    return im.emit("transpose", x, perm=tuple(NCHW_TO_NHWC))[0]


def _to_nchw(im: Importer, y: Any) -> list[Any]:
    return im.emit("transpose", y, perm=tuple(NHWC_TO_NCHW))


@imports("Conv", dl="conv2d")
def _(im: Importer, node: Node, x: Any, w: Any, b: Any = None) -> list[Any]:
    kernel = list(node.attr("kernel_shape", list(im.dims_of(w)[2:])))
    _window_2d(im, node, x, kernel)
    strides, dilations = list(node.attr("strides", [1, 1])), list(node.attr("dilations", [1, 1]))
    padding = _import_pads(im, node, x, kernel, strides, dilations)
    hwio = im.emit("transpose", w, perm=(2, 3, 1, 0))[0]          # OIHW -> HWIO
    y = im.emit("conv2d", _to_nhwc(im, x), hwio, strides=tuple(strides), padding=padding,
                dilations=tuple(dilations), groups=int(node.attr("group", 1)))[0]
    if b is not None:
        y = im.emit("add", y, b)[0]                                # the channel axis is last in NHWC
    return _to_nchw(im, y)


@imports("MaxPool", "AveragePool")
def _(im: Importer, node: Node, x: Any) -> list[Any]:
    kernel = list(node.attr("kernel_shape"))
    _window_2d(im, node, x, kernel)
    if len(node.outputs) > 1 and node.outputs[1]:
        raise im.unsupported(node, "its Indices output")
    if node.attr("ceil_mode", 0):
        raise im.unsupported(node, "ceil_mode=1 (dl's windows are floor-mode, as Keras's)")
    dilations = list(node.attr("dilations", [1, 1]))
    if dilations != [1, 1]:
        raise im.unsupported(node, f"dilations={dilations} (dl's pooling windows are dense)")
    strides = list(node.attr("strides", [1, 1]))
    attrs: dict[str, Any] = {"pool_size": tuple(kernel), "strides": tuple(strides),
                             "padding": _import_pads(im, node, x, kernel, strides, dilations)}
    if node.op_type == "AveragePool":
        attrs["count_include_pad"] = bool(node.attr("count_include_pad", 0))
    name = "max_pool2d" if node.op_type == "MaxPool" else "avg_pool2d"
    return _to_nchw(im, im.emit(name, _to_nhwc(im, x), **attrs)[0])


@imports("GlobalAveragePool", "GlobalMaxPool")
def _(im: Importer, node: Node, x: Any) -> list[Any]:
    if len(im.dims_of(x)) != 4:
        raise im.unsupported(node, "an input that is not a 2-d NCHW image")
    return im.emit("mean" if node.op_type == "GlobalAveragePool" else "max", x, axes=(2, 3), keepdims=True)
