"""``load_model``'s warm path: the frontend's output for a ``.dl`` file, cached.

Turning ``.dl`` text into dl IR needs the frontend: importing it (Lark, the
typed AST) and building its parser take ~0.1 s, more than everything else a
warm ``load_model`` does once the object code is cached.  So the frontend's
output -- the verified module, printed as IR text *with* its source
locations -- is kept in the cache folder (``<key>.dlcmod``, see
``runtime/cache.py``) under :func:`~compiler.codegen.cache.frontend_key`: the
file's name and text, the dlc version and the compiler's source.  A warm load
parses that text with the IR parser (imported with the runtime anyway) and
never imports the frontend.

The IR text form round-trips (``print(parse(print(m))) == print(m)``,
locations included), so the module -- and the training step, initial weights
and object code built from it -- is the one a cold load builds.  The entry is
text, checksummed, and parsed and verified like any IR file: a damaged or
foreign entry is reported with a :class:`~runtime.cache.CacheWarning`,
deleted and rebuilt, and never executes anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from compiler.diagnostics import DlError, register_source
from compiler.ir.core import Module

from .cache import ObjectCache

CACHE_FILE = "<dlc cache>"      # names the cached IR text in diagnostics (it never should be)


def load_source(path: str | Path, cache: ObjectCache | None = None) -> Module:
    """The verified dl IR module of the ``.dl`` file ``path``, as
    ``frontend_dsl.compile_file`` returns it: from the cache when it holds the
    frontend's output for this very text, else from the frontend (and stored)."""
    from compiler.codegen.cache import frontend_key

    file = str(path)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return _frontend(file)                 # it reports the problem as a DlError
    store = cache if cache is not None else ObjectCache()
    key = frontend_key(file, text)
    module = _cached(store, key)
    if module is not None:
        register_source(file, text)            # diagnostics quote the .dl lines, as after a cold load
        return module
    module = _frontend(file, text)
    from compiler.ir.printer import print_module

    store.store_module(key, print_module(module, debug_locations=True), {"file": file})
    return module


def _cached(store: ObjectCache, key: str) -> Module | None:
    from compiler.ir.parser import parse_module

    hit = store.load_module(key)
    if hit is None:
        return None
    try:
        module = parse_module(hit[0], CACHE_FILE)
    except DlError as e:                       # checksummed but not ours: a foreign writer
        first = (str(e).strip().splitlines() or [""])[0]
        store.discard_module(key, f"not a valid module ({first})")
        return None
    if "model" in module.attrs:                # the frontend describes a model with lists;
        module.attrs["model"] = _lists(module.attrs["model"])    # IR arrays parse as tuples
    return module


def _lists(value: Any) -> Any:
    """``value`` with every tuple (at any depth, in dicts too) turned into a list."""
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value


def _frontend(file: str, text: str | None = None) -> Module:
    from frontend_dsl.api import compile_file, compile_source

    return compile_file(file) if text is None else compile_source(text, file)
