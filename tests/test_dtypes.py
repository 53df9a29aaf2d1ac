"""The storage dtypes f16, bf16, i8 and u8 (compiler/ir/types.py, compiler/codegen/storage.py).

Conversions are checked bit for bit against numpy (ml_dtypes for bf16) on every f16 and
bf16 value and on f32/f64/int values around every rounding boundary, on the host CPU
(F16C where it has it) and on baseline x86-64 (integer arithmetic); every elementwise
op that takes a storage dtype is checked, native against the interpreter, on special
values (NaN, inf, -0.0) and shapes with 0-sized dims, rank 0 and 1-element axes; the
interpreter against numpy's float16 / uint8 / int8 functions.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

import runtime
from compiler.codegen.target import CodegenOptions, Target
from compiler.diagnostics import DlError, DlTypeError
from compiler.ir.builder import new_function
from compiler.ir.core import Module
from compiler.ir.interpreter import interpret
from compiler.ir.parser import parse_module
from compiler.ir.printer import print_module
from compiler.ir.types import DType, TensorType
from compiler.ops import OPS
from compiler.ops.base import ELEMENTWISE
from frontend_dsl.api import compile_source

F16, BF16, I8, U8 = DType.f16, DType.bf16, DType.i8, DType.u8
STORAGE = (F16, BF16, I8, U8)
BF16_NP = np.dtype(ml_dtypes.bfloat16)
TARGETS = {"host": CodegenOptions(), "baseline": CodegenOptions(target=Target.generic())}


def T(dtype: DType, *shape) -> TensorType:
    return TensorType(dtype, tuple(shape))


def same_values(want: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Elementwise: equal as numbers, -0.0 told from 0.0, any NaN equal to any NaN."""
    w, g = np.asarray(want).astype(np.float64), np.asarray(got).astype(np.float64)
    both_nan = np.isnan(w) & np.isnan(g)
    return both_nan | ((w == g) & (np.signbit(w) == np.signbit(g)))


def assert_same(want: np.ndarray, got: np.ndarray, what: str = "") -> None:
    assert want.dtype == got.dtype and want.shape == got.shape, (what, want.dtype, got.dtype)
    ok = same_values(want, got)
    if not ok.all():
        i = np.flatnonzero(~ok.ravel())[:5]
        raise AssertionError(f"{what}: {len(np.flatnonzero(~ok))} differ, e.g. want "
                             f"{want.ravel()[i]} got {got.ravel()[i]}")


# -- conversions ----------------------------------------------------------------------------


def _casts_module(pairs: list[tuple[DType, DType]]) -> Module:
    m = Module()
    for src, dst in pairs:
        f, b = new_function(f"{src.dsl_name}_to_{dst.dsl_name}", [("x", T(src, "N"))])
        f.outputs = [b.cast(f.params[0], dtype=dst)]
        m.functions.append(f)
    return m


def _float_probes(rng: np.random.Generator) -> np.ndarray:
    """f64 values around every f16 and bf16 rounding boundary: each f16 value and each
    bf16 value of one binade in four, the midpoints between neighbours, one f32 ulp and
    one f64 ulp either side of the midpoints, specials, and random bits."""
    halves = np.arange(0, 0x7C01, 1, dtype=np.uint16).view(np.float16).astype(np.float64)
    bfloats = np.arange(0, 0x7F81, 3, dtype=np.uint16).view(BF16_NP).astype(np.float64)
    values = []
    for grid in (halves, bfloats):
        mid = (grid[:-1] + grid[1:]) / 2
        values += [grid, mid, np.nextafter(mid, np.inf), np.nextafter(mid, -np.inf),
                   mid.astype(np.float32).astype(np.float64) * (1 + 2.0 ** -23),
                   mid * (1 - 2.0 ** -23)]
    values.append(rng.integers(0, 2 ** 63, 20000, dtype=np.uint64).view(np.float64))
    values.append(rng.integers(0, 2 ** 32, 20000, dtype=np.uint64).astype(np.uint32).view(np.float32)
                  .astype(np.float64))
    values.append(np.array([np.inf, np.nan, 65519.99, 65520.0, 65536.0, 3.4e38, 3.4028235e38, 1e39,
                            2.0 ** -24, 2.0 ** -25, 2.0 ** -25 * 1.0000001, 2.0 ** -149, 2.0 ** -150,
                            2.0 ** -133, 1e-300]))
    out = np.concatenate(values)
    return np.concatenate([out, -out])


