"""What the harness itself costs, each as a ratio beside its goal.

- overhead: one TrialSpec trained through the runner (Ray Tune, profiler, callbacks) vs a
  bare ``model.fit`` on the same data: steady-epoch img/s ratio, goal >= 0.97;
- pipeline: training batches from the decode-once cache (``report`` policy) vs the
  fastest report model's training step: img/s ratio, goal >= 10;
- scheduling: no-op trials through the runner: seconds of overhead per trial, goal <= 0.5;
- early stopping: ASHA on a random search vs every trial to its epoch budget: share of
  epochs used, goal <= 0.35, with the best accuracy within 1 pt;
- device input: the rate at which ``fit``'s batches of images are materialised on the
  device, streamed from the cache vs gathered from the images held there
  (``data.device.DeviceImages``), at batch 32 and 256 on the current backend
  (``KERAS_BACKEND``): goals on device >= 3x streaming and >= 10x the fastest report
  model's train step; its last line prints both rates and their ratio per batch size;
- fixed cost: one small-CNN trial through ``bench.run`` vs a bare ``fit`` script of the same
  model and data, each from a new process's start to its end: seconds more, goal <= 20
  (benchmarks/fixed_cost.py), with the harness's seconds per stage.

    python -m benchmarks.harness [overhead|pipeline|scheduling|early-stopping|device-input|fixed-cost ...]

benchmarks/test_harness.py runs the same functions under ``pytest --benchmark``.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a file: the repository root holds data/, models/, bench/
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.quiet import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from bench.plan.planner import Scheduling  # noqa: E402
from bench.report.results import TrialRecord, train_throughput  # noqa: E402
from bench.specs import RandomSearch, TrialSpec  # noqa: E402
from bench.trial.fit import build_trial_model, load_trial_data  # noqa: E402
from benchmarks import bench_pipeline, fixed_cost  # noqa: E402
from data.cache import FaceCache, ensure_cache  # noqa: E402
from data.device import DeviceImages, IndexBatches  # noqa: E402
from data.fit_input import FitInput  # noqa: E402
from data.loader import FaceBatches  # noqa: E402
from data.synthetic import ensure_synthetic_dataset  # noqa: E402

# the report's models the pipeline must outrun: the two with the fewest FLOPs per image
# (tiny_cnn checks the harness and is nobody's model; the others are far slower)
PIPELINE_MODELS = ("levi_hassner", "mobilenet_v3_large")


@dataclass(frozen=True)
class HarnessRatio:
    """One harness figure against its goal; ``detail`` holds the figures it came from."""

    name: str
    value: float
    goal: float
    higher_is_better: bool
    unit: str
    detail: dict = field(default_factory=dict)

    @property
    def met(self) -> bool:
        return self.value >= self.goal if self.higher_is_better else self.value <= self.goal

    def line(self) -> str:
        sign = ">=" if self.higher_is_better else "<="
        verdict = "meets" if self.met else "MISSES"
        return f"{self.name}: {self.value:.3g} {self.unit} ({verdict} the goal {sign} {self.goal:g} {self.unit})"

    def extra_info(self) -> dict:
        return {
            "ratio": self.value,
            "goal": self.goal,
            "goal_met": self.met,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            **self.detail,
        }

    def report_lines(self) -> list[str]:
        return [self.line(), *_detail_lines(self.detail)]


def _detail_lines(detail: dict) -> list[str]:
    return [
        f"    {key}: {value:.4g}" if isinstance(value, float) else f"    {key}: {value}"
        for key, value in detail.items()
    ]


def _quiet(_line: str) -> None:
    return None


def _run_trials(specs, cache: FaceCache, **kwargs) -> tuple[list[TrialRecord], float]:
    from bench.execute.runner import run_trials  # imports ray

    run_dir = Path(tempfile.mkdtemp(prefix="bench-harness-"))
    try:
        started = time.perf_counter()
        records = run_trials(specs, cache=cache, run_dir=run_dir, write=_quiet, **kwargs)
        return records, time.perf_counter() - started
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _steady_images_per_sec(images: int, seconds: list[float]) -> float:
    return train_throughput([images] * len(seconds), seconds)[1]


# --------------------------------------------------------------------------- overhead


def overhead_spec() -> TrialSpec:
    """The baseline model on a few hundred cached faces: epochs of seconds, not minutes, on a CPU."""
    return TrialSpec(
        name="overhead",
        model="levi_hassner",
        batch_size=32,
        epochs=4,  # epoch 1 holds graph building: three steady epochs
        patience=None,
        train_limit=480,  # steady epochs of ~10 s: a second's hiccup moves the figure by 10%, not 25%
        val_limit=64,
    )


class _WallClock(keras.callbacks.Callback):
    """Wall-clock windows of each epoch's training part (validation excluded)."""

    def __init__(self, report: Callable[[dict], None] | None = None):
        super().__init__()
        self.windows: list[tuple[float, float]] = []
        self.report = report

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.time()
        self.trained = None

    def on_test_begin(self, logs=None):
        self.trained = self.trained or time.time()

    def on_epoch_end(self, epoch, logs=None):
        end = self.trained or time.time()
        self.windows.append((self.started, end))
        if self.report:
            self.report(
                {
                    "epoch": epoch + 1,
                    "train_loss": float((logs or {}).get("loss", float("nan"))),
                    "train_accuracy": float((logs or {}).get("accuracy", float("nan"))),
                    "val_loss": float("nan"),
                    "val_accuracy": 0.0,
                    "epoch_seconds": end - self.started,
                    "train_seconds": end - self.started,
                    "train_images_per_sec": 0.0,
                    "elapsed_seconds": 0.0,
                }
            )


