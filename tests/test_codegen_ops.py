"""Native code against the reference interpreter, op by op.

Every op of the op table has at least one case here (a test fails on any op
without a case or without a lowering); all cases compile into one module,
then run at batch sizes 1, 7 and 128 and are compared with ``interpret``.
Tolerances: f32 ``rtol=2e-5, atol=1e-5`` (sums of ~100 terms of size ~1 cancel);
f64 ``rtol=1e-11, atol=1e-12``;
ints and bools exactly.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np
import pytest

import runtime
from compiler.codegen.bufferize import has_lowering
from compiler.ir.builder import Builder, new_function
from compiler.ir.core import Module, Value
from compiler.ir.interpreter import interpret
from compiler.ir.types import DType, TensorType
from compiler.ops import OPS

F32, F64, I32, I64, BOOL = DType.f32, DType.f64, DType.i32, DType.i64, DType.bool
BATCHES = (1, 7, 128)


def T(dtype: DType, *shape) -> TensorType:
    return TensorType(dtype, tuple(shape))


# A case: (op names it covers, parameter types, body building the outputs, input kinds).
# Input kinds choose value ranges: "any", "pos" (> 0), "unit" (0..1), "small" (ints 0..9).
Body = Callable[[Builder, list[Value]], list[Value]]
CASES: dict[str, tuple[tuple[str, ...], list[TensorType], Body, tuple[str, ...]]] = {}


def case(name: str, ops: tuple[str, ...], types: list[TensorType], body: Body,
         kinds: tuple[str, ...] | None = None) -> None:
    CASES[name] = (ops, types, body, kinds or ("any",) * len(types))


# -- elementwise ---------------------------------------------------------------------------

for op in ("add", "sub", "mul", "maximum", "minimum"):
    case(f"{op}_f32_bcast", (op,), [T(F32, "N", 35), T(F32, 35)],
         lambda b, p, op=op: [b.emit(op, p[0], p[1])])
    case(f"{op}_i32", (op,), [T(I32, "N", 3), T(I32, "N", 3)], lambda b, p, op=op: [b.emit(op, p[0], p[1])])
    case(f"{op}_f64_col", (op,), [T(F64, "N", 1), T(F64, 1, 17)], lambda b, p, op=op: [b.emit(op, p[0], p[1])])
case("add_i64_bool_scalar", ("add",), [T(I64, "N"), T(I64)], lambda b, p: [b.add(p[0], p[1])])
case("div_f32", ("div",), [T(F32, "N", 20), T(F32, "N", 1)], lambda b, p: [b.div(p[0], p[1])], ("any", "pos"))
case("div_f64", ("div",), [T(F64, "N", 3)], lambda b, p: [b.div(b.constant(1.0, F64), p[0])], ("pos",))
case("pow_f32", ("pow",), [T(F32, "N", 19), T(F32, 19)], lambda b, p: [b.pow(p[0], p[1])], ("pos", "any"))
case("pow_f64_square", ("pow",), [T(F64, "N", 5)],
     lambda b, p: [b.pow(p[0], b.constant(2.0, F64)), b.pow(p[0], b.constant(-1.0, F64)),
                   b.pow(p[0], b.constant(0.5, F64)), b.pow(p[0], b.constant(3.0, F64))], ("pos",))
case("pow_negative_base", ("pow",), [T(F32, "N", 4), T(F32, 4)],
     lambda b, p: [b.pow(b.neg(p[0]), b.constant(np.array([2.0, 3.0, 0.0, 1.0], np.float32), F32))],
     ("pos", "any"))
for op in ("eq", "ne", "lt", "le", "gt", "ge"):
    case(f"{op}_f32", (op,), [T(F32, "N", 17), T(F32, 17)],
         lambda b, p, op=op: [b.emit(op, p[0], b.maximum(p[1], p[0]))])
    case(f"{op}_i64", (op,), [T(I64, "N", 3), T(I64, 3)], lambda b, p, op=op: [b.emit(op, p[0], p[1])],
         ("small", "small"))
for op in ("logical_and", "logical_or"):
    case(op, (op,), [T(BOOL, "N", 18), T(BOOL, 18)], lambda b, p, op=op: [b.emit(op, p[0], p[1])])
case("logical_not", ("logical_not",), [T(BOOL, "N", 33)], lambda b, p: [b.logical_not(p[0])])
case("select", ("select",), [T(BOOL, "N", 21), T(F32, "N", 21), T(F32)],
     lambda b, p: [b.select(p[0], p[1], p[2])])
case("select_i32", ("select",), [T(F32, "N", 3), T(I32, 3)],
     lambda b, p: [b.select(b.gt(p[0], b.constant(0.0, F32)), p[1], b.constant(-7, I32))])
for op in ("neg", "exp", "tanh", "sigmoid", "relu", "abs", "square", "sign"):
    case(f"{op}_f32", (op,), [T(F32, "N", 37)], lambda b, p, op=op: [b.emit(op, p[0])])
    case(f"{op}_f64", (op,), [T(F64, "N", 5)], lambda b, p, op=op: [b.emit(op, p[0])])
for op in ("log", "sqrt", "reciprocal"):
    case(f"{op}_f32", (op,), [T(F32, "N", 37)], lambda b, p, op=op: [b.emit(op, p[0])], ("pos",))
    case(f"{op}_f64", (op,), [T(F64, "N", 5)], lambda b, p, op=op: [b.emit(op, p[0])], ("pos",))
for op in ("neg", "abs", "relu", "square", "sign"):
    case(f"{op}_i32", (op,), [T(I32, "N", 9)], lambda b, p, op=op: [b.emit(op, p[0])])
for op in ("erf", "expm1", "sin", "cos", "softplus", "silu", "gelu", "elu", "selu", "leaky_relu",
           "hard_sigmoid", "floor", "ceil", "round", "isnan", "isinf"):
    case(f"{op}_f32", (op,), [T(F32, "N", 37)], lambda b, p, op=op: [b.emit(op, p[0])])
    case(f"{op}_f64", (op,), [T(F64, "N", 5)], lambda b, p, op=op: [b.emit(op, p[0])])
case("log1p", ("log1p",), [T(F32, "N", 37), T(F64, "N")], lambda b, p: [b.log1p(p[0]), b.log1p(p[1])],
     ("pos", "unit"))
case("activation_attrs", ("gelu", "elu", "leaky_relu"), [T(F32, "N", 19)],
     lambda b, p: [b.gelu(p[0], approximate=True), b.elu(p[0], alpha=0.5), b.leaky_relu(p[0], alpha=0.01)])
for op in ("mod", "floor_div"):
    case(f"{op}_f32", (op,), [T(F32, "N", 21), T(F32, 21)], lambda b, p, op=op: [b.emit(op, p[0], p[1])],
         ("any", "pos"))
    case(f"{op}_i64", (op,), [T(I64, "N", 3), T(I64, 3)], lambda b, p, op=op: [b.emit(op, p[0], p[1])],
         ("any", "small"))
case("pow_i32", ("pow",), [T(I32, "N", 5), T(I32, 5)], lambda b, p: [b.pow(p[0], p[1])], ("any", "small"))
case("clip", ("clip",), [T(F32, "N", 18), T(F32), T(F32, 18), T(I32, "N")],
     lambda b, p: [b.clip(p[0], p[1], p[2]), b.clip(p[3], b.constant(-3, I32), b.constant(4, I32))])
for src, dst in [(F32, I32), (F32, I64), (I32, F32), (I64, F64), (F64, F32), (F32, F64), (BOOL, F32),
                 (F32, BOOL), (I32, I64), (I64, I32), (I32, BOOL), (BOOL, I64)]:
    case(f"cast_{src}_{dst}", ("cast",), [T(src, "N", 19)], lambda b, p, dst=dst: [b.cast(p[0], dtype=dst)])

# -- random numbers (bit-exact except normal: log and cos) -----------------------------------------

case("random", ("random_uniform", "random_normal", "bernoulli", "fold_in", "philox_uniform", "philox_normal"),
     [T(I64), T(F32, "N", 3)],
     lambda b, p: [b.add(p[1], b.random_uniform(p[0], shape=("N", 3), minval=-1.0, maxval=2.0)),
                   b.random_normal(b.fold_in(p[0], b.dim_size(p[1], axis=0)), shape=(5, "N"), dtype=F64),
                   b.bernoulli(p[0], shape=("N", 2, 9), p=0.75)])

# -- sources, layout, dims ---------------------------------------------------------------------

case("constant_dense", ("constant",), [T(F32, "N", 3)],
     lambda b, p: [b.add(p[0], b.constant(np.array([[1.5, -2.0, 3.25]], np.float32), F32)),
                   b.constant(np.array([1, 2, 3], np.int64), I64)])
case("constant_splat", ("constant",), [T(F32, "N", 3)],
     lambda b, p: [b.mul(p[0], b.constant(2.5, F32, (1, 3))), b.constant(7, I32, (2, 2))])
case("iota", ("iota",), [T(I64, "N")],
     lambda b, p: [b.iota(dtype=F32, shape=("N", 23), axis=1), b.iota(dtype=I32, shape=(3, "N"), axis=1),
                   b.add(p[0], b.iota(dtype=I64, shape=("N",), axis=0))])
case("dim_size", ("dim_size",), [T(F32, "N", 4)],
     lambda b, p: [b.div(p[0], b.dim_size(p[0], axis=0, dtype=F32)), b.dim_size(p[0], axis=1)])
case("broadcast_to", ("broadcast_to",), [T(F32, 1, 5), T(F32, "N", 1)],
     lambda b, p: [b.broadcast_to(p[0], shape=("N", 4, 5)), b.broadcast_to(p[1], shape=(2, "N", 3))])
case("transpose", ("transpose",), [T(F32, "N", 3, 20)],
     lambda b, p: [b.transpose(p[0], perm=(2, 0, 1)), b.transpose(p[0]),
                   b.exp(b.transpose(p[0], perm=(0, 2, 1)))])
case("reshape", ("reshape",), [T(F32, "N", 4, 6)],
     lambda b, p: [b.reshape(p[0], shape=("N", 24)), b.reshape(b.exp(p[0]), shape=(2, "N", 12)),
                   b.reshape(p[0], shape=(1, "N", 4, 1, 6)), b.sum(b.reshape(p[0], shape=(4, "N", 6)), axes=(1,))])

# -- reductions -----------------------------------------------------------------------------------

for op in ("sum", "mean", "max", "min"):
    case(f"{op}_rows", (op,), [T(F32, "N", 37)], lambda b, p, op=op: [
        b.emit(op, p[0], axes=(1,)), b.emit(op, p[0], axes=(0,), keepdims=True), b.emit(op, p[0])])
    case(f"{op}_f64", (op,), [T(F64, "N", 3, 5)], lambda b, p, op=op: [
        b.emit(op, p[0], axes=(0, 2)), b.emit(op, b.exp(p[0]), axes=(1,))])
for op in ("sum", "max", "min"):
    case(f"{op}_i32", (op,), [T(I32, "N", 19)], lambda b, p, op=op: [b.emit(op, p[0], axes=(1,)),
                                                                     b.emit(op, p[0], axes=(0,))])
case("argmax", ("argmax",), [T(F32, "N", 13), T(I32, 4, "N")],
     lambda b, p: [b.argmax(p[0], axis=1), b.argmax(p[0], axis=0, keepdims=True), b.argmax(p[1], axis=-1)])
case("argmin", ("argmin",), [T(F32, "N", 13), T(I32, 4, "N")],
     lambda b, p: [b.argmin(p[0], axis=1), b.argmin(p[0], axis=0, keepdims=True), b.argmin(p[1], axis=-1)])
case("prod", ("prod",), [T(F32, "N", 5), T(I64, "N", 3)],
     lambda b, p: [b.prod(p[0], axes=(1,)), b.prod(p[0], axes=(0,), keepdims=True), b.prod(p[1])], ("unit", "small"))
case("any_all", ("any", "all"), [T(BOOL, "N", 19)],
     lambda b, p: [b.any(p[0], axes=(1,)), b.all(p[0], axes=(0,)), b.any(p[0]), b.all(p[0], keepdims=True)])
case("statistics", ("logsumexp", "var", "std", "norm"), [T(F32, "N", 9), T(F64, 3, "N")],
     lambda b, p: [b.logsumexp(p[0], axes=(1,)), b.var(p[0], axes=(0,)), b.std(p[1], axes=(1,), ddof=1),
                   b.norm(p[0], axes=(1,)), b.norm(p[1], ord=1, keepdims=True), b.logsumexp(p[1])])
case("cumsum", ("cumsum",), [T(F32, "N", 21), T(I32, 3, "N")],
     lambda b, p: [b.cumsum(p[0], axis=1), b.cumsum(b.exp(p[0]), axis=0, reverse=True),
                   b.cumsum(p[1], axis=-1, exclusive=True), b.cumsum(p[1], axis=0, reverse=True, exclusive=True)])
case("top_k", ("top_k",), [T(F32, "N", 11), T(I32, 2, 3, 6)],
     lambda b, p: [*b.top_k(p[0], k=4), b.top_k(p[1], k=6)[1], b.top_k(b.neg(p[0]), k=1)[0]], ("any", "small"))

# -- contraction ------------------------------------------------------------------------------------

case("matmul", ("matmul",), [T(F32, "N", 33), T(F32, 33, 17)], lambda b, p: [b.matmul(p[0], p[1])])
case("matmul_vec", ("matmul",), [T(F32, "N", 5), T(F32, 5), T(F32, "N")],
     lambda b, p: [b.matmul(p[0], p[1]), b.matmul(p[2], p[0]), b.matmul(p[1], p[1])])
case("matmul_batched", ("matmul",), [T(F32, 3, "N", 4), T(F32, 4, 6), T(F64, 2, 1, 3, 5), T(F64, 4, 5, 2)],
     lambda b, p: [b.matmul(p[0], p[1]), b.matmul(p[2], p[3])])
case("matmul_int", ("matmul",), [T(I32, "N", 7), T(I32, 7, 18)], lambda b, p: [b.matmul(p[0], p[1])],
     ("small", "small"))
case("matmul_lowp", ("matmul_lowp",),
     [T(DType.u8, "N", 37), T(DType.i8, 37, 70), T(DType.i8, 2, 5, "N"), T(F32, "N", 2), T(F32, 2, 19)],
     lambda b, p: [b.matmul_lowp(p[0], p[1], dtype=I32), b.matmul_lowp(p[2], p[0], dtype=I32),
                   b.matmul_lowp(p[3], p[4], precision="bf16")])      # K = 2: bf16 sums exact

# -- convolutions (more in tests/test_ops_conv.py) ---------------------------------------------------

_CONV = {"strides": (2, 1), "padding": (1, 0, 2, 1), "dilations": (1, 2), "groups": 2}
case("conv2d", ("conv2d", "conv2d_backprop_input", "conv2d_backprop_filter"),
     [T(F32, "N", 7, 6, 4), T(F32, 3, 2, 2, 6), T(F64, "N", 3, 7, 6)],
     lambda b, p: [b.conv2d(p[0], p[1], **_CONV),
                   b.conv2d_backprop_input(b.cast(p[2], dtype=F32), p[1], input_size=(7, 6), **_CONV),
                   b.conv2d_backprop_filter(p[0], b.cast(p[2], dtype=F32), filter_size=(3, 2), **_CONV)])
case("conv_composites", ("conv1d", "conv2d_transpose"), [T(F32, "N", 9, 3), T(F32, 3, 3, 5), T(F64, "N", 3, 2, 4)],
     lambda b, p: [b.conv1d(p[0], p[1], strides=(2,), padding=(1, 1)),
                   b.conv2d_transpose(p[2], b.constant(np.linspace(-1, 1, 48).reshape(2, 3, 2, 4), F64),
                                      strides=(2, 2), padding=(0, 1, 1, 0), output_padding=(1, 0))])

# -- composites ---------------------------------------------------------------------------------------

case("softmax", ("softmax", "log_softmax"), [T(F32, "N", 10)],
     lambda b, p: [b.softmax(p[0], axis=-1), b.log_softmax(p[0], axis=1), b.softmax(p[0], axis=0)])
case("one_hot", ("one_hot",), [T(I32, "N")], lambda b, p: [b.one_hot(p[0], depth=10)], ("small",))
case("losses", ("mse", "mae"), [T(F32, "N", 3), T(F32, "N", 3)],
     lambda b, p: [b.mse(p[0], p[1]), b.mae(p[0], p[1])])
case("bce", ("binary_crossentropy",), [T(F32, "N", 2), T(F32, "N", 2)],
     lambda b, p: [b.binary_crossentropy(p[0], p[1], from_logits=True),
                   b.binary_crossentropy(b.sigmoid(p[0]), p[1])], ("any", "unit"))
case("scce", ("sparse_categorical_crossentropy",), [T(F32, "N", 10), T(I64, "N")],
     lambda b, p: [b.sparse_categorical_crossentropy(p[0], p[1], from_logits=True),
                   b.sparse_categorical_crossentropy(b.softmax(p[0]), p[1])], ("any", "small"))
case("cce", ("categorical_crossentropy",), [T(F64, "N", 4), T(F64, "N", 4)],
     lambda b, p: [b.categorical_crossentropy(p[0], p[1], from_logits=True),
                   b.categorical_crossentropy(b.softmax(p[0]), p[1])], ("any", "unit"))

# -- indexing and plumbing (more in tests/test_ops_indexing.py) ---------------------------------------

case("slice", ("slice", "flip"), [T(F32, "N", 37), T(I32, 8, "N")],
     lambda b, p: [b.slice(p[0], start=(None, 3), stop=(None, -2), step=(None, 1)),
                   b.exp(b.slice(p[0], start=(None, 30), stop=(None, 1), step=(None, -3))),
                   b.flip(p[1]), b.slice(p[1], start=(6, None), step=(-2, -1))])
case("slice_update", ("slice_update", "pad"), [T(F32, "N", 20), T(F32, "N", 7), T(BOOL, 3, "N")],
     lambda b, p: [b.slice_update(p[0], p[1], start=(None, 1), stop=(None, 20), step=(None, 3)),
                   b.pad(p[1], pad_width=np.array([[0, 0], [3, 17]]), value=-1.5),
                   b.pad(p[2], pad_width=np.array([[2, 1], [0, 0]]), value=True)])
case("concat", ("concat", "stack", "split"), [T(F32, "N", 5), T(F32, "N", 19), T(I64, 2, "N")],
     lambda b, p: [b.concat(p[0], p[1], p[0], axis=1), b.stack(p[2], p[2], axis=1),
                   *b.split(p[1], indices=(4, 15), axis=1)])
case("views", ("squeeze", "expand_dims", "where"), [T(F32, "N", 1, 5), T(F32, 5)],
     lambda b, p: [b.squeeze(p[0], axis=(1,)), b.expand_dims(p[1], axis=(0, 2)),
                   b.where(b.gt(p[0], b.constant(0.0, F32)), p[0], p[1])])
case("tile_repeat", ("tile", "repeat"), [T(F32, "N", 3), T(F64, 4)],
     lambda b, p: [b.tile(p[0], reps=(2, 1, 3)), b.repeat(p[0], repeats=(2,), axis=1),
                   b.repeat(p[1], repeats=(1, 0, 3, 2))])
case("pad_modes", ("pad",), [T(F32, "N", 6)],
     lambda b, p: [b.pad(p[0], pad_width=np.array([[0, 0], [4, 7]]), mode=m)
                   for m in ("edge", "reflect", "symmetric", "wrap")])
case("gather", ("gather", "take_along_axis"), [T(F32, "N", 10), T(I32, 6), T(I64, "N", 3)],
     lambda b, p: [b.gather(p[0], p[1], axis=1), b.take_along_axis(p[0], p[2], axis=1),
                   b.gather(b.exp(p[0]), b.reshape(p[1], shape=(2, 3)), axis=-1)], ("any", "small", "small"))
case("scatter", ("scatter_add", "scatter_add_along_axis", "scatter_min"),
     [T(F32, "N", 10), T(I32, 6), T(I64, "N", 3), T(F32, "N", 6), T(F32, "N", 3)],
     lambda b, p: [b.scatter_add(p[0], p[1], p[3], axis=1),
                   b.scatter_add_along_axis(p[0], p[2], b.exp(p[4]), axis=1),
                   b.scatter_min(b.broadcast_to(b.constant(5, I64), shape=("N", 10)), p[1],
                                 b.broadcast_to(b.cast(p[1], dtype=I64), shape=("N", 6)), axis=1)],
     ("any", "small", "small", "any", "any"))

# -- pooling (compiler/ops/pool.py; tests/test_ops_pool.py has the thorough ones) ------------------------

_WINDOW = {"pool_size": (3, 2), "strides": (2, 1), "padding": (1, 1, 0, 1)}
case("pool", ("max_pool2d", "avg_pool2d", "max_pool2d_grad", "max_pool2d_gather", "avg_pool2d_grad"),
     [T(F32, "N", 5, 4, 19), T(F64, "N", 3, 4, 3)],
     lambda b, p: [b.max_pool2d(p[0], **_WINDOW), b.avg_pool2d(p[0], **_WINDOW),
                   b.max_pool2d_grad(p[0], b.max_pool2d(p[0], **_WINDOW), **_WINDOW),
                   b.max_pool2d_gather(p[0], b.exp(p[0]), **_WINDOW),
                   b.avg_pool2d_grad(p[1], input_size=(5, 4), count_include_pad=True, **_WINDOW)])
case("global_pool_flatten", ("global_avg_pool", "global_max_pool", "flatten"), [T(F32, "N", 3, 5, 7)],
     lambda b, p: [b.global_avg_pool(p[0]), b.global_max_pool(p[0], keepdims=True),
                   b.matmul(b.flatten(p[0]), b.constant(np.ones((105, 2), np.float32), F32))])

_QKV = T(F32, "N", 2, 9, 5)
case("masks", ("tril", "triu", "causal_mask", "masked_softmax", "sinusoidal_positions"),
     [T(F32, "N", 6, 7), T(BOOL, "N", 7)],
     lambda b, p: [b.tril(p[0], k=-1), b.triu(p[0], k=2), b.causal_mask(shape=(6, 7)),
                   b.sinusoidal_positions(shape=(37, 6)), b.sinusoidal_positions(shape=(3, 5), dtype=F64),
                   b.masked_softmax(p[0], b.reshape(p[1], shape=("N", 1, 7)))])
case("attention", ("attention", "attention_grad"), [_QKV, _QKV, _QKV, T(BOOL, "N", 1, 1, 9)],
     lambda b, p: [b.attention(*p, causal=True), b.attention(p[0], p[1], p[2], b.constant(True, BOOL)),
                   *b.attention_grad(*p, p[2], p[0], scale=0.5)])

# -- fused chains (one consumer each: one loop nest) ----------------------------------------------------

case("chain_bias_act", (), [T(F32, "N", 50), T(F32, 50)],
     lambda b, p: [b.tanh(b.mul(b.add(b.exp(b.neg(p[0])), p[1]), b.constant(0.5, F32)))])
case("chain_multi_use", (), [T(F32, "N", 31)],
     lambda b, p: _multi_use(b, p[0]))


def _multi_use(b: Builder, x: Value) -> list[Value]:
    e = b.exp(x)                                  # two consumers: materialized once
    return [b.add(e, b.sum(e, axes=(1,), keepdims=True)), b.mul(e, e)]


def build_function(name: str) -> object:
    _, types, body, _ = CASES[name]
    f, b = new_function(name, [(f"p{i}", t) for i, t in enumerate(types)])
    f.outputs = body(b, f.params)
    return f


def make_input(t: TensorType, kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    shape = tuple(n if isinstance(d, str) else d for d in t.shape)
    if t.dtype is BOOL:
        return rng.random(shape) < 0.5
    if t.dtype.is_int:
        lo, hi = (0, 10) if kind == "small" else (-50, 50)
        return rng.integers(lo, hi, shape).astype(t.dtype.np)
    if kind == "pos":
        return rng.uniform(0.1, 3.0, shape).astype(t.dtype.np)
    if kind == "unit":
        return rng.uniform(0.0, 1.0, shape).astype(t.dtype.np)
    return rng.normal(0.0, 1.5, shape).astype(t.dtype.np)


@pytest.fixture(scope="module")
def compiled():
    module = Module([build_function(name) for name in CASES])
    return runtime.compile(module, cache=False, passes="")


def assert_matches(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape, (what, got.dtype, got.shape, want.shape)
    if want.dtype == np.float32:
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5, err_msg=what)
    elif want.dtype == np.float64:
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12, err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def test_every_op_has_a_lowering_and_a_case():
    covered = {op for ops, _, _, _ in CASES.values() for op in ops}
    assert [name for name in OPS if not has_lowering(name)] == []
    assert sorted(set(OPS) - covered) == []


@pytest.mark.parametrize("name", list(CASES))
def test_native_matches_interpreter(compiled, name):
    func = compiled.module.get(name)
    _, types, _, kinds = CASES[name]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    for n in BATCHES:
        args = [make_input(t, k, n, rng) for t, k in zip(types, kinds)]
        want = interpret(func, [a.copy() for a in args])
        got = compiled[name](*args)
        got = list(got) if isinstance(got, tuple) else [got]
        for i, (g, w) in enumerate(zip(got, want)):
            assert_matches(g, w, f"{name} output {i} at N={n}")
