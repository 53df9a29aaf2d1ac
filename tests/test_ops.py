"""The op table: completeness, reference semantics, shape rules, decompositions, emitters."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compiler.diagnostics import DlTypeError
from compiler.ir.builder import new_function
from compiler.ir.interpreter import interpret
from compiler.ir.types import DType, TensorType
from compiler.ops import OPS, catalog
from compiler.ops.base import COMPOSITE, ELEMENTWISE

F32, F64, I32, I64, BOOL = DType.f32, DType.f64, DType.i32, DType.i64, DType.bool
ROOT = Path(__file__).resolve().parents[1]


def T(dtype: DType, *shape) -> TensorType:
    return TensorType(dtype, tuple(shape))


def run_op(name: str, params: list[tuple[TensorType, np.ndarray]], **attrs) -> np.ndarray:
    """Build a one-op function and run it through the interpreter."""
    func, b = new_function("f", [(f"x{i}", t) for i, (t, _) in enumerate(params)])
    func.outputs = [b.emit(name, *func.params, **attrs)]
    (out,) = interpret(func, [a for _, a in params])
    return out


def shape_error(name: str, types: list[TensorType], **attrs) -> str:
    func, b = new_function("f", [(f"x{i}", t) for i, t in enumerate(types)])
    with pytest.raises(DlTypeError) as info:
        b.emit(name, *func.params, **attrs)
    return info.value.message


RNG = np.random.default_rng(0)


def rand(*shape, dtype=np.float32, low=-2.0, high=2.0) -> np.ndarray:
    return RNG.uniform(low, high, shape).astype(dtype)


# ---------------------------------------------------------------------------
# One sample per op (f32 unless the op wants otherwise), with symbolic dims.
# Each entry: op name -> (operand types, argument arrays, attributes).  N = 3.

def _samples() -> dict[str, tuple[list[TensorType], list[np.ndarray], dict[str, Any]]]:
    x34, p34 = rand(3, 4), rand(3, 4, low=0.05, high=0.95)
    pos = rand(3, 4, low=0.5, high=2.0)
    labels = np.array([0, 3, 1], dtype=np.int64)
    n4 = T(F32, "N", 4)
    s: dict[str, Any] = {
        "constant": ([], [], {"value": 2.5, "dtype": F32, "shape": (2, 3)}),
        "iota": ([], [], {"dtype": I32, "shape": (2, 3), "axis": 1}),
        "select": ([T(BOOL, "N", 1), n4, T(F32)], [rand(3, 1) > 0, x34, np.float32(7)], {}),
        "cast": ([n4], [x34], {"dtype": I32}),
        "broadcast_to": ([T(F32, 4)], [rand(4)], {"shape": (2, 4)}),
        "reshape": ([n4], [x34], {"shape": ("N", 2, 2)}),
        "transpose": ([n4], [x34], {"perm": (1, 0)}),
        "dim_size": ([n4], [x34], {"axis": 0, "dtype": F32}),
        "matmul": ([n4, T(F32, 4, 2)], [x34, rand(4, 2)], {}),
        "matmul_lowp": ([T(DType.u8, "N", 4), T(DType.i8, 4, 2)],
                        [RNG.integers(0, 256, (3, 4)).astype(np.uint8),
                         RNG.integers(-128, 128, (4, 2)).astype(np.int8)], {"dtype": I32}),
        "argmax": ([n4], [x34], {"axis": 1}),
        "one_hot": ([T(I64, "N")], [labels], {"depth": 4}),
        "softmax": ([n4], [x34], {"axis": -1}),
        "log_softmax": ([n4], [x34], {"axis": 0}),
        "mse": ([n4, n4], [x34, rand(3, 4)], {}),
        "mae": ([n4, n4], [x34, rand(3, 4)], {}),
        "binary_crossentropy": ([n4, n4], [p34, rand(3, 4, low=0, high=1)], {}),
        "sparse_categorical_crossentropy": ([n4, T(I64, "N")], [x34, labels],
                                            {"from_logits": True}),
        "categorical_crossentropy": ([n4, n4], [p34, rand(3, 4, low=0, high=1)], {}),
    }
    for name in ("sum", "mean", "max", "min", "prod", "logsumexp", "var", "std"):
        s[name] = ([n4], [x34], {"axes": (0,), "keepdims": True})
    s["var"][2]["ddof"] = 1
    s["norm"] = ([n4], [x34], {"ord": 1, "axes": (1,)})
    for name in ("any", "all"):
        s[name] = ([T(BOOL, "N", 4)], [x34 > 0], {"axes": (1,)})
    s["argmin"] = ([n4], [x34], {"axis": 0})
    s["cumsum"] = ([n4], [x34], {"axis": 1, "exclusive": True})
    s["top_k"] = ([n4], [x34], {"k": 2})
    for name in ("add", "sub", "mul", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge"):
        s[name] = ([n4, T(F32, 4)], [x34, np.round(rand(4))], {})
    s["div"] = ([n4, T(F32, 4)], [x34, rand(4, low=0.5, high=2)], {})
    s["pow"] = ([n4, T(F32, 4)], [pos, rand(4)], {})
    for name in ("logical_and", "logical_or"):
        s[name] = ([T(BOOL, "N", 4), T(BOOL, 4)], [x34 > 0, rand(4) > 0], {})
    s["logical_not"] = ([T(BOOL, "N", 4)], [x34 > 0], {})
    for name in ("neg", "exp", "tanh", "sigmoid", "relu", "abs", "square", "sign"):
        s[name] = ([n4], [x34], {})
    for name in ("log", "sqrt", "reciprocal"):
        s[name] = ([n4], [pos], {})
    for name in ("erf", "expm1", "sin", "cos", "floor", "ceil", "round", "isnan", "isinf", "softplus",
                 "silu", "gelu", "elu", "selu", "leaky_relu", "hard_sigmoid"):
        s[name] = ([n4], [x34 * 3], {})
    s["log1p"] = ([n4], [pos], {})
    for name in ("mod", "floor_div"):
        s[name] = ([n4, T(F32, 4)], [x34 * 3, rand(4, low=0.5, high=2)], {})
    s["clip"] = ([n4, T(F32), T(F32, 4)], [x34, np.float32(-0.5), rand(4, low=0, high=1)], {})
    idx = np.array([[2, -1], [0, 3]], dtype=np.int32)
    s.update({
        "slice": ([n4], [x34], {"start": (None, 1), "stop": (None, None), "step": (None, 2)}),
        "slice_update": ([n4, T(F32, "N", 2)], [x34, rand(3, 2)], {"start": (None, 3), "step": (None, -2)}),
        "concat": ([n4, T(F32, "N", 2)], [x34, rand(3, 2)], {"axis": 1}),
        "stack": ([n4, n4], [x34, rand(3, 4)], {"axis": 1}),
        "split": ([n4], [x34], {"sections": 2, "axis": 1}),
        "flip": ([n4], [x34], {"axis": (0, 1)}),
        "squeeze": ([T(F32, "N", 1, 4)], [x34.reshape(3, 1, 4)], {"axis": (1,)}),
        "expand_dims": ([n4], [x34], {"axis": (0, 3)}),
        "where": ([T(BOOL, "N", 1), n4, T(F32)], [rand(3, 1) > 0, x34, np.float32(7)], {}),
        "pad": ([n4], [x34], {"pad_width": np.array([[0, 0], [2, 1]]), "mode": "reflect"}),
        "tile": ([n4], [x34], {"reps": (2,)}),
        "repeat": ([n4], [x34], {"repeats": (1, 0, 2, 3), "axis": 1}),
        "gather": ([n4, T(I32, 2, 2)], [x34, idx], {"axis": 1}),
        "take_along_axis": ([n4, T(I64, "N", 2)], [x34, idx[[0, 1, 0]].astype(np.int64)], {"axis": 1}),
        "scatter_add": ([n4, T(I32, 2, 2), T(F32, "N", 2, 2)], [x34, idx, rand(3, 2, 2)], {"axis": 1}),
        "scatter_min": ([T(I64, "N", 4), T(I32, 2, 2), T(I64, "N", 2, 2)],
                        [(x34 * 10).astype(np.int64), idx, (rand(3, 2, 2) * 10).astype(np.int64)], {"axis": 1}),
        "scatter_add_along_axis": ([n4, T(I64, "N", 2), T(F32, "N", 2)],
                                   [x34, idx[[0, 1, 0]].astype(np.int64), rand(3, 2)], {"axis": 1}),
    })
    image, pooled = T(F32, "N", 5, 4, 2), T(F32, "N", 3, 4, 2)       # compiler/ops/pool.py
    x5, dy = rand(3, 5, 4, 2), rand(3, 3, 4, 2)
    window = {"pool_size": (2, 2), "strides": (2, 1), "padding": (1, 0, 1, 0)}
    s["max_pool2d"] = ([image], [x5], window)
    s["avg_pool2d"] = ([image], [x5], {**window, "count_include_pad": True})
    s["max_pool2d_grad"] = ([image, pooled], [x5, dy], window)
    s["max_pool2d_gather"] = ([image, image], [x5, rand(3, 5, 4, 2)], window)
    s["avg_pool2d_grad"] = ([pooled], [dy], {**window, "input_size": (5, 4)})
    for name in ("global_avg_pool", "global_max_pool", "flatten"):
        s[name] = ([image], [x5], {})
    key, counters = np.array(-12345, np.int64), np.arange(12, dtype=np.int64).reshape(3, 4)
    s["fold_in"] = ([T(I64), T(I64, "N")], [key, labels], {})
    for name in ("philox_uniform", "philox_normal"):
        s[name] = ([T(I64), T(I64, "N", 4)], [key, counters], {"dtype": F32})
    s["random_uniform"] = ([T(I64)], [key], {"shape": (3, 4), "minval": -1.0, "maxval": 2.0})
    s["random_normal"] = ([T(I64)], [key], {"shape": (3, 4), "dtype": F64, "stddev": 2.0})
    s["bernoulli"] = ([T(I64)], [key], {"shape": (3, 4), "p": 0.25})
    # convolutions (compiler/ops/conv.py; more in tests/test_ops_conv.py)
    img, ker, dy = T(F32, "N", 5, 4, 2), T(F32, 3, 2, 2, 4), T(F32, "N", 3, 3, 4)
    conv = {"strides": (2, 1), "padding": (1, 1, 0, 0)}
    s["conv2d"] = ([img, ker], [rand(3, 5, 4, 2), rand(3, 2, 2, 4)], conv)
    s["conv2d_backprop_input"] = ([dy, ker], [rand(3, 3, 3, 4), rand(3, 2, 2, 4)], {"input_size": (5, 4), **conv})
    s["conv2d_backprop_filter"] = ([img, dy], [rand(3, 5, 4, 2), rand(3, 3, 3, 4)], {"filter_size": (3, 2), **conv})
    s["conv1d"] = ([T(F32, "N", 7, 2), T(F32, 3, 1, 4)], [rand(3, 7, 2), rand(3, 1, 4)],
                   {"strides": (2,), "padding": (1, 1), "groups": 2})
    s["conv2d_transpose"] = ([dy, ker], [rand(3, 3, 3, 4), rand(3, 2, 2, 4)], {"output_padding": (1, 0), **conv})
    # masks and attention (compiler/ops/attention.py; more in tests/test_attention.py)
    s["tril"] = ([n4], [x34], {"k": 1})
    s["triu"] = ([T(F32, 2, "N", 4)], [rand(2, 3, 4)], {"k": -1})
    s["causal_mask"] = ([], [], {"shape": (2, 3)})
    s["sinusoidal_positions"] = ([], [], {"shape": (5, 6), "base": 100.0})
    s["masked_softmax"] = ([n4, T(BOOL, 4)], [x34, np.array([True, False, True, True])], {"axis": -1})
    qkv = T(F32, "N", 2, 5, 4)
    q, k, v = (rand(3, 2, 5, 4) for _ in range(3))
    attn = {"causal": True}
    s["attention"] = ([qkv, qkv, qkv, T(BOOL, 5)], [q, k, v, rand(5) > -1.5], attn)
    s["attention_grad"] = ([qkv, qkv, qkv, T(BOOL), qkv, qkv],
                           [q, k, v, np.array(True), rand(3, 2, 5, 4), rand(3, 2, 5, 4)], attn)
    return s


SAMPLES = _samples()


def test_every_op_has_a_sample():
    assert set(OPS) == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_definition_is_complete(name: str):
    op = OPS[name]
    assert op.reference is not None, "no reference semantics"
    assert op.doc.strip(), "no docstring"
    assert f'"dl.{name}"' in op.doc, "docstring has no IR example"
    if op.differentiable:
        assert op.vjp is not None, "differentiable but no VJP rule"
    else:
        assert op.vjp is None
    if op.kind == ELEMENTWISE:
        assert op.emit is not None, "elementwise but no emit rule"
    if op.kind == COMPOSITE:
        assert op.decompose is not None, "composite but no decompose rule"
    if op.kind not in (ELEMENTWISE, COMPOSITE) and op.expand is None:
        assert op.lower is not None, "no lower rule naming the kernel that computes it"


def _bound_attrs(name: str, attrs: dict[str, Any]) -> dict[str, Any]:
    from compiler.ops.base import normalize_attrs
    full = normalize_attrs(OPS[name], attrs)
    for key, spec in OPS[name].attrs.items():
        if spec.kind == "dims":
            full[key] = tuple(3 if d == "N" else d for d in full[key])
    return full


@pytest.mark.parametrize("name", sorted(OPS))
def test_reference_returns_exactly_the_inferred_type(name: str):
    types, arrays, attrs = SAMPLES[name]
    func, b = new_function("f", [(f"x{i}", t) for i, t in enumerate(types)])
    b.emit(name, *func.params, **attrs)
    results = func.ops[-1].results
    outs = OPS[name].reference(*arrays, **_bound_attrs(name, func.ops[-1].attrs))
    outs = outs if isinstance(outs, (tuple, list)) else (outs,)   # several results: a tuple or list
    assert len(outs) == len(results)          # split: as many as its sections
    for out, result in zip(outs, results):
        assert isinstance(out, np.ndarray)
        assert out.dtype == result.type.dtype.np
        assert out.shape == result.type.concrete_shape({"N": 3})


@pytest.mark.parametrize("name", sorted(n for n, op in OPS.items()
                                        if op.decompose is not None))
def test_decomposition_equals_reference(name: str):
    types, arrays, attrs = SAMPLES[name]
    func, b = new_function("f", [(f"x{i}", t) for i, t in enumerate(types)])
    b.emit(name, *func.params, **attrs)
    op = func.ops[-1]
    parts = OPS[name].decompose(b, op)
    assert [v.type for v in parts] == [r.type for r in op.results]
    assert {o.name for o in func.ops[1:]}.isdisjoint({name}), "decomposition must not use the op"
    func.outputs = [*op.results, *parts]
    results = interpret(func, arrays)
    for want, got in zip(results[:len(parts)], results[len(parts):]):
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("name", ["binary_crossentropy", "sparse_categorical_crossentropy",
                                  "categorical_crossentropy"])
def test_loss_decompositions_in_both_modes(name: str, from_logits: bool):
    types, arrays, _ = SAMPLES[name]
    arrays = list(arrays)
    if not from_logits:
        arrays[0] = np.clip(arrays[0], 0.0, 1.0)
        arrays[0][0, 0] = 0.0   # exercises the clip
    func, b = new_function("f", [(f"x{i}", t) for i, t in enumerate(types)])
    whole = b.emit(name, *func.params, from_logits=from_logits)
    func.outputs = [whole, *OPS[name].decompose(b, func.ops[-1])]
    want, got = interpret(func, arrays)
    assert np.isfinite(want)
    np.testing.assert_allclose(got, want, rtol=2e-6)


# ---------------------------------------------------------------------------
# Emitters, run by a numpy stand-in for the codegen Emitter


class NumpyEmitter:
    """The codegen Emitter's interface over numpy arrays (scalar or vector alike)."""

    def __init__(self, dtype: DType, out_dtype: DType, attrs: dict[str, Any]):
        self.dtype, self.out_dtype, self.attrs = dtype, out_dtype, attrs

    def const(self, value):
        return np.asarray(value, dtype=self.dtype.np)

    add, sub, mul, div = np.add, np.subtract, np.multiply, np.divide
    neg, pow, exp, log, sqrt, tanh, abs = (np.negative, np.power, np.exp, np.log, np.sqrt,
                                           np.tanh, np.abs)
    max, min = np.maximum, np.minimum
    expm1, log1p, sin, cos, floor, ceil, round = (np.expm1, np.log1p, np.sin, np.cos, np.floor, np.ceil,
                                                  np.round)
    isnan, isinf, floor_div, mod = np.isnan, np.isinf, np.floor_divide, np.remainder

    def erf(self, x):
        from compiler.ops.math import _erf
        return _erf(np.asarray(x))
    logical_and, logical_or, logical_not = np.logical_and, np.logical_or, np.logical_not

    def sigmoid(self, x):
        return 1 / (1 + np.exp(-x))

    def relu(self, x):
        return np.maximum(x, 0).astype(x.dtype)

    def cmp(self, pred, a, b):
        return {"eq": np.equal, "ne": np.not_equal, "lt": np.less, "le": np.less_equal,
                "gt": np.greater, "ge": np.greater_equal}[pred](a, b)

    def select(self, c, a, b):
        return np.where(c, a, b)

    def cast(self, x, dtype, source=None):
        return x.astype(dtype.np)

    def fold_in(self, key, data):
        from compiler.ops.random import fold_in_reference
        return fold_in_reference(key, data)

    def philox_uniform(self, key, counter):
        from compiler.ops.random import element_words, uniform_from_words
        return uniform_from_words(element_words(key, counter), self.out_dtype)

    def philox_normal(self, key, counter):
        from compiler.ops.random import element_words, normal_from_words
        return normal_from_words(element_words(key, counter), self.out_dtype)


