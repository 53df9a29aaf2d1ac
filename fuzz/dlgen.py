"""Random ``.dl`` programs that compile: the grammar-aware half of the ``dl_source`` target.

A program is one to three functions (elementwise, reduction, matmul, layout
and composite ops over static and symbolic shapes, calls of earlier
functions), gradient functions of some of them, and sometimes a ``model``
block.  Each ``let`` applies one op; whether an application is valid is
asked of the op table itself (``OpDef.infer``, the compiler's own shape
rule), so generated programs compile unless the frontend disagrees with its
own op table -- which is a finding in itself.

**Exactness.** Native code and the interpreter may round differently (other
summation orders, vector math), which is harmless for continuous ops but
flips the result of a comparison, ``sign``, ``argmax`` or a float -> int cast
whose operand sits on a rounding boundary.  So the generator tracks, for each
value, a bound ``|v| < 2**hi`` and a grid ``v in 2**lo * Z`` valid for the
inputs the oracle feeds (multiples of 1/4 in [-4, 4], ints in [-8, 8],
symbolic dims at most 8): while ``hi - lo`` fits the mantissa, every correct
implementation computes the value bit for bit, and only such *exact* values
feed discontinuous ops.  Transcendental ops, division and means make values
inexact.  A function whose values are all exact has exact gradients too
(:attr:`Function.all_exact`); the oracle trusts only those gradients.
Integer values stay exact by construction: an op that could overflow is not
generated.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from compiler.ir.types import Dim, DType, TensorType
from compiler.ops.base import ShapeError, get_op, normalize_attrs

F32, F64, I32, I64, BOOL = DType.f32, DType.f64, DType.i32, DType.i64, DType.bool
FLOATS = (F32, F64)
MANTISSA = {F32: 24, F64: 53}
INT_LIMIT = {I32: 30, I64: 62}           # |v| < 2**limit: far from overflow
INPUT_HI, INPUT_LO = 3, -2               # float inputs: multiples of 1/4 in [-4, 4]
INT_INPUT_HI = 4                         # int inputs in [-8, 8]
SYMBOL_LOG2 = 3                          # symbolic dims are at most 8 when the oracle runs
SYMBOLS = ("N", "M", "B")

EXACT_UNARY = ("abs", "neg", "relu", "square")
INEXACT_UNARY = ("exp", "log", "sqrt", "tanh", "sigmoid", "reciprocal")
COMPARISONS = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}
ARITHMETIC = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow"}
REDUCTIONS = ("sum", "max", "min", "mean")
LOSSES = ("mse", "mae", "binary_crossentropy", "categorical_crossentropy")
DYADIC_LITERALS = ("0.5", "2.0", "1.5", "-1.0", "0.25", "3.0", "0.0", "-2.5", "1.0",
                   "64.0", "-128.0", "4096.0")      # the large ones saturate softmax and losses
ODD_LITERALS = ("0.1", "1e-3", "1e30", "-1e-30", "3.4e38", "1e-45")
INT_LITERALS = ("0", "1", "2", "3", "-1", "7")


@dataclass(eq=False)
class Val:
    """A value of the program being generated: how to name it, its type and its bounds."""

    ref: str                  # a let name, a parameter, or "(expr)" used once
    type: TensorType
    exact: bool = True        # see the module docstring
    hi: int = INPUT_HI        # |v| < 2**hi (meaningful while exact, and always for ints)
    lo: int = INPUT_LO        # v is a multiple of 2**lo
    pending: bool = False     # an unnamed expression: used at most once

    @property
    def dtype(self) -> DType:
        return self.type.dtype


@dataclass
class Function:
    """A generated function: its name, parameters and results (for calls and gradients)."""

    name: str
    params: list[Val]
    results: list[Val]
    all_exact: bool


@dataclass
class Program:
    """A generated program and what the oracle may trust in it."""

    text: str
    trusted: set[str] = field(default_factory=set)   # functions whose discontinuities are exact


def infer(op: str, types: list[TensorType], attrs: dict | None = None) -> TensorType | None:
    """The op table's result type for ``op`` on ``types``, or None when the rule rejects it."""
    opdef = get_op(op)
    assert opdef is not None, op
    try:
        result = opdef.infer(*types, **normalize_attrs(opdef, attrs or {}))
    except ShapeError:
        return None
    return result if isinstance(result, TensorType) else None


