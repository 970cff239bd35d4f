"""The benchmark suite's plumbing: ``pytest --benchmark`` selects it, plain pytest skips it;
harness ratios judge their goals; the runner runs a no-op trial function."""

from __future__ import annotations

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
    median = HarnessRatio("overhead", 0.992, 0.99, True, "x", spread=0.031)
    assert "0.992 x, spread 0.031 (meets the goal >= 0.99 x)" in median.line()
    assert median.extra_info()["spread"] == 0.031
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
def test_runner_runs_noop_trials_through_ray(small_cache, tmp_path):
    from bench.execute.runner import run_trials
    from bench.specs import TrialSpec
    from benchmarks.harness import noop_trial

    specs = [TrialSpec(name=f"noop{index}", model="tiny_cnn", epochs=1, patience=None) for index in range(3)]
    records = run_trials(specs, cache=small_cache, run_dir=tmp_path, write=lambda line: None, trial_function=noop_trial)
    assert [record.error for record in records] == [None] * 3
    assert [[epoch["epoch"] for epoch in record.epochs] for record in records] == [[1]] * 3
    assert all(record.epochs[0]["train_seconds"] == 0.0 for record in records)


def test_overhead_profile_accounts_cpu_per_process_and_finds_stalls():
    from benchmarks import cpu_sampler as profile

    own = os.getpid()
    sampler = profile.CpuSampler()
    # (pid, tid, thread name, CPU seconds so far, cmdline): the trainer busy, then idle for 2 s, then busy
    trainer, raylet = 4242, 77
    cpu = [0.0, 1.0, 2.0, 2.0, 2.02, 3.0]
    sampler.samples = [
        (
            100.0 + second,
            [
                (trainer, trainer, "ray::_trainable", cpu[second] / 2, "ray::_trainable"),
                (trainer, trainer + 1, "ray::_trainable", cpu[second] / 2, "ray::_trainable"),
                (raylet, raylet, "raylet", 0.01 * second, "/venv/ray/core/src/ray/raylet/raylet --flags"),
                (own, own, "python", 0.02 * second, "python -m benchmarks.overhead_profile"),
            ],
        )
        for second in range(6)
    ]
    span, used = sampler.cpu_between(100.0, 105.0, {trainer})
    assert span == 5.0
    by_process = {}
    for thread in used:
        by_process[thread.process] = by_process.get(thread.process, 0.0) + thread.seconds
    assert by_process == pytest.approx({"trial worker": 3.0, "raylet": 0.05, "this driver": 0.1})
    assert sampler.stalled_seconds(100.0, 105.0, {trainer}) == pytest.approx(2.0)  # seconds 2-3 and 3-4
    assert sampler.stalled_seconds(100.0, 102.0, {trainer}) == 0.0
    main, worker = (profile.ThreadCpu(trainer, tid, "x", "ray::_trainable", 1.0) for tid in (trainer, trainer + 1))
    assert profile.thread_group(main, "ray::_trainable") == profile.MAIN_THREAD
    assert profile.thread_group(worker, "ray::_trainable") == profile.UNNAMED_THREADS


@pytest.mark.parametrize(
    ("cmdline", "expected"),
    [
        ("/venv/lib/ray/core/src/ray/gcs/gcs_server --redis", "gcs_server"),
        ("/venv/lib/ray/core/src/ray/raylet/raylet --node", "raylet"),
        ("python /venv/lib/python3.11/site-packages/ray/dashboard/agent.py", "other Ray processes"),
        ("ray::IDLE", "other Ray processes"),
        ("/usr/bin/dockerd", "everything else"),
    ],
)
def test_overhead_profile_names_the_processes_it_sees(cmdline, expected):
    from benchmarks.cpu_sampler import classify_process

    assert classify_process(10, cmdline, own_pid=1, trial_pids={2}) == expected
    assert classify_process(1, cmdline, own_pid=1, trial_pids={2}) == "this driver"
    assert classify_process(2, cmdline, own_pid=1, trial_pids={2}) == "trial worker"


def test_overhead_profile_reads_this_machines_threads():
    from benchmarks.cpu_sampler import read_threads

    if not os.path.isdir("/proc/self/task"):
        pytest.skip("the profile reads /proc (Linux only)")
    mine = [row for row in read_threads() if row[0] == os.getpid()]
    assert any(tid == os.getpid() for _pid, tid, _name, _seconds, _cmd in mine)
    assert all(seconds >= 0 for *_rest, seconds, _cmd in mine)


def test_asha_replay_follows_rays_rung_rule():
    from benchmarks.early_stopping import replay_asha, replay_orders

    curves = {"a": [0.6, 0.7, 0.8], "b": [0.5, 0.6, 0.9], "c": [0.7, 0.2, 0.1]}
    # rungs at epochs 1 and 3; the first trial passes unopposed, b is below a's 0.6 at epoch 1
    assert replay_asha(curves, ["a", "b", "c"], 1, 3, 3) == {"a": 3, "b": 1, "c": 3}
    # run first, b passes every rung; c clears epoch 1's cutoff (0.567 between 0.5 and 0.6)
    assert replay_asha(curves, ["b", "a", "c"], 1, 3, 3) == {"b": 3, "a": 3, "c": 3}
    assert replay_asha(curves, ["a", "b", "c"], 1, 3, 2) == {"a": 2, "b": 1, "c": 2}  # the budget caps a curve
    figures = replay_orders(curves, 3, orders=20)
    assert figures["replayed_orders"] == 20
    assert 0 < figures["replayed_share_median"] <= figures["replayed_share_max"] <= 1
    assert 0 <= figures["replayed_orders_meeting_both_goals"] <= figures["replayed_orders_within_1pt"] <= 1
