"""benchmarks/gpu_check on this CPU: its DRY run prints one table with every planned row.

The GPU run itself cannot run here; DRY=1 runs the same code paths (each row trials through
``bench.trial.fit.run_trial`` in their own processes) at tiny sizes, the GPU fields n/a with the
reason printed.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu_check import settings as gpu_settings  # imports no Keras: the settings and the table only
from benchmarks.gpu_check import table as gpu_table

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO_ROOT / "benchmarks"
# words about tools outside the project: a user's instructions must not need them
OUTSIDE_WORDS = ("offline_wheels", "../shared", "carry=", "device call", "$OUT", ".whl", "run tool")


def run_dry(tmp_path: Path, *flags: str, timeout: float) -> tuple[subprocess.CompletedProcess, dict]:
    figures = tmp_path / "gpu_check.json"
    command = [sys.executable, "-m", "benchmarks.gpu_check", *flags, "--json", str(figures)]
    command += ["--log-dir", str(tmp_path / "logs")]
    result = subprocess.run(
        command, cwd=REPO_ROOT, env={**os.environ, "DRY": "1"}, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result, json.loads(figures.read_text())


def printed_table(stdout: str) -> list[dict[str, str]]:
    """The table's rows as {header: cell}; it must be the only table printed."""
    lines = [line for line in stdout.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == list(gpu_table.HEADERS)
    assert set(lines[1]) <= {"|", "-"}
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True)) for line in lines[2:]]


def epoch(number: int, seconds: float, images: int = 64, **figures) -> dict:
    return {
        "epoch": number,
        "epoch_seconds": seconds,
        "train_seconds": seconds / 2,
        "train_images": images,
        "train_images_per_sec": images / (seconds / 2),
        "precision": "bf16",
        "data_on_device": "on",
        "train_flops_per_image": 1e9,
        "flops_per_image": 3e8,
        **figures,
    }


def test_dry_settings_and_flags_override_them(monkeypatch):
    monkeypatch.setenv("DRY", "1")
    dry, _ = gpu_settings.parse_settings([])
    assert dry.dry and dry.input_size == 64 and dry.rows == gpu_settings.DRY_ROWS and dry.steady_epochs >= 1
    overridden, _ = gpu_settings.parse_settings(["--rows", "levi_hassner:fp32:stream:2", "--input-size", "96"])
    assert overridden.rows == (gpu_settings.RowPlan("levi_hassner", "fp32", "stream", 2),)
    assert overridden.input_size == 96
    monkeypatch.setenv("DRY", "0")
    gpu, _ = gpu_settings.parse_settings([])
    assert not gpu.dry and gpu.rows == gpu_settings.GPU_ROWS
    assert (gpu.input_size, gpu.batch_size, gpu.deadline) == (227, 32, 230.0)
    with pytest.raises(SystemExit):
        gpu_settings.parse_settings(["--epochs", "1"])  # no steady epoch after the first


def test_gpu_rows_hold_every_report_model_in_bf16_on_the_device_and_the_packing():
    rows = gpu_settings.GPU_ROWS
    alone = {(row.model, row.precision, row.data) for row in rows if row.trainers == 1}
    assert {(model, "bf16", "device") for model in gpu_settings.REPORT_MODELS} <= alone
    assert [row.trainers for row in rows if row.trainers > 1] == [2, 4]
    assert rows[0] == gpu_settings.RowPlan("levi_hassner", "bf16", "device")  # the packed rows' single trainer


def test_steady_figures_leave_the_first_epoch_out():
    row = gpu_table.Row.planned(gpu_settings.RowPlan("levi_hassner", "bf16", "device", 2), 227, 32)
    trainer = [epoch(1, 30.0), epoch(2, 0.5, power_w=300.0), epoch(3, 0.5, power_w=500.0)]
    peaks = {"datasheet": {"bf16": 1e12}, "measured": {"bf16": 5e11, "fp32": 1e11}}
    gpu_table.summarise(row, [trainer, trainer], peaks)
    assert row.status == "measured" and row.first_epoch_s == 30.0 and row.steady_epochs == 2
    # the trial's training seconds (half of each 0.5 s epoch here), summed over the trainers
    assert row.images_per_sec == pytest.approx(2 * 128 / 0.5)
    assert row.mfu_datasheet == pytest.approx(1e9 * 512 / 1e12) and row.mfu_measured == pytest.approx(1e9 * 512 / 5e11)
    assert row.mj_per_image == pytest.approx(1000 * 400 / 512)  # whole-GPU power over summed img/s
    assert row.step_ms == pytest.approx(1000 * 0.5 / 4)
    first_only = gpu_table.Row.planned(gpu_settings.RowPlan("levi_hassner", "bf16", "device"), 227, 32)
    gpu_table.summarise(first_only, [[epoch(1, 30.0)]], peaks)
    assert first_only.status == "failed" and first_only.images_per_sec is None


