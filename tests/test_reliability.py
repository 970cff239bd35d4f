"""Reliability: injected faults end only their own trial, as diverged or failed with a reason."""

import contextlib
import ipaddress
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.execute.ray_session import local_ray_options, start_ray, stop_ray
from bench.execute.runner import run_trials
from bench.io import write_table
from bench.plan.goals import Goals
from bench.plan.planner import Scheduling
from bench.report.leaderboard import RunInfo, write_leaderboard
from bench.report.results import (
    STATUS_COMPLETED,
    STATUS_DIVERGED,
    STATUS_FAILED,
    TrialRecord,
    epochs_table,
    trial_status,
    trials_table,
)
from bench.trial.measure import resident_memory_bytes
from tests.conftest import tiny_spec
from tests.faults import Fault, InjectedFault, faulty_trial


def tiny(name, **changes):
    # a few steps: eager beats tracing on a CPU
    defaults = {"patience": None, "train_limit": 32, "val_limit": 16, "run_eagerly": True}
    return tiny_spec(name, **{**defaults, **changes})


@pytest.mark.parametrize(("text", "fault"), [("raise@1", Fault("raise", 1)), ("nan@3", Fault("nan", 3))])
def test_fault_strings_parse(text, fault):
    assert Fault.parse(text) == fault


@pytest.mark.parametrize("text", ["raise", "nan@0", "boom@2", "kill@-1", "kill@x", " nan@1", 3])
def test_bad_fault_strings_are_one_line_errors(text):
    with pytest.raises(ValueError, match=r"fault must be one of raise@K, missing@K, nan@K, kill@K with K >= 1"):
        faulty_trial({"f": text})


def test_nan_loss_stops_the_trial_at_once_and_marks_it_diverged(small_cache):
    spec = tiny("nan", epochs=4)
    reports = []
    faulty_trial({"nan": "nan@2"})(spec, small_cache, reports.append)
    assert [r["epoch"] for r in reports] == [1, 2]  # epochs 3 and 4 never ran
    assert math.isfinite(reports[0]["train_loss"]) and math.isnan(reports[1]["train_loss"])
    status, reason = trial_status(TrialRecord(spec=spec, epochs=reports))
    assert (status, reason) == (STATUS_DIVERGED, "train loss not finite from epoch 2")


def test_a_raised_error_ends_the_trial_after_its_reported_epochs(small_cache):
    reports = []
    with pytest.raises(InjectedFault, match="injected fault: raised at epoch 2"):
        faulty_trial({"raise": "raise@2"})(tiny("raise", epochs=3), small_cache, reports.append)
    assert [r["epoch"] for r in reports] == [1]


@pytest.mark.slow
def test_twenty_trials_with_five_faults_lose_only_the_faulty_ones(small_cache, tmp_path, capfd):
    faults = {2: "raise@1", 6: "raise@2", 9: "nan@1", 13: "nan@2", 17: "kill@2", 19: "missing@2"}
    specs = [tiny(f"t{index:02d}", seed=index) for index in range(20)]
    lines = []
    records = run_trials(
        specs,
        cache=small_cache,
        run_dir=tmp_path,
        scheduling=Scheduling(),
        write=lines.append,
        trial_function=faulty_trial({f"t{index:02d}": fault for index, fault in faults.items()}),
    )
    trials = trials_table(records).set_index("trial")
    assert len(trials) == 20 and sorted(trials.index) == [spec.name for spec in specs]
    clean = trials.drop(index=[f"t{index:02d}" for index in faults])
    assert (clean["status"] == STATUS_COMPLETED).all(), clean[["status", "reason"]]
    assert (clean["epochs_run"] == 2).all() and clean["best_val_accuracy"].between(0, 1).all()
    assert clean["train_images_per_sec"].gt(0).all() and clean["params"].gt(0).all()
    for index, fault in faults.items():
        row = trials.loc[f"t{index:02d}"]
        kind, epoch = fault.split("@")
        if kind == "nan":
            assert row["status"] == STATUS_DIVERGED and row["reason"] == f"train loss not finite from epoch {epoch}"
            assert row["epochs_run"] == int(epoch)
        elif kind == "raise":
            assert row["status"] == STATUS_FAILED
            assert row["reason"] == f"InjectedFault: injected fault: raised at epoch {epoch}", row["reason"]
        elif kind == "missing":
            assert row["status"] == STATUS_FAILED and row["attempts"] == 1
            assert row["reason"] == f"DatasetError: injected fault: dataset missing at epoch {epoch}", row["reason"]
        else:
            assert row["status"] == STATUS_FAILED and row["reason"], row["reason"]
    # a raised error or a killed process is retried once (FailureConfig(max_failures=1)), then failed;
    # each failure is one line on the driver, no traceback
    for index in (2, 6, 17):
        label = f"[t{index:02d}]"
        assert len([line for line in lines if line == f"{label} started"]) == 2, lines
        assert len([line for line in lines if line.startswith(f"{label} failed, retrying once: ")]) == 1, lines
        assert len([line for line in lines if line.startswith(f"{label} failed: ")]) == 1, lines
    # a diverged trial: one line naming it and its epoch, started once (not retried)
    for index, epoch in ((9, 1), (13, 2)):
        label = f"[t{index:02d}]"
        assert lines.count(f"{label} started") == 1, lines
        assert f"{label} diverged at epoch {epoch}: train loss nan; stopped, not retried" in lines, lines
    # an error no retry mends (a missing dataset) fails the trial at once
    assert lines.count("[t19] started") == 1 and not [line for line in lines if line.startswith("[t19] failed, retr")]
    assert [line for line in lines if line.startswith("[t19] failed: DatasetError")], lines
    printed = capfd.readouterr()
    assert "Traceback" not in printed.out + printed.err
    # the run's tables and leaderboard (plots included) are written with the faulty rows in them
    write_table(epochs_table(records), tmp_path / "epochs")
    write_table(trials.reset_index(), tmp_path / "results")
    info = RunInfo("faults", "faults", "20 trials, 6 faulty", str(small_cache.folder), "smoke", Goals(0.7))
    board = write_leaderboard(info, trials.reset_index(), tmp_path / "LEADERBOARD.md", epochs=epochs_table(records))
    text = board.read_text()
    assert all(f"| {spec.name}" in text for spec in specs)
    assert "injected fault: raised at epoch 2" in text and "train loss not finite from epoch 1" in text
    assert len(pd.read_parquet(tmp_path / "results.parquet")) == 20


