"""Loading object code into the process: MCJIT links ELF objects in memory.

The same path serves a fresh compile, a disk-cache hit and an AOT directory:
object bytes -> ``ExecutionEngine.add_object_file`` -> symbol addresses.  No
linker or compiler runs, and LLVM's optimizer does not run on load.  A module
compiled in parts (``compiler/codegen/split.py``) is several objects that name
each other's symbols: all of them go into one engine before it links
(``finalize_object``), and each finds the others' symbols there first.

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

import struct
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

    def __init__(self, objects: bytes | list[bytes]):
        if isinstance(objects, bytes):
            objects = [objects]
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
            _check_symbols(objects)          # (after the engine: it makes the process's symbols known)
            try:
                self._objects = [llvm.ObjectFileRef.from_data(obj) for obj in objects]
                for ref in self._objects:
                    self._engine.add_object_file(ref)
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


def _check_symbols(objects: list[bytes]) -> None:
    """A :class:`DlRuntimeError` unless every symbol the objects use is defined once (by one
    of them, or in the process: the C library, a GEMM library added with ``llvm.add_symbol``)
    and reached through a GOT entry or by absolute address.  MCJIT would link a symbol it
    cannot find as address 0 and abort the process on one defined twice; and its memory
    reservation leaves no room for the GOT entry of a call stub in an object with no data
    of its own, where llvmlite aborts (``driver.calls_through_got``)."""
    defined: set[str] = set()
    used: set[str] = set()
    for obj in objects:
        own, undefined, stubbed = elf_symbols(obj)
        twice = own & defined
        if twice:
            raise DlRuntimeError(f"cannot load compiled object code: {min(twice)!r} is defined in two of its objects")
        if stubbed:
            raise DlRuntimeError(f"cannot load compiled object code: it reaches {min(stubbed)!r} through a "
                                 "call stub or a 32-bit offset, not a GOT entry (not compiled by this dlc)")
        defined |= own
        used |= undefined
    missing = sorted(name for name in used - defined if not llvm.address_of_symbol(name))
    if missing:
        shown = ", ".join(repr(n) for n in missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise DlRuntimeError(f"cannot load compiled object code: it uses {shown}, defined nowhere")


_SYMBOL = struct.Struct("<IBBHQQ")         # Elf64_Sym: name, info, other, section, value, size
_RELA = struct.Struct("<QQq")              # Elf64_Rela: offset, info (symbol << 32 | type), addend
# x86-64 relocations that may name a symbol of another object or of the process: 64-bit
# absolute, and the three GOT-relative kinds (the loader makes a GOT entry it reserved room for)
_FAR = {1, 9, 41, 42}


def elf_symbols(obj: bytes) -> tuple[set[str], set[str], set[str]]:
    """(the global symbols ``obj`` defines, the symbols it uses undefined, those of them a
    relocation reaches other than through :data:`_FAR`) of an ELF64 little-endian object;
    a :class:`DlRuntimeError` for bytes that are not one (every offset is checked against
    the data)."""
    def bad(why: str) -> DlRuntimeError:
        return DlRuntimeError(f"cannot load compiled object code: not an ELF64 object ({why})")

    def within(offset: int, size: int) -> bool:
        return 0 <= offset and 0 <= size and offset + size <= len(obj)

    if len(obj) < 64 or obj[:6] != b"\x7fELF\x02\x01":
        raise bad("no 64-bit little-endian ELF header")
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", obj, 0x3A)
    if shentsize < 64 or not within(shoff, shnum * shentsize):
        raise bad("section headers outside the data")
    sections = [struct.unpack_from("<IIQQQQII", obj, shoff + i * shentsize) for i in range(shnum)]
    names: dict[int, list[str | None]] = {}      # symbol table section -> each entry's undefined name
    defined: set[str] = set()
    undefined: set[str] = set()
    for index, (_, kind, _, _, offset, size, link, _) in enumerate(sections):
        if kind != 2:                                   # SHT_SYMTAB
            continue
        if not within(offset, size) or size % _SYMBOL.size or link >= shnum:
            raise bad("a symbol table outside the data")
        _, _, _, _, str_offset, str_size, _, _ = sections[link]
        if not within(str_offset, str_size):
            raise bad("a string table outside the data")
        strings = obj[str_offset:str_offset + str_size]
        entries: list[str | None] = []
        for name_at, info, _, section, _, _ in _SYMBOL.iter_unpack(obj[offset:offset + size]):
            end = strings.find(b"\0", name_at)
            name = strings[name_at:end if end >= 0 else len(strings)].decode("utf-8", "replace")
            entries.append(name if section == 0 and name else None)
            if info >> 4 != 0 and name:                 # global or weak binding
                (undefined if section == 0 else defined).add(name)
        names[index] = entries
    stubbed: set[str] = set()
    for _, kind, _, _, offset, size, link, _ in sections:
        if kind != 4:                                   # SHT_RELA
            continue
        if not within(offset, size) or size % _RELA.size or link not in names:
            raise bad("a relocation table outside the data")
        entries = names[link]
        for _, info, _ in _RELA.iter_unpack(obj[offset:offset + size]):
            symbol, kind = info >> 32, info & 0xFFFFFFFF
            if symbol >= len(entries):
                raise bad("a relocation names a symbol past its table")
            name = entries[symbol]
            if name is not None and kind not in _FAR:
                stubbed.add(name)
    return defined, undefined, stubbed
