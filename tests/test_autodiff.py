"""Reverse-mode autodiff (compiler/passes/autodiff.py) on hand-built IR.

Gradients are interpreted with the reference interpreter and compared with
exact formulas or with central finite differences in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from compiler.checking.gradcheck import gradcheck
from compiler.diagnostics import AutodiffError, DlErrors, Location
from compiler.ir.builder import Builder, new_function
from compiler.ir.core import Function, Module, Value
from compiler.ir.interpreter import interpret
from compiler.ir.types import DType, TensorType
from compiler.ir.verifier import verify_function
from compiler.ops import OPS
from compiler.passes import PASSES, grad, inline_function, run_pipeline
from compiler.passes.manager import PassContext

F32, F64, I32 = DType.f32, DType.f64, DType.i32
SRC = Location("model.dl", 3, 5)


def T(*shape: int | str, dtype: DType = F64) -> TensorType:
    return TensorType(dtype, tuple(shape))


def build(name: str, params: list[tuple[str, TensorType]], body, module: Module | None = None,
          loc: Location = SRC) -> Function:
    """A function whose outputs are ``body(builder, *params)``; added to ``module`` if given."""
    func, b = new_function(name, params, loc=loc)
    with b.at(loc):
        out = body(b, *func.params)
    func.outputs = list(out) if isinstance(out, (list, tuple)) else [out]
    if module is not None:
        module.add(func)
    return func


def run(func: Function, *args: np.ndarray) -> list[np.ndarray]:
    """Verify ``func`` (gradient code must be valid IR), then interpret it."""
    verify_function(func)
    return interpret(func, list(args))


def numeric_grad(func: Function, args: list[np.ndarray], index: int, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences of output 0 of ``func`` in argument ``index``."""
    x = np.asarray(args[index], dtype=np.float64)
    out = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[i] += eps
        minus[i] -= eps
        hi = interpret(func, [*args[:index], plus, *args[index + 1:]])[0]
        lo = interpret(func, [*args[:index], minus, *args[index + 1:]])[0]
        out[i] = (float(hi) - float(lo)) / (2 * eps)
    return out


rng = np.random.default_rng(0)


# ---------------------------------------------------------------------------
# Basic rules, broadcasting, fan-out


def test_grad_function_has_same_params_and_named_outputs():
    m = Module()
    build("loss", [("w", T(3)), ("b", T()), ("x", T(3))],
          lambda b, w, bias, x: b.sum(b.add(b.mul(w, x), bias)), m)
    g = grad(m, "loss", ["w", "b"], new_name="dloss", with_value=True)
    assert m.get("dloss") is g
    assert [p.name for p in g.params] == ["w", "b", "x"]
    assert [p.type for p in g.params] == [T(3), T(), T(3)]
    assert g.output_names == ["loss", "d_w", "d_b"]
    assert g.output_types == [T(), T(3), T()]
    w, bias, x = rng.standard_normal(3), np.array(0.5), rng.standard_normal(3)
    value, dw, db = run(g, w, bias, x)
    assert value == pytest.approx(np.sum(w * x + bias))
    np.testing.assert_allclose(dw, x)
    assert db == pytest.approx(3.0)


def test_output_that_is_a_parameter():
    m = Module()
    build("f", [("x", T()), ("y", T())], lambda b, x, y: x, m)
    g = grad(m, "f", ["x", "y"], new_name="df", with_value=True)
    assert [float(v) for v in run(g, np.array(2.5), np.array(1.0))] == [2.5, 1.0, 0.0]


def test_without_value_returns_only_gradients():
    m = Module()
    build("f", [("x", T(2))], lambda b, x: b.sum(b.mul(x, x)), m)
    g = grad(m, "f", ["x"], new_name="df")
    assert g.output_names == ["d_x"]
    x = np.array([1.5, -2.0])
    np.testing.assert_allclose(run(g, x)[0], 2 * x)


def test_fan_out_is_summed():
    # f(x) = sum(y*y + y) with y = tanh(x): y is used three times.
    m = Module()

    def body(b, x):
        y = b.tanh(x)
        return b.sum(b.add(b.mul(y, y), y))

    build("f", [("x", T(4))], body, m)
    g = grad(m, "f", ["x"], new_name="df")
    x = rng.standard_normal(4)
    y = np.tanh(x)
    np.testing.assert_allclose(run(g, x)[0], (2 * y + 1) * (1 - y * y), rtol=1e-12)


