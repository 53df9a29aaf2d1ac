"""The ``.dl`` language: grammar, typed AST, parser and lowering to dl IR.

Entry points: :func:`compile_source` and :func:`compile_file` (text or file ->
verified :class:`~compiler.ir.core.Module`), :func:`parse` (text -> AST).
"""

from .api import compile_file, compile_source
from .parser import parse

__all__ = ["compile_file", "compile_source", "parse"]
