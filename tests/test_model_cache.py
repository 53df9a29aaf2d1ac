"""load_model's frontend cache (runtime/model_cache.py): a warm load skips the frontend
and builds the very model a cold load builds; bad entries are discarded and rebuilt."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import runtime
from compiler.diagnostics import DlError, source_line
from compiler.ir.printer import print_module
from runtime.cache import MODULE_SUFFIX, CacheWarning, ObjectCache
from runtime.model_cache import load_source

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("DLC_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def no_frontend(monkeypatch):
    """Make any use of the frontend fail (call it to arm)."""
    import frontend_dsl.api as api

    def arm() -> None:
        def fail(*args, **kwargs):
            raise AssertionError("the frontend ran on a warm load")

        monkeypatch.setattr(api, "compile_source", fail)
        monkeypatch.setattr(api, "compile_file", fail)
    return arm


def module_entries(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"*{MODULE_SUFFIX}"))


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.dl")))
def test_cached_module_is_the_frontends_module(example, cache, no_frontend):
    path = EXAMPLES / example
    cold = load_source(path)
    assert len(module_entries(cache)) == 1
    no_frontend()
    warm = load_source(path)
    assert print_module(warm, debug_locations=True) == print_module(cold, debug_locations=True)
    assert warm.attrs == cold.attrs
    assert [f.attrs for f in warm.functions] == [f.attrs for f in cold.functions]


def test_warm_model_is_the_cold_model(cache, no_frontend):
    """Same module, same training step, same initial weights, same results; native code
    from the object cache."""
    path = EXAMPLES / "xor.dl"
    cold = runtime.load_model(path, seed=3)
    no_frontend()
    warm = runtime.load_model(path, seed=3)
    assert warm.backend.name == "native"
    assert print_module(warm.module, debug_locations=True) == print_module(cold.module, debug_locations=True)
    assert warm.info == cold.info and warm.signature == cold.signature
    for name, value in cold.weights.items():
        np.testing.assert_array_equal(warm.weights[name], value)
    assert warm.backend.compiled.module_of("train_step").cache_path == \
        cold.backend.compiled.module_of("train_step").cache_path
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    y = np.array([[0], [1], [1], [0]], np.float32)
    cold.fit(x, y, epochs=3, batch_size=2, shuffle=False, verbose=0)
    warm.fit(x, y, epochs=3, batch_size=2, shuffle=False, verbose=0)
    np.testing.assert_array_equal(warm.predict(x), cold.predict(x))


def test_warm_load_quotes_the_dl_source_in_diagnostics(cache, no_frontend):
    path = EXAMPLES / "xor.dl"
    load_source(path)
    from compiler.diagnostics import _SOURCES

    _SOURCES.pop(str(path), None)
    no_frontend()
    module = load_source(path)
    loc = next(op.loc for f in module.functions for op in f.ops if op.loc is not None)
    assert loc.file == str(path)
    assert source_line(str(path), loc.line) == path.read_text().splitlines()[loc.line - 1]


def test_edited_source_is_not_served_stale(cache, tmp_path):
    path = tmp_path / "m.dl"
    shutil.copy(EXAMPLES / "xor.dl", path)
    first = runtime.load_model(path, backend="interp")
    path.write_text(path.read_text().replace("adam(lr=0.1)", "sgd(lr=0.5)"))
    second = runtime.load_model(path, backend="interp")
    assert first.info["optimizer"]["name"] == "adam" and second.info["optimizer"]["name"] == "sgd"
    assert second.learning_rate == pytest.approx(0.5)
    assert len(module_entries(cache)) == 2


def test_same_text_under_another_name_keeps_its_own_locations(cache, tmp_path):
    path = tmp_path / "copy.dl"
    shutil.copy(EXAMPLES / "xor.dl", path)
    load_source(EXAMPLES / "xor.dl")
    module = load_source(path)
    assert {op.loc.file for f in module.functions for op in f.ops if op.loc is not None} == {str(path)}


def test_missing_file_is_the_frontends_error(cache, tmp_path):
    with pytest.raises(DlError, match="no such file"):
        runtime.load_model(tmp_path / "nope.dl")
    assert not cache.exists() or module_entries(cache) == []


@pytest.mark.parametrize("damage", ["truncate", "garble", "foreign", "magic", "bad-ir", "object-magic"])
def test_damaged_module_entries_are_discarded_and_rebuilt(cache, damage):
    path = EXAMPLES / "xor.dl"
    expected = print_module(load_source(path), debug_locations=True)
    (entry,) = module_entries(cache)
    data = entry.read_bytes()
    key = entry.name[: -len(MODULE_SUFFIX)]
    if damage == "truncate":
        entry.write_bytes(data[: len(data) // 2])
    elif damage == "garble":
        pos = len(data) - 50
        entry.write_bytes(data[:pos] + bytes(b ^ 0x55 for b in data[pos:pos + 8]) + data[pos + 8:])
    elif damage == "foreign":
        header = data.index(b"{")
        entry.write_bytes(data[:header] + data[header:].replace(key.encode(), b"0" * 64, 1))
    elif damage == "magic":
        entry.write_bytes(b"XXXXXX" + data[6:])
    elif damage == "object-magic":           # an object entry's framing is not a module's
        ObjectCache(cache).store(key, data, {})
        ObjectCache(cache).path(key).replace(entry)
    else:                                    # well framed and checksummed, but not IR
        ObjectCache(cache).store_module(key, "module { this is not IR }", {})
    with pytest.warns(CacheWarning, match="discarding"):
        module = load_source(path)
    assert print_module(module, debug_locations=True) == expected
    with warnings.catch_warnings():
        warnings.simplefilter("error")       # the rebuilt entry is good again
        assert print_module(load_source(path), debug_locations=True) == expected


def test_cache_clear_and_info_count_module_entries(cache):
    load_source(EXAMPLES / "xor.dl")
    store = ObjectCache(cache)
    assert store.info()["entries"] == 1
    assert store.clear() == 1 and module_entries(cache) == []


def test_unwritable_cache_costs_only_the_cache(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DLC_CACHE_DIR", str(blocker / "sub"))
    with pytest.warns(CacheWarning, match="cannot write"):
        module = load_source(EXAMPLES / "xor.dl")
    assert "model" in module.attrs


def test_a_warm_load_model_imports_neither_lark_nor_the_frontend(cache):
    import os
    import subprocess
    import sys

    script = ("import sys, runtime\n"
              f"runtime.load_model({str(EXAMPLES / 'xor.dl')!r}, backend='interp')\n"
              "print(sorted(m for m in sys.modules if m == 'lark' or m.startswith(('lark.', 'frontend_dsl'))))\n")
    env = {**os.environ, "DLC_CACHE_DIR": str(cache)}
    runs = [subprocess.run([sys.executable, "-c", script], cwd=EXAMPLES.parent, env=env, check=False,
                           capture_output=True, text=True, timeout=120) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[-1].stderr[-2000:]
    assert "'lark'" in runs[0].stdout                   # the cold load ran the frontend
    assert runs[1].stdout.strip() == "[]"


def test_the_compiler_fingerprint_memo_follows_the_files(tmp_path, monkeypatch):
    import hashlib

    from compiler.codegen.cache import _files_digest

    monkeypatch.setenv("DLC_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "a.py"
    source.write_text("x = 1\n")
    files = [("a.py", source)]
    first = _files_digest("test", files)
    assert first == hashlib.sha256(b"a.py" + b"x = 1\n").hexdigest()
    memos = list((tmp_path / "cache").glob("fingerprint-*.txt"))
    assert len(memos) == 1 and memos[0].read_text() == first
    assert _files_digest("test", files) == first                  # from the memo
    source.write_text("x = 22\n")                                  # another size: another memo
    second = _files_digest("test", files)
    assert second == hashlib.sha256(b"a.py" + b"x = 22\n").hexdigest()
    for memo in (tmp_path / "cache").glob("fingerprint-*.txt"):    # a damaged memo is recomputed
        memo.write_text("not a digest")
    assert _files_digest("test", files) == second
    monkeypatch.setenv("DLC_CACHE_DIR", str(source))               # a folder that is a file
    assert _files_digest("test", files) == second
