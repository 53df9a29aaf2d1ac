"""``dlc.schedules``: the public name of :mod:`runtime.schedules` (the same objects)."""

from runtime.schedules import *  # noqa: F403
from runtime.schedules import __all__  # noqa: F401
