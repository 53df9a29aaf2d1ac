"""``dlc.schedules``: the public name of :mod:`compiler.schedules` (the same objects)."""

from compiler.schedules import *  # noqa: F403
from compiler.schedules import __all__  # noqa: F401
