"""Compiled modules: ``runtime.compile(...)`` and checked calls into native code.

::

    import numpy as np, runtime
    mod = runtime.compile("examples/mnist_mlp.dl")     # a path, .dl source, IR text or a Module
    probs = mod.predict(w1, b1, w2, b2, x)             # numpy in, numpy out
    probs = mod["predict"](x=x, w1=w1, b1=b1, w2=w2, b2=b2)

Every call checks every argument before native code runs; a bad argument
raises :class:`ArgumentTypeError` (a ``TypeError``) or
:class:`ArgumentValueError` (a ``ValueError``), both :class:`DlRuntimeError`,
naming the argument with the expected and actual type.  The policy:

* **count and names** must match the signature (positional, then by name);
* **dtype** exact, or a *safe* numpy cast (``np.can_cast(..., "safe")``:
  i32 -> i64, f32 -> f64, bool -> f32 ...) which costs a converted copy;
  anything lossy (f64 -> f32, float -> int) is an error.  Python numbers are
  accepted for rank-0 parameters when they fit the dtype's kind and range;
* **rank** and every **static dim** must match; each **symbolic dim** takes
  its value from the first argument that has it and must agree everywhere;
* **sizes**: the dims bound must keep every tensor, loop nest and the
  workspace of the function within the size limit (``compiler/ir/sizes.py``,
  docs/ops.md "Sizes and overflow"), else a ``SizeLimitError``;
* **layout**: non-contiguous (or misaligned) inputs are copied to a
  contiguous array;
* **in-place parameters** (the training step's weights and optimizer state,
  ``Function.attrs["inplace"]``) are updated in the caller's array: it must
  have the exact dtype, be C-contiguous, aligned and writeable, and share no
  memory with any other argument.  The call returns that same array object
  for the corresponding output.

Memory the machine cannot give (outputs, temporaries, argument copies) is an
``AllocationError`` (a ``MemoryError``) saying how many GiB were asked.

A call whose arguments are all exact, C-contiguous, aligned arrays with a tuple of
shapes that passed before takes a fast path that does not repeat the checks of shapes
(docs/runtime.md, "The cost of a checked call"); anything else, the generic path.

Outputs are fresh arrays, 64-byte aligned.  Native code is re-entrant: one
compiled function may be called from several threads at once (ctypes
releases the GIL during the call).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import hashlib
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from compiler import __version__
from compiler.codegen.cache import cache_key
from compiler.codegen.driver import (
    SIGNATURE_SYMBOL,
    FunctionInfo,
    StageTimer,
    compile_module,
    signature_digest,
)
from compiler.codegen.library import LibrarySpec
from compiler.codegen.target import CodegenOptions, Target, host_target
from compiler.codegen.threads import SET_THREADS_SYMBOL, SHUTDOWN_SYMBOL
from compiler.diagnostics import DlIndexError, DlRuntimeError, SizeLimitError
from compiler.ir.core import Module
from compiler.ir.dims import DimExpr, evaluate
from compiler.ir.sizes import (
    MAX_BYTES,
    allocating,
    allocation_error,
    call_text,
    check_allocation,
    check_call_sizes,
    extent,
    power,
)
from compiler.ir.types import TensorType, number_problem

from .arguments import ArgumentTypeError, ArgumentValueError, as_path, check_passes
from .autotune import ensure_tuned
from .cache import ObjectCache
from .library import gemm_library, link_gemm_library
from .native import NativeLibrary

ALIGNMENT = 64
AOT_FORMAT = "dlc-aot-3"
LIBRARY_OBJECT = "gemm_library.o"       # an AOT directory's GEMM library (compiler/codegen/library.py)
ENTRY_SIGNATURE = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_void_p, ctypes.c_void_p)


class UnknownFunctionError(DlRuntimeError, KeyError):
    """``mod["name"]`` of a function the module does not have."""


class NoFunctionAttributeError(DlRuntimeError, AttributeError):
    """``mod.name`` of a function the module does not have."""


def native_error(info: FunctionInfo, status: int) -> DlRuntimeError:
    """The error an entry point's non-zero status means: 1, no memory for the workspace;
    ``2 + i``, run-time check ``i`` failed (an index out of range; nothing was written to
    the in-place arguments when the check could run first)."""
    check = status - 2
    if 0 <= check < len(info.checks):
        return DlIndexError(f"@{info.name}: {info.checks[check]}")
    return DlRuntimeError(f"@{info.name}: native code could not allocate its workspace (status {status})")


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array whose data is 64-byte aligned."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    with allocating(f"an array of {dtype} {tuple(shape)}", nbytes):
        raw = np.empty(nbytes + ALIGNMENT, dtype=np.uint8)
    start = (-_data(raw)) % ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def _data_slowly(a: np.ndarray) -> int:
    """The address of an array's first element, through numpy's array interface (~2 us)."""
    return a.__array_interface__["data"][0]


_DATA_OFFSET = ctypes.sizeof(ctypes.c_ssize_t) + ctypes.sizeof(ctypes.c_void_p)   # ob_refcnt, ob_type


def _data_field_reader() -> Any:
    """A fast reader of an array's data pointer, or None where it cannot be trusted.

    numpy's C struct for an array (``PyArrayObject_fields``, read by the
    ``PyArray_DATA`` macro) holds the data pointer right after the object
    header; on CPython ``id(a)`` is the object's address.  Reading that field
    with ctypes costs ~0.2 us where the array interface costs ~2 us.  The
    layout is confirmed on probe arrays (owning, offset views, read-only)
    when this module loads; on any mismatch calls use :func:`_data_slowly`.
    """
    offset = _DATA_OFFSET
    field = ctypes.c_void_p.from_address
    owner = np.arange(64, dtype=np.float32)
    probes: list[np.ndarray | np.generic] = [owner, owner[3:], owner[1::2], owner.reshape(8, 8)[2:, 1:],
                                             np.zeros(0), np.float64(1.0)]
    probes[1].flags.writeable = False
    try:
        for probe in probes:
            array = np.asarray(probe)
            if field(id(array) + offset).value != _data_slowly(array):
                return None
    except (ValueError, TypeError, OverflowError):
        return None
    return lambda a: field(id(a) + offset).value or 0


_read_data = _data_field_reader()


def _flag_masks() -> tuple[int, int] | None:
    """The bits of ``ndarray.flags.num`` that mean (C-contiguous and aligned, writeable):
    numpy's C API values (``NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED``,
    ``NPY_ARRAY_WRITEABLE``), confirmed on probe arrays when this module loads; None on
    any mismatch (then every call takes the generic path)."""
    c_aligned, writeable = 0x0001 | 0x0100, 0x0400
    base = np.zeros((4, 4), np.float32)
    readonly = base[1:]
    readonly.flags.writeable = False
    misaligned = np.zeros(17, np.uint8)[1:].view(np.float32)
    try:
        for probe in (base, readonly, base[:, ::2], base.T, misaligned, np.zeros(0), np.float32(1.0)):
            flags = np.asarray(probe).flags
            if ((flags.num & c_aligned) == c_aligned) != (flags.c_contiguous and flags.aligned) \
                    or bool(flags.num & writeable) != flags.writeable:
                return None
    except (AttributeError, TypeError, ValueError):
        return None
    return c_aligned, writeable


_FLAG_MASKS = _flag_masks()
_c_void_p_at = ctypes.c_void_p.from_address
_empty, _ndarray, _BYTE = np.empty, np.ndarray, np.dtype(np.uint8)


def _data(a: np.ndarray) -> int:
    """The address of an array's first element."""
    if _read_data is not None:
        return _read_data(a)
    return _data_slowly(a)


