"""Pooling over NHWC images: ``max_pool2d``, ``avg_pool2d`` (with their gradient ops),
``global_avg_pool``, ``global_max_pool`` and ``flatten``.

Layout: ``x`` is ``[N, H, W, C]`` (channels contiguous, as TensorFlow/Keras
and the conv ops); ``N`` and ``C`` may be symbolic, ``H`` and ``W`` are static.
A window has ``pool_size = (ph, pw)``, ``strides = (sh, sw)`` (default: the
pool size, as Keras) and explicit ``padding = (top, bottom, left, right)``;
:func:`resolve_padding` turns Keras' ``"valid"``/``"same"`` (or
``[[t, b], [l, r]]``) into those four ints when the op is built.  The output
is ``[N, OH, OW, C]`` with ``OH = (H + top + bottom - ph) // sh + 1`` (and
``OW`` alike), at least 1.  Window ``(oh, ow)`` covers input rows
``oh*sh - top + kh`` and columns ``ow*sw - left + kw`` for ``kh < ph``,
``kw < pw``; positions outside the image are padding and are never read.

* ``max_pool2d``: the *first* maximum of the window in row-major window
  order, NaN counting as the largest value (so a window holding NaN gives
  its first NaN, as numpy's ``argmax`` picks it); the result is exactly the
  input element at that position (``-0.0`` before ``0.0`` gives ``-0.0``).
  Padding is never selected; a window lying wholly in the padding gives
  ``-inf``.  The gradient goes to that same first maximum (ties: first
  index), all of it: ``max_pool2d_grad``.
* ``avg_pool2d``: the sum of the window's elements inside the image, in
  row-major window order starting from ``-0.0``, divided by the number of
  those elements (``count_include_pad = false``, the default, as Keras /
  TensorFlow) or by ``ph * pw`` (``count_include_pad = true``, padded
  positions counted as zeros).  A window wholly in the padding gives 0.
* The gradient ops are ops of their own so that gradients of gradients
  exist: ``max_pool2d_grad(x, dy)`` (``dy`` routed to each window's first
  maximum) and ``max_pool2d_gather(x, g)`` (``g`` read at each window's first
  maximum) are each other's adjoints in their second operand and constant
  in ``x`` (their gradient to ``x`` is zeros: zero almost everywhere);
  ``avg_pool2d_grad`` (``dy / count`` spread over each window) and
  ``avg_pool2d`` are each other's adjoints.  A gradient sums the windows
  overlapping an element in row-major window order.
* ``global_avg_pool`` / ``global_max_pool`` are ``mean`` / ``max`` over axes
  (1, 2) and take those ops' gradients (``max`` shares the gradient among
  tied maxima, as TensorFlow's ``reduce_max``, where ``max_pool2d`` gives it
  to the first); ``flatten`` reshapes ``[N, ...]`` to ``[N, prod(...)]``.

Pool ops are float only (f32, f64).  Native code: ``compiler/codegen/pool.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..ir.core import Op
from ..ir.types import Dim, TensorType
from .base import COMPOSITE, OPS, OTHER, ShapeError, attr, define, required, shape_str
from .conv import conv_padding

LIMIT = 1 << 31         # pool sizes, strides and padding stay below this (i64 arithmetic in kernels)


@dataclass(frozen=True)
class Window:
    """A pooling window resolved against an input's ``H, W``: what kernels and references use."""

    pool: tuple[int, int]               # ph, pw
    strides: tuple[int, int]            # sh, sw
    padding: tuple[int, int, int, int]  # top, bottom, left, right
    size: tuple[int, int]               # the input's H, W
    out: tuple[int, int]                # OH, OW

    @property
    def elements(self) -> int:
        """Positions in one window, ``ph * pw``."""
        return self.pool[0] * self.pool[1]


def _pair(value: Sequence[int], what: str) -> tuple[int, int]:
    if len(value) != 2:
        raise ShapeError(f"{what} needs 2 values (height, width), got {list(value)}")
    return value[0], value[1]