@pytest.mark.parametrize("bias_shape", [(3,), (1, 3), (2, 1), ()])
def test_broadcasting_is_undone(bias_shape):
    m = Module()
    build("f", [("x", T(2, 3)), ("b", T(*bias_shape))],
          lambda b, x, bias: b.sum(b.mul(b.add(x, bias), x)), m)
    g = grad(m, "f", ["b"], new_name="df")
    assert g.output_types == [T(*bias_shape)]
    x, bias = rng.standard_normal((2, 3)), rng.standard_normal(bias_shape)
    (db,) = run(g, x, bias)
    np.testing.assert_allclose(db, sum_to_shape(x, bias_shape), rtol=1e-12)


def sum_to_shape(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """numpy's own undoing of broadcasting, as the reference."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for i, d in enumerate(shape):
        if d == 1:
            g = g.sum(axis=i, keepdims=True)
    return g


def test_unused_param_gets_zeros_of_its_type():
    m = Module()
    build("f", [("x", T(2, 3, dtype=F32)), ("w", T(4, dtype=F32))],
          lambda b, x, w: b.sum(b.mul(x, x)), m)
    g = grad(m, "f", ["x", "w"], new_name="df")
    assert g.output_types == [T(2, 3, dtype=F32), T(4, dtype=F32)]
    x = rng.standard_normal((2, 3)).astype(np.float32)
    dx, dw = run(g, x, np.ones(4, np.float32))
    np.testing.assert_allclose(dx, 2 * x, rtol=1e-6)
    assert dw.dtype == np.float32 and dw.shape == (4,) and not dw.any()


def test_unused_symbolic_param_gets_broadcast_zeros():
    m = Module()
    build("f", [("x", T(3)), ("h", T("N", 3))], lambda b, x, h: b.sum(b.mul(x, x)), m)
    g = grad(m, "f", ["h"], new_name="df")
    assert g.output_types == [T("N", 3)]
    assert "broadcast_to" in [op.name for op in g.ops]
    for n in (1, 5):
        (dh,) = run(g, np.ones(3), np.ones((n, 3)))
        assert dh.shape == (n, 3) and not dh.any()


def test_symbolic_batch_size():
    # mean over the batch of (x @ w): the gradient depends on the runtime N.
    m = Module()
    build("f", [("x", T("N", 4)), ("w", T(4, 2))], lambda b, x, w: b.mean(b.matmul(x, w)), m)
    g = grad(m, "f", ["w", "x"], new_name="df")
    for n in (1, 5):
        x, w = rng.standard_normal((n, 4)), rng.standard_normal((4, 2))
        dw, dx = run(g, x, w)
        np.testing.assert_allclose(dw, np.repeat(x.sum(0, keepdims=True).T, 2, 1) / (2 * n), rtol=1e-12)
        np.testing.assert_allclose(dx, np.repeat(w.sum(1)[None, :], n, 0) / (2 * n), rtol=1e-12)


def test_mlp_with_sparse_cross_entropy_matches_finite_differences():
    m = Module()

    def body(b, x, w1, b1, w2, b2, y):
        h = b.relu(b.add(b.matmul(x, w1), b1))
        logits = b.add(b.matmul(h, w2), b2)
        return b.sparse_categorical_crossentropy(logits, y, from_logits=True)

    func = build("loss", [("x", T("N", 4)), ("w1", T(4, 5)), ("b1", T(5)), ("w2", T(5, 3)),
                          ("b2", T(3)), ("y", T("N", dtype=I32))], body, m)
    g = grad(m, "loss", ["w1", "b1", "w2", "b2"], new_name="dloss")
    args = [rng.standard_normal((6, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5),
            rng.standard_normal((5, 3)), rng.standard_normal(3), rng.integers(0, 3, 6).astype(np.int32)]
    grads = run(g, *args)
    for k, index in enumerate([1, 2, 3, 4]):
        np.testing.assert_allclose(grads[k], numeric_grad(func, args, index), rtol=1e-5, atol=1e-8)


def test_non_differentiable_op_stops_the_gradient():
    # f(x) = sum(x * cast(argmax(x))): argmax lets no gradient through, and is no error.
    m = Module()

    def body(b, x):
        k = b.cast(b.argmax(x, axis=-1, keepdims=False), dtype=F64)
        return b.sum(b.mul(x, k))

    build("f", [("x", T(5))], body, m)
    g = grad(m, "f", ["x"], new_name="df")
    x = np.array([0.1, 3.0, -1.0, 0.5, 2.0])
    np.testing.assert_allclose(run(g, x)[0], np.full(5, 1.0))


def test_output_independent_of_wrt_gives_zero_gradient():
    m = Module()
    build("f", [("x", T(2)), ("w", T(2))], lambda b, x, w: b.sum(b.exp(x)), m)
    g = grad(m, "f", ["w"], new_name="df")
    assert [op.name for op in g.ops] == ["constant"]
    assert not run(g, np.ones(2), np.ones(2))[0].any()


def test_auxiliary_outputs_ride_along_with_value():
    m = Module()
    func = build("evaluate", [("x", T(3))],
                 lambda b, x: (b.sum(b.mul(x, x)), b.max(x)), m)
    func.output_names = ["loss", "largest"]
    g = grad(m, "evaluate", ["x"], new_name="vg", with_value=True)
    assert g.output_names == ["loss", "largest", "d_x"]
    x = np.array([1.0, 4.0, -2.0])
    loss, largest, dx = run(g, x)
    assert loss == pytest.approx(21.0) and largest == pytest.approx(4.0)
    np.testing.assert_allclose(dx, 2 * x)


def test_unused_forward_code_is_removed():
    # d/dw sum(tanh(x) * w) = tanh(x): the forward product and sum are dead.
    m = Module()
    build("f", [("x", T(3)), ("w", T(3))],
          lambda b, x, w: b.sum(b.mul(b.tanh(x), w)), m)
    g = grad(m, "f", ["w"], new_name="df")
    assert [op.name for op in g.ops if not op.loc.backward] == ["tanh"]


def test_gradient_ops_carry_backward_locations():
    m = Module()
    func, b = new_function("f", [("x", T(3))], loc=Location("model.dl", 1, 1))
    with b.at(Location("model.dl", 2, 9)):
        y = b.tanh(func.params[0])
    with b.at(Location("model.dl", 3, 12)):
        func.outputs = [b.sum(y)]
    m.add(func)
    g = grad(m, "f", ["x"], new_name="df")
    backward = [op for op in g.ops if op.loc.backward]
    assert backward, "no gradient ops were marked backward"
    assert {(op.loc.file, op.loc.line, op.loc.col) for op in backward} == {
        ("model.dl", 2, 9), ("model.dl", 3, 12)}
    forward = [op for op in g.ops if not op.loc.backward]
    assert [op.name for op in forward] == ["tanh"] and forward[0].loc.line == 2


def test_inline_function_copies_ops_with_their_locations():
    m = Module()
    f = build("f", [("x", T(2))], lambda b, x: b.tanh(x), m)
    h, b = new_function("h", [("y", T(2))])
    env = inline_function(b, f, h.params)
    h.outputs = [env[f.outputs[0]]]
    assert [op.loc for op in h.ops] == [op.loc for op in f.ops]
    assert h.ops[0] is not f.ops[0]
    np.testing.assert_allclose(run(h, np.array([0.5, 1.0]))[0], np.tanh([0.5, 1.0]))


# ---------------------------------------------------------------------------
# Errors


def test_bad_request_reports_every_problem_at_the_call():
    m = Module()
    build("f", [("x", T(3)), ("k", T(3, dtype=I32))], lambda b, x, k: b.mul(x, x), m)
    call = Location("model.dl", 7, 10)
    with pytest.raises(DlErrors) as info:
        grad(m, "f", ["z", "k"], new_name="df", loc=call)
    messages = [e.message for e in info.value.errors]
    assert messages == [
        "'z' is not a parameter of 'f'",
        "cannot differentiate with respect to 'k': its type i32[3] is not a float type",
        "grad needs a scalar float output, but 'f' returns f64[3]",
    ]
    assert all(e.loc == call and isinstance(e, AutodiffError) for e in info.value.errors)
    assert "df" not in m


def test_single_error_is_an_autodiff_error_with_location():
    m = Module()
    build("f", [("x", T(3))], lambda b, x: b.sum(x), m)
    call = Location("model.dl", 7, 10)
    with pytest.raises(AutodiffError) as info:
        grad(m, "f", ["y"], new_name="df", loc=call)
    assert not isinstance(info.value, DlErrors)
    assert info.value.render().startswith("model.dl:7:10: error: 'y' is not a parameter of 'f'")
    assert info.value.notes == ["parameters of 'f': x"]


def test_error_defaults_to_the_function_location():
    m = Module()
    build("f", [("x", T(3))], lambda b, x: b.sum(x), m, loc=Location("model.dl", 4, 1))
    with pytest.raises(AutodiffError) as info:
        grad(m, "f", [], new_name="df")
    assert info.value.message == "grad needs at least one parameter in 'wrt'"
    assert info.value.loc == Location("model.dl", 4, 1)


def test_unknown_function_and_taken_name():
    m = Module()
    build("f", [("x", T())], lambda b, x: b.mul(x, x), m)
    with pytest.raises(AutodiffError, match="cannot differentiate unknown function 'g'"):
        grad(m, "g", ["x"], new_name="dg")
    with pytest.raises(AutodiffError, match="a function named 'f' already exists"):
        grad(m, "f", ["x"], new_name="f")


def test_integer_output_is_rejected():
    m = Module()
    build("f", [("x", T(3))], lambda b, x: b.argmax(x, axis=-1, keepdims=False), m)
    with pytest.raises(AutodiffError, match=r"grad needs a scalar float output, but 'f' returns i64\[\]"):
        grad(m, "f", ["x"], new_name="df")


def test_missing_rules_are_all_listed_with_their_locations(monkeypatch):
    monkeypatch.setattr(OPS["tanh"], "vjp", None)
    monkeypatch.setattr(OPS["sigmoid"], "vjp", None)
    m = Module()
    func, b = new_function("f", [("x", T(3)), ("c", T(3))], loc=Location("model.dl", 1, 1))
    x, c = func.params
    with b.at(Location("model.dl", 2, 5)):
        y = b.tanh(x)
    with b.at(Location("model.dl", 3, 5)):
        z = b.sigmoid(y)
    with b.at(Location("model.dl", 4, 5)):
        unrelated = b.tanh(c)  # not on the path from x: no error
    with b.at(Location("model.dl", 5, 5)):
        func.outputs = [b.sum(b.mul(z, unrelated))]
    m.add(func)
    with pytest.raises(DlErrors) as info:
        grad(m, "f", ["x"], new_name="df")
    assert info.value.render() == (
        "model.dl:2:5: error: no gradient rule for dl.tanh\n"
        "model.dl:3:5: error: no gradient rule for dl.sigmoid")
    assert "df" not in m


def test_rule_returning_wrong_arity_is_an_internal_error_naming_the_op(monkeypatch):
    monkeypatch.setattr(OPS["tanh"], "vjp", lambda b, op, ct: [ct, ct])
    m = Module()
    build("f", [("x", T(3))], lambda b, x: b.sum(b.tanh(x)), m)
    with pytest.raises(AssertionError, match="VJP rule of dl.tanh returned 2 cotangents for 1 operands"):
        grad(m, "f", ["x"], new_name="df")


def test_rule_returning_wrong_type_is_an_internal_error_naming_the_op(monkeypatch):
    monkeypatch.setattr(OPS["tanh"], "vjp", lambda b, op, ct: [b.sum(ct)])
    m = Module()
    build("f", [("x", T(3))], lambda b, x: b.sum(b.tanh(x)), m)
    with pytest.raises(AssertionError, match="VJP rule of dl.tanh: cotangent 0 has type"):
        grad(m, "f", ["x"], new_name="df")


# ---------------------------------------------------------------------------
# Higher order


def second_derivative(body, x: float) -> tuple[float, float]:
    """(d/dx, d2/dx2) of the scalar function ``body`` at ``x``, by grad of grad."""
    m = Module()
    build("f", [("x", T())], body, m)
    df = grad(m, "f", ["x"], new_name="df")
    ddf = grad(m, "df", ["x"], new_name="ddf")
    return float(run(df, np.array(x))[0]), float(run(ddf, np.array(x))[0])


def test_second_derivative_of_cube_is_6x():
    d1, d2 = second_derivative(lambda b, x: b.mul(b.mul(x, x), x), 1.7)
    assert d1 == pytest.approx(3 * 1.7 ** 2, rel=1e-12)
    assert d2 == pytest.approx(6 * 1.7, rel=1e-12)


def test_second_derivative_of_pow_3():
    d1, d2 = second_derivative(lambda b, x: b.pow(x, b.scalar_like(3.0, x)), 1.3)
    assert d1 == pytest.approx(3 * 1.3 ** 2, rel=1e-9)
    assert d2 == pytest.approx(6 * 1.3, rel=1e-9)


def test_second_derivative_of_tanh():
    x = 0.4
    d1, d2 = second_derivative(lambda b, v: b.tanh(v), x)
    t = np.tanh(x)
    assert d1 == pytest.approx(1 - t * t, rel=1e-12)
    assert d2 == pytest.approx(-2 * t * (1 - t * t), rel=1e-12)


def test_second_derivative_of_sigmoid_chain():
    def body(b, x):
        w = b.scalar_like(1.5, x)
        return b.sigmoid(b.mul(w, b.sigmoid(b.mul(w, b.sigmoid(x)))))

    x, eps = 0.3, 1e-5
    d1, d2 = second_derivative(body, x)
    m = Module()
    f = build("f", [("x", T())], body, m)
    value = lambda v: float(run(f, np.array(v))[0])  # noqa: E731
    assert d1 == pytest.approx((value(x + eps) - value(x - eps)) / (2 * eps), rel=1e-7)
    d1_plus, _ = second_derivative(body, x + eps)
    d1_minus, _ = second_derivative(body, x - eps)
    assert d2 == pytest.approx((d1_plus - d1_minus) / (2 * eps), rel=1e-6)


def test_third_derivative_of_cube_is_constant_6():
    m = Module()
    build("f", [("x", T())], lambda b, x: b.mul(b.mul(x, x), x), m)
    grad(m, "f", ["x"], new_name="d1")
    grad(m, "d1", ["x"], new_name="d2")
    d3 = grad(m, "d2", ["x"], new_name="d3")
    for x in (-2.0, 0.0, 3.5):
        assert float(run(d3, np.array(x))[0]) == pytest.approx(6.0)


def test_hessian_vector_product_through_mlp():
    """grad of (grad(loss, w) . v) equals finite differences of grad(loss, w) along v."""
    m = Module()

    def loss_body(b, w1, w2, x, y):
        h = b.tanh(b.matmul(x, w1))
        return b.mse(b.matmul(h, w2), y)

    shapes = [("w1", T(3, 4)), ("w2", T(4, 2)), ("x", T("N", 3)), ("y", T("N", 2))]
    build("loss", shapes, loss_body, m)
    dloss = grad(m, "loss", ["w1", "w2"], new_name="dloss")

    # hv(w1, w2, x, y, v1, v2) = sum(dw1 * v1) + sum(dw2 * v2)
    params = shapes + [("v1", T(3, 4)), ("v2", T(4, 2))]
    hv, b = new_function("hv", params, loc=SRC)
    env = inline_function(b, dloss, hv.params[:4])
    dw1, dw2 = (env[v] for v in dloss.outputs)
    v1, v2 = hv.params[4:]
    hv.outputs = [b.add(b.sum(b.mul(dw1, v1)), b.sum(b.mul(dw2, v2)))]
    m.add(hv)
    hvp = grad(m, "hv", ["w1", "w2"], new_name="hvp")

    w1, w2 = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    x, y = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    v1, v2 = rng.standard_normal((3, 4)), rng.standard_normal((4, 2))
    h1, h2 = run(hvp, w1, w2, x, y, v1, v2)
    eps = 1e-5
    plus = run(dloss, w1 + eps * v1, w2 + eps * v2, x, y)
    minus = run(dloss, w1 - eps * v1, w2 - eps * v2, x, y)
    np.testing.assert_allclose(h1, (plus[0] - minus[0]) / (2 * eps), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(h2, (plus[1] - minus[1]) / (2 * eps), rtol=1e-6, atol=1e-9)


# ---------------------------------------------------------------------------
# The autodiff pass over grad_of placeholders


def placeholder(name: str, spec: dict, loc: Location = SRC) -> Function:
    func, _ = new_function(name, [], loc=loc)
    func.attrs["grad_of"] = spec
    return func


def test_pass_materializes_placeholders_in_dependency_order():
    m = Module()
    # The grad of the grad comes first in the module: the pass must build d1 before d2.
    m.add(placeholder("d2", {"fn": "d1", "wrt": ["x"], "with_value": False}))
    build("f", [("x", T())], lambda b, x: b.mul(b.mul(x, x), x), m)
    m.add(placeholder("d1", {"fn": "f", "wrt": ["x"], "with_value": True}))
    ctx = PassContext("autodiff")
    out = PASSES["autodiff"].run(m, ctx)
    assert [f.name for f in out.functions] == ["d2", "f", "d1"]
    assert ctx.counters == {"gradient-functions": 2}
    assert all("grad_of" not in f.attrs for f in out.functions)
    assert out.get("d1").output_names == ["f", "d_x"]
    # d1 returns (value, grad): the grad of d1 differentiates its first output, the value.
    assert float(run(out.get("d2"), np.array(2.0))[0]) == pytest.approx(12.0)


def test_pass_through_run_pipeline():
    m = Module()
    build("f", [("x", T(2))], lambda b, x: b.sum(b.exp(x)), m)
    m.add(placeholder("df", {"fn": "f", "wrt": ["x"]}))
    out = run_pipeline(m, "autodiff,dce", verify_each=False)
    x = np.array([0.0, 1.0])
    np.testing.assert_allclose(run(out.get("df"), x)[0], np.exp(x))


def test_pass_reports_errors_of_every_placeholder():
    m = Module()
    build("f", [("x", T(2))], lambda b, x: b.sum(x), m)
    m.add(placeholder("da", {"fn": "f", "wrt": ["nope"]}, Location("model.dl", 5, 1)))
    m.add(placeholder("db", {"fn": "missing", "wrt": ["x"]}, Location("model.dl", 6, 1)))
    m.add(placeholder("dc", {"fn": "f"}, Location("model.dl", 7, 1)))
    with pytest.raises(DlErrors) as info:
        PASSES["autodiff"].run(m, PassContext("autodiff"))
    assert [(e.loc.line, e.message.split(":")[0]) for e in info.value.errors] == [
        (5, "'nope' is not a parameter of 'f'"),
        (6, "cannot differentiate unknown function 'missing'"),
        (7, "malformed grad_of attribute on 'dc'"),
    ]
    assert [f.name for f in m.functions] == ["f", "da", "db", "dc"]


def test_pass_rejects_cycles():
    m = Module()
    m.add(placeholder("a", {"fn": "b", "wrt": ["x"]}))
    m.add(placeholder("b", {"fn": "a", "wrt": ["x"]}))
    with pytest.raises(AutodiffError, match="gradient function 'a' depends on itself"):
        PASSES["autodiff"].run(m, PassContext("autodiff"))


# ---------------------------------------------------------------------------
# Property: random differentiable programs agree with finite differences

UNARY = ["tanh", "sigmoid", "neg", "square", "exp", "relu", "abs"]
BINARY = ["add", "sub", "mul", "div", "maximum", "minimum"]


@st.composite
def programs(draw):
    """A list of steps over a current value of shape [2, 3]."""
    steps = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["unary", "binary", "matmul"]))
        if kind == "unary":
            steps.append(("unary", draw(st.sampled_from(UNARY))))
        elif kind == "binary":
            other = draw(st.sampled_from(["x", "b", "s", "self"]))
            steps.append(("binary", draw(st.sampled_from(BINARY)), other, draw(st.booleans())))
        else:
            steps.append(("matmul",))
    final = draw(st.sampled_from(["sum", "mean", "sum-then-mean", "max"]))
    return steps, final


def build_program(steps, final) -> Module:
    def body(b: Builder, x: Value, w: Value, bias: Value, s: Value):
        v = x
        others = {"x": x, "b": bias, "s": s}
        for step in steps:
            if step[0] == "unary":
                v = b.emit(step[1], v)
            elif step[0] == "matmul":
                v = b.matmul(v, w)
            else:
                _, name, which, swap = step
                o = v if which == "self" else others[which]
                lhs, rhs = (o, v) if swap else (v, o)
                if name == "div":  # keep the denominator away from zero
                    rhs = b.add(b.square(rhs), b.scalar_like(1.0, rhs))
                v = b.emit(name, lhs, rhs)
        if final == "sum-then-mean":
            return b.mean(b.sum(v, axes=(1,)))
        return b.emit(final, v)

    m = Module()
    build("f", [("x", T(2, 3)), ("w", T(3, 3)), ("b", T(3)), ("s", T())], body, m)
    return m


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(programs(), st.integers(0, 2 ** 16))
def test_random_programs_match_finite_differences(program, seed):
    steps, final = program
    report = gradcheck(build_program(steps, final), "f", seed=seed, tol=1e-5)
    assume(np.isfinite(report.value) and abs(report.value) < 1e8)  # exp(exp(...)) overflows
    assert report.passed, f"{steps} {final}\n{report}"
