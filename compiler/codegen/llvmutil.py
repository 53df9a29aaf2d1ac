"""Small helpers over ``llvmlite.ir`` shared by the emitters.

LLVM types for dl dtypes (in registers and in memory), splats, lane-wise
constants, and intrinsic declarations.  ``Module.declare_intrinsic`` cannot
declare vector overloads, so intrinsics are declared by their mangled name
(``llvm.fma.v16f32``) once per module.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from llvmlite import ir

from ..ir.types import DType

I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
F32 = ir.FloatType()
F64 = ir.DoubleType()
I16 = ir.IntType(16)
HALF = ir.HalfType()
I8P = I8.as_pointer()

# Register types.  The storage dtypes compute wider (compiler/codegen/storage.py): f16 and
# bf16 in f32, i8 and u8 in i32.  dtype_of reads the first entry of a type, the wide dtype.
_SCALAR = {DType.f32: F32, DType.f64: F64, DType.i32: I32, DType.i64: I64, DType.bool: I1,
           DType.f16: F32, DType.bf16: F32, DType.i8: I32, DType.u8: I32}
_MEMORY = {DType.bool: I8, DType.f16: HALF, DType.bf16: I16, DType.i8: I8, DType.u8: I8}


MAX_NAME_LENGTH = 64


def short_name(name: str, sep: str = ".") -> str:
    """``name`` (a user's function, parameter, layer or dim name) as an LLVM name of at most
    ``MAX_NAME_LENGTH`` characters: a longer one keeps its start and ends with ``sep`` and a
    hash of the whole.  (LLVM's parser cuts local names at 1024 characters, so two long
    names with a common start would clash.)"""
    if len(name) <= MAX_NAME_LENGTH:
        return name
    digest = hashlib.sha1(name.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return name[:MAX_NAME_LENGTH - len(sep) - len(digest)] + sep + digest


def scalar_type(dtype: DType) -> ir.Type:
    """The register type of one element (bool is ``i1``; f16 and bf16 are f32, i8 and u8 i32)."""
    return _SCALAR[dtype]


def memory_type(dtype: DType) -> ir.Type:
    """The in-memory element type (bool is stored as one byte, as numpy does; bf16 as its
    16 bits, llvmlite having no bfloat type)."""
    return _MEMORY.get(dtype) or _SCALAR[dtype]


def value_type(dtype: DType, width: int) -> ir.Type:
    """Scalar type for ``width == 1``, else a vector of ``width`` lanes."""
    t = scalar_type(dtype)
    return t if width == 1 else ir.VectorType(t, width)


def dtype_of(ty: ir.Type) -> DType:
    """The dl dtype of a scalar or vector LLVM type."""
    if isinstance(ty, ir.VectorType):
        ty = ty.element
    for d, t in _SCALAR.items():
        if t == ty:
            return d
    raise TypeError(f"no dl dtype for LLVM type {ty}")


def element(ty: ir.Type) -> ir.Type:
    return ty.element if isinstance(ty, ir.VectorType) else ty


def with_element(ty: ir.Type, elem: ir.Type) -> ir.Type:
    """``ty``'s shape (scalar or vector of the same width) with element ``elem``."""
    return ir.VectorType(elem, ty.count) if isinstance(ty, ir.VectorType) else elem


def const(ty: ir.Type, value: Any) -> ir.Constant:
    """A constant of scalar or vector type ``ty`` (splat for vectors).  A numpy NaN keeps
    its payload bits (a signalling NaN stays signalling), a Python float NaN is quiet."""
    elem = element(ty)
    if isinstance(elem, ir.IntType):
        value = int(value) if elem.width > 1 else int(bool(value))
    elif isinstance(value, np.floating) and np.isnan(value):
        value = _exact_nan(elem, value)
    else:
        value = float(value)
    if isinstance(ty, ir.VectorType):
        if isinstance(value, ir.Constant):
            return ir.Constant(ty, [value] * ty.count)
        return _splat_constant(ty, value)
    return value if isinstance(value, ir.Constant) else ir.Constant(ty, value)


class _ZeroVector(ir.Constant):
    """A vector of zeros (integer, or float +0.0), written ``zeroinitializer``."""

    def _get_reference(self) -> str:
        return "zeroinitializer"


# Vector constants, one object per type and value: llvmlite formats a constant's text once
# per object, and a kernel uses the same few splats (zeros, the lane indices, undef and a
# shuffle mask for every broadcast) hundreds of times.  Formatting each anew was ~25% of
# printing the MNIST step's LLVM IR (its 16-lane constants were 80 KB of 310 KB of text).
_VECTORS: dict[tuple, ir.Constant] = {}


def _splat_constant(ty: ir.VectorType, value: int | float) -> ir.Constant:
    # (by the value's text: 0.0 and -0.0 are equal numbers, and equal keys to a dict)
    key = (ty, repr(value))
    c = _VECTORS.get(key)
    if c is None:
        zero = value == 0 and (isinstance(value, int) or str(value) == "0.0")
        c = (_ZeroVector if zero else ir.Constant)(ty, [value] * ty.count)
        if len(_VECTORS) >= 4096:        # a long process compiling many models: start over
            _VECTORS.clear()
        _VECTORS[key] = c
    return c


def undef(ty: ir.Type) -> ir.Constant:
    """``undef`` of type ``ty`` (one object per type, see ``_VECTORS``)."""
    key = (ty, "undef")
    c = _VECTORS.get(key)
    if c is None:
        c = _VECTORS[key] = ir.Constant(ty, ir.Undefined)
    return c


def _exact_nan(elem: ir.Type, value: np.floating) -> ir.Constant:
    """The NaN of ``elem`` with ``value``'s bits.  LLVM writes a float constant as the
    bits of the double it widens to; widening by hand keeps the quiet bit clear."""
    if elem == F32:
        bits = int(np.asarray(value, np.float32).view(np.uint32))
        wide = (bits >> 31) << 63 | 0x7FF << 52 | (bits & 0x7FFFFF) << 29
    else:
        wide = int(np.asarray(value, np.float64).view(np.uint64))
    return ir.FormattedConstant(elem, f"0x{wide:016X}")


def splat(b: ir.IRBuilder, value: ir.Value, width: int) -> ir.Value:
    """Broadcast a scalar to ``width`` lanes (the value itself for width 1)."""
    if width == 1:
        return value
    if isinstance(value, ir.Constant) and not isinstance(value.type, ir.VectorType):
        return ir.Constant(ir.VectorType(value.type, width), [value.constant] * width)
    vty = ir.VectorType(value.type, width)
    one = b.insert_element(undef(vty), value, ir.Constant(I32, 0))
    return b.shuffle_vector(one, undef(vty), const(ir.VectorType(I32, width), 0))


def constant_value(v: ir.Value) -> Any | None:
    """The Python value of a scalar constant or of a splat vector constant, else None."""
    if not isinstance(v, ir.Constant):
        return None
    c = v.constant
    if isinstance(v.type, ir.VectorType):
        if not isinstance(c, (list, tuple)) or not c:
            return None
        vals = [x.constant if isinstance(x, ir.Constant) else x for x in c]
        c = vals[0] if all(x == vals[0] for x in vals) else None
    return c if isinstance(c, (int, float)) else None


def type_suffix(ty: ir.Type) -> str:
    """LLVM's overload suffix: ``f32``, ``v16f32``, ``i64``, ``v8i1`` ..."""
    elem = element(ty)
    if isinstance(elem, ir.IntType):
        s = f"i{elem.width}"
    elif isinstance(elem, ir.DoubleType):
        s = "f64"
    elif isinstance(elem, ir.FloatType):
        s = "f32"
    elif isinstance(elem, ir.HalfType):
        s = "f16"
    else:
        raise TypeError(f"no intrinsic suffix for {ty}")
    return f"v{ty.count}{s}" if isinstance(ty, ir.VectorType) else s


def intrinsic(module: ir.Module, name: str, ret: ir.Type, args: Sequence[ir.Type]) -> ir.Function:
    """Declare (once) and return the intrinsic or C function ``name``."""
    existing = module.globals.get(name)
    if existing is not None:
        return existing
    return ir.Function(module, ir.FunctionType(ret, list(args)), name)


def call_overloaded(b: ir.IRBuilder, base: str, args: Sequence[ir.Value],
                    ret: ir.Type | None = None) -> ir.Value:
    """Call ``llvm.<base>.<suffix of args[0]>``, e.g. ``llvm.fma.v16f32``."""
    ty = args[0].type
    fn = intrinsic(b.module, f"llvm.{base}.{type_suffix(ty)}", ret or ty, [a.type for a in args])
    return b.call(fn, list(args))


def unoptimized(fn: ir.Function) -> ir.Function:
    """Mark ``fn`` ``optnone`` (and ``noinline``, which LLVM requires with it): the optimizer
    skips it and instruction selection takes the fast path.

    For glue -- an entry point, a kernel that only starts its tasks, a pool function, a
    trampoline, a kernel without a loop -- whose every instruction runs at most a few times
    per call: O3 would save it nanoseconds and costs the compile milliseconds per function.
    The results are the same bits at every optimization level: dlc's IR carries no
    fast-math flags (every fused multiply-add is an explicit ``llvm.fma``), so LLVM may not
    reassociate, contract or approximate floating-point operations at any level."""
    fn.attributes.add("noinline")
    fn.attributes.add("optnone")
    return fn


def has_loop(fn: ir.Function) -> bool:
    """Whether ``fn``'s control-flow graph has a cycle (a back edge from its entry block)."""
    def successors(block: ir.Block) -> list[ir.Block]:
        term = block.terminator
        if term is None:
            return []
        targets = [op for op in term.operands if isinstance(op, ir.Block)]
        if isinstance(term, ir.SwitchInstr):
            targets += [term.default, *(target for _, target in term.cases)]
        elif isinstance(term, ir.IndirectBranch):
            targets += term.destinations
        return targets

    if not fn.blocks:
        return False
    state: dict[int, int] = {}           # id(block) -> 1 on the DFS stack, 2 done
    stack = [(fn.blocks[0], iter(successors(fn.blocks[0])))]
    state[id(fn.blocks[0])] = 1
    while stack:
        block, rest = stack[-1]
        nxt = next(rest, None)
        if nxt is None:
            state[id(block)] = 2
            stack.pop()
        elif state.get(id(nxt)) == 1:
            return True
        elif id(nxt) not in state:
            state[id(nxt)] = 1
            stack.append((nxt, iter(successors(nxt))))
    return False


class for_range:
    """``with for_range(b, start, stop, step) as i:`` -- a counted loop (``i < stop``).

    The body may create blocks of its own; the loop's latch is wherever the
    builder stands when the ``with`` block ends.  ``start``, ``stop`` and
    ``step`` are i64 values or Python ints.
    """

    def __init__(self, b: ir.IRBuilder, start: ir.Value | int, stop: ir.Value | int,
                 step: ir.Value | int = 1, name: str = "i"):
        self.b = b
        self.start = start if isinstance(start, ir.Value) else ir.Constant(I64, start)
        self.stop = stop if isinstance(stop, ir.Value) else ir.Constant(I64, stop)
        self.step = step if isinstance(step, ir.Value) else ir.Constant(I64, step)
        self.name = name

    def __enter__(self) -> ir.Value:
        b = self.b
        fn = b.function
        pre = b.block
        self.header = fn.append_basic_block(f"{self.name}.head")
        body = fn.append_basic_block(f"{self.name}.body")
        self.exit = fn.append_basic_block(f"{self.name}.exit")
        b.branch(self.header)
        b.position_at_end(self.header)
        self.index = b.phi(I64, name=self.name)
        self.index.add_incoming(self.start, pre)
        b.cbranch(b.icmp_signed("<", self.index, self.stop), body, self.exit)
        b.position_at_end(body)
        return self.index

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            return
        b = self.b
        nxt = b.add(self.index, self.step, flags=["nsw"])
        self.index.add_incoming(nxt, b.block)
        b.branch(self.header)
        b.position_at_end(self.exit)
