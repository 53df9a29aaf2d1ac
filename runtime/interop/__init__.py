"""Interchange with other tools: ONNX models, safetensors weights, upstream MLIR.

- :mod:`.onnx_table` -- the op mapping between dl and ONNX, one entry per op,
  both directions;
- :mod:`.onnx_export` -- a dl function (a model's ``predict``) to an ONNX graph;
- :mod:`.onnx_import` -- an ONNX graph to a dl function, and to a ``.dl`` model
  file (:mod:`.dl_source` writes it) with its weights;
- :mod:`.conformance` -- the ONNX backend node tests, run through the importer;
- :mod:`.mlir_export` -- a dl function in upstream MLIR dialects (func, linalg,
  tensor, arith, math) for ``mlir-opt`` / ``mlir-runner``, through one op table
  (:mod:`.mlir_table`) and a text writer (:mod:`.mlir_writer`).

The ``onnx`` package is an optional dependency (``pip install 'dlc[onnx]'``):
it is imported only when one of these runs, and its absence is a clear
:class:`~compiler.diagnostics.DlError`, never an ``ImportError``.
See ``docs/interop.md``.
"""

from __future__ import annotations

from types import ModuleType

from compiler.diagnostics import DlError


def require(package: str, extra: str) -> ModuleType:
    """The optional package ``package``, or a :class:`DlError` saying how to install it."""
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError:
        raise DlError(f"this needs the '{package}' package, which is not installed "
                      f"(pip install 'dlc[{extra}]')") from None
