"""Layout ops: ``broadcast_to``, ``reshape``, ``transpose``, and the shape query ``dim_size``.

``dims`` attributes may hold symbols (``shape = ["N", 784]``); the
interpreter and codegen bind them to the sizes of the call's arguments.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..ir.types import Dim, DType, TensorType
from .base import LAYOUT, OTHER, ShapeError, attr, broadcast_shapes, define, required, shape_str
from .rules import unbroadcast

# ---------------------------------------------------------------------------
# broadcast_to


def _broadcast_to_rule(x: TensorType, *, shape: tuple[Dim, ...]) -> TensorType:
    target = tuple(shape)
    ok = len(target) >= x.rank
    if ok:
        try:
            ok = broadcast_shapes(x.shape, target) == target
        except ShapeError:
            ok = False
    if not ok:
        raise ShapeError(f"cannot broadcast {x.dsl_str()} to {shape_str(target)}")
    return x.with_shape(target)


broadcast_to = define(
    "broadcast_to", operands=("x",), kind=LAYOUT, infer=_broadcast_to_rule,
    attrs={"shape": required("dims")},
    doc="""Broadcast ``x`` to ``shape`` by numpy rules (new leading axes, static 1s stretched).

    %1 = "dl.broadcast_to"(%0) {shape = ["N", 3]} : (tensor<3xf32>) -> tensor<?x3xf32, "N">
    """)


@broadcast_to.def_reference
def _(x, *, shape):
    return np.broadcast_to(x, tuple(shape)).copy()


@broadcast_to.def_vjp
def _(b, op, ct):
    # the adjoint of broadcasting is summing over the broadcast axes
    return [unbroadcast(b, ct, op.operands[0].type)]


# ---------------------------------------------------------------------------
# reshape


def _split(shape: tuple[Dim, ...]) -> tuple[int, Counter]:
    """The product of the static dims and the multiset of symbolic dims (symbols and dims
    computed from them, ``max(N-1,0)``, each as a whole)."""
    static = 1
    for d in shape:
        if isinstance(d, int):
            static *= d
    return static, Counter(d for d in shape if not isinstance(d, int))


def _count_str(static: int, symbols: Counter) -> str:
    """An element count such as ``6`` or ``N*6``."""
    return "*".join([*sorted(map(str, symbols.elements())), str(static)]) if symbols else str(static)


def _reshape_rule(x: TensorType, *, shape: tuple[Dim, ...]) -> TensorType:
    target = tuple(shape)
    for d in target:
        if isinstance(d, int) and d < 0:
            raise ShapeError(f"negative dim {d} in shape {shape_str(target)}")
    (n_in, sym_in), (n_out, sym_out) = _split(x.shape), _split(target)
    if sym_in != sym_out:
        raise ShapeError(f"cannot reshape {x.dsl_str()} to {shape_str(target)}: "
                         "the symbolic dims must be the same on both sides")
    if n_in != n_out:
        raise ShapeError(f"cannot reshape {x.dsl_str()} to {shape_str(target)}: "
                         f"{_count_str(n_in, sym_in)} elements vs {_count_str(n_out, sym_out)}")
    return x.with_shape(target)


reshape = define(
    "reshape", operands=("x",), kind=LAYOUT, infer=_reshape_rule,
    attrs={"shape": required("dims")},
    doc="""Same elements in row-major order, new ``shape``.  Element counts must agree; with
    symbolic dims, both shapes hold the same symbols (as a multiset) and equal static products.

    %1 = "dl.reshape"(%0) {shape = ["N", 784]} : (tensor<?x28x28xf32, "N">) -> tensor<?x784xf32, "N">
    """)


@reshape.def_reference
def _(x, *, shape):
    return np.reshape(x, tuple(shape)).copy()


@reshape.def_vjp
def _(b, op, ct):
    # reshape is linear: its adjoint reshapes back
    return [b.reshape(ct, shape=op.operands[0].type.shape)]


# ---------------------------------------------------------------------------
# transpose


def resolve_perm(perm: tuple[int, ...] | None, rank: int) -> tuple[int, ...]:
    """``perm`` checked against ``rank``; ``None`` means reversed axes."""
    if perm is None:
        return tuple(reversed(range(rank)))
    if sorted(perm) != list(range(rank)):
        raise ShapeError(f"perm {list(perm)} is not a permutation of the {rank} axes")
    return tuple(perm)


def _transpose_rule(x: TensorType, *, perm: tuple[int, ...] | None) -> TensorType:
    order = resolve_perm(perm, x.rank)
    return x.with_shape(tuple(x.shape[i] for i in order))


transpose = define(
    "transpose", operands=("x",), kind=LAYOUT, infer=_transpose_rule,
    attrs={"perm": attr("optional_ints", None)},
    doc="""Permute axes: ``out.shape[i] = x.shape[perm[i]]``; no ``perm`` reverses the axes.

    %1 = "dl.transpose"(%0) {perm = [1, 0]} : (tensor<?x10xf32, "N">) -> tensor<10x?xf32, "N">
    """)


@transpose.def_reference
def _(x, *, perm):
    return np.transpose(x, resolve_perm(perm, x.ndim)).copy()


@transpose.def_vjp
def _(b, op, ct):
    # the adjoint of a permutation is the inverse permutation
    order = resolve_perm(op.attrs["perm"], op.operands[0].type.rank)
    inverse = tuple(sorted(range(len(order)), key=lambda i: order[i]))
    return [b.transpose(ct, perm=inverse)]


# ---------------------------------------------------------------------------
# dim_size


def _dim_size_rule(x: TensorType, *, axis: int, dtype: DType) -> TensorType:
    if not -x.rank <= axis < x.rank:
        raise ShapeError(f"axis {axis} is out of range for rank {x.rank}")
    if dtype is DType.bool:
        raise ShapeError("dim_size needs a numeric dtype, got bool")
    return TensorType(dtype, ())


dim_size = define(
    "dim_size", operands=("x",), kind=OTHER, infer=_dim_size_rule, differentiable=False,
    attrs={"axis": required("int"), "dtype": attr("dtype", DType.i64)},
    doc="""The size of ``x`` along ``axis`` as a rank-0 tensor of ``dtype`` (default i64).
    Reads only the shape, so it is how IR gets at a symbolic dim's runtime value
    (``mean`` gradients and loss means divide by it).  No gradient flows to ``x``.

    %1 = "dl.dim_size"(%0) {axis = 0, dtype = f32} : (tensor<?x10xf32, "N">) -> tensor<f32>
    """)


@dim_size.def_reference
def _(x, *, axis: int, dtype: DType):
    return np.array(x.shape[axis], dtype=dtype.np)


broadcast_to.lowers_to("broadcast")
reshape.lowers_to("view")
transpose.lowers_to("transpose")
dim_size.lowers_to("dim_size")


# Moving data needs no arithmetic: every storage dtype (f16 bf16 i8 u8) passes through.
for _op in (broadcast_to, reshape, transpose, dim_size):
    _op.takes_storage()
