"""The device-input measure: the rate at which ``fit``'s batches of images are materialised on
the device, streamed from the cache vs gathered from the images held there
(``data.device.DeviceImages``), at batch 32 and 256 on the current backend, against the
fastest report model's train step.

    python -m benchmarks.harness device-input
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from benchmarks import bench_pipeline
from benchmarks.ratio import HarnessRatio, detail_lines
from data.cache import FaceCache
from data.device import DeviceImages, IndexBatches
from data.fit_input import FitInput
from data.loader import FaceBatches

DEVICE_INPUT_BATCH_SIZES = (32, 256)
DEVICE_INPUT_EPOCHS = 20  # timed epochs of the ~1,000 faces per path and batch size (one more, untimed, first)
DEVICE_INPUT_GOAL_OVER_TRAIN = 10.0  # on-device input rate / the fastest report model's train img/s
DEVICE_INPUT_GOAL_OVER_STREAMING = 3.0  # on-device input rate / streaming input rate
DEVICE_INPUT_TRAIN_BATCH_SIZE = 32  # the report's batch, for the train step the goal divides by
# the fastest report model's train step, the goal's divisor: Levi & Hassner, the fastest of the report's
# models in every run (pipeline measure: 25.5 and 27.3 img/s against MobileNetV3Large's 8.2 and 15.2 on
# TensorFlow; 2026-12-02, shared CPU: 8.2 against 7.4 on TensorFlow, 4.9 against 0.83 on JAX, where the
# command took 12 minutes with MobileNetV3Large in). Others: measure_device_input(train_models=...)
DEVICE_INPUT_TRAIN_MODELS = ("levi_hassner",)


@dataclass(frozen=True)
class InputRate:
    """One input path at one batch size: images materialised on the device over the timed epochs."""

    path: str  # streaming, on_device (index_pipeline, gather: diagnostics)
    batch_size: int
    images: int  # over all timed epochs
    batches: int
    seconds: float
    warmup_seconds: float  # the untimed first epoch (tf.function tracing / jit compilation, first reads)
    epoch_rates: tuple[float, ...] = ()  # img/s of each timed epoch
    first_batch_seconds: tuple[float, ...] = ()  # each timed epoch's start to its first batch on the device

    @property
    def epoch_start_ms(self) -> float:
        """Median ms from an epoch's start to its first batch (TensorFlow: a new tf.data iterator)."""
        return 1000 * statistics.median(self.first_batch_seconds) if self.first_batch_seconds else math.nan

    @property
    def images_per_sec(self) -> float:
        """The median epoch's img/s: a neighbour's burst on a shared CPU moves one epoch, not the figure."""
        return statistics.median(self.epoch_rates) if self.epoch_rates else self.images / self.seconds


@dataclass(frozen=True)
class DeviceInput:
    """Streaming vs on-device input rates per batch size, and the two goals checked on them."""

    backend: str
    faces: int
    rates: dict[int, dict[str, InputRate]]  # batch size -> path -> rate
    train_images_per_sec: dict[str, float]  # model -> train-step img/s at DEVICE_INPUT_TRAIN_BATCH_SIZE

    @property
    def fastest_model(self) -> str:
        return max(self.train_images_per_sec, key=self.train_images_per_sec.get)

    def ratios(self) -> list[HarnessRatio]:
        """Per batch size: on device / streaming (goal >= 3), on device / fastest train step (goal >= 10)."""
        fastest = self.train_images_per_sec[self.fastest_model]
        checks = []
        for batch_size, paths in self.rates.items():
            on_device = paths["on_device"].images_per_sec
            checks.append(
                HarnessRatio(
                    f"device input, batch {batch_size} (on device / streaming, img/s)",
                    on_device / paths["streaming"].images_per_sec,
                    DEVICE_INPUT_GOAL_OVER_STREAMING,
                    True,
                    "x",
                )
            )
            checks.append(
                HarnessRatio(
                    f"device input, batch {batch_size} (on device / {self.fastest_model} train step, img/s)",
                    on_device / fastest,
                    DEVICE_INPUT_GOAL_OVER_TRAIN,
                    True,
                    "x",
                )
            )
        return checks

    @property
    def met(self) -> bool:
        return all(ratio.met for ratio in self.ratios())

    def line(self) -> str:
        """The summary: both rates and their ratio per batch size, then the goals' verdict."""
        parts = [
            f"batch {batch_size} streaming {paths['streaming'].images_per_sec:,.0f} img/s, "
            f"on device {paths['on_device'].images_per_sec:,.0f} img/s "
            f"({paths['on_device'].images_per_sec / paths['streaming'].images_per_sec:.1f}x)"
            for batch_size, paths in self.rates.items()
        ]
        fastest = self.fastest_model
        ratios = self.ratios()  # per batch size: (over streaming, over the train step)

        def verdict(checks: list[HarnessRatio]) -> str:
            met = [str(batch) for batch, ratio in zip(self.rates, checks, strict=True) if ratio.met]
            missed = [str(batch) for batch, ratio in zip(self.rates, checks, strict=True) if not ratio.met]
            if not missed:
                return "met"
            return f"met at batch {', '.join(met)}, MISSED at {', '.join(missed)}" if met else "MISSED"

        return (
            f"device-input ({self.backend}): {'; '.join(parts)}; "
            f"goal on device >= {DEVICE_INPUT_GOAL_OVER_STREAMING:g}x streaming: {verdict(ratios[0::2])}; "
            f"goal >= {DEVICE_INPUT_GOAL_OVER_TRAIN:g}x {fastest}'s train step "
            f"({self.train_images_per_sec[fastest]:,.1f} img/s, lowest {min(r.value for r in ratios[1::2]):,.0f}x): "
            f"{verdict(ratios[1::2])}"
        )

    @property
    def detail(self) -> dict:
        detail: dict = {"backend": self.backend, "faces": self.faces}
        for batch_size, paths in self.rates.items():
            for path, rate in paths.items():
                detail[f"{path}_images_per_sec_batch{batch_size}"] = rate.images_per_sec
                detail[f"{path}_ms_per_batch_batch{batch_size}"] = 1000 * rate.seconds / rate.batches
                detail[f"{path}_epoch_start_ms_batch{batch_size}"] = rate.epoch_start_ms
                detail[f"{path}_warmup_seconds_batch{batch_size}"] = rate.warmup_seconds
        for model, value in self.train_images_per_sec.items():
            detail[f"train_step_images_per_sec_{model}"] = value
        detail["fastest_model"] = self.fastest_model
        return detail

    def extra_info(self) -> dict:
        ratios = self.ratios()
        return {
            "goal_met": self.met,
            "goals": {ratio.name: {"ratio": ratio.value, "goal": ratio.goal, "met": ratio.met} for ratio in ratios},
            **self.detail,
        }

    def report_lines(self) -> list[str]:
        return [*(ratio.line() for ratio in self.ratios()), *detail_lines(self.detail), self.line()]


