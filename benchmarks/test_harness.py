"""The harness's own costs under ``pytest --benchmark``: each prints its ratio and the goal.

The goals are not asserted: on a shared CPU a ratio moves with the neighbours' load, and
speed goals are checked by reading these figures (benchmarks/README.md), not by failing a
run. What is asserted is that each figure was measured (finite, from trials that ran).
Each measure runs once (one round); its figures go to the saved JSON's ``extra_info``.
"""

from __future__ import annotations

import math

import pytest

from benchmarks import harness


def _measure(benchmark, measure, *args) -> harness.HarnessRatio:
    benchmark.group = "harness"
    ratio = benchmark.pedantic(measure, args=args, rounds=1, iterations=1)
    benchmark.extra_info.update(ratio.extra_info())
    print(f"\n{ratio.line()}")
    assert math.isfinite(ratio.value) and ratio.value >= 0
    return ratio


@pytest.mark.slow
def test_overhead_of_the_harness_over_a_bare_fit(benchmark, synthetic_cache):
    ratio = _measure(benchmark, harness.measure_overhead, synthetic_cache)
    assert ratio.detail["harness_images_per_sec"] > 0


@pytest.mark.slow
def test_input_pipeline_over_the_fastest_train_step(benchmark, synthetic_cache):
    ratio = _measure(benchmark, harness.measure_pipeline, synthetic_cache)
    assert ratio.detail["fastest_model"] in harness.PIPELINE_MODELS


@pytest.mark.slow
def test_scheduling_overhead_per_noop_trial(benchmark, synthetic_cache):
    ratio = _measure(benchmark, harness.measure_scheduling, synthetic_cache)
    assert ratio.detail["trials"] == 100


@pytest.mark.slow
def test_early_stopping_share_of_epochs(benchmark, synthetic_cache):
    ratio = _measure(benchmark, harness.measure_early_stopping, synthetic_cache)
    assert ratio.detail["asha_epochs"] <= ratio.detail["full_epochs"]
    print(
        f"best accuracy: ASHA {ratio.detail['asha_best_val_accuracy']:.4f}, full {ratio.detail['full_best_val_accuracy']:.4f}"
    )
