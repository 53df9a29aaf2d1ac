"""What the runtime trusts, and what it must not: the process's address space,
files on disk (the compile cache, temp folders), names that become paths."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------
# MCJIT in a fragmented address space

# Compiles a small function, then lays out the address space so that the only free
# one-page holes near the top sit 4 GiB apart (PROT_NONE reservations between them),
# with all free room for bigger mappings below them, then loads and calls the code.
# LLVM's default section memory manager put each section in its own mapping: the code
# (several pages) went below the reservations, each one-page constant pool into a hole
# more than 4 GiB away, and the 32-bit PC-relative relocation between them made LLVM
# abort the process (RuntimeDyldELF: Assertion `isInt<32>(RealOffset)' failed).
_FRAGMENTED_LOAD = textwrap.dedent("""
    import ctypes, mmap
    import numpy as np
    from compiler.codegen.driver import compile_to_object
    from compiler.codegen.target import CodegenOptions
    from compiler.passes import run_pipeline
    from frontend_dsl.api import compile_source
    from runtime.compiled import CompiledModule
    from runtime.native import NativeLibrary

    options = CodegenOptions()
    module = run_pipeline(compile_source("fn f(x: f32[N]) -> f32[N] {\\n"
                                         "  return exp(x) * 0.5 + 1.25\\n}\\n", "<t>"), "default")
    obj, infos = compile_to_object(module, options)

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    PROT_NONE, MAP_PRIVATE, MAP_ANONYMOUS, MAP_NORESERVE = 0, 0x2, 0x20, 0x4000
    MAP_FIXED_NOREPLACE = 0x100000
    FLAGS = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE
    PAGE, GAP = mmap.PAGESIZE, 1 << 32

    def reserve(size, at):
        addr = libc.mmap(at, size, PROT_NONE, FLAGS | MAP_FIXED_NOREPLACE, -1, 0)
        if addr != at:      # an older kernel treats the flag as a hint
            raise SystemExit(f"could not reserve {size:#x} bytes at {at:#x}: {addr}")

    # fill every gap under 64 GiB between mappings, so no old hole takes a section
    spans = sorted(tuple(int(x, 16) for x in line.split()[0].split("-"))
                   for line in open("/proc/self/maps"))
    for (_, end), (start, _) in zip(spans, spans[1:]):
        if 0 < start - end < (64 << 30):
            reserve(start - end, end)
    probe = libc.mmap(None, PAGE, PROT_NONE, FLAGS, -1, 0)   # the highest free page
    libc.munmap(probe, PAGE)
    top = probe + PAGE
    for _ in range(3):      # [hole: 1 page][4 GiB reserved], three times, going down
        top -= PAGE + GAP
        reserve(GAP, top)

    compiled = CompiledModule(NativeLibrary(obj), infos, [obj], options.target)
    x = np.linspace(-1, 1, 37, dtype=np.float32)
    np.testing.assert_allclose(compiled.f(x), np.exp(x) * 0.5 + 1.25, rtol=1e-6)
    print("loaded and ran")
""")


@pytest.mark.skipif(sys.platform != "linux" or platform.machine() != "x86_64",
                    reason="lays out a Linux x86-64 address space by hand")
def test_module_loads_in_a_fragmented_address_space():
    # in a subprocess: the unfixed loader aborts the whole process
    result = subprocess.run([sys.executable, "-c", _FRAGMENTED_LOAD], cwd=ROOT, check=False,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "DLC_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loaded and ran" in result.stdout


# ---------------------------------------------------------------------------
# the parser's tables: never from a file another user could plant

# Runs `dlc check` with a temp folder of the test's own, after making every way to
# unpickle fail loudly; then plants a pickle that writes a marker file into each
# `.lark_cache_*` file left there (Lark's `cache=True` kept its tables in one, which
# the next run unpickled) and runs `dlc check` again.
_CHECK_WITHOUT_PICKLE = textwrap.dedent("""
    import pickle, sys

    def refuse(*args, **kwargs):
        raise AssertionError("something unpickled")

    pickle.load = pickle.loads = refuse
    pickle.Unpickler = refuse
    from runtime.cli import main
    sys.exit(main(["check", "examples/mnist_mlp.dl"]))