def bare_fit(
    spec: TrialSpec, cache: FaceCache, report: Callable[[dict], None] | None = None, keras_adapter: bool = False
) -> tuple[list[tuple[float, float]], int]:
    """``model.fit`` of the trial's model on the trial's training batches: (epoch windows, wall clock; training images).

    The batches go to ``fit`` as the trial passes them (``FitInput``), or with
    ``keras_adapter`` as the PyDataset itself, for Keras to wrap (autotuned tf.data prefetch).
    """
    keras.backend.clear_session()
    keras.utils.set_random_seed(spec.seed)
    data = load_trial_data(spec, cache)
    model, _network = build_trial_model(spec, data.channel_stats)
    train, val = data.batches(spec.batch_size, spec.seed)
    fit_input = FitInput(train, spec.epochs)
    data_for_fit, steps = (train, None) if keras_adapter else (fit_input.data, fit_input.steps_per_epoch)
    clock = _WallClock(report)
    try:
        model.fit(data_for_fit, steps_per_epoch=steps, shuffle=False, epochs=spec.epochs, callbacks=[clock], verbose=0)
    finally:
        fit_input.close()
        train.close()
        val.close()
        del model
        keras.backend.clear_session()
    return clock.windows, len(data.train_labels)


def bare_fit_images_per_sec(spec: TrialSpec, cache: FaceCache) -> float:
    """Steady-epoch img/s of a plain ``model.fit`` of ``spec``'s model on its batches, nothing else."""
    windows, images = bare_fit(spec, cache)
    return _steady_images_per_sec(images, [end - start for start, end in windows])


