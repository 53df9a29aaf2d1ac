"""The indexing and plumbing ops (compiler/ops/indexing.py) against numpy, native code against
the interpreter, gradients against finite differences (first and second order), run-time index
checks, and in-place / memory-planning safety of reads at computed coordinates (loop IR ``Take``).

Native cases are generated from seeded random shapes -- 0-sized dims, rank 0, 1-element axes,
every dtype -- with NaN, +-inf and -0.0 among the values, compiled into one module and compared
with the interpreter element for element (exactly: these ops move data, and the scatters add in
numpy's order), and the interpreter with the numpy function of the same name.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

import runtime
from compiler.checking.gradcheck import gradcheck
from compiler.codegen.bufferize import lower_function
from compiler.codegen.driver import stage_text
from compiler.codegen.loops import Elementwise, Scatter, Take, print_program, takes
from compiler.codegen.target import CodegenOptions
from compiler.diagnostics import DlIndexError, DlTypeError
from compiler.ir.builder import Builder, new_function
from compiler.ir.core import Function, Module, Value
from compiler.ir.interpreter import interpret
from compiler.ir.parser import parse_module
from compiler.ir.printer import print_module
from compiler.ir.types import DType, TensorType
from compiler.ops import OPS
from compiler.passes.autodiff import grad, inline_function
from frontend_dsl.api import compile_source

F32, F64, I32, I64, BOOL = DType.f32, DType.f64, DType.i32, DType.i64, DType.bool
DTYPES = (F32, F64, I32, I64, BOOL)
SPECIAL = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1.5, -2.25], dtype=np.float64)
SIZES = (0, 1, 2, 3, 5, 17)


def T(dtype: DType, *shape) -> TensorType:
    return TensorType(dtype, tuple(shape))


# ---------------------------------------------------------------------------
# Cases: a function of one op, what numpy says, how to draw its inputs


@dataclass
class Case:
    name: str
    params: list[TensorType]
    build: Callable[[Builder, list[Value]], Value | tuple[Value, ...]]
    numpy: Callable[..., np.ndarray | list[np.ndarray]]     # the numpy function of the same name
    index_bound: dict[int, int]                              # int params: indices in [-bound, bound)

    def function(self) -> Function:
        f, b = new_function(self.name, [(f"p{i}", t) for i, t in enumerate(self.params)])
        out = self.build(b, f.params)
        f.outputs = list(out) if isinstance(out, tuple) else [out]
        return f


def draw(t: TensorType, n: int, rng: np.random.Generator, bound: int | None = None) -> np.ndarray:
    """An argument of type ``t`` (symbolic dims = ``n``): specials among the floats, every
    bool, indices in ``[-bound, bound)`` (0 when ``bound`` is 0: an empty axis takes none)."""
    shape = t.concrete_shape({"N": n})
    if bound is not None:
        return rng.integers(-bound, max(bound, 1), shape).astype(t.dtype.np) if bound else \
            np.zeros(shape, t.dtype.np)
    if t.dtype is BOOL:
        return rng.random(shape) < 0.5
    if t.dtype.is_int:
        return rng.integers(-1000, 1000, shape).astype(t.dtype.np)
    values = rng.standard_normal(shape)
    special = rng.random(shape) < 0.3
    values[special] = rng.choice(SPECIAL, size=int(special.sum()))
    return values.astype(t.dtype.np)


def random_shape(rng: random.Random, rank: int) -> tuple[int, ...]:
    return tuple(rng.choice(SIZES) for _ in range(rank))


def maybe(rng: random.Random, values: list, none: float = 0.3):
    return None if rng.random() < none else rng.choice(values)


def _slice_cases(rng: random.Random) -> list[Case]:
    cases = []
    for k in range(8):
        shape = random_shape(rng, rng.choice([0, 1, 2, 3]))
        dtype = rng.choice(DTYPES)
        start = tuple(maybe(rng, [-7, -2, -1, 0, 1, 2, 9]) for _ in shape)
        stop = tuple(maybe(rng, [-9, -3, -1, 0, 1, 4, 20]) for _ in shape)
        step = tuple(maybe(rng, [-3, -2, -1, 1, 2, 3]) for _ in shape)
        index = tuple(slice(a, z, s) for a, z, s in zip(start, stop, step))
        cases.append(Case(f"slice{k}", [T(dtype, *shape)],
                          lambda b, p, a=start, z=stop, s=step: b.slice(p[0], start=a, stop=z, step=s),
                          lambda x, index=index: x[index], {}))
        sliced = np.empty(shape)[index].shape
        cases.append(Case(f"slice_update{k}", [T(dtype, *shape), T(dtype, *sliced)],
                          lambda b, p, a=start, z=stop, s=step: b.slice_update(p[0], p[1], start=a, stop=z, step=s),
                          lambda x, u, index=index: _assigned(x, index, u), {}))
    return cases


def _assigned(x: np.ndarray, index: tuple, update: np.ndarray) -> np.ndarray:
    out = x.copy()
    out[index] = update
    return out


def shape_and_axis(rng: random.Random) -> tuple[int, tuple[int, ...], int]:
    """A rank of 1 to 3, a random shape of it and an axis (maybe negative)."""
    rank = rng.choice([1, 2, 3])
    return rank, random_shape(rng, rank), rng.randrange(-rank, rank)


def _concat_cases(rng: random.Random) -> list[Case]:
    cases = []
    for k in range(6):
        rank, base, axis = shape_and_axis(rng)
        shapes = [tuple(rng.choice([0, 1, 3, 18]) if d == axis % rank else s for d, s in enumerate(base))
                  for _ in range(rng.choice([1, 2, 3]))]
        dtype = rng.choice(DTYPES)
        cases.append(Case(f"concat{k}", [T(dtype, *s) for s in shapes],
                          lambda b, p, axis=axis: b.concat(*p, axis=axis),
                          lambda *xs, axis=axis: np.concatenate(xs, axis=axis), {}))
        count = rng.choice([1, 2, 3])
        cases.append(Case(f"stack{k}", [T(dtype, *base)] * count,
                          lambda b, p, axis=axis: b.stack(*p, axis=axis),
                          lambda *xs, axis=axis: np.stack(xs, axis=axis), {}))
        size = rng.choice([0, 4, 6])
        shape = base[:axis % rank] + (size,) + base[axis % rank + 1:]
        if rng.random() < 0.5:
            sections = rng.choice([d for d in (1, 2, 3) if size % d == 0])
            attrs, split_arg = {"sections": sections}, sections
        else:
            points = tuple(sorted(rng.choice([-5, -1, 0, 1, 2, 3, 7]) for _ in range(rng.randint(1, 3))))
            if rng.random() < 0.3:
                points = tuple(reversed(points))
            attrs, split_arg = {"indices": points}, list(points)
        cases.append(Case(f"split{k}", [T(dtype, *shape)],
                          lambda b, p, attrs=attrs, axis=axis: b.split(p[0], axis=axis, **attrs),
                          lambda x, s=split_arg, axis=axis: np.split(x, s, axis=axis), {}))
    return cases


def _shape_cases(rng: random.Random) -> list[Case]:
    cases = []
    for k in range(6):
        rank = rng.choice([0, 1, 2, 3])
        shape = random_shape(rng, rank)
        dtype = rng.choice(DTYPES)
        axes = tuple(a for a in range(rank) if rng.random() < 0.5)
        flip_axis = None if rng.random() < 0.3 else axes
        cases.append(Case(f"flip{k}", [T(dtype, *shape)],
                          lambda b, p, a=flip_axis: b.flip(p[0], axis=a),
                          lambda x, a=flip_axis: np.flip(x, axis=a), {}))
        ones = tuple(1 if rng.random() < 0.5 else d for d in shape)
        squeeze_axis = None if rng.random() < 0.4 else tuple(a for a, d in enumerate(ones) if d == 1)
        cases.append(Case(f"squeeze{k}", [T(dtype, *ones)],
                          lambda b, p, a=squeeze_axis: b.squeeze(p[0], axis=a),
                          lambda x, a=squeeze_axis: np.squeeze(x, axis=a), {}))
        new = tuple(sorted(rng.sample(range(rank + 2), rng.choice([1, 2]))))
        cases.append(Case(f"expand_dims{k}", [T(dtype, *shape)],
                          lambda b, p, a=new: b.expand_dims(p[0], axis=a),
                          lambda x, a=new: np.expand_dims(x, axis=a), {}))
        value_shape = tuple(d if rng.random() < 0.6 else 1 for d in shape)
        cases.append(Case(f"where{k}", [T(BOOL, *shape[1:]), T(dtype, *shape), T(dtype, *value_shape)],
                          lambda b, p: b.where(*p), np.where, {}))
        reps = tuple(rng.choice([0, 1, 2, 3]) for _ in range(rng.choice([0, 1, 2, 3])))
        cases.append(Case(f"tile{k}", [T(dtype, *shape)],
                          lambda b, p, r=reps: b.tile(p[0], reps=r),
                          lambda x, r=reps: np.tile(x, r), {}))
        axis = rng.randrange(rank) if rank and rng.random() < 0.7 else None
        n = shape[axis] if axis is not None else int(np.prod(shape))
        repeats = (rng.choice([0, 1, 3]),) if rng.random() < 0.5 or n == 1 else tuple(
            rng.choice([0, 1, 2]) for _ in range(n))
        cases.append(Case(f"repeat{k}", [T(dtype, *shape)],
                          lambda b, p, r=repeats, a=axis: b.repeat(p[0], repeats=r, axis=a),
                          lambda x, r=repeats, a=axis: np.repeat(x, r[0] if len(r) == 1 else list(r), axis=a), {}))
    return cases


def _pad_cases(rng: random.Random) -> list[Case]:
    cases = []
    for k in range(8):
        mode = ("constant", "edge", "reflect", "symmetric", "wrap")[k % 5]
        shape = random_shape(rng, rng.choice([0, 1, 2, 3]))
        if mode != "constant":
            shape = tuple(max(d, 1) for d in shape)
        dtype = rng.choice(DTYPES)
        width = np.array([[rng.choice([0, 1, 2, 6]), rng.choice([0, 1, 4])] for _ in shape], np.int64)
        width = width.reshape(len(shape), 2)
        value = rng.choice([0, 2, -1.5, True]) if dtype is not BOOL else rng.choice([True, False])
        fill = np.asarray(value).astype(dtype.np)
        cases.append(Case(f"pad{k}", [T(dtype, *shape)],
                          lambda b, p, w=width, m=mode, v=value: b.pad(p[0], pad_width=w, mode=m, value=v),
                          lambda x, w=width, m=mode, f=fill: np.pad(x, w if w.size else 0, mode=m, **(
                              {"constant_values": f} if m == "constant" else {})), {}))
    return cases


def _gather_cases(rng: random.Random) -> list[Case]:
    cases = []
    for k in range(6):
        rank, shape, axis = shape_and_axis(rng)
        n = shape[axis]
        dtype = rng.choice(DTYPES)
        itype = rng.choice([I32, I64])
        ishape = random_shape(rng, rng.choice([0, 1, 2])) if n else (0,)
        cases.append(Case(f"gather{k}", [T(dtype, *shape), T(itype, *ishape)],
                          lambda b, p, a=axis: b.gather(p[0], p[1], axis=a),
                          lambda x, i, a=axis: np.take(x, i, axis=a), {1: n}))
        along = tuple(rng.choice([1, 2, 4]) if d == axis % rank else rng.choice([1, s]) for d, s in enumerate(shape))
        if not n:
            along = tuple(0 if d == axis % rank else s for d, s in enumerate(along))
        cases.append(Case(f"take_along_axis{k}", [T(dtype, *shape), T(itype, *along)],
                          lambda b, p, a=axis: b.take_along_axis(p[0], p[1], axis=a),
                          lambda x, i, a=axis: np.take_along_axis(x, i, axis=a), {1: n}))
        if dtype is BOOL:
            continue
        ushape = shape[:axis % rank] + ishape + shape[axis % rank + 1:]
        cases.append(Case(f"scatter_add{k}", [T(dtype, *shape), T(itype, *ishape), T(dtype, *ushape)],
                          lambda b, p, a=axis: b.scatter_add(*p, axis=a),
                          lambda x, i, u, a=axis: _add_at(x, (slice(None),) * (a % x.ndim) + (i,), u), {1: n}))
        if k % 2 == 0:                        # integers only
            mtype = I64 if k % 4 == 0 else I32
            cases.append(Case(f"scatter_min{k}", [T(mtype, *shape), T(itype, *ishape), T(mtype, *ushape)],
                              lambda b, p, a=axis: b.scatter_min(*p, axis=a),
                              lambda x, i, u, a=axis: _min_at(x, (slice(None),) * (a % x.ndim) + (i,), u),
                              {1: n}))
        oshape = tuple(np.broadcast_shapes((s,), (t,))[0] if d != axis % rank else t
                       for d, (s, t) in enumerate(zip(shape, along)))
        cases.append(Case(f"scatter_add_along_axis{k}", [T(dtype, *shape), T(itype, *along), T(dtype, *oshape)],
                          lambda b, p, a=axis: b.scatter_add_along_axis(*p, axis=a),
                          lambda x, i, u, a=axis: _add_at(x, _along(x.shape, i, a % x.ndim, u.shape), u), {1: n}))
    return cases


def _add_at(x: np.ndarray, index: tuple, updates: np.ndarray) -> np.ndarray:
    out = x.copy()
    np.add.at(out, index, updates)
    return out


def _min_at(x: np.ndarray, index: tuple, updates: np.ndarray) -> np.ndarray:
    out = x.copy()
    np.minimum.at(out, index, updates)
    return out


def _along(shape: tuple[int, ...], indices: np.ndarray, axis: int, out: tuple[int, ...]) -> tuple:
    """numpy's own take_along_axis index arrays (``np.lib`` internals spelled out)."""
    index = []
    for d, n in enumerate(shape):
        if d == axis:
            index.append(np.broadcast_to(indices, out))
        else:
            index.append(np.broadcast_to(np.arange(n).reshape([n if e == d else 1 for e in range(len(shape))]), out))
    return tuple(index)


