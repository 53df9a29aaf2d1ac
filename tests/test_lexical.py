"""Lexical details of the .dl language: keywords are whole words, and a quoted
source line is the line the lexer counted (lines end at \\n only)."""

from __future__ import annotations

import pytest

from compiler.diagnostics import DlError, ParseError
from frontend_dsl import compile_source


def parse_error(source: str) -> ParseError:
    with pytest.raises(ParseError) as info:
        compile_source(source, "t.dl")
    return info.value


@pytest.mark.parametrize("source, word, col", [
    ("fn f(x: f32[N]) -> f32[N] { returnx }", "returnx", 29),   # once read as `return x`
    ("fnf(x: f32[N]) -> f32[N] { return x }", "fnf", 1),        # once read as `fn f(...)`
    ("fn f(x: f32[N]) -> f32[N] { letx = x return x }", "letx", 29),
    ("fn f(x: f32[N]) -> f32[N] { return x }\nmodelm { }", "modelm", 1),
    ("model m {\n    inputx: f32[N, 1]\n}", "inputx", 5),
])
def test_a_keyword_glued_to_a_name_is_a_name(source: str, word: str, col: int) -> None:
    e = parse_error(source)
    assert e.message.startswith(f"unexpected '{word}'")
    assert e.loc.col == col


def test_names_may_start_with_keywords() -> None:
    module = compile_source("fn returns(letter: f32[N], fnx: f32[N]) -> f32[N] {\n"
                            "    let lets = letter * fnx\n    return(lets)\n}\n", "t.dl")
    assert [op.name for op in module.get("returns").ops] == ["mul"]


def test_expected_keywords_are_spelled_as_written() -> None:
    e = parse_error("fn f(x: f32[N]) -> f32[N] { x }")
    assert e.message == ("unexpected 'x'; expected one of: 'let', 'return', '}' "
                         "(statements start with 'let' or 'return')")


def test_crlf_line_ends_are_not_part_of_the_quoted_line() -> None:
    with pytest.raises(DlError) as info:
        compile_source("fn f(x: f32[N]) -> f32[N] {\r\n    return y\r\n}\r\n", "crlf.dl")
    assert info.value.render().splitlines()[1:] == ["    return y", "           ^"]