def measure_overhead(cache: FaceCache, spec: TrialSpec | None = None, rounds: int = 2) -> HarnessRatio:
    """Median harness steady img/s over median bare ``fit`` img/s, measured in alternation.

    bare, harness, bare, ... bare: ``rounds`` harness trials between ``rounds + 1`` bare fits,
    so a change in the neighbours' load on a shared CPU falls on both sides alike.
    """
    spec = spec or overhead_spec()
    bare = [bare_fit_images_per_sec(spec, cache)]
    harness: list[float] = []
    train_images = 0
    for _ in range(rounds):
        records, _wall = _run_trials([spec], cache)
        (record,) = records
        if record.error:
            raise RuntimeError(f"the overhead trial failed: {record.error}")
        train_images = record.epochs[0]["train_images"]
        harness.append(_steady_images_per_sec(train_images, [epoch["train_seconds"] for epoch in record.epochs]))
        bare.append(bare_fit_images_per_sec(spec, cache))
    return HarnessRatio(
        "overhead (harness / bare fit, steady img/s)",
        statistics.median(harness) / statistics.median(bare),
        0.97,
        True,
        "x",
        {
            "model": spec.model,
            "epochs": spec.epochs,
            "train_images": train_images,
            "harness_images_per_sec": statistics.median(harness),
            "bare_images_per_sec": statistics.median(bare),
            "harness_runs": [round(value, 2) for value in harness],
            "bare_runs": [round(value, 2) for value in bare],
        },
    )


# --------------------------------------------------------------------------- input pipeline


def measure_pipeline(cache: FaceCache, batches: int = 60, steps: int = 10, batch_size: int = 32) -> HarnessRatio:
    """Cache batches (report policy) img/s over the fastest of PIPELINE_MODELS' train-step img/s."""
    pipeline = bench_pipeline.measure_training_batches(cache, batches, batch_size)
    steps_per_sec = {
        model: bench_pipeline.measure_train_step(cache, steps, batch_size, model=model).images_per_sec
        for model in PIPELINE_MODELS
    }
    fastest = max(steps_per_sec, key=steps_per_sec.get)
    return HarnessRatio(
        "input pipeline (cache batches / fastest train step, img/s)",
        pipeline.images_per_sec / steps_per_sec[fastest],
        bench_pipeline.GOAL_RATIO,
        True,
        "x",
        {
            "pipeline_images_per_sec": pipeline.images_per_sec,
            "fastest_model": fastest,
            **{f"train_step_images_per_sec_{model}": value for model, value in steps_per_sec.items()},
            "batch_size": batch_size,
        },
    )


# --------------------------------------------------------------------------- scheduling


def noop_trial(spec: TrialSpec, cache: FaceCache, report: Callable[[dict], None], **options) -> None:
    """A trial that trains nothing: one report of one epoch, so only Ray Tune's costs remain."""
    report(
        {
            "epoch": 1,
            "train_loss": math.nan,
            "train_accuracy": 0.0,
            "val_loss": math.nan,
            "val_accuracy": 0.0,
            "epoch_seconds": 0.0,
            "train_seconds": 0.0,
            "train_images_per_sec": 0.0,
            "elapsed_seconds": 0.0,
        }
    )


def measure_scheduling(cache: FaceCache, trials: int = 100) -> HarnessRatio:
    """Seconds per no-op trial: (wall of ``trials`` trials - wall of one) / (trials - 1).

    The difference leaves out what a run pays once (starting and stopping Ray); the
    trials run as a run schedules them by default (one at a time on a CPU, actors reused).
    """

    def specs(count: int) -> list[TrialSpec]:
        return [TrialSpec(name=f"noop{index:03d}", model="tiny_cnn", epochs=1, patience=None) for index in range(count)]

    _records, one = _run_trials(specs(1), cache, trial_function=noop_trial, scheduling=Scheduling())
    records, many = _run_trials(specs(trials), cache, trial_function=noop_trial, scheduling=Scheduling())
    failed = [record.spec.name for record in records if record.error or len(record.epochs) != 1]
    if failed:
        raise RuntimeError(f"{len(failed)} no-op trial(s) did not report once: {', '.join(failed[:5])}")
    return HarnessRatio(
        f"scheduling ({trials} no-op trials, overhead per trial)",
        (many - one) / (trials - 1),
        0.5,
        False,
        "s",
        {"trials": trials, "wall_seconds": many, "wall_seconds_one_trial": one},
    )


