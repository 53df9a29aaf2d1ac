"""The Builder: the one way ops are created, checked and appended to a function.

``b.emit("matmul", x, w)`` (or the shorthand ``b.matmul(x, w)``) looks the op
up in the op table, fills and checks its attributes, runs its shape rule and
appends it.  A shape rule's complaint becomes a :class:`DlTypeError` that
names the op and points at the builder's current source location, so errors
found while building gradient code still point at the user's line.  A result
too large for the size limit (``sizes.py``) is a :class:`SizeError` there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..diagnostics import UNKNOWN, DlTypeError, Location, SizeError
from ..ops import OPS  # noqa: F401  (importing the package fills the table)
from ..ops.base import ShapeError, get_op, normalize_attrs
from .core import Function, Op, Value
from .sizes import type_problem
from .types import DType, TensorType, shape_problem


class Builder:
    def __init__(self, func: Function, loc: Location = UNKNOWN):
        self.func = func
        self.loc = loc

    @contextmanager
    def at(self, loc: Location) -> Iterator[Builder]:
        """Give every op built inside the block this source location."""
        saved, self.loc = self.loc, loc
        try:
            yield self
        finally:
            self.loc = saved

    def emit(self, name: str, *operands: Value, loc: Location | None = None,
             **attrs: Any) -> Value:
        """Build op ``name`` and return its result (a tuple if it has several), in the op's
        canonical form where its definition has one (``OpDef.canonical``: a cross-entropy
        of softmax probabilities is built from the logits)."""
        from ..ops.base import get_op

        args = list(operands)
        opdef = get_op(name)
        if opdef is not None and opdef.canonical is not None:
            rewritten = opdef.canonical(args, attrs)
            if rewritten is not None:
                args, attrs = rewritten
        op = self.make(name, args, attrs, loc or self.loc)
        self.func.ops.append(op)
        return op.results[0] if len(op.results) == 1 else tuple(op.results)  # type: ignore[return-value]

    @staticmethod
    def make(name: str, operands: list[Value], attrs: dict[str, Any], loc: Location) -> Op:
        """Create (but do not append) a checked op."""
        opdef = get_op(name)
        if opdef is None:
            raise DlTypeError(f"unknown op '{name}'", loc)
        n = len(operands)
        expected = len(opdef.operands)
        if (opdef.variadic and n < expected) or (not opdef.variadic and n != expected):
            want = f"at least {expected}" if opdef.variadic else str(expected)
            raise DlTypeError(f"{opdef.name} takes {want} operand(s), got {n}", loc)
        try:
            full = normalize_attrs(opdef, attrs)
            types = opdef.result_types(*(v.type for v in operands), **full)
        except ShapeError as e:
            raise DlTypeError(f"{opdef.name}: {e}", loc) from None
        for t in types:
            problem = shape_problem(t.shape)
            if problem is not None:
                raise DlTypeError(f"{opdef.name}: {problem}", loc)
            problem = type_problem(t)
            if problem is not None:
                raise SizeError(f"{opdef.name}: its result {t.dsl_str()} {problem}", loc,
                                type_text=t.dsl_str(), problem=problem)
        op = Op(opdef.name, list(operands), [], full, loc)
        op.results = [Value(t, op, i) for i, t in enumerate(types)]
        return op

    def __getattr__(self, name: str) -> Any:
        """``b.add(x, y)`` is ``b.emit("add", x, y)`` for every op in the table."""
        if name.startswith("_") or get_op(name) is None:
            raise AttributeError(f"Builder has no attribute or op named '{name}'")

        def build(*operands: Value, **attrs: Any) -> Value:
            return self.emit(name, *operands, **attrs)

        return build

    # -- conveniences used by rules -------------------------------------------------

    def constant(self, value: Any, dtype: DType, shape: tuple = ()) -> Value:
        """A constant: a scalar splatted over ``shape``, or a dense array."""
        if isinstance(value, np.ndarray) and value.ndim > 0:
            return self.emit("constant", value=np.asarray(value, dtype=_dense_dtype(dtype)),
                             dtype=dtype, shape=tuple(value.shape))
        return self.emit("constant", value=_scalar(value, dtype), dtype=dtype, shape=tuple(shape))

    def scalar_like(self, value: float, like: Value) -> Value:
        """A rank-0 constant of ``like``'s dtype (broadcasts against anything)."""
        return self.constant(value, like.type.dtype)


def _scalar(value: Any, dtype: DType) -> Any:
    if dtype is DType.bool:
        return bool(value)
    if dtype.is_int:
        return int(value)
    if isinstance(value, np.floating) and np.isnan(value):
        # a 0-d array of the dtype keeps a NaN's payload bits (a Python float would quiet
        # an f32 signalling NaN); the printer shows them as hex, and they parse back as such
        return np.asarray(value, dtype=_dense_dtype(dtype))
    return float(value)


def _dense_dtype(dtype: DType) -> np.dtype:
    """The numpy dtype a constant of ``dtype`` holds its value in: bf16 values as f32
    (exact; a dense attribute holds numpy's own dtypes), the others as themselves."""
    return np.dtype(np.float32) if dtype is DType.bf16 else dtype.np


def new_function(name: str, params: list[tuple[str, TensorType]],
                 loc: Location = UNKNOWN) -> tuple[Function, Builder]:
    """An empty function with named parameters, and a builder for its body."""
    func = Function(name, [Value(t, None, i, n) for i, (n, t) in enumerate(params)], loc=loc)
    return func, Builder(func, loc)
