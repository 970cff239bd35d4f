"""Scheduling with Ray Tune: resources, packing, early stopping, resume and clusters."""

import contextlib
import functools
import json
import math
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from bench.errors import RunnerError, UsageError
from bench.execute.records import epochs_that_count
from bench.execute.resources import NodeCapacity, check_address, plan_node_resources, plan_resources
from bench.execute.runner import PatienceStopper, run_trials
from bench.plan.planner import Scheduling
from bench.specs import RandomSearch, SpecError, apply_sample
from bench.trial.fit import run_trial
from tests.conftest import REPO_ROOT
from tests.conftest import tiny_spec as tiny


@pytest.mark.parametrize(
    ("cpus", "gpus", "max_concurrent", "share", "expected"),
    [
        (2, 0, None, None, (2, 0, 1)),  # CPU: one trial at a time on every core
        (2, 0, 2, None, (1, 0, 2)),
        (16, 1, None, 0.25, (4, 0.25, 4)),  # four trials packed on one GPU
        (16, 2, None, None, (8, 1, 2)),  # a whole GPU each by default
        (16, 1, 2, 0.25, (8, 0.25, 2)),  # --max-concurrent caps the packing
        (2, 1, None, 0.25, (0.5, 0.25, 4)),
    ],
)
def test_plan_resources(cpus, gpus, max_concurrent, share, expected):
    planned = plan_resources(cpus, gpus, max_concurrent, share)
    assert (planned.cpus_per_trial, planned.gpus_per_trial, planned.max_concurrent) == expected


def test_bad_gpu_requests():
    with pytest.raises(SpecError, match="gpus_per_trial must be in \\(0, 1\\]"):
        Scheduling(gpus_per_trial=1.5)
    with pytest.raises(RunnerError, match="more GPU than the 0"):
        plan_resources(4, 0, None, 0.5)


def test_patience_stopper_counts_epochs_without_gain(tmp_path):
    stopper = PatienceStopper(tmp_path / "reasons.json")
    curve = [0.5, 0.6, 0.6, 0.59, 0.6]
    decisions = [stopper("t1", {"epoch": e, "val_accuracy": a, "patience": 3}) for e, a in enumerate(curve, start=1)]
    assert decisions == [False, False, False, False, True]
    assert "no val accuracy gain in 3 epochs" in stopper.reasons["t1"]
    assert "t1" in (tmp_path / "reasons.json").read_text()
    assert not stopper("t2", {"epoch": 1, "val_accuracy": 0.5, "patience": math.nan})


def test_last_attempt_keeps_the_restarted_run_only():
    rows = [{"epoch": 1}, {"epoch": 2}, {"epoch": 1, "x": 1}, {"epoch": 2, "x": 1}, {"epoch": 3, "x": 1}]
    assert epochs_that_count(rows) == (rows[2:], 2, 2)
    # restarted from its checkpoint after epoch 2: epoch 3 ran twice, epochs 1-2 count from the first attempt
    resumed = [{"epoch": 1}, {"epoch": 2}, {"epoch": 3}, {"epoch": 3, "x": 1}, {"epoch": 4, "x": 1}]
    assert epochs_that_count(resumed) == ([resumed[0], resumed[1], resumed[3], resumed[4]], 2, 1)
    # the reports say their attempt: the second ended before it reported, the third went on from epoch 1's checkpoint
    third = [{"epoch": 1, "attempt": 1}, {"epoch": 2, "attempt": 3}]
    assert epochs_that_count(third) == (third, 3, 0)


