"""Diagnostics of the .dl frontend: golden files and a fuzzing property.

Each ``tests/diagnostics/<case>.expected`` is the exact stderr of
``dlc check tests/diagnostics/<case>.dl`` run from the repository root (a
case without a ``.dl`` file checks the missing-file message).  To update a
case after a deliberate change of wording, run that command and review the
difference::

    dlc check tests/diagnostics/unknown_name.dl 2> tests/diagnostics/unknown_name.expected
"""

from __future__ import annotations

import contextlib
import io
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.diagnostics import DlError, DlErrors, ParseError
from frontend_dsl import compile_source
from runtime.cli import main

ROOT = Path(__file__).resolve().parents[1]
CASES = sorted(p.stem for p in (ROOT / "tests" / "diagnostics").glob("*.expected"))
EXAMPLES = sorted((ROOT / "examples").glob("*.dl"))


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("case", CASES)
def test_golden_diagnostic(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    expected = (ROOT / "tests" / "diagnostics" / f"{case}.expected").read_text()
    code, out, err = run_cli(["check", f"tests/diagnostics/{case}.dl"])
    assert code == 1
    assert out == ""
    assert err == expected


def test_every_error_class_has_a_golden_case() -> None:
    required = {
        "syntax_missing_operand", "syntax_missing_paren", "syntax_bad_character",
        "syntax_unexpected_eof", "syntax_missing_let", "syntax_unterminated_string",
        "unknown_name", "unknown_op", "unknown_keyword", "wrong_arity", "dtype_mismatch",
        "shape_mismatch", "symbolic_dims_disagree", "duplicate_definitions",
        "return_type_mismatch", "unknown_optimizer", "unknown_metric", "unknown_initializer",
        "missing_file", "three_errors",
    }
    assert required <= set(CASES)


def test_three_independent_errors_are_all_reported() -> None:
    source = (ROOT / "tests" / "diagnostics" / "three_errors.dl").read_text()
    with pytest.raises(DlErrors) as info:
        compile_source(source, "three.dl")
    errors = info.value.errors
    assert [(e.loc.line, e.loc.col) for e in errors] == [(3, 16), (7, 13), (18, 14)]
    assert "unknown name 'undefined_thing'" in errors[0].message
    assert "inner dims" in errors[1].message
    assert "unknown metric 'auc'" in errors[2].message


def test_a_failed_definition_is_reported_once() -> None:
    # `h` fails; its later uses must not add "unknown name 'h'" errors.
    source = """
fn f(x: f32[N, 3], w: f32[4, 2]) -> f32[N, 2] {
    let h = x @ w
    let g = h * 2.0
    return g + h
}
fn uses_f(x: f32[N, 3], w: f32[4, 2]) -> f32[N, 2] {
    return f(x, w)
}
"""
    with pytest.raises(DlError) as info:
        compile_source(source, "once.dl")
    errors = info.value.errors if isinstance(info.value, DlErrors) else [info.value]
    assert len(errors) == 1
    assert errors[0].loc.line == 3


def test_parse_error_names_tokens_in_words() -> None:
    with pytest.raises(ParseError) as info:
        compile_source("fn f(x: f32[N]) -> f32[N] { return (x + 1.0 }", "p.dl")
    message = info.value.message
    assert message.startswith("unexpected '}'")
    assert "')'" in message
    assert "RPAR" not in message and "RBRACE" not in message


# ---------------------------------------------------------------------------
# Fuzzing: whatever the text, only DlError escapes, and the CLI never shows a traceback

TOKENS = [
    "fn", "let", "return", "model", "input", "target", "param", "output", "loss", "optimizer",
    "metrics", "grad", "value_and_grad", "dense", "relu", "softmax", "sum", "mean", "cast",
    "reshape", "x", "y", "w", "N", "M", "f32", "i32", "bool", "f64", "0", "1", "2.5", "-3",
    "1e400", "true", "false", "\"s\"", "(", ")", "[", "]", "{", "}", ",", ":", "=", "==", "->",
    "+", "-", "*", "/", "@", "**", "<", ">=", "axis=", "wrt=", "#", "\n", " ", "$",
]


def mutate(text: str, seed: int, steps: int) -> str:
    """A random edit of ``text``: deletions, insertions of tokens, duplications, swaps."""
    rng = random.Random(seed)
    for _ in range(steps):
        kind = rng.randrange(5)
        i = rng.randrange(len(text) + 1)
        if kind == 0 and text:
            text = text[:i] + text[i + rng.randrange(1, 12):]
        elif kind == 1:
            text = text[:i] + " " + rng.choice(TOKENS) + " " + text[i:]
        elif kind == 2:
            lines = text.splitlines()
            if lines:
                j = rng.randrange(len(lines))
                lines.insert(rng.randrange(len(lines) + 1), lines[j])
                text = "\n".join(lines)
        elif kind == 3:
            words = text.split(" ")
            if len(words) > 2:
                a, b = rng.randrange(len(words)), rng.randrange(len(words))
                words[a], words[b] = words[b], words[a]
                text = " ".join(words)
        else:
            for old, new in (("f32", "i32"), ("N", "M"), ("784", "783"), ("x", "y"), ("w", "b")):
                if old in text and rng.random() < 0.3:
                    text = text.replace(old, new, 1)
    return text


def assert_only_dl_errors(text: str) -> None:
    try:
        compile_source(text, "fuzz.dl")
    except DlError as e:
        rendered = e.render()
        assert "Traceback" not in rendered
        assert rendered.strip()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(example=st.sampled_from(EXAMPLES), seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 6))
def test_mutated_examples_raise_only_dl_errors(example: Path, seed: int, steps: int) -> None:
    assert_only_dl_errors(mutate(example.read_text(), seed, steps))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_random_token_soup_raises_only_dl_errors(tokens: list[str]) -> None:
    assert_only_dl_errors(" ".join(tokens))


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80))
def test_random_text_raises_only_dl_errors(text: str) -> None:
    assert_only_dl_errors(text)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(example=st.sampled_from(EXAMPLES), seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 6))
def test_cli_never_prints_a_traceback(example: Path, seed: int, steps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mutant.dl"
        path.write_text(mutate(example.read_text(), seed, steps))
        code, _, err = run_cli(["check", str(path)])
    assert code in (0, 1)
    assert "Traceback" not in err
    assert "internal error" not in err
    if code == 1:
        assert "error:" in err


def test_long_chains_compile_and_deep_nesting_is_a_diagnostic() -> None:
    chain = "fn f(x: f32[N]) -> f32[N] { return x" + " + x" * 3000 + " }"
    assert len(compile_source(chain, "chain.dl").get("f").ops) == 3000
    parens = "fn f(x: f32[N]) -> f32[N] { return " + "(" * 3000 + "x" + ")" * 3000 + " }"
    assert compile_source(parens, "parens.dl").get("f").ops == []
    tower = "fn f(x: f32[N]) -> f32[N] {\n    return x" + " ** x" * 3000 + "\n}"
    with pytest.raises(DlError) as info:
        compile_source(tower, "tower.dl")
    assert "nested too deeply" in info.value.message
    assert (info.value.loc.line, info.value.loc.col) == (2, 5)
