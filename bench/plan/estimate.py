"""An up-front estimate of a run's wall time on a CPU, before any trial has started.

Per training or validation step a model costs ``SECONDS_PER_LAYER_STEP`` per layer (the
framework's per-op overhead, which dominates small CPU steps) plus its FLOPs at
``EFFECTIVE_CPU_FLOPS``; a graph-mode trial first traces its graphs at
``TRACE_SECONDS_PER_LAYER``; every trial pays ``TRIAL_START_SECONDS`` (building the model,
opening the data). The constants were fitted on the project's reference machine (2 cores,
no GPU) from the transfer suite's smoke run and the Levi-Hassner baseline: the estimate is
good to about a factor of two, and the progress lines refine it from the
epochs that actually ran. There is no estimate for GPUs, whose speed varies too widely.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import keras

import models
from bench.errors import UsageError
from bench.specs import TrialSpec
from bench.trial.flops import flops_or_nan, training_flops
from bench.trial.gpu import local_gpu_count, smallest_gpu_memory_bytes
from data.splits import EVAL_BATCH_SIZE

SECONDS_PER_LAYER_STEP = 0.0035
EFFECTIVE_CPU_FLOPS = 150e9
TRACE_SECONDS_PER_LAYER = 0.2
TRIAL_START_SECONDS = 3.0
RUN_START_SECONDS = 15.0  # Ray, the first worker's TensorFlow import


@dataclass(frozen=True)
class ModelCost:
    layers: int
    forward_flops: float  # NaN where a layer has no FLOP rule: the estimate then counts layers only
    training_flops: float  # per training image (bench.trial.flops.training_flops); NaN as above


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
        cache[key] = ModelCost(count_layers(network), flops_or_nan(network), flops_or_nan(network, training_flops))
        del network
        keras.backend.clear_session()
    return cache[key]


def epoch_seconds(spec: TrialSpec, cost: ModelCost, train_images: int, val_images: int) -> float:
    """One epoch of ``spec`` on this CPU: training and validation steps."""
    train_steps = math.ceil(train_images / spec.batch_size)
    val_steps = math.ceil(val_images / EVAL_BATCH_SIZE)
    flops = train_images * _or_zero(cost.training_flops) + val_images * _or_zero(cost.forward_flops)
    return (train_steps + val_steps) * cost.layers * SECONDS_PER_LAYER_STEP + flops / EFFECTIVE_CPU_FLOPS


def _or_zero(flops: float) -> float:
    return 0.0 if math.isnan(flops) else flops


def trial_seconds(spec: TrialSpec, cost: ModelCost, train_images: int, val_images: int) -> float:
    tracing = 0.0 if spec.run_eagerly else cost.layers * TRACE_SECONDS_PER_LAYER
    return TRIAL_START_SECONDS + tracing + spec.epochs * epoch_seconds(spec, cost, train_images, val_images)


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


@dataclass(frozen=True)
class RunEstimate:
    """The up-front estimate: a line to print, and each trial's estimated seconds per epoch (by
    template name), which the progress lines weigh what remains by."""

    line: str
    epoch_seconds: dict[str, float]


def estimate_run(specs: Sequence[TrialSpec], split_sizes: Sequence[tuple[int, int]], scheduling) -> RunEstimate:
    """What a run should take, said up front: on this CPU, or why there is no estimate (and the
    GPU shares of ``--gpus-per-trial auto``)."""
    if scheduling.address or scheduling.num_gpus or local_gpu_count():
        shares = f"\n{format_gpu_shares(scheduling.gpu_shares)}" if scheduling.gpu_shares else ""
        line = f"Estimate: none up front on GPUs or clusters; the progress lines estimate from the first epochs{shares}"
        return RunEstimate(line, {})
    costs: dict = {}
    per_epoch = {
        spec.name: epoch_seconds(spec, model_cost(spec, costs), train, val)
        for spec, (train, val) in zip(specs, split_sizes, strict=True)
    }
    seconds = estimate_run_seconds(specs, split_sizes, scheduling.max_concurrent or 1)
    line = f"Estimate: about {format_duration(seconds)} on this CPU (from FLOPs and layer counts; within ~2x)"
    return RunEstimate(line, per_epoch)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


# Training memory, for packing trials on a GPU (--gpus-per-trial auto): weights, their
# gradients and two Adam moments (16 bytes a parameter), and per image every layer's
# float32 output kept for the backward pass, its gradient and workspace (3 x 4 bytes).
BYTES_PER_PARAMETER = 16
BYTES_PER_ACTIVATION = 12
MEMORY_HEADROOM = 1.5  # framework context, allocator fragmentation, cuDNN workspaces
GPU_SHARE_STEP = 0.125  # shares are whole eighths of a GPU


def activation_count(model: keras.Model) -> int:
    """Float outputs per image over every layer, nested models counted through."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += activation_count(layer)
            continue
        if isinstance(layer, keras.layers.InputLayer):
            continue
        outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
        total += sum(math.prod(int(d) for d in output.shape[1:]) for output in outputs)
    return total


def training_memory_bytes(spec: TrialSpec) -> int:
    """Estimated GPU memory for training ``spec`` at its batch size."""
    options = {**spec.model_options}
    if "weights" in options:
        options["weights"] = None
    network = models.create_model(spec.model, **options)
    try:
        return (
            network.count_params() * BYTES_PER_PARAMETER
            + spec.batch_size * activation_count(network) * BYTES_PER_ACTIVATION
        )
    finally:
        del network
        keras.backend.clear_session()


def gpu_share(memory_bytes: int, gpu_memory_bytes: int) -> float:
    """The GPU share for a trial needing ``memory_bytes``: whole eighths, at most one GPU."""
    needed = memory_bytes * MEMORY_HEADROOM / gpu_memory_bytes
    return min(1.0, max(GPU_SHARE_STEP, math.ceil(needed / GPU_SHARE_STEP) * GPU_SHARE_STEP))


def auto_gpu_shares(specs: Sequence[TrialSpec]) -> dict[str, float]:
    """--gpus-per-trial auto: each trial's share from its model's estimated training memory."""
    memory = smallest_gpu_memory_bytes()
    if memory is None:
        raise UsageError("--gpus-per-trial auto sizes trials against the GPU's memory, and no NVIDIA GPU was found")
    return {spec.name: gpu_share(training_memory_bytes(spec), memory) for spec in specs}


def format_gpu_shares(shares: dict[str, float]) -> str:
    return "GPU shares (auto): " + ", ".join(f"{name} {share:g}" for name, share in shares.items())
