"""``python -m fuzz``: fuzz dlc for a while and write minimised findings.

    python -m fuzz --minutes 30 --seed 0 --out fuzz-findings/
    python -m fuzz --cases 200 --targets dl_source,ir_text
    python -m fuzz --replay fuzz-findings/findings/01-dl_source-exception-ValueError

Exit status: 0 when no new finding (one no known-open defect explains), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .case import FINDING
from .runner import Fuzzer, replay
from .targets import TARGETS, load_target


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=None,
                        help="how long to fuzz (default 30, unless --cases is given)")
    parser.add_argument("--cases", type=int, default=None, help="cases per target")
    parser.add_argument("--seed", type=int, default=0, help="the run's seed (default 0)")
    parser.add_argument("--out", type=Path, default=Path("fuzz-findings"),
                        help="folder for findings and the summary (default fuzz-findings/)")
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help=f"comma-separated targets (default: all of {', '.join(TARGETS)})")
    parser.add_argument("--minimize-seconds", type=float, default=60.0,
                        help="time to minimise each new kind of finding (0: do not minimise)")
    parser.add_argument("--avoid-known", action="store_true",
                        help="skip cases that would hit a known-open defect (fuzz/known.py)")
    parser.add_argument("--replay", type=Path, metavar="PATH",
                        help="run one finding folder (or input file, with --targets naming one target)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.replay is not None:
        return run_replay(args.replay, args.targets)
    targets = [t for t in args.targets.split(",") if t]
    for name in targets:
        load_target(name)
    minutes = args.minutes if args.minutes is not None or args.cases is not None else 30.0
    fuzzer = Fuzzer(targets, args.seed, args.out, minimize_seconds=args.minimize_seconds,
                    avoid_known=args.avoid_known, log=lambda line: print(line, flush=True))
    try:
        report = fuzzer.run(seconds=minutes * 60 if minutes is not None else None, cases=args.cases)
    finally:
        fuzzer.close()
    print(report.text())
    print(f"findings and summary in {args.out}/")
    return 1 if report.unknown() else 0


def run_replay(path: Path, targets: str) -> int:
    """Run a finding's input once in a fresh worker and print what happened."""
    if path.is_dir():
        record = json.loads((path / "finding.json").read_text())
        target = record["target"]
        suffix = load_target(target).SUFFIX
        text = (path / f"input{suffix}").read_text()
    else:
        target = targets.split(",")[0]
        text = path.read_text()
    outcome = replay(target, text)
    print(f"{target}: {outcome.status} {outcome.kind} {outcome.error} {outcome.where}".rstrip())
    print(outcome.details or outcome.message)
    return 1 if outcome.status == FINDING else 0


if __name__ == "__main__":
    sys.exit(main())
