"""runtime.compile: argument checks before every native call, the object cache,
AOT directories, concurrent calls, and every example (with its training step)
against the interpreter."""

from __future__ import annotations

import json
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

import runtime
from compiler.diagnostics import DlError
from compiler.ir.builder import new_function
from compiler.ir.core import Module
from compiler.ir.interpreter import interpret
from compiler.ir.types import DType, TensorType
from runtime.cache import CacheWarning, ObjectCache
from runtime.compiled import ArgumentTypeError, ArgumentValueError, load_compiled

F32, I64 = DType.f32, DType.i64
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def small_module() -> Module:
    """dense(x) = x @ w + b; step(w, g, lr) updates w in place; count(n) = n + 1."""
    f, b = new_function("dense", [("x", TensorType(F32, ("N", 784))), ("w", TensorType(F32, (784, 3))),
                                  ("b", TensorType(F32, (3,)))])
    x, w, bias = f.params
    f.outputs = [b.add(b.matmul(x, w), bias)]
    g, b2 = new_function("step", [("w", TensorType(F32, ("N", 4))), ("grad", TensorType(F32, ("N", 4))),
                                  ("lr", TensorType(F32, ()))])
    w2, grad, lr = g.params
    g.outputs = [b2.sub(w2, b2.mul(lr, grad)), b2.sum(grad)]
    g.attrs["inplace"] = ((0, "w"),)
    h, b3 = new_function("count", [("n", TensorType(I64, ("M",)))])
    h.outputs = [b3.add(h.params[0], b3.constant(1, I64))]
    return Module([f, g, h])


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dlc-cache")


@pytest.fixture(scope="module")
def mod(cache_dir):
    return runtime.compile(small_module(), cache=cache_dir, passes="")


def arrays(n: int = 3):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((n, 784)).astype(np.float32), rng.standard_normal((784, 3)).astype(np.float32),
            rng.standard_normal(3).astype(np.float32))


# ---------------------------------------------------------------------------
# Calls


