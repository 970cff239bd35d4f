"""Suites a user writes: a TOML file that loads into the same ``Suite`` the report's suites are.

    name = "backbones"                      # the run folder and the leaderboard say it
    description = "three keras.applications backbones"
    target_accuracy = 0.8                   # epochs- and time-to-target count to it
    image_size = 64                         # optional: the cache's side (default: the data's own)
    metric = "balanced_accuracy"            # optional: ranks rows (accuracy, balanced_accuracy, macro_f1)
    policy = "light"                        # optional: the policy of trials that name none
    [goals]                                 # bench/plan/goals.py's budget names
    accuracy = 0.8
    time = 1800
    [[trials]]                              # one table per trial: TrialSpec's field names
    name = "mobilenet"
    model = "keras:MobileNetV3Small"
    model_options = { input_size = 96, latent_size = 64 }
    [policies.light]                        # optional: augmentation policies (data/policies.py KEYS)
    crop = 0.875
    horizontal_flip = true
    [search]                                # optional: a random search (TrialSpec fields, and:)
    learning_rate = [1e-5, 1e-3]            # log-uniform bounds
    latent_size = [32, 256, 32]             # low, high, step
    samples = 3
    [preset.smoke]                          # optional: what --preset smoke makes of this suite

A file runs as written (its trials' epochs and limits) unless ``--preset`` says otherwise. A
trial without a policy, where the file sets none either, gets the dataset's ("auto": the
report's for faces, none for an image folder). Everything is checked before anything runs; a problem is one line naming the file, the table
and the key.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from bench.choices import METRICS
from bench.errors import UsageError, did_you_mean
from bench.plan.goals import BUDGETS, GoalError, check_value
from bench.plan.suite import Suite
from bench.specs import Preset, RandomSearch, SpecError, TrialSpec
from data.cache import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from data.policies import BUILT_IN, DATASET_DEFAULT, PolicyError, declare_policy

TOP_LEVEL = {"name": str, "description": str, "target_accuracy": float, "goals": dict, "trials": list}
TOP_LEVEL |= {"search": dict, "preset": dict, "policies": dict, "policy": str, "image_size": int, "metric": str}
SPEC_FIELDS = {f.name: f for f in dataclasses.fields(TrialSpec)}
# the planner's own; policies are declared apart; the ranking metric is the file's (top level)
NOT_IN_FILES = {"search_sample", "group", "policy_keys", "metric"}
PRESET_FIELDS = {f.name for f in dataclasses.fields(Preset)} - {"name", "description"}
SEARCH_ONLY = {"samples": int, "learning_rate": list, "latent_size": list, "references": list}


class SuiteFileError(UsageError):
    """A suite file that cannot be run; the message names the file, the table and the key."""


def load_suite_file(path: Path | str) -> Suite:
    """The Suite a TOML file describes, checked whole before anything runs."""
    path = Path(path).expanduser()
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SuiteFileError(f"{path}: no such suite file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SuiteFileError(f"{path}: cannot read it ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise SuiteFileError(f"{path}: not valid TOML ({error})") from None
    where = _Where(path)
    _check_keys(where, "the top level", document, TOP_LEVEL, required=("name", "trials"))
    for key, kind in TOP_LEVEL.items():
        if key in document:
            _check_type(where, "the top level", key, document[key], kind)
    target = float(document.get("target_accuracy", 0.8))
    if not 0 < target <= 1:
        raise where.error("the top level", "target_accuracy", f"must be in (0, 1], got {target!r}")
    budgets = _goals(where, document.get("goals", {}))
    metric = document.get("metric", "accuracy")
    if metric not in METRICS:
        raise where.error("the top level", "metric", f"one of {', '.join(METRICS)}, got {metric!r}")
    image_size = document.get("image_size")
    if image_size is not None and not MIN_IMAGE_SIZE <= image_size <= MAX_IMAGE_SIZE:
        raise where.error(
            "the top level", "image_size", f"must be {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE}, got {image_size}"
        )
    policies = _Policies(where, document.get("policies", {}), document.get("policy", DATASET_DEFAULT))
    if not document["trials"] and "search" not in document:
        raise where.error("[[trials]]", "", "the file holds no trial")
    specs = tuple(
        _spec(where, f"[[trials]] #{n}", table, policies=policies)
        for n, table in enumerate(document["trials"], start=1)
    )
    search = _search(where, document["search"], policies) if "search" in document else None
    smoke = _smoke(where, document.get("preset", {}))
    try:
        return Suite(
            name=document["name"],
            description=document.get("description", f"suite file {path.name}"),
            specs=specs,
            search=search,
            target_accuracy=target,
            smoke=smoke,
            budgets=budgets,
            image_size=image_size,
            metric=metric,
            as_written=True,
        )
    except ValueError as error:  # repeated trial names
        raise where.error("[[trials]]", "name", str(error)) from None


@dataclasses.dataclass(frozen=True)
class _Where:
    path: Path

    def error(self, table: str, key: str, problem: str) -> SuiteFileError:
        return SuiteFileError(f"{self.path}: {table}{f', key {key}' if key else ''}: {problem}")


def _check_keys(where: _Where, table: str, values: dict, known, required: tuple[str, ...] = ()) -> None:
    for key in values:
        if key not in known:
            hint = did_you_mean(key, known) or f" (known: {', '.join(sorted(known))})"
            raise where.error(table, key, f"unknown key{hint}")
    for key in required:
        if key not in values:
            raise where.error(table, key, "missing")


def _check_type(where: _Where, table: str, key: str, value, kind) -> None:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return
    if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
        raise where.error(table, key, f"must be {_type_name(kind)}, got {type(value).__name__} {value!r}")


def _type_name(kind) -> str:
    names = {str: "a string", float: "a number", int: "an integer", bool: "true or false", dict: "a table"}
    return names.get(kind, "a list")


def _spec_types(name: str) -> tuple[tuple, bool]:
    """(accepted TOML types, whether the field may be left out as None) of a TrialSpec field."""
    hint = typing.get_type_hints(TrialSpec)[name]
    is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    args = typing.get_args(hint) if is_union else (hint,)
    optional = type(None) in args
    base = [a for a in args if a is not type(None)]
    origin = typing.get_origin(base[0]) or base[0]
    kinds = {int: (int,), float: (int, float), str: (str,), bool: (bool,), tuple: (list,)}
    return kinds.get(origin, (dict,)), optional


class _Policies:
    """A file's ``[policies.NAME]`` tables, each checked, and the policy of trials that name none."""

    def __init__(self, where: _Where, tables: dict, default: str):
        self.where = where
        self.declared: dict[str, dict] = {}
        for name, table in tables.items():
            if not isinstance(table, dict):
                raise where.error(f"[policies.{name}]", "", f"must be a table, got {type(table).__name__} {table!r}")
            try:
                declare_policy(name, table)
            except PolicyError as error:
                raise where.error(f"[policies.{name}]", error.key, error.problem) from None
            self.declared[name] = table
        self.default = self.check(default, "the top level")

    def check(self, name: str, table: str) -> str:
        if name in self.declared or name in BUILT_IN or name == DATASET_DEFAULT:
            return name
        known = ", ".join([*self.declared, *BUILT_IN, DATASET_DEFAULT])
        raise self.where.error(table, "policy", f"no policy {name!r} (declared or built in: {known})")

    def fields(self, name: str | None, table: str) -> dict[str, Any]:
        """The TrialSpec fields of the policy a table names (the file's default where it names none)."""
        name = self.default if name is None else self.check(name, table)
        return {"policy": name, "policy_keys": self.declared.get(name, {})}