""")


class _Planted:
    """Unpickling this runs ``open(marker, "w")``: code execution from a file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_dlc_check_unpickles_nothing_from_the_temp_folder(tmp_path):
    import pickle

    tmp, marker = tmp_path / "tmp", tmp_path / "marker"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    run = [sys.executable, "-c", _CHECK_WITHOUT_PICKLE]
    first = subprocess.run(run, cwd=ROOT, env=env, check=False, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr[-2000:]
    planted = list(tmp.glob(".lark_cache_*"))
    for path in planted:    # Lark's cache file: the sha256 of its key (in its name), then pickles
        key = path.name.split("_")[-2].encode()
        path.write_bytes(key + b"\n" + pickle.dumps(_Planted(marker)))
    second = subprocess.run([sys.executable, "-m", "runtime.cli", "check", "examples/mnist_mlp.dl"],
                            cwd=ROOT, check=False, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr[-2000:]
    assert not marker.exists(), "a planted pickle in $TMPDIR ran"
    assert planted == [], f"the parser wrote {planted} into $TMPDIR"


def test_lalr_tables_are_current():
    from frontend_dsl import tables

    current = tables.read_tables(tables.TABLES_PATH.read_text())
    assert current["grammar_sha256"] == tables.grammar_digest(), (
        "frontend_dsl/lalr_tables.json is stale: run `python -m frontend_dsl.tables`")


def test_parser_loads_the_committed_tables():
    import lark

    from frontend_dsl import tables

    built_by = tables.read_tables(tables.TABLES_PATH.read_text())["lark_version"]
    if built_by != lark.__version__:
        pytest.skip(f"tables built by Lark {built_by}, Lark {lark.__version__} installed: "
                    f"the parser is built from the grammar (regenerate the tables to speed it up)")
    assert tables.load_parser().source_path == "<deserialized>"


def test_parser_falls_back_to_the_grammar_when_the_tables_are_stale(monkeypatch):
    from frontend_dsl import tables

    monkeypatch.setattr(tables, "grammar_digest", lambda: "0" * 64)
    assert tables.load_parser().source_path != "<deserialized>"


def _shape(tree) -> object:
    """A parse tree as nested tuples, with every token's type and position."""
    import lark

    if isinstance(tree, lark.Token):
        return (tree.type, str(tree), tree.line, tree.column, tree.end_line, tree.end_column)
    meta = tree.meta
    where = (meta.line, meta.column, meta.end_line, meta.end_column) if not meta.empty else None
    return (str(tree.data), where, tuple(_shape(c) for c in tree.children))


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.dl")), ids=lambda p: p.name)
def test_committed_tables_parse_like_the_grammar(path):
    from frontend_dsl import tables

    text = path.read_text()
    assert _shape(tables.load_parser().parse(text)) == _shape(tables.build_from_grammar().parse(text))


# ---------------------------------------------------------------------------
# the compile cache: whole entries checksummed, objects bound to their signatures

_TWICE = "fn f(x: f32[N, 2]) -> f32[N, 2] {\n  return x * 2.0\n}\n"
_PLUS_ONE = "fn f(x: f32[N]) -> f32[N] {\n  return x + 1.0\n}\n"


def _x() -> np.ndarray:
    return np.arange(6, dtype=np.float32).reshape(3, 2)


def test_a_bit_flipped_in_a_cache_header_is_caught(tmp_path):
    import runtime
    from runtime.cache import CacheWarning

    path = runtime.compile(_TWICE, cache=tmp_path).cache_path
    data = bytearray(path.read_bytes())
    shape = data.index(b'"shape": ["N", 2]') + len(b'"shape": ["N", ')
    data[shape] ^= 0x01                     # "2" -> "3": valid JSON, another signature
    path.write_bytes(bytes(data))
    with pytest.warns(CacheWarning, match="discarding.*checksum"):
        again = runtime.compile(_TWICE, cache=tmp_path)
    np.testing.assert_array_equal(again.f(_x()), _x() * 2)


def test_an_object_reframed_under_another_modules_signatures_is_refused(tmp_path):
    import runtime
    from runtime.cache import CacheWarning, ObjectCache

    twice = runtime.compile(_TWICE, cache=tmp_path)
    plus_one = runtime.compile(_PLUS_ONE, cache=tmp_path)
    store = ObjectCache(tmp_path)
    key = twice.cache_path.name.removesuffix(".dlco")
    header = store.load(key).header
    # a well-formed, checksummed entry: _TWICE's signatures, _PLUS_ONE's object
    store.store(key, b"".join(plus_one.objects), {k: header[k] for k in ("functions", "target")})
    with pytest.warns(CacheWarning, match="discarding.*not compiled for the function signatures"):
        again = runtime.compile(_TWICE, cache=tmp_path)
    np.testing.assert_array_equal(again.f(_x()), _x() * 2)


def test_a_cache_alias_cannot_reach_outside_the_cache(tmp_path):
    import runtime
    from runtime.cache import ALIAS_SUFFIX, CacheWarning

    cache, outside = tmp_path / "cache", tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.dlco"
    victim.write_bytes(b"not a cache entry")
    runtime.compile(_TWICE, cache=cache)
    (alias,) = cache.glob(f"*{ALIAS_SUFFIX}")
    alias.write_text(json.dumps({"key": alias.name.removesuffix(ALIAS_SUFFIX),
                                 "object_key": "../outside/victim"}))
    with pytest.warns(CacheWarning, match="discarding.*alias"):
        again = runtime.compile(_TWICE, cache=cache)
    np.testing.assert_array_equal(again.f(_x()), _x() * 2)
    assert victim.read_bytes() == b"not a cache entry"


@pytest.mark.parametrize("key", ["../escape", "a" * 63 + "/", "A" * 64, "a" * 64 + "\0", "", 7])
def test_cache_keys_that_are_not_digests_never_become_paths(tmp_path, key):
    from runtime.cache import CacheKeyError, ObjectCache

    store = ObjectCache(tmp_path / "cache")
    for use in (store.load, store.load_module, store.load_alias,
                lambda k: store.store(k, b"x", {}), lambda k: store.store_alias("a" * 64, k)):
        with pytest.raises(CacheKeyError, match="not a cache key"):
            use(key)
    assert not (tmp_path / "cache").exists()


# ---------------------------------------------------------------------------
# AOT directories: the manifest is checked field by field, and against the object


def _aot(tmp_path, source: str = _TWICE) -> Path:
    import runtime

    return runtime.compile(source, cache=False).save(tmp_path / "aot")


def _edit_manifest(folder: Path, **fields) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(fields)
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("name", ["../module.o", "/etc/hostname", "..", "", 3, None])
def test_aot_object_must_be_a_file_in_the_folder(tmp_path, name):
    from compiler.diagnostics import DlRuntimeError
    from runtime.compiled import load_compiled

    folder = _aot(tmp_path)
    _edit_manifest(folder, object=name)
    with pytest.raises(DlRuntimeError, match="field 'object' must name a file in"):
        load_compiled(folder)


@pytest.mark.parametrize("functions, field", [
    ("f", "'functions' is a str"),
    ([{"name": "f"}], "missing field 'params'"),
    ([{"name": 1}], "field 'name'"),
    ([{"name": "f", "symbol": "dlc_f", "params": [{"name": "x", "dtype": "f128", "shape": []}]}], "'dtype'"),
    ([{"name": "f", "symbol": "dlc_f", "params": [{"name": "x", "dtype": "f32", "shape": [-1]}]}],
     "negative dim"),
    ([{"name": "f", "symbol": "dlc_f", "params": [], "outputs": [], "symbols": [], "inplace": [[0, 5]]}],
     "'inplace'"),
])
def test_aot_manifest_fields_are_type_checked(tmp_path, functions, field):
    from compiler.diagnostics import DlRuntimeError
    from runtime.compiled import load_compiled

    folder = _aot(tmp_path)
    _edit_manifest(folder, functions=functions)
    with pytest.raises(DlRuntimeError, match=f"manifest.json: .*{field}"):
        load_compiled(folder)


def test_aot_object_must_match_the_manifests_signatures(tmp_path):
    import runtime
    from compiler.diagnostics import DlRuntimeError
    from runtime.compiled import load_compiled

    folder = _aot(tmp_path)
    other = runtime.compile(_PLUS_ONE, cache=False).save(tmp_path / "other")
    manifest = json.loads((other / "manifest.json").read_text())
    _edit_manifest(folder, functions=manifest["functions"])       # sha256 still matches module.o
    with pytest.raises(DlRuntimeError, match="not compiled for the function signatures"):
        load_compiled(folder)


# ---------------------------------------------------------------------------
# loaded files: every field type-checked, errors name the file and the field


def _checkpoint(path: Path) -> dict:
    """A small valid checkpoint at ``path``; returns its arrays (``__meta__`` decoded)."""
    from runtime.checkpoint import Checkpoint, save_checkpoint

    save_checkpoint(path, Checkpoint("m", {"w": np.ones((2, 3), np.float32)},
                                     {"sgd.v.w": np.zeros((2, 3), np.float32)}, "sgd", 5, 1))
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["__meta__"] = json.loads(str(arrays["__meta__"]))
    return arrays


def _write(path: Path, arrays: dict) -> None:
    out = dict(arrays)
    if isinstance(out["__meta__"], dict):
        out["__meta__"] = np.array(json.dumps(out["__meta__"]))
    np.savez(path, **out)


_META_DAMAGE = {
    "meta is numbers": (lambda a: a.update(__meta__=np.arange(3)),
                        "__meta__ holds int64 data"),
    "params is a number": (lambda a: a["__meta__"].update(params=5), "field 'params'"),
    "a record is a string": (lambda a: a["__meta__"]["params"].__setitem__(0, "w"), r"field 'params\[0\]'"),
    "a record lacks its name": (lambda a: a["__meta__"]["state"][0].pop("name"), r"field 'state\[0\]'"),
    "a shape is text": (lambda a: a["__meta__"]["params"][0].update(shape="2x3"), r"field 'params\[0\]'"),
    "step is text": (lambda a: a["__meta__"].update(step="5"), "field 'step'"),
    "step is a float": (lambda a: a["__meta__"].update(step=1.5), "field 'step'"),
    "epoch is negative": (lambda a: a["__meta__"].update(epoch=-1), "field 'epoch'"),
    "step is true": (lambda a: a["__meta__"].update(step=True), "field 'step'"),
    "model is a list": (lambda a: a["__meta__"].update(model=["m"]), "field 'model'"),
    "optimizer is a number": (lambda a: a["__meta__"].update(optimizer=3), "field 'optimizer'"),
    "extra is a list": (lambda a: a["__meta__"].update(extra=[1]), "field 'extra'"),
    "a tensor of strings": (lambda a: (a.update({"param/w": np.full((2, 3), "x")}),
                                       a["__meta__"]["params"][0].update(dtype="str32")),
                            "tensor 'w' holds str32 values"),
    "an object tensor": (lambda a: a.update({"param/w": np.array([None], dtype=object)}),
                         "array 'param/w' cannot be read without pickle"),
    "an unlisted array": (lambda a: a.update({"param/z": np.ones(1)}),
                          "array 'param/z' is not listed"),
    "a tensor listed twice": (lambda a: a["__meta__"]["params"].append(dict(a["__meta__"]["params"][0])),
                              "tensor 'w' is listed twice"),
}


@pytest.mark.parametrize("damage", list(_META_DAMAGE))
def test_checkpoint_fields_are_type_checked(tmp_path, damage):
    from compiler.diagnostics import DlRuntimeError
    from runtime.checkpoint import load_checkpoint

    path = tmp_path / "c.npz"
    arrays = _checkpoint(path)
    edit, message = _META_DAMAGE[damage]
    edit(arrays)
    _write(path, arrays)
    with pytest.raises(DlRuntimeError, match=f"c.npz: .*{message}"):
        load_checkpoint(path)


def test_checkpoint_defaults_are_not_shared(tmp_path):
    from runtime.checkpoint import load_checkpoint

    path = tmp_path / "c.npz"
    arrays = _checkpoint(path)
    del arrays["__meta__"]["extra"]
    _write(path, arrays)
    load_checkpoint(path).extra["touched"] = 1
    assert load_checkpoint(path).extra == {}


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    from runtime.cli import main

    status = main(argv)
    return status, capsys.readouterr().err


def test_dlc_predict_with_a_damaged_checkpoint_is_exit_1(tmp_path, capsys):
    path = tmp_path / "c.npz"
    arrays = _checkpoint(path)
    arrays["__meta__"]["params"] = {"w": 1}
    _write(path, arrays)
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((4, 2), "float32"))
    status, err = _cli(["predict", "examples/xor.dl", "--weights", str(path), "--input", str(x)], capsys)
    assert status == 1 and "c.npz: corrupt checkpoint: __meta__ field 'params'" in err


@pytest.fixture(scope="module")
def xor_weights(tmp_path_factory) -> Path:
    import runtime

    path = tmp_path_factory.mktemp("xor") / "xor.npz"
    runtime.load_model(ROOT / "examples" / "xor.dl").save(path)
    return path


@pytest.mark.parametrize("content, message", [
    ("object", "array 'x' cannot be read without pickle"),
    ("strings", "array 'x' holds <U1 values, not numbers"),
])
@pytest.mark.parametrize("command", ["predict", "run"])
def test_input_files_of_objects_or_strings_are_exit_1(tmp_path, capsys, xor_weights, content, message,
                                                      command):
    path = tmp_path / "in.npz"
    np.savez(path, x=np.array([None, 1], dtype=object) if content == "object" else np.array(["a", "b"]))
    argv = (["predict", "examples/xor.dl", "--weights", str(xor_weights), "--input", str(path)]
            if command == "predict" else
            ["run", "examples/sigmoid_chain.dl", "--fn", "chain", "--input", f"x={path}",
             "--input", "w1=1", "--input", "w2=1", "--input", "w3=1"])
    status, err = _cli(argv, capsys)
    assert status == 1 and f"in.npz: {message}" in err


def test_idx_labels_must_be_integers(tmp_path):
    from compiler.diagnostics import DlRuntimeError
    from runtime.data import load_idx_dir, write_idx

    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 2, 2), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0.5, 1.5, 2.5], np.float32))
    with pytest.raises(DlRuntimeError, match="labels must be integers"):
        load_idx_dir(tmp_path)


