"""Results -> LEADERBOARD.md: accuracy beside the report's figure, throughput and size."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench.results import atomic_write_text


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    suite: str
    suite_description: str
    data: str
    preset: str
    target_accuracy: float


def _number(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, fmt)


def leaderboard_rows(trials: pd.DataFrame) -> list[list[str]]:
    ordered = trials.sort_values("best_val_accuracy", ascending=False, na_position="last", kind="stable")
    rows = []
    for rank, row in enumerate(ordered.itertuples(index=False), start=1):
        reference = row.reference
        difference = (
            row.best_val_accuracy - reference
            if not (math.isnan(reference) or math.isnan(row.best_val_accuracy))
            else math.nan
        )
        rows.append(
            [
                str(rank),
                row.trial,
                row.model,
                f"{row.optimizer} lr={row.learning_rate:g}"
                + (f" m={row.momentum:g}" if row.optimizer == "sgd" else ""),
                _number(row.best_val_accuracy, ".4f"),
                _number(reference, ".4f"),
                _number(difference, "+.4f"),
                f"{row.epochs_run}/{row.epochs_budget}",
                _number(row.train_images_per_sec, ".1f"),
                _number(row.params, ",.0f"),
                row.status
                + (f": {row.error}" if row.error else "")
                + (f": {row.stop_reason}" if row.stop_reason else ""),
            ]
        )
    return rows


HEADERS = [
    "#",
    "trial",
    "model",
    "optimiser",
    "best val acc",
    "report",
    "diff",
    "epochs",
    "train img/s",
    "params",
    "status",
]


def render_leaderboard(info: RunInfo, trials: pd.DataFrame) -> str:
    table = tabulate(leaderboard_rows(trials), headers=HEADERS, tablefmt="github", disable_numparse=True)
    return "\n".join(
        [
            f"# Leaderboard: {info.suite}",
            "",
            f"- run: `{info.run_id}`",
            f"- suite: {info.suite} ({info.suite_description})",
            f"- data: {info.data}",
            f"- preset: {info.preset}",
            "",
            table,
            "",
            "best val acc: highest validation accuracy over the epochs run; report: the report's figure "
            "for that row (after its own epoch budget; on synthetic data only the shape is comparable); "
            "train img/s: mean over epochs 2.. (epoch 1 holds graph building), training steps only.",
            "",
        ]
    )


def write_leaderboard(info: RunInfo, trials: pd.DataFrame, path: Path) -> Path:
    atomic_write_text(path, render_leaderboard(info, trials))
    return path
