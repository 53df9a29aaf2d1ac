"""A module through native code and through the interpreter, compared (``fuzz/oracle.py``).

:func:`check_module` compiles a module with ``runtime.compile`` (the default
pass pipeline, codegen options drawn from the case's seed) and calls every
function natively on two random input sets.  Each call is compared twice:

* **codegen**: native code against the interpreter running the module
  codegen received (after the pass pipeline);
* **passes**: that against the interpreter running the module before the
  pipeline -- skipped where the documented loss fusion
  (``compiler/passes/canonicalize.py``: cross-entropy of a softmax/sigmoid
  becomes the logits form, which differs where probabilities saturate)
  applies.

A function is compared only when its discontinuous ops can be trusted
(``trusted``: the generator proved them exact; otherwise none on floats).
Native calls run regardless, so a crash shows up either way.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from compiler.diagnostics import DlError
from compiler.ir.core import Function, Module
from compiler.ir.interpreter import interpret

from .oracle import (
    Mismatch,
    TooLarge,
    compare,
    float_discontinuities,
    precision_of,
    random_inputs,
    spread_reference,
    symbol_sizes,
    wide_reference,
)

if TYPE_CHECKING:
    from compiler.codegen.target import CodegenOptions


def check_module(module: Module, seed: int, trusted: set[str], wide: Module | None,
                 stats: dict[str, int]) -> None:
    """Run and compare every function of ``module`` (see the module docstring).

    ``wide`` is the same module with f32 widened to f64 (before the pipeline),
    the accuracy yardstick of :func:`fuzz.oracle.compare`, or None.
    """
    import runtime
    from compiler.passes import run_pipeline

    compiled = runtime.compile(module, cache=False, options=codegen_options(np.random.default_rng(seed)))
    optimized = compiled.module
    assert optimized is not None
    stats["native"] = 1
    wide_optimized = run_pipeline(wide, "default") if wide is not None else None
    for func in module.functions:
        if func.ops and func.name in compiled:
            rng = np.random.default_rng([seed, zlib.crc32(func.name.encode())])
            comparable = func.name in trusted or not float_discontinuities(func)
            for _ in range(2):
                check_call(func, compiled[func.name], optimized.get(func.name), wide_optimized,
                           rng, comparable, stats)


def check_call(func: Function, native_fn: object, optimized: Function, wide: Module | None,
               rng: np.random.Generator, comparable: bool, stats: dict[str, int]) -> None:
    """One call on random inputs, natively and in the interpreter (twice)."""
    sizes = symbol_sizes([func], rng)
    try:
        args = random_inputs(func, sizes, rng, specials=rng.random() < 0.35)
    except TooLarge:
        count(stats, "too_large")
        return
    native = native_fn(*[a.copy() for a in args])        # type: ignore[operator]
    native = list(native) if isinstance(native, tuple) else [native]
    count(stats, "native_calls")
    try:
        after = interpret(optimized, args)
        before = interpret(func, args)
    except DlError:
        return
    if not comparable:
        count(stats, "uncompared")
        return
    wide_ref = wide_reference(wide.get(func.name) if wide is not None and func.name in wide else None, args)
    spread = spread_reference(optimized, args, rng)
    where = f"@{func.name} (sizes {sizes})"
    precision = precision_of(func)
    try:
        compare_all(f"codegen: {where}", native, after, [wide_ref, spread], precision)
        if not loss_fusion(func):
            compare_all(f"passes: {where}", after, before, [wide_ref, spread], precision)
    except Mismatch as e:
        raise Mismatch(e.what, f"{e}\n{describe_args(func, args)}") from None
    count(stats, "compared")


def count(stats: dict[str, int], key: str) -> None:
    stats[key] = stats.get(key, 0) + 1


def compare_all(where: str, got: list[np.ndarray], ref: list[np.ndarray],
                yardsticks: list[list[np.ndarray] | None], precision: np.dtype | None) -> None:
    """:func:`compare` each output (``yardsticks``: the f64 and the spread references, each
    a list of outputs or None); the mismatch's kind says which oracle (codegen, passes)."""
    oracle = where.split(":")[0]
    wide, spread = (y if y is not None else [] for y in yardsticks)
    for i, (g, r) in enumerate(zip(got, ref)):
        w = wide[i] if i < len(wide) else None
        s = spread[i] if i < len(spread) else None
        try:
            compare(f"{where} output {i}", g, r, w, precision, s)
        except Mismatch as e:
            raise Mismatch(f"{oracle}: {e.what}", str(e)) from None


def loss_fusion(func: Function) -> bool:
    """Whether canonicalization may fuse a cross-entropy with its softmax/sigmoid in ``func``."""
    names = {op.name for op in func.ops}
    return any(n.endswith("crossentropy") for n in names) and bool(names & {"softmax", "sigmoid"})


def describe_args(func: Function, args: list[np.ndarray]) -> str:
    """The arguments of a mismatching call, for the finding's details."""
    lines = ["arguments:"]
    with np.printoptions(threshold=200, precision=9):
        for p, a in zip(func.params, args):
            lines.append(f"  {p.name}: {a.dtype} {list(a.shape)} = {a!r}")
    return "\n".join(lines)


def widened(text: str, f32: str, load: Callable[[str], Module]) -> Module | None:
    """``load`` of ``text`` with every f32 (found by the regex ``f32``) made f64: the
    oracle's accuracy yardstick; None when nothing widens or the result does not load."""
    wide = re.sub(f32, "f64", text)
    if wide == text:
        return None
    try:
        return load(wide)
    except DlError:
        return None


def codegen_options(rng: np.random.Generator) -> CodegenOptions:
    """Mostly the defaults; sometimes no fusion, no memory planning, other vector widths,
    lower optimisation levels or the dense-only GEMM."""
    from compiler.codegen.target import CodegenOptions

    if rng.random() < 0.5:
        return CodegenOptions()
    return CodegenOptions(opt_level=int(rng.choice([0, 1, 2, 3])), fuse=bool(rng.random() < 0.7),
                          vector_lanes=[None, 1, 4, 8, 16][int(rng.integers(5))],
                          plan_memory=bool(rng.random() < 0.7), skip_zeros=bool(rng.random() < 0.5))
