"""Results, the issue's targets (PASS / MISS), the table and the JSON file."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from .cases import DLC, IMPLS, Case


@dataclass
class Result:
    """One row: a case at one thread count (0: not per thread count).

    ``figures`` are in the case's unit (medians); ``na`` gives the reason an
    implementation has no figure; ``samples`` keeps each repetition's raw
    figure; ``extras`` holds what else was learnt (first-call times, ...);
    ``background`` is, per measurement, how many cores other processes kept
    busy meanwhile (a noisy machine shows here, not only in the figures);
    ``cpu_figures`` are the same figures from the worker's CPU time per call
    (all its threads) instead of the wall time.
    """

    case: Case
    threads: int
    figures: dict[str, float] = field(default_factory=dict)
    na: dict[str, str] = field(default_factory=dict)
    samples: dict[str, list[float]] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    background: list[float] = field(default_factory=list)
    cpu_figures: dict[str, float] = field(default_factory=dict)
    cpu_samples: dict[str, list[float]] = field(default_factory=dict)

    @property
    def load(self) -> float | None:
        """Median number of cores busy with other work while this row was timed."""
        return statistics.median(self.background) if self.background else None

    def add_samples(self, impl: str, values: list[float]) -> None:
        """Record repetitions of ``impl`` (in the case's unit) and their median."""
        self.samples[impl] = values
        self.figures[impl] = statistics.median(values)

    def add_cpu_samples(self, impl: str, values: list[float]) -> None:
        """Record ``impl``'s figures from CPU time per call (the case's unit) and their median."""
        self.cpu_samples[impl] = values
        self.cpu_figures[impl] = statistics.median(values)


@dataclass(frozen=True)
class Verdict:
    """dlc against the reference: the ratio, what it was taken against, PASS/MISS/n/a/-."""

    ratio: float | None
    versus: str | None
    status: str


def _reference(result: Result, versus: str) -> tuple[str, float] | None:
    """The reference implementation and figure: a named one, or the fastest peer."""
    peers = {k: v for k, v in result.figures.items() if k != DLC}
    if versus in peers:
        return versus, peers[versus]
    if versus != "fastest peer" or not peers:
        return None
    best = max(peers, key=peers.get) if result.case.higher_is_better else min(peers, key=peers.get)
    return best, peers[best]


def verdict(result: Result) -> Verdict:
    """Judge a row against its target (if it has one for this thread count)."""
    target = result.case.targets.get(result.threads)
    dlc = result.figures.get(DLC)
    if target is not None and target.versus == "absolute":
        if dlc is None:
            return Verdict(None, None, "n/a")
        return Verdict(None, None, "PASS" if target.holds(dlc) else "MISS")
    default = "numpy" if result.case.higher_is_better and "numpy" in result.figures else "fastest peer"
    ref = _reference(result, target.versus if target else default)
    if dlc is None or ref is None:
        return Verdict(None, ref[0] if ref else None, "n/a" if target else "-")
    ratio = dlc / ref[1]
    if target is None:
        return Verdict(ratio, ref[0], "-")
    return Verdict(ratio, ref[0], "PASS" if target.holds(ratio) else "MISS")


BUSY_LOAD = 0.5   # a row timed while other work kept this many cores busy is marked


def cpu_ratio(result: Result) -> float | None:
    """dlc's CPU-time figure over the verdict's reference's (None without both)."""
    versus = verdict(result).versus
    dlc, ref = result.cpu_figures.get(DLC), result.cpu_figures.get(versus or "")
    return dlc / ref if dlc and ref else None


def cpu_lines(results: list[Result], impls: tuple[str, ...]) -> list[str]:
    """For each busy row (load >= BUSY_LOAD) with CPU-time figures: those figures and dlc's
    ratio to the same reference, one line each."""
    out = []
    for r in results:
        if r.load is None or r.load < BUSY_LOAD or DLC not in r.cpu_figures:
            continue
        figures = ", ".join(f"{impl} {format_figure(r.cpu_figures[impl])}" for impl in impls if impl in r.cpu_figures)
        ratio = cpu_ratio(r)
        tail = f"; dlc / {verdict(r).versus} {ratio:.2f}" if ratio is not None else ""
        out.append(f"- {r.case.label} ({r.threads or '-'} thr, {r.case.unit}): {figures}{tail}")
    return out


def format_figure(value: float) -> str:
    """Three significant figures or so, without scientific notation."""
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def peak_fraction(result: Result, impl: str, peak_gflops: float | None) -> float | None:
    """``impl``'s figure of an sgemm row as a fraction of the FMA peak of the cores it ran on
    (``peak_gflops`` per core, bench/peak.py); None for other rows or without a peak."""
    if not peak_gflops or result.case.unit != "GFLOP/s" or not result.case.id.startswith("sgemm-"):
        return None
    figure = result.figures.get(impl)
    return None if figure is None else figure / (peak_gflops * max(result.threads, 1))


def table(results: list[Result], impls: tuple[str, ...] = IMPLS, peak_gflops: float | None = None,
          title: str | None = None) -> str:
    """A markdown table of every row (under ``title``), then numbered notes for the n/a
    reasons; with ``peak_gflops``, each sgemm figure also as a percentage of the peak."""
    header = ["case", "thr", "unit", *impls, "dlc / ref", "target", "status", "load"]
    rows, notes = [], []
    for r in results:
        cells = [r.case.label, str(r.threads) if r.threads else "-", r.case.unit]
        for impl in impls:
            if impl in r.figures:
                fraction = peak_fraction(r, impl, peak_gflops)
                cells.append(format_figure(r.figures[impl]) + (f" ({fraction:.0%})" if fraction is not None else ""))
            elif impl in r.na:
                if r.na[impl] not in notes:
                    notes.append(r.na[impl])
                cells.append(f"n/a [{notes.index(r.na[impl]) + 1}]")
            else:
                cells.append("-")
        v = verdict(r)
        target = r.case.targets.get(r.threads)
        cells.append(f"{v.ratio:.2f} ({v.versus})" if v.ratio is not None else "-")
        cells.append(target.describe() if target else "-")
        busy = r.load is not None and r.load >= BUSY_LOAD
        cells.append(v.status + ("*" if busy and v.status in ("PASS", "MISS") else ""))
        cells.append(f"{r.load:.2f}" if r.load is not None else "-")
        rows.append(cells)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    out = [title, ""] if title else []
    out += [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in rows]
    if peak_gflops:
        out += ["", f"(n%): an sgemm figure as a fraction of the measured FMA peak, {peak_gflops:.0f} GFLOP/s "
                    "per core times the thread count"]
    if any(row[-2].endswith("*") for row in rows):
        out += ["", f"\\* timed while other processes kept {BUSY_LOAD:g} cores or more busy "
                    "(load column): a noisy comparison, run again on a quiet machine"]
    busy_cpu = cpu_lines(results, impls)
    if busy_cpu:
        out += ["", "The busy rows from CPU time per call instead (the worker's CPU time over its timed calls, "
                    "all its threads: no time spent waiting for a core, but caches still shared):", ""]
        out += busy_cpu
    if notes:
        out.append("")
        out += [f"[{i}] {note}" for i, note in enumerate(notes, 1)]
    return "\n".join(out)


def summary(results: list[Result]) -> dict[str, int]:
    """How many targets passed, missed, or could not be judged."""
    counts = {"PASS": 0, "MISS": 0, "n/a": 0}
    for r in results:
        status = verdict(r).status
        if status in counts:
            counts[status] += 1
    return counts


def to_json(result: Result, peak_gflops: float | None = None) -> dict[str, Any]:
    """A row as plain JSON data (with its verdict, and each sgemm figure's fraction of the
    FMA peak)."""
    v = verdict(result)
    target = result.case.targets.get(result.threads)
    return {"case": result.case.id, "label": result.case.label, "unit": result.case.unit,
            "threads": result.threads or None, "figures": result.figures, "na": result.na,
            "samples": result.samples, "extras": result.extras,
            "background_cores": result.background, "load": result.load,
            "cpu_figures": result.cpu_figures, "cpu_samples": result.cpu_samples, "cpu_ratio": cpu_ratio(result),
            "ratio": v.ratio, "versus": v.versus, "status": v.status,
            "target": target.describe() if target else None,
            "peak_fraction": {impl: f for impl in result.figures
                              if (f := peak_fraction(result, impl, peak_gflops)) is not None}}
