"""Types of the dl IR: element dtypes and tensor types with static or symbolic dims.

A dim is an ``int`` (static), a ``str`` (a symbol such as ``"N"``, bound at
call time) or a :class:`~compiler.ir.dims.DimExpr` (an expression of symbols such
as ``max(N-1,0)``, the length of ``x[1:]``; see ``compiler/ir/dims.py``).  One
compiled function serves every value of a symbol.

Text form (MLIR's builtin tensor type; symbol names ride in the encoding so the
text stays parsable by ``mlir-opt``)::

    tensor<784x512xf32>          static
    tensor<?x784xf32, "N">       one symbolic dim named N
    tensor<?x?xf32, "N,M">       two, in order
    tensor<?x?xf32, "N,max(N-1,0)">  a dim computed from N
    tensor<f32>                  a scalar (rank 0)

Storage dtypes (``f16 bf16 i8 u8``, :attr:`DType.is_storage`) hold data in fewer bytes:
an op on them computes in a wider type (:attr:`DType.compute`: f32 for the floats, the
int itself for the ints) and rounds (floats, to nearest even) or wraps (ints) each
result to the storage type, as numpy's float16 and uint8 functions do.  Only the ops
whose definition says so take them (``OpDef.storage``).  ``bf16`` arrays are
``ml_dtypes.bfloat16`` (numpy has no bfloat16); ``u8`` is ``ui8`` in the IR text, as in MLIR.
"""

from __future__ import annotations

import builtins
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .dims import Dim, DimExpr, all_free_symbols, evaluate, format_dim

# Inside DType the names ``np`` and ``bool`` are members/properties, so the
# annotations there spell the numpy dtype and the builtin bool through these.
_NpDType = np.dtype


class DType(enum.Enum):
    f32 = "f32"
    f64 = "f64"
    i32 = "i32"
    i64 = "i64"
    bool = "i1"
    f16 = "f16"
    bf16 = "bf16"
    i8 = "i8"
    u8 = "ui8"

    @property
    def np(self) -> _NpDType:
        return _NP[self]

    @property
    def is_float(self) -> builtins.bool:
        return self in (DType.f32, DType.f64, DType.f16, DType.bf16)

    @property
    def is_int(self) -> builtins.bool:
        return self in (DType.i32, DType.i64, DType.i8, DType.u8)

    @property
    def is_storage(self) -> builtins.bool:
        """A storage dtype (``f16 bf16 i8 u8``): taken only by the ops that say so."""
        return self in _STORAGE

    @property
    def compute(self) -> DType:
        """The dtype an op on this dtype computes in: f32 for f16 and bf16, else itself."""
        return DType.f32 if self in (DType.f16, DType.bf16) else self

    @property
    def finfo(self):
        """numpy's ``finfo`` of a float dtype (ml_dtypes' for bf16)."""
        return _bfloat16_module().finfo(self.np) if self is DType.bf16 else np.finfo(self.np)

    @property
    def itemsize(self) -> int:
        return _NP[self].itemsize

    @property
    def dsl_name(self) -> str:
        """The name the .dl language uses (``bool`` rather than ``i1``, ``u8`` rather than ``ui8``)."""
        return _DSL_NAMES.get(self, self.value)

    @staticmethod
    def from_name(name: str) -> DType:
        """Accepts both the IR name (``i1``, ``ui8``) and the language name (``bool``, ``u8``)."""
        for dtype, dsl in _DSL_NAMES.items():
            if name == dsl:
                return dtype
        return DType(name)

    @staticmethod
    def from_numpy(dtype: _NpDType) -> DType:
        for k in DType:
            if k.np == np.dtype(dtype):
                return k
        raise KeyError(f"no dl dtype for numpy dtype {dtype}")

    def __str__(self) -> str:
        return self.value


