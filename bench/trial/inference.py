"""The inference figures a trial measures after its first epoch (throughput at a fixed batch,
one image's latency), and how much a trial measures at its start and end: ``MeasureBudget``,
in full or as a smoke run's (``SMOKE_MEASURES``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from bench.trial.step_timer import time_steps

INFERENCE_BATCH_SIZE = 32
INFERENCE_KEYS = ("infer_images_per_sec", "latency_ms_p50", "latency_ms_p99", "infer_batches")
LATENCY_SAMPLES = (20, 100)  # batch-1 passes timed: at least, at most (within LATENCY_SECONDS)
LATENCY_SECONDS = 0.5  # a tiny CNN's hundred passes take 0.2 s of a trial's fixed cost here


@dataclass(frozen=True)
class MeasureBudget:
    """How much of a trial's end and start measurements to run: the over-sampled evaluation's
    faces (None: every validation face) and the inference timing's passes."""

    oversample_faces: int | None = None
    warmup_batches: int = 2
    min_batches: int = 3
    min_seconds: float = 1.0
    latency_warmup: int = 3
    latency_samples: tuple[int, int] = LATENCY_SAMPLES
    latency_seconds: float = LATENCY_SECONDS


FULL_MEASURES = MeasureBudget()
# A smoke run proves the path, not the figures: the over-sampled accuracy of the first 16
# validation faces, one inference batch and two single images, none warmed up (a smoke run's
# transfer trials run eagerly: nothing to trace). In full these cost EfficientNetV2M 34 s of
# a 73 s trial on the transfer smoke run (2026-12-06, 2-core CPU).
SMOKE_MEASURES = MeasureBudget(
    oversample_faces=16,
    warmup_batches=0,
    min_batches=1,
    min_seconds=0.0,
    latency_warmup=0,
    latency_samples=(2, 2),
    latency_seconds=0.0,
)


@dataclass(frozen=True)
class InferenceTiming:
    images_per_sec: float
    batch_size: int
    batches: int
    seconds: float
    warmup_batches: int


def measure_inference(
    run_batch: Callable[[], Any],
    batch_size: int,
    *,
    warmup_batches: int = 2,
    min_batches: int = 5,
    min_seconds: float = 1.0,
    max_batches: int = 1000,
    clock: Callable[[], float] = time.perf_counter,
) -> InferenceTiming:
    """Images per second of ``run_batch`` (one forward pass of ``batch_size`` images).

    ``run_batch`` must block until its result is ready (e.g. return host values). The
    warm-up batches (tracing, compilation, allocator) are not timed; then batches run
    until both ``min_batches`` and ``min_seconds`` are reached.
    """
    if batch_size < 1 or min_batches < 1 or warmup_batches < 0:
        raise ValueError("batch_size and min_batches must be >= 1 and warmup_batches >= 0")
    timing = time_steps(
        lambda count: [run_batch() for _ in range(count)],
        batch_size,
        warmup_steps=warmup_batches,
        min_steps=min(min_batches, max_batches),
        max_steps=max_batches,
        min_seconds=min_seconds,
        clock=clock,
    )
    return InferenceTiming(
        images_per_sec=timing.images_per_sec,
        batch_size=batch_size,
        batches=timing.steps,
        seconds=timing.seconds,
        warmup_batches=warmup_batches,
    )


def inference_figures(
    model: keras.Model, images: np.ndarray, budget: MeasureBudget = FULL_MEASURES
) -> dict[str, float]:
    """Throughput at a fixed batch of ``INFERENCE_BATCH_SIZE`` cached images and the latency of one
    image (p50, p99 ms), each after warm-up (``INFERENCE_KEYS``), and the batches timed."""
    batch = images[np.arange(INFERENCE_BATCH_SIZE) % len(images)]
    timing = measure_inference(
        lambda: model.predict_on_batch(batch),
        INFERENCE_BATCH_SIZE,
        warmup_batches=budget.warmup_batches,
        min_batches=budget.min_batches,
        min_seconds=budget.min_seconds,
    )
    p50, p99 = single_image_latency_ms(
        lambda: model.predict_on_batch(images[:1]),
        warmup=budget.latency_warmup,
        samples=budget.latency_samples,
        seconds=budget.latency_seconds,
    )
    figures = {"infer_images_per_sec": timing.images_per_sec, "latency_ms_p50": p50, "latency_ms_p99": p99}
    return figures | {"infer_batches": timing.batches}


def single_image_latency_ms(
    run_one: Callable[[], Any],
    *,
    warmup: int = 3,
    samples: tuple[int, int] = LATENCY_SAMPLES,
    seconds: float = LATENCY_SECONDS,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[float, float]:
    """(p50, p99) milliseconds of ``run_one`` (a forward pass of one image that blocks until its
    result is ready), after ``warmup`` untimed passes: at least ``samples[0]`` passes, then more
    until ``seconds`` have passed, at most ``samples[1]``."""
    fewest, most = samples
    if warmup < 0 or not 1 <= fewest <= most:
        raise ValueError(f"warmup must be >= 0 and samples 1 <= fewest <= most, got {warmup} and {samples}")
    for _ in range(warmup):
        run_one()
    durations: list[float] = []
    started = clock()
    while len(durations) < most and (len(durations) < fewest or clock() - started < seconds):
        begin = clock()
        run_one()
        durations.append(clock() - begin)
    p50, p99 = np.percentile(np.asarray(durations) * 1000.0, [50, 99])
    return float(p50), float(p99)
