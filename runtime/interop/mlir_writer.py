"""The text of upstream MLIR (func, linalg, tensor, arith, math) as dlc writes it: types,
literals, affine maps, and the :class:`MlirWriter` that the rules of :mod:`.mlir_table`
append a function's body to (``linalg.generic`` with its scalar :class:`Body`,
``tensor.empty``, ``linalg.fill``, the sizes of dynamic dims read with ``tensor.dim``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from compiler.ir.core import Function, Op, Value
from compiler.ir.types import Dim, DType, TensorType


class UnsupportedVariant(Exception):
    """An op with a rule whose operands or attributes the rule cannot write (the message says which)."""


def element_type(dtype: DType) -> str:
    """The MLIR element type of a dl dtype: integers are signless (``u8`` is ``i8``)."""
    return {DType.bool: "i1", DType.u8: "i8"}.get(dtype, dtype.value)


def tensor_type(t: TensorType) -> str:
    """``tensor<?x784xf32>``: a symbolic dim is dynamic."""
    dims = "".join(f"{d if isinstance(d, int) else '?'}x" for d in t.shape)
    return f"tensor<{dims}{element_type(t.dtype)}>"


def float_literal(value: float, dtype: DType) -> str:
    """A float constant as its bit pattern (exact; inf and nan included)."""
    bits = np.array(value, dtype=dtype.np).view(f"u{dtype.itemsize}")
    return f"0x{int(bits):0{2 * dtype.itemsize}X}"


def constant_op(value: Any, dtype: DType) -> str:
    """``arith.constant`` of a scalar (an ``i1`` constant is ``true``/``false``, untyped)."""
    if dtype is DType.bool:
        return f"arith.constant {scalar_literal(value, dtype)}"
    return f"arith.constant {scalar_literal(value, dtype)} : {element_type(dtype)}"


def scalar_literal(value: Any, dtype: DType) -> str:
    if dtype is DType.bool:
        return "true" if bool(value) else "false"
    if dtype.is_float:
        return float_literal(float(value), dtype)
    return str(int(value))


def dense_literal(array: np.ndarray, dtype: DType) -> str:
    """``dense<...>`` of an array: a splat, or the raw little-endian bytes in hex."""
    array = np.asarray(array, dtype=dtype.np)
    bits = array.reshape(-1).view(f"u{dtype.itemsize}")
    flat = array.reshape(-1)
    if bits.size > 0 and np.all(bits == bits[0]):
        return f"dense<{scalar_literal(flat[0], dtype)}>"          # a splat (bit-equal elements)
    if dtype is DType.bool:
        return f"dense<{_nested(array.tolist())}>"
    return f'dense<"0x{np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes().hex().upper()}">'


def _nested(x: Any) -> str:
    if isinstance(x, list):
        return "[" + ", ".join(_nested(e) for e in x) + "]"
    return "true" if x else "false"


def affine_map(rank: int, results: Sequence[str | int]) -> str:
    """``affine_map<(d0, d1) -> (d1)>``; a result is a dim index or a literal ``"0"``."""
    dims = ", ".join(f"d{i}" for i in range(rank))
    exprs = ", ".join(r if isinstance(r, str) else f"d{r}" for r in results)
    return f"affine_map<({dims}) -> ({exprs})>"


class Body:
    """The scalar region of a ``linalg.generic``: what the rules' scalar functions append to."""

    def __init__(self, writer: MlirWriter):
        self.writer = writer
        self.lines: list[str] = []

    def op(self, text: str, results: int = 1) -> str:
        """Append ``%n = text`` (``%n:2 = text`` for two results, used as ``%n#0``); the name."""
        name = self.writer.fresh()
        self.lines.append(f"{name}{f':{results}' if results > 1 else ''} = {text}")
        return name

    def const(self, value: Any, dtype: DType) -> str:
        return self.op(constant_op(value, dtype))

    def index(self, axis: int) -> str:
        return self.op(f"linalg.index {axis} : index")


ScalarFn = Callable[[Body, list[str]], str | list[str]]