def device_input_faces(cache: FaceCache) -> tuple[np.ndarray, np.ndarray]:
    """(slots, labels) of every labelled face of ``cache``, in slot order."""
    faces = cache.faces[cache.faces["label"] >= 0].sort_values("slot")
    return faces["slot"].to_numpy(np.int64), faces["label"].to_numpy(np.int32)


class _FitEpochs:
    """Epoch after epoch of exactly what ``fit`` is given, read as ``fit`` reads it: one
    iterator over ``FitInput.data`` kept across epochs, ``steps_per_epoch`` batches each."""

    def __init__(self, fit_input: FitInput):
        self.fit_input = fit_input
        self._batches = iter(fit_input.data)

    def __call__(self, _epoch: int):
        for _ in range(self.fit_input.steps_per_epoch):
            yield next(self._batches)


class _DeviceFunctions:
    """The current backend's ways to put a batch as ``fit`` gets it on the device, each returning once it is there.

    ``streaming``: the (uint8 images, labels) batch put on the device. ``on_device``: the
    (positions, labels) batch put there and the images gathered from the ``DeviceImages``
    variable by a compiled function (tf.function / jax.jit), as the trial's compiled step
    gathers them. ``place`` and ``gather`` are the two halves of ``on_device`` (diagnostics).
    """

    def __init__(self, layer: DeviceImages):
        self.backend = keras.backend.backend()
        if self.backend == "tensorflow":
            import tensorflow as tf

            self._tf = tf
            self._gpus = tf.config.list_physical_devices("GPU")
            self._device = "/GPU:0" if self._gpus else "/CPU:0"
            # the layer called in a compiled function, as the trial's step calls it (no XLA: Keras's choice on a CPU)
            self._gather = tf.function(
                lambda positions: layer(positions), input_signature=[tf.TensorSpec((None,), tf.int32)]
            )
        elif self.backend == "jax":
            import jax

            self._jax = jax
            self._state = [variable.value for variable in layer.non_trainable_variables]
            self._gather = jax.jit(lambda state, positions: layer.stateless_call([], state, positions)[0])
        else:
            raise NotImplementedError(f"device-input measures the tensorflow and jax backends, not {self.backend}")

    def place(self, batch):
        """The batch's arrays on the device (on a CPU TensorFlow's tensors are there already: a no-op)."""
        if self.backend == "tensorflow":
            with self._tf.device(self._device):
                placed = tuple(self._tf.identity(part) for part in batch)
            self._sync()
            return placed
        return self._jax.block_until_ready(self._jax.device_put(tuple(batch)))

    def gather(self, positions):
        """The images at ``positions`` (already on the device) gathered from the variable, ready."""
        if self.backend == "tensorflow":
            with self._tf.device(self._device):
                images = self._gather(positions)
            self._sync()
            return images
        return self._jax.block_until_ready(self._gather(self._state, positions))

    def streaming(self, batch):
        return self.place(batch)

    def on_device(self, batch):
        positions, labels = self.place(batch)
        return self.gather(positions), labels

    def _sync(self) -> None:  # TensorFlow's eager ops on a CPU return done; a GPU's run on, asynchronously
        if self._gpus:
            self._tf.test.experimental.sync_devices()


