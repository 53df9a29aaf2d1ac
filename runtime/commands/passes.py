"""``dlc passes``: the registered passes, the canonicalization patterns and the named pipelines."""

from __future__ import annotations

import argparse
import inspect

NAME = "passes"
HELP = "list the registered passes, canonicalization patterns and named pipelines"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dlc passes``."""
    parser.add_argument("--patterns", action="store_true",
                        help="also list canonicalize's patterns with the identity each applies")


def run(args: argparse.Namespace) -> int:
    """Print the passes and pipelines (and the patterns with ``--patterns``)."""
    print(listing(patterns=args.patterns), end="")
    return 0


def listing(patterns: bool = False) -> str:
    """The text ``dlc passes`` prints."""
    from compiler.passes import PASSES, PIPELINES

    width = max(len(n) for n in [*PASSES, *PIPELINES])
    lines = ["passes:"]
    lines += [f"  {name:<{width}}  {PASSES[name].description}" for name in sorted(PASSES)]
    if patterns:
        lines += ["", "canonicalize patterns:"]
        lines += [f"  {name:<28}  {identity}" for name, identity in pattern_identities()]
    lines += ["", "pipelines (--passes NAME):"]
    lines += [f"  {name:<{width}}  {PIPELINES[name]}" for name in sorted(PIPELINES)]
    return "\n".join(lines) + "\n"


def pattern_identities() -> list[tuple[str, str]]:
    """Each canonicalization pattern's name and the identity its first comment states."""
    from compiler.passes.canonicalize import CANONICAL

    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for patterns in CANONICAL.by_op.values():
        for p in patterns:
            if p.name not in seen:
                seen.add(p.name)
                out.append((p.name, _first_comment(p.fn)))
    return out


def _first_comment(fn: object) -> str:
    """The first ``# ...`` line in a function's body (its identity)."""
    try:
        source = inspect.getsource(fn)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return ""
    for line in source.splitlines():
        text = line.strip()
        if text.startswith("#"):
            return text.lstrip("#").strip()
    return ""
