"""The progress lines a run prints: one per trial event, with an estimate of the time left.

No ray here: ``bench/runner.py`` forwards Ray Tune's trial events to ``Progress``. The
estimate is the wall time per epoch so far times the epochs still in the plan (every
planned trial's budget, less what ran and what early stopping cut).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bench.estimate import format_duration


class Progress:
    """Writes the progress lines of one run; ``budgets`` maps each trial template to its epochs."""

    def __init__(
        self, write: Callable[[str], None], budgets: dict[str, int], clock: Callable[[], float] = time.monotonic
    ):
        self.write = write
        self.budgets = dict(budgets)
        self.clock = clock
        self.done: dict[str, int] = {}
        self.ended: set[str] = set()
        self.first_start: float | None = None

    def time_left(self) -> str:
        epochs_done = sum(self.done.values())
        if not epochs_done or self.first_start is None:
            return ""
        remaining = sum(
            max(budget - self.done.get(name, 0), 0) for name, budget in self.budgets.items() if name not in self.ended
        )
        seconds = remaining * (self.clock() - self.first_start) / epochs_done
        return f"  (about {format_duration(seconds)} left)"

    def started(self, label: str) -> None:
        if self.first_start is None:
            self.first_start = self.clock()
        self.write(f"[{label}] started")

    def epoch(self, name: str, label: str, result: dict) -> None:
        self.done[name] = int(result["epoch"])
        self.write(
            f"[{label}] epoch {result['epoch']}/{self.budgets.get(name, '?')}  "
            f"val_acc {result['val_accuracy']:.4f}  train_acc {result['train_accuracy']:.4f}  "
            f"{result['train_images_per_sec']:.1f} img/s  {result['epoch_seconds']:.1f} s{self.time_left()}"
        )

    def retrying(self, label: str, error_file: str | None) -> None:
        self.write(f"[{label}] failed, retrying once: {last_line(error_file)}")

    def failed(self, name: str, label: str, error_file: str | None) -> None:
        self.ended.add(name)
        self.write(f"[{label}] failed: {last_line(error_file)}")

    def completed(self, name: str, label: str, epochs: int, best: float, stop_reason: str) -> None:
        """A trial ended without error: its whole budget run, or stopped early for ``stop_reason``."""
        self.ended.add(name)
        budget = self.budgets.get(name, epochs)
        if epochs and epochs < budget:
            self.write(f"[{label}] stopped early at epoch {epochs}/{budget}: {stop_reason}")
        else:
            self.write(f"[{label}] finished: best val_acc {best:.4f}")


def last_line(error_file: str | None) -> str:
    """The last line of a failed trial's error.txt: the error itself, without its traceback."""
    if not error_file or not Path(error_file).is_file():
        return "see the trial's error.txt"
    lines = [line for line in Path(error_file).read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "see the trial's error.txt"
