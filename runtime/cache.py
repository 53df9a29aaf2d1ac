"""The on-disk cache of compiled object code.

Location: ``$DLC_CACHE_DIR`` if set, else ``~/.cache/dlc``.  One file per
entry, ``<key>.dlco``::

    b"DLCOBJ\\x02\\n"   magic (8 bytes)
    sha256             32 bytes: the digest of everything after it
    u32 little-endian  length of the header
    header             JSON: key, object size, the functions' signatures
    object             ELF bytes

The checksum covers the header as well as the object: a flipped bit in a
signature would otherwise make the runtime call code with the wrong shapes.
(That the object is the one compiled for those signatures is checked when it
is loaded: see ``runtime/compiled.py``.)

Beside them, ``<key>.dlcsrc`` files map the key of an *input* (source
text, pass pipeline, options, compiler source) to the key of its object, so
a warm ``runtime.compile`` skips the frontend and the passes; and
``<key>.dlcmod`` files hold the frontend's output for a ``.dl`` file (dl IR
text with source locations, see ``runtime/model_cache.py``), so a warm
``load_model`` does not even import the frontend.  They are framed like
object entries, with the magic ``b"DLCMOD\x02\n"`` and UTF-8 IR text in place
of the object.

Keys are sha256 digests in hex (64 characters from ``0-9a-f``): any other key
is refused before it becomes a path (:class:`CacheKeyError`), and an alias
file naming anything else is discarded, so no name read from the cache can
reach outside its folder.

Writes are atomic (a temporary file in the same folder, then ``os.replace``),
so a reader never sees half an entry; a temporary file a killed process left
behind is removed by the next write (``runtime/tempfiles.py``).  An entry
that is truncated, garbled, has the wrong magic, a different key or a bad
checksum is reported with a :class:`CacheWarning` (one line), deleted, and
treated as a miss -- it is never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compiler.diagnostics import ArgumentTypeError, ArgumentValueError

from .tempfiles import create_temp, is_temp

MAGIC = b"DLCOBJ\x02\n"
SUFFIX = ".dlco"
ALIAS_SUFFIX = ".dlcsrc"     # input key -> object key (runtime.compile's warm path)
MODULE_MAGIC = b"DLCMOD\x02\n"
MODULE_SUFFIX = ".dlcmod"    # source key -> the frontend's dl IR (load_model's warm path)
DIGEST_SIZE = 32             # the frame's sha256

_KEY = re.compile(r"[0-9a-f]{64}")


class CacheWarning(UserWarning):
    """A cache entry was unusable and has been discarded."""


class CacheKeyError(ArgumentValueError):
    """A cache key that is not a sha256 in hex (it would become a path)."""


def is_key(key: object) -> bool:
    """Whether ``key`` is a cache key: 64 lowercase hex digits."""
    return isinstance(key, str) and _KEY.fullmatch(key) is not None


def _checked(key: str) -> str:
    if not is_key(key):
        raise CacheKeyError(f"dlc cache: {key!r} is not a cache key (64 hex digits)")
    return key


def default_directory() -> Path:
    env = os.environ.get("DLC_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "dlc"


@dataclass
class CacheEntry:
    key: str
    object_code: bytes
    header: dict[str, Any]


class ObjectCache:
    """Object code by key, in a folder (see the module docstring)."""

    def __init__(self, directory: str | Path | None = None):
        if directory is not None and not isinstance(directory, (str, os.PathLike)):
            raise ArgumentTypeError(f"ObjectCache: argument 'directory' must be a path, got "
                                    f"{type(directory).__name__}")
        self.directory = Path(directory) if directory is not None else default_directory()

    def path(self, key: str) -> Path:
        return self.directory / f"{_checked(key)}{SUFFIX}"

    def load(self, key: str) -> CacheEntry | None:
        """The entry for ``key``, or None (missing, or unusable and now discarded)."""
        return self._load(self.path(key), key, MAGIC)

    def _load(self, path: Path, key: str, magic: bytes) -> CacheEntry | None:
        try:
            data = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):   # no entry (or no folder: store() says so)
            return None
        except OSError as e:
            warnings.warn(f"dlc cache: cannot read {path}: {e}", CacheWarning, stacklevel=3)
            return None
        problem, entry = _parse(key, data, magic)
        if problem is None:
            return entry
        _discard(path, problem)
        return None

    def discard(self, key: str, problem: str) -> None:
        """Report an object entry its reader could not use (:class:`CacheWarning`), delete it."""
        _discard(self.path(key), problem)

    def store(self, key: str, object_code: bytes, header: dict[str, Any]) -> Path | None:
        """Write an entry atomically; returns its path, or None if the folder is unusable."""
        return self._write_atomic(self.path(key), _frame(MAGIC, key, object_code, header))

    def module_path(self, key: str) -> Path:
        return self.directory / f"{_checked(key)}{MODULE_SUFFIX}"

    def alias_path(self, key: str) -> Path:
        return self.directory / f"{_checked(key)}{ALIAS_SUFFIX}"

    def store_module(self, key: str, text: str, header: dict[str, Any]) -> Path | None:
        """Write dl IR ``text`` under source key ``key`` (atomically, checksummed)."""
        return self._write_atomic(self.module_path(key), _frame(MODULE_MAGIC, key, text.encode(), header))

    def load_module(self, key: str) -> tuple[str, dict[str, Any]] | None:
        """(dl IR text, header) stored under ``key``, or None (missing, or unusable and
        now discarded with a :class:`CacheWarning`)."""
        entry = self._load(self.module_path(key), key, MODULE_MAGIC)
        if entry is None:
            return None
        try:
            return entry.object_code.decode(), entry.header
        except UnicodeDecodeError:            # checksummed, so only a foreign writer gets here
            self.discard_module(key, "not UTF-8 text")
            return None

    def discard_module(self, key: str, problem: str) -> None:
        """Report a module entry its reader could not use (:class:`CacheWarning`), delete it."""
        _discard(self.module_path(key), problem)

    def store_alias(self, key: str, object_key: str) -> None:
        """Record that input ``key`` (source text, passes, options) compiles to the object
        stored under ``object_key`` (a small ``<key>.dlcsrc`` file, written atomically)."""
        data = json.dumps({"key": key, "object_key": _checked(object_key)}).encode()
        self._write_atomic(self.alias_path(key), data)

    def _write_atomic(self, path: Path, data: bytes) -> Path | None:
        """Write through a temporary file in the same folder and ``os.replace``.

        A folder that cannot be created or written (``$DLC_CACHE_DIR`` naming a
        file, a read-only disk) costs the cache, never the compilation: it is
        reported with a :class:`CacheWarning` and the entry is skipped.
        """
        tmp = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = create_temp(path, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
            return path
        except OSError as e:
            warnings.warn(f"dlc cache: cannot write {path}: {e.strerror or e}; "
                          "continuing without caching", CacheWarning, stacklevel=3)
            return None
        finally:
            if tmp is not None and os.path.exists(tmp):
                try:
                    os.unlink(tmp)
                except OSError:
                    pass

    def load_alias(self, key: str) -> str | None:
        """The object key input ``key`` compiled to, or None (missing or unusable)."""
        path = self.alias_path(key)
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        if not isinstance(data, dict) or data.get("key") != key or not is_key(data.get("object_key")):
            _discard(path, "not an alias of this key to an object key")
            return None
        return data["object_key"]

    def entries(self) -> list[Path]:
        """Object and module entries (not the small input-key aliases)."""
        if not self.directory.is_dir():
            return []
        return sorted(p for suffix in (SUFFIX, MODULE_SUFFIX) for p in self.directory.glob(f"*{suffix}")
                      if not is_temp(p.name))

    def info(self) -> dict[str, Any]:
        """Folder, number of entries and their total size in bytes."""
        entries = self.entries()
        return {"directory": str(self.directory), "entries": len(entries),
                "bytes": sum(p.stat().st_size for p in entries)}

    def clear(self) -> int:
        """Delete every entry (and leftover temporaries); returns how many entries went."""
        if not self.directory.is_dir():
            return 0
        removed = 0
        for p in self.directory.iterdir():
            ours = is_temp(p.name) or p.suffix in (SUFFIX, MODULE_SUFFIX, ALIAS_SUFFIX)
            if not ours or not p.is_file():
                continue
            try:
                p.unlink()
                removed += p.suffix in (SUFFIX, MODULE_SUFFIX) and not is_temp(p.name)
            except OSError:
                pass
        return removed


def _frame(magic: bytes, key: str, payload: bytes, header: dict[str, Any]) -> bytes:
    """magic, sha256 of the rest, header length, JSON header (with key and payload size),
    payload."""
    head = json.dumps(dict(header, key=key, size=len(payload)), sort_keys=True).encode()
    body = len(head).to_bytes(4, "little") + head + payload
    return magic + hashlib.sha256(body).digest() + body


def _parse(key: str, data: bytes, magic: bytes = MAGIC) -> tuple[str | None, CacheEntry | None]:
    """(problem, None) or (None, entry)."""
    if not data.startswith(magic):
        kind = "object" if magic == MAGIC else "module"
        return f"not a dlc {kind} file (bad magic)", None
    pos = len(magic) + DIGEST_SIZE
    if len(data) < pos + 4:
        return "truncated header", None
    if data[len(magic):pos] != hashlib.sha256(data[pos:]).digest():
        return "checksum mismatch (damaged or truncated)", None
    size = int.from_bytes(data[pos:pos + 4], "little")
    pos += 4
    try:
        header = json.loads(data[pos:pos + size].decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "garbled header", None
    if not isinstance(header, dict):
        return "garbled header", None
    obj = data[pos + size:]
    if header.get("key") != key:
        return "the entry belongs to another key", None
    if header.get("size") != len(obj):
        return f"truncated object code ({len(obj)} of {header.get('size')} bytes)", None
    return None, CacheEntry(key, obj, header)


def _discard(path: Path, problem: str) -> None:
    """Warn (:class:`CacheWarning`, pointing at the cache's caller) and delete an entry."""
    warnings.warn(f"dlc cache: discarding {path.name}: {problem}; recompiling", CacheWarning,
                  stacklevel=4)
    try:
        path.unlink()
    except OSError:
        pass
