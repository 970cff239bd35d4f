"""The harness's own costs under ``pytest --benchmark``: each prints its ratio and the goal.

The goals are not asserted: on a shared CPU a ratio moves with the neighbours' load, and
speed goals are checked by reading these figures (benchmarks/README.md), not by failing a
run. What is asserted is that each figure was measured (finite, from trials that ran).
Each measure runs once (one round); its figures go to the saved JSON's ``extra_info``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks import device_input, early_stopping, harness


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
    ratio = _measure(benchmark, early_stopping.measure_early_stopping, synthetic_cache)
    assert ratio.detail["asha_epochs"] <= ratio.detail["full_epochs"]
    print(
        f"best accuracy: ASHA {ratio.detail['asha_best_val_accuracy']:.4f}, full {ratio.detail['full_best_val_accuracy']:.4f}"
    )


@pytest.mark.slow
def test_device_input_over_streaming_and_the_train_step(benchmark, synthetic_cache):
    """Input rate ``fit`` sees, streaming vs on the device, batch 32 and 256, on the current backend."""
    benchmark.group = "harness"
    result = benchmark.pedantic(device_input.measure_device_input, args=(synthetic_cache,), rounds=1, iterations=1)
    benchmark.extra_info.update(result.extra_info())
    print("\n" + "\n".join(result.report_lines()))
    for ratio in result.ratios():
        assert math.isfinite(ratio.value) and ratio.value > 0
    assert tuple(result.rates) == device_input.DEVICE_INPUT_BATCH_SIZES
    for paths in result.rates.values():
        # every path timed the same epochs of the same faces
        assert len({rate.images for rate in paths.values()}) == 1 and paths["streaming"].images > 0


def test_device_input_paths_put_the_same_images_on_the_device(synthetic_cache):
    """What the two paths time is the same batch: FaceBatches' images and the gather's from IndexBatches."""
    slots, labels = device_input.device_input_faces(synthetic_cache)
    functions = device_input._DeviceFunctions(device_input.DeviceImages(synthetic_cache.read(slots)))
    streaming = device_input.FaceBatches(synthetic_cache, slots, labels, 32, shuffle=True, seed=3)
    indices = device_input.IndexBatches(labels, 32, shuffle=True, seed=3)
    try:
        for epoch, index in ((0, 0), (2, len(indices) - 1)):
            images, image_labels = functions.streaming(streaming.batch(epoch, index))
            gathered, gathered_labels = functions.on_device(indices.batch(epoch, index))
            np.testing.assert_array_equal(np.asarray(gathered), np.asarray(images))
            np.testing.assert_array_equal(np.asarray(gathered_labels), np.asarray(image_labels))
    finally:
        streaming.close()
        indices.close()
