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
import os
from collections.abc import Sequence
from pathlib import Path

from .target import CodegenOptions

FORMAT = "dlc-object-1"
FRONTEND_FORMAT = "dlc-frontend-1"


@functools.cache
def source_fingerprint() -> str:
    """sha256 over the source files of ``compiler/codegen`` and ``compiler/ops``."""
    root = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    files = [(os.path.basename(path), path) for folder in ("codegen", "ops")
             for path in _sources(os.path.join(root, folder), (".py",), recursive=False)]
    return _files_digest("source", files)


@functools.cache
def compiler_fingerprint() -> str:
    """sha256 over every source file of ``compiler`` and ``frontend_dsl``: what turns
    source text into a module ready for codegen (frontend, passes, training)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
    files = [(path[len(root) + 1:], path) for package in ("compiler", "frontend_dsl")
             for path in _sources(os.path.join(root, package), (".py", ".lark"), recursive=True)]
    return _files_digest("compiler", files)


def _sources(folder: str, suffixes: tuple[str, ...], recursive: bool) -> list[str]:
    """The files of ``folder`` ending with one of ``suffixes`` (and of its subfolders but
    ``__pycache__``, when ``recursive``), in the order of their paths' parts (as
    ``sorted`` orders ``Path`` objects).  Strings and ``os.walk``: on every warm start,
    ``pathlib`` made half of the ~1.4 ms these fingerprints took."""
    found = []
    for where, subfolders, names in os.walk(folder):
        found += [os.path.join(where, name) for name in names if name.endswith(suffixes)]
        subfolders[:] = sorted(d for d in subfolders if d != "__pycache__") if recursive else []
    return sorted(found, key=lambda path: path.split(os.sep))


def _files_digest(kind: str, files: Sequence[tuple[str, str | Path]]) -> str:
    """sha256 over each file's name and contents, remembered on disk under the files' names,
    sizes and modification times.

    Reading and hashing the 1.3 MB of the compiler's source was a quarter of a warm
    start (~5 ms CPU).  The memo trusts what Python's own import trusts to reuse a
    ``.pyc`` -- a source file with the size and modification time it had is the file it
    was -- so it can only be stale where the code running is.  It lives in the cache
    folder (``$DLC_CACHE_DIR``, else ``~/.cache/dlc``) as ``fingerprint-<stat key>.txt``;
    one that cannot be read or written costs the hashing, never the result."""
    stats = hashlib.sha256(kind.encode())
    for name, path in files:
        st = os.stat(path)
        stats.update(f"\0{name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    memo = _memo_folder() / f"fingerprint-{stats.hexdigest()[:32]}.txt"
    try:
        known = memo.read_text()
        if len(known) == 64 and all(c in "0123456789abcdef" for c in known):
            return known
    except (OSError, UnicodeDecodeError):
        pass
    h = hashlib.sha256()
    for name, path in files:
        h.update(name.encode())
        h.update(Path(path).read_bytes())
    digest = h.hexdigest()
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f"{memo.name}.{os.getpid()}.tmp")
        tmp.write_text(digest)
        os.replace(tmp, memo)
    except OSError:
        pass
    return digest


def _memo_folder() -> Path:
    """The machine's cache folder (``runtime/cache.py``'s default: ``$DLC_CACHE_DIR``, else
    ``~/.cache/dlc``)."""
    env = os.environ.get("DLC_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "dlc"


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
