"""A real Ray cluster of ``ray start`` nodes on 127.0.0.1 (tests/cluster_nodes.py): a head without
CPUs for trials and two workers that see neither the repository, the dataset cache, ~/.cache nor
the run folder, only the shared ``--storage``. Trials reach their data and code through Ray,
finish on the other worker when one is killed, and go on from their checkpoint after the driver
is killed and the run resumed; joining wrongly is one line.

Slow (about five minutes on two cores); every wait is bounded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from data.synthetic import default_cache_root
from tests.cluster_nodes import ADDRESS, LocalCluster, cluster_unavailable
from tests.conftest import REPO_ROOT

UNAVAILABLE = cluster_unavailable()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or "")]

RUN_TIMEOUT_S = 420
# The trial the kill tests interrupt. With the images on the device an epoch of the tiny CNN
# takes 0.2-0.8 s, so the selftest's 5-epoch trial could end between the line a test waits
# for and its kill; 30 epochs without a patience rule cannot.
LONG_EPOCHS = 30
LONG_TRIAL = "tiny_cnn_long"
LONG_SUITE = f"""
name = "killtest"
description = "one tiny CNN trial long enough to be interrupted"
[[trials]]
name = "{LONG_TRIAL}"
model = "tiny_cnn"
optimizer = "adam"
learning_rate = 0.003
momentum = 0.0
batch_size = 16
epochs = {LONG_EPOCHS}
patience = {LONG_EPOCHS}
"""


def long_suite(folder: Path) -> str:
    """The path of a suite file holding LONG_TRIAL, written on the driver's side only (it runs as
    written; ``--epochs LONG_EPOCHS`` says the budget on the command line too)."""
    path = folder / "killtest.toml"
    path.write_text(LONG_SUITE)
    return str(path)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    # a short root: Ray's socket paths under it must stay within the 107 bytes a socket path may have
    root = Path(f"/tmp/abc{os.getpid()}")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    hidden = [REPO_ROOT, Path.home() / ".cache", default_cache_root(), tmp_path_factory.getbasetemp()]
    nodes = LocalCluster(root=root, hidden=hidden)
    try:
        yield nodes.start(workers=2, cpus_per_worker=1)
    finally:
        nodes.stop()
        shutil.rmtree(root, ignore_errors=True)


def finish(process: subprocess.Popen, timeout: float = RUN_TIMEOUT_S) -> str:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the run did not end within {timeout} s: {output[-3000:]}")
    return output


def watch(process: subprocess.Popen, line_has: str, timeout: float = RUN_TIMEOUT_S) -> list[str]:
    """The driver's lines up to the first that contains ``line_has``."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if line_has in line:
            return seen
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    pytest.fail(f"no line with {line_has!r} within {timeout} s: {''.join(seen)[-3000:]}")


def run_folder(out: Path) -> Path:
    (folder,) = [path for path in out.iterdir() if path.is_dir()]
    return folder


def epochs_of(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "epochs.csv")


def test_a_worker_node_sees_none_of_the_drivers_files_and_not_this_project(cluster, small_synthetic):
    assert small_synthetic.is_dir()
    # the repository's folder may be there, empty, as the mount point of a Python it holds (.venv)
    drivers = [str(REPO_ROOT / "bench"), str(REPO_ROOT / "pyproject.toml"), str(small_synthetic)]
    code = (
        "import os, sys\n"
        f"print([os.path.exists(p) for p in {drivers!r}])\n"
        "try:\n    import bench\nexcept ImportError:\n    print('no bench')\n"
    )
    seen = cluster.python_on_worker("worker1", code)
    assert seen.splitlines() == ["[False, False, False]", "no bench"]


def test_selftest_runs_on_both_workers_with_data_and_code_through_ray(cluster, small_synthetic, tmp_path):
    driver = cluster.run(
        "--suite",
        "selftest",
        "--epochs",
        "2",
        "--data",
        str(small_synthetic),
        "--out",
        str(tmp_path),
        "--address",
        ADDRESS,
        "--storage",
        str(cluster.storage),
        cwd=tmp_path,
    )
    output = finish(driver)
    assert driver.returncode == 0, output[-3000:]
    folder = run_folder(tmp_path)
    results = pd.read_csv(folder / "results.csv")
    assert len(results) == 4 and results["error"].isna().all(), output[-3000:]
    assert epochs_of(folder)["node_id"].nunique() == 2  # trials ran on both workers
    assert (folder / "LEADERBOARD.md").is_file()  # the run folder stays on the driver


