"""Loading object code into the process: MCJIT links an ELF object in memory.

The same path serves a fresh compile, a disk-cache hit and an AOT directory:
object bytes -> ``ExecutionEngine.add_object_file`` -> symbol addresses.  No
linker or compiler runs, and LLVM's optimizer does not run on load.

The engine uses llvmlite's memory manager (``use_lmm=True``), which maps an
object's code, read-only data and data as one block.  LLVM's default section
memory manager maps them one by one wherever the kernel finds room; our
objects (small code model) reach their constant pools with 32-bit
PC-relative relocations, so in a fragmented address space (a long process
next to JAX or PyTorch) a section could land more than 2 GiB from the code
and LLVM would abort the whole process (``RuntimeDyldELF.cpp: Assertion
isInt<32>(RealOffset) failed``).  ``tests/test_trust_boundaries.py``
fragments the address space on purpose and loads a module.
"""

from __future__ import annotations

import threading

import llvmlite.binding as llvm

from compiler.codegen.target import ensure_llvm, host_target
from compiler.codegen.threads import start_threads
from compiler.diagnostics import DlRuntimeError

_LOCK = threading.Lock()


class NativeLibrary:
    """Object code loaded and linked into this process.

    Keep the library alive as long as any address from it may be called.
    """

    def __init__(self, obj: bytes):
        ensure_llvm()
        target = host_target()
        with _LOCK:
            # The execution engine takes ownership of its target machine: make a fresh one.
            # It only ever compiles the empty module (our code comes as finished objects), so
            # no optimization level and no feature list: each costs set-up on every load
            # (the codegen pipeline MCJIT builds for the empty module; parsing 80-odd
            # features), 0.95 -> 0.63 ms per object loaded, measured on Zen 5.
            tm = llvm.Target.from_triple(target.triple).create_target_machine(
                cpu=target.cpu, features="", opt=0, reloc="pic", codemodel="default")
            empty = llvm.parse_assembly("")
            empty.triple = target.triple
            self._engine = llvm.create_mcjit_compiler(empty, tm, use_lmm=True)
            try:
                self._object = llvm.ObjectFileRef.from_data(obj)
                self._engine.add_object_file(self._object)
                self._engine.finalize_object()
            except RuntimeError as e:
                raise DlRuntimeError(f"cannot load compiled object code: {e}") from None
            self._stop_threads = start_threads(self._engine)

    def __del__(self) -> None:
        # the pool's workers run this library's code: stop them before the code is freed
        stop = getattr(self, "_stop_threads", None)
        if stop is not None:
            stop()

    def address(self, symbol: str) -> int:
        """The address of ``symbol``; a :class:`DlRuntimeError` if the object lacks it."""
        with _LOCK:
            addr = self._engine.get_function_address(symbol)
        if not addr:
            raise DlRuntimeError(f"compiled code has no symbol '{symbol}'")
        return addr

    def global_address(self, symbol: str) -> int | None:
        """The address of global variable ``symbol``, or None if the object has none."""
        with _LOCK:
            addr = self._engine.get_global_value_address(symbol)
        return addr or None