def test_table_lists_unmeasured_rows_with_their_reason():
    rows = [
        gpu_table.Row("levi_hassner", "bf16", "device", 1, 227, 32, status="measured", images_per_sec=1234.5),
        gpu_table.Row("levi_hassner", "bf16", "device", 4, 227, 32, status="skipped", note="needs ~80 s, 20 s left"),
    ]
    table = printed_table(gpu_table.format_table(rows))
    assert table[0]["train img/s"] == "1234.5" and table[0]["mJ/img"] == "n/a"
    assert table[1]["trainers"] == "4" and table[1]["status"] == "skipped: needs ~80 s, 20 s left"


def test_benchmarks_name_no_outside_tool_and_import_no_tests():
    for path in sorted(BENCHMARKS.rglob("*")):
        if (
            not path.is_file()
            or path.suffix not in (".py", ".md", ".toml", ".txt", ".sh")
            or "__pycache__" in path.parts
        ):
            continue
        text = path.read_text()
        for word in OUTSIDE_WORDS:
            assert word not in text, f"{path.relative_to(REPO_ROOT)} mentions {word!r}"
        if path.suffix == ".py" and "gpu_check" in path.parts:  # (benchmarks/data_per_node.py imports tests/)
            assert not re.search(r"^\s*(from|import)\s+tests\b", text, re.M), f"{path} imports tests/"


@pytest.mark.slow
@pytest.mark.backends  # CI runs it on TensorFlow and again on JAX (KERAS_BACKEND=jax)
def test_dry_run_measures_every_planned_row(tmp_path):
    # the DRY defaults (three Levi & Hassner rows, the last two trainers packed); a deadline far
    # off, so a busy CI machine cannot cut rows
    result, figures = run_dry(tmp_path, "--deadline", "900", timeout=1200)
    table = printed_table(result.stdout)
    planned = [(row.model, row.precision, row.data, str(row.trainers)) for row in gpu_settings.DRY_ROWS]
    assert [(r["model"], r["precision"], r["data"], r["trainers"]) for r in table] == planned
    for row in table:
        assert row["status"] == "measured", row
        assert float(row["train img/s"]) > 0 and float(row["first epoch s"]) > 0 and float(row["fwd GFLOP/img"]) > 0
        assert row["MFU % measured"] != "n/a"  # against the matrix-product peak of its precision measured here
    assert "DRY" in result.stdout and "run_trial" in result.stdout
    for row in gpu_settings.DRY_ROWS:  # each row's line as it was measured, before the table
        assert f"{row.label}: measured" in result.stdout
    assert set(figures["peaks"]["measured"]) == {"fp32", "bf16"}
    rows = figures["rows"]
    assert len(rows) == len(gpu_settings.DRY_ROWS) and figures["settings"]["dry"] and not figures["cut_by_deadline"]
    for row in rows:  # the steady epochs only: the first epoch's seconds apart
        assert all(len(trainer) == figures["settings"]["epochs"] for trainer in row["epochs"])
        assert row["steady_epochs"] == figures["settings"]["epochs"] - 1
        assert math.isfinite(row["first_epoch_s"]) and row["images"] > 0
    if not figures["peaks"]["device"]:  # no GPU here: the GPU fields n/a, with the reason
        assert "GPU figures n/a" in result.stdout
        assert all(row["mJ/img"] == "n/a" and row["MFU % datasheet"] == "n/a" for row in table)
        assert figures["peaks"]["datasheet_reason"] and all(row["nvml_reason"] for row in rows)


@pytest.mark.backends
def test_deadline_prints_every_planned_row_when_nothing_was_measured(tmp_path):
    flags = ("--rows", "levi_hassner:fp32:device", "levi_hassner:bf16:device:2", "--deadline", "4")
    result, figures = run_dry(tmp_path, *flags, timeout=120)
    table = printed_table(result.stdout)
    assert [(row["model"], row["trainers"]) for row in table] == [("levi_hassner", "1"), ("levi_hassner", "2")]
    assert not any(row["status"] == "measured" for row in table)
    assert all(row["status"].startswith(("not reached: deadline", "skipped")) for row in table)
    assert len(figures["rows"]) == 2 and figures["cut_by_deadline"]