def _int_probes(rng: np.random.Generator) -> np.ndarray:
    """i64 values: small ones, powers of two and their neighbours, ints that f32 or f64
    rounding would carry onto a bf16 or f16 midpoint, the extremes, random bits."""
    powers = np.array([2 ** k for k in range(63)], dtype=np.int64)
    near = np.concatenate([powers - 1, powers, powers + 1, powers + powers // 256 + 1,
                           powers + powers // 256, powers + powers // 2048 + 1])
    out = np.concatenate([np.arange(-300, 300), near, -near, [2 ** 63 - 1, -2 ** 63, 2 ** 24 + 2 ** 16 + 1,
                          2 ** 62 + 2 ** 54 + 1],
                          rng.integers(-2 ** 63, 2 ** 63 - 1, 20000, dtype=np.int64) >> rng.integers(0, 63, 20000)])
    return out.astype(np.int64)


def _expected_cast(x: np.ndarray, dst: DType) -> np.ndarray:
    """numpy's (ml_dtypes') astype, with the cast op's saturating float -> int rule."""
    if x.dtype.kind == "f" and dst.is_int:
        info = np.iinfo(dst.np)
        t = np.trunc(x.astype(np.float64))
        high, low = float(info.max) + 1, float(info.min)
        out = np.where(np.isnan(t) | (t >= high) | (t < low), 0, t).astype(dst.np)
        out[t >= high] = info.max
        out[t < low] = info.min
        return out
    with np.errstate(over="ignore", invalid="ignore"):
        return x.astype(dst.np)


@pytest.fixture(scope="module")
def probes() -> dict[DType, np.ndarray]:
    rng = np.random.default_rng(7)
    floats = _float_probes(rng)
    ints = _int_probes(rng)
    return {
        DType.f64: floats,
        DType.f32: floats.astype(np.float32),
        F16: np.arange(2 ** 16, dtype=np.uint32).astype(np.uint16).view(np.float16),
        BF16: np.arange(2 ** 16, dtype=np.uint32).astype(np.uint16).view(BF16_NP),
        DType.i64: ints,
        DType.i32: (ints >> 20).astype(np.int32),
        I8: np.arange(-128, 128, dtype=np.int8),
        U8: np.arange(256, dtype=np.uint8),
        DType.bool: np.array([True, False]),
    }


CAST_PAIRS = [(s, d) for s in DType for d in DType if s != d and (s.is_storage or d.is_storage)]


@pytest.fixture(scope="module", params=list(TARGETS))
def casts(request):
    return request.param, runtime.compile(_casts_module(CAST_PAIRS), cache=False, passes="",
                                          options=TARGETS[request.param])


@pytest.mark.parametrize("src,dst", CAST_PAIRS, ids=[f"{s.dsl_name}->{d.dsl_name}" for s, d in CAST_PAIRS])
def test_cast_matches_numpy_bit_for_bit(casts, probes, src, dst):
    """Every cast to or from a storage dtype, native (host and baseline x86-64) and the
    interpreter, gives numpy's (ml_dtypes') value: rounding to nearest even once, ties,
    subnormals, overflow to inf, -0.0, NaN; float -> int saturating, NaN -> 0."""
    target, compiled = casts
    x = probes[src]
    want = _expected_cast(x.astype(np.float32) if src in (F16, BF16) and dst.is_int else x, dst)
    got = compiled[f"{src.dsl_name}_to_{dst.dsl_name}"](x)
    assert_same(want, got, f"native ({target})")
    assert_same(want, interpret(_casts_module([(src, dst)]).functions[0], [x])[0], "interpreter")


def test_nan_keeps_its_sign_through_f16_and_bf16(casts):
    _, compiled = casts
    x = np.array([np.nan, -np.nan], np.float32)
    for dst in (F16, BF16):
        got = compiled[f"f32_to_{dst.dsl_name}"](x).astype(np.float32)
        assert np.isnan(got).all() and list(np.signbit(got)) == [False, True]


# -- elementwise ops, native against the interpreter ------------------------------------------

SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 0.5, 65504.0, 6e-8, -3.5, 2.0 ** -130]
SHAPES = [("N",), (), ("N", 1, 3), (0, 3)]


def _values(rng: np.random.Generator, dtype: DType, shape: tuple[int, ...]) -> np.ndarray:
    n = int(np.prod(shape, dtype=np.int64))
    if dtype is DType.bool:
        return (rng.random(n) < 0.5).reshape(shape)
    if dtype.is_float:
        v = rng.standard_normal(n) * 10.0 ** rng.integers(-4, 5, n)
        k = min(n, len(SPECIALS))
        v[:k] = rng.permutation(SPECIALS)[:k]
        with np.errstate(over="ignore"):
            return v.astype(dtype.np).reshape(shape)
    info = np.iinfo(dtype.np)
    return rng.integers(info.min, int(info.max) + 1, n).astype(dtype.np).reshape(shape)


def _elementwise_cases() -> list[tuple[str, DType]]:
    cases = []
    for name, op in sorted(OPS.items()):
        if op.kind != ELEMENTWISE or name == "cast":
            continue
        for dtype in STORAGE:
            if _build_elementwise(name, dtype, ("N",)) is not None:
                cases.append((name, dtype))
    return cases


def _operand_types(name: str, dtype: DType, shape: tuple) -> list[TensorType]:
    n = len(OPS[name].operands)
    logical = name.startswith("logical")
    return [T(DType.bool if logical or (name == "select" and i == 0) else dtype, *shape) for i in range(n)]


_ATTRS = {"clip": {"lo": -2.0, "hi": 3.0}}


def _build_elementwise(name: str, dtype: DType, shape: tuple):
    types = _operand_types(name, dtype, shape)
    try:
        f, b = new_function(f"{name}_{dtype.dsl_name}", [(f"p{i}", t) for i, t in enumerate(types)])
        f.outputs = [b.emit(name, *f.params, **_ATTRS.get(name, {}))]
    except DlTypeError:
        return None
    return f


ELEMENTWISE_CASES = _elementwise_cases()


@pytest.fixture(scope="module")
def elementwise():
    m = Module()
    for name, dtype in ELEMENTWISE_CASES:
        for k, shape in enumerate(SHAPES):
            f = _build_elementwise(name, dtype, shape)
            f.name = f"{f.name}_{k}"
            m.functions.append(f)
    return runtime.compile(m, cache=False, passes="")


def test_every_float_elementwise_op_takes_f16_and_bf16():
    """The rule (compiler/ops/base.py): an elementwise op takes the storage dtypes; its
    own rule still decides float-only or int-only (``exp`` of u8 is an error)."""
    taken = {(n, d) for n, d in ELEMENTWISE_CASES}
    for name in ("add", "exp", "tanh", "gelu", "maximum", "lt", "select", "isnan", "round"):
        assert (name, F16) in taken and (name, BF16) in taken
    for name in ("add", "mul", "neg", "abs", "floor_div", "mod", "maximum", "lt", "pow"):
        assert (name, U8) in taken and (name, I8) in taken
    assert ("exp", U8) not in taken and ("div", I8) not in taken


@pytest.mark.parametrize("name,dtype", ELEMENTWISE_CASES, ids=[f"{n}-{d.dsl_name}" for n, d in ELEMENTWISE_CASES])
def test_elementwise_native_matches_interpreter(elementwise, name, dtype):
    """Computed in f32 (i32) and rounded (wrapped) once per op: bit for bit the
    interpreter's value, on NaN/inf/-0.0/subnormal inputs, 0-sized dims, rank 0 and
    1-element axes; batch sizes 1 and 37 (two full vectors and a masked tail)."""
    rng = np.random.default_rng(len(name) * 31 + STORAGE.index(dtype))
    for k, shape in enumerate(SHAPES):
        func = _build_elementwise(name, dtype, shape)
        types = _operand_types(name, dtype, shape)
        for n in (1, 37):
            concrete = tuple(n if d == "N" else d for d in shape)
            args = [_values(rng, t.dtype, concrete) for t in types]
            got = elementwise[f"{name}_{dtype.dsl_name}_{k}"](*args)
            assert_same(interpret(func, args)[0], got, f"{name} {dtype.dsl_name} {concrete}")


NUMPY_FUNCTIONS = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide,
                   "maximum": np.maximum, "minimum": np.minimum, "neg": np.negative, "abs": np.abs,
                   "square": np.square, "sqrt": np.sqrt, "exp": np.exp, "log": np.log, "tanh": np.tanh,
                   "floor": np.floor, "ceil": np.ceil, "sign": np.sign, "floor_div": np.floor_divide,
                   "mod": np.remainder, "lt": np.less, "eq": np.equal}


