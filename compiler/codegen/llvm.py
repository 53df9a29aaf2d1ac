"""Loop IR -> LLVM IR, through ``llvmlite.ir.IRBuilder`` only.

Each :class:`~compiler.codegen.loops.Program` becomes one external entry
point with a fixed C ABI that is cheap to call::

    int32_t dlc_<fn>(void **buffers, const int64_t *dims);

``buffers`` holds the parameters' data pointers, then the outputs' (for an
in-place output, its parameter's pointer); ``dims`` the values of the
function's symbolic dims in ``Function.symbols`` order.  The result is 0, or
1 when the workspace could not be allocated, or ``2 + i`` when run-time check
``i`` of ``Program.checks`` failed (an index out of range): the entry point
returns right after the kernel computing that check, before any later kernel.

The prologue computes every temporary's byte offset from the dims and
allocates one 64-byte-aligned workspace (``aligned_alloc``) for all of them
and for the GEMM packing panels; the epilogue hands it back: each entry point
keeps its last workspace (up to 1 GiB) for the next call, so a training loop
neither allocates nor page-faults per step, and a concurrent call that finds
it in use allocates and frees its own.  Each kernel is an
internal function taking one ``noalias`` pointer per distinct memory it
touches (an in-place parameter and its output are one pointer) and the dim
values; LLVM inlines them into the entry point.
"""

from __future__ import annotations

import re

from llvmlite import ir

from ..diagnostics import LoweringError
from ..ir.types import Dim
from . import conv, gemm_lowp
from .attention import emit_attention
from .gemm import TASKS_PER_THREAD, emit_matmul, max_tasks, scratch_columns, scratch_elements, set_blocking, task_count
from .indexing import emit_scatter
from .kernels import KernelContext, emit_elementwise, emit_reduce
from .library import use_library
from .llvmutil import I8, I8P, I32, I64, has_loop, intrinsic, short_name, unoptimized
from .loops import Attention, Buffer, Conv, Elementwise, Kernel, Matmul, Pool, Program, Reduce, Scan, Scatter, TopK
from .pool import emit_pool
from .scan import emit_scan
from .sparse_gemm import enable_skip_zeros
from .storage import enable_half_instructions
from .target import CodegenOptions
from .threads import MAX_THREADS, MXCSR_FLUSH, fp_control, parallel_call, pool, set_fp_control
from .topk import emit_top_k

ALIGN = 64
# The largest workspace an entry point keeps between calls (bytes); a larger one is
# allocated and freed by each call.
KEEP_WORKSPACE = 1 << 30

Region = tuple[int, tuple[Dim, ...]]       # (bytes per element, shape)


def entry_symbol(name: str) -> str:
    """The C symbol of function ``name``'s entry point: ``dlc_`` + an identifier."""
    return "dlc_" + short_name(re.sub(r"[^0-9A-Za-z_]", "_", name), sep="_")


def profile_symbol(name: str) -> str:
    """The global holding function ``name``'s per-kernel cycle counters, when profiling."""
    return entry_symbol(name) + ".profile"


def emit_module(programs: list[Program], options: CodegenOptions, name: str = "dlc",
                library: bool = False) -> ir.Module:
    """One LLVM module holding an entry point per program.  With ``library``, the GEMM
    drivers are only declared (``library.py``: ``library_use(mod).spec()`` says which
    library object to link beside the module's)."""
    mod = ir.Module(name=name)
    mod.triple = options.target.triple
    if library:
        use_library(mod, options)
    set_blocking(mod, options.gemm_blocking)
    enable_skip_zeros(mod, options.skip_zeros)
    enable_half_instructions(mod, "+f16c" in options.target.features.split(","))
    symbols: dict[str, str] = {}
    for prog in programs:
        clash = symbols.setdefault(entry_symbol(prog.name), prog.name)
        if clash != prog.name:
            raise LoweringError(f"functions '{clash}' and '{prog.name}' would both be the C symbol "
                                f"{entry_symbol(prog.name)}; rename one")
    pool(mod)                      # the thread pool and its exported controls, in every module
    for prog in programs:
        _ProgramEmitter(mod, prog, options).emit()
    return mod


def _storages(k: Kernel) -> list[Buffer]:
    """The distinct memories a kernel touches, outputs first."""
    seen: list[Buffer] = []
    for buf in (*k.writes(), *k.reads()):
        s = buf.storage
        if s not in seen:
            seen.append(s)
    return seen


