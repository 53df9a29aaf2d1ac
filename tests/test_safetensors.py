"""safetensors checkpoints (runtime/checkpoint.py): dlc's own, round-tripped with optimizer
state; one from elsewhere, loaded as parameters by name; every malformed file a DlRuntimeError."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("safetensors", reason="the safetensors extra is not installed (pip install 'dlc[safetensors]')")

from safetensors.numpy import save_file  # noqa: E402

import runtime  # noqa: E402
from compiler.diagnostics import DlRuntimeError  # noqa: E402
from runtime.checkpoint import load_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
XOR = ROOT / "examples/xor.dl"
X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
Y = np.array([[0], [1], [1], [0]], np.float32)


def trained(seed: int = 0) -> runtime.model.Model:
    model = runtime.load_model(XOR, seed=seed, backend="interp")
    model.fit(X, Y, epochs=3, batch_size=4, verbose=0)
    return model


def test_a_model_saved_as_safetensors_loads_back_with_its_optimizer_state(tmp_path: Path) -> None:
    model = trained()
    path = model.save(tmp_path / "w.safetensors")
    assert path.read_bytes()[8:9] == b"{"               # a safetensors header, not a zip archive
    other = runtime.load_model(XOR, seed=9, backend="interp", weights=path)
    for name, value in model.weights.items():
        np.testing.assert_array_equal(other.weights[name], value)
    for name, value in model.optimizer_state.items():
        np.testing.assert_array_equal(other.optimizer_state[name], value)
    assert other.step == model.step == 3


def test_a_safetensors_file_from_elsewhere_loads_its_tensors_as_parameters(tmp_path: Path) -> None:
    model = trained()
    foreign = {name: value for name, value in model.weights.items()}
    save_file(foreign, str(tmp_path / "hf.safetensors"))          # no dlc metadata
    other = runtime.load_model(XOR, seed=9, backend="interp", weights=tmp_path / "hf.safetensors")
    np.testing.assert_array_equal(other.predict(X), model.predict(X))


@pytest.mark.parametrize("damage, message", [
    (lambda meta: meta.update(step="three"), "field 'step' should be a non-negative integer"),
    (lambda meta: meta["params"].append({"name": "ghost", "shape": [1], "dtype": "float32"}),
     "tensor 'ghost' is listed but missing"),
    (lambda meta: meta["params"].pop(), "is not listed in its metadata record"),
    (lambda meta: meta.update(format="something else"), "not a dlc checkpoint"),
])
def test_every_field_of_the_record_is_checked(tmp_path: Path, damage, message: str) -> None:
    path = trained().save(tmp_path / "w.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        meta = json.loads(f.metadata()["dlc"])
        arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    damage(meta)
    save_file(arrays, str(path), metadata={"dlc": json.dumps(meta)})
    with pytest.raises(DlRuntimeError, match=message):
        load_checkpoint(path)


def test_a_corrupt_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\xff" * 64)
    with pytest.raises(DlRuntimeError, match="corrupt or not a safetensors file"):
        load_checkpoint(path)


def test_dlc_train_saves_safetensors(tmp_path: Path) -> None:
    from runtime.cli import main

    assert main(["train", str(XOR), "--epochs", "1", "--quiet", "--backend", "interp",
                 "--save", str(tmp_path / "w.safetensors")]) == 0
    ckpt = load_checkpoint(tmp_path / "w.safetensors")
    assert ckpt.model_name == "xor" and set(ckpt.params) == {"hidden.kernel", "hidden.bias", "out.kernel", "out.bias"}
