"""A real Ray cluster of ``ray start`` nodes on 127.0.0.1 (support/local_cluster.py): a head without
CPUs for trials and two workers that see neither the repository, the dataset cache, ~/.cache nor
the run folder, and share no filesystem: ``--storage`` is a bucket of a real S3 API
(tests/s3_server.py) that listens in the cluster's network, its credentials in every node's
AWS variables as a cloud's would be. Trials reach their data and code through Ray, write their
experiment state and checkpoints to the bucket, finish on the other worker from the bucket's
checkpoint when one is killed, and go on from it after the driver is killed and the run resumed
(the credentials then in the URI, given again to --resume: tests/test_storage.py checks that a
resume without them is refused); joining wrongly is one line. ``--save-models`` from a bucket:
tests/test_storage_runs.py.

Slow (about five minutes on two cores); every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest

from data.synthetic import default_cache_root
from support.local_cluster import ADDRESS, LocalCluster, cluster_unavailable
from tests.conftest import REPO_ROOT
from tests.driver_process import LONG_EPOCHS, LONG_TRIAL, finish, long_suite, run_folder, watch
from tests.s3_server import REGION

UNAVAILABLE = cluster_unavailable()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or "")]
BUCKET = "cluster"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3_server):
    # a short root: Ray's socket paths under it must stay within the 107 bytes a socket path may have
    root = Path(f"/tmp/abc{os.getpid()}")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    hidden = [REPO_ROOT, Path.home() / ".cache", default_cache_root(), tmp_path_factory.getbasetemp()]
    nodes = LocalCluster(root=root, hidden=hidden, env=s3_server.environment())
    s3_server.make_bucket(BUCKET)
    try:
        nodes.start(workers=2, cpus_per_worker=1)
        s3_server.listen_in(nodes.name)
        yield nodes
    finally:
        s3_server.close(nodes.name)
        nodes.stop()
        shutil.rmtree(root, ignore_errors=True)


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


def test_selftest_runs_on_both_workers_with_data_and_code_through_ray(cluster, s3_server, small_synthetic, tmp_path):
    storage = f"s3://{BUCKET}/selftest"  # endpoint and credentials: the nodes' AWS variables
    arguments = ("--suite", "selftest", "--epochs", "2", "--data", str(small_synthetic), "--out", str(tmp_path))
    driver = cluster.run(*arguments, "--address", ADDRESS, "--storage", storage, cwd=tmp_path)
    output = finish(driver)
    assert driver.returncode == 0, output[-3000:]
    folder = run_folder(tmp_path)
    results = pd.read_csv(folder / "results.csv")
    assert len(results) == 4 and results["error"].isna().all(), output[-3000:]
    assert epochs_of(folder)["node_id"].nunique() == 2  # trials ran on both workers
    assert (folder / "LEADERBOARD.md").is_file()  # the run folder stays on the driver
    keys = s3_server.keys(BUCKET, f"selftest/{folder.name}/tune/")  # through the S3 API
    assert any("experiment_state" in key for key in keys), keys
    assert sum(key.endswith("/result.json") for key in keys) == 4, keys
    assert not [key for key in keys if "/checkpoint_" in key], keys  # a finished trial's are removed


def test_a_killed_worker_s_trial_finishes_on_the_other_from_its_checkpoint(
    cluster, s3_server, small_synthetic, tmp_path
):
    arguments = ("--suite", long_suite(tmp_path), "--epochs", str(LONG_EPOCHS), "--data", str(small_synthetic))
    where = ("--address", ADDRESS, "--storage", f"s3://{BUCKET}/killed", "--checkpoint-interval", "0")
    driver = cluster.run(*arguments, "--out", str(tmp_path / "out"), *where, cwd=tmp_path)
    try:
        watch(driver, f"epoch 2/{LONG_EPOCHS}")
        stored = [key for key in s3_server.keys(BUCKET, "killed/") if "/checkpoint_" in key]
        victim = cluster.worker_running("ImplicitFunc")  # the node whose process runs the trial
        assert victim is not None, cluster.logs()
        cluster.kill_worker(victim)
        output = finish(driver)
    finally:
        cluster.restart_lost_workers()
    assert stored, "no checkpoint in the bucket by epoch 2"
    assert driver.returncode == 0, output[-3000:]
    assert "retrying" in output
    folder = run_folder(tmp_path / "out")
    results = pd.read_csv(folder / "results.csv")
    assert list(results["trial"]) == [LONG_TRIAL] and results["error"].isna().all()
    assert int(results["attempts"].iloc[0]) == 2
    epochs = epochs_of(folder)
    assert sorted(epochs["epoch"]) == list(range(1, LONG_EPOCHS + 1))  # each epoch once
    assert epochs.loc[epochs["attempt"] == 2, "epoch"].min() > 1  # went on from the bucket's checkpoint
    assert epochs["node_id"].nunique() == 2


def test_a_killed_driver_s_run_resumes_from_the_last_checkpoint(cluster, s3_server, small_synthetic, tmp_path):
    # the endpoint and credentials in the URI this time (the secret percent-encoded: it may hold '/')
    secret = quote(s3_server.secret, safe="")
    query = f"endpoint_override=127.0.0.1:{s3_server.port}&scheme=http&region={REGION}"
    storage = f"s3://{s3_server.key}:{secret}@{BUCKET}/resumed?{query}"
    arguments = ("--suite", long_suite(tmp_path), "--epochs", str(LONG_EPOCHS), "--data", str(small_synthetic))
    arguments += ("--out", str(tmp_path / "out"))
    where = ("--address", ADDRESS, "--storage", storage, "--checkpoint-interval", "0")
    driver = cluster.run(*arguments, *where, cwd=tmp_path)
    watch(driver, f"epoch 3/{LONG_EPOCHS}")
    time.sleep(2.0)  # past the 1 s in which Tune saves its state, so a checkpoint is in it
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=30)
    folder = run_folder(tmp_path / "out")
    resumed = cluster.run("--resume", str(folder), "--storage", storage, cwd=tmp_path)
    output = finish(resumed)
    assert resumed.returncode == 0, output[-3000:]
    epochs = epochs_of(folder)
    assert sorted(epochs["epoch"]) == list(range(1, LONG_EPOCHS + 1)), output[-3000:]  # each epoch once
    first_resumed = output.split(f"[{LONG_TRIAL}] epoch ")
    assert len(first_resumed) > 1, f"the trial ended before the driver was killed: {output[-3000:]}"
    assert int(first_resumed[1].split("/")[0]) > 1, output[-3000:]  # not from epoch 1: the bucket's checkpoint
    written = "".join(path.read_text(errors="replace") for path in files_of(folder))
    assert not [word for word in (s3_server.key, s3_server.secret, secret) if word in written]


def files_of(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def test_several_nodes_without_storage_is_one_line_before_any_trial(cluster, small_synthetic, tmp_path):
    selftest = ("--suite", "selftest", "--data", str(small_synthetic), "--address", ADDRESS)
    driver = cluster.run(*selftest, "--out", str(tmp_path), cwd=tmp_path)
    output = finish(driver, timeout=180)
    assert driver.returncode == 2, output[-3000:]
    (line,) = [line for line in output.splitlines() if line.startswith("error:")]
    assert "--storage" in line and "started" not in output


def test_joining_a_token_cluster_without_the_token_is_one_line(cluster, small_synthetic, tmp_path):
    home = tmp_path / "home"  # no ~/.ray/auth_token there
    home.mkdir()
    selftest = ("--suite", "selftest", "--data", str(small_synthetic), "--address", ADDRESS)
    driver = cluster.run(
        *selftest, "--out", str(tmp_path / "out"), token=False, cwd=tmp_path, extra={"HOME": str(home)}
    )
    output = finish(driver, timeout=180)
    assert driver.returncode == 2, output[-3000:]
    (line,) = [line for line in output.splitlines() if line.startswith("error:")]
    assert "RAY_AUTH_MODE=token" in line
    assert "InvalidAuthToken" not in output  # Ray's own retry lines stay in the probe
