"""A run's results as TrialRecords: what Ray Tune's result grid holds, read without ray.

Each trial keeps its last attempt (a retried trial reports from epoch 1 again), its error
as one line, and why it stopped before its budget (the patience stopper's reason, or ASHA's).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from bench.measure import EPOCH_METRIC_KEYS
from bench.results import TrialRecord
from bench.specs import TrialSpec, apply_sample

STOP_REASONS_FILE = "stop_reasons.json"
ASHA_REASON = "ASHA: below its rung's cutoff"


def resolve_spec(config: dict) -> TrialSpec:
    """The concrete spec of a trial: its template plus Ray Tune's random-search draws."""
    spec = TrialSpec.from_dict(config["spec"])
    sampled = config.get("search") or {}
    return apply_sample(spec, sampled.get("learning_rate"), sampled.get("latent_size"))


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
    return one_line_error(f"{type(cause).__name__}: {cause}")


_ANSI = re.compile(r"\x1b\[[0-9;]*m|\[[0-9;]*m")
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Fault|Exit|Interrupt)\b")
_KERAS_NOISE = ("Arguments received", "•", "Traceback")


def one_line_error(text: str) -> str:
    """The line of ``text`` (an error message or a traceback) that says what went wrong.

    The last ``SomeError: ...`` line; when Keras wraps the error ("Exception encountered when
    calling ..."), the line that follows it holds the cause, and is kept beside it.
    """
    lines = [_ANSI.sub("", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    found = [index for index, line in enumerate(lines) if _EXCEPTION_LINE.match(line)]
    if not found:
        return lines[-1] if lines else ""
    index = found[-1]
    said = lines[index]
    following = [line for line in lines[index + 1 :] if not line.startswith(_KERAS_NOISE)]
    if following and (said.endswith(":") or "Exception encountered when calling" in said):
        said = f"{said} {following[0]}"
    return said


def last_attempt(rows: list[dict]) -> list[dict]:
    """The epochs of a trial's last attempt: a restarted trial reports from epoch 1 again."""
    attempt: list[dict] = []
    for row in rows:
        if attempt and row["epoch"] <= attempt[-1]["epoch"]:
            attempt = []
        attempt.append(row)
    return attempt


def records_from(grid, planned: Sequence[TrialSpec], stop_reasons: dict[str, str], asha: bool) -> list[TrialRecord]:
    """One TrialRecord per planned trial from Ray Tune's results: its last attempt's epochs, its
    error in one line, why it stopped early; a planned trial that never ran is a failed row."""
    records: list[TrialRecord] = []
    seen: set[str] = set()
    for result in grid:
        spec = resolve_spec(result.config)
        frame = result.metrics_dataframe
        rows: list[dict] = []
        if frame is not None and not frame.empty and "epoch" in frame.columns:
            columns = [key for key in (*EPOCH_METRIC_KEYS, "node_id") if key in frame.columns]
            frame = frame.dropna(subset=["epoch"])
            rows = [{**row, "epoch": int(row["epoch"])} for row in frame[columns].to_dict("records")]
        trial_id = (result.metrics or {}).get("trial_id")
        epochs = last_attempt(rows)
        stop_reason = stop_reasons.get(trial_id)
        if stop_reason is None and asha and epochs and len(epochs) < spec.epochs and result.error is None:
            stop_reason = ASHA_REASON
        records.append(
            TrialRecord(spec=spec, epochs=epochs, error=error_message(result.error), stop_reason=stop_reason)
        )
        seen.add(spec.name)
    for spec in planned:
        if spec.search_sample is None and spec.name not in seen:
            records.append(TrialRecord(spec=spec, error="trial did not run"))
    order = {spec.name: index for index, spec in enumerate(planned)}
    records.sort(key=lambda record: order.get(record.spec.name, len(order)))
    return records
