"""A native thread pool, generated into each LLVM module with ``llvmlite.ir.IRBuilder``.

Kernels split their work into ``ntasks`` independent tasks and call
``dlc.pool.run(task, ctx, ntasks)``; ``task(ctx, t)`` runs for every
``t < ntasks``, the calling thread doing task 0 (and any task it has no
worker for) itself.  The pool is private to its module (the AOT shared
library carries its own):

* **Workers** are created on first use with ``pthread_create`` (resolved by
  MCJIT from the process, or by the dynamic linker for an AOT library), at
  most ``MAX_THREADS - 1`` of them, and never more than a call asks for (its
  tasks, less one) or ``dlc_set_num_threads`` allows, less one (a call may
  have more tasks than threads).
  Task 0 is the caller's, always (a kernel's first share of its data stays in the
  calling core's cache for the next kernel that splits the same way); the others
  are claimed dynamically (one compare-and-swap on a word holding the job
  generation and the count of unclaimed tasks), the caller included once its own
  is done: when a worker is descheduled (a busy machine) the caller simply does
  its task too.
* **Parking**: a worker waits for the next job by spinning ``SPIN_PAUSE``
  rounds of ``pause`` on the job generation counter (tens of microseconds:
  the next parallel kernel of a step is usually that close), then a few
  hundred rounds of ``sched_yield`` (on a busy machine the core goes to
  whoever needs it, often the thread being waited for), then sleeps in
  ``futex(WAIT)`` on it, so an idle pool burns no CPU.  The caller only issues
  ``futex(WAKE)`` when some worker sleeps (a ``sleepers`` count, updated and
  read with sequentially consistent atomics on both sides).  The caller
  waits for the last worker the same way (spin, then futex).
* **Concurrency**: one job at a time per pool.  A call that finds the pool
  busy (another thread is in a parallel kernel of the same module) runs its
  tasks serially instead: correct, never blocking.
* **Thread count**: ``dlc_set_num_threads(n)`` (exported; the runtime calls it
  once after loading, with :func:`num_threads`), read by each entry point at
  its start (``dlc.pool.size``).  Code loaded without it runs on one thread.
* ``dlc_threads_shutdown()`` (exported) stops and joins the workers; the
  runtime calls it before it frees the code they run.

Workers block every signal, so a signal never interrupts a parked worker.
"""

from __future__ import annotations

import ctypes
import functools
import os
import weakref
from collections.abc import Callable

from llvmlite import ir

from .llvmutil import I8, I8P, I32, I64, for_range, intrinsic, unoptimized

MAX_THREADS = 64
SPIN_PAUSE = 2000             # rounds of ``pause`` while waiting (~50 us) ...
SPIN = 2400                   # ... then rounds of ``sched_yield`` up to here, then futex sleep
SYS_FUTEX = 202               # x86-64 Linux
FUTEX_WAIT_PRIVATE = 128
FUTEX_WAKE_PRIVATE = 129
SIG_BLOCK = 0

SET_THREADS_SYMBOL = "dlc_set_num_threads"
SHUTDOWN_SYMBOL = "dlc_threads_shutdown"

TASK_TYPE = ir.FunctionType(ir.VoidType(), [I8P, I64])


@functools.cache
def num_threads() -> int:
    """Threads the runtime gives compiled code: ``DLC_NUM_THREADS`` if set to a positive
    integer, else the CPUs this process may run on.  Read once per process."""
    text = os.environ.get("DLC_NUM_THREADS", "").strip()
    if text.isdigit() and int(text) > 0:
        return min(int(text), MAX_THREADS)
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_THREADS))


