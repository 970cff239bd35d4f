"""One trial: its split of the decoded cache + its model + fit, reporting once per epoch.

This module imports no ray: ``bench/runner.py`` passes ``tune.report`` in as ``report``,
so a trial also runs (and is tested) without Ray. A trial receives the opened
``FaceCache`` the driver built; it reads images from it and no fold file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

import models
from bench.checkpoints import CheckpointRule, TrialState, load_checkpoint, save_checkpoint, scratch_folder
from bench.env import node_facts
from bench.evaluation import build_oversampled_model, oversampled_accuracy
from bench.execution import (
    Execution,
    current_backend,
    dtype_policy,
    jit_compile_argument,
    resolve_data_on_device,
    resolve_precision,
)
from bench.flops import flops_or_nan
from bench.gpu import NvmlSampler
from bench.measure import INFERENCE_BATCH_SIZE, EpochReporter, Reporter, inference_images_per_sec
from bench.specs import TrialSpec
from data.adience import require_nonempty_split, split_folds, with_duplicates
from data.cache import DEFAULT_IMAGE_SIZE, FaceCache, channel_statistics
from data.device import DeviceImages, IndexBatches
from data.loader import FaceBatches
from data.transforms import NORMALISATIONS, POLICIES, Preprocessing

EVAL_BATCH_SIZE = 64


@dataclass(frozen=True)
class TrialData:
    """A trial's split of the decode-once cache: slots and labels, and per-channel statistics."""

    cache: FaceCache
    train_slots: np.ndarray
    train_labels: np.ndarray
    val_slots: np.ndarray
    val_labels: np.ndarray
    channel_stats: tuple[list[float], list[float]] | None = None  # training split's (mean, std)

    def batches(self, spec: TrialSpec) -> tuple[FaceBatches, FaceBatches]:
        """(training batches, shuffled per epoch from the spec's seed; validation batches, in order)."""
        train = FaceBatches(self.cache, self.train_slots, self.train_labels, spec.batch_size, True, spec.seed)
        val = FaceBatches(self.cache, self.val_slots, self.val_labels, EVAL_BATCH_SIZE, shuffle=False)
        return train, val

    @property
    def image_bytes(self) -> int:
        """What the training and validation images take, as uint8: what goes to the device."""
        side = self.cache.image_size
        return (len(self.train_slots) + len(self.val_slots)) * side * side * 3

    def device_images(self) -> np.ndarray:
        """The training images, then the validation images, in one array (``index_batches``' positions)."""
        return np.concatenate([self.cache.read(self.train_slots), self.cache.read(self.val_slots)])

    def index_batches(self, spec: TrialSpec) -> tuple[IndexBatches, IndexBatches]:
        """``batches`` as positions into ``device_images``: the same images, batch for batch."""
        train = IndexBatches(self.train_labels, spec.batch_size, True, spec.seed)
        val = IndexBatches(self.val_labels, EVAL_BATCH_SIZE, shuffle=False, offset=len(self.train_slots))
        return train, val


class FitInput:
    """What ``model.fit`` is given for a trial's batches, and the callback that keeps their epoch.

    On the TensorFlow backend the batches go to ``fit`` as a ``tf.data`` pipeline of our own,
    with a fixed prefetch and tf.data's autotuning off. Given the PyDataset itself, Keras
    wraps it in ``from_generator(...).prefetch(AUTOTUNE)``, and on a 2-core CPU that
    autotuned prefetch stalls training for seconds at a time, every thread of the process
    idle, waiting for the next batch (benchmarks/README.md, overhead; the profile's
    ``bare-keras-adapter`` variant shows it). On the other backends the PyDataset goes to
    ``fit`` as it is.
    """

    def __init__(self, batches: FaceBatches):
        self.batches = batches
        self.callbacks: list[keras.callbacks.Callback] = []
        self.data: object = batches
        if keras.backend.backend() == "tensorflow":
            self.data = _tensorflow_pipeline(batches)
            # fit calls on_epoch_begin before it opens the epoch's iterator, and each new
            # iterator runs the generator afresh: the generator reads the epoch set here
            self.callbacks.append(_EpochOfBatches(batches))