MEMORY_GROWTH_LIMIT = 200e6


@pytest.mark.slow
def test_memory_stays_bounded_over_thirty_sequential_trials(small_cache, tmp_path):
    """Driver resident memory grows < 200 MB from trial 5 to trial 30; so does the reused worker's."""
    driver_rss: list[float] = []

    def write(line: str) -> None:
        if "] finished:" in line or "] stopped early" in line:
            driver_rss.append(resident_memory_bytes())

    specs = [tiny(f"m{index:02d}", epochs=1, seed=index) for index in range(30)]
    records = run_trials(specs, cache=small_cache, run_dir=tmp_path, scheduling=Scheduling(), write=write)
    assert [record.error for record in records] == [None] * 30 and len(driver_rss) == 30
    worker_rss = [record.epochs[-1]["process_rss_bytes"] for record in records]
    growth = {"driver": driver_rss[29] - driver_rss[4], "worker": worker_rss[29] - worker_rss[4]}
    print(f"resident memory growth from trial 5 to trial 30: {growth}; driver {driver_rss}; worker {worker_rss}")
    assert growth["driver"] < MEMORY_GROWTH_LIMIT, growth
    assert growth["worker"] < MEMORY_GROWTH_LIMIT, growth


def test_local_ray_has_no_dashboard_unless_asked_and_then_only_on_loopback():
    default = local_ray_options(Scheduling(), "/tmp/ray")
    assert default["include_dashboard"] is False and "dashboard_host" not in default
    asked = local_ray_options(Scheduling(dashboard=True), "/tmp/ray")
    assert asked["include_dashboard"] is True and asked["dashboard_host"] == "127.0.0.1"


def _descendants(root: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found | {root}


def _listening_addresses(pids: set[int]) -> list[str]:
    """host:port of every TCP socket in LISTEN state that one of ``pids`` holds (Linux /proc)."""
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    addresses = []
    for table, width in (("tcp", 4), ("tcp6", 16)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                host, port = fields[1].split(":")
                raw = bytes.fromhex(host)
                packed = b"".join(raw[i : i + 4][::-1] for i in range(0, width, 4))
                addresses.append(f"{ipaddress.ip_address(packed)}:{int(port, 16)}")
    return addresses


def _is_loopback(host: str) -> bool:
    address = ipaddress.ip_address(host)
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").is_file(), reason="reads listening sockets from Linux's /proc")
def test_a_local_ray_listens_on_loopback_only():
    instance = start_ray(Scheduling())
    try:
        addresses = _listening_addresses(_descendants(os.getpid()))
    finally:
        stop_ray(instance)
    assert addresses, "found no listening socket of Ray at all"
    outside = [address for address in addresses if not _is_loopback(address.rsplit(":", 1)[0])]
    assert outside == [], f"listening beyond loopback: {outside} (all: {addresses})"


def _trial_heap_arenas(**environ: str) -> str:
    """MALLOC_ARENA_MAX as a fresh process's TRIAL_ENVIRONMENT sets it, under ``environ``."""
    env = {key: value for key, value in os.environ.items() if key != "MALLOC_ARENA_MAX"} | environ
    code = "from bench.execute.ray_env import TRIAL_ENVIRONMENT as E; print(E['MALLOC_ARENA_MAX'])"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


def test_trials_run_with_one_heap_arena_per_core_unless_the_user_chose():
    assert _trial_heap_arenas().strip() == str(max(2, os.cpu_count()))
    assert _trial_heap_arenas(MALLOC_ARENA_MAX="7").strip() == "7"