@pytest.mark.parametrize(
    ("nodes", "max_concurrent", "share", "expected"),
    [
        ([(0, 0), (2, 0), (2, 0)], None, None, (2, 0, 2, 2)),  # a CPU-less head; each trial a whole worker
        ([(0, 0), (4, 0), (2, 0)], None, None, (2, 0, 3, 2)),  # sized to the smallest: 4 CPUs would not fit it
        ([(8, 1), (16, 2)], None, None, (8, 1, 3, 2)),  # a GPU each, the CPUs of the smallest GPU node's share
        ([(8, 1), (16, 2)], 2, 0.5, (4, 0.5, 2, 2)),
        ([(0, 0), (6, 0)], None, None, (6, 0, 1, 1)),  # one node that holds trials: as on one machine
    ],
)
def test_trials_are_sized_to_fit_on_one_node(nodes, max_concurrent, share, expected):
    planned = plan_node_resources([NodeCapacity(c, g) for c, g in nodes], max_concurrent, share)
    assert (planned.cpus_per_trial, planned.gpus_per_trial, planned.max_concurrent, planned.nodes) == expected
    assert f"{expected[0]:g} CPU" in planned.line(4)


def test_a_gpu_share_no_node_holds_is_refused():
    with pytest.raises(RunnerError, match="more GPU than any node has"):
        plan_node_resources([NodeCapacity(4, 0.5), NodeCapacity(4, 0.5)], None, 1.0)


def test_random_search_templates_and_samples():
    search = RandomSearch(
        tiny("search"), samples=3, learning_rate=(1e-5, 5e-5), latent_size=(32, 1024, 32), references=(0.9, 0.91)
    )
    templates = search.templates()
    assert [t.name for t in templates] == ["search-0", "search-1", "search-2"]
    assert [t.reference for t in templates] == [0.9, 0.91, None]
    concrete = apply_sample(templates[1], 2.5e-5, 320)
    assert concrete.learning_rate == 2.5e-5 and concrete.model_options["latent_size"] == 320
    assert concrete.name == "search-1_lr=2.5e-05_latent=320"
    assert apply_sample(tiny("grid"), 1.0, 2) == tiny("grid")


def test_unreachable_cluster_address_fails_fast():
    started = time.monotonic()
    with pytest.raises(RunnerError, match="cannot reach the Ray cluster at 127.0.0.1:9"):
        check_address("127.0.0.1:9")
    assert time.monotonic() - started < 30
    with pytest.raises(RunnerError, match="is not host:port"):
        check_address("nowhere")


def lease_recording_trial(folder, spec, cache, report, *, lease=None, **options):
    """Writes the lease the runner told the trial, then trains it on the CPU (this machine has no GPU)."""
    (folder / f"{spec.name}.json").write_text(json.dumps({"gpus": list(lease.gpus), "share": lease.share}))
    run_trial(spec, cache, report, **options)


@pytest.mark.slow
def test_four_quarter_gpu_trials_run_at_the_same_time(small_cache, tmp_path):
    specs = [tiny(f"packed{i}", epochs=2) for i in range(4)]
    leases = tmp_path / "leases"
    leases.mkdir()
    records = run_trials(
        specs,
        cache=small_cache,
        run_dir=tmp_path,
        scheduling=Scheduling(num_gpus=1, gpus_per_trial=0.25),
        write=lambda line: None,
        trial_function=functools.partial(lease_recording_trial, leases),
    )
    assert [r.error for r in records] == [None] * 4
    # each was told its lease: Ray's one GPU (id 0: no NVML here to name its UUID), a quarter of it
    told = [json.loads((leases / f"{spec.name}.json").read_text()) for spec in specs]
    assert told == [{"gpus": ["0"], "share": 0.25}] * 4
    # Tune's rows are written, its TensorBoard files are not: 9 ms of every epoch (runner.NoTensorBoardFiles)
    assert len(list(tmp_path.rglob("result.json"))) == 4 and not list(tmp_path.rglob("events.out.tfevents*"))
    spans = [(r.epochs[0]["started_at"], r.epochs[-1]["started_at"] + r.epochs[-1]["elapsed_seconds"]) for r in records]
    # every trial started before any trial finished: all four ran at once
    assert max(start for start, _ in spans) < min(end for _, end in spans)


def _cli(*args):
    return [sys.executable, "-m", "bench.run", *args]


