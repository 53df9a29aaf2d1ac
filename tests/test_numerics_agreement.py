"""The interpreter, native code and docs/ops.md agree on every number, special values included.

Each test runs the same dl function through the reference interpreter and through
compiled code and checks both against what docs/ops.md ("Special values", "Losses")
says: ``sign`` and casts of nan and inf, reductions over empty axes, the bits of NaN
constants, the value and gradient of a loss of saturated probabilities, and
softmax / log_softmax to a few ULP of a float64 reference.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import runtime
from compiler.diagnostics import DlError, DlRuntimeError, DlTypeError, Location
from compiler.ir.builder import new_function
from compiler.ir.core import Module
from compiler.ir.interpreter import interpret
from compiler.ir.parser import parse_module
from compiler.ir.printer import print_module
from compiler.ir.types import DType, TensorType
from runtime.cli import main
from runtime.compiled import c_header, load_compiled, save_compiled

F32, F64, I32, I64 = DType.f32, DType.f64, DType.i32, DType.i64


def T(dtype: DType, *shape) -> TensorType:
    return TensorType(dtype, tuple(shape))


def outputs(result) -> list[np.ndarray]:
    """A compiled function's result(s) as a list of arrays."""
    return [np.asarray(r) for r in (result if isinstance(result, tuple) else (result,))]


