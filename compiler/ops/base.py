"""The op table's machinery: :class:`OpDef`, attribute schemas, the registry.

An op is defined once, and everything about it sits beside that definition::

    add = define("add", operands=("lhs", "rhs"), kind=ELEMENTWISE,
                 infer=broadcast_rule, doc=...)

    @add.def_reference
    def _(lhs, rhs): return np.add(lhs, rhs)

    @add.def_vjp
    def _(b, op, ct): ...          # dl ops, through a Builder

    @add.def_emit
    def _(e, lhs, rhs): return e.add(lhs, rhs)   # codegen, elementwise ops

A test walks :data:`OPS` and fails if any op lacks a rule it needs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..diagnostics import abbreviate
from ..ir.types import Dim, DType, TensorType

ELEMENTWISE = "elementwise"   # result[i] = f(operands[i]) with numpy broadcasting
REDUCTION = "reduction"       # reduces over `axes`
LAYOUT = "layout"             # moves or views data: reshape, transpose, broadcast_to
CONTRACTION = "contraction"   # matmul
COMPOSITE = "composite"       # defined by a decomposition into simpler dl ops
SOURCE = "source"             # no operands: constants, iota
OTHER = "other"

KINDS = (ELEMENTWISE, REDUCTION, LAYOUT, CONTRACTION, COMPOSITE, SOURCE, OTHER)

STORAGE_DTYPES = frozenset(d for d in DType if d.is_storage)


def storage_problem(dtype: DType) -> str:
    """Why an op that does not take storage dtype ``dtype`` rejects it, and what to write."""
    return (f"does not take {dtype.dsl_name} tensors ({dtype.dsl_name} is a storage dtype: "
            "only elementwise, layout and data-movement ops take it); "
            f"cast to {dtype.compute.dsl_name if dtype.is_float else 'f32'} first, "
            f"e.g. cast(x, {dtype.compute.dsl_name if dtype.is_float else 'f32'})")


class ShapeError(Exception):
    """Raised by a shape rule; the builder adds the op name and source location."""


@dataclass(frozen=True, slots=True)
class AttrSpec:
    """Schema of one attribute.

    kinds: ``int``, ``float``, ``bool``, ``str``, ``ints`` (tuple of int),
    ``dims`` (tuple of int or symbol), ``dtype``, ``scalar`` (int, float or
    bool), ``dense`` (numpy array), ``optional_ints`` (tuple of int or None), ``bounds``
    (tuple whose entries are int or None: slice bounds per axis, None for numpy's default).
    """

    kind: str
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] | None = None


def attr(kind: str, default: Any = None, *, choices: tuple[str, ...] | None = None) -> AttrSpec:
    return AttrSpec(kind, default, required=False, choices=choices)


def required(kind: str, *, choices: tuple[str, ...] | None = None) -> AttrSpec:
    return AttrSpec(kind, None, required=True, choices=choices)


@dataclass(eq=False)
class OpDef:
    """Everything about one op.  See the module docstring."""

    name: str
    operands: tuple[str, ...]
    kind: str
    infer: Callable[..., TensorType | list[TensorType]]
    attrs: dict[str, AttrSpec] = field(default_factory=dict)
    doc: str = ""
    differentiable: bool = True
    num_results: int = 1
    variadic: bool = False      # operands: one or more of the last named operand
    reference: Callable[..., Any] | None = None
    vjp: Callable[..., list[Any]] | None = None
    emit: Callable[..., Any] | None = None        # elementwise scalar/vector emitter
    lower: Callable[..., Any] | None = None       # codegen kernel for non-elementwise ops
    decompose: Callable[..., Any] | None = None   # expansion into simpler dl ops
    canonical: Callable[..., Any] | None = None   # the form Builder.emit builds the op in
    expand: Callable[..., bool] | None = None     # expand(op): lower this one by its decompose rule
    operand_defaults: dict[str, Any] = field(default_factory=dict)   # the language fills these in
    variants: dict[str, str] = field(default_factory=dict)   # keyword operand -> the op it calls
    storage: frozenset[DType] = frozenset()       # the storage dtypes (f16 bf16 i8 u8) it takes

    @property
    def ir_name(self) -> str:
        return f"dl.{self.name}"

    def result_types(self, *types: TensorType, **attrs: Any) -> list[TensorType]:
        """The op's result types for operands of ``types``: its shape rule, and a
        :class:`ShapeError` where an operand or result has a storage dtype (``f16 bf16 i8
        u8``) the op does not take (:attr:`storage`).  Builder and verifier call this."""
        inferred = self.infer(*types, **attrs)
        results = inferred if isinstance(inferred, list) else [inferred]
        for t in (*types, *results):
            if t.dtype.is_storage and t.dtype not in self.storage:
                raise ShapeError(storage_problem(t.dtype))
        return results

    def def_expand(self, fn: Callable) -> Callable:
        """``fn(op) -> bool``: codegen expands ``op`` by its ``decompose`` rule instead of
        lowering it with its kernel (a case the kernel does not take, such as a symbolic head
        size for the fused attention kernel)."""
        self.expand = fn
        return fn

    def takes_storage(self, dtypes: frozenset[DType] | None = None) -> None:
        """Declare that the op takes the storage dtypes ``dtypes`` (default: all four)."""
        self.storage = STORAGE_DTYPES if dtypes is None else dtypes

    # Decorators that attach a rule to this op, keeping it beside the definition.
    def def_reference(self, fn: Callable) -> Callable:
        self.reference = fn
        return fn

    def def_vjp(self, fn: Callable) -> Callable:
        assert self.differentiable, f"{self.name} is declared non-differentiable"
        self.vjp = fn
        return fn

    def def_emit(self, fn: Callable) -> Callable:
        self.emit = fn
        return fn

    def def_lower(self, fn: Callable) -> Callable:
        self.lower = fn
        return fn

    def lowers_to(self, family: str) -> None:
        """Lower with codegen's kernel family ``family`` (``bufferize.KERNEL_FAMILIES``):
        the ``lower`` rule of every non-elementwise op that needs no kernel of its own."""
        self.lower = functools.partial(_lower_with_family, family)

    def def_decompose(self, fn: Callable) -> Callable:
        self.decompose = fn
        return fn

    def def_canonical(self, fn: Callable) -> Callable:
        """``fn(operands, attrs) -> (operands, attrs) | None``: what :meth:`Builder.emit`
        builds instead of the op as asked (None: as asked).  Part of the op's meaning, so
        every op built anywhere -- frontend, autodiff, tests -- has it; ops that are
        copied (``Builder.make``) or parsed keep the form they have."""
        self.canonical = fn
        return fn


def _lower_with_family(family: str, lowering: Any, op: Any) -> None:
    lowering.kernel(family, op)


OPS: dict[str, OpDef] = {}
ALIASES: dict[str, str] = {}    # another name -> the op's name (``swish`` -> ``silu``)


def define(name: str, *, operands: tuple[str, ...], kind: str, infer: Callable,
           attrs: dict[str, AttrSpec] | None = None, doc: str = "",
           differentiable: bool = True, num_results: int = 1, variadic: bool = False,
           aliases: tuple[str, ...] = ()) -> OpDef:
    """Create an op definition and enter it in :data:`OPS` (and its ``aliases`` in
    :data:`ALIASES`: :func:`get_op` finds the op by them, IR always holds ``name``)."""
    assert name not in OPS and name not in ALIASES, f"op {name} defined twice"
    assert kind in KINDS, kind
    op = OpDef(name=name, operands=operands, kind=kind, infer=infer, attrs=dict(attrs or {}),
               doc=doc, differentiable=differentiable, num_results=num_results, variadic=variadic,
               storage=STORAGE_DTYPES if kind == ELEMENTWISE else frozenset())
    OPS[name] = op
    for alias in aliases:
        assert alias not in OPS and alias not in ALIASES, f"op name {alias} taken"
        ALIASES[alias] = name
    return op


def get_op(name: str) -> OpDef | None:
    """The definition for ``name`` or an alias of it (with or without the ``dl.`` prefix), or None."""
    bare = name.removeprefix("dl.")
    return OPS.get(ALIASES.get(bare, bare))


# ---------------------------------------------------------------------------
# Attribute normalisation (used by the builder and the IR parser)

def normalize_attrs(op: OpDef, given: dict[str, Any]) -> dict[str, Any]:
    """Fill defaults and check every attribute against the op's schema.

    Raises :class:`ShapeError` with a user-readable message on a mismatch.
    """
    unknown = sorted(set(given) - set(op.attrs))
    if unknown:
        allowed = ", ".join(op.attrs) or "none"
        raise ShapeError(f"unknown attribute '{unknown[0]}' (allowed: {allowed})")
    out: dict[str, Any] = {}
    for key, spec in op.attrs.items():
        if key in given and given[key] is not None:
            out[key] = _coerce(key, spec, given[key])
        elif spec.required:
            raise ShapeError(f"missing required attribute '{key}'")
        else:
            out[key] = spec.default
    return out


def _coerce(key: str, spec: AttrSpec, value: Any) -> Any:
    kind = spec.kind

    def bad(expected: str) -> ShapeError:
        return ShapeError(f"attribute '{key}' expects {expected}, got {abbreviate(repr(value), 80)}")

    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise bad("an integer")
        return int(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise bad("a number")
        return float(value)
    if kind == "bool":
        if not isinstance(value, (bool, np.bool_)):
            raise bad("true or false")
        return bool(value)
    if kind == "str":
        if not isinstance(value, str):
            raise bad("a string")
        if spec.choices and value not in spec.choices:
            raise ShapeError(f"attribute '{key}' must be one of {', '.join(spec.choices)}, got '{value}'")
        return value
    if kind == "scalar":
        if not isinstance(value, (bool, int, float, np.number, np.bool_)):
            raise bad("a number")
        return value.item() if isinstance(value, np.generic) else value
    if kind == "dtype":
        if isinstance(value, DType):
            return value
        if isinstance(value, str):
            try:
                return DType.from_name(value)
            except ValueError:
                raise bad(f"a dtype ({', '.join(d.dsl_name for d in DType)})") from None
        raise bad("a dtype")
    if kind in ("ints", "optional_ints"):
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return (int(value),)
        if isinstance(value, (tuple, list)) and all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
            return tuple(int(v) for v in value)
        raise bad("a list of integers")
    if kind == "bounds":
        items = value if isinstance(value, (tuple, list)) else (value,)
        if all(v is None or (isinstance(v, (int, np.integer)) and not isinstance(v, bool)) for v in items):
            return tuple(None if v is None else int(v) for v in items)
        raise bad("a list of integers or none")
    if kind == "dims":
        if isinstance(value, (tuple, list)) and all(
                (isinstance(v, (int, np.integer)) and not isinstance(v, bool)) or isinstance(v, str)
                for v in value):
            return tuple(v if isinstance(v, str) else int(v) for v in value)
        raise bad("a list of dims")
    if kind == "dense":
        try:
            array = np.asarray(value)
        except ValueError:      # a ragged nesting of lists
            raise bad("a number or a dense array") from None
        if array.dtype.kind not in "biuf":
            raise bad("a number or a dense array")
        return array
    raise AssertionError(f"unknown attribute kind {kind}")


# ---------------------------------------------------------------------------
# Shape helpers shared by the shape rules

def dim_str(d: Dim) -> str:
    return str(d)


def shape_str(shape: tuple[Dim, ...]) -> str:
    return "[" + ", ".join(dim_str(d) for d in shape) + "]"


def broadcast_shapes(*shapes: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """numpy broadcasting over static and symbolic dims.

    Dims agree when equal, or when one is the static 1.  A symbol never agrees
    with a different symbol or a static dim other than 1: ``N`` vs ``M`` and
    ``N`` vs ``5`` are errors, since nothing proves them equal.
    """
    rank = max((len(s) for s in shapes), default=0)
    out: list[Dim] = []
    for i in range(rank):
        dim: Dim = 1
        for s in shapes:
            j = i - (rank - len(s))
            if j < 0:
                continue
            d = s[j]
            if d == 1 or d == dim:
                continue
            if dim == 1:
                dim = d
                continue
            raise ShapeError(
                "shapes " + " and ".join(shape_str(s) for s in shapes)
                + f" do not broadcast: dim {dim_str(dim)} vs {dim_str(d)}")
        out.append(dim)
    return tuple(out)


def normalize_axes(axes: tuple[int, ...] | None, rank: int) -> tuple[int, ...]:
    """Axes as sorted non-negative ints; ``None`` means all axes."""
    if axes is None:
        return tuple(range(rank))
    out = []
    for a in axes:
        if not -rank <= a < max(rank, 1):
            raise ShapeError(f"axis {a} is out of range for rank {rank}")
        a = a % rank if rank else 0
        if a in out:
            raise ShapeError(f"axis {a} repeated")
        out.append(a)
    return tuple(sorted(out))


def same_dtype(types: list[TensorType], what: str = "operands") -> TensorType:
    first = types[0]
    for t in types[1:]:
        if t.dtype != first.dtype:
            raise ShapeError(f"{what} have different dtypes: {first.dtype.dsl_name} and {t.dtype.dsl_name}")
    return first


def broadcast_rule(*types: TensorType, **_attrs: Any) -> TensorType:
    """Shape rule of a binary elementwise op: same dtype, numpy broadcasting."""
    t = same_dtype(list(types))
    return TensorType(t.dtype, broadcast_shapes(*(x.shape for x in types)))
