"""The GEMM library (compiler/codegen/library.py, runtime/library.py) and compile timings.

A module's object leaves the GEMM drivers out and calls them in a library
object compiled once per machine; these tests check that such code computes
what a stand-alone object computes, bit for bit, that the library comes from
disk in a later process, that a module is never linked without it, and that
``runtime.compile``'s timings account for its stages.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import runtime
import runtime.library as library
from compiler.codegen.driver import compile_to_object, lower_module
from compiler.codegen.library import LibrarySpec, driver_name, shallow_name
from compiler.codegen.llvm import emit_module
from compiler.codegen.target import CodegenOptions
from compiler.diagnostics import DlRuntimeError
from compiler.ir.builder import new_function
from compiler.ir.core import Module
from compiler.ir.types import DType, TensorType
from runtime.compiled import CompiledModule, load_compiled
from runtime.native import NativeLibrary

F32, F64 = DType.f32, DType.f64


def matmuls() -> Module:
    """Products of f32 and f64 in both B layouts, through every path of the driver: narrow,
    dot, small, packed and shallow, with an epilogue and without (M from 1 to 70)."""
    f, b = new_function("mm", [("a", TensorType(F32, ("M", 37))), ("w", TensorType(F32, (37, 50))),
                               ("v", TensorType(F32, (9, 37))), ("d", TensorType(F64, ("M", 5))),
                               ("e", TensorType(F64, (5, 21)))])
    a, w, v, d, e = f.params
    f.outputs = [b.tanh(b.matmul(a, w)), b.matmul(a, b.transpose(v, perm=[1, 0])), b.matmul(d, e),
                 b.matmul(a, w)]
    return Module([f])


def arguments(m: int) -> list[np.ndarray]:
    rng = np.random.default_rng(m)
    return [rng.standard_normal((m, 37)).astype(np.float32), rng.standard_normal((37, 50)).astype(np.float32),
            rng.standard_normal((9, 37)).astype(np.float32), rng.standard_normal((m, 5)),
            rng.standard_normal((5, 21))]


def test_code_linked_with_the_library_computes_what_a_standalone_object_does(tmp_path):
    split = runtime.compile(matmuls(), cache=False, passes="")
    assert split.gemm_library is not None and split.gemm_library[0].dtypes == ("f32", "f64")
    options = CodegenOptions()
    obj, infos = compile_to_object(split.module, options)
    whole = CompiledModule(NativeLibrary(obj), infos, [obj], options.target)
    for m in (1, 3, 16, 70):
        for got, want in zip(split.mm(*arguments(m)), whole.mm(*arguments(m))):
            np.testing.assert_array_equal(got, want)          # bit for bit
    # an AOT directory carries the library beside the module
    out = split.save(tmp_path / "aot")
    assert (out / "gemm_library.o").exists()
    for got, want in zip(load_compiled(out).mm(*arguments(5)), whole.mm(*arguments(5))):
        np.testing.assert_array_equal(got, want)


def test_a_module_declares_the_plain_shallow_function_and_the_library_defines_it():
    # a shallow product without an epilogue (x @ w, K = 37) calls the library's shallow
    # function: the module only declares it, the library exports it
    options = CodegenOptions()
    text = str(emit_module(lower_module(matmuls(), options), options, library=True))
    name = shallow_name(F32, options.lanes)
    assert f'declare void @"{name}.' in text
    assert f'define internal void @"{name}' not in text
    spec = runtime.compile(matmuls(), cache=False, passes="").gemm_library[0]
    assert f"{name}.{spec.version}" in spec.symbols()


def test_the_library_comes_from_disk_and_is_built_once(tmp_path, monkeypatch):
    monkeypatch.setenv("DLC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(library, "_CODE", {})
    first = runtime.compile(matmuls(), cache=False, passes="")
    assert any("GEMM library (compile" in stage for stage in first.timings.stages)
    entries = sorted(p.name for p in tmp_path.iterdir())
    assert entries == [first.gemm_library[0].key() + ".dlco"]     # the library alone (cache=False)

    def fail(*args, **kwargs):
        raise AssertionError("the GEMM library was compiled again")

    monkeypatch.setattr(library, "_CODE", {})                       # a new process, as far as it knows
    monkeypatch.setattr(library, "library_object", fail)
    again = runtime.compile(matmuls(), cache=False, passes="")
    assert not any("GEMM library (compile" in stage for stage in again.timings.stages)
    assert again.gemm_library[1] == first.gemm_library[1]


def test_a_library_without_a_symbol_the_module_needs_is_refused():
    compiled = runtime.compile(matmuls(), cache=False, passes="")
    spec, code = compiled.gemm_library
    # the code of one library described as another's (a version no compile made): its exports
    # are not the symbols that description names
    other = LibrarySpec(spec.dtypes, spec.lanes, "0123456789abcdef")
    with pytest.raises(DlRuntimeError, match="lacks"):
        library.link_gemm_library(other, code)


@pytest.mark.parametrize("bad", [{}, {"format": "dlc-gemm-library-1", "dtypes": ["f32"], "lanes": 16},
                                 {"format": "dlc-gemm-library-1", "dtypes": ["f99"], "lanes": 16,
                                  "version": "0" * 16},
                                 {"format": "dlc-gemm-library-1", "dtypes": ["f32"], "lanes": True,
                                  "version": "0" * 16},
                                 {"format": "dlc-gemm-library-1", "dtypes": ["f32"], "lanes": 16,
                                  "version": "../../x"}])
def test_a_library_description_is_checked(bad):
    with pytest.raises(ValueError):
        LibrarySpec.from_json(bad)


def test_timings_cover_every_stage_from_source_to_callable(capsys):
    compiled = runtime.compile("examples/xor.dl", cache=False, timings=True)
    stages = compiled.timings.stages
    for stage in ("frontend", "pass autodiff", "IR verifier", "loop lowering", "LLVM IR build",
                  "LLVM IR text", "LLVM parse and verify", "LLVM optimization", "machine code",
                  "native load and link"):
        assert stage in stages, stage
    assert all(seconds >= 0 for seconds in stages.values())
    # the stages are disjoint parts of the total: together they never exceed it
    assert sum(stages.values()) <= compiled.timings.total
    assert compiled.timings.unattributed >= 0
    report = capsys.readouterr().err
    assert "Compile time report" in report and "LLVM optimization" in report and "(unattributed)" in report


# Every stage a cold compile passes through, from the source to a callable (the GEMM
# library's are the ones of its first use in a process: read, or compiled and written).
COLD_STAGES = {"target detection", "cache lookup", "frontend", "IR verifier", "pass manager", "loop lowering",
               "LLVM IR build", "LLVM IR text", "LLVM parse and verify", "LLVM optimization", "machine code",
               "native load and link", "garbage collection"}
LIBRARY_STAGES = {"GEMM library (cache read)", "GEMM library (compile, once per machine)",
                  "GEMM library (cache write)"}


def test_timings_name_the_complete_set_of_stages(tmp_path):
    from compiler.passes.manager import parse_pipeline

    passes = {f"pass {name}" for name in parse_pipeline("default")}
    uncached = runtime.compile("examples/xor.dl", cache=False).timings.stages
    assert COLD_STAGES | passes <= set(uncached) <= COLD_STAGES | passes | LIBRARY_STAGES
    cached = runtime.compile("examples/xor.dl", cache=tmp_path).timings.stages
    assert COLD_STAGES | passes | {"cache write"} <= set(cached) <= COLD_STAGES | passes | LIBRARY_STAGES | {
        "cache write"}
    for stages in (uncached, cached):
        assert all(seconds >= 0 for seconds in stages.values())


def test_a_cache_hit_reports_its_lookup(tmp_path):
    runtime.compile("examples/xor.dl", cache=tmp_path)
    hit = runtime.compile("examples/xor.dl", cache=tmp_path)
    assert list(hit.timings.stages) == ["target detection", "cache lookup", "garbage collection"]
    assert sum(hit.timings.stages.values()) <= hit.timings.total


def test_timings_must_be_a_bool():
    with pytest.raises(TypeError, match="timings"):
        runtime.compile("examples/xor.dl", cache=False, timings="yes")


def test_every_dtype_has_a_driver_name_of_its_own():
    names = {driver_name(d, 16, t) for d in DType for t in (False, True)}
    assert len(names) == 2 * len(DType)


def test_kernels_stay_functions_of_their_own_and_the_entry_point_is_not_optimized():
    # compile time: O3 inlined every kernel into the entry point and optimized it all again
    # there; the entry point only loads arguments, allocates the workspace and calls kernels
    from compiler.codegen.driver import stage_text
    from compiler.codegen.llvm import entry_symbol

    module = matmuls()
    entry = entry_symbol("mm")
    emitted = stage_text(module, "llvm")
    define = next(line for line in emitted.splitlines() if line.startswith("define") and f'@"{entry}"(' in line)
    assert "optnone" in define and "noinline" in define
    optimized = stage_text(module, "llvm-opt")
    kernels = re.findall(rf"^define .*@{entry}\.k\d+\(", optimized.replace('"', ""), re.MULTILINE)
    assert len(kernels) >= 4                    # each product's kernel, none inlined
    compiled = runtime.compile(module, cache=False, passes="")
    for got, want in zip(compiled.mm(*arguments(6)), _reference(arguments(6))):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _reference(args: list[np.ndarray]) -> list[np.ndarray]:
    a, w, v, d, e = args
    return [np.tanh(a @ w), a @ v.T, d @ e, a @ w]
