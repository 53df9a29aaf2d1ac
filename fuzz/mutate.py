"""Token- and byte-level mutations of text (``.dl`` source, IR text, CSV).

:func:`mutate` applies a few random edits, each one of: delete a span,
insert a token from a pool (the grammar's tokens and hostile ones), duplicate
or drop a line, swap two tokens, replace a number with a boundary value,
replace a word with another word of the text or the pool, flip a character.
:func:`tokens` is also the minimiser's second level (after lines).
"""

from __future__ import annotations

import random
import re

ATOM = r"[A-Za-z_][A-Za-z0-9_.]*|[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|."   # a word, number or character
TOKEN = re.compile(r"\s+|" + ATOM, re.S)
NUMBER = re.compile(r"(?<![A-Za-z_])[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?")
WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

BOUNDARY_NUMBERS = ("0", "1", "-1", "2", "255", "256", "65535", "2147483647", "2147483648",
                    "4294967296", "9223372036854775807", "9223372036854775808",
                    "99999999999999999999999999", "0.0", "-0.0", "1e38", "3.5e38", "1e308",
                    "1e400", "1e-45", "1e-400", "0.1", "nan", "inf", "0x7f800000")

# Inputs that have hurt compilers before: huge literals and dims, deep nesting, odd characters.
HOSTILE = ("1e400", "99999999999999999999999", "2 ** 99999999999", "2 ** 99999", "-(2 ** 1024)", "(" * 200, ")" * 200,
           "-" * 300, "x" + " + x" * 400, "f32[99999999999, 99999999999]",
           "f32[4294967296]", "\x00", "\r", "\t", "\u00e9", "\U0001f600", "\ufeff", "\\", "'",
           "\"unterminated", "#", "//", "\n" * 3, "[" * 300, "{a = " * 100)


def tokens(text: str) -> list[str]:
    """``text`` split into words, numbers, runs of whitespace and single characters."""
    return TOKEN.findall(text)


def mutate(text: str, rng: random.Random, steps: int, pool: tuple[str, ...]) -> str:
    """``text`` after ``steps`` random edits; ``pool`` holds tokens worth inserting."""
    edits = (_delete_span, _insert_token, _duplicate_line, _drop_line, _swap_tokens,
             _replace_number, _replace_word, _flip_char)
    for _ in range(steps):
        text = rng.choice(edits)(text, rng, pool)
    return text


def _delete_span(text: str, rng: random.Random, pool: tuple[str, ...]) -> str:
    i = rng.randrange(len(text) + 1)
    return text[:i] + text[i + rng.randint(1, 16):]


def _insert_token(text: str, rng: random.Random, pool: tuple[str, ...]) -> str:
    i = rng.randrange(len(text) + 1)
    token = rng.choice(HOSTILE) if rng.random() < 0.15 else rng.choice(pool)
    pad = " " if rng.random() < 0.7 else ""
    return text[:i] + pad + token + pad + text[i:]


def _duplicate_line(text: str, rng: random.Random, pool: tuple[str, ...]) -> str:
    lines = text.split("\n")
    j = rng.randrange(len(lines))
    lines.insert(rng.randrange(len(lines) + 1), lines[j])
    return "\n".join(lines)


def _drop_line(text: str, rng: random.Random, pool: tuple[str, ...]) -> str:
    lines = text.split("\n")
    del lines[rng.randrange(len(lines))]
    return "\n".join(lines)


def _swap_tokens(text: str, rng: random.Random, pool: tuple[str, ...]) -> str:
    parts = tokens(text)
    solid = [i for i, p in enumerate(parts) if not p.isspace()]
    if len(solid) < 2:
        return text
    a, b = rng.sample(solid, 2)
    parts[a], parts[b] = parts[b], parts[a]
    return "".join(parts)


def _replace_number(text: str, rng: random.Random, pool: tuple[str, ...]) -> str:
    found = list(NUMBER.finditer(text))
    if not found:
        return _insert_token(text, rng, pool)
    m = rng.choice(found)
    return text[:m.start()] + rng.choice(BOUNDARY_NUMBERS) + text[m.end():]


def _replace_word(text: str, rng: random.Random, pool: tuple[str, ...]) -> str:
    found = list(WORD.finditer(text))
    if not found:
        return _insert_token(text, rng, pool)
    m = rng.choice(found)
    words = [w for w in pool if WORD.fullmatch(w)]
    choices = words + [f.group() for f in found]
    return text[:m.start()] + rng.choice(choices) + text[m.end():]


def _flip_char(text: str, rng: random.Random, pool: tuple[str, ...]) -> str:
    if not text:
        return text
    i = rng.randrange(len(text))
    flipped = chr(ord(text[i]) ^ (1 << rng.randrange(7)))
    return text[:i] + flipped + text[i + 1:]
