"""Checkpoints: a model's weights, optimizer state, step count and signature in one .npz
(or one ``.safetensors`` file: the same tensor names, the record in the header's metadata
under ``"dlc"``; a safetensors file from elsewhere loads as parameters by tensor name).

Layout of the file (a plain ``numpy.savez`` archive, read without pickle)::

    param/<name>     one array per model parameter (e.g. param/dense_1.kernel)
    model_state/<name>  one array per non-trainable model state value
                     (e.g. model_state/batch_norm_1.moving_mean)
    state/<name>     one array per optimizer state tensor (e.g. state/rmsprop.velocity.dense_1.kernel)
    __meta__         a 0-d unicode array holding JSON: format, version, model name,
                     optimizer, step, epoch, and every tensor's name, shape and dtype

Writes are atomic: the archive goes to a temporary file in the target's
directory, is flushed and fsynced, then ``os.replace``-d over the target, so
a crash leaves either the old checkpoint or the new one, never half of one.
The temporary file's name says whose it is (``runtime/tempfiles.py``): one a
killed process left behind is removed by the next save into that folder.

Loading checks the file against the model it goes into and names the first
tensor that does not fit, with both shapes.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from compiler.diagnostics import DlRuntimeError

from .tempfiles import create_temp

FORMAT = "dlc-checkpoint"
VERSION = 1
META_KEY = "__meta__"
SAFETENSORS_SUFFIX = ".safetensors"
SAFETENSORS_META = "dlc"         # the header metadata key holding the same JSON record


@dataclass
class Checkpoint:
    """What a checkpoint holds, in memory."""

    model_name: str
    params: dict[str, np.ndarray]
    state: dict[str, np.ndarray] = field(default_factory=dict)
    optimizer: str | None = None
    step: int = 0
    epoch: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    model_state: dict[str, np.ndarray] = field(default_factory=dict)


def _tensor_meta(arrays: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    return [{"name": n, "shape": list(a.shape), "dtype": a.dtype.name} for n, a in arrays.items()]


def save_checkpoint(path: str | Path, ckpt: Checkpoint) -> Path:
    """Write ``ckpt`` to ``path`` atomically; returns the path written."""
    path = Path(path)
    meta = {
        "format": FORMAT, "version": VERSION, "model": ckpt.model_name,
        "optimizer": ckpt.optimizer, "step": int(ckpt.step), "epoch": int(ckpt.epoch),
        "params": _tensor_meta(ckpt.params), "state": _tensor_meta(ckpt.state), "extra": ckpt.extra,
    }
    if ckpt.model_state:
        meta["model_state"] = _tensor_meta(ckpt.model_state)
    arrays = {f"param/{n}": np.asarray(a) for n, a in ckpt.params.items()}
    arrays.update({f"state/{n}": np.asarray(a) for n, a in ckpt.state.items()})
    arrays.update({f"model_state/{n}": np.asarray(a) for n, a in ckpt.model_state.items()})
    if path.suffix == SAFETENSORS_SUFFIX:
        from .interop import require

        require("safetensors", "safetensors")
        from safetensors.numpy import save as save_safetensors

        data = save_safetensors({k: np.array(a, order="C") for k, a in arrays.items()},
                             metadata={SAFETENSORS_META: json.dumps(meta)})
        return _write_atomic(path, lambda f: f.write(data))
    arrays[META_KEY] = np.array(json.dumps(meta))
    return _write_atomic(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def _write_atomic(path: Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Fill a temporary file beside ``path`` with ``write(file)``, fsync it, rename it over ``path``."""
    directory = check_writable(path)
    try:
        # O_EXCL like mkstemp, but mode 0666 less the umask (mkstemp's 0600 would stick to the checkpoint)
        fd, tmp_name = create_temp(directory / path.name, 0o666)
    except OSError as e:
        raise DlRuntimeError(f"{path}: cannot save ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException as e:
        Path(tmp_name).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise DlRuntimeError(f"{path}: cannot save ({e.strerror or e})") from None
        raise
    _fsync_dir(directory)
    return path


def check_writable(path: str | Path) -> Path:
    """The directory ``path`` would be written in, after checking a file can be created there.

    Raises a :class:`DlRuntimeError` when ``path`` is a directory, its directory
    does not exist, or a file cannot be created in it (permissions, a read-only
    file system).  Commands call it before long work, so a bad ``--save`` path
    fails before training rather than after.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise DlRuntimeError(f"{path}: is a directory, not a file")
    if not directory.is_dir():
        raise DlRuntimeError(f"{path}: directory {directory} does not exist")
    try:
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        raise DlRuntimeError(f"{path}: cannot create files in {directory} "
                             f"({e.strerror or e})") from None
    return directory


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint, checking that it is complete and consistent with its own metadata."""
    path = Path(path)
    if path.is_dir():
        raise DlRuntimeError(f"{path}: is a directory, not a checkpoint file")
    if not path.is_file():
        raise DlRuntimeError(f"{path}: no such checkpoint file")
    if path.suffix == SAFETENSORS_SUFFIX:
        return _load_safetensors(path)
    if not zipfile.is_zipfile(path):
        raise DlRuntimeError(f"{path}: corrupt or not a dlc checkpoint (not an .npz archive)")
    from .data import read_arrays

    arrays = read_arrays(path, numeric=False)      # names an array that does not read
    if not isinstance(arrays, dict):
        raise DlRuntimeError(f"{path}: corrupt or not a dlc checkpoint (a .npy array, not an .npz archive)")
    meta = _read_meta(path, arrays.pop(META_KEY, None))
    params = _section(path, arrays, meta, "param", "params")
    state = _section(path, arrays, meta, "state", "state")
    model_state = _section(path, arrays, meta, "model_state", "model_state")
    unlisted = sorted(arrays)
    if unlisted:
        raise DlRuntimeError(f"{path}: corrupt checkpoint: array '{unlisted[0]}' is not listed in "
                             f"its {META_KEY} record")
    return Checkpoint(meta["model"], params, state, meta["optimizer"], meta["step"], meta["epoch"],
                      meta["extra"], model_state)


def _load_safetensors(path: Path) -> Checkpoint:
    """A ``.safetensors`` checkpoint: dlc's (its JSON record in the header's metadata, the
    same checks as ``.npz``), or any other file's tensors as parameters by their names."""
    from .interop import require

    require("safetensors", "safetensors")
    from safetensors import SafetensorError, safe_open
    from safetensors.numpy import load as load_safetensors

    try:
        with safe_open(str(path), framework="np") as f:
            header = f.metadata() or {}
        arrays = load_safetensors(path.read_bytes())    # (safe_open's get_tensor makes 0-d tensors 1-d)
    except (SafetensorError, ValueError, TypeError) as e:   # a corrupt header, an unknown dtype
        raise DlRuntimeError(f"{path}: corrupt or not a safetensors file ({e})") from None
    if not isinstance(header, dict) or SAFETENSORS_META not in header:
        bad = sorted(k for k, a in arrays.items() if a.dtype.kind not in "biuf")
        if bad:
            raise DlRuntimeError(f"{path}: tensor '{bad[0]}' holds {arrays[bad[0]].dtype} values, not numbers")
        return Checkpoint(path.stem, arrays)
    meta = _read_meta(path, np.array(header[SAFETENSORS_META]))
    params = _section(path, arrays, meta, "param", "params")
    state = _section(path, arrays, meta, "state", "state")
    if arrays:
        raise DlRuntimeError(f"{path}: corrupt checkpoint: tensor '{sorted(arrays)[0]}' is not listed in "
                             "its metadata record")
    return Checkpoint(meta["model"], params, state, meta["optimizer"], meta["step"], meta["epoch"],
                      meta["extra"])


# field of the __meta__ record -> (allowed JSON types, what to say, default when absent; ... = required)
_META_FIELDS: dict[str, tuple[tuple[type, ...], str, Any]] = {
    "model": ((str,), "a string", ...),
    "optimizer": ((str, type(None)), "a string or null", None),
    "step": ((int,), "a non-negative integer", 0),
    "epoch": ((int,), "a non-negative integer", 0),
    "params": ((list,), "a list of tensor records", ...),
    "state": ((list,), "a list of tensor records", []),
    "model_state": ((list,), "a list of tensor records", []),
    "extra": ((dict,), "a JSON object", {}),
}


def _read_meta(path: Path, record: np.ndarray | None) -> dict[str, Any]:
    """The ``__meta__`` record, every field type-checked (an error names the field)."""
    if record is None:
        raise DlRuntimeError(f"{path}: not a dlc checkpoint (no {META_KEY} record)")
    if record.ndim != 0 or record.dtype.kind != "U":
        raise DlRuntimeError(f"{path}: corrupt checkpoint: {META_KEY} holds {record.dtype.name} data of "
                             f"shape {list(record.shape)}, not a string of JSON")
    try:
        meta = json.loads(str(record))
    except json.JSONDecodeError as e:
        raise DlRuntimeError(f"{path}: corrupt checkpoint metadata ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else repr(meta)
        raise DlRuntimeError(f"{path}: not a dlc checkpoint (format {found})")
    if meta.get("version") != VERSION:
        raise DlRuntimeError(f"{path}: checkpoint version {meta.get('version')} is not supported "
                             f"(this dlc reads version {VERSION})")
    out = dict(meta)
    for name, (kinds, what, default) in _META_FIELDS.items():
        if name not in meta and default is not ...:
            out[name] = copy.deepcopy(default)
            continue
        value = meta.get(name)
        if (name not in meta or isinstance(value, bool) or not isinstance(value, kinds)
                or (isinstance(value, int) and value < 0)):
            got = "missing" if name not in meta else f"{json.dumps(value)[:40]}"
            raise DlRuntimeError(f"{path}: corrupt checkpoint: {META_KEY} field '{name}' should be "
                                 f"{what}, got {got}")
    return out


def _section(path: Path, arrays: dict[str, np.ndarray], meta: dict, prefix: str, key: str) -> dict[str, np.ndarray]:
    """The arrays ``<prefix>/<name>`` listed in ``meta[key]``, each checked against its record."""
    out: dict[str, np.ndarray] = {}
    for i, entry in enumerate(meta[key]):
        name, shape, dtype = _tensor_record(path, entry, f"{key}[{i}]")
        if name in out:
            raise DlRuntimeError(f"{path}: corrupt checkpoint: tensor '{name}' is listed twice")
        array = arrays.pop(f"{prefix}/{name}", None)
        if array is None:
            raise DlRuntimeError(f"{path}: corrupt checkpoint: tensor '{name}' is listed but missing")
        if list(array.shape) != shape or array.dtype.name != dtype:
            raise DlRuntimeError(f"{path}: corrupt checkpoint: tensor '{name}' is {array.dtype.name} "
                                 f"{list(array.shape)}, its record says {dtype} {shape}")
        if array.dtype.kind not in "biuf":
            raise DlRuntimeError(f"{path}: corrupt checkpoint: tensor '{name}' holds {array.dtype.name} "
                                 "values, not numbers")
        out[name] = array
    return out


def _tensor_record(path: Path, entry: Any, where: str) -> tuple[str, list[int], str]:
    """(name, shape, dtype) of one tensor record of ``__meta__``, type-checked."""
    ok = (isinstance(entry, dict) and isinstance(entry.get("name"), str)
          and isinstance(entry.get("dtype"), str) and isinstance(entry.get("shape"), list)
          and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in entry["shape"]))
    if not ok:
        raise DlRuntimeError(f"{path}: corrupt checkpoint: {META_KEY} field '{where}' should be "
                             f"{{\"name\": str, \"shape\": [int, ...], \"dtype\": str}}, "
                             f"got {json.dumps(entry)[:60]}")
    return entry["name"], entry["shape"], entry["dtype"]


def check_fits(path: str | Path, ckpt: Checkpoint, model_name: str,
               expected: dict[str, tuple[tuple[int, ...], np.dtype]], what: str = "parameter") -> None:
    """Raise a :class:`DlRuntimeError` unless ``ckpt`` holds exactly the tensors ``expected``.

    ``what`` chooses the section: ``"parameter"``, ``"state"`` (the model's
    non-trainable state) or anything else (the optimizer's state).  The
    message names the tensor and both shapes (or what is missing/extra), and
    both model names when they differ.
    """
    other = f" (the checkpoint is of model '{ckpt.model_name}')" if ckpt.model_name != model_name else ""
    held = {"parameter": ckpt.params, "state": ckpt.model_state}.get(what, ckpt.state)
    missing = [n for n in expected if n not in held]
    if missing:
        raise DlRuntimeError(f"{path}: checkpoint has no {what} '{missing[0]}' that model "
                             f"'{model_name}' needs{other}")
    for name, (shape, dtype) in expected.items():
        array = held[name]
        if tuple(array.shape) != tuple(shape):
            raise DlRuntimeError(f"{path}: {what} '{name}' has shape {list(array.shape)} in the "
                                 f"checkpoint but {list(shape)} in model '{model_name}'{other}")
        if array.dtype != np.dtype(dtype):
            raise DlRuntimeError(f"{path}: {what} '{name}' is {array.dtype.name} in the checkpoint "
                                 f"but {np.dtype(dtype).name} in model '{model_name}'{other}")
    extra = [n for n in held if n not in expected]
    if extra:
        raise DlRuntimeError(f"{path}: checkpoint holds {what} '{extra[0]}' which model "
                             f"'{model_name}' does not have{other}")
