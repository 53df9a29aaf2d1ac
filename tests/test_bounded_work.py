"""Inputs that once meant unbounded work or an internal error: each is now a
located error found with work proportional to the input.

Literals beyond their type (the .dl source, ``constant(value=...)``, IR text),
constant folding of integers, tensors of too many dims, and a module of very
many functions.  (The golden files ``tests/diagnostics/*out_of_range*`` and
``constant_overflows`` show the full messages.)
"""

from __future__ import annotations

import pytest

from compiler.diagnostics import DlError, DlErrors, DlTypeError, ParseError
from compiler.ir import core
from compiler.ir.builder import new_function
from compiler.ir.core import Function, Module
from compiler.ir.parser import parse_module
from compiler.ir.types import MAX_RANK, DType, TensorType
from frontend_dsl import compile_source


def dl_error(source: str) -> DlError:
    """The one error compiling ``source`` raises."""
    with pytest.raises(DlError) as info:
        compile_source(source, "t.dl")
    errors = info.value.errors if isinstance(info.value, DlErrors) else [info.value]
    assert len(errors) == 1, [e.message for e in errors]
    return errors[0]


def fn_returning(expr: str, dtype: str = "i64") -> str:
    return f"fn f(k: {dtype}[N]) -> {dtype}[N] {{\n    return {expr}\n}}\n"


# ---------------------------------------------------------------------------
# .dl literals and folding


@pytest.mark.parametrize("expr, col", [
    ("k + 2 ** 99999999999", 16),               # once: dlc check never returned
    ("k + 3 ** 40", 16),
    ("k * (10 ** 18 * 10)", 17),
    ("k - (-9223372036854775807 - 9223372036854775807 - 2)", 17),
])
def test_folding_an_integer_beyond_64_bits_is_an_error(expr: str, col: int) -> None:
    e = dl_error(fn_returning(expr))
    assert isinstance(e, DlTypeError)
    assert e.message == "constant expression overflows i64"
    assert (e.loc.line, e.loc.col) == (2, col)


def test_folding_within_64_bits_still_folds() -> None:
    module = compile_source(fn_returning("k + (2 ** 62 * 2 - 1)"), "t.dl")
    (const,) = [op for op in module.get("f").ops if op.name == "constant"]
    assert int(const.attrs["value"]) == 2 ** 63 - 1
    assert compile_source(fn_returning("k + -(2 ** 63)"), "t.dl")       # i64's least value
    assert compile_source(fn_returning("k * (-1) ** 99999999999"), "t.dl")


@pytest.mark.parametrize("digits", [20, 401, 4301])
def test_an_integer_literal_beyond_64_bits_is_an_error(digits: int) -> None:
    # 4301 digits is past Python's int() limit (once a VisitError, exit 70)
    literal = "1" * digits
    for source in (fn_returning(f"k * {literal}"), fn_returning(f"k * {literal}", "f32"),
                   f"fn f(x: f32[{literal}]) -> f32[] {{ return sum(x) }}"):
        e = dl_error(source)
        assert isinstance(e, DlTypeError)
        assert "out of range" in e.message
        assert e.loc is not None and e.loc.line >= 1 and e.loc.col > 1


@pytest.mark.parametrize("expr, message", [
    ("x * 1e39", "1e+39 is beyond the range of f32"),
    ("x * -1e39", "-1e+39 is beyond the range of f32"),
    ("x * 1e999", "not a finite number"),
    ("x + constant(value=1e39, dtype=f32, shape=[])", "value 1e+39 is out of range for f32"),
    ("x + cast(constant(value=[2147483648, 1], dtype=i32, shape=[2]), f32)",
     "value 2147483648 is out of range for i32"),
    ("x + cast(constant(value=[9223372036854775808, 1], dtype=i64, shape=[2]), f32)",
     "out of range for i64"),
])
def test_a_literal_beyond_its_dtype_is_an_error(expr: str, message: str) -> None:
    e = dl_error(f"fn f(x: f32[2]) -> f32[2] {{\n    return {expr}\n}}\n")
    assert message in e.message
    assert e.loc.line == 2


def test_literals_at_the_edges_of_their_dtypes_are_fine() -> None:
    compile_source("fn f(x: f32[2]) -> f32[2] { return x * 3.4e38 + constant(value=-3.4e38, "
                   "dtype=f32, shape=[]) }", "t.dl")
    compile_source("fn f(k: i64[2]) -> i64[2] { return k + 9223372036854775807 + cast(constant("
                   "value=[2147483647, -2147483648], dtype=i32, shape=[2]), i64) }", "t.dl")