@pytest.mark.slow
def test_asha_stops_hopeless_learning_rates_early(tmp_path):
    result = subprocess.run(
        _cli("--suite", "selftest", "--out", str(tmp_path)),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    run_dir = next(path for path in tmp_path.iterdir() if path.is_dir())
    results = pd.read_parquet(run_dir / "results.parquet").set_index("trial")
    good = results.loc["tiny_cnn_adam_lr=0.003"]
    assert good["epochs_run"] == 6 and good["status"] == "completed"
    hopeless = results.drop(index="tiny_cnn_adam_lr=0.003")
    assert (hopeless["epochs_run"] < 6).all()
    assert (hopeless["status"] == "early_stopped").all() and hopeless["stop_reason"].str.startswith("ASHA").all()
    assert "stopped early at epoch" in result.stdout


@pytest.mark.slow
def test_resume_after_the_driver_is_killed(tmp_path, small_synthetic):
    """A driver killed mid-run; ``--resume`` finishes the rest and redoes nothing (the session's small dataset)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    driver = subprocess.Popen(
        _cli("--suite", "selftest", "--data", str(small_synthetic), "--out", str(tmp_path), "--epochs", "3"),
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    finished_first = None
    try:
        for line in driver.stdout:
            if "finished: best" in line:
                finished_first = line.split("]")[0].lstrip("[")
            elif finished_first and "epoch 1/" in line:  # the next trial is under way
                driver.send_signal(signal.SIGKILL)  # the driver alone, as a crash would
                break
    finally:
        driver.wait(timeout=60)
        time.sleep(2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGKILL)  # Ray workers the driver left behind
    assert finished_first == "tiny_cnn_adam_lr=0.003"
    run_dir = next(path for path in tmp_path.iterdir() if path.is_dir())
    assert not (run_dir / "results.parquet").exists()

    resumed = subprocess.run(
        _cli("--resume", str(run_dir)), cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, env=env
    )
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"[{finished_first}] started" not in resumed.stdout  # nothing finished is redone
    results = pd.read_parquet(run_dir / "results.parquet")
    assert sorted(results["trial"]) == sorted(f"tiny_cnn_adam_lr={lr}" for lr in ("0.003", "1e-07", "2e-07", "3e-07"))
    epochs = pd.read_parquet(run_dir / "epochs.parquet")
    assert not epochs.duplicated(subset=["trial", "epoch"]).any()
    assert (epochs[epochs["trial"] == finished_first]["epoch"].tolist()) == [1, 2, 3]


def test_auto_gpu_shares_follow_each_models_training_memory(monkeypatch):
    from bench.plan import estimate

    monkeypatch.setattr(estimate, "smallest_gpu_memory_bytes", lambda: 16 * 2**30)
    specs = [tiny("small", batch_size=16), tiny("big", model="resnet50_v2", model_options={"input_size": 227})]
    shares = estimate.auto_gpu_shares(specs)
    assert shares == {"small": 0.125, "big": 0.625}  # ~0.1 GiB packs eight to a GPU; ResNet50V2 @227 ~6.6 GiB
    assert "GPU shares (auto): small 0.125, big 0.625" in estimate.format_gpu_shares(shares)


def test_auto_gpu_shares_without_a_gpu_is_a_one_line_error(monkeypatch):
    from bench.plan import estimate

    monkeypatch.setattr(estimate, "smallest_gpu_memory_bytes", lambda: None)
    with pytest.raises(UsageError, match="no NVIDIA GPU was found"):
        estimate.auto_gpu_shares([tiny("small")])


def test_per_trial_gpu_requests_with_auto_shares():
    from bench.execute.resources import Resources
    from bench.execute.runner import trial_resources

    request = trial_resources(Resources(2, 0.125, 8), {"small": 0.125, "big": 0.5})
    assert request({"spec": {"name": "big"}}).required_resources == {"CPU": 2, "GPU": 0.5}
    assert request({"spec": {"name": "small"}}).required_resources == {"CPU": 2, "GPU": 0.125}
    assert trial_resources(Resources(2, 0.25, 4), None) == {"cpu": 2, "gpu": 0.25}
