"""An up-front estimate of a run's wall time on a CPU, before any trial has started.

Per training or validation step a model costs ``SECONDS_PER_LAYER_STEP`` per layer (the
framework's per-op overhead, which dominates small CPU steps) plus its FLOPs at
``EFFECTIVE_CPU_FLOPS``; a graph-mode trial first traces its graphs at
``TRACE_SECONDS_PER_LAYER``; every trial pays ``TRIAL_START_SECONDS`` (building the model,
opening the data). The constants were fitted on the project's reference machine (2 cores,
no GPU) on 2026-11-28 from the transfer suite's smoke run and the Levi-Hassner baseline:
the estimate is good to about a factor of two, and the progress lines refine it from the
epochs that actually ran. There is no estimate for GPUs, whose speed varies too widely.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import keras

import models
from bench.flops import forward_flops
from bench.specs import TrialSpec

SECONDS_PER_LAYER_STEP = 0.0035
EFFECTIVE_CPU_FLOPS = 150e9
TRACE_SECONDS_PER_LAYER = 0.2
TRIAL_START_SECONDS = 3.0
RUN_START_SECONDS = 15.0  # Ray, the first worker's TensorFlow import
EVAL_BATCH_SIZE = 64


@dataclass(frozen=True)
class ModelCost:
    layers: int
    forward_flops: int


def count_layers(model: keras.Model) -> int:
    """Layers that run, nested models (keras.applications backbones) counted through."""
    return sum(count_layers(layer) if isinstance(layer, keras.Model) else 1 for layer in model.layers)


def model_cost(spec: TrialSpec, cache: dict) -> ModelCost:
    options = {**spec.model_options}
    if "weights" in options:
        options["weights"] = None  # the shape is what counts; never download for an estimate
    key = (spec.model, tuple(sorted((k, repr(v)) for k, v in options.items())))
    if key not in cache:
        network = models.create_model(spec.model, **options)
        cache[key] = ModelCost(count_layers(network), forward_flops(network))
        del network
        keras.backend.clear_session()
    return cache[key]


def trial_seconds(spec: TrialSpec, cost: ModelCost, train_images: int, val_images: int) -> float:
    train_steps = math.ceil(train_images / spec.batch_size)
    val_steps = math.ceil(val_images / EVAL_BATCH_SIZE)
    work = (3 * train_images + val_images) * cost.forward_flops / EFFECTIVE_CPU_FLOPS
    per_epoch = (train_steps + val_steps) * cost.layers * SECONDS_PER_LAYER_STEP + work
    tracing = 0.0 if spec.run_eagerly else cost.layers * TRACE_SECONDS_PER_LAYER
    return TRIAL_START_SECONDS + tracing + spec.epochs * per_epoch


def estimate_run_seconds(
    specs: Sequence[TrialSpec], split_sizes: Sequence[tuple[int, int]], concurrency: int = 1
) -> float:
    """Wall seconds for ``specs`` (each with its (train, validation) image counts) on this CPU."""
    costs: dict = {}
    total = sum(
        trial_seconds(spec, model_cost(spec, costs), train, val)
        for spec, (train, val) in zip(specs, split_sizes, strict=True)
    )
    return RUN_START_SECONDS + total / max(concurrency, 1)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