NUMPY_CASES = [(n, d) for n in sorted(NUMPY_FUNCTIONS) for d in (F16, U8, I8) if (n, d) in ELEMENTWISE_CASES]


@pytest.mark.parametrize("name,dtype", NUMPY_CASES, ids=[f"{n}-{d.dsl_name}" for n, d in NUMPY_CASES])
def test_interpreter_matches_numpy_function_of_the_same_name(name, dtype):
    """numpy's float16 functions compute in float32 and round once, as dlc's f16 ops do;
    its uint8/int8 ones wrap.  ``maximum``/``minimum`` order signed zeros (docs/ops.md)."""
    f = _build_elementwise(name, dtype, ("N",))
    rng = np.random.default_rng(3)
    args = [_values(rng, dtype, (500,)) for _ in f.params]
    with np.errstate(all="ignore"):
        want = NUMPY_FUNCTIONS[name](*args)
    got = interpret(f, args)[0]
    if name in ("maximum", "minimum"):
        zeros = (args[0] == 0) & (args[1] == 0)
        want, got = want[~zeros], got[~zeros]
    assert_same(want, got, name)


# -- layout and data movement ---------------------------------------------------------------


LAYOUT_BODIES = {
    "reshape": lambda b, x: b.reshape(b.reshape(x, shape=(3, "N", 1)), shape=("N", 3)),
    "transpose": lambda b, x: b.transpose(x, perm=(1, 0)),
    "broadcast_to": lambda b, x: b.broadcast_to(b.expand_dims(x, axis=(0,)), shape=(2, "N", 3)),
    "slice": lambda b, x: b.slice(x, start=(None, 1), stop=(None, None), step=(None, 1)),
    "concat": lambda b, x: b.concat(x, x, axis=1),
    "flip": lambda b, x: b.flip(x, axis=(1,)),
    "where": lambda b, x: b.where(b.constant(np.array([True, False, True]), DType.bool), x, x),
    "squeeze": lambda b, x: b.squeeze(b.expand_dims(x, axis=(1,)), axis=(1,)),
    "tile": lambda b, x: b.tile(x, reps=(1, 2)),
    "pad": lambda b, x: b.pad(x, pad_width=np.array([[0, 0], [1, 2]])),
}