def test_a_killed_worker_s_trial_finishes_on_the_other_from_its_checkpoint(cluster, small_synthetic, tmp_path):
    driver = cluster.run(
        "--suite",
        long_suite(tmp_path),
        "--epochs",
        str(LONG_EPOCHS),
        "--data",
        str(small_synthetic),
        "--out",
        str(tmp_path / "out"),
        "--address",
        ADDRESS,
        "--storage",
        str(cluster.storage),
        "--checkpoint-interval",
        "0",
        cwd=tmp_path,
    )
    try:
        watch(driver, f"epoch 2/{LONG_EPOCHS}")
        victim = cluster.worker_running("ImplicitFunc")  # the node whose process runs the trial
        assert victim is not None, cluster.logs()
        cluster.kill_worker(victim)
        output = finish(driver)
    finally:
        cluster.restart_lost_workers()
    assert driver.returncode == 0, output[-3000:]
    assert "retrying" in output
    folder = run_folder(tmp_path / "out")
    results = pd.read_csv(folder / "results.csv")
    assert list(results["trial"]) == [LONG_TRIAL] and results["error"].isna().all()
    assert int(results["attempts"].iloc[0]) == 2
    epochs = epochs_of(folder)
    assert sorted(epochs["epoch"]) == list(range(1, LONG_EPOCHS + 1))  # each epoch once
    assert epochs.loc[epochs["attempt"] == 2, "epoch"].min() > 1  # went on from its checkpoint
    assert epochs["node_id"].nunique() == 2


def test_a_killed_driver_s_run_resumes_from_the_last_checkpoint(cluster, small_synthetic, tmp_path):
    arguments = ("--suite", long_suite(tmp_path), "--epochs", str(LONG_EPOCHS), "--data", str(small_synthetic))
    arguments += ("--out", str(tmp_path / "out"))
    where = ("--address", ADDRESS, "--storage", str(cluster.storage), "--checkpoint-interval", "0")
    driver = cluster.run(*arguments, *where, cwd=tmp_path)
    watch(driver, f"epoch 3/{LONG_EPOCHS}")
    time.sleep(2.0)  # past the 1 s in which Tune saves its state, so a checkpoint is in it
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    folder = run_folder(tmp_path / "out")
    resumed = cluster.run("--resume", str(folder), cwd=tmp_path)
    output = finish(resumed)
    assert resumed.returncode == 0, output[-3000:]
    epochs = epochs_of(folder)
    assert sorted(epochs["epoch"]) == list(range(1, LONG_EPOCHS + 1)), output[-3000:]  # each epoch once
    first_resumed = output.split(f"[{LONG_TRIAL}] epoch ")
    assert len(first_resumed) > 1, f"the trial ended before the driver was killed: {output[-3000:]}"
    assert int(first_resumed[1].split("/")[0]) > 1, output[-3000:]  # not from epoch 1


def test_several_nodes_without_storage_is_one_line_before_any_trial(cluster, small_synthetic, tmp_path):
    driver = cluster.run(
        "--suite",
        "selftest",
        "--data",
        str(small_synthetic),
        "--out",
        str(tmp_path),
        "--address",
        ADDRESS,
        cwd=tmp_path,
    )
    output = finish(driver, timeout=180)
    assert driver.returncode == 2, output[-3000:]
    (line,) = [line for line in output.splitlines() if line.startswith("error:")]
    assert "--storage" in line and "started" not in output


def test_joining_a_token_cluster_without_the_token_is_one_line(cluster, small_synthetic, tmp_path):
    home = tmp_path / "home"  # no ~/.ray/auth_token there
    home.mkdir()
    driver = cluster.run(
        "--suite",
        "selftest",
        "--data",
        str(small_synthetic),
        "--out",
        str(tmp_path / "out"),
        "--address",
        ADDRESS,
        token=False,
        cwd=tmp_path,
        extra={"HOME": str(home)},
    )
    output = finish(driver, timeout=180)
    assert driver.returncode == 2, output[-3000:]
    (line,) = [line for line in output.splitlines() if line.startswith("error:")]
    assert "RAY_AUTH_MODE=token" in line
    assert "InvalidAuthToken" not in output  # Ray's own retry lines stay in the probe