class MlirWriter:
    """Writes one function's body; the rules of :mod:`.mlir_table` call its helpers."""

    def __init__(self, func: Function):
        self.func = func
        self.lines: list[str] = []
        self.names: dict[Value, str] = {}
        self.dims: dict[str, str] = {}            # symbol -> an SSA index holding its size
        self._indices: dict[int, str] = {}
        self._count = 0

    def fresh(self) -> str:
        self._count += 1
        return f"%{self._count - 1}"

    def line(self, text: str) -> None:
        self.lines.append(text)

    def assign(self, text: str) -> str:
        name = self.fresh()
        self.lines.append(f"{name} = {text}")
        return name

    def index(self, k: int) -> str:
        """An ``index`` constant (made once)."""
        if k not in self._indices:
            self._indices[k] = self.assign(f"arith.constant {k} : index")
        return self._indices[k]

    def size(self, dim: Dim, sources: Sequence[tuple[str, TensorType]] = ()) -> str:
        """An SSA ``index`` holding ``dim``: a constant, or a symbol read from an argument or
        one of ``sources`` (the op's operands) that has it."""
        if isinstance(dim, int):
            return self.index(dim)
        if not isinstance(dim, str):
            raise UnsupportedVariant(f"a computed dim ({dim}, from slicing a symbolic dim)")
        if dim not in self.dims:
            for name, t in sources:
                if dim in t.shape:
                    self.dims[dim] = self.assign(
                        f"tensor.dim {name}, {self.index(t.shape.index(dim))} : {tensor_type(t)}")
                    break
            else:
                raise UnsupportedVariant(f"the size of dim {dim} is not known from the operands")
        return self.dims[dim]

    def dynamic_sizes(self, t: TensorType, sources: Sequence[tuple[str, TensorType]] = ()) -> list[str]:
        return [self.size(d, sources) for d in t.shape if not isinstance(d, int)]

    def empty(self, t: TensorType, sources: Sequence[tuple[str, TensorType]] = ()) -> str:
        """``tensor.empty`` of type ``t``."""
        sizes = ", ".join(self.dynamic_sizes(t, sources))
        return self.assign(f"tensor.empty({sizes}) : {tensor_type(t)}")

    def scalar(self, value: Any, dtype: DType) -> str:
        return self.assign(constant_op(value, dtype))

    def filled(self, t: TensorType, value: Any, sources: Sequence[tuple[str, TensorType]] = ()) -> str:
        """A tensor of type ``t`` holding ``value`` everywhere (``linalg.fill``)."""
        init = self.empty(t, sources)
        v = value if isinstance(value, str) else self.scalar(value, t.dtype)
        return self.assign(f"linalg.fill ins({v} : {element_type(t.dtype)}) outs({init} : {tensor_type(t)}) "
                           f"-> {tensor_type(t)}")

    def generic(self, rank: int, ins: Sequence[tuple[str, TensorType, Sequence[str | int]]],
                outs: Sequence[tuple[str, TensorType, Sequence[str | int]]], iterators: Sequence[str],
                body: ScalarFn) -> list[str]:
        """A ``linalg.generic`` over ``rank`` loops; ``ins``/``outs`` are (tensor, type, indexing
        map results); ``body(b, [in scalars..., out scalars...])`` gives the yielded scalars."""
        maps = ", ".join(affine_map(rank, m) for _, _, m in [*ins, *outs])
        iters = ", ".join(f'"{i}"' for i in iterators)
        header = f"linalg.generic {{indexing_maps = [{maps}], iterator_types = [{iters}]}}"
        if ins:
            header += (f" ins({', '.join(n for n, _, _ in ins)} : "
                       f"{', '.join(tensor_type(t) for _, t, _ in ins)})")
        header += (f" outs({', '.join(n for n, _, _ in outs)} : "
                   f"{', '.join(tensor_type(t) for _, t, _ in outs)})")
        lhs = self.fresh()
        b = Body(self)
        args = [self.fresh() for _ in [*ins, *outs]]
        yielded = body(b, args)
        yielded = [yielded] if isinstance(yielded, str) else yielded
        types = [element_type(t.dtype) for _, t, _ in [*ins, *outs]]
        results = [lhs]
        if len(outs) > 1:
            results = [f"{lhs}#{i}" for i in range(len(outs))]
            lhs = f"{lhs}:{len(outs)}"
        block = ", ".join(f"{a}: {t}" for a, t in zip(args, types))
        out_types = ", ".join(tensor_type(t) for _, t, _ in outs)
        if len(outs) > 1:
            out_types = f"({out_types})"
        self.lines.append(f"{lhs} = {header} {{")
        self.lines.append(f"^bb0({block}):")
        self.lines += [f"  {line}" for line in b.lines]
        yield_types = ", ".join(element_type(t.dtype) for _, t, _ in outs)
        self.lines.append(f"  linalg.yield {', '.join(yielded)} : {yield_types}")
        self.lines.append(f"}} -> {out_types}")
        return results

    # -- the function --------------------------------------------------------------

    def operand_sources(self, op: Op) -> list[tuple[str, TensorType]]:
        return [(self.names[v], v.type) for v in op.operands]

    def loop_nest(self, bounds: Sequence[str], acc: str, acc_type: TensorType,
                  body: Callable[[Body, list[str], str], str]) -> str:
        """Nested ``scf.for`` loops ``i_k in [0, bounds[k])`` (row-major order) carrying the
        tensor ``acc``; ``body(b, induction variables, acc)`` gives the next ``acc``.  For
        scatter-style updates, which a ``linalg.generic`` does not express."""
        c0, c1 = self.index(0), self.index(1)
        t = tensor_type(acc_type)
        lines, ivs, results = [], [], []
        current = acc
        for bound in bounds:
            result, iv, carried = self.fresh(), self.fresh(), self.fresh()
            lines.append(f"{result} = scf.for {iv} = {c0} to {bound} step {c1} "
                         f"iter_args({carried} = {current}) -> ({t}) {{")
            ivs.append(iv)
            results.append(result)
            current = carried
        b = Body(self)
        new = body(b, ivs, current)
        lines += [f"  {line}" for line in b.lines]
        lines.append(f"  scf.yield {new} : {t}")
        for inner in reversed(results[1:]):
            lines.append("}")
            lines.append(f"scf.yield {inner} : {t}")
        lines.append("}")
        self.lines += lines
        return results[0] if results else acc
