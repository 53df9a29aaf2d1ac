"""The fuzzing loop: make cases, run them in a worker, minimise and record findings.

::

    fuzzer = Fuzzer(["dl_source", "files"], seed=0, out=Path("fuzz-findings"))
    report = fuzzer.run(seconds=600)          # or cases=50 (per target)
    fuzzer.close()

Case ``i`` of target ``t`` in a run with seed ``s`` is made from
``random.Random(f"{s}:{t}:{i}")``, so a run is reproducible case by case.
With a time limit, each target gets an equal share of the time (the next
case goes to the target that has used the least).  Every case runs in a
:class:`Worker` process (``python -m fuzz.worker``, importing dlc from this
source tree); a worker that dies (a signal, an exit) or does not answer
within the target's ``TIMEOUT`` is replaced, and the case becomes a finding.

Findings are grouped by target and :attr:`Outcome.signature` -- or, for a
known-open defect (``fuzz/known.py``), by its name; the first of each group is
minimised (lines, then
tokens) and written to ``OUT/findings/NN-target-error/``: ``input.*`` (the
minimised input), ``original.*``, ``details.txt`` (traceback, mismatch
report or the worker's last output) and ``finding.json`` (seed, target,
case index, what happened, how to replay it).  ``OUT/summary.json`` and
``OUT/summary.txt`` hold the case counts.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import known
from .case import FINDING, REPO_ROOT, Case, Outcome
from .minimize import Budget, minimize_text
from .targets import load_target
from .worker import Channel

RECYCLE_AFTER = 150                # cases per worker process (compiled code piles up)
MEMORY_LIMIT = 6 << 30             # bytes of address space a worker may map
EXAMPLES_PER_GROUP = 3             # raw examples kept per group of findings
LOG_TAIL = 12000                   # characters of a dead worker's output kept


class Worker:
    """A worker process (``python -m fuzz.worker``) and the channel to it."""

    def __init__(self, workdir: Path, memory_limit: int = MEMORY_LIMIT):
        self.workdir = workdir
        self.memory_limit = memory_limit
        self.process: subprocess.Popen | None = None
        self.channel: Channel | None = None
        self.served = 0
        self.starts = 0
        self.log_path = workdir / "worker.log"

    def start(self) -> None:
        """A fresh worker, importing dlc and the fuzzer from this source tree."""
        self.stop()
        ours, theirs = socket.socketpair()
        self.log_path = self.workdir / f"worker-{self.starts}.log"
        self.starts += 1
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                                         os.environ.get("PYTHONPATH")])))
        command = [sys.executable, "-m", "fuzz.worker", str(theirs.fileno()),
                   str(self.workdir / "cache"), str(self.memory_limit)]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, pass_fds=[theirs.fileno()], env=env,
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        theirs.close()
        self.channel, self.served = Channel(ours), 0

    def stop(self) -> None:
        """Ask the worker to finish; kill it if it does not."""
        if self.process is None:
            return
        try:
            if self.channel is not None:
                self.channel.send(None)
            self.process.wait(2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        if self.channel is not None:
            self.channel.close()
        self.process, self.channel = None, None

    def run(self, case: Case, timeout: float) -> Outcome:
        """The outcome of ``case``: the worker's answer, or a finding when it died or hung."""
        if self.process is None or self.process.poll() is not None or self.served >= RECYCLE_AFTER:
            self.start()
        assert self.channel is not None and self.process is not None
        try:
            self.channel.send(case)
        except OSError:
            self.start()
            assert self.channel is not None
            self.channel.send(case)
        if not self.channel.poll(timeout):
            tail = self.log_tail()
            self.kill()
            return Outcome(FINDING, "timeout", "timeout", f"no answer within {timeout:g} s", details=tail)
        try:
            outcome: Outcome = self.channel.recv()
        except (EOFError, OSError):
            return self.death()
        self.served += 1
        return outcome

    def death(self) -> Outcome:
        """The finding for a worker that died while running a case."""
        assert self.process is not None
        try:
            code = self.process.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        tail = self.log_tail()
        self.kill()
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            return Outcome(FINDING, "signal", name, f"the worker died of {name}", details=tail)
        return Outcome(FINDING, "exit", f"exit {code}", f"the worker exited with status {code}", details=tail)

    def log_tail(self) -> str:
        """The worker's output since the last case began (faulthandler's stack, if it crashed)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        start = text.rfind("--- case ")
        return text[start:][-LOG_TAIL:] if start >= 0 else text[-LOG_TAIL:]


@dataclass
class Tally:
    """What one target did in a run."""

    cases: int = 0
    seconds: float = 0.0
    statuses: Counter = field(default_factory=Counter)    # ok / rejected / finding / avoided
    stats: Counter = field(default_factory=Counter)       # the targets' own counters, summed

    def as_json(self) -> dict:
        return {"cases": self.cases, "seconds": round(self.seconds, 1), "statuses": dict(self.statuses),
                "stats": dict(self.stats)}


@dataclass
class Finding:
    """A group of findings with one signature: the first case, minimised, and a count."""

    case: Case
    outcome: Outcome
    known: str | None
    minimized: str | None = None
    count: int = 1
    examples: list[Case] = field(default_factory=list)
    folder: Path | None = None

    @property
    def key(self) -> tuple[str, str]:
        """The group: a known defect's name (one group for all its places), else the signature."""
        return (self.case.target, f"known: {self.known}" if self.known else self.outcome.signature)


