"""Throughput, inference timing and convergence measures: each definition on its own."""

import gc
import math
import weakref

import pytest

from bench.report.results import epochs_to_plateau, epochs_to_target, time_to_target, train_throughput
from bench.trial.inference import measure_inference, single_image_latency_ms
from bench.trial.measure import release_freed_memory, resident_memory_bytes
from tests.fake_nvml import ManualClock

# --------------------------------------------------------------------------- throughput


def test_train_throughput_reports_epoch_one_apart():
    first, steady = train_throughput([100, 100, 100], [10.0, 2.0, 3.0])
    assert first == pytest.approx(10.0)
    assert steady == pytest.approx(200 / 5.0)  # images over seconds, not the mean of rates
    first, steady = train_throughput([100], [4.0])
    assert first == pytest.approx(25.0) and math.isnan(steady)
    with pytest.raises(ValueError, match="2 image counts but 1 durations"):
        train_throughput([1, 2], [1.0])


def test_inference_timing_leaves_warm_up_out():
    clock = ManualClock()
    calls = []

    def run_batch():
        calls.append(clock.now)
        clock.advance(5.0 if len(calls) == 1 else 0.25)  # the first call traces the graph

    timing = measure_inference(run_batch, 32, warmup_batches=2, min_batches=3, min_seconds=1.0, clock=clock)
    assert timing.batches == 4 and len(calls) == 6
    assert timing.seconds == pytest.approx(1.0)
    assert timing.images_per_sec == pytest.approx(4 * 32 / 1.0)


def test_one_images_latency_is_the_median_and_99th_percentile_of_timed_passes_after_warm_up():
    clock = ManualClock()
    durations = iter([9.0, 9.0, 9.0] + [0.002] * 98 + [0.010, 0.020] + [0.002] * 100)  # seconds

    def run_one():
        clock.advance(next(durations))

    p50, p99 = single_image_latency_ms(run_one, warmup=3, samples=(20, 100), seconds=10.0, clock=clock)
    assert p50 == pytest.approx(2.0) and p99 == pytest.approx(10.1)  # numpy's linear percentile: 10 + 0.01 x 10
    # at least 20 passes however slow, then until the time is spent
    slow = ManualClock()
    passes = []

    def run_slow():
        passes.append(slow.now)
        slow.advance(0.1)

    assert single_image_latency_ms(run_slow, warmup=0, samples=(20, 100), seconds=0.5, clock=slow) == (
        pytest.approx(100.0),
        pytest.approx(100.0),
    )
    assert len(passes) == 20
    with pytest.raises(ValueError, match="samples 1 <= fewest <= most"):
        single_image_latency_ms(run_slow, samples=(5, 2))


# --------------------------------------------------------------------------- convergence

CURVE = [0.50, 0.70, 0.81, 0.79, 0.845, 0.848, 0.85]
ELAPSED = [12.0, 20.0, 28.0, 36.0, 44.0, 52.0, 60.0]


def test_epochs_to_target_is_the_first_epoch_at_or_above_it():
    assert epochs_to_target(CURVE, 0.80) == 3
    assert epochs_to_target(CURVE, 0.81) == 3  # >=, not >
    assert epochs_to_target(CURVE, 0.90) is None
    assert epochs_to_target([math.nan, 0.9], 0.8) == 2


def test_epochs_to_plateau_is_the_first_epoch_within_half_a_point_of_the_best():
    assert epochs_to_plateau(CURVE) == 5  # best 0.85; 0.845 is within 0.005
    assert epochs_to_plateau([0.6, 0.6, 0.6]) == 1
    assert epochs_to_plateau([]) is None


def test_time_to_target_is_the_wall_time_at_that_epoch():
    assert time_to_target(CURVE, ELAPSED, 0.80) == 28.0
    assert time_to_target(CURVE, ELAPSED, 0.99) is None


# --------------------------------------------------------------------------- the training part's end


@pytest.mark.backends
@pytest.mark.parametrize("validation", [True, False])
def test_the_training_part_is_timed_to_when_the_device_has_run_its_steps(monkeypatch, validation):
    """JAX (and TensorFlow on a GPU) return from a step before the device runs it: the reporter
    waits once an epoch, where training ends, before it reads the clock."""
    import keras
    import numpy as np

    from bench.trial import measure
    from bench.trial.gpu_sampler import NvmlSampler
    from tests.fake_nvml import FakeNvml

    waits = []
    wait_for_device = measure.wait_for_device

    def recording_wait(model):
        wait_for_device(model)
        waits.append(int(keras.ops.convert_to_numpy(model.optimizer.iterations)))

    monkeypatch.setattr(measure, "wait_for_device", recording_wait)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    images, labels = np.zeros((32, 4), "float32"), np.zeros(32, "int32")
    reports = []
    sampler = NvmlSampler(None, nvml=FakeNvml([], ManualClock(), fail_init=True))
    reporter = measure.EpochReporter(reports.append, {}, len(labels), sampler, dict, epochs=2)
    with sampler:
        model.fit(
            images,
            labels,
            batch_size=8,
            epochs=2,
            validation_data=(images, labels) if validation else None,
            callbacks=[reporter],
            verbose=0,
        )
    assert waits == [4, 8]  # once an epoch, after its four steps
    assert [report["epoch"] for report in reports] == [1, 2]
    assert all(0 < report["train_seconds"] <= report["epoch_seconds"] for report in reports)


class _Cycle:
    def __init__(self):
        self.itself = self


def test_release_freed_memory_collects_what_only_reference_cycles_keep():
    cycle = _Cycle()
    alive = weakref.ref(cycle)
    gc.disable()  # the collector's own schedule must not do it for us
    try:
        del cycle
        assert alive() is not None
        release_freed_memory()
        assert alive() is None
    finally:
        gc.enable()


def test_resident_memory_reads_this_process_and_nan_for_a_process_that_is_gone():
    assert resident_memory_bytes() > 10 * 2**20
    assert math.isnan(resident_memory_bytes(2**22 + 1))  # above Linux's largest pid