@pytest.mark.parametrize("dtype", STORAGE, ids=lambda d: d.dsl_name)
def test_layout_ops_move_storage_dtypes_exactly(dtype):
    rng = np.random.default_rng(5)
    m = Module()
    built = {}
    for name, body in LAYOUT_BODIES.items():
        f, b = new_function(name, [("x", T(dtype, "N", 3))])
        try:
            f.outputs = [body(b, f.params[0])]
        except (DlTypeError, TypeError) as e:
            raise AssertionError(f"{name}: {e}") from None
        m.functions.append(f)
        built[name] = f
    compiled = runtime.compile(m, cache=False, passes="")
    for n in (0, 1, 5):
        x = _values(rng, dtype, (n, 3))
        for name, f in built.items():
            assert_same(interpret(f, [x])[0], compiled[name](x), f"{name} n={n}")


# -- matmul and reductions on f16 / bf16: computed in f32, rounded once ----------------------

HALF_REDUCTIONS = ("sum(x, axes=[1])", "sum(x, axes=[0])", "mean(x, axes=[0])", "max(x, axes=[1])",
                   "min(x, axes=[0], keepdims=true)", "prod(x, axes=[1])", "argmax(x, axis=1)",
                   "argmin(x, axis=0)", "logsumexp(x, axes=[1])", "var(x, axes=[0], ddof=1)",
                   "std(x, axes=[1])", "norm(x, axes=[1], ord=1)", "sum(x)")


