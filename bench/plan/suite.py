"""A suite: a named experiment of TrialSpecs (and a random search), its scheduling and goals.

The report's suites (bench/plan/suites.py) and a user's TOML suite files (bench/plan/suite_files.py)
are both made of this.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bench.plan.goals import Goals
from bench.specs import Preset, RandomSearch, TrialSpec, planned_specs


class UnknownSuiteError(ValueError):
    """A suite name that is not registered; the message names the valid suites."""


@dataclass(frozen=True)
class Suite:
    """A named experiment: its trials, an optional random search, scheduling and goals."""

    name: str
    description: str
    specs: tuple[TrialSpec, ...]
    search: RandomSearch | None = None
    target_accuracy: float = 0.80  # epochs-to-target and the accuracy goal use this
    asha: bool = False  # ASHA early stopping across the suite's trials (patience applies always)
    asha_grace_period: int = 1
    asha_reduction_factor: int = 3
    smoke: Preset | None = None  # the suite's own smoke budget, where the general one is too slow
    parts: tuple[Suite, ...] = ()  # a suite made of others ("all"): each keeps its own presets
    budgets: Mapping[str, float] = field(default_factory=dict)  # bench/plan/goals.py's budget name -> value
    metric: str = "accuracy"  # ranks rows; the accuracy budget and time-to-target read it (bench.choices.METRICS)
    image_size: int | None = None  # the cache's side; None: the dataset's (data/datasets.py)
    as_written: bool = False  # a suite file: its epochs and limits run unless --preset says otherwise

    def __post_init__(self):
        if self.parts:
            searches = [part.search for part in self.parts if part.search is not None]
            if len(searches) > 1:
                raise ValueError(f"suite {self.name}: at most one part may hold a random search")
            object.__setattr__(self, "specs", tuple(spec for part in self.parts for spec in part.specs))
            object.__setattr__(self, "search", searches[0] if searches else None)
        if not self.specs and self.search is None:
            raise ValueError(f"suite {self.name} has no trials")
        names = [spec.name for spec in self.all_templates()]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"suite {self.name} repeats trial names: {', '.join(duplicates)}")

    def sections(self) -> tuple[Suite, ...]:
        """The suites whose presets apply to this one's trials: its parts, or itself."""
        return self.parts or (self,)

    def all_templates(self) -> list[TrialSpec]:
        """Grid specs and one template per random-search sample."""
        return planned_specs(self.specs, self.search)

    def goals(self, synthetic: bool) -> Goals:
        """The suite's budgets; the accuracy budget is the target on synthetic data, and on real
        data each row's published figure, unless the suite sets one of its own."""
        accuracy = self.target_accuracy if synthetic else None
        goals = Goals(target_accuracy=self.target_accuracy, accuracy=accuracy, metric=self.metric)
        return goals.with_budgets(self.budgets)
