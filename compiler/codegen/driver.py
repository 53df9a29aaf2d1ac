"""The codegen driver: dl module -> loop IR -> LLVM IR -> optimized -> object code.

Every stage can be looked at (``dlc ir FILE --stage loops|llvm|llvm-opt|asm``)::

    programs = lower_module(module)                 # loop IR
    ir_mod   = emit_module(programs, options)       # llvmlite.ir, unoptimized
    ref      = optimize(ir_mod, options)            # verified, then O3 without unrolling
    obj      = object_code(ref, options)            # ELF bytes

:func:`compile_module` does all of it and returns the object code (a large module
cut into parts compiled on threads of their own: one object per part,
:func:`machine_code`) and the :class:`FunctionInfo` of each entry point (what the
runtime needs to call it, also written to an AOT manifest);
:func:`compile_to_object` makes one object that stands alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import llvmlite.binding as llvm

from ..diagnostics import LoweringError
from ..ir.dims import shape_from_json, shape_to_json
from ..ir.types import Dim, DType, TensorType
from .target import CodegenOptions, ensure_llvm, new_target_machine, target_machine

if TYPE_CHECKING:
    from llvmlite import ir

    from ..ir.core import Function, Module
    from ..ops.reductions import NonEmptyAxes
    from ..passes.manager import PipelineReport
    from .library import LibrarySpec
    from .loops import Program
    from .split import Parts

# The lowering and LLVM emission modules (bufferize, loops, llvm, gemm ...) are imported by
# the functions that use them: loading cached object code needs only FunctionInfo, and a
# warm start should not pay for importing the code generator.

STAGES = ("loops", "llvm", "llvm-opt", "asm")

# LLVM's target machines and pass builders are not safe to share between threads.
_LLVM_LOCK = threading.Lock()
# Part 0's share of the kernels is smaller by this fraction of them: the time the calling
# thread spends printing and parsing it while the other parts are already being optimized.
HEAD_START = 0.07


class StageTimer:
    """Wall time per named stage of a compile: ``with timer("stage"): ...``; a stage
    entered twice adds up, ``stages`` keeps them in the order first entered.

    ``total`` runs from the timer's creation to :meth:`finish` (or to now): the stages
    are disjoint parts of it, and :meth:`report` shows what they leave unattributed."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self._start = time.perf_counter()
        self._end: float | None = None

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)

    def add(self, stage: str, seconds: float) -> None:
        """Charge ``seconds`` measured elsewhere to ``stage``."""
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds

    def add_earlier(self, stage: str, seconds: float) -> None:
        """Charge ``seconds`` spent before the timer was made (a process's start-up and
        imports) to ``stage``: :attr:`total` starts that much earlier."""
        self.add(stage, seconds)
        self._start -= seconds

    def add_pipeline(self, report: PipelineReport, seconds: float) -> None:
        """Charge a pass pipeline's run of ``seconds``: each pass, the IR verifier and the
        pass manager's own time, from the run's ``report``."""
        for record in report.records:
            self.add(f"pass {record.name}", record.seconds)
        self.add("IR verifier", report.input_verify_seconds + sum(r.verify_seconds for r in report.records))
        self.add("pass manager", seconds - report.total_seconds)

    def finish(self) -> None:
        """Stop the total clock."""
        self._end = time.perf_counter()

    @property
    def total(self) -> float:
        """Seconds from the timer's creation to :meth:`finish` (to now before it)."""
        return (self._end if self._end is not None else time.perf_counter()) - self._start

    @property
    def unattributed(self) -> float:
        """The part of :attr:`total` in no stage (the glue between them)."""
        return self.total - sum(self.stages.values())

    def report(self, title: str = "Compile time report") -> str:
        """The stages as a table laid out like ``--time-passes``'s (MLIR's ``-mlir-timing``)."""
        rule = "===" + "-" * 73 + "==="
        total = self.total
        lines = [rule, f"{'... ' + title + ' ...':^79}".rstrip(), rule,
                 f"  Total Execution Time: {total:.4f} seconds", "", "  ----Wall Time----  ----Name----"]
        rows = [*self.stages.items(), ("(unattributed)", self.unattributed)]
        for name, seconds in rows:
            lines.append(f"  {seconds:8.4f} ({100 * seconds / total if total > 0 else 0.0:5.1f}%)  {name}")
        lines.append(f"  {total:8.4f} (100.0%)  Total")
        return "\n".join(lines) + "\n"


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
    # The size plan (compiler/ir/sizes.py), checked at each call before native code runs:
    # (what, bytes per element, shape) of every symbolic-size tensor and loop nest, and
    # the workspace's regions as (bytes per element, shape): temporaries, packing bounds.
    sizes: tuple[tuple[str, int, tuple[Dim, ...]], ...] = ()
    temps: tuple[tuple[int, tuple[Dim, ...]], ...] = ()
    packing: tuple[tuple[int, tuple[Dim, ...]], ...] = ()

    # preconditions on dim values the runtime checks before calling: reductions without an
    # identity (max, min, argmax) over symbolic dims, which must not be empty
    nonempty: tuple[NonEmptyAxes, ...] = ()
    checks: tuple[str, ...] = ()              # status 2 + i means run-time check i failed

    @staticmethod
    def of(func: Function, program: Program | None = None, lanes: int = 1) -> FunctionInfo:
        from ..ops.reductions import NonEmptyAxes
        from .llvm import entry_symbol, workspace_regions
        from .loops import kernel_str, size_checks

        names = [p.name or f"arg{i}" for i, p in enumerate(func.params)]
        index = {n: i for i, n in enumerate(names)}
        out_names = list(func.output_names) + [None] * (len(func.outputs) - len(func.output_names))
        inplace = tuple((int(o), index[p]) for o, p in func.attrs.get("inplace", ()) or ())
        kernels = tuple(kernel_str(k).splitlines()[0] for k in program.kernels) if program else ()
        temps, packing = workspace_regions(program, lanes) if program else ([], [])
        nonempty = (NonEmptyAxes.of(op) for op in func.ops)
        checks = tuple(program.checks.values()) if program else ()
        return FunctionInfo(func.name, entry_symbol(func.name),
                            tuple(zip(names, (p.type for p in func.params))),
                            tuple(zip(out_names, (v.type for v in func.outputs))),
                            tuple(func.symbols), inplace, kernels,
                            tuple(size_checks(program)) if program else (), tuple(temps), tuple(packing),
                            tuple(dict.fromkeys(c for c in nonempty if c is not None)), checks)

    def check_dims(self, bindings: dict[str, int]) -> None:
        """Raise the :class:`DlRuntimeError` the interpreter would for these dim values
        (a max, min or argmax over an empty axis) -- before native code runs."""
        for check in self.nonempty:
            check.check(bindings)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "symbol": self.symbol,
                "params": [{"name": n, **_type_json(t)} for n, t in self.params],
                "outputs": [{"name": n, **_type_json(t)} for n, t in self.outputs],
                "symbols": list(self.symbols), "inplace": [list(p) for p in self.inplace],
                "kernels": list(self.kernels),
                "sizes": [[what, size, shape_to_json(shape)] for what, size, shape in self.sizes],
                "temps": [[size, shape_to_json(shape)] for size, shape in self.temps],
                "packing": [[size, shape_to_json(shape)] for size, shape in self.packing],
                "nonempty": [c.to_json() for c in self.nonempty], "checks": list(self.checks)}

    @staticmethod
    def from_json(d: Any) -> FunctionInfo:
        """The inverse of :meth:`to_json`, for JSON read from a file: every field is
        checked, and a :class:`TypeError` or :class:`ValueError` names the one that is wrong."""
        name = _field(d, "name", str, "function")
        where = f"function {name!r}"
        params = tuple((_field(p, "name", str, f"{where}: a parameter"), _type_from_json(p, where))
                       for p in _list(d, "params", where))
        outputs = tuple((_field(o, "name", (str, type(None)), f"{where}: an output"), _type_from_json(o, where))
                        for o in _list(d, "outputs", where))
        symbols = tuple(_item(s, str, f"{where}: field 'symbols'") for s in _list(d, "symbols", where))
        inplace = tuple(_pair(p, len(outputs), len(params), where) for p in _list(d, "inplace", where))
        kernels = tuple(_item(k, str, f"{where}: field 'kernels'") for k in _list(d, "kernels", where, ()))
        sizes = tuple((_item(e[0], str, f"{where}: field 'sizes'"), *_size_entry(e[1:], f"{where}: field 'sizes'"))
                      for e in _list(d, "sizes", where) if _is_list(e, 3, f"{where}: field 'sizes'"))
        temps = tuple(_size_entry(e, f"{where}: field 'temps'")
                      for e in _list(d, "temps", where) if _is_list(e, 2, f"{where}: field 'temps'"))
        packing = tuple(_size_entry(e, f"{where}: field 'packing'")
                        for e in _list(d, "packing", where) if _is_list(e, 2, f"{where}: field 'packing'"))
        nonempty = tuple(_nonempty(c, f"{where}: field 'nonempty'") for c in _list(d, "nonempty", where, ()))
        checks = tuple(_item(c, str, f"{where}: field 'checks'") for c in _list(d, "checks", where, ()))
        return FunctionInfo(name, _field(d, "symbol", str, where), params, outputs, symbols, inplace, kernels,
                            sizes, temps, packing, nonempty, checks)