@pytest.mark.parametrize("dtype", [F16, BF16], ids=lambda d: d.dsl_name)
def test_half_matmul_and_reductions_agree_natively_and_in_the_interpreter(dtype):
    name = dtype.dsl_name
    body = ", ".join(HALF_REDUCTIONS)
    source = (f"fn red(x: {name}[N, K]) {{ return {body} }}\n"
              f"fn mm(a: {name}[N, K], b: {name}[K, 5]) {{ return a @ b }}\n")
    compiled, module = runtime.compile(source, cache=False), compile_source(source, "h.dl")
    rng = np.random.default_rng(7)
    for n, k in ((3, 7), (1, 1), (4, 300), (2, 0), (0, 3)):
        x = _values(rng, dtype, (n, k))
        if n * k:
            x[0, 0] = np.nan
        nonempty = n > 0 and k > 0           # max, min, argmax, argmin refuse an empty axis
        if nonempty:
            for g, w, what in zip(compiled["red"](x), interpret(module.get("red"), [x]), HALF_REDUCTIONS):
                assert_same(w, g, f"{what} at {n}x{k}")
        # small integers: every f32 sum is exact, so the once-rounded products are bit-identical
        a = rng.integers(-8, 9, (n, k)).astype(dtype.np)
        b = rng.integers(-8, 9, (k, 5)).astype(dtype.np)
        a.flat[:1] = -0.0
        want = interpret(module.get("mm"), [a, b])[0]
        assert_same(want, compiled["mm"](a, b), f"matmul at {n}x{k}")
        assert_same((a.astype(np.float32) @ b.astype(np.float32)).astype(dtype.np), want)


def test_half_matmul_and_sums_round_once_as_numpy_does():
    rng = np.random.default_rng(3)
    compiled = runtime.compile("fn f(a: f16[N, K], b: f16[K, 3]) { return a @ b, sum(a, axes=[1]), mean(a, axes=[0]) }",
                               cache=False)
    a = rng.standard_normal((4, 5000)).astype(np.float16)
    b = rng.standard_normal((5000, 3)).astype(np.float16)
    mm, s, m = compiled.f(a, b)
    per_step = np.zeros((4, 3), np.float16)    # rounding at every step, which numpy does not do
    for j in range(0, 5000, 50):
        per_step = (per_step.astype(np.float32) + a[:, j:j + 50].astype(np.float32)
                    @ b[j:j + 50].astype(np.float32)).astype(np.float16)
    assert not np.array_equal(per_step, a @ b)
    # numpy rounds the f32 result once; the order of f32 additions may move one ulp
    ulp = np.spacing(np.abs(a @ b)).astype(np.float32)
    assert np.all(np.abs(mm.astype(np.float32) - (a @ b).astype(np.float32)) <= ulp)
    assert np.all(np.abs(s.astype(np.float32) - np.sum(a, axis=1).astype(np.float32))
                  <= np.spacing(np.abs(np.sum(a, axis=1))).astype(np.float32))
    ones = np.full((100000, 2), 0.1, np.float16)        # numpy's strided f16 sum gives 256 here
    tall = runtime.compile("fn f(x: f16[N, 2]) { return sum(x, axes=[0]), mean(x, axes=[0]) }", cache=False)
    total, avg = tall.f(ones)
    assert_same(np.sum(ones.astype(np.float32), axis=0).astype(np.float16), total)
    assert_same(np.mean(ones, axis=0), avg)


