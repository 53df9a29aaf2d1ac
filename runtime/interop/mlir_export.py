"""A dl function in upstream MLIR dialects: func, linalg, tensor, arith, math.

::

    text = export_mlir(module.get("predict"))                  # every parameter an argument
    text = export_mlir(module.get("predict"), weights)         # weights as arith.constant
    dlc ir examples/mnist_mlp.dl --fn predict --emit mlir      # the same from the CLI

The result is verified by stock ``mlir-opt`` (no ``--allow-unregistered-dialect``)
and lowered by the standard pipeline (:data:`LOWERING`: one-shot-bufferize,
convert-linalg-to-loops, ... to LLVM) into code that ``mlir-runner`` runs.
Composite ops are expanded first (their ``decompose`` rules, as codegen does);
each remaining op goes through its rule in :mod:`.mlir_table`, and every op
without one is listed in a single :class:`MlirExportError`.  A symbolic dim
(``N``) is a dynamic dim ``?``, its size read with ``tensor.dim`` from an
argument (or operand) that has it.  Argument and result names travel as
``dl.name`` attributes, which ``mlir-opt`` keeps.

:func:`runner_program` wraps a function in a ``main`` that feeds it constant
arguments and prints every result through ``mlir-runner``'s utility library,
bit-exactly (floats as their bit patterns); :func:`parse_runner_output` reads
the numbers back.  docs/interop.md shows the commands.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from compiler.diagnostics import DlError
from compiler.ir.core import Function, Op, Value
from compiler.ir.types import Dim, DType, TensorType

from .mlir_table import RULES, UnsupportedVariant

# The lowering that turns an exported module into LLVM dialect (mlir-opt-22 arguments)
LOWERING: tuple[str, ...] = (
    "--one-shot-bufferize=bufferize-function-boundaries function-boundary-type-conversion=identity-layout-map",
    "--convert-linalg-to-loops",
    "--expand-strided-metadata",
    "--lower-affine",
    "--convert-scf-to-cf",
    "--convert-math-to-libm",
    "--convert-math-to-llvm",
    "--convert-arith-to-llvm",
    "--convert-index-to-llvm",
    "--finalize-memref-to-llvm",
    "--convert-cf-to-llvm",
    "--convert-func-to-llvm",
    "--reconcile-unrealized-casts",
)

_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_$.]*\Z")


class MlirExportError(DlError):
    """A function dlc cannot write in upstream MLIR dialects (ops without a rule, listed)."""


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

    def op(self, text: str) -> str:
        """Append ``%n = text``; the new SSA name."""
        name = self.writer.fresh()
        self.lines.append(f"{name} = {text}")
        return name

    def const(self, value: Any, dtype: DType) -> str:
        return self.op(f"arith.constant {scalar_literal(value, dtype)} : {element_type(dtype)}")

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
        return self.assign(f"arith.constant {scalar_literal(value, dtype)} : {element_type(dtype)}")

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


def _ssa_name(name: str, taken: set[str], k: int) -> str:
    base = name if _ID.match(name) else f"arg{k}"
    out = base
    while out in taken:
        out = f"{base}_{len(taken)}"
    taken.add(out)
    return f"%{out}"


def _name_attr(name: str | None) -> str:
    return "" if not name else f' {{dl.name = "{_escape(name)}"}}'


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')


def _check_supported(func: Function) -> None:
    missing: dict[str, list[str]] = {}
    for op in func.ops:
        if op.name not in RULES:
            missing.setdefault(op.name, []).append(str(op.loc) if op.loc is not None else "?")
    if missing:
        listed = "\n".join(f"  dl.{name} ({len(locs)}x)" for name, locs in sorted(missing.items()))
        raise MlirExportError(f"@{func.name} has {sum(map(len, missing.values()))} op(s) with no "
                              f"upstream MLIR form (no rule in runtime/interop/mlir_table.py):\n{listed}")


def function_text(func: Function, weights: dict[str, np.ndarray] | None = None,
                  visibility: str = "") -> str:
    """``func`` as a ``func.func`` in upstream dialects; parameters named in ``weights`` are
    constants in the body instead of arguments."""
    from compiler.codegen.bufferize import expand_composites

    weights = weights or {}
    unknown = sorted(set(weights) - {p.name for p in func.params})
    if unknown:
        raise MlirExportError(f"@{func.name} has no parameter '{unknown[0]}' to take a weight")
    flat = expand_composites(func)
    _check_supported(flat)
    w = MlirWriter(flat)
    taken: set[str] = set()
    args = []
    for k, p in enumerate(flat.params):
        assert p.name is not None
        if p.name in weights:
            continue
        ssa = _ssa_name(p.name, taken, k)
        w.names[p] = ssa
        args.append(f"{ssa}: {tensor_type(p.type)}{_name_attr(p.name)}")
    for p in flat.params:            # every symbol is read once, from the first argument holding it
        if p in w.names:
            for d in p.type.shape:
                if isinstance(d, str) and d not in w.dims:
                    w.size(d, [(w.names[p], p.type)])
    for p in flat.params:
        if p.name in weights:
            w.names[p] = w.assign(f"arith.constant {dense_literal(weights[p.name], p.type.dtype)} : "
                                  f"{tensor_type(p.type)}")
    for op in flat.ops:
        try:
            results = RULES[op.name](w, op, *[w.names[v] for v in op.operands])
        except UnsupportedVariant as e:
            raise MlirExportError(f"dl.{op.name} cannot be written in upstream MLIR here: {e}", op.loc) from None
        w.names.update(zip(op.results, results))
    out_names = flat.output_names or [None] * len(flat.outputs)
    outs = ", ".join(f"{tensor_type(v.type)}{_name_attr(n)}" for v, n in zip(flat.outputs, out_names))
    returned = ", ".join(w.names[v] for v in flat.outputs)
    types = ", ".join(tensor_type(v.type) for v in flat.outputs)
    vis = f"{visibility} " if visibility else ""
    text = [f"  func.func {vis}@{func.name}({', '.join(args)}) -> ({outs}) {{"]
    text += [f"    {line}" for line in w.lines]
    text.append(f"    func.return {returned} : {types}")
    text.append("  }")
    return "\n".join(text)


def export_mlir(funcs: Function | Sequence[Function], weights: dict[str, np.ndarray] | None = None) -> str:
    """A module of ``funcs`` in upstream dialects (``weights`` become constants)."""
    if isinstance(funcs, Function):
        funcs = [funcs]
    bodies = [function_text(f, weights) for f in funcs]
    return "module {\n" + "\n".join(bodies) + "\n}\n"


# ---------------------------------------------------------------------------
# Running through mlir-runner

# How each element type is printed exactly: (conversion in a linalg.generic, printed type)
_PRINTED: dict[DType, tuple[str, str]] = {
    DType.f32: ("arith.bitcast {x} : f32 to i32", "i32"),
    DType.f64: ("arith.bitcast {x} : f64 to i64", "i64"),
    DType.i32: ("", "i32"),
    DType.i64: ("", "i64"),
    DType.bool: ("arith.extui {x} : i1 to i32", "i32"),
    DType.i8: ("arith.extsi {x} : i8 to i32", "i32"),
    DType.u8: ("arith.extui {x} : i8 to i32", "i32"),
}


def runner_program(func: Function, args: Sequence[np.ndarray],
                   weights: dict[str, np.ndarray] | None = None) -> str:
    """A module holding ``func`` (upstream dialects) and a ``main`` that calls it on ``args``
    (constants, cast to the parameters' dynamic types) and prints each result bit-exactly
    with ``printMemrefI32``/``printMemrefI64`` (``mlir-runner -e main``)."""
    weights = weights or {}
    params = [p for p in func.params if p.name not in weights]
    if len(args) != len(params):
        raise DlError(f"@{func.name} takes {len(params)} arguments, got {len(args)}")
    for p in [*params, *func.outputs]:
        if p.type.dtype not in _PRINTED:
            raise MlirExportError(f"runner_program: {p.type.dsl_str()} is not supported")
    w = MlirWriter(func)
    operands = []
    for p, a in zip(params, args):
        concrete = TensorType(p.type.dtype, tuple(a.shape))
        c = w.assign(f"arith.constant {dense_literal(a, p.type.dtype)} : {tensor_type(concrete)}")
        if concrete.shape != p.type.shape:
            c = w.assign(f"tensor.cast {c} : {tensor_type(concrete)} to {tensor_type(p.type)}")
        operands.append(c)
    result_types = [tensor_type(v.type) for v in func.outputs]
    call = w.fresh()
    n = len(func.outputs)
    w.line(f"{call}:{n} = func.call @{func.name}({', '.join(operands)}) : "
           f"({', '.join(tensor_type(p.type) for p in params)}) -> ({', '.join(result_types)})")
    printers = set()
    for i, v in enumerate(func.outputs):
        convert, printed = _PRINTED[v.type.dtype]
        t = v.type
        value = f"{call}#{i}"
        if convert:
            out_t = TensorType(DType.i32 if printed == "i32" else DType.i64, t.shape)
            init = w.empty(out_t, [(value, t)]) if _dynamic(t) else w.empty(out_t)
            rank = t.rank

            def body(b: Body, xs: list[str], c: str = convert) -> str:
                return b.op(c.format(x=xs[0]))

            value = w.generic(rank, [(value, t, list(range(rank)))], [(init, out_t, list(range(rank)))],
                              ["parallel"] * rank, body)[0]
            t = out_t
        buf = w.assign(f"bufferization.to_buffer {value} : {tensor_type(t)} to "
                       f"memref<{tensor_type(t)[7:-1]}>")
        unranked = w.assign(f"memref.cast {buf} : memref<{tensor_type(t)[7:-1]}> to memref<*x{printed}>")
        fn = f"printMemref{printed.upper()}"
        printers.add((fn, printed))
        w.line(f"func.call @{fn}({unranked}) : (memref<*x{printed}>) -> ()")
    decls = "\n".join(f"  func.func private @{fn}(memref<*x{t}>)" for fn, t in sorted(printers))
    main = ["  func.func @main() {", *(f"    {line}" for line in w.lines), "    func.return", "  }"]
    return ("module {\n" + function_text(func, weights) + "\n" + decls + "\n" + "\n".join(main) + "\n}\n")


def _dynamic(t: TensorType) -> bool:
    return any(not isinstance(d, int) for d in t.shape)


_MEMREF = re.compile(r"Unranked Memref base@ = \S+ rank = (\d+) offset = \d+ sizes = \[([^\]]*)\] "
                     r"strides = \[[^\]]*\] data =\s*")


def parse_runner_output(text: str, dtypes: Sequence[DType]) -> list[np.ndarray]:
    """The arrays a :func:`runner_program` printed, in order, as ``dtypes``."""
    starts = list(_MEMREF.finditer(text))
    if len(starts) != len(dtypes):
        raise DlError(f"expected {len(dtypes)} printed results, found {len(starts)}")
    out = []
    for k, (m, dtype) in enumerate(zip(starts, dtypes)):
        end = starts[k + 1].start() if k + 1 < len(starts) else len(text)
        shape = tuple(int(s) for s in m.group(2).split(",") if s.strip())
        ints = np.array([int(t) for t in re.findall(r"-?\d+", text[m.end():end])], dtype=np.int64)
        convert, printed = _PRINTED[dtype]
        if dtype.is_float:
            bits = ints.astype(np.int32 if printed == "i32" else np.int64)
            out.append(bits.view(dtype.np).reshape(shape))
        else:
            out.append(ints.astype(dtype.np).reshape(shape))
    return out
