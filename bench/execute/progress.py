"""The progress lines a run prints: one per trial event, with an estimate of the time left.

No ray here: ``bench/execute/runner.py`` forwards Ray Tune's trial events to ``Progress``. The time
left weighs each trial's remaining epochs (its budget, or under ASHA its first rung, or what
the trials ASHA stopped ran, less what ran; nothing for a trial that ended) by what one of its epochs costs:
measured once it has run one, else its up-front estimate (bench/plan/estimate.py) scaled by
how the measured trials compared with theirs, else the mean measured epoch. It adds each
trial's seconds outside its epochs: the estimate's start (for a trial not yet started) and
end (its over-sampled evaluation), scaled by how the finished trials' own seconds outside
their epochs compared with their estimates; without an estimate, what finished trials spent
outside their epochs in proportion to the epoch cost. All of it is divided among the trials
that run at once, and the report's seconds are added.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from bench.errors import error_line
from bench.plan.estimate import TrialEstimate, format_duration, report_seconds


class Progress:
    """Writes the progress lines of one run; ``budgets`` maps each trial template to its epochs,
    ``estimates`` to its up-front estimate (where there is one); ``score_key`` is the run's
    ranking metric's column (its best is what a finished trial says)."""

    def __init__(
        self,
        write: Callable[[str], None],
        budgets: dict[str, int],
        estimates: Mapping[str, TrialEstimate] | None = None,
        concurrency: int = 1,
        clock: Callable[[], float] = time.monotonic,
        score_key: str = "val_accuracy",
    ):
        self.write = write
        self.score_key = score_key
        self.budgets = dict(budgets)
        self.estimates = dict(estimates or {})
        self.concurrency = max(concurrency, 1)
        self.clock = clock
        self.started_at: dict[str, float] = {}
        self.outside: dict[str, float] = {}  # finished trials: seconds outside their epochs
        self.done: dict[str, int] = {}
        self.measured: dict[str, list[float]] = {}  # seconds of each epoch reported
        self.ended: set[str] = set()

    def epoch_cost(self, name: str) -> float | None:
        """Seconds one epoch of ``name`` takes: measured (steady epochs where there are), else estimated."""
        seconds = self.measured.get(name)
        if seconds:
            if len(seconds) > 1:
                return statistics.fmean(seconds[1:])  # epoch 1 holds graph building
            traced = self.estimates[name].trace_seconds if name in self.estimates else 0.0
            return seconds[0] - traced if seconds[0] > 2 * traced else seconds[0]
        ratios = [
            self.epoch_cost(other) / self.estimates[other].epoch_seconds
            for other in self.measured
            if self.measured[other] and other in self.estimates and self.estimates[other].epoch_seconds > 0
        ]
        if name in self.estimates and ratios:
            return self.estimates[name].epoch_seconds * statistics.median(ratios)
        if self.measured:
            return statistics.fmean(self.epoch_cost(other) for other in self.measured if self.measured[other])
        return None

    def outside_ratio(self) -> float:
        """How the finished trials' seconds outside their epochs compare with their estimates (1: none yet)."""
        ratios = [
            seconds / (self.estimates[name].start_seconds + self.estimates[name].end_seconds)
            for name, seconds in self.outside.items()
            if name in self.estimates and self.estimates[name].start_seconds + self.estimates[name].end_seconds > 0
        ]
        return statistics.median(ratios) if ratios else 1.0

    def _outside_left(self, name: str, cost: float) -> float:
        estimate = self.estimates.get(name)
        started = name in self.started_at
        if estimate is not None:
            if self.done.get(name, 0) >= self.budgets.get(name, 0):
                return 0.0  # its end ran before its last epoch's report
            before = 0.0 if started else estimate.start_seconds * self.outside_ratio() + estimate.trace_seconds
            return before + estimate.end_seconds * self.outside_ratio()
        if started or not self.outside:
            return 0.0
        finished = [self.outside[other] / c for other in self.outside if (c := self.epoch_cost(other))]
        return statistics.median(finished) * cost if finished else 0.0

    def _epochs_expected(self, name: str, budget: int) -> float:
        """Its budget; under ASHA (an estimate with rungs) the mean of the epochs the trials so
        estimated ran once some have ended, else its first rung; for a trial that has run past
        that, its next rung (ASHA let it on), else its budget."""
        estimate = self.estimates.get(name)
        if estimate is None or not estimate.rungs:
            return float(budget)
        stopped = [self.done.get(other, 0) for other in self.ended if self._asha_counted(other)]
        expected = statistics.fmean(stopped) if stopped else estimate.epochs
        done = self.done.get(name, 0)
        if done > expected:  # at its rung ASHA has yet to decide (the line comes first): most stop
            expected = next((rung for rung in estimate.rungs if rung >= done), budget)
        return min(float(budget), expected)

    def _asha_counted(self, name: str) -> bool:
        estimate = self.estimates.get(name)
        return estimate is not None and bool(estimate.rungs)

    def seconds_left(self) -> float | None:
        if not self.measured:
            return None
        total = 0.0
        for name, budget in self.budgets.items():
            if name in self.ended:
                continue
            cost = self.epoch_cost(name) or 0.0
            epochs = self._epochs_expected(name, budget)
            total += max(epochs - self.done.get(name, 0), 0.0) * cost + self._outside_left(name, cost)
        return total / self.concurrency + (report_seconds(len(self.budgets)) if self.estimates else 0.0)

    def time_left(self) -> str:
        seconds = self.seconds_left()
        return "" if seconds is None else f"  (about {format_duration(seconds)} left)"

    def started(self, label: str, name: str | None = None) -> None:
        self.started_at.setdefault(name or label, self.clock())
        self.write(f"[{label}] started")

    def epoch(self, name: str, label: str, result: dict) -> None:
        epoch = int(result["epoch"])
        if epoch <= self.done.get(name, 0):  # a retried trial starts over
            self.measured[name] = []
        self.done[name] = epoch
        self.measured.setdefault(name, []).append(float(result["epoch_seconds"]))
        self.write(
            f"[{label}] epoch {result['epoch']}/{self.budgets.get(name, '?')}  "
            f"val_acc {result['val_accuracy']:.4f}{self._score(result)}  train_acc {result['train_accuracy']:.4f}  "
            f"{result['train_images_per_sec']:.1f} img/s  {result['epoch_seconds']:.1f} s{self.time_left()}"
        )

    def retrying(self, label: str, error_file: str | None) -> None:
        self.write(f"[{label}] failed, retrying once: {last_line(error_file)}")

    def failed(self, name: str, label: str, error_file: str | None, message: str | None = None) -> None:
        """A trial ended in an error: the message, or its error.txt's line that says what went wrong."""
        self.ended.add(name)
        self.write(f"[{label}] failed: {message or last_line(error_file)}")

    def completed(self, name: str, label: str, epochs: int, best: float, stop_reason: str) -> None:
        """A trial ended without error: its whole budget run, or stopped early for ``stop_reason``."""
        self.ended.add(name)
        if name in self.started_at:
            epochs_seconds = sum(self.measured.get(name, []))
            self.outside[name] = max(self.clock() - self.started_at[name] - epochs_seconds, 0.0)
        budget = self.budgets.get(name, epochs)
        if epochs and epochs < budget:
            self.write(f"[{label}] stopped early at epoch {epochs}/{budget}: {stop_reason}")
        else:
            self.write(f"[{label}] finished: best {self._score_name} {best:.4f}")

    @property
    def _score_name(self) -> str:
        return "val_acc" if self.score_key == "val_accuracy" else self.score_key

    def _score(self, result: dict) -> str:
        """The ranking metric's value, where it is not the accuracy the line shows anyway."""
        if self.score_key == "val_accuracy" or self.score_key not in result:
            return ""
        return f"  {self.score_key} {result[self.score_key]:.4f}"

    def diverged(self, name: str, label: str, epoch: int, train_loss: float) -> None:
        """A trial whose training loss stopped being finite: it ends there, and is not retried."""
        self.ended.add(name)
        self.write(f"[{label}] diverged at epoch {epoch}: train loss {train_loss}; stopped, not retried")


def last_line(error_file: str | None) -> str:
    """What a failed trial's error.txt says went wrong, in one line, without its traceback."""
    if not error_file or not Path(error_file).is_file():
        return "see the trial's error.txt"
    return error_line(Path(error_file).read_text(errors="replace")) or "see the trial's error.txt"
