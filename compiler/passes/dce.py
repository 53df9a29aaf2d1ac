"""Dead-code elimination: drop ops whose results no function output needs.

Every dl op is pure (value semantics, no side effects), so an op is dead
exactly when none of its results reaches a ``func.return``.  One reverse walk
over the straight-line body finds the live ops.
"""

from __future__ import annotations

from ..ir.core import Function, Module, Value
from .manager import PassContext, register_pass


def dce_function(func: Function) -> int:
    """Remove dead ops from ``func`` in place; returns how many were removed."""
    live: set[Value] = set(func.outputs)
    kept = []
    for op in reversed(func.ops):
        if any(r in live for r in op.results):
            kept.append(op)
            live.update(op.operands)
    removed = len(func.ops) - len(kept)
    kept.reverse()
    func.ops = kept
    return removed


@register_pass("dce", "remove ops whose results no output uses (every dl op is pure)")
def dce(module: Module, ctx: PassContext) -> Module:
    """Dead-code elimination over every function of the module."""
    for func in module.functions:
        ctx.count("ops-removed", dce_function(func))
    return module
