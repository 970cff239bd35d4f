"""What the harness adds to every epoch: seconds (fixed) and a share of the step time (proportional).

The same tiny model on the same faces, trained two ways with epochs of 1, 10 and 100 steps,
the two interleaved round after round (median of 5 rounds):

- ``bare``: ``model.fit`` of the trial's model on the trial's batches, trained as the trial
  trains (benchmarks/bare.py), no validation, in this process;
- ``harness``: the trial through the runner, as ``bench.run`` runs it: the validation pass,
  the reporter (scores, NVML lap, resident memory, checkpoint decision) and each report's
  round trip to the Ray Tune driver (its loggers, progress line, stopper, experiment state),
  the trial waiting for it before its next epoch.

An epoch's period runs from one epoch's end to the next, so it holds everything done between
epochs; a run's figure is the median of its steady periods (the first ``SKIPPED_PERIODS``,
graph building among them, left out). Over the three epoch lengths, harness period - its
validation = fixed + (1 + proportional) x bare period, by least squares: the fixed part is paid
once per epoch whatever its length, and is what a GPU epoch of a second feels. One fixed
figure per round; the result is their median, with their spread.

Where the harness's period goes: validation (the reporter's own timing: its epoch less its
training part), the report (each call timed inside the trial), the reporter's pieces and the
driver's progress line (each timed on its own, median of ``PIECE_CALLS`` calls), and the rest
(Keras's own work between epochs, and noise).

    python -m benchmarks.harness epoch-cost
"""

from __future__ import annotations

import functools
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.execute.progress import Progress
from bench.specs import TrialSpec
from bench.trial.checkpoints import CheckpointRule
from bench.trial.fit import run_trial
from bench.trial.gpu_sampler import NvmlSampler
from bench.trial.measure import gpu_report, resident_memory_bytes, validation_scores
from benchmarks.bare import bare_fit
from benchmarks.ratio import HarnessRatio, run_trials
from data.cache import FaceCache

STEPS = (1, 10, 100)
BATCH_SIZE = 4  # 100 steps fit in the built-in data's ~780 training faces
VAL_IMAGES = 32
EPOCHS = 10
SKIPPED_PERIODS = 2
ROUNDS = 5
PIECE_CALLS = 200
GOAL_FIXED_SECONDS = 0.020  # 2% of a GPU epoch of one second, validation aside


def epoch_cost_spec(steps: int, epochs: int = EPOCHS) -> TrialSpec:
    return TrialSpec(
        name=f"epoch{steps:03d}",
        model="tiny_cnn",
        batch_size=BATCH_SIZE,
        epochs=epochs,
        patience=None,
        train_limit=steps * BATCH_SIZE,
        val_limit=VAL_IMAGES,
        smoke_measures=True,  # the inference timing after epoch 1 is outside every period anyway
    )


def steady(values: list[float]) -> list[float]:
    return values[SKIPPED_PERIODS:]


def steady_period(times: list[float]) -> float:
    """Median time between successive epoch ends, the first ``SKIPPED_PERIODS`` epochs left out."""
    periods = np.diff(times)[SKIPPED_PERIODS - 1 :]
    if len(periods) == 0:
        raise ValueError(f"{len(times)} epochs give no steady period (need > {SKIPPED_PERIODS})")
    return float(np.median(periods))


def bare_period(spec: TrialSpec, cache: FaceCache) -> float:
    """Steady epoch period of a plain ``fit`` of the trial's model on its batches."""
    windows, _images = bare_fit(spec, cache)
    return steady_period([start for start, _end in windows])


def timed_report_trial(spec: TrialSpec, cache: FaceCache, report: Callable, *, log: str, **options) -> None:
    """``run_trial``, each ``report`` call's seconds appended to ``log`` (this machine's disk)."""

    def timed(metrics: dict, checkpoint: Path | None = None) -> None:
        started = time.perf_counter()
        if checkpoint is None:
            report(metrics)
        else:
            report(metrics, checkpoint=checkpoint)
        with open(log, "a") as lines:
            lines.write(f"{spec.name} {time.perf_counter() - started}\n")

    run_trial(spec, cache, timed, **options)


@dataclass(frozen=True)
class TrialPeriods:
    """Steady figures of one harness trial: its period, validation and report seconds."""

    period: float
    validation: float
    report: float


def harness_periods(specs: list[TrialSpec], cache: FaceCache) -> dict[int, TrialPeriods]:
    """The trials through the runner (one Ray start for all): steady figures by steps per epoch."""
    with tempfile.TemporaryDirectory(prefix="epoch-cost-") as folder:
        log = Path(folder) / "reports.txt"
        records, _wall = run_trials(specs, cache, trial_function=functools.partial(timed_report_trial, log=str(log)))
        reports: dict[str, list[float]] = {}
        for line in log.read_text().splitlines():
            name, seconds = line.split()
            reports.setdefault(name, []).append(float(seconds))
    figures = {}
    for record in records:
        if record.error:
            raise RuntimeError(f"the epoch-cost trial {record.spec.name} failed: {record.error}")
        rows = record.epochs
        figures[record.spec.train_limit // BATCH_SIZE] = TrialPeriods(
            steady_period([row["elapsed_seconds"] for row in rows]),
            float(np.median(steady([row["epoch_seconds"] - row["train_seconds"] for row in rows]))),
            float(np.median(steady(reports[record.spec.name]))),
        )
    return figures