def _actual(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} {tuple(value.shape)}"
    return type(value).__name__


def _kind_fits(value: Any, t: TensorType) -> bool:
    if t.dtype.dsl_name == "bool":
        return isinstance(value, (bool, np.bool_))
    if t.dtype.is_int:
        return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


class _Param:
    """One parameter's checks, precomputed."""

    __slots__ = ("name", "type", "dtype", "shape", "rank", "inplace", "where", "static", "symbolic",
                 "computed", "static_shape", "scalar_type")

    def __init__(self, fn_name: str, name: str, t: TensorType, inplace: bool):
        self.name = name
        self.type = t
        self.dtype = t.dtype.np
        self.shape = t.shape
        self.rank = t.rank
        self.inplace = inplace
        self.where = f"@{fn_name}: argument '{name}'"
        self.static = [(a, d) for a, d in enumerate(t.shape) if isinstance(d, int)]
        self.symbolic = [(a, d) for a, d in enumerate(t.shape) if isinstance(d, str)]
        # dims computed from symbols (max(N-1,0)): checked once every argument has bound its dims
        self.computed = [(a, d) for a, d in enumerate(t.shape) if isinstance(d, DimExpr)]
        self.static_shape = t.shape if t.is_static else None
        self.scalar_type = self.dtype.type if self.rank == 0 else None

    def check(self, value: Any, bindings: dict[str, int]) -> np.ndarray:
        """The argument as an array native code may read (and write, if in place)."""
        # Fast path: an array that is already exactly right (no conversion, no message).
        if type(value) is np.ndarray and value.dtype == self.dtype and value.ndim == self.rank:
            shape = value.shape
            ok = shape == self.static_shape
            if not ok and self.static_shape is None:
                ok = True
                for a, d in self.static:
                    if shape[a] != d:
                        ok = False
                for a, sym in self.symbolic:
                    if bindings.setdefault(sym, shape[a]) != shape[a]:
                        ok = False
            flags = value.flags
            if ok and flags.c_contiguous and flags.aligned and (flags.writeable or not self.inplace):
                return value
        elif type(value) is self.scalar_type and not self.inplace:
            return np.asarray(value)                  # a numpy scalar of exactly the dtype, rank 0
        return self._check_slowly(value, bindings)

    def _check_slowly(self, value: Any, bindings: dict[str, int]) -> np.ndarray:
        if isinstance(value, np.generic):             # a numpy scalar keeps its dtype
            value = np.asarray(value)
        if not isinstance(value, np.ndarray):
            if self.rank == 0 and not self.inplace and _kind_fits(value, self.type):
                problem = number_problem(value, self.type.dtype)
                if problem is not None:
                    raise ArgumentValueError(f"{self.where} expects {self.type.dsl_str()}: {problem}")
                value = np.asarray(value, dtype=self.dtype)
            else:
                raise ArgumentTypeError(f"{self.where} must be a numpy array of {self.type.dsl_str()}, "
                                        f"got {_actual(value)}")
        if value.dtype != self.dtype:
            if self.inplace:
                raise ArgumentTypeError(f"{self.where} is updated in place and must have dtype exactly "
                                        f"{self.dtype} ({self.type.dsl_str()}), got {_actual(value)}")
            if not np.can_cast(value.dtype, self.dtype, "safe"):
                raise ArgumentTypeError(f"{self.where} expects {self.type.dsl_str()}, got {_actual(value)}: "
                                        f"{value.dtype} does not convert to {self.dtype} without loss")
            with allocating(f"{self.where} ({_actual(value)}) converted to {self.dtype}",
                            value.size * self.dtype.itemsize):
                value = value.astype(self.dtype)
        if value.ndim != self.rank:
            raise ArgumentValueError(f"{self.where} expects {self.type.dsl_str()} (rank {self.rank}), "
                                     f"got {_actual(value)}")
        for axis, (dim, size) in enumerate(zip(self.shape, value.shape)):
            if dim == size or isinstance(dim, DimExpr):
                continue
            if isinstance(dim, int):
                raise ArgumentValueError(f"{self.where} expects {self.type.dsl_str()}, got {_actual(value)}: "
                                         f"dim {axis} is {size}, not {dim}")
            bound = bindings.setdefault(dim, size)
            if bound != size:
                raise ArgumentValueError(f"{self.where} expects {self.type.dsl_str()}, got {_actual(value)}: "
                                         f"dim {axis} ({dim}) is {size}, but {dim} = {bound} from an "
                                         "earlier argument")
        flags = value.flags
        if not (flags.c_contiguous and flags.aligned):
            if self.inplace:
                raise ArgumentValueError(f"{self.where} is updated in place and must be C-contiguous "
                                         "and aligned; pass np.ascontiguousarray(...) and use the result")
            with allocating(f"{self.where} ({_actual(value)}, strides {value.strides}) copied to "
                            "contiguous memory", value.nbytes):
                value = np.ascontiguousarray(value)
                if not value.flags.aligned:
                    value = value.copy()
        if self.inplace and not flags.writeable:
            raise ArgumentValueError(f"{self.where} is updated in place but the array is read-only")
        return value

    def check_computed(self, array: np.ndarray, bindings: dict[str, int]) -> None:
        """The dims computed from symbols (``max(N-1,0)``) against the argument's shape."""
        for axis, dim in self.computed:
            want = evaluate(dim, bindings)
            if array.shape[axis] != want:
                raise ArgumentValueError(f"{self.where} expects {self.type.dsl_str()}, got {_actual(array)}: "
                                         f"dim {axis} is {array.shape[axis]}, not {dim} = {want} "
                                         f"({', '.join(f'{k}={v}' for k, v in bindings.items())})")


