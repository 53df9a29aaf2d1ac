"""Names and dims the user chooses, however long: dims that only a result type
mentions are rejected by the verifier; long names reach LLVM shortened."""

from __future__ import annotations

import numpy as np
import pytest

import runtime
from compiler.codegen.llvm import entry_symbol
from compiler.codegen.llvmutil import MAX_NAME_LENGTH, short_name
from compiler.diagnostics import VerifyError
from compiler.ir.builder import new_function
from compiler.ir.parser import parse_module
from compiler.ir.types import DType, TensorType
from compiler.ir.verifier import verify_function
from frontend_dsl import compile_source
from runtime.model import load_model

# ---------------------------------------------------------------------------
# Symbolic dims


IOTA = '''module {
  func.func @f(%x: tensor<?xf32, "N">) -> (tensor<?xi64, "M">) {
    %0 = "dl.iota"() {axis = 0, dtype = i64, shape = ["M"]} : () -> tensor<?xi64, "M">
    func.return %0 : tensor<?xi64, "M">
  }
}
'''


def test_a_dim_no_parameter_binds_is_a_verify_error() -> None:
    # once verified, then codegen died with KeyError 'M'
    with pytest.raises(VerifyError) as info:
        parse_module(IOTA, "iota.mlir")
    (e,) = info.value.errors
    assert e.message == "dl.iota: result 0 (%0) has dim 'M', which no parameter of @f binds"
    assert (e.loc.file, e.loc.line, e.loc.col) == ("iota.mlir", 3, 5)


def test_a_broadcast_to_an_unbound_dim_is_reported_once() -> None:
    f, b = new_function("f", [("x", TensorType(DType.f32, ()))])
    y = b.broadcast_to(f.params[0], shape=("M",))
    f.outputs = [b.exp(y)]                          # its use is not reported again
    with pytest.raises(VerifyError) as info:
        verify_function(f)
    assert [e.message for e in info.value.errors] == [
        "dl.broadcast_to: result 0 (%0) has dim 'M', which no parameter of @f binds"]


def test_dims_bound_by_parameters_verify() -> None:
    text = IOTA.replace('%x: tensor<?xf32, "N">', '%x: tensor<?xf32, "M">')
    assert parse_module(text).get("f").ops[0].name == "iota"


# ---------------------------------------------------------------------------
# Long names


LONG = 1100                 # past LLVM's parser, which cuts local names at 1024 characters


def test_short_names_are_short_distinct_and_stable() -> None:
    a, b = "w" * LONG + "a", "w" * LONG + "b"
    assert len(short_name(a)) == MAX_NAME_LENGTH and short_name(a) != short_name(b)
    assert short_name(a) == short_name(a) and short_name(a).startswith("w" * 40)
    assert short_name("x") == "x"
    assert entry_symbol("f" * LONG).isidentifier() and len(entry_symbol("f" * LONG)) <= 4 + MAX_NAME_LENGTH


def test_a_long_function_name_and_parameter_names_compile() -> None:
    name, p, q = "f" * LONG, "x" * LONG + "p", "x" * LONG + "q"
    module = compile_source(f"fn {name}({p}: f32[{'N' * LONG}], {q}: f32[{'N' * LONG}]) -> f32[{'N' * LONG}] "
                            f"{{ return {p} * 2.0 + {q} }}", "long.dl")
    fn = runtime.compile(module)[name]
    out = fn(np.array([1.0, 2.0], np.float32), np.array([0.5, 0.25], np.float32))
    np.testing.assert_array_equal(out, [2.5, 4.25])


def test_a_model_with_long_layer_names_trains_natively() -> None:
    first, second = "layer" * (LONG // 5) + "1", "layer" * (LONG // 5) + "2"
    source = f'''model long_names {{
    input x: f32[N, 2]
    target y: f32[N, 1]
    let h = dense(x, 4, activation=relu, name="{first}")
    output pred = dense(h, 1, name="{second}")
    loss mse(pred, y)
    optimizer sgd(lr=0.05)
}}
'''
    model = load_model(compile_source(source, "long.dl"), backend="native")
    assert f"{first}.kernel" in model.weights
    x = np.random.default_rng(0).normal(size=(16, 2)).astype(np.float32)
    y = x[:, :1] - x[:, 1:]
    before = {k: v.copy() for k, v in model.weights.items()}
    history = model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(before[k], v) for k, v in model.weights.items())
