"""Tidy result tables: one row per trial epoch and one row per trial; atomic parquet/csv I/O.

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

STATUS_COMPLETED = "completed"
STATUS_EARLY_STOPPED = "early_stopped"
STATUS_FAILED = "failed"


@dataclass
class TrialRecord:
    """What one trial left behind: its spec (flat dict), per-epoch metrics and any error."""

    spec: dict[str, Any]
    epochs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    stop_reason: str | None = None  # why the scheduler stopped it before its epoch budget


def epochs_table(records: list[TrialRecord]) -> pd.DataFrame:
    rows = [{"trial": record.spec["name"], **epoch} for record in records for epoch in record.epochs]
    table = pd.DataFrame(rows)
    if not table.empty:
        table = table.sort_values(["trial", "epoch"], kind="stable").reset_index(drop=True)
    return table


def _steady_throughput(epochs: list[dict[str, Any]]) -> float:
    """Mean train img/s over epochs 2..n (epoch 1 holds graph building); epoch 1 if alone."""
    rates = [e["train_images_per_sec"] for e in epochs if not math.isnan(e.get("train_images_per_sec", math.nan))]
    steady = rates[1:] or rates
    return sum(steady) / len(steady) if steady else math.nan


def trial_status(record: TrialRecord) -> str:
    if record.error:
        return STATUS_FAILED
    if record.epochs and len(record.epochs) < record.spec["epochs"]:
        return STATUS_EARLY_STOPPED
    if not record.epochs:
        return STATUS_FAILED
    return STATUS_COMPLETED


def _stop_reason(record: TrialRecord) -> str:
    if trial_status(record) != STATUS_EARLY_STOPPED:
        return ""
    return record.stop_reason or "ASHA: below its rung's cutoff"


def trials_table(records: list[TrialRecord]) -> pd.DataFrame:
    rows = []
    for record in records:
        spec = record.spec
        epochs = record.epochs
        accuracies = [e["val_accuracy"] for e in epochs]
        best_index = max(range(len(accuracies)), key=accuracies.__getitem__) if accuracies else None
        best = epochs[best_index] if best_index is not None else {}
        last = epochs[-1] if epochs else {}
        rows.append(
            {
                "trial": spec["name"],
                "model": spec["model"],
                "optimizer": spec["optimizer"],
                "learning_rate": spec["learning_rate"],
                "momentum": spec["momentum"],
                "batch_size": spec["batch_size"],
                "policy": spec["policy"],
                "normalisation": spec["normalisation"],
                "epochs_budget": spec["epochs"],
                "epochs_run": len(epochs),
                "best_val_accuracy": best.get("val_accuracy", math.nan),
                "best_epoch": best.get("epoch", math.nan),
                "final_val_accuracy": last.get("val_accuracy", math.nan),
                "reference": spec.get("reference") if spec.get("reference") is not None else math.nan,
                "reference_epochs": spec.get("reference_epochs")
                if spec.get("reference_epochs") is not None
                else math.nan,
                "train_images_per_sec": _steady_throughput(epochs),
                "first_epoch_seconds": epochs[0]["epoch_seconds"] if epochs else math.nan,
                "wall_seconds": last.get("elapsed_seconds", math.nan),
                "params": last.get("params", math.nan),
                "train_images": last.get("train_images", math.nan),
                "val_images": last.get("val_images", math.nan),
                "seed": spec["seed"],
                "status": trial_status(record),
                "stop_reason": _stop_reason(record),
                "error": record.error or "",
            }
        )
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