for _name in ("add", "sub", "mul", "div", "neg", "pow", "exp", "log", "sqrt", "tanh", "abs",
              "max", "min", "logical_and", "logical_or", "logical_not", "expm1", "log1p", "sin", "cos",
              "floor", "ceil", "round", "isnan", "isinf", "floor_div", "mod"):
    setattr(NumpyEmitter, _name, staticmethod(getattr(NumpyEmitter, _name)))


@pytest.mark.parametrize("name", sorted(n for n, op in OPS.items() if op.kind == ELEMENTWISE))
def test_emit_rule_matches_reference(name: str):
    types, arrays, attrs = SAMPLES[name]
    func, b = new_function("f", [(f"x{i}", t) for i, t in enumerate(types)])
    result = b.emit(name, *func.params, **attrs)
    compute = types[-1].dtype if name == "select" else types[0].dtype
    e = NumpyEmitter(compute, result.type.dtype, func.ops[-1].attrs)
    with np.errstate(all="ignore"):
        got = OPS[name].emit(e, *(np.asarray(a) for a in arrays))
    want = OPS[name].reference(*arrays, **func.ops[-1].attrs)
    np.testing.assert_allclose(np.asarray(got, dtype=want.dtype), want, rtol=1e-6)


# ---------------------------------------------------------------------------
# Reference semantics against plain numpy / the formulas, through the interpreter


