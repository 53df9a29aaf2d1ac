"""Damaged files through the runtime's loaders: checkpoints, cache entries, data, sources.

A case is a kind and a list of edits, one per line, applied to a valid file
the worker writes itself::

    # fuzz: kind=checkpoint
    meta params.0.shape = "abc"
    array param/out.bias dtype float16
    flip 0.5312 3

Kinds and what loads them:

* ``checkpoint`` -- ``load_checkpoint`` and ``Model.load_weights`` (the xor model);
* ``cache_object`` -- an object-cache entry and its input alias, then
  ``runtime.compile`` of the same source (the warm path) and a call of each
  function.  Header edits keep the object's checksum valid: only a byte
  edit that breaks it is detectable by design; a header that lies about the
  functions must still not crash;
* ``cache_module`` -- ``load_model``'s cached frontend output (IR text edits
  keep the checksum valid, as a foreign writer would), then ``load_model``
  and ``predict``;
* ``idx``, ``npz``, ``csv`` -- ``load_data`` and the checks against a model's
  signature (``prepare_inputs`` / ``prepare_targets``);
* ``source`` -- a ``.dl`` or ``.mlir`` file's bytes through ``dlc check``
  (exit status 0 or 1, never 70).

Edits: ``flip AT BIT``, ``truncate AT``, ``insert AT HEX``, ``delete AT N``,
``overwrite AT HEX`` (``AT`` a fraction of the file's length) on bytes;
``meta``/``header`` ``PATH = JSON`` and ``meta-del``/``header-del PATH`` on
JSON; ``array NAME dtype|shape|drop|object ...`` on archives; ``field NAME
VALUE`` on IDX headers; ``cell ROW COL TEXT``, ``row-drop ROW`` on CSV;
``ir SEED STEPS`` on cached IR text.  The oracle: only :class:`DlError`.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from compiler.diagnostics import DlError
from compiler.ir.interpreter import interpret
from frontend_dsl.api import compile_source

from ..case import REPO_ROOT, directives
from ..mutate import mutate
from ..oracle import Mismatch, compare

NAME = "files"
SUFFIX = ".txt"
TIMEOUT = 60.0
KINDS = ("checkpoint", "cache_object", "cache_module", "idx", "npz", "csv", "source")
MODEL_FILE = REPO_ROOT / "examples" / "xor.dl"
PARAMS = ("hidden.kernel", "hidden.bias", "out.kernel", "out.bias")
JSON_VALUES = ("0", "-1", "18446744073709551616", "1e308", "NaN", "\"abc\"", "\"\"", "null", "true",
               "[]", "{}", "[1, 2]", "{\"a\": 1}", "\"float32\"", "\"object\"", "\"<f4\"", "\"|O\"",
               "1.5", "[[2, 2]]", "[-1]", "[4294967296, 4294967296]", "\"../../etc/passwd\"")
DTYPES = ("float16", "float64", "int32", "int64", "uint8", "bool", "complex64", "U4", "S4",
          "datetime64[s]", "object")
CELLS = ("nan", "inf", "-inf", "", " ", "abc", "1e999", "-0", "1,5", "\"1\"", "0x10", "1_000",
         "\u0661", "9" * 400, "True", "\x00")
SOURCE_FILES = sorted((REPO_ROOT / "examples").glob("*.dl"))


# ---------------------------------------------------------------------------
# Cases


def generate(rng: random.Random) -> tuple[str, str]:
    """A case: (kind directive + edit lines, mode)."""
    kind = rng.choice(KINDS)
    edits = [EDIT_MAKERS[kind](rng) if rng.random() < 0.6 else byte_edit(rng)
             for _ in range(rng.randint(1, 4))]
    head = f"# fuzz: kind={kind} seed={rng.randrange(2**31)}"
    if kind == "source":
        head += f" file={rng.choice(SOURCE_FILES).name} as={rng.choice(['dl', 'dl', 'mlir'])}"
    return "\n".join([head, *edits]) + "\n", kind


def byte_edit(rng: random.Random) -> str:
    at = f"{rng.random():.4f}"
    verb = rng.choice(["flip", "flip", "truncate", "insert", "delete", "overwrite"])
    if verb == "flip":
        return f"flip {at} {rng.randrange(8)}"
    if verb == "truncate":
        return f"truncate {at}"
    if verb == "delete":
        return f"delete {at} {rng.randint(1, 64)}"
    data = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))).hex()
    return f"{verb} {at} {data}"


def json_edit(rng: random.Random, word: str, paths: list[str]) -> str:
    path = rng.choice(paths)
    if rng.random() < 0.2:
        return f"{word}-del {path}"
    return f"{word} {path} = {rng.choice(JSON_VALUES)}"


def checkpoint_edit(rng: random.Random) -> str:
    names = [f"param/{n}" for n in PARAMS] + ["state/adam.m.out.bias", "__meta__", "extra"]
    if rng.random() < 0.5:
        paths = ["format", "version", "model", "optimizer", "step", "epoch", "params", "state",
                 "extra", "params.0", "params.0.name", "params.0.shape", "params.1.dtype",
                 "params.2.shape.0", "state.0.name", "extra.learning_rate"]
        return json_edit(rng, "meta", paths)
    return array_edit(rng, names)


def array_edit(rng: random.Random, names: list[str]) -> str:
    name = rng.choice(names)
    verb = rng.choice(["dtype", "shape", "drop", "object", "add"])
    if verb == "dtype":
        return f"array {name} dtype {rng.choice(DTYPES)}"
    if verb == "shape":
        return f"array {name} shape {rng.choice(['0', '2,2', '1,2,1', '', '3', '0,5'])}"
    return f"array {name} {verb}"


def cache_object_edit(rng: random.Random) -> str:
    paths = ["key", "size", "sha256", "functions", "functions.0", "functions.0.name",
             "functions.0.symbol", "functions.0.params", "functions.0.params.0.shape",
             "functions.0.params.0.dtype", "functions.0.outputs.0.shape", "functions.0.symbols",
             "functions.0.inplace", "functions.0.params.1", "target"]
    if rng.random() < 0.2:
        return f"alias object_key = {rng.choice(JSON_VALUES)}"
    return json_edit(rng, "header", paths)


def cache_module_edit(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return f"ir {rng.randrange(2**31)} {rng.randint(1, 3)}"
    return json_edit(rng, "header", ["key", "size", "sha256", "file"])


def idx_edit(rng: random.Random) -> str:
    field = rng.choice(["zero0", "zero1", "type", "ndim", "dim0", "dim1", "dim2"])
    value = rng.choice([0, 1, 2, 3, 8, 9, 11, 12, 13, 14, 15, 255, 65535, 2**31, 2**32 - 1])
    target = rng.choice(["train-images", "train-labels", "t10k-images"])
    return f"field {target} {field} {value}" if rng.random() < 0.8 else f"gzip {target}"


def npz_edit(rng: random.Random) -> str:
    return array_edit(rng, ["x", "y", "x_test", "y_test", "z"])


def csv_edit(rng: random.Random) -> str:
    verb = rng.choice(["cell", "cell", "cell", "row-drop", "row-dup", "header"])
    if verb == "cell":
        return f"cell {rng.randint(0, 6)} {rng.randint(0, 5)} {rng.choice(CELLS)!r}"
    if verb == "header":
        return f"cell 0 {rng.randint(0, 5)} {rng.choice(['label', '', 'a', 'label ', 'x'])!r}"
    return f"{verb} {rng.randint(0, 6)}"


def source_edit(rng: random.Random) -> str:
    return rng.choice(["encoding latin-1", "encoding utf-16", "bom", "nul", "crlf", "empty"])


EDIT_MAKERS: dict[str, Callable[[random.Random], str]] = {
    "checkpoint": checkpoint_edit, "cache_object": cache_object_edit, "cache_module": cache_module_edit,
    "idx": idx_edit, "npz": npz_edit, "csv": csv_edit, "source": source_edit,
}


# ---------------------------------------------------------------------------
# Running a case


def run(text: str, stats: dict[str, int]) -> None:
    """Write the kind's valid file(s), apply the edits, load them the way dlc does."""
    found = directives(text)
    kind = found.get("kind", "")
    if kind not in RUNNERS:
        return
    edits = [line.strip() for line in text.splitlines()[1:] if line.strip() and not line.startswith("#")]
    with tempfile.TemporaryDirectory(prefix="dlc-fuzz-files-") as tmp:
        RUNNERS[kind](Path(tmp), edits, found, stats)
    stats["loaded"] = 1


