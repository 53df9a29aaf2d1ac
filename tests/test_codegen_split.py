"""A module's kernels optimized in parts on several threads (compiler/codegen/split.py).

The parts must compute exactly what the whole module computes (the same bits: a
training run gives the same weights), each part must be a module LLVM accepts on
its own, and a compile must still work where the parts cannot run in parallel.
"""

from __future__ import annotations

import numpy as np
import pytest

import runtime
from compiler.codegen import driver
from compiler.codegen.driver import lower_module
from compiler.codegen.llvm import emit_module
from compiler.codegen.split import kernel_group, split
from compiler.codegen.target import CodegenOptions
from runtime.model import TRAIN_STEP


def _inputs(path: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    if path.endswith("mnist_cnn.dl"):
        return rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.int32)
    if path.endswith("mnist_mlp.dl"):
        return rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n, dtype=np.int32)
    return rng.random((n, 2), dtype=np.float32), rng.integers(0, 2, (n, 1)).astype(np.float32)


@pytest.mark.parametrize("path", ["examples/mnist_cnn.dl", "examples/mnist_mlp.dl", "examples/xor.dl"])
def test_parts_train_to_the_same_bits_as_the_whole_module(path, tmp_path, monkeypatch):
    x, y = _inputs(path, 40)
    weights, stages = [], []
    for threads in (1, 2):
        monkeypatch.setenv("DLC_CACHE_DIR", str(tmp_path / f"threads{threads}"))
        monkeypatch.setattr(driver, "_compile_threads", lambda threads=threads: threads)
        model = runtime.load_model(path, seed=0)
        model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
        weights.append(model.get_weights())
        stages.append(set(model.backend.compiled.modules[TRAIN_STEP].timings.stages))
        predicted = model.predict(x)
        weights[-1]["(predict)"] = predicted if isinstance(predicted, np.ndarray) else predicted[0]
    assert "LLVM link" not in stages[0] and "LLVM link" in stages[1]     # whole, then parts
    assert weights[0].keys() == weights[1].keys()
    for name, whole in weights[0].items():
        assert np.array_equal(whole, weights[1][name]), name


def _step_module(path: str):
    model = runtime.load_model(path, seed=0)
    from compiler.ir.core import Module

    module = model.backend.compiled.module
    return Module([module.get(TRAIN_STEP)], dict(module.attrs))


def test_each_part_is_a_module_of_its_own_and_every_kernel_has_one_part():
    import llvmlite.binding as llvm

    from compiler.codegen.target import ensure_llvm
    from compiler.passes.manager import run_pipeline

    options = CodegenOptions()
    module = run_pipeline(_step_module("examples/mnist_cnn.dl"), "default")
    mod = emit_module(lower_module(module, options), options, library=True)
    kernels = {f.name for f in mod.functions if f.blocks and ".k" in f.name}
    assert kernels and all(kernel_group(name) is not None for name in kernels)
    parts = split(mod, 2)
    assert parts is not None and len(parts) == 2
    assert min(parts.weights) > 0.5 * max(parts.weights)         # about equal halves
    ensure_llvm()
    defined: list[set[str]] = []
    for p in (1, 0):                                            # the order optimize prints them
        text = parts.text(p)
        assert text is not None
        ref = llvm.parse_assembly(text, context=llvm.create_context())
        ref.verify()                                            # stands alone: declares what it uses
        defined.insert(0, {f.name for f in ref.functions if not f.is_declaration})
    for name in kernels:                                        # every kernel in exactly one part
        assert sum(name in d for d in defined) == 1, name
    entry = [f.name for f in mod.functions if f.blocks and f.linkage == ""]
    assert all(name in defined[0] and name not in defined[1] for name in entry)


def test_a_small_module_stays_whole():
    options = CodegenOptions()
    from compiler.ir.builder import new_function
    from compiler.ir.core import Module
    from compiler.ir.types import DType, TensorType

    f, b = new_function("f", [("x", TensorType(DType.f32, ("N",)))])
    f.outputs = [b.exp(f.params[0])]
    mod = emit_module(lower_module(Module([f]), options), options, library=True)
    assert split(mod, 2) is None
    assert split(mod, 1) is None


def test_without_unlocked_calls_the_compile_is_whole_and_works(tmp_path, monkeypatch):
    monkeypatch.setattr(driver, "_unlocked_run", lambda: None)
    assert driver._compile_threads() == 1
    compiled = runtime.compile("examples/xor.dl", cache=False)
    assert "LLVM link" not in compiled.timings.stages
    x = np.array([[0, 1]], np.float32)
    params = {"hidden.kernel": np.ones((2, 2), np.float32), "hidden.bias": np.zeros(2, np.float32),
              "out.kernel": np.ones((2, 1), np.float32), "out.bias": np.zeros(1, np.float32)}
    out = compiled["predict"](**params, x=x)
    assert out.shape == (1, 1) and np.isfinite(out).all()
