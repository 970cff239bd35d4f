"""An up-front estimate of a run's wall time on a CPU, before any trial has started.

A trial costs three parts, each from the model's layer count and FLOPs and constants measured
on the project's reference machine (2 cores, no GPU; benchmarks/README.md, "The time a user
waits"):

- its start: building the model (``BUILD_SECONDS_PER_LAYER``) and the inference timing after
  its first epoch (forward passes as the spec's budget asks, bench/trial/inference.py);
- its epochs: per training or validation step a per-layer cost (the framework's per-op cost,
  which dominates small CPU steps: ``SECONDS_PER_LAYER_STEP`` traced; eager, a forward pass's
  ``EAGER_SECONDS_PER_LAYER_STEP`` times training FLOPs / forward FLOPs, as a frozen backbone
  runs no backward pass through itself) plus the step's FLOPs at ``EFFECTIVE_CPU_FLOPS``; in
  graph mode the first epoch also traces its graphs (``TRACE_SECONDS_PER_LAYER``);
- its end: the over-sampled evaluation (forward passes over each face's views, traced
  first unless the trial runs eagerly).

A run adds ``RUN_START_SECONDS`` (Ray, the first trial process's imports) and its report
(tables, leaderboard, plots: ``report_seconds``). Under ASHA a trial after the first is
counted at its first rung, where ASHA stops more trials than it lets on (all but a
``1/reduction`` share), and the line also gives the most the run can take. The progress lines refine it from
what the trials measure. There is no estimate for GPUs or clusters, whose speed varies too widely.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import keras

import models
from bench.errors import UsageError
from bench.specs import TrialSpec
from bench.trial.flops import flops_or_nan, training_flops
from bench.trial.gpu import local_gpu_count, smallest_gpu_memory_bytes
from bench.trial.inference import FULL_MEASURES, INFERENCE_BATCH_SIZE, SMOKE_MEASURES, MeasureBudget
from data.cache import DEFAULT_IMAGE_SIZE
from data.splits import EVAL_BATCH_SIZE
from data.views import view_count

# Fitted on 2026-12-06 to the transfer smoke run (MobileNetV3Large, ResNet50V2, EfficientNetV2M:
# eager steps), the baseline (Levi & Hassner: traced) and the selftest (a tiny CNN: traced).
SECONDS_PER_LAYER_STEP = 0.0035  # a traced training or validation step, per layer
EAGER_SECONDS_PER_LAYER_STEP = 0.0032  # an eager forward pass in fit, per layer; a training step
# pays it times training FLOPs / forward FLOPs (three for a model that trains whole, one frozen)
PREDICT_SECONDS_PER_LAYER = 0.0012  # an eager forward pass outside fit (predict_on_batch), per layer
EFFECTIVE_CPU_FLOPS = 130e9
INPUT_SECONDS_PER_IMAGE = 0.0015  # reading it from the cache, the preprocessing layers
TRACE_SECONDS = 1.0  # the training and validation graphs, in epoch 1: the preprocessing, then
TRACE_SECONDS_PER_LAYER = 0.15  # each layer
PREDICT_TRACE_SECONDS_PER_LAYER = 0.02  # a forward-only graph
BUILD_SECONDS_PER_LAYER = 0.0065  # the model, its trainer and its over-sampled model
TRIAL_START_SECONDS = 0.5
TRIAL_END_SECONDS = 0.5
RUN_START_SECONDS = 14.0  # after the estimate: the run folder, Ray, the first trial process's imports
REPORT_SECONDS = 4.5  # tables, leaderboard, plots, Ray shut down
REPORT_SECONDS_PER_TRIAL = 0.4  # its rows, its points and confusion matrix plot
OVERSAMPLE_BATCH_FACES = 16  # bench/trial/evaluation.py OVERSAMPLE_BATCH_SIZE


@dataclass(frozen=True)
class ModelCost:
    layers: int
    forward_flops: float  # NaN where a layer has no FLOP rule: the estimate then counts layers only
    training_flops: float  # per training image (bench.trial.flops.training_flops); NaN as above


@dataclass(frozen=True)
class TrialEstimate:
    """One trial's estimated seconds: outside its epochs before the first one's report
    (``start_seconds``) and after the last one (``end_seconds``), per epoch, and the graph
    tracing its first epoch adds (``trace_seconds``); ``epochs`` as counted (under ASHA, its
    first rung)."""

    start_seconds: float
    epoch_seconds: float
    end_seconds: float
    epochs: float
    trace_seconds: float = 0.0
    rungs: tuple[int, ...] = ()  # under ASHA, the epochs at which it decides whether the trial goes on

    @property
    def total_seconds(self) -> float:
        return self.start_seconds + self.epochs * self.epoch_seconds + self.trace_seconds + self.end_seconds


def count_layers(model: keras.Model) -> int:
    """Layers that run, nested models (keras.applications backbones) counted through."""
    return sum(count_layers(layer) if isinstance(layer, keras.Model) else 1 for layer in model.layers)


def model_cost(spec: TrialSpec, cache: dict) -> ModelCost:
    options = spec.without_weights().model_options  # the shape is what counts; never download
    key = (spec.model, tuple(sorted((k, repr(v)) for k, v in options.items())))
    if key not in cache:
        network = models.create_model(spec.model, **options)
        cache[key] = ModelCost(count_layers(network), flops_or_nan(network), flops_or_nan(network, training_flops))
        del network
        keras.backend.clear_session()
    return cache[key]


def _or_zero(flops: float) -> float:
    return 0.0 if math.isnan(flops) else flops


def _backward_factor(cost: ModelCost) -> float:
    """What a training step costs per layer against a forward pass: 3 for a model that trains
    whole, about 1 for a frozen backbone (its training FLOPs over its forward FLOPs)."""
    if math.isnan(cost.training_flops) or math.isnan(cost.forward_flops) or cost.forward_flops <= 0:
        return 3.0
    return min(max(cost.training_flops / cost.forward_flops, 1.0), 3.0)


def forward_seconds(cost: ModelCost, steps: int, images: int, eager: bool) -> float:
    """``steps`` forward passes (predict_on_batch) over ``images`` images in all."""
    per_layer = PREDICT_SECONDS_PER_LAYER if eager else SECONDS_PER_LAYER_STEP / 3
    return steps * cost.layers * per_layer + images * _or_zero(cost.forward_flops) / EFFECTIVE_CPU_FLOPS


def epoch_seconds(spec: TrialSpec, cost: ModelCost, train_images: int, val_images: int) -> float:
    """One epoch of ``spec`` on this CPU: training and validation steps."""
    train_steps = math.ceil(train_images / spec.batch_size)
    val_steps = math.ceil(val_images / EVAL_BATCH_SIZE)
    flops = train_images * _or_zero(cost.training_flops) + val_images * _or_zero(cost.forward_flops)
    images = (train_images + val_images) * INPUT_SECONDS_PER_IMAGE + flops / EFFECTIVE_CPU_FLOPS
    if spec.run_eagerly:
        steps = train_steps * _backward_factor(cost) + val_steps
        return steps * cost.layers * EAGER_SECONDS_PER_LAYER_STEP + images
    return (train_steps + val_steps) * cost.layers * SECONDS_PER_LAYER_STEP + images


def inference_seconds(spec: TrialSpec, cost: ModelCost, budget: MeasureBudget) -> float:
    """The inference timing after epoch 1: batches of ``INFERENCE_BATCH_SIZE``, then single images,
    each as many as the budget's passes and seconds ask (a traced model traces both shapes first)."""
    eager = spec.run_eagerly
    batch = forward_seconds(cost, 1, INFERENCE_BATCH_SIZE, eager)
    single = forward_seconds(cost, 1, 1, eager)
    batches = budget.warmup_batches + max(budget.min_batches, math.ceil(budget.min_seconds / max(batch, 1e-6)))
    fewest, most = budget.latency_samples
    singles = budget.latency_warmup + min(most, max(fewest, math.ceil(budget.latency_seconds / max(single, 1e-6))))
    tracing = 0.0 if eager else 2 * cost.layers * PREDICT_TRACE_SECONDS_PER_LAYER
    return tracing + batches * batch + singles * single


