"""Every differentiable op's VJP rule against central finite differences, in float64.

For each case a one-op function is built; the op's ``vjp`` is called with a
cotangent parameter ``ct``; the resulting IR is run by the interpreter and
compared, element by element, with ``d <ct, op(x)> / dx`` by finite
differences of the op's own reference semantics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from compiler.ir.builder import new_function
from compiler.ir.core import Value
from compiler.ir.interpreter import interpret
from compiler.ir.types import DType, TensorType
from compiler.ops import OPS
from compiler.ops.base import normalize_attrs

F64 = DType.f64
SYMBOLS = {"N": 3}
STEP = 1e-6


@dataclass
class Arg:
    """An operand: its type and the domain its random values come from."""

    shape: tuple
    domain: str = "any"        # any | pos | prob | unit | away0 | zeros | bool | label<C>
    dtype: DType = F64


@dataclass
class Case:
    op: str
    args: list[Arg]
    attrs: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        shapes = ",".join("x".join(map(str, a.shape)) or "scalar" for a in self.args)
        attrs = ",".join(f"{k}={v}" for k, v in self.attrs.items())
        return f"{self.op}({shapes}{';' + attrs if attrs else ''})"


def sample(arg: Arg, rng: np.random.Generator) -> np.ndarray:
    return np.asarray(_draw(arg, rng))


def _draw(arg: Arg, rng: np.random.Generator):
    shape = tuple(SYMBOLS.get(d, d) for d in arg.shape)
    if arg.domain == "bool":
        return rng.random(shape) < 0.5
    if arg.domain.startswith("label"):
        return rng.integers(0, int(arg.domain[5:]), size=shape).astype(arg.dtype.np)
    if arg.domain == "pos":
        return rng.uniform(0.5, 2.0, shape)
    if arg.domain == "prob":
        return rng.uniform(0.05, 0.95, shape)
    if arg.domain == "unit":
        return rng.uniform(0.0, 1.0, shape)
    if arg.domain == "away0":
        return rng.uniform(0.2, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
    if arg.domain == "zeros":          # about a third exact zeros (a product's kinks)
        return rng.standard_normal(shape) * (rng.random(shape) < 0.67)
    return rng.standard_normal(shape)


BROADCAST_PAIRS = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 3), (4, 1)), ((3,), ()),
                   (("N", 4), (1, 4))]
UNARY_SHAPES = [(3, 4), ("N", 2), ()]


def _cases() -> list[Case]:
    cases: list[Case] = []
    for lhs, rhs in BROADCAST_PAIRS:
        for name in ("add", "sub", "mul", "maximum", "minimum"):
            cases.append(Case(name, [Arg(lhs), Arg(rhs)]))
        cases.append(Case("div", [Arg(lhs), Arg(rhs, "away0")]))
        cases.append(Case("pow", [Arg(lhs, "pos"), Arg(rhs)]))
    cases.append(Case("select", [Arg((3, 4), "bool", DType.bool), Arg((4,)), Arg((3, 1))]))
    cases.append(Case("select", [Arg(("N", 1), "bool", DType.bool), Arg(("N", 2)), Arg(())]))
    domains = {"log": "pos", "sqrt": "pos", "reciprocal": "pos", "relu": "away0", "abs": "away0"}
    for shape in UNARY_SHAPES:
        for name in ("neg", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "abs", "square",
                     "reciprocal"):
            cases.append(Case(name, [Arg(shape, domains.get(name, "any"))]))
    for shape in UNARY_SHAPES:       # compiler/ops/math.py and activations.py
        for name in ("erf", "expm1", "sin", "cos", "softplus", "silu", "gelu", "selu", "hard_sigmoid"):
            cases.append(Case(name, [Arg(shape)]))
        cases += [Case("log1p", [Arg(shape, "pos")]), Case("gelu", [Arg(shape)], {"approximate": True}),
                  Case("elu", [Arg(shape, "away0")], {"alpha": 0.7}),
                  Case("leaky_relu", [Arg(shape, "away0")], {"alpha": 0.1})]
    for lhs, rhs in BROADCAST_PAIRS:
        cases.append(Case("mod", [Arg(lhs), Arg(rhs, "away0")]))
    cases += [Case("clip", [Arg((3, 4)), Arg((4,)), Arg(())]), Case("clip", [Arg(("N", 1)), Arg(()), Arg((2,))])]
    cases += [
        Case("broadcast_to", [Arg((3, 1))], {"shape": (2, 3, 4)}),
        Case("broadcast_to", [Arg((1,))], {"shape": (5,)}),
        Case("broadcast_to", [Arg(())], {"shape": (2, 2)}),
        Case("reshape", [Arg((2, 6))], {"shape": (3, 4)}),
        Case("reshape", [Arg(("N", 2, 3))], {"shape": ("N", 6)}),
        Case("transpose", [Arg((2, 3, 4))], {"perm": (2, 0, 1)}),
        Case("transpose", [Arg(("N", 4))], {}),
    ]
    for lhs, rhs in [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (3, 4, 2)),
                     ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)), ((2, 3, 4), (4,)),
                     (("N", 4), (4, 2))]:
        cases.append(Case("matmul", [Arg(lhs), Arg(rhs)]))
    # matmul_lowp takes f32 (not f64) operands: its reference sums in the arrays' own float
    # type (f64 here, f32 in the interpreter), so differences stay exact; precision="bf16"'s
    # gradient treats the rounding as the identity (piecewise constant: differences see 0)
    for lhs, rhs in [((3, 4), (4, 5)), ((2, 1, 3, 4), (3, 4, 2)), ((4,), (4, 5))]:
        cases.append(Case("matmul_lowp", [Arg(lhs, dtype=DType.f32), Arg(rhs, dtype=DType.f32)]))
    for name in ("sum", "mean", "max", "min"):
        for shape, axes, keep in [((3, 4), None, False), ((3, 4), (0,), False),
                                  ((3, 4), (1,), True), ((2, 3, 4), (0, 2), False),
                                  (("N", 3), (0,), True), (("N", 3), None, False)]:
            cases.append(Case(name, [Arg(shape)], {"axes": axes, "keepdims": keep}))
    for shape, axes, keep in [((3, 4), None, False), ((3, 4), (1,), True), ((2, 3, 4), (0, 2), False),
                              (("N", 3), (0,), False)]:
        for name in ("prod", "logsumexp", "var", "std"):
            cases.append(Case(name, [Arg(shape)], {"axes": axes, "keepdims": keep}))
        cases.append(Case("prod", [Arg(shape, "zeros")], {"axes": axes, "keepdims": keep}))
        cases.append(Case("var", [Arg(shape)], {"axes": axes, "keepdims": keep, "ddof": 1}))
        cases.append(Case("std", [Arg(shape)], {"axes": axes, "keepdims": keep, "ddof": 1}))
        cases.append(Case("norm", [Arg(shape, "away0")], {"ord": 1, "axes": axes, "keepdims": keep}))
        cases.append(Case("norm", [Arg(shape)], {"ord": 2, "axes": axes, "keepdims": keep}))
    for shape, axis in [((3, 4), 0), ((3, 4), -1), (("N", 2, 3), 1), ((5,), 0)]:
        for reverse in (False, True):
            for exclusive in (False, True):
                cases.append(Case("cumsum", [Arg(shape)],
                                  {"axis": axis, "reverse": reverse, "exclusive": exclusive}))
    for shape, k in [((3, 4), 2), (("N", 4), 4), ((2, 3, 5), 1), ((5,), 3), ((3, 4), 0)]:
        cases.append(Case("top_k", [Arg(shape)], {"k": k}))
    for name in ("softmax", "log_softmax"):
        cases.append(Case(name, [Arg((3, 4))], {"axis": -1}))
        cases.append(Case(name, [Arg(("N", 4))], {"axis": 0}))
    cases += _indexing_cases()
    for shape in [(3, 2), ("N", 2)]:
        cases.append(Case("mse", [Arg(shape), Arg(shape)]))
        cases.append(Case("mae", [Arg(shape), Arg(shape)]))
        cases.append(Case("binary_crossentropy", [Arg(shape, "prob"), Arg(shape, "unit")]))
        cases.append(Case("binary_crossentropy", [Arg(shape), Arg(shape, "unit")],
                          {"from_logits": True}))
    for batch in [(4,), ("N",), (2, 3)]:
        for logits in (False, True):
            domain = "any" if logits else "prob"
            cases.append(Case("sparse_categorical_crossentropy",
                              [Arg((*batch, 3), domain), Arg(batch, "label3", DType.i64)],
                              {"from_logits": logits}))
            cases.append(Case("categorical_crossentropy",
                              [Arg((*batch, 3), domain), Arg((*batch, 3), "unit")],
                              {"from_logits": logits}))
    window = {"pool_size": (3, 2), "strides": (2, 1), "padding": (1, 1, 0, 1)}    # compiler/ops/pool.py
    image, pooled = Arg(("N", 5, 4, 2)), Arg(("N", 3, 4, 2))
    cases += [Case("max_pool2d", [image], window), Case("avg_pool2d", [image], window),
              Case("avg_pool2d", [image], {**window, "count_include_pad": True}),
              Case("max_pool2d_grad", [image, pooled], window), Case("max_pool2d_gather", [image, image], window),
              Case("avg_pool2d_grad", [pooled], {**window, "input_size": (5, 4)}),
              Case("global_avg_pool", [image]), Case("global_max_pool", [image], {"keepdims": True}),
              Case("flatten", [image])]
    cases += _conv_cases()
    cases += _attention_cases()
    return cases


def _attention_cases() -> list[Case]:
    """compiler/ops/attention.py (more in tests/test_attention.py); attention_grad's rule is
    the VJP of its decomposition: second derivatives of attention."""
    q, k, v = Arg(("N", 2, 3, 4)), Arg(("N", 2, 5, 4)), Arg(("N", 2, 5, 3))
    mask, out = Arg((3, 5), "bool", DType.bool), Arg(("N", 2, 3, 3))
    return [
        Case("tril", [Arg(("N", 3, 4))], {"k": -1}), Case("triu", [Arg((4, 3))], {"k": 1}),
        Case("masked_softmax", [Arg(("N", 5)), Arg((5,), "bool", DType.bool)], {"axis": -1}),
        Case("attention", [q, k, v, mask], {"causal": True}),
        Case("attention", [q, k, v, Arg((), "bool", DType.bool)], {"scale": 0.7}),
        Case("attention_grad", [q, k, v, mask, out, out], {"causal": True}),
    ]


def _indexing_cases() -> list[Case]:
    """The plumbing ops of compiler/ops/indexing.py (second-order checks: tests/test_ops_indexing.py)."""
    label = DType.i64
    return [
        Case("slice", [Arg((5, "N"))], {"start": (1, None), "stop": (None, None), "step": (2, -1)}),
        Case("slice", [Arg((4, 3))], {"start": (-1,), "stop": (0,), "step": (-2,)}),
        Case("slice_update", [Arg((5, 3)), Arg((2, 3))], {"start": (4,), "stop": (None,), "step": (-3,)}),
        Case("slice_update", [Arg(("N", 4)), Arg(("N", 2))], {"start": (None, 1), "stop": (None, 3)}),
        Case("concat", [Arg(("N", 2)), Arg(("N", 1)), Arg(("N", 3))], {"axis": 1}),
        Case("concat", [Arg((2, 3)), Arg((1, 3))], {"axis": 0}),
        Case("stack", [Arg(("N", 2)), Arg(("N", 2))], {"axis": -1}),
        Case("split", [Arg((6, "N"))], {"sections": 3, "axis": 0}),
        Case("split", [Arg((2, 5))], {"indices": (1, 4, 3), "axis": 1}),
        Case("flip", [Arg((3, "N"))], {}),
        Case("squeeze", [Arg((1, "N", 1))], {"axis": (0, 2)}),
        Case("expand_dims", [Arg(("N", 2))], {"axis": (0, -1)}),
        Case("where", [Arg(("N", 1), "bool", DType.bool), Arg(("N", 2)), Arg(())]),
        Case("pad", [Arg((3, "N"))], {"pad_width": np.array([[1, 2], [0, 0]]), "value": 1.5}),
        Case("pad", [Arg((3, 2))], {"pad_width": np.array([2, 3]), "mode": "reflect"}),
        Case("pad", [Arg((3, 2))], {"pad_width": np.array([[4, 1], [1, 2]]), "mode": "symmetric"}),
        Case("pad", [Arg((2, 3))], {"pad_width": np.array(2), "mode": "edge"}),
        Case("pad", [Arg((2, 3))], {"pad_width": np.array([[0, 3], [5, 0]]), "mode": "wrap"}),
        Case("tile", [Arg(("N", 2))], {"reps": (2, 1, 3)}),
        Case("repeat", [Arg(("N", 2))], {"repeats": (3,), "axis": 1}),
        Case("repeat", [Arg((3,))], {"repeats": (2, 0, 1)}),
        Case("repeat", [Arg((2, 2))], {"repeats": (2,)}),
        Case("gather", [Arg((4, "N")), Arg((2, 3), "label4", label)], {"axis": 0}),
        Case("gather", [Arg(("N", 3)), Arg((), "label3", label)], {"axis": 1}),
        Case("take_along_axis", [Arg(("N", 4)), Arg((1, 3), "label4", label)], {"axis": 1}),
        Case("scatter_add", [Arg((4, 2)), Arg((5,), "label4", label), Arg((5, 2))], {"axis": 0}),
        Case("scatter_add_along_axis", [Arg((3, 1)), Arg((3, 4), "label3", label), Arg((3, 4))],
             {"axis": 0}),
    ]


def _conv_cases() -> list[Case]:
    """compiler/ops/conv.py: each op once with strides, padding, dilation and groups."""
    geo = {"strides": (2, 1), "padding": (1, 0, 2, 1), "dilations": (1, 2), "groups": 2}
    return [
        Case("conv2d", [Arg(("N", 4, 5, 4)), Arg((2, 2, 2, 4))], geo),
        Case("conv2d_backprop_input", [Arg(("N", 2, 6, 4)), Arg((2, 2, 2, 4))], {"input_size": (4, 5), **geo}),
        Case("conv2d_backprop_filter", [Arg(("N", 4, 5, 4)), Arg(("N", 2, 6, 4))], {"filter_size": (2, 2), **geo}),
        Case("conv1d", [Arg((2, 6, 3)), Arg((2, 3, 2))], {"strides": (2,), "padding": (1, 0)}),
        Case("conv2d_transpose", [Arg((1, 2, 3, 2)), Arg((2, 2, 3, 2))],
             {"strides": (2, 2), "padding": (1, 0, 0, 0), "output_padding": (1, 0)}),
    ]


CASES = _cases()


def build_vjp(case: Case):
    """A function ``(operands..., cts...) -> cotangents`` from the op's VJP rule (one ``ct``
    parameter per result of the op)."""
    types = [TensorType(a.dtype, a.shape) for a in case.args]
    func, b = new_function("vjp", [(f"x{i}", t) for i, t in enumerate(types)])
    operands = list(func.params)
    b.emit(case.op, *operands, **case.attrs)
    op = func.ops[-1]
    result_cts = [Value(r.type, None, len(operands) + i, f"ct{i}") for i, r in enumerate(op.results)]
    func.params.extend(result_cts)
    cts = OPS[case.op].vjp(b, op, *result_cts)
    assert len(cts) == len(operands), f"{case.op}: one cotangent per operand"
    for operand, g in zip(operands, cts):
        if g is not None:
            assert g.type == operand.type, f"{case.op}: cotangent {g.type} for operand {operand.type}"
    func.outputs = [g for g in cts if g is not None]
    return func, [g is not None for g in cts], [r.type for r in op.results]


def numeric_grad(case: Case, arrays: list[np.ndarray], cts: list[np.ndarray], which: int) -> np.ndarray:
    """Central differences of ``sum(ct * op(arrays))`` (over the op's float results) with
    respect to operand ``which``."""
    opdef = OPS[case.op]
    attrs = normalize_attrs(opdef, case.attrs)
    for key, spec in opdef.attrs.items():
        if spec.kind == "dims":
            attrs[key] = tuple(SYMBOLS.get(d, d) for d in attrs[key])

    def objective(x: np.ndarray) -> float:
        args = list(arrays)
        args[which] = x
        outs = opdef.reference(*args, **attrs)
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        return float(sum(np.sum(ct * out) for ct, out in zip(cts, outs) if out.dtype.kind == "f"))

    x = arrays[which]
    out = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += STEP
        minus[idx] -= STEP
        out[idx] = (objective(plus) - objective(minus)) / (2 * STEP)
    return out


@pytest.mark.parametrize("case", CASES, ids=str)
def test_vjp_matches_finite_differences(case: Case):
    rng = np.random.default_rng(abs(hash(str(case))) % 2**32)
    func, has_ct, out_types = build_vjp(case)
    arrays = [sample(a, rng) for a in case.args]
    cts = [rng.standard_normal(t.concrete_shape(SYMBOLS)) if t.dtype.is_float
           else np.zeros(t.concrete_shape(SYMBOLS), t.dtype.np) for t in out_types]
    # f32 operands (matmul_lowp's) are drawn as f32; the differences run in f64 on the same values
    arrays = [x.astype(np.float32) if a.dtype is DType.f32 else x for a, x in zip(case.args, arrays)]
    cts = [c.astype(np.float32) if t.dtype is DType.f32 else c for t, c in zip(out_types, cts)]
    analytic = iter(interpret(func, [*arrays, *cts]))
    arrays = [x.astype(np.float64) if x.dtype == np.float32 else x for x in arrays]
    checked = 0
    for i, (arg, flows) in enumerate(zip(case.args, has_ct)):
        if not arg.dtype.is_float or arg.domain == "bool":
            assert not flows, f"{case.op}: no gradient should flow into a {arg.dtype} operand"
            continue
        assert flows, f"{case.op}: operand {i} is float but got no cotangent"
        got = next(analytic)
        want = numeric_grad(case, arrays, cts, i)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"operand {i}")
        checked += 1
    assert checked >= 1


def test_every_differentiable_op_has_a_vjp_case():
    covered = {c.op for c in CASES} | {"cast"}
    wanted = {name for name, op in OPS.items() if op.differentiable}
    assert wanted - covered == set()


def test_cast_vjp_between_floats_and_none_for_ints():
    func, b = new_function("f", [("x", TensorType(DType.f32, ("N", 2))),
                                 ("ct", TensorType(F64, ("N", 2)))])
    x, ct = func.params
    b.cast(x, dtype=F64)
    (g,) = OPS["cast"].vjp(b, func.ops[-1], ct)
    assert g.type == x.type
    func.outputs = [g]
    c = np.array([[1.5, -2.25], [3.0, 0.1]])
    (out,) = interpret(func, [np.zeros((2, 2), np.float32), c])
    np.testing.assert_array_equal(out, c.astype(np.float32))

    func2, b2 = new_function("g", [("x", TensorType(F64, (2,))), ("ct", TensorType(DType.i32, (2,)))])
    b2.cast(func2.params[0], dtype=DType.i32)
    assert OPS["cast"].vjp(b2, func2.ops[-1], func2.params[1]) == [None]


def test_max_gradient_is_shared_among_ties():
    func, b = new_function("f", [("x", TensorType(F64, (4,))), ("ct", TensorType(F64, ()))])
    x, ct = func.params
    b.max(x)
    (g,) = OPS["max"].vjp(b, func.ops[-1], ct)
    func.outputs = [g]
    (out,) = interpret(func, [np.array([1.0, 3.0, 3.0, 0.0]), np.array(2.0)])
    np.testing.assert_array_equal(out, [0.0, 1.0, 1.0, 0.0])


def test_clipped_probability_gradients_vanish_outside_the_clip():
    p = np.array([[0.0, 0.5, 1.0]])
    func, b = new_function("f", [("p", TensorType(F64, (1, 3))), ("y", TensorType(DType.i64, (1,))),
                                 ("ct", TensorType(F64, ()))])
    pred, labels, ct = func.params
    b.sparse_categorical_crossentropy(pred, labels)
    g, none = OPS["sparse_categorical_crossentropy"].vjp(b, func.ops[-1], ct)
    assert none is None
    func.outputs = [g]
    for label, want in [(0, [0.0, 0.0, 0.0]), (1, [0.0, -2.0, 0.0]), (2, [0.0, 0.0, 0.0])]:
        (out,) = interpret(func, [p, np.array([label]), np.array(1.0)])
        np.testing.assert_allclose(out, [want])
