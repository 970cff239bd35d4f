"""Per-model throughput: one training step and one inference batch for every registered model.

Small CPU-friendly inputs by default, the report's input sizes with ``--bench-size paper``.
Each benchmark records img/s (batch over the median round), parameters and GFLOPs per
image in its ``extra_info``. Inputs are random, already-normalised floats: the network
alone is timed (the input pipeline has its own benchmark in test_harness.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.quiet import import_tensorflow_quietly

import_tensorflow_quietly()

import keras  # noqa: E402

import models  # noqa: E402
from bench.flops import TRAINING_TO_FORWARD, forward_flops  # noqa: E402

WARMUP_CALLS = 2  # graph tracing and the allocator's first rounds, never timed


class Built:
    """A compiled network with one batch of inputs, built once per model."""

    def __init__(self, name: str, input_size: int | None, batch_size: int):
        entry = models.get_model_entry(name)
        self.name = name
        self.input_size = input_size or entry.default_input_size
        self.batch_size = batch_size
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        self.network = models.create_model(name, input_size=self.input_size)
        # the trial's loss and optimiser family (bench.trial compiles the same way)
        self.network.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9), loss="sparse_categorical_crossentropy")
        rng = np.random.default_rng(0)
        self.images = rng.standard_normal((batch_size, self.input_size, self.input_size, 3)).astype("float32")
        self.labels = rng.integers(0, 2, batch_size).astype("int32")
        self.params = int(self.network.count_params())
        self.forward_flops = forward_flops(self.network)

    def train_step(self):
        return self.network.train_on_batch(self.images, self.labels)

    def infer(self):
        return np.asarray(self.network.predict_on_batch(self.images))


@pytest.fixture(scope="module", params=models.list_models())
def built(request, bench_size) -> Built:
    """One model at a time (module scope groups its benchmarks), freed before the next."""
    model = Built(request.param, bench_size.input_size, bench_size.batch_size)
    yield model
    del model
    keras.backend.clear_session()


def _record(benchmark, built: Built, mode: str, bench_size) -> float:
    seconds = benchmark.stats.stats.median
    images_per_sec = built.batch_size / seconds
    flops = built.forward_flops * (TRAINING_TO_FORWARD if mode == "train" else 1)
    benchmark.extra_info.update(
        {
            "model": built.name,
            "mode": mode,
            "bench_size": bench_size.name,
            "input_size": built.input_size,
            "batch_size": built.batch_size,
            "images_per_sec": images_per_sec,
            "params": built.params,
            "gflops_per_image": flops / 1e9,
            "forward_gflops_per_image": built.forward_flops / 1e9,
        }
    )
    print(f"\n{built.name} {mode} ({built.input_size}px, batch {built.batch_size}): {images_per_sec:.1f} img/s")
    return images_per_sec


def test_train_step(benchmark, built, bench_size):
    benchmark.group = f"train step ({bench_size.name})"
    for _ in range(WARMUP_CALLS):
        built.train_step()
    benchmark.pedantic(built.train_step, rounds=bench_size.rounds, iterations=1)
    assert np.isfinite(_record(benchmark, built, "train", bench_size))


def test_inference_batch(benchmark, built, bench_size):
    benchmark.group = f"inference batch ({bench_size.name})"
    for _ in range(WARMUP_CALLS):
        built.infer()
    probabilities = benchmark.pedantic(built.infer, rounds=bench_size.rounds, iterations=1)
    assert probabilities.shape == (built.batch_size, 2)
    assert np.isfinite(_record(benchmark, built, "inference", bench_size))
