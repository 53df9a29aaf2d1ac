"""The Python examples of docs/training.md run, as written, on small data.

A ``python`` block right after a ``<!-- tested ... -->`` line is executed in a
fresh namespace, in a temporary directory where ``examples/`` is the
repository's (so relative paths in the examples work and the files they
write land in the temporary directory).  The interpreter backend runs them:
the examples are about the API, and the interpreter needs no compile.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import runtime.model

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "training.md"
BLOCK = re.compile(r"<!-- tested[^>]*-->\n```python\n(.*?)```", re.S)


def doc_blocks() -> list[tuple[int, str]]:
    text = DOC.read_text()
    return [(text[:m.start()].count("\n") + 1, m.group(1)) for m in BLOCK.finditer(text)]


def test_the_doc_has_tested_examples() -> None:
    assert len(doc_blocks()) >= 1


@pytest.mark.parametrize("line, code", doc_blocks(), ids=[f"line{n}" for n, _ in doc_blocks()])
def test_example_runs(line: int, code: str, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(runtime.model, "native_compiler", lambda: None)    # backend "auto" -> interp
    exec(compile(code, f"{DOC}:{line}", "exec"), {"__name__": "__doc_example__"})
    assert os.getcwd() == str(tmp_path)
