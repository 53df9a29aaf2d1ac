"""The foundation: types, diagnostics rendering, the builder's checks."""

import pytest

from compiler.diagnostics import DlErrors, DlTypeError, Location, ParseError, register_source
from compiler.ir.builder import new_function
from compiler.ir.types import DType, TensorType
from compiler.ops.base import ShapeError, broadcast_shapes, normalize_axes


def test_tensor_type_text_keeps_symbol_names():
    assert str(TensorType(DType.f32, ("N", 784))) == 'tensor<?x784xf32, "N">'
    assert str(TensorType(DType.bool, ())) == "tensor<i1>"
    assert str(TensorType(DType.f64, ("N", "M"))) == 'tensor<?x?xf64, "N,M">'
    assert TensorType(DType.f32, ("N", 3)).dsl_str() == "f32[N, 3]"


@pytest.mark.parametrize("a, b, out", [
    ((3, 1), (4,), (3, 4)),
    (("N", 512), (512,), ("N", 512)),
    (("N", 1), (1, 10), ("N", 10)),
    ((), ("N",), ("N",)),
])
def test_broadcast_shapes(a, b, out):
    assert broadcast_shapes(a, b) == out


@pytest.mark.parametrize("a, b", [(("N",), ("M",)), (("N",), (5,)), ((3,), (4,))])
def test_broadcast_shapes_that_cannot_agree(a, b):
    with pytest.raises(ShapeError, match="do not broadcast"):
        broadcast_shapes(a, b)


def test_normalize_axes():
    assert normalize_axes((-1, 0), 3) == (0, 2)
    assert normalize_axes(None, 2) == (0, 1)
    with pytest.raises(ShapeError, match="out of range"):
        normalize_axes((3,), 3)
    with pytest.raises(ShapeError, match="repeated"):
        normalize_axes((1, -2), 3)


def test_error_renders_file_line_col_and_carets():
    register_source("t.dl", "fn f() {\n    let y = w3 @ x\n}\n")
    err = ParseError("unknown name 'w3'", Location("t.dl", 2, 13, 2, 15))
    assert err.render() == (
        "t.dl:2:13: error: unknown name 'w3'\n"
        "    let y = w3 @ x\n"
        "            ^^")


def test_backward_location_says_so():
    err = DlTypeError("nan", Location("t.dl", 2, 5).as_backward())
    assert err.render().startswith("t.dl:2:5: error: in backward of this line: nan")


def test_several_errors_render_in_source_order():
    register_source("u.dl", "a\nb\nc\n")
    errs = DlErrors([ParseError("second", Location("u.dl", 3, 1)), ParseError("first", Location("u.dl", 1, 1))])
    text = errs.render()
    assert text.index("first") < text.index("second")


def test_builder_checks_shapes_and_points_at_the_location():
    f32 = DType.f32
    func, b = new_function("f", [("x", TensorType(f32, ("N", 3))), ("y", TensorType(f32, ("M", 3)))])
    loc = Location("v.dl", 4, 9)
    with pytest.raises(DlTypeError) as info:
        with b.at(loc):
            b.add(func.params[0], func.params[1])
    assert info.value.loc == loc
    assert "add:" in info.value.message and "do not broadcast" in info.value.message


def test_builder_rejects_unknown_ops_and_attributes():
    func, b = new_function("f", [("x", TensorType(DType.f32, (3,)))])
    with pytest.raises(AttributeError):
        b.no_such_op(func.params[0])
    with pytest.raises(DlTypeError, match="unknown attribute 'axis'"):
        b.add(func.params[0], func.params[0], axis=1)
    with pytest.raises(DlTypeError, match="takes 2 operand"):
        b.add(func.params[0])
