"""``embedding(ids, vocab, dim)``: rows of a trainable table, as Keras's ``Embedding``."""

from __future__ import annotations

from compiler.diagnostics import DlTypeError
from compiler.ir.core import Value
from compiler.ir.types import DType, TensorType

from .base import LayerCall, define_layer

embedding = define_layer(
    "embedding", args=("ids", "vocab", "dim", "name", "embeddings_init", "dtype", "embeddings_regularizer"),
    required=("ids", "vocab", "dim"), usage="embedding(tokens, 1000, 32)",
    aliases={"input_dim": "vocab", "output_dim": "dim", "embeddings_initializer": "embeddings_init"},
    doc="A lookup table: ``gather(embeddings, ids, axis=0)``, ``embeddings [vocab, dim]`` "
        "(uniform(-0.05, 0.05), as Keras); the result is ``ids``'s shape plus ``[dim]``. An id "
        "outside ``[-vocab, vocab)`` is a run-time error.")


@embedding.def_build
def _(call: LayerCall) -> Value:
    ids = call.tensor("ids")
    if not ids.type.dtype.is_int:
        raise DlTypeError(f"embedding ids must be integers (i32 or i64), got {ids.type.dsl_str()}",
                          call.span_of("ids"))
    vocab, dim = call.int("vocab"), call.int("dim")
    for key, value in (("vocab", vocab), ("dim", dim)):
        if value <= 0:
            raise DlTypeError(f"embedding needs a positive {key}, got {value}", call.span_of(key))
    dtype = DType.from_name(call.str("dtype", "f32"))
    if not dtype.is_float:
        raise DlTypeError(f"embedding tables are float (f32 or f64), got {dtype.dsl_name}", call.span_of("dtype"))
    table = call.param("embeddings", TensorType(dtype, (vocab, dim)),
                       call.initializer("embeddings_init", {"name": "uniform", "low": -0.05, "high": 0.05}))
    call.regularize("embeddings_regularizer", table)
    return call.emit("gather", table, ids, axis=0)
