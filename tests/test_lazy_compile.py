"""A model's functions compile to native code at first use (runtime.model.LazyCompiled), one
native module each: load_model compiles nothing, predict compiles only predict, fit the
training step (and evaluate for validation); concurrent first uses compile once."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import runtime.model
from runtime.model import NativeBackend, load_model

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MODEL = """
model wide {
    input x: f32[N, 256]
    target y: i32[N]
    let h = dense(x, 512, activation=relu)
    output logits = dense(h, 4)
    loss sparse_categorical_crossentropy(logits, y, from_logits=true)
    optimizer sgd(lr=0.1)
}
"""


@pytest.fixture
def counted(monkeypatch):
    """Every native compile, by the function names of the module compiled."""
    seen: list[list[str]] = []
    real = runtime.model.native_compiler()

    def compile_module(module, **kwargs):
        seen.append([f.name for f in module.functions])
        return real(module, cache=False, **kwargs)

    monkeypatch.setattr(runtime.model, "native_compiler", lambda: compile_module)
    return seen


def _wide(tmp_path: Path):
    path = tmp_path / "wide.dl"
    path.write_text(MODEL)
    return load_model(path, seed=0, backend="native")


def test_each_function_compiles_at_first_use_and_only_then(counted, tmp_path):
    model = _wide(tmp_path)
    assert isinstance(model.backend, NativeBackend)
    assert counted == [] and model.backend.compiled.modules == {}
    assert model.backend.compile_seconds == 0.0
    assert "predict" in model.backend.compiled and "nonesuch" not in model.backend.compiled
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 256)).astype(np.float32)
    y = rng.integers(0, 4, 64).astype(np.int32)
    first = model.predict(x)
    assert counted == [["predict"]]
    seconds = model.backend.compile_seconds
    assert seconds > 0
    np.testing.assert_array_equal(model.predict(x), first)
    assert counted == [["predict"]]                       # compiled once
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert counted == [["predict"], ["train_step"]]
    model.evaluate(x, y)
    assert counted == [["predict"], ["train_step"], ["evaluate"]]
    assert model.backend.compile_seconds > seconds
    assert sorted(model.backend.compiled.modules) == ["evaluate", "predict", "train_step"]
    with pytest.raises(KeyError):
        model.backend.compiled["nonesuch"]


def test_lazy_results_equal_the_interpreter(tmp_path):
    native = _wide(tmp_path)
    interp = load_model(tmp_path / "wide.dl", seed=0, backend="interp")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((32, 256)).astype(np.float32)
    y = rng.integers(0, 4, 32).astype(np.int32)
    for m in (native, interp):
        m.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    for name, w in interp.weights.items():
        np.testing.assert_allclose(native.weights[name], w, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(native.predict(x), interp.predict(x), rtol=1e-4, atol=1e-4)


def test_concurrent_first_uses_compile_once(counted, tmp_path):
    model = _wide(tmp_path)
    x = np.ones((8, 256), np.float32)
    results: list[np.ndarray] = []
    barrier = threading.Barrier(4)

    def predict() -> None:
        barrier.wait()
        results.append(model.predict(x))

    workers = [threading.Thread(target=predict) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert counted == [["predict"]]
    assert len(results) == 4
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def _task_threads() -> set[str]:
    return {p.name for p in Path("/proc/self/task").iterdir()}


def test_thread_count_applies_to_functions_compiled_later(tmp_path):
    model = _wide(tmp_path)
    model.backend.compiled.set_num_threads(1)          # before predict is compiled
    before = _task_threads()
    big = np.ones((2048, 256), np.float32)             # 268M multiply-adds: split if allowed
    model.predict(big, batch_size=2048)
    assert _task_threads() == before                   # one thread: no worker started
    model.backend.compiled.set_num_threads(2)
    model.predict(big, batch_size=2048)
    assert len(_task_threads() - before) >= 1


def test_aot_export_compiles_the_whole_module(tmp_path):
    model = _wide(tmp_path)
    out = model.export(tmp_path / "aot", format="aot")
    assert (Path(out) / "module.o").exists()
    loaded = runtime.load_compiled(out)
    x = np.ones((3, 256), np.float32)
    np.testing.assert_allclose(loaded["predict"](*model.weights.values(), x), model.predict(x),
                               rtol=1e-6, atol=1e-6)
