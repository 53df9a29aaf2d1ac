"""``dlc.data``: the public name of :mod:`runtime.data` (the same objects)."""

from runtime.data import *  # noqa: F403
from runtime.data import __all__  # noqa: F401
