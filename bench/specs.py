"""TrialSpec, Goal and presets: frozen dataclasses, validated when constructed.

A TrialSpec says everything one trial needs and turns to and from a flat dict (the dict
Ray Tune's ``param_space`` carries); model options travel as ``model.<option>`` keys.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import models
from bench.faults import Fault
from data.adience import FOLD_COUNT
from data.transforms import NORMALISATIONS, POLICIES

OPTIMIZERS = ("sgd", "adam")
MODEL_OPTION_PREFIX = "model."
_TRIAL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=-]*")  # becomes a folder name


class SpecError(ValueError):
    """A TrialSpec, preset or override that cannot be run; the message says which field."""


@dataclass(frozen=True)
class TrialSpec:
    """One trial: model, preprocessing, optimiser, budget, data split and the report's figure."""

    name: str
    model: str
    model_options: Mapping[str, Any] = field(default_factory=dict)
    policy: str = "report"
    normalisation: str = "per_image"
    optimizer: str = "sgd"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_decay_steps: int | None = None  # multiply the learning rate by lr_decay_factor every this many steps
    lr_decay_factor: float = 0.1
    batch_size: int = 32
    epochs: int = 10
    patience: int | None = 10  # stop when val accuracy has not improved for this many epochs (the report's 10)
    val_fold: int = 4
    train_folds: tuple[int, ...] = (0, 1, 2, 3)
    train_limit: int | None = None  # at most this many training images (class-balanced); None: all
    val_limit: int | None = None
    seed: int = 0
    reference: float | None = None  # the report's validation accuracy for this row
    reference_epochs: int | None = None  # the epochs the report trained for that figure
    search_sample: int | None = None  # a random-search sample: learning rate / latent size drawn by Ray Tune
    run_eagerly: bool = False  # no graph tracing: faster for runs of a few steps on a CPU, slower otherwise
    group: str | None = None  # the report row this trial repeats (seeds, folds); None: its own name
    fault: str | None = None  # testing only: "raise@K", "nan@K" or "kill@K" (bench/faults.py)

    def __post_init__(self):
        object.__setattr__(self, "model_options", dict(self.model_options))
        object.__setattr__(self, "train_folds", tuple(int(f) for f in self.train_folds))
        problems = list(self._problems())
        if problems:
            raise SpecError(f"trial {self.name or '?'}: {'; '.join(problems)}")

    def _problems(self):
        if not isinstance(self.name, str) or not _TRIAL_NAME.fullmatch(self.name):
            yield f"name must be letters, digits and _.=- (it names a folder), got {self.name!r}"
        if not models.is_registered(self.model):
            try:
                models.get_model_entry(self.model)
            except models.UnknownModelError as error:
                yield str(error)
        if self.policy not in POLICIES:
            yield f"unknown policy {self.policy!r} (known: {', '.join(POLICIES)})"
        if self.normalisation not in NORMALISATIONS:
            yield f"unknown normalisation {self.normalisation!r} (known: {', '.join(NORMALISATIONS)})"
        if self.optimizer not in OPTIMIZERS:
            yield f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
        if not (isinstance(self.learning_rate, (int, float)) and 0 < self.learning_rate < math.inf):
            yield f"learning_rate must be > 0 and finite, got {self.learning_rate!r}"
        if not 0 <= self.momentum < 1:
            yield f"momentum must be in [0, 1), got {self.momentum!r}"
        if self.weight_decay < 0:
            yield f"weight_decay must be >= 0, got {self.weight_decay!r}"
        for name in ("batch_size", "epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                yield f"{name} must be an integer >= 1, got {value!r}"
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            yield f"seed must be an integer >= 0, got {self.seed!r}"
        if not 0 < self.lr_decay_factor <= 1:
            yield f"lr_decay_factor must be in (0, 1], got {self.lr_decay_factor!r}"
        for name in ("patience", "train_limit", "val_limit", "lr_decay_steps"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                yield f"{name} must be an integer >= 1 or None, got {value!r}"
        if self.val_fold not in range(FOLD_COUNT):
            yield f"val_fold must be 0..{FOLD_COUNT - 1}, got {self.val_fold!r}"
        if not self.train_folds or any(f not in range(FOLD_COUNT) for f in self.train_folds):
            yield f"train_folds must be a non-empty subset of 0..{FOLD_COUNT - 1}, got {self.train_folds!r}"
        elif self.val_fold in self.train_folds:
            yield f"fold {self.val_fold} cannot be both a training and the validation fold"
        if self.fault is not None:
            try:
                Fault.parse(self.fault)
            except ValueError as error:
                yield str(error)
        if self.reference is not None and not 0 <= self.reference <= 1:
            yield f"reference must be an accuracy in [0, 1], got {self.reference!r}"

    def to_dict(self) -> dict[str, Any]:
        """Flat dict of scalars and lists: model options become ``model.<option>`` keys."""
        flat: dict[str, Any] = {}
        for spec_field in dataclasses.fields(self):
            value = getattr(self, spec_field.name)
            if spec_field.name == "model_options":
                flat.update({MODEL_OPTION_PREFIX + key: option for key, option in sorted(value.items())})
            elif isinstance(value, tuple):
                flat[spec_field.name] = list(value)
            else:
                flat[spec_field.name] = value
        return flat

    @classmethod
    def from_dict(cls, flat: Mapping[str, Any]) -> TrialSpec:
        known = {spec_field.name for spec_field in dataclasses.fields(cls)} - {"model_options"}
        kwargs: dict[str, Any] = {}
        options: dict[str, Any] = {}
        unknown = []
        for key, value in flat.items():
            if key.startswith(MODEL_OPTION_PREFIX):
                options[key[len(MODEL_OPTION_PREFIX) :]] = value
            elif key in known:
                kwargs[key] = value
            else:
                unknown.append(key)
        if unknown:
            raise SpecError(f"unknown TrialSpec fields: {', '.join(sorted(unknown))}")
        return cls(model_options=options, **kwargs)

    def replace(self, **changes) -> TrialSpec:
        return dataclasses.replace(self, **changes)

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
        low, high = self.learning_rate
        if not 0 < low < high:
            raise SpecError(f"random search {self.base.name}: learning-rate bounds must be 0 < low < high")
        if self.latent_size is not None:
            latent_low, latent_high, step = self.latent_size
            if not (0 < latent_low <= latent_high and step > 0):
                raise SpecError(f"random search {self.base.name}: latent-size bounds must be 0 < low <= high, step > 0")
        if self.samples < 1:
            raise SpecError(f"random search {self.base.name}: samples must be >= 1")

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
        )


PRESETS = {
    "smoke": Preset(
        "smoke",
        "few epochs and images: checks the whole path in minutes on a CPU",
        epochs=6,
        train_limit=1000,
        val_limit=500,
    ),
    "paper": Preset(
        "paper",
        "the report's epochs and the whole split: hours on a GPU",
        epochs=None,
        train_limit=None,
        val_limit=None,
        synthetic_ok=False,
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise SpecError(f"unknown preset {name!r} (valid: {', '.join(PRESETS)})") from None