# The digest of a module's signatures is compiled into its object code as this constant,
# so the runtime can check that an object is the one compiled for the signatures it is
# given (a cache entry or AOT manifest naming another module's object is refused).
SIGNATURE_SYMBOL = "dlc_signatures_sha256"


def signature_digest(infos: list[FunctionInfo], library: LibrarySpec | None = None) -> bytes:
    """sha256 of the functions' signatures (their canonical JSON) and of the GEMM library
    the object calls, if any."""
    signatures: Any = [i.to_json() for i in infos]
    if library is not None:
        signatures = {"functions": signatures, "library": library.to_json()}
    text = json.dumps(signatures, sort_keys=True)
    return hashlib.sha256(text.encode()).digest()


def _type_json(t: TensorType) -> dict[str, Any]:
    return {"dtype": t.dtype.value, "shape": shape_to_json(t.shape)}


def _type_from_json(d: Any, where: str) -> TensorType:
    dtype = _field(d, "dtype", str, where)
    if dtype not in {t.value for t in DType}:
        raise ValueError(f"{where}: field 'dtype' is {dtype!r}, not a dtype")
    shape = _shape(_list(d, "shape", where), f"{where}: field 'shape'")
    if any(isinstance(x, int) and x < 0 for x in shape):
        raise ValueError(f"{where}: field 'shape' has a negative dim: {list(shape)}")
    return TensorType(DType(dtype), shape)


