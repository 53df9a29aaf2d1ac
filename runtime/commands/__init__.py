"""The ``dlc`` commands: one module per command.

Each module defines::

    NAME = "check"                       # the sub-command
    HELP = "one line for dlc --help"
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...   # the exit status

and is listed by name in :data:`runtime.cli.COMMANDS`.  A command reports a
user mistake by raising a :class:`~compiler.diagnostics.DlError`; ``dlc``
prints it and exits 1.

Helpers shared by commands live here: :func:`load_module` reads ``.dl``
source or dl IR text, :func:`pick_function` chooses a function by name,
:func:`check_output` and :func:`write_output_file` guard files a command writes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from compiler.diagnostics import DlError, DlRuntimeError
from compiler.ir.core import Function, Module

SOURCE_SUFFIX = ".dl"


def load_module(path: str, *, defer_grads: bool = False) -> Module:
    """A module from a ``.dl`` file (through the frontend) or from dl IR text (``.mlir``).

    ``defer_grads`` leaves ``grad(...)`` functions as placeholders for the
    ``autodiff`` pass (``.dl`` input only).
    """
    from frontend_dsl.api import compile_file, read_source

    if Path(path).suffix == SOURCE_SUFFIX:
        return compile_file(path, defer_grads=defer_grads)
    text = read_source(path)
    from compiler.ir.parser import parse_module

    return parse_module(text, path)


def pick_function(module: Module, name: str | None, file: str) -> Function:
    """Function ``name``; without a name, ``predict`` or the module's only function."""
    names = [f.name for f in module.functions]
    if name is None:
        if "predict" in module:
            return module.get("predict")
        if len(names) == 1:
            return module.functions[0]
        raise DlError(f"{file} has {len(names)} functions; choose one with --fn "
                      f"({', '.join(names) or 'none'})")
    if name not in module:
        raise DlError(f"no function '{name}' in {file} (functions: {', '.join(names) or 'none'})")
    return module.get(name)


def model_param_count(module: Module) -> int | None:
    """Scalars in the model's parameters (as Keras counts them), or None without a model."""
    model = module.attrs.get("model")
    if not isinstance(model, dict) or "predict" not in module:
        return None
    params = module.get("predict").params[:len(model.get("params", []))]
    return sum(p.type.num_elements() for p in params)


def check_output(path: str | Path, option: str) -> None:
    """Fail now, naming ``option``, if a file cannot be written at ``path`` later.

    Commands call it before long work (training), so a directory, a missing
    folder or a read-only location is reported before the work, not after it.
    """
    from ..checkpoint import check_writable

    try:
        check_writable(path)
    except DlRuntimeError as e:
        raise DlRuntimeError(f"{option} {e.message}") from None


def write_output_file(path: str | Path, write: Callable[[BinaryIO], object], option: str) -> None:
    """Create ``path`` (exactly that name) and fill it with ``write(file)``; OS errors become DlErrors."""
    check_output(path, option)
    try:
        with open(path, "wb") as f:
            write(f)
    except OSError as e:
        raise DlRuntimeError(f"{option} {path}: cannot write ({e.strerror or e})") from None
