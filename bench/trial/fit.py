"""One trial: its split of the decoded cache + its model + fit, reporting once per epoch.

This module imports no ray: ``bench/execute/runner.py`` passes ``tune.report`` in as ``report``,
so a trial also runs (and is tested) without Ray. A trial receives the opened
``FaceCache`` the driver built; it reads images from it and no fold file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

import models
from bench.specs import TrialSpec
from bench.trial.checkpoints import CheckpointRule, TrialState, load_checkpoint, save_checkpoint, scratch_folder
from bench.trial.confusion import ConfusionMatrix
from bench.trial.env import node_facts
from bench.trial.evaluation import build_oversampled_model, oversampled_accuracy
from bench.trial.execution import (
    Execution,
    backend_accelerators,
    current_backend,
    dtype_policy,
    jit_compile_argument,
    resolve_data_on_device,
    resolve_precision,
)
from bench.trial.flops import flops_or_nan, training_flops
from bench.trial.gpu_sampler import NvmlSampler
from bench.trial.inference import FULL_MEASURES, INFERENCE_BATCH_SIZE, SMOKE_MEASURES, inference_figures
from bench.trial.lease import GpuLease, check_backend_devices
from bench.trial.measure import EpochReporter, Reporter, release_freed_memory
from data.cache import DEFAULT_IMAGE_SIZE, FaceCache
from data.device import DeviceImages
from data.fit_input import FitInput
from data.mixing import BatchMixing
from data.splits import TrialData, load_split
from data.transforms import NORMALISATIONS, Preprocessing


def load_trial_data(spec: TrialSpec, cache: FaceCache) -> TrialData:
    """The trial's split of the cache the driver built (bench/plan/dataset.py), as its spec asks."""
    return load_split(
        cache,
        spec.val_fold,
        spec.train_folds,
        seed=spec.seed,
        keep_duplicates=spec.keep_duplicates,
        train_limit=spec.train_limit,
        val_limit=spec.val_limit,
        with_statistics=NORMALISATIONS[spec.normalisation].needs_statistics,
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
    image_size: int = DEFAULT_IMAGE_SIZE,
) -> tuple[keras.Model, keras.Model]:
    """(training model taking the cache's ``image_size`` uint8 images, the bare network inside it).

    ``channel_stats`` is the training split's per-channel (mean, std), needed by the
    ``per_channel`` normalisation (TrialData.channel_stats). ``num_classes`` other than two
    (an image folder's classes) goes to the builder's ``num_classes`` option. ``precision``
    (resolved: fp32, bf16, fp16) is the network's dtype policy; preprocessing (per-image
    standardisation among it), the probabilities the loss sees and the loss stay float32. A
    policy that mixes batches (MixUp, CutMix) trains on soft labels: categorical cross-entropy.
    """
    classes = {"num_classes": num_classes} if num_classes != 2 else {}
    with dtype_policy(precision):
        network = models.create_model(spec.model, **{**spec.model_options, **classes})
        mean, std = channel_stats or (None, None)
        policy = spec.augmentation
        preprocessing = Preprocessing(
            policy,
            spec.normalisation,
            seed=spec.seed,
            channel_mean=mean,
            channel_std=std,
            image_size=image_size,
            name="preprocessing",
            dtype="float32",
        )
        images = keras.Input((image_size, image_size, 3), dtype="uint8", name="cached_image")
        prepared = preprocessing(images)
        model_side = int(network.input.shape[1])
        if policy.output_size(image_size) != model_side:
            # a model of another input size (a small smoke-run backbone, the autoencoder's
            # multiple of 64) sees the policy's crop resized to its own input
            prepared = keras.layers.Resizing(model_side, model_side, name="resize_to_model", dtype="float32")(prepared)
        probabilities = network(prepared)
        if probabilities.dtype != "float32":
            # a user's model whose softmax runs in the mixed policy: the loss still reads float32
            # (every registry model computes its softmax in float32, models/layers.py)
            probabilities = keras.layers.Activation("linear", dtype="float32", name="float32_output")(probabilities)
        model = keras.Model(images, probabilities, name=f"{network.name}_trainer")
        model.compile(
            run_eagerly=spec.run_eagerly,
            optimizer=build_optimizer(spec),
            loss="categorical_crossentropy" if policy.mixes else "sparse_categorical_crossentropy",
            metrics=["accuracy", ConfusionMatrix(num_classes)],
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
        metrics=["accuracy", ConfusionMatrix(int(model.output.shape[-1]))],
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
    lease: GpuLease | None = None,
) -> None:
    """Train ``spec`` on its split of ``cache`` for its epoch budget, calling ``report`` once per epoch.

    Early stopping (patience, ASHA) is the scheduler's: bench/execute/runner.py stops the trial
    between epochs. Called without a scheduler, every epoch runs. ``callbacks`` run first
    in every epoch (tests inject faults through them). Where the ``checkpoints`` rule says so
    (none: never), an epoch's report carries a checkpoint folder (bench/trial/checkpoints.py);
    ``restore_from`` such a folder continues the trial from the epoch after it. ``lease``
    (the runner's: the GPUs by UUID and the share of each) is checked against the GPUs the
    backend computes on before anything else (DeviceMismatch where it sees fewer) and
    tells the GPU sampler what to measure and what share of it is this trial's.
    """
    started_at = time.time()
    if lease is not None and lease.gpus:
        check_backend_devices(lease, current_backend(), *backend_accelerators())
    keras.backend.clear_session()
    keras.utils.set_random_seed(spec.seed)
    data = load_trial_data(spec, cache)
    precision = resolve_precision(spec.precision)
    policy = spec.augmentation
    # mixed batches are made on the host (their labels mix too): the images cannot wait on the device
    on_device = "off" if policy.mixes else resolve_data_on_device(spec.data_on_device, data.image_bytes)
    classes = len(cache.class_names)
    model, network = build_trial_model(spec, data.channel_stats, classes, precision, cache.image_size)
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
        "train_flops_per_image": flops_or_nan(network, training_flops),
        **node_facts(),
        **execution.as_metrics(),
    }
    sampler = NvmlSampler(lease=lease)
    budget = SMOKE_MEASURES if spec.smoke_measures else FULL_MEASURES
    infer = functools.partial(inference_figures, model, data.cache.read(data.val_slots[:INFERENCE_BATCH_SIZE]), budget)
    oversampled_model = build_oversampled_model(model, network)  # None: the policy does not crop
    oversampled = oversampled_faces = None
    if oversampled_model is not None:
        # an eager trial's few faces cost less eagerly than through a traced graph (EfficientNetV2M
        # traces for seconds); a traced trial's many faces, the other way round
        oversampled_model.run_eagerly = spec.run_eagerly
        faces = slice(budget.oversample_faces)
        oversampled_faces = len(data.val_slots[faces])
        oversampled = functools.partial(
            oversampled_accuracy, oversampled_model, data.cache, data.val_slots[faces], data.val_labels[faces]
        )
    mixing = BatchMixing(classes, policy.mixup, policy.cutmix, spec.seed) if policy.mixes else None
    train_batches, val_batches = (
        data.index_batches(spec.batch_size, spec.seed)
        if on_device == "on"
        else data.batches(spec.batch_size, spec.seed, mixing)
    )
    first_epoch = state.epoch if state else 0
    # the order of epoch k is a function of (seed, k) only: a restart goes on with order k
    train_input = FitInput(train_batches, spec.epochs, first_epoch)
    val_input = FitInput(val_batches)  # one order every epoch
    reporter = EpochReporter(
        report,
        static,
        len(data.train_labels),
        sampler,
        infer,
        oversampled,
        spec.epochs,
        spec.patience,
        state=state,
        checkpoint=functools.partial(_checkpoint, model) if checkpoints else None,
        rule=checkpoints,
        metric=spec.metric,
        oversampled_faces=oversampled_faces,
    )
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(sampler)  # the GPU tracker: a lap per epoch, stopped however fit ends
            stack.callback(val_batches.close)
            stack.callback(train_input.close)
            if first_epoch == spec.epochs:  # restored from its last epoch's checkpoint: nothing to train
                return
            trainer.fit(
                train_input.data,
                steps_per_epoch=train_input.steps_per_epoch,
                validation_data=val_input.data,
                validation_steps=val_input.steps_per_epoch,
                shuffle=False,  # the batches shuffle themselves, seeded, per epoch
                epochs=spec.epochs,
                initial_epoch=first_epoch,
                # no callback of the trial's own overrides a batch hook: Keras would then sync host
                # and device after every step; the reporter ends a diverged trial at its epoch's end
                callbacks=[*callbacks, reporter],
                verbose=0,
            )
    finally:
        del model, network, trainer, oversampled_model, oversampled, reporter
        keras.backend.clear_session()
        release_freed_memory()


def _checkpoint(model: keras.Model, state: TrialState) -> Path:
    """The trial's state now, in a new temporary folder (the reporter removes it once reported)."""
    return save_checkpoint(model, state, scratch_folder(model))