def test_half_gradients_through_matmul_and_reductions():
    compiled = runtime.compile("""
fn loss(w: f16[3, 2], x: f16[N, 3]) -> f16[] { return mean(x @ w) + max(w) }
fn dloss = grad(loss, wrt=[w])
""", cache=False)
    x = np.arange(12, dtype=np.float16).reshape(4, 3)
    w = np.array([[1, 2], [3, 4], [5, 6]], np.float16)
    want = np.repeat(x.astype(np.float32).sum(axis=0)[:, None] / 8, 2, axis=1)
    want[2, 1] += 1
    assert_same(want.astype(np.float16), compiled.dloss(w, x))


# -- what does not take storage dtypes ------------------------------------------------------


@pytest.mark.parametrize("dtype", [I8, U8], ids=lambda d: d.dsl_name)
def test_ops_without_storage_support_say_cast_first(dtype):
    f, b = new_function("f", [("x", T(dtype, 4, 3)), ("w", T(dtype, 3, 2))])
    with pytest.raises(DlTypeError, match=rf"matmul: does not take {dtype.dsl_name} tensors.*cast\(x, f32\)"):
        b.matmul(*f.params)
    with pytest.raises(DlTypeError, match="sum: does not take"):
        b.sum(f.params[0])


@pytest.mark.parametrize("dtype", [F16, BF16], ids=lambda d: d.dsl_name)
def test_half_ops_without_a_widened_form_say_cast_first(dtype):
    f, b = new_function("f", [("x", T(dtype, 4, 3)), ("i", T(DType.i32, 4))])
    with pytest.raises(DlTypeError, match=rf"softmax: does not take {dtype.dsl_name} tensors.*cast\(x, f32\)"):
        b.softmax(f.params[0])
    with pytest.raises(DlTypeError, match="cumsum: does not take"):
        b.cumsum(f.params[0], axis=0)


# -- the IR text and the .dl language -------------------------------------------------------


def test_ir_text_round_trip_of_storage_types():
    m = _casts_module([(U8, F16), (F16, BF16), (BF16, I8), (I8, DType.f32)])
    f, b = new_function("consts", [("x", T(BF16, "N"))])
    f.outputs = [b.mul(f.params[0], b.constant(0.1, BF16)), b.constant(np.array([1.5, -2.0]), BF16)]
    m.functions.append(f)
    text = print_module(m)
    assert "tensor<?xui8, \"N\">" in text and "xbf16" in text and "xf16" in text and "xi8" in text
    assert print_module(parse_module(text, "t.mlir")) == text
    x = np.array([1.0, 3.0], BF16_NP)
    assert_same(interpret(f, [x])[0], np.array([0.10009765625, 0.30078125], BF16_NP))


DL_SOURCE = """
fn scale(x: u8[N, 28, 28, 1]) -> f32[N, 28, 28, 1] {
    return cast(x, f32) / 255.0
}
fn halve(x: f16[N, 3], y: bf16[N, 3]) -> f16[N, 3] {
    return x * 0.5 + cast(y, f16)
}
fn wrap(x: u8[N], y: i8[N]) -> u8[N] {
    return x + cast(y, u8) * 3
}
"""


