"""The op mapping from dl to upstream MLIR (linalg, tensor, arith, math): one entry per op.

An elementwise op is one line, its scalar body in arith/math::

    numeric("add", "arith.addf", "arith.addi")                          # float / int op
    float_only("exp", lambda b, t, x: b.op(f"math.exp {x} : {t}"))      # inside a linalg.generic

and the writer wraps it in a ``linalg.generic`` with numpy broadcasting
(indexing maps that drop or pin a broadcast axis).  Other ops register a rule
``(w: MlirWriter, op, *operand names) -> result names`` with :func:`rule`:
reductions and ``matmul`` are ``linalg.generic`` with reduction iterators,
``transpose`` is ``linalg.transpose``, ``reshape`` ``tensor.reshape``,
``slice`` ``tensor.extract_slice``, ``concat`` ``tensor.insert_slice``,
``conv2d`` / ``max_pool2d`` the named linalg ops; scatter-style ops
(``scatter_add``, ``conv2d_backprop_input``, ``max_pool2d_grad``) are
``scf.for`` nests carrying the result tensor (:meth:`MlirWriter.loop_nest`);
the random ops are Philox-4x32-10 in ``i32`` arithmetic.
Composite ops never reach the table: they are expanded by their ``decompose``
rule first.  An op without an entry is listed in the exporter's one error; a
variant a rule refuses raises :class:`UnsupportedVariant`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from compiler.ir.core import Op
from compiler.ir.types import DType, TensorType
from compiler.ops.base import normalize_axes

from .mlir_writer import Body, MlirWriter, UnsupportedVariant, dense_literal, element_type, tensor_type

Rule = Callable[..., list[str]]          # (w, op, *operand names) -> result names
RULES: dict[str, Rule] = {}


def rule(name: str) -> Callable[[Rule], Rule]:
    def register(fn: Rule) -> Rule:
        assert name not in RULES, f"two MLIR rules for dl.{name}"
        RULES[name] = fn
        return fn
    return register


et = element_type
_tt = tensor_type


def _unsigned(dtype: DType) -> bool:
    return dtype in (DType.u8, DType.bool)


# ---------------------------------------------------------------------------
# Elementwise ops: a scalar body in a broadcasting linalg.generic


def broadcast_map(operand: TensorType, result: TensorType) -> list[str | int]:
    """numpy broadcasting as an indexing map: operand axes align with the result's last
    axes; a static 1 against a dim that is not 1 reads index 0."""
    offset = result.rank - operand.rank
    out: list[str | int] = []
    for i, d in enumerate(operand.shape):
        r = result.shape[offset + i]
        out.append("0" if d == 1 and r != 1 else offset + i)
    return out


ScalarRule = Callable[..., str]          # (body, op, operand dtypes, *scalars) -> scalar


def elementwise(name: str, scalar: ScalarRule) -> None:
    """dl op ``name`` as a ``linalg.generic`` over its result computing ``scalar``."""

    def write(w: MlirWriter, op: Op, *names: str) -> list[str]:
        out = op.results[0].type
        sources = w.operand_sources(op)
        init = w.empty(out, sources)
        ins = [(n, v.type, broadcast_map(v.type, out)) for n, v in zip(names, op.operands)]
        dtypes = [v.type.dtype for v in op.operands]
        return w.generic(out.rank, ins, [(init, out, list(range(out.rank)))], ["parallel"] * out.rank,
                         lambda b, xs: scalar(b, op, dtypes, *xs[:len(names)]))

    rule(name)(write)


def float_only(name: str, f: Callable[[Body, str, str], str]) -> None:
    """A unary op computed for floats, ``f(body, element type, x)``; an integer or bool
    operand (rounding ops take them) is unchanged."""
    def scalar(b: Body, op: Op, dtypes: list[DType], x: str) -> str:
        return f(b, et(dtypes[0]), x) if dtypes[0].is_float else x
    elementwise(name, scalar)


def numeric(name: str, on_float: str, on_int: str | None, on_unsigned: str | None = None) -> None:
    """A binary op that is one arith op: ``on_float`` for floats, ``on_int`` (signed) or
    ``on_unsigned`` for integers (None: not written for them)."""
    def scalar(b: Body, op: Op, dtypes: list[DType], x: str, y: str) -> str:
        dt = dtypes[0]
        name_ = on_float if dt.is_float else (on_unsigned or on_int) if _unsigned(dt) else on_int
        if name_ is None:
            raise UnsupportedVariant(f"{dt.value} operands")
        return b.op(f"{name_} {x}, {y} : {et(dt)}")
    elementwise(name, scalar)


numeric("add", "arith.addf", "arith.addi")
numeric("sub", "arith.subf", "arith.subi")
numeric("mul", "arith.mulf", "arith.muli")
numeric("div", "arith.divf", None)
numeric("maximum", "arith.maximumf", "arith.maxsi", "arith.maxui")
numeric("minimum", "arith.minimumf", "arith.minsi", "arith.minui")
numeric("logical_and", "arith.andi", "arith.andi")
numeric("logical_or", "arith.ori", "arith.ori")




def _pow(b: Body, op: Op, dts: list[DType], x: str, y: str) -> str:
    """Floats: ``math.powf``.  Integers (dl's rule): square-and-multiply over the exponent's
    bits, unrolled, wrapping as numpy's; a negative exponent gives 1 for 1, +-1 for -1
    (odd: -1), else 0."""
    dt = dts[0]
    t = et(dt)
    if dt.is_float:
        return b.op(f"math.powf {x}, {y} : {t}")
    if _unsigned(dt):
        raise UnsupportedVariant(f"{dt.value} operands")
    one, zero = b.const(1, dt), b.const(0, dt)
    result, base = one, x
    for bit in range(8 * dt.itemsize - 1):         # the sign bit is handled below
        set_ = b.op(f"arith.cmpi ne, {b.op(f'arith.andi {y}, {b.const(1 << bit, dt)} : {t}')}, {zero} : {t}")
        result = b.op(f"arith.select {set_}, {b.op(f'arith.muli {result}, {base} : {t}')}, {result} : {t}")
        base = b.op(f"arith.muli {base}, {base} : {t}")
    odd = b.op(f"arith.cmpi ne, {b.op(f'arith.andi {y}, {one} : {t}')}, {zero} : {t}")
    minus_one = b.const(-1, dt)
    by_minus_one = b.op(f"arith.select {odd}, {minus_one}, {one} : {t}")
    inverse = b.op(f"arith.select {b.op(f'arith.cmpi eq, {x}, {minus_one} : {t}')}, {by_minus_one}, {zero} : {t}")
    inverse = b.op(f"arith.select {b.op(f'arith.cmpi eq, {x}, {one} : {t}')}, {one}, {inverse} : {t}")
    negative = b.op(f"arith.cmpi slt, {y}, {zero} : {t}")
    return b.op(f"arith.select {negative}, {inverse}, {result} : {t}")


elementwise("pow", _pow)

for _name, _math in [("exp", "exp"), ("log", "log"), ("sqrt", "sqrt"), ("tanh", "tanh"), ("sin", "sin"),
                     ("cos", "cos"), ("erf", "erf"), ("floor", "floor"), ("ceil", "ceil"),
                     ("round", "roundeven"), ("expm1", "expm1"), ("log1p", "log1p")]:
    float_only(_name, functools.partial(lambda m, b, t, x: b.op(f"math.{m} {x} : {t}"), _math))

float_only("reciprocal", lambda b, t, x: b.op(f"arith.divf {b.op(f'arith.constant 1.0 : {t}')}, {x} : {t}"))


def _sigmoid(b: Body, t: str, x: str) -> str:
    # 1 / (1 + z) for x >= 0, z / (1 + z) below, z = exp(-|x|): never overflows (dl's reference)
    one = b.op(f"arith.constant 1.0 : {t}")
    zero = b.op(f"arith.constant 0.0 : {t}")
    magnitude = b.op(f"math.absf {x} : {t}")
    z = b.op(f"math.exp {b.op(f'arith.negf {magnitude} : {t}')} : {t}")
    denom = b.op(f"arith.addf {one}, {z} : {t}")
    up = b.op(f"arith.divf {one}, {denom} : {t}")
    down = b.op(f"arith.divf {z}, {denom} : {t}")
    return b.op(f"arith.select {b.op(f'arith.cmpf oge, {x}, {zero} : {t}')}, {up}, {down} : {t}")


float_only("sigmoid", _sigmoid)


def _neg(b: Body, op: Op, dts: list[DType], x: str) -> str:
    if dts[0].is_float:
        return b.op(f"arith.negf {x} : {et(dts[0])}")
    return b.op(f"arith.subi {b.const(0, dts[0])}, {x} : {et(dts[0])}")


def _relu(b: Body, op: Op, dts: list[DType], x: str) -> str:
    dt = dts[0]
    zero = b.const(0, dt)
    how = "arith.maximumf" if dt.is_float else "arith.maxui" if _unsigned(dt) else "arith.maxsi"
    return b.op(f"{how} {x}, {zero} : {et(dt)}")


def _abs(b: Body, op: Op, dts: list[DType], x: str) -> str:
    dt = dts[0]
    if _unsigned(dt):
        return x
    if dt.is_float:
        return b.op(f"math.absf {x} : {et(dt)}")
    # x < 0 ? 0 - x : x  (math.absi has no lowering in the standard pipeline); INT_MIN stays, as numpy's
    zero = b.const(0, dt)
    negative = b.op(f"arith.cmpi slt, {x}, {zero} : {et(dt)}")
    return b.op(f"arith.select {negative}, {b.op(f'arith.subi {zero}, {x} : {et(dt)}')}, {x} : {et(dt)}")


def _square(b: Body, op: Op, dts: list[DType], x: str) -> str:
    return b.op(f"arith.{'mulf' if dts[0].is_float else 'muli'} {x}, {x} : {et(dts[0])}")


def _select(b: Body, op: Op, dts: list[DType], c: str, x: str, y: str) -> str:
    return b.op(f"arith.select {c}, {x}, {y} : {et(dts[1])}")


def _logical_not(b: Body, op: Op, dts: list[DType], x: str) -> str:
    return b.op(f"arith.xori {x}, {b.const(True, DType.bool)} : i1")


elementwise("neg", _neg)
elementwise("relu", _relu)
elementwise("abs", _abs)
elementwise("square", _square)
elementwise("select", _select)
elementwise("logical_not", _logical_not)

# comparisons: (float predicate, signed predicate, unsigned predicate)
_COMPARE = {"eq": ("oeq", "eq", "eq"), "ne": ("une", "ne", "ne"), "gt": ("ogt", "sgt", "ugt"),
            "ge": ("oge", "sge", "uge"), "lt": ("olt", "slt", "ult"), "le": ("ole", "sle", "ule")}


def _comparison(pred: tuple[str, str, str]) -> ScalarRule:
    def scalar(b: Body, op: Op, dts: list[DType], x: str, y: str) -> str:
        dt = dts[0]
        if dt.is_float:
            return b.op(f"arith.cmpf {pred[0]}, {x}, {y} : {et(dt)}")
        return b.op(f"arith.cmpi {pred[2] if _unsigned(dt) else pred[1]}, {x}, {y} : {et(dt)}")
    return scalar


for _name, _pred in _COMPARE.items():
    elementwise(_name, _comparison(_pred))


def _isnan(b: Body, op: Op, dts: list[DType], x: str) -> str:
    if not dts[0].is_float:
        return b.const(False, DType.bool)                  # always false for ints and bools
    return b.op(f"arith.cmpf uno, {x}, {x} : {et(dts[0])}")


def _isinf(b: Body, op: Op, dts: list[DType], x: str) -> str:
    if not dts[0].is_float:
        return b.const(False, DType.bool)
    t = et(dts[0])
    return b.op(f"arith.cmpf oeq, {b.op(f'math.absf {x} : {t}')}, {b.const(np.inf, dts[0])} : {t}")


def _sign(b: Body, op: Op, dts: list[DType], x: str) -> str:
    """-1, 0 or 1 in x's dtype; sign(nan) = nan, sign(-0.0) = 0.0 (numpy ``sign``)."""
    dt = dts[0]
    t = et(dt)
    zero, one = b.const(0, dt), b.const(1, dt)
    if dt is DType.bool or _unsigned(dt):
        return b.op(f"arith.select {b.op(f'arith.cmpi ne, {x}, {zero} : {t}')}, {one}, {zero} : {t}")
    cmp = "arith.cmpf o" if dt.is_float else "arith.cmpi s"
    positive = b.op(f"{cmp}gt, {x}, {zero} : {t}")
    negative = b.op(f"{cmp}lt, {x}, {zero} : {t}")
    out = b.op(f"arith.select {negative}, {b.const(-1, dt)}, {zero} : {t}")
    out = b.op(f"arith.select {positive}, {one}, {out} : {t}")
    if dt.is_float:
        out = b.op(f"arith.select {_isnan(b, op, dts, x)}, {x}, {out} : {t}")
    return out


elementwise("isnan", _isnan)
elementwise("isinf", _isinf)
elementwise("sign", _sign)


# -- cast: dl's rules (float -> int truncates and saturates, nan -> 0; anything -> bool is != 0)


def _cast(b: Body, op: Op, dts: list[DType], x: str) -> str:
    src, dst = dts[0], op.attrs["dtype"]
    s, d = et(src), et(dst)
    if src == dst:
        return x
    if dst is DType.bool:
        zero = b.const(0, src)
        return b.op(f"arith.cmpf une, {x}, {zero} : {s}" if src.is_float else f"arith.cmpi ne, {x}, {zero} : {s}")
    if src.is_float and dst.is_float:
        wider = dst.itemsize > src.itemsize
        return b.op(f"arith.{'extf' if wider else 'truncf'} {x} : {s} to {d}")
    if dst.is_float:
        return b.op(f"arith.{'uitofp' if _unsigned(src) else 'sitofp'} {x} : {s} to {d}")
    if src.is_float:
        return _float_to_int(b, x, src, dst)
    if dst.itemsize == src.itemsize:
        return x                                    # i8 <-> u8: the same bits
    if dst.itemsize > src.itemsize:
        return b.op(f"arith.{'extui' if _unsigned(src) else 'extsi'} {x} : {s} to {d}")
    return b.op(f"arith.trunci {x} : {s} to {d}")


def _float_to_int(b: Body, x: str, src: DType, dst: DType) -> str:
    """Truncation toward zero, saturating at the int's range; nan -> 0 (``saturating_to_int``)."""
    s, d = et(src), et(dst)
    info = np.iinfo(dst.np)
    low, high = float(info.min), float(info.max) + 1.0          # exact in every float dtype
    converted = b.op(f"arith.{'fptoui' if _unsigned(dst) else 'fptosi'} {x} : {s} to {d}")
    too_high = b.op(f"arith.cmpf oge, {x}, {b.const(high, src)} : {s}")
    too_low = b.op(f"arith.cmpf ole, {x}, {b.const(low - 1.0, src)} : {s}") if low < 0 else \
        b.op(f"arith.cmpf ole, {x}, {b.const(-1.0, src)} : {s}")
    nan = b.op(f"arith.cmpf uno, {x}, {x} : {s}")
    out = b.op(f"arith.select {too_high}, {b.const(int(info.max), dst)}, {converted} : {d}")
    out = b.op(f"arith.select {too_low}, {b.const(int(info.min), dst)}, {out} : {d}")
    return b.op(f"arith.select {nan}, {b.const(0, dst)}, {out} : {d}")


elementwise("cast", _cast)


# ---------------------------------------------------------------------------
# Reductions: linalg.generic with reduction iterators


def _identity(kind: str, dtype: DType) -> Any:
    if kind == "sum":
        return 0
    if kind == "prod":
        return 1
    if kind in ("all", "any"):
        return kind == "all"
    if dtype.is_float:
        return -np.inf if kind == "max" else np.inf
    info = np.iinfo(dtype.np)
    return int(info.min) if kind == "max" else int(info.max)


_COMBINE = {
    "sum": ("arith.addf", "arith.addi", "arith.addi"),
    "prod": ("arith.mulf", "arith.muli", "arith.muli"),
    "max": ("arith.maximumf", "arith.maxsi", "arith.maxui"),
    "min": ("arith.minimumf", "arith.minsi", "arith.minui"),
    "all": (None, "arith.andi", "arith.andi"),
    "any": (None, "arith.ori", "arith.ori"),
}


def _reduce(w: MlirWriter, op: Op, x: str, kind: str) -> str:
    """A reduction over ``op``'s axes into its result type (keepdims or not)."""
    xt, out = op.operands[0].type, op.results[0].type
    axes = normalize_axes(op.attrs["axes"], xt.rank)
    keep = op.attrs["keepdims"]
    out_map: list[str | int] = [("0" if i in axes else i) for i in range(xt.rank) if keep or i not in axes]
    init = w.filled(out, _identity(kind, out.dtype), w.operand_sources(op))
    dt = out.dtype
    fl, si, ui = _COMBINE[kind]
    how = fl if dt.is_float else ui if _unsigned(dt) else si
    if how is None:
        raise UnsupportedVariant(f"{dt.value} operand")
    convert_bool = kind in ("all", "any") and xt.dtype is not DType.bool

    def body(b: Body, xs: list[str]) -> str:
        v = xs[0]
        if convert_bool:                    # all / any of numbers: of x != 0
            v = b.op(f"arith.cmp{'f une' if xt.dtype.is_float else 'i ne'}, {v}, "
                     f"{b.const(0, xt.dtype)} : {et(xt.dtype)}")
        return b.op(f"{how} {v}, {xs[1]} : {et(dt)}")

    iters = ["reduction" if i in axes else "parallel" for i in range(xt.rank)]
    return w.generic(xt.rank, [(x, xt, list(range(xt.rank)))], [(init, out, out_map)], iters, body)[0]


for _kind in ("sum", "prod", "max", "min", "all", "any"):
    rule(_kind)(lambda w, op, x, k=_kind: [_reduce(w, op, x, k)])


@rule("mean")
def _mean(w: MlirWriter, op: Op, x: str) -> list[str]:
    xt, out = op.operands[0].type, op.results[0].type
    if not out.dtype.is_float:
        raise UnsupportedVariant("an integer mean")
    total = _reduce(w, op, x, "sum")
    count: str | None = None
    for a in normalize_axes(op.attrs["axes"], xt.rank):
        size = w.size(xt.shape[a], w.operand_sources(op))
        count = size if count is None else w.assign(f"arith.muli {count}, {size} : index")
    count = count or w.index(1)
    n = w.assign(f"arith.index_cast {count} : index to i64")
    nf = w.assign(f"arith.sitofp {n} : i64 to {et(out.dtype)}")
    init = w.empty(out, [(total, out)])
    rank = out.rank
    return w.generic(rank, [(total, out, list(range(rank)))], [(init, out, list(range(rank)))],
                     ["parallel"] * rank, lambda b, xs: b.op(f"arith.divf {xs[0]}, {nf} : {et(out.dtype)}"))


def _beats(b: Body, v: str, cur: str, t: str, larger: bool) -> str:
    """Whether float ``v`` replaces the extreme ``cur`` found so far, numpy's way: strictly
    larger (smaller), or a nan where ``cur`` is not one (a nan, once chosen, stays)."""
    better = b.op(f"arith.cmpf {'ugt' if larger else 'ult'}, {v}, {cur} : {t}")     # true when v is nan
    cur_ok = b.op(f"arith.cmpf ord, {cur}, {cur} : {t}")
    return b.op(f"arith.andi {better}, {cur_ok} : i1")


def _arg_reduce(w: MlirWriter, op: Op, x: str, kind: str) -> list[str]:
    """argmax / argmin along one axis: the first index of the extreme value; a nan wins
    (numpy's rule)."""
    xt, out = op.operands[0].type, op.results[0].type
    axis = op.attrs["axis"] % xt.rank
    keep = op.attrs["keepdims"]
    out_map: list[str | int] = [i for i in range(xt.rank) if i != axis] if not keep else \
        ["0" if i == axis else i for i in range(xt.rank)]
    value_t = out.with_dtype(xt.dtype)
    sources = w.operand_sources(op)
    best = w.filled(value_t, _identity("max" if kind == "argmax" else "min", xt.dtype), sources)
    index = w.filled(out, 0, sources)
    t, it = et(xt.dtype), et(out.dtype)

    def body(b: Body, xs: list[str]) -> list[str]:
        v, cur, cur_i = xs
        i = b.op(f"arith.index_cast {b.index(axis)} : index to {it}")
        if xt.dtype.is_float:
            take = _beats(b, v, cur, t, larger=kind == "argmax")
        else:
            pred = ("ugt" if _unsigned(xt.dtype) else "sgt") if kind == "argmax" else \
                ("ult" if _unsigned(xt.dtype) else "slt")
            first = b.op(f"arith.cmpi eq, {i}, {b.op(f'arith.constant 0 : {it}')} : {it}")
            take = b.op(f"arith.ori {b.op(f'arith.cmpi {pred}, {v}, {cur} : {t}')}, {first} : i1")
        return [b.op(f"arith.select {take}, {v}, {cur} : {t}"), b.op(f"arith.select {take}, {i}, {cur_i} : {it}")]

    iters = ["reduction" if i == axis else "parallel" for i in range(xt.rank)]
    results = w.generic(xt.rank, [(x, xt, list(range(xt.rank)))],
                        [(best, value_t, out_map), (index, out, out_map)], iters, body)
    return [results[1]]


rule("argmax")(lambda w, op, x: _arg_reduce(w, op, x, "argmax"))
rule("argmin")(lambda w, op, x: _arg_reduce(w, op, x, "argmin"))


# ---------------------------------------------------------------------------
# Contraction


@rule("matmul")
def _matmul(w: MlirWriter, op: Op, lhs: str, rhs: str) -> list[str]:
    """numpy ``matmul`` as a linalg.generic: loops (batch..., m, n, k), batch dims broadcast."""
    lt, rt = op.operands[0].type, op.operands[1].type
    out = op.results[0].type
    has_m, has_n = lt.rank >= 2, rt.rank >= 2
    batch = out.rank - has_m - has_n
    m, n, k = batch, batch + has_m, batch + has_m + has_n
    rank = k + 1

    def batch_map(t: TensorType, core: int) -> list[str | int]:
        dims = t.rank - core
        offset = batch - dims
        return ["0" if t.shape[i] == 1 and out.shape[offset + i] != 1 else offset + i for i in range(dims)]

    lmap = batch_map(lt, 2) + [m, k] if has_m else [k]
    rmap = batch_map(rt, 2) + [k, n] if has_n else [k]
    omap = list(range(batch)) + ([m] if has_m else []) + ([n] if has_n else [])
    init = w.filled(out, 0, w.operand_sources(op))
    t = et(out.dtype)
    fl = out.dtype.is_float

    def body(b: Body, xs: list[str]) -> str:
        prod = b.op(f"arith.{'mulf' if fl else 'muli'} {xs[0]}, {xs[1]} : {t}")
        return b.op(f"arith.{'addf' if fl else 'addi'} {xs[2]}, {prod} : {t}")

    iters = ["parallel"] * k + ["reduction"]
    return w.generic(rank, [(lhs, lt, lmap), (rhs, rt, rmap)], [(init, out, omap)], iters, body)


# ---------------------------------------------------------------------------
# Layout and sources


@rule("transpose")
def _transpose(w: MlirWriter, op: Op, x: str) -> list[str]:
    from compiler.ops.layout import resolve_perm

    xt, out = op.operands[0].type, op.results[0].type
    perm = resolve_perm(op.attrs["perm"], xt.rank)
    init = w.empty(out, w.operand_sources(op))
    return [w.assign(f"linalg.transpose ins({x} : {_tt(xt)}) outs({init} : {_tt(out)}) "
                     f"permutation = [{', '.join(map(str, perm))}]")]


def _reshape(w: MlirWriter, op: Op, x: str) -> list[str]:
    """``tensor.reshape`` to the result's shape (its dims as a shape tensor)."""
    xt, out = op.operands[0].type, op.results[0].type
    sizes = [w.size(d, w.operand_sources(op)) for d in out.shape]
    shape = w.assign(f"tensor.from_elements {', '.join(sizes)} : tensor<{out.rank}xindex>")
    return [w.assign(f"tensor.reshape {x}({shape}) : ({_tt(xt)}, tensor<{out.rank}xindex>) -> {_tt(out)}")]


for _name in ("reshape", "expand_dims", "squeeze"):
    rule(_name)(_reshape)


@rule("broadcast_to")
def _broadcast_to(w: MlirWriter, op: Op, x: str) -> list[str]:
    out = op.results[0].type
    init = w.empty(out, w.operand_sources(op))
    return w.generic(out.rank, [(x, op.operands[0].type, broadcast_map(op.operands[0].type, out))],
                     [(init, out, list(range(out.rank)))], ["parallel"] * out.rank, lambda b, xs: xs[0])


@rule("constant")
def _constant(w: MlirWriter, op: Op) -> list[str]:
    out = op.results[0].type
    value = np.asarray(op.attrs["value"])
    static = [d for d in out.shape if isinstance(d, int)]
    if len(static) == out.rank:
        full = np.broadcast_to(value, tuple(static))
        return [w.assign(f"arith.constant {dense_literal(full, out.dtype)} : {_tt(out)}")]
    if value.ndim > 0:
        raise UnsupportedVariant("an array constant of symbolic shape")
    return [w.filled(out, value.item())]


@rule("iota")
def _iota(w: MlirWriter, op: Op) -> list[str]:
    out = op.results[0].type
    axis = op.attrs["axis"] % out.rank
    init = w.empty(out)
    t = et(out.dtype)

    def body(b: Body, xs: list[str]) -> str:
        i = b.op(f"arith.index_cast {b.index(axis)} : index to i64")
        if out.dtype.is_float:
            return b.op(f"arith.sitofp {i} : i64 to {t}")
        return i if t == "i64" else b.op(f"arith.trunci {i} : i64 to {t}")

    return w.generic(out.rank, [], [(init, out, list(range(out.rank)))], ["parallel"] * out.rank, body)


@rule("dim_size")
def _dim_size(w: MlirWriter, op: Op, x: str) -> list[str]:
    xt, out = op.operands[0].type, op.results[0].type
    size = w.size(xt.shape[op.attrs["axis"] % xt.rank], w.operand_sources(op))
    n = w.assign(f"arith.index_cast {size} : index to i64")
    t = et(out.dtype)
    if out.dtype.is_float:
        n = w.assign(f"arith.sitofp {n} : i64 to {t}")
    elif t != "i64":
        n = w.assign(f"arith.trunci {n} : i64 to {t}")
    return [w.assign(f"tensor.from_elements {n} : {_tt(out)}")]


@rule("slice")
def _slice(w: MlirWriter, op: Op, x: str) -> list[str]:
    from compiler.ops.indexing import resolve_slice

    xt, out = op.operands[0].type, op.results[0].type
    spans = resolve_slice(xt.shape, op.attrs["start"], op.attrs["stop"], op.attrs["step"])
    if any(s.step < 0 for s in spans):
        return [_reversing_slice(w, op, x, spans)]
    sizes = [str(s.length) if isinstance(s.length, int) else w.size(s.length, w.operand_sources(op))
             for s in spans]
    offsets = ", ".join(str(s.start) for s in spans)
    strides = ", ".join(str(s.step) for s in spans)
    return [w.assign(f"tensor.extract_slice {x}[{offsets}] [{', '.join(sizes)}] [{strides}] : "
                     f"{_tt(xt)} to {_tt(out)}")]


def _reversing_slice(w: MlirWriter, op: Op, x: str, spans: list[Any]) -> str:
    """A slice with a negative step (tensor.extract_slice takes none): a linalg.generic over
    the result reading ``x[start + i * step]`` with ``tensor.extract``."""
    xt, out = op.operands[0].type, op.results[0].type
    if any(s.step < 0 and not isinstance(d, int) for s, d in zip(spans, xt.shape)):
        raise UnsupportedVariant("a negative step along a symbolic dim")
    init = w.empty(out, w.operand_sources(op))

    def body(b: Body, xs: list[str]) -> str:
        coords = [b.index(d) if (s.start, s.step) == (0, 1) else _affine(b, [(b.index(d), s.step)], s.start)
                  for d, s in enumerate(spans)]
        return b.op(f"tensor.extract {x}[{', '.join(coords)}] : {_tt(xt)}")

    return w.generic(out.rank, [], [(init, out, list(range(out.rank)))], ["parallel"] * out.rank, body)[0]


@rule("concat")
def _concat(w: MlirWriter, op: Op, *xs: str) -> list[str]:
    out = op.results[0].type
    axis = op.attrs["axis"] % out.rank
    sources = w.operand_sources(op)
    acc = w.empty(out, sources)
    at = 0
    for name, v in zip(xs, op.operands):
        t = v.type
        length = t.shape[axis]
        if not isinstance(length, int):
            raise UnsupportedVariant("a symbolic size along the concatenation axis")
        offsets = ", ".join(str(at) if i == axis else "0" for i in range(out.rank))
        sizes = ", ".join(str(d) if isinstance(d, int) else w.size(d, sources) for d in t.shape)
        ones = ", ".join("1" for _ in range(out.rank))
        acc = w.assign(f"tensor.insert_slice {name} into {acc}[{offsets}] [{sizes}] [{ones}] : "
                       f"{_tt(t)} into {_tt(out)}")
        at += length
    return [acc]


# ---------------------------------------------------------------------------
# Convolution, pooling, gather


def _i64x2(values: Any) -> str:
    return f"dense<[{', '.join(str(int(v)) for v in values)}]> : tensor<2xi64>"


def _pad_hw(w: MlirWriter, op: Op, x: str, xt: TensorType, padding: Any, value: Any) -> tuple[str, TensorType]:
    """``x`` (NHWC) padded by ``(top, bottom, left, right)`` with ``value`` (``tensor.pad``)."""
    top, bottom, left, right = (int(p) for p in padding)
    if (top, bottom, left, right) == (0, 0, 0, 0):
        return x, xt
    n, h, wd, c = xt.shape
    assert isinstance(h, int) and isinstance(wd, int)
    padded = xt.with_shape((n, h + top + bottom, wd + left + right, c))
    fill = w.scalar(value, xt.dtype)
    args = ", ".join(f"{w.fresh()}: index" for _ in range(4))
    w.line(f"{(result := w.fresh())} = tensor.pad {x} low[0, {top}, {left}, 0] high[0, {bottom}, {right}, 0] {{")
    w.line(f"^bb0({args}):")
    w.line(f"  tensor.yield {fill} : {et(xt.dtype)}")
    w.line(f"}} : {_tt(xt)} to {_tt(padded)}")
    return result, padded


@rule("conv2d")
def _conv2d(w: MlirWriter, op: Op, x: str, kernel: str) -> list[str]:
    """``linalg.conv_2d_nhwc_hwcf`` (dl's NHWC / HWIO layout) after zero padding; grouped
    (``groups > 1``, depthwise): a linalg.generic over (n, oy, ox, o, i, j, c) reading input
    channel ``g(o) * C/groups + c``."""
    xt, kt, out = op.operands[0].type, op.operands[1].type, op.results[0].type
    if not out.dtype.is_float:
        raise UnsupportedVariant(f"{out.dtype.value} operands")
    sh, sw, dh, dw, *pads = _conv_geometry(op)
    padded, pt = _pad_hw(w, op, x, xt, pads, 0.0)
    init = w.filled(out, 0, w.operand_sources(op))
    if op.attrs["groups"] != 1:
        xmap: list[str | int] = [0, f"d1 * {sh} + d4 * {dh}", f"d2 * {sw} + d5 * {dw}",
                                 _group_channel(op, "d3", "d6")]
        return w.generic(7, [(padded, pt, xmap), (kernel, kt, [4, 5, 6, 3])], [(init, out, [0, 1, 2, 3])],
                         ["parallel"] * 4 + ["reduction"] * 3, _multiply_add(out.dtype))
    return [w.assign(f"linalg.conv_2d_nhwc_hwcf {{dilations = {_i64x2(op.attrs['dilations'])}, "
                     f"strides = {_i64x2(op.attrs['strides'])}}} ins({padded}, {kernel} : {_tt(pt)}, {_tt(kt)}) "
                     f"outs({init} : {_tt(out)}) -> {_tt(out)}")]


@rule("max_pool2d")
def _max_pool2d(w: MlirWriter, op: Op, x: str) -> list[str]:
    """``linalg.pooling_nhwc_max`` after padding with -inf (a padded place never wins)."""
    xt, out = op.operands[0].type, op.results[0].type
    if not out.dtype.is_float:
        raise UnsupportedVariant(f"{out.dtype.value} operand")
    pool = op.attrs["pool_size"]
    strides = op.attrs["strides"] if op.attrs["strides"] is not None else pool
    padded, pt = _pad_hw(w, op, x, xt, op.attrs["padding"], -np.inf)
    window = w.assign(f"tensor.empty() : tensor<{pool[0]}x{pool[1]}x{et(out.dtype)}>")
    init = w.filled(out, -np.inf, w.operand_sources(op))
    return [w.assign(f"linalg.pooling_nhwc_max {{dilations = {_i64x2((1, 1))}, strides = {_i64x2(strides)}}} "
                     f"ins({padded}, {window} : {_tt(pt)}, tensor<{pool[0]}x{pool[1]}x{et(out.dtype)}>) "
                     f"outs({init} : {_tt(out)}) -> {_tt(out)}")]


@rule("gather")
def _gather(w: MlirWriter, op: Op, x: str, indices: str) -> list[str]:
    """numpy ``take``: a linalg.generic over the result reading ``x`` with ``tensor.extract``;
    a negative index counts from the end, one outside ``[-n, n)`` stops the program
    (``cf.assert``), as native code refuses it."""
    xt, it, out = op.operands[0].type, op.operands[1].type, op.results[0].type
    axis = op.attrs["axis"] % xt.rank
    n = w.size(xt.shape[axis], w.operand_sources(op))
    init = w.empty(out, w.operand_sources(op))
    imap: list[str | int] = list(range(axis, axis + it.rank))

    def body(b: Body, xs: list[str]) -> str:
        wrapped = _checked_index(b, xs[0], it.dtype, n, "gather")
        coords = [b.index(d) for d in range(axis)] + [wrapped] + \
            [b.index(axis + it.rank + d) for d in range(xt.rank - axis - 1)]
        return b.op(f"tensor.extract {x}[{', '.join(coords)}] : {_tt(xt)}")

    return w.generic(out.rank, [(indices, it, imap)], [(init, out, list(range(out.rank)))],
                     ["parallel"] * out.rank, body)


def _checked_index(b: Body, raw: str, dtype: DType, n: str, what: str) -> str:
    """An index of ``dtype`` as an ``index`` in ``[0, n)``: a negative one counts from the end;
    one outside ``[-n, n)`` stops the program (``cf.assert``), as native code refuses it."""
    i = b.op(f"arith.index_cast {raw} : {et(dtype)} to index")
    zero = b.op("arith.constant 0 : index")
    wrapped = b.op(f"arith.select {b.op(f'arith.cmpi slt, {i}, {zero} : index')}, "
                   f"{b.op(f'arith.addi {i}, {n} : index')}, {i} : index")
    low = b.op(f"arith.cmpi sge, {wrapped}, {zero} : index")
    high = b.op(f"arith.cmpi slt, {wrapped}, {n} : index")
    b.lines.append(f'cf.assert {b.op(f"arith.andi {low}, {high} : i1")}, "{what}: an index is out of range"')
    return wrapped


def _accumulate(b: Body, acc: str, t: TensorType, coords: list[str], value: str) -> str:
    """``acc[coords] += value`` on a tensor: the updated tensor."""
    where = ", ".join(coords)
    old = b.op(f"tensor.extract {acc}[{where}] : {_tt(t)}")
    new = b.op(f"arith.{'addf' if t.dtype.is_float else 'addi'} {old}, {value} : {et(t.dtype)}")
    return b.op(f"tensor.insert {new} into {acc}[{where}] : {_tt(t)}")


@rule("scatter_add")
def _scatter_add(w: MlirWriter, op: Op, base: str, indices: str, updates: str) -> list[str]:
    """``base`` plus each element of ``updates`` added at its index: ``scf.for`` loops over
    ``updates`` in row-major order (repeated indices add up in that order)."""
    bt, it, ut = (v.type for v in op.operands)
    axis = op.attrs["axis"] % bt.rank
    sources = w.operand_sources(op)
    n = w.size(bt.shape[axis], sources)
    bounds = [w.size(d, sources) for d in ut.shape]

    def body(b: Body, ivs: list[str], acc: str) -> str:
        raw = b.op(f"tensor.extract {indices}[{', '.join(ivs[axis:axis + it.rank])}] : {_tt(it)}")
        at = _checked_index(b, raw, it.dtype, n, "scatter_add")
        coords = ivs[:axis] + [at] + ivs[axis + it.rank:]
        value = b.op(f"tensor.extract {updates}[{', '.join(ivs)}] : {_tt(ut)}")
        return _accumulate(b, acc, bt, coords, value)

    return [w.loop_nest(bounds, base, bt, body)]


def _affine(b: Body, terms: list[tuple[str, int]], offset: int) -> str:
    """``sum(iv * k) + offset`` on ``index`` values."""
    total = b.op(f"arith.constant {offset} : index")
    for iv, k in terms:
        scaled = iv if k == 1 else b.op(f"arith.muli {iv}, {b.op(f'arith.constant {k} : index')} : index")
        total = b.op(f"arith.addi {total}, {scaled} : index")
    return total


def _group_channel(op: Op, o: str, c: str) -> str:
    """The input channel of kernel channel ``c`` for output channel ``o`` (affine):
    ``(o floordiv OC/groups) * C/groups + c``, or ``c`` without groups."""
    groups = op.attrs["groups"]
    if groups == 1:
        return c
    in_per_group = op.operands[1].type.shape[2] if op.name == "conv2d" else op.results[0].type.shape[2]
    out_channels = op.results[0].type.shape[3] if op.name == "conv2d" else op.operands[1].type.shape[3]
    assert isinstance(in_per_group, int) and isinstance(out_channels, int)
    return f"({o} floordiv {out_channels // groups}) * {in_per_group} + {c}"


def _multiply_add(dtype: DType) -> Callable[[Body, list[str]], str]:
    """The body ``acc + a * b`` of a contraction written as a linalg.generic."""
    t = et(dtype)

    def body(b: Body, xs: list[str]) -> str:
        return b.op(f"arith.addf {xs[2]}, {b.op(f'arith.mulf {xs[0]}, {xs[1]} : {t}')} : {t}")
    return body


def _conv_geometry(op: Op) -> tuple[int, int, int, int, int, int, int, int]:
    (sh, sw), (dh, dw) = op.attrs["strides"], op.attrs["dilations"]
    top, bottom, left, right = op.attrs["padding"]
    return sh, sw, dh, dw, top, bottom, left, right


@rule("conv2d_backprop_filter")
def _conv2d_backprop_filter(w: MlirWriter, op: Op, x: str, dy: str) -> list[str]:
    """``dw[i, j, c, o] = sum_{n, oy, ox} xpad[n, oy*sh + i*dh, ox*sw + j*dw, c] dy[n, oy, ox, o]``:
    a linalg.generic over (i, j, c, o, n, oy, ox) on the zero-padded input."""
    sh, sw, dh, dw, *pads = _conv_geometry(op)
    xt, dyt, out = op.operands[0].type, op.operands[1].type, op.results[0].type
    padded, pt = _pad_hw(w, op, x, xt, pads, 0.0)
    init = w.filled(out, 0, w.operand_sources(op))
    xmap: list[str | int] = [4, f"d5 * {sh} + d0 * {dh}", f"d6 * {sw} + d1 * {dw}", _group_channel(op, "d3", "d2")]
    return w.generic(7, [(padded, pt, xmap), (dy, dyt, [4, 5, 6, 3])], [(init, out, [0, 1, 2, 3])],
                     ["parallel"] * 4 + ["reduction"] * 3, _multiply_add(out.dtype))


@rule("conv2d_backprop_input")
def _conv2d_backprop_input(w: MlirWriter, op: Op, dy: str, kernel: str) -> list[str]:
    """``dxpad[n, oy*sh + i*dh, ox*sw + j*dw, g(o)*C/groups + c] += dy[n, oy, ox, o] w[i, j, c, o]``
    with ``scf.for`` loops into the zero-padded input, then the image cut out of the padding."""
    sh, sw, dh, dw, top, bottom, left, right = _conv_geometry(op)
    dyt, kt, out = op.operands[0].type, op.operands[1].type, op.results[0].type
    n_, h, wd, c = out.shape
    assert isinstance(h, int) and isinstance(wd, int)
    padded = out.with_shape((n_, h + top + bottom, wd + left + right, c))
    sources = w.operand_sources(op)
    acc = w.filled(padded, 0, sources)
    bounds = [w.size(d, sources) for d in (*dyt.shape[:3], *kt.shape)]     # n oy ox i j c o
    t = et(out.dtype)
    groups, in_per_group, out_channels = op.attrs["groups"], kt.shape[2], kt.shape[3]
    assert isinstance(in_per_group, int) and isinstance(out_channels, int)
    out_per_group = out_channels // groups

    def body(b: Body, ivs: list[str], acc_: str) -> str:
        n, oy, ox, i, j, ci, o = ivs
        g = b.op(f"tensor.extract {dy}[{n}, {oy}, {ox}, {o}] : {_tt(dyt)}")
        k = b.op(f"tensor.extract {kernel}[{i}, {j}, {ci}, {o}] : {_tt(kt)}")
        y, x = _affine(b, [(oy, sh), (i, dh)], 0), _affine(b, [(ox, sw), (j, dw)], 0)
        channel = ci
        if groups != 1:                     # input channel g(o) * C/groups + c
            group = b.op(f"arith.divui {o}, {b.op(f'arith.constant {out_per_group} : index')} : index")
            channel = _affine(b, [(group, in_per_group), (ci, 1)], 0)
        return _accumulate(b, acc_, padded, [n, y, x, channel], b.op(f"arith.mulf {g}, {k} : {t}"))

    full = w.loop_nest(bounds, acc, padded, body)
    if (top, bottom, left, right) == (0, 0, 0, 0):
        return [full]
    sizes = ", ".join(str(d) if isinstance(d, int) else w.size(d, sources) for d in out.shape)
    return [w.assign(f"tensor.extract_slice {full}[0, {top}, {left}, 0] [{sizes}] [1, 1, 1, 1] : "
                     f"{_tt(padded)} to {_tt(out)}")]


@dataclass(frozen=True)
class _Window:
    """A pool op's window against its input ``[N, H, W, C]`` (static H, W)."""

    pool: tuple[int, int]
    strides: tuple[int, int]
    padding: tuple[int, int, int, int]
    size: tuple[int, int]

    @staticmethod
    def of(op: Op, image: TensorType) -> _Window:
        pool = tuple(op.attrs["pool_size"])
        strides = tuple(op.attrs["strides"]) if op.attrs["strides"] is not None else pool
        _, h, wd, _ = image.shape
        if not (isinstance(h, int) and isinstance(wd, int)):
            raise UnsupportedVariant("a symbolic image size")
        return _Window(pool, strides, tuple(op.attrs["padding"]), (h, wd))  # type: ignore[arg-type]

    def places(self, b: Body, oy: str, ox: str) -> list[tuple[str, str, str | None]]:
        """Each place of the window at output (oy, ox), row-major: (y, x, inside), ``y, x``
        clamped to 0 where the place is in the padding (``inside`` false; None: always inside)."""
        top, bottom, left, right = self.padding
        out = []
        for i in range(self.pool[0]):           # unrolled: pool sizes are small constants
            for j in range(self.pool[1]):
                y = _affine(b, [(oy, self.strides[0])], i - top)
                x = _affine(b, [(ox, self.strides[1])], j - left)
                ok = _both(b, _inside(b, y, self.size[0]) if top or bottom else None,
                           _inside(b, x, self.size[1]) if left or right else None)
                out.append((_clamped(b, y, ok), _clamped(b, x, ok), ok))
        return out


def _first_max(b: Body, x: str, xt: TensorType, win: _Window, n: str, oy: str, ox: str,
               c: str) -> tuple[str, str, str]:
    """Where the window's first maximum is (row-major window order, nan largest, padding never
    read): (found, y, x); ``found`` is false for a window wholly in the padding."""
    t = et(xt.dtype)
    best = b.const(-np.inf, xt.dtype)
    best_y = best_x = b.op("arith.constant 0 : index")
    found = b.const(False, DType.bool)
    for y, xx, ok in win.places(b, oy, ox):
        v = b.op(f"tensor.extract {x}[{n}, {y}, {xx}, {c}] : {_tt(xt)}")
        first = b.op(f"arith.xori {found}, {b.const(True, DType.bool)} : i1")
        take = b.op(f"arith.ori {_beats(b, v, best, t, larger=True)}, {first} : i1")    # or the first read
        if ok is not None:
            take = b.op(f"arith.andi {take}, {ok} : i1")
        best = b.op(f"arith.select {take}, {v}, {best} : {t}")
        best_y = b.op(f"arith.select {take}, {y}, {best_y} : index")
        best_x = b.op(f"arith.select {take}, {xx}, {best_x} : index")
        found = b.op(f"arith.ori {found}, {take} : i1")
    return found, best_y, best_x


def _float_pool(op: Op) -> None:
    if not op.operands[0].type.dtype.is_float:
        raise UnsupportedVariant(f"{op.operands[0].type.dtype.value} operand")


@rule("max_pool2d_grad")
def _max_pool2d_grad(w: MlirWriter, op: Op, x: str, dy: str) -> list[str]:
    """``dy`` of each window added at its first maximum in ``x``: ``scf.for`` loops over
    (n, oy, ox, c), the search over the window, then one accumulation."""
    _float_pool(op)
    xt, dyt, out = op.operands[0].type, op.operands[1].type, op.results[0].type
    win = _Window.of(op, xt)
    sources = w.operand_sources(op)
    acc = w.filled(out, 0, sources)
    bounds = [w.size(d, sources) for d in dyt.shape]

    def body(b: Body, ivs: list[str], acc_: str) -> str:
        n, oy, ox, c = ivs
        found, y, xx = _first_max(b, x, xt, win, n, oy, ox, c)
        g = b.op(f"tensor.extract {dy}[{n}, {oy}, {ox}, {c}] : {_tt(dyt)}")
        g = b.op(f"arith.select {found}, {g}, {b.const(0.0, xt.dtype)} : {et(xt.dtype)}")   # all padding
        return _accumulate(b, acc_, out, [n, y, xx, c], g)

    return [w.loop_nest(bounds, acc, out, body)]


@rule("max_pool2d_gather")
def _max_pool2d_gather(w: MlirWriter, op: Op, x: str, g: str) -> list[str]:
    """``g`` read at each window's first maximum in ``x`` (0 for a window all padding): a
    linalg.generic over the result."""
    _float_pool(op)
    xt, gt, out = op.operands[0].type, op.operands[1].type, op.results[0].type
    win = _Window.of(op, xt)
    init = w.empty(out, w.operand_sources(op))

    def body(b: Body, xs: list[str]) -> str:
        n, oy, ox, c = (b.index(d) for d in range(4))
        found, y, xx = _first_max(b, x, xt, win, n, oy, ox, c)
        v = b.op(f"tensor.extract {g}[{n}, {y}, {xx}, {c}] : {_tt(gt)}")
        return b.op(f"arith.select {found}, {v}, {b.const(0.0, out.dtype)} : {et(out.dtype)}")

    return w.generic(4, [], [(init, out, [0, 1, 2, 3])], ["parallel"] * 4, body)


def _window_divisor(b: Body, op: Op, win: _Window, places: list[tuple[str, str, str | None]],
                    dtype: DType) -> str:
    """What a window's sum is divided by: ``ph * pw``, or its places in the image (at least 1)."""
    t = et(dtype)
    if op.attrs["count_include_pad"] or all(ok is None for _, _, ok in places):
        return b.const(float(win.pool[0] * win.pool[1]), dtype)
    count = b.const(0.0, dtype)
    for _, _, ok in places:
        one = b.const(1.0, dtype) if ok is None else \
            b.op(f"arith.select {ok}, {b.const(1.0, dtype)}, {b.const(0.0, dtype)} : {t}")
        count = b.op(f"arith.addf {count}, {one} : {t}")
    return b.op(f"arith.maximumf {count}, {b.const(1.0, dtype)} : {t}")


@rule("avg_pool2d")
def _avg_pool2d(w: MlirWriter, op: Op, x: str) -> list[str]:
    """Each window's sum over the image over its divisor: a linalg.generic over the result."""
    _float_pool(op)
    xt, out = op.operands[0].type, op.results[0].type
    win = _Window.of(op, xt)
    init = w.empty(out, w.operand_sources(op))
    t = et(out.dtype)

    def body(b: Body, xs: list[str]) -> str:
        n, oy, ox, c = (b.index(d) for d in range(4))
        places = win.places(b, oy, ox)
        total = b.const(0.0, out.dtype)
        for y, xx, ok in places:
            v = b.op(f"tensor.extract {x}[{n}, {y}, {xx}, {c}] : {_tt(xt)}")
            if ok is not None:
                v = b.op(f"arith.select {ok}, {v}, {b.const(0.0, out.dtype)} : {t}")
            total = b.op(f"arith.addf {total}, {v} : {t}")
        return b.op(f"arith.divf {total}, {_window_divisor(b, op, win, places, out.dtype)} : {t}")

    return w.generic(4, [], [(init, out, [0, 1, 2, 3])], ["parallel"] * 4, body)


@rule("avg_pool2d_grad")
def _avg_pool2d_grad(w: MlirWriter, op: Op, dy: str) -> list[str]:
    """Each window's ``dy`` over its divisor added at each of its places in the image:
    ``scf.for`` loops over (n, oy, ox, c)."""
    dyt, out = op.operands[0].type, op.results[0].type
    if not out.dtype.is_float:
        raise UnsupportedVariant(f"{out.dtype.value} operand")
    win = _Window.of(op, out)
    sources = w.operand_sources(op)
    acc = w.filled(out, 0, sources)
    bounds = [w.size(d, sources) for d in dyt.shape]
    t = et(out.dtype)

    def body(b: Body, ivs: list[str], acc_: str) -> str:
        n, oy, ox, c = ivs
        places = win.places(b, oy, ox)
        g = b.op(f"tensor.extract {dy}[{n}, {oy}, {ox}, {c}] : {_tt(dyt)}")
        share = b.op(f"arith.divf {g}, {_window_divisor(b, op, win, places, out.dtype)} : {t}")
        for y, xx, ok in places:
            v = share if ok is None else b.op(f"arith.select {ok}, {share}, {b.const(0.0, out.dtype)} : {t}")
            acc_ = _accumulate(b, acc_, out, [n, y, xx, c], v)
        return acc_

    return [w.loop_nest(bounds, acc, out, body)]


def _inside(b: Body, i: str, size: Any) -> str:
    zero = b.op("arith.constant 0 : index")
    low = b.op(f"arith.cmpi sge, {i}, {zero} : index")
    high = b.op(f"arith.cmpi slt, {i}, {b.op(f'arith.constant {size} : index')} : index")
    return b.op(f"arith.andi {low}, {high} : i1")


def _both(b: Body, p: str | None, q: str | None) -> str | None:
    if p is None or q is None:
        return p or q
    return b.op(f"arith.andi {p}, {q} : i1")


def _clamped(b: Body, i: str, ok: str | None) -> str:
    """``i`` where ``ok``, else 0 (a place in the padding is never read)."""
    if ok is None:
        return i
    return b.op(f"arith.select {ok}, {i}, {b.op('arith.constant 0 : index')} : index")


# ---------------------------------------------------------------------------
# Random numbers: Philox-4x32-10 in i32 arithmetic, the bits of compiler/ops/random.py


def _split64(b: Body, x: str) -> tuple[str, str]:
    """An i64's (low, high) 32-bit words."""
    lo = b.op(f"arith.trunci {x} : i64 to i32")
    hi = b.op(f"arith.trunci {b.op(f'arith.shrui {x}, {b.const(32, DType.i64)} : i64')} : i64 to i32")
    return lo, hi


def _u32(b: Body, value: int) -> str:
    """A 32-bit constant given as unsigned (signless i32 holds the same bits)."""
    return b.const(value - (1 << 32) if value >= 1 << 31 else value, DType.i32)


def _philox(b: Body, counter: tuple[str, str, str, str], key: tuple[str, str]) -> tuple[str, ...]:
    """Philox-4x32-10 of four i32 words under two (``philox4x32``): ten unrolled rounds of two
    32x32->64-bit multiplications (``arith.mului_extended``)."""
    from compiler.ops.random import PHILOX_M0, PHILOX_M1, PHILOX_ROUNDS, PHILOX_W0, PHILOX_W1

    c0, c1, c2, c3 = counter
    k0, k1 = key
    m0, m1, w0, w1 = (_u32(b, v) for v in (PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1))
    for r in range(PHILOX_ROUNDS):
        if r:
            k0, k1 = b.op(f"arith.addi {k0}, {w0} : i32"), b.op(f"arith.addi {k1}, {w1} : i32")
        p0 = b.op(f"arith.mului_extended {m0}, {c0} : i32", results=2)
        p1 = b.op(f"arith.mului_extended {m1}, {c2} : i32", results=2)
        lo0, hi0, lo1, hi1 = f"{p0}#0", f"{p0}#1", f"{p1}#0", f"{p1}#1"
        new0 = b.op(f"arith.xori {b.op(f'arith.xori {hi1}, {c1} : i32')}, {k0} : i32")
        new2 = b.op(f"arith.xori {b.op(f'arith.xori {hi0}, {c3} : i32')}, {k1} : i32")
        c0, c1, c2, c3 = new0, lo1, new2, lo0
    return c0, c1, c2, c3


def _element_words(b: Body, key: str, counter: str, domain: int = 0) -> tuple[str, ...]:
    lo, hi = _split64(b, counter)
    return _philox(b, (lo, hi, b.const(0, DType.i32), b.const(domain, DType.i32)), _split64(b, key))


def _fold_in(b: Body, op: Op, dts: list[DType], key: str, data: str) -> str:
    from compiler.ops.random import FOLD_IN_DOMAIN

    words = _element_words(b, key, data, FOLD_IN_DOMAIN)
    lo = b.op(f"arith.extui {words[0]} : i32 to i64")
    hi = b.op(f"arith.extui {words[1]} : i32 to i64")
    return b.op(f"arith.ori {lo}, {b.op(f'arith.shli {hi}, {b.const(32, DType.i64)} : i64')} : i64")


def _unit(b: Body, words: tuple[str, ...], dtype: DType, first: int = 0) -> str:
    """Uniform [0, 1) from the words (``uniform_from_words``): f32 ``(w0 >> 8) * 2^-24``;
    f64 ``((w >> 11) * 2^32 + w') * 2^-53``."""
    if dtype is DType.f32:
        top = b.op(f"arith.shrui {words[first]}, {b.const(8, DType.i32)} : i32")
        return b.op(f"arith.mulf {b.op(f'arith.uitofp {top} : i32 to f32')}, {b.const(2.0 ** -24, dtype)} : f32")
    hi = b.op(f"arith.extui {b.op(f'arith.shrui {words[first]}, {b.const(11, DType.i32)} : i32')} : i32 to i64")
    lo = b.op(f"arith.extui {words[first + 1]} : i32 to i64")
    bits = b.op(f"arith.ori {b.op(f'arith.shli {hi}, {b.const(32, DType.i64)} : i64')}, {lo} : i64")
    return b.op(f"arith.mulf {b.op(f'arith.uitofp {bits} : i64 to f64')}, {b.const(2.0 ** -53, dtype)} : f64")


def _philox_uniform(b: Body, op: Op, dts: list[DType], key: str, counter: str) -> str:
    return _unit(b, _element_words(b, key, counter), op.attrs["dtype"])


elementwise("fold_in", _fold_in)
elementwise("philox_uniform", _philox_uniform)


def _philox_normal(b: Body, op: Op, dts: list[DType], key: str, counter: str) -> str:
    """Box-Muller over the words (``normal_from_words``): ``sqrt(-2 log u1) cos(2 pi u2)``
    with ``u1`` in (0, 1]; agrees with the reference to a few ulp (``log``, ``cos``)."""
    dtype = op.attrs["dtype"]
    t = et(dtype)
    words = _element_words(b, key, counter)
    if dtype is DType.f32:
        top = b.op(f"arith.shrui {words[0]}, {b.const(8, DType.i32)} : i32")
        shifted = b.op(f"arith.addf {b.op(f'arith.uitofp {top} : i32 to f32')}, {b.const(1.0, dtype)} : f32")
        u1 = b.op(f"arith.mulf {shifted}, {b.const(2.0 ** -24, dtype)} : f32")
        u2 = _unit(b, (words[1],), dtype)
    else:
        u1 = b.op(f"arith.addf {_unit(b, words, dtype)}, {b.const(2.0 ** -53, dtype)} : f64")
        u2 = _unit(b, words, dtype, first=2)
    log = b.op(f"math.log {u1} : {t}")
    radius = b.op(f"math.sqrt {b.op(f'arith.mulf {b.const(-2.0, dtype)}, {log} : {t}')} : {t}")
    angle = b.op(f"arith.mulf {b.const(2 * np.pi, dtype)}, {u2} : {t}")
    return b.op(f"arith.mulf {radius}, {b.op(f'math.cos {angle} : {t}')} : {t}")


elementwise("philox_normal", _philox_normal)


# ---------------------------------------------------------------------------
# More indexing: slice_update, take_along_axis, cumsum


@rule("slice_update")
def _slice_update(w: MlirWriter, op: Op, base: str, update: str) -> list[str]:
    """``base`` with ``update`` written over the slice (``tensor.insert_slice``)."""
    from compiler.ops.indexing import resolve_slice

    bt, ut = op.operands[0].type, op.operands[1].type
    spans = resolve_slice(bt.shape, op.attrs["start"], op.attrs["stop"], op.attrs["step"])
    if any(s.step < 0 for s in spans):
        raise UnsupportedVariant("a negative step")
    sources = w.operand_sources(op)
    sizes = ", ".join(str(d) if isinstance(d, int) else w.size(d, sources) for d in ut.shape)
    offsets = ", ".join(str(s.start) for s in spans)
    strides = ", ".join(str(s.step) for s in spans)
    return [w.assign(f"tensor.insert_slice {update} into {base}[{offsets}] [{sizes}] [{strides}] : "
                     f"{_tt(ut)} into {_tt(bt)}")]


@rule("take_along_axis")
def _take_along_axis(w: MlirWriter, op: Op, x: str, indices: str) -> list[str]:
    """numpy ``take_along_axis``: a linalg.generic over the result reading ``x`` at the index
    (``gather``'s index rule), the other dims broadcast."""
    xt, it, out = op.operands[0].type, op.operands[1].type, op.results[0].type
    axis = op.attrs["axis"] % xt.rank
    n = w.size(xt.shape[axis], w.operand_sources(op))
    init = w.empty(out, w.operand_sources(op))

    def body(b: Body, xs: list[str]) -> str:
        at = _checked_index(b, xs[0], it.dtype, n, "take_along_axis")
        coords = [at if d == axis else b.op("arith.constant 0 : index") if xt.shape[d] == 1 != out.shape[d]
                  else b.index(d) for d in range(xt.rank)]
        return b.op(f"tensor.extract {x}[{', '.join(coords)}] : {_tt(xt)}")

    return w.generic(out.rank, [(indices, it, broadcast_map(it, out))], [(init, out, list(range(out.rank)))],
                     ["parallel"] * out.rank, body)


@rule("cumsum")
def _cumsum(w: MlirWriter, op: Op, x: str) -> list[str]:
    """``out[.., i, ..] = sum x[.., j, ..]`` over ``j <= i`` (``<`` exclusive; ``>=``, ``>``
    reversed): a linalg.generic with one more loop ``j`` (a reduction) that adds ``x`` where
    the condition holds."""
    xt, out = op.operands[0].type, op.results[0].type
    axis = op.attrs["axis"] % xt.rank
    rank = xt.rank + 1                      # the result's loops, then j
    j = xt.rank
    xmap: list[str | int] = [j if d == axis else d for d in range(xt.rank)]
    init = w.filled(out, 0, w.operand_sources(op))
    reverse, exclusive = op.attrs["reverse"], op.attrs["exclusive"]
    pred = ("ugt" if exclusive else "uge") if reverse else ("ult" if exclusive else "ule")
    t = et(out.dtype)
    fl = out.dtype.is_float

    def body(b: Body, xs: list[str]) -> str:
        counts = b.op(f"arith.cmpi {pred}, {b.index(j)}, {b.index(axis)} : index")
        v = b.op(f"arith.select {counts}, {xs[0]}, {b.const(0, out.dtype)} : {t}")
        return b.op(f"arith.{'addf' if fl else 'addi'} {xs[1]}, {v} : {t}")

    iters = ["parallel"] * xt.rank + ["reduction"]
    return w.generic(rank, [(x, xt, xmap)], [(init, out, list(range(xt.rank)))], iters, body)


# ---------------------------------------------------------------------------
# Activations (float only): dl's definitions in compiler/ops/activations.py


def _elu_of(b: Body, t: str, dtype: DType, x: str, alpha: float) -> str:
    """``x if x > 0 else alpha expm1(x)``."""
    negative_side = b.op(f"arith.mulf {b.op(f'math.expm1 {x} : {t}')}, {b.const(alpha, dtype)} : {t}")
    return b.op(f"arith.select {b.op(f'arith.cmpf ogt, {x}, {b.const(0.0, dtype)} : {t}')}, {x}, "
                f"{negative_side} : {t}")


def _elu(b: Body, op: Op, dts: list[DType], x: str) -> str:
    return _elu_of(b, et(dts[0]), dts[0], x, op.attrs["alpha"])


def _selu(b: Body, op: Op, dts: list[DType], x: str) -> str:
    from compiler.ops.activations import SELU_ALPHA, SELU_SCALE

    t = et(dts[0])
    return b.op(f"arith.mulf {_elu_of(b, t, dts[0], x, SELU_ALPHA)}, {b.const(SELU_SCALE, dts[0])} : {t}")


def _leaky_relu(b: Body, op: Op, dts: list[DType], x: str) -> str:
    """``x if x >= 0 else alpha x``."""
    t = et(dts[0])
    scaled = b.op(f"arith.mulf {x}, {b.const(op.attrs['alpha'], dts[0])} : {t}")
    return b.op(f"arith.select {b.op(f'arith.cmpf oge, {x}, {b.const(0.0, dts[0])} : {t}')}, {x}, {scaled} : {t}")


def _silu(b: Body, op: Op, dts: list[DType], x: str) -> str:
    t = et(dts[0])
    return b.op(f"arith.mulf {x}, {_sigmoid(b, t, x)} : {t}")


def _softplus(b: Body, op: Op, dts: list[DType], x: str) -> str:
    """``log1p(exp(-|x|)) + max(x, 0)``: never overflows."""
    t = et(dts[0])
    magnitude = b.op(f"math.absf {x} : {t}")
    small = b.op(f"math.exp {b.op(f'arith.negf {magnitude} : {t}')} : {t}")
    tail = b.op(f"math.log1p {small} : {t}")
    return b.op(f"arith.addf {tail}, {b.op(f'arith.maximumf {x}, {b.const(0.0, dts[0])} : {t}')} : {t}")


def _hard_sigmoid(b: Body, op: Op, dts: list[DType], x: str) -> str:
    """``min(max(x + 3, 0), 6) / 6``."""
    dt, t = dts[0], et(dts[0])
    shifted = b.op(f"arith.addf {x}, {b.const(3.0, dt)} : {t}")
    low = b.op(f"arith.maximumf {shifted}, {b.const(0.0, dt)} : {t}")
    relu6 = b.op(f"arith.minimumf {low}, {b.const(6.0, dt)} : {t}")
    return b.op(f"arith.divf {relu6}, {b.const(6.0, dt)} : {t}")


def _gelu(b: Body, op: Op, dts: list[DType], x: str) -> str:
    """``x/2 (1 + erf(x / sqrt 2))``; approximate: ``x sigmoid(2 K (x + C x^3))``."""
    from compiler.ops.activations import GELU_TANH_C, GELU_TANH_K

    dt, t = dts[0], et(dts[0])
    if op.attrs["approximate"]:
        cube = b.op(f"arith.mulf {b.op(f'arith.mulf {x}, {x} : {t}')}, {x} : {t}")
        inner = b.op(f"arith.addf {x}, {b.op(f'arith.mulf {cube}, {b.const(GELU_TANH_C, dt)} : {t}')} : {t}")
        inner = b.op(f"arith.mulf {inner}, {b.const(GELU_TANH_K, dt)} : {t}")
        doubled = b.op(f"arith.mulf {inner}, {b.const(2.0, dt)} : {t}")
        return b.op(f"arith.mulf {x}, {_sigmoid(b, t, doubled)} : {t}")
    scaled = b.op(f"arith.mulf {x}, {b.const(1 / np.sqrt(2.0), dt)} : {t}")
    erf = b.op(f"arith.addf {b.op(f'math.erf {scaled} : {t}')}, {b.const(1.0, dt)} : {t}")
    return b.op(f"arith.mulf {b.op(f'arith.mulf {x}, {b.const(0.5, dt)} : {t}')}, {erf} : {t}")


def _clip(b: Body, op: Op, dts: list[DType], x: str, lo: str, hi: str) -> str:
    """``min(max(x, lo), hi)`` (nan propagates, as numpy's)."""
    dt, t = dts[0], et(dts[0])
    big = "arith.maximumf" if dt.is_float else "arith.maxui" if _unsigned(dt) else "arith.maxsi"
    small = "arith.minimumf" if dt.is_float else "arith.minui" if _unsigned(dt) else "arith.minsi"
    return b.op(f"{small} {b.op(f'{big} {x}, {lo} : {t}')}, {hi} : {t}")


elementwise("elu", _elu)
elementwise("selu", _selu)
elementwise("leaky_relu", _leaky_relu)
elementwise("silu", _silu)
elementwise("softplus", _softplus)
elementwise("hard_sigmoid", _hard_sigmoid)
elementwise("gelu", _gelu)
elementwise("clip", _clip)


# ---------------------------------------------------------------------------
# Floor division and remainder: numpy's sign rules (floor_divide, remainder)


def _signed_zero(b: Body, s: str, dt: DType) -> str:
    """``copysign(0, s)`` from ``s``'s sign bit (math.copysign has no lowering in the pipeline)."""
    bits = DType.i32 if dt.itemsize == 4 else DType.i64
    if dt.itemsize not in (4, 8):
        raise UnsupportedVariant(f"{dt.value} operands")
    as_int = b.op(f"arith.bitcast {s} : {et(dt)} to {et(bits)}")
    negative = b.op(f"arith.cmpi slt, {as_int}, {b.const(0, bits)} : {et(bits)}")
    return b.op(f"arith.select {negative}, {b.const(-0.0, dt)}, {b.const(0.0, dt)} : {et(dt)}")


def _float_divmod(b: Body, x: str, y: str, dt: DType) -> tuple[str, str]:
    """numpy's ``npy_divmod`` for floats: ``(floor_divide, remainder)``."""
    t = et(dt)
    zero, one = b.const(0.0, dt), b.const(1.0, dt)

    def cmp(pred: str, p: str, q: str) -> str:
        return b.op(f"arith.cmpf {pred}, {p}, {q} : {t}")

    def sel(c: str, p: str, q: str) -> str:
        return b.op(f"arith.select {c}, {p}, {q} : {t}")

    mod = b.op(f"arith.remf {x}, {y} : {t}")                         # fmod: the sign of x
    quotient = b.op(f"arith.divf {x}, {y} : {t}")
    div = b.op(f"arith.divf {b.op(f'arith.subf {x}, {mod} : {t}')}, {y} : {t}")
    signs_differ = b.op(f"arith.xori {cmp('olt', y, zero)}, {cmp('olt', mod, zero)} : i1")
    adjust = b.op(f"arith.andi {cmp('une', mod, zero)}, {signs_differ} : i1")
    mod = sel(adjust, b.op(f"arith.addf {mod}, {y} : {t}"), mod)
    div = sel(adjust, b.op(f"arith.subf {div}, {one} : {t}"), div)
    mod = sel(cmp("oeq", mod, zero), _signed_zero(b, y, dt), mod)
    floored = b.op(f"math.floor {div} : {t}")
    up = cmp("ogt", b.op(f"arith.subf {div}, {floored} : {t}"), b.const(0.5, dt))
    floored = sel(up, b.op(f"arith.addf {floored}, {one} : {t}"), floored)
    floored = sel(cmp("oeq", div, zero), _signed_zero(b, quotient, dt), floored)
    by_zero = cmp("oeq", y, zero)
    return sel(by_zero, quotient, floored), mod                       # fmod(x, 0) is nan already


def _int_divmod(b: Body, x: str, y: str, dt: DType) -> tuple[str, str]:
    """numpy's integer ``(floor_divide, remainder)``: ``x // 0 = 0``, ``x % 0 = 0``,
    ``MIN // -1 = MIN`` (wraps); never a division that traps."""
    t = et(dt)
    zero, one, minus_one = b.const(0, dt), b.const(1, dt), b.const(-1, dt)
    by_zero = b.op(f"arith.cmpi eq, {y}, {zero} : {t}")
    if _unsigned(dt):
        safe = b.op(f"arith.select {by_zero}, {one}, {y} : {t}")
        q = b.op(f"arith.divui {x}, {safe} : {t}")
        r = b.op(f"arith.remui {x}, {safe} : {t}")
        return (b.op(f"arith.select {by_zero}, {zero}, {q} : {t}"), b.op(f"arith.select {by_zero}, {zero}, {r} : {t}"))
    by_minus_one = b.op(f"arith.cmpi eq, {y}, {minus_one} : {t}")
    safe = b.op(f"arith.select {b.op(f'arith.ori {by_zero}, {by_minus_one} : i1')}, {one}, {y} : {t}")
    q = b.op(f"arith.floordivsi {x}, {safe} : {t}")
    q = b.op(f"arith.select {by_minus_one}, {b.op(f'arith.subi {zero}, {x} : {t}')}, {q} : {t}")
    q = b.op(f"arith.select {by_zero}, {zero}, {q} : {t}")
    r = b.op(f"arith.remsi {x}, {safe} : {t}")                       # the sign of x; 0 for y in {0, -1}
    signs_differ = b.op(f"arith.xori {b.op(f'arith.cmpi slt, {r}, {zero} : {t}')}, "
                        f"{b.op(f'arith.cmpi slt, {y}, {zero} : {t}')} : i1")
    adjust = b.op(f"arith.andi {b.op(f'arith.cmpi ne, {r}, {zero} : {t}')}, {signs_differ} : i1")
    r = b.op(f"arith.select {adjust}, {b.op(f'arith.addi {r}, {y} : {t}')}, {r} : {t}")
    return q, r


def _divmod(part: int) -> ScalarRule:
    def scalar(b: Body, op: Op, dts: list[DType], x: str, y: str) -> str:
        split = _float_divmod if dts[0].is_float else _int_divmod
        return split(b, x, y, dts[0])[part]
    return scalar


elementwise("floor_div", _divmod(0))
elementwise("mod", _divmod(1))


@rule("scatter_add_along_axis")
def _scatter_add_along_axis(w: MlirWriter, op: Op, base: str, indices: str, updates: str) -> list[str]:
    """Each element of ``updates`` added at its ``take_along_axis`` position: ``scf.for``
    loops over ``updates`` in row-major order (broadcast dims of ``base`` and ``indices``
    read index 0)."""
    bt, it, ut = (v.type for v in op.operands)
    axis = op.attrs["axis"] % bt.rank
    sources = w.operand_sources(op)
    n = w.size(bt.shape[axis], sources)
    bounds = [w.size(d, sources) for d in ut.shape]

    def body(b: Body, ivs: list[str], acc: str) -> str:
        def pinned(t: TensorType, d: int) -> str:
            return b.op("arith.constant 0 : index") if t.shape[d] == 1 != ut.shape[d] else ivs[d]

        raw = b.op(f"tensor.extract {indices}[{', '.join(pinned(it, d) for d in range(it.rank))}] : {_tt(it)}")
        at = _checked_index(b, raw, it.dtype, n, "scatter_add_along_axis")
        coords = [at if d == axis else pinned(bt, d) for d in range(bt.rank)]
        value = b.op(f"tensor.extract {updates}[{', '.join(ivs)}] : {_tt(ut)}")
        return _accumulate(b, acc, bt, coords, value)

    return [w.loop_nest(bounds, base, bt, body)]


# ---------------------------------------------------------------------------
# top_k: each element's place in a stable descending sort, then a scatter to the first k


def _comes_before(b: Body, xi: str, xj: str, i: str, j: str, dtype: DType) -> str:
    """Whether element ``i`` sorts before element ``j``: larger (a nan larger than all), or
    equal (``-0.0 == 0.0``, nan == nan) and earlier (``descending_order``)."""
    t = et(dtype)
    earlier = b.op(f"arith.cmpi ult, {i}, {j} : index")
    if dtype.is_float:
        nan_i, nan_j = (b.op(f"arith.cmpf uno, {v}, {v} : {t}") for v in (xi, xj))
        not_nan_j = b.op(f"arith.xori {nan_j}, {b.const(True, DType.bool)} : i1")
        larger = b.op(f"arith.ori {b.op(f'arith.andi {nan_i}, {not_nan_j} : i1')}, "
                      f"{b.op(f'arith.cmpf ogt, {xi}, {xj} : {t}')} : i1")
        equal = b.op(f"arith.ori {b.op(f'arith.andi {nan_i}, {nan_j} : i1')}, "
                     f"{b.op(f'arith.cmpf oeq, {xi}, {xj} : {t}')} : i1")
    else:
        larger = b.op(f"arith.cmpi {'ugt' if _unsigned(dtype) else 'sgt'}, {xi}, {xj} : {t}")
        equal = b.op(f"arith.cmpi eq, {xi}, {xj} : {t}")
    return b.op(f"arith.ori {larger}, {b.op(f'arith.andi {equal}, {earlier} : i1')} : i1")


@rule("top_k")
def _top_k(w: MlirWriter, op: Op, x: str) -> list[str]:
    """The ``k`` first of a stable descending sort along the last axis: a linalg.generic counts
    the elements that sort before each one (its place), then ``scf.for`` loops write each
    element placed below ``k`` (values and i64 indices)."""
    xt = op.operands[0].type
    values_t, indices_t = op.results[0].type, op.results[1].type
    last = xt.rank - 1
    k = op.attrs["k"]
    sources = w.operand_sources(op)
    places_t = xt.with_dtype(DType.i64)
    places = w.filled(places_t, 0, sources)
    batch = list(range(last))

    def count(b: Body, xs: list[str]) -> str:
        i, j = b.index(xt.rank), b.index(last)
        before = _comes_before(b, xs[0], xs[1], i, j, xt.dtype)
        return b.op(f"arith.addi {xs[2]}, {b.op(f'arith.extui {before} : i1 to i64')} : i64")

    places = w.generic(xt.rank + 1, [(x, xt, [*batch, xt.rank]), (x, xt, [*batch, last])],
                       [(places, places_t, [*batch, last])], ["parallel"] * xt.rank + ["reduction"], count)[0]
    bounds = [w.size(d, sources) for d in xt.shape]

    def scatter(out_t: TensorType, value: Callable[[Body, list[str]], str]) -> str:
        def body(b: Body, ivs: list[str], acc: str) -> str:
            place = b.op(f"tensor.extract {places}[{', '.join(ivs)}] : {_tt(places_t)}")
            kept = b.op(f"arith.cmpi slt, {place}, {b.const(k, DType.i64)} : i64")
            at = b.op(f"arith.index_cast {b.op(f'arith.select {kept}, {place}, {b.const(0, DType.i64)} : i64')} "
                      f": i64 to index")
            coords = ", ".join([*ivs[:last], at])
            old = b.op(f"tensor.extract {acc}[{coords}] : {_tt(out_t)}")
            new = b.op(f"arith.select {kept}, {value(b, ivs)}, {old} : {et(out_t.dtype)}")
            return b.op(f"tensor.insert {new} into {acc}[{coords}] : {_tt(out_t)}")
        return w.loop_nest(bounds, w.filled(out_t, 0, sources), out_t, body)

    values = scatter(values_t, lambda b, ivs: b.op(f"tensor.extract {x}[{', '.join(ivs)}] : {_tt(xt)}"))
    indices = scatter(indices_t, lambda b, ivs: b.op(f"arith.index_cast {ivs[last]} : index to i64"))
    return [values, indices]
