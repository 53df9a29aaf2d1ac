"""Data loading: IDX/MNIST, npz, CSV, synthetic sets, and checks against a model's signature."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from compiler.diagnostics import DlRuntimeError
from runtime import data as D
from runtime.data import DataSpec, TensorSpec


def spec(x_shape=("N", 3), y_shape=("N",), y_dtype=np.int32, classes=3, loss="sparse_categorical_crossentropy",
         name="m") -> DataSpec:
    return DataSpec(name, (TensorSpec("x", np.dtype(np.float32), x_shape),),
                    (TensorSpec("y", np.dtype(y_dtype), y_shape),), classes, loss)


# --- IDX -----------------------------------------------------------------------------

@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path: Path, compress: bool, dtype) -> None:
    array = (np.arange(24).reshape(2, 3, 4) * 3).astype(dtype)
    path = tmp_path / "a.idx"
    D.write_idx(path, array, compress=compress)
    back = D.read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_idx_big_endian_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "a.idx"
    D.write_idx(path, np.array([1, 256], np.int32))
    raw = path.read_bytes()
    assert raw[:4] == bytes([0, 0, 0x0C, 1]) and raw[4:8] == (2).to_bytes(4, "big")
    assert raw[8:] == (1).to_bytes(4, "big") + (256).to_bytes(4, "big")


@pytest.mark.parametrize("raw, message", [
    (b"\x01\x00\x08\x01" + (1).to_bytes(4, "big") + b"\x00", "bad magic number"),
    (b"\x00\x00\x07\x01" + (1).to_bytes(4, "big") + b"\x00", "unknown data type byte 0x07"),
    (b"\x00\x00\x08\x02" + (1).to_bytes(4, "big"), "truncated IDX header"),
    (b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"\x00\x01", "IDX header says 5 uint8 \\(5 bytes\\) but the file holds 2"),
    (b"\x00\x00", "bad magic number"),
])
def test_idx_header_validation(tmp_path: Path, raw: bytes, message: str) -> None:
    path = tmp_path / "bad.idx"
    path.write_bytes(raw)
    with pytest.raises(DlRuntimeError, match=message):
        D.read_idx(path)


def test_idx_corrupt_gzip_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + (4).to_bytes(4, "big") + b"abcd")[:-6])
    with pytest.raises(DlRuntimeError, match="corrupt gzip data"):
        D.read_idx(path)
    with pytest.raises(DlRuntimeError, match="no such file"):
        D.read_idx(tmp_path / "nope.gz")


# --- MNIST ---------------------------------------------------------------------------

def test_shipped_mnist() -> None:
    ds = D.load_mnist()
    assert ds.x_train.shape == (60000, 784) and ds.x_train.dtype == np.float32
    assert ds.x_test.shape == (10000, 784) and ds.y_test.dtype == np.int32
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    # label counts as documented in examples/data/mnist/README.md
    assert np.bincount(ds.y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(ds.y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert (D.MNIST_DIR / "README.md").read_text().count("Creative Commons") == 1


def _fake_mnist(directory: Path, n_train: int = 6, n_test: int = 4) -> None:
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (n_train, 28, 28)).astype(np.uint8),
              "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
              "x_test": rng.integers(0, 256, (n_test, 28, 28)).astype(np.uint8),
              "y_test": rng.integers(0, 10, n_test).astype(np.uint8)}
    lines = []
    for key, name in D.MNIST_FILES.items():
        D.write_idx(directory / name, arrays[key], compress=True)
        lines.append(f"{hashlib.sha256((directory / name).read_bytes()).hexdigest()}  {name}")
    (directory / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def test_mnist_checksum_mismatch_and_missing_files(tmp_path: Path) -> None:
    _fake_mnist(tmp_path)
    ds = D.load_mnist(tmp_path)
    assert ds.x_train.shape == (6, 784) and ds.y_test.shape == (4,)
    target = tmp_path / D.MNIST_FILES["y_test"]
    D.write_idx(target, np.zeros(4, np.uint8), compress=True)
    with pytest.raises(DlRuntimeError, match="t10k-labels-idx1-ubyte.gz: checksum mismatch"):
        D.load_mnist(tmp_path)
    target.unlink()
    with pytest.raises(DlRuntimeError, match="t10k-labels-idx1-ubyte.gz: no such file"):
        D.load_mnist(tmp_path)
    with pytest.raises(DlRuntimeError, match="MNIST directory not found"):
        D.load_mnist(tmp_path / "nowhere")
    (tmp_path / "SHA256SUMS").unlink()
    with pytest.raises(DlRuntimeError, match="SHA256SUMS: no such file"):
        D.load_mnist(tmp_path)


def test_idx_directory(tmp_path: Path) -> None:
    _fake_mnist(tmp_path)
    ds = D.load_data(str(tmp_path))
    assert ds.x_train.shape == (6, 784) and ds.has_test
    assert ds.x_train.dtype == np.float32 and ds.x_train.max() <= 1.0
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).unlink()
    assert not D.load_idx_dir(tmp_path).has_test
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DlRuntimeError, match="no train-labels\\* file"):
        D.load_idx_dir(tmp_path)


def test_idx_directory_images_and_labels_disagree(tmp_path: Path) -> None:
    D.write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 2, 2), np.uint8))
    D.write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2, np.uint8))
    with pytest.raises(DlRuntimeError, match="3 images but 2 labels"):
        D.load_idx_dir(tmp_path)


# --- npz and CSV ---------------------------------------------------------------------

def test_npz(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((4, 3)), y=np.arange(4), x_test=np.ones((2, 3)), y_test=np.arange(2))
    ds = D.load_data(str(path))
    assert ds.x_train.shape == (4, 3) and ds.y_test.tolist() == [0, 1]
    np.savez(path, x=np.ones((4, 3)))
    with pytest.raises(DlRuntimeError, match="missing array 'y'.*found: x"):
        D.load_npz(path)
    np.savez(path, x=np.ones((4, 3)), y=np.arange(4), x_test=np.ones((2, 3)))
    with pytest.raises(DlRuntimeError, match="x_test and y_test must come together"):
        D.load_npz(path)


def test_npz_never_unpickles(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object), y=np.arange(1))
    with pytest.raises(DlRuntimeError, match="without pickle"):
        D.load_npz(path)


def test_npz_corrupt_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    path.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(DlRuntimeError, match="d.npz"):
        D.load_npz(path)
    with pytest.raises(DlRuntimeError, match="no such file"):
        D.load_npz(tmp_path / "none.npz")


def test_csv(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,label,b\n1,0,2\n3,1,4.5\n\n5,1,6\n")
    ds = D.load_data(str(path), label_column="label")
    np.testing.assert_array_equal(ds.x_train, [[1, 2], [3, 4.5], [5, 6]])
    np.testing.assert_array_equal(ds.y_train, [0, 1, 1])
    with pytest.raises(DlRuntimeError, match="needs --label-column"):
        D.load_data(str(path))
    with pytest.raises(DlRuntimeError, match="no column named 'y' \\(columns: a, label, b\\)"):
        D.load_csv(path, "y")


@pytest.mark.parametrize("text, message", [
    ("a,y\n1,2\nx,3\n", "d.csv:3: column 'a' holds 'x', not a number"),
    ("a,y\n1,2\n1,2,3\n", "d.csv:3: expected 2 columns, got 3"),
    ("a,y\n", "needs a header row and at least one data row"),
    ("y\n1\n", "no feature columns besides 'y'"),
])
def test_csv_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(DlRuntimeError, match=message):
        D.load_csv(path, "y")


def test_unknown_sources(tmp_path: Path) -> None:
    with pytest.raises(DlRuntimeError, match="no such file or directory, and not a known data set"):
        D.load_data("nonexistent_set")
    (tmp_path / "d.txt").write_text("1")
    with pytest.raises(DlRuntimeError, match="unknown data format"):
        D.load_data(str(tmp_path / "d.txt"))
    with pytest.raises(DlRuntimeError, match="no default data set for model 'm'"):
        D.load_data(None, spec())


# --- synthetic sets ------------------------------------------------------------------

def test_synthetic_sets_are_seeded() -> None:
    for name in D.SYNTHETIC:
        a, b = D.load_data(name, seed=3), D.load_data(name, seed=3)
        np.testing.assert_array_equal(a.x_train, b.x_train)
        np.testing.assert_array_equal(a.y_train, b.y_train)
        assert a.has_test
        # token ids (text, digits, bytes) are integers; every other set holds float features
        assert a.x_train.dtype == (np.int32 if name in ("text_classifier", "adder_gpt", "char_gpt")
                                   else np.float32)
    assert not np.array_equal(D.load_data("student_pass", seed=1).x_train, D.load_data("student_pass", seed=2).x_train)


def test_linear_regression_data_follows_y_2x_plus_3() -> None:
    ds = D.load_data("linear_regression")
    slope, intercept = np.polyfit(ds.x_train[:, 0], ds.y_train[:, 0], 1)
    assert abs(slope - 2) < 0.03 and abs(intercept - 3) < 0.03


def test_xor_and_students() -> None:
    xor = D.load_data("xor")
    assert xor.x_train.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]] and xor.y_train[:, 0].tolist() == [0, 1, 1, 0]
    sp = D.load_data("student_pass")
    x = sp.x_train
    assert x.shape[1] == 3 and x[:, 0].min() >= 0 and x[:, 0].max() <= 30 and x[:, 1].max() <= 20 and x[:, 2].max() <= 10
    assert np.all(x[:, 0] == np.round(x[:, 0])) and np.all(x[:, 2] == np.round(x[:, 2]))
    assert 0.4 < sp.y_train.mean() < 0.7 and set(np.unique(sp.y_train)) == {0.0, 1.0}
    # the documented rule explains most outcomes
    agree = ((D.student_score(x) > 0) == (sp.y_train[:, 0] > 0.5)).mean()
    assert agree > 0.75
    sg = D.load_data("student_grade")
    assert sg.y_train.min() >= 0 and sg.y_train.max() <= 100
    assert np.corrcoef(D.student_score(sg.x_train), sg.y_train[:, 0])[0, 1] > 0.9


def test_sigmoid_chain_sized_to_the_model() -> None:
    s = spec(x_shape=("N", 4), y_shape=("N", 2), y_dtype=np.float32, classes=None, loss="mse")
    ds = D.load_data("sigmoid_chain", s)
    assert ds.x_train.shape[1] == 4 and ds.y_train.shape[1] == 2
    assert 0 < ds.y_train.min() and ds.y_train.max() < 1


def test_default_data_names() -> None:
    assert D.default_data_name(spec(name="xor")) == "xor"
    mnist = spec(x_shape=("N", 784), classes=10, name="mnist_mlp")
    assert D.default_data_name(mnist) == "mnist"
    assert D.default_data_name(spec(x_shape=("N", 784), classes=3)) is None


# --- checks against a signature -------------------------------------------------------

def test_prepare_casts_and_reshapes() -> None:
    s = spec(x_shape=("N", 4), y_shape=("N", 1), y_dtype=np.float32, classes=None, loss="mse")
    [x] = D.prepare_inputs(np.arange(8, dtype=np.float64).reshape(2, 2, 2), s)
    assert x.dtype == np.float32 and x.shape == (2, 4) and x.flags.c_contiguous
    [y] = D.prepare_targets(np.array([1.0, 2.0]), s, 2)
    assert y.shape == (2, 1)


def test_prepare_one_hot_for_categorical_targets() -> None:
    s = spec(y_shape=("N", 3), y_dtype=np.float32, loss="categorical_crossentropy")
    [y] = D.prepare_targets(np.array([2, 0]), s, 2)
    np.testing.assert_array_equal(y, [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(DlRuntimeError, match="label 3 at row 1 is out of range \\[0, 3\\)"):
        D.prepare_targets(np.array([2, 3]), s, 2)


@pytest.mark.parametrize("x, message", [
    (np.ones((2, 4)), "expected shape f32\\[N, 3\\], got \\[2, 4\\]"),
    (np.array([[1, 2, np.nan], [1, 2, 3]]), "contains NaN \\(first at row 0, index \\(0, 2\\)\\)"),
    (np.array([[1, 2, 3], [1, np.inf, 3]]), "contains inf \\(first at row 1"),
    (np.array(["a", "b"]), "dtype <U1 is not numeric"),
    (np.float32(1.0), "got a scalar"),
])
def test_prepare_inputs_errors(x, message: str) -> None:
    with pytest.raises(DlRuntimeError, match=message):
        D.prepare_inputs(x, spec(), "training input")


@pytest.mark.parametrize("y, message", [
    (np.array([0, 3]), "label 3 at row 1 is out of range \\[0, 3\\)"),
    (np.array([-1, 0]), "label -1 at row 0 is out of range"),
    (np.array([0.0, 1.5]), "row 1 holds \\[1.5\\], not an integer label"),
    (np.array([0, 1, 2]), "3 targets for 2 inputs"),
    (np.array([0.0, np.nan]), "contains NaN"),
])
def test_prepare_targets_errors(y, message: str) -> None:
    with pytest.raises(DlRuntimeError, match=message):
        D.prepare_targets(y, spec(), 2, "training target")


def test_binary_targets_must_be_probabilities() -> None:
    s = spec(y_shape=("N", 1), y_dtype=np.float32, classes=None, loss="binary_crossentropy")
    D.prepare_targets(np.array([[0.0], [1.0]]), s, 2)
    with pytest.raises(DlRuntimeError, match="value 2.0 at row 1 is out of range \\[0, 1\\] for binary_crossentropy"):
        D.prepare_targets(np.array([[0.0], [2.0]]), s, 2)


def test_several_inputs_by_name() -> None:
    s = DataSpec("m", (TensorSpec("a", np.dtype(np.float32), ("N", 1)), TensorSpec("b", np.dtype(np.float32), ("N", 2))),
                 (TensorSpec("y", np.dtype(np.float32), ("N", 1)),))
    a, b = D.prepare_inputs({"a": np.ones((3, 1)), "b": np.ones((3, 2))}, s)
    assert a.shape == (3, 1) and b.shape == (3, 2)
    with pytest.raises(DlRuntimeError, match="no array for 'b'"):
        D.prepare_inputs({"a": np.ones((3, 1))}, s)
    with pytest.raises(DlRuntimeError, match="'b' has 2 rows, 'a' has 3"):
        D.prepare_inputs([np.ones((3, 1)), np.ones((2, 2))], s)
    with pytest.raises(DlRuntimeError, match="takes 2 arrays \\(a, b\\)"):
        D.prepare_inputs(np.ones((3, 1)), s)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("size", [1, 10, 100_000, (1 << 18) * 2 + 3])
def test_all_finite_is_exact_even_when_a_sum_would_overflow(size, dtype) -> None:
    from runtime.data import _FINITE_CHUNK, all_finite

    huge = np.finfo(dtype).max
    big = np.full(size, huge, dtype)                 # finite values whose sum overflows
    big[::3] = -huge
    big[1::7] = -0.0
    big[2::11] = np.finfo(dtype).smallest_subnormal
    assert all_finite(big) and all_finite(big.reshape(1, size)) and all_finite(big[::2])
    places = {0, size // 2, size - 1, min(_FINITE_CHUNK, size - 1), min(_FINITE_CHUNK - 1, size - 1)}
    for bad in (np.inf, -np.inf, np.nan):
        for where in places:
            spoiled = big.copy()
            spoiled[where] = bad
            assert not all_finite(spoiled), (bad, where)
            assert not all_finite(spoiled.reshape(size, 1))
            assert all_finite(spoiled[where + 1:]) and all_finite(spoiled[:where])
            if where % 2 == 0:
                assert not all_finite(spoiled[::2])      # not contiguous
    if size > 1:
        assert not all_finite(np.array([np.inf, -np.inf] * (size // 2), dtype))
    assert all_finite(np.zeros((0, 784), dtype))
