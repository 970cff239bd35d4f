"""TrialSpec, Preset and RandomSearch: frozen dataclasses, validated when constructed.

A TrialSpec says everything one trial needs and stays an object from plan to result; it
turns to and from a flat dict only where Ray Tune's ``param_space`` carries it (model
options travel as ``model.<option>`` keys). Each bound is declared here once: a SpecError
lists the fields that break one, and the command line names its own flag for the same
field (``Problem.for_flag``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import models
from bench.choices import DATA_ON_DEVICE_CHOICES, JIT_CHOICES, METRICS, PRECISIONS
from data.adience import DEFAULT_VAL_FOLD, FOLD_COUNT, training_folds
from data.policies import DATASET_DEFAULT, Policy, PolicyError, get_policy
from data.transforms import NORMALISATIONS

OPTIMIZERS = ("sgd", "adam")
MODEL_OPTION_PREFIX = "model."
POLICY_KEY_PREFIX = "policy."  # a suite file's declared policy travels key by key, as model options do
_TRIAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]*")  # becomes a folder name


@dataclass(frozen=True)
class Problem:
    """One field that cannot be run: ``<field> must be [<kind>] <bound>, got <value>``, or a message."""

    field: str
    bound: str = ""  # "> 0 and finite", ">= 1", "0..4"
    value: Any = None
    kind: str = ""  # "an integer": the type, which a typed command-line flag already ensures
    message: str = ""  # instead of a bound: the whole text

    def text(self) -> str:
        if self.message:
            return self.message
        kind = f"{self.kind} " if self.kind else ""
        return f"{self.field} must be {kind}{self.bound}, got {self.value!r}"

    def for_flag(self, flag: str) -> str:
        """The same problem said of the command-line flag that set the field."""
        if self.message:
            return f"{flag}: {self.message}"
        value = f"{self.value:g}" if isinstance(self.value, float) else self.value
        return f"{flag} must be {self.bound}, got {value}"


class SpecError(ValueError):
    """A TrialSpec, preset, request or override that cannot be run; ``problems`` name the fields."""

    def __init__(self, message: str, problems: Sequence[Problem] = ()):
        super().__init__(message)
        self.problems = tuple(problems)

    @classmethod
    def of(cls, subject: str, problems: Sequence[Problem]) -> SpecError:
        return cls(f"{subject}: {'; '.join(problem.text() for problem in problems)}", problems)

    def said_of_flags(self, flags: Mapping[str, str]) -> str:
        """The message, said of the command-line flags (field -> flag) where every problem is one's."""
        if self.problems and all(problem.field in flags for problem in self.problems):
            return "; ".join(problem.for_flag(flags[problem.field]) for problem in self.problems)
        return str(self)


def check_problems(subject: str, problems: Sequence[Problem]) -> None:
    """Raise SpecError for ``subject`` when there is any problem."""
    if problems:
        raise SpecError.of(subject, problems)


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def integer_problem(name: str, value, low: int, optional: bool = False) -> Problem | None:
    """``value`` must be an integer >= ``low`` (or None where ``optional``)."""
    if (value is None and optional) or (is_int(value) and value >= low):
        return None
    return Problem(name, f">= {low}" + (" or None" if optional else ""), value, kind="an integer")


