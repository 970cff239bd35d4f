"""Tidy result tables: per trial epoch and per trial (bench/report/groups.py: per report row); the convergence and
throughput measures they hold; mean, std and t confidence intervals over repeats (scipy).

Imports no ray: ``bench/execute/runner.py`` turns Ray Tune's results into TrialRecords first.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
from scipy import stats

from bench.choices import EXECUTION_KEYS, metric_column
from bench.scores import class_scores, parse_confusion
from bench.trial.mfu import model_flops_utilisation, trial_peak

if TYPE_CHECKING:  # records only read a spec's fields; importing bench.specs would import keras
    from bench.specs import TrialSpec

STATUS_COMPLETED = "completed"
STATUS_EARLY_STOPPED = "early_stopped"
STATUS_DIVERGED = "diverged"
STATUS_FAILED = "failed"
CONFIDENCE = 0.95
PLATEAU_TOLERANCE = 0.005  # "within 0.5 pt of the trial's best", accuracy as a fraction


@dataclass
class TrialRecord:
    """What one trial left behind: its spec, per-epoch metrics and any error."""

    spec: TrialSpec
    epochs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    stop_reason: str | None = None  # why the scheduler stopped it before its epoch budget
    attempts: int = 1  # runs of the trial: a lost node or a crash retries it (from its checkpoint)
    epochs_lost: int = 0  # epochs an earlier attempt reported that a later one ran again


def epochs_table(records: list[TrialRecord]) -> pd.DataFrame:
    rows = [
        {"trial": record.spec.name, "group": record.spec.group_name, **epoch}
        for record in records
        for epoch in record.epochs
    ]
    table = pd.DataFrame(rows)
    if not table.empty:
        table = table.sort_values(["trial", "epoch"], kind="stable").reset_index(drop=True)
    return table


# --------------------------------------------------------------------------- convergence, throughput


def _finite(value) -> bool:
    return value is not None and not (isinstance(value, float) and not math.isfinite(value))


def epochs_to_target(val_accuracy: Sequence[float], target: float) -> int | None:
    """First epoch (1-based) whose validation accuracy is >= ``target``; None if never."""
    for epoch, accuracy in enumerate(val_accuracy, start=1):
        if _finite(accuracy) and accuracy >= target:
            return epoch
    return None


def epochs_to_plateau(val_accuracy: Sequence[float], tolerance: float = PLATEAU_TOLERANCE) -> int | None:
    """First epoch (1-based) within ``tolerance`` of the trial's best validation accuracy."""
    finite = [a for a in val_accuracy if _finite(a)]
    if not finite:
        return None
    return epochs_to_target(val_accuracy, max(finite) - tolerance)


def time_to_target(val_accuracy: Sequence[float], elapsed_seconds: Sequence[float], target: float) -> float | None:
    """Wall seconds from the trial's start to the end of its epochs-to-target epoch."""
    epoch = epochs_to_target(val_accuracy, target)
    return None if epoch is None else float(elapsed_seconds[epoch - 1])


