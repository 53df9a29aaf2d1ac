"""The GEMM library: the generic GEMM code, compiled once per machine and linked beside
every module that calls it.

The GEMM drivers (``dlc.gemm.driver.v16f32`` and everything they call: packing,
micro-kernels, dot products, the zero-skipping path) and the store and shallow-K
functions of products without an epilogue (``dlc.gemm.store.v16f32``,
``dlc.gemm.shallow.v16f32``) are the same for every
model on a machine: they depend on the target, the codegen options and the
compiler's source, never on the model.  Building them was about half of a
cold compile of a small model, so a module emitted after :func:`use_library`
only *declares* the drivers its matmuls call (``gemm._driver_function``; the
plain store and shallow functions likewise) and
records their dtypes in a :class:`LibrarySpec`; ``driver.library_object``
compiles a spec's drivers (``gemm.library_module``) to an object of their
own, which the runtime caches on disk under :meth:`LibrarySpec.key` and
links once per process (``runtime/library.py``).

The library's exports are the drivers' names ending with
:func:`library_version` (what the code depends on, hashed), so two libraries
in one process never share a name.  The drivers are ``noinline`` and
``noduplicate`` in a whole-module build too (LLVM never inlined or
specialised them there): split code computes exactly what the whole-module
build does, in the same order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from llvmlite import ir

from ..ir.types import DType
from .target import CodegenOptions

FORMAT = "dlc-gemm-library-1"


class LibraryUse:
    """The drivers a module declares instead of defining (attached to the module)."""

    def __init__(self, lanes: int, version: str) -> None:
        self.lanes = lanes
        self.version = version
        self.dtypes: set[DType] = set()

    def declare(self, module: ir.Module, name: str, fnty: ir.FunctionType, dtype: DType) -> ir.Function:
        """An external declaration of library function ``name`` (made once per module)."""
        self.dtypes.add(dtype)
        existing = module.globals.get(name)
        if existing is not None:
            return existing
        fn = ir.Function(module, fnty, name)
        fn.attributes.add("nounwind")
        return fn

    def spec(self) -> LibrarySpec | None:
        """What the module needs from the library, or None when it needs nothing."""
        if not self.dtypes:
            return None
        return LibrarySpec(tuple(sorted(d.value for d in self.dtypes)), self.lanes, self.version)


def use_library(module: ir.Module, options: CodegenOptions) -> LibraryUse:
    """Make ``module``'s GEMM drivers external declarations (call before emitting kernels)."""
    use = LibraryUse(options.lanes, library_version(options))
    module.dlc_symbol_suffix = "." + use.version
    module.dlc_library = use
    return use


def library_use(module: ir.Module) -> LibraryUse | None:
    """The module's :class:`LibraryUse`, or None when it defines its GEMM drivers itself."""
    return getattr(module, "dlc_library", None)


def symbol_suffix(module: ir.Module) -> str:
    """What ends the names of the library's exports in ``module`` (``.`` and the library's
    version; empty in a module that defines its drivers itself)."""
    return getattr(module, "dlc_symbol_suffix", "")


def library_version(options: CodegenOptions) -> str:
    """16 hex digits naming the library's code under ``options``: the library's exports end
    with it, so libraries of other options or compilers never share a name in a process."""
    from .. import __version__
    from .cache import source_fingerprint

    h = hashlib.sha256()
    for part in (FORMAT, __version__, source_fingerprint(), options.key()):
        data = part.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class LibrarySpec:
    """A GEMM library: the drivers of these dtypes (values of :class:`DType`), both B layouts,
    for vectors of ``lanes`` f32 lanes (``CodegenOptions.lanes``), of :func:`library_version`
    ``version``."""

    dtypes: tuple[str, ...]
    lanes: int
    version: str

    def key(self) -> str:
        """The cache key of this library's object code (sha256 in hex)."""
        text = "|".join([FORMAT, self.version, ",".join(self.dtypes), str(self.lanes)])
        return hashlib.sha256(text.encode()).hexdigest()

    def symbols(self) -> list[str]:
        """The functions the library exports (a module built against it calls some of them):
        the drivers, and the store and shallow functions of products without an epilogue."""
        names = [driver_name(DType(d), self.lanes, trans_b) for d in self.dtypes for trans_b in (False, True)]
        names += [store_name(DType(d), self.lanes) for d in self.dtypes]
        if has_shallow_path(self.lanes):
            names += [shallow_name(DType(d), self.lanes) for d in self.dtypes]
        return [name + "." + self.version for name in names]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "dtypes": list(self.dtypes), "lanes": self.lanes, "version": self.version}

    @staticmethod
    def from_json(d: Any) -> LibrarySpec:
        """The inverse of :meth:`to_json`; a ValueError for anything else."""
        if not isinstance(d, dict) or d.get("format") != FORMAT or not isinstance(d.get("dtypes"), list):
            raise ValueError(f"not a GEMM library description: {d!r:.80}")
        known = {t.value for t in DType}
        dtypes, lanes, version = d["dtypes"], d.get("lanes"), d.get("version")
        if not dtypes or not all(isinstance(x, str) and x in known for x in dtypes):
            raise ValueError(f"GEMM library: bad dtypes {dtypes!r:.80}")
        if isinstance(lanes, bool) or not isinstance(lanes, int) or not 1 <= lanes <= 64:
            raise ValueError(f"GEMM library: bad lanes {lanes!r:.20}")
        if not (isinstance(version, str) and len(version) == 16 and all(c in "0123456789abcdef" for c in version)):
            raise ValueError(f"GEMM library: bad version {version!r:.20}")
        return LibrarySpec(tuple(sorted(set(dtypes))), lanes, version)


def driver_name(dtype: DType, lanes: int, trans_b: bool) -> str:
    """The name of the GEMM driver for ``dtype`` and B layout (``dlc.gemm.driverT.v16f32``;
    the library's export adds :func:`symbol_suffix`).  A storage dtype computed in a wider
    register type (bf16 in f32) names itself too: two drivers with one name and different
    element types would be one export called through two ABIs."""
    return _name(f"driver{'T' if trans_b else ''}", dtype, lanes)


def store_name(dtype: DType, lanes: int) -> str:
    """The name of the store function of matmuls without an epilogue
    (``dlc.gemm.store.v16f32``), named as :func:`driver_name` names a driver."""
    return _name("store", dtype, lanes)


def shallow_name(dtype: DType, lanes: int) -> str:
    """The name of the shallow-K function of matmuls without an epilogue
    (``dlc.gemm.shallow.v16f32``), named as :func:`driver_name` names a driver."""
    return _name("shallow", dtype, lanes)


def has_shallow_path(lanes: int) -> bool:
    """Whether GEMMs of vectors of ``lanes`` lanes have the shallow-K path (and the library a
    shallow function per dtype): narrower vectors do not pay for it."""
    return lanes >= 4


def _name(what: str, dtype: DType, lanes: int) -> str:
    from .llvmutil import memory_type, scalar_type, type_suffix, value_type

    stored = f".{dtype.value}" if memory_type(dtype) != scalar_type(dtype) else ""
    return f"dlc.gemm.{what}{stored}.{type_suffix(value_type(dtype, lanes))}"


__all__ = ["LibraryUse", "LibrarySpec", "use_library", "library_use", "symbol_suffix", "library_version",
           "driver_name", "shallow_name", "has_shallow_path"]