class Pool:
    """The pool's globals and functions in one module (made once per module by :func:`pool`)."""

    def __init__(self, module: ir.Module):
        self.module = module
        self.x86 = module.triple.startswith(("x86_64", "i686", "i386")) or not module.triple
        g = self._global
        self.requested = g("requested", I32, 1)     # dlc_set_num_threads
        self.started = g("started", I32, 0)         # workers created
        self.lock = g("lock", I32, 0)               # 1 while a job runs
        self.gen = g("gen", I32, 0)                 # job generation (futex word of the workers)
        self.pending = g("pending", I32, 0)         # tasks not finished yet (the caller's futex word)
        self.sleepers = g("sleepers", I32, 0)       # workers in futex wait
        self.stop = g("stop", I32, 0)
        self.task = g("task", TASK_TYPE.as_pointer(), None)
        self.ctx = g("ctx", I8P, None)
        self.ntasks = g("ntasks", I64, 0)
        self.claim = g("claim", I64, 0)             # generation << 32 | tasks not yet claimed
        self.fp_control = g("fp_control", I32, 0x1F80)  # the caller's MXCSR, for the job's tasks
        tids_ty = ir.ArrayType(I64, MAX_THREADS)
        self.tids = g("tids", tids_ty, None)
        self.worker = self._worker()
        self.size = self._size()
        self.run = self._run()
        self._exports()

    # -- helpers ---------------------------------------------------------------------

    def _global(self, name: str, ty: ir.Type, init) -> ir.GlobalVariable:
        gv = ir.GlobalVariable(self.module, ty, name=f"dlc.pool.{name}")
        gv.linkage = "internal"
        gv.initializer = ir.Constant(ty, init)
        gv.align = 64 if isinstance(ty, ir.IntType) else 8       # one cache line per word
        return gv

    def _function(self, name: str, fnty: ir.FunctionType, external: bool = False) -> ir.Function:
        fn = ir.Function(self.module, fnty, name)
        if not external:
            fn.linkage = "internal"
        fn.attributes.add("nounwind")
        # compile time: the pool's functions wait, claim and hand out tasks -- their loops
        # spin on atomics and ``pause`` -- and are left unoptimized (llvmutil.unoptimized)
        return unoptimized(fn)

    def _syscall(self) -> ir.Function:
        fnty = ir.FunctionType(I64, [I64], var_arg=True)
        return self.module.globals.get("syscall") or ir.Function(self.module, fnty, "syscall")

    def _futex(self, b: ir.IRBuilder, word: ir.Value, op: int, value: ir.Value) -> None:
        addr = b.ptrtoint(word, I64)
        b.call(self._syscall(), [ir.Constant(I64, SYS_FUTEX), addr, ir.Constant(I32, op), value,
                                 ir.Constant(I64, 0), ir.Constant(I64, 0), ir.Constant(I32, 0)])

    def _pause(self, b: ir.IRBuilder) -> None:
        if self.x86:
            b.call(intrinsic(self.module, "llvm.x86.sse2.pause", ir.VoidType(), []), [])

    def _load(self, b: ir.IRBuilder, gv: ir.Value, order: str = "acquire") -> ir.Value:
        return b.load_atomic(gv, order, gv.type.pointee.width // 8)

    def _store(self, b: ir.IRBuilder, value: ir.Value, gv: ir.Value, order: str = "release") -> None:
        b.store_atomic(value, gv, order, value.type.width // 8)

    def _wait_change(self, b: ir.IRBuilder, word: ir.Value, old: ir.Value, sleepers: bool) -> ir.Value:
        """Spin, then sleep, until ``*word != old``; returns the new value."""
        fn = b.function
        spin = fn.append_basic_block("spin")
        spin_body = fn.append_basic_block("spin.body")
        sleep = fn.append_basic_block("sleep")
        done = fn.append_basic_block("changed")
        pre = b.block
        b.branch(spin)
        b.position_at_end(spin)
        rounds = b.phi(I64, "rounds")
        rounds.add_incoming(ir.Constant(I64, 0), pre)
        cur = self._load(b, word)
        b.cbranch(b.icmp_unsigned("!=", cur, old), done, spin_body)
        b.position_at_end(spin_body)
        self._pause(b)
        nxt = b.add(rounds, ir.Constant(I64, 1))
        with b.if_then(b.icmp_unsigned(">", nxt, ir.Constant(I64, SPIN_PAUSE))):
            # on a busy machine, give the core to whoever waits for it (often the thread
            # this one waits for); on an idle one this returns at once
            b.call(intrinsic(self.module, "sched_yield", I32, []), [])
        rounds.add_incoming(nxt, b.block)
        b.cbranch(b.icmp_unsigned("<", nxt, ir.Constant(I64, SPIN)), spin, sleep)
        b.position_at_end(sleep)
        if sleepers:
            b.atomic_rmw("add", self.sleepers, ir.Constant(I32, 1), "seq_cst")
        self._futex(b, word, FUTEX_WAIT_PRIVATE, old)
        if sleepers:
            b.atomic_rmw("sub", self.sleepers, ir.Constant(I32, 1), "seq_cst")
        rounds.add_incoming(ir.Constant(I64, 0), sleep)
        b.branch(spin)
        b.position_at_end(done)
        return cur

    # -- the worker ------------------------------------------------------------------

    def _worker(self) -> ir.Function:
        """``void *worker(void *arg)``, ``arg`` = the job generation seen at creation."""
        fn = self._function("dlc.pool.worker", ir.FunctionType(I8P, [I8P]))
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        self._block_signals(b)
        first = b.trunc(b.ptrtoint(fn.args[0], I64), I32)
        entry = b.block
        loop = fn.append_basic_block("loop")
        b.branch(loop)
        b.position_at_end(loop)
        seen = b.phi(I32, "seen")
        seen.add_incoming(first, entry)
        gen = self._wait_change(b, self.gen, seen, sleepers=True)
        stopped = b.icmp_unsigned("!=", self._load(b, self.stop), ir.Constant(I32, 0))
        with b.if_then(stopped):
            b.ret(ir.Constant(I8P, None))
        if self.x86:
            # the job's tasks run in the caller's floating-point mode (flushing denormals or
            # not: CodegenOptions.flush_denormals), stored before the generation was published;
            # a newer job cannot overwrite it before this one's tasks are all done
            set_fp_control(b, b.load(self.fp_control))
        self._claim_tasks(b, gen, wake=True)
        seen.add_incoming(gen, b.block)
        b.branch(loop)
        return fn

    def _claim_tasks(self, b: ir.IRBuilder, gen: ir.Value, wake: bool) -> None:
        """Run tasks of job ``gen`` until none is left: each is claimed by a compare-and-swap
        of ``claim`` (the generation and the count of unclaimed tasks in one word), so a
        late thread never takes a task of another job.  Nothing but that word is read
        before a successful claim: the job fields (task, ctx, ntasks) are read after it,
        when they are known to be this job's.  (Checking the index against ``ntasks``
        before the claim let a late worker pair the last job's exhausted word with the
        next job's larger ``ntasks`` and claim a task that did not exist; its extra
        decrement of ``pending`` then left the caller waiting forever.)"""
        fn = b.function
        head = fn.append_basic_block("claim")
        body = fn.append_basic_block("claim.try")
        done = fn.append_basic_block("claim.done")
        b.branch(head)
        b.position_at_end(head)
        word = self._load(b, self.claim)
        same = b.icmp_unsigned("==", b.trunc(b.lshr(word, ir.Constant(I64, 32)), I32), gen)
        unclaimed = b.and_(word, ir.Constant(I64, 0xFFFFFFFF))
        left = b.icmp_unsigned(">", unclaimed, ir.Constant(I64, 0))
        b.cbranch(b.and_(same, left), body, done)
        b.position_at_end(body)
        got = b.cmpxchg(self.claim, word, b.sub(word, ir.Constant(I64, 1)), "acq_rel", "monotonic")
        with b.if_then(b.extract_value(got, 1)):
            index = b.sub(b.load(self.ntasks), unclaimed)          # tasks go out in order 1, 2, ..
            b.call(b.load(self.task), [b.load(self.ctx), index])
            remaining = b.atomic_rmw("sub", self.pending, ir.Constant(I32, 1), "acq_rel")
            if wake:
                with b.if_then(b.icmp_unsigned("==", remaining, ir.Constant(I32, 1))):
                    self._futex(b, self.pending, FUTEX_WAKE_PRIVATE, ir.Constant(I32, 1))
        b.branch(head)
        b.position_at_end(done)

    def _block_signals(self, b: ir.IRBuilder) -> None:
        """``pthread_sigmask(SIG_BLOCK, all, NULL)`` (a sigset_t is 128 bytes)."""
        mask_ty = ir.ArrayType(I8, 128)
        mask = b.alloca(mask_ty)
        b.store(ir.Constant(mask_ty, bytearray(b"\xff" * 128)), mask)
        sigmask = intrinsic(self.module, "pthread_sigmask", I32, [I32, I8P, I8P])
        b.call(sigmask, [ir.Constant(I32, SIG_BLOCK), b.bitcast(mask, I8P), ir.Constant(I8P, None)])

    # -- the caller's side -----------------------------------------------------------

    def _start_workers(self, b: ir.IRBuilder, want: ir.Value) -> ir.Value:
        """Create workers until ``want`` exist (or creation fails); returns how many exist."""
        create = intrinsic(self.module, "pthread_create", I32, [I64.as_pointer(), I8P, I8P, I8P])
        fn = b.function
        head = fn.append_basic_block("start.head")
        body = fn.append_basic_block("start.body")
        done = fn.append_basic_block("start.done")
        b.branch(head)
        b.position_at_end(head)
        have = b.sext(b.load(self.started), I64)
        b.cbranch(b.icmp_signed("<", have, want), body, done)
        b.position_at_end(body)
        slot = b.gep(self.tids, [ir.Constant(I64, 0), have])
        arg = b.zext(b.load(self.gen), I64)
        rc = b.call(create, [slot, ir.Constant(I8P, None), b.bitcast(self.worker, I8P),
                             b.inttoptr(arg, I8P)])
        ok = b.icmp_signed("==", rc, ir.Constant(I32, 0))
        with b.if_then(ok):
            b.store(b.trunc(b.add(have, ir.Constant(I64, 1)), I32), self.started)
        b.cbranch(ok, head, done)
        b.position_at_end(done)
        return b.sext(b.load(self.started), I64)

    def _run(self) -> ir.Function:
        """``run(task, ctx, ntasks)``: ``task(ctx, t)`` for every ``t < ntasks``, in parallel."""
        fn = self._function("dlc.pool.run", ir.FunctionType(ir.VoidType(), [TASK_TYPE.as_pointer(), I8P, I64]))
        task, ctx, ntasks = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        serial = fn.append_basic_block("serial")
        locked = fn.append_basic_block("locked")
        one = ir.Constant(I64, 1)

        def run_serially(start: ir.Value) -> None:
            with for_range(b, start, ntasks, name="t") as t:
                b.call(task, [ctx, t])

        with b.if_then(b.icmp_signed("<=", ntasks, one)):
            b.call(task, [ctx, ir.Constant(I64, 0)])
            b.ret_void()
        got = b.cmpxchg(self.lock, ir.Constant(I32, 0), ir.Constant(I32, 1), "acquire", "monotonic")
        b.cbranch(b.extract_value(got, 1), locked, serial)

        b.position_at_end(serial)
        run_serially(ir.Constant(I64, 0))
        b.ret_void()

        b.position_at_end(locked)
        # workers: one fewer than the tasks or than the threads asked for, whichever is less
        want = b.sub(ntasks, one)
        cap = b.sub(b.call(self.size, []), one)
        want = b.select(b.icmp_signed("<", want, cap), want, cap)
        self._start_workers(b, want)
        b.store(task, self.task)
        b.store(ctx, self.ctx)
        b.store(ntasks, self.ntasks)
        # tasks 1 .. ntasks-1 go out to be claimed; task 0 is the caller's own, always, so a
        # kernel's first share stays in the calling core's cache from one kernel to the next
        # (and with two threads the worker's share in the worker's)
        rest = b.sub(ntasks, one)
        self._store(b, b.trunc(rest, I32), self.pending, "seq_cst")
        if self.x86:
            b.store(fp_control(b), self.fp_control)
        gen = b.add(b.load(self.gen), ir.Constant(I32, 1))
        self._store(b, b.or_(b.shl(b.zext(gen, I64), ir.Constant(I64, 32)), rest), self.claim, "seq_cst")
        self._store(b, gen, self.gen, "seq_cst")
        asleep = self._load(b, self.sleepers, "seq_cst")
        with b.if_then(b.icmp_unsigned("!=", asleep, ir.Constant(I32, 0))):
            self._futex(b, self.gen, FUTEX_WAKE_PRIVATE, ir.Constant(I32, 2 ** 31 - 1))
        b.call(task, [ctx, ir.Constant(I64, 0)])
        self._claim_tasks(b, gen, wake=False)      # with no worker awake, the caller does it all
        self._wait_zero(b, self.pending)
        self._store(b, ir.Constant(I32, 0), self.lock)
        b.ret_void()
        return fn

    def _wait_zero(self, b: ir.IRBuilder, word: ir.Value) -> None:
        """Spin, then sleep, until ``*word == 0``."""
        fn = b.function
        head = fn.append_basic_block("drain")
        body = fn.append_basic_block("drain.body")
        done = fn.append_basic_block("drained")
        b.branch(head)
        b.position_at_end(head)
        cur = self._load(b, word)
        b.cbranch(b.icmp_unsigned("==", cur, ir.Constant(I32, 0)), done, body)
        b.position_at_end(body)
        self._wait_change(b, word, cur, sleepers=False)
        b.branch(head)
        b.position_at_end(done)

    def _size(self) -> ir.Function:
        """``size()``: the thread count kernels may split into (``dlc_set_num_threads``)."""
        fn = self._function("dlc.pool.size", ir.FunctionType(I64, []))
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        n = b.sext(self._load(b, self.requested, "monotonic"), I64)
        n = b.select(b.icmp_signed("<", n, ir.Constant(I64, 1)), ir.Constant(I64, 1), n)
        cap = ir.Constant(I64, MAX_THREADS)
        b.ret(b.select(b.icmp_signed(">", n, cap), cap, n))
        return fn

    def _exports(self) -> None:
        setter = self._function(SET_THREADS_SYMBOL, ir.FunctionType(ir.VoidType(), [I32]), external=True)
        b = ir.IRBuilder(setter.append_basic_block("entry"))
        self._store(b, setter.args[0], self.requested, "monotonic")
        b.ret_void()

        stop = self._function(SHUTDOWN_SYMBOL, ir.FunctionType(ir.VoidType(), []), external=True)
        b = ir.IRBuilder(stop.append_basic_block("entry"))
        spin = stop.append_basic_block("acquire")
        owned = stop.append_basic_block("owned")
        b.branch(spin)
        b.position_at_end(spin)
        got = b.cmpxchg(self.lock, ir.Constant(I32, 0), ir.Constant(I32, 1), "acquire", "monotonic")
        with b.if_then(b.not_(b.extract_value(got, 1))):
            self._pause(b)
        b.cbranch(b.extract_value(got, 1), owned, spin)
        b.position_at_end(owned)
        self._store(b, ir.Constant(I32, 1), self.stop, "seq_cst")
        b.atomic_rmw("add", self.gen, ir.Constant(I32, 1), "seq_cst")
        self._futex(b, self.gen, FUTEX_WAKE_PRIVATE, ir.Constant(I32, 2 ** 31 - 1))
        join = intrinsic(self.module, "pthread_join", I32, [I64, I8P.as_pointer()])
        with for_range(b, 0, b.sext(b.load(self.started), I64), name="w") as w:
            tid = b.load(b.gep(self.tids, [ir.Constant(I64, 0), w]))
            b.call(join, [tid, ir.Constant(I8P.as_pointer(), None)])
        b.store(ir.Constant(I32, 0), self.started)
        self._store(b, ir.Constant(I32, 0), self.stop, "seq_cst")
        self._store(b, ir.Constant(I32, 0), self.lock)
        b.ret_void()


_POOLS: weakref.WeakKeyDictionary[ir.Module, Pool] = weakref.WeakKeyDictionary()


MXCSR_FLUSH = 0x8040          # MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6)


def fp_control(b: ir.IRBuilder) -> ir.Value:
    """The calling thread's MXCSR (x86: SSE/AVX rounding, exception masks, denormal modes)."""
    with b.goto_entry_block():            # (never an alloca in a loop: the stack would grow)
        slot = b.alloca(I32)
    b.call(intrinsic(b.module, "llvm.x86.sse.stmxcsr", ir.VoidType(), [I8P]), [b.bitcast(slot, I8P)])
    return b.load(slot)


def set_fp_control(b: ir.IRBuilder, value: ir.Value) -> None:
    """Load ``value`` into the calling thread's MXCSR."""
    with b.goto_entry_block():
        slot = b.alloca(I32)
    b.store(value, slot)
    b.call(intrinsic(b.module, "llvm.x86.sse.ldmxcsr", ir.VoidType(), [I8P]), [b.bitcast(slot, I8P)])


def pool(module: ir.Module) -> Pool:
    """The module's pool, emitted on first use."""
    p = _POOLS.get(module)
    if p is None:
        p = _POOLS[module] = Pool(module)
    return p


def parallel_call(b: ir.IRBuilder, part: ir.Function, args: list[ir.Value], ntasks: ir.Value) -> None:
    """Run ``part(*args, t, ntasks)`` for ``t < ntasks`` on the module's pool.

    ``args`` are pointers and integers; they travel to the workers in a stack
    array of i64 built here, unpacked by a trampoline made once per ``part``.
    """
    p = pool(b.module)
    trampoline = _trampoline(b.module, part, len(args))
    slots = ir.ArrayType(I64, len(args) + 1)
    with b.goto_entry_block():
        ctx = b.alloca(slots, name="task.ctx")
    for i, a in enumerate([*args, ntasks]):
        word = b.ptrtoint(a, I64) if isinstance(a.type, ir.PointerType) else \
            (a if a.type == I64 else b.sext(a, I64))
        b.store(word, b.gep(ctx, [ir.Constant(I64, 0), ir.Constant(I64, i)]))
    b.call(p.run, [trampoline, b.bitcast(ctx, I8P), ntasks])


def _trampoline(module: ir.Module, part: ir.Function, nargs: int) -> ir.Function:
    name = f"{part.name}.task"
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    fn = ir.Function(module, TASK_TYPE, name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    unoptimized(fn)                      # glue: unpacks the arguments, calls the task
    ctx, t = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    words = b.bitcast(ctx, I64.as_pointer())
    values = []
    for i, ty in enumerate(part.function_type.args[:nargs]):
        w = b.load(b.gep(words, [ir.Constant(I64, i)]))
        values.append(b.inttoptr(w, ty) if isinstance(ty, ir.PointerType) else
                      (w if ty == I64 else b.trunc(w, ty)))
    b.call(part, [*values, t, b.load(b.gep(words, [ir.Constant(I64, nargs)]))])
    b.ret_void()
    return fn


def split(b: ir.IRBuilder, total: ir.Value, t: ir.Value, ntasks: ir.Value, grain: int
          ) -> tuple[ir.Value, ir.Value]:
    """Task ``t``'s share ``[lo, hi)`` of ``[0, total)`` in whole multiples of ``grain``
    (the last share takes the remainder); the same for every thread count's task."""
    g = ir.Constant(I64, grain)
    blocks = b.sdiv(b.add(total, ir.Constant(I64, grain - 1)), g)
    lo = b.mul(b.sdiv(b.mul(blocks, t), ntasks), g)
    hi = b.mul(b.sdiv(b.mul(blocks, b.add(t, ir.Constant(I64, 1))), ntasks), g)
    lo = b.select(b.icmp_signed(">", lo, total), total, lo)
    hi = b.select(b.icmp_signed(">", hi, total), total, hi)
    return lo, hi


__all__ = ["MAX_THREADS", "MXCSR_FLUSH", "num_threads", "pool", "parallel_call", "split", "Pool",
           "fp_control", "set_fp_control",
           "SET_THREADS_SYMBOL", "SHUTDOWN_SYMBOL", "set_num_threads", "start_threads"]


def set_num_threads(library, n: int) -> None:
    """Let code loaded as ``library`` (a ``runtime.native.NativeLibrary``) split kernels
    into up to ``n`` threads from its next call on."""
    fn = ctypes.CFUNCTYPE(None, ctypes.c_int32)(library.address(SET_THREADS_SYMBOL))
    fn(max(1, min(int(n), MAX_THREADS)))


def start_threads(engine) -> Callable[[], None] | None:
    """Give loaded code (an llvmlite execution engine) :func:`num_threads`; returns the
    function that stops its pool's workers (call it before the engine is freed), or None
    for code without a pool."""
    setter = engine.get_function_address(SET_THREADS_SYMBOL)
    stop = engine.get_function_address(SHUTDOWN_SYMBOL)
    if not setter or not stop:
        return None
    ctypes.CFUNCTYPE(None, ctypes.c_int32)(setter)(num_threads())
    return ctypes.CFUNCTYPE(None)(stop)
