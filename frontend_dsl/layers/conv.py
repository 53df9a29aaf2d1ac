"""``conv2d(x, filters=32, kernel=3, activation=relu, padding=same)``: Keras's ``Conv2D``.

NHWC images ``[N, H, W, C]`` (static ``H``, ``W``, ``C``), an HWIO kernel
``NAME.kernel: [KH, KW, C / groups, filters]`` (default ``glorot_uniform``) and
``NAME.bias: [filters]`` (``zeros``; none with ``use_bias=false``); the result
is ``activation(conv2d(x, kernel) + bias)``.  ``conv2d`` is also an op (an
image and a kernel tensor): a call is this layer's when it gives ``filters=``
or an integer as its second argument.
"""

from __future__ import annotations

from compiler.diagnostics import DlTypeError
from compiler.ir.core import Value
from compiler.ir.types import TensorType
from compiler.ops.base import ShapeError
from compiler.ops.conv import conv_padding

from .. import ast
from .base import LayerCall, define_layer


def _is_layer_call(c: ast.Call) -> bool:
    """``conv2d(x, filters=...)`` or ``conv2d(x, 32, ...)``, not ``conv2d(x, w)``."""
    return any(kw.name == "filters" for kw in c.kwargs) or (
        len(c.args) >= 2 and isinstance(c.args[1], ast.Number) and not c.args[1].is_float)


conv2d = define_layer(
    "conv2d", args=("x", "filters", "kernel", "strides", "padding", "dilation", "groups", "activation",
                    "use_bias", "kernel_init", "bias_init", "name", "kernel_regularizer", "bias_regularizer"),
    required=("x", "filters", "kernel"), usage="conv2d(x, filters=32, kernel=3, activation=relu)",
    aliases={"kernel_size": "kernel", "dilation_rate": "dilation", "kernel_initializer": "kernel_init",
             "bias_initializer": "bias_init"},
    claims=_is_layer_call,
    doc="A 2-D convolution layer (Keras ``Conv2D``) on NHWC images with an HWIO kernel, bias and "
        "activation; ``padding`` valid (default) or same.")


@conv2d.def_build
def _(call: LayerCall) -> Value:
    x = call.tensor("x")
    t = x.type
    if t.rank != 4 or not t.dtype.is_float or not all(isinstance(d, int) for d in t.shape[1:]):
        raise DlTypeError(f"conv2d takes float NHWC images [N, H, W, C] with static H, W and C, "
                          f"got {t.dsl_str()}", call.span_of("x"))
    filters = call.int("filters")
    groups = call.int("groups", 1)
    if filters <= 0 or groups <= 0 or t.shape[3] % groups or filters % groups:
        raise DlTypeError(f"conv2d needs positive filters and groups dividing both the {t.shape[3]} "
                          f"input channels and the {filters} filters", call.span_of("filters"))
    kernel = call.ints("kernel", 2)
    strides = call.ints("strides", 2, (1, 1))
    dilation = call.ints("dilation", 2, (1, 1))
    padding = call.exprs.const(call.given["padding"]) if call.has("padding") else "valid"
    padding = getattr(padding, "name", padding)          # a bare word: same / valid
    try:
        pads = conv_padding(padding, t.shape[1:3], kernel, strides, dilation)
    except (ShapeError, TypeError) as e:
        raise DlTypeError(f"conv2d: {e}", call.span_of("padding")) from None
    w = call.param("kernel", TensorType(t.dtype, (*kernel, t.shape[3] // groups, filters)),
                   call.initializer("kernel_init", {"name": "glorot_uniform"}))
    call.regularize("kernel_regularizer", w)
    y = call.emit("conv2d", x, w, strides=strides, padding=pads, dilations=dilation, groups=groups)
    if call.bool("use_bias", True):
        bias = call.param("bias", TensorType(t.dtype, (filters,)), call.initializer("bias_init", {"name": "zeros"}))
        call.regularize("bias_regularizer", bias)
        y = call.emit("add", y, bias)
    return call.activate("activation", y)