def measure_input_paths(
    cache: FaceCache,
    batch_size: int,
    epochs: int = DEVICE_INPUT_EPOCHS,
    layer: DeviceImages | None = None,
    seed: int = 0,
) -> dict[str, InputRate]:
    """Streaming and on-device input rates over every labelled face of ``cache``, at ``batch_size``.

    Each path runs one untimed epoch (tracing / compilation, first reads), then ``epochs``
    timed epochs, the paths in alternation epoch by epoch, so a change in a shared CPU's
    load falls on all alike; a path's rate is its median epoch's. ``streaming``: ``FitInput(FaceBatches over the cache)``, each
    batch put on the device; ``on_device``: ``FitInput(IndexBatches)``, positions put on the
    device and the images gathered from ``layer`` (the same faces, held there). Two
    diagnostics take ``on_device`` apart: ``index_pipeline``, the positions through
    ``FitInput`` alone, nothing gathered; ``gather``, the compiled gather alone, from an
    epoch's positions already on the device.
    """
    slots, labels = device_input_faces(cache)
    layer = layer or DeviceImages(cache.read(slots), name="device_images")
    functions = _DeviceFunctions(layer)
    streaming = FaceBatches(cache, slots, labels, batch_size, shuffle=True, seed=seed)
    indices = IndexBatches(labels, batch_size, shuffle=True, seed=seed)
    indices_alone = IndexBatches(labels, batch_size, shuffle=True, seed=seed)
    held = [functions.place(indices.batch(0, index))[0] for index in range(len(indices))]
    fit_inputs = [FitInput(batches, epochs + 1) for batches in (streaming, indices, indices_alone)]
    paths: dict[str, tuple[Callable[[int], object], Callable]] = {
        "streaming": (_FitEpochs(fit_inputs[0]), functions.streaming),
        "on_device": (_FitEpochs(fit_inputs[1]), functions.on_device),
        "index_pipeline": (_FitEpochs(fit_inputs[2]), lambda batch: batch),
        "gather": (lambda _epoch: iter(held), lambda positions: (functions.gather(positions), positions)),
    }
    seconds = dict.fromkeys(paths, 0.0)
    warmup = dict.fromkeys(paths, 0.0)
    images = dict.fromkeys(paths, 0)
    batches = dict.fromkeys(paths, 0)
    epoch_rates: dict[str, list[float]] = {path: [] for path in paths}
    first_batch: dict[str, list[float]] = {path: [] for path in paths}
    try:
        for epoch in range(epochs + 1):
            for path, (epoch_batches, function) in paths.items():
                count = steps = 0
                started = time.perf_counter()
                first = math.nan
                for batch in epoch_batches(epoch):
                    count += int(function(batch)[1].shape[0])
                    steps += 1
                    if steps == 1:
                        first = time.perf_counter() - started
                elapsed = time.perf_counter() - started
                if epoch == 0:
                    warmup[path] = elapsed
                else:
                    seconds[path] += elapsed
                    images[path] += count
                    batches[path] += steps
                    epoch_rates[path].append(count / elapsed)
                    first_batch[path].append(first)
    finally:
        for fit_input in fit_inputs:
            fit_input.close()
            fit_input.batches.close()
    return {
        path: InputRate(
            path,
            batch_size,
            images[path],
            batches[path],
            seconds[path],
            warmup[path],
            tuple(epoch_rates[path]),
            tuple(first_batch[path]),
        )
        for path in paths
    }


def measure_device_input(
    cache: FaceCache,
    batch_sizes: tuple[int, ...] = DEVICE_INPUT_BATCH_SIZES,
    epochs: int = DEVICE_INPUT_EPOCHS,
    train_models: tuple[str, ...] = DEVICE_INPUT_TRAIN_MODELS,
    train_steps: int = 10,
) -> DeviceInput:
    """The input rate ``fit`` sees, streaming vs on the device, per batch size, on the current backend.

    Beside it, the train step of ``train_models`` (the trial's model, batch 32, held batches:
    ``bench_pipeline.measure_train_step``) on the same backend: the fastest is what
    the on-device rate must outrun tenfold.
    """
    keras.backend.clear_session()
    slots, _labels = device_input_faces(cache)
    layer = DeviceImages(cache.read(slots), name="device_images")
    rates = {batch_size: measure_input_paths(cache, batch_size, epochs, layer) for batch_size in batch_sizes}
    del layer
    train = {}
    for model in train_models:
        keras.backend.clear_session()
        train[model] = bench_pipeline.measure_train_step(
            cache, train_steps, DEVICE_INPUT_TRAIN_BATCH_SIZE, model=model
        ).images_per_sec
    keras.backend.clear_session()
    return DeviceInput(keras.backend.backend(), len(slots), rates, train)
