"""The temporary files of our atomic writes, named so that a later run can clean up.

An atomic write (a checkpoint, a cache entry) goes to a temporary file beside
its target, then ``os.replace``-s it over the target.  A process killed in
between (``kill -9``, a power cut) leaves the temporary file behind, so its
name says whose it is::

    .<target name>.dlc-tmp-<host>-<pid>-<random>

and the next atomic write into the same folder removes every such file whose
writer is gone: written on this host by a process that no longer runs.  A
file of a live process (another thread, another run) is never touched, nor is
any file without the marker.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from pathlib import Path

MARK = ".dlc-tmp-"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "host"


def create_temp(target: Path, mode: int = 0o666) -> tuple[int, Path]:
    """A new, exclusively created temporary file for ``target`` (file descriptor, path);
    ``mode`` less the umask.  Stale temporaries in the folder are removed first."""
    remove_stale(target.parent)
    path = target.parent / f".{target.name}{MARK}{_host()}-{os.getpid()}-{secrets.token_hex(4)}"
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), path


def is_temp(name: str) -> bool:
    """Whether ``name`` is the name of one of our temporary files."""
    return name.startswith(".") and MARK in name


def remove_stale(directory: Path) -> int:
    """Remove our temporary files in ``directory`` whose writer is gone; returns how many."""
    try:
        names = [e.name for e in os.scandir(directory) if is_temp(e.name)]
    except OSError:
        return 0
    removed = 0
    for name in names:
        writer = _writer(name)
        if writer is None or writer[0] != _host() or _alive(writer[1]):
            continue
        try:
            os.unlink(directory / name)
            removed += 1
        except OSError:
            pass
    return removed


def _writer(name: str) -> tuple[str, int] | None:
    """(host, pid) from a temporary file's name, or None if it does not parse."""
    parts = name[name.rindex(MARK) + len(MARK):].rsplit("-", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not 0 < int(parts[1]) < 2**31:
        return None
    return parts[0], int(parts[1])


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:          # EPERM: it runs, as someone else
        return True
    return True
