"""The GEMM library in this process: built once per machine, kept on disk, linked once.

``compiler/codegen/library.py`` compiles the GEMM drivers apart from any
model.  :func:`gemm_library` finds the object code of a :class:`LibrarySpec`
-- in this process's memory, else in the machine's object cache
(``$DLC_CACHE_DIR`` or ``~/.cache/dlc``, whatever folder ``runtime.compile``
was given for the model), else by compiling it (about a second) and storing
it there.  The library is cached even when a model's own object is not
(``cache=False``): like an installed native library, it depends only on the
machine, the options and the compiler, which its key and the version in its
symbols name.

:func:`link_gemm_library` loads that object once per process into an engine
of its own (never freed, like a shared library: it holds no state) and
enters its exports in the process's symbol table, where MCJIT finds them
when it links a module's object (``runtime/native.py``).  A module is only
loaded after every symbol of its library is there: a missing one would make
LLVM abort the process.
"""

from __future__ import annotations

import threading

from compiler.codegen.driver import StageTimer, library_object
from compiler.codegen.library import LibrarySpec
from compiler.codegen.target import CodegenOptions
from compiler.diagnostics import DlRuntimeError

from .cache import ObjectCache
from .native import NativeLibrary

_CODE: dict[str, bytes] = {}            # spec key -> object code
_LINKED: dict[str, NativeLibrary] = {}  # spec key -> the loaded library (kept for the process)
_LOCK = threading.RLock()


def gemm_library(spec: LibrarySpec, options: CodegenOptions, timer: StageTimer | None = None) -> bytes:
    """The object code of ``spec``, made under ``options``."""
    timer = timer or StageTimer()
    key = spec.key()
    with _LOCK:
        code = _CODE.get(key)
        if code is None:
            store = ObjectCache()
            with timer("GEMM library (cache read)"):
                entry = store.load(key)
            if entry is not None:
                code = entry.object_code
            else:
                with timer("GEMM library (compile, once per machine)"):
                    code = library_object(spec, options)
                with timer("GEMM library (cache write)"):
                    store.store(key, code, {"library": spec.to_json()})
            _CODE[key] = code
    return code


def link_gemm_library(spec: LibrarySpec, code: bytes) -> None:
    """Make ``spec``'s exports (from object ``code``) resolvable in this process, once; a
    :class:`DlRuntimeError` when the object does not load or lacks one of them."""
    import llvmlite.binding as llvm

    key = spec.key()
    with _LOCK:
        if key in _LINKED:
            return
        library = NativeLibrary(code)
        addresses = {}
        for symbol in spec.symbols():
            try:
                addresses[symbol] = library.address(symbol)
            except DlRuntimeError:
                raise DlRuntimeError(f"the GEMM library's object code lacks '{symbol}'") from None
        for symbol, address in addresses.items():
            llvm.add_symbol(symbol, address)
        _LINKED[key] = library
        _CODE.setdefault(key, code)


__all__ = ["gemm_library", "link_gemm_library"]