def apply_bytes(data: bytes, edits: list[str]) -> bytes:
    """The byte edits among ``edits`` applied to ``data``."""
    for edit in edits:
        verb, *args = edit.split()
        if verb not in ("flip", "truncate", "insert", "delete", "overwrite") or not args:
            continue
        try:
            at = min(int(float(args[0]) * len(data)), max(len(data) - 1, 0))
            if verb == "flip" and data:
                data = data[:at] + bytes([data[at] ^ (1 << int(args[1]) % 8)]) + data[at + 1:]
            elif verb == "truncate":
                data = data[:at]
            elif verb == "insert":
                data = data[:at] + bytes.fromhex(args[1]) + data[at:]
            elif verb == "delete":
                data = data[:at] + data[at + int(args[1]):]
            elif verb == "overwrite":
                patch = bytes.fromhex(args[1])
                data = data[:at] + patch + data[at + len(patch):]
        except (ValueError, IndexError):
            continue
    return data


def apply_json(obj: Any, edits: list[str], word: str) -> Any:
    """``word PATH = JSON`` and ``word-del PATH`` edits applied to a JSON-like object."""
    for edit in edits:
        verb, _, rest = edit.partition(" ")
        path, _, value = rest.partition(" = ")
        try:
            if verb == word:
                obj = _set(obj, path.strip().split("."), json.loads(value))
            elif verb == f"{word}-del":
                obj = _set(obj, path.strip().split("."), _DELETE)
        except (ValueError, KeyError, IndexError, TypeError):
            continue
    return obj


