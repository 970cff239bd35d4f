"""Runs side by side: the board across every run (``runs/LEADERBOARD.md``) and two runs
compared trial by trial with regressions flagged (``python -m bench.compare``).

Both read what a run left in its folder (``run_info.json`` and ``results.parquet``), so they
work on runs made on other machines and by earlier versions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from bench.errors import OneLineArgumentParser, UsageError, one_line_errors
from bench.io import atomic_write_text, read_table
from bench.report.cells import format_accuracy, format_count, format_energy, format_number, missing
from bench.report.groups import groups_table
from bench.report.leaderboard import LEADERBOARD_NAME, RUN_INFO_NAME, load_run_info
from bench.report.results import STATUS_COMPLETED


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
            if missing(row.best_val_accuracy):
                continue
            candidates.append((info, run_dir, row))
    best: dict[tuple[str, str, str], tuple] = {}
    for info, run_dir, row in candidates:
        key = (info.suite, "synthetic" if info.synthetic else info.data, row.model)
        if key not in best or row.best_val_accuracy > best[key][2].best_val_accuracy:
            best[key] = (info, run_dir, row)
    rows = []
    for (suite, data, model), (info, run_dir, row) in sorted(best.items()):
        energy, _ = format_energy(row)
        rows.append(
            [
                suite,
                data,
                model,
                row.group,
                format_accuracy(row),
                format_number(row.reference, ".4f"),
                format_number(row.best_val_accuracy - row.reference, "+.4f"),
                format_count(row.epochs_to_target),
                format_number(row.train_images_per_sec, ",.1f"),
                format_number(row.params, ",.0f"),
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


@dataclass(frozen=True)
class Thresholds:
    """What counts as a regression from run A to run B."""

    accuracy_drop: float = 0.01  # absolute (1 pt)
    throughput_drop: float = 0.10  # relative
    energy_rise: float = 0.10  # relative


def _relative(a, b) -> float:
    return (b - a) / a if not (missing(a) or missing(b)) and a != 0 else math.nan


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
        if not missing(d_acc) and d_acc < -thresholds.accuracy_drop:
            flags.append(f"accuracy {100 * d_acc:+.1f} pt")
        for label, change in (("train", d_train), ("inference", d_infer)):
            if not missing(change) and change < -thresholds.throughput_drop:
                flags.append(f"{label} img/s {100 * change:+.0f}%")
        if not missing(d_energy) and d_energy > thresholds.energy_rise:
            flags.append(f"energy {100 * d_energy:+.0f}%")
        if ra.status != rb.status and rb.status != STATUS_COMPLETED:
            flags.append(f"status {ra.status} -> {rb.status}")
        regressions += bool(flags)
        rows.append(
            [
                name,
                format_number(ra.best_val_accuracy, ".4f"),
                format_number(rb.best_val_accuracy, ".4f"),
                format_number(100 * d_acc, "+.2f"),
                format_number(ra.train_images_per_sec, ",.1f"),
                format_number(rb.train_images_per_sec, ",.1f"),
                format_number(100 * d_train, "+.1f"),
                format_number(100 * d_infer, "+.1f"),
                format_number(ra.energy_j, ",.1f"),
                format_number(rb.energy_j, ",.1f"),
                format_number(100 * d_energy, "+.1f"),
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


def _resolve_run(name: str, runs_dir: Path) -> Path:
    for candidate in (Path(name), runs_dir / name):
        if candidate.is_dir():
            if not (candidate / RUN_INFO_NAME).is_file() or not (candidate / "results.parquet").is_file():
                raise UsageError(f"{candidate} is not a finished run folder (no {RUN_INFO_NAME} or results.parquet)")
            return candidate
    raise UsageError(f"run {name!r} not found (neither a folder nor a run id under {runs_dir})")


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(
        prog="python -m bench.compare",
        description="Compare two runs trial by trial and flag regressions, or rewrite the board across runs.",
    )
    parser.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="two run folders or run ids")
    parser.add_argument("--refresh", action="store_true", help="rewrite RUNS/LEADERBOARD.md from every run")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="the runs folder (default: ./runs)")
    parser.add_argument("--accuracy-drop", type=float, default=Thresholds.accuracy_drop, help="absolute, 0.01 = 1 pt")
    parser.add_argument("--throughput-drop", type=float, default=Thresholds.throughput_drop, help="relative")
    parser.add_argument("--energy-rise", type=float, default=Thresholds.energy_rise, help="relative")
    parser.add_argument("--fail-on-regression", action="store_true", help="exit 1 when a regression is flagged")
    return parser


def main(argv: list[str] | None = None) -> int:
    return one_line_errors(lambda: _main(argv))


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if not args.compare and not args.refresh:
        raise UsageError("give --compare RUN_A RUN_B or --refresh (see python -m bench.compare --help)")
    if args.refresh:
        if not args.runs.is_dir():
            raise UsageError(f"runs folder {args.runs} does not exist")
        print(f"Leaderboard: {write_cross_run_leaderboard(args.runs)}")
    if args.compare:
        thresholds = Thresholds(args.accuracy_drop, args.throughput_drop, args.energy_rise)
        text, regressions = compare_runs(
            _resolve_run(args.compare[0], args.runs), _resolve_run(args.compare[1], args.runs), thresholds
        )
        print(text, end="")
        if regressions and args.fail_on_regression:
            return 1
    return 0