def test_binary_ops_broadcast_with_symbolic_dims():
    x, y = rand(3, 1, 4), rand(5, 1)
    got = run_op("sub", [(T(F32, "N", 1, 4), x), (T(F32, 5, 1), y)])
    assert got.dtype == np.float32 and got.shape == (3, 5, 4)
    np.testing.assert_array_equal(got, x - y)
    np.testing.assert_array_equal(run_op("maximum", [(T(I32, 3), np.array([1, -5, 2], np.int32)),
                                                     (T(I32), np.array(0, np.int32))]), [1, 0, 2])


def test_comparisons_select_and_logic():
    x = np.array([1.0, 2.0, 3.0], np.float32)
    t = T(F32, 3)
    assert run_op("le", [(t, x), (T(F32), np.float32(2))]).tolist() == [True, True, False]
    assert run_op("ne", [(t, x), (t, x[::-1].copy())]).tolist() == [True, False, True]
    got = run_op("select", [(T(BOOL, 3), x > 1.5), (t, x), (T(F32), np.float32(-1))])
    np.testing.assert_array_equal(got, [-1, 2, 3])
    a, b = np.array([True, False, True]), np.array([True, True, False])
    assert run_op("logical_or", [(T(BOOL, 3), a), (T(BOOL, 3), b)]).tolist() == [True, True, True]
    assert run_op("logical_not", [(T(BOOL, 3), a)]).tolist() == [False, True, False]