@dataclass(frozen=True)
class TrialSpec:
    """One trial: model, preprocessing, optimiser, budget, data split and the report's figure."""

    name: str
    model: str
    model_options: Mapping[str, Any] = field(default_factory=dict)
    policy: str = "report"  # a built-in policy, a declared one (policy_keys), or "auto": the dataset's
    policy_keys: Mapping[str, Any] = field(default_factory=dict)  # a suite file's [policies.NAME] table
    normalisation: str | None = None  # None: the one the model's registry entry expects
    optimizer: str = "sgd"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_decay_steps: int | None = None  # multiply the learning rate by lr_decay_factor every this many steps
    lr_decay_factor: float = 0.1
    batch_size: int = 32
    epochs: int = 10
    patience: int | None = 10  # stop when the val score has not improved for this many epochs (the report's 10)
    metric: str = "accuracy"  # the run's ranking metric (bench.choices.METRICS): what patience reads
    val_fold: int = DEFAULT_VAL_FOLD
    train_folds: tuple[int, ...] = training_folds(DEFAULT_VAL_FOLD)
    train_limit: int | None = None  # at most this many training images (class-balanced); None: all
    val_limit: int | None = None
    seed: int = 0
    keep_duplicates: bool = False  # faces as often as the fold files list them (Levi & Hassner's lists)
    reference: float | None = None  # the published validation accuracy for this row (single centre crop)
    reference_epochs: int | None = None  # the epochs the report trained for that figure
    reference_std: float | None = None  # its spread where published (std over folds)
    reference_oversampled: float | None = None  # the published over-sampled (ten-view) accuracy
    reference_oversampled_std: float | None = None
    search_sample: int | None = None  # a random-search sample: learning rate / latent size drawn by Ray Tune
    run_eagerly: bool = False  # no graph tracing: faster for runs of a few steps on a CPU, slower otherwise
    # a smoke run's measurements (bench/trial/inference.py SMOKE_MEASURES): the over-sampled accuracy
    # on the first validation faces only and inference timed over the fewest passes, labelled so
    smoke_measures: bool = False
    group: str | None = None  # the report row this trial repeats (seeds, folds); None: its own name
    # how it executes (bench/trial/execution.py): auto is resolved on the node that runs the trial
    precision: str = "auto"  # fp32, bf16 (mixed_bfloat16), fp16 (mixed_float16, loss scaling)
    jit: str = "auto"  # XLA: on, off, or Keras's choice
    data_on_device: str = "auto"  # the split's images on the device, batches gathered there (data/device.py)

    def __post_init__(self):
        object.__setattr__(self, "model_options", dict(self.model_options))
        object.__setattr__(self, "policy_keys", dict(self.policy_keys))
        object.__setattr__(self, "train_folds", tuple(int(f) for f in self.train_folds))
        if self.normalisation is None and models.is_registered(self.model):
            object.__setattr__(self, "normalisation", models.get_model_entry(self.model).normalisation)
        check_problems(f"trial {self.name or '?'}", [problem for problem in self._problems() if problem])

    def _problems(self):
        if not isinstance(self.name, str) or not _TRIAL_NAME.fullmatch(self.name):
            yield Problem(
                "name", message=f"name must be letters, digits and _.=- (it names a folder), got {self.name!r}"
            )
        if not models.is_registered(self.model):
            try:
                models.get_model_entry(self.model)
            except models.UnknownModelError as error:
                yield Problem("model", message=str(error))
        if self.policy != DATASET_DEFAULT:
            try:
                mixes = get_policy(self.policy, self.policy_keys).mixes
            except PolicyError as error:
                yield Problem("policy", message=f"policy {self.policy}: {error}")
            else:
                if mixes and self.data_on_device == "on":
                    yield Problem("data_on_device", message="a policy that mixes batches mixes them on the host")
        if self.normalisation not in NORMALISATIONS and models.is_registered(self.model):
            known = ", ".join(NORMALISATIONS)
            yield Problem("normalisation", message=f"unknown normalisation {self.normalisation!r} (known: {known})")
        if self.optimizer not in OPTIMIZERS:
            yield Problem("optimizer", f"one of {', '.join(OPTIMIZERS)}", self.optimizer)
        if self.metric not in METRICS:
            yield Problem("metric", f"one of {', '.join(METRICS)}", self.metric)
        if not (isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < math.inf):
            yield Problem("learning_rate", "> 0 and finite", self.learning_rate)
        if not 0 <= self.momentum < 1:
            yield Problem("momentum", "in [0, 1)", self.momentum)
        if self.weight_decay < 0:
            yield Problem("weight_decay", ">= 0", self.weight_decay)
        yield integer_problem("batch_size", self.batch_size, 1)
        yield integer_problem("epochs", self.epochs, 1)
        yield integer_problem("seed", self.seed, 0)
        if not 0 < self.lr_decay_factor <= 1:
            yield Problem("lr_decay_factor", "in (0, 1]", self.lr_decay_factor)
        for name in ("patience", "train_limit", "val_limit", "lr_decay_steps"):
            yield integer_problem(name, getattr(self, name), 1, optional=True)
        if self.val_fold not in range(FOLD_COUNT):
            yield Problem("val_fold", f"0..{FOLD_COUNT - 1}", self.val_fold)
        if not self.train_folds or any(f not in range(FOLD_COUNT) for f in self.train_folds):
            yield Problem("train_folds", f"a non-empty subset of 0..{FOLD_COUNT - 1}", self.train_folds)
        elif self.val_fold in self.train_folds:
            yield Problem(
                "train_folds", message=f"fold {self.val_fold} cannot be both a training and the validation fold"
            )
        for name, choices in (
            ("precision", PRECISIONS),
            ("jit", JIT_CHOICES),
            ("data_on_device", DATA_ON_DEVICE_CHOICES),
        ):
            if getattr(self, name) not in choices:
                yield Problem(name, f"one of {', '.join(choices)}", getattr(self, name))
        for name in ("reference", "reference_std", "reference_oversampled", "reference_oversampled_std"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                yield Problem(name, "an accuracy in [0, 1]", value)

    @property
    def group_name(self) -> str:
        """The report row this trial belongs to: its group, or its own name when it is not a repeat."""
        return self.group or self.name

    def to_dict(self) -> dict[str, Any]:
        """Flat dict of scalars and lists: model options become ``model.<option>`` keys."""
        flat: dict[str, Any] = {}
        for spec_field in dataclasses.fields(self):
            value = getattr(self, spec_field.name)
            if spec_field.name == "model_options":
                flat.update({MODEL_OPTION_PREFIX + key: option for key, option in sorted(value.items())})
            elif spec_field.name == "policy_keys":
                flat.update({POLICY_KEY_PREFIX + key: policy_value for key, policy_value in sorted(value.items())})
            elif isinstance(value, tuple):
                flat[spec_field.name] = list(value)
            else:
                flat[spec_field.name] = value
        return flat

    @classmethod
    def from_dict(cls, flat: Mapping[str, Any]) -> TrialSpec:
        known = {spec_field.name for spec_field in dataclasses.fields(cls)} - {"model_options", "policy_keys"}
        kwargs: dict[str, Any] = {}
        options: dict[str, Any] = {}
        policy_keys: dict[str, Any] = {}
        unknown = []
        for key, value in flat.items():
            if key.startswith(MODEL_OPTION_PREFIX):
                options[key[len(MODEL_OPTION_PREFIX) :]] = value
            elif key.startswith(POLICY_KEY_PREFIX):
                policy_keys[key[len(POLICY_KEY_PREFIX) :]] = value
            elif key in known:
                kwargs[key] = value
            else:
                unknown.append(key)
        if unknown:
            raise SpecError(f"unknown TrialSpec fields: {', '.join(sorted(unknown))}")
        return cls(model_options=options, policy_keys=policy_keys, **kwargs)

    def replace(self, **changes) -> TrialSpec:
        return dataclasses.replace(self, **changes)

    def without_weights(self) -> TrialSpec:
        """This spec with random initial weights where it names pretrained ones: the same
        variables, shapes and speed, nothing to download (estimates and benchmarks)."""
        if self.model_options.get("weights") is None:
            return self
        return self.replace(model_options={**self.model_options, "weights": None})

    @property
    def augmentation(self) -> Policy:
        """The Policy the trial trains with (its ``policy`` resolved: never "auto" once planned)."""
        if self.policy == DATASET_DEFAULT:
            raise SpecError(f"trial {self.name}: policy auto is resolved by the planner from the dataset")
        return get_policy(self.policy, self.policy_keys)

    @property
    def input_size(self) -> int:
        """The model's input side: its ``input_size`` option or the registry's default."""
        return int(self.model_options.get("input_size", models.get_model_entry(self.model).default_input_size))


@dataclass(frozen=True)
class RandomSearch:
    """A random search over one row's learning rate (log-uniform) and latent size (a grid step).

    Ray Tune draws each sample; ``base`` holds everything else. ``references`` are the
    report's figures for its samples, in order (its samples drew other values than ours).
    """

    base: TrialSpec
    samples: int
    learning_rate: tuple[float, float]
    latent_size: tuple[int, int, int] | None = None  # low, high, step
    references: tuple[float | None, ...] = ()

    def __post_init__(self):
        problems = []
        low, high = self.learning_rate
        if not 0 < low < high:
            problems.append(Problem("learning_rate", message="learning-rate bounds must be 0 < low < high"))
        if self.latent_size is not None:
            latent_low, latent_high, step = self.latent_size
            if not (0 < latent_low <= latent_high and step > 0):
                problems.append(Problem("latent_size", message="latent-size bounds must be 0 < low <= high, step > 0"))
        if self.samples < 1:
            problems.append(Problem("samples", message="samples must be >= 1"))
        check_problems(f"random search {self.base.name}", problems)

    def templates(self) -> list[TrialSpec]:
        """One spec per sample; Ray Tune fills in the sampled values (see ``apply_sample``)."""
        return [
            self.base.replace(
                name=f"{self.base.name}-{index}",
                search_sample=index,
                reference=self.references[index] if index < len(self.references) else None,
            )
            for index in range(self.samples)
        ]


def apply_sample(spec: TrialSpec, learning_rate: float | None, latent_size: int | None) -> TrialSpec:
    """The concrete spec of a random-search sample; its name carries the drawn values."""
    if spec.search_sample is None:
        return spec
    options = dict(spec.model_options)
    name = spec.name
    changes = {}
    if learning_rate is not None:
        changes["learning_rate"] = float(learning_rate)
        name += f"_lr={learning_rate:.3g}"
    if latent_size is not None:
        options["latent_size"] = int(latent_size)
        name += f"_latent={int(latent_size)}"
    return spec.replace(name=name, model_options=options, **changes)


@dataclass(frozen=True)
class Preset:
    """How much of each trial to run: the report's budget or a quick smoke run."""

    name: str
    description: str
    epochs: int | None  # None: each spec's own (the report's) epochs
    train_limit: int | None
    val_limit: int | None
    synthetic_ok: bool = True  # False: refuse to run on synthetic data without --force
    max_input_size: int | None = None  # caps an explicit ``input_size`` option (models that take any size)
    pretrained: bool = True  # False: ``weights`` options become None (random start, nothing to download)
    eager: bool = False  # run trials eagerly (see TrialSpec.run_eagerly)
    smoke_measures: bool = False  # see TrialSpec.smoke_measures

    def apply(self, spec: TrialSpec) -> TrialSpec:
        options = dict(spec.model_options)
        if self.max_input_size and "input_size" in options:
            options["input_size"] = min(int(options["input_size"]), self.max_input_size)
        if not self.pretrained and "weights" in options:
            options["weights"] = None
        return spec.replace(
            epochs=self.epochs or spec.epochs,
            train_limit=self.train_limit if self.train_limit is not None else spec.train_limit,
            val_limit=self.val_limit if self.val_limit is not None else spec.val_limit,
            model_options=options,
            run_eagerly=spec.run_eagerly or self.eager,
            smoke_measures=spec.smoke_measures or self.smoke_measures,
        )


def planned_specs(specs: Sequence[TrialSpec], search: RandomSearch | None) -> list[TrialSpec]:
    """The grid specs and one template per random-search sample: every trial a plan runs."""
    return list(specs) + (search.templates() if search else [])


def ranking_metric(specs: Sequence[TrialSpec]) -> str:
    """The one ranking metric of a run's trials (the planner gives them all the run's); accuracy for none."""
    metrics = sorted({spec.metric for spec in specs})
    if len(metrics) > 1:
        raise SpecError(f"a run ranks by one metric; its trials name {', '.join(metrics)}")
    return metrics[0] if metrics else "accuracy"