def oversample_seconds(
    spec: TrialSpec, cost: ModelCost, val_images: int, budget: MeasureBudget, side: int = DEFAULT_IMAGE_SIZE
) -> float:
    """The over-sampled evaluation at the trial's end (a policy that crops): forward passes over
    each face's views, in batches of ``OVERSAMPLE_BATCH_FACES`` faces (traced unless eager)."""
    policy = spec.augmentation
    crop = policy.crop_size(side)
    if crop is None:
        return 0.0
    faces = min(val_images, budget.oversample_faces or val_images)
    views = view_count(side, crop, policy.horizontal_flip)
    steps = math.ceil(faces / OVERSAMPLE_BATCH_FACES)
    tracing = 0.0 if spec.run_eagerly else cost.layers * PREDICT_TRACE_SECONDS_PER_LAYER
    return tracing + forward_seconds(cost, steps, faces * views, eager=spec.run_eagerly)


def estimate_trial(
    spec: TrialSpec, cost: ModelCost, train_images: int, val_images: int, side: int = DEFAULT_IMAGE_SIZE
) -> TrialEstimate:
    budget = SMOKE_MEASURES if spec.smoke_measures else FULL_MEASURES
    tracing = 0.0 if spec.run_eagerly else TRACE_SECONDS + cost.layers * TRACE_SECONDS_PER_LAYER
    start = TRIAL_START_SECONDS + cost.layers * BUILD_SECONDS_PER_LAYER + inference_seconds(spec, cost, budget)
    end = TRIAL_END_SECONDS + oversample_seconds(spec, cost, val_images, budget, side)
    epoch = epoch_seconds(spec, cost, train_images, val_images)
    return TrialEstimate(start, epoch, end, float(spec.epochs), tracing)