def test_unary_ops_against_numpy():
    x = rand(2, 3)
    checks = {"neg": -x, "exp": np.exp(x), "tanh": np.tanh(x), "relu": np.maximum(x, 0),
              "abs": np.abs(x), "square": x * x, "sign": np.sign(x),
              "sigmoid": 1 / (1 + np.exp(-x.astype(np.float64)))}
    for name, want in checks.items():
        got = run_op(name, [(T(F32, 2, 3), x)])
        assert got.dtype == np.float32, name
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=name)
    p = rand(4, low=0.1, high=3.0).astype(np.float64)
    for name, want in {"log": np.log(p), "sqrt": np.sqrt(p), "reciprocal": 1 / p}.items():
        np.testing.assert_allclose(run_op(name, [(T(F64, 4), p)]), want, rtol=1e-15)


def test_sigmoid_is_stable_for_large_inputs():
    x = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0], np.float32)
    got = run_op("sigmoid", [(T(F32, 5), x)])
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, [0, 9.357623e-14, 0.5, 1, 1], rtol=1e-6)


def test_cast_truncates_like_numpy():
    x = np.array([-1.7, 0.0, 2.9], np.float32)
    assert run_op("cast", [(T(F32, 3), x)], dtype=I32).tolist() == [-1, 0, 2]
    assert run_op("cast", [(T(F32, 3), x)], dtype=BOOL).tolist() == [True, False, True]


