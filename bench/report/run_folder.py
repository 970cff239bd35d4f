"""A run's folder: made before the first trial, filled after the last one.

``new_run_dir`` names and creates ``runs/<run-id>/`` (after ``check_out_folder`` has refused
an unusable ``--out`` before any work). ``write_report`` writes what a user reads there:
the per-epoch and per-trial tables, ``run_info.json``, ``LEADERBOARD.md`` with its plots,
and the board across runs beside it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from bench.choices import EXECUTION_KEYS
from bench.errors import UsageError
from bench.io import atomic_write_text, write_table
from bench.plan.dataset import RunData
from bench.plan.planner import Plan, RunRequest
from bench.plan.storage import masked_argv
from bench.report.compare import write_cross_run_leaderboard
from bench.report.leaderboard import RunInfo, save_run_info, write_leaderboard
from bench.report.results import STATUS_FAILED, TrialRecord, epochs_table, trials_table
from bench.trial.env import NODE_FACTS, collect_manifest, node_facts, read_manifest, write_manifest
from bench.trial.mfu import measure_cpu_matmul_peak

RUN_FILE = "run.json"  # what a run was asked to do; --resume reads it back


def check_out_folder(out: Path) -> None:
    """Refuse an --out that is a file or lies in a folder this user cannot write, before any work."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder: name a folder for the runs")
    existing = next((folder for folder in (out, *out.absolute().parents) if folder.exists()), None)
    if existing is None or not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: cannot create folders in {existing}; name a folder you can write")


def new_run_dir(out: Path, suite: str) -> tuple[str, Path]:
    """(run id, folder): ``<date>-<time>-<suite>``, numbered where that folder exists already."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_id = f"{stamp}-{suite}"
    suffix = 1
    while (out / run_id).exists():
        suffix += 1
        run_id = f"{stamp}-{suite}-{suffix}"
    run_dir = out / run_id
    try:
        run_dir.mkdir(parents=True)
    except OSError as error:
        raise UsageError(f"cannot create the run folder {run_dir}: {error.strerror or error}") from None
    return run_id, run_dir


def start_run(out: Path, request: RunRequest, plan: Plan, argv: Sequence[str]) -> Path:
    """A new run folder holding the request (run.json) and the environment manifest."""
    _, run_dir = new_run_dir(out, plan.suite.name)
    seeds = sorted({spec.seed for spec in plan.all_specs})
    atomic_write_text(run_dir / RUN_FILE, request.to_json())
    peak = measure_cpu_matmul_peak()  # once per run: the MFU peak of CPU trials
    asked = {key: sorted({str(getattr(spec, key)) for spec in plan.all_specs}) for key in EXECUTION_KEYS[1:]}
    execution = {"backend": request.backend, **{key: ", ".join(values) for key, values in asked.items()}}
    write_manifest(
        collect_manifest(seeds=seeds, argv=masked_argv(argv), cpu_matmul_peak_flops=peak, execution=execution), run_dir
    )
    return run_dir


EXIT_TRIAL_FAILED = 3  # every trial that ran produced a result except these


@dataclass(frozen=True)
class Report:
    leaderboard: Path
    cross_run_leaderboard: Path
    summary: str  # one line: trials by status and the best one
    failed: int = 0  # trials without a result (failed, or never ran)
    warnings: tuple[str, ...] = ()  # e.g. nodes whose versions differ from the driver's

    def closing_lines(self) -> list[str]:
        """The run's last lines; the very last names the leaderboard."""
        failed = [f"{self.failed} trial(s) failed: the leaderboard lists them with their errors"] if self.failed else []
        return [
            *self.warnings,
            f"Across runs: {self.cross_run_leaderboard}",
            self.summary,
            *failed,
            f"Leaderboard: {self.leaderboard}",
        ]

    @property
    def exit_code(self) -> int:
        return EXIT_TRIAL_FAILED if self.failed else 0


def write_report(
    run_dir: Path, request: RunRequest, plan: Plan, data: RunData, records: Sequence[TrialRecord]
) -> Report:
    """Tables, run info, the run's leaderboard (plots included) and the board across runs."""
    manifest = read_manifest(run_dir)  # written when the run started; a resumed run keeps it
    trials = trials_table(
        list(records),
        target_accuracy=plan.suite.target_accuracy,
        cpu_peak_flops=manifest.cpu_matmul_peak_flops if manifest else None,
    )
    epochs = epochs_table(list(records))
    differences = node_differences(list(records))
    write_table(epochs, run_dir / "epochs")
    write_table(trials, run_dir / "results")
    info = RunInfo(
        run_id=run_dir.name,
        suite=plan.suite.name,
        suite_description=plan.suite.description,
        data=data.describe(),
        preset=request.preset,
        goals=plan.goals_for(request.synthetic),
        synthetic=request.synthetic,
        environment=manifest.summary() if manifest else "",
        device=manifest.device() if manifest else "",
        command=manifest.command if manifest else "",
        repeats=request.repeats,
        cv=request.cv or plan.protocol.cross_validation,
        protocol=data.protocol_line(plan.protocol),
        counting=data.counting(plan.protocol.keep_duplicates),
        nodes="; ".join(differences),
        class_names=tuple(data.cache.class_names),
        items=data.items,
    )
    save_run_info(info, run_dir)
    leaderboard = write_leaderboard(info, trials, run_dir / "LEADERBOARD.md", epochs=epochs)
    failed = int((trials["status"] == STATUS_FAILED).sum())
    cross_run = write_cross_run_leaderboard(run_dir.parent)
    return Report(leaderboard, cross_run, summary_line(trials, info.goals.metric_words), failed, tuple(differences))


def node_differences(records: list[TrialRecord]) -> list[str]:
    """One warning line per node whose host or versions differ from this driver's, by what differs."""
    driver = node_facts()
    seen: dict[tuple, list[str]] = {}
    for record in records:
        for epoch in record.epochs[:1]:
            facts = tuple((name, str(epoch.get(name, ""))) for name in NODE_FACTS)
            if any(value and value != driver[name] for name, value in facts if name != "node_host"):
                seen.setdefault(facts, []).append(record.spec.name)
    lines = []
    for facts, trials in seen.items():
        values = dict(facts)
        said = ", ".join(
            f"{name.removeprefix('node_')} {values[name]} (driver {driver[name]})"
            for name in NODE_FACTS
            if name != "node_host" and values[name] and values[name] != driver[name]
        )
        lines.append(
            f"warning: {len(trials)} trial(s) ran on {values['node_host']} with {said}: figures may not compare"
        )
    return lines


def summary_line(trials: pd.DataFrame, metric_words: str = "accuracy") -> str:
    counts = trials["status"].value_counts()
    parts = [f"{int(counts[status])} {status.replace('_', ' ')}" for status in counts.index]
    best = trials.dropna(subset=["best_score"]).sort_values("best_score", ascending=False)
    best_text = (
        f"; best {best.iloc[0]['trial']} at {metric_words} {best.iloc[0]['best_score']:.4f}" if len(best) else ""
    )
    return f"Done: {len(trials)} trial(s): {', '.join(parts)}{best_text}"
