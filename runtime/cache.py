"""The on-disk cache of compiled object code.

Location: ``$DLC_CACHE_DIR`` if set, else ``~/.cache/dlc``.  One file per
entry, ``<key>.dlco``::

    b"DLCOBJ\\x01\\n"   magic (8 bytes)
    u32 little-endian  length of the header
    header             JSON: key, object size and sha256, the functions' signatures
    object             ELF bytes

Beside them, ``<key>.dlcsrc`` files map the key of an *input* (source
text, pass pipeline, options, compiler source) to the key of its object, so
a warm ``runtime.compile`` skips the frontend and the passes.

Writes are atomic (a temporary file in the same folder, then ``os.replace``),
so a reader never sees half an entry.  An entry that is truncated, garbled,
has the wrong magic, a different key or a bad checksum is reported with a
:class:`CacheWarning`, deleted, and treated as a miss -- it is never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAGIC = b"DLCOBJ\x01\n"
SUFFIX = ".dlco"
ALIAS_SUFFIX = ".dlcsrc"     # input key -> object key (runtime.compile's warm path)


class CacheWarning(UserWarning):
    """A cache entry was unusable and has been discarded."""


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
        self.directory = Path(directory) if directory is not None else default_directory()

    def path(self, key: str) -> Path:
        return self.directory / f"{key}{SUFFIX}"

    def load(self, key: str) -> CacheEntry | None:
        """The entry for ``key``, or None (missing, or unusable and now discarded)."""
        path = self.path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            warnings.warn(f"dlc cache: cannot read {path}: {e}", CacheWarning, stacklevel=2)
            return None
        problem, entry = _parse(key, data)
        if problem is None:
            return entry
        warnings.warn(f"dlc cache: discarding {path.name}: {problem}; recompiling", CacheWarning,
                      stacklevel=2)
        try:
            path.unlink()
        except OSError:
            pass
        return None

    def store(self, key: str, object_code: bytes, header: dict[str, Any]) -> Path | None:
        """Write an entry atomically; returns its path, or None if the folder is unusable."""
        full = dict(header, key=key, size=len(object_code),
                    sha256=hashlib.sha256(object_code).hexdigest())
        head = json.dumps(full, sort_keys=True).encode()
        blob = MAGIC + len(head).to_bytes(4, "little") + head + object_code
        return self._write_atomic(self.path(key), blob)

    def store_alias(self, key: str, object_key: str) -> None:
        """Record that input ``key`` (source text, passes, options) compiles to the object
        stored under ``object_key`` (a small ``<key>.dlcsrc`` file, written atomically)."""
        data = json.dumps({"key": key, "object_key": object_key}).encode()
        self._write_atomic(self.directory / f"{key}{ALIAS_SUFFIX}", data)

    def _write_atomic(self, path: Path, data: bytes) -> Path | None:
        """Write through a temporary file in the same folder and ``os.replace``.

        A folder that cannot be created or written (``$DLC_CACHE_DIR`` naming a
        file, a read-only disk) costs the cache, never the compilation: it is
        reported with a :class:`CacheWarning` and the entry is skipped.
        """
        tmp = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=self.directory)
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
        try:
            data = json.loads((self.directory / f"{key}{ALIAS_SUFFIX}").read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        if not isinstance(data, dict) or data.get("key") != key or not isinstance(data.get("object_key"), str):
            return None
        return data["object_key"]

    def entries(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.glob(f"*{SUFFIX}") if not p.name.startswith(".tmp-"))

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
        for p in self.directory.glob(f"*{ALIAS_SUFFIX}"):
            try:
                p.unlink()
            except OSError:
                pass
        for p in self.directory.glob(f"*{SUFFIX}"):
            try:
                p.unlink()
                removed += not p.name.startswith(".tmp-")
            except OSError:
                pass
        return removed


def _parse(key: str, data: bytes) -> tuple[str | None, CacheEntry | None]:
    """(problem, None) or (None, entry)."""
    if not data.startswith(MAGIC):
        return "not a dlc object file (bad magic)", None
    pos = len(MAGIC)
    if len(data) < pos + 4:
        return "truncated header", None
    size = int.from_bytes(data[pos:pos + 4], "little")
    pos += 4
    if len(data) < pos + size:
        return "truncated header", None
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
    if header.get("sha256") != hashlib.sha256(obj).hexdigest():
        return "object code checksum mismatch", None
    return None, CacheEntry(key, obj, header)
