"""The benchmark suite's plumbing: ``pytest --benchmark`` selects it, plain pytest skips it;
harness ratios judge their goals; the runner runs a no-op trial function."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def _pytest(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )


def _collected(output: str) -> list[str]:
    return [line for line in output.splitlines() if "::" in line]


def test_benchmark_option_collects_the_benchmarks_only():
    result = _pytest("--benchmark", "--collect-only", "-q")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    collected = _collected(result.stdout)
    assert collected and all(line.startswith("benchmarks/") for line in collected)
    assert any("test_train_step[levi_hassner]" in line for line in collected)
    assert any("test_scheduling_overhead_per_noop_trial" in line for line in collected)


def test_plain_pytest_collects_no_benchmark_and_skips_one_pointed_at():
    plain = _pytest("--collect-only", "-q")
    assert plain.returncode == 0, plain.stdout[-2000:] + plain.stderr[-2000:]
    assert not [line for line in _collected(plain.stdout) if line.startswith("benchmarks/")]
    pointed = _pytest("-q", "-rs", "benchmarks/test_model_throughput.py", "-k", "tiny_cnn")
    assert pointed.returncode == 0, pointed.stdout[-2000:] + pointed.stderr[-2000:]
    assert "2 skipped" in pointed.stdout and "run it with pytest --benchmark" in pointed.stdout


def test_harness_ratio_judges_its_goal_in_either_direction():
    from benchmarks.harness import HarnessRatio

    assert HarnessRatio("x", 0.98, 0.97, True, "x").met
    assert not HarnessRatio("x", 0.96, 0.97, True, "x").met
    assert HarnessRatio("s", 0.2, 0.5, False, "s").met
    missed = HarnessRatio("share", 0.4, 0.35, False, "share", {"asha_epochs": 4})
    assert not missed.met and "MISSES the goal <= 0.35 share" in missed.line()
    assert missed.extra_info() == {
        "ratio": 0.4,
        "goal": 0.35,
        "goal_met": False,
        "unit": "share",
        "higher_is_better": False,
        "asha_epochs": 4,
    }


@pytest.mark.slow
def test_runner_runs_noop_trials_through_ray(small_synthetic, tmp_path):
    from bench.runner import run_trials
    from bench.specs import TrialSpec
    from benchmarks.harness import noop_trial

    specs = [TrialSpec(name=f"noop{index}", model="tiny_cnn", epochs=1, patience=None) for index in range(3)]
    records = run_trials(
        specs, data_root=small_synthetic, run_dir=tmp_path, write=lambda line: None, trial_function=noop_trial
    )
    assert [record.error for record in records] == [None] * 3
    assert [[epoch["epoch"] for epoch in record.epochs] for record in records] == [[1]] * 3
    assert all(record.epochs[0]["train_seconds"] == 0.0 for record in records)


@pytest.mark.slow
def test_gpu_check_script_runs_on_a_cpu_and_writes_its_figures(tmp_path):
    figures = tmp_path / "gpu_check.json"
    command = [sys.executable, "benchmarks/gpu_check.py", "--models", "tiny_cnn", "--input-size", "64"]
    command += ["--batch-size", "4", "--warmup", "1", "--steps", "2", "--min-seconds", "0.2", "--pack", "1", "2"]
    result = subprocess.run(
        [*command, "--json", str(figures)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    written = json.loads(figures.read_text())
    assert [row["model"] for row in written["alone"]] == ["tiny_cnn"]
    assert [row["trainers"] for row in written["packed"]] == [1, 2]
    assert all(row["images_per_sec"] > 0 for row in written["alone"] + written["packed"])
    if not written["manifest"]["gpus"]:
        assert "GPU figures n/a" in result.stdout and written["alone"][0]["mj_per_image"] is None
