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
from collections.abc import Sequence

import numpy as np

from compiler.diagnostics import UNKNOWN, DlError
from compiler.ir.core import Function, Op
from compiler.ir.printer import format_symbol
from compiler.ir.types import DType, TensorType

from .mlir_table import RULES
from .mlir_writer import Body, MlirWriter, UnsupportedVariant, dense_literal, tensor_type

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
    missing: dict[str, list[Op]] = {}
    for op in func.ops:
        if op.name not in RULES:
            missing.setdefault(op.name, []).append(op)
    if missing:
        listed = "\n".join(f"  dl.{name} ({len(ops)}x){_first_place(ops)}" for name, ops in sorted(missing.items()))
        raise MlirExportError(f"@{func.name} has {sum(map(len, missing.values()))} op(s) with no "
                              f"upstream MLIR form (no rule in runtime/interop/mlir_table.py):\n{listed}")


def _first_place(ops: list[Op]) -> str:
    """``, first at file:line:col`` when the first of ``ops`` has a known location."""
    loc = ops[0].loc
    return "" if loc is None or loc == UNKNOWN else f", first at {loc}"


def _check_fits(name: str, array: np.ndarray, t: TensorType, what: str) -> None:
    """``array`` has ``t``'s shape (a symbolic dim takes any size)."""
    shape = np.shape(array)
    if len(shape) != t.rank or any(isinstance(d, int) and d != s for d, s in zip(t.shape, shape)):
        raise MlirExportError(f"{what} '{name}' has shape {list(shape)}, the parameter is {t.dsl_str()}")


def function_text(func: Function, weights: dict[str, np.ndarray] | None = None) -> str:
    """``func`` as a ``func.func`` in upstream dialects; parameters named in ``weights`` are
    constants in the body instead of arguments."""
    from compiler.codegen.bufferize import expand_composites

    weights = weights or {}
    unknown = sorted(set(weights) - {p.name for p in func.params})
    if unknown:
        raise MlirExportError(f"@{func.name} has no parameter '{unknown[0]}' to take a weight")
    # ops without a rule of their own but with a decomposition (attention: its unfused form)
    flat = expand_composites(func, also=lambda op: op.name not in RULES)
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
            _check_fits(p.name, weights[p.name], p.type, "the weight")
            if not all(isinstance(d, int) for d in p.type.shape):
                raise MlirExportError(f"parameter '{p.name}' has symbolic dims ({p.type.dsl_str()}): "
                                      "it cannot be a constant")
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
    text = [f"  func.func @{format_symbol(func.name)}({', '.join(args)}) -> ({outs}) {{"]
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
        _check_fits(p.name or "?", a, p.type, "the argument")
        concrete = TensorType(p.type.dtype, tuple(a.shape))
        c = w.assign(f"arith.constant {dense_literal(a, p.type.dtype)} : {tensor_type(concrete)}")
        if concrete.shape != p.type.shape:
            c = w.assign(f"tensor.cast {c} : {tensor_type(concrete)} to {tensor_type(p.type)}")
        operands.append(c)
    result_types = [tensor_type(v.type) for v in func.outputs]
    call = w.fresh()
    n = len(func.outputs)
    w.line(f"{call}:{n} = func.call @{format_symbol(func.name)}({', '.join(operands)}) : "
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
        data = text[m.end():end] if np.prod(shape, dtype=np.int64) > 0 else ""   # an empty one prints []
        ints = np.array([int(t) for t in re.findall(r"-?\d+", data)], dtype=np.int64)
        convert, printed = _PRINTED[dtype]
        if dtype.is_float:
            bits = ints.astype(np.int32 if printed == "i32" else np.int64)
            out.append(bits.view(dtype.np).reshape(shape))
        else:
            out.append(ints.astype(dtype.np).reshape(shape))
    return out
