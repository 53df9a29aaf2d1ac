"""The op table: one definition per op, everything about it in one place.

Importing this package fills :data:`OPS`; the modules below are the table.
"""

from . import (  # noqa: F401
               activations,
               attention,
               contraction,
               conv,
               elementwise,
               indexing,
               layout,
               losses,  # (each module defines its ops)
               math,
               nn,
               pool,
               random,
               reductions,
               reductions_more,
               sources,
)
from .base import OPS, OpDef, ShapeError, get_op  # noqa: F401

__all__ = ["OPS", "OpDef", "ShapeError", "get_op"]
