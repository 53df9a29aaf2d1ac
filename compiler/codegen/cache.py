"""Object-cache keys: what compiled code depends on, hashed.

A key is the sha256 of

* the dl IR text of the module (the printer's generic form, which includes
  function attributes such as ``inplace`` and dense constants),
* the codegen options (:meth:`CodegenOptions.key`: triple, CPU name,
  features, opt level, vector width, llvmlite and LLVM versions),
* the dlc version, and a fingerprint of the source of the code generator
  and of the op table (whose ``emit`` rules are part of the generated code),
  so editing the compiler never loads stale code.

Two more keys name *inputs* rather than modules: :func:`source_key` (text
given to ``runtime.compile``, with its pass pipeline and options) and
:func:`frontend_key` (a ``.dl`` file given to ``load_model``, whose frontend
output is cached as IR text); both include :func:`compiler_fingerprint`.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from .target import CodegenOptions

FORMAT = "dlc-object-1"
FRONTEND_FORMAT = "dlc-frontend-1"


@functools.cache
def source_fingerprint() -> str:
    """sha256 over the source files of ``compiler/codegen`` and ``compiler/ops``."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for folder in ("codegen", "ops"):
        for path in sorted((root / folder).glob("*.py")):
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()


@functools.cache
def compiler_fingerprint() -> str:
    """sha256 over every source file of ``compiler`` and ``frontend_dsl``: what turns
    source text into a module ready for codegen (frontend, passes, training)."""
    root = Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for package in ("compiler", "frontend_dsl"):
        for path in sorted((root / package).rglob("*.py")) + sorted((root / package).rglob("*.lark")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def source_key(kind: str, text: str, passes: str, options: CodegenOptions) -> str:
    """The cache key of *input* text (``kind``: dl source, IR text) compiled with the pass
    pipeline ``passes`` and ``options``: a warm load skips the frontend and the passes."""
    return cache_key("\0".join(["source", kind, passes, compiler_fingerprint(), text]), options)


def frontend_key(file: str, text: str) -> str:
    """The cache key of the frontend's output for ``.dl`` source ``text`` read from ``file``
    (the name enters the source locations): independent of passes and codegen options."""
    from .. import __version__

    h = hashlib.sha256()
    for part in (FRONTEND_FORMAT, __version__, compiler_fingerprint(), file, text):
        data = part.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def cache_key(module_text: str, options: CodegenOptions) -> str:
    """The object-cache key of a module's IR text compiled with ``options``."""
    from .. import __version__

    h = hashlib.sha256()
    for part in (FORMAT, __version__, source_fingerprint(), options.key(), module_text):
        data = part.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()