class _EpochOfBatches(keras.callbacks.Callback):
    def __init__(self, batches: FaceBatches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.begin_at(epoch)  # Keras's own epoch index: right after a restart too
        self.batches.on_epoch_begin()


def _tensorflow_pipeline(batches: FaceBatches):
    import tensorflow as tf

    def one_epoch():
        epoch = batches.epoch
        for index in range(len(batches)):
            yield batches.batch(epoch, index)

    if isinstance(batches, IndexBatches):  # the images are on the device already: indices only
        signature = (tf.TensorSpec((None,), tf.int32), tf.TensorSpec((None,), tf.int32))
    else:
        side = batches.image_side
        signature = (tf.TensorSpec((None, side, side, 3), tf.uint8), tf.TensorSpec((None,), tf.int32))
    dataset = tf.data.Dataset.from_generator(one_epoch, output_signature=signature)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(batches))).prefetch(max(1, batches.prefetch))
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def balanced_subset(rows: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """At most ``limit`` rows, drawn per class in proportion, deterministic from ``seed``."""
    if limit is None or len(rows) <= limit:
        return rows
    share = limit / len(rows)
    picked = [
        group.sample(n=max(1, math.floor(len(group) * share)), random_state=seed)
        for _, group in rows.groupby("label", sort=True)
    ]
    return pd.concat(picked).sort_index().reset_index(drop=True)


def load_trial_data(spec: TrialSpec, cache: FaceCache) -> TrialData:
    """The trial's split of the cache the driver built (bench/dataset.py)."""
    train, val = split_folds(cache.faces, spec.val_fold, spec.train_folds)
    require_nonempty_split(train, val, spec.val_fold, spec.train_folds)
    if spec.keep_duplicates:  # Levi & Hassner's lists: a face listed twice counts twice
        train, val = with_duplicates(train), with_duplicates(val)
    train = balanced_subset(train, spec.train_limit, spec.seed)
    val = balanced_subset(val, spec.val_limit, spec.seed)
    stats = None
    if NORMALISATIONS[spec.normalisation].needs_statistics:
        stats = channel_statistics(cache, train["slot"].to_numpy())  # training split only, never validation
    return TrialData(
        cache=cache,
        train_slots=train["slot"].to_numpy(np.int64),
        train_labels=train["label"].to_numpy(np.int32),
        val_slots=val["slot"].to_numpy(np.int64),
        val_labels=val["label"].to_numpy(np.int32),
        channel_stats=stats,
    )


def build_optimizer(spec: TrialSpec) -> keras.optimizers.Optimizer:
    """SGD (with momentum) or Adam; a step schedule where the spec has one (Caffe's "step" policy).

    Keras applies weight decay decoupled (w -= lr * wd * w each step) where Caffe adds
    wd * w to the gradient; with plain SGD the two agree, with momentum nearly so.
    """
    weight_decay = spec.weight_decay or None
    learning_rate = spec.learning_rate
    if spec.lr_decay_steps:
        learning_rate = keras.optimizers.schedules.ExponentialDecay(
            spec.learning_rate, decay_steps=spec.lr_decay_steps, decay_rate=spec.lr_decay_factor, staircase=True
        )
    if spec.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=spec.momentum, weight_decay=weight_decay)
    return keras.optimizers.Adam(learning_rate, weight_decay=weight_decay)


def build_trial_model(
    spec: TrialSpec,
    channel_stats: tuple[list[float], list[float]] | None = None,
    num_classes: int = 2,
    precision: str = "fp32",
) -> tuple[keras.Model, keras.Model]:
    """(training model taking 256x256 uint8-valued images, the bare network inside it).

    ``channel_stats`` is the training split's per-channel (mean, std), needed by the
    ``per_channel`` normalisation (TrialData.channel_stats). ``num_classes`` other than two
    (an image folder's classes) goes to the builder's ``num_classes`` option. ``precision``
    (resolved: fp32, bf16, fp16) is the network's dtype policy; preprocessing (per-image
    standardisation among it), the probabilities the loss sees and the loss stay float32.
    """
    classes = {"num_classes": num_classes} if num_classes != 2 else {}
    with dtype_policy(precision):
        network = models.create_model(spec.model, **{**spec.model_options, **classes})
        mean, std = channel_stats or (None, None)
        preprocessing = Preprocessing(
            spec.policy, spec.normalisation, seed=spec.seed, channel_mean=mean, channel_std=std,
            name="preprocessing", dtype="float32",
        )  # fmt: skip
        images = keras.Input((DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE, 3), dtype="uint8", name="cached_image")
        prepared = preprocessing(images)
        model_side = int(network.input.shape[1])
        if POLICIES[spec.policy].output_size() != model_side:
            # a model of another input size (a small smoke-run backbone, the autoencoder's
            # multiple of 64) sees the policy's crop resized to its own input
            prepared = keras.layers.Resizing(model_side, model_side, name="resize_to_model", dtype="float32")(prepared)
        probabilities = network(prepared)
        if precision != "fp32":  # the loss reads float32 probabilities (Keras's mixed-precision guide)
            probabilities = keras.layers.Activation("linear", dtype="float32", name="float32_output")(probabilities)
        model = keras.Model(images, probabilities, name=f"{network.name}_trainer")
        model.compile(
            run_eagerly=spec.run_eagerly,
            optimizer=build_optimizer(spec),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=jit_compile_argument(spec.jit),
        )
    return model, network