def settle(dtype: DType, exact: bool, hi: int, lo: int) -> tuple[bool, int, int] | None:
    """Bounds of a new value of ``dtype``: exactness lost when ``hi - lo`` outgrows the
    mantissa; None for an integer that could overflow (the op is not generated)."""
    if dtype is BOOL:
        return True, 1, 0
    if dtype in INT_LIMIT:
        return None if hi > INT_LIMIT[dtype] else (True, hi, 0)
    if exact and hi - lo > MANTISSA[dtype]:
        exact = False
    return exact, hi, lo


def log2_count(dims: list[Dim]) -> int:
    """ceil(log2) of the largest element count of ``dims`` (a symbol counts as 8)."""
    total = sum(SYMBOL_LOG2 if isinstance(d, str) else math.ceil(math.log2(max(d, 1))) for d in dims)
    return total


def literal_bounds(text: str) -> tuple[bool, int, int]:
    """(exact, hi, lo) of a numeric literal: exact when it is a small dyadic number."""
    value = float(text)
    if value == 0:
        return True, 0, 0
    hi = math.floor(math.log2(abs(value))) + 1
    lo = hi - 1
    while lo > -30 and value / 2.0 ** lo != int(value / 2.0 ** lo):
        lo -= 1
    exact = value / 2.0 ** lo == int(value / 2.0 ** lo) and hi - lo <= 24 and abs(value) < 2 ** 20
    return exact, hi, lo