# --------------------------------------------------------------------------- early stopping


ASHA_GRACE_PERIOD = 1  # the runner's defaults (bench.plan.planner.Scheduling)
ASHA_REDUCTION_FACTOR = 3
REPLAYED_ORDERS = 200


def early_stopping_search(samples: int = 12, epochs: int = 12) -> RandomSearch:
    """tiny_cnn over a wide learning-rate range: a few samples learn, most do not."""
    base = TrialSpec(
        name="asha",
        model="tiny_cnn",
        optimizer="adam",
        momentum=0.0,
        batch_size=16,
        epochs=epochs,
        patience=None,  # every trial runs its budget unless ASHA stops it
        # Epochs of 60 steps: with 20 (320 faces) every rate sat at chance after epoch 1,
        # ASHA's first rung ranked noise and cut the best rates (25 pt lost). With 12
        # epochs, ASHA's rungs fall at 1, 3 and 9 epochs.
        train_limit=960,
        val_limit=320,  # the built-in data's fold 0 holds 191 faces: all of them
    )
    return RandomSearch(base, samples=samples, learning_rate=(1e-6, 3e-2))


def replay_asha(
    curves: dict[str, list[float]], order: list[str], grace_period: int, reduction_factor: int, max_t: int
) -> dict[str, int]:
    """Epochs each trial would run under ASHA, trials run one at a time in ``order``.

    Replays the rule of Ray Tune's ``AsyncHyperBandScheduler`` (one bracket): rungs at
    ``grace_period * reduction_factor**k`` epochs below ``max_t``; a trial reaching a rung
    stops if its value there is below the ``1 - 1/reduction_factor`` quantile of the values
    the rung recorded before it. Run one at a time, a trial's results depend only on its
    own curve, so the measured curves of the full search replay any order of the samples.
    """
    rung_count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    rungs = {grace_period * reduction_factor**k: [] for k in range(rung_count)}
    epochs: dict[str, int] = {}
    for name in order:
        curve = curves[name][:max_t]
        epochs[name] = len(curve)
        for epoch, value in enumerate(curve, start=1):
            if epoch in rungs:
                recorded = rungs[epoch]
                stop = bool(recorded) and value < _percentile(recorded, 100 * (1 - 1 / reduction_factor))
                recorded.append(value)
                if stop:
                    epochs[name] = epoch
                    break
    return epochs


def _percentile(values: list[float], percent: float) -> float:
    """numpy's default (linear) percentile, as Ray's ASHA computes its cutoff."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * percent / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def replay_orders(
    curves: dict[str, list[float]], max_t: int, orders: int = REPLAYED_ORDERS, seed: int = 0
) -> dict[str, float]:
    """ASHA's share of epochs and best-accuracy gap over ``orders`` random orders of the same samples."""
    rng = random.Random(seed)
    full_best = max(max(curve[:max_t]) for curve in curves.values())
    shares, gaps = [], []
    for _ in range(orders):
        order = rng.sample(sorted(curves), len(curves))
        epochs = replay_asha(curves, order, ASHA_GRACE_PERIOD, ASHA_REDUCTION_FACTOR, max_t)
        shares.append(sum(epochs.values()) / (len(curves) * max_t))
        gaps.append(full_best - max(max(curves[name][: epochs[name]]) for name in curves))
    return {
        "replayed_orders": orders,
        "replayed_share_median": statistics.median(shares),
        "replayed_share_max": max(shares),
        "replayed_orders_within_1pt": sum(gap <= 0.01 for gap in gaps) / orders,
        "replayed_orders_meeting_both_goals": sum(
            share <= 0.35 and gap <= 0.01 for share, gap in zip(shares, gaps, strict=True)
        )
        / orders,
    }


