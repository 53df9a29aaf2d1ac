"""The differential oracle: native code against the reference interpreter.

:func:`random_inputs` feeds a function multiples of 1/4 in [-4, 4] (ints in
[-8, 8], random bools), symbolic dims bound to 0, 1, 2, 3, 5 or 8 and, in
some cases, NaN, ±inf and -0.0 sprinkled in.  :func:`compare` then holds the
native result to the interpreter's (``compiler/ir/interpreter.py``):

* dtype and shape exactly; ints and bools exactly;
* floats: NaN in the same places, infinities in the same places with the
  same sign, and finite values within ``atol + rtol*|ref| + K*|ref - ref64|``
  (native code may overflow to ±inf only where that band reaches the
  largest finite value).

``ref64`` is the interpreter's result for the same program with every
``f32`` replaced by ``f64`` (when that compiles): how far the f32 reference
is from it measures how much rounding the program amplifies at that place
(cancellation, ill-conditioned ops).  A second yardstick, ``spread``, is the
interpreter's result with every op native code computes with its own
approximations (exp, log, tanh, sigmoid, pow, softmax, the losses; see
:data:`JITTERED`) moved by up to two ulps at random (:func:`spread_reference`):
a correct implementation that rounds those differently; the allowance also
grows by ``K*|ref - spread|``.  (The f64 yardstick misses an amplified ulp
where numpy's f32 result happens to be exact: ``softmax(x ** 8)`` of ties.)
So the allowance grows exactly where two correct f32 implementations may
drift apart, and stays at a few dozen ulps elsewhere.  A place where the f32 and f64 references disagree on being
finite (an f32 overflow, ``3.4e38 * 2``) is *unstable* and not compared.
Tolerances: f32 ``rtol=1e-5, atol=1e-6, K=16``; f64 ``rtol=1e-9, atol=1e-9,
K=16`` -- but an f64 result of a function that computes with f32 values
gets the f32 tolerance (:func:`precision_of`).

Rounding differences flip discontinuous ops (comparisons, ``sign``,
``argmax``, float -> int casts) on values near a boundary; generated
programs only apply them to exactly computed values (``fuzz/dlgen.py``), and
for any other function :func:`float_discontinuities` says whether the
comparison can be trusted.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from compiler.diagnostics import DlError
from compiler.ir.core import Function
from compiler.ir.interpreter import interpret
from compiler.ir.types import DType, TensorType
from compiler.ops import OPS

SIZES = (0, 1, 1, 2, 3, 3, 5, 8)          # symbolic dims at run time (dlgen.SYMBOL_LOG2 = 3)
SPECIALS = (np.nan, np.inf, -np.inf, -0.0)
SPECIAL_RATE = 0.15                       # share of elements replaced, when a case has specials
MAX_ELEMENTS = 1 << 24                    # larger arguments are not made (TooLarge)
DISCONTINUOUS = ("eq", "ne", "lt", "le", "gt", "ge", "sign", "argmax")
JITTERED = ("exp", "log", "tanh", "sigmoid", "pow", "softmax", "log_softmax", "binary_crossentropy",
            "categorical_crossentropy", "sparse_categorical_crossentropy")   # approximated natively
JITTER_ULPS = 2

TOLERANCES = {                            # dtype -> (rtol, atol, K)
    np.dtype(np.float32): (1e-5, 1e-6, 16.0),
    np.dtype(np.float64): (1e-9, 1e-9, 16.0),
}


class Mismatch(Exception):
    """An oracle said no: ``what`` names the kind (``NaN in different places``), the
    message says where and how."""

    def __init__(self, what: str, text: str):
        super().__init__(text)
        self.what = what


def symbol_sizes(funcs: list[Function], rng: np.random.Generator) -> dict[str, int]:
    """A runtime size for every symbolic dim of ``funcs``' parameters."""
    symbols = sorted({d for f in funcs for p in f.params for d in p.type.shape if isinstance(d, str)})
    return {s: int(rng.choice(SIZES)) for s in symbols}


