"""Planning a run, once: the request (saved as run.json) -> the Plan of every trial to run.

A ``RunRequest`` is what the user asked for: suite, preset, data, overrides, the trial
filter, repeats and folds, scheduling. ``plan_run`` turns it into a ``Plan``: the suite's
specs after its preset and the overrides, filtered, expanded per seed and per fold, plus
the random search and the scheduling with the suite's early stopping and any per-trial GPU
shares. A run plans once; ``--resume`` plans again from run.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import models
from bench.errors import UsageError
from bench.plan.dataset import RunData, prepare_dataset
from bench.plan.goals import Goals
from bench.plan.protocols import Protocol, get_protocol
from bench.plan.storage import masked
from bench.plan.suites import Suite, get_suite
from bench.specs import (
    Preset,
    Problem,
    RandomSearch,
    SpecError,
    TrialSpec,
    check_problems,
    integer_problem,
    planned_specs,
)
from bench.trial.checkpoints import EVERY_EPOCH, CheckpointRule
from data.adience import FOLD_COUNT, training_folds
from data.datasets import default_policy
from data.policies import DATASET_DEFAULT

AUTO = "auto"  # --gpus-per-trial auto: each trial's share from its model's training memory

PRESETS = {
    "smoke": Preset(
        "smoke",
        "few epochs and images: checks the whole path in minutes on a CPU",
        epochs=6,
        train_limit=1000,
        val_limit=500,
        smoke_measures=True,
    ),
    "paper": Preset(
        "paper",
        "the report's epochs and the whole split: hours on a GPU",
        epochs=None,
        train_limit=None,
        val_limit=None,
        synthetic_ok=False,
    ),
    "as-written": Preset(
        "as-written",
        "each trial's own epochs and limits, as its suite file states them",
        epochs=None,
        train_limit=None,
        val_limit=None,
    ),
}


def default_preset(suite: Suite) -> str:
    """The preset a run gets without --preset: a suite file runs as written, the report's suites smoke."""
    return "as-written" if suite.as_written else "smoke"


def preset_line(suite: Suite, preset: str) -> str:
    """What ``preset`` makes of ``suite``'s trials, in one line (``--list`` says it)."""
    chosen = get_preset(preset)
    if preset == "smoke" and suite.as_written and suite.smoke:
        return f"preset smoke (the suite file's [preset.smoke] table): {suite.smoke.description}"
    own = [section.name for section in suite.sections() if section.smoke] if preset == "smoke" else []
    apart = f"; {', '.join(own)}: a smoke preset of {'its' if len(own) == 1 else 'their'} own" if own else ""
    return f"preset {preset}: {chosen.description}{apart}"


def gpu_share_argument(value: str) -> float | str:
    """``--gpus-per-trial``'s value: a number (checked by Scheduling) or ``auto``."""
    try:
        return value if value == AUTO else float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--gpus-per-trial takes a number in (0, 1] or auto, got {value!r}") from None


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise SpecError(f"unknown preset {name!r} (valid: {', '.join(PRESETS)})") from None


