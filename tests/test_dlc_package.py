"""``import dlc`` is the public front door, and the shipped data sets are package data."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import compiler.schedules
import dlc
import runtime
import runtime.callbacks
import runtime.data
from runtime.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_dlc_re_exports_the_runtime() -> None:
    assert dlc.load_model is runtime.load_model and dlc.compile is runtime.compile
    assert dlc.data.load_mnist is runtime.data.load_mnist
    assert dlc.callbacks.EarlyStopping is runtime.callbacks.EarlyStopping
    assert dlc.schedules.CosineDecay is compiler.schedules.CosineDecay
    assert issubclass(dlc.DlRuntimeError, dlc.DlError) and isinstance(dlc.__version__, str)
    from dlc.callbacks import ModelCheckpoint  # the Keras-style import line works
    assert ModelCheckpoint is runtime.callbacks.ModelCheckpoint


# the documents a user reads for the Python API (docs/codegen.md's dlc.gemm.* are native symbols)
USER_DOCS = ["README.md", "docs/training.md", "docs/cli.md", "docs/distributed.md", "docs/interop.md"]


def documented_dlc_names() -> set[str]:
    """Every ``dlc.NAME[.NAME...]`` and ``from dlc.X import A, B`` the user documents mention."""
    import re

    names: set[str] = set()
    for doc in USER_DOCS:
        text = (ROOT / doc).read_text(encoding="utf-8") if (ROOT / doc).exists() else ""
        names |= {m.rstrip(".") for m in re.findall(r"\bdlc\.[A-Za-z_][A-Za-z0-9_.]*", text)}
        for module, imported in re.findall(r"from (dlc(?:\.\w+)*) import ([\w, ]+)", text):
            names |= {f"{module}.{n.strip()}" for n in imported.split(",") if n.strip()}
    return names


def test_every_dlc_name_the_docs_use_exists() -> None:
    names = documented_dlc_names()
    assert {"dlc.compile", "dlc.load_model", "dlc.data.load_mnist", "dlc.DlError",
            "dlc.callbacks.EarlyStopping", "dlc.schedules.CosineDecay"} <= names
    for name in sorted(names):
        value = dlc
        for part in name.split(".")[1:]:
            assert hasattr(value, part), f"the docs use {name}, which import dlc does not expose"
            value = getattr(value, part)
    assert all(name in dlc.__all__ for name in ("Distributed", "EXPORT_FORMATS", "NonFiniteLossError"))


def test_python_m_dlc_is_the_command_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "dlc", "--version"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("dlc ")


def test_shipped_data_is_found_from_any_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in runtime.data.SHIPPED:
        folder = runtime.data.shipped_mnist_dir(name)
        assert folder == Path(runtime.__file__).parent / "datasets" / name
        runtime.data.verify_checksums(folder, ["t10k-labels-idx1-ubyte.gz"])
    with pytest.raises(dlc.DlRuntimeError, match="'cifar' is not a data set that ships with dlc"):
        runtime.data.shipped_mnist_dir("cifar")


def test_pyproject_packages_every_shipped_file() -> None:
    """The package-data globs match every file of runtime/datasets (what `pip install .`
    copies into site-packages; a glob that matches nothing ships no MNIST)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package = ROOT / "runtime"
    packaged = {p for pattern in config["package-data"]["runtime"] for p in package.glob(pattern) if p.is_file()}
    shipped = {p for p in (package / "datasets").rglob("*") if p.is_file()}
    assert shipped and packaged == shipped
    assert any(inc.startswith("dlc") for inc in config["packages"]["find"]["include"])


def test_examples_data_still_points_at_the_shipped_sets() -> None:
    assert (ROOT / "examples" / "data" / "mnist" / "SHA256SUMS").is_file()


def test_a_model_that_fits_no_default_data_set(tmp_path: Path, capsys) -> None:
    """784 features would be MNIST; 100 features and 10 classes is nothing: an error, not MNIST."""
    source = (ROOT / "examples" / "mnist_mlp.dl").read_text().replace("784", "100")
    (tmp_path / "m.dl").write_text(source)
    assert main(["train", str(tmp_path / "m.dl"), "--backend", "interp", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "no default data set for model 'mnist_mlp' (inputs x: f32[N, 100]; 10 classes): pass --data" in err
    assert "one input of 784 elements per sample and 10 classes" in err and "Traceback" not in err
