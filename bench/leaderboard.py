"""Results -> LEADERBOARD.md and plots; goals checked; the cross-run board; two runs compared.

``runs/<run-id>/LEADERBOARD.md`` sets accuracy (with a confidence interval where a row was
repeated) beside the report's figure, convergence, throughput, size, energy and MFU, with
the suite's goals checked; ``runs/LEADERBOARD.md`` keeps the best row per suite, data and
model across runs. ``python -m bench.leaderboard --compare RUN_A RUN_B`` prints two runs
side by side and flags regressions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from bench.results import (
    CONFIDENCE,
    STATUS_COMPLETED,
    atomic_write_text,
    groups_table,
    read_table,
)

RUN_INFO_NAME = "run_info.json"
LEADERBOARD_NAME = "LEADERBOARD.md"
PLOTS_DIR = "plots"
CHECK, CROSS, NO_GOAL = "✓", "✗", "–"


# --------------------------------------------------------------------------- run and goals


@dataclass(frozen=True)
class Goals:
    """What a suite's leaderboard checks. ``accuracy`` None: each row's report figure."""

    target_accuracy: float  # epochs-to-target and time-to-target count to this
    accuracy: float | None = None
    params: int | None = None  # params <= this; None: no size goal
    epochs_to_target: int | None = None  # None: within the trial's own epoch budget

    def accuracy_goal(self, reference: float) -> float | None:
        if self.accuracy is not None:
            return self.accuracy
        return None if _missing(reference) else float(reference)

    def legend(self) -> str:
        accuracy = (
            f"best val accuracy >= {self.accuracy:.4f}"
            if self.accuracy is not None
            else "best val accuracy >= the report's figure for that row"
        )
        params = f"params <= {self.params:,}" if self.params is not None else "no size goal for this suite"
        epochs = (
            f"epochs-to-target <= {self.epochs_to_target}"
            if self.epochs_to_target is not None
            else "the target reached within the trial's epoch budget"
        )
        return (
            f"**Goals** (target val accuracy {self.target_accuracy:.2f}): acc goal: {accuracy}; size goal: {params}; "
            f"epochs goal: {epochs}. {CHECK} met, {CROSS} missed, {NO_GOAL} no goal or no figure."
        )


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


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def _number(value, fmt: str) -> str:
    return "n/a" if _missing(value) else format(value, fmt)


def _count(value) -> str:
    """An epoch count: whole, or a mean over repeats to one decimal."""
    return "n/a" if _missing(value) else (f"{value:g}" if float(value).is_integer() else f"{value:.1f}")


def _check(value, goal, *, at_most: bool) -> str:
    if goal is None or _missing(goal) or _missing(value):
        return NO_GOAL
    return CHECK if (value <= goal if at_most else value >= goal) else CROSS


def _hyperparameters(row) -> str:
    text = f"{row.optimizer} lr={row.learning_rate:g}" + (f" m={row.momentum:g}" if row.optimizer == "sgd" else "")
    text += f" bs={row.batch_size}"
    return text + (f" {row.model_options}" if row.model_options else "")


def _accuracy(row) -> str:
    if _missing(row.best_val_accuracy):
        return "n/a"
    if row.n_finished < 2:
        return f"{row.best_val_accuracy:.4f}"
    return (
        f"{row.best_val_accuracy:.4f} ± {row.best_val_accuracy_std:.4f} "
        f"[{row.best_val_accuracy_ci_low:.4f}, {row.best_val_accuracy_ci_high:.4f}] n={row.n_finished}"
    )


def _epochs_goal(row, goals: Goals) -> str:
    budget = goals.epochs_to_target if goals.epochs_to_target is not None else row.epochs_budget
    if row.n_finished == 0:
        return NO_GOAL
    # a repeated row meets the goal only if every finished trial reached the target in time
    if row.n_reached_target < row.n_finished:
        return CROSS
    return _check(row.epochs_to_target, budget, at_most=True)


def _energy(row) -> tuple[str, str]:
    """(J, mJ/img); marked where the trial shared its GPU: the figure then holds others' work too."""
    shared = " (shared GPU)" if row.gpu_shared == "yes" and not _missing(row.energy_j) else ""
    return _number(row.energy_j, ",.1f") + shared, _number(row.energy_mj_per_image, ",.2f") + shared


HEADERS = [
    "#",
    "trial",
    "model",
    "hyperparameters",
    "best val acc",
    "report",
    "diff",
    "epochs→target",
    "time→target s",
    "train img/s",
    "epoch-1 img/s",
    "infer img/s",
    "params",
    "GFLOPs",
    "energy J",
    "mJ/img",
    "MFU",
    "acc goal",
    "size goal",
    "epochs goal",
    "status",
]