def test_iota_and_one_hot():
    got = run_op("iota", [], dtype=I64, shape=(2, 3), axis=1)
    np.testing.assert_array_equal(got, [[0, 1, 2], [0, 1, 2]])
    labels = np.array([2, 0, 5], np.int32)
    got = run_op("one_hot", [(T(I32, "N"), labels)], depth=3, dtype=F64)
    np.testing.assert_array_equal(got, [[0, 0, 1], [1, 0, 0], [0, 0, 0]])
    assert got.dtype == np.float64


def test_layout_ops_with_symbols():
    x = rand(3, 2, 4)
    got = run_op("reshape", [(T(F32, "N", 2, 4), x)], shape=("N", 8))
    np.testing.assert_array_equal(got, x.reshape(3, 8))
    got = run_op("transpose", [(T(F32, "N", 2, 4), x)])
    np.testing.assert_array_equal(got, x.transpose(2, 1, 0))
    got = run_op("transpose", [(T(F32, "N", 2, 4), x)], perm=(1, 0, 2))
    np.testing.assert_array_equal(got, x.transpose(1, 0, 2))
    y = rand(4)
    np.testing.assert_array_equal(run_op("broadcast_to", [(T(F32, 4), y)], shape=(2, 3, 4)),
                                  np.broadcast_to(y, (2, 3, 4)))
    assert run_op("dim_size", [(T(F32, "N", 2, 4), x)], axis=-3).tolist() == 3