@dataclass(frozen=True)
class Scheduling:
    """How a run is scheduled: where, how many at once, GPU shares, which early stopping."""

    max_concurrent: int | None = None
    gpus_per_trial: float | str | None = None  # a share in (0, 1], AUTO, or None: a whole GPU where there are GPUs
    gpu_shares: Mapping[str, float] | None = None  # per trial template name (resolved from AUTO by plan_run)
    address: str | None = None  # an existing Ray cluster; None: start a private local one
    num_gpus: int | None = None  # logical GPUs for a local Ray (None: what Ray detects)
    asha: bool = False
    asha_grace_period: int = 1
    asha_reduction_factor: int = 3
    seed: int = 0  # random-search draws
    dashboard: bool = False  # a local Ray's dashboard, bound to 127.0.0.1 (Ray's dashboard has no login)
    storage: str | None = None  # Ray Tune's storage: a folder every node mounts, or a URI (s3://, gs://...)
    checkpoint_every: int = 1  # a trial checkpoints every this many epochs (0: never)
    checkpoint_interval: float | None = None  # ... and at most once in this many seconds (None: the rule's)
    save_models: bool = False  # export each report row's best model to runs/<id>/models/<row>.keras

    def __post_init__(self):
        share = self.gpus_per_trial
        problems = [
            integer_problem("max_concurrent", self.max_concurrent, 1, optional=True),
            integer_problem("num_gpus", self.num_gpus, 0, optional=True),
            integer_problem("checkpoint_every", self.checkpoint_every, 0),
        ]
        interval = self.checkpoint_interval
        if interval is not None and (
            isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 <= interval < math.inf
        ):
            problems.append(Problem("checkpoint_interval", "seconds >= 0", interval))
        if share is not None and share != AUTO and not (isinstance(share, (int, float)) and 0 < share <= 1):
            problems.append(Problem("gpus_per_trial", "in (0, 1]", share))
        check_problems("scheduling", [problem for problem in problems if problem])

    @property
    def checkpoint_rule(self) -> CheckpointRule | None:
        """When trials checkpoint; with ``save_models`` every epoch, so the best epoch is the one exported."""
        if self.checkpoint_every == 0:
            return None
        if self.save_models:
            return dataclasses.replace(EVERY_EPOCH, every=self.checkpoint_every)
        if self.checkpoint_interval is None:
            return CheckpointRule(every=self.checkpoint_every)
        return CheckpointRule(every=self.checkpoint_every, min_interval_s=float(self.checkpoint_interval))

    @property
    def smallest_share(self) -> float | None:
        """The smallest GPU share any trial asks for (None: a whole GPU)."""
        if self.gpu_shares:
            return min(self.gpu_shares.values())
        return None if self.gpus_per_trial == AUTO else self.gpus_per_trial


@dataclass(frozen=True)
class RunRequest:
    """Everything needed to plan (or re-plan, on --resume) a run; saved as run.json."""

    suite: str
    preset: str
    data_root: str  # the dataset folder; "" until the built-in synthetic data is made
    synthetic: bool
    trials: str | None  # shell pattern of trial names; None: all
    overrides: dict  # TrialSpec field -> value, for every trial
    asha: bool
    scheduling: Scheduling = field(default_factory=Scheduling)
    repeats: int = 1
    cv: bool = False
    protocol: str = "report"  # bench/plan/protocols.py
    model_modules: tuple[str, ...] = ()  # user modules whose register_model calls add models
    goals: dict = field(default_factory=dict)  # budget name -> value, over the suite's (--goal)
    backend: str = "tensorflow"  # Keras backend of the driver and trials (--backend; --resume keeps it)
    image_size: int | None = None  # the cache's side (--image-size); None: the suite's, else the dataset's
    metric: str | None = None  # the ranking metric (--metric); None: the suite's

    def __post_init__(self):
        if isinstance(self.scheduling, Mapping):  # as read back from run.json
            object.__setattr__(self, "scheduling", Scheduling(**self.scheduling))
        object.__setattr__(self, "model_modules", tuple(self.model_modules))
        if self.suite.endswith(".toml"):  # a suite file, named absolutely so that --resume finds it again
            object.__setattr__(self, "suite", str(Path(self.suite).expanduser().resolve()))
        check_problems("request", [problem for problem in [integer_problem("repeats", self.repeats, 1)] if problem])

    def to_json(self) -> str:
        """The request as run.json holds it: a storage URI's credentials masked (never recorded)."""
        recorded = dataclasses.asdict(self)
        recorded["scheduling"]["storage"] = masked(self.scheduling.storage)
        return json.dumps(recorded, indent=1, sort_keys=True)

    @classmethod
    def from_file(cls, path: Path) -> RunRequest:
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            raise UsageError(f"{path.parent} is not a run folder (it has no {path.name})") from None
        except (json.JSONDecodeError, TypeError) as error:
            raise UsageError(f"{path} is damaged: {error}") from None


@dataclass(frozen=True)
class Plan:
    """What a run runs: grid specs (expanded per seed and fold), the random search, scheduling."""

    suite: Suite
    specs: tuple[TrialSpec, ...]
    search: RandomSearch | None
    scheduling: Scheduling
    protocol: Protocol
    preset: str = "smoke"
    model_modules: tuple[str, ...] = ()
    goals: Goals | None = None  # the suite's budgets with the request's over them
    image_size: int | None = None  # the cache's side; None: the dataset's default

    def goals_for(self, synthetic: bool) -> Goals:
        return self.goals or self.suite.goals(synthetic)

    @property
    def metric(self) -> str:
        """The ranking metric (bench.choices.METRICS) every trial reports and the leaderboard ranks by."""
        return self.goals_for(False).metric

    @property
    def all_specs(self) -> list[TrialSpec]:
        """Every trial: the grid specs and one template per random-search sample."""
        return planned_specs(self.specs, self.search)