def test_positional_and_named_calls_and_module_access(mod):
    x, w, b = arrays()
    want = x @ w + b
    np.testing.assert_allclose(mod.dense(x, w, b), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(mod["dense"](x, b=b, w=w), want, rtol=1e-4, atol=1e-4)
    assert set(mod.functions) == {"dense", "step", "count"} and "step" in mod
    assert mod.dense.signature == "dense(x: f32[N, 784], w: f32[784, 3], b: f32[3]) -> (f32[N, 3])"
    assert mod.dense.entry_address > 0 and mod.dense.ctypes_signature is not None


def test_outputs_are_fresh_and_64_byte_aligned(mod):
    x, w, b = arrays(5)
    outs = [mod.dense(x, w, b) for _ in range(4)]
    assert all(o.ctypes.data % 64 == 0 and o.flags.c_contiguous for o in outs)
    assert len({o.ctypes.data for o in outs}) == 4


def test_raw_entry_point_with_ctypes(mod):
    x, w, b = arrays(2)
    out = np.empty((2, 3), np.float32)
    buffers = np.array([a.ctypes.data for a in (x, w, b, out)], dtype=np.uintp)
    dims = np.array([2], dtype=np.int64)
    fn = mod.dense.ctypes_signature(mod.dense.entry_address)
    assert fn(buffers.ctypes.data, dims.ctypes.data) == 0
    np.testing.assert_allclose(out, x @ w + b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("call,error,message", [
    (lambda m, x, w, b: m.dense(x, w), ArgumentTypeError, "takes 3 argument(s) (x, w, b), got 2"),
    (lambda m, x, w, b: m.dense(x, w, b, b), ArgumentTypeError, "takes 3 argument(s)"),
    (lambda m, x, w, b: m.dense(x, w, bias=b), ArgumentTypeError, "has no parameter 'bias'"),
    (lambda m, x, w, b: m.dense(x, w=w), ArgumentTypeError, "missing argument 'b'"),
    (lambda m, x, w, b: m.dense(x, w, b, x=x), ArgumentTypeError, "argument 'x' given twice"),
    (lambda m, x, w, b: m.dense(np.zeros((3, 785)), w, b), ArgumentTypeError,
     "argument 'x' expects f32[N, 784], got float64 (3, 785)"),
    (lambda m, x, w, b: m.dense(x.astype(np.int32), w, b), ArgumentTypeError, "int32 does not convert to float32"),
    (lambda m, x, w, b: m.dense(x, w, [1.0, 2.0, 3.0]), ArgumentTypeError, "must be a numpy array of f32[3]"),
    (lambda m, x, w, b: m.dense(x[0], w, b), ArgumentValueError, "expects f32[N, 784] (rank 2), got float32 (784,)"),
    (lambda m, x, w, b: m.dense(x, w[:-1], b), ArgumentValueError, "dim 0 is 783, not 784"),
    (lambda m, x, w, b: m.step(np.zeros((2, 4), np.float32), np.zeros((3, 4), np.float32), 0.1),
     ArgumentValueError, "dim 0 (N) is 3, but N = 2 from an earlier argument"),
    (lambda m, x, w, b: m.step(np.zeros((2, 4)), np.zeros((2, 4), np.float32), 0.1),
     ArgumentTypeError, "updated in place and must have dtype exactly float32"),
    (lambda m, x, w, b: m.step(np.zeros((4, 2), np.float32).T, np.zeros((2, 4), np.float32), 0.1),
     ArgumentValueError, "must be C-contiguous"),
    (lambda m, x, w, b: m.step(_readonly(np.zeros((2, 4), np.float32)), np.zeros((2, 4), np.float32), 0.1),
     ArgumentValueError, "is read-only"),
    (lambda m, x, w, b: m.step(*_aliased(), 0.1), ArgumentValueError,
     "'w' is updated in place and shares memory with argument 'grad'"),
    (lambda m, x, w, b: m.step(np.zeros((2, 4), np.float32), np.zeros((2, 4), np.float32), "0.1"),
     ArgumentTypeError, "argument 'lr' must be a numpy array of f32[]"),
    (lambda m, x, w, b: m.step(np.zeros((2, 4), np.float32), np.zeros((2, 4), np.float32), np.float64(0.1)),
     ArgumentTypeError, "argument 'lr' expects f32[], got float64 ()"),
])
def test_bad_arguments_never_reach_native_code(mod, call, error, message):
    x, w, b = arrays()
    with pytest.raises(error) as info:
        call(mod, x, w, b)
    assert message in str(info.value)
    assert isinstance(info.value, (TypeError, ValueError))


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _aliased() -> tuple[np.ndarray, np.ndarray]:
    buf = np.zeros((2, 4), np.float32)
    return buf, buf[:]


def test_safe_casts_scalars_and_non_contiguous_inputs(mod):
    x, w, b = arrays(4)
    wide = np.asfortranarray(x)                              # non-contiguous: copied
    np.testing.assert_allclose(mod.dense(wide, w, b), x @ w + b, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(mod.count(np.array([1, 2], np.int32)), [2, 3])   # i32 -> i64 is safe
    w2 = np.ones((2, 4), np.float32)
    new, total = mod.step(w2, np.full((2, 4), 2.0, np.float32), 0.25)           # Python float for f32[]
    assert new is w2 and total == 16.0
    np.testing.assert_array_equal(w2, np.full((2, 4), 0.5))


def test_empty_batches(mod):
    x, w, b = arrays(0)
    assert mod.dense(x, w, b).shape == (0, 3)
    new, total = mod.step(np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32), 1.0)
    assert new.shape == (0, 4) and total == 0.0


def test_concurrent_calls_from_two_threads(mod):
    rng = np.random.default_rng(1)
    w = rng.standard_normal((784, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    inputs = [rng.standard_normal((64, 784)).astype(np.float32) for _ in range(2)]
    errors: list[str] = []

    def work(x: np.ndarray) -> None:
        want = x @ w + b
        for _ in range(200):
            if not np.allclose(mod.dense(x, w, b), want, rtol=1e-4, atol=1e-4):
                errors.append("mismatch")
                return

    threads = [threading.Thread(target=work, args=(x,)) for x in inputs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# ---------------------------------------------------------------------------
# Object cache


def test_warm_compile_loads_from_the_cache_without_llvm(mod, cache_dir, monkeypatch):
    import runtime.compiled as compiled
    import runtime.library as library

    def fail(*args, **kwargs):
        raise AssertionError("the optimizer ran on a cache hit")

    monkeypatch.setattr(compiled, "compile_module", fail)
    monkeypatch.setattr(library, "library_object", fail)
    again = runtime.compile(small_module(), cache=cache_dir, passes="")
    x, w, b = arrays()
    np.testing.assert_array_equal(again.dense(x, w, b), mod.dense(x, w, b))
    assert ObjectCache(cache_dir).info()["entries"] >= 1


@pytest.mark.parametrize("damage", ["truncate", "garble", "foreign", "magic"])
def test_corrupt_cache_entries_are_discarded_and_rebuilt(tmp_path, damage):
    first = runtime.compile(small_module(), cache=tmp_path, passes="")
    path = first.cache_path
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garble":
        pos = len(data) - 100
        path.write_bytes(data[:pos] + bytes(b ^ 0xFF for b in data[pos:pos + 8]) + data[pos + 8:])
    elif damage == "foreign":
        header = data.index(b"{")
        path.write_bytes(data[:header] + data[header:].replace(path.stem.encode(), b"0" * 64, 1))
    else:
        path.write_bytes(b"ELF" + data[3:])
    with pytest.warns(CacheWarning, match="discarding"):
        again = runtime.compile(small_module(), cache=tmp_path, passes="")
    x, w, b = arrays()
    np.testing.assert_allclose(again.dense(x, w, b), x @ w + b, rtol=1e-4, atol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                     # rebuilt entry is good again
        runtime.compile(small_module(), cache=tmp_path, passes="")


def test_cache_info_and_clear(tmp_path):
    store = ObjectCache(tmp_path / "c")
    assert store.info()["entries"] == 0
    store.store("ab" * 32, b"object", {"functions": []})
    assert store.info()["entries"] == 1 and store.load("ab" * 32).object_code == b"object"
    assert store.clear() == 1 and store.info()["entries"] == 0


# ---------------------------------------------------------------------------
# AOT


def test_aot_directory_round_trip(mod, tmp_path):
    out = mod.save(tmp_path / "aot")
    manifest = json.loads((out / "manifest.json").read_text())
    assert [f["name"] for f in manifest["functions"]] == ["dense", "step", "count"]
    assert manifest["functions"][1]["inplace"] == [[0, 0]]
    assert manifest["functions"][0]["symbols"] == ["N"]
    loaded = load_compiled(out)
    x, w, b = arrays()
    np.testing.assert_array_equal(loaded.dense(x, w, b), mod.dense(x, w, b))
    if "header" in manifest:                     # a C compiler was there: the shared library works too
        import ctypes

        assert "int32_t dlc_dense(void **buffers, const int64_t *dims);" in (out / manifest["header"]).read_text()
        lib = ctypes.CDLL(str(out / manifest["shared_library"]))
        result = np.empty((3, 3), np.float32)
        buffers = (ctypes.c_void_p * 4)(x.ctypes.data, w.ctypes.data, b.ctypes.data, result.ctypes.data)
        assert lib.dlc_dense(buffers, (ctypes.c_int64 * 1)(3)) == 0
        np.testing.assert_array_equal(result, mod.dense(x, w, b))


def test_aot_refuses_tampered_or_foreign_code(mod, tmp_path):
    out = mod.save(tmp_path / "aot")
    obj = out / "module.o"
    data = obj.read_bytes()
    obj.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(runtime.compiled.DlRuntimeError, match="checksum"):
        load_compiled(out)
    out = mod.save(tmp_path / "aot2")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["target"]["features"] += ",+imaginary-feature"
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(runtime.compiled.DlRuntimeError, match="imaginary-feature"):
        load_compiled(out)


# ---------------------------------------------------------------------------
# Every example, and its training step (gradients + optimizer), against the interpreter


def example_module() -> Module:
    from compiler.passes import run_pipeline
    from compiler.train_step import build_train_step
    from frontend_dsl.api import compile_file

    merged = Module()
    for path in sorted(EXAMPLES.glob("*.dl")):
        module = compile_file(path)
        if "model" in module.attrs:
            build_train_step(module)
        module = run_pipeline(module, "default")
        for f in module.functions:
            f.name = f"{path.stem}.{f.name}"
            merged.add(f)
    return merged


def make_args(func, n: int, rng) -> list[np.ndarray]:
    """Well-conditioned inputs: small weights and data (so f32 logits stay O(1)), labels 0/1,
    non-negative optimizer state."""
    args = []
    for p in func.params:
        t = p.type
        shape = tuple(n if isinstance(d, str) else d for d in t.shape)
        if t.dtype.is_int:
            args.append(rng.integers(0, 2, shape).astype(t.dtype.np))
        elif any(s in (p.name or "") for s in ("velocity", "momentum", "rms", "adam", "average")):
            args.append(rng.uniform(0.0, 0.1, shape).astype(t.dtype.np))
        else:
            args.append(rng.uniform(-0.1, 0.1, shape).astype(t.dtype.np))
    return args


@pytest.fixture(scope="module")
def examples(cache_dir):
    return runtime.compile(example_module(), cache=cache_dir, passes="")


def test_every_example_function_matches_the_interpreter(examples):
    assert any(name.endswith("train_step") for name in examples.functions)
    for name, fn in examples.functions.items():
        func = examples.module.get(name)
        # each function's arguments from its own name, so adding an example changes no other's
        rng = np.random.default_rng([5, zlib.crc32(name.encode())])
        for n in (1, 7, 128):
            args = make_args(func, n, rng)
            try:
                want = interpret(func, [a.copy() for a in args])
            except DlError as e:            # char_gpt at T = 128 > its 64 positions: both refuse
                with pytest.raises(type(e)):
                    fn(*[a.copy() for a in args])
                continue
            got = fn(*[a.copy() for a in args])
            got = list(got) if isinstance(got, tuple) else [got]
            for i, (g, w) in enumerate(zip(got, want)):
                np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-5, err_msg=f"{name} output {i} N={n}")


# ---------------------------------------------------------------------------
# Documentation and profiling


def test_the_examples_in_docs_runtime_md_run(tmp_path, monkeypatch):
    import re

    monkeypatch.setenv("DLC_CACHE_DIR", str(tmp_path))
    text = (Path(__file__).resolve().parents[1] / "docs" / "runtime.md").read_text()
    namespace: dict = {}
    for block in re.findall(r"```python\n(.*?)```", text, re.S):
        exec(block, namespace)                  # the blocks assert their own results
    assert namespace["y"].shape == (4, 2)


def test_kernel_profile_counts_cycles_per_kernel():
    from compiler.codegen.target import CodegenOptions

    profiled = runtime.compile(small_module(), cache=False, passes="", options=CodegenOptions(profile=True))
    x, w, b = arrays(64)
    for _ in range(3):
        profiled.dense(x, w, b)
    profile = profiled.dense.kernel_profile(reset=True)
    assert [line.split(":")[0] for line, _ in profile] == ["matmul [M=N, N=3, K=784]"]
    assert all(cycles > 0 for _, cycles in profile)
    assert profiled.dense.kernel_profile()[0][1] == 0
    assert runtime.compile(small_module(), cache=False, passes="").dense.kernel_profile() is None


def test_in_place_overlap_is_judged_by_the_bytes_touched(mod):
    buf = np.zeros((6, 4), np.float32)
    new, _ = mod.step(buf[:2], buf[2:4], 1.0)             # neighbours in one buffer: fine
    assert new.base is buf
    with pytest.raises(ArgumentValueError, match="'w' is updated in place and shares memory with argument 'grad'"):
        mod.step(buf[1:3], buf[2:4], 1.0)                 # one row in common