def test_broadcast_to_a_symbolic_shape():
    func, b = new_function("f", [("x", T(F32, "N", 1)), ("v", T(F32, 4))])
    func.outputs = [b.broadcast_to(func.params[1], shape=("N", 4))]
    (got,) = interpret(func, [rand(5, 1), np.arange(4, dtype=np.float32)])
    np.testing.assert_array_equal(got, np.tile(np.arange(4, dtype=np.float32), (5, 1)))


@pytest.mark.parametrize("lhs,rhs", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (3, 4, 2)),
                                     ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,))])
def test_matmul_has_numpy_semantics(lhs, rhs):
    a, w = rand(*lhs).astype(np.float64), rand(*rhs).astype(np.float64)
    got = run_op("matmul", [(T(F64, *lhs), a), (T(F64, *rhs), w)])
    want = np.matmul(a, w)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_matmul_integers_and_symbols():
    a = np.arange(6, dtype=np.int32).reshape(3, 2)
    got = run_op("matmul", [(T(I32, "N", 2), a), (T(I32, 2, "N"), a.T.copy())])
    assert got.dtype == np.int32 and got.shape == (3, 3)
    np.testing.assert_array_equal(got, a @ a.T)


def test_reductions_against_numpy():
    x = rand(3, 4, 5)
    t = T(F32, "N", 4, 5)
    for name, fn in {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}.items():
        for axes, keep in [(None, False), ((1,), True), ((0, -1), False)]:
            got = run_op(name, [(t, x)], axes=axes, keepdims=keep)
            want = fn(x, axis=axes if axes is None else tuple(axes), keepdims=keep)
            assert got.dtype == np.float32 and got.shape == np.shape(want), (name, axes)
            np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=f"{name} {axes}")
    ints = np.array([[1, 2], [3, 4]], np.int32)
    got = run_op("sum", [(T(I32, 2, 2), ints)], axes=(0,))
    assert got.dtype == np.int32 and got.tolist() == [4, 6]
    got = run_op("argmax", [(t, x)], axis=1, keepdims=True)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, np.argmax(x, axis=1)[:, None])


