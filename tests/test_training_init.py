"""Initializers: Keras's fans, limits and truncation; seeded bit-identical draws; errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_training_models import linear_module

from compiler.diagnostics import DlRuntimeError
from compiler.initializers import TRUNCATED_NORMAL_STD, InitializerError, compute_fans, initialize
from runtime.model import Model


def draw(spec, shape, seed=0, dtype=np.float64):
    return initialize(spec, shape, dtype, np.random.default_rng(seed))


@pytest.mark.parametrize("shape, fans", [
    ((), (1, 1)), ((7,), (7, 7)), ((784, 512), (784, 512)),
    ((3, 3, 16, 32), (3 * 3 * 16, 3 * 3 * 32)), ((5, 4, 6), (5 * 4, 5 * 6)),
])
def test_fans_as_keras_computes_them(shape, fans) -> None:
    assert compute_fans(shape) == fans


def test_uniform_variance_scaling_limits() -> None:
    glorot = draw("glorot_uniform", (300, 200))
    limit = math.sqrt(6 / 500)
    assert np.abs(glorot).max() <= limit and np.abs(glorot).max() > 0.99 * limit
    assert glorot.std() == pytest.approx(limit / math.sqrt(3), rel=0.02)
    he = draw("he_uniform", (300, 200))
    assert np.abs(he).max() <= math.sqrt(6 / 300) and he.std() == pytest.approx(math.sqrt(2 / 300), rel=0.02)


@pytest.mark.parametrize("name, target_std", [
    ("he_normal", math.sqrt(2 / 400)),
    ("glorot_normal", math.sqrt(2 / (400 + 250))),
])
def test_truncated_normals_keep_the_intended_variance(name: str, target_std: float) -> None:
    w = draw(name, (400, 250))
    raw_std = target_std / TRUNCATED_NORMAL_STD
    assert np.abs(w).max() <= 2 * raw_std                 # truncated at two (raw) standard deviations
    assert np.abs(w).max() > 1.95 * raw_std
    assert w.std() == pytest.approx(target_std, rel=0.02)  # the 0.8796 correction restores the std
    assert abs(w.mean()) < 0.1 * target_std


def _whole_truncated_normal(rng: np.random.Generator, n: int, std: float) -> np.ndarray:
    """The truncated normal drawn as one array, rescanned whole each round (the definition)."""
    out = rng.standard_normal(n)
    while (far := np.flatnonzero(np.abs(out) > 2.0)).size:
        out[far] = rng.standard_normal(far.size)
    return 0.0 + std * out


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
def test_draws_in_pieces_equal_one_whole_draw(dtype) -> None:
    """Initializers draw big arrays piece by piece (no float64 copy of the whole): the
    values, their rounding and the generator's state after are those of one draw."""
    shape = (3, 70_001)                           # several pieces, the last one partial
    n = math.prod(shape)
    got, want = np.random.default_rng(5), np.random.default_rng(5)
    u = initialize({"name": "uniform", "low": -0.3, "high": 0.7}, shape, dtype, got)
    assert u.dtype == dtype and u.flags.c_contiguous
    assert np.array_equal(u, want.uniform(-0.3, 0.7, shape).astype(dtype))
    g = initialize("glorot_uniform", shape, dtype, got)
    limit = math.sqrt(6 / (3 + 70_001))
    assert np.array_equal(g, want.uniform(-limit, limit, shape).astype(dtype))
    z = initialize({"name": "normal", "mean": 1.0, "std": 2.0}, shape, dtype, got)
    assert np.array_equal(z, want.normal(1.0, 2.0, shape).astype(dtype))
    t = initialize("he_normal", shape, dtype, got)
    std = math.sqrt(2 / 3) / TRUNCATED_NORMAL_STD
    assert np.array_equal(t, _whole_truncated_normal(want, n, std).reshape(shape).astype(dtype))
    assert got.random() == want.random()


def test_plain_distributions_and_constants() -> None:
    n = draw({"name": "normal", "mean": 1.0, "std": 0.5}, (200, 200))
    assert n.mean() == pytest.approx(1.0, abs=0.01) and n.std() == pytest.approx(0.5, rel=0.02)
    assert np.abs(n - 1).max() > 2 * 0.5                   # not truncated
    u = draw({"name": "uniform", "low": 2.0, "high": 3.0}, (1000,))
    assert u.min() >= 2.0 and u.max() < 3.0
    assert draw("zeros", (3,)).tolist() == [0, 0, 0] and draw("ones", (2,)).tolist() == [1, 1]
    assert draw({"name": "constant", "value": 0.25}, (2,)).tolist() == [0.25, 0.25]
    default = draw("normal", (100, 100))
    assert default.std() == pytest.approx(0.05, rel=0.03)   # Keras's RandomNormal default


def test_keras_argument_spellings() -> None:
    a = draw({"name": "random_normal", "stddev": 0.3}, (50,), seed=1)
    b = draw({"name": "normal", "std": 0.3}, (50,), seed=1)
    assert np.array_equal(a, b)
    c = draw({"name": "uniform", "minval": -1, "maxval": 1}, (5,), seed=2)
    assert np.array_equal(c, draw({"name": "uniform", "low": -1, "high": 1}, (5,), seed=2))


def test_same_seed_bit_identical_and_dtype_is_one_rounding() -> None:
    for name in ("glorot_uniform", "glorot_normal", "he_normal", "he_uniform", "normal", "uniform"):
        a = draw(name, (30, 20), seed=11, dtype=np.float32)
        b = draw(name, (30, 20), seed=11, dtype=np.float32)
        assert a.dtype == np.float32 and a.flags.c_contiguous and np.array_equal(a, b)
        assert np.array_equal(a, draw(name, (30, 20), seed=11).astype(np.float32))
        assert not np.array_equal(a, draw(name, (30, 20), seed=12, dtype=np.float32))
    scalar = draw("normal", (), dtype=np.float32)
    assert scalar.shape == () and scalar.dtype == np.float32


@pytest.mark.parametrize("spec, message", [
    ("lecun", "unknown initializer 'lecun'"),
    ({"name": "normal", "sigma": 1}, "initializer 'normal' has no argument 'sigma' \\(allowed: mean, std\\)"),
    ({"name": "glorot_uniform", "gain": 2}, "has no argument 'gain' \\(allowed: none\\)"),
    ({"name": "normal", "std": -1}, "std must be >= 0"),
    ({"name": "uniform", "low": 1, "high": 0}, "high \\(0.0\\) must be >= low \\(1.0\\)"),
    ({"name": "normal", "mean": "x"}, "argument 'mean' must be a number"),
])
def test_bad_initializers(spec, message: str) -> None:
    with pytest.raises(InitializerError, match=message):
        draw(spec, (2, 2))


def test_model_reports_the_parameter_with_a_bad_initializer() -> None:
    module = linear_module({"name": "sgd"})
    module.attrs["model"]["params"][0]["init"] = {"name": "orthogonal"}
    with pytest.raises(DlRuntimeError, match="parameter 'dense_1.kernel': unknown initializer 'orthogonal'"):
        Model(module, backend="interp")
