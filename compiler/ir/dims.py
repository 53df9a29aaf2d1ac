"""Dims computed from symbols: ``N-1``, ``(N+1)//2``, ``2*N``, ``max(N-1,0)``.

A dim of a tensor type is an ``int`` (static), a ``str`` (a symbol, bound by a call's
arguments) or a :class:`DimExpr`: an integer expression of symbols that a slice, a
concatenation or a pad of a symbolic dim produces.  The expression language is small:

======================  ================================================================
``a + b``, ``a - b``    sums of terms, each an integer times an *atom*
``k * a``               ``k`` an integer (a product of two symbols is not a dim here)
``a // k``              floor division by an integer ``k >= 1``
``max(a, b, ..)``       and ``min(..)``: numpy's clamping of slice bounds
``wrap(a, n)``          ``a + n`` when ``a < 0``, else ``a``: a negative slice bound
                        counting from the end of a dim ``n``, decided at run time
======================  ================================================================

**One form per value the rules can see.**  Every expression is built by the constructors
here (:func:`add`, :func:`scale`, :func:`floordiv`, :func:`maximum`, :func:`minimum`,
:func:`wrap`), which put it in a normal form: constants folded, like terms collected,
terms in a fixed order, ``max``/``min`` outermost (``N - min(1, N)`` is ``max(N-1,0)``),
an argument of ``max`` dropped when another is provably at least as large (every symbol
is ``>= 0``).  Two dims are equal when their normal forms are equal (``==`` on the
dataclass), so ``x[1:]`` and ``x[1:N]`` have the same type, and so do ``N+1-1`` and ``N``.

**Text.**  :func:`format_dim` prints the normal form with no spaces (``max(N-1,0)``) and
:func:`parse_dim` reads it back into the same value; a tensor type's encoding holds this
text for each of its ``?`` dims (``tensor<?x?xf32, "N,max(N-1,0)">``).

**Values.**  :func:`evaluate` computes a dim from a call's symbol bindings (the runtime,
the interpreter); native code computes the same expression in ``i64`` from the symbols
it is passed (``KernelContext.dim`` in ``compiler/codegen/kernels.py``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True, slots=True)
class DimExpr:
    """A dim computed from symbols, in normal form (build it with this module's functions).

    ``op`` is one of ``add`` (``args``: terms, a nonzero int constant last), ``mul``
    (``(k, atom)``), ``floordiv`` (``(expr, k)``, ``k >= 2``), ``max``/``min`` (two or more
    args in a fixed order) or ``wrap`` (``(expr, n)``)."""

    op: str
    args: tuple[int | str | DimExpr, ...]

    def __str__(self) -> str:
        return format_dim(self)


Dim = int | str | DimExpr


class DimSyntaxError(ValueError):
    """A dim expression that cannot be read or is outside the language (a message)."""


# Bounds on the work one dim may cause: the arguments of one max/min after
# normalization, the nesting of a dim's text, and its length.
MAX_EXTREMUM_ARGS = 32
MAX_NESTING = 32
MAX_TEXT = 1000


# ---------------------------------------------------------------------------
# Constructors (each returns a normal form)


def _affine(d: Dim) -> tuple[int, dict[Dim, int]]:
    """``d`` as ``constant + sum(coefficient * atom)``."""
    if isinstance(d, int):
        return d, {}
    if isinstance(d, DimExpr) and d.op == "add":
        return _collect(d.args)
    if isinstance(d, DimExpr) and d.op == "mul":
        k, atom = d.args
        assert isinstance(k, int)
        return 0, {atom: k}
    return 0, {d: 1}


def _collect(parts: Iterable[Dim]) -> tuple[int, dict[Dim, int]]:
    """The sum of ``parts`` as ``constant + sum(coefficient * atom)``."""
    total, terms = 0, dict[Dim, int]()
    for part in parts:
        c, more = _affine(part)
        total += c
        for atom, k in more.items():
            terms[atom] = terms.get(atom, 0) + k
    return total, terms


def _sort_key(d: Dim) -> tuple[int, str]:
    """Symbols first, then expressions by their text, a constant last."""
    if isinstance(d, int):
        return 2, ""
    return (0, d) if isinstance(d, str) else (1, format_dim(d))


def _from_affine(constant: int, terms: Mapping[Dim, int]) -> Dim:
    """The normal form of ``constant + sum(k * atom)``; a ``max``/``min`` atom is moved
    outermost (``c + max(a, b) = max(c + a, c + b)``, a negative factor turns it into a ``min``)."""
    terms = {a: k for a, k in terms.items() if k}
    for atom, k in terms.items():
        if isinstance(atom, DimExpr) and atom.op in ("max", "min"):
            rest = {a: v for a, v in terms.items() if a != atom}
            op = atom.op if k > 0 else _FLIPPED[atom.op]
            return _extremum(op, [add(_from_affine(constant, rest), scale(arg, k)) for arg in atom.args])
    parts: list[Dim] = [a if k == 1 else DimExpr("mul", (k, a))
                        for a, k in sorted(terms.items(), key=lambda t: _sort_key(t[0]))]
    if constant or not parts:
        parts.append(constant)
    return parts[0] if len(parts) == 1 else DimExpr("add", tuple(parts))


_FLIPPED = {"max": "min", "min": "max"}


def add(*dims: Dim) -> Dim:
    """The sum of ``dims``."""
    return _from_affine(*_collect(dims))


def scale(d: Dim, k: int) -> Dim:
    """``k * d``."""
    c, terms = _affine(d)
    return _from_affine(k * c, {a: k * v for a, v in terms.items()})


def sub(a: Dim, b: Dim) -> Dim:
    """``a - b``."""
    return add(a, scale(b, -1))


def floordiv(a: Dim, k: int) -> Dim:
    """``a // k`` rounding down, for an integer ``k >= 1``."""
    if k < 1:
        raise DimSyntaxError(f"a dim can only be divided by a positive integer, not {k}")
    if k == 1:
        return a
    if isinstance(a, int):
        return a // k
    if isinstance(a, DimExpr) and a.op in ("max", "min"):     # // k is monotone
        return _extremum(a.op, [floordiv(x, k) for x in a.args])
    if isinstance(a, DimExpr) and a.op == "floordiv":         # (x // j) // k = x // (j * k)
        inner, j = a.args
        assert isinstance(j, int)
        return floordiv(inner, j * k)
    c, terms = _affine(a)
    # (k*w + r + c) // k = w + c // k + (r + c % k) // k
    whole = {t: v // k for t, v in terms.items() if v % k == 0}
    rest = {t: v for t, v in terms.items() if v % k}
    if not rest:
        return _from_affine(c // k, whole)
    remainder = _from_affine(c % k, rest)
    return add(_from_affine(c // k, whole), DimExpr("floordiv", (remainder, k)))


def ceildiv(a: Dim, k: int) -> Dim:
    """``-(-a // k)``: ``a / k`` rounding up, for an integer ``k >= 1``."""
    return floordiv(add(a, k - 1), k)


def maximum(*dims: Dim) -> Dim:
    return _extremum("max", list(dims))


def minimum(*dims: Dim) -> Dim:
    return _extremum("min", list(dims))


def clamp(d: Dim, lo: Dim, hi: Dim) -> Dim:
    """``min(max(d, lo), hi)``."""
    return minimum(maximum(d, lo), hi)


def _extremum(op: str, args: list[Dim]) -> Dim:
    flat: list[Dim] = []
    for a in args:
        flat.extend(a.args if isinstance(a, DimExpr) and a.op == op else (a,))
    pick = max if op == "max" else min
    ints = [a for a in flat if isinstance(a, int)]
    rest: list[Dim] = []
    for a in flat:
        if not isinstance(a, int) and a not in rest:
            rest.append(a)
    if ints:
        rest.append(pick(ints))
    if len(rest) > MAX_EXTREMUM_ARGS:
        raise DimSyntaxError(f"a dim's {op}(..) would have {len(rest)} arguments (at most "
                             f"{MAX_EXTREMUM_ARGS}); the expression is too complex")
    kept = [a for i, a in enumerate(rest)
            if not any(j != i and _covers(op, b, a) and (j < i or not _covers(op, a, b))
                       for j, b in enumerate(rest))]
    if len(kept) == 1:
        return kept[0]
    return DimExpr(op, tuple(sorted(kept, key=_sort_key)))


def _covers(op: str, b: Dim, a: Dim) -> bool:
    """Whether ``b`` makes ``a`` redundant in ``op(a, b)`` for every binding (b >= a for max)."""
    c, terms = _affine(b)
    c_a, terms_a = _affine(a)
    for atom, k in terms_a.items():
        terms[atom] = terms.get(atom, 0) - k
    lo, hi = _linear_bounds(c - c_a, terms)     # b - a, not normalized: no constructor runs again
    return lo >= 0 if op == "max" else hi <= 0


def wrap(d: Dim, n: Dim) -> Dim:
    """``d + n`` when ``d < 0``, else ``d``: numpy's reading of a negative index into a dim ``n``."""
    lo, hi = bounds(d)
    if lo >= 0:
        return d
    if hi < 0:
        return add(d, n)
    return DimExpr("wrap", (d, n))


# ---------------------------------------------------------------------------
# Bounds and values


def bounds(d: Dim) -> tuple[float, float]:
    """The least and greatest value ``d`` can take when every symbol is ``>= 0`` (``inf`` unbounded)."""
    if isinstance(d, int):
        return d, d
    if isinstance(d, str):
        return 0, math.inf
    if d.op == "add":
        return _linear_bounds(*_affine(d))
    if d.op == "mul":
        k, atom = d.args
        assert isinstance(k, int)
        lo, hi = bounds(atom)
        return (k * lo, k * hi) if k > 0 else (k * hi, k * lo)
    if d.op == "floordiv":
        inner, k = d.args
        assert isinstance(k, int)
        lo, hi = bounds(inner)
        return _floor(lo / k), _floor(hi / k)
    if d.op in ("max", "min"):
        parts = [bounds(a) for a in d.args]
        pick = max if d.op == "max" else min
        return pick(p[0] for p in parts), pick(p[1] for p in parts)
    e, n = (bounds(a) for a in d.args)           # wrap
    return min(e[0] + n[0], max(e[0], 0)), max(e[1], n[1] - 1)


def _linear_bounds(constant: int, terms: Mapping[Dim, int]) -> tuple[float, float]:
    """Bounds of ``constant + sum(k * atom)``, with each ``e // q`` atom read as ``e/q - r/q``
    (``0 <= r < q``) so that like terms cancel (``N - N//2 >= 0``); the sum is an integer,
    so the bounds round inwards.  A ``max``/``min`` atom is split into its arguments
    (``r + max(x, y)`` is ``max(r + x, r + y)``), so that ``max(N-1,0) - N <= 0``."""
    for atom, k in terms.items():
        if k and isinstance(atom, DimExpr) and atom.op in ("max", "min"):
            rest = {a: v for a, v in terms.items() if a != atom}
            parts = []
            for arg in atom.args:
                c, more = _affine(arg)
                combined = dict(rest)
                for a, v in more.items():
                    combined[a] = combined.get(a, 0) + k * v
                parts.append(_linear_bounds(constant + k * c, combined))
            pick = max if (atom.op == "max") == (k > 0) else min
            return pick(p[0] for p in parts), pick(p[1] for p in parts)
    linear: dict[Dim, Fraction] = {}
    lo = hi = Fraction(constant)
    work = [(atom, Fraction(v)) for atom, v in terms.items()]
    while work:
        atom, w = work.pop()
        if isinstance(atom, DimExpr) and atom.op == "floordiv":
            inner, q = atom.args
            assert isinstance(q, int)
            slack = w * Fraction(q - 1, q)              # k * r/q, r in [0, q-1]
            lo, hi = (lo - slack, hi) if w > 0 else (lo, hi - slack)
            c, more = _affine(inner)
            lo, hi = lo + w * Fraction(c, q), hi + w * Fraction(c, q)
            work.extend((a, w * Fraction(v, q)) for a, v in more.items())
        else:
            linear[atom] = linear.get(atom, Fraction(0)) + w
    low: Fraction | float = lo
    high: Fraction | float = hi
    for atom, w in linear.items():
        if w == 0:
            continue
        a_lo, a_hi = bounds(atom)
        low += w * a_lo if w > 0 else w * a_hi
        high += w * a_hi if w > 0 else w * a_lo
    return _ceil(low), _floor(high)


def _ceil(x: Fraction | float) -> float:
    return x if isinstance(x, float) and math.isinf(x) else float(math.ceil(x))


def _floor(x: Fraction | float) -> float:
    return x if isinstance(x, float) and math.isinf(x) else float(math.floor(x))


def evaluate(d: Dim, bindings: Mapping[str, int]) -> int:
    """``d``'s value with its symbols bound by ``bindings`` (KeyError for an unbound one)."""
    if isinstance(d, int):
        return d
    if isinstance(d, str):
        return bindings[d]
    if d.op == "add":
        return sum(evaluate(a, bindings) for a in d.args)
    if d.op == "mul":
        return evaluate(d.args[0], bindings) * evaluate(d.args[1], bindings)
    if d.op == "floordiv":
        return evaluate(d.args[0], bindings) // evaluate(d.args[1], bindings)
    if d.op in ("max", "min"):
        values = [evaluate(a, bindings) for a in d.args]
        return max(values) if d.op == "max" else min(values)
    value, n = (evaluate(a, bindings) for a in d.args)
    return value + n if value < 0 else value


def free_symbols(d: Dim) -> tuple[str, ...]:
    """The symbols ``d`` depends on, in order of first appearance."""
    if isinstance(d, int):
        return ()
    if isinstance(d, str):
        return (d,)
    out: list[str] = []
    for a in d.args:
        out.extend(s for s in free_symbols(a) if s not in out)
    return tuple(out)


def substitute(d: Dim, binding: Mapping[str, Dim]) -> Dim:
    """``d`` with its symbols replaced per ``binding`` (each by an int, symbol or expression)."""
    if isinstance(d, int):
        return d
    if isinstance(d, str):
        return binding.get(d, d)
    args = [substitute(a, binding) for a in d.args]
    if d.op == "add":
        return add(*args)
    if d.op == "mul":
        k, atom = args
        assert isinstance(k, int)
        return scale(atom, k)
    if d.op == "floordiv":
        inner, k = args
        assert isinstance(k, int)
        return floordiv(inner, k)
    if d.op in ("max", "min"):
        return _extremum(d.op, args)
    return wrap(args[0], args[1])


def never_together(*constraints: tuple[Dim, float, float]) -> bool:
    """Whether no value of the one symbol (``>= 0``) the dims share satisfies every
    ``low <= dim <= high`` at once; False when that cannot be decided (a dim that is not
    affine, or two symbols)."""
    lo_s, hi_s = 0.0, math.inf          # the values of the symbol still possible
    symbols: set[Dim] = set()
    for d, low, high in constraints:
        c, terms = _affine(d)
        symbols.update(terms)
        if len(symbols) > 1 or any(not isinstance(a, str) for a in terms):
            return False
        k = next(iter(terms.values()), 0)
        for bound, at_least in ((low - c, True), (high - c, False)):    # k*s >= bound / k*s <= bound
            if k == 0:
                if (0 < bound) if at_least else (0 > bound):
                    return True
            elif math.isfinite(bound) and (k > 0) == at_least:
                lo_s = max(lo_s, math.ceil(bound / k))
            elif math.isfinite(bound):
                hi_s = min(hi_s, math.floor(bound / k))
    return lo_s > hi_s


# ---------------------------------------------------------------------------
# Text


def format_dim(d: Dim) -> str:
    """The text of a dim: ``3``, ``N``, ``N-1``, ``2*N+M``, ``(N+1)//2``, ``max(N-1,0)``."""
    if isinstance(d, (int, str)):
        return str(d)
    if d.op == "add":
        out = ""
        for i, term in enumerate(d.args):
            text = _term_text(term)
            out += text if i == 0 or text.startswith("-") else "+" + text
        return out
    if d.op == "mul":
        return _term_text(d)
    if d.op == "floordiv":
        inner, k = d.args
        text = format_dim(inner)
        return f"({text})//{k}" if isinstance(inner, DimExpr) and inner.op in ("add", "mul") else f"{text}//{k}"
    return f"{d.op}({','.join(format_dim(a) for a in d.args)})"


def _term_text(term: Dim) -> str:
    if isinstance(term, DimExpr) and term.op == "mul":
        k, atom = term.args
        text = _atom_text(atom)
        return f"-{text}" if k == -1 else f"{k}*{text}"
    return _atom_text(term)


def _atom_text(atom: Dim) -> str:
    text = format_dim(atom)
    return f"({text})" if isinstance(atom, DimExpr) and atom.op == "floordiv" else text


_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_][A-Za-z0-9_$.]*)|(//|[-+*(),]))")
_FUNCTIONS = {"max": maximum, "min": minimum}


def parse_dim(text: str) -> Dim:
    """Read a dim's text (:func:`format_dim`'s form, spaces allowed) into its normal form.
    Raises :class:`DimSyntaxError` with a message for text outside the language."""
    if len(text) > MAX_TEXT:
        raise DimSyntaxError(f"a dim's text may be at most {MAX_TEXT} characters, got {len(text)}")
    tokens: list[str] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise DimSyntaxError(f"unexpected '{text[pos:].strip()[:10]}' in dim '{text}'")
        tokens.append(m.group(m.lastindex or 0))
        pos = m.end()
    reader = _Reader(tokens, text)
    d = reader.sum()
    if reader.i != len(tokens):
        raise DimSyntaxError(f"unexpected '{tokens[reader.i]}' in dim '{text}'")
    return d


class _Reader:
    """Recursive descent over the tokens of a dim: sum := product (('+'|'-') product)*;
    product := unary (('*'|'//') unary)*; unary := '-' unary | atom;
    atom := int | symbol | max(..) | min(..) | wrap(a, n) | '(' sum ')'."""

    def __init__(self, tokens: list[str], text: str):
        self.tokens, self.text, self.i = tokens, text, 0
        self.depth = 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            found = "the end" if tok is None else f"'{tok}'"
            raise DimSyntaxError(f"expected {f'{want!r}' if want else 'a dim'} in dim '{self.text}', "
                                 f"found {found}")
        self.i += 1
        return tok

    def sum(self) -> Dim:
        out = self.product()
        while self.peek() in ("+", "-"):
            sign = self.take()
            rhs = self.product()
            out = add(out, rhs) if sign == "+" else sub(out, rhs)
        return out

    def product(self) -> Dim:
        out = self.unary()
        while self.peek() in ("*", "//"):
            op = self.take()
            rhs = self.unary()
            if op == "//":
                if not isinstance(rhs, int):
                    raise DimSyntaxError(f"a dim can only be divided by an integer, in '{self.text}'")
                out = floordiv(out, rhs)
            elif isinstance(out, int):
                out = scale(rhs, out)
            elif isinstance(rhs, int):
                out = scale(out, rhs)
            else:
                raise DimSyntaxError(f"a product of two symbolic dims is not a dim, in '{self.text}'")
        return out

    def unary(self) -> Dim:
        """Every nesting (a sign, parentheses, a function's arguments) passes here once."""
        self.depth += 1
        try:
            if self.depth > MAX_NESTING:
                raise DimSyntaxError(f"a dim nests at most {MAX_NESTING} deep, in '{self.text[:40]}...'")
            if self.peek() == "-":
                self.take()
                return scale(self.unary(), -1)
            return self.atom()
        finally:
            self.depth -= 1

    def atom(self) -> Dim:
        tok = self.take()
        if tok.isdigit():
            return int(tok)
        if tok == "(":
            d = self.sum()
            self.take(")")
            return d
        if tok[0].isalpha() or tok[0] == "_":
            if self.peek() != "(":
                return tok
            self.take("(")
            args = [self.sum()]
            while self.peek() == ",":
                self.take()
                args.append(self.sum())
            self.take(")")
            if tok == "wrap" and len(args) == 2:
                return wrap(args[0], args[1])
            if tok in _FUNCTIONS and len(args) >= 2:
                return _FUNCTIONS[tok](*args)
            raise DimSyntaxError(f"unknown dim function '{tok}' with {len(args)} argument(s) in "
                                 f"'{self.text}' (max, min take two or more, wrap two)")
        raise DimSyntaxError(f"unexpected '{tok}' in dim '{self.text}'")


def shape_to_json(shape: Iterable[Dim]) -> list[int | str]:
    """A shape for JSON: ints, and every other dim as its text."""
    return [d if isinstance(d, int) else format_dim(d) for d in shape]


def shape_from_json(items: Iterable[object]) -> tuple[Dim, ...]:
    """The inverse of :func:`shape_to_json`: raises TypeError / ValueError (a
    :class:`DimSyntaxError`) for an item that is not a dim."""
    out: list[Dim] = []
    for x in items:
        if isinstance(x, bool) or not isinstance(x, (int, str)):
            raise TypeError(f"a dim must be an int or a string, got {x!r:.40}")
        out.append(x if isinstance(x, int) else parse_dim(x))
    return tuple(out)


def split_top_level(text: str) -> list[str]:
    """``"N,max(N-1,0)"`` -> ``["N", "max(N-1,0)"]``: split at the commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def is_symbolic(d: object) -> bool:
    """Whether ``d`` is a dim known only at run time (a symbol or an expression of symbols)."""
    return isinstance(d, (str, DimExpr))


def all_free_symbols(dims: Iterable[Dim]) -> tuple[str, ...]:
    """The symbols ``dims`` depend on, in order of first appearance."""
    out: list[str] = []
    for d in dims:
        out.extend(s for s in free_symbols(d) if s not in out)
    return tuple(out)
