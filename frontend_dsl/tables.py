"""The parser's LALR tables, built from ``grammar.lark`` ahead of time and committed.

Building the tables takes ~50 ms of grammar analysis per process.  Lark's own
cure (``cache=True``) unpickles ``$TMPDIR/.lark_cache_*``, so anyone who can
write to the temp folder would run code in every ``dlc check``.  Instead the
tables Lark serializes (plain dicts, lists, strings and numbers) are written
as JSON into ``lalr_tables.json`` next to the grammar, and read from there with
``json.loads``: no file outside the package is read, nothing is unpickled or
executed.  (JSON object keys are strings: the integer keys of Lark's tables --
parser states, token numbers, memo ids -- are written as digit strings and
turned back into integers on load; no other key is made of digits only, which
:func:`render` checks.)

``lalr_tables.json`` records the sha256 of the grammar and the Lark version that
built it; when either differs from what is here (the grammar was edited, or
another Lark is installed) the parser is built from the grammar instead,
slower but never wrong.  After editing the grammar, regenerate::

    python -m frontend_dsl.tables

(``tests/test_trust_boundaries.py`` fails while the tables are stale.)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import lark
from lark.grammar import Rule
from lark.lexer import TerminalDef

GRAMMAR_PATH = Path(__file__).with_name("grammar.lark")
TABLES_PATH = Path(__file__).with_name("lalr_tables.json")

# the options the parser is built with; serialized into the tables
OPTIONS = {"parser": "lalr", "propagate_positions": True, "maybe_placeholders": False}


def grammar_digest() -> str:
    """The sha256 of ``grammar.lark`` as it is on disk."""
    return hashlib.sha256(GRAMMAR_PATH.read_bytes()).hexdigest()


def build_from_grammar() -> lark.Lark:
    """The parser, analysed from the grammar now (no cache of any kind)."""
    return lark.Lark(GRAMMAR_PATH.read_text(), cache=False, **OPTIONS)


def load_parser() -> lark.Lark:
    """The parser from the committed tables when they are current, else from the grammar."""
    try:
        tables = read_tables(TABLES_PATH.read_text())
    except (OSError, ValueError):
        return build_from_grammar()
    if (not isinstance(tables, dict) or tables.get("grammar_sha256") != grammar_digest()
            or tables.get("lark_version") != lark.__version__):
        return build_from_grammar()
    return lark.Lark._load_from_dict(tables["data"], tables["memo"])


def read_tables(text: str) -> dict[str, Any]:
    """The contents of ``lalr_tables.json``, integer keys restored."""
    return json.loads(text, object_pairs_hook=_int_keys)


def _int_keys(pairs: list[tuple[str, Any]]) -> dict[str | int, Any]:
    return {int(k) if k.isdigit() else k: v for k, v in pairs}


def render(parser: lark.Lark) -> str:
    """The text of ``lalr_tables.json`` for ``parser``; checks that it reads back as
    the same tables (tuples come back as lists, which Lark takes alike)."""
    data, memo = parser.memo_serialize([TerminalDef, Rule])
    tables = {"grammar_sha256": grammar_digest(), "lark_version": lark.__version__,
              "data": data, "memo": memo}
    text = json.dumps(tables, indent=0) + "\n"
    if read_tables(text) != _as_read_back(tables):
        raise AssertionError("Lark's tables do not survive a JSON round trip")
    return text


def _as_read_back(x: Any) -> Any:
    """``x`` as JSON gives it back: tuples as lists; a key made of digits must be an int."""
    if isinstance(x, dict):
        if any(isinstance(k, str) and k.isdigit() for k in x):
            raise AssertionError(f"a string key of Lark's tables is made of digits: {sorted(x)[:5]}")
        return {k: _as_read_back(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_as_read_back(v) for v in x]
    return x


def main() -> None:
    """Write ``lalr_tables.json`` from the grammar."""
    TABLES_PATH.write_text(render(build_from_grammar()))
    print(f"wrote {TABLES_PATH}")


if __name__ == "__main__":
    main()