# ---------------------------------------------------------------------------
# IR text


CONSTANT = '''module {{
  func.func @f() -> (tensor<{type}>) {{
    %0 = "dl.constant"() {{dtype = {dtype}, shape = {shape}, value = {value}}} : () -> tensor<{type}>
    func.return %0 : tensor<{type}>
  }}
}}
'''


@pytest.mark.parametrize("value, message", [
    ("dense<" + "1" * 401 + "> : tensor<f64>", "does not fit in f64"),      # once OverflowError
    ("dense<" + "1" * 401 + ".0> : tensor<f32>", "does not fit in f32"),
    ("dense<[1.0e39, 1.0]> : tensor<2xf32>", "1.0e39 does not fit in f32"),
    ("1.0e99999 : f32", "does not fit in f32"),
    ("99999999999 : i32", "99999999999 does not fit in i32"),
    ("dense<9223372036854775808> : tensor<i64>", "does not fit in i64"),
    ("dense<> : tensor<0x99999999999xf32>", "is too large"),                 # once ValueError
    ("dense<> : tensor<0x99999999999999999999xf32>", "dim 99999999999999999999 is too large"),
    ("dense<0.0> : tensor<99999999999xf32>", "is too large"),
])
def test_ir_literals_beyond_their_type_are_parse_errors(value: str, message: str) -> None:
    text = CONSTANT.format(type="f32", dtype="f32", shape="[]", value=value)
    with pytest.raises(ParseError) as info:
        parse_module(text, "t.mlir")
    assert message in info.value.message
    assert (info.value.loc.line, info.value.loc.file) == (3, "t.mlir")


def test_an_f64_constant_value_beyond_f32_is_a_verify_error() -> None:
    text = CONSTANT.format(type="f32", dtype="f32", shape="[]", value="1.0e39")
    with pytest.raises(DlError, match="value 1e\\+39 is out of range for f32"):
        parse_module(text, "t.mlir")


# ---------------------------------------------------------------------------
# Rank


def test_a_tensor_of_too_many_dims_is_an_error_in_source_ir_and_shape_rules() -> None:
    dims = ", ".join(["2"] * (MAX_RANK + 1))
    e = dl_error(f"fn f(x: f32[{dims}]) -> f32[] {{ return sum(x) }}")
    assert f"at most {MAX_RANK} dims" in e.message and (e.loc.line, e.loc.col) == (1, 9)
    ir_type = "x".join(["2"] * (MAX_RANK + 1)) + "xf32"
    with pytest.raises(ParseError, match=f"at most {MAX_RANK} dims"):
        parse_module(f"module {{\n  func.func @f(%x: tensor<{ir_type}>) -> () {{\n    func.return\n  }}\n}}\n")
    shape = "[" + ", ".join(["1"] * (MAX_RANK + 1)) + "]"
    e = dl_error(f"fn f(x: f32[1]) -> f32[1] {{\n    let y = reshape(x, shape={shape})\n    return x\n}}")
    assert f"at most {MAX_RANK} dims" in e.message and e.loc.line == 2
    f, b = new_function("f", [("x", TensorType(DType.f32, (1,) * MAX_RANK))])
    f.outputs = [b.exp(f.params[0])]                    # exactly MAX_RANK is fine


# ---------------------------------------------------------------------------
# Modules of many functions


def test_adding_many_functions_never_rescans_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    scans = []
    original = Module._reindex

    def counting(self: Module) -> None:
        scans.append(len(self.functions))
        original(self)

    monkeypatch.setattr(core.Module, "_reindex", counting)
    m = Module()
    for i in range(20_000):
        m.add(Function(f"f{i}", []))
        assert f"f{i // 2}" in m
    assert m.get("f12345").name == "f12345"
    assert sum(scans) <= 20_000             # at most one rescan of the list, not one per add


def test_the_module_index_follows_changes_of_the_list() -> None:
    m = Module([Function("a", []), Function("b", [])])
    m.functions.sort(key=lambda f: f.name, reverse=True)
    assert [m.get(n).name for n in "ab"] == ["a", "b"]
    m.functions = [f for f in m.functions if f.name != "a"]
    assert "a" not in m and m.get("b").name == "b"
    replacement = Function("b", [])
    m.replace(replacement)
    assert m.get("b") is replacement and len(m.functions) == 1
    m.remove(replacement)
    assert "b" not in m and m.functions == []
    m.functions.append(Function("c", []))
    assert m.get("c").name == "c"
    with pytest.raises(KeyError):
        m.get("a")