def _check_range(values: Sequence[int], what: str, least: int) -> None:
    for v in values:
        if not least <= v < LIMIT:
            raise ShapeError(f"{what} must lie in [{least}, 2^31), got {list(values)}")


def make_window(size: tuple[Dim, Dim], pool_size: Sequence[int], strides: Sequence[int] | None,
                padding: Sequence[int]) -> Window:
    """The window of a pool op over spatial dims ``size``; :class:`ShapeError` when it does not fit."""
    pool = _pair(pool_size, "pool_size")
    _check_range(pool, "pool_size", 1)
    steps = pool if strides is None else _pair(strides, "strides")
    _check_range(steps, "strides", 1)
    if len(padding) != 4:
        raise ShapeError(f"padding needs 4 values (top, bottom, left, right), got {list(padding)}")
    _check_range(padding, "padding", 0)
    h, w = size
    if not (isinstance(h, int) and isinstance(w, int)):
        raise ShapeError(f"pooling needs static height and width, got {shape_str(size)}")
    top, bottom, left, right = padding
    if h + top + bottom < pool[0] or w + left + right < pool[1]:
        raise ShapeError(f"the {pool[0]}x{pool[1]} window does not fit the padded {h + top + bottom}x"
                         f"{w + left + right} image ({h}x{w} with padding {list(padding)})")
    out = ((h + top + bottom - pool[0]) // steps[0] + 1, (w + left + right - pool[1]) // steps[1] + 1)
    return Window(pool, steps, (top, bottom, left, right), (h, w), out)


def resolve_padding(padding: str | Sequence[Sequence[int]], size: tuple[int, int],
                    pool_size: Sequence[int], strides: Sequence[int] | None = None,
                    dilation: Sequence[int] = (1, 1)) -> tuple[int, int, int, int]:
    """Keras' ``padding`` as the ops' explicit ``(top, bottom, left, right)``: the
    convolutions' rule (:func:`compiler.ops.conv.conv_padding`, TensorFlow's ``"same"``)
    for a window of ``pool_size`` with ``strides`` defaulting to the pool size."""
    pool = _pair(pool_size, "pool_size")
    steps = pool if strides is None else _pair(strides, "strides")
    return conv_padding(padding, size, pool, steps, _pair(dilation, "dilation"))


_WINDOW_ATTRS = {"pool_size": required("ints"), "strides": attr("optional_ints", None),
                 "padding": attr("ints", (0, 0, 0, 0))}


def window_of(op: Op) -> Window:
    """The window of pool op ``op`` (its input size: ``x``'s, or ``input_size`` for avg grads)."""
    a = op.attrs
    size = a["input_size"] if "input_size" in a else op.operands[0].type.shape[1:3]
    return make_window(tuple(size), a["pool_size"], a["strides"], a["padding"])


def _image(t: TensorType, what: str) -> None:
    if t.rank != 4:
        raise ShapeError(f"{what} must be an NHWC image batch [N, H, W, C], got {t.dsl_str()}")
    if not t.dtype.is_float:
        raise ShapeError(f"{what} must be f32 or f64, got {t.dsl_str()}")


def _pooled(x: TensorType, w: Window) -> TensorType:
    return x.with_shape((x.shape[0], *w.out, x.shape[3]))


def _pool_rule(x: TensorType, *, pool_size, strides, padding, **_attrs) -> TensorType:
    _image(x, "the input")
    return _pooled(x, make_window(x.shape[1:3], pool_size, strides, padding))


def _same_batch(x: TensorType, other: TensorType, expected: tuple[Dim, ...], what: str) -> None:
    """``other`` has ``x``'s dtype and the shape ``expected``."""
    _image(other, what)
    if other.dtype != x.dtype or other.shape != expected:
        raise ShapeError(f"{what} {other.dsl_str()} does not match: expected "
                         f"{x.dtype.dsl_name}{shape_str(expected)}")


def _grad_rule(x: TensorType, dy: TensorType, *, pool_size, strides, padding) -> TensorType:
    """max_pool2d_grad(x, dy): dy is the pooled shape, the result x's."""
    _image(x, "the input")
    pooled = _pooled(x, make_window(x.shape[1:3], pool_size, strides, padding))
    _same_batch(x, dy, pooled.shape, "the output gradient")
    return x


def _gather_rule(x: TensorType, g: TensorType, *, pool_size, strides, padding) -> TensorType:
    """max_pool2d_gather(x, g): g has x's shape, the result is pooled."""
    _image(x, "the input")
    _same_batch(x, g, x.shape, "the gathered operand")
    return _pooled(x, make_window(x.shape[1:3], pool_size, strides, padding))


def _avg_grad_rule(dy: TensorType, *, pool_size, strides, padding, count_include_pad,
                   input_size) -> TensorType:
    _image(dy, "the output gradient")
    size = _pair(input_size, "input_size")
    _check_range(size, "input_size", 0)
    w = make_window(size, pool_size, strides, padding)
    if tuple(dy.shape[1:3]) != w.out:
        raise ShapeError(f"the output gradient {dy.dsl_str()} does not match the "
                         f"{w.out[0]}x{w.out[1]} output of pooling a {size[0]}x{size[1]} image")
    return dy.with_shape((dy.shape[0], *size, dy.shape[3]))


max_pool2d = define(
    "max_pool2d", operands=("x",), kind=OTHER, infer=_pool_rule, attrs=dict(_WINDOW_ATTRS),
    doc="""Max pooling of NHWC images: each window's first maximum (row-major window order, NaN
    largest); padding is never read, a window wholly in the padding gives -inf.

    %1 = "dl.max_pool2d"(%0) {padding = [0, 0, 0, 0], pool_size = [2, 2], strides = [2, 2]} : (tensor<?x28x28x32xf32, "N">) -> tensor<?x14x14x32xf32, "N">
    """)  # noqa: E501 (the IR example)

avg_pool2d = define(
    "avg_pool2d", operands=("x",), kind=OTHER, infer=_pool_rule,
    attrs={**_WINDOW_ATTRS, "count_include_pad": attr("bool", False)},
    doc="""Average pooling of NHWC images: each window's sum over the image divided by the elements
    summed (default, as Keras) or by the window size (``count_include_pad``); a window wholly in
    the padding gives 0.

    %1 = "dl.avg_pool2d"(%0) {count_include_pad = false, padding = [0, 1, 0, 1], pool_size = [2, 2], strides = [2, 2]} : (tensor<?x5x5x3xf32, "N">) -> tensor<?x3x3x3xf32, "N">
    """)  # noqa: E501 (the IR example)

max_pool2d_grad = define(
    "max_pool2d_grad", operands=("x", "dy"), kind=OTHER, infer=_grad_rule, attrs=dict(_WINDOW_ATTRS),
    doc="""The gradient of ``max_pool2d``: ``dy`` of each window added at its first maximum in ``x``
    (windows in row-major order); zero elsewhere.

    %2 = "dl.max_pool2d_grad"(%0, %1) {padding = [0, 0, 0, 0], pool_size = [2, 2], strides = [2, 2]} : (tensor<?x4x4x8xf32, "N">, tensor<?x2x2x8xf32, "N">) -> tensor<?x4x4x8xf32, "N">
    """)  # noqa: E501 (the IR example)

max_pool2d_gather = define(
    "max_pool2d_gather", operands=("x", "g"), kind=OTHER, infer=_gather_rule, attrs=dict(_WINDOW_ATTRS),
    doc="""``g`` read at each window's first maximum in ``x`` (0 for a window wholly in the
    padding): the adjoint of ``max_pool2d_grad`` in ``dy``.

    %2 = "dl.max_pool2d_gather"(%0, %1) {padding = [0, 0, 0, 0], pool_size = [2, 2], strides = [2, 2]} : (tensor<?x4x4x8xf32, "N">, tensor<?x4x4x8xf32, "N">) -> tensor<?x2x2x8xf32, "N">
    """)  # noqa: E501 (the IR example)

avg_pool2d_grad = define(
    "avg_pool2d_grad", operands=("dy",), kind=OTHER, infer=_avg_grad_rule,
    attrs={**_WINDOW_ATTRS, "count_include_pad": attr("bool", False), "input_size": required("ints")},
    doc="""The gradient of ``avg_pool2d`` over ``input_size`` images: ``dy / count`` of each window
    added to each of its elements inside the image.

    %1 = "dl.avg_pool2d_grad"(%0) {count_include_pad = false, input_size = [4, 4], padding = [0, 0, 0, 0], pool_size = [2, 2], strides = [2, 2]} : (tensor<?x2x2x8xf32, "N">) -> tensor<?x4x4x8xf32, "N">
    """)  # noqa: E501 (the IR example)

# the ops with a window, computed by codegen's ``pool`` kernel family
WINDOWED = frozenset({"max_pool2d", "avg_pool2d", "max_pool2d_grad", "max_pool2d_gather", "avg_pool2d_grad"})
for _name in sorted(WINDOWED):
    OPS[_name].lowers_to("pool")


# ---------------------------------------------------------------------------
# Reference semantics: numpy, one window offset at a time over every window


def _span(k: int, pad: int, stride: int, size: int, out: int) -> tuple[slice, slice] | None:
    """The output positions whose window reads an image position at offset ``k`` (along one
    axis), and those image positions, as slices; None when there are none."""
    lo = max(0, -(-(pad - k) // stride))             # first o with o*stride - pad + k >= 0
    hi = min(out, -(-(size + pad - k) // stride))    # first o with o*stride - pad + k >= size
    if lo >= hi:
        return None
    first = lo * stride - pad + k
    return slice(lo, hi), slice(first, first + (hi - lo - 1) * stride + 1, stride)


def _reaching(w: Window, axis: int) -> list[int]:
    """The window offsets along ``axis`` at which some window reads inside the image, in
    order (never more than the window's or the image's size, however large the padding)."""
    pool, stride, pad, size = w.pool[axis], w.strides[axis], w.padding[2 * axis], w.size[axis]
    seen: set[int] = set()
    for o in range(w.out[axis]):
        start = o * stride - pad
        seen.update(range(max(0, -start), min(pool, size - start)))
    return sorted(seen)


def _offsets(w: Window, reverse: bool = False) -> Iterator[tuple[int, tuple, tuple]]:
    """``(k, out_index, in_index)`` for each window offset ``k = kh*pw + kw`` reading the
    image, in row-major window order: ``a[in_index]`` holds, for the windows ``out_index`` of
    the output, their element at offset ``k``.  ``reverse``: last offset first, which visits
    the windows overlapping one image element in row-major window order."""
    (sh, sw), (top, _, left, _) = w.strides, w.padding
    offsets = [(kh, kw) for kh in _reaching(w, 0) for kw in _reaching(w, 1)]
    for kh, kw in reversed(offsets) if reverse else offsets:
        rows = _span(kh, top, sh, w.size[0], w.out[0])
        cols = _span(kw, left, sw, w.size[1], w.out[1])
        if rows is not None and cols is not None:
            yield kh * w.pool[1] + kw, (slice(None), rows[0], cols[0]), (slice(None), rows[1], cols[1])


def _out_array(x: np.ndarray, w: Window, fill: float) -> np.ndarray:
    return np.full((x.shape[0], *w.out, x.shape[3]), fill, dtype=x.dtype)


def first_max(x: np.ndarray, w: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per window and channel: the first maximum (NaN largest; -inf for an empty window),
    its offset ``k`` in the window, and whether the window holds any image element."""
    best = _out_array(x, w, -math.inf)
    where = np.zeros(best.shape, np.int64)
    found = np.zeros(best.shape, bool)
    for k, o, i in _offsets(w):
        v, b = x[i], best[o]
        # v beats b when v > b or v is NaN (not v <= b), unless b is already NaN
        take = ~found[o] | (~(v <= b) & ~np.isnan(b))
        best[o] = np.where(take, v, b)
        where[o] = np.where(take, k, where[o])
        found[o] = True
    return best, where, found


def window_average(x: np.ndarray, w: Window, count_include_pad: bool) -> np.ndarray:
    total = _out_array(x, w, -0.0)
    count = np.zeros((1, *w.out, 1), x.dtype)
    for _, o, i in _offsets(w):
        total[o] += x[i]
        count[o] += 1
    return total / divisor(w, count, count_include_pad)


def divisor(w: Window, count: np.ndarray, count_include_pad: bool) -> np.ndarray:
    """What a window's sum is divided by: ``ph * pw``, or its image elements (at least 1)."""
    return np.full_like(count, w.elements) if count_include_pad else np.maximum(count, 1)


@max_pool2d.def_reference
def _(x, *, pool_size, strides, padding):
    return first_max(x, make_window(x.shape[1:3], pool_size, strides, padding))[0]


@avg_pool2d.def_reference
def _(x, *, pool_size, strides, padding, count_include_pad):
    return window_average(x, make_window(x.shape[1:3], pool_size, strides, padding), count_include_pad)


@max_pool2d_gather.def_reference
def _(x, g, *, pool_size, strides, padding):
    w = make_window(x.shape[1:3], pool_size, strides, padding)
    _, where, found = first_max(x, w)
    out = _out_array(x, w, 0.0)
    for k, o, i in _offsets(w):
        out[o] = np.where(found[o] & (where[o] == k), g[i], out[o])
    return out


@max_pool2d_grad.def_reference
def _(x, dy, *, pool_size, strides, padding):
    w = make_window(x.shape[1:3], pool_size, strides, padding)
    _, where, found = first_max(x, w)
    dx = np.zeros_like(x)
    for k, o, i in _offsets(w, reverse=True):
        view = dx[i]
        np.add(view, dy[o], out=view, where=found[o] & (where[o] == k))
    return dx


@avg_pool2d_grad.def_reference
def _(dy, *, pool_size, strides, padding, count_include_pad, input_size):
    w = make_window(tuple(input_size), pool_size, strides, padding)
    count = np.zeros((1, *w.out, 1), dy.dtype)
    for _, o, _ in _offsets(w):
        count[o] += 1
    share = dy / divisor(w, count, count_include_pad)
    dx = np.zeros((dy.shape[0], *w.size, dy.shape[3]), dy.dtype)
    for _, o, i in _offsets(w, reverse=True):
        dx[i] += share[o]
    return dx


@max_pool2d.def_vjp
def _(b, op, ct):
    # the gradient goes to each window's first maximum
    return [b.max_pool2d_grad(op.operands[0], ct, **op.attrs)]


def _zero_like(b, v):
    """Zeros of ``v``'s type: ``x`` only chooses which element is picked, so the derivative
    in ``x`` is zero almost everywhere."""
    return b.broadcast_to(b.constant(0.0, v.type.dtype), shape=v.type.shape)


@max_pool2d_grad.def_vjp
def _(b, op, ct):
    # linear in dy, whose adjoint reads ct at the first maxima; constant in x (almost everywhere)
    x = op.operands[0]
    return [_zero_like(b, x), b.max_pool2d_gather(x, ct, **op.attrs)]


@max_pool2d_gather.def_vjp
def _(b, op, ct):
    # linear in g, whose adjoint routes ct to the first maxima; constant in x (almost everywhere)
    x = op.operands[0]
    return [_zero_like(b, x), b.max_pool2d_grad(x, ct, **op.attrs)]


@avg_pool2d.def_vjp
def _(b, op, ct):
    # avg_pool2d is linear: its adjoint spreads ct / count over each window
    size = op.operands[0].type.shape[1:3]
    return [b.avg_pool2d_grad(ct, input_size=size, **op.attrs)]


@avg_pool2d_grad.def_vjp
def _(b, op, ct):
    # avg_pool2d_grad is avg_pool2d's adjoint, so its adjoint is avg_pool2d
    attrs = {k: v for k, v in op.attrs.items() if k != "input_size"}
    return [b.avg_pool2d(ct, **attrs)]


# ---------------------------------------------------------------------------
# Global pooling and flatten: composites


def _global_rule(x: TensorType, *, keepdims: bool) -> TensorType:
    _image(x, "the input")
    n, _, _, c = x.shape
    return x.with_shape((n, 1, 1, c) if keepdims else (n, c))


def _global_max_rule(x: TensorType, *, keepdims: bool) -> TensorType:
    out = _global_rule(x, keepdims=keepdims)
    if 0 in x.shape[1:3]:
        raise ShapeError(f"reduces over H and W of {x.dsl_str()}, which hold no pixels: there is no "
                         "extremum of no elements (numpy raises)")
    return out


def _global(name: str, reduction: str, doc: str):
    op = define(name, operands=("x",), kind=COMPOSITE,
                infer=_global_max_rule if reduction == "max" else _global_rule,
                attrs={"keepdims": attr("bool", False)}, doc=doc)

    @op.def_reference
    def _(x, *, keepdims):
        # an image without pixels: the mean is 0 / 0 = nan (the max is a shape error)
        if reduction == "max":
            return np.max(x, axis=(1, 2), keepdims=keepdims)
        with np.errstate(invalid="ignore"):
            return np.sum(x, axis=(1, 2), keepdims=keepdims) / np.asarray(x.shape[1] * x.shape[2], x.dtype)

    @op.def_decompose
    def _(b, op):
        # global pooling = the reduction over H and W
        return [b.emit(reduction, op.operands[0], axes=(1, 2), keepdims=op.attrs["keepdims"])]

    @op.def_vjp
    def _(b, op, ct):
        # the reduction's own gradient
        as_reduction = Op(reduction, list(op.operands), list(op.results),
                          {"axes": (1, 2), "keepdims": op.attrs["keepdims"]}, op.loc)
        return OPS[reduction].vjp(b, as_reduction, ct)

    return op


global_avg_pool = _global("global_avg_pool", "mean", """Mean over H and W of NHWC images: ``[N, C]``
    (``[N, 1, 1, C]`` with ``keepdims``); ``mean`` over axes (1, 2).

    %1 = "dl.global_avg_pool"(%0) {keepdims = false} : (tensor<?x7x7x64xf32, "N">) -> tensor<?x64xf32, "N">
    """)

global_max_pool = _global("global_max_pool", "max", """Maximum over H and W of NHWC images: ``[N, C]``
    (``[N, 1, 1, C]`` with ``keepdims``); ``max`` over axes (1, 2), the gradient shared among ties.

    %1 = "dl.global_max_pool"(%0) {keepdims = true} : (tensor<?x7x7x64xf32, "N">) -> tensor<?x1x1x64xf32, "N">
    """)


def _flatten_rule(x: TensorType) -> TensorType:
    if x.rank == 0:
        raise ShapeError("flatten needs a batch axis (rank >= 1)")
    rest = x.shape[1:]
    if not all(isinstance(d, int) for d in rest):
        raise ShapeError(f"flatten needs static dims after the batch axis, got {x.dsl_str()}")
    return x.with_shape((x.shape[0], math.prod(rest)))


flatten = define(
    "flatten", operands=("x",), kind=COMPOSITE, infer=_flatten_rule,
    doc="""``[N, d1, .., dk] -> [N, d1 * .. * dk]`` in row-major order, keeping the batch axis
    (Keras ``Flatten``); the dims after the first must be static.

    %1 = "dl.flatten"(%0) : (tensor<?x7x7x32xf32, "N">) -> tensor<?x1568xf32, "N">
    """)


@flatten.def_reference
def _(x):
    return np.reshape(x, (x.shape[0], math.prod(x.shape[1:]))).copy()


@flatten.def_decompose
def _(b, op):
    # flatten is a reshape keeping the batch axis
    return [b.reshape(op.operands[0], shape=op.result.type.shape)]


@flatten.def_vjp
def _(b, op, ct):
    # reshape back
    return [b.reshape(ct, shape=op.operands[0].type.shape)]