def median_call_seconds(call: Callable[[], object], calls: int = PIECE_CALLS) -> float:
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def reporter_pieces() -> dict[str, float]:
    """Seconds of each thing done once per epoch besides Keras's and the report, timed on its own."""
    row = {"val_accuracy": 0.5, "train_accuracy": 0.5, "train_images_per_sec": 100.0, "epoch_seconds": 1.0}
    progress = Progress(lambda _line: None, {"epoch": 10**9})
    epochs = iter(range(1, 10**9))
    rule = CheckpointRule()
    confusion = np.array([[10.0, 6.0], [5.0, 11.0]])
    with NvmlSampler() as sampler:
        return {
            "nvml_lap_s": median_call_seconds(lambda: gpu_report(sampler.lap())),
            "scores_s": median_call_seconds(lambda: validation_scores(confusion, 0.66)),
            "resident_memory_s": median_call_seconds(resident_memory_bytes),
            "checkpoint_decision_s": median_call_seconds(lambda: rule.due(1, 1.0, 0.0)),
            "progress_line_s": median_call_seconds(
                lambda: progress.epoch("epoch", "epoch", {**row, "epoch": next(epochs)})
            ),
        }


@dataclass
class EpochCost:
    """Per steps-per-epoch, each round's bare period and harness figures; the lines through them."""

    bare: dict[int, list[float]] = field(default_factory=dict)
    harness: dict[int, list[TrialPeriods]] = field(default_factory=dict)
    pieces: dict[str, float] = field(default_factory=dict)

    @property
    def rounds(self) -> int:
        return min(len(runs) for runs in self.bare.values())

    def medians(self, steps: int) -> dict[str, float]:
        bare = statistics.median(self.bare[steps])
        harness = statistics.median(figures.period for figures in self.harness[steps])
        validation = statistics.median(figures.validation for figures in self.harness[steps])
        report = statistics.median(figures.report for figures in self.harness[steps])
        added = harness - bare
        return {
            "bare_s": bare,
            "harness_s": harness,
            "added_s": added,
            "validation_s": validation,
            "report_s": report,
            "rest_s": added - validation - report - sum(self.pieces.values()),
        }

    def fit(self, round_: int | None = None, validation: bool = False) -> tuple[float, float]:
        """(fixed seconds per epoch, proportional share of the bare period) of one round, or of
        the medians: least squares, each point weighted by 1 / its bare period (a period's
        noise grows with its length)."""
        bare, harness = [], []
        for steps in sorted(self.bare):
            if round_ is None:
                figures = self.medians(steps)
                period, aside = figures["harness_s"], figures["validation_s"]
                bare.append(figures["bare_s"])
            else:
                trial = self.harness[steps][round_]
                period, aside = trial.period, trial.validation
                bare.append(self.bare[steps][round_])
            harness.append(period - (0.0 if validation else aside))
        slope, intercept = np.polyfit(bare, harness, 1, w=1 / np.array(bare))
        return float(intercept), float(slope - 1)

    def ratio(self) -> HarnessRatio:
        per_round = [self.fit(index)[0] for index in range(self.rounds)]
        from_medians, proportional = self.fit()
        detail: dict = {
            "fixed_per_round_s": [round(value, 4) for value in per_round],
            "fixed_from_medians_s": from_medians,
            "fixed_with_validation_s": self.fit(validation=True)[0],
            "proportional_share": proportional,
            "batch_size": BATCH_SIZE,
            "val_images": VAL_IMAGES,
        }
        for steps in sorted(self.bare):
            detail |= {f"{steps}_steps_{key}": value for key, value in self.medians(steps).items()}
        detail |= self.pieces
        return HarnessRatio(
            f"epoch cost (seconds the harness adds per epoch, validation aside, median of {self.rounds})",
            statistics.median(per_round),
            GOAL_FIXED_SECONDS,
            False,
            "s",
            detail,
            spread=spread(per_round),
        )


def spread(values: list[float]) -> float:
    return max(values) - min(values) if values else math.nan


def measure_epoch_cost(cache: FaceCache, rounds: int = ROUNDS, steps: tuple[int, ...] = STEPS) -> HarnessRatio:
    """``rounds`` rounds of bare and harness epochs at each of ``steps``, interleaved."""
    if len(steps) < 2:
        raise ValueError(f"a fixed and a proportional part need at least two epoch lengths, got {steps}")
    specs = [epoch_cost_spec(count) for count in steps]
    cost = EpochCost(pieces=reporter_pieces())
    for round_ in range(rounds):
        print(f"epoch cost: round {round_ + 1} of {rounds}", flush=True)
        for spec, count in zip(specs, steps, strict=True):
            cost.bare.setdefault(count, []).append(bare_period(spec, cache))
        for count, figures in harness_periods(specs, cache).items():
            cost.harness.setdefault(count, []).append(figures)
    return cost.ratio()
