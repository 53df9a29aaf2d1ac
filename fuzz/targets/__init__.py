"""The fuzz targets, one module each.

A target module defines::

    NAME = "dl_source"
    SUFFIX = ".dl"            # the file suffix of its inputs, in findings
    TIMEOUT = 60.0            # seconds a case may take before it counts as a hang
    def generate(rng: random.Random) -> tuple[str, str]: ...   # (case text, mode)
    def run(text: str, stats: dict[str, int]) -> None: ...     # in the worker

``generate`` runs in the fuzzer and must be cheap and safe; ``run`` runs in
the worker (``fuzz/worker.py``), raises a ``DlError`` for an input dlc
rightly rejects, :class:`fuzz.oracle.Mismatch` when an oracle says no, and
counts what it did in ``stats``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

TARGETS = ("dl_source", "ir_text", "runtime_args", "files")
SELFTEST = "selftest"          # misbehaves on request: the runner's own tests use it


def load_target(name: str) -> ModuleType:
    """The target module ``name`` (one of :data:`TARGETS`, or :data:`SELFTEST`)."""
    if name not in TARGETS and name != SELFTEST:
        raise ValueError(f"unknown fuzz target '{name}' (targets: {', '.join(TARGETS)})")
    return importlib.import_module(f"fuzz.targets.{name}")
