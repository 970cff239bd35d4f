"""A suite's budgets and each leaderboard row checked against them: the answer to "which
architecture meets my accuracy, training-time and size budget".

A budget is a floor (accuracy, or the run's ranking metric; inference img/s) or a ceiling
(seconds to the target, total training seconds, parameters, weights bytes, energy per image,
epochs to the target, one image's p99 latency) on one column of the per-row table. A row
meets a budget, misses it, or cannot be checked (the figure was not measured: energy without
NVML; n/a in a smoke run for the accuracy budgets, whose accuracies check the path and not
the models). Imports neither keras nor ray.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass

from bench.choices import METRICS
from bench.errors import did_you_mean

MET, MISSED, UNMEASURED, SMOKE = "met", "missed", "not measured", "n/a (smoke)"


@dataclass(frozen=True)
class Budget:
    """One kind of budget: its name (``--goal NAME=VALUE``, a suite file's ``[goals]``), the
    Goals field that holds it, the per-row column it checks, and which way it points."""

    name: str
    field: str
    column: str
    at_most: bool
    label: str  # says the column in a sentence
    unit: str = ""
    accuracy_based: bool = False  # meaningless in a smoke run, like the accuracy itself
    scale: float = 1.0  # shown as value / scale (bytes as MB)


BUDGETS = {
    budget.name: budget
    for budget in (
        # the run's ranking metric at its best epoch (accuracy unless a suite or --metric says otherwise)
        Budget("accuracy", "accuracy", "best_score", False, "best val accuracy", accuracy_based=True),
        Budget("time", "time", "time_to_target_seconds", True, "seconds to the target", "s", accuracy_based=True),
        Budget("train_time", "train_time", "wall_seconds", True, "training seconds", "s"),
        Budget("params", "params", "params", True, "parameters"),
        Budget("size", "size", "model_bytes", True, "weights size", "MB", scale=1e6),
        Budget("inference", "inference", "infer_images_per_sec", False, "inference img/s"),
        Budget("latency", "latency", "latency_ms_p99", True, "latency p99 at batch 1", "ms"),
        Budget("energy", "energy", "energy_mj_per_image", True, "GPU energy per training image", "mJ"),
        Budget("epochs", "epochs_to_target", "epochs_to_target", True, "epochs to the target", accuracy_based=True),
    )
}


class GoalError(ValueError):
    """A budget that cannot be checked: an unknown name or a value out of range; one line."""


@dataclass(frozen=True)
class Goals:
    """A suite's budgets, checked per leaderboard row; None: no budget of that kind.

    ``accuracy`` None on real data means each row's published figure (the report's), and the
    target accuracy for a row that has none. ``metric`` is what the accuracy budget and the
    target read (bench.choices.METRICS); a published figure is an accuracy, so with another
    metric the target stands in for it.
    ``size`` is in bytes, ``energy`` in mJ per training image, times in seconds, latency in ms.
    """

    target_accuracy: float  # epochs-to-target and time-to-target count to this
    accuracy: float | None = None
    time: float | None = None
    train_time: float | None = None
    params: float | None = None
    size: float | None = None
    inference: float | None = None
    energy: float | None = None
    epochs_to_target: float | None = None
    latency: float | None = None
    metric: str = "accuracy"

    def __post_init__(self):
        if self.metric not in METRICS:
            raise GoalError(f"unknown metric {self.metric!r}; known: {', '.join(METRICS)}")
        for budget in BUDGETS.values():
            value = getattr(self, budget.field)
            if value is not None:
                check_value(budget, value)

    def with_budgets(self, budgets: Mapping[str, float]) -> Goals:
        """These goals with ``budgets`` (budget name -> value) set over them."""
        return dataclasses.replace(self, **{budget(name).field: value for name, value in budgets.items()})

    def accuracy_goal(self, reference: float | None) -> float:
        if self.accuracy is not None:
            return self.accuracy
        if reference is None or math.isnan(reference) or self.metric != "accuracy":
            return self.target_accuracy
        return float(reference)

    @property
    def metric_words(self) -> str:
        """The ranking metric as a leaderboard says it: ``balanced accuracy``."""
        return METRICS[self.metric]

    def active(self) -> list[Budget]:
        """The budgets set, in BUDGETS' order (accuracy always: a floor of its own or each row's
        figure), the accuracy budget labelled with the ranking metric."""
        kinds = [b for b in BUDGETS.values() if b.name == "accuracy" or getattr(self, b.field) is not None]
        label = f"best val {self.metric_words}"
        return [dataclasses.replace(b, label=label) if b.name == "accuracy" else b for b in kinds]


def budget(name: str) -> Budget:
    if name not in BUDGETS:
        raise GoalError(f"unknown budget {name!r}{did_you_mean(name, BUDGETS)}; known: {', '.join(BUDGETS)}")
    return BUDGETS[name]


def check_value(kind: Budget, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GoalError(f"budget {kind.name} must be a number, got {value!r}")
    if kind.name == "accuracy" and not 0 <= value <= 1:
        raise GoalError(f"budget accuracy must be in [0, 1], got {value!r}")
    if kind.name != "accuracy" and value <= 0:
        raise GoalError(f"budget {kind.name} must be > 0, got {value!r}")


def parse_goal(text: str) -> tuple[str, float]:
    """``"time=1800"`` -> ("time", 1800.0); ``params=10e6`` takes any float notation."""
    name, separator, value = text.partition("=")
    if not separator:
        raise GoalError(f"--goal takes NAME=VALUE (names: {', '.join(BUDGETS)}), got {text!r}")
    kind = budget(name.strip())
    try:
        number = float(value)
    except ValueError:
        raise GoalError(f"--goal {kind.name}: {value.strip()!r} is not a number") from None
    check_value(kind, number)
    return kind.name, number


@dataclass(frozen=True)
class Verdict:
    """One row against one budget: met, missed, not measured or n/a (smoke), and what it shows."""

    budget: Budget
    status: str
    value: float | None
    goal: float | None

    def missed_text(self) -> str:
        """The miss, said in words: ``params 23.6M > 10M``."""
        kind = self.budget
        if self.status == UNMEASURED:
            return f"{kind.label} not measured"
        if self.value is None:  # never reached the target accuracy
            return f"{kind.label}: the target accuracy never reached"
        sign = ">" if kind.at_most else "<"
        return f"{kind.label} {format_budget_value(kind, self.value)} {sign} {format_budget_value(kind, self.goal)}"


def format_budget_value(kind: Budget, value: float) -> str:
    shown = value / kind.scale
    if kind.name == "accuracy":
        return f"{shown:.4f}"
    text = f"{shown:,.0f}" if abs(shown) >= 100 else f"{shown:,.3g}"
    return f"{text} {kind.unit}".strip()


def check_row(row, goals: Goals, smoke: bool) -> list[Verdict]:
    """``row`` (a per-row table row, attributes by column) against every active budget."""
    verdicts = []
    for kind in goals.active():
        goal = goals.accuracy_goal(row.reference) if kind.name == "accuracy" else getattr(goals, kind.field)
        value = getattr(row, kind.column, None)
        value = None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
        if goal is None:
            continue
        if smoke and kind.accuracy_based:
            status = SMOKE
        elif kind.name in ("time", "epochs") and getattr(row, "n_reached_target", 1) < getattr(row, "n_finished", 1):
            status = MISSED  # a repeated row meets it only if every finished trial reached the target
        elif value is None:
            # a target never reached misses a time or epochs budget; a figure nobody measured cannot be judged
            status = MISSED if kind.accuracy_based and _finished(row) else UNMEASURED
        else:
            status = MET if (value <= goal if kind.at_most else value >= goal) else MISSED
        verdicts.append(Verdict(kind, status, value, goal))
    return verdicts


def _finished(row) -> bool:
    return getattr(row, "n_finished", 1) > 0


def meets_every_budget(verdicts: list[Verdict]) -> bool:
    return all(verdict.status in (MET, SMOKE) for verdict in verdicts)