def _spec(
    where: _Where, table: str, values: dict, extra: dict | None = None, policies: _Policies | None = None
) -> TrialSpec:
    allowed = {name: field for name, field in SPEC_FIELDS.items() if name not in NOT_IN_FILES} | (extra or {})
    _check_keys(where, table, values, allowed, required=("name", "model"))
    fields: dict[str, Any] = {}
    for key, value in values.items():
        if extra and key in extra:
            continue
        kinds, _optional = _spec_types(key)
        bool_ok = bool in kinds or not isinstance(value, bool)  # TOML's true is no number here
        if not isinstance(value, kinds) or not bool_ok:
            raise where.error(table, key, f"must be {_type_name(kinds[-1])}, got {type(value).__name__} {value!r}")
        fields[key] = tuple(value) if kinds == (list,) else value
    if policies is not None:
        fields |= policies.fields(fields.get("policy"), table)
    try:
        return TrialSpec(**fields)
    except SpecError as error:
        problem = error.problems[0] if error.problems else None
        raise where.error(table, problem.field if problem else "", problem.text() if problem else str(error)) from None


def _goals(where: _Where, values: dict) -> dict[str, float]:
    _check_keys(where, "[goals]", values, BUDGETS)
    for key, value in values.items():
        try:
            check_value(BUDGETS[key], value)
        except GoalError as error:
            raise where.error("[goals]", key, str(error)) from None
    return {key: float(value) for key, value in values.items()}


def _search(where: _Where, values: dict, policies: _Policies) -> RandomSearch:
    table = "[search]"
    for key, kind in SEARCH_ONLY.items():
        if key in values:
            _check_type(where, table, key, values[key], kind)
    bounds = values.get("learning_rate")
    if bounds is None or len(bounds) != 2 or not all(_is_number(v) for v in bounds):
        raise where.error(table, "learning_rate", "must be [low, high]: the log-uniform bounds")
    latent = values.get("latent_size")
    if latent is not None and (len(latent) != 3 or not all(isinstance(v, int) for v in latent)):
        raise where.error(table, "latent_size", "must be [low, high, step], integers")
    values_of_spec = {k: v for k, v in values.items() if k not in SEARCH_ONLY}
    base = _spec(where, table, values_of_spec, extra=SEARCH_ONLY, policies=policies)
    try:
        return RandomSearch(
            base=base.replace(learning_rate=float(bounds[0])),
            samples=int(values.get("samples", 1)),
            learning_rate=(float(bounds[0]), float(bounds[1])),
            latent_size=tuple(latent) if latent else None,
            references=tuple(values.get("references", ())),
        )
    except SpecError as error:
        raise where.error(table, error.problems[0].field if error.problems else "", str(error)) from None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _smoke(where: _Where, values: dict) -> Preset | None:
    _check_keys(where, "[preset]", values, {"smoke": dict})
    if "smoke" not in values:
        return None
    table = "[preset.smoke]"
    smoke = values["smoke"]
    _check_keys(where, table, smoke, PRESET_FIELDS)
    for key, value in smoke.items():
        kind = bool if key in ("synthetic_ok", "pretrained", "eager", "smoke_measures") else int
        _check_type(where, table, key, value, kind)
        if kind is int and value < 1:
            raise where.error(table, key, f"must be >= 1, got {value}")
    defaults = {"epochs": None, "train_limit": None, "val_limit": None, "smoke_measures": True}
    said = ", ".join(
        f"{key} = {str(value).lower() if isinstance(value, bool) else value}" for key, value in smoke.items()
    )
    return Preset("smoke", said or "the trials as written", **{**defaults, **smoke})