def _symbolic_cases() -> list[Case]:
    """Symbolic batch dims: whole and reversed slices, concatenation beside the batch, gathers
    from a batch (run at N = 0 too)."""
    n4 = T(F32, "N", 37)
    return [
        Case("sym_slices", [n4], lambda b, p: (b.slice(p[0], step=(-1, 2)), b.flip(p[0]),
                                                b.add(b.slice(p[0], start=(None, 1)), b.slice(p[0], stop=(None, -1)))),
             lambda x: [x[::-1, ::2], np.flip(x), x[:, 1:] + x[:, :-1]], {}),
        Case("sym_bounds", [n4, T(F32, "N", 37)],
             lambda b, p: (b.slice(p[0], start=(1,)), b.slice(p[0], stop=("N-1",)),
                           b.slice(p[0], start=("N-3",), step=(2,)), b.slice(p[0], stop=("N//2",), step=(-1,)),
                           b.slice(p[0], start=(-2,), stop=("2*N",)),
                           b.slice_update(p[1], b.slice(p[0], stop=("N",), step=(3,)),
                                          start=("N-1",), step=(-3,))),
             lambda x, u: [x[1:], x[:len(x) - 1], x[len(x) - 3::2], x[:len(x) // 2:-1], x[-2:2 * len(x)],
                           _assigned(u, (slice(len(u) - 1, None, -3),), x[:len(x):3])],
             {}),
        Case("sym_concat", [n4, T(F32, "N", 3)], lambda b, p: b.concat(p[1], p[0], p[1], axis=1),
             lambda x, y: np.concatenate([y, x, y], axis=1), {}),
        Case("sym_gather", [n4, T(I64, 5)], lambda b, p: b.gather(p[0], p[1], axis=0),
             lambda x, i: np.take(x, i, axis=0), {1: 0}),      # indices drawn below from N
        Case("sym_pad_update", [n4, T(F32, "N", 12)],
             lambda b, p: (b.pad(p[1], pad_width=np.array([[0, 0], [3, 2]]), mode="reflect"),
                           b.slice_update(p[0], p[1], start=(None, 35), step=(None, -3))),
             lambda x, u: [np.pad(u, [[0, 0], [3, 2]], mode="reflect"),
                           _assigned(x, (slice(None), slice(35, None, -3)), u)],
             {}),
    ]


def _all_cases() -> list[Case]:
    rng = random.Random(20261124)
    cases = (_slice_cases(rng) + _concat_cases(rng) + _shape_cases(rng) + _pad_cases(rng)
             + _gather_cases(rng) + _symbolic_cases())
    return cases


CASES = _all_cases()
BY_NAME = {c.name: c for c in CASES}
BATCHES = (0, 1, 2, 7)


def inputs(case: Case, n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    args = [draw(t, n, rng, case.index_bound.get(i)) for i, t in enumerate(case.params)]
    if case.name == "sym_gather":
        args[1] = rng.integers(-n, n, 5) if n else np.zeros(0, np.int64)
        args[1] = np.resize(args[1], 5).astype(np.int64) if n else args[1]
    return args


def assert_same(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """Equal element for element, NaN for NaN, and the sign of every zero."""
    assert got.dtype == want.dtype and got.shape == want.shape, (what, got.dtype, got.shape, want.dtype, want.shape)
    np.testing.assert_array_equal(got, want, err_msg=what)
    if want.dtype.kind == "f":
        assert np.array_equal(np.signbit(got), np.signbit(want)), what


def as_list(out) -> list[np.ndarray]:
    return list(out) if isinstance(out, (list, tuple)) else [out]


@pytest.fixture(scope="module")
def compiled():
    funcs = [c.function() for c in CASES if c.name != "sym_gather"]
    return runtime.compile(Module(funcs), cache=False, passes="")


@pytest.mark.parametrize("name", [c.name for c in CASES if c.name != "sym_gather"])
def test_interpreter_matches_numpy_and_native_matches_interpreter(compiled, name: str):
    case = BY_NAME[name]
    func = compiled.module.get(name)
    symbolic = any(isinstance(d, str) for t in case.params for d in t.shape)
    for n in BATCHES if symbolic else (1,):
        args = inputs(case, n, seed=zlib.crc32(name.encode()))
        want = interpret(func, [a.copy() for a in args])
        with np.errstate(all="ignore"):
            expected = as_list(case.numpy(*[a.copy() for a in args]))
        assert len(want) == len(expected)
        for w, e in zip(want, expected):
            assert_same(w, np.asarray(e), f"{name}: interpreter vs numpy at N={n}")
        got = as_list(compiled[name](*args))
        for i, (g, w) in enumerate(zip(got, want)):
            assert_same(g, w, f"{name}: native output {i} vs interpreter at N={n}")


def test_cases_cover_zero_sized_rank_0_and_unit_axes():
    shapes = [t.shape for c in CASES for t in c.params]
    assert any(0 in s for s in shapes) and any(len(s) == 0 for s in shapes) and any(1 in s for s in shapes)
    covered = {c.name.rstrip("0123456789") for c in CASES}
    ours = {n for n, op in OPS.items() if op.reference.__module__ == "compiler.ops.indexing"}
    assert len(ours) == 17 and ours <= covered


def test_gathers_from_a_symbolic_batch_and_an_empty_one(compiled_gather):
    for n in (7, 1):
        x = np.arange(n * 37, dtype=np.float32).reshape(n, 37)
        idx = np.array([0, n - 1, -n, -1, n // 2], np.int64)
        np.testing.assert_array_equal(compiled_gather(x, idx), np.take(x, idx, axis=0))
    empty = np.zeros((0, 37), np.float32)
    with pytest.raises(DlIndexError, match=r"gather: an index is out of range \[-N, N\) for axis 0"):
        compiled_gather(empty, np.zeros(5, np.int64))


@pytest.fixture(scope="module")
def compiled_gather():
    return runtime.compile(Module([BY_NAME["sym_gather"].function()]), cache=False, passes="").sym_gather


# ---------------------------------------------------------------------------
# Out-of-range indices: the interpreter and native code both raise DlIndexError


def _index_module() -> Module:
    funcs = []
    for name, itype, build in [
        ("g32", I32, lambda b, x, i, u: b.gather(x, i, axis=1)),
        ("g64", I64, lambda b, x, i, u: b.gather(x, i, axis=-1)),
        ("t64", I64, lambda b, x, i, u: b.take_along_axis(x, b.reshape(i, shape=(1, 3)), axis=1)),
        ("s32", I32, lambda b, x, i, u: b.scatter_add(x, i, u, axis=1)),
        ("sa64", I64, lambda b, x, i, u: b.scatter_add_along_axis(x, b.reshape(i, shape=(1, 3)), u, axis=1)),
    ]:
        f, b = new_function(name, [("x", T(F32, 4, 5)), ("i", T(itype, 3)), ("u", T(F32, 4, 3))])
        f.outputs = [build(b, *f.params)]
        funcs.append(f)
    return Module(funcs)


@pytest.fixture(scope="module")
def index_module():
    m = _index_module()
    return m, runtime.compile(m, cache=False, passes="")


@pytest.mark.parametrize("bad", [5, -6, 10**9, -(2**31), 2**31 - 1])
@pytest.mark.parametrize("name", ["g32", "g64", "t64", "s32", "sa64"])
def test_out_of_range_indices_raise_and_never_read(index_module, name: str, bad: int):
    module, native = index_module
    func = module.get(name)
    itype = func.params[1].type.dtype.np
    x = np.arange(20, dtype=np.float32).reshape(4, 5)
    u = np.ones((4, 3), np.float32)
    i = np.array([0, bad, -1], dtype=itype)
    op = func.ops[-1].name
    with pytest.raises(DlIndexError, match=rf"{op}: index {bad} is out of range \[-5, 5\) for axis 1"):
        interpret(func, [x, i, u])
    with pytest.raises(DlIndexError, match=rf"@{name}: {op}: an index is out of range \[-5, 5\) for axis 1"):
        native[name](x, i, u)
    # in range again: the same compiled code gives numpy's numbers (-5 wraps to 0)
    i = np.array([4, -5, -1], dtype=itype)
    np.testing.assert_array_equal(native[name](x, i, u), interpret(func, [x, i, u])[0])


@pytest.mark.parametrize("name", ["g64", "t64", "sa64"])
def test_extreme_i64_indices_raise(index_module, name: str):
    module, native = index_module
    x, u = np.zeros((4, 5), np.float32), np.ones((4, 3), np.float32)
    for bad in (2**63 - 1, -2**63):
        i = np.array([bad, 0, 0], np.int64)
        with pytest.raises(DlIndexError, match=f"index {bad} is out of range"):
            interpret(module.get(name), [x, i, u])
        with pytest.raises(DlIndexError, match="an index is out of range"):
            native[name](x, i, u)


def test_index_errors_name_the_op_natively_and_the_index_and_line_in_the_interpreter():
    src = ("fn f(x: f32[N, 4], i: i64[K]) -> f32[K, 4] {\n"
           "  return gather(x, i, axis=0)\n}\n")
    native = runtime.compile(src, cache=False)
    with pytest.raises(DlIndexError, match=r"@f: gather: an index is out of range \[-N, N\) for axis 0 "
                                           r"\(the interpreter, dlc run --interp, names the index and the line\)"):
        native.f(np.zeros((3, 4), np.float32), np.array([1, 3]))
    func = compile_source(src, "g.dl").get("f")
    with pytest.raises(DlIndexError) as info:
        interpret(func, [np.zeros((3, 4), np.float32), np.array([1, 3])])
    assert "index 3 is out of range [-3, 3)" in info.value.message and info.value.loc.line == 2


def test_a_failed_check_leaves_in_place_parameters_untouched():
    """Checks run before any kernel writing a parameter in place."""
    f, b = new_function("step", [("w", T(F32, 6, 4)), ("v", T(F32, 4)), ("i", T(I64, 3))])
    w, v, i = f.params
    f.outputs = [b.sub(w, b.constant(0.5, F32)), b.sum(b.gather(v, i, axis=0))]
    f.attrs["inplace"] = ((0, "w"),)
    native = runtime.compile(Module([f]), cache=False, passes="").step
    weights = np.ones((6, 4), np.float32)
    with pytest.raises(DlIndexError):
        native(weights, np.ones(4, np.float32), np.array([0, 4, 1]))
    np.testing.assert_array_equal(weights, np.ones((6, 4), np.float32))


# ---------------------------------------------------------------------------
# Gradients: finite differences in f64, first and second order


def _grad_cases() -> list[tuple[str, list[TensorType], Callable, dict[str, np.ndarray]]]:
    idx = np.array([[2, -1, 0], [3, 3, -4]], np.int64)
    return [
        ("slice", [T(F32, 5, 4)], lambda b, p: b.slice(p[0], start=(4, 1), stop=(0, None), step=(-2, 2)), {}),
        ("slice_update", [T(F32, 5, 4), T(F32, 2, 4)],
         lambda b, p: b.slice_update(p[0], p[1], start=(-1,), step=(-3,)), {}),
        ("concat", [T(F32, 2, 3), T(F32, 2, 1), T(F32, 2, 2)], lambda b, p: b.concat(*p, axis=-1), {}),
        ("stack", [T(F32, 3), T(F32, 3)], lambda b, p: b.stack(*p, axis=1), {}),
        ("split", [T(F32, 4, 3)], lambda b, p: b.split(p[0], indices=(3, 1), axis=0), {}),
        ("flip", [T(F32, 3, 2)], lambda b, p: b.flip(p[0]), {}),
        ("squeeze", [T(F32, 3, 1)], lambda b, p: b.squeeze(p[0], axis=(1,)), {}),
        ("expand_dims", [T(F32, 3)], lambda b, p: b.expand_dims(p[0], axis=(0,)), {}),
        ("where", [T(BOOL, 3, 1), T(F32, 3, 2), T(F32, 2)], lambda b, p: b.where(*p), {}),
        ("pad_constant", [T(F32, 2, 3)], lambda b, p: b.pad(p[0], pad_width=np.array([[1, 0], [2, 1]]), value=3.0), {}),
        ("pad_reflect", [T(F32, 3, 2)],
         lambda b, p: b.pad(p[0], pad_width=np.array([[4, 2], [1, 1]]), mode="reflect"), {}),
        ("pad_wrap", [T(F32, 3)], lambda b, p: b.pad(p[0], pad_width=np.array([5, 2]), mode="wrap"), {}),
        ("tile", [T(F32, 2, 3)], lambda b, p: b.tile(p[0], reps=(2, 1, 2)), {}),
        ("repeat", [T(F32, 2, 3)], lambda b, p: b.repeat(p[0], repeats=(2, 0, 3), axis=1), {}),
        ("gather", [T(F32, 4, 3), T(I64, 2, 3)], lambda b, p: b.gather(p[0], p[1], axis=0), {"p1": idx}),
        ("take_along_axis", [T(F32, 3, 4), T(I64, 1, 3)], lambda b, p: b.take_along_axis(p[0], p[1], axis=1),
         {"p1": idx[1:]}),
        ("scatter_add", [T(F32, 4, 2), T(I64, 2, 3), T(F32, 2, 3, 2)], lambda b, p: b.scatter_add(*p, axis=0),
         {"p1": idx}),
        ("scatter_add_along_axis", [T(F32, 1, 4), T(I64, 2, 3), T(F32, 2, 3)],
         lambda b, p: b.scatter_add_along_axis(*p, axis=1), {"p1": idx}),
    ]


def _loss_module(name: str, params: list[TensorType], build) -> tuple[Module, list[str]]:
    """``f = sum_r sum(c_r * r**2)`` over the op's results ``r`` (nonlinear, so the second
    derivative goes through the VJP's own ops), and ``h = sum(d * grad f)`` for grad of grad."""
    rng = np.random.default_rng(len(name))
    f, b = new_function("f", [(f"p{i}", t) for i, t in enumerate(params)])
    out = build(b, f.params)
    total = None
    for r in out if isinstance(out, tuple) else (out,):
        c = b.constant(rng.uniform(0.5, 1.5, r.type.shape).astype(np.float32), F32)
        term = b.sum(b.mul(c, b.mul(r, r)))
        total = term if total is None else b.add(total, term)
    f.outputs = [total]
    m = Module([f])
    wrt = [p.name for p in f.params if p.type.dtype.is_float]
    df = grad(m, "f", wrt, new_name="df")
    h, hb = new_function("h", [(p.name, p.type) for p in f.params])
    env = inline_function(hb, df, h.params)
    total = None
    for g in (env[v] for v in df.outputs):
        d = hb.constant(rng.uniform(-1, 1, g.type.shape).astype(np.float32), F32)
        term = hb.sum(hb.mul(d, g))
        total = term if total is None else hb.add(total, term)
    h.outputs = [total]
    m.add(h)
    return m, wrt


@pytest.mark.parametrize("case", _grad_cases(), ids=lambda c: c[0])
def test_gradients_first_and_second_order(case):
    name, params, build, fixed = case
    m, wrt = _loss_module(name, params, build)
    first = gradcheck(m, "f", wrt, inputs=fixed, seed=1)
    assert first.passed, str(first)
    assert first.max_rel_error < 1e-6 and max(a.max_grad for a in first.args) > 0
    second = gradcheck(m, "h", wrt, inputs=fixed, seed=2)
    assert second.passed, str(second)
    assert max(a.max_grad for a in second.args) > 0


def test_gradients_run_natively():
    """A training-step-like gradient through every reading op compiles and matches the interpreter."""
    m, wrt = _loss_module("all", [T(F32, 6, 5), T(I64, 4)], lambda b, p: (
        b.concat(b.slice(p[0], start=(1,), step=(2,)), b.flip(p[0], axis=(1,)), axis=0),
        b.gather(b.pad(p[0], pad_width=np.array([[0, 0], [2, 3]]), mode="reflect"), p[1], axis=1),
        b.take_along_axis(p[0], b.reshape(p[1], shape=(1, 4)), axis=1)))
    native = runtime.compile(m, cache=False, passes="")
    x = np.random.default_rng(3).standard_normal((6, 5)).astype(np.float32)
    i = np.array([0, -1, 4, -5])
    for fn in ("df", "h"):
        want = interpret(m.get(fn), [x, i])
        got = as_list(native[fn](x, i))
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------
# Reads at computed coordinates vs in-place updates and memory planning


def _inplace_step(name: str, build) -> Function:
    """``w_new = build(w, v, i)`` written into ``w``'s memory (as a training step's update)."""
    f, b = new_function(name, [("w", T(F32, 6, 40)), ("v", T(F32, 6, 40)), ("i", T(I32, 6))])
    f.outputs = [build(b, *f.params)]
    f.attrs["inplace"] = ((0, "w"),)
    return f


INPLACE = {
    # each reads w somewhere other than the element it writes
    "flip_rows": lambda b, w, v, i: b.sub(w, b.mul(b.constant(0.5, F32), b.flip(w, axis=(0,)))),
    "flip_cols": lambda b, w, v, i: b.add(w, b.flip(w, axis=(1,))),
    "shifted": lambda b, w, v, i: b.concat(b.slice(w, start=(None, 1)), b.slice(w, stop=(None, 1)), axis=1),
    "gathered_rows": lambda b, w, v, i: b.add(v, b.gather(w, i, axis=0)),
    "scatter_of_w": lambda b, w, v, i: b.scatter_add(v, i, b.gather(w, i, axis=0), axis=0),
    "scatter_into_w": lambda b, w, v, i: b.scatter_add(w, i, b.slice(w, start=(None, None), step=(-1, None)), axis=0),
    # these may run in place: w read at the element written only
    "scatter_base": lambda b, w, v, i: b.scatter_add(w, i, v, axis=0),
    "update_slice": lambda b, w, v, i: b.slice_update(w, b.slice(v, start=(2,)), start=(2,)),
}


@pytest.fixture(scope="module")
def inplace_module():
    m = Module([_inplace_step(n, build) for n, build in INPLACE.items()])
    return m, runtime.compile(m, cache=False, passes="")


@pytest.mark.parametrize("name", list(INPLACE))
def test_in_place_updates_read_through_takes_correctly(inplace_module, name: str):
    module, native = inplace_module
    rng = np.random.default_rng(5)
    w = rng.standard_normal((6, 40)).astype(np.float32)
    v = rng.standard_normal((6, 40)).astype(np.float32)
    i = np.array([5, 0, 0, -1, 2, 3], np.int32)
    want = interpret(module.get(name), [w, v, i])[0]
    out = native[name](w, v, i)
    assert out is w                                      # written into the caller's array
    np.testing.assert_allclose(w, want, rtol=1e-6, atol=1e-6)


def test_safe_in_place_writes_stay_in_place():
    """``scatter_base`` and ``update_slice`` read w only where they write: no copy kernel."""
    for name in ("scatter_base", "update_slice"):
        prog = lower_function(_inplace_step(name, INPLACE[name]))
        assert len(prog.temps) == len([b for b in prog.temps if b.shape == ()]), print_program(prog)
    prog = lower_function(_inplace_step("flip_cols", INPLACE["flip_cols"]))
    assert any(b.shape == (6, 40) for b in prog.temps), print_program(prog)


def test_memory_planning_never_writes_over_an_operand_read_through_a_take():
    """``t = exp(x)`` is a temporary read for the last time by ``t + flip(t)``, element for element
    and through a take: writing that result over ``t`` would read elements already overwritten."""
    f, b = new_function("f", [("x", T(F32, 64))])
    t = b.exp(f.params[0])
    s = b.sum(t)
    y = b.add(t, b.flip(t))
    f.outputs = [s, b.add(y, b.exp(y))]
    prog = lower_function(f)
    assert prog.memory is not None and not prog.memory.inplace, print_program(prog)
    assert any(isinstance(k, Elementwise) and takes(k.expr) for k in prog.kernels)
    x = np.linspace(-1, 1, 64, dtype=np.float32)
    got = runtime.compile(Module([f]), cache=False, passes="").f(x)
    for g, w in zip(got, interpret(f, [x])):
        np.testing.assert_allclose(g, w, rtol=1e-6)


@pytest.mark.parametrize("name", ["matmul_epilogue", "row_softmax"])
def test_fusions_keyed_on_loads_leave_takes_alone(name: str):
    """A matmul's result read element for element and reversed stays in memory (not an epilogue:
    reads() lists it twice, and epilogues never hold takes); a softmax read reversed must not
    be inlined into its reader (that left a take reading memory no kernel wrote)."""
    f, b = new_function("f", [("x", T(F32, "N", 10)), ("w", T(F32, 10, 10))])
    x, w = f.params
    y = b.matmul(x, w) if name == "matmul_epilogue" else b.softmax(x, axis=-1)
    f.outputs = [b.add(y, b.flip(y, axis=(1,)))]
    native = runtime.compile(Module([f]), cache=False, passes="").f
    rng = np.random.default_rng(2)
    xs, ws = rng.standard_normal((5, 10)).astype(np.float32), rng.standard_normal((10, 10)).astype(np.float32)
    np.testing.assert_allclose(native(xs, ws), interpret(f, [xs, ws])[0], rtol=1e-5, atol=1e-6)


def test_slices_fuse_into_their_consumer_without_a_copy():
    f, b = new_function("f", [("x", T(F32, "N", 64))])
    x = f.params[0]
    f.outputs = [b.add(b.slice(x, start=(None, 1)), b.slice(x, stop=(None, -1)))]
    prog = lower_function(f)
    assert len(prog.kernels) == 1 and not prog.temps, print_program(prog)
    (k,) = prog.kernels
    assert len(takes(k.expr)) == 2 and all(isinstance(t, Take) for t in takes(k.expr))


def test_scatter_kernel_is_one_kernel_reading_its_operands():
    f, b = new_function("f", [("e", T(F32, 10, 4)), ("i", T(I32, 7)), ("g", T(F32, 7, 4))])
    f.outputs = [b.scatter_add(*f.params, axis=0)]
    prog = lower_function(f)
    scatters = [k for k in prog.kernels if isinstance(k, Scatter)]
    assert len(scatters) == 1 and {p.name for p in scatters[0].reads()} >= {"%e", "%i", "%g"}


# ---------------------------------------------------------------------------
# Narrow vectors: the vector paths of takes (contiguous, reversed, per-lane) at other widths


@pytest.mark.parametrize("lanes", [1, 4])
def test_other_vector_widths_agree(lanes: int):
    names = ["slice0", "slice_update3", "concat1", "flip2", "pad0", "gather2", "sym_slices", "sym_concat"]
    funcs = [BY_NAME[n].function() for n in names]
    native = runtime.compile(Module(funcs), cache=False, passes="",
                             options=CodegenOptions(vector_lanes=lanes))
    for name, func in zip(names, funcs):
        args = inputs(BY_NAME[name], 7, seed=11)
        for g, w in zip(as_list(native[name](*args)), interpret(func, args)):
            assert_same(g, w, f"{name} at {lanes} lanes")


# ---------------------------------------------------------------------------
# Shape rules, the .dl surface, the IR text form


@pytest.mark.parametrize("build, message", [
    (lambda b, x: b.slice(x, start=("N*N",)), "a product of two symbolic dims is not a dim"),
    (lambda b, x: b.slice(x, start=("N+",)), "expected a dim in dim 'N\\+'"),
    (lambda b, x: b.slice(x, step=("N",)), "a slice step must be a compile-time integer"),
    (lambda b, x: b.slice(x, step=(None, 0)), "slice step cannot be zero"),
    (lambda b, x: b.concat(x, x, axis=0), "concatenating along symbolic dim"),
    (lambda b, x: b.pad(x, pad_width=np.array([1, 1])), "padding symbolic dim N"),
    (lambda b, x: b.pad(b.slice(x, stop=(None, 0)), pad_width=np.array([[0, 0], [1, 1]]), mode="edge"),
     "cannot pad the empty axis 1"),
    (lambda b, x: b.squeeze(x), "squeeze without 'axis'"),
    (lambda b, x: b.squeeze(x, axis=(1,)), "cannot squeeze axis 1"),
    (lambda b, x: b.tile(x, reps=(2, 1)), r"tiling symbolic dim N \(axis 0\) 2 times"),
    (lambda b, x: b.split(x, sections=2, axis=1), "does not split into 2 equal parts"),
    (lambda b, x: b.gather(x, x, axis=1), "indices must be i32 or i64"),
    (lambda b, x: b.take_along_axis(x, b.cast(b.slice(x, stop=(None, 1)), dtype=I32), axis=2),
     "axis 2 is out of range for rank 2"),
    (lambda b, x: b.scatter_add(x, b.constant(np.array([0]), I64), x, axis=1),
     r"updates f32\[N, 5\] must have shape \[N, 1\]"),
])
def test_shape_errors(build, message: str):
    f, b = new_function("f", [("x", T(F32, "N", 5))])
    with pytest.raises(DlTypeError, match=message):
        build(b, f.params[0])


def test_dl_calls_take_lists_and_several_results():
    src = """
fn f(x: f32[N, 3], y: f32[N, 4], i: i32[2]) -> (f32[N, 7], f32[N, 2], f32[N, 1], f32[N, 6], f32[2, N, 3]) {
  let a, b = split(y, 2, axis=1)
  return concat([x, y], 1), a, slice(b, start=[none, -1]),
         pad(gather(x, i, axis=1), [[0, 0], [1, 3]], mode="edge"), stack([x, x])
}
"""
    module = compile_source(src, "lists.dl")
    func = module.get("f")
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((3, 3)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)
    i = np.array([2, -3], np.int32)
    want = [np.concatenate([x, y], 1), y[:, :2], y[:, 3:], np.pad(np.take(x, i, axis=1), [[0, 0], [1, 3]], "edge"),
            np.stack([x, x])]
    for got, expected in zip(interpret(func, [x, y, i]), want):
        np.testing.assert_array_equal(got, expected)
    for got, expected in zip(runtime.compile(src, cache=False).f(x, y, i), want):
        np.testing.assert_array_equal(got, expected)


def test_ir_text_round_trips():
    funcs = [BY_NAME[n].function() for n in ("slice0", "split1", "pad3", "sym_pad_update", "concat2", "repeat0")]
    text = print_module(Module(funcs))
    assert "unit" in text and "dense<" in text
    assert print_module(parse_module(text)) == text


def test_constant_folding_leaves_an_out_of_range_gather_to_run_time():
    """A gather of constants folds at compile time -- unless an index is out of range: then the
    call raises, as the interpreter does, instead of the compiler."""
    def module(last: int) -> Module:
        f, b = new_function("f", [("x", T(F32, 2))])
        table = b.constant(np.array([1.0, 2.0, 3.0], np.float32), F32)
        f.outputs = [b.add(f.params[0], b.gather(table, b.constant(np.array([0, last]), I64)))]
        return Module([f])

    native = runtime.compile(module(3), cache=False)
    with pytest.raises(DlIndexError, match=r"gather: an index is out of range \[-3, 3\) for axis 0"):
        native.f(np.zeros(2, np.float32))
    good = runtime.compile(module(-1), cache=False)
    assert not any(op.name == "gather" for op in good.module.get("f").ops)      # folded
    np.testing.assert_array_equal(good.f(np.ones(2, np.float32)), [2.0, 4.0])


# ---------------------------------------------------------------------------
# Concatenation along the last axis: vector loads masked to each part


LAST_AXIS_PARTS = [(7, 0, 1), (3, 17, 33, 2), (16, 16), (1,)]


@pytest.mark.parametrize("lanes", [1, 4, 8, 16])
@pytest.mark.parametrize("dtype", [F32, F64, I32, DType.bool, DType.f16], ids=lambda d: d.dsl_name)
def test_concat_along_the_last_axis_at_every_width(lanes: int, dtype: DType):
    funcs, want_of = [], {}
    for k, sizes in enumerate(LAST_AXIS_PARTS):
        f, b = new_function(f"c{k}", [(f"x{i}", T(dtype, "N", n)) for i, n in enumerate(sizes)])
        f.outputs = [b.concat(*f.params, axis=-1)]
        funcs.append(f)
        want_of[f.name] = sizes
    native = runtime.compile(Module(funcs), cache=False, passes="", options=CodegenOptions(vector_lanes=lanes))
    rng = np.random.default_rng(lanes)
    for f in funcs:
        for n in (0, 1, 5):
            args = [draw(T(dtype, n, m), n, rng, None) for m in want_of[f.name]]
            assert_same(native[f.name](*args), np.concatenate(args, axis=-1), f"{f.name} n={n} lanes={lanes}")


def test_concat_along_the_last_axis_is_vectorised_with_masked_loads():
    f, b = new_function("f", [("a", T(F32, "N", 37)), ("c", T(F32, "N", 100))])
    f.outputs = [b.concat(b.mul(f.params[0], f.params[0]), b.exp(f.params[1]), axis=1)]
    text = stage_text(Module([f]), "llvm", CodegenOptions(vector_lanes=8))
    assert "llvm.masked.load.v8f32" in text