class TooLarge(Exception):
    """A parameter type whose arguments would not fit in memory (a huge static dim)."""


def random_array(t: TensorType, sizes: dict[str, int], rng: np.random.Generator,
                 specials: bool) -> np.ndarray:
    """One argument of type ``t`` (see the module docstring for the values)."""
    shape = tuple(sizes.get(d, 1) if isinstance(d, str) else d for d in t.shape)
    if math.prod(shape) > MAX_ELEMENTS:
        raise TooLarge(f"{t.dsl_str()} has {math.prod(shape)} elements")
    if t.dtype is DType.bool:
        return np.array(rng.random(shape) < 0.5)
    if t.dtype.is_int:
        return np.array(rng.integers(-8, 9, shape), dtype=t.dtype.np)
    values = np.array(rng.integers(-16, 17, shape) / 4, dtype=t.dtype.np)
    if specials and values.size:
        mask = rng.random(shape) < SPECIAL_RATE
        values[mask] = rng.choice(np.array(SPECIALS, dtype=t.dtype.np), size=int(mask.sum()))
    return values


def random_inputs(func: Function, sizes: dict[str, int], rng: np.random.Generator,
                  specials: bool) -> list[np.ndarray]:
    """Arguments for every parameter of ``func``."""
    return [random_array(p.type, sizes, rng, specials) for p in func.params]


def float_discontinuities(func: Function) -> list[str]:
    """The ops of ``func`` whose result jumps on a float operand near a boundary."""
    found = []
    for op in func.ops:
        floats = any(v.type.dtype.is_float for v in op.operands)
        to_int = op.name == "cast" and not op.results[0].type.dtype.is_float
        if floats and (op.name in DISCONTINUOUS or to_int):
            found.append(op.name)
    return found


def wide_reference(wide: Function | None, args: list[np.ndarray]) -> list[np.ndarray] | None:
    """The results of ``wide`` (the same function with f32 widened to f64) for ``args``,
    each converted to its parameter's dtype; None without it or when it rejects them."""
    if wide is None or len(wide.params) != len(args):
        return None
    try:
        return interpret(wide, [np.asarray(a).astype(p.type.dtype.np) for p, a in zip(wide.params, args)])
    except DlError:
        return None


@contextlib.contextmanager
def _jittered_references(rng: np.random.Generator) -> Iterator[None]:
    """The reference of every op in :data:`JITTERED` moves its float results by up to
    :data:`JITTER_ULPS` ulps, until the block ends (the worker runs one case at a time)."""
    saved = {name: OPS[name].reference for name in JITTERED if OPS[name].reference is not None}
    for name, reference in saved.items():
        assert reference is not None
        OPS[name].reference = _jittering(reference, rng)
    try:
        yield
    finally:
        for name, reference in saved.items():
            OPS[name].reference = reference


def _jittering(reference: Callable[..., Any], rng: np.random.Generator) -> Callable[..., Any]:
    def jittered(*arrays: Any, **attrs: Any) -> Any:
        out = reference(*arrays, **attrs)
        if isinstance(out, (list, tuple)):
            return type(out)(_jitter(o, rng) for o in out)
        return _jitter(out, rng)
    return jittered


def _jitter(value: Any, rng: np.random.Generator) -> Any:
    array = np.asarray(value)
    if array.dtype.kind != "f":
        return value
    noise = rng.uniform(-JITTER_ULPS, JITTER_ULPS, array.shape) * np.finfo(array.dtype).eps
    return (array * (1 + noise)).astype(array.dtype)


def spread_reference(func: Function, args: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray] | None:
    """The interpreter's results with :data:`JITTERED` ops rounding differently (the
    ``spread`` yardstick of :func:`compare`), or None when it rejects the arguments."""
    try:
        with _jittered_references(rng), np.errstate(all="ignore"):
            return interpret(func, args)
    except DlError:
        return None


