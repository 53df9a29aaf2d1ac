"""A bad argument to the Python API is a DlError that names it, never a bare Python error.

Each error is an ``ArgumentTypeError`` (also a ``TypeError``) or an
``ArgumentValueError`` (also a ``ValueError``), both ``DlRuntimeError``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import runtime
from compiler.codegen.target import CodegenOptions
from compiler.diagnostics import (
    ArgumentTypeError,
    ArgumentValueError,
    DlError,
    DlRuntimeError,
)
from frontend_dsl.api import compile_file, compile_source
from runtime.cache import ObjectCache

ROOT = Path(__file__).resolve().parents[1]
XOR = ROOT / "examples" / "xor.dl"
SOURCE = "fn f(x: f32[N]) -> f32[N] {\n  return x * 2.0\n}\n"


@pytest.fixture(scope="module")
def model():
    return runtime.load_model(XOR, backend="interp")


@pytest.fixture(scope="module")
def compiled():
    return runtime.compile(SOURCE)


def _param(model) -> str:
    return model.param_names[0]          # hidden.kernel, f32[2, 2]


CASES = {
    # runtime.compile
    "compile passes=123": (lambda m, c: runtime.compile(SOURCE, passes=123), ArgumentTypeError, "'passes'"),
    "compile passes=[1]": (lambda m, c: runtime.compile(SOURCE, passes=[1]), ArgumentTypeError, "'passes'"),
    "compile cache=123": (lambda m, c: runtime.compile(SOURCE, cache=123), ArgumentTypeError, "'cache'"),
    "compile options='O3'": (lambda m, c: runtime.compile(SOURCE, options="O3"), ArgumentTypeError, "'options'"),
    "compile opt_level='x'": (lambda m, c: runtime.compile(SOURCE, options=CodegenOptions(opt_level="x")),
                              ArgumentTypeError, "'opt_level'"),
    "compile opt_level=-1": (lambda m, c: runtime.compile(SOURCE, options=CodegenOptions(opt_level=-1)),
                             ArgumentValueError, "'opt_level'"),
    "compile vector_lanes=0": (lambda m, c: runtime.compile(SOURCE, options=CodegenOptions(vector_lanes=0)),
                               ArgumentValueError, "'vector_lanes'"),
    "compile fuse='yes'": (lambda m, c: runtime.compile(SOURCE, options=CodegenOptions(fuse="yes")),
                           ArgumentTypeError, "'fuse'"),
    "compile source=123": (lambda m, c: runtime.compile(123), ArgumentTypeError, "'source'"),
    "compile source=bytes": (lambda m, c: runtime.compile(SOURCE.encode()), ArgumentTypeError, "'source'"),
    "load_compiled(None)": (lambda m, c: runtime.load_compiled(None), ArgumentTypeError, "'directory'"),
    "CompiledModule.save(123)": (lambda m, c: c.save(123), ArgumentTypeError, "'directory'"),
    "ObjectCache(123)": (lambda m, c: ObjectCache(123), ArgumentTypeError, "'directory'"),
    # load_model
    "load_model seed=-1": (lambda m, c: runtime.load_model(XOR, seed=-1), ArgumentValueError, "'seed'"),
    "load_model seed='a'": (lambda m, c: runtime.load_model(XOR, seed="a"), ArgumentTypeError, "'seed'"),
    "load_model seed=1.5": (lambda m, c: runtime.load_model(XOR, seed=1.5), ArgumentTypeError, "'seed'"),
    "load_model seed=True": (lambda m, c: runtime.load_model(XOR, seed=True), ArgumentTypeError, "'seed'"),
    "load_model backend='gpu'": (lambda m, c: runtime.load_model(XOR, backend="gpu"), ArgumentValueError,
                                 "backend 'gpu'"),
    "load_model weights=123": (lambda m, c: runtime.load_model(XOR, weights=123), ArgumentTypeError,
                               "'weights'"),
    "load_model passes=123": (lambda m, c: runtime.load_model(XOR, passes=123), ArgumentTypeError, "'passes'"),
    "load_model source=None": (lambda m, c: runtime.load_model(None), ArgumentTypeError, "'source'"),
    "load_model source with NUL": (lambda m, c: runtime.load_model("a\0b.dl"), ArgumentValueError, "'source'"),
    # Model methods
    "set_weights('abc')": (lambda m, c: m.set_weights("abc"), ArgumentTypeError, "'weights'"),
    "set_weights(None)": (lambda m, c: m.set_weights(None), ArgumentTypeError, "'weights'"),
    "set_weights strings": (lambda m, c: m.set_weights({_param(m): [["a", "b"], ["c", "d"]]}),
                            ArgumentTypeError, "parameter 'hidden.kernel' must hold real numbers"),
    "set_weights a string": (lambda m, c: m.set_weights({_param(m): "abc"}),
                             ArgumentTypeError, "parameter 'hidden.kernel'"),
    "set_weights objects": (lambda m, c: m.set_weights({_param(m): np.array([[None, 1], [2, 3]])}),
                            ArgumentTypeError, "parameter 'hidden.kernel'"),
    "set_weights complex": (lambda m, c: m.set_weights({_param(m): np.ones((2, 2), complex)}),
                            ArgumentTypeError, "parameter 'hidden.kernel'"),
    "set_weights ragged": (lambda m, c: m.set_weights({_param(m): [[1.0], [1.0, 2.0]]}),
                           ArgumentValueError, "parameter 'hidden.kernel'"),
    "set_weights overflows f32": (lambda m, c: m.set_weights({_param(m): np.full((2, 2), 1e300)}),
                                  ArgumentValueError, "parameter 'hidden.kernel' holds values that are not finite"),
    "set_weights shape": (lambda m, c: m.set_weights({_param(m): np.ones(3)}),
                          ArgumentValueError, "parameter 'hidden.kernel' has shape"),
    "fit validation_data=5": (lambda m, c: m.fit(np.zeros((4, 2), "f4"), np.zeros((4, 1), "f4"),
                                                 validation_data=5, verbose=0),
                              ArgumentTypeError, "'validation_data'"),
    "fit on_epoch_end=5": (lambda m, c: m.fit(np.zeros((4, 2), "f4"), np.zeros((4, 1), "f4"),
                                              on_epoch_end=5, verbose=0),
                           ArgumentTypeError, "'on_epoch_end'"),
    "save(123)": (lambda m, c: m.save(123), ArgumentTypeError, "'path'"),
    "load_weights(None)": (lambda m, c: m.load_weights(None), ArgumentTypeError, "'path'"),
    "summary(print_fn=5)": (lambda m, c: m.summary(print_fn=5), ArgumentTypeError, "'print_fn'"),
    # the frontend
    "compile_source(123)": (lambda m, c: compile_source(123), ArgumentTypeError, "'text'"),
    "compile_source(file=1)": (lambda m, c: compile_source(SOURCE, 1), ArgumentTypeError, "'file'"),
    "compile_file(None)": (lambda m, c: compile_file(None), ArgumentTypeError, "'path'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_arguments_are_dl_errors_naming_the_argument(model, compiled, case):
    call, error, names = CASES[case]
    with pytest.raises(error, match=names) as caught:
        call(model, compiled)
    assert isinstance(caught.value, DlRuntimeError)
    assert isinstance(caught.value, TypeError if error is ArgumentTypeError else ValueError)


def test_set_weights_changes_nothing_when_one_value_is_bad(model):
    before = model.weights
    names = model.param_names
    with pytest.raises(ArgumentTypeError):
        model.set_weights({names[0]: np.zeros((2, 2)), names[1]: "bad"})
    assert all(np.array_equal(before[n], a) for n, a in model.weights.items())


def test_a_missing_compiled_function_is_a_key_and_attribute_error(compiled):
    with pytest.raises(KeyError) as by_key:
        compiled["nope"]
    with pytest.raises(AttributeError) as by_attr:
        _ = compiled.nope
    assert isinstance(by_key.value, DlError) and "no compiled function 'nope'" in str(by_key.value)
    assert isinstance(by_attr.value, DlError) and "has no function 'nope'" in str(by_attr.value)
    assert not hasattr(compiled, "nope") and hasattr(compiled, "f")
