"""One trial: data + model + fit, reporting flat per-epoch metrics through a callback.

This module imports no ray: ``bench/runner.py`` passes ``tune.report`` in as ``report``,
so a trial also runs (and is tested) without Ray.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

import models
from bench.profiler import NvmlSampler, measure_inference
from bench.specs import TrialSpec
from data.adience import load_faces, split_folds
from data.cache import DEFAULT_IMAGE_SIZE, decode_faces
from data.loader import ArrayBatches
from data.transforms import Preprocessing

EVAL_BATCH_SIZE = 64
# what a trial reports each epoch, in this order (results tables keep it)
EPOCH_METRIC_KEYS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "epoch_seconds",
    "train_seconds",
    "train_images_per_sec",
    "elapsed_seconds",
    "params",
    "trainable_params",
    "train_images",
    "val_images",
    "flops_per_image",
    # profiling: GPU figures over the epoch (NaN / "" without a GPU, nvml_reason says why)
    "energy_j",
    "power_w",
    "power_w_max",
    "gpu_util",
    "gpu_memory_bytes",
    "process_gpu_memory_bytes",
    "energy_source",
    "gpu_count",
    "gpu_names",
    "gpu_shared",
    "nvml_reason",
    "infer_images_per_sec",  # epoch 1 only: measured once, outside the epochs' timings
)
INFERENCE_BATCH_SIZE = 32
Reporter = Callable[[dict], None]


@dataclass(frozen=True)
class TrialData:
    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray


def balanced_subset(rows: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """At most ``limit`` rows, drawn per gender in proportion, deterministic from ``seed``."""
    if limit is None or len(rows) <= limit:
        return rows
    share = limit / len(rows)
    picked = [
        group.sample(n=max(1, math.floor(len(group) * share)), random_state=seed)
        for _, group in rows.groupby("gender", sort=True)
    ]
    return pd.concat(picked).sort_index().reset_index(drop=True)


def load_trial_data(spec: TrialSpec, data_root: Path | str) -> TrialData:
    table = load_faces(data_root)
    train, val = split_folds(table.faces, spec.val_fold, spec.train_folds)
    train = balanced_subset(train, spec.train_limit, spec.seed)
    val = balanced_subset(val, spec.val_limit, spec.seed)
    if train.empty or val.empty:
        raise ValueError(f"trial {spec.name}: the split has {len(train)} training and {len(val)} validation faces")
    return TrialData(
        train_images=decode_faces(train["path"].tolist(), DEFAULT_IMAGE_SIZE),
        train_labels=train["gender"].to_numpy(np.int32),
        val_images=decode_faces(val["path"].tolist(), DEFAULT_IMAGE_SIZE),
        val_labels=val["gender"].to_numpy(np.int32),
    )


def build_optimizer(spec: TrialSpec) -> keras.optimizers.Optimizer:
    weight_decay = spec.weight_decay or None
    if spec.optimizer == "sgd":
        return keras.optimizers.SGD(spec.learning_rate, momentum=spec.momentum, weight_decay=weight_decay)
    return keras.optimizers.Adam(spec.learning_rate, weight_decay=weight_decay)


def build_trial_model(spec: TrialSpec) -> tuple[keras.Model, keras.Model]:
    """(training model taking 256x256 uint8-valued images, the bare network inside it)."""
    network = models.create_model(spec.model, **spec.model_options)
    preprocessing = Preprocessing(spec.policy, spec.normalisation, seed=spec.seed, name="preprocessing")
    images = keras.Input((DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE, 3), name="cached_image")
    model = keras.Model(images, network(preprocessing(images)), name=f"{spec.model}_trainer")
    model.compile(
        optimizer=build_optimizer(spec),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model, network


class EpochReporter(keras.callbacks.Callback):
    """Times each epoch's training part (validation excluded) and reports flat metrics.

    Each epoch closes a lap of the GPU sampler. Inference throughput is measured once, at
    the end of epoch 1, before its report: a scheduler may stop the trial after any report,
    so the end of training is no place to wait for. Its time and GPU energy count in no
    epoch and not in elapsed seconds.
    """

    def __init__(
        self,
        report: Reporter,
        static: dict,
        train_images: int,
        sampler: NvmlSampler,
        measure_inference: Callable[[], float],
    ):
        super().__init__()
        self.report = report
        self.static = static
        self.train_images = train_images
        self.sampler = sampler
        self.measure_inference = measure_inference
        self.run_started = time.perf_counter()
        self.excluded_seconds = 0.0  # the inference measurement

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.perf_counter()
        self.validation_started = None

    def on_test_begin(self, logs=None):
        if self.validation_started is None:
            self.validation_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        logs = logs or {}
        train_seconds = (self.validation_started or now) - self.epoch_started
        gpu = self.sampler.lap()
        elapsed = now - self.run_started - self.excluded_seconds
        inference = math.nan
        if epoch == 0:
            inference = self.measure_inference()
            self.sampler.lap()  # the measurement's GPU energy belongs to no epoch
            self.excluded_seconds += time.perf_counter() - now
        self.report(
            {
                "epoch": epoch + 1,
                "train_loss": float(logs.get("loss", float("nan"))),
                "train_accuracy": float(logs.get("accuracy", float("nan"))),
                "val_loss": float(logs.get("val_loss", float("nan"))),
                "val_accuracy": float(logs.get("val_accuracy", float("nan"))),
                "epoch_seconds": now - self.epoch_started,
                "train_seconds": train_seconds,
                "train_images_per_sec": self.train_images / train_seconds if train_seconds > 0 else float("nan"),
                "elapsed_seconds": elapsed,
                **self.static,
                **gpu.to_report(),
                "infer_images_per_sec": inference,
            }
        )


def inference_images_per_sec(model: keras.Model, images: np.ndarray) -> float:
    """Forward passes of a fixed batch of ``INFERENCE_BATCH_SIZE`` cached images, after warm-up."""
    rows = np.arange(INFERENCE_BATCH_SIZE) % len(images)
    batch = images[rows].astype(np.float32)
    timing = measure_inference(lambda: model.predict_on_batch(batch), INFERENCE_BATCH_SIZE, min_batches=3)
    return timing.images_per_sec


def run_trial(spec: TrialSpec, data_root: Path | str, report: Reporter) -> None:
    """Train ``spec`` on ``data_root``, calling ``report`` once per epoch."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(spec.seed)
    data = load_trial_data(spec, data_root)
    model, network = build_trial_model(spec)
    static = {
        "params": int(network.count_params()),
        "trainable_params": int(sum(np.prod(w.shape) for w in network.trainable_weights)),
        "train_images": len(data.train_labels),
        "val_images": len(data.val_labels),
        "flops_per_image": math.nan,  # n/a until trial.py calls bench.flops.forward_flops(network)
    }
    sampler = NvmlSampler()
    infer = functools.partial(inference_images_per_sec, model, data.val_images)
    callbacks: list[keras.callbacks.Callback] = [EpochReporter(report, static, len(data.train_labels), sampler, infer)]
    if spec.patience:
        callbacks.append(keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=spec.patience))
    sampler.start()
    try:
        model.fit(
            ArrayBatches(data.train_images, data.train_labels, spec.batch_size, shuffle=True, seed=spec.seed),
            validation_data=ArrayBatches(data.val_images, data.val_labels, EVAL_BATCH_SIZE, shuffle=False),
            epochs=spec.epochs,
            callbacks=callbacks,
            verbose=0,
        )
    finally:
        sampler.stop()
        del model, network
        keras.backend.clear_session()
