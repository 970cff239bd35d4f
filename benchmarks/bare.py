"""A bare ``model.fit`` of a trial's model on the trial's data, trained the way the trial trains
it: what every harness-overhead benchmark compares the harness with.

Same model, optimizer and metrics (``bench.trial.fit.build_trial_model``), same batches fed the
same way (``data.fit_input.FitInput``), and the images held on the device where the trial
would hold them (``data_on_device``: auto puts a small split there, the CPU's memory
included); nothing else: no validation, no reporter, no NVML, no Ray.
"""

from __future__ import annotations

from collections.abc import Callable

import keras

from bench.specs import TrialSpec
from bench.trial.execution import resolve_data_on_device
from bench.trial.fit import build_device_trainer, build_trial_model, load_trial_data
from bench.trial.step_timer import EpochClock
from benchmarks.ratio import steady_images_per_sec
from data.cache import FaceCache
from data.fit_input import FitInput


def _epoch_report(report: Callable[[dict], None]) -> Callable[[int, tuple[float, float], dict], None]:
    """An ``EpochClock`` listener that reports each epoch as a trial's flat metrics would."""

    def on_epoch(epoch: int, window: tuple[float, float], logs: dict) -> None:
        seconds = window[1] - window[0]
        report(
            {
                "epoch": epoch + 1,
                "train_loss": float(logs.get("loss", float("nan"))),
                "train_accuracy": float(logs.get("accuracy", float("nan"))),
                "val_loss": float("nan"),
                "val_accuracy": 0.0,
                "epoch_seconds": seconds,
                "train_seconds": seconds,
                "train_images_per_sec": 0.0,
                "elapsed_seconds": 0.0,
            }
        )

    return on_epoch


def bare_fit(
    spec: TrialSpec, cache: FaceCache, report: Callable[[dict], None] | None = None, keras_adapter: bool = False
) -> tuple[list[tuple[float, float]], int]:
    """``model.fit`` of the trial's model on the trial's training batches: (epoch windows, wall clock; training images).

    The batches go to ``fit`` as the trial passes them (``FitInput``: image positions where the
    trial would hold the images on the device, else streamed images), or with ``keras_adapter``
    as the streamed PyDataset itself, for Keras to wrap (autotuned tf.data prefetch).
    """
    keras.backend.clear_session()
    keras.utils.set_random_seed(spec.seed)
    data = load_trial_data(spec, cache)
    model, _network = build_trial_model(spec, data.channel_stats, len(cache.class_names), image_size=cache.image_size)
    mixes = spec.augmentation.mixes
    on_device = (
        not keras_adapter and not mixes and resolve_data_on_device(spec.data_on_device, data.image_bytes) == "on"
    )
    trainer = build_device_trainer(model, data.device_images(), spec) if on_device else model
    train, val = (
        data.index_batches(spec.batch_size, spec.seed) if on_device else data.batches(spec.batch_size, spec.seed)
    )
    fit_input = FitInput(train, spec.epochs)
    data_for_fit, steps = (train, None) if keras_adapter else (fit_input.data, fit_input.steps_per_epoch)
    clock = EpochClock(_epoch_report(report) if report else None)
    try:
        trainer.fit(
            data_for_fit, steps_per_epoch=steps, shuffle=False, epochs=spec.epochs, callbacks=[clock], verbose=0
        )
    finally:
        fit_input.close()
        train.close()
        val.close()
        del model, trainer
        keras.backend.clear_session()
    return clock.windows, len(data.train_labels)


def bare_fit_images_per_sec(spec: TrialSpec, cache: FaceCache) -> float:
    """Steady-epoch img/s of a plain ``model.fit`` of ``spec``'s model on its batches, nothing else."""
    windows, images = bare_fit(spec, cache)
    return steady_images_per_sec(images, [end - start for start, end in windows])
