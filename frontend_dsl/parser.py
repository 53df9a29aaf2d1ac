"""Parse ``.dl`` text into the typed AST of :mod:`frontend_dsl.ast`.

Lark parses with the LALR grammar in ``grammar.lark`` (positions propagated);
:class:`ToAst`, a ``lark.Transformer`` run *after* parsing (Lark's
``transformer=`` argument would drop positions), turns the tree into frozen
dataclasses.  Lark's exceptions become :class:`~compiler.diagnostics.ParseError`
at the offending line and column, with the expected tokens spelled as text
(``')'``, ``a name``), never as Lark's terminal names (``RPAR``, ``NAME``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import lark
from lark import Token, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.visitors import Transformer_NonRecursive

from compiler.diagnostics import DlError, DlTypeError, Location, ParseError, abbreviate, register_source

from . import ast

# How regex terminals read in a message.  String terminals read as themselves.
_TERMINAL_WORDS = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": "a string",
    "$END": "end of file",
}

# Tokens that can start an expression; when all are expected, say "an expression".
_EXPRESSION_START = {"NAME", "INT", "FLOAT", "STRING", "(", "[", "-"}
# Binary operators (and the postfix "[" and "."); when all are acceptable, say "an operator".
_OPERATORS = {"+", "-", "*", "/", "//", "@", "**", "==", "!=", "<", "<=", ">", ">=", "[", "."}


@lru_cache(maxsize=1)
def _lark() -> lark.Lark:
    # the LALR tables come from a module of this package, generated from the grammar
    # (frontend_dsl/tables.py): never from a cache file another user could plant
    from .tables import load_parser

    return load_parser()


@lru_cache(maxsize=1)
def _terminal_text() -> dict[str, str]:
    """Terminal name -> its literal text (``RPAR`` -> ``)``) for string terminals and
    keywords (``_KW_RETURN`` -> ``return``)."""
    out = {}
    for term in _lark().terminals:
        if term.pattern.type == "str":
            out[term.name] = term.pattern.value
        elif term.name.startswith("_KW_"):
            out[term.name] = term.name.removeprefix("_KW_").lower()
    return out


def parse(text: str, file: str = "<string>") -> ast.Program:
    """Parse a whole ``.dl`` source into an :class:`ast.Program`.

    Raises :class:`ParseError` (a :class:`DlError`) for malformed text.
    """
    register_source(file, text)
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as e:
        raise _translate(e, text, file) from None
    try:
        return ToAst(file).transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, DlError):
            raise e.orig_exc from None
        raise


# --------------------------------------------------------------------- errors


def _describe(terminal: str) -> str:
    if terminal in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[terminal]
    text = _terminal_text().get(terminal, terminal)
    return f"'{text}'"


def _expected_words(names: set[str]) -> list[str]:
    """Expected terminals as words, collapsing whole classes of tokens."""
    texts = {n: (n if n in _TERMINAL_WORDS else _terminal_text().get(n, n)) for n in names}
    wanted = set(texts.values())
    words: list[str] = []
    if _EXPRESSION_START <= wanted:
        wanted -= _EXPRESSION_START | {"true", "false"}
        words.append("an expression")
    if _OPERATORS <= wanted:
        wanted -= _OPERATORS
        words.append("an operator")
    words += sorted(_TERMINAL_WORDS[t] for t in wanted if t in _TERMINAL_WORDS)
    words += sorted(f"'{t}'" for t in wanted if t not in _TERMINAL_WORDS)
    return words


def _expected_phrase(names: set[str]) -> str:
    words = _expected_words(names)
    if not words:
        return ""
    if len(words) == 1:
        return f"; expected {words[0]}"
    return "; expected one of: " + ", ".join(words)


def _acceptable(e: UnexpectedToken) -> set[str]:
    """Tokens the parser really accepts here.

    LALR merges states, so ``e.expected`` may list tokens that only fit some
    other context; ``accepts`` simulates the reductions and is exact.
    """
    accepts = getattr(e, "accepts", None)
    return set(accepts) if accepts else set(e.expected)


def _token_text(token: Token) -> str:
    if token.type == "$END":
        return "end of file"
    return f"'{token.value}'"


def _end_of_text(text: str, file: str) -> Location:
    """The position just after the last non-blank character."""
    stripped = text.rstrip()
    lines = stripped.split("\n")
    line = max(len(lines), 1)
    col = len(lines[-1]) + 1 if lines else 1
    return Location(file, line, col, line, col + 1)


def _translate(e: UnexpectedInput, text: str, file: str) -> ParseError:
    """A Lark exception as a ParseError with a helpful message."""
    if isinstance(e, UnexpectedToken):
        token = e.token
        if token.type == "$END":
            loc = _end_of_text(text, file)
            return ParseError(f"unexpected end of file{_expected_phrase(_acceptable(e))}", loc)
        loc = Location(file, token.line, token.column, token.end_line, token.end_column)
        expected = _acceptable(e)
        message = f"unexpected {_token_text(token)}{_expected_phrase(expected)}"
        return ParseError(message + _hint(token, expected), loc)
    if isinstance(e, UnexpectedCharacters):
        char = text[e.pos_in_stream] if 0 <= e.pos_in_stream < len(text) else "?"
        loc = Location(file, e.line, e.column, e.line, e.column + 1)
        if char == '"':
            return ParseError("unterminated string", loc)
        return ParseError(f"unexpected character '{char}'", loc)
    if isinstance(e, UnexpectedEOF):
        return ParseError(f"unexpected end of file{_expected_phrase(set(e.expected))}",
                          _end_of_text(text, file))
    return ParseError(str(e), Location(file, getattr(e, "line", 0), getattr(e, "column", 0)))


def _hint(token: Token, expected: set[str]) -> str:
    """A short extra hint for the commonest slips."""
    texts = {_terminal_text().get(n, n) for n in expected}
    if token.type == "NAME" and "let" in texts and "return" in texts:
        return " (statements start with 'let' or 'return')"
    if token.value == "=" and "==" in texts:
        return " (use '==' to compare)"
    if texts == {"["}:
        return " (a type is written like f32[N, 3]; a scalar is f32[])"
    comparisons = {"==", "!=", "<", "<=", ">", ">="}
    if token.value in comparisons and not comparisons & texts:
        return " (comparisons cannot be chained: use logical_and(a < b, b < c))"
    return ""


# ------------------------------------------------------------------ transformer


def _loc(file: str, meta: Any) -> Location:
    return Location(file, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_loc(file: str, tok: Token) -> Location:
    return Location(file, tok.line, tok.column, tok.end_line, tok.end_column)


def _binary(op: str):
    """The transformer method of a binary operator alias (``add`` -> ``Binary("add", ...)``)."""
    def method(self: ToAst, meta: Any, lhs: ast.Expr, rhs: ast.Expr) -> ast.Binary:
        return ast.Binary(op, lhs, rhs, _loc(self.file, meta))
    method.__name__ = op
    return method


@v_args(meta=True, inline=True)
class ToAst(Transformer_NonRecursive):
    """Lark parse tree -> :mod:`frontend_dsl.ast`.  One method per rule alias.

    Non-recursive, so a long chain like ``a + a + ... + a`` cannot exhaust
    Python's stack.
    """

    def __init__(self, file: str):
        super().__init__()
        self.file = file

    def _name(self, tok: Token) -> ast.Name:
        return ast.Name(str(tok), _tok_loc(self.file, tok))

    # ---- program
    def start(self, meta, *items):
        return ast.Program(tuple(items), self.file)

    # ---- types
    def type(self, meta, dtype: Token, dims: tuple):
        return ast.TypeExpr(str(dtype), dims, _loc(self.file, meta))

    def dim_list(self, meta, *dims):
        return tuple(dims)

    def dim_int(self, meta, tok: Token):
        return _integer(tok, _tok_loc(self.file, tok))

    def dim_sym(self, meta, tok: Token):
        return str(tok)

    # ---- functions
    def param(self, meta, name: Token, type_: ast.TypeExpr):
        return ast.Param(self._name(name), type_, _loc(self.file, meta))

    def const_param(self, meta, name: Token, kind: Token):
        if str(kind) not in ast.CONST_KINDS:
            raise DlTypeError(f"unknown parameter kind '{kind}': a parameter is a tensor "
                              f"(x: f32[N, 3]) or a compile-time {', '.join(ast.CONST_KINDS)}",
                              _tok_loc(self.file, kind))
        return ast.Param(self._name(name), None, _loc(self.file, meta), str(kind))

    def use_decl(self, meta, path: Token):
        return ast.Use(_unescape(str(path)[1:-1], _tok_loc(self.file, path)), _loc(self.file, meta))

    def param_list(self, meta, *params):
        return tuple(params)

    def ret_single(self, meta, type_: ast.TypeExpr):
        return (type_,)

    def ret_tuple(self, meta, *types):
        return tuple(types)

    def block(self, meta, *stmts):
        return list(stmts)

    def fn_def(self, meta, name: Token, params: tuple, *rest):
        returns = rest[0] if len(rest) == 2 else None
        body = rest[-1]
        return ast.FnDef(self._name(name), params, returns, tuple(body), _loc(self.file, meta))

    def grad_def(self, meta, name: Token, transform: Token, args: tuple):
        positional, keywords = args
        call_span = Location(self.file, transform.line, transform.column, meta.end_line, meta.end_column)
        call = ast.Call(str(transform), positional, keywords, call_span, _tok_loc(self.file, transform))
        return ast.GradDef(self._name(name), call, _loc(self.file, meta))

    def let_stmt(self, meta, *children):
        *names, value = children
        return ast.Let(tuple(self._name(n) for n in names), value, _loc(self.file, meta))

    def return_stmt(self, meta, *values):
        return ast.Return(tuple(values), _loc(self.file, meta))

    # ---- models
    def model_def(self, meta, name: Token, *body):
        return ast.ModelDef(self._name(name), tuple(body), _loc(self.file, meta))

    def input_decl(self, meta, name: Token, type_: ast.TypeExpr):
        return ast.InputDecl(self._name(name), type_, _loc(self.file, meta))

    def target_decl(self, meta, name: Token, type_: ast.TypeExpr):
        return ast.TargetDecl(self._name(name), type_, _loc(self.file, meta))

    def param_decl(self, meta, name: Token, type_: ast.TypeExpr, init=None):
        return ast.ParamDecl(self._name(name), type_, init, _loc(self.file, meta))

    def output_decl(self, meta, name: Token, value):
        return ast.OutputDecl(self._name(name), value, _loc(self.file, meta))

    def loss_decl(self, meta, value):
        return ast.LossDecl(value, _loc(self.file, meta))

    def optimizer_decl(self, meta, value):
        return ast.OptimizerDecl(value, _loc(self.file, meta))

    def metrics_decl(self, meta, *names: Token):
        return ast.MetricsDecl(tuple(self._name(n) for n in names), _loc(self.file, meta))

    # ---- expressions
    eq = _binary("eq")
    ne = _binary("ne")
    lt = _binary("lt")
    le = _binary("le")
    gt = _binary("gt")
    ge = _binary("ge")
    add = _binary("add")
    sub = _binary("sub")
    mul = _binary("mul")
    div = _binary("div")
    floor_div = _binary("floor_div")
    matmul = _binary("matmul")
    pow = _binary("pow")

    def neg(self, meta, operand):
        return ast.Unary("neg", operand, _loc(self.file, meta))

    def int_lit(self, meta, tok: Token):
        return ast.Number(_integer(tok, _tok_loc(self.file, tok)), False, _loc(self.file, meta))

    def float_lit(self, meta, tok: Token):
        return ast.Number(float(tok), True, _loc(self.file, meta))

    def true_lit(self, meta):
        return ast.Bool(True, _loc(self.file, meta))

    def false_lit(self, meta):
        return ast.Bool(False, _loc(self.file, meta))

    def string_lit(self, meta, tok: Token):
        return ast.String(_unescape(str(tok)[1:-1], _tok_loc(self.file, tok)), _loc(self.file, meta))

    def name(self, meta, tok: Token):
        return self._name(tok)

    def list_lit(self, meta, *items):
        return ast.ListExpr(tuple(items), _loc(self.file, meta))

    def call(self, meta, func: Token, args: tuple):
        positional, keywords = args
        return ast.Call(str(func), positional, keywords, _loc(self.file, meta), _tok_loc(self.file, func))

    def index(self, meta, value, items: tuple):
        return ast.Index(value, items, _loc(self.file, meta))

    def index_list(self, meta, *items):
        return tuple(items)

    def slice(self, meta, *parts):
        bounds: dict[str, Any] = {"lo": None, "hi": None, "step": None}
        for kind, value in parts:
            bounds[kind] = value
        return ast.Slice(bounds["lo"], bounds["hi"], bounds["step"], _loc(self.file, meta))

    def slice_lo(self, meta, value):
        return ("lo", value)

    def slice_hi(self, meta, value):
        return ("hi", value)

    def slice_step(self, meta, value=None):
        return ("step", value)

    def ellipsis(self, meta):
        return ast.Ellipsis_(_loc(self.file, meta))

    def attribute(self, meta, value, name: Token):
        return ast.Attribute(value, str(name), _loc(self.file, meta), _tok_loc(self.file, name))

    def kwarg(self, meta, name: Token, value):
        return ast.Keyword(str(name), value, _loc(self.file, meta))

    def arg_list(self, meta, *args):
        """Split into (positional, keywords); positional after keyword is an error."""
        positional: list = []
        keywords: list[ast.Keyword] = []
        for a in args:
            if isinstance(a, ast.Keyword):
                if any(k.name == a.name for k in keywords):
                    raise ParseError(f"keyword argument '{a.name}' given twice", a.span)
                keywords.append(a)
            elif keywords:
                raise ParseError("positional argument after keyword argument", a.span)
            else:
                positional.append(a)
        return tuple(positional), tuple(keywords)


# The largest integer literal: 2^63, so that -9223372036854775808 (i64's least) can be written.
_MAX_INTEGER = 2 ** 63


def _integer(tok: Token, loc: Location) -> int:
    """An integer literal's value; one beyond any integer dtype is an error (a literal
    thousands of digits long is never converted)."""
    digits = str(tok).lstrip("0") or "0"
    if len(digits) > len(str(_MAX_INTEGER)) or int(digits) > _MAX_INTEGER:
        raise DlTypeError(f"integer literal {abbreviate(digits)} is out of range "
                         f"(integers are at most 64-bit: 9223372036854775807)", loc)
    return int(digits)


_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t"}


def _unescape(body: str, loc: Location) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            nxt = body[i + 1] if i + 1 < len(body) else ""
            if nxt not in _ESCAPES:
                raise ParseError(f"unknown escape '\\{nxt}' in string", loc)
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)
