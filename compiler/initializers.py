"""Weight initializers, as Keras defines them, drawn from a seeded numpy Generator.

A model's parameter declares its initializer by name with keyword arguments,
e.g. ``{"name": "glorot_uniform"}`` or ``{"name": "normal", "std": 0.1}``;
:func:`initialize` turns that into an array of the parameter's shape and dtype.

Fans follow Keras (``keras.src.initializers.random_initializers.compute_fans``):

- rank 0: ``fan_in = fan_out = 1``
- rank 1: ``fan_in = fan_out = shape[0]``
- rank 2: ``fan_in = shape[0]``, ``fan_out = shape[1]`` (a dense kernel ``[in, out]``)
- rank k > 2: the leading ``k-2`` dims form the receptive field,
  ``fan_in = shape[-2] * field``, ``fan_out = shape[-1] * field``

The ``*_normal`` variance-scaling initializers draw from a normal truncated at
two standard deviations, with the standard deviation divided by
``0.87962566103423978`` (the std of a unit normal truncated to [-2, 2]) so the
drawn values keep the intended variance -- exactly as Keras does.

Reproducibility: the same Generator state gives bit-identical arrays; a model
seeds one ``numpy.random.Generator(PCG64(seed))`` and initializes its
parameters in declaration order.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .ir.sizes import allocating

# std of a standard normal truncated to [-2, 2]
TRUNCATED_NORMAL_STD = 0.87962566103423978

Shape = tuple[int, ...]


class InitializerError(ValueError):
    """An unknown initializer or a bad argument; callers turn it into a DlError."""


@dataclass(frozen=True)
class InitializerDef:
    """One initializer: its defaults (Keras's) and its sampling function, which fills the
    array it is given (``sample(rng, out, **args)``, values computed in float64)."""

    name: str
    defaults: dict[str, float]
    sample: Callable[..., np.ndarray]
    doc: str = ""


INITIALIZERS: dict[str, InitializerDef] = {}


def _define(name: str, defaults: dict[str, float], doc: str) -> Callable:
    def register(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
        INITIALIZERS[name] = InitializerDef(name, defaults, fn, doc)
        return fn
    return register


def compute_fans(shape: Shape) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of ``shape``, as Keras computes them."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    field = math.prod(shape[:-2])
    return shape[-2] * field, shape[-1] * field


PIECE = 1 << 15          # values drawn in float64 at once (256 KB): a big kernel never needs
                         # a float64 copy of itself (fresh pages cost more than the draws)


def _fill(out: np.ndarray, draw: Callable[[np.ndarray], object]) -> np.ndarray:
    """``out`` filled in index order by ``draw``, which writes float64 values into the
    piece it is given; each piece is rounded once into ``out``'s dtype.

    Numpy's generators draw element after element, so drawing in pieces gives the values
    one big draw gives (``rng.random(out=p)`` for ``rng.random(n)``), without the
    float64 array of the whole size and its page faults: a 784 x 512 kernel drawn from
    scratch in a fresh process, 2.9-4.4 -> 1.5 ms."""
    flat = out.reshape(-1)
    piece = np.empty(min(flat.size, PIECE))
    for lo in range(0, flat.size, PIECE):
        part = piece[:min(PIECE, flat.size - lo)]
        draw(part)
        flat[lo:lo + part.size] = part
    return out


def _scaled(sample: Callable[..., object], scale: float, offset: float) -> Callable[[np.ndarray], None]:
    """A ``draw`` for :func:`_fill`: ``offset + scale * x`` for ``x`` from ``sample(out=...)``,
    as numpy's ``uniform`` (``low + (high - low) * u``) and ``normal`` (``mean + std * z``)
    compute their values."""
    def draw(part: np.ndarray) -> None:
        sample(out=part)
        part *= scale
        part += offset
    return draw


def _uniform_into(rng: np.random.Generator, out: np.ndarray, low: float, high: float) -> np.ndarray:
    return _fill(out, _scaled(rng.random, high - low, low))


def truncated_normal(rng: np.random.Generator, out: np.ndarray, mean: float, std: float) -> np.ndarray:
    """``out`` filled with normal samples redrawn until they lie within two ``std`` of
    ``mean``.

    The first pass draws every element in index order (in pieces, noting which are out of
    range); each round then redraws the samples still out of range, in index order, and
    looks again at those only.  The same draws land in the same places as with one draw
    of the whole array and a rescan of everything."""
    flat = out.reshape(-1)
    far: list[np.ndarray] = []

    def draw(part: np.ndarray) -> None:
        rng.standard_normal(out=part)
        far.append(np.flatnonzero(np.abs(part) > 2.0) + (len(far) * PIECE))
        part *= std
        part += mean
    _fill(out, draw)
    redraw = np.concatenate(far) if far else np.empty(0, np.intp)
    while redraw.size:
        values = rng.standard_normal(redraw.size)
        flat[redraw] = mean + std * values
        redraw = redraw[np.abs(values) > 2.0]
    return out


@_define("zeros", {}, "All zeros (Keras ``Zeros``); the usual bias initializer.")
def _zeros(rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
    out[...] = 0
    return out


@_define("ones", {}, "All ones (Keras ``Ones``).")
def _ones(rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
    out[...] = 1
    return out


@_define("constant", {"value": 0.0}, "Every element ``value`` (Keras ``Constant``).")
def _constant(rng: np.random.Generator, out: np.ndarray, value: float) -> np.ndarray:
    np.copyto(out, np.float64(value), casting="unsafe")     # as float64 values are cast
    return out


@_define("normal", {"mean": 0.0, "std": 0.05},
         "Normal(mean, std), untruncated (Keras ``RandomNormal``; defaults 0, 0.05).")
def _normal(rng: np.random.Generator, out: np.ndarray, mean: float, std: float) -> np.ndarray:
    if std < 0:
        raise InitializerError(f"normal: std must be >= 0, got {std}")
    if std == 0:
        return _constant(rng, out, mean)

    return _fill(out, _scaled(rng.standard_normal, std, mean))


@_define("uniform", {"low": -0.05, "high": 0.05},
         "Uniform on [low, high) (Keras ``RandomUniform``; defaults -0.05, 0.05).")
def _uniform(rng: np.random.Generator, out: np.ndarray, low: float, high: float) -> np.ndarray:
    if high < low:
        raise InitializerError(f"uniform: high ({high}) must be >= low ({low})")
    return _uniform_into(rng, out, low, high)


def _variance_scaling(rng: np.random.Generator, out: np.ndarray, scale: float, mode: str,
                      distribution: str) -> np.ndarray:
    """Keras's ``VarianceScaling``: variance ``scale / n`` with ``n`` the fan-in, or the mean
    of fan-in and fan-out (``mode="fan_avg"``); truncated normal or uniform."""
    fan_in, fan_out = compute_fans(out.shape)
    n = max(1.0, (fan_in + fan_out) / 2.0 if mode == "fan_avg" else fan_in)
    if distribution == "uniform":
        limit = math.sqrt(3.0 * scale / n)
        return _uniform_into(rng, out, -limit, limit)
    return truncated_normal(rng, out, 0.0, math.sqrt(scale / n) / TRUNCATED_NORMAL_STD)


# name: (scale, mode, distribution, formula for the docs)
_VARIANCE_SCALING = {
    "glorot_uniform": (1.0, "fan_avg", "uniform", "Uniform on [-l, l], l = sqrt(6 / (fan_in + fan_out)) "
                       "(Keras ``GlorotUniform``)."),
    "glorot_normal": (1.0, "fan_avg", "normal", "Truncated normal, std = sqrt(2 / (fan_in + fan_out)) / 0.8796 "
                      "(Keras ``GlorotNormal``)."),
    "he_normal": (2.0, "fan_in", "normal", "Truncated normal, std = sqrt(2 / fan_in) / 0.8796 (Keras ``HeNormal``)."),
    "he_uniform": (2.0, "fan_in", "uniform", "Uniform on [-l, l], l = sqrt(6 / fan_in) (Keras ``HeUniform``)."),
    "lecun_normal": (1.0, "fan_in", "normal", "Truncated normal, std = sqrt(1 / fan_in) / 0.8796 "
                     "(Keras ``LecunNormal``)."),
    "lecun_uniform": (1.0, "fan_in", "uniform", "Uniform on [-l, l], l = sqrt(3 / fan_in) (Keras ``LecunUniform``)."),
}
for _name, (_scale, _mode, _distribution, _doc) in _VARIANCE_SCALING.items():
    _define(_name, {}, _doc)(functools.partial(_variance_scaling, scale=_scale, mode=_mode,
                                               distribution=_distribution))


# Keras spellings accepted as aliases.
ALIASES = {
    "random_normal": "normal", "random_uniform": "uniform",
    "glorotuniform": "glorot_uniform", "glorotnormal": "glorot_normal",
    "henormal": "he_normal", "heuniform": "he_uniform",
    "lecunnormal": "lecun_normal", "lecununiform": "lecun_uniform",
}
ARG_ALIASES = {"stddev": "std", "minval": "low", "maxval": "high"}


def resolve(spec: dict[str, Any] | str) -> tuple[InitializerDef, dict[str, float]]:
    """The initializer named by ``spec`` and its arguments with defaults filled.

    Raises :class:`InitializerError` for an unknown name or argument.
    """
    if isinstance(spec, str):
        spec = {"name": spec}
    spec = dict(spec)
    name = str(spec.pop("name", "")).lower()
    name = ALIASES.get(name, name)
    init = INITIALIZERS.get(name)
    if init is None:
        known = ", ".join(sorted(INITIALIZERS))
        raise InitializerError(f"unknown initializer '{name}' (known: {known})")
    args = dict(init.defaults)
    for key, value in spec.items():
        key = ARG_ALIASES.get(key, key)
        if key not in init.defaults:
            allowed = ", ".join(init.defaults) or "none"
            raise InitializerError(f"initializer '{name}' has no argument '{key}' (allowed: {allowed})")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InitializerError(f"initializer '{name}': argument '{key}' must be a number, got {value!r}")
        args[key] = float(value)
    return init, args


def initialize(spec: dict[str, Any] | str, shape: Shape, dtype: np.dtype | type,
               rng: np.random.Generator, what: str = "an initialized array") -> np.ndarray:
    """A fresh C-contiguous array of ``shape`` and ``dtype`` drawn as ``spec`` says.

    Sampling is done in float64 and rounded once to ``dtype``, so the result
    depends only on the generator's state, not on the target dtype's precision.
    Each initializer's function fills the fresh array (``sample(rng, out, **args)``).
    Memory the machine cannot give is an ``AllocationError`` naming ``what``.
    """
    init, args = resolve(spec)
    shape = tuple(int(d) for d in shape)
    dtype = np.dtype(dtype)
    size = math.prod(shape)
    with allocating(f"{what} ({dtype} {shape}, sampled in float64)",
                    size * dtype.itemsize + min(size, PIECE) * 8):
        return init.sample(rng, np.empty(shape, dtype), **args)


def model_param_values(module, func, seed: int) -> dict[str, np.ndarray]:
    """Values for the model parameters and state among ``func``'s parameters, drawn
    from their declared initializers (static float parameters only).

    Checkers that run a model's functions on random arguments use these, so a
    softmax is not saturated by standard-normal weights and its gradient is
    not trivially zero.
    """
    info = module.attrs.get("model")
    if not isinstance(info, dict):
        return {}
    types = {p.name: p.type for p in func.params}
    rng = np.random.default_rng(seed)
    values: dict[str, np.ndarray] = {}
    for spec in [*info.get("params", []), *info.get("state", [])]:
        name, t = spec.get("name"), types.get(spec.get("name"))
        if t is None or not t.is_static or not t.dtype.is_float:
            continue
        try:
            values[name] = initialize(spec.get("init", "zeros"), t.concrete_shape({}), t.dtype.np, rng,
                                      f"parameter '{name}'")
        except InitializerError:
            continue
    return values