_DELETE = object()


def _set(obj: Any, path: list[str], value: Any) -> Any:
    """``obj`` with the item at ``path`` set (or deleted, for ``_DELETE``)."""
    if not path or path == [""]:
        return obj if value is _DELETE else value
    key: Any = int(path[0]) if isinstance(obj, list) else path[0]
    if len(path) == 1:
        if value is _DELETE:
            del obj[key]
        else:
            obj[key] = value
        return obj
    obj[key] = _set(obj[key], path[1:], value)
    return obj


def edit_arrays(arrays: dict[str, Any], edits: list[str]) -> dict[str, Any]:
    """``array NAME dtype|shape|drop|object|add`` edits applied to named arrays."""
    for edit in edits:
        parts = edit.split()
        if len(parts) < 3 or parts[0] != "array":
            continue
        name, verb, rest = parts[1], parts[2], parts[3:]
        try:
            if verb == "drop":
                arrays.pop(name, None)
            elif verb == "add":
                arrays[name] = np.ones((2, 2), np.float32)
            elif verb == "object" and name in arrays:
                arrays[name] = np.array([object()] + [None] * 2, dtype=object)
            elif verb == "dtype" and name in arrays and rest:
                arrays[name] = np.zeros(np.shape(arrays[name]), dtype=rest[0])
            elif verb == "shape" and name in arrays:
                shape = tuple(int(d) for d in rest[0].split(",") if d) if rest else ()
                arrays[name] = np.zeros(shape, dtype=np.asarray(arrays[name]).dtype)
        except (TypeError, ValueError):
            continue
    return arrays


def save_npz(path: Path, arrays: dict[str, Any]) -> None:
    """``np.savez`` that may hold object arrays (pickled: loaders must refuse them)."""
    with open(path, "wb") as f:
        np.savez(f, **arrays)


# -- checkpoints ----------------------------------------------------------------------


def run_checkpoint(folder: Path, edits: list[str], found: dict[str, str], stats: dict[str, int]) -> None:
    from runtime.checkpoint import META_KEY, load_checkpoint

    model = xor_model()
    path = folder / "weights.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as npz:
        arrays: dict[str, Any] = {k: npz[k] for k in npz.files}
    meta = apply_json(json.loads(str(arrays[META_KEY])), edits, "meta")
    arrays[META_KEY] = np.array(json.dumps(meta))
    save_npz(path, edit_arrays(arrays, edits))
    path.write_bytes(apply_bytes(path.read_bytes(), edits))
    for load in (lambda: load_checkpoint(path), lambda: model.load_weights(path)):
        try:
            load()
            stats["accepted"] = stats.get("accepted", 0) + 1
        except DlError:
            stats["rejected_cleanly"] = stats.get("rejected_cleanly", 0) + 1


