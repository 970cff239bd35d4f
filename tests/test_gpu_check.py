"""benchmarks/gpu_check.py on this CPU: its DRY=1 run prints one table with every planned row.

The GPU run itself (an H200, one device call) cannot run here; DRY=1 runs the same code
paths at tiny sizes, with the GPU fields n/a and the reason printed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check  # imports no Keras: the settings and the table only

REPO_ROOT = Path(__file__).resolve().parent.parent

HEADERS = [header for header, _ in gpu_check.COLUMNS]


def run_dry(tmp_path: Path, *flags: str, timeout: float) -> tuple[subprocess.CompletedProcess, dict]:
    figures = tmp_path / "gpu_check.json"
    command = [sys.executable, "benchmarks/gpu_check.py", *flags, "--json", str(figures)]
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
    assert header == HEADERS
    assert set(lines[1]) <= {"|", "-"}
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True)) for line in lines[2:]]


def test_dry_settings_and_flags_override_them(monkeypatch):
    monkeypatch.setenv("DRY", "1")
    dry, _ = gpu_check.parse_settings([])
    assert dry.dry and dry.input_size == 64 and dry.models == ("levi_hassner", "mobilenet_v3_large")
    assert dry.precisions == ("fp32", "bf16") and dry.data == ("stream", "device") and dry.pack == (1, 2)
    assert dry.thin  # MobileNetV3Large in one row: minutes of compiling on 2 cores per row
    overridden, _ = gpu_check.parse_settings(["--models", "levi_hassner", "--pack", "2", "--input-size", "96"])
    assert overridden.models == ("levi_hassner",) and overridden.pack == (2,) and overridden.input_size == 96
    monkeypatch.setenv("DRY", "0")
    gpu, _ = gpu_check.parse_settings([])
    assert not gpu.dry and not gpu.thin and gpu.models == gpu_check.REPORT_MODELS and gpu.pack == (1, 2, 4)
    assert (gpu.input_size, gpu.batch_size, gpu.deadline) == (227, 32, 420.0)


def test_table_lists_unmeasured_rows_with_their_reason():
    rows = [
        gpu_check.Row("alone", "levi_hassner", "bf16", "device", 1, 227, 32, status="measured", images_per_sec=1234.5),
        gpu_check.Row("packed", "levi_hassner", "auto", "auto", 4, 227, 32, status="skipped", note="deadline"),
    ]
    table = printed_table(gpu_check.format_table(rows))
    assert table[0]["train img/s"] == "1234.5" and table[0]["mJ/img"] == "n/a"
    assert table[1]["trainers"] == "4" and table[1]["status"] == "skipped: deadline"


@pytest.mark.slow
@pytest.mark.backends  # CI runs it on TensorFlow and again on JAX (KERAS_BACKEND=jax)
def test_each_row_is_measured_against_the_peak_of_its_own_precision():
    """An fp32 row against the TF32 peak and the fp32 matmul's, a bf16 row against bf16's."""
    from types import SimpleNamespace

    peaks = gpu_check.Peaks(
        datasheet={"fp32": {"flops": 494.7e12, "source": "TF32"}, "bf16": {"flops": 989.4e12, "source": "bf16"}},
        measured={"fp32": {"flops": 400e12, "source": "matmul"}, "bf16": {"flops": 700e12, "source": "matmul"}},
    )
    run = SimpleNamespace(peaks=peaks)
    reading = SimpleNamespace(power_w_mean=None, gpu_util_mean=None, energy_j=None, energy_source=None, reason="")
    timed = [{"images": 10_000, "steps": 100, "seconds": 1.0, "peak_memory_bytes": None}]
    mfu = {}
    for precision in ("fp32", "bf16"):
        row = gpu_check.Row("alone", "levi_hassner", precision, "stream", 1, 227, 100, train_flops_per_image=3.9e9)
        gpu_check.Run.fill(run, row, timed, reading)
        mfu[precision] = (row.mfu_datasheet, row.mfu_measured)
    assert mfu["fp32"] == (pytest.approx(3.9e9 * 10_000 / 494.7e12), pytest.approx(3.9e9 * 10_000 / 400e12))
    assert mfu["bf16"] == (pytest.approx(3.9e9 * 10_000 / 989.4e12), pytest.approx(3.9e9 * 10_000 / 700e12))


def test_dry_run_measures_every_row_of_the_table(tmp_path):
    # Levi & Hassner only (DRY=1's default adds MobileNetV3Large, minutes on 2 cores); a
    # deadline far off, so a busy CI machine cannot cut rows
    flags = ("--models", "levi_hassner", "--pack", "1", "2", "--jobs", "6", "--deadline", "900")
    result, figures = run_dry(tmp_path, *flags, timeout=1200)
    table = printed_table(result.stdout)
    expected = [("levi_hassner", p, d, "1") for p in ("fp32", "bf16") for d in ("stream", "device")]
    assert [(r["model"], r["precision"], r["data"], r["trainers"]) for r in table[:4]] == expected
    packed = table[4:]
    assert [(r["model"], r["trainers"]) for r in packed] == [("levi_hassner", "1"), ("levi_hassner", "2")]
    # the packed trainers resolve auto as a trial does
    assert all(r["precision"] in ("fp32", "bf16") and r["data"] in ("stream", "device") for r in packed)
    for row in table:
        assert row["status"] == "measured", row
        assert float(row["train img/s"]) > 0 and float(row["compile s"]) > 0 and float(row["fwd GFLOP/img"]) > 0
        assert row["MFU % measured"] != "n/a"  # against the matrix-product peak of its precision measured here
    assert "matmul peaks measured: fp32 " in result.stdout and "DRY" in result.stdout
    assert set(figures["peaks"]["measured"]) == {"fp32", "bf16"}
    rows = figures["rows"]
    assert len(rows) == 6 and figures["settings"]["dry"] and not figures["cut_by_deadline"]
    assert [row["section"] for row in rows] == ["alone"] * 4 + ["packed"] * 2
    if not figures["peaks"]["device"]:  # no GPU here: the GPU fields n/a, with the reason
        assert "GPU figures n/a" in result.stdout
        assert all(row["mJ/img"] == "n/a" and row["MFU % datasheet"] == "n/a" for row in table)
        assert figures["peaks"]["datasheet_reason"] and all(row["nvml_reason"] for row in rows)


@pytest.mark.backends
def test_deadline_prints_every_planned_row_when_nothing_was_measured(tmp_path):
    flags = ("--models", "levi_hassner", "--precisions", "fp32", "--data", "device", "--pack", "1")
    result, figures = run_dry(tmp_path, *flags, "--deadline", "4", timeout=120)
    table = printed_table(result.stdout)
    assert [(row["model"], row["trainers"]) for row in table] == [("levi_hassner", "1")] * 2
    assert not any(row["status"] == "measured" for row in table)
    assert len(figures["rows"]) == 2


@pytest.mark.parametrize(
    ("flags", "alone", "workers"),
    [
        ([], 16, 20),  # the GPU run: 4 models x fp32/bf16 x stream/device, and 4 packed trainers
        (["--dry"], 5, 7),  # DRY: Levi & Hassner's four rows and MobileNetV3Large's bf16 device row
    ],
)
def test_planned_rows(flags, alone, workers, tmp_path, monkeypatch):
    monkeypatch.delenv("DRY", raising=False)
    settings, _ = gpu_check.parse_settings(flags)
    run = gpu_check.Run(settings, None, tmp_path, flags)
    try:
        assert [row.section for row in run.rows] == ["alone"] * alone + ["packed"] * len(settings.pack)
        assert len(run.workers) == workers and not any(w.process.is_alive() for w in run.workers)
        assert [row.trainers for row in run.rows[alone:]] == list(settings.pack)
        assert {(row.model, row.precision, row.data) for row in run.rows[:alone]} >= {
            ("levi_hassner", "fp32", "stream"),
            ("levi_hassner", "bf16", "device"),
            ("mobilenet_v3_large", "bf16", "device"),
        }
    finally:
        for worker in run.workers:
            worker.connection.close()
            worker._child.close()