def precision_of(func: Function) -> np.dtype | None:
    """float32 when ``func`` computes with any f32 value (its f64 results are then only as
    precise as f32), else None."""
    values = [*func.params, *(r for op in func.ops for r in op.results)]
    return np.dtype(np.float32) if any(v.type.dtype is DType.f32 for v in values) else None


def compare(where: str, native: np.ndarray, ref: np.ndarray, ref64: np.ndarray | None = None,
            precision: np.dtype | None = None, spread: np.ndarray | None = None) -> None:
    """Raise :class:`Mismatch` unless ``native`` matches ``ref`` (see the module docstring).

    ``precision``: the float dtype whose tolerance applies (default: the result's; an f64
    result computed from f32 values is only as precise as f32, see :func:`precision_of`).
    """
    native, ref = np.asarray(native), np.asarray(ref)
    if native.dtype != ref.dtype or native.shape != ref.shape:
        raise Mismatch("dtype or shape differs", f"{where}: native gives {native.dtype} {list(native.shape)}, "
                       f"the interpreter {ref.dtype} {list(ref.shape)}")
    if ref.dtype.kind != "f":
        bad = native != ref
        if bad.any():
            raise _mismatch(where, "values differ", bad, native, ref)
        return
    wide = ref64 if ref64 is not None and ref64.shape == ref.shape else None
    stable = np.ones(ref.shape, dtype=bool)
    if wide is not None:
        stable = (np.isfinite(ref) == np.isfinite(wide)) & (np.isnan(ref) == np.isnan(wide))
    allowed = _allowance(ref, [y for y in (wide, spread) if y is not None and y.shape == ref.shape],
                         precision)
    nan_ref = np.isnan(ref)
    bad = (np.isnan(native) != nan_ref) & stable
    if bad.any():
        raise _mismatch(where, "NaN in different places", bad, native, ref)
    inf_ref = np.isinf(ref)
    bad = inf_ref & stable & (native != ref)
    if bad.any():
        raise _mismatch(where, "infinities differ", bad, native, ref)
    with np.errstate(all="ignore"):
        reaches_overflow = np.abs(ref.astype(np.float64)) + allowed >= np.finfo(ref.dtype).max
    bad = np.isinf(native) & ~inf_ref & ~nan_ref & stable & ~reaches_overflow
    if bad.any():
        raise _mismatch(where, "native gives an infinity", bad, native, ref)
    with np.errstate(all="ignore"):
        err = np.abs(native.astype(np.float64) - ref.astype(np.float64))
    bad = np.isfinite(ref) & np.isfinite(native) & stable & (err > allowed)
    if bad.any():
        raise _mismatch(where, "values differ beyond the tolerance", bad, native, ref, wide)


def _allowance(ref: np.ndarray, yardsticks: list[np.ndarray], precision: np.dtype | None) -> np.ndarray:
    """``atol + rtol*|ref| + K*|ref - y|`` for each yardstick ``y`` (see the module docstring)."""
    rtol, atol, k = TOLERANCES[np.dtype(precision or ref.dtype)]
    with np.errstate(all="ignore"):
        magnitude = np.abs(ref.astype(np.float64))
        allowed = atol + rtol * np.where(np.isfinite(magnitude), magnitude, 0.0)
        for y in yardsticks:
            drift = np.abs(ref.astype(np.float64) - np.asarray(y).astype(np.float64))
            allowed = allowed + k * np.where(np.isfinite(drift), drift, np.inf)
    return allowed


def _mismatch(where: str, what: str, bad: np.ndarray, native: np.ndarray, ref: np.ndarray,
              ref64: np.ndarray | None = None) -> Mismatch:
    """``where: what at N of M places, first at (i, j): native a, interpreter b``."""
    index = tuple(int(i) for i in np.argwhere(bad)[0]) if bad.ndim else ()
    text = (f"{where}: {what} at {int(bad.sum())} of {bad.size} places, first at {index}: "
            f"native {native[index]!r}, interpreter {ref[index]!r}")
    if ref64 is not None and ref64.shape == ref.shape:
        text += f", f64 interpreter {ref64[index]!r}"
    return Mismatch(what, text)
