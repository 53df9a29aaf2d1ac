"""Row softmax fusion: softmax / log_softmax / cross-entropy from logits as one online pass.

``loops.fuse_row_softmax`` turns the expanded ``max -> sub -> exp -> sum``
of a last-axis softmax into one online log-sum-exp reduction and inlines the
consumers (normalized output, loss, gradient) into a second pass.  These
tests check the kernels that come out and compare with the interpreter.
"""

from __future__ import annotations

import numpy as np
import pytest

import runtime
from compiler.codegen import threads
from compiler.codegen.driver import lower_module
from compiler.codegen.loops import Elementwise, Reduce, print_program
from compiler.ir.builder import new_function
from compiler.ir.core import Module
from compiler.ir.interpreter import interpret
from compiler.ir.types import DType, TensorType
from compiler.passes.autodiff import grad

F32 = DType.f32
CLASSES = (1, 10, 17, 33)
BATCHES = (1, 7, 128)


def T(*shape, dtype: DType = F32) -> TensorType:
    return TensorType(dtype, tuple(shape))


def softmax_module(c: int) -> Module:
    """softmax, log_softmax, sparse CE from logits and its gradient over ``[N, c]`` logits."""
    fns = []
    f, b = new_function("softmax", [("x", T("N", c))])
    f.outputs = [b.softmax(f.params[0], axis=-1)]
    fns.append(f)
    f, b = new_function("log_softmax", [("x", T("N", c))])
    f.outputs = [b.log_softmax(f.params[0], axis=-1)]
    fns.append(f)
    f, b = new_function("loss", [("x", T("N", c)), ("y", T("N", dtype=DType.i32))])
    f.outputs = [b.sparse_categorical_crossentropy(f.params[0], f.params[1], from_logits=True)]
    fns.append(f)
    module = Module(fns)
    grad(module, "loss", ["x"], new_name="loss_grad", with_value=True)
    return module


def logits(rng: np.random.Generator, n: int, c: int) -> np.ndarray:
    """Random logits with extreme rows and entries (+-80) mixed in."""
    x = (rng.standard_normal((n, c)) * 4).astype(np.float32)
    x[::3, 0] = 80.0
    x[1::4, -1] = -80.0
    x[2::5] = rng.choice([-80.0, 80.0], size=(len(x[2::5]), c))
    return x


def kernels(prog, cls) -> list:
    return [k for k in prog.kernels if isinstance(k, cls)]


def test_softmax_is_two_passes():
    (prog,) = lower_module(Module([softmax_module(10).get("softmax")]))
    text = print_program(prog)
    assert len(prog.kernels) == 2, text
    lse, out = prog.kernels
    assert isinstance(lse, Reduce) and lse.kind == "softmax_stats" and lse.axes == (1,)
    assert isinstance(out, Elementwise) and "exp(sub(%x[i0, i1], " in text


def test_loss_and_gradient_read_the_logits_twice():
    module = softmax_module(10)
    progs = {p.name: p for p in lower_module(module)}
    for name in ("loss", "loss_grad"):
        prog = progs[name]
        text = print_program(prog)
        assert "reduce.max" not in text and text.count("reduce.softmax_stats") == 1, text
        row_kernels = [k for k in prog.kernels if tuple(k.shape) == ("N", 10)]
        # pass 1: the row max and sum (softmax_stats); pass 2: the picked log-probability; (grad) the gradient
        assert len(row_kernels) == (2 if name == "loss" else 3), text
    grad_text = print_program(progs["loss_grad"])
    assert "exp(sub(%x[i0, i1]" in grad_text and "reduce.sum" in grad_text


@pytest.fixture(scope="module", params=CLASSES)
def compiled(request):
    c = request.param
    return c, runtime.compile(softmax_module(c), cache=False, passes="")


def test_matches_the_interpreter(compiled):
    c, mod = compiled
    rng = np.random.default_rng(c)
    for n in BATCHES:
        x = logits(rng, n, c)
        y = rng.integers(0, c, size=n).astype(np.int32)
        cases = {"softmax": [x], "log_softmax": [x], "loss": [x, y], "loss_grad": [x, y]}
        for name, args in cases.items():
            want = interpret(mod.module.get(name), args)
            got = mod[name](*args)
            got = got if isinstance(got, tuple) else (got,)
            assert len(got) == len(want)
            for g, w in zip(got, want):
                assert np.isfinite(g).all(), f"{name} N={n} C={c}"
                np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6, err_msg=f"{name} N={n} C={c}")