class _ProgramEmitter:
    def __init__(self, mod: ir.Module, prog: Program, options: CodegenOptions):
        self.mod = mod
        self.prog = prog
        self.options = options
        self.lanes = options.lanes
        self.symbol = entry_symbol(prog.name)

    def emit(self) -> ir.Function:
        fnty = ir.FunctionType(I32, [I8P.as_pointer(), I64.as_pointer()])
        if not (self.options.flush_denormals and pool(self.mod).x86):
            return self._emit_body(ir.Function(self.mod, fnty, self.symbol))
        # flush_denormals: the entry point sets flush-to-zero and denormals-are-zero for the
        # call (workers take the caller's mode with each job: threads.py) and restores the
        # caller's MXCSR on every way out
        body = self._emit_body(ir.Function(self.mod, fnty, self.symbol + ".body"))
        body.linkage = "internal"
        fn = ir.Function(self.mod, fnty, self.symbol)
        fn.attributes.add("nounwind")
        unoptimized(fn)
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        saved = fp_control(b)
        set_fp_control(b, b.or_(saved, ir.Constant(I32, MXCSR_FLUSH)))
        status = b.call(body, list(fn.args))
        set_fp_control(b, saved)
        b.ret(status)
        return fn

    def _emit_body(self, fn: ir.Function) -> ir.Function:
        prog = self.prog
        fn.attributes.add("nounwind")
        # compile time: the entry point is glue (argument loads, the workspace, one call per
        # kernel), left unoptimized (optnone, with the fast instruction selector); its kernels
        # are noinline (_kernel_body): O3 inlined each into it and optimized it all again there
        unoptimized(fn)
        bufs_arg, dims_arg = fn.args
        bufs_arg.name, dims_arg.name = "buffers", "dims"
        b = ir.IRBuilder(fn.append_basic_block("entry"))

        symbols = {s: b.load(b.gep(dims_arg, [ir.Constant(I64, i)]), name=short_name(s))
                   for i, s in enumerate(prog.symbols)}
        storage: dict[Buffer, ir.Value] = {}
        for p in prog.params:
            storage[p] = b.load(b.gep(bufs_arg, [ir.Constant(I64, p.index)]), name=short_name(p.name[1:]))
        for o in prog.outputs:
            if o.inplace_of is None:
                slot = len(prog.params) + o.index
                storage[o] = b.load(b.gep(bufs_arg, [ir.Constant(I64, slot)]), name=short_name(o.name[1:]))
        for c in prog.consts:
            storage[c] = b.bitcast(self._global(c), I8P)

        ctx = KernelContext(b, storage, symbols, self.lanes)
        threads = b.call(pool(self.mod).size, [], name="threads")
        scratch_of: dict[Kernel, ir.Value] = {}
        regions: list[tuple[object, ir.Value]] = []
        for t in prog.temps:
            regions.append((t, b.mul(ctx.product(t.shape), ir.Constant(I64, t.dtype.itemsize))))
        for k in prog.kernels:
            if isinstance(k, Matmul):
                # one packing region per task
                regions.append((k, b.mul(_scratch_bytes(b, ctx, k, self.lanes), max_tasks(b, threads))))

        workspace: tuple[ir.Value, ir.Value] | None = None
        if regions:
            offsets, total = [], ir.Constant(I64, 0)
            for _, size in regions:
                offsets.append(total)
                total = b.add(total, _align_up(b, size))
            workspace = self._acquire_workspace(b, b.add(total, ir.Constant(I64, ALIGN)))
            for (owner, _), off in zip(regions, offsets):
                ptr = b.gep(workspace[0], [off], inbounds=True)
                if isinstance(owner, Buffer):
                    storage[owner] = ptr
                else:
                    scratch_of[owner] = ptr

        counters = self._profile_counters() if self.options.profile else None
        for i, k in enumerate(prog.kernels):
            kfn = self._kernel_function(i, k)
            args = [storage[s] for s in _storages(k)] + [symbols[s] for s in prog.symbols]
            if isinstance(k, Matmul):
                args += [scratch_of[k], threads]
            if counters is None:
                b.call(kfn, args)
            else:
                clock = intrinsic(self.mod, "llvm.readcyclecounter", I64, [])
                start = b.call(clock, [])
                b.call(kfn, args)
                slot = b.gep(counters, [ir.Constant(I64, 0), ir.Constant(I64, i)])
                b.store(b.add(b.load(slot), b.sub(b.call(clock, []), start)), slot)
            if k.out in prog.checks:
                self._check(b, k.out, storage, workspace)

        if workspace is not None:
            self._release_workspace(b, workspace)
        b.ret(ir.Constant(I32, 0))
        return fn

    def _acquire_workspace(self, b: ir.IRBuilder, need: ir.Value) -> tuple[ir.Value, ir.Value]:
        """The call's workspace of ``need`` bytes and whether it is the entry point's kept one.

        Each entry point keeps its last workspace (up to :data:`KEEP_WORKSPACE` bytes) in
        three globals -- pointer, size, busy flag -- so that repeated calls (a training
        loop) neither allocate nor fault in fresh pages each time: a workspace above
        glibc's mmap threshold (32 MiB) is mapped anew and page-faulted on every
        ``aligned_alloc`` (measured: 14 of the MNIST CNN's 36 ms per step at batch 128).
        A call that finds the kept one busy (a concurrent call from another thread)
        allocates and frees its own, as before; one that needs more replaces it.  Returns
        ``(pointer, kept)``; the function returns 1 when no memory could be had.
        """
        mod = self.mod
        kept_ptr = self._workspace_global("ws", I8P, ir.Constant(I8P, None))
        kept_size = self._workspace_global("ws_size", I64, ir.Constant(I64, 0))
        busy = self._workspace_global("ws_busy", I32, ir.Constant(I32, 0))
        alloc = intrinsic(mod, "aligned_alloc", I8P, [I64, I64])
        free = intrinsic(mod, "free", ir.VoidType(), [I8P])
        align = ir.Constant(I64, ALIGN)
        with b.goto_entry_block():
            slot = b.alloca(I8P, name="workspace.slot")
            kept_slot = b.alloca(ir.IntType(1), name="workspace.kept")
        claimed = b.extract_value(b.cmpxchg(busy, ir.Constant(I32, 0), ir.Constant(I32, 1), "acquire", "monotonic"), 1)
        keep = b.and_(claimed, b.icmp_unsigned("<=", need, ir.Constant(I64, KEEP_WORKSPACE)))
        with b.if_else(keep) as (then, otherwise):
            with then:
                with b.if_else(b.icmp_unsigned("<=", need, b.load(kept_size))) as (fits, grow):
                    with fits:
                        b.store(b.load(kept_ptr), slot)
                    with grow:
                        b.call(free, [b.load(kept_ptr)])
                        fresh = b.call(alloc, [align, need])
                        b.store(fresh, kept_ptr)
                        b.store(b.select(b.icmp_unsigned("==", fresh, ir.Constant(I8P, None)),
                                         ir.Constant(I64, 0), need), kept_size)
                        b.store(fresh, slot)
                b.store(ir.Constant(ir.IntType(1), 1), kept_slot)
            with otherwise:
                with b.if_then(claimed):          # claimed, but too large to keep: let it go
                    b.store_atomic(ir.Constant(I32, 0), busy, "release", 4)
                b.store(b.call(alloc, [align, need]), slot)
                b.store(ir.Constant(ir.IntType(1), 0), kept_slot)
        pointer, kept = b.load(slot, name="workspace"), b.load(kept_slot)
        with b.if_then(b.icmp_unsigned("==", pointer, ir.Constant(I8P, None)), likely=False):
            with b.if_then(kept):
                b.store_atomic(ir.Constant(I32, 0), busy, "release", 4)
            b.ret(ir.Constant(I32, 1))
        return pointer, kept

    def _release_workspace(self, b: ir.IRBuilder, workspace: tuple[ir.Value, ir.Value]) -> None:
        """Hand the kept workspace back (the next call reuses it) or free a call's own."""
        pointer, kept = workspace
        with b.if_else(kept) as (then, otherwise):
            with then:
                b.store_atomic(ir.Constant(I32, 0), self._workspace_global("ws_busy", I32, None), "release", 4)
            with otherwise:
                b.call(intrinsic(self.mod, "free", ir.VoidType(), [I8P]), [pointer])

    def _workspace_global(self, what: str, ty: ir.Type, init: ir.Constant | None) -> ir.GlobalVariable:
        """The entry point's global ``<symbol>.<what>`` (created on first use)."""
        name = f"{self.symbol}.{what}"
        if name in self.mod.globals:
            return self.mod.get_global(name)
        g = ir.GlobalVariable(self.mod, ty, name=name)
        g.linkage = "internal"
        g.initializer = init
        return g

    def _check(self, b: ir.IRBuilder, flag: Buffer, storage: dict[Buffer, ir.Value],
               workspace: tuple[ir.Value, ir.Value] | None) -> None:
        """Return ``2 + i`` (freeing the workspace) when check ``i``'s count of bad elements,
        ``flag``, is not 0."""
        code = 2 + list(self.prog.checks).index(flag)
        ptr = b.bitcast(storage[flag.storage], I64.as_pointer())
        with b.if_then(b.icmp_signed("!=", b.load(ptr), ir.Constant(I64, 0)), likely=False):
            if workspace is not None:
                self._release_workspace(b, workspace)
            b.ret(ir.Constant(I32, code))

    def _profile_counters(self) -> ir.GlobalVariable:
        """``<symbol>.profile``: one i64 cycle counter per kernel (CodegenOptions.profile)."""
        ty = ir.ArrayType(I64, max(len(self.prog.kernels), 1))
        g = ir.GlobalVariable(self.mod, ty, name=profile_symbol(self.prog.name))
        g.initializer = ir.Constant(ty, None)
        return g

    def _global(self, buf: Buffer) -> ir.GlobalVariable:
        data = bytearray(buf.data.tobytes()) if buf.data is not None else bytearray()
        ty = ir.ArrayType(I8, max(len(data), 1))
        g = ir.GlobalVariable(self.mod, ty, name=f"{self.symbol}.{buf.name[1:]}")
        g.global_constant = True
        g.linkage = "internal"
        g.align = ALIGN
        g.initializer = ir.Constant(ty, data or bytearray(1))
        return g

    def _kernel_function(self, i: int, k: Kernel) -> ir.Function:
        """The kernel's function; a matmul's splits its work into tasks on the thread pool:
        ``k<i>(buffers.., dims.., scratch, threads)`` calls ``k<i>.part(.., scratch, t, ntasks)``
        once per task, each task with its own packing region of the scratch."""
        if not isinstance(k, Matmul):
            return self._kernel_body(f"{self.symbol}.k{i}", k)
        part = self._kernel_body(f"{self.symbol}.k{i}.part", k, tasked=True)
        nfixed = len(part.args) - 2
        argtys = [a.type for a in part.args[:nfixed]] + [I64]
        fn = ir.Function(self.mod, ir.FunctionType(ir.VoidType(), argtys), f"{self.symbol}.k{i}")
        fn.linkage = "internal"
        fn.attributes.add("nounwind")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        nsym = len(self.prog.symbols)
        dims = fn.args[nfixed - 1 - nsym:nfixed - 1]
        ctx = KernelContext(b, {}, dict(zip(self.prog.symbols, dims)), self.lanes)
        if isinstance(k, gemm_lowp.LowpMatmul):
            ntasks = gemm_lowp.task_count(ctx, k, fn.args[-1], max_tasks(b, fn.args[-1]))
        else:
            ntasks = (conv.task_count if isinstance(k, Conv) else task_count)(ctx, k, fn.args[-1])
        parallel_call(b, part, list(fn.args[:nfixed]), ntasks)
        b.ret_void()
        return unoptimized(fn)           # glue: picks the task count, starts the tasks

    def _kernel_body(self, name: str, k: Kernel, tasked: bool = False) -> ir.Function:
        prog = self.prog
        storages = _storages(k)
        argtys = [I8P] * len(storages) + [I64] * len(prog.symbols)
        if isinstance(k, Matmul):
            argtys.append(I8P)
        if tasked:
            argtys += [I64, I64]
        fn = ir.Function(self.mod, ir.FunctionType(ir.VoidType(), argtys), name)
        fn.linkage = "internal"
        fn.attributes.add("nounwind")
        fn.attributes.add("noinline")        # optimized once, as a function of its own (see emit)
        for j, s in enumerate(storages):
            arg = fn.args[j]
            arg.name = short_name(s.name[1:])
            arg.add_attribute("noalias")
        symbols = {}
        for j, s in enumerate(prog.symbols):
            arg = fn.args[len(storages) + j]
            arg.name = short_name(s)
            symbols[s] = arg
        scratch = fn.args[len(storages) + len(prog.symbols)] if isinstance(k, Matmul) else None
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        ctx = KernelContext(b, dict(zip(storages, fn.args)), symbols, self.lanes, scratch)
        if scratch is not None:
            scratch.add_attribute("noalias")
        if tasked:
            t, ntasks = fn.args[-2], fn.args[-1]
            t.name, ntasks.name = "task", "ntasks"
            ctx.task = (t, ntasks)
            if scratch is not None:
                ctx.scratch = b.gep(scratch, [b.mul(t, _scratch_bytes(b, ctx, k, self.lanes))])
        if isinstance(k, Elementwise):
            emit_elementwise(ctx, k)
        elif isinstance(k, Reduce):
            emit_reduce(ctx, k)
        elif isinstance(k, Scan):
            emit_scan(ctx, k)
        elif isinstance(k, TopK):
            emit_top_k(ctx, k)
        elif isinstance(k, Scatter):
            emit_scatter(ctx, k)
        elif isinstance(k, Pool):
            emit_pool(ctx, k)
        elif isinstance(k, Attention):
            emit_attention(ctx, k)
        elif isinstance(k, Conv):
            conv.emit_conv(ctx, k)
        elif isinstance(k, gemm_lowp.LowpMatmul):
            gemm_lowp.emit_lowp_matmul(ctx, k)
        else:
            emit_matmul(ctx, k)
        b.ret_void()
        # compile time: a kernel function without a loop (one that only starts its tasks on
        # the pool, a scalar or a small static kernel) runs each instruction once per call
        # and is left unoptimized; so is a task function without one (llvmutil.unoptimized)
        for f in (fn, self.mod.globals.get(f"{name}.part")):
            if isinstance(f, ir.Function) and f.blocks and not has_loop(f):
                unoptimized(f)
        return fn