class CompiledFunction:
    """A native entry point behind argument checks (see the module docstring).

    ``signature`` is the human-readable signature, ``entry_address`` and
    ``ctypes_signature`` the raw C entry point for embedding:
    ``int32_t f(void **buffers, const int64_t *dims)`` -- buffers: parameters
    then outputs (an in-place output's slot holds its parameter's pointer),
    dims: the symbolic dims in ``info.symbols`` order; it returns 0, or 1
    when its workspace could not be allocated, or ``2 + i`` when run-time
    check ``i`` (``info.checks[i]``: an index out of range) failed.
    """

    def __init__(self, info: FunctionInfo, library: NativeLibrary):
        self.info = info
        self._library = library                  # keeps the code alive
        self.entry_address = library.address(info.symbol)
        self.ctypes_signature = ENTRY_SIGNATURE
        self._entry = ENTRY_SIGNATURE(self.entry_address)
        inplace_params = {p: o for o, p in info.inplace}
        self._params = [_Param(info.name, n, t, i in inplace_params)
                        for i, (n, t) in enumerate(info.params)]
        self._index = {n: i for i, (n, _) in enumerate(info.params)}
        self._inplace_out = {o: p for o, p in info.inplace}
        self._outputs = [t for _, t in info.outputs]
        self._out_dtypes = [t.dtype.np for t in self._outputs]
        self._has_inplace = bool(info.inplace)
        self._computed = [i for i, p in enumerate(self._params) if p.computed]
        self._inplace_params = frozenset(p for _, p in info.inplace)
        self._fresh_outputs = [i for i in range(len(self._outputs)) if i not in self._inplace_out]
        self._slots = ctypes.c_void_p * (len(self._params) + len(self._outputs))
        self._dims = ctypes.c_int64 * max(len(info.symbols), 1)
        self._local = threading.local()          # call_unchecked's BoundCall, per thread
        self._plans: dict[tuple[int, ...], _CallPlan] = {}   # per tuple of dim values
        # The fast path of __call__ (see there): per parameter the exact dtype object and the
        # flag bits its array must have; None where the array layout could not be confirmed.
        self._fast: tuple[tuple[np.dtype, int], ...] | None = None
        if _FLAG_MASKS is not None and _read_data is not None:
            c_aligned, writeable = _FLAG_MASKS
            self._fast = tuple((p.dtype, c_aligned | (writeable if p.inplace else 0)) for p in self._params)
        self._shape_plans: dict[tuple[tuple[int, ...], ...], _CallPlan] = {}   # per tuple of shapes
        self._free_slots: list[Any] = []         # buffer arrays not in use by a call (any thread)
        # the entry point without argument conversion: it is only ever given ctypes arrays
        self._raw_entry = ctypes.CFUNCTYPE(ctypes.c_int32)(self.entry_address)
        self._raw_entry.argtypes = None                # type: ignore[assignment]  # ctypes allows None

    @property
    def name(self) -> str:
        return self.info.name

    def kernel_profile(self, reset: bool = False) -> list[tuple[str, int]] | None:
        """CPU cycles spent in each kernel over all calls so far, with the kernel's loop IR
        line -- for code compiled with ``CodegenOptions(profile=True)``, else None.
        (Counters are per process and not synchronised between threads.)"""
        from compiler.codegen.llvm import profile_symbol

        addr = self._library.global_address(profile_symbol(self.name))
        if addr is None or not self.info.kernels:
            return None
        counters = np.ctypeslib.as_array((ctypes.c_int64 * len(self.info.kernels)).from_address(addr))
        result = list(zip(self.info.kernels, (int(c) for c in counters)))
        if reset:
            counters[:] = 0
        return result

    @property
    def signature(self) -> str:
        """``name(x: f32[N, 784], ...) -> (f32[N, 10])``."""
        return signature_text(self.info)

    def __repr__(self) -> str:
        return f"<CompiledFunction {self.signature}>"

    def __call__(self, *args: Any, **kwargs: Any) -> np.ndarray | tuple[np.ndarray, ...]:
        """Check the arguments, run native code, return the output(s).

        The fast path takes positional arguments that are all plain ``np.ndarray``s of
        exactly the parameters' dtype objects, C-contiguous and aligned (and writeable
        where updated in place), whose tuple of shapes has passed the full check before
        (``_shape_plans``): every check that depends on shapes alone -- rank, static
        dims, symbolic dims agreeing, computed dims, non-empty reductions, size limits
        -- gave the same answer then and is not repeated; in-place arguments are still
        checked for shared memory.  Anything else (keywords, lists, numbers, numpy
        scalars, subclasses, other dtypes, strided or read-only arrays, new shapes) takes
        the generic path, :meth:`_call_checked`, which raises every error.
        """
        fast = self._fast
        if fast is None or kwargs or len(args) != len(fast):
            return self._call_checked(args, kwargs)
        ndarray, field = np.ndarray, _c_void_p_at
        shapes: list[tuple[int, ...]] = []
        pointers: list[int] = []
        for v, (dtype, mask) in zip(args, fast):
            if type(v) is not ndarray or v.dtype is not dtype or v.flags.num & mask != mask:
                return self._call_checked(args, kwargs)
            shapes.append(v.shape)
            pointers.append(field(id(v) + _DATA_OFFSET).value or 0)
        plan = self._shape_plans.get(tuple(shapes))
        if plan is None:
            return self._call_checked(args, kwargs, tuple(shapes))
        if self._has_inplace:
            self._check_overlap(list(args), pointers)
        return self._run(args, pointers, plan)

    def _call_checked(self, args: tuple, kwargs: dict[str, Any],
                      shapes: tuple[tuple[int, ...], ...] | None = None) -> np.ndarray | tuple[np.ndarray, ...]:
        """The generic path: every check of every argument (converting what may be
        converted), then native code.  ``shapes``: the arguments' shapes when they are
        exact arrays the fast path takes, remembered once they pass."""
        values = args if not kwargs and len(args) == len(self._params) else self._bind(args, kwargs)
        bindings: dict[str, int] = {}
        arrays = [p.check(v, bindings) for p, v in zip(self._params, values)]
        if self._computed:
            self._check_computed(arrays, bindings)
        pointers = [_data(a) for a in arrays]
        if self._has_inplace:
            self._check_overlap(arrays, pointers)
        plan = self._plan(bindings)
        if shapes is not None:
            if len(self._shape_plans) >= _MAX_PLANS:
                self._shape_plans.clear()
            self._shape_plans[shapes] = plan
        return self._run(arrays, pointers, plan)

    def _run(self, arrays: list[np.ndarray] | tuple, pointers: list[int],
             plan: _CallPlan) -> np.ndarray | tuple[np.ndarray, ...]:
        """Native code on checked arrays (their data pointers given) with fresh outputs."""
        single = plan.single
        result: np.ndarray | tuple[np.ndarray, ...]
        if single is not None:                  # the usual case, inline: one fresh output
            try:
                raw = _empty(single[2], _BYTE)
            except MemoryError:                 # within the machine's memory (checked), yet refused
                raise allocation_error(f"{plan.where}the outputs", plan.total) from None
            base = _data(raw)
            start = -base % ALIGNMENT
            result = _ndarray(single[0], single[1], raw, start)
            pointers = pointers + [base + start]
        else:
            outs, out_pointers = plan.allocate()
            for o, p in plan.inplace:
                outs[o] = arrays[p]
                out_pointers[o] = pointers[p]
            pointers = pointers + out_pointers
            result = outs[0] if len(outs) == 1 else tuple(outs)
        free = self._free_slots
        try:
            slots = free.pop()                  # atomic: no two calls share a buffer array
        except IndexError:
            slots = self._slots()
        slots[:] = pointers
        status = self._raw_entry(slots, plan.dims)
        free.append(slots)
        if status != 0:
            raise plan.workspace_error(status) if status == 1 else native_error(self.info, status)
        return result

    def _plan(self, bindings: dict[str, int]) -> _CallPlan:
        """The output layout and dims array for these dim values (built once per set of values)."""
        # Parameters bind dims in one fixed order, so the values alone identify the binding.
        plan = self._plans.get(tuple(bindings.values()))
        if plan is None:
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            plan = self._plans[tuple(bindings.values())] = _CallPlan(self, bindings)
        return plan

    def bind(self, *args: Any, reuse_outputs: bool = False) -> BoundCall:
        """A :class:`BoundCall` for repeated calls with arguments like ``args`` (checked now)."""
        return BoundCall(self, args, reuse_outputs)

    def call_unchecked(self, *args: Any) -> np.ndarray | tuple[np.ndarray, ...]:
        """The call path of a training loop: positional arguments, checks done once.

        Each thread keeps a :class:`BoundCall` (with reused outputs) that
        re-validates only what changed since its last call: an argument that is
        the very array object it saw before, with the same shape and dtype, is
        trusted; any other argument is checked as :meth:`__call__` checks it.
        Bad arguments still raise the same errors -- only the cost differs.

        Contract: the outputs that are not in place are **reused** by the next
        ``call_unchecked`` of this function on the same thread (copy them to
        keep them); arrays passed in must not be resized with
        ``ndarray.resize(refcheck=False)`` between calls.
        """
        bound = getattr(self._local, "bound", None)
        if bound is None:
            bound = self._local.bound = BoundCall(self, args, reuse_outputs=True)
            return bound.result()
        return bound(*args)

    def _prepare_call(self, values: list[Any]) -> tuple[list[np.ndarray], dict[str, int], list[int]]:
        """Checked arrays, symbol bindings and data pointers for ``values`` (positional)."""
        bindings: dict[str, int] = {}
        arrays = [p.check(v, bindings) for p, v in zip(self._params, values)]
        if self._computed:
            self._check_computed(arrays, bindings)
        pointers = [_data(a) for a in arrays]
        if self._has_inplace:
            self._check_overlap(arrays, pointers)
        return arrays, bindings, pointers

    def _check_computed(self, arrays: list[np.ndarray], bindings: dict[str, int]) -> None:
        for i in self._computed:
            self._params[i].check_computed(arrays[i], bindings)

    def _allocate_outputs(self, outs: list[np.ndarray], bindings: dict[str, int]) -> dict[int, int]:
        """Fresh outputs carved from one allocation, each 64-byte aligned; their pointers."""
        fresh, pointers = self._plan(bindings).allocate()
        for i in self._fresh_outputs:
            outs[i] = fresh[i]
        return {i: pointers[i] for i in self._fresh_outputs}

    def _bind(self, args: tuple, kwargs: dict[str, Any]) -> list[Any]:
        n = len(self._params)
        if not kwargs:
            if len(args) != n:
                raise ArgumentTypeError(f"@{self.name} takes {n} argument(s) "
                                        f"({', '.join(p.name for p in self._params)}), got {len(args)}")
            return list(args)
        if len(args) > n:
            raise ArgumentTypeError(f"@{self.name} takes {n} argument(s), got {len(args)} positional")
        values: list[Any] = list(args) + [_MISSING] * (n - len(args))
        for name, value in kwargs.items():
            i = self._index.get(name)
            if i is None:
                raise ArgumentTypeError(f"@{self.name} has no parameter '{name}' "
                                        f"(parameters: {', '.join(p.name for p in self._params)})")
            if values[i] is not _MISSING:
                raise ArgumentTypeError(f"@{self.name}: argument '{name}' given twice")
            values[i] = value
        missing = [p.name for p, v in zip(self._params, values) if v is _MISSING]
        if missing:
            raise ArgumentTypeError(f"@{self.name}: missing argument '{missing[0]}'")
        return values

    def _check_overlap(self, arrays: list[np.ndarray], pointers: list[int]) -> None:
        """No in-place argument may share memory with another argument.  All are contiguous
        by now, each occupying [pointer, pointer + nbytes): when no two spans overlap at all
        (the usual call) one sweep over the sorted spans shows it; else look closer."""
        end = 0
        for start, size in sorted(zip(pointers, [a.nbytes for a in arrays])):
            if size:
                if start < end:
                    self._check_overlap_runs(arrays, pointers)
                    return
                end = start + size

    def _check_overlap_runs(self, arrays: list[np.ndarray], pointers: list[int]) -> None:
        """Sweep the sorted spans, and look closer only when a run of overlapping spans holds
        an in-place argument."""
        spans = sorted((ptr, ptr + a.nbytes, i) for i, (ptr, a) in enumerate(zip(pointers, arrays))
                       if a.nbytes)
        inplace = self._inplace_params
        run_end = -1
        run: list[int] = []
        for start, end, i in spans + [(1 << 64, 1 << 64, -1)]:
            if start >= run_end:
                if len(run) > 1 and any(j in inplace for j in run):
                    self._report_overlap(run, pointers, arrays)
                run, run_end = [], end
            run.append(i)
            run_end = max(run_end, end)

    def _report_overlap(self, run: list[int], pointers: list[int], arrays: list[np.ndarray]) -> None:
        for p in run:
            if p not in self._inplace_params:
                continue
            for i in run:
                if i != p and pointers[i] < pointers[p] + arrays[p].nbytes \
                        and pointers[p] < pointers[i] + arrays[i].nbytes:
                    raise ArgumentValueError(
                        f"@{self.name}: argument '{self._params[p].name}' is updated in place and "
                        f"shares memory with argument '{self._params[i].name}'")


