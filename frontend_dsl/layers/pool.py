"""``max_pool(x, 2)``, ``avg_pool(x, 2)``: Keras's ``MaxPooling2D`` / ``AveragePooling2D`` on NHWC images.

Stateless (no parameters): the ``max_pool2d`` / ``avg_pool2d`` ops with
Keras's arguments -- an int or a pair for ``pool_size`` and ``strides``
(default: the pool size), ``padding="valid"`` (default), ``"same"`` or
``[[top, bottom], [left, right]]``.
"""

from __future__ import annotations

from compiler.diagnostics import DlTypeError
from compiler.ir.core import Value
from compiler.ops.base import ShapeError
from compiler.ops.pool import resolve_padding

from .base import LayerCall, define_layer

_ARGS = ("x", "pool_size", "strides", "padding", "name")


def _pool(call: LayerCall, op: str) -> Value:
    x = call.tensor("x")
    if x.type.rank != 4 or not all(isinstance(d, int) for d in x.type.shape[1:3]):
        raise DlTypeError(f"{call.layer.name} takes NHWC images [N, H, W, C] with static H and W, "
                          f"got {x.type.dsl_str()}", call.span_of("x"))
    pool_size = call.ints("pool_size", 2, (2, 2))
    strides = call.ints("strides", 2, pool_size)
    padding = call.exprs.const(call.given["padding"]) if call.has("padding") else "valid"
    padding = getattr(padding, "name", padding)         # a bare word: same / valid
    try:
        pads = resolve_padding(padding, x.type.shape[1:3], pool_size, strides)
    except (ShapeError, TypeError) as e:
        raise DlTypeError(f"{call.layer.name}: {e}", call.span_of("padding")) from None
    return call.emit(op, x, pool_size=pool_size, strides=strides, padding=pads)


max_pool = define_layer(
    "max_pool", args=_ARGS, required=("x",), usage="max_pool(x, 2)", stateless=True,
    doc="Max pooling of NHWC images (Keras ``MaxPooling2D``): ``max_pool2d`` with Keras's arguments.")
avg_pool = define_layer(
    "avg_pool", args=_ARGS, required=("x",), usage="avg_pool(x, 2)", stateless=True,
    doc="Average pooling of NHWC images (Keras ``AveragePooling2D``): ``avg_pool2d`` with Keras's "
        "arguments; padded positions are not counted.")


@max_pool.def_build
def _(call: LayerCall) -> Value:
    return _pool(call, "max_pool2d")


@avg_pool.def_build
def _(call: LayerCall) -> Value:
    return _pool(call, "avg_pool2d")
