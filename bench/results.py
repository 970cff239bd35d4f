"""Tidy result tables (per trial epoch, per trial, per report row), statistics; atomic parquet/csv I/O.

Imports no ray: ``bench/runner.py`` turns Ray Tune's results into TrialRecords first.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.profiler import (
    epochs_to_plateau,
    epochs_to_target,
    model_flops_utilisation,
    time_to_target,
    train_throughput,
    trial_peak,
)

STATUS_COMPLETED = "completed"
STATUS_EARLY_STOPPED = "early_stopped"
STATUS_DIVERGED = "diverged"
STATUS_FAILED = "failed"
CONFIDENCE = 0.95
# TrialSpec.to_dict's prefix for model options (bench.specs imports keras; this module stays light)
MODEL_OPTION_PREFIX = "model."


@dataclass
class TrialRecord:
    """What one trial left behind: its spec (flat dict), per-epoch metrics and any error."""

    spec: dict[str, Any]
    epochs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    stop_reason: str | None = None  # why the scheduler stopped it before its epoch budget


def epochs_table(records: list[TrialRecord]) -> pd.DataFrame:
    rows = [
        {"trial": record.spec["name"], "group": record.spec.get("group") or record.spec["name"], **epoch}
        for record in records
        for epoch in record.epochs
    ]
    table = pd.DataFrame(rows)
    if not table.empty:
        table = table.sort_values(["trial", "epoch"], kind="stable").reset_index(drop=True)
    return table


# --------------------------------------------------------------------------- statistics


def _continued_fraction(a: float, b: float, x: float) -> float:
    """Lentz's continued fraction for the incomplete beta function (Numerical Recipes 6.4)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 1000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return result


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _continued_fraction(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    tail = 0.5 * regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def student_t_quantile(p: float, df: float) -> float:
    """The t distribution's ``p`` quantile (e.g. 0.975 for a two-sided 95% interval)."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"need 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while student_t_cdf(high, df) < p:
        low, high = high, high * 2.0
    for _ in range(200):  # bisection: the CDF is monotone, 200 halvings reach float precision
        middle = (low + high) / 2.0
        if student_t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
    return (low + high) / 2.0


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
    mean = sum(finite) / n
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1))
    half = student_t_quantile((1.0 + confidence) / 2.0, n - 1) * std / math.sqrt(n)
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
    if len(epochs) < spec["epochs"]:
        why = record.stop_reason or "by the scheduler"
        return STATUS_EARLY_STOPPED, f"stopped after epoch {len(epochs)} of {spec['epochs']}: {why}"
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
        accuracies = _values(epochs, "val_accuracy")
        finite = [i for i, a in enumerate(accuracies) if math.isfinite(a)]
        best_index = max(finite, key=accuracies.__getitem__) if finite else None
        best = epochs[best_index] if best_index is not None else {}
        last = epochs[-1] if epochs else {}
        first_rate, steady_rate = train_throughput(_values(epochs, "train_images"), _values(epochs, "train_seconds"))
        train_images = last.get("train_images", math.nan)
        to_target = epochs_to_target(accuracies, target_accuracy) if target_accuracy is not None else None
        seconds_to_target = (
            time_to_target(accuracies, _values(epochs, "elapsed_seconds"), target_accuracy)
            if target_accuracy is not None
            else None
        )
        energy = _sum_all_or_nan(_values(epochs, "energy_j"))
        images_seen = train_images * len(epochs) if _is_number(train_images) else math.nan
        flops = _values(epochs, "flops_per_image")
        flops_per_image = _max_or_nan(flops)
        gpu_names = [name for name in _last_text(epochs, "gpu_names").split(", ") if name]
        peak, peak_reason = trial_peak(gpu_names, cpu_peak_flops)
        status, reason = trial_status(record)
        rows.append(
            {
                "trial": spec["name"],
                "group": spec.get("group") or spec["name"],
                "model": spec["model"],
                "optimizer": spec["optimizer"],
                "learning_rate": spec["learning_rate"],
                "momentum": spec["momentum"],
                "batch_size": spec["batch_size"],
                "policy": spec["policy"],
                "normalisation": spec["normalisation"],
                "model_options": ", ".join(
                    f"{key.removeprefix(MODEL_OPTION_PREFIX)}={value}"
                    for key, value in sorted(spec.items())
                    if key.startswith(MODEL_OPTION_PREFIX)
                ),
                "val_fold": spec.get("val_fold", math.nan),
                "seed": spec["seed"],
                "epochs_budget": spec["epochs"],
                "epochs_run": len(epochs),
                "best_val_accuracy": best.get("val_accuracy", math.nan),
                "best_epoch": best.get("epoch", math.nan),
                "final_val_accuracy": last.get("val_accuracy", math.nan),
                "reference": _none_to_nan(spec.get("reference")),
                "reference_epochs": _none_to_nan(spec.get("reference_epochs")),
                "target_accuracy": _none_to_nan(target_accuracy),
                "epochs_to_target": _none_to_nan(to_target),
                "epochs_to_plateau": _none_to_nan(epochs_to_plateau(accuracies)),
                "time_to_target_seconds": _none_to_nan(seconds_to_target),
                "first_epoch_images_per_sec": first_rate,
                "train_images_per_sec": steady_rate,
                "infer_images_per_sec": _max_or_nan(_values(epochs, "infer_images_per_sec")),
                "first_epoch_seconds": epochs[0]["epoch_seconds"] if epochs else math.nan,
                "wall_seconds": last.get("elapsed_seconds", math.nan),
                "params": last.get("params", math.nan),
                "flops_per_image": flops_per_image,
                "gflops_per_image": flops_per_image / 1e9,
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
                "peak_flops": peak.flops if peak else math.nan,
                "peak_source": peak.source if peak else peak_reason,
                "mfu": _none_to_nan(
                    model_flops_utilisation(flops_per_image, steady_rate, peak.flops if peak else None)
                ),
                "train_images": train_images,
                "val_images": last.get("val_images", math.nan),
                "status": status,
                "reason": reason,
                "stop_reason": (record.stop_reason or "") if status == STATUS_EARLY_STOPPED else "",
                "error": record.error or "",
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- per report row

# Columns a group (one report row run with several seeds or folds) reports as the mean of
# its finished trials.
GROUP_MEAN_COLUMNS = (
    "epochs_run",
    "epochs_to_target",
    "epochs_to_plateau",
    "time_to_target_seconds",
    "first_epoch_images_per_sec",
    "train_images_per_sec",
    "infer_images_per_sec",
    "wall_seconds",
    "params",
    "flops_per_image",
    "gflops_per_image",
    "energy_j",
    "energy_mj_per_image",
    "power_w_mean",
    "mfu",
)
# Columns that are the same for every trial of a group (the row's hyperparameters).
GROUP_FIRST_COLUMNS = (
    "model",
    "model_options",
    "optimizer",
    "learning_rate",
    "momentum",
    "batch_size",
    "policy",
    "normalisation",
    "epochs_budget",
    "reference",
    "reference_epochs",
    "target_accuracy",
    "energy_source",
    "gpu_names",
    "gpu_shared",
    "nvml_reason",
    "peak_source",
)


def groups_table(trials: pd.DataFrame, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """One row per report row: best val accuracy as mean, std and a t confidence interval
    over its finished trials (seeds or folds), other figures as means; failed trials counted."""
    rows = []
    for group, members in trials.groupby("group", sort=False):
        finished = members[members["status"] != STATUS_FAILED]
        accuracy = summarise(finished["best_val_accuracy"].tolist(), confidence)
        statuses = members["status"].value_counts()
        reached = finished["epochs_to_target"].notna().sum()
        row = {
            "group": group,
            "trials": ", ".join(members["trial"]),
            "n": len(members),
            "n_finished": len(finished),
            "n_reached_target": int(reached),
            "best_val_accuracy": accuracy.mean,
            "best_val_accuracy_std": accuracy.std,
            "best_val_accuracy_ci_low": accuracy.ci_low,
            "best_val_accuracy_ci_high": accuracy.ci_high,
        }
        source = finished if not finished.empty else members
        row.update({column: members[column].iloc[0] for column in GROUP_FIRST_COLUMNS})
        row.update({column: source[column].mean() for column in GROUP_MEAN_COLUMNS})
        if len(statuses) == 1:
            row["status"] = statuses.index[0]
        else:
            row["status"] = ", ".join(f"{count} {status}" for status, count in statuses.items())
        row["reason"] = "; ".join(
            f"{trial}: {reason}" for trial, reason in zip(members["trial"], members["reason"], strict=True) if reason
        )
        rows.append(row)
    return pd.DataFrame(rows)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it private; results are for everyone to read
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_table(table: pd.DataFrame, stem: Path) -> list[Path]:
    """``stem``.parquet and ``stem``.csv, each written atomically."""
    parquet_path = stem.with_suffix(".parquet")
    csv_path = stem.with_suffix(".csv")
    atomic_write_bytes(parquet_path, table.to_parquet(index=False))
    atomic_write_text(csv_path, table.to_csv(index=False))
    return [parquet_path, csv_path]


def read_table(stem: Path) -> pd.DataFrame:
    return pd.read_parquet(stem.with_suffix(".parquet"))