def test_softmax_and_log_softmax():
    x = rand(3, 4).astype(np.float64) * 50
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    want = e / e.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(run_op("softmax", [(T(F64, "N", 4), x)]), want, rtol=1e-12)
    np.testing.assert_allclose(run_op("log_softmax", [(T(F64, "N", 4), x)]), np.log(want),
                               rtol=1e-12, atol=1e-12)
    big = np.array([[1000.0, 0.0]], np.float32)
    got = run_op("log_softmax", [(T(F32, 1, 2), big)])
    np.testing.assert_allclose(got, [[0.0, -1000.0]])


def test_regression_losses():
    p, t = rand(5, 2).astype(np.float64), rand(5, 2).astype(np.float64)
    args = [(T(F64, "N", 2), p), (T(F64, "N", 2), t)]
    np.testing.assert_allclose(run_op("mse", args), ((p - t) ** 2).sum() / 10, rtol=1e-14)
    np.testing.assert_allclose(run_op("mae", args), np.abs(p - t).sum() / 10, rtol=1e-14)


def test_binary_crossentropy_formulas():
    p = np.array([[0.9], [0.2], [0.0], [1.0]])
    t = np.array([[1.0], [0.0], [1.0], [1.0]])
    args = [(T(F64, "N", 1), p), (T(F64, "N", 1), t)]
    eps = 1e-7
    want = -(np.log(0.9) + np.log(0.8) + np.log(eps) + np.log(1 - eps)) / 4
    np.testing.assert_allclose(run_op("binary_crossentropy", args), want, rtol=1e-12)
    x = np.array([[2.0], [-1.0], [100.0], [-100.0]])
    logit_args = [(T(F64, "N", 1), x), (T(F64, "N", 1), t)]
    s = 1 / (1 + np.exp(-x[:2, 0]))
    terms = [-np.log(s[0]), -np.log(1 - s[1]), 0.0, 100.0]
    np.testing.assert_allclose(run_op("binary_crossentropy", logit_args, from_logits=True),
                               np.mean(terms), rtol=1e-12)


def test_categorical_crossentropies():
    logits = rand(4, 3).astype(np.float64)
    labels = np.array([2, 0, 1, 1], np.int64)
    lsm = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    want = -np.mean([lsm[i, labels[i]] for i in range(4)])
    sparse = [(T(F64, "N", 3), logits), (T(I64, "N"), labels)]
    np.testing.assert_allclose(run_op("sparse_categorical_crossentropy", sparse, from_logits=True),
                               want, rtol=1e-12)
    onehot = np.eye(3)[labels]
    dense = [(T(F64, "N", 3), logits), (T(F64, "N", 3), onehot)]
    np.testing.assert_allclose(run_op("categorical_crossentropy", dense, from_logits=True),
                               want, rtol=1e-12)
    probs = np.exp(lsm)
    probs[0, 2] = 0.0   # clipped to eps
    want = -np.mean([np.log(max(probs[i, labels[i]], 1e-7)) for i in range(4)])
    sparse = [(T(F64, "N", 3), probs), (T(I64, "N"), labels)]
    np.testing.assert_allclose(run_op("sparse_categorical_crossentropy", sparse), want, rtol=1e-12)
    dense = [(T(F64, "N", 3), probs), (T(F64, "N", 3), onehot)]
    np.testing.assert_allclose(run_op("categorical_crossentropy", dense), want, rtol=1e-12)