def workspace_regions(prog: Program, lanes: int) -> tuple[list[Region], list[Region]]:
    """The workspace of ``prog`` as ``(bytes per element, shape)`` regions: its temporaries
    (exact), and for each matmul a bound on its tasks' packing regions (``K x
    scratch_columns`` elements, plus alignment, for each of at most MAX_THREADS x
    TASKS_PER_THREAD tasks).  The runtime checks their 64-byte-aligned sum against the
    size limit before a call, so the prologue's sums and products cannot overflow."""
    temps = [(t.dtype.itemsize, tuple(t.shape)) for t in prog.temps]
    packing = [(1, (conv.scratch_bytes(k, lanes), MAX_THREADS * TASKS_PER_THREAD)) if isinstance(k, Conv) else
               (k.dtype.itemsize, (k.k, scratch_columns(lanes) + ALIGN, MAX_THREADS * TASKS_PER_THREAD))
               for k in prog.kernels if isinstance(k, Matmul) and not isinstance(k, gemm_lowp.LowpMatmul)]
    packing += [(size, (*shape, MAX_THREADS * TASKS_PER_THREAD)) for k in prog.kernels
                if isinstance(k, gemm_lowp.LowpMatmul) for size, shape in gemm_lowp.scratch_bound(k)]
    return temps, packing


def _scratch_bytes(b: ir.IRBuilder, ctx: KernelContext, k: Matmul, lanes: int) -> ir.Value:
    """Bytes of one task's packing region of matmul ``k`` (a multiple of ALIGN)."""
    if isinstance(k, Conv):
        return ir.Constant(I64, conv.scratch_bytes(k, lanes))
    if isinstance(k, gemm_lowp.LowpMatmul):
        return gemm_lowp.scratch_bytes(ctx, k)
    return _align_up(b, b.mul(scratch_elements(ctx, k), ir.Constant(I64, k.dtype.itemsize)))


def _align_up(b: ir.IRBuilder, size: ir.Value) -> ir.Value:
    return b.and_(b.add(size, ir.Constant(I64, ALIGN - 1)), ir.Constant(I64, -ALIGN))


__all__ = ["emit_module", "entry_symbol", "profile_symbol", "workspace_regions", "ALIGN"]
