"""Suite -> one Ray Tune experiment -> TrialRecords. The only module that imports ray.

Local runs start a private Ray instance: no dashboard, no usage statistics, bound to
127.0.0.1, a temporary folder of its own, Ray's token authentication left on.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.results import TrialRecord
from bench.specs import TrialSpec
from bench.trial import EPOCH_METRIC_KEYS, run_trial

# Set before ray is imported: Ray reads some of these at import time, and the local
# cluster it starts passes the driver's environment on to its workers.
LOCAL_RAY_ENVIRONMENT = {
    "RAY_USAGE_STATS_ENABLED": "0",  # else Ray reports usage to an outside server
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # else a one-machine cluster binds the network address
    "RAY_AIR_NEW_OUTPUT": "0",  # the new output engine prints its banner even at verbose=0
}
os.environ.update(LOCAL_RAY_ENVIRONMENT)

import ray  # noqa: E402
from ray import tune  # noqa: E402

_REPO_ROOT = str(Path(__file__).resolve().parent.parent)


@dataclass(frozen=True)
class Resources:
    """What each trial asks Ray for, and how many trials run at once."""

    cpus_per_trial: float
    gpus_per_trial: float
    max_concurrent: int


def plan_resources(total_cpus: int, total_gpus: float, max_concurrent: int | None) -> Resources:
    """Split the machine between trials: one trial per GPU, else CPU trials one at a time.

    A CPU trial takes every core by default: TensorFlow spreads one trial over all cores,
    and two trials sharing them only add contention.
    """
    if total_gpus >= 1:
        concurrent = max_concurrent or int(total_gpus)
        gpus = max(total_gpus / concurrent, 0.01) if concurrent > total_gpus else 1.0
        return Resources(max(1.0, total_cpus // concurrent), round(gpus, 4), concurrent)
    concurrent = max_concurrent or 1
    return Resources(max(1.0, total_cpus // concurrent), 0.0, concurrent)


class ProgressPrinter(tune.Callback):
    """One line per trial epoch on the driver's stdout (Ray's own tables are turned off)."""

    def __init__(self, write: Callable[[str], None]):
        self.write = write

    def on_trial_start(self, iteration, trials, trial, **info):
        self.write(f"[{trial.trial_id and trial.config['spec']['name']}] started")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        spec = trial.config["spec"]
        self.write(
            f"[{spec['name']}] epoch {result['epoch']}/{spec['epochs']}  "
            f"val_acc {result['val_accuracy']:.4f}  train_acc {result['train_accuracy']:.4f}  "
            f"{result['train_images_per_sec']:.1f} img/s  {result['epoch_seconds']:.1f} s"
        )

    def on_trial_error(self, iteration, trials, trial, **info):
        self.write(f"[{trial.config['spec']['name']}] failed: {_first_line(trial.error_file)}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.write(f"[{trial.config['spec']['name']}] finished")


def _first_line(error_file: str | None) -> str:
    if not error_file or not Path(error_file).is_file():
        return "see the trial's error.txt"
    lines = [line for line in Path(error_file).read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "see the trial's error.txt"


def _trainable(config: dict, data_root: str) -> None:
    spec = TrialSpec.from_dict(config["spec"])
    run_trial(spec, data_root, report=tune.report)


def _trial_name(trial) -> str:
    return trial.config["spec"]["name"]


def _error_message(error: BaseException | None) -> str | None:
    if error is None:
        return None
    cause = getattr(error, "cause", None) or error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}".strip()


def _records_from(grid, specs: Sequence[TrialSpec]) -> list[TrialRecord]:
    by_name: dict[str, TrialRecord] = {}
    for result in grid:
        spec = result.config["spec"]
        frame = result.metrics_dataframe
        epochs = []
        if frame is not None and not frame.empty and "epoch" in frame.columns:
            columns = [key for key in EPOCH_METRIC_KEYS if key in frame.columns]
            frame = frame.dropna(subset=["epoch"]).sort_values("epoch")
            epochs = [
                {key: (int(value) if key == "epoch" else value) for key, value in row.items()}
                for row in frame[columns].to_dict("records")
            ]
        by_name[spec["name"]] = TrialRecord(spec=spec, epochs=epochs, error=_error_message(result.error))
    return [by_name.get(spec.name, TrialRecord(spec=spec.to_dict(), error="trial did not run")) for spec in specs]


def run_specs(
    specs: Sequence[TrialSpec],
    *,
    data_root: Path,
    storage_dir: Path,
    experiment_name: str,
    max_concurrent: int | None = None,
    write: Callable[[str], None] = print,
) -> list[TrialRecord]:
    """Run every spec as a Ray Tune trial on a private local Ray instance."""
    ray_temp = tempfile.mkdtemp(prefix="adience-ray-")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_REPO_ROOT, os.environ.get("PYTHONPATH")]))
    try:
        ray.init(
            include_dashboard=False,
            _temp_dir=ray_temp,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
        resources = plan_resources(
            int(ray.cluster_resources().get("CPU", 1)), float(ray.cluster_resources().get("GPU", 0)), max_concurrent
        )
        write(
            f"Ray: {len(specs)} trial(s), {resources.cpus_per_trial:g} CPU and {resources.gpus_per_trial:g} GPU "
            f"each, at most {resources.max_concurrent} at once"
        )
        trainable = tune.with_resources(
            tune.with_parameters(_trainable, data_root=str(data_root)),
            {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial},
        )
        tuner = tune.Tuner(
            trainable,
            param_space={"spec": tune.grid_search([spec.to_dict() for spec in specs])},
            tune_config=tune.TuneConfig(
                metric="val_accuracy",
                mode="max",
                max_concurrent_trials=resources.max_concurrent,
                reuse_actors=True,
                trial_name_creator=_trial_name,
                trial_dirname_creator=_trial_name,
            ),
            run_config=tune.RunConfig(
                name=experiment_name,
                storage_path=str(storage_dir.resolve()),
                verbose=0,
                callbacks=[ProgressPrinter(write)],
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
        grid = tuner.fit()
        return _records_from(grid, specs)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(ray_temp, ignore_errors=True)
        sys.stdout.flush()
