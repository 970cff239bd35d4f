"""Suite -> one Ray Tune experiment -> TrialRecords. The only module that imports ray.

Local runs start a private Ray instance: no dashboard (``dashboard`` asks for one, on
127.0.0.1 only), no usage statistics, bound to 127.0.0.1, a temporary folder of its own,
Ray's token authentication left on (the default since Ray 2.59 for local clusters). ``address`` joins an existing cluster
instead, whose own settings apply.

Every trial gets a patience stopper (val accuracy not improved for ``spec.patience``
epochs); suites may add ASHA. A run can be resumed from its folder: finished trials are
kept, unfinished ones run again from their first epoch (trials keep no checkpoints).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import RunnerError
from bench.estimate import format_duration
from bench.profiler import local_gpu_count
from bench.results import TrialRecord, atomic_write_text
from bench.specs import RandomSearch, TrialSpec, apply_sample
from bench.trial import EPOCH_METRIC_KEYS, run_trial

# Set before ray is imported: Ray reads some of these at import time, and the local
# cluster it starts passes the driver's environment on to its workers.
LOCAL_RAY_ENVIRONMENT = {
    "RAY_USAGE_STATS_ENABLED": "0",  # else Ray reports usage to an outside server
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # else a one-machine cluster binds the network address
    "RAY_AIR_NEW_OUTPUT": "0",  # the new output engine prints its banner even at verbose=0
    # Save the experiment state at most once a second, not every 10+ s (Ray's default): a
    # driver killed after a trial finished would otherwise redo it on --resume. Not every
    # controller step (0): Tune steps ten times a second, and saving each time cost the
    # driver 0.024 CPU-s per s, 1.2% of a 2-core machine taken from the trial
    # (benchmarks/overhead_profile.py: 0.005 with saves 10 s apart).
    "TUNE_GLOBAL_CHECKPOINT_S": "1",
    # A failed trial's traceback stays in its error.txt; the driver prints one line per failure
    # (ProgressPrinter), not Ray Tune's traceback on the user's terminal.
    "TUNE_PRINT_ALL_TRIAL_ERRORS": "0",
}
# Inside every trial process: packed trials must not grab the whole GPU.
TRIAL_ENVIRONMENT = {
    "TF_FORCE_GPU_ALLOW_GROWTH": "true",
    "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    # A reused trial actor waits this long for the previous trial's thread to end (it
    # frees its model after its last report); Ray's default of 2 s fails the NEXT trial
    # whenever that takes longer, as it does on a busy CPU.
    "TUNE_FUNCTION_THREAD_TIMEOUT_S": "300",
}
os.environ.update(LOCAL_RAY_ENVIRONMENT)
os.environ.update(TRIAL_ENVIRONMENT)

import ray  # noqa: E402
from ray import tune  # noqa: E402
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler  # noqa: E402

_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
EXPERIMENT_NAME = "tune"
CLUSTER_CONNECT_TIMEOUT_S = 10.0
STOP_REASONS_FILE = "stop_reasons.json"
ASHA_REASON = "ASHA: below its rung's cutoff"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Scheduling:
    """How a run is scheduled: where, how many at once, and which early stopping."""

    max_concurrent: int | None = None
    gpus_per_trial: float | None = None  # None: a whole GPU per trial where there are GPUs
    gpu_shares: dict[str, float] | None = None  # per trial template name (--gpus-per-trial auto)
    address: str | None = None  # an existing Ray cluster; None: start a private local one
    num_gpus: int | None = None  # logical GPUs for a local Ray (None: what Ray detects)
    asha: bool = False
    asha_grace_period: int = 1
    asha_reduction_factor: int = 3
    seed: int = 0  # random-search draws
    dashboard: bool = False  # a local Ray's dashboard, bound to 127.0.0.1 (Ray's dashboard has no login)


@dataclass(frozen=True)
class Resources:
    """What each trial asks Ray for, and how many trials run at once."""

    cpus_per_trial: float
    gpus_per_trial: float
    max_concurrent: int


def plan_resources(
    total_cpus: float, total_gpus: float, max_concurrent: int | None, gpus_per_trial: float | None = None
) -> Resources:
    """Split the machine between trials.

    With GPUs: ``gpus_per_trial`` of a GPU each (a whole one by default), as many at once
    as fit. Without: one trial at a time by default, taking every core (TensorFlow spreads
    one trial over all cores; two trials sharing them only add contention).
    """
    if gpus_per_trial is not None and not 0 < gpus_per_trial <= 1:
        raise RunnerError(f"--gpus-per-trial must be in (0, 1], got {gpus_per_trial:g}")
    if gpus_per_trial is not None and total_gpus < gpus_per_trial:
        raise RunnerError(f"--gpus-per-trial {gpus_per_trial:g} asks for more GPU than the {total_gpus:g} present")
    if total_gpus > 0:
        share = gpus_per_trial or 1.0
        fit = max(1, int(math.floor(total_gpus / share + 1e-9)))
        concurrent = min(max_concurrent or fit, fit)
    else:
        share = 0.0
        concurrent = max_concurrent or 1
    cpus = max(total_cpus / concurrent, 0.25)
    cpus = math.floor(cpus) if cpus >= 1 else round(cpus, 2)
    return Resources(float(cpus), share, concurrent)


def _smallest_share(scheduling: Scheduling) -> float | None:
    return min(scheduling.gpu_shares.values()) if scheduling.gpu_shares else scheduling.gpus_per_trial


def _trial_resources(resources: Resources, gpu_shares: dict[str, float] | None):
    """One resource request for every trial, or (auto shares) one per trial template."""
    if not gpu_shares:
        return {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial}

    def per_trial(config: dict) -> tune.PlacementGroupFactory:
        share = gpu_shares.get(config["spec"]["name"], 1.0)
        return tune.PlacementGroupFactory([{"CPU": resources.cpus_per_trial, "GPU": share}])

    return per_trial


class PatienceStopper(tune.Stopper):
    """Stops a trial whose val accuracy has not improved for its spec's ``patience`` epochs.

    Each reason is also written to ``reasons_path``: Ray Tune pickles the stopper with the
    experiment, and a resumed run works with that copy, so the file is what both share.
    """

    def __init__(self, reasons_path: Path):
        self.reasons_path = reasons_path
        self.best: dict[str, tuple[float, int]] = {}
        self.reasons: dict[str, str] = read_stop_reasons(reasons_path)

    def __call__(self, trial_id: str, result: dict) -> bool:
        patience = result.get("patience")
        accuracy = result.get("val_accuracy")
        epoch = result.get("epoch")
        if patience is None or accuracy is None or epoch is None or math.isnan(patience):
            return False
        best, best_epoch = self.best.get(trial_id, (-math.inf, 0))
        if accuracy > best:
            self.best[trial_id] = (accuracy, epoch)
            return False
        if epoch - best_epoch >= patience:
            self.reasons[trial_id] = (
                f"no val accuracy gain in {int(patience)} epochs (best {best:.4f} at epoch {best_epoch})"
            )
            atomic_write_text(self.reasons_path, json.dumps(self.reasons, indent=1))
            return True
        return False

    def stop_all(self) -> bool:
        return False


class ProgressPrinter(tune.Callback):
    """One line per trial event on the driver's stdout, with an estimate of the time left.

    The estimate is the wall time per epoch so far times the epochs still in the plan
    (every planned trial's budget, less what ran and what early stopping cut).
    """

    def __init__(self, write: Callable[[str], None], stopper: PatienceStopper, planned: dict[str, int]):
        self.write = write
        self.stopper = stopper
        self.budgets = dict(planned)  # template name -> epoch budget
        self.done: dict[str, int] = {}
        self.ended: set[str] = set()
        self.first_start: float | None = None

    def _eta(self) -> str:
        epochs_done = sum(self.done.values())
        if not epochs_done or self.first_start is None:
            return ""
        remaining = sum(
            max(budget - self.done.get(name, 0), 0) for name, budget in self.budgets.items() if name not in self.ended
        )
        seconds = remaining * (time.monotonic() - self.first_start) / epochs_done
        return f"  (about {format_duration(seconds)} left)"

    def on_trial_start(self, iteration, trials, trial, **info):
        if self.first_start is None:
            self.first_start = time.monotonic()
        self.write(f"[{trial_label(trial)}] started")

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.done[trial.config["spec"]["name"]] = int(result["epoch"])
        self.write(
            f"[{trial_label(trial)}] epoch {result['epoch']}/{trial.config['spec']['epochs']}  "
            f"val_acc {result['val_accuracy']:.4f}  train_acc {result['train_accuracy']:.4f}  "
            f"{result['train_images_per_sec']:.1f} img/s  {result['epoch_seconds']:.1f} s{self._eta()}"
        )

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.write(f"[{trial_label(trial)}] failed, retrying once: {_last_line(trial.error_file)}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.ended.add(trial.config["spec"]["name"])
        self.write(f"[{trial_label(trial)}] failed: {_last_line(trial.error_file)}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ended.add(trial.config["spec"]["name"])
        result = trial.last_result or {}
        budget = trial.config["spec"]["epochs"]
        epochs = result.get("epoch", 0)
        if epochs and epochs < budget:
            reason = self.stopper.reasons.get(trial.trial_id, ASHA_REASON)
            self.write(f"[{trial_label(trial)}] stopped early at epoch {epochs}/{budget}: {reason}")
        else:
            self.write(f"[{trial_label(trial)}] finished: best val_acc {_best(trial):.4f}")


def _best(trial) -> float:
    try:
        return float(trial.metric_analysis["val_accuracy"]["max"])
    except (KeyError, TypeError):
        return float("nan")


def read_stop_reasons(path: Path) -> dict[str, str]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _last_line(error_file: str | None) -> str:
    if not error_file or not Path(error_file).is_file():
        return "see the trial's error.txt"
    lines = [line for line in Path(error_file).read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "see the trial's error.txt"


def resolve_spec(config: dict) -> TrialSpec:
    """The concrete spec of a trial: its template plus Ray Tune's random-search draws."""
    spec = TrialSpec.from_dict(config["spec"])
    sampled = config.get("search") or {}
    return apply_sample(spec, sampled.get("learning_rate"), sampled.get("latent_size"))


def trial_label(trial) -> str:
    return resolve_spec(trial.config).name


TrialFunction = Callable[[TrialSpec, str, Callable[[dict], None]], None]


def _trainable(config: dict, data_root: str, trial_function: TrialFunction = run_trial) -> None:
    spec = resolve_spec(config)
    node_id = ray.get_runtime_context().get_node_id()

    def report(metrics: dict) -> None:
        tune.report({**metrics, "node_id": node_id, "patience": spec.patience or math.nan})

    trial_function(spec, data_root, report)


def _error_message(error: BaseException | None) -> str | None:
    if error is None:
        return None
    cause = getattr(error, "cause", None) or error
    text = [line for line in str(cause).strip().splitlines() if line.strip()]
    return f"{type(cause).__name__}: {text[-1].strip() if text else ''}".strip()


def last_attempt(rows: list[dict]) -> list[dict]:
    """The epochs of a trial's last attempt: a restarted trial reports from epoch 1 again."""
    attempt: list[dict] = []
    for row in rows:
        if attempt and row["epoch"] <= attempt[-1]["epoch"]:
            attempt = []
        attempt.append(row)
    return attempt


def _records_from(grid, planned: Sequence[TrialSpec], stop_reasons: dict[str, str], asha: bool) -> list[TrialRecord]:
    records: list[TrialRecord] = []
    seen: set[str] = set()
    for result in grid:
        spec = resolve_spec(result.config)
        frame = result.metrics_dataframe
        rows: list[dict] = []
        if frame is not None and not frame.empty and "epoch" in frame.columns:
            columns = [key for key in (*EPOCH_METRIC_KEYS, "node_id") if key in frame.columns]
            frame = frame.dropna(subset=["epoch"])
            rows = [{**row, "epoch": int(row["epoch"])} for row in frame[columns].to_dict("records")]
        trial_id = (result.metrics or {}).get("trial_id")
        epochs = last_attempt(rows)
        stop_reason = stop_reasons.get(trial_id)
        if stop_reason is None and asha and epochs and len(epochs) < spec.epochs and result.error is None:
            stop_reason = ASHA_REASON
        records.append(
            TrialRecord(spec=spec.to_dict(), epochs=epochs, error=_error_message(result.error), stop_reason=stop_reason)
        )
        seen.add(spec.name)
    for spec in planned:
        if spec.search_sample is None and spec.name not in seen:
            records.append(TrialRecord(spec=spec.to_dict(), error="trial did not run"))
    order = {spec.name: index for index, spec in enumerate(planned)}
    records.sort(key=lambda record: order.get(record.spec["name"], len(order)))
    return records


def check_address(address: str, timeout: float = CLUSTER_CONNECT_TIMEOUT_S) -> None:
    """Fail fast with one line when a ``host:port`` cluster address does not answer."""
    if address == "auto":
        return
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise RunnerError(f"cluster address {address!r} is not host:port (or 'auto')")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as error:
        raise RunnerError(f"cannot reach the Ray cluster at {address}: {error.strerror or error}") from None


@dataclass
class _RayInstance:
    temp_dir: str | None = None
    started_here: bool = field(default=False)


def _start_ray(scheduling: Scheduling) -> _RayInstance:
    if ray.is_initialized():  # a caller (a test, a notebook) already joined a cluster
        return _RayInstance()
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_REPO_ROOT, os.environ.get("PYTHONPATH")]))
    if scheduling.address:
        check_address(scheduling.address)
        try:
            ray.init(
                address=scheduling.address,
                log_to_driver=False,
                logging_level=logging.ERROR,
                runtime_env={"env_vars": {**TRIAL_ENVIRONMENT, "PYTHONPATH": os.environ["PYTHONPATH"]}},
            )
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise RunnerError(f"cannot join the Ray cluster at {scheduling.address}: {error}") from None
        return _RayInstance(started_here=True)
    temp_dir = tempfile.mkdtemp(prefix="adience-ray-")
    context = ray.init(**local_ray_options(scheduling, temp_dir))
    if scheduling.dashboard and getattr(context, "dashboard_url", None):
        print(f"Ray dashboard: http://{context.dashboard_url} (this machine only)")
    return _RayInstance(temp_dir=temp_dir, started_here=True)