@dataclass
class Report:
    """A run's case counts per target and its findings."""

    seed: int
    seconds: float
    tallies: dict[str, Tally]
    findings: list[Finding]

    @property
    def cases(self) -> int:
        return sum(t.cases for t in self.tallies.values())

    def unknown(self) -> list[Finding]:
        """Findings no known-open defect explains."""
        return [f for f in self.findings if f.known is None]

    def text(self) -> str:
        lines = [f"seed {self.seed}: {self.cases} cases in {self.seconds:.0f} s"]
        for name, t in self.tallies.items():
            statuses = ", ".join(f"{k} {v}" for k, v in sorted(t.statuses.items()))
            stats = ", ".join(f"{k} {v}" for k, v in sorted(t.stats.items()))
            lines.append(f"  {name}: {t.cases} cases in {t.seconds:.0f} s ({statuses}; {stats})")
        for f in self.findings:
            label = f"known: {f.known}" if f.known else "NEW"
            lines.append(f"  [{label}] {f.case.target} {f.outcome.kind} {f.outcome.error} "
                         f"{f.outcome.where} x{f.count}: {f.outcome.message[:160]}")
        return "\n".join(lines)


class Fuzzer:
    """Runs targets for a number of cases or a time, in one worker (see the module docstring)."""

    def __init__(self, targets: list[str], seed: int = 0, out: Path | None = None, *,
                 minimize_seconds: float = 60.0, avoid_known: bool = False,
                 memory_limit: int = MEMORY_LIMIT, log: Callable[[str], None] | None = None):
        self.targets = {name: load_target(name) for name in targets}
        self.seed = seed
        self.out = out
        self.minimize_seconds = minimize_seconds
        self.avoid_known = avoid_known
        self.log = log or (lambda line: None)
        self.workdir = Path(tempfile.mkdtemp(prefix="dlc-fuzz-"))
        self.worker = Worker(self.workdir, memory_limit)
        self.findings: dict[tuple[str, str], Finding] = {}

    def close(self) -> None:
        self.worker.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def make_case(self, target: str, index: int) -> Case:
        rng = random.Random(f"{self.seed}:{target}:{index}")
        text, mode = self.targets[target].generate(rng)
        return Case(target, self.seed, index, mode, text)

    def run(self, *, seconds: float | None = None, cases: int | dict[str, int] | None = None) -> Report:
        """Fuzz until ``seconds`` pass or every target ran its ``cases`` (a count for every
        target, or one per target name), whichever comes first."""
        assert seconds is not None or cases is not None, "give a time or a case count"
        quota = cases if isinstance(cases, dict) or cases is None else dict.fromkeys(self.targets, cases)
        tallies = {name: Tally() for name in self.targets}
        start = time.monotonic()
        last_log = start
        while True:
            pending = [n for n in self.targets if quota is None or tallies[n].cases < quota.get(n, 0)]
            if not pending or (seconds is not None and time.monotonic() - start >= seconds):
                break
            name = min(pending, key=lambda n: tallies[n].seconds if seconds is not None else tallies[n].cases)
            self.step(name, tallies[name])
            if time.monotonic() - last_log > 30:
                last_log = time.monotonic()
                self.log(f"{last_log - start:5.0f} s: " + ", ".join(
                    f"{n} {t.cases}" for n, t in tallies.items()) + f"; {len(self.findings)} finding groups")
        report = Report(self.seed, time.monotonic() - start, tallies, list(self.findings.values()))
        if self.out is not None:
            self.write_summary(report)
        return report

    def step(self, name: str, tally: Tally) -> None:
        """Make and run the target's next case; record what happened."""
        began = time.monotonic()
        case = self.make_case(name, tally.cases)
        tally.cases += 1
        avoided = known.avoided(case) if self.avoid_known else None
        if avoided is not None:
            tally.statuses[f"avoided ({avoided})"] += 1
        else:
            outcome = self.worker.run(case, self.targets[name].TIMEOUT)
            tally.statuses[outcome.status] += 1
            tally.stats.update(outcome.stats)
            if outcome.status == FINDING:
                self.record(case, outcome)
        tally.seconds += time.monotonic() - began

    def record(self, case: Case, outcome: Outcome) -> None:
        """Group a finding with its likes; minimise and write the first of a group."""
        finding = Finding(case, outcome, known.classify(case, outcome))
        group = self.findings.get(finding.key)
        if group is not None:
            group.count += 1
            if len(group.examples) < EXAMPLES_PER_GROUP:
                group.examples.append(case)
            return
        self.findings[finding.key] = finding
        label = finding.known or "new"
        self.log(f"finding ({label}): {case.target} #{case.index} {outcome.kind} {outcome.error} "
                 f"{outcome.where}: {outcome.message[:200]}")
        if self.minimize_seconds > 0:
            finding.minimized = self.minimize(case, outcome)
        if self.out is not None:
            self.write_finding(finding)

    def minimize(self, case: Case, outcome: Outcome) -> str:
        """The case's text reduced while it shows the same signature."""
        timeout = self.targets[case.target].TIMEOUT
        tests = 12 if outcome.kind == "timeout" else 400

        def still_fails(text: str) -> bool:
            again = self.worker.run(Case(case.target, case.seed, case.index, case.mode, text), timeout)
            return again.status == FINDING and again.signature == outcome.signature

        return minimize_text(case.text, still_fails, Budget(self.minimize_seconds, tests))

    # -- files -------------------------------------------------------------------------

    def write_finding(self, finding: Finding) -> None:
        assert self.out is not None
        case, outcome = finding.case, finding.outcome
        slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{outcome.kind}-{outcome.error}")[:40].strip("-")
        folder = self.out / "findings" / f"{len(self.findings):02d}-{case.target}-{slug}"
        folder.mkdir(parents=True, exist_ok=True)
        suffix = self.targets[case.target].SUFFIX
        (folder / f"input{suffix}").write_text(finding.minimized or case.text)
        (folder / f"original{suffix}").write_text(case.text)
        (folder / "details.txt").write_text(outcome.details or outcome.message)
        finding.folder = folder
        self.write_finding_json(finding)

    def write_finding_json(self, finding: Finding) -> None:
        assert finding.folder is not None
        case, outcome = finding.case, finding.outcome
        record = {
            "target": case.target, "seed": case.seed, "index": case.index, "mode": case.mode,
            "kind": outcome.kind, "error": outcome.error, "message": outcome.message,
            "where": outcome.where, "known": finding.known, "count": finding.count,
            "minimized": finding.minimized is not None,
            "replay": f"python -m fuzz --replay {finding.folder}",
            "more_examples": [{"index": c.index, "text": c.text} for c in finding.examples],
        }
        (finding.folder / "finding.json").write_text(json.dumps(record, indent=2) + "\n")

    def write_summary(self, report: Report) -> None:
        assert self.out is not None
        self.out.mkdir(parents=True, exist_ok=True)
        for finding in report.findings:
            if finding.folder is not None:
                self.write_finding_json(finding)
        summary = {
            "seed": report.seed, "seconds": round(report.seconds, 1), "cases": report.cases,
            "targets": {n: t.as_json() for n, t in report.tallies.items()},
            "findings": [{"target": f.case.target, "kind": f.outcome.kind, "error": f.outcome.error,
                          "where": f.outcome.where, "known": f.known, "count": f.count,
                          "folder": str(f.folder) if f.folder else None} for f in report.findings],
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        (self.out / "summary.txt").write_text(report.text() + "\n")


def replay(target: str, text: str) -> Outcome:
    """Run one case in a fresh worker (``python -m fuzz --replay``)."""
    workdir = Path(tempfile.mkdtemp(prefix="dlc-fuzz-replay-"))
    worker = Worker(workdir)
    try:
        return worker.run(Case(target, 0, 0, "replay", text), load_target(target).TIMEOUT)
    finally:
        worker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
