"""What a trial measures on itself while it trains: per-epoch timings and the flat report,
the process's resident memory (the inference timing is bench/trial/inference.py's).

``EpochReporter`` is the Keras callback that turns each epoch into one flat dict of
``EPOCH_METRIC_KEYS`` (the row ``bench/execute/runner.py`` hands to Ray Tune and ``bench/report/results.py``
tables); the timing definitions are DESIGN.md's measurement rules.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np
import psutil

from bench.choices import metric_column
from bench.scores import class_scores, confusion_text
from bench.trial.checkpoints import CheckpointRule, TrialState
from bench.trial.confusion import CONFUSION_METRIC
from bench.trial.gpu_sampler import GpuReading, NvmlSampler
from bench.trial.inference import INFERENCE_KEYS
from bench.trial.step_timer import wait_for_device

# what a trial reports each epoch, in this order (results tables keep it)
EPOCH_METRIC_KEYS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "val_accuracy_oversampled",  # at the trial's end only (NaN before): ten views per image, averaged
    # from the validation pass's confusion matrix (bench/scores.py: scikit-learn's definitions)
    "val_balanced_accuracy",
    "val_macro_f1",
    "val_confusion",  # JSON text, rows true class, columns predicted
    "epoch_seconds",
    "train_seconds",
    "train_images_per_sec",
    "elapsed_seconds",
    "params",
    "trainable_params",
    "model_bytes",  # the network's weights, as stored (a .keras file adds a few kB of configuration)
    "train_images",
    "val_images",
    "started_at",
    "flops_per_image",  # forward
    "train_flops_per_image",  # what trains (bench.trial.flops.training_flops): the MFU's numerator per image
    # where the trial ran: the node's host name and versions (a cluster's nodes may differ)
    "node_host",
    "node_python",
    "node_tensorflow",
    "node_keras",
    "node_ray",
    "node_jax",
    # how it executed, resolved on its node (bench/trial/execution.py)
    "backend",
    "precision",
    "jit",
    "data_on_device",
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
    "latency_ms_p50",  # epoch 1 only: one image's forward pass, median and 99th percentile
    "latency_ms_p99",
    "infer_batches",  # epoch 1 only: the timed inference batches (SMOKE_MEASURES: the fewest)
    "process_rss_bytes",  # the trial process's resident memory at the epoch's end (bounded across trials)
    "oversample_seconds",  # what the over-sampled evaluation took (outside every epoch's timings)
    "oversampled_faces",  # the validation faces it was measured on (all, or SMOKE_MEASURES's first few)
    "attempt",  # 1 for a trial's first run, 2 after it restarted (from its checkpoint), ...
    "checkpoint_seconds",  # what saving this epoch's checkpoint took (NaN: none saved); outside timings
)
Reporter = Callable[..., None]  # report(metrics) or report(metrics, checkpoint=folder)


def release_freed_memory() -> None:
    """Collect a finished trial's objects and hand the freed heap back to the system.

    A model and its graphs are reference cycles, and glibc keeps freed heap pages for reuse:
    a reused worker's resident memory otherwise rose and fell by ~0.9 GB over every ten
    small trials. malloc_trim is glibc's (Linux); elsewhere the collection alone runs.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def resident_memory_bytes(pid: int | None = None) -> float:
    """The process's resident memory now (this process by default), NaN where it cannot be read."""
    try:
        return float(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return math.nan


def gpu_report(reading: GpuReading) -> dict[str, Any]:
    """A GPU reading as flat report scalars: NaN for missing numbers, "" for missing text."""

    def number(value):
        return math.nan if value is None else float(value)

    return {
        "energy_j": number(reading.energy_j),
        "power_w": number(reading.power_w_mean),
        "power_w_max": number(reading.power_w_max),
        "gpu_util": number(reading.gpu_util_mean),
        "gpu_memory_bytes": number(reading.memory_used_bytes_max),
        "process_gpu_memory_bytes": number(reading.process_memory_bytes_max),
        "energy_source": reading.energy_source or "",
        "gpu_count": reading.gpu_count,
        "gpu_names": ", ".join(reading.gpu_names),
        "gpu_shared": "" if reading.shared is None else ("yes" if reading.shared else "no"),
        "nvml_reason": reading.reason or "",
    }


class Patience:
    """The patience rule: a trial ends once ``patience`` epochs pass without a better val score
    (its run's ranking metric: accuracy unless the suite or --metric says otherwise).

    The runner's stopper applies it; the trial applies it too, to know its last epoch.
    """

    def __init__(self, patience: int | None):
        self.patience = patience
        self.best = -math.inf
        self.best_epoch = 0

    def exhausted(self, epoch: int, accuracy: float) -> bool:
        """Record epoch ``epoch`` (1-based); True when the trial should stop after it."""
        if self.patience is None:
            return False
        if accuracy > self.best:  # NaN is never better: it counts toward the patience
            self.best, self.best_epoch = accuracy, epoch
            return False
        return epoch - self.best_epoch >= self.patience

    def state(self) -> tuple[float, int]:
        return self.best, self.best_epoch


class EpochReporter(keras.callbacks.Callback):
    """Times each epoch's training part (validation excluded) and reports flat metrics.

    Each epoch closes a lap of the GPU sampler. Inference (throughput and one image's latency)
    is measured once, at the end of epoch 1, and the over-sampled accuracy at the trial's last
    epoch (its budget's, or the one the patience rule ends it at), each before that epoch's
    report: a scheduler may stop the trial after any report. The validation pass's confusion
    matrix gives each epoch's balanced accuracy and macro-F1; the patience rule reads the run's
    ranking metric (``metric``). Their time and GPU energy count in no epoch and not in
    elapsed seconds. Where ``rule`` says a checkpoint is due (bench.trial.checkpoints.CheckpointRule),
    ``checkpoint`` writes the trial's state to a folder that goes out with the epoch's report.
    Elapsed seconds count from the first attempt's start (``state.origin``), a lost attempt
    included: MLPerf's rule. An epoch whose training loss is not finite is reported and ends
    the trial (bench/report/results.py calls it diverged). It overrides no batch hook, so
    Keras keeps dispatching steps asynchronously; where the training part ends it waits once
    for the device to finish the steps dispatched (``wait_for_device``): JAX, and TensorFlow
    on a GPU, return from a step before the device has run it, and a clock read at the start
    of validation would time the dispatch, not the training.
    """

    def __init__(
        self,
        report: Reporter,
        static: dict,
        train_images: int,
        sampler: NvmlSampler,
        measure_inference: Callable[[], dict[str, float]],
        measure_oversampled: Callable[[], float] | None = None,
        epochs: int | None = None,
        patience: int | None = None,
        state: TrialState | None = None,
        checkpoint: Callable[[TrialState], Path] | None = None,
        rule: CheckpointRule | None = None,
        metric: str = "accuracy",
        oversampled_faces: int | None = None,
    ):
        super().__init__()
        self.score_key = metric_column(metric)
        self.report = report
        self.static = static
        self.train_images = train_images
        self.sampler = sampler
        self.measure_inference = measure_inference
        self.measure_oversampled = measure_oversampled
        self.oversampled_faces = math.nan if oversampled_faces is None else oversampled_faces
        self.epochs = epochs
        self.patience = Patience(patience)
        state = state or TrialState(epoch=0, origin=time.time())
        self.attempt = state.attempt
        self.origin = state.origin or time.time()
        self.excluded_seconds = state.excluded_seconds  # the inference and over-sampled seconds
        self.patience.best, self.patience.best_epoch = state.patience_best, state.patience_best_epoch
        self.checkpoint = checkpoint
        self.rule = rule or CheckpointRule()
        self.checkpoint_cost = 0.0  # seconds the last checkpoint took (none yet: the first is due)
        self.last_checkpoint_end = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.perf_counter()
        self.validation_started = None

    def on_test_begin(self, logs=None):
        if self.validation_started is None:
            wait_for_device(self.model)
            self.validation_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self.validation_started is None:  # no validation pass: training ends here
            wait_for_device(self.model)
        now = time.perf_counter()
        logs = logs or {}
        train_seconds = (self.validation_started or now) - self.epoch_started
        gpu = self.sampler.lap()
        elapsed = time.time() - self.origin - self.excluded_seconds
        oversampled = oversample_seconds = math.nan
        inference = dict.fromkeys(INFERENCE_KEYS, math.nan)
        if epoch == 0:
            inference |= self.measure_inference()
        accuracy = float(logs.get("val_accuracy", float("nan")))
        scores = validation_scores(logs.get(f"val_{CONFUSION_METRIC}"), accuracy)
        train_loss = float(logs.get("loss", float("nan")))
        # a diverged trial ends here, at its epoch's end: a per-batch check (TerminateOnNaN)
        # would make Keras sync host and device after every step
        diverged = not math.isfinite(train_loss)
        if diverged:
            self.model.stop_training = True
        last = self.patience.exhausted(epoch + 1, scores[self.score_key]) or epoch + 1 == self.epochs
        if last and not diverged and self.measure_oversampled is not None:
            started = time.perf_counter()
            oversampled = self.measure_oversampled()
            oversample_seconds = time.perf_counter() - started
        if epoch == 0 or not math.isnan(oversampled):
            self.sampler.lap()  # the measurements' GPU energy belongs to no epoch
            self.excluded_seconds += time.perf_counter() - now
        metrics = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "train_accuracy": float(logs.get("accuracy", float("nan"))),
            "val_loss": float(logs.get("val_loss", float("nan"))),
            "val_accuracy": accuracy,
            "val_accuracy_oversampled": oversampled,
            **{key: value for key, value in scores.items() if key != "val_accuracy"},
            "epoch_seconds": now - self.epoch_started,
            "train_seconds": train_seconds,
            "train_images_per_sec": self.train_images / train_seconds if train_seconds > 0 else float("nan"),
            "elapsed_seconds": elapsed,
            **self.static,
            **gpu_report(gpu),
            **inference,
            "process_rss_bytes": resident_memory_bytes(),
            "oversample_seconds": oversample_seconds,
            "oversampled_faces": self.oversampled_faces,
            "attempt": self.attempt,
            "checkpoint_seconds": math.nan,
        }
        since = time.perf_counter() - self.last_checkpoint_end
        if not (self.checkpoint and self.rule.due(epoch + 1, since, self.checkpoint_cost)):
            self.report(metrics)
            return
        started = time.perf_counter()
        state = TrialState(epoch + 1, self.attempt, self.origin, self.excluded_seconds, *self.patience.state())
        folder = self.checkpoint(state)
        # a real training checkpoints too: its seconds stay in elapsed time (unlike the measurements)
        metrics["checkpoint_seconds"] = time.perf_counter() - started
        try:
            self.report(metrics, checkpoint=folder)
        finally:  # the report has copied it into the run's storage
            shutil.rmtree(folder, ignore_errors=True)
            self.last_checkpoint_end = time.perf_counter()
            self.checkpoint_cost = self.last_checkpoint_end - started  # writing it and storing it


def validation_scores(confusion, accuracy: float) -> dict[str, float | str]:
    """An epoch's validation figures: Keras's accuracy, and those of its confusion matrix
    (NaN and "" where the epoch had none, as with a model compiled without it)."""
    scores: dict[str, float | str] = {"val_accuracy": accuracy, "val_balanced_accuracy": math.nan}
    scores |= {"val_macro_f1": math.nan, "val_confusion": ""}
    if confusion is None:
        return scores
    matrix = np.asarray(confusion)
    figures = class_scores(matrix)
    scores |= {"val_balanced_accuracy": figures.balanced_accuracy, "val_macro_f1": figures.macro_f1}
    return scores | {"val_confusion": confusion_text(matrix)}