def train_throughput(images: Sequence[float], seconds: Sequence[float]) -> tuple[float, float]:
    """(epoch-1 img/s, steady img/s): steady is images over training seconds of epochs 2..n.

    Epoch 1 holds graph building and compilation, so it is reported apart; with one epoch
    there is no steady figure (NaN). Training seconds exclude validation.
    """
    if len(images) != len(seconds):
        raise ValueError(f"{len(images)} image counts but {len(seconds)} durations")
    pairs = [(n, s) for n, s in zip(images, seconds, strict=True) if _finite(n) and _finite(s) and s > 0]
    if not pairs:
        return math.nan, math.nan
    first = pairs[0][0] / pairs[0][1]
    steady = pairs[1:]
    return first, (sum(n for n, _ in steady) / sum(s for _, s in steady) if steady else math.nan)


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation and a two-sided t confidence interval of ``n`` values."""

    n: int
    mean: float
    std: float  # ddof=1; NaN for one value
    ci_low: float
    ci_high: float

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2.0


def summarise(values: list[float], confidence: float = CONFIDENCE) -> Summary:
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(finite)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = statistics.fmean(finite)
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = statistics.stdev(finite)
    half = float(stats.t.ppf((1.0 + confidence) / 2.0, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


# --------------------------------------------------------------------------- per trial


def _none_to_nan(value) -> float:
    return math.nan if value is None else value


def _values(epochs: list[dict[str, Any]], key: str) -> list[float]:
    return [float(e[key]) if _is_number(e.get(key)) else math.nan for e in epochs]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _weighted_mean(values: list[float], weights: list[float]) -> float:
    pairs = [(v, w) for v, w in zip(values, weights, strict=True) if math.isfinite(v) and math.isfinite(w) and w > 0]
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total > 0 else math.nan


def _sum_all_or_nan(values: list[float]) -> float:
    """The sum, or NaN when any value is missing: a partial energy figure would mislead."""
    return sum(values) if values and all(math.isfinite(v) for v in values) else math.nan


def _max_or_nan(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return max(finite) if finite else math.nan


def _last_number(epochs: list[dict[str, Any]], key: str) -> float:
    """The last finite value of ``key`` (a figure measured at some epochs only); NaN if none."""
    finite = [value for value in _values(epochs, key) if math.isfinite(value)]
    return finite[-1] if finite else math.nan


def _last_text(epochs: list[dict[str, Any]], key: str) -> str:
    for epoch in reversed(epochs):
        value = epoch.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def trial_status(record: TrialRecord) -> tuple[str, str]:
    """(status, reason): completed, early_stopped, diverged or failed, and why it ended so."""
    spec, epochs = record.spec, record.epochs
    if record.error:
        return STATUS_FAILED, record.error
    if not epochs:
        return STATUS_FAILED, "no epoch reported"
    losses = _values(epochs, "train_loss")
    not_finite = [e["epoch"] for e, loss in zip(epochs, losses, strict=True) if not math.isfinite(loss)]
    if not_finite:
        return STATUS_DIVERGED, f"train loss not finite from epoch {not_finite[0]}"
    if len(epochs) < spec.epochs:
        why = record.stop_reason or "by the scheduler"
        return STATUS_EARLY_STOPPED, f"stopped after epoch {len(epochs)} of {spec.epochs}: {why}"
    return STATUS_COMPLETED, ""


def trials_table(
    records: list[TrialRecord], *, target_accuracy: float | None = None, cpu_peak_flops: float | None = None
) -> pd.DataFrame:
    """One row per trial: accuracy, convergence, throughput, size, energy, MFU and status.

    ``target_accuracy`` defines epochs/time-to-target; ``cpu_peak_flops`` (measured once per
    run) is the MFU peak of trials that ran without a GPU.
    """
    rows = []
    for record in records:
        spec = record.spec
        epochs = record.epochs
        # the run's ranking metric picks the best epoch and is what reaches the target
        scores = _values(epochs, metric_column(spec.metric))
        finite = [i for i, a in enumerate(scores) if math.isfinite(a)]
        best_index = max(finite, key=scores.__getitem__) if finite else None
        best = epochs[best_index] if best_index is not None else {}
        last = epochs[-1] if epochs else {}
        first_rate, steady_rate = train_throughput(_values(epochs, "train_images"), _values(epochs, "train_seconds"))
        train_images = last.get("train_images", math.nan)
        to_target = epochs_to_target(scores, target_accuracy) if target_accuracy is not None else None
        seconds_to_target = (
            time_to_target(scores, _values(epochs, "elapsed_seconds"), target_accuracy)
            if target_accuracy is not None
            else None
        )
        energy = _sum_all_or_nan(_values(epochs, "energy_j"))
        images_seen = train_images * len(epochs) if _is_number(train_images) else math.nan
        flops_per_image = _max_or_nan(_values(epochs, "flops_per_image"))
        train_flops_per_image = _max_or_nan(_values(epochs, "train_flops_per_image"))
        gpu_names = [name for name in _last_text(epochs, "gpu_names").split(", ") if name]
        peak, peak_reason = trial_peak(gpu_names, cpu_peak_flops, _last_text(epochs, "precision") or None)
        status, reason = trial_status(record)
        rows.append(
            {
                "trial": spec.name,
                "group": spec.group_name,
                "model": spec.model,
                "optimizer": spec.optimizer,
                "learning_rate": spec.learning_rate,
                "momentum": spec.momentum,
                "batch_size": spec.batch_size,
                "policy": spec.policy,
                "policy_description": spec.augmentation.description,
                "normalisation": spec.normalisation,
                "model_options": ", ".join(f"{key}={value}" for key, value in sorted(spec.model_options.items())),
                "val_fold": spec.val_fold,
                "seed": spec.seed,
                "epochs_budget": spec.epochs,
                "epochs_run": len(epochs),
                "metric": spec.metric,
                "best_score": best.get(metric_column(spec.metric), math.nan),
                "best_val_accuracy": best.get("val_accuracy", math.nan),
                "best_val_balanced_accuracy": best.get("val_balanced_accuracy", math.nan),
                "best_val_macro_f1": best.get("val_macro_f1", math.nan),
                "val_class_recall": class_recall_text(best.get("val_confusion")),
                "val_confusion": best.get("val_confusion") or "",
                "best_epoch": best.get("epoch", math.nan),
                "final_val_accuracy": last.get("val_accuracy", math.nan),
                "final_val_accuracy_oversampled": _last_number(epochs, "val_accuracy_oversampled"),
                "keep_duplicates": spec.keep_duplicates,
                "reference": _none_to_nan(spec.reference),
                "reference_std": _none_to_nan(spec.reference_std),
                "reference_oversampled": _none_to_nan(spec.reference_oversampled),
                "reference_oversampled_std": _none_to_nan(spec.reference_oversampled_std),
                "reference_epochs": _none_to_nan(spec.reference_epochs),
                "target_accuracy": _none_to_nan(target_accuracy),
                "epochs_to_target": _none_to_nan(to_target),
                "epochs_to_plateau": _none_to_nan(epochs_to_plateau(scores)),
                "time_to_target_seconds": _none_to_nan(seconds_to_target),
                "first_epoch_images_per_sec": first_rate,
                "train_images_per_sec": steady_rate,
                "infer_images_per_sec": _max_or_nan(_values(epochs, "infer_images_per_sec")),
                "latency_ms_p50": _last_number(epochs, "latency_ms_p50"),
                "latency_ms_p99": _last_number(epochs, "latency_ms_p99"),
                "infer_batches": _max_or_nan(_values(epochs, "infer_batches")),
                "oversampled_faces": _last_number(epochs, "oversampled_faces"),
                "smoke_measures": spec.smoke_measures,
                "first_epoch_seconds": epochs[0]["epoch_seconds"] if epochs else math.nan,
                "wall_seconds": last.get("elapsed_seconds", math.nan),
                "oversample_seconds": _max_or_nan(_values(epochs, "oversample_seconds")),
                "params": last.get("params", math.nan),
                "model_bytes": last.get("model_bytes", math.nan),
                "flops_per_image": flops_per_image,
                "gflops_per_image": flops_per_image / 1e9,
                "train_flops_per_image": train_flops_per_image,
                "energy_j": energy,
                "energy_mj_per_image": energy * 1000.0 / images_seen if images_seen else math.nan,
                "power_w_mean": _weighted_mean(_values(epochs, "power_w"), _values(epochs, "epoch_seconds")),
                "gpu_util_mean": _weighted_mean(_values(epochs, "gpu_util"), _values(epochs, "epoch_seconds")),
                "gpu_memory_max_bytes": _max_or_nan(_values(epochs, "gpu_memory_bytes")),
                "process_gpu_memory_max_bytes": _max_or_nan(_values(epochs, "process_gpu_memory_bytes")),
                "energy_source": _last_text(epochs, "energy_source"),
                "gpu_names": ", ".join(gpu_names),
                "gpu_shared": _last_text(epochs, "gpu_shared"),
                "nvml_reason": _last_text(epochs, "nvml_reason"),
                # how it executed, as its node resolved the spec's choices (bench/trial/execution.py)
                **{key: _last_text(epochs, key) for key in EXECUTION_KEYS},
                "peak_flops": peak.flops if peak else math.nan,
                "peak_source": peak.source if peak else peak_reason,
                "mfu": _none_to_nan(
                    model_flops_utilisation(train_flops_per_image, steady_rate, peak.flops if peak else None)
                ),
                "train_images": train_images,
                "val_images": last.get("val_images", math.nan),
                "status": status,
                "reason": reason,
                "stop_reason": (record.stop_reason or "") if status == STATUS_EARLY_STOPPED else "",
                "attempts": record.attempts,
                "epochs_lost": record.epochs_lost,
                "error": record.error or "",
            }
        )
    return pd.DataFrame(rows)


def class_recall_text(confusion) -> str:
    """Per-class recall of a confusion matrix (JSON text), as JSON text: ``[0.8125, 0.7692]``."""
    matrix = parse_confusion(confusion)
    if matrix is None:
        return ""
    return json.dumps([None if math.isnan(value) else round(value, 4) for value in class_scores(matrix).recall])
