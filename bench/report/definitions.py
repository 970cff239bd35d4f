"""The leaderboard's closing section: what each column means and how it was measured."""

from __future__ import annotations

import pandas as pd

from bench.plan.goals import Goals
from bench.report.results import CONFIDENCE


def _first_text(trials: pd.DataFrame, column: str) -> str:
    values = [v for v in trials.get(column, pd.Series(dtype=str)).tolist() if isinstance(v, str) and v]
    return values[0] if values else ""


def definition_lines(goals: Goals, items: str, trials: pd.DataFrame) -> list[str]:
    """The Definitions section; ``items`` says what the data holds (faces, images)."""
    nvml_reason = _first_text(trials, "nvml_reason")
    energy_note = (
        f"n/a here: {nvml_reason}." if nvml_reason else "NVML's total-energy counter delta (or integrated power)."
    )
    peak = _first_text(trials, "peak_source") or "n/a"
    metric = goals.metric_words
    return [
        "## Definitions",
        "",
        "- #: the row's number in every table and plot here; the rows that meet every budget come first, each part "
        f"ranked by best val {metric} (ties: the shorter time to target). A budget is met (✓), missed (✗), not "
        "measured (counts as not met) or n/a in a smoke run (accuracy, time to target, epochs to target).",
        f"- best val {metric}: the run's ranking metric (a suite's `metric`, `--metric`) at its best epoch, the "
        f"epoch that ranks highest by it; with repeats or folds, the mean ± sample std and a {100 * CONFIDENCE:.0f}% "
        "confidence interval (t distribution) over the finished trials. The other scores are the same epoch's.",
        "- val acc: the share of validation images classified right; bal acc: the mean of the per-class recalls "
        "(scikit-learn's balanced_accuracy_score); macro-F1: the unweighted mean of the per-class F1 scores "
        "(f1_score, average='macro'); recall per class: the share of each class's validation images classified "
        "as that class. All from the confusion matrix of the validation pass (rows true, columns predicted), "
        "accumulated on the device; a repeated row's matrices are summed.",
        "- report: the report's figure for that row, after its own epoch budget (fold 4 held out); on synthetic data "
        "only the shape, not the level, compares. diff: best val acc - report (shown only where a row has one).",
        f"- epochs→target: first epoch whose val {metric} >= {goals.target_accuracy:.2f} (n/a: never reached); "
        "time→target: wall seconds from the start of training to the end of that epoch (validation included, "
        "the inference measurement not).",
        "- train img/s: training images over training seconds of epochs 2.. (validation excluded); epoch-1 img/s "
        "apart: it holds graph building. infer img/s: a timed loop of forward passes at a fixed batch of 32, "
        "after warm-up; latency p50 / p99 ms: the median and 99th percentile of one image's forward pass "
        "(batch 1, after 3 untimed passes, 20 to 100 timed within half a second); both once per trial after epoch 1 (outside every "
        "epoch's timings and energy). A smoke run's (marked \"smoke\"): one batch and two single images, "
        "none warmed up: they prove the path, not the figures.",
        "- single: the centre crop (the whole image where the policy does not crop), Keras's validation pass each "
        "epoch; over-sampled, only where the policy crops: the mean of the softmax outputs over the four corner "
        "crops and the centre crop of each image, and their horizontal mirrors where the policy flips "
        "horizontally (ten views, else five), measured at each trial's last epoch (its budget's, or "
        "the one its patience ends it at; not for trials ASHA stops); a smoke run's on its first 16 validation "
        "faces (marked). Both count the "
        f"{items} as often as the protocol lists them.",
        "- weights MB: the bytes of the network's weights as stored (its .keras file adds a few kB of "
        "configuration); train s: the trial's wall seconds, validation included, the inference and over-sampled "
        "measurements not.",
        "- GFLOPs: forward FLOPs per image (a multiply-add = 2 FLOPs); n/a where the trial reported none.",
        f"- energy J: GPU energy over all epochs (training and validation), summed over the trial's GPUs: "
        f"{energy_note} On a GPU the trial shared (a fractional lease; marked), its part of that energy: by its "
        "share of the SM utilisation NVML reports per process over the epoch, else by its lease's share; the "
        "energies of one GPU's trials add up to at most the GPU's. mJ/img: that energy per training image seen.",
        "- MFU: training FLOPs per image x train img/s over the peak of the trial's device in its precision "
        f"({peak}). Training FLOPs count what trains: the forward pass, input gradients down to the first "
        "trainable layer, weight gradients of trainable layers (a frozen backbone's are not computed).",
        "",
    ]
