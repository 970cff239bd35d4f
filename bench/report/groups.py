"""Per report row: a row run with several seeds or folds summarised over its trials (mean,
std and a t confidence interval of its scores, means of its costs, its confusion matrices
summed), from the per-trial table of bench/report/results.py.
"""

from __future__ import annotations

import math

import pandas as pd

from bench.choices import EXECUTION_KEYS
from bench.report.results import CONFIDENCE, STATUS_FAILED, class_recall_text, summarise
from bench.scores import confusion_text, parse_confusion

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
    "latency_ms_p50",
    "latency_ms_p99",
    "wall_seconds",
    "oversample_seconds",
    "oversampled_faces",
    "infer_batches",
    "params",
    "model_bytes",
    "flops_per_image",
    "gflops_per_image",
    "train_flops_per_image",
    "energy_j",
    "energy_mj_per_image",
    "power_w_mean",
    "mfu",
)
# Columns that are the same for every trial of a group (the row's hyperparameters).
GROUP_FIRST_COLUMNS = (
    "metric",
    "model",
    "model_options",
    "optimizer",
    "learning_rate",
    "momentum",
    "batch_size",
    "policy",
    "normalisation",
    "epochs_budget",
    "keep_duplicates",
    "reference",
    "reference_std",
    "reference_oversampled",
    "reference_oversampled_std",
    "reference_epochs",
    "target_accuracy",
    "energy_source",
    "gpu_names",
    "gpu_shared",
    "nvml_reason",
    "peak_source",
    "smoke_measures",
    *EXECUTION_KEYS,
)


# Scores a group reports as mean, sample std and t confidence interval over its trials: the
# best epoch's (single view: the ranking metric's, accuracy, balanced accuracy, macro-F1), and
# the last epoch's accuracy, single and over-sampled.
SUMMARISED_COLUMNS = ("best_score", "best_val_accuracy", "best_val_balanced_accuracy", "best_val_macro_f1")
SUMMARISED_COLUMNS += ("final_val_accuracy", "final_val_accuracy_oversampled")
# what a results table written before a column existed reads as (runs of earlier versions)
EARLIER_DEFAULTS = {"metric": "accuracy", "val_confusion": "", "val_class_recall": "", "smoke_measures": False}


def with_earlier_defaults(trials: pd.DataFrame) -> pd.DataFrame:
    """``trials`` with the columns an earlier version did not write: the ranking metric was
    accuracy, figures it did not measure are NaN."""
    trials = trials.copy()
    if "best_score" not in trials:
        trials["best_score"] = trials.get("best_val_accuracy", math.nan)
    for column, value in EARLIER_DEFAULTS.items():
        if column not in trials:
            trials[column] = value
    for column in (*GROUP_MEAN_COLUMNS, *SUMMARISED_COLUMNS):
        if column not in trials:
            trials[column] = math.nan
    return trials


def summed_confusion(confusions) -> str:
    """The sum of several trials' confusion matrices (JSON text; empty cells skipped), "" for none."""
    matrices = [matrix for matrix in map(parse_confusion, confusions) if matrix is not None]
    shapes = {matrix.shape for matrix in matrices}
    return confusion_text(sum(matrices)) if matrices and len(shapes) == 1 else ""


def groups_table(trials: pd.DataFrame, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """One row per report row: its accuracies as mean, std and a t confidence interval over
    its finished trials (seeds or folds), other figures as means; failed trials counted."""
    rows = []
    trials = with_earlier_defaults(trials)
    for group, members in trials.groupby("group", sort=False):
        finished = members[members["status"] != STATUS_FAILED]
        statuses = members["status"].value_counts()
        reached = finished["epochs_to_target"].notna().sum()
        row = {
            "group": group,
            "trials": ", ".join(members["trial"]),
            "n": len(members),
            "n_finished": len(finished),
            "n_reached_target": int(reached),
        }
        for column in SUMMARISED_COLUMNS:
            summary = summarise(finished[column].tolist() if column in finished else [], confidence)
            row |= {column: summary.mean, f"{column}_std": summary.std, f"{column}_n": summary.n}
            row |= {f"{column}_ci_low": summary.ci_low, f"{column}_ci_high": summary.ci_high}
        source = finished if not finished.empty else members
        row.update({column: members[column].iloc[0] for column in GROUP_FIRST_COLUMNS})
        row.update({column: source[column].mean() for column in GROUP_MEAN_COLUMNS})
        # a repeated row's confusion matrix: its finished trials' best epochs, summed
        row["val_confusion"] = summed_confusion(finished["val_confusion"])
        row["val_class_recall"] = class_recall_text(row["val_confusion"])
        if len(statuses) == 1:
            row["status"] = statuses.index[0]
        else:
            row["status"] = ", ".join(f"{count} {status}" for status, count in statuses.items())
        row["reason"] = "; ".join(
            f"{trial}: {reason}" for trial, reason in zip(members["trial"], members["reason"], strict=True) if reason
        )
        rows.append(row)
    return pd.DataFrame(rows)