def _field(d: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(d, dict):
        raise TypeError(f"{where}: expected a JSON object, got {type(d).__name__}")
    if key not in d:
        raise ValueError(f"{where}: missing field '{key}'")
    return _item(d[key], kind, f"{where}: field '{key}'")


def _item(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, kind):     # JSON true is no int
        raise TypeError(f"{where} has a {type(value).__name__} ({value!r:.40}) of the wrong type")
    return value


def _list(d: Any, key: str, where: str, default: list | tuple | None = None) -> list:
    if default is not None and isinstance(d, dict) and key not in d:
        return list(default)
    return _field(d, key, list, where)


def _nonempty(d: Any, where: str) -> NonEmptyAxes:
    """One ``nonempty`` precondition, checked."""
    from ..ops.reductions import NonEmptyAxes

    op = _field(d, "op", str, where)
    operand = _type_from_json(d, where)
    axes = tuple(_item(a, int, where) for a in _list(d, "axes", where))
    return NonEmptyAxes(op, operand, axes)


def _is_list(value: Any, length: int, where: str) -> bool:
    if not isinstance(value, list) or len(value) != length:
        raise ValueError(f"{where} holds {value!r:.60}, not a list of {length}")
    return True


def _size_entry(entry: list, where: str) -> tuple[int, tuple[Dim, ...]]:
    """``[bytes per element, shape]`` of the size plan, checked."""
    size = _item(entry[0], int, where)
    shape = entry[1]
    if not isinstance(shape, list):
        raise TypeError(f"{where} has a shape of type {type(shape).__name__}, not a list")
    return size, _shape(shape, where)


def _shape(items: list, where: str) -> tuple[Dim, ...]:
    """A shape's dims: ints, symbols and dim expressions (``max(N-1,0)``) as text."""
    try:
        return shape_from_json(items)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{where}: {e}") from None


def _pair(p: Any, n_outputs: int, n_params: int, where: str) -> tuple[int, int]:
    if not (isinstance(p, list) and len(p) == 2 and all(isinstance(i, int) and not isinstance(i, bool)
                                                        for i in p)
            and 0 <= p[0] < n_outputs and 0 <= p[1] < n_params):
        raise ValueError(f"{where}: field 'inplace' holds {p!r}, not an (output, parameter) index pair")
    return (p[0], p[1])


def lower_module(module: Module, options: CodegenOptions | None = None) -> list[Program]:
    """Loop IR for every function of ``module``."""
    from .bufferize import lower_function

    options = options or CodegenOptions()
    return [lower_function(f, fuse=options.fuse, plan=options.plan_memory, options=options) for f in module.functions]


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


def optimize(mod: ir.Module, options: CodegenOptions, timer: StageTimer | None = None) -> llvm.ModuleRef:
    """Parse and verify ``mod``, merge identical functions, then run LLVM's O3 pipeline
    (loop and SLP vectorizers on, loop unroller off): the whole module at once
    (:func:`machine_code` cuts a large one into parts first).

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
    timer = timer or StageTimer()
    ensure_llvm()
    calls_through_got(mod)
    with timer("LLVM IR text"):
        text = str(mod)
    with _LLVM_LOCK:
        with timer("LLVM parse and verify"):
            ref = _parse(text, options)
        pb, merge, o3 = _pipeline(options, target_machine(options))
        with timer("LLVM optimization"):
            if merge is not None:
                merge.run(ref, pb)
            o3.run(ref, pb)
    return ref


def machine_code(mod: ir.Module, options: CodegenOptions, timer: StageTimer | None = None,
                 parallel: bool = True) -> list[bytes]:
    """Object code for ``mod``: one ELF object (:func:`optimize`, then :func:`object_code`),
    or, with ``parallel`` and more than one thread (``threads.num_threads``), for a module
    with enough kernels, one object per part (``split.py``), each optimized and compiled on
    a thread of its own.  The objects of one module are loaded together (one engine:
    ``runtime/native.py``), where they find each other's symbols."""
    timer = timer or StageTimer()
    threads = _compile_threads() if parallel and options.opt_level >= 1 else 1
    if threads > 1:
        from .split import split

        ensure_llvm()
        calls_through_got(mod)                      # (optimize does it for the whole module)
        parts = split(mod, threads, head_start=HEAD_START)
        if parts is not None:
            objects = _compile_parts(parts, options, timer)
            if objects is not None:
                return objects
    return [object_code(optimize(mod, options, timer), options, timer)]


def calls_through_got(mod: ir.Module) -> None:
    """Every function ``mod`` declares (the C library's, the GEMM library's) called through
    a GOT entry (``nonlazybind``; the ``RtLibUseGOT`` flag for the calls LLVM makes itself,
    ``memset`` and the like), never through a call stub: ``clang -fno-plt``.  Idempotent.

    MCJIT's loader reserves an object's memory before it links it and counts the GOT
    entries of GOT relocations, but not the one each call stub takes: an object with no
    data of its own that called out through a stub would be linked into memory that was
    never reserved, and llvmlite aborts the process there ("All memory must be
    pre-allocated").  A part of a module compiled in parts (``split.py``) can be such an
    object.  A call through the GOT costs what a call through a stub does."""
    from llvmlite import ir as llir

    for fn in mod.functions:
        if not fn.blocks and not fn.name.startswith("llvm."):
            fn.attributes.add("nonlazybind")
    flag = [llir.Constant(llir.IntType(32), 7), "RtLibUseGOT", llir.Constant(llir.IntType(32), 1)]
    flags = mod.add_named_metadata("llvm.module.flags")
    if not any('"RtLibUseGOT"' in str(op) for op in flags.operands):
        mod.add_named_metadata("llvm.module.flags", flag)


def _parse(text: str, options: CodegenOptions, context: Any = None) -> llvm.ModuleRef:
    """``text`` parsed (into ``context``, default LLVM's global one) and verified, for the target."""
    ref = llvm.parse_assembly(text, context=context)
    try:
        ref.verify()
    except RuntimeError as e:      # a codegen bug, never a user error
        raise LoweringError(f"internal error: generated LLVM IR does not verify: {e}") from None
    ref.triple = options.target.triple
    ref.data_layout = str(target_machine(options).target_data)
    return ref


def _pipeline(options: CodegenOptions, tm: llvm.TargetMachine) -> tuple[Any, Any, Any]:
    """(pass builder, MergeFunctions pass manager or None below O1, O3 pass manager) on ``tm``."""
    pto = llvm.create_pipeline_tuning_options(speed_level=min(options.opt_level, 3))
    pto.loop_vectorization = options.opt_level >= 2
    pto.slp_vectorization = options.opt_level >= 2
    pto.loop_unrolling = False
    pb = llvm.create_pass_builder(tm, pto)
    merge = None
    if options.opt_level >= 1:
        merge = llvm.create_new_module_pass_manager()
        merge.add_merge_functions_pass()
    return pb, merge, pb.getModulePassManager()


def _compile_threads() -> int:
    """Threads a compile may optimize and compile on: the runtime's thread count
    (``DLC_NUM_THREADS``, else the CPUs this process may use), 1 where llvmlite's calls
    cannot run unlocked."""
    from .threads import num_threads

    return num_threads() if _unlocked_run() is not None and _unlocked_emit() is not None else 1


def _raw(name: str) -> Any:
    """llvmlite's C function ``name`` without the lock its Python wrapper takes around every
    call into LLVM (one process-wide lock: no two threads could work at once), or None
    where this llvmlite does not expose it with its argument types.  Each thread passes its
    own module, pass builder and target machine in a context of its own, which LLVM
    allows; ctypes lets the GIL go for the call."""
    raw = getattr(getattr(llvm, "ffi", None), "lib", None)
    fn = getattr(getattr(raw, "_lib", None), name, None)
    return fn if fn is not None and getattr(fn, "argtypes", None) else None


def _unlocked_run() -> Any:
    """``LLVMPY_RunNewModulePassManager(pass manager, module, pass builder)``, unlocked."""
    return _raw("LLVMPY_RunNewModulePassManager")


def _unlocked_emit() -> Callable[[Any, Any], bytes] | None:
    """``emit(target machine, module)``: the module's ELF object, as
    ``TargetMachine.emit_object`` makes it, without llvmlite's lock; None where llvmlite
    lacks one of the calls."""
    names = ("LLVMPY_TargetMachineEmitToMemory", "LLVMPY_GetBufferStart", "LLVMPY_GetBufferSize",
             "LLVMPY_DisposeMemoryBuffer")
    fns = [_raw(n) for n in names]
    if any(f is None for f in fns):
        return None
    to_memory, start, size, dispose = fns

    def emit(tm: Any, ref: Any) -> bytes:
        error = ctypes.c_char_p()
        buffer = to_memory(tm, ref, 1, ctypes.byref(error))
        if not buffer:
            message = (error.value or b"").decode(errors="replace")
            llvm.ffi.lib.LLVMPY_DisposeString(error)         # (the rare way: through the lock)
            raise LoweringError(f"internal error: LLVM could not emit object code: {message}")
        try:
            return ctypes.string_at(start(buffer), size(buffer))
        finally:
            dispose(buffer)

    return emit


def _compile_parts(parts: Parts, options: CodegenOptions, timer: StageTimer) -> list[bytes] | None:
    """Each part a module of its own (own LLVM context, target machine and pass builder),
    merged, optimized and compiled to an object on a thread of its own.  The last part is
    printed, parsed and started first; this thread prints and parses part 0 while the
    others work, then does part 0.  None when part 0 needs what no part exports
    (``split.Parts``): compile the whole module instead."""
    run, emit = _unlocked_run(), _unlocked_emit()
    if run is None or emit is None:
        return None
    errors: list[BaseException] = []
    objects: list[bytes] = [b""] * len(parts)

    def optimize_part(job: tuple[Any, ...]) -> None:
        _, ref, _, pb, merge, o3 = job
        if merge is not None:
            run(merge, ref, pb)
        run(o3, ref, pb)

    def work(p: int, job: tuple[Any, ...]) -> None:
        try:
            optimize_part(job)
            objects[p] = emit(job[2], job[1])
        except BaseException as e:                      # re-raised on the calling thread
            errors.append(e)

    jobs: dict[int, tuple[Any, ...]] = {}
    workers: list[threading.Thread] = []
    with _LLVM_LOCK, _backend_settings():
        try:
            for p in reversed(range(len(parts))):
                with timer("LLVM IR text"):
                    text = parts.text(p)
                if text is None:
                    return None
                with timer("LLVM parse and verify"):
                    context = llvm.create_context()
                    ref = _parse(text, options, context)
                    tm = new_target_machine(options)     # not shared between threads
                    jobs[p] = (context, ref, tm, *_pipeline(options, tm))
                if p:
                    workers.append(threading.Thread(target=work, args=(p, jobs[p]), name="dlc-llvm"))
                    workers[-1].start()
            with timer("LLVM optimization"):
                optimize_part(jobs[0])
            with timer("machine code"):
                objects[0] = emit(jobs[0][2], jobs[0][1])
                for w in workers:
                    w.join()
        finally:
            for w in workers:                           # (an early way out waits for them too)
                w.join()
    if errors:
        raise errors[0]
    return objects


def object_code(ref: llvm.ModuleRef, options: CodegenOptions, timer: StageTimer | None = None) -> bytes:
    """Machine code for the optimized module ``ref``, as ELF object bytes."""
    with (timer or StageTimer())("machine code"), _LLVM_LOCK, _backend_settings():
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
    """Object code for every function of ``module`` (GEMM drivers included: the object
    stands alone), and each entry point's facts."""
    objects, infos, _ = compile_module(module, options, library=False, parallel=False)
    return objects[0], infos


def compile_module(module: Module, options: CodegenOptions | None = None, *, library: bool = True,
                   timer: StageTimer | None = None, parallel: bool = True
                   ) -> tuple[list[bytes], list[FunctionInfo], LibrarySpec | None]:
    """Object code for every function of ``module`` (one object, or with ``parallel`` one
    per part: :func:`machine_code`), each entry point's facts, and the GEMM library the
    objects call (None: they call none).

    With ``library`` (the runtime's way) the GEMM drivers are left out of the
    object, which must be linked with :func:`~compiler.codegen.library.library_object`
    of the returned spec (``runtime/native.py`` does); without it the object stands
    alone.  ``timer`` is charged with each stage's wall time."""
    from .library import library_use

    options = options or CodegenOptions()
    timer = timer or StageTimer()
    with timer("loop lowering"):
        programs = lower_module(module, options)
        infos = [FunctionInfo.of(f, p, options.lanes) for f, p in zip(module.functions, programs)]
    with timer("LLVM IR build"):
        from .llvm import emit_module  # (its first import is part of the stage)

        mod = emit_module(programs, options, library=library)
        use = library_use(mod)
        spec = use.spec() if use is not None else None
        _embed_signatures(mod, infos, spec)
    return machine_code(mod, options, timer, parallel), infos, spec


def library_object(spec: LibrarySpec, options: CodegenOptions) -> bytes:
    """Object code of the GEMM library ``spec`` (``library.py``) under ``options``."""
    from .gemm import library_module

    return object_code(optimize(library_module(spec, options), options), options)


def _embed_signatures(mod: ir.Module, infos: list[FunctionInfo], library: LibrarySpec | None) -> None:
    """The constant ``SIGNATURE_SYMBOL``: :func:`signature_digest` of ``infos`` and ``library``."""
    from llvmlite import ir as llir

    digest = signature_digest(infos, library)
    ty = llir.ArrayType(llir.IntType(8), len(digest))
    g = llir.GlobalVariable(mod, ty, name=SIGNATURE_SYMBOL)
    g.global_constant = True
    g.initializer = llir.Constant(ty, bytearray(digest))


def stage_text(module: Module, stage: str, options: CodegenOptions | None = None) -> str:
    """The text of one codegen stage: ``loops``, ``llvm``, ``llvm-opt`` or ``asm``."""
    from .loops import print_program

    options = options or CodegenOptions()
    if stage == "loops":
        return "\n\n".join(print_program(p) for p in lower_module(module, options)) + "\n"
    mod = llvm_module(module, options)
    if stage == "llvm":
        return str(mod)
    ref = optimize(mod, options)     # the whole module at once: one text
    if stage == "llvm-opt":
        return str(ref)
    if stage == "asm":
        return assembly(ref, options)
    raise ValueError(f"unknown codegen stage '{stage}' (choose from {', '.join(STAGES)})")