class BoundCall:
    """Repeated calls of one compiled function at a few microseconds of overhead.

    Created from example arguments, which are checked in full
    (:meth:`CompiledFunction.bind`).  A later call re-validates only what
    changed: an argument that is the same object as in the last call -- with
    the same shape and dtype, and not converted on the way (a converted copy
    could be stale) -- keeps its checked array and data pointer; every other
    argument goes through the full check (:class:`_Param`), symbolic dims are
    re-bound, and in-place arguments are checked again for shared memory.
    The ctypes buffer and dims arrays persist between calls; only changed
    slots are rewritten.  With ``reuse_outputs`` the fresh outputs are
    allocated once per set of dim values and overwritten by every call (the
    caller copies what it keeps).

    Not thread-safe: use one per thread (``call_unchecked`` does).
    """

    def __init__(self, fn: CompiledFunction, args: tuple, reuse_outputs: bool = False):
        self._fn = fn
        self._n = len(fn._params)
        self._reuse = reuse_outputs
        self._symbolic = [i for i, p in enumerate(fn._params) if p.symbolic]
        self._slots = fn._slots()
        self._dims = fn._dims()
        self._bindings: dict[str, int] | None = None
        self._outs: list[np.ndarray] | None = None
        self._result: Any = None
        values = fn._bind(args, {})
        self._accept(values, *fn._prepare_call(values))

    def __call__(self, *args: Any) -> np.ndarray | tuple[np.ndarray, ...]:
        """Call with positional arguments (the function's count and order)."""
        if len(args) != self._n:
            self._fn._bind(args, {})                    # raises the count error
        originals, layouts, immutable = self._originals, self._layouts, self._immutable
        changed: list[int] | None = None
        for i, a in enumerate(args):
            if a is originals[i]:
                layout = layouts[i]
                if layout is None:
                    if immutable[i]:                    # the same Python or numpy scalar
                        continue
                elif a.shape == layout[0] and a.dtype is layout[1]:
                    continue
            if changed is None:
                changed = [i]
            else:
                changed.append(i)
        if changed is not None:
            self._update(args, changed)
        return self.result()

    def result(self) -> np.ndarray | tuple[np.ndarray, ...]:
        """Run native code on the current buffers; the output(s)."""
        fn = self._fn
        if not self._reuse:
            self._new_outputs(self._bindings or {})
        status = fn._entry(self._slots, self._dims)
        if status != 0:
            if status == 1:
                raise fn._plan(self._bindings or {}).workspace_error(status)
            raise native_error(fn.info, status)
        return self._result

    def _update(self, args: tuple, changed: list[int]) -> None:
        """Check the changed arguments, re-bind the dims, rewrite what moved."""
        fn = self._fn
        params = fn._params
        old_arrays = self._arrays
        arrays = list(old_arrays)
        pointers = list(self._pointers)
        bindings: dict[str, int] = {}
        todo = set(changed)
        for i in sorted(todo.union(self._symbolic)):       # in order: the first use binds a dim
            if i in todo:
                a = arrays[i] = params[i].check(args[i], bindings)
                if a is not old_arrays[i]:
                    pointers[i] = _data(a)
                continue
            shape = arrays[i].shape
            for axis, sym in params[i].symbolic:
                if bindings.setdefault(sym, shape[axis]) != shape[axis]:
                    # an unchanged argument disagrees with a changed one: the full check
                    # reports it as a plain call would
                    values = list(args)
                    self._accept(values, *fn._prepare_call(values))
                    return
        if fn._computed:
            fn._check_computed(arrays, bindings)
        if fn._has_inplace:
            fn._check_overlap(arrays, pointers)
        values = list(self._originals)
        for i in changed:
            values[i] = args[i]
        self._accept(values, arrays, bindings, pointers, changed)

    def _accept(self, values: list[Any], arrays: list[np.ndarray], bindings: dict[str, int],
                pointers: list[int], changed: list[int] | None = None) -> None:
        """Take checked arguments as the current state and write their slots."""
        fn = self._fn
        fn._plan(bindings)                 # the sizes these dims make, checked before any change
        if changed is None:
            changed = list(range(self._n))
            self._layouts: list[tuple | None] = [None] * self._n
            self._immutable: list[bool] = [False] * self._n
        self._originals = values
        self._arrays = arrays
        self._pointers = pointers
        slots = self._slots
        for i in changed:
            v, a = values[i], arrays[i]
            self._layouts[i] = (a.shape, a.dtype) if v is a else None
            self._immutable[i] = isinstance(v, (int, float, np.generic))
            slots[i] = pointers[i]
        for o, p in fn._inplace_out.items():
            slots[self._n + o] = pointers[p]
        if bindings != self._bindings:
            for j, sym in enumerate(fn.info.symbols):
                self._dims[j] = bindings[sym]
            self._bindings = bindings
            if self._reuse:
                self._new_outputs(bindings)
        if self._outs is not None:
            self._set_results()

    def _new_outputs(self, bindings: dict[str, int]) -> None:
        fn = self._fn
        outs: list[np.ndarray] = [None] * len(fn._outputs)  # type: ignore[list-item]
        for o, ptr in fn._allocate_outputs(outs, bindings).items():
            self._slots[self._n + o] = ptr
        self._outs = outs
        self._set_results()

    def _set_results(self) -> None:
        outs = self._outs
        assert outs is not None     # set by _new_outputs before any call here
        for o, p in self._fn._inplace_out.items():
            outs[o] = self._arrays[p]
        self._result = outs[0] if len(outs) == 1 else tuple(outs)


