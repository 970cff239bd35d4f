"""Per-model throughput: one training step and one inference batch for every registered model,
in each precision asked for (the Keras dtype policies a trial's ``--precision`` sets).

Small CPU-friendly inputs by default, the report's input sizes with ``--bench-size paper``.
fp32 by default; ``ADIENCE_BENCH_PRECISIONS=fp32,bf16`` adds bf16 (ids ``<model>`` for
fp32, as before precisions, ``<model>-bf16`` for the others; no command-line option, as
pytest reads those from the root conftest.py only). Each benchmark records img/s (batch
over the median round), parameters, GFLOPs per image, the precision and the Keras backend
(``KERAS_BACKEND``) in its ``extra_info``. Inputs are random, already-normalised floats: the
network alone is timed (the input pipeline has its own benchmark in test_harness.py;
``python -m benchmarks.backends`` times the trial's whole step per backend).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from bench.quiet import import_tensorflow_quietly

import_tensorflow_quietly()

import keras  # noqa: E402

import models  # noqa: E402
from bench.trial.execution import DTYPE_POLICIES, current_backend, dtype_policy  # noqa: E402
from bench.trial.flops import forward_flops, training_flops  # noqa: E402

WARMUP_CALLS = 2  # graph tracing and the allocator's first rounds, never timed
PRECISIONS_ENV = "ADIENCE_BENCH_PRECISIONS"


def _precisions() -> list[str]:
    asked = [part.strip() for part in os.environ.get(PRECISIONS_ENV, "fp32").split(",") if part.strip()]
    unknown = [precision for precision in asked if precision not in DTYPE_POLICIES]
    if unknown or not asked:
        raise ValueError(f"{PRECISIONS_ENV}: one or more of {', '.join(DTYPE_POLICIES)}, got {asked}")
    return asked


PRECISIONS = _precisions()


class Built:
    """A compiled network with one batch of inputs, built once per model."""

    def __init__(self, name: str, input_size: int | None, batch_size: int, precision: str = "fp32"):
        entry = models.get_model_entry(name)
        self.name = name
        self.input_size = input_size or entry.default_input_size
        self.batch_size = batch_size
        self.precision = precision
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        with dtype_policy(precision):  # as bench.trial.fit.build_trial_model builds a trial's network
            self.network = models.create_model(name, input_size=self.input_size)
        self.model = self.network  # its softmax computes in float32 whatever the precision (models/layers.py)
        # the trial's loss and optimiser family (bench.trial.fit compiles the same way)
        self.model.compile(optimizer=keras.optimizers.SGD(1e-3, momentum=0.9), loss="sparse_categorical_crossentropy")
        rng = np.random.default_rng(0)
        self.images = rng.standard_normal((batch_size, self.input_size, self.input_size, 3)).astype("float32")
        self.labels = rng.integers(0, 2, batch_size).astype("int32")
        self.params = int(self.network.count_params())
        self.forward_flops = forward_flops(self.network)
        self.training_flops = training_flops(self.network)

    def train_step(self):
        return self.model.train_on_batch(self.images, self.labels)

    def infer(self):
        return np.asarray(self.model.predict_on_batch(self.images))


@pytest.fixture(
    scope="module",
    params=[(name, precision) for name in models.list_models() for precision in PRECISIONS],
    ids=lambda param: param[0] if param[1] == "fp32" else f"{param[0]}-{param[1]}",
)
def built(request, bench_size) -> Built:
    """One model and precision at a time (module scope groups its benchmarks), freed before the next."""
    name, precision = request.param
    model = Built(name, bench_size.input_size, bench_size.batch_size, precision)
    yield model
    del model
    keras.backend.clear_session()


def _record(benchmark, built: Built, mode: str, bench_size) -> float:
    seconds = benchmark.stats.stats.median
    images_per_sec = built.batch_size / seconds
    flops = built.training_flops if mode == "train" else built.forward_flops
    benchmark.extra_info.update(
        {
            "model": built.name,
            "mode": mode,
            "precision": built.precision,
            "dtype_policy": DTYPE_POLICIES[built.precision],
            "backend": current_backend(),
            "bench_size": bench_size.name,
            "input_size": built.input_size,
            "batch_size": built.batch_size,
            "images_per_sec": images_per_sec,
            "params": built.params,
            "gflops_per_image": flops / 1e9,
            "forward_gflops_per_image": built.forward_flops / 1e9,
        }
    )
    print(
        f"\n{built.name} {mode} {built.precision} on {current_backend()} ({built.input_size}px, "
        f"batch {built.batch_size}): {images_per_sec:.1f} img/s"
    )
    return images_per_sec


def _group_suffix(bench_size, built: Built) -> str:
    """fp32 keeps the group names saved runs had before precisions; others say theirs."""
    return bench_size.name if built.precision == "fp32" else f"{bench_size.name}, {built.precision}"


def test_train_step(benchmark, built, bench_size):
    benchmark.group = f"train step ({_group_suffix(bench_size, built)})"
    for _ in range(WARMUP_CALLS):
        built.train_step()
    benchmark.pedantic(built.train_step, rounds=bench_size.rounds, iterations=1)
    assert np.isfinite(_record(benchmark, built, "train", bench_size))


def test_inference_batch(benchmark, built, bench_size):
    benchmark.group = f"inference batch ({_group_suffix(bench_size, built)})"
    for _ in range(WARMUP_CALLS):
        built.infer()
    probabilities = benchmark.pedantic(built.infer, rounds=bench_size.rounds, iterations=1)
    assert probabilities.shape == (built.batch_size, 2)
    assert np.isfinite(_record(benchmark, built, "inference", bench_size))
