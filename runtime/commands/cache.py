"""``dlc cache info`` / ``dlc cache clear``: the on-disk object cache.

The cache lives in ``$DLC_CACHE_DIR``, else ``~/.cache/dlc`` (see
``runtime/cache.py`` for its format and how bad entries are discarded).
"""

from __future__ import annotations

import argparse

NAME = "cache"
HELP = "show (info) or empty (clear) the compiled-code cache"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dlc cache``."""
    parser.add_argument("action", choices=["info", "clear"], help="info: location and size; clear: delete all entries")
    parser.add_argument("--dir", metavar="DIR", default=None,
                        help="the cache directory (default: $DLC_CACHE_DIR or ~/.cache/dlc)")


def run(args: argparse.Namespace) -> int:
    """Print the cache's location and size, or empty it."""
    from runtime.cache import ObjectCache

    cache = ObjectCache(args.dir)
    if args.action == "clear":
        n = cache.clear()
        print(f"removed {n} entr{'y' if n == 1 else 'ies'} from {cache.directory}")
        return 0
    info = cache.info()
    print(f"directory: {info['directory']}")
    print(f"entries:   {info['entries']}")
    print(f"size:      {info['bytes'] / 1024:.1f} KiB")
    return 0
