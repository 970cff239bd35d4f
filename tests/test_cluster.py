"""Joining a cluster (bench/cluster.py): the code that travels, the auth mode, the probe, the storage."""

import subprocess
from pathlib import Path

import pytest

from bench import cluster
from bench.errors import RunnerError
from bench.plan import Scheduling
from tests.conftest import REPO_ROOT


def test_the_three_packages_travel_and_a_users_model_module_with_them(tmp_path, monkeypatch):
    (tmp_path / "my_cluster_models.py").write_text("")
    (tmp_path / "my_model_package").mkdir()
    (tmp_path / "my_model_package" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    paths = cluster.code_modules(["my_cluster_models", "my_model_package"])
    assert paths[:3] == [str(REPO_ROOT / name) for name in ("bench", "models", "data")]
    assert paths[3:] == [str(tmp_path / "my_cluster_models.py"), str(tmp_path / "my_model_package")]
    with pytest.raises(RunnerError, match="--model-module no_such_models: not found"):
        cluster.code_modules(["no_such_models"])


def test_the_auth_mode_is_always_explicit(tmp_path):
    token = tmp_path / "token"
    assert cluster.join_auth_mode({"RAY_AUTH_MODE": "token"}) == "token"  # the user's word first
    assert cluster.join_auth_mode({"RAY_AUTH_MODE": "disabled", "RAY_AUTH_TOKEN": "x"}) == "disabled"
    assert cluster.join_auth_mode({"RAY_AUTH_TOKEN": "secret"}) == "token"
    assert cluster.join_auth_mode({"RAY_AUTH_TOKEN_PATH": str(token)}) == "disabled"  # no such file
    token.write_text("secret")
    assert cluster.join_auth_mode({"RAY_AUTH_TOKEN_PATH": str(token)}) == "token"


def _refused(stderr: str, returncode: int = 1):
    def run(*args, **kwargs):
        return subprocess.CompletedProcess(args, returncode, stdout="", stderr=stderr)

    return run


def test_a_refused_join_is_one_line_naming_the_fix(monkeypatch):
    said = "\n".join(
        ["[2026] gcs_client.cc:100: InvalidAuthToken: no token"] * 20 + ["ConnectionError: Failed to connect"]
    )
    monkeypatch.setattr(subprocess, "run", _refused(said))
    with pytest.raises(RunnerError) as refused:
        cluster.probe("127.0.0.1:6390", {})
    assert "RAY_AUTH_MODE=token" in str(refused.value) and "~/.ray/auth_token" in str(refused.value)
    assert "\n" not in str(refused.value)
    monkeypatch.setattr(subprocess, "run", _refused("Traceback ...\nConnectionError: Failed to connect to GCS"))
    with pytest.raises(RunnerError, match="cannot join the Ray cluster at 127.0.0.1:6390: ConnectionError"):
        cluster.probe("127.0.0.1:6390", {})

    def silent(*args, **kwargs):
        raise subprocess.TimeoutExpired(args, 15, stderr=b"")

    monkeypatch.setattr(subprocess, "run", silent)
    with pytest.raises(RunnerError, match="no answer within 15 s"):
        cluster.probe("127.0.0.1:6390", {})


def test_storage_is_the_run_folder_locally_and_a_run_subfolder_elsewhere(tmp_path):
    run_dir = tmp_path / "runs" / "20261202-000000-selftest"
    assert cluster.storage_root(Scheduling(), run_dir) == str(run_dir.resolve())
    shared = cluster.storage_root(Scheduling(storage=str(tmp_path / "nfs")), run_dir)
    assert Path(shared) == (tmp_path / "nfs" / run_dir.name).resolve()
    assert (
        cluster.storage_root(Scheduling(storage="s3://bucket/bench/"), run_dir) == f"s3://bucket/bench/{run_dir.name}"
    )
