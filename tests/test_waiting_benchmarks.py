"""The benchmarks that time what a user waits read the lines bench.run prints."""

import pytest

from bench.plan.estimate import format_duration
from benchmarks.fixed_cost import HARNESS_STAGES, stage_seconds
from benchmarks.waiting import Waited, parse_duration


@pytest.mark.parametrize("seconds", [5, 59, 65, 599, 3700])
def test_parse_duration_reads_what_format_duration_writes(seconds):
    parsed = parse_duration(f"about {format_duration(seconds)} left")
    assert parsed == (seconds if seconds < 3600 else 3600 + 60)


def test_estimate_and_time_left_ratios():
    time_left = [(50, 40), (22, 20), (9, 3)]  # the last, with under 20 s to go, is not judged
    waited = Waited("s", wall_seconds=110.0, estimate_seconds=80.0, estimate_at=10.0, time_left=time_left)
    assert waited.estimate_ratio == pytest.approx(0.8)
    assert waited.worst_time_left_ratio == pytest.approx(1.25) and "over 2 lines" in waited.lines()[1]
    assert "MISSES" not in waited.lines()[0] and "estimate/actual 0.80" in waited.lines()[0]
    unestimated = Waited("s", 100.0, None, 5.0, [])
    assert unestimated.estimate_ratio is None and "estimate none" in unestimated.lines()[0]


def test_stage_seconds_cut_the_run_at_the_lines_that_end_each_stage():
    lines = [(1.0, "Data: x"), (7.0, "Estimate: about 40 s"), (9.0, "Ray: 1 trial(s)"), (15.0, "[t] started")]
    lines += [(20.0, "[t] epoch 1/3 ..."), (30.0, "[t] finished: best"), (34.0, "Done: 1 trial(s)")]
    stages = stage_seconds(lines, wall=36.0)
    assert list(stages.values()) == [7.0, 2.0, 6.0, 5.0, 10.0, 4.0, 2.0]
    assert list(stages)[: len(HARNESS_STAGES)] == [stage for _, stage in HARNESS_STAGES]
    assert sum(stages.values()) == 36.0


def test_parse_duration_reads_the_first_duration_in_a_line():
    assert parse_duration("Estimate: about 57 s on this CPU (ASHA's expected stops: at most 1 min 13 s)") == 57
    assert parse_duration("about 1 min 13 s (at most 2 min 00 s)") == 73
    assert parse_duration("none up front on GPUs") is None