def leaderboard_rows(groups: pd.DataFrame, goals: Goals) -> list[list[str]]:
    """One row per report row (its repeats summarised), best accuracy first."""
    ordered = groups.sort_values("best_val_accuracy", ascending=False, na_position="last", kind="stable")
    rows = []
    for rank, row in enumerate(ordered.itertuples(index=False), start=1):
        difference = row.best_val_accuracy - row.reference
        reached = (
            f" ({row.n_reached_target}/{row.n_finished})"
            if row.n_finished > 1 and not _missing(row.epochs_to_target)
            else ""
        )
        energy, energy_per_image = _energy(row)
        rows.append(
            [
                str(rank),
                row.group,
                row.model,
                _hyperparameters(row),
                _accuracy(row),
                _number(row.reference, ".4f"),
                _number(difference, "+.4f"),
                _count(row.epochs_to_target) + reached,
                _number(row.time_to_target_seconds, ",.1f"),
                _number(row.train_images_per_sec, ",.1f"),
                _number(row.first_epoch_images_per_sec, ",.1f"),
                _number(row.infer_images_per_sec, ",.1f"),
                _number(row.params, ",.0f"),
                _number(row.gflops_per_image, ".3f"),
                energy,
                energy_per_image,
                "n/a" if _missing(row.mfu) else f"{100 * row.mfu:.1f}%",
                _check(row.best_val_accuracy, goals.accuracy_goal(row.reference), at_most=False),
                _check(row.params, goals.params, at_most=True),
                _epochs_goal(row, goals),
                row.status,
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
            _number(row.val_fold, "g"),
            _number(row.best_val_accuracy, ".4f"),
            _number(row.epochs_to_target, "g"),
            _number(row.train_images_per_sec, ",.1f"),
            _number(row.energy_j, ",.1f"),
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
        "- GFLOPs: forward FLOPs per image (a multiply-add = 2 FLOPs); n/a where the trial reported none.",
        f"- energy J: GPU energy over all epochs (training and validation), summed over the trial's GPUs: "
        f"{energy_note} mJ/img: that energy per training image seen.",
        f"- MFU: 3 x forward FLOPs per image x train img/s over the device's peak ({peak}).",
        "",
    ]


def render_leaderboard(info: RunInfo, trials: pd.DataFrame, plots: Sequence[tuple[str, str | None, str]] = ()) -> str:
    """The markdown of ``runs/<run-id>/LEADERBOARD.md``; ``plots``: (title, relative path or None, note)."""
    groups = groups_table(trials)
    table = tabulate(leaderboard_rows(groups, info.goals), headers=HEADERS, tablefmt="github", disable_numparse=True)
    split = "5-fold cross-validation" if info.cv else "validation on fold 4, training on folds 0-3"
    lines = [
        f"# Leaderboard: {info.suite}",
        "",
        f"- run: `{info.run_id}`",
        f"- suite: {info.suite} ({info.suite_description})",
        f"- data: {info.data}",
        f"- preset: {info.preset}; {len(groups)} report row(s) x {info.repeats} seed(s); {split}",
        f"- environment: {info.environment or 'not recorded'}",
    ]
    if info.command:
        lines.append(f"- command: `{info.command}`")
    lines += ["", f"## Results: {info.suite}", "", table, "", info.goals.legend(), ""]
    if (groups["n"] > 1).any():
        lines += [
            "### Trials",
            "",
            tabulate(trial_rows(trials), headers=TRIAL_HEADERS, tablefmt="github", disable_numparse=True),
            "",
        ]
    lines += ["## Stopped early, diverged or failed", ""]
    unfinished = trials[trials["status"] != STATUS_COMPLETED].sort_values("trial", kind="stable")
    if unfinished.empty:
        lines.append("None: every trial ran its whole epoch budget.")
    lines += [f"- `{row.trial}`: {row.status}: {row.reason}" for row in unfinished.itertuples(index=False)]
    lines.append("")
    if plots:
        lines += ["## Plots", ""]
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
        from bench import plots as plotting  # matplotlib: only where plots are drawn

        plots = plotting.write_plots(trials, epochs, info.goals.target_accuracy, path.parent / PLOTS_DIR)
        plots = [(title, None if p is None else f"{PLOTS_DIR}/{p.name}", note) for title, p, note in plots]
    atomic_write_text(path, render_leaderboard(info, trials, plots))
    return path


# --------------------------------------------------------------------------- across runs


def _run_dirs(runs_dir: Path) -> list[Path]:
    return sorted(
        d
        for d in runs_dir.iterdir()
        if d.is_dir() and (d / RUN_INFO_NAME).is_file() and (d / "results.parquet").is_file()
    )


CROSS_RUN_HEADERS = [
    "suite",
    "data",
    "model",
    "row",
    "best val acc",
    "report",
    "diff",
    "epochs→target",
    "train img/s",
    "params",
    "energy J",
    "device",
    "preset",
    "run",
]


def render_cross_run_leaderboard(runs_dir: Path) -> str:
    """The best row per suite, data and model over every run under ``runs_dir``."""
    candidates = []
    for run_dir in _run_dirs(runs_dir):
        info = load_run_info(run_dir)
        groups = groups_table(read_table(run_dir / "results"))
        for row in groups.itertuples(index=False):
            if _missing(row.best_val_accuracy):
                continue
            candidates.append((info, run_dir, row))
    best: dict[tuple[str, str, str], tuple] = {}
    for info, run_dir, row in candidates:
        key = (info.suite, "synthetic" if info.synthetic else info.data, row.model)
        if key not in best or row.best_val_accuracy > best[key][2].best_val_accuracy:
            best[key] = (info, run_dir, row)
    rows = []
    for (suite, data, model), (info, run_dir, row) in sorted(best.items()):
        energy, _ = _energy(row)
        rows.append(
            [
                suite,
                data,
                model,
                row.group,
                _accuracy(row),
                _number(row.reference, ".4f"),
                _number(row.best_val_accuracy - row.reference, "+.4f"),
                _count(row.epochs_to_target),
                _number(row.train_images_per_sec, ",.1f"),
                _number(row.params, ",.0f"),
                energy,
                info.device or "n/a",
                info.preset,
                f"[{info.run_id}]({run_dir.name}/{LEADERBOARD_NAME})",
            ]
        )
    table = tabulate(rows, headers=CROSS_RUN_HEADERS, tablefmt="github", disable_numparse=True) if rows else "No runs."
    return "\n".join(
        [
            "# Leaderboard across runs",
            "",
            "The best row (highest best val accuracy) per suite, data and model over every run in this folder; "
            "synthetic and real data are kept apart. Each run's own LEADERBOARD.md has the definitions.",
            "",
            table,
            "",
        ]
    )


def write_cross_run_leaderboard(runs_dir: Path) -> Path:
    path = runs_dir / LEADERBOARD_NAME
    atomic_write_text(path, render_cross_run_leaderboard(runs_dir))
    return path


# --------------------------------------------------------------------------- two runs compared


@dataclass(frozen=True)
class Thresholds:
    """What counts as a regression from run A to run B."""

    accuracy_drop: float = 0.01  # absolute (1 pt)
    throughput_drop: float = 0.10  # relative
    energy_rise: float = 0.10  # relative


def _relative(a, b) -> float:
    return (b - a) / a if not (_missing(a) or _missing(b)) and a != 0 else math.nan


def compare_runs(run_a: Path, run_b: Path, thresholds: Thresholds = Thresholds()) -> tuple[str, int]:
    """(markdown, number of regressions): the two runs side by side per trial."""
    info_a, info_b = load_run_info(run_a), load_run_info(run_b)
    a = read_table(run_a / "results").set_index("trial")
    b = read_table(run_b / "results").set_index("trial")
    names = list(a.index) + [name for name in b.index if name not in a.index]
    rows, regressions = [], 0
    for name in names:
        if name not in a.index or name not in b.index:
            rows.append([name] + ["n/a"] * 10 + [f"only in {'A' if name in a.index else 'B'}"])
            continue
        ra, rb = a.loc[name], b.loc[name]
        d_acc = rb.best_val_accuracy - ra.best_val_accuracy
        d_train = _relative(ra.train_images_per_sec, rb.train_images_per_sec)
        d_infer = _relative(ra.infer_images_per_sec, rb.infer_images_per_sec)
        d_energy = _relative(ra.energy_j, rb.energy_j)
        flags = []
        if not _missing(d_acc) and d_acc < -thresholds.accuracy_drop:
            flags.append(f"accuracy {100 * d_acc:+.1f} pt")
        for label, change in (("train", d_train), ("inference", d_infer)):
            if not _missing(change) and change < -thresholds.throughput_drop:
                flags.append(f"{label} img/s {100 * change:+.0f}%")
        if not _missing(d_energy) and d_energy > thresholds.energy_rise:
            flags.append(f"energy {100 * d_energy:+.0f}%")
        if ra.status != rb.status and rb.status != STATUS_COMPLETED:
            flags.append(f"status {ra.status} -> {rb.status}")
        regressions += bool(flags)
        rows.append(
            [
                name,
                _number(ra.best_val_accuracy, ".4f"),
                _number(rb.best_val_accuracy, ".4f"),
                _number(100 * d_acc, "+.2f"),
                _number(ra.train_images_per_sec, ",.1f"),
                _number(rb.train_images_per_sec, ",.1f"),
                _number(100 * d_train, "+.1f"),
                _number(100 * d_infer, "+.1f"),
                _number(ra.energy_j, ",.1f"),
                _number(rb.energy_j, ",.1f"),
                _number(100 * d_energy, "+.1f"),
                ("REGRESSION: " + "; ".join(flags)) if flags else "ok",
            ]
        )
    headers = [
        "trial",
        "acc A",
        "acc B",
        "Δ acc pt",
        "train img/s A",
        "train img/s B",
        "Δ train %",
        "Δ infer %",
        "energy J A",
        "energy J B",
        "Δ energy %",
        "flag",
    ]
    lines = [
        f"# Compare {info_a.run_id} (A) with {info_b.run_id} (B)",
        "",
        f"- A: suite {info_a.suite}, preset {info_a.preset}, data {info_a.data}; {info_a.environment or 'n/a'}",
        f"- B: suite {info_b.suite}, preset {info_b.preset}, data {info_b.data}; {info_b.environment or 'n/a'}",
    ]
    if info_a.device != info_b.device:
        lines.append(
            f"- **devices differ** ({info_a.device or 'n/a'} vs {info_b.device or 'n/a'}): "
            "throughput and energy changes are not the code's alone"
        )
    if (info_a.data, info_a.preset) != (info_b.data, info_b.preset):
        lines.append("- **data or preset differ**: accuracy changes are not the code's alone")
    lines += [
        f"- regression: accuracy down more than {100 * thresholds.accuracy_drop:g} pt, train or inference img/s "
        f"down more than {100 * thresholds.throughput_drop:g}%, energy up more than {100 * thresholds.energy_rise:g}%, "
        "or a trial no longer completing",
        "",
        tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True),
        "",
        f"{regressions} regression(s).",
        "",
    ]
    return "\n".join(lines), regressions


