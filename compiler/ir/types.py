"""Types of the dl IR: element dtypes and tensor types with static or symbolic dims.

A dim is an ``int`` (static) or a ``str`` (a symbol such as ``"N"``, bound at
call time).  One compiled function serves every value of a symbol.

Text form (MLIR's builtin tensor type; symbol names ride in the encoding so the
text stays parsable by ``mlir-opt``)::

    tensor<784x512xf32>          static
    tensor<?x784xf32, "N">       one symbolic dim named N
    tensor<?x?xf32, "N,M">       two, in order
    tensor<f32>                  a scalar (rank 0)
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

Dim = int | str


class DType(enum.Enum):
    f32 = "f32"
    f64 = "f64"
    i32 = "i32"
    i64 = "i64"
    bool = "i1"

    @property
    def np(self) -> np.dtype:
        return _NP[self]

    @property
    def is_float(self) -> bool:
        return self in (DType.f32, DType.f64)

    @property
    def is_int(self) -> bool:
        return self in (DType.i32, DType.i64)

    @property
    def itemsize(self) -> int:
        return _NP[self].itemsize

    @property
    def dsl_name(self) -> str:
        """The name the .dl language uses (``bool`` rather than ``i1``)."""
        return "bool" if self is DType.bool else self.value

    @staticmethod
    def from_name(name: str) -> DType:
        """Accepts both the IR name (``i1``) and the language name (``bool``)."""
        if name == "bool":
            return DType.bool
        return DType(name)

    @staticmethod
    def from_numpy(dtype: np.dtype) -> DType:
        for k, v in _NP.items():
            if v == np.dtype(dtype):
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
            largest = float(np.finfo(dtype.np).max)
            return f"{_short(value)} is beyond the range of {dtype.dsl_name} (largest {largest:g})"
    return None


def _short(value: float) -> str:
    text = str(value)
    return text if len(text) <= 40 else f"{text[:12]}...({len(text)} digits)"


_NP = {
    DType.f32: np.dtype(np.float32),
    DType.f64: np.dtype(np.float64),
    DType.i32: np.dtype(np.int32),
    DType.i64: np.dtype(np.int64),
    DType.bool: np.dtype(np.bool_),
}


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
        return tuple(d for d in self.shape if isinstance(d, str))

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def with_shape(self, shape: tuple[Dim, ...]) -> TensorType:
        return TensorType(self.dtype, tuple(shape))

    def with_dtype(self, dtype: DType) -> TensorType:
        return TensorType(dtype, self.shape)

    def num_elements(self, bindings: dict[str, int] | None = None) -> int:
        n = 1
        for d in self.shape:
            n *= d if isinstance(d, int) else (bindings or {})[d]
        return n

    def concrete_shape(self, bindings: dict[str, int]) -> tuple[int, ...]:
        return tuple(d if isinstance(d, int) else bindings[d] for d in self.shape)

    def __str__(self) -> str:
        dims = "".join(f"{'?' if isinstance(d, str) else d}x" for d in self.shape)
        enc = f', "{",".join(self.symbols)}"' if self.symbols else ""
        return f"tensor<{dims}{self.dtype}{enc}>"

    def dsl_str(self) -> str:
        """The .dl spelling, e.g. ``f32[N, 784]``, used in diagnostics."""
        return f"{self.dtype.dsl_name}[{', '.join(str(d) for d in self.shape)}]"
