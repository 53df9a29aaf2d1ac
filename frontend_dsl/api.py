"""The frontend's entry points: ``.dl`` text or file -> verified dl IR module.

    module = compile_source(text, file="model.dl")
    module = compile_file("examples/mnist_mlp.dl")
"""

from __future__ import annotations

from pathlib import Path

from compiler.diagnostics import ArgumentTypeError, register_source
from compiler.ir.core import Module

from .imports import read_source, resolve_uses
from .lower import lower_program
from .parser import parse


def compile_source(text: str, file: str = "<string>", *, defer_grads: bool = False) -> Module:
    """Parse, lower and verify ``.dl`` source text.

    ``file`` names the source in diagnostics.  With ``defer_grads`` gradient
    functions stay placeholders (``attrs["grad_of"]``) for the ``autodiff``
    pass.  Raises :class:`DlError` (often a ``DlErrors`` holding several).
    """
    if not isinstance(text, str):
        raise ArgumentTypeError(f"compile_source: argument 'text' must be a str, got {type(text).__name__}")
    if not isinstance(file, str):
        raise ArgumentTypeError(f"compile_source: argument 'file' must be a str, got {type(file).__name__}")
    register_source(file, text)
    program = resolve_uses(parse(text, file))
    module = lower_program(program, defer_grads=defer_grads)
    _verify(module)
    return module


def compile_file(path: str | Path, *, defer_grads: bool = False) -> Module:
    """:func:`compile_source` on a file; a missing or unreadable file is a :class:`DlError`."""
    return compile_source(read_source(path), str(path), defer_grads=defer_grads)


def _verify(module: Module) -> None:
    """Run the IR verifier, if present, over every function that has a body.

    Placeholders of deferred gradients have no body until the autodiff pass.
    """
    try:
        from compiler.ir.verifier import verify_function, verify_module
    except ImportError:  # optional: the builder has already checked every op
        return
    if not any("grad_of" in f.attrs for f in module.functions):
        verify_module(module)
        return
    for func in module.functions:
        if "grad_of" not in func.attrs:
            verify_function(func)