def test_dl_types_and_arithmetic():
    compiled = runtime.compile(DL_SOURCE, cache=False)
    x = np.arange(2 * 784, dtype=np.uint8).reshape(2, 28, 28, 1)
    np.testing.assert_array_equal(compiled["scale"](x), x.astype(np.float32) / np.float32(255.0))
    h = np.array([[1.0, 3.0, 65504.0]], np.float16)
    y = np.array([[0.1, 1e-3, 1.0]], BF16_NP)
    want = (h * np.float16(0.5) + y.astype(np.float16))
    assert_same(want, compiled["halve"](h, y))
    u, i = np.array([250, 0, 7], np.uint8), np.array([-1, 127, -128], np.int8)
    assert_same((u + i.astype(np.uint8) * np.uint8(3)).astype(np.uint8), compiled["wrap"](u, i))


@pytest.mark.parametrize("body,message", [
    ("return x / 255.0", "float literal 255.0 used with an u8 tensor; cast the tensor with cast\\(x, f32\\)"),
    ("return x + 256", "integer literal 256 is out of range for u8"),
    ("return sum(x)", "does not take u8 tensors"),
])
def test_dl_errors_for_u8(body, message):
    with pytest.raises(DlError, match=message):
        compile_source(f"fn f(x: u8[N]) -> u8[N] {{\n    {body}\n}}\n", "t.dl")


def test_f16_literal_beyond_its_range_is_an_error():
    with pytest.raises(DlError, match="70000.0 is beyond the range of f16"):
        compile_source("fn f(x: f16[N]) -> f16[N] {\n    return x * 70000.0\n}\n", "t.dl")


# -- the runtime -----------------------------------------------------------------------------


def test_runtime_takes_storage_arrays_as_they_are_and_refuses_lossy_ones():
    compiled = runtime.compile("fn f(x: u8[N], h: f16[N], z: bf16[N]) -> f32[N] {\n"
                               "    return cast(x, f32) + cast(h, f32) + cast(z, f32)\n}\n", cache=False)
    u = np.array([255, 1], np.uint8)
    h = np.array([0.5, -2.0], np.float16)
    z = np.array([1.0, 2.0], BF16_NP)
    np.testing.assert_array_equal(compiled["f"](u, h, z), [256.5, 1.0])
    with pytest.raises(DlError, match="float32 does not convert to uint8"):
        compiled["f"](u.astype(np.float32), h, z)
    with pytest.raises(DlError, match="does not convert to float16"):
        compiled["f"](u, h.astype(np.float32), z)
    with pytest.raises(DlError, match="does not convert to bfloat16"):
        compiled["f"](u, h, z.astype(np.float32))


MNIST_U8 = """
model mnist_u8 {
    input x: u8[N, 28, 28, 1]
    target y: i32[N]
    let flat = reshape(cast(x, f32) / 255.0, [N, 784])
    output probs = dense(flat, 10, activation=softmax)
    loss sparse_categorical_crossentropy(probs, y)
    optimizer adam(lr=0.01)
    metrics [accuracy]
}
"""


def test_a_model_with_u8_images_trains_on_mnist_bytes(tmp_path):
    """The MNIST loader hands a u8 model the images as stored (not floats in [0, 1]), and
    ``cast(x, f32) / 255.0`` in the model scales them: a linear classifier learns."""
    from runtime.data import load_data
    from runtime.model import load_model

    path = tmp_path / "m.dl"
    path.write_text(MNIST_U8)
    model = load_model(path)
    data = load_data("mnist", model.data_spec)
    assert data.x_train.dtype == np.uint8 and data.x_train.shape[1:] == (28, 28)
    x, y = data.x_train[:2000], data.y_train[:2000]
    before = model.evaluate(x, y)
    model.fit(x, y, epochs=2, batch_size=64, verbose=0)
    after = model.evaluate(x, y)
    assert after["accuracy"] > 0.8 > before["accuracy"]
    with pytest.raises(DlError, match="outside the range of u8"):
        model.evaluate(x.astype(np.int32) * 2, y)
