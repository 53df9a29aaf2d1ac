"""``dlc.callbacks``: the public name of :mod:`runtime.callbacks` (the same objects)."""

from runtime.callbacks import *  # noqa: F403
from runtime.callbacks import __all__  # noqa: F401
