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
from bench.report.answer import SMOKE_SENTENCE, Ranked, answer_lines, budget_cell, ranked_rows
from bench.report.cells import (
    format_accuracy,
    format_count,
    format_energy,
    format_number,
    format_published,
    hyperparameters,
    missing,
)
from bench.report.definitions import definition_lines
from bench.report.groups import groups_table, with_earlier_defaults
from bench.report.per_class import per_class_lines
from bench.report.results import STATUS_COMPLETED

RUN_INFO_NAME = "run_info.json"
LEADERBOARD_NAME = "LEADERBOARD.md"
PLOTS_DIR = "plots"
NO_GOAL = "–"
BoardPlot = tuple[str, str | None, str]  # (title, path relative to the board or None when not drawn, note)


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
    counting: str = ""  # how the images were counted (each once, or every listed line)
    nodes: str = ""  # nodes whose versions differ from the driver's ("" when none do)
    class_names: tuple[str, ...] = ()  # label index -> name
    items: str = "faces"  # what the data holds, in words: faces (Adience, the synthetic faces) or images

    @property
    def smoke(self) -> bool:
        return self.preset == "smoke"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RunInfo:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in values.items() if key in known}
        classes = tuple(values.get("class_names", ()))
        return cls(**{**values, "goals": Goals(**values["goals"]), "class_names": classes})


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


COST_HEADERS = ["#", "row", "train img/s", "epoch-1 img/s", "infer img/s", "latency p50 ms", "p99 ms", "params"]
COST_HEADERS += ["weights MB", "GFLOPs", "train s", "energy J", "mJ/img", "MFU"]


def accuracy_table(ranked, goals: Goals, class_names: Sequence[str]) -> str:
    """The scores of each row: the ranking metric's (with its spread over repeats), the other
    scores, per-class recall (up to RECALL_CELL_CLASSES classes), the published figure where
    there is one, the way to the target, the over-sampled accuracy where measured, the budget."""
    rows = [row for _, row, _ in ranked]
    columns = [("#", lambda n, row, v: str(n)), ("row", lambda n, row, v: row.group)]
    columns += [("model", lambda n, row, v: row.model), ("hyperparameters", lambda n, row, v: hyperparameters(row))]
    columns.append((f"best val {goals.metric_words}", lambda n, row, v: format_accuracy(row, "best_score")))
    for metric, header in (("accuracy", "val acc"), ("balanced_accuracy", "bal acc"), ("macro_f1", "macro-F1")):
        if metric != goals.metric:
            columns.append((header, lambda n, row, v, m=metric: format_number(getattr(row, f"best_val_{m}"), ".4f")))
    if 0 < len(class_names) <= RECALL_CELL_CLASSES:
        columns.append(("recall per class", lambda n, row, v: recall_cell(row, class_names)))
    if any(not missing(row.reference) for row in rows):
        columns.append(("report", lambda n, row, v: format_number(row.reference, ".4f")))
        columns.append(("diff", lambda n, row, v: format_number(row.best_val_accuracy - row.reference, "+.4f")))
    columns += [
        ("epochs→target", lambda n, row, v: format_count(row.epochs_to_target) + _reached(row)),
        ("time→target s", lambda n, row, v: format_number(row.time_to_target_seconds, ",.1f")),
    ]
    if any(not missing(row.final_val_accuracy_oversampled) for row in rows):
        columns.append(("over-sampled (last)", lambda n, row, v: oversampled_cell(row)))
    columns += [(f"{goals.metric_words} budget", _budget_cell), ("status", lambda n, row, v: row.status)]
    table = [[cell(number, row, verdicts) for _, cell in columns] for number, row, verdicts in ranked]
    return tabulate(table, headers=[header for header, _ in columns], tablefmt="github", disable_numparse=True)


RECALL_CELL_CLASSES = 4  # more classes: per-class recall in the per-class section only


def _reached(row) -> str:
    """How many of a repeated row's finished trials reached the target."""
    if row.n_finished > 1 and not missing(row.epochs_to_target):
        return f" ({row.n_reached_target}/{row.n_finished})"
    return ""


def _budget_cell(number, row, verdicts) -> str:
    verdict = next((v for v in verdicts if v.budget.name == "accuracy"), None)
    return NO_GOAL if verdict is None or row.n_finished == 0 else budget_cell(verdict)


def recall_cell(row, class_names: Sequence[str]) -> str:
    """``male 0.8123, female 0.7712``: the recall of each class at the row's best epoch."""
    recall = json.loads(row.val_class_recall) if row.val_class_recall else []
    if len(recall) != len(class_names):
        return "n/a"
    return ", ".join(f"{name} {format_number(value, '.4f')}" for name, value in zip(class_names, recall, strict=True))


