"""canonicalize: each pattern, the worklist driver, folding limits, losses left alone."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.ir.builder import Builder, new_function
from compiler.ir.core import Function, Module, Op, Value
from compiler.ir.interpreter import interpret
from compiler.ir.types import DType, TensorType
from compiler.passes import PipelineReport, run_pipeline
from compiler.passes.canonicalize import CANONICAL
from compiler.passes.patterns import PatternSet, Rewriter, apply_patterns, is_splat, splat_value

F32 = DType.f32


def T(*shape, dtype: DType = F32) -> TensorType:
    return TensorType(dtype, tuple(shape))


Body = Callable[[Builder, list[Value]], Value | tuple[Value, ...]]


def build(params: list[tuple[str, TensorType]], body: Body, name: str = "f") -> Function:
    func, b = new_function(name, params)
    out = body(b, func.params)
    func.outputs = list(out) if isinstance(out, tuple) else [out]
    return func


def canonicalized(params, body: Body, report: PipelineReport | None = None,
                  **options) -> Function:
    module = run_pipeline(Module([build(params, body)]), "canonicalize",
                          options={"canonicalize": options}, report=report)
    return module.functions[0]


def op_names(func: Function) -> list[str]:
    return [op.name for op in func.ops]


def assert_same_results(params, body: Body, inputs: list[np.ndarray], **options) -> Function:
    """Canonicalize, check the types of the outputs are unchanged and the values agree."""
    before = build(params, body)
    after = canonicalized(params, body, **options)
    assert after.output_types == before.output_types
    expected = interpret(before, inputs)
    got = interpret(after, inputs)
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-6, equal_nan=True)
    return after


RNG = np.random.default_rng(0)


def randn(*shape, dtype=np.float32) -> np.ndarray:
    return RNG.standard_normal(shape).astype(dtype)


# ---------------------------------------------------------------------------
# Arithmetic identities


@pytest.mark.parametrize("zero_first", [False, True])
def test_adding_negative_zero_returns_the_operand(zero_first):
    def body(b, p):
        zero = b.constant(-0.0, F32)
        return b.add(zero, p[0]) if zero_first else b.add(p[0], zero)
    f = canonicalized([("x", T("N", 3))], body)
    assert f.ops == [] and f.outputs == f.params


def test_adding_positive_zero_needs_finite_math():
    # -0.0 + 0.0 = +0.0, and the sign shows: 1 / -0.0 = -inf
    def body(b, p):
        return b.div(b.constant(1.0, F32), b.add(p[0], b.constant(0.0, F32)))
    x = np.array([-0.0, 2.0], np.float32)
    exact = assert_same_results([("x", T(2))], body, [x])
    assert "add" in op_names(exact)
    assert interpret(exact, [x])[0][0] == np.inf
    fast = canonicalized([("x", T(2))], body, **{"finite-math": True})
    assert "add" not in op_names(fast)


def test_subtracting_zero_is_exact_only_for_positive_zero():
    def body(b, p):
        return b.sub(p[0], b.constant(0.0, F32)), b.sub(p[0], b.constant(-0.0, F32))
    f = assert_same_results([("x", T(2))], body, [np.array([-0.0, 1.0], np.float32)])
    assert f.outputs[0] is f.params[0]
    assert f.outputs[1].owner.name == "sub"


def test_integer_zero_of_either_form_is_neutral():
    i64 = DType.i64
    f = canonicalized([("i", T(3, dtype=i64))],
                      lambda b, p: b.sub(b.add(p[0], b.constant(0, i64)), b.constant(0, i64)))
    assert f.ops == []


def test_add_of_a_broadcasting_zero_keeps_the_result_shape():
    # x: [3] + zeros[4, 3] has shape [4, 3]: x must be broadcast, not returned
    def body(b, p):
        return b.add(p[0], b.constant(-0.0, F32, (4, 3)))
    f = assert_same_results([("x", T(3))], body, [randn(3)])
    assert op_names(f) == ["broadcast_to"]
    assert f.outputs[0].type == T(4, 3)


def test_a_mixed_sign_zero_constant_is_not_a_splat():
    f = canonicalized([("x", T(2))], lambda b, p: b.add(p[0], b.constant(np.array([0.0, -0.0]), F32)))
    assert op_names(f) == ["constant", "add"]


def test_identities_that_are_exact_in_ieee_arithmetic():
    def body(b, p):
        x = p[0]
        one = b.constant(1.0, F32)
        return (b.mul(x, one), b.mul(one, x), b.div(x, one), b.neg(b.neg(x)))
    x = np.array([1.5, -0.0, np.inf, np.nan, -3.0], np.float32)
    f = assert_same_results([("x", T(5))], body, [x])
    assert f.ops == [] and all(v is f.params[0] for v in f.outputs)


def test_mul_by_minus_one_is_neg():
    f = assert_same_results([("x", T("N", 2))],
                            lambda b, p: b.mul(b.constant(-1.0, F32), p[0]), [randn(3, 2)])
    assert op_names(f) == ["neg"]


@pytest.mark.parametrize("finite_math", [False, True])
def test_float_mul_by_zero_and_x_minus_x_need_finite_math(finite_math):
    def body(b, p):
        return b.mul(p[0], b.constant(0.0, F32)), b.sub(p[0], p[0])
    f = canonicalized([("x", T(3))], body, **{"finite-math": finite_math})
    x = np.array([np.inf, np.nan, 1.0], np.float32)
    times_zero, minus_self = interpret(f, [x])
    if finite_math:
        assert set(op_names(f)) == {"constant"}
        np.testing.assert_array_equal(times_zero, [0, 0, 0])
    else:
        assert set(op_names(f)) == {"constant", "mul", "sub"}
        assert np.isnan(times_zero[0]) and np.isnan(minus_self[0])   # inf * 0, inf - inf


def test_integer_mul_by_zero_and_x_minus_x_always_fold():
    i32 = DType.i32
    f = canonicalized([("i", T(3, dtype=i32))],
                      lambda b, p: (b.mul(p[0], b.constant(0, i32)), b.sub(p[0], p[0])))
    assert op_names(f) == ["constant", "constant"]
    assert all(splat_value(v) == 0 and v.type == T(3, dtype=i32) for v in f.outputs)


@pytest.mark.parametrize("outer,inner", [("exp", "log"), ("log", "exp")])
def test_exp_and_log_cancel_only_with_finite_math(outer, inner):
    # exp(log(-1)) = nan and log(exp(100)) = inf in f32
    def body(b, p):
        return b.emit(outer, b.emit(inner, p[0]))
    assert op_names(canonicalized([("x", T(2))], body)) == [inner, outer]
    assert canonicalized([("x", T(2))], body, **{"finite-math": True}).ops == []


def test_neg_chain_reaches_the_fixed_point():
    def body(b, p):
        v = p[0]
        for _ in range(5):
            v = b.neg(v)
        return v
    f = canonicalized([("x", T(2))], body)
    assert op_names(f) == ["neg"]


# ---------------------------------------------------------------------------
# Layout


@pytest.mark.parametrize("p,q", list(itertools.product(itertools.permutations(range(3)), repeat=2)))
def test_transpose_of_transpose_composes(p, q):
    def body(b, params):
        return b.transpose(b.transpose(params[0], perm=p), perm=q)
    f = assert_same_results([("x", T(2, 3, 4))], body, [randn(2, 3, 4)])
    composed = tuple(p[i] for i in q)
    if composed == (0, 1, 2):
        assert f.ops == []
    else:
        assert op_names(f) == ["transpose"] and f.ops[0].attrs["perm"] == composed


def test_transpose_without_perm_twice_is_the_identity():
    f = canonicalized([("x", T("N", 5))], lambda b, p: b.transpose(b.transpose(p[0])))
    assert f.ops == []


def test_reshapes_collapse_and_same_shape_reshape_vanishes():
    def body(b, p):
        r = b.reshape(b.reshape(p[0], shape=(2, 6)), shape=(3, 4))
        back = b.reshape(b.reshape(p[0], shape=(12,)), shape=(4, 3))
        return r, back
    f = assert_same_results([("x", T(4, 3))], body, [randn(4, 3)])
    assert op_names(f) == ["reshape"]
    assert f.outputs[1] is f.params[0]


def test_broadcast_to_same_shape_and_nested_broadcasts():
    def body(b, p):
        same = b.broadcast_to(p[0], shape=(3,))
        twice = b.broadcast_to(b.broadcast_to(p[0], shape=(2, 3)), shape=("N", 2, 3))
        return same, twice
    f = canonicalized([("x", T(3)), ("n", T("N"))], lambda b, p: body(b, p))
    assert f.outputs[0] is f.params[0]
    assert op_names(f) == ["broadcast_to"] and f.ops[0].operands[0] is f.params[0]


@pytest.mark.parametrize("reduction", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_reduction_over_size_one_axes_is_a_reshape(reduction, keepdims):
    def body(b, p):
        return b.emit(reduction, p[0], axes=(1, 3), keepdims=keepdims)
    f = assert_same_results([("x", T("N", 1, 4, 1))], body, [randn(2, 1, 4, 1)])
    assert op_names(f) == ([] if keepdims else ["reshape"])


def test_reduction_over_a_real_axis_stays():
    f = canonicalized([("x", T(2, 3))], lambda b, p: b.sum(p[0], axes=(1,)))
    assert op_names(f) == ["sum"]


# ---------------------------------------------------------------------------
# Folding


def test_dense_constants_fold_with_the_op_reference():
    def body(b, p):
        a = b.constant(np.array([[1.0, 2.0], [3.0, 4.0]]), F32)
        return b.add(b.matmul(a, a), p[0])
    f = canonicalized([("x", T(2, 2))], body)
    assert op_names(f) == ["constant", "add"]
    np.testing.assert_array_equal(f.ops[0].attrs["value"], [[7, 10], [15, 22]])


def test_equal_elements_fold_to_a_splat():
    f = canonicalized([], lambda b, p: b.exp(b.constant(0.0, F32, (50, 50))))
    (const,) = f.ops
    assert const.name == "constant" and np.asarray(const.attrs["value"]).ndim == 0
    assert splat_value(f.outputs[0]) == 1.0 and f.outputs[0].type == T(50, 50)


def test_splats_fold_over_symbolic_shapes():
    def body(b, p):
        two = b.add(b.constant(1.0, F32), b.constant(1.0, F32))
        return b.broadcast_to(two, shape=("N", 3))
    f = canonicalized([("x", T("N"))], body)
    assert op_names(f) == ["constant"]
    assert f.outputs[0].type == T("N", 3) and splat_value(f.outputs[0]) == 2.0


def test_fold_limit_is_respected():
    def body(b, p):
        return b.transpose(b.constant(np.arange(12.0).reshape(3, 4), F32))
    assert op_names(canonicalized([], body)) == ["constant"]
    assert op_names(canonicalized([], body, **{"fold-limit": 8})) == ["constant", "transpose"]


def test_dim_size_folds_only_static_dims():
    def body(b, p):
        return b.dim_size(p[0], axis=1, dtype=F32), b.dim_size(p[0], axis=0, dtype=F32)
    f = canonicalized([("x", T("N", 7))], body)
    assert splat_value(f.outputs[0]) == 7.0
    assert f.outputs[1].owner.name == "dim_size"


def test_cast_to_the_same_dtype_and_select_on_constants():
    def body(b, p):
        x, y = p
        same = b.cast(x, dtype=F32)
        yes = b.select(b.constant(True, DType.bool), x, y)
        no = b.select(b.constant(False, DType.bool), x, y)
        both = b.select(b.gt(x, y), y, y)
        return same, yes, no, both
    f = assert_same_results([("x", T(4, 3)), ("y", T(3))], body, [randn(4, 3), randn(3)])
    assert f.outputs[0] is f.params[0] and f.outputs[1] is f.params[0]
    assert [v.owner.name for v in f.outputs[2:]] == ["broadcast_to", "broadcast_to"]


def test_a_cast_that_changes_dtype_stays():
    f = canonicalized([("x", T(3))], lambda b, p: b.cast(p[0], dtype=DType.i32))
    assert op_names(f) == ["cast"]


# ---------------------------------------------------------------------------
# Losses: canonicalize leaves their meaning alone


@pytest.mark.parametrize("loss,activation,target", [
    ("sparse_categorical_crossentropy", "softmax", np.array([0, 3, 9, 2], np.int32)),
    ("categorical_crossentropy", "softmax", np.eye(10, dtype=np.float32)[[1, 4, 4, 0]]),
    ("binary_crossentropy", "sigmoid", (RNG.random((4, 10)) > 0.5).astype(np.float32)),
])
def test_a_probability_loss_keeps_its_form(loss, activation, target):
    # a loss of probabilities computed elsewhere (here: a parameter) is not a logits loss
    # (the Builder builds a loss of a softmax/sigmoid *output* from the logits already)
    t_type = TensorType(DType.from_numpy(target.dtype), target.shape)
    params = [("p", T(4, 10)), ("t", t_type)]
    f = canonicalized(params, lambda b, p: b.emit(loss, b.emit(activation, p[0]), p[1]))
    assert op_names(f) == [loss] and f.ops[0].attrs["from_logits"] is True      # built so
    g = canonicalized(params, lambda b, p: b.emit(loss, p[0], p[1]))
    assert op_names(g) == [loss] and g.ops[0].attrs["from_logits"] is False


def test_shared_softmax_stays_for_its_other_users():
    def body(b, p):
        probs = b.softmax(p[0])
        return b.sparse_categorical_crossentropy(probs, p[1]), b.mul(probs, probs)
    f = canonicalized([("z", T("N", 5)), ("y", T("N", dtype=DType.i64))], body)
    assert sorted(op_names(f)) == ["mul", "softmax", "sparse_categorical_crossentropy"]
    loss_op = f.outputs[0].owner
    assert loss_op.attrs["from_logits"] and loss_op.operands[0] is f.params[0]


# ---------------------------------------------------------------------------
# The driver and the pattern table


def test_statistics_count_each_pattern():
    report = PipelineReport()

    def body(b, p):
        one = b.constant(1.0, F32)
        return b.mul(b.mul(p[0], one), one), b.neg(b.neg(p[0]))
    canonicalized([("x", T(2))], body, report=report)
    counters = report.records[0].counters
    assert counters["mul-one"] == 2 and counters["neg-neg"] == 1
    assert counters["dead-ops-erased"] == 2       # the constant 1 and the inner neg


def test_every_pattern_states_its_identity():
    from runtime.commands.passes import pattern_identities

    identities = dict(pattern_identities())
    assert set(identities) == set(CANONICAL.names())
    assert all("->" in text for text in identities.values()), identities


def test_a_pattern_changing_the_type_is_an_internal_error():
    bad = PatternSet()

    @bad.pattern("bad", "neg")
    def _(op: Op, rw: Rewriter):
        # neg(x) -> sum(x)   (wrong: changes the shape)
        return rw.b.sum(op.operands[0])

    f = build([("x", T(3))], lambda b, p: b.neg(p[0]))
    with pytest.raises(AssertionError, match="replaced a tensor<3xf32> result"):
        apply_patterns(f, bad)


def test_patterns_that_undo_each_other_are_caught():
    loop = PatternSet()

    @loop.pattern("neg-to-mul", "neg")
    def _(op, rw):
        # neg(x) -> x * -1
        return rw.b.mul(op.operands[0], rw.b.constant(-1.0, F32))

    @loop.pattern("mul-to-neg", "mul")
    def _(op, rw):
        # x * -1 -> neg(x)
        return rw.b.neg(op.operands[0]) if is_splat(op.operands[1], -1) else None

    f = build([("x", T(3))], lambda b, p: b.neg(p[0]))
    with pytest.raises(AssertionError, match="runaway rewriting"):
        apply_patterns(f, loop)


def test_canonicalize_is_idempotent_on_the_examples():
    from compiler.ir.printer import print_module
    from frontend_dsl.api import compile_file

    for path in ["examples/mnist_mlp.dl", "examples/sigmoid_chain.dl", "examples/student_pass.dl"]:
        once = run_pipeline(compile_file(path), "canonicalize")
        text = print_module(once)
        assert print_module(run_pipeline(once, "canonicalize")) == text


# ---------------------------------------------------------------------------
# A property: canonicalization never changes results


_UNARY = ["neg", "exp", "log", "relu", "square", "tanh", "abs"]
_BINARY = ["add", "sub", "mul", "div", "maximum"]
_CONSTANTS = [0.0, -0.0, 1.0, -1.0, 2.0]


@st.composite
def programs(draw):
    steps = []
    for _ in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):
            steps.append(("unary", draw(st.sampled_from(_UNARY))))
        else:
            steps.append(("binary", draw(st.sampled_from(_BINARY)),
                          draw(st.sampled_from(["x", "self", *map(str, _CONSTANTS)])),
                          draw(st.booleans())))
    return steps


def _program_body(steps):
    def body(b, p):
        v = p[0]
        for step in steps:
            if step[0] == "unary":
                v = b.emit(step[1], v)
                continue
            _, name, other, swap = step
            o = p[0] if other == "x" else v if other == "self" else b.constant(float(other), F32)
            # float("-0.0") keeps its sign
            lhs, rhs = (o, v) if swap else (v, o)
            v = b.emit(name, lhs, rhs)
        return v
    return body


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs())
def test_random_programs_keep_their_results(steps):
    # signed zeros and values whose exp overflows: default rewrites must be exact for them
    x = np.array([[-2.0, -0.5, 0.0, -0.0], [0.25, 1.0, 3.0, 100.0]], np.float32)
    before = build([("x", T("N", 4))], _program_body(steps))
    after = canonicalized([("x", T("N", 4))], _program_body(steps))
    assert after.output_types == before.output_types
    expected, got = interpret(before, [x])[0], interpret(after, [x])[0]
    np.testing.assert_array_equal(got, expected)       # bit-for-bit, signed zeros included
    numbers = ~np.isnan(expected)                        # a NaN's sign bit means nothing
    np.testing.assert_array_equal(np.signbit(got)[numbers], np.signbit(expected)[numbers])


# ---------------------------------------------------------------------------
# A mask of a max-pool gradient moves onto the pooled gradient


def _bits_equal(got: np.ndarray, want: np.ndarray) -> bool:
    """Bit for bit, the sign of zero included (NaN's sign aside)."""
    nan = np.isnan(want)
    return (np.array_equal(np.isnan(got), nan) and np.array_equal(got[~nan], want[~nan])
            and np.array_equal(np.signbit(got[~nan]), np.signbit(want[~nan])))


def _with_specials(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Normal values with NaN, ±inf, ±0.0 and ties (1.5) sprinkled in."""
    x = rng.standard_normal(shape).astype(np.float32)
    picks = rng.random(shape)
    for lo, value in ((0.0, np.nan), (0.04, np.inf), (0.08, -np.inf), (0.14, -0.0), (0.2, 0.0), (0.26, 1.5)):
        x[(picks >= lo) & (picks < lo + 0.06)] = value
    return x


POOL_WINDOWS = [
    {"pool_size": (2, 2), "strides": (2, 2), "padding": (0, 0, 0, 0)},
    {"pool_size": (3, 3), "strides": (1, 1), "padding": (1, 1, 1, 1)},      # overlapping windows
    {"pool_size": (3, 2), "strides": (2, 3), "padding": (1, 0, 2, 1)},      # odd sizes, uneven padding
    {"pool_size": (2, 2), "strides": (1, 1), "padding": (2, 2, 0, 0)},      # windows wholly in padding
]


@pytest.mark.parametrize("attrs", POOL_WINDOWS)
def test_mask_of_a_max_pool_gradient_moves_before_the_scatter_exactly(attrs):
    """``select(y > 0, max_pool2d_grad(y, dy), 0)`` (relu's backward after a max pool's) becomes
    ``max_pool2d_grad(y, select(max_pool2d(y) > 0, dy, 0))``: bit for bit the same on NaN,
    ±inf, ±0 and tied maxima, whatever the windows."""
    h, w = 7, 8
    probe, b = new_function("probe", [("y", T(2, h, w, 3))])
    oh, ow = b.max_pool2d(probe.params[0], **attrs).type.shape[1:3]
    params = [("y", T(2, h, w, 3)), ("dy", T(2, oh, ow, 3))]

    def body(b, p):
        mask = b.gt(p[0], b.scalar_like(0, p[0]))
        return b.select(mask, b.max_pool2d_grad(p[0], p[1], **attrs), b.scalar_like(0, p[1]))

    before, after = build(params, body), canonicalized(params, body)
    assert op_names(after).count("select") == 1 and "max_pool2d" in op_names(after)
    select = next(op for op in after.ops if op.name == "select")
    assert select.result.type.shape == (2, oh, ow, 3)                # the mask is on the pooled gradient
    rng = np.random.default_rng(len(POOL_WINDOWS) + attrs["pool_size"][0])
    for _ in range(3):
        args = [_with_specials((2, h, w, 3), rng), _with_specials((2, oh, ow, 3), rng)]
        assert _bits_equal(interpret(after, args)[0], interpret(before, args)[0])


@pytest.mark.parametrize("case", ["negative-zero", "one", "other-tensor", "ge"])
def test_mask_of_a_max_pool_gradient_stays_when_it_is_not_that_mask(case):
    """The rewrite needs exactly ``y > 0`` of the pooled tensor and a ``+0.0`` otherwise."""
    attrs = POOL_WINDOWS[0]
    params = [("y", T(1, 4, 4, 2)), ("z", T(1, 4, 4, 2)), ("dy", T(1, 2, 2, 2))]

    def body(b, p):
        y = p[0]
        tested = p[1] if case == "other-tensor" else y
        mask = b.emit("ge" if case == "ge" else "gt", tested, b.scalar_like(0, y))
        other = {"negative-zero": -0.0, "one": 1.0}.get(case, 0.0)
        return b.select(mask, b.max_pool2d_grad(y, p[2], **attrs), b.scalar_like(other, y))

    assert "max_pool2d" not in op_names(canonicalized(params, body))