def test_losses_keep_float32():
    p = rand(2, 3, low=0.1, high=0.9)
    out = run_op("sparse_categorical_crossentropy",
                 [(T(F32, 2, 3), p), (T(I32, 2), np.array([0, 2], np.int32))])
    assert out.dtype == np.float32 and out.shape == ()


# ---------------------------------------------------------------------------
# Shape-rule errors


def test_broadcast_mismatch_names_the_dims():
    msg = shape_error("add", [T(F32, "N", 3), T(F32, "M", 3)])
    assert msg == "add: shapes [N, 3] and [M, 3] do not broadcast: dim N vs M"
    assert "dim 4 vs 5" in shape_error("mul", [T(F32, 4), T(F32, 5)])
    assert "different dtypes: f32 and f64" in shape_error("sub", [T(F32, 3), T(F64, 3)])


def test_matmul_inner_mismatch():
    msg = shape_error("matmul", [T(F32, "N", 784), T(F32, 512, 10)])
    assert msg == "matmul: inner dims do not match: f32[N, 784] @ f32[512, 10] contracts 784 with 512"
    assert "contracts N with M" in shape_error("matmul", [T(F32, 2, "N"), T(F32, "M", 2)])
    assert "rank >= 1" in shape_error("matmul", [T(F32), T(F32, 2)])
    assert "batch dims" in shape_error("matmul", [T(F32, 2, 3, 4), T(F32, 5, 4, 2)])


def test_bad_axes():
    assert shape_error("sum", [T(F32, 3, 4)], axes=(2,)) == "sum: axis 2 is out of range for rank 2"
    assert "axis -3 is out of range" in shape_error("argmax", [T(F32, 3, 4)], axis=-3)
    assert "axis 1 repeated" in shape_error("max", [T(F32, 3, 4)], axes=(1, -1))
    assert "out of range" in shape_error("softmax", [T(F32, 3)], axis=1)
    assert "not a permutation" in shape_error("transpose", [T(F32, 3, 4)], perm=(0, 0))


def test_reshape_count_mismatch():
    assert shape_error("reshape", [T(F32, 2, 3)], shape=(4, 2)) == \
        "reshape: cannot reshape f32[2, 3] to [4, 2]: 6 elements vs 8"
    assert "N*6 elements vs N*4" in shape_error("reshape", [T(F32, "N", 6)], shape=("N", 4))
    assert "symbolic dims must be the same" in shape_error("reshape", [T(F32, "N", 6)], shape=(6, 3))


def test_dtype_and_operand_errors():
    assert "expects float operands" in shape_error("exp", [T(I32, 3)])
    assert "expects float operands" in shape_error("div", [T(I64, 3), T(I64, 3)])
    assert "condition must be bool" in shape_error("select", [T(F32, 3), T(F32, 3), T(F32, 3)])
    assert "expects bool operands" in shape_error("logical_and", [T(F32, 3), T(BOOL, 3)])
    assert "cannot broadcast f32[3, 2] to [3, 4]" in shape_error("broadcast_to", [T(F32, 3, 2)],
                                                                 shape=(3, 4))
    assert "indices must be i32 or i64" in shape_error("one_hot", [T(F32, 3)], depth=2)
    assert "mean: expects a float operand" in shape_error("mean", [T(I32, 3)])


def test_loss_shape_errors():
    msg = shape_error("sparse_categorical_crossentropy", [T(F32, "N", 10), T(I64, "N", 1)])
    assert "labels i64[N, 1] do not match predictions f32[N, 10]" in msg
    assert "labels must be i32 or i64" in shape_error(
        "sparse_categorical_crossentropy", [T(F32, "N", 10), T(F32, "N")])
    assert "targets f32[N, 2] do not match predictions f32[N, 1]" in shape_error(
        "mse", [T(F32, "N", 1), T(F32, "N", 2)])
    assert "predictions must be f32 or f64" in shape_error("mae", [T(I32, 2), T(I32, 2)])


# ---------------------------------------------------------------------------
# Documentation


def test_docs_op_table_is_current():
    text = (ROOT / "docs" / "ops.md").read_text()
    assert catalog.update(text) == text, "docs/ops.md is stale: run python -m compiler.ops.catalog"
    documented = set(re.findall(r"^\| `(\w+)`", text, flags=re.M))
    assert set(OPS) <= documented