def number_problem(value: float, dtype: DType) -> str | None:
    """Why the Python number ``value`` has no value of ``dtype`` (an int outside i32's or
    i64's range; a finite number beyond the float type's range), or None when it has one."""
    if dtype.is_int:
        info = np.iinfo(dtype.np)
        if not info.min <= value <= info.max:
            return f"{_short(value)} is outside the range of {dtype.dsl_name} ({info.min} .. {info.max})"
    elif dtype.is_float and (isinstance(value, int) or math.isfinite(value)):
        try:
            exact = float(value)
        except OverflowError:
            exact = math.inf
        with np.errstate(over="ignore"):
            rounded = dtype.np.type(exact)
        if not np.isfinite(rounded):
            largest = float(dtype.finfo.max)
            return f"{_short(value)} is beyond the range of {dtype.dsl_name} (largest {largest:g})"
    return None


def _short(value: float) -> str:
    text = str(value)
    return text if len(text) <= 40 else f"{text[:12]}...({len(text)} digits)"


def _bfloat16_module():
    """ml_dtypes, which gives numpy its bfloat16 (imported when bf16 is first used)."""
    import ml_dtypes

    return ml_dtypes


class _NumpyDtypes(dict):
    """DType -> numpy dtype; bf16's entry is made on first use (importing ml_dtypes)."""

    def __missing__(self, key: DType) -> np.dtype:
        if key is not DType.bf16:
            raise KeyError(key)
        self[key] = np.dtype(_bfloat16_module().bfloat16)
        return self[key]


_NP = _NumpyDtypes({
    DType.f32: np.dtype(np.float32),
    DType.f64: np.dtype(np.float64),
    DType.i32: np.dtype(np.int32),
    DType.i64: np.dtype(np.int64),
    DType.bool: np.dtype(np.bool_),
    DType.f16: np.dtype(np.float16),
    DType.i8: np.dtype(np.int8),
    DType.u8: np.dtype(np.uint8),
})
_STORAGE = frozenset((DType.f16, DType.bf16, DType.i8, DType.u8))
_DSL_NAMES = {DType.bool: "bool", DType.u8: "u8"}


# The most dims a tensor may have (numpy's limit before 2.0).  Loop nests, index maps and their
# emitters go dim by dim, so this also bounds how deep they nest.
MAX_RANK = 32
# The largest static dim: sizes and strides are i64 in generated code.
MAX_DIM = 2 ** 63 - 1


def shape_problem(shape: tuple[Dim, ...]) -> str | None:
    """Why ``shape`` cannot be a tensor's (too many dims, a dim too large), or None."""
    if len(shape) > MAX_RANK:
        return f"a tensor may have at most {MAX_RANK} dims, this one has {len(shape)}"
    for d in shape:
        if isinstance(d, int) and d > MAX_DIM:
            return f"dim {d} is too large (the largest is 2^63 - 1)"
    return None


@dataclass(frozen=True, slots=True)
class TensorType:
    dtype: DType
    shape: tuple[Dim, ...] = ()

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def symbols(self) -> tuple[str, ...]:
        """The dims that are plain symbols (what an argument of this type binds)."""
        return tuple(d for d in self.shape if isinstance(d, str))

    @property
    def free_symbols(self) -> tuple[str, ...]:
        """Every symbol the dims depend on, plain or inside an expression (``max(N-1,0)``)."""
        return all_free_symbols(self.shape)

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    @property
    def has_expressions(self) -> bool:
        """Whether a dim is an expression of symbols (not bound by an argument of this type)."""
        return any(isinstance(d, DimExpr) for d in self.shape)

    def with_shape(self, shape: tuple[Dim, ...]) -> TensorType:
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: DType) -> TensorType:
        return TensorType(dtype, self.shape)

    def num_elements(self, bindings: Mapping[str, int] | None = None) -> int:
        n = 1
        for d in self.concrete_shape(bindings or {}):
            n *= d
        return n

    def concrete_shape(self, bindings: Mapping[str, int]) -> tuple[int, ...]:
        return tuple(evaluate(d, bindings) for d in self.shape)

    def __str__(self) -> str:
        dims = "".join(f"{d}x" if isinstance(d, int) else "?x" for d in self.shape)
        names = [format_dim(d) for d in self.shape if not isinstance(d, int)]
        enc = f', "{",".join(names)}"' if names else ""
        return f"tensor<{dims}{self.dtype}{enc}>"

    def dsl_str(self) -> str:
        """The .dl spelling, e.g. ``f32[N, 784]``, used in diagnostics."""
        return f"{self.dtype.dsl_name}[{', '.join(str(d) for d in self.shape)}]"
