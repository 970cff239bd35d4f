"""tests/README.md's durations table, from the ``--durations`` lines of a pytest log.

    python -m pytest -n 2 --dist loadfile | tee tf.log
    python -m tests.durations_table tf.log --leg TensorFlow --date 2026-12-05

Prints a markdown table of the slowest phases (setup, call or teardown of one test):
seconds, phase, test, and the share of the leg's wall time each took.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

DURATION_LINE = re.compile(r"^(?P<seconds>\d+(?:\.\d+)?)s (?P<phase>setup|call|teardown)\s+(?P<test>\S.*)$")
SUMMARY_LINE = re.compile(r" in (?P<seconds>\d+(?:\.\d+)?)s")


def slowest(log: str, count: int) -> list[tuple[float, str, str]]:
    rows = []
    for line in log.splitlines():
        match = DURATION_LINE.match(line.strip())
        if match:
            rows.append((float(match["seconds"]), match["phase"], match["test"].strip()))
    return sorted(rows, reverse=True)[:count]


def wall_seconds(log: str) -> float | None:
    """The leg's wall time from pytest's last summary line ("... in 701.40s (0:11:41)")."""
    for line in reversed(log.splitlines()):
        match = SUMMARY_LINE.search(line)
        if match and ("passed" in line or "failed" in line):
            return float(match["seconds"])
    return None


def table(log: str, leg: str, date: str, count: int) -> str:
    rows = slowest(log, count)
    if not rows:
        raise SystemExit("error: no --durations lines in the log (run pytest with --durations=N)")
    wall = wall_seconds(log)
    head = f"{leg}, {date}: {len(rows)} slowest" + (f" of a {wall:.0f} s leg" if wall else "")
    lines = [head, "", "| seconds | share | phase | test |", "|---:|---:|---|---|"]
    for seconds, phase, test in rows:
        share = f"{seconds / wall:.0%}" if wall else "n/a"
        lines.append(f"| {seconds:.1f} | {share} | {phase} | `{test}` |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path, help="a pytest log with --durations lines")
    parser.add_argument("--leg", required=True, help="the leg's name, e.g. TensorFlow or JAX")
    parser.add_argument("--date", required=True, help="when the log was measured")
    parser.add_argument("--count", type=int, default=15)
    args = parser.parse_args(argv)
    if not args.log.is_file():
        parser.error(f"no log at {args.log}")
    print(table(args.log.read_text(errors="replace"), args.leg, args.date, args.count))
    return 0


if __name__ == "__main__":
    sys.exit(main())
