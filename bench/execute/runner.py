"""A Plan's trials -> one Ray Tune experiment -> TrialRecords.

The Ray it runs on is a private local one or a cluster joined (bench/execute/ray_session.py).
On a cluster the job carries the harness's code to the nodes (``py_modules``), every trial
gets its data through Ray's object store (no path on a worker's disk), and Tune's storage
must be shared (``storage``). Every trial checkpoints each epoch; a retried trial (a lost
node) and a resumed run continue from the last checkpoint. Every trial gets a patience
stopper (val accuracy not improved for ``spec.patience`` epochs); suites may add ASHA.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import ray
from ray import tune
from ray.tune.logger import TBXLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

import models
from bench.choices import METRICS, metric_column
from bench.errors import RunnerError
from bench.execute.export import drop_finished_checkpoints, save_best_models
from bench.execute.progress import Progress
from bench.execute.ray_session import start_ray, stop_ray
from bench.execute.records import (
    ASHA_REASON,
    FATAL,
    STOP_REASONS_FILE,
    error_message,
    read_stop_reasons,
    records_from,
)
from bench.execute.resources import NodeCapacity, Resources, plan_node_resources, plan_resources
from bench.execute.storage_faults import NOT_STORED, StorageOutage
from bench.execute.trial_config import TrialConfig, resolve_spec, template_name
from bench.io import atomic_write_text
from bench.plan.estimate import TrialEstimate
from bench.plan.planner import Plan, Scheduling
from bench.plan.storage import open_storage, short_reason
from bench.report.results import TrialRecord
from bench.specs import RandomSearch, SpecError, TrialSpec, planned_specs, ranking_metric
from bench.trial.checkpoints import CheckpointError, CheckpointRule
from bench.trial.fit import run_trial
from bench.trial.gpu import gpu_uuids, local_gpu_count
from bench.trial.lease import DeviceMismatch, GpuLease
from bench.trial.measure import Patience
from data.adience import DatasetError
from data.cache import FaceCache

EXPERIMENT_NAME = "tune"


def trial_resources(resources: Resources, gpu_shares: dict[str, float] | None):
    """One resource request for every trial, or (auto shares) one per trial template."""
    if not gpu_shares:
        return {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial}

    def per_trial(config: dict) -> tune.PlacementGroupFactory:
        share = gpu_shares.get(template_name(config), 1.0)
        return tune.PlacementGroupFactory([{"CPU": resources.cpus_per_trial, "GPU": share}])

    return per_trial


class PatienceStopper(tune.Stopper):
    """Stops a trial whose val score (``score_key``: the run's ranking metric) has not improved
    for its spec's ``patience`` epochs.

    Each reason is also written to ``reasons_path``: Ray Tune pickles the stopper with the
    experiment, and a resumed run works with that copy, so the file is what both share.
    """

    def __init__(self, reasons_path: Path, score_key: str = "val_accuracy"):
        self.reasons_path = reasons_path
        self.score_key = score_key
        self.rules: dict[str, Patience] = {}
        self.reasons: dict[str, str] = read_stop_reasons(reasons_path)

    def __call__(self, trial_id: str, result: dict) -> bool:
        patience = result.get("patience")
        score = result.get(self.score_key)
        epoch = result.get("epoch")
        if patience is None or score is None or epoch is None or math.isnan(patience):
            return False
        rule = self.rules.setdefault(trial_id, Patience(int(patience)))
        if not rule.exhausted(int(epoch), score):
            return False
        words = self.score_key.removeprefix("val_").replace("_", " ")
        self.reasons[trial_id] = (
            f"no val {words} gain in {int(patience)} epochs (best {rule.best:.4f} at epoch {rule.best_epoch})"
        )
        atomic_write_text(self.reasons_path, json.dumps(self.reasons, indent=1))
        return True

    def stop_all(self) -> bool:
        return False


class ProgressPrinter(tune.Callback):
    """Ray Tune's trial events, handed to ``Progress`` for the run's progress lines."""

    def __init__(self, progress: Progress, stopper: PatienceStopper, outage: StorageOutage):
        self.progress = progress
        self.stopper = stopper
        self.outage = outage
        self.fatal: set[str] = set()  # trials that reported an error no retry mends

    def on_trial_start(self, iteration, trials, trial, **info):
        self.progress.started(trial_label(trial), template_name(trial.config))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if FATAL in result:
            self.fatal.add(trial.trial_id)
            self.progress.failed(template_name(trial.config), trial_label(trial), None, result[FATAL])
            return
        self.outage.result(trial_label(trial), result)
        self.progress.epoch(template_name(trial.config), trial_label(trial), result)

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.progress.retrying(trial_label(trial), trial.error_file)

    def on_trial_error(self, iteration, trials, trial, **info):
        self.progress.failed(template_name(trial.config), trial_label(trial), trial.error_file)

    def on_trial_complete(self, iteration, trials, trial, **info):
        if trial.trial_id in self.fatal:
            return
        epochs = (trial.last_result or {}).get("epoch", 0)
        train_loss = (trial.last_result or {}).get("train_loss")
        # a loss that is not finite: the trial's reporter ended it (bench/trial/measure.py)
        if isinstance(train_loss, float) and not math.isfinite(train_loss):
            self.progress.diverged(template_name(trial.config), trial_label(trial), epochs, train_loss)
            return
        reason = self.stopper.reasons.get(trial.trial_id, ASHA_REASON)
        best = _best(trial, self.stopper.score_key)
        self.progress.completed(template_name(trial.config), trial_label(trial), epochs, best, reason)


class NoTensorBoardFiles(TBXLoggerCallback):
    """Stands where Ray Tune adds its TensorBoard logger by default, and writes nothing.

    Each trial waits for the driver after every report (Tune's function trainables report
    synchronously), and that logger took 9 ms of the driver per result (benchmarks/README.md,
    epoch cost). Tune's CSV and JSON loggers stay: it reads the trials' rows back from them.
    A run's stored config keeps this in place on --resume; a run stored without it gets
    Tune's logger back, as it had.
    """

    def __init__(self):  # no tensorboardX writer
        self._trial_writer = {}
        self._trial_result = {}

    def log_trial_start(self, trial) -> None:
        return None

    def log_trial_result(self, iteration, trial, result) -> None:
        return None

    def log_trial_end(self, trial, failed: bool = False) -> None:
        return None


def _best(trial, score_key: str) -> float:
    try:
        return float(trial.metric_analysis[score_key]["max"])
    except (KeyError, TypeError):
        return float("nan")


def trial_label(trial) -> str:
    return resolve_spec(trial.config).name


TrialFunction = Callable[..., None]  # (spec, cache, report, *, restore_from, checkpoints, lease) -> None
# errors a retry cannot mend: the trial reports them once and is not run again
DETERMINISTIC = (SpecError, models.ModelOptionError, DatasetError, CheckpointError, DeviceMismatch)


def trial_lease(template: str, gpu_shares: dict[str, float]) -> GpuLease:
    """This worker's lease: the GPUs Ray gave it (by NVML UUID) and the share of each it asked for.

    The share is the trial template's (auto shares) or the run's ``--gpus-per-trial``, which
    Ray's resources hold as the worker's GPU request; a whole GPU or more is not shared.
    """
    context = ray.get_runtime_context()
    ids = [str(gpu) for gpu in context.get_accelerator_ids().get("GPU", [])]
    if not ids:
        return GpuLease()
    requested = gpu_shares.get(template) or float(context.get_assigned_resources().get("GPU", 1.0))
    return GpuLease(gpu_uuids(ids), min(requested, 1.0) if len(ids) == 1 else 1.0)


def _trainable(
    config: dict,
    cache: FaceCache,
    trial_function: TrialFunction = run_trial,
    model_modules: tuple[str, ...] = (),
    checkpoints: CheckpointRule | None = None,
    gpu_shares: dict[str, float] | None = None,
) -> None:
    node_id = ray.get_runtime_context().get_node_id()
    try:
        models.import_model_modules(model_modules)  # a user's models, registered in this worker too
        spec = resolve_spec(config)

        def report(metrics: dict, checkpoint: Path | None = None) -> None:
            metrics = {**metrics, "node_id": node_id, "patience": spec.patience or math.nan}
            if checkpoint:
                try:
                    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(checkpoint)))
                    return
                except OSError as error:  # the storage did not answer: the epoch is reported without it
                    metrics[NOT_STORED] = short_reason(error)
            tune.report(metrics)

        restored = tune.get_checkpoint()
        with restored.as_directory() if restored else contextlib.nullcontext() as folder:
            restore_from = Path(folder) if folder else None
            lease = trial_lease(template_name(config), gpu_shares or {})
            trial_function(spec, cache, report, restore_from=restore_from, checkpoints=checkpoints, lease=lease)
    except DETERMINISTIC as error:
        scores = dict.fromkeys(map(metric_column, METRICS), math.nan)  # whichever the run ranks by
        tune.report({"epoch": 0, **scores, FATAL: error_message(error), "node_id": node_id})


def _param_space(specs: Sequence[TrialSpec], search: RandomSearch | None) -> dict:
    # the one place a TrialSpec becomes a dict: Ray Tune's param_space carries plain values
    grid = tune.grid_search([spec.to_dict() for spec in planned_specs(specs, search)])
    if not search:
        return TrialConfig(grid).to_dict()
    latent_size = tune.qrandint(*search.latent_size) if search.latent_size else None
    return TrialConfig(grid, tune.loguniform(*search.learning_rate), latent_size).to_dict()


def _scheduler(scheduling: Scheduling, specs: Sequence[TrialSpec]):
    if not scheduling.asha:
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr="epoch",
        max_t=max(spec.epochs for spec in specs),
        grace_period=scheduling.asha_grace_period,
        reduction_factor=scheduling.asha_reduction_factor,
    )


def run_trials(
    specs: Sequence[TrialSpec],
    *,
    cache: FaceCache,
    run_dir: Path,
    scheduling: Scheduling | None = None,
    search: RandomSearch | None = None,
    resume: bool = False,
    write: Callable[[str], None] = print,
    trial_function: TrialFunction = run_trial,
    model_modules: Sequence[str] = (),
    estimates: Mapping[str, TrialEstimate] | None = None,
) -> list[TrialRecord]:
    """Run ``specs`` (and ``search``'s samples) on ``cache`` as one Ray Tune experiment under ``run_dir``.

    With ``resume``, restore the experiment stored in ``run_dir`` instead: finished trials
    are kept as they are, the others run again. ``trial_function`` runs each trial
    (``run_trial``; the scheduling benchmark passes a no-op to time Ray Tune alone, the
    reliability tests one that injects faults). ``cache`` goes to every trial once, through
    Ray's object store (``tune.with_parameters``).
    """
    scheduling = scheduling or Scheduling()
    planned = planned_specs(specs, search)
    storage = open_storage(scheduling.storage, run_dir)
    experiment = f"{storage.path}/{EXPERIMENT_NAME}"
    if resume and not tune.Tuner.can_restore(experiment, storage_filesystem=storage.filesystem):
        raise RunnerError(f"{run_dir} holds no Ray Tune experiment to resume (expected {storage.shown})")
    if not scheduling.address and not ray.is_initialized():
        # check the GPU request against this machine before starting Ray
        gpus = scheduling.num_gpus if scheduling.num_gpus is not None else local_gpu_count()
        plan_resources(float(os.cpu_count() or 1), float(gpus), scheduling.max_concurrent, scheduling.smallest_share)
    instance = start_ray(scheduling, model_modules)
    outage = StorageOutage(write, storage.shown).attach()
    try:
        nodes = [
            NodeCapacity(float(node["Resources"].get("CPU", 0)), float(node["Resources"].get("GPU", 0)))
            for node in ray.nodes()
            if node.get("Alive")
        ]
        if len(nodes) > 1 and scheduling.storage is None:
            raise RunnerError(
                f"this Ray cluster has {len(nodes)} nodes, and trials on other nodes cannot write to this machine's "
                "disk: give --storage (a folder every node mounts, such as NFS, or s3://..., gs://...)"
            )
        resources = plan_node_resources(nodes, scheduling.max_concurrent, scheduling.smallest_share)
        write(resources.line(len(planned)))
        score_key = metric_column(ranking_metric(planned))
        stopper = PatienceStopper(run_dir.resolve() / STOP_REASONS_FILE, score_key)
        budgets = {spec.name: spec.epochs for spec in planned}
        concurrency = resources.max_concurrent
        progress = Progress(write, budgets, estimates or {}, concurrency=concurrency, score_key=score_key)
        # the pixels go into Ray's object store once, and to each node once: no worker reads a path
        parameters = {
            "cache": cache.portable(),
            "trial_function": trial_function,
            "model_modules": tuple(model_modules),
        }
        trainable = tune.with_resources(
            tune.with_parameters(
                _trainable,
                **parameters,
                checkpoints=scheduling.checkpoint_rule,
                gpu_shares=dict(scheduling.gpu_shares or {}),
            ),
            trial_resources(resources, scheduling.gpu_shares),
        )
        run_config = tune.RunConfig(
            name=EXPERIMENT_NAME,
            storage_path=storage.path,
            storage_filesystem=storage.filesystem,
            verbose=0,
            stop=stopper,
            callbacks=[ProgressPrinter(progress, stopper, outage), NoTensorBoardFiles()],
            failure_config=tune.FailureConfig(max_failures=1),
            # the best by the ranking metric (for --save-models) and, always, the latest (a restart goes on from it)
            checkpoint_config=tune.CheckpointConfig(1, checkpoint_score_attribute=score_key),
        )
        if resume:
            # The stored experiment keeps its own run config (stopper and progress printer
            # included) and its param space, sampled values and all.
            tuner = tune.Tuner.restore(
                experiment,
                trainable=trainable,
                storage_filesystem=storage.filesystem,
                resume_unfinished=True,
                resume_errored=False,
                restart_errored=False,
            )
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=_param_space(specs, search),
                tune_config=tune.TuneConfig(
                    metric=score_key,
                    mode="max",
                    scheduler=_scheduler(scheduling, planned),
                    max_concurrent_trials=resources.max_concurrent,
                    reuse_actors=True,
                    trial_name_creator=trial_label,
                    trial_dirname_creator=trial_label,
                    search_alg=tune.search.BasicVariantGenerator(random_state=scheduling.seed),
                ),
                run_config=run_config,
            )
        # its "Trials did not complete" line: the progress lines and the closing lines already say which
        logging.getLogger("ray.tune.tune").setLevel(logging.CRITICAL)
        grid = tuner.fit()
        ended = [result for result in grid if result.error is not None or result.metrics.get("done")]
        if scheduling.save_models:
            for path in save_best_models(ended, cache, run_dir, resolve_spec, metric=score_key):
                write(f"Saved {path}")
        drop_finished_checkpoints(ended)
        return records_from(grid, planned, read_stop_reasons(run_dir.resolve() / STOP_REASONS_FILE), scheduling.asha)
    finally:
        outage.detach()
        stop_ray(instance)


def run_plan(
    plan: Plan,
    cache: FaceCache,
    run_dir: Path,
    *,
    resume: bool = False,
    estimates: Mapping[str, TrialEstimate] | None = None,
) -> list[TrialRecord]:
    """``run_trials`` for a planned run: its grid specs, random search and scheduling."""
    print(f"Run {run_dir.name}: suite {plan.suite.name}, {len(plan.all_specs)} trial(s), preset {plan.preset}")
    return run_trials(
        plan.specs,
        cache=cache,
        run_dir=run_dir,
        scheduling=plan.scheduling,
        search=plan.search,
        resume=resume,
        model_modules=plan.model_modules,
        estimates=estimates,
    )