@pytest.mark.parametrize("c", [17, 40])      # one row per lane / W elements of a row per step
def test_infinite_logits_follow_the_interpreter(c):
    mod = runtime.compile(softmax_module(c), cache=False, passes="")
    x = np.zeros((5, c), np.float32)
    x[0, 3] = -np.inf                       # a masked class
    x[1, :] = -np.inf                       # nothing left: nan, as numpy
    x[2, 5] = np.inf
    x[3, :c - 1] = -np.inf                  # the only finite class is in the tail lanes
    x[4] = np.linspace(-30, 30, c)
    for name in ("softmax", "log_softmax"):
        want = interpret(mod.module.get(name), [x])[0]
        got = mod[name](x)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=name)
        ok = ~np.isnan(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=2e-5, atol=2e-6, err_msg=name)


def test_other_uses_of_the_max_keep_the_general_path():
    f, b = new_function("f", [("x", T("N", 10))])
    x = f.params[0]
    m = b.emit("max", x, axes=(1,), keepdims=True)
    e = b.exp(b.sub(x, m))
    f.outputs = [b.div(e, b.emit("sum", e, axes=(1,), keepdims=True)), b.exp(b.sub(x, m))]
    (prog,) = lower_module(Module([f]))
    text = print_program(prog)
    assert "reduce.max" in text and "softmax_stats" not in text     # exp(x - max) alone is an output
    mod = runtime.compile(Module([f]), cache=False, passes="")
    xv = logits(np.random.default_rng(3), 7, 10)
    for g, w in zip(mod["f"](xv), interpret(f, [xv])):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)


def test_softmax_over_a_leading_axis_is_not_rewritten():
    f, b = new_function("f", [("x", T("N", 10))])
    f.outputs = [b.softmax(f.params[0], axis=0)]
    (prog,) = lower_module(Module([f]))
    assert "softmax_stats" not in print_program(prog)
    mod = runtime.compile(Module([f]), cache=False, passes="")
    xv = logits(np.random.default_rng(4), 7, 10)
    np.testing.assert_allclose(mod["f"](xv), interpret(f, [xv])[0], rtol=2e-5, atol=2e-6)


def test_training_gradient_is_bit_identical_across_thread_counts():
    f, b = new_function("loss", [("x", T("N", 64)), ("w", T(64, 33)), ("y", T("N", dtype=DType.i32))])
    x, w, y = f.params
    f.outputs = [b.sparse_categorical_crossentropy(b.matmul(x, w), y, from_logits=True)]
    module = Module([f])
    grad(module, "loss", ["w"], new_name="step", with_value=True)
    mod = runtime.compile(module, cache=False, passes="")
    rng = np.random.default_rng(5)
    xv = rng.standard_normal((128, 64)).astype(np.float32)
    wv = (rng.standard_normal((64, 33)) * 0.5).astype(np.float32)
    yv = rng.integers(0, 33, size=128).astype(np.int32)
    results = []
    for n in (1, 3):
        threads.set_num_threads(mod._library, n)
        results.append(mod["step"](xv, wv, yv))
    for a, c in zip(*results):
        np.testing.assert_array_equal(a, c)
    want = interpret(module.get("step"), [xv, wv, yv])
    for g, w_ in zip(results[0], want):
        np.testing.assert_allclose(g, w_, rtol=2e-5, atol=2e-6)


def test_f64_and_rank_3_rows_match_the_interpreter():
    fns = []
    for c in (10, 40):                      # one row per lane / W elements of a row per step
        f, b = new_function(f"f64_{c}", [("x", T("N", c, dtype=DType.f64))])
        f.outputs = [b.softmax(f.params[0], axis=-1), b.log_softmax(f.params[0], axis=-1)]
        fns.append(f)
    f, b = new_function("rank3", [("x", T("N", 3, 12))])
    f.outputs = [b.softmax(f.params[0], axis=-1)]
    fns.append(f)
    module = Module(fns)
    assert all("reduce.softmax_stats" in print_program(p) for p in lower_module(module))
    mod = runtime.compile(module, cache=False, passes="")
    rng = np.random.default_rng(6)
    for f in fns:
        t = f.params[0].type
        x = (rng.standard_normal((7, *t.shape[1:])) * 30).astype(t.dtype.np)
        got = mod[f.name](x)
        got = got if isinstance(got, tuple) else (got,)
        tol = 1e-12 if t.dtype is DType.f64 else 2e-5
        for g, w in zip(got, interpret(f, [x])):
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol, err_msg=f.name)