def bits(a: np.ndarray) -> np.ndarray:
    """The raw bits of a float array (NaN payloads and signed zeros included)."""
    a = np.ascontiguousarray(a)
    return a.view({4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def assert_same_bits(got: np.ndarray, want: np.ndarray, what: str = "") -> None:
    assert got.dtype == want.dtype and got.shape == want.shape, what
    if got.dtype.kind == "f":
        np.testing.assert_array_equal(bits(got), bits(want), err_msg=what)
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


def unary_module(name: str, build, dtypes: list[tuple[DType, DType]]) -> Module:
    """``<name>_<in>_<out>(x: in[N]) -> out[N]`` for each dtype pair."""
    fns = []
    for src, dst in dtypes:
        f, b = new_function(f"{name}_{src.dsl_name}_{dst.dsl_name}", [("x", T(src, "N"))])
        f.outputs = [build(b, f.params[0], dst)]
        fns.append(f)
    return Module(fns)


# ---------------------------------------------------------------------------
# sign


SPECIALS = [math.nan, -math.nan, -0.0, 0.0, math.inf, -math.inf, 2.5, -3.0, 1e-30, -1e-45]


def test_sign_of_nan_is_nan_and_of_zeros_is_plus_zero():
    module = unary_module("sign", lambda b, x, _: b.sign(x), [(F32, F32), (F64, F64), (I32, I32)])
    mod = runtime.compile(module, cache=False, passes="")
    for f in module.functions:
        dtype = f.params[0].type.dtype.np
        x = np.array(SPECIALS if dtype.kind == "f" else [0, -7, 9, 2 ** 31 - 1, -2 ** 31], dtype)
        want = np.sign(x)                       # numpy: sign(nan) = nan, sign(-0.0) = +0.0
        assert_same_bits(interpret(f, [x])[0], want, f.name)
        assert_same_bits(np.asarray(mod[f.name](x)), want, f.name)


@pytest.mark.parametrize("c", [5, 40])        # short rows / vectorised rows
def test_nan_inf_and_signed_zeros_in_extrema_and_casts_to_bool(c):
    f, b = new_function("f", [("x", T(F32, "N", c))])
    x = f.params[0]
    zero = b.scalar_like(0.0, x)
    f.outputs = [b.argmax(x, axis=1), b.max(x, axes=(1,)), b.min(x, axes=(1,)),
                 b.maximum(x, zero), b.minimum(x, zero), b.cast(x, dtype=DType.bool)]
    xs = np.random.default_rng(c).standard_normal((6, c)).astype(np.float32)
    xs[0, [2, 4]] = np.nan                      # two NaNs: the first is the argmax
    xs[1, [1, 3]] = [np.nan, np.inf]
    xs[2] = -np.inf
    xs[3] = -0.0                                # zeros of both signs: +0.0 > -0.0 ...
    xs[3, 2] = 0.0
    xs[4, -1] = np.nan                          # in the vector tail
    xs[5] = np.nan
    zero = xs == 0                              # ... in either operand order (numpy's own
    want = [np.argmax(xs, axis=1),              # maximum returns its second operand)
            np.where(np.arange(6) == 3, np.float32(0.0), np.max(xs, axis=1)),
            np.where(np.arange(6) == 3, np.float32(-0.0), np.min(xs, axis=1)),
            np.where(zero, np.float32(0.0), np.maximum(xs, np.float32(0))),
            np.where(zero, xs, np.minimum(xs, np.float32(0))), xs != 0]
    mod = runtime.compile(Module([f]), cache=False, passes="")
    for got in (interpret(f, [xs]), outputs(mod["f"](xs))):
        for g, w in zip(got, want):
            assert_same_bits(g, w.astype(g.dtype))


GRID = [math.nan, -math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 1e-45, -1e-45,
        3e38, -3e38, 88.7, -103.9, 1e-30, 2.0, 3.0, 100.0, -100.0]


def special_ops() -> list[tuple[str, int]]:
    """Every elementwise op of the table on one or two float operands, with its arity
    (ops whose shape rule refuses floats, such as ``fold_in`` on i64 keys, are not)."""
    from compiler.ops.base import ELEMENTWISE, OPS, ShapeError

    def takes_floats(op) -> bool:
        try:
            op.infer(*[T(F32, "N")] * len(op.operands))
        except ShapeError:
            return False
        return True

    return sorted((name, len(op.operands)) for name, op in OPS.items()
                  if op.kind == ELEMENTWISE and len(op.operands) in (1, 2) and not op.attrs
                  and not name.startswith("logical") and takes_floats(op))


@pytest.mark.parametrize("dtype", [F32, F64])
def test_every_elementwise_op_agrees_on_special_values(dtype):
    fns = []
    for name, arity in special_ops():
        f, b = new_function(name, [(p, T(dtype, "N")) for p in "xy"[:arity]])
        f.outputs = [b.emit(name, *f.params)]
        fns.append(f)
    mod = runtime.compile(Module(fns), cache=False, passes="")
    grid = np.array(GRID, dtype.np)
    pairs = [a.ravel().copy() for a in np.meshgrid(grid, grid)]
    rtol = 1e-5 if dtype is F32 else 1e-12          # exp, log, tanh, sigmoid, pow: a few ulp
    for f in fns:
        args = pairs[:len(f.params)] if len(f.params) == 2 else [grid]
        want = interpret(f, args)[0]
        got = np.asarray(mod[f.name](*args))
        where = [f"{f.name}{tuple(float(a[i]) for a in args)}: native {got[i]}, interpreter {want[i]}"
                 for i in range(len(want))]
        if want.dtype == np.bool_:
            assert [w for w, ok in zip(where, got == want) if not ok] == []
            continue
        nan = np.isnan(want)
        same = (np.isnan(got) == nan) & (nan | ((np.signbit(got) == np.signbit(want))
                                                & (np.isinf(got) == np.isinf(want))))
        close = np.isclose(got, want, rtol=rtol, atol=0) | nan | np.isinf(want)
        assert [w for w, ok in zip(where, same & close) if not ok] == []


# ---------------------------------------------------------------------------
# float -> int casts


def saturated(v: float, bits_: int) -> int:
    """The documented float -> int cast of one value, by hand: truncate, saturate, nan -> 0."""
    lo, hi = -2 ** (bits_ - 1), 2 ** (bits_ - 1) - 1
    if math.isnan(v):
        return 0
    if math.isinf(v):
        return hi if v > 0 else lo
    return min(max(math.trunc(v), lo), hi)


CAST_VALUES = [math.nan, -math.nan, math.inf, -math.inf, 3e9, -3e9, 2.0 ** 31, -2.0 ** 31,
               2147483520.0, 2.9, -2.9, -0.0, 1e30, -1e30, 9.3e18, -9.3e18, 2.0 ** 63, -2.0 ** 63]


def test_float_to_int_casts_truncate_saturate_and_send_nan_to_zero():
    pairs = [(F32, I32), (F32, I64), (F64, I32), (F64, I64)]
    module = unary_module("cast", lambda b, x, dst: b.cast(x, dtype=dst), pairs)
    mod = runtime.compile(module, cache=False, passes="")
    for f, (src, dst) in zip(module.functions, pairs):
        x = np.array(CAST_VALUES, src.np)
        want = np.array([saturated(float(v), dst.np.itemsize * 8) for v in x], dst.np)
        with warnings.catch_warnings():
            warnings.simplefilter("error")      # no "invalid value encountered in cast"
            np.testing.assert_array_equal(interpret(f, [x])[0], want, err_msg=f.name)
        np.testing.assert_array_equal(mod[f.name](x), want, err_msg=f.name)


def test_constant_folding_casts_as_the_op_does():
    f, b = new_function("f", [])
    f.outputs = [b.cast(b.constant(math.nan, F32), dtype=I32),
                 b.cast(b.constant(np.array([math.inf, -1e20, 7.9], np.float32), F32), dtype=I64)]
    module = Module([f])
    folded = runtime.compile(module, cache=False)         # the default pipeline folds both
    assert all(op.name == "constant" for op in folded.module.get("f").ops)
    nan_to_int, ints = folded["f"]()
    assert int(nan_to_int) == 0
    np.testing.assert_array_equal(ints, [2 ** 63 - 1, -2 ** 63, 7])


# ---------------------------------------------------------------------------
# Reductions over empty axes


def reductions_module() -> Module:
    fns = []
    for name in ("max", "min", "sum", "mean"):
        f, b = new_function(f"{name}_rows", [("x", T(F32, 3, "N"))])
        f.outputs = [b.emit(name, f.params[0], axes=(1,))]
        fns.append(f)
        f, b = new_function(f"{name}_all", [("x", T(F32, 3, "N"))])
        f.outputs = [b.emit(name, f.params[0])]
        fns.append(f)
    f, b = new_function("argmax_rows", [("x", T(F32, 3, "N"))])
    f.outputs = [b.argmax(f.params[0], axis=1)]
    fns.append(f)
    f, b = new_function("max_cols", [("x", T(F32, "N", 3))])     # reduces a non-empty axis
    f.outputs = [b.max(f.params[0], axes=(1,)), b.argmax(f.params[0], axis=1)]
    fns.append(f)
    f, b = new_function("softmax_rows", [("x", T(F32, 3, "N"))])
    f.outputs = [b.softmax(f.params[0]), b.log_softmax(f.params[0])]
    fns.append(f)
    f, b = new_function("softmax_cols", [("x", T(F32, "N", 3))])
    f.outputs = [b.softmax(f.params[0], axis=0), b.log_softmax(f.params[0], axis=0)]
    fns.append(f)
    return Module(fns)


@pytest.fixture(scope="module")
def reductions():
    module = reductions_module()
    return module, runtime.compile(module, cache=False, passes="")


@pytest.mark.parametrize("name,what", [("max_rows", "maximum"), ("max_all", "maximum"),
                                       ("min_rows", "minimum"), ("min_all", "minimum"),
                                       ("argmax_rows", "argmax")])
def test_no_extremum_of_an_empty_axis_in_both(reductions, name, what):
    module, mod = reductions
    x = np.zeros((3, 0), np.float32)
    with pytest.raises(DlRuntimeError) as interp_error:
        interpret(module.get(name), [x])
    with pytest.raises(DlRuntimeError) as native_error:
        mod[name](x)
    message = interp_error.value.message
    assert message == native_error.value.message
    assert f"axis 1 of f32[3, N], which is empty (N = 0): the {what} of no elements" in message
    # the same arguments with the axis not empty run
    ok = np.arange(6, dtype=np.float32).reshape(3, 2)
    for got, want in zip(outputs(mod[name](ok)), interpret(module.get(name), [ok])):
        np.testing.assert_array_equal(got, want)


def test_the_native_check_survives_bound_calls_and_aot_directories(reductions, tmp_path):
    _, mod = reductions
    ok, empty = np.ones((3, 2), np.float32), np.ones((3, 0), np.float32)
    fn = mod["max_rows"]
    np.testing.assert_array_equal(fn.call_unchecked(ok), [1, 1, 1])
    for _ in range(2):                          # a refused call leaves no half-updated state
        with pytest.raises(DlRuntimeError, match="which is empty"):
            fn.call_unchecked(empty)
    bound = fn.bind(ok)
    for _ in range(2):
        with pytest.raises(DlRuntimeError, match="which is empty"):
            bound(empty)
    np.testing.assert_array_equal(bound(ok), [1, 1, 1])
    loaded = load_compiled(save_compiled(mod, tmp_path / "aot"))
    with pytest.raises(DlRuntimeError, match="which is empty"):
        loaded["argmax_rows"](empty)
    # a C caller of the raw entry point is told
    assert "must not be 0 (a max, min or argmax over it): N" in c_header([fn.info])
    assert "must not be 0" not in c_header([mod["sum_rows"].info])


def test_the_interpreter_error_points_at_the_op():
    f, b = new_function("f", [("x", T(F32, "N"))])
    with b.at(Location("model.dl", 3, 12)):
        f.outputs = [b.max(f.params[0])]
    with pytest.raises(DlRuntimeError) as e:
        interpret(f, [np.zeros(0, np.float32)])
    assert e.value.render().startswith("model.dl:3:12: error: dl.max reduces over axis 0")


@pytest.mark.parametrize("name", ["sum_rows", "sum_all", "mean_rows", "mean_all"])
def test_sum_and_mean_of_nothing_are_numpys_zero_and_nan(reductions, name):
    module, mod = reductions
    x = np.zeros((3, 0), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # numpy's "Mean of empty slice" is silenced
        want = interpret(module.get(name), [x])[0]
    got = np.asarray(mod[name](x))
    assert got.shape == want.shape == ((3,) if name.endswith("rows") else ())
    if name.startswith("sum"):
        assert_same_bits(want, np.zeros_like(want))            # +0.0
        assert_same_bits(got, np.zeros_like(got))
    else:
        assert np.isnan(want).all() and np.isnan(got).all()   # 0 / 0 (its sign is the CPU's)


@pytest.mark.parametrize("name,shape", [("softmax_rows", (3, 0)), ("softmax_cols", (0, 3)),
                                        ("max_cols", (0, 3))])
def test_nothing_to_normalize_gives_empty_results(reductions, name, shape):
    module, mod = reductions
    x = np.zeros(shape, np.float32)
    want = interpret(module.get(name), [x])
    got = outputs(mod[name](x))
    assert [w.shape for w in want] == [g.shape for g in got] and all(w.size == 0 for w in want)


def test_a_statically_empty_axis_is_a_located_compile_time_error():
    f, b = new_function("f", [("x", T(F32, 3, 0))])
    with b.at(Location("model.dl", 2, 5)), pytest.raises(DlTypeError) as e:
        b.max(f.params[0], axes=(1,))
    assert e.value.render().startswith("model.dl:2:5: error: max: reduces over axis 1 of f32[3, 0], "
                                       "which is empty")
    with pytest.raises(DlTypeError, match="argmax: reduces over axis 1 of f32"):
        b.argmax(f.params[0], axis=-1)
    text = ('module {\n  func.func @f(%x: tensor<3x0xf32>) -> (tensor<3xf32>) {\n'
            '    %0 = "dl.min"(%x) {axes = [1], keepdims = false} : (tensor<3x0xf32>) -> tensor<3xf32>\n'
            '    func.return %0 : tensor<3xf32>\n  }\n}\n')
    with pytest.raises(DlError) as e:
        parse_module(text, "empty.mlir")
    assert "empty.mlir:3:" in e.value.render() and "which is empty" in e.value.render()


def test_softmax_of_a_statically_empty_axis_compiles_to_an_empty_result():
    f, b = new_function("f", [("x", T(F32, "N", 0))])
    f.outputs = [b.softmax(f.params[0]), b.log_softmax(f.params[0])]
    mod = runtime.compile(Module([f]), cache=False, passes="")
    x = np.zeros((4, 0), np.float32)
    assert [a.shape for a in outputs(mod["f"](x))] == [(4, 0), (4, 0)]
    assert [a.shape for a in interpret(f, [x])] == [(4, 0), (4, 0)]


def test_the_cli_reports_an_empty_reduction_as_a_user_error(tmp_path, capsys):
    source = tmp_path / "top.dl"
    source.write_text("fn top(x: f32[3, N]) -> f32[3] {\n    return max(x, axes=[1])\n}\n")
    empty = tmp_path / "x.npy"
    np.save(empty, np.zeros((3, 0), np.float32))
    for extra in ([], ["--interp"]):
        status = main(["run", str(source), "--input", f"x={empty}", *extra])
        err = capsys.readouterr().err
        assert status == 1, err
        assert "dl.max reduces over axis 1 of f32[3, N], which is empty (N = 0)" in err


# ---------------------------------------------------------------------------
# NaN constants keep their bits


SNAN32 = np.array([0x7F800001], np.uint32).view(np.float32)[0]            # signalling, payload 1
NEG_NAN32 = np.array([0xFFC01234], np.uint32).view(np.float32)[0]         # quiet, negative, payload
SNAN64 = np.array([0x7FF0000000000ABC], np.uint64).view(np.float64)[0]


def test_nan_constants_keep_their_bits_through_print_parse_interpreter_and_native():
    f, b = new_function("f", [("x", T(F32, "N"))])
    f.outputs = [b.constant(SNAN32, F32),
                 b.constant(NEG_NAN32, F32, ("N",)),
                 b.constant(np.array([1.0, SNAN32, NEG_NAN32, -0.0, np.inf], np.float32), F32),
                 b.constant(SNAN64, F64)]
    module = Module([f])
    text = print_module(module)
    assert "0x7F800001" in text and "0xFFC01234" in text and "0x7FF0000000000ABC" in text
    again = parse_module(text, "nan.mlir")
    assert print_module(again) == text
    want = [np.array(SNAN32), np.full(2, NEG_NAN32), np.array([1.0, SNAN32, NEG_NAN32, -0.0, np.inf],
                                                             np.float32), np.array(SNAN64)]
    x = np.zeros(2, np.float32)
    mod = runtime.compile(again, cache=False, passes="")
    for got_i, got_n, w in zip(interpret(again.get("f"), [x]), outputs(mod["f"](x)), want):
        assert_same_bits(got_i, w)
        assert_same_bits(got_n, w)


# ---------------------------------------------------------------------------
# softmax / log_softmax to a few ULP


def hard_rows(dtype: type) -> np.ndarray:
    """Rows of 4 logits: the issue's [1e4 .. 1e4+3], huge and tiny magnitudes, mixed signs,
    saturated rows, and random rows around large offsets."""
    rows = [[10000, 10001, 10002, 10003], [1e30, 1e30, 1e30, 1e30], [1e30, -1e30, 0, 3.5],
            [0, -20, -20, -20], [0, -80, 80, 1], [100, 100.5, 99, 98.25], [-1e4, -1e4 + 1, -1e4 + 2, -1e4],
            [1e-30, 2e-30, 0, -1e-30], [5e37, 5e37, -5e37, 0], [0, 0, 0, -17]]
    if dtype is np.float64:
        rows += [[1e300, 1e300, 1e300, 1e300], [1e15, 1e15 + 1, 1e15 + 2, 1e15 + 3], [0, -700, -700, 3]]
    rng = np.random.default_rng(8)
    for scale, offset in ((3, 1e4), (30, 0), (1, 1e5)):
        rows += list(rng.standard_normal((20, 4)) * scale + offset)
    return np.array(rows, dtype)


def softmax_reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """softmax and log_softmax of ``x`` (taken exactly) in long double, and the rounding error
    of ``x - max(x)`` in ``x``'s dtype: no method working in that dtype avoids it, and it is 0
    where an element and the maximum are within a factor of 2 of each other."""
    wide = x.astype(np.longdouble)
    z = wide - wide.max(-1, keepdims=True)
    total = np.exp(z).sum(-1, keepdims=True)
    rounding = np.abs((x - x.max(-1, keepdims=True)).astype(np.longdouble) - z)
    return np.exp(z) / total, z - np.log(total), rounding


def assert_few_ulps(x: np.ndarray, probs: np.ndarray, log_probs: np.ndarray, what: str) -> None:
    """softmax within a few ulp of each probability, log_softmax within a few ulp of
    ``max(|log p|, 1)``, beyond what the rounding of ``x - max(x)`` carries over.  A few:
    ``4 + log2(C)`` for rows of C classes (the row sum's rounding grows with C; measured
    worst cases: 2 ulp at C = 4 and 40, 7 (f32) and 9 (f64) at C = 1000, fused)."""
    ulps = 4 + math.log2(x.shape[-1])
    want_p, want_l, rounding = softmax_reference(x)
    dtype = x.dtype.type
    ulp_p = np.spacing(np.maximum(want_p.astype(dtype), np.finfo(dtype).tiny)).astype(np.longdouble)
    ulp_l = np.spacing(np.maximum(np.abs(want_l.astype(dtype)), 1)).astype(np.longdouble)
    err_p = np.abs(probs.astype(np.longdouble) - want_p) - want_p * rounding * 1.01
    err_l = np.abs(log_probs.astype(np.longdouble) - want_l) - rounding
    worst_p, worst_l = np.unravel_index(np.argmax(err_p / ulp_p), x.shape), np.unravel_index(
        np.argmax(err_l / ulp_l), x.shape)
    assert err_p[worst_p] <= ulps * ulp_p[worst_p], f"{what} softmax: row {x[worst_p[0]]}"
    assert err_l[worst_l] <= ulps * ulp_l[worst_l], f"{what} log_softmax: row {x[worst_l[0]]}"


CLASSES = (4, 40, 1000)        # one row per lane / W elements of a row per step / long rows


def softmax_module() -> Module:
    fns = []
    for dtype in (F32, F64):
        for c in CLASSES:
            f, b = new_function(f"sm_{dtype.dsl_name}_{c}", [("x", T(dtype, "N", c))])
            f.outputs = [b.softmax(f.params[0]), b.log_softmax(f.params[0])]
            fns.append(f)
    return Module(fns)


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
def test_softmax_and_log_softmax_are_within_a_few_ulps(fuse):
    from compiler.codegen.target import CodegenOptions

    module = softmax_module()
    mod = runtime.compile(module, cache=False, passes="", options=CodegenOptions(fuse=fuse))
    for f in module.functions:
        dtype, c = f.params[0].type.dtype.np, f.params[0].type.shape[1]
        base = hard_rows(dtype.type)
        # each row's values repeated (C-contiguous: numpy sums a row pairwise only then)
        x = np.ascontiguousarray(base[:, np.random.default_rng(c).integers(0, 4, c)])
        x[:, :4] = base
        assert_few_ulps(x, *outputs(mod[f.name](x)), f"{f.name} native {'fused' if fuse else 'unfused'}")
        if fuse:
            assert_few_ulps(x, *interpret(f, [x]), f"{f.name} interpreter")


# ---------------------------------------------------------------------------
# Losses of saturated sigmoid / softmax outputs: one meaning, value and gradient


LOSSES = """
fn bce(z: f32[N, 1], t: f32[N, 1]) -> f32[] { return binary_crossentropy(sigmoid(z), t) }
fn vg_bce = value_and_grad(bce, wrt=[z])
fn scce(z: f32[N, 3], y: i32[N]) -> f32[] { return sparse_categorical_crossentropy(softmax(z), y) }
fn vg_scce = value_and_grad(scce, wrt=[z])
fn cce(z: f32[N, 3], t: f32[N, 3]) -> f32[] { return categorical_crossentropy(softmax(z), t) }
fn vg_cce = value_and_grad(cce, wrt=[z])
fn bce_p(p: f32[N, 1], t: f32[N, 1]) -> f32[] { return binary_crossentropy(p, t) }
fn vg_bce_p = value_and_grad(bce_p, wrt=[p])
"""


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(z / 2))


def _log_softmax(z: np.ndarray) -> np.ndarray:
    s = z - z.max(-1, keepdims=True)
    return s - np.log(np.exp(s).sum(-1, keepdims=True))


def loss_cases() -> dict[str, tuple[list[np.ndarray], float, np.ndarray]]:
    """Per loss: its arguments (saturated activations: z = +-30, +-100, logits 200 apart),
    and the value and gradient of the documented meaning, in float64."""
    z1 = np.array([[30], [-30], [100], [-100], [30], [-30], [0.5], [-2]], np.float32)
    t1 = np.array([[0], [1], [0], [1], [1], [0], [1], [0]], np.float32)
    z, t = z1.astype(np.float64), t1.astype(np.float64)
    bce = (np.mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))), (_sigmoid(z) - t) / z.size)
    z3 = np.array([[200, 0, 0], [0, 200, -200], [30, -30, 0], [1, 2, 3], [-100, 100, 0]], np.float32)
    y = np.array([1, 2, 0, 2, 0], np.int32)
    soft = np.eye(3, dtype=np.float32)[y]
    soft[3] = [0.2, 0.3, 0.5]
    logp = _log_softmax(z3.astype(np.float64))
    n = len(y)
    onehot = np.eye(3)[y]
    scce = (-np.mean(logp[np.arange(n), y]), (np.exp(logp) - onehot) / n)
    tt = soft.astype(np.float64)
    cce = (-np.mean((tt * logp).sum(-1)), (np.exp(logp) * tt.sum(-1, keepdims=True) - tt) / n)
    # probabilities from elsewhere: Keras's clip to [1e-7, 1 - 1e-7], zero gradient outside
    p1 = np.array([[0.0], [1.0], [1e-9], [0.3], [0.999], [0.5]], np.float32)
    tp1 = np.array([[1], [0], [1], [0], [1], [1]], np.float32)
    p, tp = p1.astype(np.float64), tp1.astype(np.float64)
    lo, hi = float(np.float32(1e-7)), float(np.float32(1 - 1e-7))    # the bounds an f32 clip has
    c = np.clip(p, lo, hi)
    inside = (p >= lo) & (p <= hi)
    bce_p = (-np.mean(tp * np.log(c) + (1 - tp) * np.log(1 - c)),
             np.where(inside, (c - tp) / (c * (1 - c)) / p.size, 0.0))
    # every prediction confidently right: the loss is tiny, and exact to rounding too
    zs = np.array([[-30], [30], [-17], [20], [-100]], np.float32)
    ts = np.array([[0], [1], [0], [1], [0]], np.float32)
    z, t = zs.astype(np.float64), ts.astype(np.float64)
    small = (np.mean(np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))), (_sigmoid(z) - t) / z.size)
    return {"bce": ([z1, t1], *bce), "scce": ([z3, y], *scce), "cce": ([z3, soft], *cce),
            "bce_p": ([p1, tp1], *bce_p), "bce_small": ([zs, ts], *small)}


