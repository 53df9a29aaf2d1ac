"""Common-subexpression elimination by hash-consing.

Every dl op is pure, so two ops with the same name, the same operands (by
identity, after earlier merges), equal attributes and the same result types
compute the same values: the later one is dropped and its users read the
earlier one's results.  Attributes compare by value -- dense constants by
dtype, shape and bytes; floats by their bits, so ``0.0`` and ``-0.0`` stay
apart and a NaN equals only the same NaN.  One forward walk over the
straight-line body finds every duplicate, because an op's operands are
merged before the op itself is looked up.

Statistics: ``ops-merged``.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np

from ..ir.core import Function, Module, Op, Value
from ..ir.types import DType
from .manager import PassContext, register_pass


def attr_key(value: Any) -> Hashable:
    """A hashable key equal for equal attribute values (arrays by value, floats by bits)."""
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        return ("dense", array.dtype.str, array.shape, array.tobytes())
    if isinstance(value, (list, tuple)):
        return ("seq", tuple(attr_key(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((k, attr_key(v)) for k, v in sorted(value.items())))
    if isinstance(value, float):
        return ("float", value.hex())
    if isinstance(value, DType):
        return ("dtype", value.value)
    return (type(value).__name__, value)


def op_key(op: Op) -> Hashable:
    """What identifies ``op``'s computation: name, operand identities, attributes, result types."""
    attrs = tuple((k, attr_key(v)) for k, v in sorted(op.attrs.items()))
    return (op.name, tuple(id(v) for v in op.operands), attrs,
            tuple(r.type for r in op.results))


def cse_function(func: Function) -> int:
    """Merge duplicate ops of ``func`` in place; returns how many were removed."""
    seen: dict[Hashable, Op] = {}
    merged: dict[Value, Value] = {}
    kept: list[Op] = []
    for op in func.ops:
        op.operands = [merged.get(v, v) for v in op.operands]
        key = op_key(op)
        first = seen.get(key)
        if first is None:
            seen[key] = op
            kept.append(op)
        else:
            merged.update(zip(op.results, first.results))
    removed = len(func.ops) - len(kept)
    func.ops = kept
    func.outputs = [merged.get(v, v) for v in func.outputs]
    return removed


@register_pass("cse", "merge ops that compute the same value (same op, operands and attributes)")
def cse(module: Module, ctx: PassContext) -> Module:
    """Common-subexpression elimination over every function of the module."""
    for func in module.functions:
        ctx.count("ops-merged", cse_function(func))
    return module