_MODEL: list[Any] = []


def xor_model() -> Any:
    """The xor example as a Model on the interpreter (built once per worker)."""
    from frontend_dsl.api import compile_file
    from runtime.model import Model

    if not _MODEL:
        _MODEL.append(Model(compile_file(MODEL_FILE), seed=0, backend="interp"))
    return _MODEL[0]


# -- the object cache -----------------------------------------------------------------

CACHE_SOURCE = """fn f(x: f32[N, 3], w: f32[3, 2], b: f32[2]) -> f32[N, 2] {
    return relu(x @ w + b)
}

fn g(a: f32[], v: f32[N]) -> f32[] {
    return sum(v * a)
}
"""
CACHE_ARGS = {   # what a caller passes, whatever the cache says the functions take
    "f": (np.arange(12, dtype=np.float32).reshape(4, 3) / 4, np.full((3, 2), 0.5, np.float32),
          np.array([-1.0, 1.0], np.float32)),
    "g": (np.float32(2.0), np.arange(5, dtype=np.float32)),
}


def run_cache_object(folder: Path, edits: list[str], found: dict[str, str], stats: dict[str, int]) -> None:
    import runtime
    from runtime.cache import MAGIC

    cache = folder / "cache"
    shutil.copytree(template("object"), cache)
    for entry in cache.glob("*.dlco"):
        entry.write_bytes(apply_bytes(reframe(entry.read_bytes(), MAGIC, edits, None), edits))
    for alias in cache.glob("*.dlcsrc"):
        alias.write_text(json.dumps(apply_json(json.loads(alias.read_text()), edits, "alias")))
    compiled = runtime.compile(CACHE_SOURCE, cache=cache)
    stats["compiled"] = 1
    module = compile_source(CACHE_SOURCE, "cache.dl")
    for name, args in CACHE_ARGS.items():
        try:
            got = compiled[name](*args)
        except (DlError, KeyError):       # KeyError: no such function (the header lost it)
            continue
        stats["called"] = stats.get("called", 0) + 1
        outputs = list(got) if isinstance(got, tuple) else [got]
        for i, (g, want) in enumerate(zip(outputs, interpret(module.get(name), list(args)))):
            try:
                compare(f"@{name} output {i}", g, want)
            except Mismatch as e:
                raise Mismatch(f"cache: {e.what}", f"a damaged cache entry computes something else: {e}") from None