@pytest.fixture(scope="module")
def loss_paths():
    """The same source through every path: (name, run(fn, args) -> outputs)."""
    from compiler.codegen.target import CodegenOptions
    from compiler.passes import run_pipeline
    from frontend_dsl.api import compile_source

    built = compile_source(LOSSES, "losses.dl")
    optimized = run_pipeline(compile_source(LOSSES, "losses.dl"), "default")
    paths = [("interpreter", lambda fn, args: interpret(built.get(fn), args)),
             ("interpreter after passes", lambda fn, args: interpret(optimized.get(fn), args))]
    for passes in ("", None):
        for fuse in (True, False):
            mod = runtime.compile(LOSSES, cache=False, passes=passes, options=CodegenOptions(fuse=fuse))
            name = f"native {'no passes' if passes == '' else 'default passes'} {'fused' if fuse else 'unfused'}"
            paths.append((name, lambda fn, args, mod=mod: outputs(mod[fn](*args))))
    return paths


@pytest.mark.parametrize("case", ["bce", "scce", "cce", "bce_p", "bce_small"])
def test_loss_value_and_gradient_agree_everywhere_at_saturation(loss_paths, case):
    args, value, gradient = loss_cases()[case]
    loss = case.removesuffix("_small")
    for path, run in loss_paths:
        (alone,) = run(loss, args)
        with_value, grad = run(f"vg_{loss}", args)
        what = f"{case} via {path}"
        np.testing.assert_allclose(alone, value, rtol=1e-5, atol=0, err_msg=what)
        np.testing.assert_allclose(with_value, value, rtol=1e-5, atol=0, err_msg=what)
        # (atol: f32 resolves a gradient only next to 1/n: sigmoid(30) - 1 rounds to 0)
        np.testing.assert_allclose(grad, gradient, rtol=1e-5, atol=1e-7, err_msg=what)


