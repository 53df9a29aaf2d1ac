"""The op table: one definition per op, everything about it in one place.

Importing this package fills :data:`OPS`; the modules below are the table.
"""

from .base import OPS, OpDef, ShapeError, get_op  # noqa: F401
from . import sources, elementwise, layout, contraction, reductions, nn, losses, math, activations, conv  # noqa: F401  (each module defines its ops)

__all__ = ["OPS", "OpDef", "ShapeError", "get_op"]
