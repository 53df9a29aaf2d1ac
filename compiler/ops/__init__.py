"""The op table: one definition per op, everything about it in one place.

Importing this package fills :data:`OPS`; the modules below are the table.
"""

from .base import OPS, OpDef, ShapeError, get_op  # noqa: F401
from . import (sources, elementwise, layout, contraction, reductions, reductions_more, nn,  # noqa: F401
               losses, math, activations, indexing, pool, random, conv)  # (each module defines its ops)

__all__ = ["OPS", "OpDef", "ShapeError", "get_op"]
