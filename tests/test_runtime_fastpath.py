"""The pre-validated call path (BoundCall, CompiledFunction.call_unchecked): same results
as checked calls, re-checks whatever changed, never passes a bad argument to native code."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import runtime
from runtime.compiled import ArgumentTypeError, ArgumentValueError

SOURCE = """
fn step(w: f32[4, 3], x: f32[N, 4], lr: f32[]) -> (f32[N, 3], f32[4, 3]) {
    let y = x @ w
    return y, w - lr * w
}
"""


@pytest.fixture(scope="module")
def step():
    return runtime.compile(SOURCE, cache=False).step


def test_call_unchecked_matches_checked_calls_and_reuses_outputs(step):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    lr = np.array(0.5, np.float32)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    want_y, want_w = step(w, x, lr)
    y1, w1 = step.call_unchecked(w, x, lr)
    np.testing.assert_array_equal(y1, want_y)
    np.testing.assert_array_equal(w1, want_w)
    kept = y1.copy()
    x2 = x * 2
    y2, _ = step.call_unchecked(w, x2, lr)       # a new x: checked, pointer rewritten
    np.testing.assert_array_equal(y2, x2 @ w)
    assert y2 is y1 and not np.array_equal(kept, y2)   # outputs are reused ...
    y3, _ = step.call_unchecked(w, x2[:2], lr)   # ... until the batch size changes
    assert y3.shape == (2, 3) and y3 is not y1
    np.testing.assert_array_equal(y3, x2[:2] @ w)


def test_same_array_mutated_in_place_is_read_again(step):
    w = np.ones((4, 3), np.float32)
    x = np.ones((2, 4), np.float32)
    lr = np.array(0.0, np.float32)
    step.call_unchecked(w, x, lr)
    x[:] = 3.0
    w[:] = 2.0
    y, _ = step.call_unchecked(w, x, lr)
    np.testing.assert_array_equal(y, np.full((2, 3), 24.0, np.float32))


def test_changed_arguments_are_checked_as_in_a_plain_call(step):
    w = np.ones((4, 3), np.float32)
    x = np.ones((2, 4), np.float32)
    lr = np.array(0.1, np.float32)
    step.call_unchecked(w, x, lr)
    with pytest.raises(ArgumentValueError, match="argument 'x'.*dim 1 is 5, not 4"):
        step.call_unchecked(w, np.ones((2, 5), np.float32), lr)
    with pytest.raises(ArgumentTypeError, match="argument 'x'.*float64"):
        step.call_unchecked(w, np.ones((2, 4)), lr)
    with pytest.raises(ArgumentTypeError, match="takes 3 argument"):
        step.call_unchecked(w, x)
    w.shape = (3, 4)                              # the same object, reshaped: checked again
    with pytest.raises(ArgumentValueError, match="argument 'w'"):
        step.call_unchecked(w, x, lr)
    w.shape = (4, 3)
    y, _ = step.call_unchecked(w, x, lr)           # and valid again afterwards
    np.testing.assert_array_equal(y, np.full((2, 3), 4.0, np.float32))


def test_converted_arguments_are_never_trusted_twice(step):
    w = np.ones((4, 3), np.float32)
    x16 = np.ones((2, 4), np.float16)             # safely cast to f32: a copy each call
    lr = np.array(0.0, np.float32)
    step.call_unchecked(w, x16, lr)
    x16[:] = 2.0
    y, _ = step.call_unchecked(w, x16, lr)
    np.testing.assert_array_equal(y, np.full((2, 3), 8.0, np.float32))
    xt = np.ones((4, 2), np.float32).T            # non-contiguous: copied each call
    step.call_unchecked(w, xt, lr)
    xt.base[:] = 5.0
    y, _ = step.call_unchecked(w, xt, lr)
    np.testing.assert_array_equal(y, np.full((2, 3), 20.0, np.float32))


def test_bound_call_keeps_fresh_outputs_by_default(step):
    w = np.ones((4, 3), np.float32)
    x = np.ones((2, 4), np.float32)
    lr = np.array(0.0, np.float32)
    bound = step.bind(w, x, lr)
    y1, _ = bound(w, x, lr)
    y2, _ = bound(w, x, lr)
    assert y1 is not y2 and np.array_equal(y1, y2)


def test_in_place_overlap_is_caught_on_the_fast_path():
    from compiler.analysis.stats import with_train_step
    from runtime.commands import load_module

    module, _ = with_train_step(load_module("examples/linear_regression.dl"))
    fn = runtime.compile(module, cache=False).train_step
    names = [n for n, _ in fn.info.params]
    params = {n: np.zeros([d if isinstance(d, int) else 4 for d in t.shape], t.dtype.np)
              for n, t in fn.info.params}
    args = [params[n] for n in names]
    fn.call_unchecked(*args)
    inplace_param = fn.info.inplace[0][1]
    other = next(i for i in range(len(args)) if i != inplace_param
                 and args[i].dtype == args[inplace_param].dtype and args[i].ndim > 0)
    # an argument that is a view of an in-place parameter's memory
    shared = list(args)
    big = np.zeros(max(a.size for a in args) * 2, np.float32)
    shared[inplace_param] = big[:args[inplace_param].size].reshape(args[inplace_param].shape)
    shared[other] = big[:args[other].size].reshape(args[other].shape)
    with pytest.raises(ArgumentValueError, match="shares memory"):
        fn.call_unchecked(*shared)


def test_each_thread_has_its_own_bound_call(step):
    w = np.ones((4, 3), np.float32)
    lr = np.array(0.0, np.float32)
    results = {}

    def run(k: int) -> None:
        x = np.full((k, 4), float(k), np.float32)
        for _ in range(50):
            y, _ = step.call_unchecked(w, x, lr)
            assert y.shape == (k, 3) and (y == 4.0 * k).all()
        results[k] = True

    threads = [threading.Thread(target=run, args=(k,)) for k in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {1: True, 2: True, 3: True}


def test_warm_compile_skips_frontend_and_passes_but_rebuilds_module_on_demand(tmp_path):
    from runtime.cache import ObjectCache

    store = ObjectCache(tmp_path)
    first = runtime.compile(SOURCE, cache=store)
    assert first._module is not None and len(list(tmp_path.glob("*.dlcsrc"))) == 1
    warm = runtime.compile(SOURCE, cache=store)
    assert warm._module is None                       # nothing parsed or lowered ...
    x = np.ones((2, 4), np.float32)
    w = np.ones((4, 3), np.float32)
    np.testing.assert_array_equal(warm.step(w, x, np.float32(0))[0], first.step(w, x, np.float32(0))[0])
    assert [f.name for f in warm.module.functions] == ["step"]      # ... until asked for
    runtime.compile(SOURCE, cache=store, passes="")    # another pipeline: another input key
    assert len(list(tmp_path.glob("*.dlcsrc"))) == 2
    assert store.clear() >= 1 and not list(tmp_path.glob("*.dlcsrc"))