def trial_seconds(spec: TrialSpec, cost: ModelCost, train_images: int, val_images: int) -> float:
    return estimate_trial(spec, cost, train_images, val_images).total_seconds


def asha_rungs(budget: int, grace_period: int, reduction_factor: int) -> tuple[int, ...]:
    """The epochs at which ASHA decides whether a trial of ``budget`` epochs goes on: grace x
    reduction^k, below the budget."""
    rungs, rung = [], grace_period
    while rung < budget:
        rungs.append(rung)
        rung *= max(reduction_factor, 2)
    return tuple(rungs)


def estimate_trials(
    specs: Sequence[TrialSpec],
    split_sizes: Sequence[tuple[int, int]],
    scheduling=None,
    side: int = DEFAULT_IMAGE_SIZE,
    costs: dict | None = None,
) -> dict[str, TrialEstimate]:
    """Each trial's estimate (by template name); under ASHA every trial after the first (the first
    has none to be compared with) at its first rung, where ASHA stops most trials. ``costs``
    caches each model's ``ModelCost`` (by model and options)."""
    costs = {} if costs is None else costs
    estimates = {}
    for index, (spec, (train, val)) in enumerate(zip(specs, split_sizes, strict=True)):
        estimate = estimate_trial(spec, model_cost(spec, costs), train, val, side)
        if scheduling is not None and scheduling.asha and index > 0:
            rungs = asha_rungs(spec.epochs, scheduling.asha_grace_period, scheduling.asha_reduction_factor)
            if rungs:  # ASHA stops a trial at its first rung more often than not (1 - 1/reduction)
                estimate = dataclasses.replace(estimate, epochs=float(rungs[0]), rungs=rungs)
        estimates[spec.name] = estimate
    return estimates


def report_seconds(trials: int) -> float:
    """The run's end: its tables, leaderboard and plots, and Ray shut down."""
    return REPORT_SECONDS + REPORT_SECONDS_PER_TRIAL * trials


def run_seconds(estimates: Sequence[TrialEstimate], concurrency: int = 1) -> float:
    trials = sum(e.total_seconds for e in estimates) / max(concurrency, 1)
    return RUN_START_SECONDS + trials + report_seconds(len(estimates))


def estimate_run_seconds(
    specs: Sequence[TrialSpec], split_sizes: Sequence[tuple[int, int]], concurrency: int = 1
) -> float:
    """Wall seconds for ``specs`` (each with its (train, validation) image counts) on this CPU."""
    return run_seconds(list(estimate_trials(specs, split_sizes).values()), concurrency)


@dataclass(frozen=True)
class RunEstimate:
    """The up-front estimate: a line to print, and each trial's estimate (by template name), which
    the progress lines weigh what remains by."""

    line: str
    trials: dict[str, TrialEstimate]


def estimate_run(
    specs: Sequence[TrialSpec],
    split_sizes: Sequence[tuple[int, int]],
    scheduling,
    side: int = DEFAULT_IMAGE_SIZE,
) -> RunEstimate:
    """What a run should take, said up front: on this CPU (images cached at ``side``), or why
    there is no estimate (and the GPU shares of ``--gpus-per-trial auto``)."""
    if scheduling.address or scheduling.num_gpus or local_gpu_count():
        shares = f"\n{format_gpu_shares(scheduling.gpu_shares)}" if scheduling.gpu_shares else ""
        line = f"Estimate: none up front on GPUs or clusters; the progress lines estimate from the first epochs{shares}"
        return RunEstimate(line, {})
    costs: dict = {}
    trials = estimate_trials(specs, split_sizes, scheduling, side, costs)
    concurrency = scheduling.max_concurrent or 1
    seconds = run_seconds(list(trials.values()), concurrency)
    line = f"Estimate: about {format_duration(seconds)} on this CPU (from FLOPs and layer counts"
    if scheduling.asha and len(trials) > 1:
        full = [
            dataclasses.replace(t, epochs=float(spec.epochs)) for spec, t in zip(specs, trials.values(), strict=True)
        ]
        most = format_duration(run_seconds(full, concurrency))
        line += f"; ASHA stopping trials at their first rung; at most {most}"
    uncounted = sorted({model for (model, _), cost in costs.items() if math.isnan(cost.training_flops)})
    if uncounted:
        line += f"; no FLOP count for {', '.join(uncounted)}: their layers counted, not their arithmetic"
    return RunEstimate(line + ")", trials)


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
    options = spec.without_weights().model_options
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