def _llvm_object(text: str) -> bytes:
    import llvmlite.binding as llvm

    from compiler.codegen.target import CodegenOptions, ensure_llvm, target_machine

    ensure_llvm()
    ref = llvm.parse_assembly(text)
    return target_machine(CodegenOptions()).emit_object(ref)


_CALLS_G = ("declare i64 @dlc_test_g(i64) nonlazybind\n"
            "define i64 @dlc_test_f(i64 %x) {\n  %y = call i64 @dlc_test_g(i64 %x)\n  ret i64 %y\n}\n")
_DEFINES_G = "define i64 @dlc_test_g(i64 %x) {\n  %y = add i64 %x, 1\n  ret i64 %y\n}\n"


def test_objects_load_only_when_every_symbol_they_use_is_defined_once():
    # MCJIT links a symbol it cannot find as address 0 (a call there is a segfault) and
    # aborts the process on a symbol defined twice: both are refused before it links
    import ctypes

    from compiler.diagnostics import DlRuntimeError
    from runtime.native import NativeLibrary, elf_symbols

    calls, defines = _llvm_object(_CALLS_G), _llvm_object(_DEFINES_G)
    assert elf_symbols(calls) == ({"dlc_test_f"}, {"dlc_test_g"}, set())
    library = NativeLibrary([calls, defines])                     # each finds the other's symbols
    f = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(library.address("dlc_test_f"))
    assert f(41) == 42
    with pytest.raises(DlRuntimeError, match="'dlc_test_g', defined nowhere"):
        NativeLibrary(calls)
    with pytest.raises(DlRuntimeError, match="'dlc_test_g' is defined in two"):
        NativeLibrary([calls, defines, defines])
    # a call through a stub, whose GOT entry MCJIT's loader reserves no memory for
    through_stub = _llvm_object(_CALLS_G.replace(" nonlazybind", ""))
    assert elf_symbols(through_stub)[2] == {"dlc_test_g"}
    with pytest.raises(DlRuntimeError, match="'dlc_test_g' through a call stub"):
        NativeLibrary([through_stub, defines])
    for junk in (b"", b"\x7fELF\x02\x01" + bytes(100), calls[:200], b"\x7fELF\x01\x01" + calls[6:]):
        with pytest.raises(DlRuntimeError, match="not an ELF64 object"):
            NativeLibrary(junk)
