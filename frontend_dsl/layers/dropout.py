"""``dropout(x, rate)``: Keras's ``Dropout`` -- a random mask in training, identity at inference."""

from __future__ import annotations

from compiler.diagnostics import DlTypeError
from compiler.ir.core import Value

from .base import LayerCall, define_layer

dropout = define_layer(
    "dropout", args=("x", "rate", "name"), required=("x", "rate"), usage="dropout(h, 0.5)",
    doc="Randomly zeroes a fraction ``rate`` of the elements of ``x`` while training and scales "
        "the others by ``1 / (1 - rate)``, so their expected value is unchanged; at inference "
        "(predict, evaluate) it is the identity.  The mask is drawn from the training step's key "
        "(``bernoulli``, keep probability ``1 - rate``), so a run is reproducible from its seed.")


@dropout.def_build
def _(call: LayerCall) -> Value:
    x = call.tensor("x")
    if not x.type.dtype.is_float:
        raise DlTypeError(f"dropout needs a float input, got {x.type.dsl_str()}", call.span_of("x"))
    rate = call.float_in("rate", 0.0, 0.0, 1.0, high_open=True)
    if rate == 0.0:
        return x
    keep = call.emit("bernoulli", call.random_key(), shape=x.type.shape, p=1.0 - rate)
    scaled = call.emit("mul", x, call.constant(1.0 / (1.0 - rate), x.type.dtype))
    zero = call.constant(0.0, x.type.dtype)
    return call.by_mode(training=call.emit("select", keep, scaled, zero), inference=x)
