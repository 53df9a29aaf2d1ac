"""``dense(x, units, activation=relu)``: ``activation(x @ kernel + bias)``, as Keras's ``Dense``."""

from __future__ import annotations

from compiler.diagnostics import DlTypeError
from compiler.ir.core import Value
from compiler.ir.types import TensorType

from .base import LayerCall, define_layer

dense = define_layer(
    "dense", args=("x", "units", "activation", "name", "kernel_init", "bias_init", "use_bias",
                   "kernel_regularizer", "bias_regularizer"),
    required=("x", "units"), usage="dense(x, 512, activation=relu)",
    aliases={"kernel_initializer": "kernel_init", "bias_initializer": "bias_init"},
    doc="A fully connected layer: ``activation(x @ kernel + bias)`` over the last axis of ``x``; "
        "kernel ``[in, units]`` (glorot_uniform), bias ``[units]`` (zeros) unless ``use_bias=false``; "
        "``kernel_regularizer=l2(0.01)`` (or ``l1``, ``l1_l2``) adds its penalty to the loss.")


@dense.def_build
def _(call: LayerCall) -> Value:
    x = call.tensor("x")
    if not x.type.dtype.is_float or x.type.rank == 0 or not isinstance(x.type.shape[-1], int):
        raise DlTypeError(f"dense needs a float input of rank >= 1 whose last dim is static, "
                          f"got {x.type.dsl_str()}", call.span_of("x"))
    units = call.int("units")
    if units <= 0:
        raise DlTypeError(f"dense needs a positive number of units, got {units}", call.span_of("units"))
    use_bias = call.bool("use_bias", True)
    kernel = call.param("kernel", TensorType(x.type.dtype, (x.type.shape[-1], units)),
                        call.initializer("kernel_init", {"name": "glorot_uniform"}))
    call.regularize("kernel_regularizer", kernel)
    h = call.emit("matmul", x, kernel)
    if use_bias:
        bias = call.param("bias", TensorType(x.type.dtype, (units,)),
                          call.initializer("bias_init", {"name": "zeros"}))
        call.regularize("bias_regularizer", bias)
        h = call.emit("add", h, bias)
    return call.activate("activation", h)
