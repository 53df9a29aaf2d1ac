"""Elementwise ops: numpy broadcasting, one scalar/vector emitter each."""

from __future__ import annotations

import numpy as np

from .base import ELEMENTWISE, broadcast_rule, define
from .rules import unbroadcast

add = define(
    "add", operands=("lhs", "rhs"), kind=ELEMENTWISE, infer=broadcast_rule,
    doc="""Elementwise sum with numpy broadcasting.

    %2 = "dl.add"(%0, %1) : (tensor<?x512xf32, "N">, tensor<512xf32>) -> tensor<?x512xf32, "N">
    """)


@add.def_reference
def _(lhs, rhs):
    return np.add(lhs, rhs)


@add.def_vjp
def _(b, op, ct):
    # d(x + y) = dx + dy; broadcasting is undone by summing over broadcast axes.
    x, y = op.operands
    return [unbroadcast(b, ct, x.type), unbroadcast(b, ct, y.type)]


@add.def_emit
def _(e, lhs, rhs):
    return e.add(lhs, rhs)
