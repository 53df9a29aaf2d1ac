"""``dropout(x, rate)``: Keras's ``Dropout`` -- a random mask in training, identity at inference."""

from __future__ import annotations

from typing import Any

from compiler.diagnostics import DlTypeError
from compiler.ir.core import Value
from compiler.ir.types import Dim

from ..scope import Word
from .base import LayerCall, define_layer

dropout = define_layer(
    "dropout", args=("x", "rate", "noise_shape", "name"), required=("x", "rate"),
    usage="dropout(h, 0.5)",
    doc="Randomly zeroes a fraction ``rate`` of the elements of ``x`` while training and scales "
        "the others by ``1 / (1 - rate)``, so their expected value is unchanged; at inference "
        "(predict, evaluate) it is the identity.  The mask is drawn from the training step's key "
        "(``bernoulli``, keep probability ``1 - rate``), so a run is reproducible from its seed.  "
        "``noise_shape`` (Keras's): one entry per axis of ``x``, ``1`` to share the mask along "
        "that axis, or the axis's size (or ``none``, or its symbol such as ``N``) to draw it per "
        "element -- ``noise_shape=[none, 1, 1, 32]`` on ``[N, H, W, 32]`` drops whole channels "
        "per image (spatial dropout).")


@dropout.def_build
def _(call: LayerCall) -> Value:
    x = call.tensor("x")
    if not x.type.dtype.is_float:
        raise DlTypeError(f"dropout needs a float input, got {x.type.dsl_str()}", call.span_of("x"))
    rate = call.float_in("rate", 0.0, 0.0, 1.0, high_open=True)
    mask_shape = _noise_shape(call, x.type.shape)
    if rate == 0.0:
        return x
    keep = call.emit("bernoulli", call.random_key(), shape=mask_shape, p=1.0 - rate)
    if mask_shape != x.type.shape:
        keep = call.emit("broadcast_to", keep, shape=x.type.shape)
    scaled = call.emit("mul", x, call.constant(1.0 / (1.0 - rate), x.type.dtype))
    zero = call.constant(0.0, x.type.dtype)
    return call.by_mode(training=call.emit("select", keep, scaled, zero), inference=x)


def _noise_shape(call: LayerCall, shape: tuple[Dim, ...]) -> tuple[Dim, ...]:
    """The mask's shape: ``x``'s, with a 1 wherever ``noise_shape`` shares the mask along an axis."""
    if not call.has("noise_shape"):
        return shape
    given = call.exprs.const(call.given["noise_shape"])
    span = call.span_of("noise_shape")
    if not isinstance(given, list) or len(given) != len(shape):
        raise DlTypeError(f"argument 'noise_shape' of 'dropout' takes one entry per axis of the input "
                          f"({len(shape)}), got {_show(given)}", span)
    out: list[Dim] = []
    for entry, dim in zip(given, shape, strict=True):
        if isinstance(entry, Word) and entry.name in ("none", str(dim)):
            out.append(dim)
        elif isinstance(entry, int) and not isinstance(entry, bool) and entry in (1, dim):
            out.append(entry)
        else:
            raise DlTypeError(f"argument 'noise_shape' of 'dropout': each entry is 1, the input's size "
                              f"on that axis or none; got {_show(given)} for an input of shape "
                              f"[{', '.join(map(str, shape))}]", span)
    return tuple(out)


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return value.name if isinstance(value, Word) else repr(value)
