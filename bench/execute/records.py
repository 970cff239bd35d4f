"""A run's results as TrialRecords: what Ray Tune's result grid holds, read without ray.

Each trial keeps its last attempt (a retried trial reports from epoch 1 again), its error
as one line, and why it stopped before its budget (the patience stopper's reason, or ASHA's).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from bench.errors import error_line
from bench.execute.storage_faults import NOT_STORED
from bench.execute.trial_config import resolve_spec
from bench.report.results import TrialRecord
from bench.specs import TrialSpec
from bench.trial.measure import EPOCH_METRIC_KEYS

STOP_REASONS_FILE = "stop_reasons.json"
FATAL = "fatal_error"  # a trial's report of an error no retry mends (a bad model option, a missing dataset)
ASHA_REASON = "ASHA: below its rung's cutoff"


def read_stop_reasons(path: Path) -> dict[str, str]:
    """Why the patience stopper ended each trial, as it wrote them (by Ray's trial id)."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def error_message(error: BaseException | None) -> str | None:
    """A trial's error as one line: its cause's type and message (Ray wraps the trial's own error)."""
    if error is None:
        return None
    cause = getattr(error, "cause", None) or error
    return error_line(f"{type(cause).__name__}: {cause}")


def epochs_that_count(rows: list[dict]) -> tuple[list[dict], int, int]:
    """(the epochs that count, attempts, epochs lost) of a trial's reports in order.

    A restarted trial reports again from the epoch after its last checkpoint (from epoch 1
    without one): the epochs it redoes replace the earlier attempt's, which count as lost.
    Its reports carry their attempt; an attempt that ended before reporting is not seen.
    """
    kept: list[dict] = []
    attempts, lost = 1, 0
    for row in rows:
        if kept and row["epoch"] <= kept[-1]["epoch"]:
            attempts += 1
        attempt = row.get("attempt")
        attempts = max(attempts, int(attempt) if attempt == attempt and attempt is not None else 1)
        while kept and kept[-1]["epoch"] >= row["epoch"]:
            kept.pop()
            lost += 1
        kept.append(row)
    return kept, attempts, lost


def records_from(grid, planned: Sequence[TrialSpec], stop_reasons: dict[str, str], asha: bool) -> list[TrialRecord]:
    """One TrialRecord per planned trial from Ray Tune's results: its last attempt's epochs, its
    error in one line, why it stopped early; a planned trial that never ran is a failed row."""
    records: list[TrialRecord] = []
    seen: set[str] = set()
    for result in grid:
        spec = resolve_spec(result.config)
        frame = result.metrics_dataframe
        rows: list[dict] = []
        fatal = None
        if frame is not None and not frame.empty and "epoch" in frame.columns:
            if FATAL in frame.columns and frame[FATAL].notna().any():
                fatal = str(frame[FATAL].dropna().iloc[-1])
            # NOT_STORED: the epochs whose checkpoint a storage outage kept out (epochs.csv shows them)
            columns = [key for key in (*EPOCH_METRIC_KEYS, "node_id", NOT_STORED) if key in frame.columns]
            frame = frame.dropna(subset=["epoch"])
            frame = frame[frame["epoch"] >= 1]
            rows = [{**row, "epoch": int(row["epoch"])} for row in frame[columns].to_dict("records")]
        trial_id = (result.metrics or {}).get("trial_id")
        epochs, attempts, lost = epochs_that_count(rows)
        stop_reason = stop_reasons.get(trial_id)
        error = fatal or error_message(result.error)
        if stop_reason is None and asha and epochs and len(epochs) < spec.epochs and error is None:
            stop_reason = ASHA_REASON
        records.append(TrialRecord(spec, epochs, error, stop_reason, attempts=attempts, epochs_lost=lost))
        seen.add(spec.name)
    for spec in planned:
        if spec.search_sample is None and spec.name not in seen:
            records.append(TrialRecord(spec=spec, error="trial did not run"))
    order = {spec.name: index for index, spec in enumerate(planned)}
    records.sort(key=lambda record: order.get(record.spec.name, len(order)))
    return records
