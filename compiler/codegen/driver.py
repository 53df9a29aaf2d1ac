"""The codegen driver: dl module -> loop IR -> LLVM IR -> optimized -> object code.

Every stage can be looked at (``dlc ir FILE --stage loops|llvm|llvm-opt|asm``)::

    programs = lower_module(module)                 # loop IR
    ir_mod   = emit_module(programs, options)       # llvmlite.ir, unoptimized
    ref      = optimize(ir_mod, options)            # verified, then O3 without unrolling
    obj      = object_code(ref, options)            # ELF bytes

:func:`compile_to_object` does all of it and returns the object code and the
:class:`FunctionInfo` of each entry point (what the runtime needs to call it,
also written to an AOT manifest).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import llvmlite.binding as llvm

from ..diagnostics import LoweringError
from ..ir.types import DType, TensorType
from .target import CodegenOptions, ensure_llvm, target_machine

if TYPE_CHECKING:
    from llvmlite import ir

    from ..ir.core import Function, Module
    from .loops import Program

# The lowering and LLVM emission modules (bufferize, loops, llvm, gemm ...) are imported by
# the functions that use them: loading cached object code needs only FunctionInfo, and a
# warm start should not pay for importing the code generator.

STAGES = ("loops", "llvm", "llvm-opt", "asm")

# LLVM's target machines and pass builders are not safe to share between threads.
_LLVM_LOCK = threading.Lock()


@dataclass(frozen=True)
class FunctionInfo:
    """The signature and ABI facts of one compiled entry point."""

    name: str
    symbol: str
    params: tuple[tuple[str, TensorType], ...]
    outputs: tuple[tuple[str | None, TensorType], ...]
    symbols: tuple[str, ...]
    inplace: tuple[tuple[int, int], ...]      # (output index, parameter index)
    kernels: tuple[str, ...] = ()             # one line of loop IR per kernel, in order
    checks: tuple[str, ...] = ()              # status 2 + i means run-time check i failed

    @staticmethod
    def of(func: Function, program: Program | None = None) -> FunctionInfo:
        from .llvm import entry_symbol
        from .loops import kernel_str

        names = [p.name or f"arg{i}" for i, p in enumerate(func.params)]
        index = {n: i for i, n in enumerate(names)}
        out_names = list(func.output_names) + [None] * (len(func.outputs) - len(func.output_names))
        inplace = tuple((int(o), index[p]) for o, p in func.attrs.get("inplace", ()) or ())
        kernels = tuple(kernel_str(k).splitlines()[0] for k in program.kernels) if program else ()
        checks = tuple(program.checks.values()) if program else ()
        return FunctionInfo(func.name, entry_symbol(func.name),
                            tuple(zip(names, (p.type for p in func.params))),
                            tuple(zip(out_names, (v.type for v in func.outputs))),
                            tuple(func.symbols), inplace, kernels, checks)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "symbol": self.symbol,
                "params": [{"name": n, **_type_json(t)} for n, t in self.params],
                "outputs": [{"name": n, **_type_json(t)} for n, t in self.outputs],
                "symbols": list(self.symbols), "inplace": [list(p) for p in self.inplace],
                "kernels": list(self.kernels), "checks": list(self.checks)}

    @staticmethod
    def from_json(d: dict[str, Any]) -> FunctionInfo:
        return FunctionInfo(d["name"], d["symbol"],
                            tuple((p["name"], _type_from_json(p)) for p in d["params"]),
                            tuple((o["name"], _type_from_json(o)) for o in d["outputs"]),
                            tuple(d["symbols"]), tuple((int(a), int(b)) for a, b in d["inplace"]),
                            tuple(d.get("kernels", ())), tuple(d.get("checks", ())))


def _type_json(t: TensorType) -> dict[str, Any]:
    return {"dtype": t.dtype.value, "shape": list(t.shape)}


def _type_from_json(d: dict[str, Any]) -> TensorType:
    return TensorType(DType(d["dtype"]), tuple(d["shape"]))


def lower_module(module: Module, options: CodegenOptions | None = None) -> list[Program]:
    """Loop IR for every function of ``module``."""
    from .bufferize import lower_function

    options = options or CodegenOptions()
    return [lower_function(f, fuse=options.fuse, plan=options.plan_memory) for f in module.functions]


def memory_report(programs: list[Program], bindings: dict[str, int]) -> str:
    """Per program: kernels, and the peak temporary bytes before and after memory planning
    (the workspace, GEMM packing panels aside), as formulas and at ``bindings``."""
    from .loops import nbytes, size_formula

    lines = []
    for prog in programs:
        plan = prog.memory
        before = plan.before if plan is not None else prog.temps
        after = [slot[0] for slot in plan.slots] if plan is not None else prog.temps
        where = ", ".join(f"{s}={bindings[s]}" for s in prog.symbols)
        lines.append(f"@{prog.name}: {len(prog.kernels)} kernels, {len(before)} temporaries "
                     f"in {len(after)} workspace slots"
                     + (f", {len(plan.inplace)} written in place over an operand" if plan else ""))
        for label, bufs in (("before planning", before), ("after planning", after)):
            total = sum(nbytes(b, bindings) for b in bufs)
            lines.append(f"  peak temporary bytes {label}: {size_formula(bufs)} = {total}"
                         + (f" at {where}" if where else ""))
    return "\n".join(lines) + "\n"


def llvm_module(module: Module, options: CodegenOptions | None = None) -> ir.Module:
    """Unoptimized LLVM IR for ``module``."""
    from .llvm import emit_module

    options = options or CodegenOptions()
    return emit_module(lower_module(module, options), options)


def optimize(mod: ir.Module, options: CodegenOptions) -> llvm.ModuleRef:
    """Parse and verify ``mod``, merge identical functions, then run LLVM's O3 pipeline
    (loop and SLP vectorizers on, loop unroller off).

    Merging first matters for compile time: the functions of one model share
    kernels (``predict``, ``loss``, ``evaluate`` and the training step all
    start with the same forward pass), emitted once per function; LLVM's
    MergeFunctions keeps one copy of each, so O3 and instruction selection
    see ~15% fewer functions on the MNIST model.

    The unroller is off because our loops are vectorised and blocked by hand
    (a GEMM micro-tile is 8 x 2 vectors of FMAs per step, a reduction keeps 4
    accumulators): on Zen 4 LLVM partially unrolls nearly every loop anyway,
    which doubled the optimized module (``bench/mlp_sgd.dl``: 21k
    instructions with it, 11k without) and with it the time of the later
    passes and of instruction selection, for no speed difference we could
    measure (docs/codegen.md, "Compile time").
    """
    ensure_llvm()
    with _LLVM_LOCK:
        ref = llvm.parse_assembly(str(mod))
        try:
            ref.verify()
        except RuntimeError as e:      # a codegen bug, never a user error
            raise LoweringError(f"internal error: generated LLVM IR does not verify: {e}") from None
        tm = target_machine(options)
        ref.triple = options.target.triple
        ref.data_layout = str(tm.target_data)
        pto = llvm.create_pipeline_tuning_options(speed_level=min(options.opt_level, 3))
        pto.loop_vectorization = options.opt_level >= 2
        pto.slp_vectorization = options.opt_level >= 2
        pto.loop_unrolling = False
        pb = llvm.create_pass_builder(tm, pto)
        if options.opt_level >= 1:
            merge = llvm.create_new_module_pass_manager()
            merge.add_merge_functions_pass()
            merge.run(ref, pb)
        pb.getModulePassManager().run(ref, pb)
    return ref


def object_code(ref: llvm.ModuleRef, options: CodegenOptions) -> bytes:
    with _LLVM_LOCK, _backend_settings():
        return bytes(target_machine(options).emit_object(ref))


def assembly(ref: llvm.ModuleRef, options: CodegenOptions) -> str:
    with _LLVM_LOCK, _backend_settings():
        return target_machine(options).emit_assembly(ref)


@contextlib.contextmanager
def _backend_settings() -> Iterator[None]:
    """LLVM's backend without loop strength reduction, for the duration of one emission.

    LSR rewrites the induction variables of every loop for the target's
    addressing modes; it was the costliest pass of the backend on the MNIST
    model (~30% of ``emit_object``; ~20% with the unroller off), and turning
    it off changed no speed we could measure.  It can only be switched off
    through a process-wide LLVM option, so it is switched off around our own
    emissions (under ``_LLVM_LOCK``) and back on afterwards, leaving any other
    user of LLVM in the process (numba) as it found it.
    """
    llvm.set_option("dlc", "-disable-lsr=true")
    try:
        yield
    finally:
        llvm.set_option("dlc", "-disable-lsr=false")


def compile_to_object(module: Module, options: CodegenOptions | None = None
                      ) -> tuple[bytes, list[FunctionInfo]]:
    """Object code for every function of ``module``, and each entry point's facts."""
    from .llvm import emit_module

    options = options or CodegenOptions()
    programs = lower_module(module, options)
    ref = optimize(emit_module(programs, options), options)
    infos = [FunctionInfo.of(f, p) for f, p in zip(module.functions, programs)]
    return object_code(ref, options), infos


def stage_text(module: Module, stage: str, options: CodegenOptions | None = None) -> str:
    """The text of one codegen stage: ``loops``, ``llvm``, ``llvm-opt`` or ``asm``."""
    from .loops import print_program

    options = options or CodegenOptions()
    if stage == "loops":
        return "\n\n".join(print_program(p) for p in lower_module(module, options)) + "\n"
    mod = llvm_module(module, options)
    if stage == "llvm":
        return str(mod)
    ref = optimize(mod, options)
    if stage == "llvm-opt":
        return str(ref)
    if stage == "asm":
        return assembly(ref, options)
    raise ValueError(f"unknown codegen stage '{stage}' (choose from {', '.join(STAGES)})")
