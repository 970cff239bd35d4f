"""bench/trial/step_timer.py: the one timer of N steps that a trial's measures and every benchmark use."""

import keras
import numpy as np
import pytest

from bench.trial.step_timer import EpochClock, StepTiming, time_steps, wait_for_device
from tests.fake_nvml import ManualClock


def test_warm_up_steps_are_timed_apart_and_steps_run_until_count_and_seconds_are_both_reached():
    clock, ran, waits = ManualClock(), [], []

    def run(count):
        ran.append(count)
        for _ in range(count):
            clock.advance(5.0 if len(ran) == 1 else 0.25)  # the warm-up traces: slow

    timing = time_steps(
        run, 16, warmup_steps=2, min_steps=3, min_seconds=1.0, wait=lambda: waits.append(clock.now), clock=clock
    )
    assert ran == [2, 1, 1, 1, 1] and len(waits) == 5  # the device waited for before every clock read
    assert timing == StepTiming(steps=4, batch_size=16, seconds=1.0, warmup_steps=2, warmup_seconds=10.0)
    assert timing.images_per_sec == pytest.approx(64.0) and timing.seconds_per_step == pytest.approx(0.25)


def test_a_fixed_count_runs_as_one_chunk_and_max_steps_caps_the_loop():
    clock, ran = ManualClock(), []

    def run(count):
        ran.append(count)
        clock.advance(0.1 * count)

    fixed = time_steps(run, 8, min_steps=50, max_steps=50, chunk=50, clock=clock)
    assert ran == [50] and fixed.steps == 50 and fixed.seconds == pytest.approx(5.0) and fixed.warmup_seconds == 0.0
    ran.clear()
    capped = time_steps(run, 8, min_steps=2, max_steps=5, min_seconds=100.0, chunk=2, clock=clock)
    assert ran == [2, 2, 1] and capped.steps == 5  # the last chunk cut to what max_steps leaves


@pytest.mark.parametrize(
    "options",
    [{"min_steps": 0}, {"warmup_steps": -1}, {"chunk": 0}, {"min_steps": 5, "max_steps": 4}],
)
def test_bad_counts_are_refused(options):
    with pytest.raises(ValueError, match="must be >= 1"):
        time_steps(lambda count: None, 32, **options)
    with pytest.raises(ValueError, match="must be >= 1"):
        time_steps(lambda count: None, 0)


def _tiny_model() -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def test_the_epoch_clock_times_each_epoch_s_training_part_without_validation(monkeypatch):
    from bench.trial import step_timer

    clock, events = ManualClock(), []
    monkeypatch.setattr(step_timer, "wait_for_device", lambda model: events.append(("wait", clock.now)))

    class Validation(keras.callbacks.Callback):  # what validation costs: after the training part's end
        def on_test_begin(self, logs=None):
            clock.advance(100.0)

    class Training(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            clock.advance(1.0)

    heard = []
    epoch_clock = EpochClock(lambda epoch, window, logs: heard.append((epoch, window, "loss" in logs)), clock=clock)
    images, labels = np.zeros((32, 4), "float32"), np.zeros(32, "int32")
    model = _tiny_model()
    model.fit(
        images,
        labels,
        batch_size=8,
        epochs=2,
        validation_data=(images, labels),
        verbose=0,
        callbacks=[Training(), epoch_clock, Validation()],
    )
    assert epoch_clock.windows == [(0.0, 4.0), (104.0, 108.0)]  # 4 steps of 1 s; the 100 s of validation left out
    assert heard == [(0, (0.0, 4.0), True), (1, (104.0, 108.0), True)]
    assert [moment for _kind, moment in events] == [4.0, 108.0]  # one wait an epoch, where training ends


def test_waiting_for_the_device_reads_the_optimizer_s_step_count():
    model = _tiny_model()
    wait_for_device(model)  # not trained yet: nothing to wait for, no error
    model.fit(np.zeros((16, 4), "float32"), np.zeros(16, "int32"), batch_size=8, epochs=1, verbose=0)
    wait_for_device(model)
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 2
    wait_for_device(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))  # never compiled: no optimizer
