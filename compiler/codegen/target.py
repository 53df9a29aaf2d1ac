"""The target machine: host CPU detection, vector width, LLVM initialisation.

Native code is built for the CPU it runs on: the target machine is created
from the host's CPU name and feature string, so LLVM may use AVX-512, AVX2 or
plain SSE2 as the machine allows.  Codegen chooses its explicit vector width
from the same features (:attr:`Target.vector_bits`); a :class:`Target` can
also be made by hand (``Target.generic()``) to check that code built for a
narrower machine is still correct.

Everything that changes the generated object code is in
:class:`CodegenOptions`, whose :meth:`~CodegenOptions.key` enters the object
cache key.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field

import llvmlite
import llvmlite.binding as llvm

from ..ir.types import DType
from .blocking import Blocking, host_blocking

_INIT_LOCK = threading.Lock()
_INITIALIZED = False


def ensure_llvm() -> None:
    """Initialise LLVM's native target and asm printer, once per process.

    (``llvm.initialize()`` raises in llvmlite >= 0.45; this is the current way.)
    """
    global _INITIALIZED
    with _INIT_LOCK:
        if not _INITIALIZED:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            _INITIALIZED = True


@dataclass(frozen=True, slots=True)
class Target:
    """A CPU to generate code for: triple, CPU name and LLVM feature string."""

    triple: str
    cpu: str
    features: str

    @property
    def vector_bits(self) -> int:
        """Width of the widest SIMD register codegen will use explicitly."""
        feats = set(self.features.split(","))
        if "+avx512f" in feats:
            return 512
        if "+avx2" in feats or "+avx" in feats:
            return 256
        return 128

    def lanes(self, dtype: DType = DType.f32) -> int:
        """Vector lanes for ``dtype`` (bool and narrow types use the f32 count)."""
        size = max(dtype.itemsize, 4)
        return self.vector_bits // (8 * size)

    @staticmethod
    def generic() -> Target:
        """Baseline x86-64 (SSE2 only): a portability check for codegen."""
        ensure_llvm()
        return Target(llvm.get_process_triple(), "generic", "")

    def describe(self) -> str:
        return f"{self.triple} cpu={self.cpu} vector={self.vector_bits}-bit"


# The x86-64 psABI's portable levels and the features each adds (what ``--cpu x86-64-v3``
# means without ``--features``; LLVM knows the names, codegen reads the features).
_V2 = "+cx16,+popcnt,+sahf,+sse3,+sse4.1,+sse4.2,+ssse3"
_V3 = _V2 + ",+avx,+avx2,+bmi,+bmi2,+f16c,+fma,+lzcnt,+movbe,+xsave"
PORTABLE_CPUS = {"x86-64": "", "x86-64-v2": _V2, "x86-64-v3": _V3,
                 "x86-64-v4": _V3 + ",+avx512bw,+avx512cd,+avx512dq,+avx512f,+avx512vl"}


def named_target(cpu: str | None = None, features: str | None = None) -> Target:
    """The target of CPU ``cpu`` (default: the host's) with LLVM feature string ``features``
    (default: the host's features for the host CPU, a portable level's for
    ``x86-64``..``x86-64-v4``, else none: LLVM still schedules for the CPU named, and codegen
    then uses 128-bit vectors)."""
    host = host_target()
    cpu = cpu or host.cpu
    if features is None:
        features = host.features if cpu == host.cpu else PORTABLE_CPUS.get(cpu, "")
    return Target(host.triple, cpu, features)


@functools.cache
def host_target() -> Target:
    """The machine this process runs on."""
    ensure_llvm()
    features = llvm.get_host_cpu_features().flatten()
    return Target(llvm.get_process_triple(), llvm.get_host_cpu_name(), features)


@dataclass(frozen=True, slots=True)
class CodegenOptions:
    """Every knob that changes generated code (and so the cache key).

    ``vector_lanes`` overrides the f32 lane count (``None``: from the target);
    ``fuse`` enables elementwise fusion and matmul epilogues; ``plan_memory``
    lets temporaries share workspace memory (``bufferize.plan_memory``); ``profile``
    makes each entry point count the CPU cycles spent in each of its kernels
    (``CompiledFunction.kernel_profile()``); ``skip_zeros`` lets a GEMM whose A operand is
    mostly zeros at run time skip them (``sparse_gemm.py``; off: always the dense kernel);
    ``blocking`` fixes the packed GEMM's ``MC``/``NC`` (``None``: this CPU's choice,
    ``blocking.host_blocking``; it never changes results, only speed);
    ``flush_denormals`` runs each call with the CPU flushing denormal (subnormal) results
    and inputs to zero (x86 MXCSR FTZ and DAZ, set on entry and restored on return, on the
    pool's workers too), as JAX and TensorFlow do on CPUs: arithmetic on values below
    ~1.2e-38 (f32) is no longer slowed by microcode assists, and such values become +-0.
    """

    target: Target = field(default_factory=host_target)
    opt_level: int = 3
    fuse: bool = True
    vector_lanes: int | None = None
    profile: bool = False
    plan_memory: bool = True
    skip_zeros: bool = True
    blocking: Blocking | None = None
    flush_denormals: bool = False

    @property
    def lanes(self) -> int:
        return self.vector_lanes or self.target.lanes(DType.f32)

    @property
    def gemm_blocking(self) -> Blocking:
        """The packed GEMM's MC/NC: ``blocking``, else the CPU's choice."""
        return self.blocking or host_blocking(self.target)

    def key(self) -> str:
        """A stable text naming everything that determines the object code."""
        t = self.target
        return "|".join([t.triple, t.cpu, t.features, f"O{self.opt_level}",
                         f"fuse={self.fuse}", f"lanes={self.lanes}", f"profile={self.profile}",
                         f"plan={self.plan_memory}",
                         f"skip_zeros={self.skip_zeros}",
                         f"flush_denormals={self.flush_denormals}",
                         f"blocking={self.gemm_blocking.key()}",
                         f"llvmlite={llvmlite.__version__}",
                         f"llvm={'.'.join(map(str, llvm.llvm_version_info))}"])


def new_target_machine(options: CodegenOptions) -> llvm.TargetMachine:
    """A fresh LLVM target machine for ``options`` (one thread's own: they are not
    thread-safe)."""
    return _new_target_machine(options.target, options.opt_level)


def _new_target_machine(target: Target, opt_level: int) -> llvm.TargetMachine:
    ensure_llvm()
    tgt = llvm.Target.from_triple(target.triple)
    return tgt.create_target_machine(cpu=target.cpu, features=target.features,
                                     opt=min(opt_level, 3), reloc="pic", codemodel="default")


_target_machine = functools.cache(_new_target_machine)


def target_machine(options: CodegenOptions) -> llvm.TargetMachine:
    """The (cached) LLVM target machine for ``options``."""
    return _target_machine(options.target, options.opt_level)