def reframe(data: bytes, magic: bytes, edits: list[str], payload_edit: Callable[[bytes], bytes] | None) -> bytes:
    """A cache entry with ``header`` edits applied to its JSON header (and the payload
    edited), re-signed as a foreign writer would (``runtime/cache.py``'s frame: magic,
    sha256 of the rest, u32 header length, header, payload), so the runtime's checks
    behind the checksum are what is tried; unparseable entries come back as they are."""
    digest = 32
    if not data.startswith(magic) or len(data) < len(magic) + digest + 4:
        return data
    pos = len(magic) + digest
    size = int.from_bytes(data[pos:pos + 4], "little")
    start = pos + 4
    try:
        header = json.loads(data[start:start + size].decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return data
    payload = data[start + size:]
    if payload_edit is not None:
        payload = payload_edit(payload)
        header["size"] = len(payload)
    header = apply_json(header, edits, "header")
    head = json.dumps(header, sort_keys=True).encode()
    body = len(head).to_bytes(4, "little") + head + payload
    return magic + hashlib.sha256(body).digest() + body


_TEMPLATES: dict[str, Path] = {}


def template(kind: str) -> Path:
    """A cache folder holding valid entries (``object``: ``runtime.compile`` of
    :data:`CACHE_SOURCE`; ``module``: ``load_model`` of xor.dl), made once per worker."""
    if kind not in _TEMPLATES:
        folder = Path(tempfile.mkdtemp(prefix=f"dlc-fuzz-template-{kind}-"))
        if kind == "object":
            import runtime

            runtime.compile(CACHE_SOURCE, cache=folder)
        else:
            from runtime.cache import ObjectCache
            from runtime.model_cache import load_source

            shutil.copy(MODEL_FILE, folder / "model.dl")
            load_source(folder / "model.dl", ObjectCache(folder))
        _TEMPLATES[kind] = folder
    return _TEMPLATES[kind]


# -- load_model's module cache --------------------------------------------------------


def run_cache_module(folder: Path, edits: list[str], found: dict[str, str], stats: dict[str, int]) -> None:
    import runtime
    from runtime.cache import MODULE_MAGIC

    from .ir_text import POOL

    source = template("module")
    for item in source.iterdir():
        shutil.copy(item, folder / item.name)

    def edit_ir(payload: bytes) -> bytes:
        text = payload.decode()
        for edit in edits:
            parts = edit.split()
            if len(parts) == 3 and parts[0] == "ir" and parts[1].isdigit() and parts[2].isdigit():
                text = mutate(text, random.Random(int(parts[1])), int(parts[2]), POOL)
        return text.encode()

    for entry in folder.glob("*.dlcmod"):
        entry.write_bytes(apply_bytes(reframe(entry.read_bytes(), MODULE_MAGIC, edits, edit_ir), edits))
    # load_model finds the entry by the .dl file's name and text, as written in the template
    with _env("DLC_CACHE_DIR", str(folder)):
        model = runtime.load_model(str(source / "model.dl"), backend="interp")
        stats["loaded_model"] = 1
        model.predict(np.zeros((2, 2), np.float32))


@contextlib.contextmanager
def _env(key: str, value: str) -> Any:
    old = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ[key]
        else:
            os.environ[key] = old


# -- data files -----------------------------------------------------------------------


def data_spec() -> Any:
    """What a 4-feature, 3-class model expects of its data."""
    from runtime.data import DataSpec, TensorSpec

    return DataSpec("fuzz", (TensorSpec("x", np.dtype(np.float32), ("N", 4)),),
                    (TensorSpec("y", np.dtype(np.int32), ("N",)),), num_classes=3,
                    loss="sparse_categorical_crossentropy")


def load_and_check(source: Path, stats: dict[str, int], label_column: str | None = None) -> None:
    """``load_data`` and the model-signature checks, as ``dlc train --data`` runs them."""
    from runtime.data import load_data, prepare_inputs, prepare_targets

    spec = data_spec()
    data = load_data(source, spec, label_column=label_column)
    stats["loaded_data"] = 1
    x = prepare_inputs(data.x_train, spec)
    prepare_targets(data.y_train, spec, len(x[0]))
    if data.has_test:
        xt = prepare_inputs(data.x_test, spec, "test input")
        prepare_targets(data.y_test, spec, len(xt[0]), "test target")
    stats["checked_data"] = 1


def run_idx(folder: Path, edits: list[str], found: dict[str, str], stats: dict[str, int]) -> None:
    from runtime.data import write_idx

    rng = np.random.default_rng(0)
    files = {"train-images": rng.integers(0, 256, (6, 2, 2)).astype(np.uint8),
             "train-labels": rng.integers(0, 3, 6).astype(np.uint8),
             "t10k-images": rng.integers(0, 256, (2, 2, 2)).astype(np.uint8),
             "t10k-labels": rng.integers(0, 3, 2).astype(np.uint8)}
    for name, array in files.items():
        path = folder / f"{name}-idx{array.ndim}-ubyte"
        write_idx(path, array)
        data = edit_idx_header(path.read_bytes(), name, edits)
        if name == "train-images":            # byte edits go to the images
            data = apply_bytes(data, edits)
        if f"gzip {name}" in edits:
            data = gzip.compress(data)
        path.write_bytes(data)
    load_and_check(folder, stats)


IDX_FIELDS = {"zero0": 0, "zero1": 1, "type": 2, "ndim": 3}


def edit_idx_header(data: bytes, name: str, edits: list[str]) -> bytes:
    """``field NAME FIELD VALUE`` edits on an IDX header (dims are big-endian u32)."""
    for edit in edits:
        parts = edit.split()
        if len(parts) != 4 or parts[0] != "field" or parts[1] != name or not parts[3].isdigit():
            continue
        value = int(parts[3])
        if parts[2] in IDX_FIELDS and len(data) > IDX_FIELDS[parts[2]]:
            i = IDX_FIELDS[parts[2]]
            data = data[:i] + bytes([value & 0xFF]) + data[i + 1:]
        elif parts[2].startswith("dim") and parts[2][3:].isdigit():
            at = 4 + 4 * int(parts[2][3:])
            data = data[:at] + struct.pack(">I", value & 0xFFFFFFFF) + data[at + 4:]
    return data


def run_npz(folder: Path, edits: list[str], found: dict[str, str], stats: dict[str, int]) -> None:
    rng = np.random.default_rng(0)
    arrays: dict[str, Any] = {"x": rng.random((6, 4)).astype(np.float32), "y": rng.integers(0, 3, 6),
                              "x_test": rng.random((2, 4)), "y_test": rng.integers(0, 3, 2)}
    path = folder / "data.npz"
    save_npz(path, edit_arrays(arrays, edits))
    path.write_bytes(apply_bytes(path.read_bytes(), edits))
    load_and_check(path, stats)


def run_csv(folder: Path, edits: list[str], found: dict[str, str], stats: dict[str, int]) -> None:
    rows = [["a", "b", "c", "d", "label"]] + [[f"{(i * 7 + j) % 5 / 4}" for j in range(4)] + [str(i % 3)]
                                              for i in range(6)]
    for edit in edits:
        parts = edit.split(" ", 3)
        try:
            if parts[0] == "cell" and len(parts) == 4:
                row, col = int(parts[1]), int(parts[2])
                if row < len(rows) and col < len(rows[row]):
                    rows[row][col] = str(ast.literal_eval(parts[3]))
            elif parts[0] == "row-drop" and int(parts[1]) < len(rows):
                del rows[int(parts[1])]
            elif parts[0] == "row-dup" and int(parts[1]) < len(rows):
                rows.insert(int(parts[1]), list(rows[int(parts[1])]))
        except (ValueError, IndexError, SyntaxError):
            continue
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    path = folder / "data.csv"
    path.write_bytes(apply_bytes(buffer.getvalue().encode("utf-8", "surrogatepass"), edits))
    load_and_check(path, stats, label_column="label")


# -- sources through `dlc check` ------------------------------------------------------


class ExitStatus(Exception):
    """``dlc`` exited with a status other than 0 or 1."""


def run_source(folder: Path, edits: list[str], found: dict[str, str], stats: dict[str, int]) -> None:
    from runtime.cli import main
    from runtime.commands import load_module

    source = REPO_ROOT / "examples" / found.get("file", "xor.dl")
    if not source.is_file():
        return
    text = source.read_text()
    suffix = ".mlir" if found.get("as") == "mlir" else ".dl"
    if suffix == ".mlir":
        from compiler.ir.printer import print_module

        text = print_module(compile_source(text, source.name), debug_locations=True)
    data = source_bytes(text, edits)
    path = folder / f"input{suffix}"
    path.write_bytes(apply_bytes(data, edits))
    try:
        load_module(str(path))
    except DlError:
        pass
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        status = main(["check", str(path)])
    stats["cli"] = 1
    if status not in (0, 1):
        raise Mismatch(f"dlc check exit {status}", f"dlc check {path.name} exited {status}:\n{err.getvalue()}")


def source_bytes(text: str, edits: list[str]) -> bytes:
    """The source text encoded as the edits say (``encoding``, ``bom``, ``nul``, ``crlf``, ``empty``)."""
    data = text.encode()
    for edit in edits:
        if edit.startswith("encoding "):
            data = text.encode(edit.split()[1], errors="replace")
        elif edit == "bom":
            data = b"\xef\xbb\xbf" + data
        elif edit == "nul":
            data = data.replace(b"\n", b"\x00\n", 1)
        elif edit == "crlf":
            data = data.replace(b"\n", b"\r\n")
        elif edit == "empty":
            data = b""
    return data


RUNNERS: dict[str, Callable[[Path, list[str], dict[str, str], dict[str, int]], None]] = {
    "checkpoint": run_checkpoint, "cache_object": run_cache_object, "cache_module": run_cache_module,
    "idx": run_idx, "npz": run_npz, "csv": run_csv, "source": run_source,
}
