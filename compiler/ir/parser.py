"""The parser: MLIR text (as :mod:`compiler.ir.printer` writes it) -> dl IR.

A hand-written recursive-descent parser over the characters of the text, so
every error points at an exact ``file:line:col`` with carets.  The grammar
(``docs/ir.md`` has it with examples)::

    module     ::= 'module' ('attributes' attr-dict)? '{' function* '}' loc?
                 | function*                          (a bare list of functions)
    function   ::= 'func.func' '@' symbol '(' (param (',' param)*)? ')'
                   ('->' results)? ('attributes' attr-dict)? '{' op* return '}' loc?
    param      ::= value-id ':' type loc?
    results    ::= '(' (type attr-dict? (',' type attr-dict?)*)? ')' | type
    op         ::= (result (',' result)* '=')? string '(' operands? ')' attr-dict?
                   ':' '(' types? ')' '->' (type | '(' types? ')') loc?
    result     ::= value-id (':' integer)?            (%x:2 defines %x#0, %x#1)
    return     ::= ('func.return' | 'return') (operands ':' types)? loc?
    type       ::= 'tensor' '<' (('?' | integer) 'x')* element (',' string)? '>'
    attr-dict  ::= '{' (key ('=' attr)? (',' key ('=' attr)?)*)? '}'
    attr       ::= 'unit' | 'true' | 'false' | integer (':' int-type)? | float (':' float-type)?
                 | hex ':' float-type | string | '[' attrs ']' | attr-dict | dtype | type
                 | 'dense' '<' dense-body? '>' ':' type
    loc        ::= 'loc' '(' 'unknown' | string ':' int ':' int ('to' int? ':' int)?
                           | '"backward"' ('(' loc-body ')')? ')'

MLIR's generic form (``mlir-opt --mlir-print-op-generic``) is read too::

    generic    ::= '"builtin.module"' '(' ')' ('<' attr-dict '>')? '(' '{' gfunc* '}' ')' attr-dict?
                   ':' '(' ')' '->' '(' ')' loc?      | gfunc*
    gfunc      ::= '"func.func"' '(' ')' '<' '{' 'function_type' '=' fn-type, 'res_attrs' '=' attr,
                   'sym_name' '=' string, ... '}' '>' '(' '{' ('^bb0' ('(' params ')')? ':')? op*
                   '"func.return"' '(' operands? ')' ':' fn-type loc? '}' ')' attr-dict? ':' '(' ')' '->' '(' ')' loc?

Errors are :class:`~compiler.diagnostics.ParseError`\\ s; independent ones (one
per op statement, per function) are collected and raised together as a
:class:`ParseErrors`.  Ops are built with their printed result types and their
attributes normalised against the op table; :func:`parse_module` then runs the
verifier, which checks the types against each op's shape rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NoReturn, cast

import numpy as np

from ..diagnostics import UNKNOWN, DlErrors, Location, ParseError, abbreviate, register_source
from ..ops import get_op
from ..ops.base import ShapeError, normalize_attrs
from .core import Function, Module, Op, Value
from .dims import DimSyntaxError, parse_dim, split_top_level
from .printer import DENSE_ELEMENT_TYPES, MODULE_ATTR_PREFIX, OUTPUT_NAME_ATTR
from .types import Dim, DType, TensorType, shape_problem
from .verifier import verify_module

MAX_ERRORS = 100
MAX_NESTING = 64
MAX_DENSE_ELEMENTS = 1 << 28   # a splat may not ask for more elements than this

_WS = re.compile(r"(?:\s+|//[^\n]*)*")
_BARE_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_$.]*")
_SUFFIX_ID = re.compile(r"(?:[0-9]+|[A-Za-z_$.\-][A-Za-z0-9_$.\-]*)")
_VALUE_ID = re.compile(r"%(" + _SUFFIX_ID.pattern + r")")
_USE_INDEX = re.compile(r"#([0-9]+)")
_INT = re.compile(r"[0-9]+")
_NUMBER = re.compile(r"-?(?:0x[0-9A-Fa-f]+|[0-9]+\.[0-9]*(?:[eE][+-]?[0-9]+)?|[0-9]+)")
_INT_TYPE = re.compile(r"(s|u)?i([1-9][0-9]*)")
_NUMBER_TYPE = re.compile(r"(?:f16|bf16|f32|f64|i[0-9]+|si[0-9]+|ui[0-9]+|index)(?![A-Za-z0-9_$.])")
_DIM = re.compile(r"(\?|[0-9]+)x")
_ELEMENT = re.compile(r"[a-z][a-z0-9]*")
# Only errors and recovery use these: kept as text, compiled (and cached by ``re``) at first
# use, so a warm ``load_model``, which parses cached IR text, never compiles them.
_TOKEN = (r'%[A-Za-z0-9_$.\-]+|@[A-Za-z0-9_$.\-]+|"(?:[^"\\\n]|\\.)*"?|[A-Za-z_][A-Za-z0-9_$.]*'
          r"|-?[0-9][A-Za-z0-9_.]*|->|\S")
_STATEMENT_START = r'%|"|(?:func\.return|return|func\.func)(?![A-Za-z0-9_$.])|}'
_ESCAPES = {'"': b'"', "\\": b"\\", "n": b"\n", "t": b"\t"}
_WORD_END = r"(?![A-Za-z0-9_$.])"
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_$.") - {""}
_WS_START = frozenset(" \t\r\n\f\v/")


class ParseErrors(DlErrors, ParseError):
    """Several independent parse errors; ``except ParseError`` catches them too."""


def parse_module(text: str, file: str = "<ir>", *, verify: bool = True) -> Module:
    """Parse IR text into a :class:`Module`.

    ``file`` names the text in diagnostics (and the text is registered under it
    so errors can quote their line).  Ops without a ``loc(...)`` get a location
    pointing at their line in the text.  With ``verify`` (the default) the
    module is verified too, so a result type that disagrees with the op's
    shape rule is reported; the verifier raises its own errors.
    """
    register_source(file, text)
    module = _Parser(text, file).module()
    if verify:
        verify_module(module)
    return module


def parse_function(text: str, file: str = "<ir>", *, verify: bool = True) -> Function:
    """Parse text holding exactly one ``func.func`` (with or without a module around it)."""
    module = parse_module(text, file, verify=verify)
    if len(module.functions) != 1:
        raise ParseError(f"expected exactly one function, found {len(module.functions)}",
                         Location(file, 1, 1))
    return module.functions[0]


# ---------------------------------------------------------------------------
# Internals

class _Fail(Exception):
    """Unwinds to the nearest recovery point; the error is already recorded."""


@dataclass
class _Binding:
    """What a ``%name`` stands for: its values (None once poisoned by an error) and where."""

    values: list[Value] | None
    pos: int


@dataclass
class _Element:
    """One element of a dense literal, kept with its position for diagnostics."""

    kind: str          # "int", "float", "hex" or "bool"
    value: Any
    pos: int
    text: str


class _Parser:
    def __init__(self, text: str, file: str):
        self.text = text
        self.file = file
        self.pos = 0
        self.errors: list[ParseError] = []
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    # -- positions and errors --------------------------------------------------

    def location(self, start: int, end: int | None = None) -> Location:
        line = self._line_of(start)
        col = start - self.line_starts[line - 1] + 1
        if end is None or end <= start:
            return Location(self.file, line, col)
        end_line = self._line_of(end - 1)
        end_col = end - self.line_starts[end_line - 1] + 1
        return Location(self.file, line, col, end_line, end_col)

    def _line_of(self, pos: int) -> int:
        lo, hi = 0, len(self.line_starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.line_starts[mid] <= pos:
                lo = mid
            else:
                hi = mid - 1
        return lo + 1

    def fail(self, message: str, start: int | None = None, end: int | None = None,
             notes: list[str] | None = None) -> NoReturn:
        """Record an error at ``start`` (default: the next token) and unwind."""
        if start is None:
            self.skip_ws()
            start = self.pos
            if end is None:
                m = re.compile(_TOKEN).match(self.text, start)
                end = m.end() if m else start
        self.record(message, start, end, notes)
        raise _Fail()

    def record(self, message: str, start: int, end: int | None = None,
               notes: list[str] | None = None) -> None:
        self.errors.append(ParseError(message, self.location(start, end), notes))

    def expected(self, what: str, within_line: bool = True) -> NoReturn:
        """Fail with "expected X, found Y".

        ``within_line``: X belongs on the line of what came before (inside an op
        or a header), so a line that ends early is reported at its end.
        """
        found = self.found()
        prev = self._code_end_before(self.pos)
        at_end = self.pos >= len(self.text)
        if prev is not None and "\n" in self.text[prev:self.pos] and (within_line or at_end):
            ending = "end of input" if at_end else "end of line"
            self.fail(f"expected {what}, found {ending}", prev, prev + 1)
        self.fail(f"expected {what}, found {found}")

    def _code_end_before(self, pos: int) -> int | None:
        """End of the last code (not whitespace, not a comment) before ``pos``."""
        line = self._line_of(pos)
        limit = pos
        while line >= 1:
            start = self.line_starts[line - 1]
            m = re.compile(_CODE).match(self.text, start, limit)
            assert m is not None        # _CODE matches the empty string
            code = m.group()
            stripped = code.rstrip()
            if stripped:
                return start + len(stripped)
            line -= 1
            limit = max(start - 1, 0)
        return None

    def found(self) -> str:
        self.skip_ws()
        m = re.compile(_TOKEN).match(self.text, self.pos)
        if m is None:
            return "end of input"
        token = m.group()
        return f"'{token[:30]}...'" if len(token) > 30 else f"'{token}'"

    # -- scanning --------------------------------------------------------------

    def skip_ws(self) -> None:
        c = self.text[self.pos:self.pos + 1]
        if c in _WS_START or c > "~":
            m = _WS.match(self.text, self.pos)
            assert m is not None        # _WS matches the empty string
            self.pos = m.end()

    def at_end(self) -> bool:
        self.skip_ws()
        return self.pos >= len(self.text)

    def peek(self, literal: str) -> bool:
        self.skip_ws()
        return self.text.startswith(literal, self.pos)

    def peek_word(self, word: str) -> bool:
        """Is ``word`` next, as a whole word (``func.func`` but not ``func.funcs``)?"""
        self.skip_ws()
        end = self.pos + len(word)
        return self.text.startswith(word, self.pos) and self.text[end:end + 1] not in _ID_CHARS

    def accept(self, literal: str) -> bool:
        if self.peek(literal):
            self.pos += len(literal)
            return True
        return False

    def accept_word(self, word: str) -> bool:
        if self.peek_word(word):
            self.pos += len(word)
            return True
        return False

    def expect(self, literal: str, context: str = "") -> int:
        """Consume ``literal`` and return its position, or fail naming what was expected."""
        if not self.accept(literal):
            self.expected(f"'{literal}'" + (f" {context}" if context else ""))
        return self.pos - len(literal)

    def match(self, regex: re.Pattern[str]) -> re.Match[str] | None:
        self.skip_ws()
        m = regex.match(self.text, self.pos)
        if m:
            self.pos = m.end()
        return m

    def integer(self, what: str) -> int:
        m = self.match(_INT)
        if m is None:
            self.expected(what)
        return self.to_int(m.group(), m.start())

    def to_int(self, digits: str, pos: int) -> int:
        try:
            return int(digits, 0) if digits.lower().startswith(("0x", "-0x")) else int(digits)
        except ValueError:
            self.fail("integer literal is too long", pos, pos + len(digits))

    def string(self, what: str = "a string") -> str:
        """A double-quoted string with MLIR escapes (``\\"``, ``\\\\``, ``\\n``, ``\\t``, ``\\XX``)."""
        self.skip_ws()
        start = self.pos
        if not self.text.startswith('"', start):
            self.expected(what)
        out = bytearray()
        i = start + 1
        text = self.text
        while True:
            if i >= len(text) or text[i] == "\n":
                self.fail("unterminated string", start, i)
            ch = text[i]
            if ch == '"':
                break
            if ch == "\\":
                nxt = text[i + 1:i + 2]
                if nxt in _ESCAPES:
                    out += _ESCAPES[nxt]
                    i += 2
                    continue
                pair = text[i + 1:i + 3]
                if re.fullmatch(r"[0-9A-Fa-f]{2}", pair):
                    out.append(int(pair, 16))
                    i += 3
                    continue
                self.fail("invalid escape in string (use \\\", \\\\, \\n, \\t or \\XX)", i, i + 2)
            out += ch.encode("utf-8", "surrogatepass")
            i += 1
        self.pos = i + 1
        try:
            return out.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            self.fail("string is not valid UTF-8", start, self.pos)

    def recover_to(self, pattern: str) -> None:
        """Skip to the next line-leading token (at or after here) that matches ``pattern``."""
        regex = re.compile(pattern)
        line = self._line_of(self.pos)
        for start in self.line_starts[line - 1:]:
            ws = _WS.match(self.text, start)
            assert ws is not None       # _WS matches the empty string
            first = ws.end()
            if first >= self.pos and regex.match(self.text, first):
                self.pos = first
                return
        self.pos = len(self.text)

    # -- module and functions ----------------------------------------------------

    def module(self) -> Module:
        module = Module()
        try:
            if self.peek('"builtin.module"') or self.peek('"func.func"'):
                self.generic_module(module)
            elif self.accept_word("module"):
                if self.accept_word("attributes"):
                    module.attrs = self.module_attrs()
                self.expect("{", "to open the module body")
                self.functions(module, inside_module=True)
                self.optional_location()
            else:
                self.functions(module, inside_module=False)
            if not self.at_end():
                self.expected("end of input", within_line=False)
        except _Fail:
            pass
        if self.errors:
            if len(self.errors) == 1:
                raise self.errors[0]
            raise ParseErrors(self.errors[:MAX_ERRORS])
        return module

    # -- MLIR's generic form (mlir-opt --mlir-print-op-generic) -------------------------

    def generic_module(self, module: Module) -> None:
        """``"builtin.module"() ({ "func.func"() <{...}> ({...}) : () -> () ... }) {attrs} : () -> ()``,
        or a bare list of generic ``"func.func"`` ops."""
        seen: dict[str, int] = {}
        if not self.accept('"builtin.module"'):
            while self.peek('"func.func"'):
                self.generic_function(module, seen)
            return
        self.expect("(", "after \"builtin.module\"")
        self.expect(")", "(a module has no operands)")
        if self.accept("<"):
            self.attr_dict()
            self.expect(">", "to close the module's properties")
        self.expect("(", "to open the module's region")
        self.expect("{", "to open the module's region")
        while not self.accept("}"):
            if not self.peek('"func.func"'):
                self.expected("'\"func.func\"' or '}' in the module")
            self.generic_function(module, seen)
        self.expect(")", "to close the module's region")
        if self.peek("{"):
            module.attrs = self.module_attrs()
        self.empty_signature("builtin.module")

    def empty_signature(self, what: str) -> None:
        self.expect(":", f"and the type of '{what}'")
        start = self.pos_after_ws()
        operands, results = self.op_signature()
        if operands or results:
            self.fail(f"'{what}' has the type () -> ()", start, self.pos)
        self.optional_location()

    def generic_function(self, module: Module, seen: dict[str, int]) -> None:
        """``"func.func"() <{function_type = (..) -> (..), res_attrs = [..], sym_name = "f"}>
        ({ ^bb0(%arg0: type, ...): ops "func.return"(...) : (...) -> () }) {attrs} : () -> ()``."""
        start = self.pos_after_ws()
        self.expect('"func.func"')
        self.expect("(", 'after "func.func"')
        self.expect(")", "(a function has no operands)")
        self.expect("<", "and the function's properties")
        props = self.function_properties()
        self.expect(">", "to close the function's properties")
        name = props.get("sym_name")
        if not isinstance(name, str) or "function_type" not in props:
            self.fail("a func.func needs sym_name and function_type properties", start, self.pos)
        if name in seen:
            self.fail(f"redefinition of function @{name}", start, self.pos,
                      [f"previous definition at {self.location(seen[name])}"])
        seen[name] = start
        result_types = props["function_type"][1]
        res_attrs = props.get("res_attrs") or ()
        output_names = [a.get(OUTPUT_NAME_ATTR) if isinstance(a, dict) else None for a in res_attrs]
        self.expect("(", "to open the function's region")
        self.expect("{", "to open the function's region")
        scope: dict[str, _Binding] = {}
        params: list[Value] = []
        if self.match(re.compile(r"\^[A-Za-z0-9_$.-]+")) is not None:
            if self.peek("("):
                params = self.params(scope)
            self.expect(":", "after the block's arguments")
        arg_attrs = props.get("arg_attrs") or ()
        for p, a in zip(params, arg_attrs):
            if isinstance(a, dict) and isinstance(a.get(OUTPUT_NAME_ATTR), str):
                p.name = a[OUTPUT_NAME_ATTR]            # the name dlc printed, kept by mlir-opt
        func = Function(name, params, loc=self.location(start, start + len('"func.func"')))
        errors_before = len(self.errors)
        ok = self.body(func, scope, result_types)
        self.expect(")", "to close the function's region")
        if self.peek("{"):
            attrs, _ = self.attr_dict()
            if "inplace" in attrs:
                attrs["inplace"] = self.inplace_pairs(attrs["inplace"], params)
            func.attrs = attrs
        self.empty_signature("func.func")
        func.output_names = output_names if any(n is not None for n in output_names) else []
        if ok and len(self.errors) == errors_before:
            module.functions.append(func)

    def function_properties(self) -> dict[str, Any]:
        """The ``<{...}>`` of a generic func.func; ``function_type`` is a function type."""
        props: dict[str, Any] = {}
        self.expect("{", "to open the function's properties")
        if self.accept("}"):
            return props
        while True:
            self.skip_ws()
            m = self.match(re.compile(r"[A-Za-z_][A-Za-z0-9_$.]*"))
            if m is None:
                self.expected("a property name")
            self.expect("=", f"after '{m.group()}'")
            if m.group() == "function_type":
                props["function_type"] = self.op_signature()
            else:
                props[m.group()] = self.attr()
            if self.accept("}"):
                return props
            self.expect(",", "or '}' in the function's properties")

    def module_attrs(self) -> dict[str, Any]:
        attrs, positions = self.attr_dict()
        out = {}
        for key, value in attrs.items():
            if not key.startswith(MODULE_ATTR_PREFIX):
                start, end = positions[key]
                self.fail(f"module attribute '{key}' needs the '{MODULE_ATTR_PREFIX}' prefix "
                          "(MLIR requires dialect-prefixed attributes on a module)", start, end)
            out[key[len(MODULE_ATTR_PREFIX):]] = value
        return out

    def functions(self, module: Module, inside_module: bool) -> None:
        seen: dict[str, int] = {}
        while len(self.errors) < MAX_ERRORS:
            if inside_module and self.accept("}"):
                return
            if self.at_end():
                if inside_module and not self.errors:
                    self.expected("'}' to close the module")
                return
            if not self.peek_word("func.func"):
                try:
                    self.expected("'func.func'" + (" or '}'" if inside_module else ""),
                                  within_line=False)
                except _Fail:
                    self.recover_to(_FUNC_START)
                    continue
            try:
                func = self.function(seen)
            except _Fail:
                self.recover_to(_FUNC_START)
                continue
            if func is not None:
                module.add(func)

    def function(self, seen: dict[str, int]) -> Function | None:
        """One ``func.func``; returns None when an error inside its body was recorded."""
        start = self.pos
        self.accept_word("func.func")
        self.skip_ws()
        name_pos = self.pos
        name = self.symbol()
        duplicate = name in seen
        if duplicate:
            prev = self.location(seen[name])
            self.record(f"redefinition of function @{name}", name_pos, self.pos,
                        [f"previous definition at {prev}"])
        else:
            seen[name] = start
        scope: dict[str, _Binding] = {}
        params = self.params(scope)
        result_types, output_names = self.results()
        attrs: dict[str, Any] = {}
        if self.accept_word("attributes"):
            attrs, _ = self.attr_dict()
        self.expect("{", "to open the function body")
        if "inplace" in attrs:
            attrs["inplace"] = self.inplace_pairs(attrs["inplace"], params)
        func = Function(name, params, attrs=attrs, loc=self.location(start, start + len("func.func")))
        errors_before = len(self.errors)
        ok = self.body(func, scope, result_types)
        func.output_names = output_names if any(n is not None for n in output_names) else []
        loc = self.optional_location()
        if loc is not None:
            func.loc = loc
        if not ok or len(self.errors) > errors_before or duplicate:
            return None
        return func

    def inplace_pairs(self, value: Any, params: list[Value]) -> Any:
        """``inplace`` pairs with their parameter as a name: the printer writes its position
        (``[[1, 0]]``); a name is accepted as well.  Anything else is left for the verifier."""
        if not isinstance(value, tuple):
            return value
        pairs = []
        for pair in value:
            if (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[1], int)
                    and not isinstance(pair[1], bool) and 0 <= pair[1] < len(params)):
                pair = (pair[0], params[pair[1]].name)
            pairs.append(pair)
        return tuple(pairs)

    def symbol(self) -> str:
        if not self.accept("@"):
            self.expected("'@' and a function name")
        if self.peek('"'):
            return self.string()
        m = self.match(_SUFFIX_ID)
        if m is None:
            self.expected("a function name")
        return m.group()

    def params(self, scope: dict[str, _Binding]) -> list[Value]:
        self.expect("(", "to open the parameter list")
        params: list[Value] = []
        if self.accept(")"):
            return params
        while True:
            self.skip_ws()
            pos = self.pos
            m = self.match(_VALUE_ID)
            if m is None:
                self.expected("a parameter name like '%x'")
            name = m.group(1)
            self.expect(":", "after the parameter name")
            value = Value(self.type(), None, len(params), name)
            self.define(scope, name, [value], pos, m.end())
            if self.peek("{"):
                value.name = self.output_name("argument") or name     # {dl.name = "x"}: its name
            self.optional_location()
            params.append(value)
            if self.accept(")"):
                return params
            self.expect(",", "or ')' in the parameter list")

    def results(self) -> tuple[list[TensorType], list[str | None]]:
        types: list[TensorType] = []
        names: list[str | None] = []
        if not self.accept("->"):
            return types, names
        if not self.accept("("):
            return [self.type()], [None]
        if self.accept(")"):
            return types, names
        while True:
            types.append(self.type())
            names.append(self.output_name() if self.peek("{") else None)
            if self.accept(")"):
                return types, names
            self.expect(",", "or ')' in the result list")

    def output_name(self, what: str = "result") -> str | None:
        """The ``{dl.name = "..."}`` of a result or an argument (the only attribute allowed)."""
        attrs, positions = self.attr_dict()
        for key, value in attrs.items():
            start, end = positions[key]
            if key != OUTPUT_NAME_ATTR:
                self.fail(f"unknown {what} attribute '{key}' (only '{OUTPUT_NAME_ATTR}' is allowed)",
                          start, end)
            if not isinstance(value, str):
                self.fail(f"'{OUTPUT_NAME_ATTR}' must be a string", start, end)
        return attrs.get(OUTPUT_NAME_ATTR)

    # -- function bodies -----------------------------------------------------------

    def body(self, func: Function, scope: dict[str, _Binding], result_types: list[TensorType]) -> bool:
        """Parse ops up to the closing ``}``; False if the function could not be completed."""
        returned = False
        while len(self.errors) < MAX_ERRORS:
            if self.accept("}"):
                if not returned:
                    self.record("expected 'func.return' before '}'", self.pos - 1, self.pos)
                return True
            if self.at_end() or self.peek_word("func.func"):
                self.expected(f"'}}' to close function @{func.name}", within_line=False)
            stmt_start = self.pos
            try:
                if self.peek('"func.return"'):
                    if returned:
                        self.fail("a function has one 'func.return'")
                    returned = True
                    self.generic_return(func, scope, result_types)
                elif self.peek_word("func.return") or self.peek_word("return"):
                    if returned:
                        self.fail("a function has one 'func.return'")
                    returned = True
                    self.return_statement(func, scope, result_types)
                else:
                    if returned:
                        self.fail("ops after 'func.return'")
                    self.statement(func, scope)
            except _Fail:
                if self.pos == stmt_start:
                    self.pos += 1
                self.recover_to(_STATEMENT_START)
        return False

    def statement(self, func: Function, scope: dict[str, _Binding]) -> None:
        """``%0, %1 = "dl.name"(%a, %b) {attrs} : (types) -> types loc(...)``."""
        self.skip_ws()
        start = self.pos
        defs = self.result_names() if self.peek("%") else []
        try:
            self.op(func, scope, defs, start)
        except _Fail:
            for name, _count, pos, _end in defs:
                if name not in scope:
                    scope[name] = _Binding(None, pos)
            raise

    def result_names(self) -> list[tuple[str, int, int, int]]:
        """``%a, %b:2 =``: (name, number of values, start, end) per group."""
        defs: list[tuple[str, int, int, int]] = []
        while True:
            self.skip_ws()
            pos = self.pos
            m = self.match(_VALUE_ID)
            if m is None:
                self.expected("a result name like '%0'")
            count = 1
            end = m.end()
            if self.text.startswith(":", self.pos):
                self.pos += 1
                count = self.integer("the number of results after ':'")
                end = self.pos
                if count < 1:
                    self.fail("a result group needs at least one result", pos, end)
            defs.append((m.group(1), count, pos, end))
            if not self.accept(","):
                break
        self.expect("=", "after the result names")
        return defs

    def op(self, func: Function, scope: dict[str, _Binding],
           defs: list[tuple[str, int, int, int]], start: int) -> None:
        self.skip_ws()
        name_pos = self.pos
        if not self.peek('"'):
            self.expected("an op name in quotes, like '\"dl.add\"'", within_line=bool(defs))
        full_name = self.string()
        name_end = self.pos
        opdef = get_op(full_name) if full_name.startswith("dl.") else None
        if opdef is None:
            self.fail(f"unknown op '{full_name}'", name_pos, name_end)
        self.expect("(", f"to open the operands of '{full_name}'")
        operands = self.operand_list(scope, ")")
        attrs: dict[str, Any] = {}
        if self.peek("{"):
            attrs, _ = self.attr_dict()
        self.expect(":", f"and the type of '{full_name}'")
        sig_pos = self.pos
        operand_types, result_types = self.op_signature()
        sig_end = self.pos
        loc = self.optional_location() or self.location(start, name_end)
        if len(operand_types) != len(operands):
            self.fail(f"'{full_name}' has {len(operands)} operand(s) but its type lists "
                      f"{len(operand_types)}", sig_pos, sig_end)
        for (value, pos, end), t in zip(operands, operand_types):
            if value is not None and value.type != t:
                self.fail(f"'{self.text[pos:end]}' has type {value.type}, but '{full_name}' "
                          f"lists {t}", pos, end)
        n_defs = sum(count for _, count, _, _ in defs)
        if n_defs != len(result_types):
            self.fail(f"'{full_name}' defines {n_defs} result(s) but its type lists "
                      f"{len(result_types)}", sig_pos, sig_end)
        if any(value is None for value, _, _ in operands):
            raise _Fail()   # a use of a value whose definition already failed: no new error
        try:
            attrs = normalize_attrs(opdef, attrs)
        except ShapeError:
            pass            # kept as written; the verifier reports the schema violation
        op = Op(opdef.name, [v for v, _, _ in operands if v is not None], [], attrs, loc)
        op.results = [Value(t, op, i) for i, t in enumerate(result_types)]
        i = 0
        for name, count, pos, end in defs:
            self.define(scope, name, op.results[i:i + count], pos, end)
            i += count
        func.ops.append(op)

    def define(self, scope: dict[str, _Binding], name: str, values: list[Value],
               pos: int, end: int) -> None:
        prev = scope.get(name)
        if prev is not None:
            self.fail(f"redefinition of value '%{name}'", pos, end,
                      [f"previous definition at {self.location(prev.pos)}"])
        scope[name] = _Binding(values, pos)

    def operand_list(self, scope: dict[str, _Binding], close: str) -> list[tuple[Value | None, int, int]]:
        """Uses up to ``close``: (value or None if poisoned, start, end) each."""
        operands: list[tuple[Value | None, int, int]] = []
        if self.accept(close):
            return operands
        while True:
            operands.append(self.use(scope))
            if self.accept(close):
                return operands
            self.expect(",", f"or '{close}' in the operand list")

    def use(self, scope: dict[str, _Binding]) -> tuple[Value | None, int, int]:
        """``%x`` or ``%x#1``: the value it names (None if its definition failed)."""
        self.skip_ws()
        pos = self.pos
        m = self.match(_VALUE_ID)
        if m is None:
            self.expected("a value like '%0'")
        index = None
        idx = _USE_INDEX.match(self.text, self.pos)
        if idx:
            self.pos = idx.end()
            index = self.to_int(idx.group(1), idx.start(1))
        end = self.pos
        binding = scope.get(m.group(1))
        if binding is None:
            self.fail(f"use of undefined value '{self.text[pos:end]}'", pos, end)
        if binding.values is None:
            return None, pos, end
        if index is None:
            if len(binding.values) != 1:
                self.fail(f"'%{m.group(1)}' names {len(binding.values)} results; "
                          f"use '%{m.group(1)}#0' to '%{m.group(1)}#{len(binding.values) - 1}'",
                          pos, end)
            return binding.values[0], pos, end
        if index >= len(binding.values):
            self.fail(f"'%{m.group(1)}' has only {len(binding.values)} result(s)", pos, end)
        return binding.values[index], pos, end

    def op_signature(self) -> tuple[list[TensorType], list[TensorType]]:
        """``(t1, t2) -> t`` or ``(t1) -> (t2, t3)``."""
        self.expect("(", "to open the op's operand types")
        operand_types = self.type_list(")")
        self.expect("->", "between the op's operand and result types")
        if self.accept("("):
            return operand_types, self.type_list(")")
        return operand_types, [self.type()]

    def type_list(self, close: str) -> list[TensorType]:
        types: list[TensorType] = []
        if self.accept(close):
            return types
        while True:
            types.append(self.type())
            if self.accept(close):
                return types
            self.expect(",", f"or '{close}' in the type list")

    def return_statement(self, func: Function, scope: dict[str, _Binding],
                         result_types: list[TensorType]) -> None:
        self.skip_ws()
        start = self.pos
        if not self.accept_word("func.return"):
            self.accept_word("return")
        keyword_end = self.pos
        operands: list[tuple[Value | None, int, int]] = []
        types: list[TensorType] = []
        # Without operands, a '%' on a later line starts an (out of place) op.
        if self.peek("%") and "\n" not in self.text[keyword_end:self.pos]:
            while True:
                operands.append(self.use(scope))
                if not self.accept(","):
                    break
            self.expect(":", "and the returned types")
            types = [self.type()]
            while self.accept(","):
                types.append(self.type())
        self.optional_location()
        self.finish_return(func, operands, types, result_types, start, keyword_end)

    def generic_return(self, func: Function, scope: dict[str, _Binding],
                       result_types: list[TensorType]) -> None:
        """``"func.return"(%0, %1) : (type, type) -> ()``."""
        start = self.pos_after_ws()
        self.string()
        keyword_end = self.pos
        self.expect("(", 'to open the operands of "func.return"')
        operands = self.operand_list(scope, ")")
        self.expect(":", 'and the type of "func.return"')
        types, results = self.op_signature()
        if results:
            self.fail("func.return has no results", start, self.pos)
        self.optional_location()
        self.finish_return(func, operands, types, result_types, start, keyword_end)

    def finish_return(self, func: Function, operands: list[tuple[Value | None, int, int]],
                      types: list[TensorType], result_types: list[TensorType], start: int,
                      keyword_end: int) -> None:
        """Check a return's operands against its types and the function's; set the outputs."""
        if len(types) != len(operands):
            self.fail(f"func.return has {len(operands)} operand(s) but lists {len(types)} type(s)",
                      start, self.pos)
        for (value, pos, end), t in zip(operands, types):
            if value is not None and value.type != t:
                self.fail(f"'{self.text[pos:end]}' has type {value.type}, but func.return lists {t}",
                          pos, end)
        if len(operands) != len(result_types):
            self.fail(f"func.return returns {len(operands)} value(s) but @{func.name} declares "
                      f"{len(result_types)} result(s)", start, keyword_end)
        for i, ((value, pos, end), t) in enumerate(zip(operands, result_types)):
            if value is not None and value.type != t:
                self.fail(f"result {i} of @{func.name} is declared {t}, but func.return gives "
                          f"{value.type}", pos, end)
        if any(value is None for value, _, _ in operands):
            raise _Fail()
        func.outputs = [v for v, _, _ in operands if v is not None]

    # -- types -----------------------------------------------------------------------

    def type(self) -> TensorType:
        """``tensor<?x784xf32, "N">``."""
        start = self.pos_after_ws()
        shape, element, _ = self.tensor_type()
        try:
            dtype = DType.from_name(element)
        except ValueError:
            self.fail(f"unknown element type '{element}' (expected f32, f64, i32, i64 or i1)",
                      start, self.pos)
        if element == "bool":
            self.fail("the element type of bool tensors is spelled 'i1'", start, self.pos)
        return TensorType(dtype, tuple(shape))

    def pos_after_ws(self) -> int:
        self.skip_ws()
        return self.pos

    def tensor_type(self) -> tuple[list[Dim], str, int]:
        """The parts of a tensor type: its dims (symbols resolved), element name, start."""
        start = self.pos_after_ws()
        if not self.accept_word("tensor"):
            self.expected("a tensor type like 'tensor<2x3xf32>'")
        if not self.text.startswith("<", self.pos):
            self.expected("'<' after 'tensor'")
        self.pos += 1
        dims: list[int | None] = []
        while m := _DIM.match(self.text, self.pos):
            self.pos = m.end()
            dims.append(None if m.group(1) == "?" else self.to_int(m.group(1), m.start()))
        m = _ELEMENT.match(self.text, self.pos)
        if m is None:
            self.fail(f"expected dims like '2x' or '?x' and an element type in the tensor type, "
                      f"found {self.found()}")
        self.pos = m.end()
        element = m.group()
        symbols: list[str] = []
        enc_pos = self.pos
        if self.accept(","):
            enc_pos = self.pos_after_ws()
            encoding = self.string("the symbol names of the '?' dims, like \"N\"")
            symbols = split_top_level(encoding) if encoding else []
        if not self.accept(">"):
            self.expected("'>' to close the tensor type")
        n_dynamic = sum(d is None for d in dims)
        if n_dynamic != len(symbols):
            if not symbols:
                self.fail("'?' dims need their symbol names in the encoding, e.g. "
                          "'tensor<?x784xf32, \"N\">'", start, self.pos)
            self.fail(f"the tensor type has {n_dynamic} '?' dim(s) but its encoding names "
                      f"{len(symbols)} symbol(s)", enc_pos, self.pos)
        named: list[Dim] = []
        for s in symbols:
            if _BARE_ID.fullmatch(s):
                named.append(s)
                continue
            try:
                d = parse_dim(s)
            except DimSyntaxError as e:
                self.fail(f"invalid symbol name or dim expression '{s}' in the tensor type: {e}",
                          enc_pos, self.pos)
            if isinstance(d, int):
                self.fail(f"the '?' dim '{s}' is the constant {d}; write it as {d}", enc_pos, self.pos)
            named.append(d)
        it = iter(named)
        shape: list[Dim] = [next(it) if d is None else d for d in dims]
        problem = shape_problem(tuple(shape))
        if problem is not None:
            self.fail(problem, start, self.pos)
        return shape, element, start

    # -- locations ---------------------------------------------------------------------

    def optional_location(self) -> Location | None:
        if not self.accept_word("loc"):
            return None
        self.expect("(", "after 'loc'")
        loc = self.location_body(backward_allowed=True)
        self.expect(")", "to close the location")
        return loc

    def location_body(self, backward_allowed: bool) -> Location:
        self.skip_ws()
        start = self.pos
        if self.accept_word("unknown"):
            return UNKNOWN
        if self.peek("#"):
            self.fail("location aliases ('#loc') are not supported; print with "
                      "'--mlir-print-local-scope'")
        if not self.peek('"'):
            self.expected("a location: 'unknown', '\"file\":line:col' or '\"backward\"(...)'")
        name = self.string()
        if self.accept(":"):
            line = self.integer("a line number")
            self.expect(":", "between line and column")
            col = self.integer("a column number")
            end_line = end_col = None
            if self.accept_word("to"):
                end_line = line if self.peek(":") else self.integer("an end line")
                self.expect(":", "before the end column")
                end_col = self.integer("an end column")
            return Location(name, line, col, end_line, end_col)
        if name != "backward" or not backward_allowed:
            self.fail(f"unsupported location '{self.text[start:self.pos]}' (expected a file location, "
                      "'unknown' or '\"backward\"(...)')", start, self.pos)
        if not self.accept("("):
            return UNKNOWN.as_backward()
        inner = self.location_body(backward_allowed=False)
        self.expect(")", "to close the backward location")
        return inner.as_backward()

    # -- attributes ----------------------------------------------------------------------

    def attr_dict(self, depth: int = 0) -> tuple[dict[str, Any], dict[str, tuple[int, int]]]:
        """``{a = 1, b}``: the values (``b`` alone is unit, i.e. None) and each key's span."""
        self.expect("{", "to open an attribute dictionary")
        attrs: dict[str, Any] = {}
        positions: dict[str, tuple[int, int]] = {}
        if self.accept("}"):
            return attrs, positions
        while True:
            self.skip_ws()
            pos = self.pos
            if self.peek('"'):
                key = self.string()
            else:
                m = self.match(_BARE_ID)
                if m is None:
                    self.expected("an attribute name")
                key = m.group()
            end = self.pos
            if key in attrs:
                self.fail(f"duplicate attribute '{key}'", pos, end)
            attrs[key] = self.attr(depth + 1) if self.accept("=") else None
            positions[key] = (pos, end)
            if self.accept("}"):
                return attrs, positions
            self.expect(",", "or '}' in the attribute dictionary")

    def attr(self, depth: int = 0) -> Any:
        """One attribute value (see the grammar in the module docstring)."""
        if depth > MAX_NESTING:
            self.fail("attributes are nested too deeply")
        self.skip_ws()
        start = self.pos
        if self.accept_word("unit"):
            return None
        if self.accept_word("true"):
            return True
        if self.accept_word("false"):
            return False
        if self.peek('"'):
            return self.string()
        if self.accept("["):
            items: list[Any] = []
            if self.accept("]"):
                return tuple(items)
            while True:
                items.append(self.attr(depth + 1))
                if self.accept("]"):
                    return tuple(items)
                self.expect(",", "or ']' in the list")
        if self.peek("{"):
            return self.attr_dict(depth)[0]
        if self.peek_word("dense"):
            return self.dense()
        if self.peek_word("tensor"):
            return self.type()
        if m := self.match(_NUMBER):
            return self.number(m)
        m = self.match(_BARE_ID)
        if m is not None:
            try:
                dtype = DType(m.group())
            except ValueError:
                self.fail(f"unknown attribute value '{m.group()}'", start, self.pos)
            return dtype
        self.expected("an attribute value")

    def number(self, m: re.Match[str]) -> int | float:
        """An int, a float, or hex bits with a float type (``0x7FF0000000000000 : f64``)."""
        text = m.group()
        is_hex = "x" in text
        suffix = None
        save = self.pos
        if self.accept(":"):
            t = self.match(_NUMBER_TYPE)
            if t is None:
                self.pos = save          # the ':' belongs to the enclosing syntax
            else:
                suffix = t.group()
        float_type = suffix in ("f16", "bf16", "f32", "f64")
        if is_hex and float_type:
            if text.startswith("-"):
                self.fail("a hexadecimal float literal has no sign", m.start(), m.end())
            bits = self.to_int(text, m.start())
            return float(self.float_from_bits(bits, suffix or "f64", m.start(), m.end()))
        if "." in text:
            if suffix is not None and not float_type:
                self.fail(f"a float literal cannot have type {suffix}", m.start(), self.pos)
            return self.decimal(text, suffix or "f64", m.start())
        if float_type:
            self.fail("an integer literal cannot have a float type (write it with a '.')",
                      m.start(), self.pos)
        value = self.to_int(text, m.start())
        width = _INT_TYPE.fullmatch(suffix or "")
        if width is not None:
            bits, unsigned = int(width.group(2)), width.group(1) == "u"
            low, high = (0, 2 ** bits - 1) if unsigned else (-2 ** (bits - 1), 2 ** (bits - 1) - 1)
            if not low <= value <= high:
                self.fail(f"{abbreviate(text)} does not fit in {suffix}", m.start(), self.pos)
        return value

    def decimal(self, text: str, type_name: str, start: int) -> float:
        """A decimal float literal of ``type_name``; beyond that type's range is an error
        (infinities are written as hex bits)."""
        value = float(text)
        with np.errstate(over="ignore"):
            rounded = np.array(value, dtype=DENSE_ELEMENT_TYPES.get(type_name, np.dtype(np.float64)))
        if np.isinf(rounded):
            self.fail(f"{abbreviate(text)} does not fit in {type_name}", start, start + len(text))
        return value

    def float_from_bits(self, bits: int, type_name: str, start: int, end: int) -> np.floating:
        """The float of ``type_name`` with these bits, as a numpy scalar of that type: every
        bit kept, a signalling NaN's too (converting through a Python float would quiet it)."""
        widths: dict[str, tuple[type[np.unsignedinteger], type[np.floating]]] = {
                  "f16": (np.uint16, np.float16), "f32": (np.uint32, np.float32),
                  "f64": (np.uint64, np.float64)}
        if type_name not in widths:
            self.fail(f"hexadecimal literals of type {type_name} are not supported", start, end)
        int_type, float_type = widths[type_name]
        if not 0 <= bits <= np.iinfo(int_type).max:
            self.fail(f"hexadecimal literal does not fit in {type_name}", start, end)
        # indexing a 0-d array with () gives its scalar, which numpy's stubs type as an array
        return cast(np.floating, np.array(bits, dtype=int_type).view(float_type)[()])

    # -- dense arrays ----------------------------------------------------------------------

    def dense(self) -> np.ndarray:
        """``dense<[[1.0, 2.0]]> : tensor<1x2xf32>``, a splat ``dense<0.0> : ...``, or hex bytes."""
        start = self.pos
        self.accept_word("dense")
        if not self.text.startswith("<", self.pos):
            self.expected("'<' after 'dense'")
        self.pos += 1
        body: Any = None
        if not self.peek(">"):
            body = self.dense_body(0)
        self.expect(">", "to close the dense literal")
        self.expect(":", "and the dense literal's tensor type")
        shape, element, type_pos = self.tensor_type()
        if element not in DENSE_ELEMENT_TYPES:
            self.fail(f"unknown element type '{element}' for a dense literal", type_pos, self.pos)
        static = [d for d in shape if isinstance(d, int)]
        if len(static) != len(shape):
            self.fail("a dense literal needs a static shape", type_pos, self.pos)
        return self.dense_array(body, static, DENSE_ELEMENT_TYPES[element],
                                start, element)

    def dense_body(self, depth: int) -> Any:
        if depth > MAX_NESTING:
            self.fail("dense literal is nested too deeply")
        self.skip_ws()
        pos = self.pos
        if self.accept("["):
            items: list[Any] = []
            if self.accept("]"):
                return items
            while True:
                items.append(self.dense_body(depth + 1))
                if self.accept("]"):
                    return items
                self.expect(",", "or ']' in the dense literal")
        if self.peek('"'):
            return ("hex-bytes", self.string(), pos)
        if self.accept_word("true"):
            return _Element("bool", True, pos, "true")
        if self.accept_word("false"):
            return _Element("bool", False, pos, "false")
        m = self.match(_NUMBER)
        if m is None:
            self.expected("a number, 'true', 'false' or '[' in the dense literal")
        text = m.group()
        if "x" in text:
            return _Element("hex", self.to_int(text, pos), pos, text)
        if "." in text:
            return _Element("float", float(text), pos, text)
        return _Element("int", self.to_int(text, pos), pos, text)

    def dense_array(self, body: Any, shape: list[int], dtype: np.dtype, start: int,
                    element: str) -> np.ndarray:
        size = extent = 1
        for d in shape:
            size *= d
            extent *= max(d, 1)     # numpy refuses even an empty array of a larger extent
        type_text = f"tensor<{''.join(f'{d}x' for d in shape)}{element}>"
        if extent > MAX_DENSE_ELEMENTS:
            self.fail(f"dense literal of {size} elements ({type_text}) is too large", start, self.pos)
        if body is None or isinstance(body, (_Element, tuple)):
            if body is None:
                if size != 0:
                    self.fail(f"empty dense literal for {type_text}, which has {size} element(s)",
                              start, self.pos)
                return np.zeros(shape, dtype)
            if isinstance(body, tuple):
                return self.dense_from_hex(body[1], body[2], shape, size, dtype)
            return np.full(shape, self.element_value(body, dtype, element), dtype)
        found = self.nested_shape(body)
        if found is None:
            self.fail("dense literal is ragged: its sublists have different shapes", start, self.pos)
        if size == 0 and 0 in found:
            return np.zeros(shape, dtype)
        if found != shape:
            self.fail(f"dense literal has shape {found} but its type is {type_text}", start, self.pos)
        flat: list[_Element] = []
        _flatten(body, flat)
        values = [self.element_value(e, dtype, element) for e in flat]
        return np.array(values, dtype=dtype).reshape(shape)

    def nested_shape(self, body: Any) -> list[int] | None:
        """The shape of a nested list literal, or None if it is ragged."""
        if not isinstance(body, list):
            if isinstance(body, tuple):
                self.fail("a hex string must be the whole dense literal", body[2], body[2] + 1)
            return []
        shapes = [self.nested_shape(b) for b in body]
        if any(s is None or s != shapes[0] for s in shapes):
            return None
        first = shapes[0] if shapes else []
        assert first is not None    # no shape is None (checked above)
        return [len(body)] + first

    def element_value(self, e: _Element, dtype: np.dtype, element: str) -> Any:
        end = e.pos + len(e.text)
        if dtype == np.bool_:
            if e.kind == "bool" or (e.kind == "int" and e.value in (0, 1)):
                return bool(e.value)
            self.fail(f"expected true or false in an {element} dense literal, found '{e.text}'",
                      e.pos, end)
        if dtype.kind in "iu":
            if e.kind not in ("int", "hex"):
                self.fail(f"expected an integer in an {element} dense literal, found '{e.text}'",
                          e.pos, end)
            info = np.iinfo(dtype)
            if not info.min <= e.value <= info.max:
                self.fail(f"{abbreviate(e.text)} does not fit in {element}", e.pos, end)
            return e.value
        if e.kind == "bool":
            self.fail(f"expected a number in an {element} dense literal, found '{e.text}'", e.pos, end)
        if e.kind == "hex":
            return self.float_from_bits(e.value, element, e.pos, end)
        return np.array(self.decimal(e.text, element, e.pos), dtype=dtype)

    def dense_from_hex(self, text: str, pos: int, shape: list[int], size: int,
                       dtype: np.dtype) -> np.ndarray:
        if not re.fullmatch(r"0x(?:[0-9A-Fa-f]{2})*", text):
            self.fail("a dense literal string must be hex bytes like \"0x0000803F\"", pos, self.pos)
        data = bytes.fromhex(text[2:])
        if len(data) == dtype.itemsize:
            return np.full(shape, np.frombuffer(data, dtype.newbyteorder("<"))[0], dtype)
        if len(data) != size * dtype.itemsize:
            self.fail(f"hex dense literal has {len(data)} bytes, expected {size * dtype.itemsize}",
                      pos, self.pos)
        return np.frombuffer(data, dtype.newbyteorder("<")).astype(dtype).reshape(shape)


_FUNC_START = r"func\.func" + _WORD_END
# The code of one line up to a `//` comment (strings may hold '/').
_CODE = r'(?:[^"/\n]|"(?:[^"\\\n]|\\.)*"?|/(?!/))*'


def _flatten(body: Any, out: list[_Element]) -> None:
    if isinstance(body, list):
        for b in body:
            _flatten(b, out)
    else:
        out.append(body)