def test_the_issue_case_is_the_exact_logits_value():
    # binary_crossentropy(sigmoid(z), t) at z = 30, t = 0: 30 (log(1 + e^30)), not the
    # clipped 15.94 (-log(1e-7) of the rounded sigmoid)
    f, b = new_function("f", [("z", T(F32, 1)), ("t", T(F32, 1))])
    f.outputs = [b.binary_crossentropy(b.sigmoid(f.params[0]), f.params[1])]
    assert f.outputs[0].owner.attrs["from_logits"] and f.outputs[0].owner.operands[0] is f.params[0]
    args = [np.array([30.0], np.float32), np.array([0.0], np.float32)]
    assert float(interpret(f, args)[0]) == pytest.approx(30.0, rel=1e-6)
    assert float(runtime.compile(Module([f]), cache=False)["f"](*args)) == pytest.approx(30.0, rel=1e-6)


def test_a_probability_loss_written_in_ir_text_keeps_the_clipped_meaning():
    # IR text says what it means: from_logits = false on a sigmoid output is the clipped form,
    # in the interpreter and in native code, with or without canonicalize
    text = ('module {\n  func.func @f(%z: tensor<1xf32>, %t: tensor<1xf32>) -> (tensor<f32>) {\n'
            '    %0 = "dl.sigmoid"(%z) : (tensor<1xf32>) -> tensor<1xf32>\n'
            '    %1 = "dl.binary_crossentropy"(%0, %t) {from_logits = false} : '
            '(tensor<1xf32>, tensor<1xf32>) -> tensor<f32>\n'
            '    func.return %1 : tensor<f32>\n  }\n}\n')
    module = parse_module(text, "clip.mlir")
    args = [np.array([30.0], np.float32), np.array([0.0], np.float32)]
    clipped = -np.log(1 - float(np.float32(1 - 1e-7)))      # 15.94: 1 - 1e-7 rounded to f32
    assert float(interpret(module.get("f"), args)[0]) == pytest.approx(clipped, rel=1e-4)
    for passes in ("", None):
        got = runtime.compile(text, cache=False, passes=passes)["f"](*args)
        assert float(got) == pytest.approx(clipped, rel=1e-4)
