"""The worker process: runs cases one at a time and says what happened.

The fuzzer never runs a case itself: native code may crash, hang or eat
memory, so cases run in a worker process, ``python -m fuzz.worker``, which
the fuzzer (``fuzz/runner.py``) replaces when it dies or stops answering.
The two talk over a socket (:class:`Channel`: length-prefixed pickles of
:class:`Case` and :class:`Outcome`).  The worker caps its address space,
writes its output to a log file and enables :mod:`faulthandler` there, so
the Python stack of a crash lands in the finding.

:func:`execute` classifies what a target's ``run`` did: returned (``ok``),
raised a :class:`DlError` (``rejected``: a clean diagnostic), or anything
else (a finding).  Two DlErrors are findings too: a pass that leaves invalid
IR (``PassVerifyError``) or changes results (``PassCheckError``) is a bug in
the compiler, not in the input.
"""

from __future__ import annotations

import faulthandler
import os
import pickle
import resource
import select
import socket
import sys
import traceback
import warnings
from typing import Any

from .case import FINDING, OK, REJECTED, Case, Outcome, dlc_frame
from .targets import load_target

MESSAGE_LIMIT = 2000


class Channel:
    """Pickled objects over a socket, each prefixed with its length."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    def send(self, obj: Any) -> None:
        data = pickle.dumps(obj)
        self.sock.sendall(len(data).to_bytes(8, "little") + data)

    def recv(self) -> Any:
        """The next object; EOFError when the other side has gone."""
        size = int.from_bytes(self._exactly(8), "little")
        return pickle.loads(self._exactly(size))

    def poll(self, timeout: float) -> bool:
        """Whether something (an object, or the end) arrives within ``timeout`` seconds."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        return bool(ready)

    def close(self) -> None:
        self.sock.close()

    def _exactly(self, n: int) -> bytes:
        chunks = []
        while n:
            chunk = self.sock.recv(min(n, 1 << 20))
            if not chunk:
                raise EOFError("the other side closed the channel")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)


def serve(channel: Channel, cache_dir: str, memory_limit: int) -> None:
    """Answer each :class:`Case` received with an :class:`Outcome`, until None or the end."""
    faulthandler.enable()
    os.environ["DLC_CACHE_DIR"] = cache_dir
    if memory_limit:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    warnings.simplefilter("ignore")
    while True:
        try:
            case = channel.recv()
        except (EOFError, OSError):
            return
        if case is None:
            return
        print(f"--- case {case.target} #{case.index}", flush=True)
        channel.send(execute(case))


def execute(case: Case) -> Outcome:
    """Run ``case`` with its target and classify the result."""
    from compiler.checking.pass_checker import PassCheckError
    from compiler.diagnostics import DlError
    from compiler.passes.manager import PassVerifyError

    from .oracle import Mismatch

    target = load_target(case.target)
    stats: dict[str, int] = {}
    try:
        target.run(case.text, stats)
    except (PassVerifyError, PassCheckError) as e:
        return exception_outcome(e, stats)
    except DlError as e:
        first = (e.message.splitlines() or [""])[0]
        return Outcome(REJECTED, error=type(e).__name__, message=first[:MESSAGE_LIMIT], stats=stats)
    except Mismatch as e:
        first = (str(e).splitlines() or [""])[0]
        return Outcome(FINDING, "mismatch", e.what, first[:MESSAGE_LIMIT], details=str(e), stats=stats)
    except KeyboardInterrupt:
        raise
    except BaseException as e:          # noqa: BLE001  (anything else is what we are looking for)
        return exception_outcome(e, stats)
    return Outcome(OK, stats=stats)


def exception_outcome(e: BaseException, stats: dict[str, int] | None = None) -> Outcome:
    """The finding for an exception: its class, message, innermost dlc frame and traceback."""
    frames = [(f.filename, f.lineno or 0, f.name) for f in traceback.extract_tb(e.__traceback__)]
    text = "".join(traceback.format_exception(e))
    if len(text) > 40 * MESSAGE_LIMIT:                  # a RecursionError's thousand frames
        text = text[:20 * MESSAGE_LIMIT] + "\n...\n" + text[-20 * MESSAGE_LIMIT:]
    return Outcome(FINDING, "exception", type(e).__name__, str(e)[:MESSAGE_LIMIT],
                   where=dlc_frame(frames), details=text, stats=stats or {})


def main(argv: list[str]) -> None:
    """``python -m fuzz.worker FD CACHE_DIR MEMORY_LIMIT``: serve on socket ``FD``."""
    fd, cache_dir, memory_limit = int(argv[0]), argv[1], int(argv[2])
    serve(Channel(socket.socket(fileno=fd)), cache_dir, memory_limit)


if __name__ == "__main__":
    main(sys.argv[1:])