class Body:
    """The statements of one function (or model) body, built one op at a time."""

    def __init__(self, rng: random.Random, pool: list[Val], functions: list[Function]):
        self.rng = rng
        self.pool = list(pool)
        self.functions = functions
        self.lines: list[str] = []
        self.count = 0
        self.all_exact = all(v.exact for v in pool)
        self.used: set[str] = set()
        self.steps: list[Callable[[], bool]] = [
            self.unary, self.unary, self.binary, self.binary, self.binary, self.literal_op,
            self.compare, self.reduce, self.reduce, self.matmul, self.layout, self.cast,
            self.select, self.composite, self.loss, self.dim_size, self.source, self.call]

    # -- helpers -----------------------------------------------------------------------

    def pick(self, accept: Callable[[Val], bool] = lambda v: True) -> Val | None:
        """A value from the pool, preferring recent and unused ones."""
        candidates = [v for v in self.pool if accept(v)]
        if not candidates:
            return None
        fresh = [v for v in candidates if v.ref not in self.used]
        if fresh and self.rng.random() < 0.7:
            candidates = fresh
        if self.rng.random() < 0.5:
            return candidates[-1]
        return self.rng.choice(candidates)

    def use(self, v: Val) -> str:
        """The text naming ``v`` as an operand (an unnamed expression leaves the pool)."""
        self.used.add(v.ref)
        if v.pending and any(v is w for w in self.pool):
            self.pool.remove(v)
        return v.ref

    def add(self, expr: str, t: TensorType, bounds: tuple[bool, int, int] | None) -> bool:
        """Bind ``expr`` (a let, or sometimes an unnamed expression for the next op)."""
        if bounds is None:
            return False
        exact, hi, lo = bounds
        self.all_exact = self.all_exact and exact
        if self.rng.random() < 0.2:
            self.pool.append(Val(f"({expr})", t, exact, hi, lo, pending=True))
            return True
        name = f"v{self.count}"
        self.count += 1
        self.lines.append(f"let {name} = {expr}")
        self.pool.append(Val(name, t, exact, hi, lo))
        return True

    def step(self) -> None:
        """Apply one random op (a few tries), else a plain unary op."""
        for _ in range(8):
            if self.rng.choice(self.steps)():
                return
        self.unary()

    def flush(self) -> None:
        """Bind unnamed expressions still in the pool, so results can name them."""
        for v in [v for v in self.pool if v.pending]:
            self.pool.remove(v)
            name = f"v{self.count}"
            self.count += 1
            self.lines.append(f"let {name} = {v.ref[1:-1]}")
            self.pool.append(Val(name, v.type, v.exact, v.hi, v.lo))

    # -- op families -------------------------------------------------------------------

    def unary(self) -> bool:
        v = self.pick(lambda v: v.dtype is not BOOL)
        if v is None:
            v = self.pick()
            if v is None:
                return False
            return self.add(f"logical_not({self.use(v)})", v.type, (True, 1, 0))
        ops = list(EXACT_UNARY) + (list(INEXACT_UNARY) if v.dtype in FLOATS else [])
        if v.exact:
            ops.append("sign")
        op = self.rng.choice(ops)
        t = infer(op, [v.type])
        if t is None:
            return False
        if op == "sign":
            bounds = settle(t.dtype, True, 1, 0)
        elif op == "square":
            bounds = settle(t.dtype, v.exact, 2 * v.hi, 2 * v.lo)
        elif op in EXACT_UNARY:
            bounds = settle(t.dtype, v.exact, v.hi, v.lo)
        else:
            bounds = (False, v.hi, v.lo)
        text = f"-{self.use(v)}" if op == "neg" and self.rng.random() < 0.5 else f"{op}({self.use(v)})"
        return self.add(text, t, bounds)

    def partner(self, v: Val) -> Val | None:
        """Another value broadcast-compatible with ``v`` (same dtype)."""
        return self.pick(lambda w: w.dtype is v.dtype and w is not v
                         and infer("add", [v.type, w.type]) is not None)

    def binary(self) -> bool:
        v = self.pick(lambda v: v.dtype is not BOOL)
        if v is None:
            return self.logical()
        w = self.partner(v)
        if w is None:
            return False
        ops = ["+", "-", "*", "maximum", "minimum"] + (["/", "**"] if v.dtype in FLOATS else [])
        op = self.rng.choice(ops)
        name = ARITHMETIC.get(op, op)
        t = infer(name, [v.type, w.type])
        if t is None:
            return False
        exact = v.exact and w.exact
        if name in ("add", "sub"):
            bounds = settle(t.dtype, exact, max(v.hi, w.hi) + 1, min(v.lo, w.lo))
        elif name == "mul":
            bounds = settle(t.dtype, exact, v.hi + w.hi, v.lo + w.lo)
        elif name in ("maximum", "minimum"):
            bounds = settle(t.dtype, exact, max(v.hi, w.hi), min(v.lo, w.lo))
        else:
            bounds = (False, 0, 0)
        a, b = self.use(v), self.use(w)
        text = f"{a} {op} {b}" if op in ARITHMETIC else f"{op}({a}, {b})"
        return self.add(text, t, bounds)

    def logical(self) -> bool:
        v = self.pick(lambda v: v.dtype is BOOL)
        if v is None:
            return False
        w = self.partner(v)
        other = self.use(w) if w is not None else self.rng.choice(["true", "false"])
        t = infer("logical_and", [v.type, w.type if w is not None else TensorType(BOOL, ())])
        if t is None:
            return False
        op = self.rng.choice(["logical_and", "logical_or"])
        return self.add(f"{op}({self.use(v)}, {other})", t, (True, 1, 0))

    def literal_op(self) -> bool:
        """An op with a number: ``v * 2.5``, ``1 - v``, ``v ** 2.0``, ``maximum(v, 0.0)``."""
        v = self.pick(lambda v: v.dtype is not BOOL)
        if v is None:
            return False
        floats = v.dtype in FLOATS
        pool = DYADIC_LITERALS if floats else INT_LITERALS
        text = self.rng.choice(pool if self.rng.random() < 0.9 or not floats else ODD_LITERALS)
        exact, hi, lo = literal_bounds(text)
        ops = ["+", "-", "*", "maximum", "minimum"] + (["/", "**"] if floats else [])
        op = self.rng.choice(ops)
        name = ARITHMETIC.get(op, op)
        t = v.type
        both = v.exact and exact
        if name in ("add", "sub"):
            bounds = settle(t.dtype, both, max(v.hi, hi) + 1, min(v.lo, lo))
        elif name == "mul":
            bounds = settle(t.dtype, both, v.hi + hi, v.lo + lo)
        elif name in ("maximum", "minimum"):
            bounds = settle(t.dtype, both, max(v.hi, hi), min(v.lo, lo))
        else:
            bounds = (False, 0, 0)
        ref = self.use(v)
        if op in ARITHMETIC:
            expr = f"{ref} {op} {text}" if self.rng.random() < 0.7 else f"{text} {op} {ref}"
        else:
            expr = f"{op}({ref}, {text})"
        return self.add(expr, t, bounds)

    def compare(self) -> bool:
        v = self.pick(lambda v: v.exact and v.dtype is not BOOL)
        if v is None:
            return False
        w = self.partner(v)
        if w is None or not w.exact:
            return False
        op = self.rng.choice(list(COMPARISONS))
        t = infer(COMPARISONS[op], [v.type, w.type])
        if t is None:
            return False
        return self.add(f"{self.use(v)} {op} {self.use(w)}", t, (True, 1, 0))

    def axes_text(self, rank: int) -> tuple[list[int], str]:
        """Random axes of a rank-``rank`` tensor and how the call names them."""
        if rank == 0 or self.rng.random() < 0.25:
            return list(range(rank)), ""
        axes = sorted(self.rng.sample(range(rank), self.rng.randint(1, rank)))
        shown = [a - rank if self.rng.random() < 0.2 else a for a in axes]
        keep = self.rng.random() < 0.3
        style = self.rng.randrange(3)
        if style == 0 and len(axes) == 1:
            text = f", axis={shown[0]}"
        elif style == 1:
            text = f", {shown}" + (", true" if keep else "")
        else:
            text = f", axes={shown}"
        if keep and style != 1:
            text += ", keepdims=true"
        return axes, text

    def reduce(self) -> bool:
        v = self.pick(lambda v: v.dtype is not BOOL)
        if v is None:
            return False
        op = self.rng.choice(REDUCTIONS + (("argmax",) if v.exact and v.type.rank else ()))
        if op == "argmax":
            axis = self.rng.randrange(-v.type.rank, v.type.rank)
            keep = self.rng.random() < 0.3
            t = infer(op, [v.type], {"axis": axis, "keepdims": keep})
            if t is None:
                return False
            text = f"argmax({self.use(v)}, axis={axis}" + (", keepdims=true)" if keep else ")")
            return self.add(text, t, settle(t.dtype, True, SYMBOL_LOG2 + 1, 0))
        axes, text = self.axes_text(v.type.rank)
        keep = "keepdims=true" in text or text.endswith(", true")
        t = infer(op, [v.type], {"axes": axes, "keepdims": keep})
        if t is None:
            return False
        reduced = [v.type.shape[a] for a in axes]
        if op == "sum":
            bounds = settle(t.dtype, v.exact, v.hi + log2_count(reduced), v.lo)
        elif op == "mean":
            bounds = (False, v.hi, v.lo)
        else:
            bounds = settle(t.dtype, v.exact, v.hi, v.lo)
        return self.add(f"{op}({self.use(v)}{text})", t, bounds)

    def matmul(self) -> bool:
        v = self.pick(lambda v: v.dtype is not BOOL and v.type.rank >= 1)
        if v is None:
            return False
        w = self.pick(lambda w: w.dtype is v.dtype and w.type.rank >= 1
                      and infer("matmul", [v.type, w.type]) is not None)
        if w is None:
            return False
        t = infer("matmul", [v.type, w.type])
        assert t is not None
        k = v.type.shape[-1]
        bounds = settle(t.dtype, v.exact and w.exact, v.hi + w.hi + log2_count([k]), v.lo + w.lo)
        a, b = self.use(v), self.use(w)
        text = f"{a} @ {b}" if self.rng.random() < 0.8 else f"matmul({a}, {b})"
        return self.add(text, t, bounds)

    def layout(self) -> bool:
        v = self.pick()
        if v is None:
            return False
        kind = self.rng.randrange(3)
        shape = list(v.type.shape)
        if kind == 0 and shape:
            perm = list(range(len(shape)))
            self.rng.shuffle(perm)
            attrs: dict = {"perm": perm} if self.rng.random() < 0.7 else {}
            t = infer("transpose", [v.type], attrs)
            text = f"transpose({{}}, perm={perm})" if attrs else "transpose({})"
        elif kind == 1:
            new = self.reshaped(shape)
            t = infer("reshape", [v.type], {"shape": new})
            text = f"reshape({{}}, {dims_text(new)})"
        else:
            new = self.broadcast_shape(shape)
            t = infer("broadcast_to", [v.type], {"shape": new})
            text = f"broadcast_to({{}}, {dims_text(new)})"
        if t is None:
            return False
        return self.add(text.format(self.use(v)), t, (v.exact, v.hi, v.lo))

    def reshaped(self, shape: list[Dim]) -> list[Dim]:
        """The same symbols and static product in a new arrangement."""
        symbols = [d for d in shape if isinstance(d, str)]
        product = math.prod(d for d in shape if isinstance(d, int))
        factors: list[Dim] = []
        for p in (2, 3, 5):
            while product % p == 0 and product > 1:
                product //= p
                factors.append(p)
        if product > 1:
            factors.append(product)
        merged: list[Dim] = []
        for f in factors:
            if merged and self.rng.random() < 0.5:
                merged[-1] = int(merged[-1]) * int(f)
            else:
                merged.append(f)
        if self.rng.random() < 0.3:
            merged.append(1)
        out = symbols + merged
        self.rng.shuffle(out)
        return out

    def broadcast_shape(self, shape: list[Dim]) -> list[Dim]:
        """``shape`` with some 1s stretched and new leading dims."""
        dims = [d for d in self.known_dims() if d != 1] or [2]
        out = [self.rng.choice(dims) if d == 1 and self.rng.random() < 0.6 else d for d in shape]
        lead = [self.rng.choice(dims) for _ in range(self.rng.randrange(3))]
        return lead + out

    def known_dims(self) -> list[Dim]:
        return sorted({d for v in self.pool for d in v.type.shape}, key=str)

    def cast(self) -> bool:
        v = self.pick()
        if v is None:
            return False
        targets = [d for d in (F32, F64, I32, I64, BOOL) if d is not v.dtype]
        if v.dtype in FLOATS and not v.exact:
            targets = [d for d in targets if d in FLOATS]
        dtype = self.rng.choice(targets)
        t = infer("cast", [v.type], {"dtype": dtype})
        if t is None:
            return False
        if dtype in FLOATS and v.dtype in FLOATS and v.exact and v.hi - v.lo > MANTISSA[dtype]:
            bounds: tuple[bool, int, int] | None = (False, v.hi, v.lo)
        else:
            bounds = settle(dtype, v.exact, v.hi, max(v.lo, 0) if dtype in INT_LIMIT else v.lo)
        return self.add(f"cast({self.use(v)}, {dtype.dsl_name})", t, bounds)

    def select(self) -> bool:
        c = self.pick(lambda v: v.dtype is BOOL)
        v = self.pick(lambda v: v.dtype is not BOOL)
        if c is None or v is None:
            return False
        w = self.partner(v)
        other_t = w.type if w is not None else TensorType(v.dtype, ())
        t = infer("select", [c.type, v.type, other_t])
        if t is None:
            return False
        if w is not None:
            other, exact, hi, lo = self.use(w), w.exact, w.hi, w.lo
        else:
            other, (exact, hi, lo) = "0.0" if v.dtype in FLOATS else "0", (True, 0, 0)
        bounds = settle(t.dtype, v.exact and exact, max(v.hi, hi), min(v.lo, lo))
        return self.add(f"select({self.use(c)}, {self.use(v)}, {other})", t, bounds)

    def composite(self) -> bool:
        if self.rng.random() < 0.3:
            v = self.pick(lambda v: v.dtype in (I32, I64))
            if v is None:
                return False
            depth = self.rng.randint(1, 5)
            t = infer("one_hot", [v.type], {"depth": depth})
            if t is None:
                return False
            return self.add(f"one_hot({self.use(v)}, depth={depth})", t, (True, 1, 0))
        v = self.pick(lambda v: v.dtype in FLOATS and v.type.rank >= 1)
        if v is None:
            return False
        op = self.rng.choice(["softmax", "log_softmax"])
        axis = self.rng.randrange(-v.type.rank, v.type.rank)
        t = infer(op, [v.type], {"axis": axis})
        if t is None:
            return False
        text = f"{op}({self.use(v)})" if axis == -1 and self.rng.random() < 0.5 else f"{op}({self.use(v)}, axis={axis})"
        return self.add(text, t, (False, 0, 0))

    def loss(self) -> bool:
        v = self.pick(lambda v: v.dtype in FLOATS)
        if v is None:
            return False
        if self.rng.random() < 0.3 and v.type.rank >= 1:
            labels = self.pick(lambda w: w.dtype in (I32, I64) and
                               infer("sparse_categorical_crossentropy", [v.type, w.type]) is not None)
            if labels is None:
                return False
            op, other = "sparse_categorical_crossentropy", labels
        else:
            op = self.rng.choice(LOSSES)
            found = self.pick(lambda w: w is not v and infer(op, [v.type, w.type]) is not None)
            if found is None:
                return False
            other = found
        t = infer(op, [v.type, other.type])
        if t is None:
            return False
        logits = ", from_logits=true" if op != "mse" and op != "mae" and self.rng.random() < 0.5 else ""
        return self.add(f"{op}({self.use(v)}, {self.use(other)}{logits})", t, (False, 0, 0))

    def dim_size(self) -> bool:
        v = self.pick(lambda v: v.type.rank >= 1)
        if v is None:
            return False
        axis = self.rng.randrange(v.type.rank)
        dtype = self.rng.choice([I64, I32, F32])
        t = infer("dim_size", [v.type], {"axis": axis, "dtype": dtype})
        if t is None:
            return False
        text = f"dim_size({self.use(v)}, axis={axis}" + ("" if dtype is I64 else f", dtype={dtype.dsl_name}") + ")"
        return self.add(text, t, settle(dtype, True, SYMBOL_LOG2 + 3, 0))

    def source(self) -> bool:
        """``iota`` or ``constant`` over known dims."""
        dims = self.known_dims() or [3]
        shape = [self.rng.choice(dims) for _ in range(self.rng.randint(1, 2))]
        dtype = self.rng.choice([F32, I32, F64])
        if self.rng.random() < 0.5:
            axis = self.rng.randrange(len(shape))
            t = infer("iota", [], {"dtype": dtype, "shape": shape, "axis": axis})
            text = f"iota({dtype.dsl_name}, {dims_text(shape)}, {axis})"
            bounds = settle(dtype, True, SYMBOL_LOG2 + 3, 0)
        else:
            value = self.rng.choice(DYADIC_LITERALS if dtype in FLOATS else INT_LITERALS)
            t = infer("constant", [], {"value": float(value) if dtype in FLOATS else int(value),
                                        "dtype": dtype, "shape": shape})
            text = f"constant({value}, {dtype.dsl_name}, {dims_text(shape)})"
            bounds = settle(dtype, *literal_bounds(value))
        if t is None:
            return False
        return self.add(text, t, bounds)

    def call(self) -> bool:
        """A call of an earlier function, its parameters matched to values of the pool."""
        if not self.functions:
            return False
        fn = self.rng.choice(self.functions)
        binding: dict[str, Dim] = {}
        args: list[Val] = []
        for p in fn.params:
            def fits(v: Val, p: Val = p) -> bool:
                return v not in args and _binds(p.type, v.type, dict(binding)) is not None

            arg = self.pick(fits)
            if arg is None:
                return False
            binding.update(_binds(p.type, arg.type, dict(binding)) or {})
            args.append(arg)
        within = all(a.exact and a.hi <= (INT_INPUT_HI if a.dtype in INT_LIMIT else INPUT_HI)
                     and a.lo >= INPUT_LO for a in args)
        if not within and any(r.dtype in INT_LIMIT for r in fn.results):
            return False          # an int result computed from larger ints could overflow
        texts = [self.use(a) for a in args]
        if self.rng.random() < 0.3:
            order = list(zip([p.ref for p in fn.params], texts))
            self.rng.shuffle(order)
            call = f"{fn.name}({', '.join(f'{n}={t}' for n, t in order)})"
        else:
            call = f"{fn.name}({', '.join(texts)})"
        results = [Val("", TensorType(r.dtype, tuple(binding.get(d, d) if isinstance(d, str) else d
                                                        for d in r.type.shape)),
                       r.exact and within, r.hi, r.lo) for r in fn.results]
        if len(results) == 1:
            r = results[0]
            return self.add(call, r.type, (r.exact, r.hi, r.lo))
        names = []
        for r in results:
            names.append(f"v{self.count}")
            self.pool.append(Val(names[-1], r.type, r.exact, r.hi, r.lo))
            self.count += 1
            self.all_exact = self.all_exact and r.exact
        self.lines.append(f"let {', '.join(names)} = {call}")
        return True


