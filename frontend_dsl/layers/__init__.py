"""The layers of ``model`` blocks, one definition per layer, found by name in :data:`LAYERS`.

Importing this package fills the table; each module below defines layers
(see :mod:`.base` for what a definition holds).
"""

from . import attention, conv, dense, dropout, embedding, normalization, pool  # noqa: F401  (each module defines its layers)
from .base import ACTIVATION_ALIASES, LAYERS, LayerCall, LayerDef, define_layer

__all__ = ["ACTIVATION_ALIASES", "LAYERS", "LayerCall", "LayerDef", "define_layer"]
