"""What every harness measure returns (``HarnessRatio``: a figure beside its goal) and the
helpers the measures share: trials through the runner in a scratch run folder, steady img/s."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.report.results import TrialRecord, train_throughput
from data.cache import FaceCache


@dataclass(frozen=True)
class HarnessRatio:
    """One harness figure against its goal; ``detail`` holds the figures it came from."""

    name: str
    value: float
    goal: float
    higher_is_better: bool
    unit: str
    detail: dict = field(default_factory=dict)
    spread: float | None = None  # of the runs the value is the median of: largest - smallest

    @property
    def met(self) -> bool:
        return self.value >= self.goal if self.higher_is_better else self.value <= self.goal

    def line(self) -> str:
        sign = ">=" if self.higher_is_better else "<="
        verdict = "meets" if self.met else "MISSES"
        spread = "" if self.spread is None else f", spread {self.spread:.2g}"
        return (
            f"{self.name}: {self.value:.3g} {self.unit}{spread} ({verdict} the goal {sign} {self.goal:g} {self.unit})"
        )

    def extra_info(self) -> dict:
        return {
            "ratio": self.value,
            "goal": self.goal,
            "goal_met": self.met,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            **({} if self.spread is None else {"spread": self.spread}),
            **self.detail,
        }

    def report_lines(self) -> list[str]:
        return [self.line(), *detail_lines(self.detail)]


def detail_lines(detail: dict) -> list[str]:
    return [
        f"    {key}: {value:.4g}" if isinstance(value, float) else f"    {key}: {value}"
        for key, value in detail.items()
    ]


def quiet(_line: str) -> None:
    return None


def run_trials(specs, cache: FaceCache, **kwargs) -> tuple[list[TrialRecord], float]:
    from bench.execute import runner  # imports ray

    run_dir = Path(tempfile.mkdtemp(prefix="bench-harness-"))
    try:
        started = time.perf_counter()
        records = runner.run_trials(specs, cache=cache, run_dir=run_dir, write=quiet, **kwargs)
        return records, time.perf_counter() - started
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def steady_images_per_sec(images: int, seconds: list[float]) -> float:
    return train_throughput([images] * len(seconds), seconds)[1]