# --------------------------------------------------------------------------- CLI


class _UsageError(Exception):
    pass


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise _UsageError(f"{message} (see python -m bench.leaderboard --help)")


def _resolve_run(name: str, runs_dir: Path) -> Path:
    for candidate in (Path(name), runs_dir / name):
        if candidate.is_dir():
            if not (candidate / RUN_INFO_NAME).is_file() or not (candidate / "results.parquet").is_file():
                raise _UsageError(f"{candidate} is not a finished run folder (no {RUN_INFO_NAME} or results.parquet)")
            return candidate
    raise _UsageError(f"run {name!r} not found (neither a folder nor a run id under {runs_dir})")


def main(argv: list[str] | None = None) -> int:
    parser = _ArgumentParser(prog="python -m bench.leaderboard", description=__doc__.splitlines()[0])
    parser.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="two run folders or run ids")
    parser.add_argument("--refresh", action="store_true", help="rewrite RUNS/LEADERBOARD.md from every run")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="the runs folder (default: ./runs)")
    parser.add_argument("--accuracy-drop", type=float, default=Thresholds.accuracy_drop, help="absolute, 0.01 = 1 pt")
    parser.add_argument("--throughput-drop", type=float, default=Thresholds.throughput_drop, help="relative")
    parser.add_argument("--energy-rise", type=float, default=Thresholds.energy_rise, help="relative")
    parser.add_argument("--fail-on-regression", action="store_true", help="exit 1 when a regression is flagged")
    try:
        args = parser.parse_args(argv)
        if not args.compare and not args.refresh:
            raise _UsageError("give --compare RUN_A RUN_B or --refresh (see python -m bench.leaderboard --help)")
        if args.refresh:
            if not args.runs.is_dir():
                raise _UsageError(f"runs folder {args.runs} does not exist")
            print(f"Leaderboard: {write_cross_run_leaderboard(args.runs)}")
        if args.compare:
            thresholds = Thresholds(args.accuracy_drop, args.throughput_drop, args.energy_rise)
            text, regressions = compare_runs(
                _resolve_run(args.compare[0], args.runs), _resolve_run(args.compare[1], args.runs), thresholds
            )
            print(text, end="")
            if regressions and args.fail_on_regression:
                return 1
    except _UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
