"""The time a user waits, against what the harness told them: each suite run as a user runs
it (``python -m bench.run --suite NAME``, the built-in synthetic data, a new process), its
wall time from the process's start to its end beside the up-front estimate and the time left
that each progress line said.

    python -m benchmarks.waiting                      # transfer, baseline and selftest
    python -m benchmarks.waiting selftest --rounds 2 --logs /tmp/waiting   # and each run's lines, timed

For each suite it prints the wall seconds, the estimate and their ratio (goal: within 30%),
and for the progress lines after the first trial finished (the time left is refined from
measured trials by then) and with at least ``MIN_LEFT_SECONDS`` still to go, the worst ratio of
the time they said was left to the time that was.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks.fixed_cost import timed_lines
from benchmarks.own_data import REPO_ROOT

GOAL = 0.30  # an estimate within 30% of the real time
# time-left lines with less than this left are not judged: a few seconds' error there is a
# large ratio and no wait a user notices
MIN_LEFT_SECONDS = 20.0
SUITES = ("transfer", "baseline", "selftest")


DURATION = re.compile(r"(\d+) h (\d+) min|(\d+) min (\d+) s|(\d+) s\b")


def parse_duration(text: str) -> float | None:
    """Seconds of the first of format_duration's texts ("5 s", "1 min 05 s", "1 h 01 min") in ``text``."""
    found = DURATION.search(text)
    if found is None:
        return None
    hours, minutes, whole_minutes, seconds, alone = (int(group) if group else 0 for group in found.groups())
    return hours * 3600 + minutes * 60 + whole_minutes * 60 + seconds + alone


@dataclass(frozen=True)
class Waited:
    suite: str
    wall_seconds: float
    estimate_seconds: float | None  # the up-front line's, None where it gave none
    estimate_at: float  # when the estimate line was printed (seconds after the start)
    time_left: list[tuple[float, float]]  # (said left, actually left) per progress line after a trial ended

    @property
    def estimate_ratio(self) -> float | None:
        if self.estimate_seconds is None:
            return None
        return self.estimate_seconds / (self.wall_seconds - self.estimate_at)

    @property
    def worst_time_left_ratio(self) -> float | None:
        ratios = [said / left for said, left in self.time_left if left >= MIN_LEFT_SECONDS]
        return max(ratios, key=lambda ratio: abs(ratio - 1)) if ratios else None

    def lines(self) -> list[str]:
        estimate = "none" if self.estimate_seconds is None else f"{self.estimate_seconds:.0f} s"
        ratio = self.estimate_ratio
        verdict = "" if ratio is None else f" ({'meets' if abs(ratio - 1) <= GOAL else 'MISSES'} within 30%)"
        worst = self.worst_time_left_ratio
        judged = sum(left >= MIN_LEFT_SECONDS for _, left in self.time_left)
        left = "no line judged" if worst is None else f"worst said/actual {worst:.2f} over {judged} lines"
        return [
            f"{self.suite}: {self.wall_seconds:.0f} s from start to exit; estimate {estimate} from its line at "
            f"{self.estimate_at:.0f} s: estimate/actual {ratio if ratio is None else f'{ratio:.2f}'}{verdict}",
            f"    time left on the progress lines after the first trial ended, {MIN_LEFT_SECONDS:.0f} s or more "
            f"before the end: {left}",
        ]


def wait_for(suite: str, out: Path, log: Path | None = None) -> Waited:
    """Run ``suite`` into ``out``; ``log``: a file for its printed lines, each after its second."""
    command = [sys.executable, "-m", "bench.run", "--suite", suite, "--out", str(out)]
    wall, lines = timed_lines(command, REPO_ROOT)
    if log is not None:
        log.write_text("".join(f"{second:.2f} {line}\n" for second, line in lines) + f"{wall:.2f} (exit)\n")
    estimate_at, estimate = 0.0, None
    time_left, trial_ended = [], False
    for second, line in lines:
        if line.startswith("Estimate:"):
            estimate_at, estimate = second, parse_duration(line.split("about", 1)[1]) if "about" in line else None
        elif "] finished" in line or "] stopped early" in line:
            trial_ended = True
        elif trial_ended and line.endswith(" left)"):
            said = parse_duration(line.rsplit("(about", 1)[1])
            if said is not None:
                time_left.append((float(said), wall - second))
    return Waited(suite, wall, estimate, estimate_at, time_left)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser("python -m benchmarks.waiting", description=__doc__.split("\n\n")[0])
    parser.add_argument("suites", nargs="*", metavar="SUITE", help=f"default: {' '.join(SUITES)}")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each suite (default 1)")
    parser.add_argument("--logs", type=Path, help="a folder for each run's printed lines, timed (SUITE-N.log)")
    args = parser.parse_args(argv)
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    for suite in args.suites or SUITES:
        for round_number in range(1, args.rounds + 1):
            log = args.logs / f"{suite}-{round_number}.log" if args.logs else None
            with tempfile.TemporaryDirectory(prefix="waiting-") as folder:
                print("\n".join(wait_for(suite, Path(folder), log).lines()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
