"""A run's LEADERBOARD.md: the answer first (the rows that meet every budget, ranked; the
others with the budgets each one misses), then an accuracy table and a cost table keyed by
the same row numbers as the plots, the published figures, the trials and the definitions.

The header comes from ``RunInfo``, saved beside the board as ``run_info.json`` for
``bench/report/compare.py`` (the board across runs, two runs compared).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from bench.choices import EXECUTION_KEYS
from bench.io import atomic_write_text
from bench.plan.goals import Goals
from bench.report.answer import SMOKE_SENTENCE, answer_lines, ranked_rows, verdict_cell
from bench.report.cells import (
    format_accuracy,
    format_count,
    format_energy,
    format_number,
    format_published,
    hyperparameters,
    missing,
)
from bench.report.results import CONFIDENCE, STATUS_COMPLETED, groups_table

RUN_INFO_NAME = "run_info.json"
LEADERBOARD_NAME = "LEADERBOARD.md"
PLOTS_DIR = "plots"
NO_GOAL = "–"


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class RunInfo:
    """What the header says about a run; saved beside it for the cross-run board and --compare."""

    run_id: str
    suite: str
    suite_description: str
    data: str
    preset: str
    goals: Goals
    synthetic: bool = True
    environment: str = ""  # EnvManifest.summary()
    device: str = ""  # EnvManifest.device()
    command: str = ""
    repeats: int = 1
    cv: bool = False
    protocol: str = ""  # bench/plan/protocols.py: the protocol's description
    counting: str = ""  # how faces were counted (each once, or every listed line)
    nodes: str = ""  # nodes whose versions differ from the driver's ("" when none do)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunInfo:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in values.items() if key in known}
        return cls(**{**values, "goals": Goals(**values["goals"])})


def save_run_info(info: RunInfo, run_dir: Path) -> Path:
    path = run_dir / RUN_INFO_NAME
    atomic_write_text(path, json.dumps(info.to_dict(), indent=2) + "\n")
    return path


def load_run_info(run_dir: Path) -> RunInfo:
    return RunInfo.from_dict(json.loads((run_dir / RUN_INFO_NAME).read_text()))


# --------------------------------------------------------------------------- formatting


PUBLISHED_HEADERS = [
    "row",
    "single, last epoch",
    "published single",
    "over-sampled, last epoch",
    "published over-sampled",
]


def published_rows(groups: pd.DataFrame) -> list[list[str]]:
    """Rows with a published figure: ours at the last epoch, single and over-sampled, beside it."""
    rows = []
    for row in groups.itertuples(index=False):
        if missing(row.reference) and missing(row.reference_oversampled):
            continue
        rows.append(
            [
                row.group,
                format_accuracy(row, "final_val_accuracy"),
                format_published(row.reference, row.reference_std),
                format_accuracy(row, "final_val_accuracy_oversampled"),
                format_published(row.reference_oversampled, row.reference_oversampled_std),
            ]
        )
    return rows


ACCURACY_HEADERS = ["#", "row", "model", "hyperparameters", "best val acc", "report", "diff"]
ACCURACY_HEADERS += ["epochs→target", "time→target s", "over-sampled (last)", "accuracy budget", "status"]
COST_HEADERS = ["#", "row", "train img/s", "epoch-1 img/s", "infer img/s", "params", "weights MB", "GFLOPs"]
COST_HEADERS += ["train s", "energy J", "mJ/img", "MFU"]


def accuracy_rows(ranked) -> list[list[str]]:
    rows = []
    for number, row, verdicts in ranked:
        reached = (
            f" ({row.n_reached_target}/{row.n_finished})"
            if row.n_finished > 1 and not missing(row.epochs_to_target)
            else ""
        )
        accuracy_verdict = next((v for v in verdicts if v.budget.name == "accuracy"), None)
        rows.append(
            [
                str(number),
                row.group,
                row.model,
                hyperparameters(row),
                format_accuracy(row),
                format_number(row.reference, ".4f"),
                format_number(row.best_val_accuracy - row.reference, "+.4f"),
                format_count(row.epochs_to_target) + reached,
                format_number(row.time_to_target_seconds, ",.1f"),
                format_accuracy(row, "final_val_accuracy_oversampled"),
                NO_GOAL if accuracy_verdict is None or row.n_finished == 0 else verdict_cell(accuracy_verdict),
                row.status,
            ]
        )
    return rows


def cost_rows(ranked) -> list[list[str]]:
    rows = []
    for number, row, _verdicts in ranked:
        energy, energy_per_image = format_energy(row)
        rows.append(
            [
                str(number),
                row.group,
                format_number(row.train_images_per_sec, ",.1f"),
                format_number(row.first_epoch_images_per_sec, ",.1f"),
                format_number(row.infer_images_per_sec, ",.1f"),
                format_number(row.params, ",.0f"),
                format_number(row.model_bytes / 1e6, ",.1f"),
                format_number(row.gflops_per_image, ".3f"),
                format_number(row.wall_seconds, ",.1f"),
                energy,
                energy_per_image,
                "n/a" if missing(row.mfu) else f"{100 * row.mfu:.1f}%",
            ]
        )
    return rows


def trial_rows(trials: pd.DataFrame) -> list[list[str]]:
    ordered = trials.sort_values(["group", "trial"], kind="stable")
    return [
        [
            row.trial,
            row.group,
            str(row.seed),
            format_number(row.val_fold, "g"),
            format_number(row.best_val_accuracy, ".4f"),
            format_number(row.epochs_to_target, "g"),
            format_number(row.train_images_per_sec, ",.1f"),
            format_number(row.energy_j, ",.1f"),
            row.status,
        ]
        for row in ordered.itertuples(index=False)
    ]


TRIAL_HEADERS = [
    "trial",
    "row",
    "seed",
    "val fold",
    "best val acc",
    "epochs→target",
    "train img/s",
    "energy J",
    "status",
]


def _first_text(trials: pd.DataFrame, column: str) -> str:
    values = [v for v in trials.get(column, pd.Series(dtype=str)).tolist() if isinstance(v, str) and v]
    return values[0] if values else ""


def _definitions(info: RunInfo, trials: pd.DataFrame) -> list[str]:
    nvml_reason = _first_text(trials, "nvml_reason")
    energy_note = (
        f"n/a here: {nvml_reason}." if nvml_reason else "NVML's total-energy counter delta (or integrated power)."
    )
    peak = _first_text(trials, "peak_source") or "n/a"
    return [
        "## Definitions",
        "",
        "- #: the row's number in every table and plot here; the rows that meet every budget come first, each part "
        "ranked by best val acc (ties: the shorter time to target). A budget is met, missed (✗), not measured "
        "(counts as not met) or n/a in a smoke run (accuracy, time to target, epochs to target).",
        f"- best val acc: highest validation accuracy over the epochs run; with repeats or folds, the mean "
        f"± sample std and a {100 * CONFIDENCE:.0f}% confidence interval (t distribution) over the finished trials.",
        "- report: the report's figure for that row, after its own epoch budget (fold 4 held out); on synthetic data "
        "only the shape, not the level, compares. diff: best val acc - report.",
        f"- epochs→target: first epoch whose val accuracy >= {info.goals.target_accuracy:.2f} (n/a: never reached); "
        "time→target: wall seconds from the start of training to the end of that epoch (validation included, "
        "the inference measurement not).",
        "- train img/s: training images over training seconds of epochs 2.. (validation excluded); epoch-1 img/s "
        "apart: it holds graph building. infer img/s: a timed loop of forward passes at a fixed batch of 32, "
        "after warm-up, once per trial after epoch 1 (outside every epoch's timings and energy).",
        "- single: the centre crop (the whole image where the policy does not crop), Keras's validation pass each "
        "epoch; over-sampled, only where the policy crops: the mean of the softmax outputs over the four corner "
        "crops and the centre crop of each image, and their horizontal mirrors where the policy flips "
        "horizontally (ten views, else five), measured at each trial's last epoch (its budget's, or "
        "the one its patience ends it at; not for trials ASHA stops). Both count a face as often as the protocol "
        "lists it.",
        "- weights MB: the bytes of the network's weights as stored (its .keras file adds a few kB of "
        "configuration); train s: the trial's wall seconds, validation included, the inference and over-sampled "
        "measurements not.",
        "- GFLOPs: forward FLOPs per image (a multiply-add = 2 FLOPs); n/a where the trial reported none.",
        f"- energy J: GPU energy over all epochs (training and validation), summed over the trial's GPUs: "
        f"{energy_note} mJ/img: that energy per training image seen.",
        "- MFU: training FLOPs per image x train img/s over the peak of the trial's device in its precision "
        f"({peak}). Training FLOPs count what trains: the forward pass, input gradients down to the first "
        "trainable layer, weight gradients of trainable layers (a frozen backbone's are not computed).",
        "",
    ]


def policy_line(trials: pd.DataFrame) -> str:
    """Each augmentation policy the trials used, with its one-line description."""
    if "policy_description" not in trials:
        return ""  # results written before policies described themselves
    pairs = trials[["policy", "policy_description"]].dropna().drop_duplicates("policy")
    return "; ".join(f"`{row.policy}`: {row.policy_description}" for row in pairs.itertuples(index=False))


def execution_line(trials: pd.DataFrame) -> str:
    """How the trials ran (backend, precision, XLA, where the images were), with counts where they differ."""
    if not set(EXECUTION_KEYS) <= set(trials.columns) or trials.empty:
        return ""
    said = trials[list(EXECUTION_KEYS)].fillna("").apply(_execution_words, axis=1)
    said = said[said != ""]
    counts = said.value_counts()
    if len(counts) == 1:
        return str(counts.index[0])
    return "; ".join(f"{text} ({count} trial{'s' if count > 1 else ''})" for text, count in counts.items())


def _execution_words(row) -> str:
    if not row["backend"]:
        return ""  # a trial that failed before it reported
    data = {"on": "images on the device", "off": "images streamed"}.get(row["data_on_device"], "")
    return ", ".join(filter(None, [f"{row['backend']} backend", row["precision"], f"XLA {row['jit']}", data]))


def render_leaderboard(info: RunInfo, trials: pd.DataFrame, plots: Sequence[tuple[str, str | None, str]] = ()) -> str:
    """The markdown of ``runs/<run-id>/LEADERBOARD.md``; ``plots``: (title, relative path or None, note)."""
    groups = groups_table(trials)
    smoke = info.preset == "smoke"
    ranked = ranked_rows(groups, info.goals, smoke)
    split = "5-fold cross-validation" if info.cv else "validation on fold 4, training on folds 0-3"
    lines = [
        f"# Leaderboard: {info.suite}",
        "",
        f"- run: `{info.run_id}`",
        f"- suite: {info.suite} ({info.suite_description})",
        f"- data: {info.data}",
        f"- preset: {info.preset}; {len(groups)} report row(s) x {info.repeats} seed(s); {split}",
    ]
    if policies := policy_line(trials):
        lines.append(f"- augmentation: {policies}")
    if info.protocol:
        lines.append(f"- protocol: {info.protocol}; faces: {info.counting}")
    lines.append(f"- environment: {info.environment or 'not recorded'}")
    if executions := execution_line(trials):
        lines.append(f"- executed as: {executions}")
    if info.nodes:
        lines.append(f"- **nodes differ from the driver**: {info.nodes}")
    if info.command:
        lines.append(f"- command: `{info.command}`")
    lines += ["", SMOKE_SENTENCE, ""] if smoke else [""]
    lines += answer_lines(ranked, info.goals, smoke)
    lines += [
        "## Accuracy",
        "",
        tabulate(accuracy_rows(ranked), headers=ACCURACY_HEADERS, tablefmt="github", disable_numparse=True),
        "",
        "## Cost",
        "",
        tabulate(cost_rows(ranked), headers=COST_HEADERS, tablefmt="github", disable_numparse=True),
        "",
    ]
    if (groups["n"] > 1).any():
        lines += [
            "### Trials",
            "",
            tabulate(trial_rows(trials), headers=TRIAL_HEADERS, tablefmt="github", disable_numparse=True),
            "",
        ]
    published = published_rows(groups)
    if published:
        note = "only the shape, not the level, compares on synthetic data" if info.synthetic else "same protocol"
        lines += [
            "## Against the published figures",
            "",
            tabulate(published, headers=PUBLISHED_HEADERS, tablefmt="github", disable_numparse=True),
            "",
            f"Ours at the last epoch run, beside the figure published for that row ({note}).",
            "",
        ]
    lines += ["## Stopped early, diverged or failed", ""]
    unfinished = trials[trials["status"] != STATUS_COMPLETED].sort_values("trial", kind="stable")
    if unfinished.empty:
        lines.append("None: every trial ran its whole epoch budget.")
    lines += [f"- `{row.trial}`: {row.status}: {row.reason}" for row in unfinished.itertuples(index=False)]
    lines.append("")
    restarted = trials[trials.get("attempts", pd.Series(1, index=trials.index)).gt(1)]
    if not restarted.empty:
        lines += ["## Restarted", ""]
        lines += [
            f"- `{row.trial}`: {row.attempts} attempts (a crash or a lost node; each restart goes on from the last "
            f"checkpoint), {row.epochs_lost} epoch(s) run again; its time to target counts every attempt's wall time"
            for row in restarted.itertuples(index=False)
        ]
        lines.append("")
    if plots:
        lines += ["## Plots", "", "Points are numbered as the rows of the tables above.", ""]
        for title, path, note in plots:
            if path is None:
                lines += [f"{title}: not drawn: {note}.", ""]
            else:
                lines += [f"### {title}", "", f"![{title}]({path})", ""] + ([note, ""] if note else [])
    lines += _definitions(info, trials)
    return "\n".join(lines).rstrip("\n") + "\n"


def write_leaderboard(info: RunInfo, trials: pd.DataFrame, path: Path, epochs: pd.DataFrame | None = None) -> Path:
    """LEADERBOARD.md at ``path``; with ``epochs``, the plots too (``plots/`` beside it)."""
    plots: list[tuple[str, str | None, str]] = []
    if epochs is not None:
        from bench.report import plots as plotting  # matplotlib: only where plots are drawn

        ranked = ranked_rows(groups_table(trials), info.goals, info.preset == "smoke")
        numbers = {row.group: number for number, row, _ in ranked}
        plots = plotting.write_plots(trials, epochs, info.goals, numbers, path.parent / PLOTS_DIR)
        plots = [(title, None if p is None else f"{PLOTS_DIR}/{p.name}", note) for title, p, note in plots]
    atomic_write_text(path, render_leaderboard(info, trials, plots))
    return path