def oversampled_cell(row) -> str:
    """The last epoch's over-sampled accuracy; a smoke run's says on how many faces."""
    cell = format_accuracy(row, "final_val_accuracy_oversampled")
    if _smoke(row) and not missing(row.oversampled_faces) and cell != "n/a":
        return f"{cell} (smoke: {row.oversampled_faces:.0f} faces)"
    return cell


def _smoke(row) -> bool:
    """Whether the row's trials took SMOKE_MEASURES (a results table of an earlier version: no)."""
    value = getattr(row, "smoke_measures", False)
    return not missing(value) and bool(value)


def _smoke_batches(row) -> str:
    """A smoke run's inference figure is timed over the fewest batches: said beside it."""
    if not _smoke(row) or missing(row.infer_batches):
        return ""
    return f" (smoke: {row.infer_batches:.0f} batch{'es' if row.infer_batches > 1 else ''})"


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
                format_number(row.infer_images_per_sec, ",.1f") + _smoke_batches(row),
                format_number(row.latency_ms_p50, ",.2f"),
                format_number(row.latency_ms_p99, ",.2f"),
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
            format_number(row.best_score, ".4f"),
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
    "best val score",  # the ranking metric's: render_leaderboard names it
    "epochs→target",
    "train img/s",
    "energy J",
    "status",
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


def render_leaderboard(info: RunInfo, trials: pd.DataFrame, plots: Sequence[BoardPlot] = ()) -> str:
    """The markdown of ``runs/<run-id>/LEADERBOARD.md`` beside its ``plots``."""
    return _render(info, *_summarised(info, trials), plots)


def _summarised(info: RunInfo, trials: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, Ranked]:
    """(trials, their report rows, the rows ranked): computed once for a board, its tables and its plots."""
    trials = with_earlier_defaults(trials)  # a results table an earlier version wrote reads as it meant
    groups = groups_table(trials)
    return trials, groups, ranked_rows(groups, info.goals, info.smoke)


def _render(
    info: RunInfo, trials: pd.DataFrame, groups: pd.DataFrame, ranked: Ranked, plots: Sequence[BoardPlot]
) -> str:
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
        lines.append(f"- protocol: {info.protocol}; {info.items}: {info.counting}")
    lines.append(f"- environment: {info.environment or 'not recorded'}")
    if executions := execution_line(trials):
        lines.append(f"- executed as: {executions}")
    if info.nodes:
        lines.append(f"- **nodes differ from the driver**: {info.nodes}")
    if info.command:
        lines.append(f"- command: `{info.command}`")
    lines += ["", SMOKE_SENTENCE, ""] if info.smoke else [""]
    lines += answer_lines(ranked, info.goals, info.smoke)
    lines += [
        "## Accuracy",
        "",
        accuracy_table(ranked, info.goals, info.class_names),
        "",
        "## Cost",
        "",
        tabulate(cost_rows(ranked), headers=COST_HEADERS, tablefmt="github", disable_numparse=True),
        "",
    ]
    if (groups["n"] > 1).any():
        score = f"best val {info.goals.metric_words}"
        trial_headers = [score if header == "best val score" else header for header in TRIAL_HEADERS]
        lines += [
            "### Trials",
            "",
            tabulate(trial_rows(trials), headers=trial_headers, tablefmt="github", disable_numparse=True),
            "",
        ]
    lines += per_class_lines(ranked, info.class_names)
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
    lines += definition_lines(info.goals, info.items, trials)
    return "\n".join(lines).rstrip("\n") + "\n"


def write_leaderboard(info: RunInfo, trials: pd.DataFrame, path: Path, epochs: pd.DataFrame | None = None) -> Path:
    """LEADERBOARD.md at ``path``; with ``epochs``, the plots too (``plots/`` beside it)."""
    trials, groups, ranked = _summarised(info, trials)
    plots: list[BoardPlot] = []
    if epochs is not None:
        from bench.report import plots as plotting  # matplotlib: only where plots are drawn

        numbers = {row.group: number for number, row, _ in ranked}
        out_dir = path.parent / PLOTS_DIR
        plots = plotting.write_plots(trials, epochs, info.goals, numbers, out_dir, info.class_names, groups)
        plots = [(title, None if p is None else f"{PLOTS_DIR}/{p.name}", note) for title, p, note in plots]
    atomic_write_text(path, _render(info, trials, groups, ranked, plots))
    return path
