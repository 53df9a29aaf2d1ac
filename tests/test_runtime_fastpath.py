"""The pre-validated call path (BoundCall, CompiledFunction.call_unchecked): same results
as checked calls, re-checks whatever changed, never passes a bad argument to native code."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import runtime
from compiler.diagnostics import DlRuntimeError
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


def test_checked_calls_return_fresh_aligned_outputs_per_shape(step):
    """The per-shape call plan: outputs are new arrays every call, 64-byte aligned, with the
    right shape for each N, and never alias an earlier call's result."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    lr = np.float32(0.25)                                   # a numpy scalar of the exact dtype
    results = []
    for n in (1, 7, 1, 33, 7):
        x = rng.standard_normal((n, 4)).astype(np.float32)
        y, w2 = step(w, x, lr)
        assert y.shape == (n, 3) and w2.shape == (4, 3)
        assert y.ctypes.data % 64 == 0 and w2.ctypes.data % 64 == 0
        np.testing.assert_allclose(y, x @ w, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(w2, w - np.float32(0.25) * w)
        results.append((x, y.copy(), y))
    for _x, kept, y in results:                              # later calls did not write into them
        np.testing.assert_array_equal(y, kept)
    assert len({id(y) for _, _, y in results}) == len(results)


def test_numpy_scalar_fast_path_keeps_the_dtype_rules(step):
    w = np.ones((4, 3), np.float32)
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(step(w, x, np.float32(0.5))[1], np.full((4, 3), 0.5, np.float32))
    np.testing.assert_array_equal(step(w, x, 0.5)[1], np.full((4, 3), 0.5, np.float32))
    with pytest.raises(ArgumentTypeError, match="'lr'"):
        step(w, x, np.float64(0.5))                         # lossy: still refused
    with pytest.raises(ArgumentValueError, match="'lr'"):
        step(w, x, np.ones(1, np.float32))                  # rank 1 for a rank-0 parameter


def test_data_pointer_reader_agrees_with_numpy():
    from runtime.compiled import _data, _data_slowly

    base = np.arange(100, dtype=np.float64)
    for a in (base, base[7:], base[::3], base.reshape(10, 10)[3:, 2:], np.float32(2.0), np.empty(0)):
        a = np.asarray(a)
        assert _data(a) == _data_slowly(a)


def test_overlap_between_plain_arguments_is_allowed_but_not_with_in_place_ones():
    from test_runtime_compiled import small_module

    step = runtime.compile(small_module(), cache=False, passes="").step   # w is updated in place
    grad = np.arange(1, 9, dtype=np.float32).reshape(2, 4)
    lr = grad.reshape(-1)[2:3].reshape(())               # shares memory with grad only: fine
    w = np.ones((2, 4), np.float32)
    new_w, _ = step(w, grad, lr)
    assert new_w is w
    np.testing.assert_allclose(w, 1 - 3 * np.arange(1, 9, dtype=np.float32).reshape(2, 4))
    big = np.zeros(12, np.float32)
    with pytest.raises(ArgumentValueError, match="'w' is updated in place and shares memory with argument 'grad'"):
        step(big[:8].reshape(2, 4), big[4:].reshape(2, 4), np.float32(0.1))   # partial overlap


def test_native_predict_fast_path_matches_checked_calls():
    """Model.predict on the native backend: the bound call path, fresh outputs, same numbers."""
    from test_training_models import blobs, classifier_module

    from runtime.model import Model

    model = Model(classifier_module({"name": "sgd", "learning_rate": 0.1}), seed=2, backend="native")
    x, _ = blobs(12)
    x = np.ascontiguousarray(x, dtype=np.float32)
    params = model._tensors[:len(model.param_names)]
    want = model.backend.compiled["predict"](*params, x[:3])
    first = model.predict(x[:3])
    np.testing.assert_array_equal(first, want)
    kept = first.copy()
    np.testing.assert_array_equal(model.predict(x[3:9]), model.backend.compiled["predict"](*params, x[3:9]))
    np.testing.assert_array_equal(first, kept)
    with pytest.raises(DlRuntimeError, match="NaN"):
        model.predict(np.full_like(x[:2], np.nan))
