"""The dl IR: types, the data model, the builder, the text form and the verifier.

::

    from compiler.ir import parse_module, print_module, verify_module

    module = parse_module(text, "model.mlir")      # parses, then verifies
    print(print_module(module, debug_locations=True))

The parser and verifier look ops up in :mod:`compiler.ops` on first use, so
importing this package does not import the op table (which imports it).
"""

from .builder import Builder, new_function
from .core import Function, Module, Op, Value
from .parser import ParseErrors, parse_function, parse_module
from .printer import print_function, print_module, print_op
from .types import Dim, DType, TensorType
from .verifier import VerifyErrors, function_errors, verify_function, verify_module

__all__ = [
    "Builder", "new_function",
    "Function", "Module", "Op", "Value",
    "ParseErrors", "parse_function", "parse_module",
    "print_function", "print_module", "print_op",
    "Dim", "DType", "TensorType",
    "VerifyErrors", "function_errors", "verify_function", "verify_module",
]