def measure_early_stopping(cache: FaceCache, search: RandomSearch | None = None) -> HarnessRatio:
    """Share of the full search's epochs that ASHA ran (same seed: the same sampled learning rates).

    Beside the measured figures, the full search's curves replay ASHA over other orders of
    the same samples (``replay_orders``): one run's order decides which trials come early,
    and the first trials pass every rung unopposed.
    """
    search = search or early_stopping_search()
    asha, asha_wall = _run_trials(
        [],
        cache,
        search=search,
        scheduling=Scheduling(
            asha=True, asha_grace_period=ASHA_GRACE_PERIOD, asha_reduction_factor=ASHA_REDUCTION_FACTOR
        ),
    )
    full, full_wall = _run_trials([], cache, search=search, scheduling=Scheduling(asha=False))

    def summary(records: list[TrialRecord]) -> tuple[int, float, dict]:
        errors = [record.error for record in records if record.error]
        if errors:
            raise RuntimeError(f"{len(errors)} early-stopping trial(s) failed: {errors[0]}")
        epochs = sum(len(record.epochs) for record in records)
        best = {record.spec.name: max(epoch["val_accuracy"] for epoch in record.epochs) for record in records}
        return epochs, max(best.values()), best

    asha_epochs, asha_best, asha_trials = summary(asha)
    full_epochs, full_best, full_trials = summary(full)
    if set(asha_trials) != set(full_trials):
        raise RuntimeError("the two searches drew different learning rates: the comparison would mean nothing")
    asha_epochs_by_trial = {record.spec.name: len(record.epochs) for record in asha}
    curves = {record.spec.name: [epoch["val_accuracy"] for epoch in record.epochs] for record in full}
    sample_order = [record.spec.name for record in sorted(full, key=lambda record: record.spec.search_sample)]
    max_t = search.base.epochs
    replayed = replay_asha(curves, sample_order, ASHA_GRACE_PERIOD, ASHA_REDUCTION_FACTOR, max_t)
    accuracy_gap = full_best - asha_best
    return HarnessRatio(
        f"early stopping (ASHA epochs / full epochs, {search.samples} samples)",
        asha_epochs / full_epochs,
        0.35,
        False,
        "share",
        {
            "asha_epochs": asha_epochs,
            "full_epochs": full_epochs,
            "asha_best_val_accuracy": asha_best,
            "full_best_val_accuracy": full_best,
            "accuracy_gap_pt": 100 * accuracy_gap,
            "accuracy_within_1pt": accuracy_gap <= 0.01,
            "asha_wall_seconds": asha_wall,
            "full_wall_seconds": full_wall,
            # the replay of this run's own order must give what Ray's scheduler did
            "replay_matches_ray": replayed == asha_epochs_by_trial,
            **replay_orders(curves, max_t),
            # per sample: (epochs under ASHA, best val acc under ASHA, best val acc run to its budget)
            "per_trial": {
                name: [asha_epochs_by_trial[name], asha_trials[name], full_trials[name]] for name in sorted(full_trials)
            },
        },
    )


# --------------------------------------------------------------------------- input on the device

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
        return [*(ratio.line() for ratio in self.ratios()), *_detail_lines(self.detail), self.line()]


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


MEASURES = {
    "overhead": measure_overhead,
    "pipeline": measure_pipeline,
    "scheduling": measure_scheduling,
    "early-stopping": measure_early_stopping,
    "device-input": measure_device_input,
    "fixed-cost": lambda _cache: fixed_cost.measure_fixed_cost(),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="*", metavar="MEASURE", help=f"{', '.join(MEASURES)} (default: all)")
    parser.add_argument("--data", type=Path, help="Adience folder (default: the built-in synthetic data)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.which if name not in MEASURES]
    if unknown:
        parser.error(f"unknown measure {', '.join(unknown)} (known: {', '.join(MEASURES)})")
    cache = ensure_cache(args.data or ensure_synthetic_dataset())
    print(bench_pipeline.device_line(), flush=True)
    for name in args.which or list(MEASURES):
        for line in MEASURES[name](cache).report_lines():
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
