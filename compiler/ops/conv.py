"""Convolutions: ``conv2d``, its two gradients as ops of their own, ``conv1d`` and
``conv2d_transpose``.

**Layout.**  Images are NHWC (``[N, H, W, C]``, channels last and contiguous) and kernels
HWIO (``[KH, KW, C / groups, OC]``), as Keras and TensorFlow store them on the CPU: a
kernel reshaped to ``[KH * KW * C / groups, OC]`` is already the row-major B operand of
the GEMM a convolution is (docs/codegen.md, "Convolution").

**Geometry.**  ``padding`` is ``(top, bottom, left, right)`` zeros around the image,
``strides`` and ``dilations`` are ``(vertical, horizontal)``; output rows
``OH = (H + top + bottom - dilation_h * (KH - 1) - 1) // stride_h + 1`` (and the same for
columns).  ``groups`` splits the channels: output channel ``o`` sees input channels
``[g * C/groups, (g + 1) * C/groups)`` of its group ``g = o // (OC/groups)``;
``groups = C`` is a depthwise convolution.  :func:`conv_padding` resolves Keras'
``"valid"`` / ``"same"`` (and explicit ``[[t, b], [l, r]]``) to the four numbers.

Only the batch dim may be symbolic: H, W, C, the kernel and OC are static (the output
size depends on them).

**Gradients.**  ``conv2d(x, w) = y`` has ``dx = conv2d_backprop_input(dy, w)`` (a
transposed convolution) and ``dw = conv2d_backprop_filter(x, dy)`` (a correlation of the
input with the output gradient); the three ops are bilinear, and each one's VJP is written
in the other two, so gradients of gradients stay in this closed family and every one of
them gets the same native kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..ir.types import Dim, DType, TensorType
from .base import COMPOSITE, OTHER, ShapeError, attr, define, dim_str, required, same_dtype

# ---------------------------------------------------------------------------
# Geometry


def out_size(size: int, kernel: int, stride: int, dilation: int, lo: int, hi: int) -> int:
    """Output length of a convolution along one axis (may be <= 0: no valid position)."""
    return (size + lo + hi - dilation * (kernel - 1) - 1) // stride + 1


@dataclass(frozen=True, slots=True)
class ConvShape:
    """Everything about one 2-D convolution's shapes: the batch ``n`` (maybe a symbol), the
    image ``h x w`` with ``c`` channels, the kernel ``kh x kw``, ``oc`` output channels,
    the output ``oh x ow``, and the attributes.  The same object describes ``conv2d`` and
    both its gradients."""

    n: Dim
    h: int
    w: int
    c: int
    kh: int
    kw: int
    oc: int
    oh: int
    ow: int
    strides: tuple[int, int]
    padding: tuple[int, int, int, int]
    dilations: tuple[int, int]
    groups: int

    @property
    def cg(self) -> int:
        """Input channels per group (the kernel's third dim)."""
        return self.c // self.groups

    @property
    def ocg(self) -> int:
        """Output channels per group."""
        return self.oc // self.groups

    @property
    def x_shape(self) -> tuple[Dim, ...]:
        return (self.n, self.h, self.w, self.c)

    @property
    def w_shape(self) -> tuple[int, ...]:
        return (self.kh, self.kw, self.cg, self.oc)

    @property
    def y_shape(self) -> tuple[Dim, ...]:
        return (self.n, self.oh, self.ow, self.oc)

    @property
    def macs_per_image(self) -> int:
        """Multiply-adds per image, the same for the op and both its gradients."""
        return self.oh * self.ow * self.oc * self.kh * self.kw * self.cg


def _pair(name: str, value: Sequence[int], n: int, least: int) -> tuple[int, ...]:
    value = tuple(value)
    if len(value) != n:
        raise ShapeError(f"'{name}' needs {n} values, got {list(value)}")
    if any(v < least for v in value):
        raise ShapeError(f"'{name}' must be >= {least}, got {list(value)}")
    return value


def _static(t: TensorType, what: str, axes: Sequence[int]) -> None:
    for a in axes:
        if not isinstance(t.shape[a], int):
            raise ShapeError(f"{what} {t.dsl_str()} must have static dims (only the batch, dim 0, "
                             f"may be symbolic); dim {a} is '{t.shape[a]}'")


def _float_rank(t: TensorType, what: str, rank: int, layout: str) -> None:
    if not t.dtype.is_float:
        raise ShapeError(f"expects float operands (f32 or f64), got {what} {t.dsl_str()}")
    if t.rank != rank:
        raise ShapeError(f"{what} must have rank {rank} ({layout}), got {t.dsl_str()}")


def conv_shape(n: Dim, image: tuple[int, int, int], kernel: tuple[int, int, int, int], *,
               strides: Sequence[int], padding: Sequence[int], dilations: Sequence[int],
               groups: int) -> ConvShape:
    """Check a convolution's geometry and compute its output size.

    ``image`` is ``(H, W, C)``, ``kernel`` ``(KH, KW, C / groups, OC)``.  Raises
    :class:`ShapeError` for a channel mismatch, groups that do not divide the channels,
    bad attributes, or no valid output position."""
    h, w, c = image
    kh, kw, cg, oc = kernel
    strides = _pair("strides", strides, 2, 1)
    dilations = _pair("dilations", dilations, 2, 1)
    padding = _pair("padding", padding, 4, 0)
    if groups < 1:
        raise ShapeError(f"'groups' must be >= 1, got {groups}")
    if min(kh, kw, cg, oc) < 1:
        raise ShapeError(f"the kernel [{kh}, {kw}, {cg}, {oc}] has an empty dim")
    if c % groups:
        raise ShapeError(f"groups = {groups} does not divide the {c} input channels")
    if oc % groups:
        raise ShapeError(f"groups = {groups} does not divide the kernel's {oc} output channels")
    if cg * groups != c:
        want = f"{cg} x {groups} groups = {cg * groups}" if groups > 1 else str(cg)
        raise ShapeError(f"channel mismatch: the input has {c} channels, the kernel expects {want}")
    oh = out_size(h, kh, strides[0], dilations[0], padding[0], padding[1])
    ow = out_size(w, kw, strides[1], dilations[1], padding[2], padding[3])
    if oh < 1 or ow < 1:
        ext = (dilations[0] * (kh - 1) + 1, dilations[1] * (kw - 1) + 1)
        raise ShapeError(f"the kernel's dilated extent {ext[0]}x{ext[1]} exceeds the padded input "
                         f"{h + padding[0] + padding[1]}x{w + padding[2] + padding[3]}: "
                         f"no output position")
    return ConvShape(n, h, w, c, kh, kw, oc, oh, ow, strides, padding, dilations, groups)


def _geometry(attrs: dict) -> dict:
    return {k: attrs[k] for k in ("strides", "padding", "dilations", "groups")}


def shape_of(op) -> ConvShape:
    """The :class:`ConvShape` of a ``conv2d``, ``conv2d_backprop_input`` or
    ``conv2d_backprop_filter`` op (its operands and result are already checked)."""
    geo = _geometry(op.attrs)
    if op.name == "conv2d":
        x, w = op.operands[0].type, op.operands[1].type
        return conv_shape(x.shape[0], x.shape[1:], w.shape, **geo)
    if op.name == "conv2d_backprop_input":
        dx, w = op.result.type, op.operands[1].type
        return conv_shape(dx.shape[0], dx.shape[1:], w.shape, **geo)
    assert op.name == "conv2d_backprop_filter", op.name
    x, dw = op.operands[0].type, op.result.type
    return conv_shape(x.shape[0], x.shape[1:], dw.shape, **geo)


# ---------------------------------------------------------------------------
# Padding conveniences for front ends ("valid", "same", [[t, b], [l, r]])


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's / Keras' ``"same"`` padding along one axis: the output has
    ``ceil(size / stride)`` positions; the extra zero, when the total is odd, goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def conv_padding(padding: str | Sequence[Sequence[int]], image_hw: Sequence[int],
                 kernel_hw: Sequence[int], strides: Sequence[int] = (1, 1),
                 dilations: Sequence[int] = (1, 1)) -> tuple[int, int, int, int]:
    """The ``padding`` attribute for ``"valid"`` (none), ``"same"`` (:func:`same_padding`
    per axis) or explicit ``[[top, bottom], [left, right]]``.  Raises :class:`ShapeError`."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            top, bottom = same_padding(image_hw[0], kernel_hw[0], strides[0], dilations[0])
            left, right = same_padding(image_hw[1], kernel_hw[1], strides[1], dilations[1])
            return (top, bottom, left, right)
        raise ShapeError(f"padding must be 'valid', 'same' or [[top, bottom], [left, right]], got '{padding}'")
    rows = [tuple(r) for r in padding]
    if len(rows) != 2 or any(len(r) != 2 for r in rows) or any(v < 0 for r in rows for v in r):
        raise ShapeError(f"explicit padding must be [[top, bottom], [left, right]] of numbers >= 0, "
                         f"got {padding}")
    return (*rows[0], *rows[1])


def transpose_padding(padding: str | Sequence[Sequence[int]], image_hw: Sequence[int],
                      kernel_hw: Sequence[int], strides: Sequence[int] = (1, 1),
                      dilations: Sequence[int] = (1, 1)) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """``(padding, output_padding)`` of a ``conv2d_transpose`` for Keras' modes: ``"valid"``
    gives ``(H - 1) * stride + dilation * (KH - 1) + 1`` rows, ``"same"`` ``H * stride``."""
    if isinstance(padding, str) and padding == "same":
        pads, extra = [], []
        for k, s, d in zip(kernel_hw, strides, dilations):
            total = max(d * (k - 1) + 1 - s, 0)
            pads += [total // 2, total - total // 2]
            extra.append(max(s - d * (k - 1) - 1, 0))
        return (pads[0], pads[1], pads[2], pads[3]), (extra[0], extra[1])
    return conv_padding(padding, image_hw, kernel_hw, strides, dilations), (0, 0)


# ---------------------------------------------------------------------------
# numpy reference: the sum over kernel taps of strided slices of the padded image


def _tap(xp: np.ndarray, s: ConvShape, i: int, j: int) -> np.ndarray:
    """``xp[:, oy*sh + i*dh, ox*sw + j*dw, :]`` for every output position: the image
    pixels tap ``(i, j)`` of the kernel meets, ``[N, OH, OW, C]`` (a view)."""
    (sh, sw), (dh, dw) = s.strides, s.dilations
    return xp[:, i * dh: i * dh + (s.oh - 1) * sh + 1: sh, j * dw: j * dw + (s.ow - 1) * sw + 1: sw, :]


def _padded_zeros(s: ConvShape, n: int, dtype) -> np.ndarray:
    top, bottom, left, right = s.padding
    return np.zeros((n, s.h + top + bottom, s.w + left + right, s.c), dtype)


def _grouped(a: np.ndarray, groups: int) -> np.ndarray:
    """``[.., C]`` as ``[.., groups, C / groups]``."""
    return a.reshape(*a.shape[:-1], groups, a.shape[-1] // groups)


def _kernel_taps(w: np.ndarray, s: ConvShape) -> np.ndarray:
    """``w`` as ``[KH, KW, C/groups, groups, OC/groups]`` in float64."""
    return w.astype(np.float64).reshape(s.kh, s.kw, s.cg, s.groups, s.ocg)


def conv2d_reference(x: np.ndarray, w: np.ndarray, s: ConvShape) -> np.ndarray:
    """``y[n, oy, ox, o] = sum_{i, j, c} xpad[n, oy*sh + i*dh, ox*sw + j*dw, g*Cg + c] w[i, j, c, o]``
    (``g`` the group of ``o``), accumulated in float64."""
    n = x.shape[0]
    top, _, left, _ = s.padding
    xp = _padded_zeros(s, n, np.float64)
    xp[:, top:top + s.h, left:left + s.w] = x
    wt = _kernel_taps(w, s)
    y = np.zeros((n, s.oh, s.ow, s.groups, s.ocg))
    for i in range(s.kh):
        for j in range(s.kw):
            y += np.einsum("nyxgc,cgo->nyxgo", _grouped(_tap(xp, s, i, j), s.groups), wt[i, j])
    return y.reshape(n, s.oh, s.ow, s.oc).astype(x.dtype)


def backprop_input_reference(dy: np.ndarray, w: np.ndarray, s: ConvShape) -> np.ndarray:
    """The adjoint of :func:`conv2d_reference` in ``x``: each output gradient scattered back
    through every tap, ``dxpad[.., oy*sh + i*dh, ox*sw + j*dw, g*Cg + c] += dy[.., o] w[i, j, c, o]``,
    then the padding cut off."""
    n = dy.shape[0]
    top, _, left, _ = s.padding
    dxp = _padded_zeros(s, n, np.float64)
    wt = _kernel_taps(w, s)
    dyg = _grouped(dy.astype(np.float64), s.groups)
    for i in range(s.kh):
        for j in range(s.kw):
            _grouped(_tap(dxp, s, i, j), s.groups)[...] += np.einsum("nyxgo,cgo->nyxgc", dyg, wt[i, j])
    return dxp[:, top:top + s.h, left:left + s.w].astype(dy.dtype)


def backprop_filter_reference(x: np.ndarray, dy: np.ndarray, s: ConvShape) -> np.ndarray:
    """The adjoint of :func:`conv2d_reference` in ``w``:
    ``dw[i, j, c, o] = sum_{n, oy, ox} xpad[n, oy*sh + i*dh, ox*sw + j*dw, g*Cg + c] dy[n, oy, ox, o]``."""
    n = x.shape[0]
    top, _, left, _ = s.padding
    xp = _padded_zeros(s, n, np.float64)
    xp[:, top:top + s.h, left:left + s.w] = x
    dyg = _grouped(dy.astype(np.float64), s.groups)
    dw = np.zeros((s.kh, s.kw, s.cg, s.groups, s.ocg))
    for i in range(s.kh):
        for j in range(s.kw):
            dw[i, j] = np.einsum("nyxgc,nyxgo->cgo", _grouped(_tap(xp, s, i, j), s.groups), dyg)
    return dw.reshape(s.w_shape).astype(x.dtype)


# ---------------------------------------------------------------------------
# conv2d


def _example(*parts: str) -> str:
    """An op's IR example (one line of IR text, written in parts) ending its docstring."""
    return "    " + "".join(parts) + "\n    "


CONV_ATTRS = {"strides": attr("ints", (1, 1)), "padding": attr("ints", (0, 0, 0, 0)),
              "dilations": attr("ints", (1, 1)), "groups": attr("int", 1)}


def _conv2d_rule(x: TensorType, w: TensorType, **geo) -> TensorType:
    _float_rank(x, "the input", 4, "[N, H, W, C]")
    _float_rank(w, "the kernel", 4, "[KH, KW, C / groups, OC]")
    t = same_dtype([x, w])
    _static(x, "the input", (1, 2, 3))
    _static(w, "the kernel", (0, 1, 2, 3))
    s = conv_shape(x.shape[0], x.shape[1:], w.shape, **geo)
    return TensorType(t.dtype, s.y_shape)


conv2d = define(
    "conv2d", operands=("x", "w"), kind=OTHER, infer=_conv2d_rule, attrs=dict(CONV_ATTRS),
    doc="""2-D convolution (cross-correlation, as Keras): NHWC input ``[N, H, W, C]``, HWIO
    kernel ``[KH, KW, C / groups, OC]`` -> ``[N, OH, OW, OC]``; ``padding`` is ``(top, bottom,
    left, right)`` zeros, ``OH = (H + top + bottom - dilation (KH - 1) - 1) // stride + 1``.

    ``y[n, oy, ox, o] = sum_{i, j, c} xpad[n, oy*sh + i*dh, ox*sw + j*dw, g*C/groups + c] w[i, j, c, o]``
    with ``g = o // (OC / groups)``; ``groups = C`` is depthwise.

    """ + _example('%2 = "dl.conv2d"(%0, %1) ',
                   '{dilations = [1, 1], groups = 1, padding = [1, 1, 1, 1], strides = [1, 1]}',
                   ': (tensor<?x28x28x1xf32, "N">, tensor<3x3x1x8xf32>) -> tensor<?x28x28x8xf32, "N">'))


@conv2d.def_reference
def _(x, w, **geo):
    return conv2d_reference(x, w, conv_shape(x.shape[0], x.shape[1:], w.shape, **geo))


@conv2d.def_vjp
def _(b, op, ct):
    # y = conv(x, w):  dx = conv^T(dy, w) (backprop_input),  dw = corr(x, dy) (backprop_filter)
    x, w = op.operands
    geo = _geometry(op.attrs)
    dx = b.conv2d_backprop_input(ct, w, input_size=x.type.shape[1:3], **geo)
    dw = b.conv2d_backprop_filter(x, ct, filter_size=w.type.shape[0:2], **geo)
    return [dx, dw]


conv2d.lowers_to("conv")


# ---------------------------------------------------------------------------
# conv2d_backprop_input: the gradient of conv2d in its input (a transposed convolution)


def _check_output(s: ConvShape, dy: TensorType) -> None:
    if tuple(dy.shape[1:3]) != (s.oh, s.ow):
        raise ShapeError(f"the output gradient {dy.dsl_str()} has {dy.shape[1]}x{dy.shape[2]} "
                         f"positions, but the convolution gives {s.oh}x{s.ow}")


def _backprop_input_rule(dy: TensorType, w: TensorType, *, input_size: tuple[int, ...], **geo) -> TensorType:
    _float_rank(dy, "the output gradient", 4, "[N, OH, OW, OC]")
    _float_rank(w, "the kernel", 4, "[KH, KW, C / groups, OC]")
    t = same_dtype([dy, w])
    _static(dy, "the output gradient", (1, 2, 3))
    _static(w, "the kernel", (0, 1, 2, 3))
    size = _pair("input_size", input_size, 2, 1)
    if dy.shape[3] != w.shape[3]:
        raise ShapeError(f"the output gradient {dy.dsl_str()} has {dy.shape[3]} channels, "
                         f"the kernel {w.dsl_str()} {w.shape[3]}")
    s = conv_shape(dy.shape[0], (*size, w.shape[2] * geo["groups"]), w.shape, **geo)
    _check_output(s, dy)
    return TensorType(t.dtype, s.x_shape)


conv2d_backprop_input = define(
    "conv2d_backprop_input", operands=("dy", "w"), kind=OTHER, infer=_backprop_input_rule,
    attrs={"input_size": required("ints"), **CONV_ATTRS},
    doc="""The gradient of ``conv2d`` with respect to its input (a transposed convolution):
    ``[N, OH, OW, OC]`` and the kernel ``[KH, KW, C / groups, OC]`` -> ``[N, H, W, C]`` with
    ``input_size = (H, W)`` and the forward convolution's attributes.

    ``dx[n, y, x, g*C/groups + c] = sum dy[n, oy, ox, o] w[i, j, c, o]`` over the taps with
    ``y + top = oy*sh + i*dh``, ``x + left = ox*sw + j*dw`` and ``o`` in group ``g``.

    """ + _example('%2 = "dl.conv2d_backprop_input"(%0, %1) ',
                   '{dilations = [1, 1], groups = 1, input_size = [28, 28], padding = [1, 1, 1, 1], strides = [1, 1]}',
                   ': (tensor<?x28x28x8xf32, "N">, tensor<3x3x1x8xf32>) -> tensor<?x28x28x1xf32, "N">'))


@conv2d_backprop_input.def_reference
def _(dy, w, *, input_size, **geo):
    s = conv_shape(dy.shape[0], (*input_size, w.shape[2] * geo["groups"]), w.shape, **geo)
    return backprop_input_reference(dy, w, s)


@conv2d_backprop_input.def_vjp
def _backprop_input_vjp(b, op, ct):
    # dx = B(dy, w) with <ct, B(dy, w)> = <conv(ct, w), dy> = <corr(ct, dy), w>
    # (also conv2d_transpose's: it is B(x, w))
    dy, w = op.operands
    geo = _geometry(op.attrs)
    ddy = b.conv2d(ct, w, **geo)
    dw = b.conv2d_backprop_filter(ct, dy, filter_size=w.type.shape[0:2], **geo)
    return [ddy, dw]


conv2d_backprop_input.lowers_to("conv")


# ---------------------------------------------------------------------------
# conv2d_backprop_filter: the gradient of conv2d in its kernel


def _backprop_filter_rule(x: TensorType, dy: TensorType, *, filter_size: tuple[int, ...], **geo) -> TensorType:
    _float_rank(x, "the input", 4, "[N, H, W, C]")
    _float_rank(dy, "the output gradient", 4, "[N, OH, OW, OC]")
    t = same_dtype([x, dy])
    _static(x, "the input", (1, 2, 3))
    _static(dy, "the output gradient", (1, 2, 3))
    if x.shape[0] != dy.shape[0]:
        raise ShapeError(f"batch dims differ: the input {x.dsl_str()} and the output gradient "
                         f"{dy.dsl_str()} ({dim_str(x.shape[0])} vs {dim_str(dy.shape[0])})")
    kh, kw = _pair("filter_size", filter_size, 2, 1)
    groups = geo["groups"]
    if groups >= 1 and x.shape[3] % groups:
        raise ShapeError(f"groups = {groups} does not divide the {x.shape[3]} input channels")
    cg = x.shape[3] // groups if groups >= 1 else x.shape[3]
    s = conv_shape(x.shape[0], x.shape[1:], (kh, kw, cg, dy.shape[3]), **geo)
    _check_output(s, dy)
    return TensorType(t.dtype, s.w_shape)


conv2d_backprop_filter = define(
    "conv2d_backprop_filter", operands=("x", "dy"), kind=OTHER, infer=_backprop_filter_rule,
    attrs={"filter_size": required("ints"), **CONV_ATTRS},
    doc="""The gradient of ``conv2d`` with respect to its kernel: the input ``[N, H, W, C]``
    and the output gradient ``[N, OH, OW, OC]`` -> ``[KH, KW, C / groups, OC]`` with
    ``filter_size = (KH, KW)`` and the forward convolution's attributes.

    ``dw[i, j, c, o] = sum_{n, oy, ox} xpad[n, oy*sh + i*dh, ox*sw + j*dw, g*C/groups + c] dy[n, oy, ox, o]``.

    """ + _example('%2 = "dl.conv2d_backprop_filter"(%0, %1) ',
                   '{dilations = [1, 1], filter_size = [3, 3], groups = 1, padding = [1, 1, 1, 1], strides = [1, 1]}',
                   ': (tensor<?x28x28x1xf32, "N">, tensor<?x28x28x8xf32, "N">) -> tensor<3x3x1x8xf32>'))


@conv2d_backprop_filter.def_reference
def _(x, dy, *, filter_size, **geo):
    s = conv_shape(x.shape[0], x.shape[1:], (*filter_size, x.shape[3] // geo["groups"], dy.shape[3]), **geo)
    return backprop_filter_reference(x, dy, s)


@conv2d_backprop_filter.def_vjp
def _(b, op, ct):
    # dw = F(x, dy) with <ct, F(x, dy)> = <conv(x, ct), dy> = <conv^T(dy, ct), x>
    x, dy = op.operands
    geo = _geometry(op.attrs)
    dx = b.conv2d_backprop_input(dy, ct, input_size=x.type.shape[1:3], **geo)
    ddy = b.conv2d(x, ct, **geo)
    return [dx, ddy]


conv2d_backprop_filter.lowers_to("conv")


# ---------------------------------------------------------------------------
# conv1d: conv2d over images one row high


CONV1D_ATTRS = {"strides": attr("ints", (1,)), "padding": attr("ints", (0, 0)),
                "dilations": attr("ints", (1,)), "groups": attr("int", 1)}


def _as_2d(strides, padding, dilations, groups) -> dict:
    """conv1d's attributes as those of the conv2d over ``[N, 1, L, C]``."""
    return {"strides": (1, *_pair("strides", strides, 1, 1)),
            "padding": (0, 0, *_pair("padding", padding, 2, 0)),
            "dilations": (1, *_pair("dilations", dilations, 1, 1)), "groups": groups}


def _conv1d_rule(x: TensorType, w: TensorType, **geo) -> TensorType:
    _float_rank(x, "the input", 3, "[N, L, C]")
    _float_rank(w, "the kernel", 3, "[K, C / groups, OC]")
    t = _conv2d_rule(TensorType(x.dtype, (x.shape[0], 1, *x.shape[1:])),
                     TensorType(w.dtype, (1, *w.shape)), **_as_2d(**geo))
    return TensorType(t.dtype, (t.shape[0], *t.shape[2:]))


conv1d = define(
    "conv1d", operands=("x", "w"), kind=COMPOSITE, infer=_conv1d_rule, attrs=CONV1D_ATTRS,
    doc="""1-D convolution: ``[N, L, C]`` and a kernel ``[K, C / groups, OC]`` -> ``[N, OL, OC]``;
    ``padding = (left, right)``, one stride and one dilation.  It is ``conv2d`` over
    ``[N, 1, L, C]`` (its decomposition).

    """ + _example('%2 = "dl.conv1d"(%0, %1) ',
                   '{dilations = [1], groups = 1, padding = [0, 0], strides = [1]}',
                   ': (tensor<?x100x4xf32, "N">, tensor<5x4x8xf32>) -> tensor<?x96x8xf32, "N">'))


@conv1d.def_reference
def _(x, w, **geo):
    y = conv2d.reference(x[:, None], w[None], **_as_2d(**geo))
    return y[:, 0]


@conv1d.def_decompose
def _(b, op):
    # conv1d(x, w) = conv2d(x[:, None], w[None])[:, 0]
    x, w = op.operands
    y = b.conv2d(b.reshape(x, shape=(x.type.shape[0], 1, *x.type.shape[1:])), b.reshape(w, shape=(1, *w.type.shape)),
                 **_as_2d(**_geometry(op.attrs)))
    return [b.reshape(y, shape=op.result.type.shape)]


@conv1d.def_vjp
def _(b, op, ct):
    x, w = op.operands
    geo = _as_2d(**_geometry(op.attrs))
    x2 = b.reshape(x, shape=(x.type.shape[0], 1, *x.type.shape[1:]))
    ct2 = b.reshape(ct, shape=(ct.type.shape[0], 1, *ct.type.shape[1:]))
    dx = b.conv2d_backprop_input(ct2, b.reshape(w, shape=(1, *w.type.shape)), input_size=(1, x.type.shape[1]), **geo)
    dw = b.conv2d_backprop_filter(x2, ct2, filter_size=(1, w.type.shape[0]), **geo)
    return [b.reshape(dx, shape=x.type.shape), b.reshape(dw, shape=w.type.shape)]


# ---------------------------------------------------------------------------
# conv2d_transpose: Keras' Conv2DTranspose, the transposed convolution as a layer


def _transpose_size(size: int, kernel: int, stride: int, dilation: int, lo: int, hi: int, extra: int) -> int:
    return (size - 1) * stride + dilation * (kernel - 1) + 1 - lo - hi + extra


def _transpose_input_size(x: TensorType, w: TensorType, strides, padding, dilations,
                          output_padding) -> tuple[int, int]:
    strides = _pair("strides", strides, 2, 1)
    dilations = _pair("dilations", dilations, 2, 1)
    padding = _pair("padding", padding, 4, 0)
    extra = _pair("output_padding", output_padding, 2, 0)
    for e, s, axis in zip(extra, strides, ("vertical", "horizontal")):
        if e >= s:
            raise ShapeError(f"output_padding must be smaller than the stride, got {e} >= {s} ({axis})")
    size = (_transpose_size(x.shape[1], w.shape[0], strides[0], dilations[0], padding[0], padding[1], extra[0]),
            _transpose_size(x.shape[2], w.shape[1], strides[1], dilations[1], padding[2], padding[3], extra[1]))
    if min(size) < 1:
        raise ShapeError(f"the padding {list(padding)} leaves no output rows or columns "
                         f"({size[0]}x{size[1]})")
    return size


def _conv2d_transpose_rule(x: TensorType, w: TensorType, *, output_padding, **geo) -> TensorType:
    _float_rank(x, "the input", 4, "[N, H, W, C]")
    _float_rank(w, "the kernel", 4, "[KH, KW, OC / groups, C]")
    _static(x, "the input", (1, 2, 3))
    _static(w, "the kernel", (0, 1, 2, 3))
    size = _transpose_input_size(x, w, geo["strides"], geo["padding"], geo["dilations"], output_padding)
    return _backprop_input_rule(x, w, input_size=size, **geo)


conv2d_transpose = define(
    "conv2d_transpose", operands=("x", "w"), kind=COMPOSITE, infer=_conv2d_transpose_rule,
    attrs={**CONV_ATTRS, "output_padding": attr("ints", (0, 0))},
    doc="""Transposed convolution (Keras ``Conv2DTranspose``): ``[N, H, W, C]`` and a kernel
    ``[KH, KW, OC / groups, C]`` -> ``[N, OH, OW, OC]`` with
    ``OH = (H - 1) stride + dilation (KH - 1) + 1 - top - bottom + output_padding``: the
    gradient of the ``conv2d`` from ``[N, OH, OW, OC]`` with the same kernel and attributes,
    ``conv2d_backprop_input(x, w)`` (its decomposition).

    """ + _example('%2 = "dl.conv2d_transpose"(%0, %1) ',
                   '{dilations = [1, 1], groups = 1, output_padding = [1, 1], ',
                   'padding = [1, 1, 1, 1], strides = [2, 2]}',
                   ': (tensor<?x7x7x16xf32, "N">, tensor<3x3x8x16xf32>) -> tensor<?x14x14x8xf32, "N">'))


def _transpose_as_backprop(x: TensorType, w: TensorType, attrs: dict) -> dict:
    geo = _geometry(attrs)
    size = _transpose_input_size(x, w, geo["strides"], geo["padding"], geo["dilations"], attrs["output_padding"])
    return {"input_size": size, **geo}


@conv2d_transpose.def_reference
def _(x, w, **attrs):
    full = _transpose_as_backprop(TensorType(DType.from_numpy(x.dtype), x.shape),
                                  TensorType(DType.from_numpy(w.dtype), w.shape), attrs)
    return conv2d_backprop_input.reference(x, w, **full)


@conv2d_transpose.def_decompose
def _(b, op):
    x, w = op.operands
    return [b.conv2d_backprop_input(x, w, **_transpose_as_backprop(x.type, w.type, op.attrs))]


conv2d_transpose.def_vjp(_backprop_input_vjp)     # y = conv^T(x, w): as conv2d_backprop_input


CONV_OPS = ("conv2d", "conv2d_backprop_input", "conv2d_backprop_filter")

__all__ = ["ConvShape", "conv_shape", "shape_of", "out_size", "same_padding", "conv_padding",
           "transpose_padding", "conv2d_reference", "backprop_input_reference",
           "backprop_filter_reference", "CONV_OPS"]