def build_device_trainer(model: keras.Model, images: np.ndarray, spec: TrialSpec) -> keras.Model:
    """``model`` behind a ``DeviceImages`` layer holding ``images``: fit gives it int32 positions.

    It shares ``model``'s layers and optimizer, so training it trains ``model``, and
    ``model`` (never this) is what checkpoints, inference and export see.
    """
    positions = keras.Input((), dtype="int32", name="image_position")
    trainer = keras.Model(positions, model(DeviceImages(images, name="device_images")(positions)), name="on_device")
    trainer.compile(
        run_eagerly=spec.run_eagerly,
        optimizer=model.optimizer,
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit_compile_argument(spec.jit),
    )
    return trainer


def run_trial(
    spec: TrialSpec,
    cache: FaceCache,
    report: Reporter,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    *,
    restore_from: Path | None = None,
    checkpoints: CheckpointRule | None = None,
) -> None:
    """Train ``spec`` on its split of ``cache`` for its epoch budget, calling ``report`` once per epoch.

    Early stopping (patience, ASHA) is the scheduler's: bench/runner.py stops the trial
    between epochs. Called without a scheduler, every epoch runs. ``callbacks`` run first
    in every epoch (tests inject faults through them). Where the ``checkpoints`` rule says so
    (none: never), an epoch's report carries a checkpoint folder (bench/checkpoints.py);
    ``restore_from`` such a folder continues the trial from the epoch after it.
    """
    started_at = time.time()
    keras.backend.clear_session()
    keras.utils.set_random_seed(spec.seed)
    data = load_trial_data(spec, cache)
    precision = resolve_precision(spec.precision)
    on_device = resolve_data_on_device(spec.data_on_device, data.image_bytes)
    model, network = build_trial_model(spec, data.channel_stats, len(cache.class_names), precision)
    trainer = build_device_trainer(model, data.device_images(), spec) if on_device == "on" else model
    jit = "on" if trainer.jit_compile else "off"
    execution = Execution(current_backend(), precision, jit, on_device)
    state = None
    if restore_from is not None:
        restored = load_checkpoint(model, restore_from)
        state = dataclasses.replace(restored, attempt=restored.attempt + 1)
    static = {
        "params": int(network.count_params()),
        "trainable_params": int(sum(np.prod(w.shape) for w in network.trainable_weights)),
        "model_bytes": int(sum(np.prod(w.shape) * np.dtype(w.dtype).itemsize for w in network.weights)),
        "train_images": len(data.train_labels),
        "val_images": len(data.val_labels),
        "started_at": started_at,
        "flops_per_image": flops_or_nan(network),
        **node_facts(),
        **execution.as_metrics(),
    }
    sampler = NvmlSampler()
    infer = functools.partial(inference_images_per_sec, model, data.cache.read(data.val_slots[:INFERENCE_BATCH_SIZE]))
    oversampled_model = build_oversampled_model(model, network, spec.policy)
    oversampled = functools.partial(
        oversampled_accuracy, oversampled_model, data.cache, data.val_slots, data.val_labels
    )
    train_batches, val_batches = data.index_batches(spec) if on_device == "on" else data.batches(spec)
    first_epoch = state.epoch if state else 0
    train_batches.begin_at(first_epoch)  # the order of epoch k is a function of (seed, k) only
    # validation batches keep one order, so their epoch (and FitInput's callback) does not matter
    train_input, val_input = FitInput(train_batches), FitInput(val_batches)
    reporter = EpochReporter(
        report, static, len(data.train_labels), sampler, infer, oversampled, spec.epochs, spec.patience,
        state=state, checkpoint=functools.partial(_checkpoint, model) if checkpoints else None, rule=checkpoints,
    )  # fmt: skip
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(sampler)  # the GPU tracker: a lap per epoch, stopped however fit ends
            stack.callback(val_batches.close)
            stack.callback(train_batches.close)
            trainer.fit(
                train_input.data,
                validation_data=val_input.data,
                shuffle=False,  # the batches shuffle themselves, seeded, per epoch
                epochs=spec.epochs,
                initial_epoch=first_epoch,
                callbacks=[
                    *train_input.callbacks,
                    *callbacks,
                    # TerminateOnNaN ends a diverged trial within a step; its NaN epoch is still
                    # reported (results.py calls a trial with a non-finite train loss diverged)
                    keras.callbacks.TerminateOnNaN(),
                    reporter,
                ],
                verbose=0,
            )
    finally:
        del model, network, trainer, oversampled_model, oversampled, reporter
        keras.backend.clear_session()


def _checkpoint(model: keras.Model, state: TrialState) -> Path:
    """The trial's state now, in a new temporary folder (the reporter removes it once reported)."""
    return save_checkpoint(model, state, scratch_folder(model))
