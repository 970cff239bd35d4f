"""How a figure is written in a leaderboard cell: n/a for what is missing, a repeated row's
mean ± std [95% interval] n=, a published figure with its spread, energy marked when shared.
"""

from __future__ import annotations

import math

import pandas as pd


def missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def format_number(value, fmt: str) -> str:
    return "n/a" if missing(value) else format(value, fmt)


def format_count(value) -> str:
    """An epoch count: whole, or a mean over repeats to one decimal."""
    return "n/a" if missing(value) else (f"{value:g}" if float(value).is_integer() else f"{value:.1f}")


def hyperparameters(row) -> str:
    text = f"{row.optimizer} lr={row.learning_rate:g}" + (f" m={row.momentum:g}" if row.optimizer == "sgd" else "")
    text += f" bs={row.batch_size}"
    return text + (f" {row.model_options}" if row.model_options else "")


def format_accuracy(row, column: str = "best_val_accuracy") -> str:
    """A row's accuracy: one trial's, or the mean ± std [95% interval] n= of its repeats or folds."""
    value = getattr(row, column)
    n = row.n_finished if column == "best_val_accuracy" else getattr(row, f"{column}_n")
    if missing(value):
        return "n/a"
    if n < 2:
        return f"{value:.4f}"
    low, high = getattr(row, f"{column}_ci_low"), getattr(row, f"{column}_ci_high")
    return f"{value:.4f} ± {getattr(row, f'{column}_std'):.4f} [{low:.4f}, {high:.4f}] n={n}"


def format_published(value, std) -> str:
    """A published figure, with its spread where one was published."""
    return "n/a" if missing(value) else f"{value:.4f}" + ("" if missing(std) else f" ± {std:.4f}")


SHARE_WORDS = {"sm_share": "its SM share", "lease_share": "its lease share"}


def format_energy(row) -> tuple[str, str]:
    """(J, mJ/img); marked where the trial shared its GPU, with how its part of the GPU's energy was found."""
    shared = ""
    if row.gpu_shared == "yes" and not missing(row.energy_j):
        source = row.energy_source if isinstance(row.energy_source, str) else ""
        basis = [words for key, words in SHARE_WORDS.items() if key in source]
        shared = f" (shared GPU: {', '.join(basis)})" if basis else " (shared GPU)"
    return format_number(row.energy_j, ",.1f") + shared, format_number(row.energy_mj_per_image, ",.2f") + shared
