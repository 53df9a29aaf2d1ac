"""Compiled functions called with the wrong things: the runtime's argument checks.

A case names a program (a generated one, or a model whose training step
updates its weights in place) and a seed; the worker compiles the program
(once: the object cache makes later cases warm) and calls one function with
arguments drawn from the seed.  Most arguments are right, some are *good
variants* the policy accepts (non-contiguous, Fortran-ordered, misaligned,
read-only, zero-stride views; safe-cast dtypes; Python and numpy scalars
for rank-0 parameters; ndarray subclasses), some are *bad*: other dtypes
(complex, float16, uint64, object, strings, datetimes), ranks and dims,
inconsistent symbols, huge dims through zero-stride views, zero-size arrays
with huge other dims, None, strings, lists, objects, out-of-range Python
ints, and wrong counts or names.  Calls go through ``fn(...)``, ``fn.bind``
and ``fn.call_unchecked`` (after a good call).  The oracle:

* a call raises nothing but a :class:`DlError` (``ArgumentTypeError`` is also
  a ``TypeError``, ``ArgumentValueError`` a ``ValueError``) and never crashes;
* a call whose arguments are all right or good variants succeeds;
* a call that succeeds computes what the interpreter computes on the
  arguments as numpy sees them (``np.asarray(a).astype(dtype)``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from compiler.diagnostics import DlError
from compiler.ir.core import Function
from compiler.ir.interpreter import interpret
from compiler.ir.types import TensorType

from ..case import REPO_ROOT, directives, int_directive
from ..dlgen import ModelGenerator, generate_program
from ..oracle import (
    Mismatch,
    compare,
    float_discontinuities,
    precision_of,
    random_array,
    spread_reference,
    wide_reference,
)

NAME = "runtime_args"
SUFFIX = ".dl"
TIMEOUT = 60.0
MODELS = ("xor.dl", "student_grade.dl")      # models whose training step updates weights in place
HUGE = (2**31 + 1, 2**40, 2**62)
SNAPSHOT_LIMIT = 1 << 26       # bytes: larger arguments (huge zero-stride views) are not copied
BAD_DTYPES = ("float16", "complex64", "complex128", "uint64", "int8", "object", "U3", "S3",
              "datetime64[s]", "timedelta64[s]", "float64", "int64", "bool", "longdouble",
              [("a", "f4")])
PYTHON_VALUES: tuple[Any, ...] = (None, "x", b"x", object(), [1.0, 2.0], [[1, 2], [3]], (), {}, 1j,
                                  2**31, -2**31 - 1, 2**63, 2**100, -1, 0, 1.5, float("nan"),
                                  float("inf"), True, np.float16(1.5), np.int8(3),
                                  np.uint64(2**64 - 1), np.complex64(1j), np.bool_(True),
                                  np.datetime64("2020-01-01"), np.str_("a"), np.float64(0.5),
                                  np.int64(-7), range(3), memoryview(b"abcd"))


def generate(rng: random.Random) -> tuple[str, str]:
    """A case: (directives + program text, mode).  Programs repeat often (a compiled one is
    warm in the worker's object cache) with a long tail of new ones: program ``k`` is drawn
    with probability about ``k ** -1.7``."""
    seed = rng.randrange(2**31)
    key = int(rng.paretovariate(0.7))
    if rng.random() < 0.3:
        if rng.random() < 0.5:
            text = (REPO_ROOT / "examples" / rng.choice(MODELS)).read_text()
        else:
            text = ModelGenerator(random.Random(f"args-model:{key}"), []).model()
        return f"# fuzz: seed={seed} fn=train_step\n{text}", "training step"
    program = generate_program(random.Random(f"args:{key}"))
    return f"# fuzz: seed={seed} trusted={','.join(sorted(program.trusted))}\n{program.text}", "function"


@dataclass
class Arg:
    """One argument: the value, whether the policy accepts it, and what it is."""

    value: Any
    good: bool
    what: str


def run(text: str, stats: dict[str, int]) -> None:
    """Call one function of the program with drawn arguments; check what happens."""
    import runtime

    from .dl_source import prepare

    rng = np.random.default_rng(int_directive(text, "seed"))
    compiled = runtime.compile(prepare(text))
    optimized = compiled.module
    assert optimized is not None
    names = [f.name for f in optimized.functions if f.ops and f.name in compiled]
    name = directives(text).get("fn") or (names[int(rng.integers(len(names)))] if names else "")
    if name not in names:
        return
    func = optimized.get(name)
    inplace = {p for _, p in compiled[name].info.inplace}
    args = draw_args(func, inplace, rng)
    call, call_ok, how = draw_call(compiled[name], func, args, rng)
    notes = f"call: {how}\n" + "\n".join(f"  {p.name}: {a.what}{'' if a.good else '  (bad)'}"
                                         for p, a in zip(func.params, args))
    before = [snapshot(a.value) for a in args]
    stats["calls"] = 1
    try:
        result = call()
    except DlError as e:
        # a max, min or argmax over an axis of size 0 is undefined (numpy raises): the runtime
        # refuses it before native code runs, by design (docs/ops.md, "Special values")
        undefined = "of no elements is undefined" in e.message
        if call_ok and all(a.good for a in args) and not undefined:
            raise Mismatch("rejected a valid call",
                           f"the runtime rejected a valid call: {e.message}\n{notes}") from None
        raise
    except BaseException as e:
        e.add_note(notes)
        raise
    stats["accepted"] = 1
    trusted = directives(text).get("trusted", "").split(",")
    check_result(func, before, result, trusted, wide_function(text, name), notes)


def snapshot(value: Any) -> Any:
    """A copy of an array argument (the call may update it in place); huge views as they are."""
    if isinstance(value, np.ndarray) and value.size * value.itemsize < SNAPSHOT_LIMIT:
        return np.array(value, copy=True)
    return value


def wide_function(text: str, name: str) -> Function | None:
    """Function ``name`` of the program widened to f64, after the pipeline (the oracle's
    accuracy yardstick), or None."""
    from compiler.passes import run_pipeline

    from .dl_source import wider

    wide = wider(text)
    if wide is None:
        return None
    wide = run_pipeline(wide, "default")
    return wide.get(name) if name in wide else None


def check_result(func: Function, values: list[Any], result: Any, trusted: list[str],
                 wide: Function | None, notes: str) -> None:
    """The native result against the interpreter on the arguments as numpy sees them."""
    try:
        args = [np.asarray(v).astype(p.type.dtype.np) for p, v in zip(func.params, values)]
    except (TypeError, ValueError, OverflowError) as e:
        raise Mismatch("accepted an argument numpy cannot convert",
                       f"the runtime accepted arguments numpy does not convert ({e})\n{notes}") from None
    if func.name not in trusted and float_discontinuities(func):
        return
    try:
        expected = interpret(func, args)
    except DlError as e:
        raise Mismatch("accepted what the interpreter rejects",
                       f"the runtime accepted arguments the interpreter rejects: {e.message}\n{notes}") from None
    wide_expected = wide_reference(wide, args) or []
    spread = spread_reference(func, args, np.random.default_rng(0)) or []
    outputs = list(result) if isinstance(result, tuple) else [result]
    for i, (got, want) in enumerate(zip(outputs, expected)):
        try:
            compare(f"@{func.name} output {i}", got, want, wide_expected[i] if i < len(wide_expected) else None,
                    precision_of(func), spread[i] if i < len(spread) else None)
        except Mismatch as e:
            raise Mismatch(f"result: {e.what}", f"{e}\n{notes}") from None


# ---------------------------------------------------------------------------
# Arguments


def draw_args(func: Function, inplace: set[int], rng: np.random.Generator) -> list[Arg]:
    """An argument per parameter: right (most), a good variant, or bad."""
    symbols = sorted({d for p in func.params for d in p.type.shape if isinstance(d, str)})
    sizes = {s: int(rng.choice([0, 1, 2, 3, 5])) for s in symbols}
    args = []
    n = max(len(func.params), 1)
    good, bad = min(0.25, 0.7 / n), min(0.15, 0.5 / n)     # about one odd argument per call
    for i, p in enumerate(func.params):
        base = random_array(p.type, sizes, rng, specials=False)
        roll = rng.random()
        if roll < 1 - good - bad:
            args.append(Arg(base, True, "right"))
        elif roll < 1 - bad:
            args.append(good_variant(base, p.type, i in inplace, rng))
        else:
            args.append(bad_variant(base, p.type, i in inplace, rng))
    if inplace and rng.random() < 0.3:
        share(args, func, inplace, rng)
    return args


def good_variant(base: np.ndarray, t: TensorType, inplace: bool, rng: np.random.Generator) -> Arg:
    """A value the policy accepts for a parameter that is not in place (else a bad one)."""
    makers: list[tuple[str, Callable[[np.ndarray], Any]]] = [
        ("misaligned", _misaligned),
        ("read-only", _read_only),
        ("masked array", lambda a: np.ma.masked_array(a, mask=np.zeros(a.shape, bool))),
        ("ndarray subclass", lambda a: a.view(_Sub)),
    ]
    if base.ndim:
        makers += [("non-contiguous (every other element)", _strided), ("reversed strides", _reversed),
                   ("Fortran order", np.asfortranarray), ("zero-stride view", _zero_stride)]
    safe = [d for d in ("bool", "int8", "uint8", "int16", "float16", "int32", "uint32", "float32")
            if np.can_cast(d, base.dtype, "safe") and np.dtype(d) != base.dtype]
    if safe:
        dtype = str(rng.choice(safe))
        makers.append((f"safe cast from {dtype}", lambda a: _cast_exactly(a, dtype)))
    if t.rank == 0:
        makers.append(("Python scalar", lambda a: a.item()))
        makers.append(("numpy scalar", lambda a: a[()]))
    what, make = makers[int(rng.integers(len(makers)))]
    return Arg(make(base), not inplace or what in ("ndarray subclass",), what)


def bad_variant(base: np.ndarray, t: TensorType, inplace: bool, rng: np.random.Generator) -> Arg:
    """A value the policy rejects, mostly (another dtype may cast safely; a Python value
    may fit a rank-0 parameter: the oracle then only asks for no crash)."""
    kind = int(rng.integers(7))
    if kind == 0:
        dtype = np.dtype(BAD_DTYPES[int(rng.integers(len(BAD_DTYPES)))])
        good = not inplace and dtype != np.dtype(object) and np.can_cast(dtype, base.dtype, "safe")
        return Arg(_convert(base, dtype), bool(good), f"dtype {dtype}")
    if kind == 1:
        extra = base[None] if rng.random() < 0.5 or base.ndim == 0 or len(base) == 0 else base[0]
        return Arg(extra, False, f"rank {np.ndim(extra)}")
    if kind == 2 and base.ndim:
        shape = list(base.shape)
        axis = int(rng.integers(len(shape)))
        shape[axis] = shape[axis] + int(rng.choice([1, 2, 7]))
        return Arg(np.zeros(shape, base.dtype), False, f"shape {shape}")
    if kind == 3 and base.ndim:
        shape = list(base.shape)
        shape[int(rng.integers(len(shape)))] = int(rng.choice(HUGE))
        try:
            view = np.lib.stride_tricks.as_strided(np.zeros(1, base.dtype), shape, [0] * len(shape))
        except ValueError:          # more bytes than numpy can address
            return Arg(None, False, "None")
        return Arg(view, False, f"zero-stride view of shape {shape}")
    if kind == 4 and base.ndim >= 2:
        shape = [0] + [int(rng.choice(HUGE)) for _ in base.shape[1:]]
        try:
            return Arg(np.empty(shape, base.dtype), False, f"zero-size array of shape {shape}")
        except (ValueError, MemoryError):
            pass
    if kind == 5:
        value = PYTHON_VALUES[int(rng.integers(len(PYTHON_VALUES)))]
        return Arg(value, False, f"Python value {value!r}"[:80])
    return Arg(np.zeros(base.shape + (1,), base.dtype) if base.ndim < 3 else None, False, "wrong rank or None")


def share(args: list[Arg], func: Function, inplace: set[int], rng: np.random.Generator) -> None:
    """Make an in-place argument share memory with another argument of the same type."""
    p = sorted(inplace)[int(rng.integers(len(inplace)))]
    twins = [i for i, q in enumerate(func.params) if i != p and q.type == func.params[p].type]
    if not twins or not isinstance(args[p].value, np.ndarray):
        return
    i = twins[int(rng.integers(len(twins)))]
    args[i] = Arg(args[p].value, False, f"the same array as {func.params[p].name} (updated in place)")


def draw_call(fn: Any, func: Function, args: list[Arg],
              rng: np.random.Generator) -> tuple[Callable[[], Any], bool, str]:
    """How to call: (the call, whether its shape is valid, a description)."""
    values = [a.value for a in args]
    names = [p.name or f"arg{i}" for i, p in enumerate(func.params)]
    roll = rng.random()
    if roll < 0.2:
        kwargs = dict(zip(names, values))
        return (lambda: fn(**kwargs)), True, "by name"
    if roll < 0.3:
        k = int(rng.integers(len(values) + 1))
        rest = dict(zip(names[k:], values[k:]))
        return (lambda: fn(*values[:k], **rest)), True, f"{k} positional, the rest by name"
    if roll < 0.35:
        return (lambda: fn(*values, values[0] if values else None)), False, "one argument too many"
    if roll < 0.4 and values:
        return (lambda: fn(*values[:-1])), False, "one argument missing"
    if roll < 0.45:
        return (lambda: fn(*values, no_such_param=1)), False, "an unknown keyword"
    if roll < 0.5 and values:
        return (lambda: fn(*values, **{names[0]: values[0]})), False, "an argument given twice"
    right = [np.array(a.value, copy=True) if a.good and isinstance(a.value, np.ndarray) else None
             for a in args]
    if roll < 0.65 and all(r is not None for r in right):
        bound = fn.bind(*right)
        return (lambda: bound(*values)), True, "bind(good arguments), then call with these"
    if roll < 0.8 and all(r is not None for r in right):
        def unchecked() -> Any:
            fn.call_unchecked(*right)
            return fn.call_unchecked(*values)
        return unchecked, True, "call_unchecked(good arguments), then with these"
    return (lambda: fn(*values)), True, "positional"


class _Sub(np.ndarray):
    """An ndarray subclass (the policy treats it as an array)."""


def _strided(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[..., None], 2, axis=-1)[..., 0]


def _reversed(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a[::-1])[::-1]


def _misaligned(a: np.ndarray) -> np.ndarray:
    raw = np.zeros(a.nbytes + 1, np.uint8)
    view = np.frombuffer(raw.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    raw[1:] = np.frombuffer(np.ascontiguousarray(a).tobytes(), np.uint8)
    return view


def _read_only(a: np.ndarray) -> np.ndarray:
    b = a.copy()
    b.flags.writeable = False
    return b


def _zero_stride(a: np.ndarray) -> np.ndarray:
    if a.size == 0:
        return a
    first = a.reshape(-1)[:1].reshape((1,) * a.ndim)
    return np.broadcast_to(first, a.shape)


def _cast_exactly(a: np.ndarray, dtype: str) -> np.ndarray:
    """``a`` in a narrower dtype that converts back safely (values made to fit)."""
    if np.dtype(dtype) == np.bool_:
        return a != 0
    if np.dtype(dtype).kind in "iu":
        return np.clip(np.nan_to_num(a), 0, 7).astype(dtype)
    return a.astype(dtype)


def _convert(a: np.ndarray, dtype: Any) -> np.ndarray:
    try:
        return a.astype(dtype)
    except (TypeError, ValueError):
        return np.zeros(a.shape, dtype)