_MISSING = object()
_MAX_PLANS = 64          # call plans kept per function (one per set of dim values seen)


class _CallPlan:
    """What a call with one set of dim values needs beyond its arguments, computed once:
    each fresh output's shape, dtype and offset in one shared allocation (64-byte
    aligned), and the native dims array (read-only to native code, so shared).

    Building it checks the sizes the dims make (``compiler/ir/sizes.py``): every
    tensor and loop nest of the function within the size limit, and the workspace
    native code will allocate -- its temporaries and its matmul packing regions'
    bound -- within the limit too, the temporaries and outputs within the machine's
    memory; else a :class:`SizeLimitError` or an ``AllocationError`` before native
    code runs."""

    __slots__ = ("dims", "inplace", "layout", "total", "n_outputs", "where", "temp_bytes", "single")

    def __init__(self, fn: CompiledFunction, bindings: dict[str, int]):
        info = fn.info
        self.where = call_text(f"@{fn.name}", bindings)
        info.check_dims(bindings)                # e.g. a max over an axis that is empty
        check_call_sizes(f"@{fn.name}", info.sizes, bindings)
        self.temp_bytes = _aligned_sum(info.temps, bindings)
        workspace = self.temp_bytes + _aligned_sum(info.packing, bindings) + ALIGNMENT
        if workspace > MAX_BYTES:
            raise SizeLimitError(f"{self.where}native code's workspace would need up to "
                                 f"{power(workspace)} bytes; the limit is {power(MAX_BYTES)}")
        check_allocation(f"{self.where}native code's temporaries", self.temp_bytes)
        self.dims = fn._dims(*[bindings[s] for s in info.symbols])
        self.inplace = list(fn._inplace_out.items())
        self.n_outputs = len(fn._outputs)
        self.layout: list[tuple[int, tuple[int, ...], np.dtype, int]] = []
        total = 0
        for i in fn._fresh_outputs:
            shape = fn._outputs[i].concrete_shape(bindings)
            dtype = fn._out_dtypes[i]
            self.layout.append((i, shape, dtype, total))
            total += -(-math.prod(shape) * dtype.itemsize // ALIGNMENT) * ALIGNMENT
        self.total = total
        check_allocation(f"{self.where}the outputs", total)
        # (shape, dtype, bytes to allocate) of the one output of a function with no other
        self.single: tuple[tuple[int, ...], np.dtype, int] | None = None
        if self.n_outputs == 1 and len(self.layout) == 1:
            self.single = (self.layout[0][1], self.layout[0][2], total + ALIGNMENT)

    def allocate(self) -> tuple[list[Any], list[int]]:
        """Fresh (uninitialised) outputs and their data pointers; in-place slots are None/0."""
        outs: list[Any] = [None] * self.n_outputs
        pointers = [0] * self.n_outputs
        if self.layout:
            try:
                raw = _empty(self.total + ALIGNMENT, _BYTE)
            except MemoryError:                 # within the machine's memory (checked), yet refused
                raise allocation_error(f"{self.where}the outputs", self.total) from None
            base = _data(raw)
            start = -base % ALIGNMENT
            base += start
            for i, shape, dtype, offset in self.layout:
                outs[i] = _ndarray(shape, dtype, raw, start + offset)
                pointers[i] = base + offset
        return outs, pointers

    def workspace_error(self, status: int) -> DlRuntimeError:
        """The error for native code's status ``status`` (1: its workspace could not be allocated)."""
        return allocation_error(f"{self.where}native code's workspace (status {status}: not allocated) "
                                "for its temporaries and matmul packing regions", self.temp_bytes)


def _aligned_sum(regions: tuple[tuple[int, tuple], ...], bindings: dict[str, int]) -> int:
    """Bytes of ``(bytes per element, shape)`` regions laid out one after another, each
    rounded up to ALIGNMENT (zero dims counted as one: a bound, as sizes.extent)."""
    return sum(-(-extent(shape, bindings) * size // ALIGNMENT) * ALIGNMENT for size, shape in regions)


def signature_text(info: FunctionInfo) -> str:
    """An entry point's signature as text: ``name(x: f32[N, 784], ...) -> (f32[N, 10])``."""
    params = ", ".join(f"{n}: {t.dsl_str()}" for n, t in info.params)
    outs = ", ".join(f"{n}: {t.dsl_str()}" if n else t.dsl_str() for n, t in info.outputs)
    return f"{info.name}({params}) -> ({outs})"


class CompiledModule:
    """Native code for a module's functions: ``mod.fn(...)``, ``mod["fn"]``, ``mod.functions``."""

    def __init__(self, library: NativeLibrary, infos: list[FunctionInfo], objects: list[bytes],
                 target: Target, module: Module | None = None, cache_path: Path | None = None,
                 gemm: tuple[LibrarySpec, bytes] | None = None):
        self._library = library
        self.objects = objects                  # the ELF objects loaded (one per part compiled)
        self.gemm_library = gemm                # (spec, object code) the object is linked with
        self.timings = StageTimer()             # set by compile(): where its time went
        self.target = target
        self._module = module
        self._origin: Any = None              # a cache hit by source: what to rebuild module from
        self.cache_path = cache_path
        self.functions: dict[str, CompiledFunction] = {
            info.name: CompiledFunction(info, library) for info in infos}

    @property
    def module(self) -> Module | None:
        """The dl IR compiled (after the pass pipeline), when built from source; on a cache
        hit by source it is rebuilt on first access."""
        if self._module is None and self._origin is not None:
            origin, self._origin = self._origin, None
            self._module = _prepare(origin, self._passes)
        return self._module

    _passes: str | list[str] | None = None

    def __getitem__(self, name: str) -> CompiledFunction:
        try:
            return self.functions[name]
        except (KeyError, TypeError):
            raise UnknownFunctionError(f"no compiled function {name!r} (functions: "
                                       f"{', '.join(self.functions) or 'none'})") from None

    def __getattr__(self, name: str) -> CompiledFunction:
        functions = self.__dict__.get("functions", {})
        if name in functions:
            return functions[name]
        raise NoFunctionAttributeError(f"compiled module has no function '{name}' "
                                       f"(functions: {', '.join(functions) or 'none'})")

    def __contains__(self, name: str) -> bool:
        return name in self.functions

    def __iter__(self) -> Iterator[str]:
        return iter(self.functions)

    def __repr__(self) -> str:
        return f"<CompiledModule {', '.join(self.functions)}>"

    def save(self, directory: str | Path) -> Path:
        """Write an AOT directory: object code, ``manifest.json`` (and, with a C compiler,
        a shared library and a C header).  :func:`load_compiled` reads it back."""
        return save_compiled(self, directory)


# ---------------------------------------------------------------------------
# compile


_COMPILE_LOCK = threading.Lock()


def compile(source: str | Path | Module, *, cache: bool | str | Path | ObjectCache = True,
            passes: str | list[str] | None = None,
            options: CodegenOptions | None = None, timings: bool = False) -> CompiledModule:
    """Compile a ``.dl`` file, ``.dl`` source text, dl IR text or a :class:`Module` to native code.

    ``passes``: the pass pipeline run first (default ``"default"``; ``""`` for
    none); a Module argument is copied first, never changed.  ``cache``:
    ``True`` for the default object cache, ``False`` for none, or a folder
    or :class:`ObjectCache`.  ``options``: codegen options (default: the host
    CPU at O3).  The wall time of every stage from source to callable is in the
    result's ``timings`` (a :class:`~compiler.codegen.driver.StageTimer`);
    ``timings=True`` also prints its report to stderr.
    """
    _check_compile_arguments(source, cache, passes, options, timings)
    timer = StageTimer()
    with _collector_paused(timer):
        compiled = _compile(source, cache, passes, options, timer)
    timer.finish()
    compiled.timings = timer
    if timings:
        sys.stderr.write(timer.report())
    return compiled


@contextlib.contextmanager
def _collector_paused(timer: StageTimer) -> Iterator[None]:
    """Python's cyclic garbage collector off for the duration (when it was on), then one
    pass over the youngest generation, charged to ``timer``'s "garbage collection".

    A compile allocates some 10^5 objects that live until its end (``llvmlite.ir``'s
    instructions, the loop IR) and little cyclic garbage; the collector's repeated
    passes over them were 5-7% of a cold compile of the MNIST step, the one pass at the
    end (which the next allocation would otherwise start) ~2%."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            with timer("garbage collection"):
                gc.enable()
                gc.collect(0)


def _compile(source: str | Path | Module, cache: bool | str | Path | ObjectCache,
             passes: str | list[str] | None, options: CodegenOptions | None,
             timer: StageTimer) -> CompiledModule:
    from compiler.ir.printer import print_module

    with timer("target detection"):
        options = options or CodegenOptions()
        ensure_tuned(options, compile)   # the GEMM blocking: read once per process, tuned once per machine
    store = _cache_of(cache)
    with timer("cache lookup"):
        early = _source_key(source, passes, options) if store is not None else None
        hit = _load_by_source(store, *early, options, passes) if store is not None and early is not None else None
    if hit is not None:
        return hit
    module = _prepare(source, passes, timer)
    with timer("cache lookup"):
        key = cache_key(print_module(module), options)
    with _COMPILE_LOCK:
        with timer("cache lookup"):
            loaded = _load_entry(store, key, options) if store is not None else None
        if loaded is not None:
            library, infos, objects, gemm = loaded
        else:
            objects, infos, spec = compile_module(module, options, timer=timer)
            gemm = (spec, gemm_library(spec, options, timer)) if spec is not None else None
            library = None
            if store is not None:
                with timer("cache write"):
                    store.store(key, b"".join(objects), _header(infos, options.target, spec, objects))
        if store is not None and early is not None:
            with timer("cache write"):
                store.store_alias(early[0], key)
    if library is None:
        with timer("native load and link"):
            library = _native(objects, gemm)
    return CompiledModule(library, infos, objects, options.target, module,
                          store.path(key) if store is not None else None, gemm)


def _header(infos: list[FunctionInfo], target: Target, spec: LibrarySpec | None,
            objects: list[bytes]) -> dict[str, Any]:
    """A cache entry's header: the signatures, the target, the GEMM library linked in, and
    for code compiled in parts the size of each object (the entry holds them one after
    another)."""
    header: dict[str, Any] = {"functions": [i.to_json() for i in infos], "target": _target_json(target)}
    if spec is not None:
        header["library"] = spec.to_json()
    if len(objects) > 1:
        header["objects"] = [len(o) for o in objects]
    return header


def _objects_of(header: dict[str, Any], code: bytes) -> list[bytes]:
    """A cache entry's objects: ``code`` cut at the sizes its header lists (the whole of it
    without a list); a ValueError when the sizes are not positive integers adding up to it."""
    sizes = header.get("objects")
    if sizes is None:
        return [code]
    if not (isinstance(sizes, list) and sizes and all(type(n) is int and n > 0 for n in sizes)
            and sum(sizes) == len(code)):
        raise ValueError(f"field 'objects' must list positive sizes that add up to the entry's "
                         f"{len(code)} bytes, got {sizes!r:.80}")
    ends = list(itertools.accumulate(sizes))
    return [code[end - n:end] for n, end in zip(sizes, ends)]


def _native(objects: list[bytes], gemm: tuple[LibrarySpec, bytes] | None) -> NativeLibrary:
    """``objects`` loaded together, linked with their GEMM library if they call one."""
    if gemm is not None:
        link_gemm_library(*gemm)
    return NativeLibrary(objects)


def _check_compile_arguments(source: Any, cache: Any, passes: Any, options: Any, timings: Any) -> None:
    """:func:`compile`'s arguments, each of a type it takes (an :class:`ArgumentTypeError`
    or :class:`ArgumentValueError` names the one that is not)."""
    if not isinstance(source, (str, Path, Module)):
        raise ArgumentTypeError(f"runtime.compile: argument 'source' must be a path, .dl source text, "
                                f"IR text or a Module, got {type(source).__name__}")
    check_passes(passes, "runtime.compile")
    if isinstance(cache, (str, os.PathLike)):
        as_path(cache, "runtime.compile: argument 'cache'")
    elif not (cache is None or isinstance(cache, (bool, ObjectCache))):
        raise ArgumentTypeError(f"runtime.compile: argument 'cache' must be True, False, a folder or an "
                                f"ObjectCache, got {type(cache).__name__}")
    if options is not None:
        check_options(options, "runtime.compile: argument 'options'")
    if not isinstance(timings, bool):
        raise ArgumentTypeError(f"runtime.compile: argument 'timings' must be a bool, got {type(timings).__name__}")


def check_options(options: Any, argument: str) -> None:
    """A :class:`CodegenOptions` whose every field has a type and range codegen takes."""
    if not isinstance(options, CodegenOptions):
        raise ArgumentTypeError(f"{argument} must be a compiler.codegen.target.CodegenOptions, "
                                f"got {type(options).__name__}")
    if not isinstance(options.target, Target):
        raise ArgumentTypeError(f"{argument}: field 'target' must be a Target, "
                                f"got {type(options.target).__name__}")
    for name in ("fuse", "profile", "plan_memory", "skip_zeros", "flush_denormals"):
        if not isinstance(getattr(options, name), bool):
            raise ArgumentTypeError(f"{argument}: field '{name}' must be a bool, "
                                    f"got {getattr(options, name)!r}")
    level, lanes = options.opt_level, options.vector_lanes
    if isinstance(level, bool) or not isinstance(level, int):
        raise ArgumentTypeError(f"{argument}: field 'opt_level' must be an integer, got {level!r}")
    if lanes is not None and (isinstance(lanes, bool) or not isinstance(lanes, int)):
        raise ArgumentTypeError(f"{argument}: field 'vector_lanes' must be an integer or None, "
                                f"got {lanes!r}")
    if not 0 <= level <= 3:
        raise ArgumentValueError(f"{argument}: field 'opt_level' must be 0, 1, 2 or 3, got {level}")
    if lanes is not None and lanes < 1:
        raise ArgumentValueError(f"{argument}: field 'vector_lanes' must be None or a positive "
                                 f"integer, got {lanes}")


def _source_key(source: str | Path | Module, passes: str | list[str] | None,
                options: CodegenOptions) -> tuple[str, Any] | None:
    """(key of the input as given, what to prepare from lazily), or None when the
    input cannot be keyed (a path that does not exist: the slow path reports it)."""
    from compiler.codegen.cache import source_key
    from compiler.ir.printer import print_module

    pipeline = "default" if passes is None else passes
    spec = pipeline if isinstance(pipeline, str) else ",".join(pipeline)
    if isinstance(source, Module):
        text = print_module(source)
        return source_key("ir", text, spec, options), text
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source
                                    and source.rstrip().endswith((".dl", ".mlir"))):
        path = Path(source)
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError):
            return None
        return source_key(f"file:{path.suffix}", text, spec, options), path
    if isinstance(source, str):
        return source_key("text", source, spec, options), source
    return None


def _load_by_source(store: ObjectCache, key: str, origin: Any, options: CodegenOptions,
                    passes: str | list[str] | None) -> CompiledModule | None:
    """A compiled module straight from the cache, or None on a miss; its ``module``
    (the dl IR compiled) is rebuilt from ``origin`` only if someone asks for it."""
    object_key = store.load_alias(key)
    if object_key is None:
        return None
    loaded = _load_entry(store, object_key, options)
    if loaded is None:
        return None
    library, infos, objects, gemm = loaded
    compiled = CompiledModule(library, infos, objects, options.target, None, store.path(object_key), gemm)
    compiled._origin, compiled._passes = origin, passes
    return compiled


def _load_entry(store: ObjectCache, key: str, options: CodegenOptions
                ) -> tuple[NativeLibrary, list[FunctionInfo], list[bytes], tuple[LibrarySpec, bytes] | None] | None:
    """The objects stored under ``key``, loaded (linked with the GEMM library they call),
    with their signatures and that library; or None on a miss.

    An entry whose signatures do not read, whose object does not load, or whose
    object was compiled for other signatures (:func:`signature_problem`) is
    reported with a :class:`~runtime.cache.CacheWarning`, deleted and treated as a
    miss: code is only ever called through the signatures it was compiled for.
    """
    entry = store.load(key)
    if entry is None:
        return None
    try:
        infos = _infos_of(entry.header.get("functions"))
        spec = LibrarySpec.from_json(entry.header["library"]) if "library" in entry.header else None
        objects = _objects_of(entry.header, entry.object_code)
        gemm = (spec, gemm_library(spec, options)) if spec is not None else None
        library = _native(objects, gemm)
    except (TypeError, ValueError, DlRuntimeError) as e:
        store.discard(key, str(e))
        return None
    problem = signature_problem(library, infos, spec)
    if problem is not None:
        store.discard(key, problem)
        return None
    return library, infos, objects, gemm


def _infos_of(functions: Any) -> list[FunctionInfo]:
    """The signatures of a cache header or AOT manifest; a TypeError or ValueError names
    a bad field."""
    if not isinstance(functions, list):
        raise TypeError(f"field 'functions' is a {type(functions).__name__}, not a list")
    return [FunctionInfo.from_json(f) for f in functions]


def signature_problem(library: NativeLibrary, infos: list[FunctionInfo],
                      spec: LibrarySpec | None = None) -> str | None:
    """Why the loaded object is not the code compiled for ``infos`` and GEMM library
    ``spec`` (the digest the compiler put into it differs), or None when it is."""
    addr = library.global_address(SIGNATURE_SYMBOL)
    if addr is None:
        return "the object code carries no signature digest (older dlc, or not dlc's)"
    digest = signature_digest(infos, spec)
    if ctypes.string_at(addr, len(digest)) != digest:
        return "the object code was not compiled for the function signatures it came with"
    return None


def _cache_of(cache: bool | str | Path | ObjectCache) -> ObjectCache | None:
    if cache is True:
        return ObjectCache()
    if cache is False or cache is None:
        return None
    if isinstance(cache, ObjectCache):
        return cache
    return ObjectCache(cache)


def _prepare(source: str | Path | Module, passes: str | list[str] | None,
             timer: StageTimer | None = None) -> Module:
    """The module to compile: loaded or parsed, copied, with the pipeline applied
    (``timer``: charged with the frontend's time and each pass's)."""
    timer = timer or StageTimer()
    with timer("frontend"):
        module = _load_source(source)
    pipeline = "default" if passes is None else passes
    if pipeline:
        start = time.perf_counter()
        from compiler.passes import PipelineReport, run_pipeline

        report = PipelineReport()
        module = run_pipeline(module, pipeline, report=report)
        timer.add_pipeline(report, time.perf_counter() - start)
    return module


def _load_source(source: str | Path | Module) -> Module:
    """The module of ``source``: a copy of a Module, parsed IR text, or the frontend's output."""
    from compiler.ir.parser import parse_module
    from compiler.ir.printer import print_module

    if isinstance(source, Module):
        module = parse_module(print_module(source), "<module>")
    elif isinstance(source, Path) or (isinstance(source, str) and "\n" not in source
                                      and source.rstrip().endswith((".dl", ".mlir"))):
        from runtime.commands import load_module

        path = Path(source)
        if path.is_dir():
            raise DlRuntimeError(f"{path}: is a directory, not a .dl or .mlir file")
        if not path.is_file():
            raise DlRuntimeError(f"no such file: {path}")
        module = load_module(str(path))
    elif isinstance(source, str):
        if source.lstrip().startswith("module"):
            module = parse_module(source, "<string>")
        else:
            from frontend_dsl.api import compile_source

            module = compile_source(source, "<string>")
    else:
        raise ArgumentTypeError(f"runtime.compile takes a path, source text or a Module, got "
                                f"{type(source).__name__}")
    return module


def _target_json(t: Target) -> dict[str, str]:
    return {"triple": t.triple, "cpu": t.cpu, "features": t.features}


# ---------------------------------------------------------------------------
# AOT directories


def save_compiled(compiled: CompiledModule, directory: str | Path) -> Path:
    """See :meth:`CompiledModule.save`."""
    return write_compiled(directory, compiled.objects, [f.info for f in compiled.functions.values()],
                          compiled.target, compiled.gemm_library)


def compile_for_target(module: Module, options: CodegenOptions, timer: StageTimer | None = None
                       ) -> tuple[list[bytes], list[FunctionInfo], tuple[LibrarySpec, bytes] | None]:
    """Object code of ``module`` (its passes already run) for ``options.target``, with its
    GEMM library, never loaded here: code for another CPU may not run on this one.
    :func:`write_compiled` writes it as an AOT directory."""
    objects, infos, spec = compile_module(module, options, timer=timer)
    return objects, infos, ((spec, gemm_library(spec, options, timer)) if spec is not None else None)


def write_compiled(directory: str | Path, module_objects: list[bytes], infos: list[FunctionInfo],
                   target: Target, gemm: tuple[LibrarySpec, bytes] | None) -> Path:
    """An AOT directory (see :meth:`CompiledModule.save`) of ``module_objects`` for
    ``target``: ``module.o``, and ``module.<i>.o`` for each further part."""
    out = as_path(directory, "save: argument 'directory'")
    out.mkdir(parents=True, exist_ok=True)
    files = [{"object": "module.o" if i == 0 else f"module.{i}.o", "sha256": hashlib.sha256(obj).hexdigest()}
             for i, obj in enumerate(module_objects)]
    for fields, obj in zip(files, module_objects):
        (out / fields["object"]).write_bytes(obj)
    manifest: dict[str, Any] = {
        "format": AOT_FORMAT, "dlc_version": __version__, "target": _target_json(target),
        **files[0], "parts": files[1:], "functions": [i.to_json() for i in infos],
    }
    objects = [str(out / f["object"]) for f in files]
    if gemm is not None:
        spec, code = gemm
        lib_path = out / LIBRARY_OBJECT
        lib_path.write_bytes(code)
        objects.append(str(lib_path))
        manifest["library"] = {**spec.to_json(), "object": lib_path.name,
                               "sha256": hashlib.sha256(code).hexdigest()}
    cc = shutil.which("cc")
    if cc is not None:
        (out / "dlc_module.h").write_text(c_header(infos))
        # -Bsymbolic: the parts' references to each other's symbols bind inside the library,
        # never to a same-named symbol of another dlc library in the process
        result = subprocess.run([cc, "-shared", "-Wl,-Bsymbolic", "-o", str(out / "libdlc_module.so"),
                                 *objects, "-lm"],
                                capture_output=True, text=True)
        if result.returncode == 0:
            manifest["shared_library"] = "libdlc_module.so"
            manifest["header"] = "dlc_module.h"
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def c_header(infos: list[FunctionInfo]) -> str:
    """A C header declaring every entry point, with its buffer and dims layout."""
    lines = ["/* Generated by dlc: native entry points.  Each returns 0, or 1 when its",
             " * workspace cannot be allocated.  buffers: the parameters' data, then the",
             " * outputs' (row-major, caller-allocated); dims: the symbolic dims' values. */",
             "#pragma once", "#include <stdint.h>", ""]
    for info in infos:
        params = ", ".join(f"{n}: {t.dsl_str()}" for n, t in info.params)
        outs = ", ".join(t.dsl_str() for _, t in info.outputs)
        lines.append(f"/* {info.name}({params}) -> ({outs})")
        nonzero = sorted({str(c.operand.shape[a]) for c in info.nonempty for a in c.axes})
        lines.append(f" * dims: [{', '.join(info.symbols)}]"
                     + (f"; in place (output, param): {list(info.inplace)}" if info.inplace else "")
                     + (f"; must not be 0 (a max, min or argmax over it): {', '.join(nonzero)}"
                        if nonzero else ""))
        lines += [f" * returns {2 + i}: {message}" for i, message in enumerate(info.checks)]
        lines[-1] += " */"
        lines.append(f"int32_t {info.symbol}(void **buffers, const int64_t *dims);")
        lines.append("")
    lines += ["/* The library's thread pool (compiler/codegen/threads.py): code runs on one thread",
              " * until dlc_set_num_threads(n) lets its kernels use up to n; call",
              " * dlc_threads_shutdown() to join the workers before unloading the library. */",
              f"void {SET_THREADS_SYMBOL}(int32_t n);", f"void {SHUTDOWN_SYMBOL}(void);", ""]
    return "\n".join(lines)


def load_compiled(directory: str | Path) -> CompiledModule:
    """Load an AOT directory written by ``dlc compile`` / :meth:`CompiledModule.save`.

    Needs neither the frontend nor LLVM's optimizer.  Refuses object code
    built for features this CPU lacks, and a manifest or object that does
    not match its checksum.
    """
    folder = as_path(directory, "load_compiled: argument 'directory'")
    where = folder / "manifest.json"
    try:
        manifest = json.loads(where.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DlRuntimeError(f"{folder}: not a dlc compiled directory ({e})") from None
    if not isinstance(manifest, dict):
        raise DlRuntimeError(f"{where}: not a JSON object")
    if manifest.get("format") != AOT_FORMAT:
        raise DlRuntimeError(f"{folder}: unknown format {manifest.get('format')!r}, expected {AOT_FORMAT}")
    parts = manifest.get("parts", [])
    if not (isinstance(parts, list) and all(isinstance(p, dict) for p in parts)):
        raise DlRuntimeError(f"{where}: field 'parts' must be a list of objects naming an object file each")
    objects = [_read_object(folder, manifest, where)]
    objects += [_read_object(folder, p, f"{where}: field 'parts'") for p in parts]
    gemm = None
    if "library" in manifest:
        try:
            spec = LibrarySpec.from_json(manifest["library"])
        except ValueError as e:
            raise DlRuntimeError(f"{where}: field 'library': {e}") from None
        gemm = (spec, _read_object(folder, manifest["library"], f"{where}: field 'library'"))
    t = manifest.get("target")
    if not (isinstance(t, dict) and all(isinstance(t.get(k), str) for k in ("triple", "cpu", "features"))):
        raise DlRuntimeError(f"{where}: field 'target' must hold the strings 'triple', 'cpu' and 'features'")
    target = Target(t["triple"], t["cpu"], t["features"])
    _check_target(target, folder)
    try:
        infos = _infos_of(manifest.get("functions"))
    except (TypeError, ValueError) as e:
        raise DlRuntimeError(f"{where}: {e}") from None
    library = _native(objects, gemm)
    problem = signature_problem(library, infos, gemm[0] if gemm is not None else None)
    if problem is not None:
        raise DlRuntimeError(f"{folder}: {problem}; recompile it (dlc compile)")
    return CompiledModule(library, infos, objects, target, gemm=gemm)


def _read_object(folder: Path, fields: dict[str, Any], where: str | Path) -> bytes:
    """The object code file that ``fields['object']`` names in ``folder``, checked against
    ``fields['sha256']``."""
    name = fields.get("object")
    if not _is_plain_name(name):
        raise DlRuntimeError(f"{where}: field 'object' must name a file in {folder}, not {name!r}")
    try:
        obj = (folder / name).read_bytes()
    except OSError as e:
        raise DlRuntimeError(f"{folder / name}: cannot read the object code ({e.strerror or e})") from None
    if hashlib.sha256(obj).hexdigest() != fields.get("sha256"):
        raise DlRuntimeError(f"{folder}: object code does not match the manifest's checksum")
    return obj


def _is_plain_name(name: Any) -> TypeGuard[str]:
    """Whether ``name`` names a file inside a folder: no separator, not ``..``, no NUL."""
    return (isinstance(name, str) and name not in ("", ".", "..")
            and not any(c in name for c in "/\\\0"))


def _check_target(target: Target, folder: Path) -> None:
    host = host_target()
    if target.triple.split("-")[0] != host.triple.split("-")[0]:
        raise DlRuntimeError(f"{folder}: compiled for {target.triple}, this machine is {host.triple}")
    have = {f[1:] for f in host.features.split(",") if f.startswith("+")}
    need = {f[1:] for f in target.features.split(",") if f.startswith("+")}
    missing = sorted(need - have)
    if missing:
        raise DlRuntimeError(f"{folder}: compiled for CPU {target.cpu} with features this machine "
                             f"lacks: {', '.join(missing[:8])}")