def _binds(param: TensorType, arg: TensorType, binding: dict[str, Dim]) -> dict[str, Dim] | None:
    """The callee's symbols bound by passing ``arg`` for ``param``, or None if it does not fit."""
    if param.dtype is not arg.dtype or param.rank != arg.rank:
        return None
    for want, have in zip(param.shape, arg.shape):
        if isinstance(want, int):
            if want != have:
                return None
        elif binding.setdefault(want, have) != have:
            return None
    return binding


def dims_text(shape: list[Dim]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def type_text(t: TensorType) -> str:
    return t.dsl_str()


class ProgramGenerator:
    """Whole programs: functions, gradients and sometimes a model."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.functions: list[Function] = []

    def program(self) -> Program:
        parts: list[str] = []
        trusted: set[str] = set()
        for i in range(self.rng.choice([1, 1, 2, 3])):
            text, fn = self.function(f"f{i}")
            parts.append(text)
            trusted.add(fn.name)
            grad = self.gradient(fn)
            if grad is not None:
                parts.append(grad[0])
                if fn.all_exact:
                    trusted.add(grad[1])
        if self.rng.random() < 0.3:
            parts.append(ModelGenerator(self.rng, self.functions).model())
        return Program("\n\n".join(parts) + "\n", trusted)

    def params(self) -> list[Val]:
        symbols = self.rng.sample(SYMBOLS, self.rng.choice([0, 1, 1, 1, 2]))
        dims: list[Dim] = list(symbols) + [1, 2, 3, 4, 5]
        params: list[Val] = []
        for i in range(self.rng.randint(1, 4)):
            dtype = self.rng.choices([F32, F64, I32, I64, BOOL], weights=[12, 2, 3, 1, 2])[0]
            rank = self.rng.choices([0, 1, 2, 3], weights=[2, 4, 5, 1])[0]
            if params and self.rng.random() < 0.4 and params[-1].type.rank >= 1:
                # a matmul partner: [.., K] then [K, x]
                k = params[-1].type.shape[-1]
                shape: tuple[Dim, ...] = (k, self.rng.choice(dims))
                dtype = params[-1].dtype
            else:
                shape = tuple(self.rng.choice(dims) for _ in range(rank))
            hi = INT_INPUT_HI if dtype in INT_LIMIT else (1 if dtype is BOOL else INPUT_HI)
            lo = INPUT_LO if dtype in FLOATS else 0
            params.append(Val(f"x{i}", TensorType(dtype, shape), True, hi, lo))
        return params

    def function(self, name: str) -> tuple[str, Function]:
        params = self.params()
        body = Body(self.rng, params, self.functions)
        for _ in range(self.rng.randint(1, 10)):
            body.step()
        body.flush()
        results = self.results(body)
        fn = Function(name, params, results, body.all_exact)
        self.functions.append(fn)
        header = ", ".join(f"{p.ref}: {type_text(p.type)}" for p in params)
        ret = ""
        if self.rng.random() < 0.3:
            types = [type_text(r.type) for r in results]
            ret = f" -> {types[0]}" if len(types) == 1 else f" -> ({', '.join(types)})"
        lines = [f"fn {name}({header}){ret} {{"] + [f"    {line}" for line in body.lines]
        lines.append(f"    return {', '.join(r.ref for r in results)}")
        return "\n".join(lines) + "\n}", fn

    def results(self, body: Body) -> list[Val]:
        """One to three results; often a float scalar first, so the function has a gradient."""
        made = [v for v in body.pool if v.ref.startswith("v")] or body.pool
        results = [made[-1]] + self.rng.sample(made, min(len(made), self.rng.randint(0, 2)))
        floats = [v for v in made if v.dtype in FLOATS]
        if floats and self.rng.random() < 0.5:
            v = self.rng.choice(floats)
            op = self.rng.choice(["sum", "mean"])
            t = infer(op, [v.type])
            assert t is not None
            exact = op == "sum" and v.exact and v.hi + log2_count(list(v.type.shape)) - v.lo <= MANTISSA[v.dtype]
            name = f"v{body.count}"
            body.count += 1
            body.lines.append(f"let {name} = {op}({v.ref})")
            body.all_exact = body.all_exact and exact
            results.insert(0, Val(name, t, exact, v.hi + log2_count(list(v.type.shape)), v.lo))
        unique: list[Val] = []
        for r in results:
            if all(r.ref != u.ref for u in unique):
                unique.append(r)
        return unique

    def gradient(self, fn: Function) -> tuple[str, str] | None:
        """``fn d_f = grad(f, wrt=[...])`` when ``f``'s first result is a float scalar."""
        first = fn.results[0]
        floats = [p for p in fn.params if p.dtype in FLOATS]
        if first.dtype not in FLOATS or first.type.rank != 0 or not floats or self.rng.random() < 0.3:
            return None
        kind = self.rng.choice(["grad", "grad", "value_and_grad"])
        wrt = self.rng.sample(floats, self.rng.randint(1, len(floats)))
        name = f"d_{fn.name}"
        if self.rng.random() < 0.2:
            return f"fn {name} = {kind}({fn.name})", name
        if len(wrt) == 1 and self.rng.random() < 0.5:
            return f"fn {name} = {kind}({fn.name}, wrt={wrt[0].ref})", name
        return f"fn {name} = {kind}({fn.name}, wrt=[{', '.join(w.ref for w in wrt)}])", name


class ModelGenerator:
    """A ``model`` block: dense layers or free-form lets over inputs and params."""

    OPTIMIZERS = ("sgd(lr=0.01)", "sgd(lr=0.1, momentum=0.9, nesterov=true)", "rmsprop(lr=0.001)",
                  "adam(lr=0.01)", "adamw(learning_rate=0.001, weight_decay=0.01)", "sgd")
    ACTIVATIONS = ("relu", "sigmoid", "tanh", "softmax", "linear", "none")
    INITS = ("zeros", "ones", "normal(std=0.1)", "uniform(low=-1.0, high=1.0)", "glorot_uniform",
             "he_normal", "constant(value=0.5)", "glorot_normal", "he_uniform")

    def __init__(self, rng: random.Random, functions: list[Function]):
        self.rng = rng
        self.functions = functions

    def model(self) -> str:
        rng = self.rng
        width = rng.randint(1, 6)
        lines = [f"input x: f32[N, {width}]"]
        kind = rng.choice(["mse", "mae", "binary_crossentropy", "categorical_crossentropy",
                           "sparse_categorical_crossentropy", "free"])
        classes = rng.randint(1, 5) if kind != "sparse_categorical_crossentropy" else rng.randint(2, 5)
        if kind == "free":
            return self.free_model(width)
        target = "i32[N]" if kind == "sparse_categorical_crossentropy" else f"f32[N, {classes}]"
        lines.append(f"target y: {target}")
        h = "x"
        for i in range(rng.randint(0, 2)):
            units = rng.randint(1, 6)
            act = rng.choice(self.ACTIVATIONS)
            extra = f", kernel_init={rng.choice(self.INITS)}" if rng.random() < 0.3 else ""
            extra += ", use_bias=false" if rng.random() < 0.2 else ""
            lines.append(f"let h{i} = dense({h}, {units}, activation={act}{extra})")
            h = f"h{i}"
        act = {"binary_crossentropy": "sigmoid", "categorical_crossentropy": "softmax",
               "sparse_categorical_crossentropy": "softmax"}.get(kind, rng.choice(self.ACTIVATIONS))
        lines.append(f"output out = dense({h}, {classes}, activation={act})")
        lines.append(f"loss {kind}(out, y)")
        lines.append(f"optimizer {rng.choice(self.OPTIMIZERS)}")
        fits = ["accuracy"] if kind == "sparse_categorical_crossentropy" else ["accuracy", "mae", "mse"]
        metrics = rng.sample(fits, rng.randint(0, min(2, len(fits))))
        if metrics:
            lines.append(f"metrics [{', '.join(metrics)}]")
        return self.block(lines)

    def free_model(self, width: int) -> str:
        """Lets over the input and declared params; the output's type is the target's."""
        rng = self.rng
        x = Val("x", TensorType(F32, ("N", width)))
        params = [Val(f"p{i}", TensorType(F32, shape)) for i, shape in
                  enumerate([(width, rng.randint(1, 4)), (rng.randint(1, 4),), ()][:rng.randint(1, 3)])]
        body = Body(rng, [x, *params], self.functions)
        body.steps = [body.unary, body.binary, body.literal_op, body.reduce, body.matmul,
                      body.composite, body.layout, body.call]
        for _ in range(rng.randint(1, 6)):
            body.step()
        body.flush()
        floats = [v for v in body.pool if v.dtype in FLOATS and v.ref not in ("x",)
                  and "N" in v.type.shape] or [x]
        out = floats[-1]
        lines = [f"input x: {type_text(x.type)}", f"target y: {type_text(out.type)}"]
        lines += [f"param {p.ref}: {type_text(p.type)}" + (f" = {rng.choice(self.INITS)}" if rng.random() < 0.5 else "")
                  for p in params]
        lines += body.lines
        lines.append(f"output out = {out.ref}")
        lines.append(f"loss {rng.choice(['mse', 'mae'])}(out, y)")
        lines.append(f"optimizer {rng.choice(self.OPTIMIZERS)}")
        return self.block(lines)

    def block(self, lines: list[str]) -> str:
        return "model m {\n" + "\n".join(f"    {line}" for line in lines) + "\n}"


def generate_program(rng: random.Random) -> Program:
    """A random program (see the module docstring)."""
    return ProgramGenerator(rng).program()


def deep_program(rng: random.Random) -> str:
    """A program that is deep or long rather than varied: a chain of thousands of lets (with
    its gradient), an expression nested hundreds of levels, or a chain of calls."""
    kind = rng.choice(["lets", "nesting", "calls"])
    if kind == "lets":
        n = rng.randint(300, 3000)
        lines = [f"    let v{i} = {rng.choice(['tanh', 'relu', 'square', 'neg'])}(v{i - 1}) * 0.5"
                 for i in range(1, n)]
        return "\n".join(["fn f(x: f32[N]) -> f32[] {", "    let v0 = x", *lines,
                          f"    return sum(v{n - 1})", "}", "fn d_f = grad(f)"]) + "\n"
    if kind == "nesting":
        depth = rng.randint(50, 2000)
        left, right = rng.choice([("(", ")"), ("-", ""), ("exp(", ")"), ("x ** ", ""), ("abs(-", ")"),
                                  ("sum(", ", axes=[0])"), ("[", "]")])
        return f"fn f(x: f32[N]) {{\n    return {left * depth}x{right * depth}\n}}\n"
    n = rng.randint(20, 120)
    out = ["fn c0(x: f32[N]) -> f32[N] {\n    return x * 2.0\n}"]
    out += [f"fn c{i}(x: f32[N]) -> f32[N] {{\n    return c{i - 1}(x) + 1.0\n}}" for i in range(1, n)]
    return "\n".join(out) + "\n"
