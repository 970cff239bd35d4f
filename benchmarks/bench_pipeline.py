"""Input pipeline vs training step: is the model, not the data, what a benchmark measures?

Prints images per second of
  (a) building the decode-once cache (decode + resize of every face, all cores),
  (b) iterating training batches from the cache with the ``report`` policy (read, random
      crop, flips, brightness, contrast, per-image standardisation; compiled, no model),
  (c) the Levi & Hassner training step (the trial's model: preprocessing + network +
      SGD update), steady state after warm-up,
and the ratio (b)/(c); the goal is >= 10, so the input pipeline costs under a tenth of a step.

    python -m benchmarks.bench_pipeline [--data PATH] [--batches N] [--steps N]

The measuring functions are importable (pytest-benchmark wraps them).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the repository root holds data/, models/, bench/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.quiet import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from bench.specs import TrialSpec  # noqa: E402
from bench.trial.fit import build_trial_model  # noqa: E402
from bench.trial.step_timer import time_steps  # noqa: E402
from data.adience import split_folds  # noqa: E402
from data.cache import FaceCache, build_cache, cache_folder, ensure_cache  # noqa: E402
from data.loader import FaceBatches  # noqa: E402
from data.synthetic import ensure_synthetic_dataset  # noqa: E402
from data.transforms import Preprocessing  # noqa: E402

GOAL_RATIO = 10.0


@dataclass(frozen=True)
class Throughput:
    images: int
    seconds: float

    @property
    def images_per_sec(self) -> float:
        return self.images / self.seconds


def measure_cache_build(data_root: Path | str, workers: int | None = None) -> Throughput:
    """Decode every face of ``data_root`` into a fresh cache (in a temporary folder, removed after)."""
    from data.adience import load_faces

    table = load_faces(data_root)
    scratch = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    try:
        folder, fingerprint = cache_folder(table, 256, scratch)
        started = time.perf_counter()
        build_cache(table, folder, fingerprint, workers=workers)
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return Throughput(table.faces.drop_duplicates(["user_id", "face_id", "original_image"]).shape[0], seconds)


class _AlwaysTraining(keras.layers.Layer):
    """Runs Preprocessing in training mode under ``predict``, which compiles it (tf.function / jit)."""

    def __init__(self, inner: Preprocessing, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner

    def call(self, images):
        return self.inner(images, training=True)

    def compute_output_shape(self, input_shape):
        return self.inner.compute_output_shape(input_shape)


def training_batches(cache: FaceCache, batch_size: int, seed: int = 0) -> FaceBatches:
    train, _ = split_folds(cache.faces)
    return FaceBatches(cache, train["slot"], train["gender"], batch_size, shuffle=True, seed=seed)


def measure_training_batches(
    cache: FaceCache, batches: int, batch_size: int = 32, policy: str = "report", normalisation: str = "per_image"
) -> Throughput:
    """Batches read from the cache (read-ahead on) and augmented by ``policy``, as the train step gets them."""
    inputs = keras.Input((cache.image_size, cache.image_size, 3), dtype="uint8")
    augment = keras.Model(inputs, _AlwaysTraining(Preprocessing(policy, normalisation, seed=0))(inputs))
    stream = training_batches(cache, batch_size).stream()
    for _ in range(3):  # warm-up: compile the augmentation
        augment.predict_on_batch(next(stream)[0])
    images = 0
    started = time.perf_counter()
    for _ in range(batches):
        batch, _labels = next(stream)
        np.asarray(augment.predict_on_batch(batch))
        images += len(batch)
    seconds = time.perf_counter() - started
    stream.close()
    return Throughput(images, seconds)


def measure_train_step(
    cache: FaceCache, steps: int, batch_size: int = 32, warmup: int = 3, model: str = "levi_hassner"
) -> Throughput:
    """A trial's train step (report policy, ``model``, SGD) on cached batches held in memory."""
    spec = TrialSpec(name="bench", model=model, batch_size=batch_size)
    keras.utils.set_random_seed(0)
    model, _network = build_trial_model(spec)
    source = training_batches(cache, batch_size)
    held = [source.batch(0, index % len(source)) for index in range(4)]
    served = itertools.count()

    def run(count: int) -> None:
        for _ in range(count):
            model.train_on_batch(*held[next(served) % len(held)])

    timing = time_steps(  # the warm-up: graph building and the first steps
        run, batch_size, warmup_steps=warmup, min_steps=steps, max_steps=steps, chunk=steps
    )
    source.close()
    return Throughput(timing.steps * batch_size, timing.seconds)


def device_line() -> str:
    """Host, accelerators and versions, as the current Keras backend sees them."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        gpus = [device for device in jax.devices() if device.platform == "gpu"]
        versions = f"JAX {jax.__version__}"
    else:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        versions = f"TensorFlow {tf.__version__}"
    where = f"{len(gpus)} GPU(s)" if gpus else f"CPU only, {os.cpu_count()} cores"
    return (
        f"{platform.node()}: {where}; Python {platform.python_version()}, {versions}, "
        f"Keras {keras.__version__} ({backend} backend)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="Adience folder (default: the built-in synthetic data)")
    parser.add_argument("--batches", type=int, default=60, help="training batches timed for (b)")
    parser.add_argument("--steps", type=int, default=10, help="train steps timed for (c)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    data_root = args.data or ensure_synthetic_dataset()

    print(device_line())
    print(f"data: {data_root}")
    build = measure_cache_build(data_root)
    print(f"(a) cache build:      {build.images_per_sec:9.1f} img/s  ({build.images} faces in {build.seconds:.2f} s)")
    cache = ensure_cache(data_root)
    pipeline = measure_training_batches(cache, args.batches, args.batch_size)
    print(
        f"(b) training batches: {pipeline.images_per_sec:9.1f} img/s  "
        f"({pipeline.images} images, report policy, batch {args.batch_size})"
    )
    step = measure_train_step(cache, args.steps, args.batch_size)
    print(
        f"(c) train step:       {step.images_per_sec:9.1f} img/s  "
        f"({args.steps} steps of levi_hassner, batch {args.batch_size})"
    )
    ratio = pipeline.images_per_sec / step.images_per_sec
    verdict = "meets" if ratio >= GOAL_RATIO else "misses"
    print(f"ratio (b)/(c): {ratio:.1f} ({verdict} the goal >= {GOAL_RATIO:g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
