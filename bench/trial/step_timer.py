"""The one timer of N steps of a model (training or inference) that a trial's own measures and
every benchmark use: untimed warm-up steps (tracing, compilation, the allocator), then timed
steps until a count and a time are both reached, the device waited for before each clock read.

A step is whatever ``run(n)`` does n times: ``train_on_batch`` or ``predict_on_batch`` on held
batches, or a ``fit`` of n steps. On JAX, and TensorFlow on a GPU, a step returns before the
device has run it; ``wait`` (e.g. ``lambda: wait_for_device(model)``) blocks until it has, so
the clock reads what the device did, not what Python dispatched.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras


@dataclass(frozen=True)
class StepTiming:
    """Timed steps of ``batch_size`` images, the warm-up apart."""

    steps: int
    batch_size: int
    seconds: float
    warmup_steps: int
    warmup_seconds: float

    @property
    def images_per_sec(self) -> float:
        return self.steps * self.batch_size / self.seconds if self.seconds > 0 else math.nan

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / self.steps if self.steps else math.nan


def wait_for_device(model: keras.Model) -> None:
    """Block until the training steps dispatched so far have run on the device.

    The optimizer's step counter is written by every step (on JAX, fit hands it back to the
    model when the epoch's steps are dispatched), so reading it to the host waits for the
    last one: one scalar copy.
    """
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        keras.ops.convert_to_numpy(optimizer.iterations)


def _nothing() -> None:
    return None


def time_steps(
    run: Callable[[int], Any],
    batch_size: int,
    *,
    warmup_steps: int = 0,
    min_steps: int = 1,
    max_steps: int | None = None,
    min_seconds: float = 0.0,
    chunk: int = 1,
    wait: Callable[[], Any] = _nothing,
    clock: Callable[[], float] = time.perf_counter,
) -> StepTiming:
    """Time ``run(n)`` (n steps of ``batch_size`` images each).

    ``warmup_steps`` run first, untimed (their seconds kept apart). Then ``chunk`` steps at a
    time until at least ``min_steps`` have run and ``min_seconds`` have passed, or
    ``max_steps`` have run. A fixed count: ``min_steps = max_steps = chunk = n``.
    """
    most = max_steps if max_steps is not None else math.inf
    if batch_size < 1 or min_steps < 1 or warmup_steps < 0 or chunk < 1 or most < min_steps:
        raise ValueError(
            "batch_size, min_steps and chunk must be >= 1, warmup_steps >= 0 and max_steps >= min_steps, got "
            f"{batch_size}, {min_steps}, {chunk}, {warmup_steps} and {max_steps}"
        )
    warmup_started = clock()
    if warmup_steps:
        run(warmup_steps)
        wait()
    warmup_seconds = clock() - warmup_started
    steps, elapsed = 0, 0.0
    started = clock()
    while steps < most and (steps < min_steps or elapsed < min_seconds):
        count = int(min(chunk, most - steps))
        run(count)
        wait()
        steps += count
        elapsed = clock() - started
    return StepTiming(steps, batch_size, elapsed, warmup_steps, warmup_seconds)


class EpochClock(keras.callbacks.Callback):
    """Wall-clock windows (start, end) of each epoch's training part, validation excluded, the
    device waited for at its end; ``on_epoch(epoch, window, logs)`` hears each as it closes."""

    def __init__(
        self,
        on_epoch: Callable[[int, tuple[float, float], dict], Any] | None = None,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__()
        self.windows: list[tuple[float, float]] = []
        self.on_epoch = on_epoch
        self.clock = clock

    def _trained(self) -> float:
        wait_for_device(self.model)
        return self.clock()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = self.clock()
        self.trained = None

    def on_test_begin(self, logs=None):
        if self.trained is None:  # the epoch's validation pass: its training part has ended
            self.trained = self._trained()

    def on_epoch_end(self, epoch, logs=None):
        window = (self.started, self.trained if self.trained is not None else self._trained())
        self.windows.append(window)
        if self.on_epoch:
            self.on_epoch(epoch, window, logs or {})
