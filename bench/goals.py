"""A suite's budgets: what a leaderboard row must reach (accuracy) and may not exceed (size,
epochs to the target). Imports neither keras nor ray, so the boards read it cheaply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Goals:
    """A suite's budgets, checked per leaderboard row. ``accuracy`` None: each row's report figure."""

    target_accuracy: float  # epochs-to-target and time-to-target count to this
    accuracy: float | None = None
    params: int | None = None  # params <= this; None: no size goal
    epochs_to_target: int | None = None  # None: within the trial's own epoch budget

    def accuracy_goal(self, reference: float | None) -> float | None:
        if self.accuracy is not None:
            return self.accuracy
        return None if reference is None or math.isnan(reference) else float(reference)
