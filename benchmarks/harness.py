"""What the harness itself costs, each as a ratio beside its goal.

- overhead: one TrialSpec trained through the runner (Ray Tune, profiler, callbacks) vs a
  bare ``model.fit`` on the same data: steady-epoch img/s ratio, median of 5 interleaved rounds with its spread, goal >= 0.99;
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
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from bench.quiet import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()


from bench.plan.planner import Scheduling  # noqa: E402
from bench.specs import TrialSpec  # noqa: E402
from benchmarks import bench_pipeline, fixed_cost  # noqa: E402
from benchmarks.bare import bare_fit_images_per_sec  # noqa: E402
from benchmarks.device_input import measure_device_input  # noqa: E402
from benchmarks.early_stopping import measure_early_stopping  # noqa: E402
from benchmarks.epoch_cost import measure_epoch_cost  # noqa: E402
from benchmarks.ratio import HarnessRatio, run_trials, steady_images_per_sec  # noqa: E402
from data.cache import FaceCache, ensure_cache  # noqa: E402
from data.synthetic import ensure_synthetic_dataset  # noqa: E402

# the report's models the pipeline must outrun: the two with the fewest FLOPs per image
# (tiny_cnn checks the harness and is nobody's model; the others are far slower)
PIPELINE_MODELS = ("levi_hassner", "mobilenet_v3_large")


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


def measure_overhead(cache: FaceCache, spec: TrialSpec | None = None, rounds: int = 5) -> HarnessRatio:
    """Harness steady img/s over bare ``fit`` img/s: the median of ``rounds`` interleaved ratios.

    bare, harness, bare, ... bare: ``rounds`` harness trials between ``rounds + 1`` bare fits;
    each harness trial is compared with the mean of the two bare fits beside it, so a change
    in the neighbours' load on a shared CPU falls on both sides alike. The spread (largest
    ratio - smallest) says how far one round can be trusted.
    """
    spec = spec or overhead_spec()
    bare = [bare_fit_images_per_sec(spec, cache)]
    harness: list[float] = []
    ratios: list[float] = []
    train_images = 0
    for round_ in range(rounds):
        print(f"overhead: round {round_ + 1} of {rounds}", flush=True)
        records, _wall = run_trials([spec], cache)
        (record,) = records
        if record.error:
            raise RuntimeError(f"the overhead trial failed: {record.error}")
        train_images = record.epochs[0]["train_images"]
        harness.append(steady_images_per_sec(train_images, [epoch["train_seconds"] for epoch in record.epochs]))
        bare.append(bare_fit_images_per_sec(spec, cache))
        ratios.append(harness[-1] / statistics.fmean(bare[-2:]))
    return HarnessRatio(
        f"overhead (harness / bare fit, steady img/s, median of {rounds})",
        statistics.median(ratios),
        0.99,
        True,
        "x",
        {
            "model": spec.model,
            "epochs": spec.epochs,
            "train_images": train_images,
            "harness_images_per_sec": statistics.median(harness),
            "bare_images_per_sec": statistics.median(bare),
            "ratios": [round(value, 4) for value in ratios],
            "harness_runs": [round(value, 2) for value in harness],
            "bare_runs": [round(value, 2) for value in bare],
        },
        spread=max(ratios) - min(ratios),
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

    _records, one = run_trials(specs(1), cache, trial_function=noop_trial, scheduling=Scheduling())
    records, many = run_trials(specs(trials), cache, trial_function=noop_trial, scheduling=Scheduling())
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


MEASURES = {
    "overhead": measure_overhead,
    "pipeline": measure_pipeline,
    "scheduling": measure_scheduling,
    "early-stopping": measure_early_stopping,
    "device-input": measure_device_input,
    "fixed-cost": lambda _cache: fixed_cost.measure_fixed_cost(),
    "epoch-cost": measure_epoch_cost,
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
