"""Checks of the Python API's arguments.

A bad argument to a public function or method of the runtime raises an
:class:`ArgumentTypeError` (also a ``TypeError``) or :class:`ArgumentValueError`
(also a ``ValueError``), both :class:`~compiler.diagnostics.DlRuntimeError`
(defined with the rest of the errors in ``compiler/diagnostics.py``),
whose message names the argument -- never a bare Python error from deep inside
(numpy's ``AxisError`` is a ``ValueError`` and an ``IndexError`` the same way).
Calls into compiled code use the same two errors (``runtime/compiled.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from compiler.diagnostics import ArgumentTypeError, ArgumentValueError

__all__ = ["ArgumentTypeError", "ArgumentValueError", "as_path", "check_callable", "check_passes",
           "check_seed"]


def as_path(value: Any, argument: str) -> Path:
    """``value`` as a :class:`Path` if it is a ``str`` or ``os.PathLike`` naming a path."""
    if not isinstance(value, (str, os.PathLike)) or isinstance(os.fspath(value), bytes):
        raise ArgumentTypeError(f"{argument} must be a path (str or os.PathLike), got {type(value).__name__}")
    path = Path(value)
    if "\0" in str(path) or not str(value):
        raise ArgumentValueError(f"{argument} must be a path, got {str(value)!r}")
    return path


def check_passes(passes: Any, caller: str, *, allow_callable: bool = False) -> None:
    """A pass pipeline argument: None, a comma-separated string, a list of pass names (or,
    where ``allow_callable``, a function from module to module)."""
    if passes is None or isinstance(passes, str) or (allow_callable and callable(passes)):
        return
    if isinstance(passes, (list, tuple)) and all(isinstance(p, str) for p in passes):
        return
    kinds = "a pipeline string, a list of pass names" + (", a function" if allow_callable else "")
    raise ArgumentTypeError(f"{caller}: argument 'passes' must be None, {kinds}; got {passes!r:.60}")




def check_seed(seed: Any, argument: str) -> int:
    """A random seed: a non-negative integer (numpy's generators take any size)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ArgumentTypeError(f"{argument} must be a non-negative integer, got {type(seed).__name__}")
    if seed < 0:
        raise ArgumentValueError(f"{argument} must be a non-negative integer, got {seed}")
    return int(seed)


def check_callable(value: Any, argument: str) -> None:
    """None or something callable."""
    if value is not None and not callable(value):
        raise ArgumentTypeError(f"{argument} must be callable (or None), got {type(value).__name__}")
