"""GEMM cache blocking chosen per CPU: ``MC`` and ``NC`` from the caches' sizes.

The packed GEMM (``gemm.py``) packs a ``KC x NC`` block of B and, for each
``MC``-row block of A, a ``MC x KC`` block of A.  The rule (docs/codegen.md):

* ``KC`` is fixed (``gemm.KC``) on every machine: it sets where K is cut into
  slices, and so the order in which each element of C sums its products.
  Keeping it fixed keeps results bit-identical across machines and choices.
* ``MC``: the A block fills about a quarter of the L2: the ``KC x NR`` B
  panel each A block is multiplied with (48 KB with AVX-512) fills a whole
  L1d, so it lives in the L2 too, beside C's tiles and the next panels:
  ``L2 / 4 / (KC * 4 bytes)``, rounded down to ``MC_STEP`` rows, within
  ``[MIN_MC, MAX_MC]``.  (Half the L2 -- 512 rows on Emerald Rapids --
  measured 1-5% slower there than 128 or 336 at 1024^2 and 2048^2.)
* ``NC``: the B block fills about half of the L3 (shared, so half):
  ``L3 / 2 / (KC * 4 bytes)``, rounded down to ``NC_STEP`` columns, within
  ``[MIN_NC, MAX_NC]``.
* Cache sizes come from ``/sys/devices/system/cpu/cpu0/cache``; where they
  cannot be read, :data:`DEFAULT` (the constants tuned on AMD Zen).

Neither ``MC`` nor ``NC`` changes any element's summation order (they only
choose which tiles are computed when), so any choice gives the same bits.  The
runtime may refine the choice by a short autotune at first use
(``runtime/autotune.py``), which registers its pick with :func:`choose`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

KC = 384                 # K slice (fixed: it sets the summation order)
KC_BYTES = KC * 4        # one row of a packed block, f32
MIN_MC, MAX_MC, MC_STEP = 32, 512, 16
MIN_NC, MAX_NC, NC_STEP = 256, 4096, 64
CACHE_ROOT = Path("/sys/devices/system/cpu/cpu0/cache")


@dataclass(frozen=True, slots=True)
class Blocking:
    """Rows of A (``mc``) and columns of B (``nc``) packed at once by the packed GEMM."""

    mc: int
    nc: int

    def __post_init__(self) -> None:
        if not (MIN_MC <= self.mc <= MAX_MC and MIN_NC <= self.nc <= MAX_NC):
            raise ValueError(f"GEMM blocking {self.mc}x{self.nc} outside "
                             f"[{MIN_MC}, {MAX_MC}] x [{MIN_NC}, {MAX_NC}]")

    def key(self) -> str:
        return f"{self.mc}x{self.nc}"


DEFAULT = Blocking(mc=128, nc=4096)


@dataclass(frozen=True, slots=True)
class CacheSizes:
    """Data cache sizes in bytes (0: unknown)."""

    l1d: int = 0
    l2: int = 0
    l3: int = 0


def _parse_size(text: str) -> int:
    """``48K`` / ``2048K`` / ``300M`` (sysfs's spelling) in bytes; 0 for anything else."""
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    digits = text[:-1] if text[-1:] in "KMG" else text
    return int(digits) * scale if digits.isdigit() else 0


def read_cache_sizes(root: Path = CACHE_ROOT) -> CacheSizes:
    """The data caches of CPU 0 from sysfs (zeros where a level is missing or unreadable)."""
    sizes = {"l1d": 0, "l2": 0, "l3": 0}
    try:
        entries = sorted(root.glob("index*"))
    except OSError:
        return CacheSizes()
    for entry in entries:
        try:
            level = (entry / "level").read_text().strip()
            kind = (entry / "type").read_text().strip()
            size = _parse_size((entry / "size").read_text())
        except OSError:
            continue
        if kind == "Instruction":
            continue
        name = {"1": "l1d", "2": "l2", "3": "l3"}.get(level)
        if name is not None:
            sizes[name] = max(sizes[name], size)
    return CacheSizes(**sizes)


def _fit(budget: int, step: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, budget // KC_BYTES // step * step))


def blocking_for(caches: CacheSizes) -> Blocking:
    """The rule (module docstring): MC from the L2, NC from the L3, else :data:`DEFAULT`'s."""
    mc = _fit(caches.l2 // 4, MC_STEP, MIN_MC, MAX_MC) if caches.l2 else DEFAULT.mc
    nc = _fit(caches.l3 // 2, NC_STEP, MIN_NC, MAX_NC) if caches.l3 else DEFAULT.nc
    return Blocking(mc, nc)


_LOCK = threading.Lock()
_CHOSEN: dict[str, Blocking] = {}   # host target key -> the runtime's choice (autotune)
_RULE: dict[str, Blocking] = {}


def target_key(target: object) -> str:
    """What names a CPU for the blocking choice: its LLVM name and features."""
    return f"{getattr(target, 'cpu', '')}|{getattr(target, 'features', '')}"


def choose(target: object, blocking: Blocking | None) -> None:
    """Register ``blocking`` as this process's choice for ``target`` (None: back to the rule)."""
    with _LOCK:
        if blocking is None:
            _CHOSEN.pop(target_key(target), None)
        else:
            _CHOSEN[target_key(target)] = blocking


def host_blocking(target: object) -> Blocking:
    """The blocking for ``target`` when options name none: the registered choice, else the
    rule applied to this machine's caches."""
    key = target_key(target)
    with _LOCK:
        chosen = _CHOSEN.get(key)
        if chosen is not None:
            return chosen
        rule = _RULE.get(key)
        if rule is None:
            rule = _RULE[key] = blocking_for(read_cache_sizes())
        return rule


__all__ = ["Blocking", "CacheSizes", "DEFAULT", "KC", "MAX_MC", "MAX_NC", "blocking_for", "choose",
           "host_blocking", "read_cache_sizes", "target_key"]
