"""``multi_head_attention(x, heads, dim)``: Keras's ``MultiHeadAttention`` over ``[N, T, E]``.

Queries come from ``x``, keys and values from ``context`` (default ``x``: self-attention);
each is a dense projection with bias split into ``heads`` heads of ``key_dim`` (default
``dim / heads``), attended by the ``attention`` op (``compiler/ops/attention.py``: one fused
kernel, causal by default), and the heads joined and projected back to ``dim``.
"""

from __future__ import annotations

from compiler.diagnostics import DlTypeError
from compiler.ir.core import Value
from compiler.ir.types import DType, TensorType

from .base import LayerCall, define_layer

multi_head_attention = define_layer(
    "multi_head_attention",
    args=("x", "heads", "dim", "causal", "key_dim", "context", "mask", "name", "kernel_init",
          "bias_init", "use_bias"),
    required=("x", "heads", "dim"), usage="multi_head_attention(x, 4, 128, causal=true)",
    aliases={"num_heads": "heads", "kernel_initializer": "kernel_init", "bias_initializer": "bias_init"},
    doc="Multi-head attention over ``x [N, T, E]`` (and ``context [N, S, Ec]`` for "
        "cross-attention, default ``x``): ``q = x @ query_kernel + query_bias`` "
        "(``[E, heads*key_dim]``), ``k``, ``v`` likewise from ``context``, split into ``heads`` "
        "heads of ``key_dim`` (default ``dim / heads``), ``attention(q, k, v, mask, causal)`` per "
        "head (causal by default; ``mask`` a bool broadcastable to ``[N, heads, T, S]``), the "
        "heads joined and projected to ``dim`` by ``output_kernel [heads*key_dim, dim]`` and "
        "``output_bias``.  Kernels glorot_uniform, biases zeros (``use_bias=false``: none).")


def _sequence(call: LayerCall, key: str) -> Value:
    x = call.tensor(key)
    if not x.type.dtype.is_float or x.type.rank != 3 or not isinstance(x.type.shape[-1], int):
        raise DlTypeError(f"multi_head_attention needs a float '{key}' of shape [N, T, E] with E static, "
                          f"got {x.type.dsl_str()}", call.span_of(key))
    return x


def _positive(call: LayerCall, key: str, value: int) -> int:
    if value <= 0:
        raise DlTypeError(f"multi_head_attention needs a positive {key}, got {value}", call.span_of(key))
    return value


def _project(call: LayerCall, x: Value, which: str, units: int) -> Value:
    """``x @ <which>.kernel (+ <which>.bias)`` over the last axis."""
    dtype = x.type.dtype
    kernel = call.param(f"{which}_kernel", TensorType(dtype, (x.type.shape[-1], units)),
                        call.initializer("kernel_init", {"name": "glorot_uniform"}))
    h = call.emit("matmul", x, kernel)
    if call.bool("use_bias", True):
        bias = call.param(f"{which}_bias", TensorType(dtype, (units,)),
                          call.initializer("bias_init", {"name": "zeros"}))
        h = call.emit("add", h, bias)
    return h


def _heads(call: LayerCall, x: Value, heads: int, key_dim: int) -> Value:
    """``[N, T, heads*key_dim] -> [N, heads, T, key_dim]``."""
    n, t, _ = x.type.shape
    split = call.emit("reshape", x, shape=(n, t, heads, key_dim))
    return call.emit("transpose", split, perm=(0, 2, 1, 3))


@multi_head_attention.def_build
def _(call: LayerCall) -> Value:
    x = _sequence(call, "x")
    context = _sequence(call, "context") if call.has("context") else x
    if context.type.dtype != x.type.dtype or context.type.shape[0] != x.type.shape[0]:
        raise DlTypeError(f"multi_head_attention: context {context.type.dsl_str()} does not match "
                          f"x {x.type.dsl_str()} (same dtype and batch)", call.span_of("context"))
    heads = _positive(call, "heads", call.int("heads"))
    dim = _positive(call, "dim", call.int("dim"))
    if call.has("key_dim"):
        key_dim = _positive(call, "key_dim", call.int("key_dim"))
    elif dim % heads:
        raise DlTypeError(f"multi_head_attention: dim {dim} is not a multiple of heads {heads}; "
                          "give key_dim=", call.span_of("heads"))
    else:
        key_dim = dim // heads
    width = heads * key_dim
    q = _heads(call, _project(call, x, "query", width), heads, key_dim)
    k = _heads(call, _project(call, context, "key", width), heads, key_dim)
    v = _heads(call, _project(call, context, "value", width), heads, key_dim)
    mask = call.tensor("mask") if call.has("mask") else call.constant(True, DType.bool)
    if mask.type.dtype is not DType.bool:
        raise DlTypeError(f"multi_head_attention: mask must be bool, got {mask.type.dsl_str()}",
                          call.span_of("mask"))
    attended = call.emit("attention", q, k, v, mask, causal=call.bool("causal", True))
    n, t = x.type.shape[:2]
    joined = call.emit("reshape", call.emit("transpose", attended, perm=(0, 2, 1, 3)), shape=(n, t, width))
    return _project(call, joined, "output", dim)
