"""The early-stopping measure: ASHA on a random search against every trial run to its epoch
budget (share of epochs used, goal <= 0.35, best accuracy within 1 pt), and the replay of
ASHA's rule over other orders of the same measured curves.

    python -m benchmarks.harness early-stopping
"""

from __future__ import annotations

import math
import random
import statistics

import numpy as np

from bench.plan.planner import Scheduling
from bench.report.results import TrialRecord
from bench.specs import RandomSearch, TrialSpec
from benchmarks.ratio import HarnessRatio, run_trials
from data.cache import FaceCache

ASHA_GRACE_PERIOD = 1  # the runner's defaults (bench.plan.planner.Scheduling)
ASHA_REDUCTION_FACTOR = 3
REPLAYED_ORDERS = 200


def early_stopping_search(samples: int = 12, epochs: int = 12) -> RandomSearch:
    """tiny_cnn over a wide learning-rate range: a few samples learn, most do not."""
    base = TrialSpec(
        name="asha",
        model="tiny_cnn",
        optimizer="adam",
        momentum=0.0,
        batch_size=16,
        epochs=epochs,
        patience=None,  # every trial runs its budget unless ASHA stops it
        # Epochs of 60 steps: with 20 (320 faces) every rate sat at chance after epoch 1,
        # ASHA's first rung ranked noise and cut the best rates (25 pt lost). With 12
        # epochs, ASHA's rungs fall at 1, 3 and 9 epochs.
        train_limit=960,
        val_limit=320,  # the built-in data's fold 0 holds 191 faces: all of them
    )
    return RandomSearch(base, samples=samples, learning_rate=(1e-6, 3e-2))


def replay_asha(
    curves: dict[str, list[float]], order: list[str], grace_period: int, reduction_factor: int, max_t: int
) -> dict[str, int]:
    """Epochs each trial would run under ASHA, trials run one at a time in ``order``.

    Replays the rule of Ray Tune's ``AsyncHyperBandScheduler`` (one bracket): rungs at
    ``grace_period * reduction_factor**k`` epochs below ``max_t``; a trial reaching a rung
    stops if its value there is below the ``1 - 1/reduction_factor`` quantile of the values
    the rung recorded before it. Run one at a time, a trial's results depend only on its
    own curve, so the measured curves of the full search replay any order of the samples.
    """
    rung_count = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    rungs = {grace_period * reduction_factor**k: [] for k in range(rung_count)}
    epochs: dict[str, int] = {}
    for name in order:
        curve = curves[name][:max_t]
        epochs[name] = len(curve)
        for epoch, value in enumerate(curve, start=1):
            if epoch in rungs:
                recorded = rungs[epoch]
                stop = bool(recorded) and value < np.percentile(recorded, 100 * (1 - 1 / reduction_factor))
                recorded.append(value)
                if stop:
                    epochs[name] = epoch
                    break
    return epochs


def replay_orders(
    curves: dict[str, list[float]], max_t: int, orders: int = REPLAYED_ORDERS, seed: int = 0
) -> dict[str, float]:
    """ASHA's share of epochs and best-accuracy gap over ``orders`` random orders of the same samples."""
    rng = random.Random(seed)
    full_best = max(max(curve[:max_t]) for curve in curves.values())
    shares, gaps = [], []
    for _ in range(orders):
        order = rng.sample(sorted(curves), len(curves))
        epochs = replay_asha(curves, order, ASHA_GRACE_PERIOD, ASHA_REDUCTION_FACTOR, max_t)
        shares.append(sum(epochs.values()) / (len(curves) * max_t))
        gaps.append(full_best - max(max(curves[name][: epochs[name]]) for name in curves))
    return {
        "replayed_orders": orders,
        "replayed_share_median": statistics.median(shares),
        "replayed_share_max": max(shares),
        "replayed_orders_within_1pt": sum(gap <= 0.01 for gap in gaps) / orders,
        "replayed_orders_meeting_both_goals": sum(
            share <= 0.35 and gap <= 0.01 for share, gap in zip(shares, gaps, strict=True)
        )
        / orders,
    }


def measure_early_stopping(cache: FaceCache, search: RandomSearch | None = None) -> HarnessRatio:
    """Share of the full search's epochs that ASHA ran (same seed: the same sampled learning rates).

    Beside the measured figures, the full search's curves replay ASHA over other orders of
    the same samples (``replay_orders``): one run's order decides which trials come early,
    and the first trials pass every rung unopposed.
    """
    search = search or early_stopping_search()
    asha, asha_wall = run_trials(
        [],
        cache,
        search=search,
        scheduling=Scheduling(
            asha=True, asha_grace_period=ASHA_GRACE_PERIOD, asha_reduction_factor=ASHA_REDUCTION_FACTOR
        ),
    )
    full, full_wall = run_trials([], cache, search=search, scheduling=Scheduling(asha=False))

    def summary(records: list[TrialRecord]) -> tuple[int, float, dict]:
        errors = [record.error for record in records if record.error]
        if errors:
            raise RuntimeError(f"{len(errors)} early-stopping trial(s) failed: {errors[0]}")
        epochs = sum(len(record.epochs) for record in records)
        best = {record.spec.name: max(epoch["val_accuracy"] for epoch in record.epochs) for record in records}
        return epochs, max(best.values()), best

    asha_epochs, asha_best, asha_trials = summary(asha)
    full_epochs, full_best, full_trials = summary(full)
    if set(asha_trials) != set(full_trials):
        raise RuntimeError("the two searches drew different learning rates: the comparison would mean nothing")
    asha_epochs_by_trial = {record.spec.name: len(record.epochs) for record in asha}
    curves = {record.spec.name: [epoch["val_accuracy"] for epoch in record.epochs] for record in full}
    sample_order = [record.spec.name for record in sorted(full, key=lambda record: record.spec.search_sample)]
    max_t = search.base.epochs
    replayed = replay_asha(curves, sample_order, ASHA_GRACE_PERIOD, ASHA_REDUCTION_FACTOR, max_t)
    accuracy_gap = full_best - asha_best
    return HarnessRatio(
        f"early stopping (ASHA epochs / full epochs, {search.samples} samples)",
        asha_epochs / full_epochs,
        0.35,
        False,
        "share",
        {
            "asha_epochs": asha_epochs,
            "full_epochs": full_epochs,
            "asha_best_val_accuracy": asha_best,
            "full_best_val_accuracy": full_best,
            "accuracy_gap_pt": 100 * accuracy_gap,
            "accuracy_within_1pt": accuracy_gap <= 0.01,
            "asha_wall_seconds": asha_wall,
            "full_wall_seconds": full_wall,
            # the replay of this run's own order must give what Ray's scheduler did
            "replay_matches_ray": replayed == asha_epochs_by_trial,
            **replay_orders(curves, max_t),
            # per sample: (epochs under ASHA, best val acc under ASHA, best val acc run to its budget)
            "per_trial": {
                name: [asha_epochs_by_trial[name], asha_trials[name], full_trials[name]] for name in sorted(full_trials)
            },
        },
    )
