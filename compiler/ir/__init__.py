"""The dl IR: types, the data model, the builder, the text form and the verifier.

::

    from compiler.ir import parse_module, print_module, verify_module

    module = parse_module(text, "model.mlir")      # parses, then verifies
    print(print_module(module, debug_locations=True))

Two floors live here.  The data model (:mod:`.types`, :mod:`.core`) and the
printer sit below the op table (:mod:`compiler.ops`), which is written in
their terms; the tools that consult the table -- :mod:`.builder`,
:mod:`.verifier`, :mod:`.parser`, :mod:`.interpreter` -- sit above it and
import it.  So that importing ``compiler.ir.types`` from the op table does
not pull in those tools, this package exports its names lazily.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Builder": "builder", "new_function": "builder",
    "Function": "core", "Module": "core", "Op": "core", "Value": "core",
    "ParseErrors": "parser", "parse_function": "parser", "parse_module": "parser",
    "print_function": "printer", "print_module": "printer", "print_op": "printer",
    "Dim": "types", "DType": "types", "TensorType": "types",
    "VerifyErrors": "verifier", "function_errors": "verifier", "verify_function": "verifier",
    "verify_module": "verifier",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
