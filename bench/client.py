"""The orchestrator's side of a worker (see :mod:`bench.worker`): start, ask, restart."""

from __future__ import annotations

import json
import os
import select
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .worker import worker_env

REPO_ROOT = Path(__file__).resolve().parent.parent


class WorkerFailed(Exception):
    """The worker process died or did not answer in time; the message says which."""


class WorkerClient:
    """One worker process: ``python -m bench.worker --family F --threads N``."""

    def __init__(self, python: str, family: str, threads: int, base_env: dict[str, str]) -> None:
        self.python = python
        self.family = family
        self.threads = threads
        self.base_env = base_env
        self.proc: subprocess.Popen[str] | None = None
        self.stderr = tempfile.TemporaryFile(mode="w+")

    def start(self) -> None:
        """Start the process (again, if it died)."""
        self.close()
        self.proc = subprocess.Popen(
            [self.python, "-m", "bench.worker", "--family", self.family, "--threads", str(self.threads)],
            cwd=REPO_ROOT, env=worker_env(self.family, self.threads, self.base_env),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def request(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send one request and wait for its reply line.

        Raises :class:`WorkerFailed` (after killing the worker) if it dies or
        does not answer within ``timeout_s``.
        """
        if not self.alive:
            self.start()
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise self._failure("died") from None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if not ready:
            raise self._failure(f"did not answer within {timeout_s:g} s")
        line = self.proc.stdout.readline()
        if not line:
            raise self._failure("died")
        return json.loads(line)

    def _failure(self, what: str) -> WorkerFailed:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait()
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        tail = self.stderr_tail()
        self.proc = None
        return WorkerFailed(f"{self.family} worker {what} ({how})" + (f": {tail}" if tail else ""))

    def stderr_tail(self, lines: int = 1) -> str:
        """The last non-empty lines the worker wrote to stderr."""
        self.stderr.flush()
        self.stderr.seek(0)
        text = [line.strip() for line in self.stderr.read().splitlines() if line.strip()]
        self.stderr.seek(0, os.SEEK_END)
        return " | ".join(text[-lines:])

    def close(self) -> None:
        """Ask the worker to quit (kill it if it will not)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.proc = None