def plan_run(request: RunRequest) -> Plan:
    """The suite's trials after preset, overrides, protocol, the --trials filter, repeats and folds."""
    models.import_model_modules(request.model_modules)  # before a spec names one of their models
    suite = get_suite(request.suite)
    general = get_preset(request.preset)
    protocol = get_protocol(request.protocol)
    if protocol.cross_validation and "val_fold" in request.overrides:
        raise UsageError(f"--protocol {protocol.name} holds out every fold in turn: drop --val-fold")
    cv = request.cv or protocol.cross_validation
    dataset_policy = default_policy(request.data_root or None)
    metric = request.metric or suite.metric
    specs: list[TrialSpec] = []
    search = None
    for section in suite.sections():
        preset = section.smoke if (section.smoke and general.name == "smoke") else general

        def prepare(spec: TrialSpec, preset=preset) -> TrialSpec:
            if spec.policy == DATASET_DEFAULT:
                spec = spec.replace(policy=dataset_policy)
            return protocol.apply(preset.apply(spec).replace(**request.overrides, metric=metric))

        specs += expand_specs([prepare(spec) for spec in section.specs], request.repeats, cv)
        if section.search is not None:
            search = replace(section.search, base=prepare(section.search.base))
            if protocol.references is not None:  # the report's figures are for another protocol
                search = replace(search, references=())
    if request.trials:
        specs = [spec for spec in specs if fnmatch.fnmatchcase(spec.name, request.trials)]
        if search is not None and not any(fnmatch.fnmatchcase(t.name, request.trials) for t in search.templates()):
            search = None
        if not specs and search is None:
            names = ", ".join(spec.name for spec in suite.all_templates())
            raise UsageError(f"--trials {request.trials!r} matches no trial of suite {suite.name} ({names})")
    scheduling = replace(
        request.scheduling,
        asha=suite.asha or request.asha,
        asha_grace_period=suite.asha_grace_period,
        asha_reduction_factor=suite.asha_reduction_factor,
    )
    if scheduling.gpus_per_trial == AUTO:
        from bench.plan.estimate import auto_gpu_shares  # builds every model once: only when asked

        scheduling = replace(scheduling, gpus_per_trial=None, gpu_shares=auto_gpu_shares(planned_specs(specs, search)))
    goals = dataclasses.replace(suite.goals(request.synthetic).with_budgets(request.goals), metric=metric)
    image_size = request.image_size or suite.image_size
    modules = tuple(request.model_modules)
    return Plan(suite, tuple(specs), search, scheduling, protocol, request.preset, modules, goals, image_size)


def expand_specs(specs: list[TrialSpec], repeats: int, cv: bool) -> list[TrialSpec]:
    """Each spec once per seed (``repeats``) and per validation fold (``cv``), grouped by its name.

    Names stay folder names: ``<name>.fold=<k>.seed=<s>``. Random-search samples are not
    repeated: each sample is a draw of its own.
    """
    if repeats == 1 and not cv:
        return specs
    expanded = []
    for spec in specs:
        for fold in range(FOLD_COUNT) if cv else (None,):
            for seed in range(spec.seed, spec.seed + repeats):
                changes: dict = {"group": spec.group_name, "seed": seed}
                suffix = []
                if fold is not None:
                    changes["val_fold"] = fold
                    changes["train_folds"] = training_folds(fold)
                    suffix.append(f"fold={fold}")
                if repeats > 1:
                    suffix.append(f"seed={seed}")
                expanded.append(spec.replace(name=".".join([spec.name, *suffix]), **changes))
    return expanded


@dataclass(frozen=True)
class PreparedRun:
    """A run ready to execute: its request (with the data folder found), its Plan, its decoded data."""

    request: RunRequest
    plan: Plan
    data: RunData


def prepare_run(request: RunRequest) -> PreparedRun:
    """Plan ``request``, then find or make its data and decode it once: a new run and ``--resume`` alike."""
    planned = plan_run(request)  # a bad suite, --trials or override fails here, before any data is read
    data = prepare_dataset(request.data_root, request.synthetic, planned.all_specs, image_size=planned.image_size)
    return PreparedRun(replace(request, data_root=str(data.root)), planned, data)