def local_ray_options(scheduling: Scheduling, temp_dir: str) -> dict:
    """``ray.init`` arguments of a private local Ray: no dashboard unless asked, and then on loopback only."""
    options = {
        "include_dashboard": scheduling.dashboard,
        "_temp_dir": temp_dir,
        "log_to_driver": False,
        "logging_level": logging.ERROR,
        "num_gpus": scheduling.num_gpus,
    }
    if scheduling.dashboard:
        options["dashboard_host"] = LOOPBACK
    return options


def _stop_ray(instance: _RayInstance) -> None:
    if instance.started_here and ray.is_initialized():
        ray.shutdown()
    if instance.temp_dir:
        shutil.rmtree(instance.temp_dir, ignore_errors=True)
    sys.stdout.flush()


def _param_space(specs: Sequence[TrialSpec], search: RandomSearch | None) -> dict:
    templates = list(specs) + (search.templates() if search else [])
    space: dict = {"spec": tune.grid_search([spec.to_dict() for spec in templates])}
    if search:
        space["search"] = {"learning_rate": tune.loguniform(*search.learning_rate)}
        if search.latent_size:
            low, high, step = search.latent_size
            space["search"]["latent_size"] = tune.qrandint(low, high, step)
    return space


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
    data_root: Path,
    run_dir: Path,
    scheduling: Scheduling = Scheduling(),
    search: RandomSearch | None = None,
    resume: bool = False,
    write: Callable[[str], None] = print,
    trial_function: TrialFunction = run_trial,
) -> list[TrialRecord]:
    """Run ``specs`` (and ``search``'s samples) as one Ray Tune experiment under ``run_dir``.

    With ``resume``, restore the experiment stored in ``run_dir`` instead: finished trials
    are kept as they are, the others run again. ``trial_function`` runs each trial
    (``run_trial``; the scheduling benchmark passes a no-op to time Ray Tune alone).
    """
    planned = list(specs) + (search.templates() if search else [])
    experiment = run_dir.resolve() / EXPERIMENT_NAME
    if resume and not tune.Tuner.can_restore(str(experiment)):
        raise RunnerError(f"{run_dir} holds no Ray Tune experiment to resume (expected {experiment})")
    if not scheduling.address and not ray.is_initialized():
        # check the GPU request against this machine before starting Ray
        gpus = scheduling.num_gpus if scheduling.num_gpus is not None else local_gpu_count()
        plan_resources(float(os.cpu_count() or 1), float(gpus), scheduling.max_concurrent, _smallest_share(scheduling))
    instance = _start_ray(scheduling)
    try:
        cluster = ray.cluster_resources()
        resources = plan_resources(
            float(cluster.get("CPU", 1)),
            float(cluster.get("GPU", 0)),
            scheduling.max_concurrent,
            _smallest_share(scheduling),
        )
        write(
            f"Ray: {len(planned)} trial(s), {resources.cpus_per_trial:g} CPU and {resources.gpus_per_trial:g} GPU "
            f"each, at most {resources.max_concurrent} at once"
        )
        stopper = PatienceStopper(run_dir.resolve() / STOP_REASONS_FILE)
        trainable = tune.with_resources(
            tune.with_parameters(_trainable, data_root=str(data_root), trial_function=trial_function),
            _trial_resources(resources, scheduling.gpu_shares),
        )
        run_config = tune.RunConfig(
            name=EXPERIMENT_NAME,
            storage_path=str(run_dir.resolve()),
            verbose=0,
            stop=stopper,
            callbacks=[ProgressPrinter(write, stopper, {spec.name: spec.epochs for spec in planned})],
            failure_config=tune.FailureConfig(max_failures=1),
        )
        if resume:
            # The stored experiment keeps its own run config (stopper and progress printer
            # included) and its param space, sampled values and all.
            tuner = tune.Tuner.restore(
                str(experiment),
                trainable=trainable,
                resume_unfinished=True,
                resume_errored=False,
                restart_errored=False,
            )
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=_param_space(specs, search),
                tune_config=tune.TuneConfig(
                    metric="val_accuracy",
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
        grid = tuner.fit()
        return _records_from(grid, planned, read_stop_reasons(run_dir.resolve() / STOP_REASONS_FILE), scheduling.asha)
    finally:
        _stop_ray(instance)
