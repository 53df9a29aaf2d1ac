"""A module's kernels optimized and compiled in parts on several threads
(compiler/codegen/split.py), one object per part, loaded together.

The parts must compute exactly what the whole module computes (the same bits: a
training run gives the same weights), each part must be a module LLVM accepts on
its own, the objects must survive the cache and an AOT directory, and a compile
must still work where the parts cannot run in parallel.
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
    weights, objects = [], []
    for threads in (1, 2):
        monkeypatch.setenv("DLC_CACHE_DIR", str(tmp_path / f"threads{threads}"))
        monkeypatch.setattr(driver, "_compile_threads", lambda threads=threads: threads)
        model = runtime.load_model(path, seed=0)
        model.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=0)
        weights.append(model.get_weights())
        objects.append(len(model.backend.compiled.modules[TRAIN_STEP].objects))
        predicted = model.predict(x)
        weights[-1]["(predict)"] = predicted if isinstance(predicted, np.ndarray) else predicted[0]
    assert objects == [1, 2]                                    # whole, then parts
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
    assert len(compiled.objects) == 1
    x = np.array([[0, 1]], np.float32)
    params = {"hidden.kernel": np.ones((2, 2), np.float32), "hidden.bias": np.zeros(2, np.float32),
              "out.kernel": np.ones((2, 1), np.float32), "out.bias": np.zeros(1, np.float32)}
    out = compiled["predict"](**params, x=x)
    assert out.shape == (1, 1) and np.isfinite(out).all()


def _in_parts(monkeypatch, threads: int = 2) -> None:
    monkeypatch.setattr(driver, "_compile_threads", lambda: threads)


_XOR = {"hidden.kernel": np.array([[1.5, -2.0], [0.5, 1.0]], np.float32),
        "hidden.bias": np.array([0.25, -0.5], np.float32),
        "out.kernel": np.array([[2.0], [-1.0]], np.float32), "out.bias": np.array([0.125], np.float32)}
_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [0.5, -3.0]], np.float32)


def test_the_cache_keeps_every_part_and_refuses_sizes_that_do_not_add_up(tmp_path, monkeypatch):
    import json

    from runtime.cache import CacheWarning, ObjectCache

    _in_parts(monkeypatch)
    store = ObjectCache(tmp_path)
    first = runtime.compile("examples/xor.dl", cache=store)
    assert len(first.objects) == 2
    again = runtime.compile("examples/xor.dl", cache=store)      # a hit: both objects from disk
    assert again.objects == first.objects
    np.testing.assert_array_equal(again["predict"](**_XOR, x=_X), first["predict"](**_XOR, x=_X))
    path = first.cache_path
    entry = store.load(path.stem)
    assert entry.header["objects"] == [len(o) for o in first.objects]
    for sizes in ([len(entry.object_code)], [len(entry.object_code) - 1, 1, 1], [0, len(entry.object_code)],
                  "all", [True, len(entry.object_code) - 1]):
        header = {**entry.header, "objects": sizes}
        store.store(path.stem, entry.object_code, header)
        # one size for both: the first object alone, whose calls into the second lead nowhere
        with pytest.warns(CacheWarning, match="field 'objects'|defined nowhere"):
            fresh = runtime.compile("examples/xor.dl", cache=store)     # reported, dropped, compiled anew
        assert fresh.objects == first.objects, json.dumps(sizes)


def test_parts_reach_each_other_only_through_got_entries(monkeypatch):
    # the loader may put the objects of one module more than 2 GiB apart (a 32-bit offset
    # from one to a symbol of another would not reach), and reserves no room for the GOT
    # entries of call stubs (runtime/native.py)
    from runtime.native import elf_symbols

    _in_parts(monkeypatch)
    compiled = runtime.compile("examples/mnist_mlp.dl", cache=False)
    assert len(compiled.objects) == 2
    (defined0, used0, stubbed0), (defined1, used1, stubbed1) = map(elf_symbols, compiled.objects)
    assert used0 & defined1 and used1 & defined0             # kernels one way, the pool's state the other
    assert not stubbed0 and not stubbed1


def test_an_aot_directory_holds_every_part(tmp_path, monkeypatch):
    import ctypes
    import json

    from runtime.compiled import load_compiled

    _in_parts(monkeypatch)
    compiled = runtime.compile("examples/xor.dl", cache=False)
    assert len(compiled.objects) == 2
    want = compiled["predict"](**_XOR, x=_X)
    out = compiled.save(tmp_path / "aot")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["object"] == "module.o" and [p["object"] for p in manifest["parts"]] == ["module.1.o"]
    assert (out / "module.1.o").read_bytes() == compiled.objects[1]
    np.testing.assert_array_equal(load_compiled(out)["predict"](**_XOR, x=_X), want)
    if "shared_library" in manifest:             # a C compiler linked the parts into one library
        lib = ctypes.CDLL(str(out / manifest["shared_library"]))
        info = compiled["predict"].info
        args = [{**_XOR, "x": _X}[name] for name, _ in info.params]
        result = np.empty_like(want)
        buffers = (ctypes.c_void_p * (len(args) + 1))(*(a.ctypes.data for a in args), result.ctypes.data)
        assert getattr(lib, info.symbol)(buffers, (ctypes.c_int64 * 1)(len(_X))) == 0
        np.testing.assert_array_equal(result, want)
    part = out / "module.1.o"
    data = part.read_bytes()
    part.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(runtime.compiled.DlRuntimeError, match="checksum"):
        load_compiled(out)
    for parts in ("module.1.o", [{"object": "../module.1.o", "sha256": "0"}], ["module.1.o"]):
        (out / "manifest.json").write_text(json.dumps({**manifest, "parts": parts}))
        with pytest.raises(runtime.compiled.DlRuntimeError, match="parts"):
            load_compiled(out)
