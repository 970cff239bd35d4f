"""Joining a cluster (bench/execute/cluster.py): the code that travels, the auth mode, the probe (the storage: tests/test_storage.py)."""

import time

import pytest

from bench.errors import RunnerError
from bench.execute import cluster
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


def _fake_python(tmp_path, monkeypatch, script: str) -> None:
    """The probe's child Python replaced by a shell script that says what a refusing Ray says."""
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\n" + script + "\n")
    fake.chmod(0o755)
    monkeypatch.setattr(cluster.sys, "executable", str(fake))


def test_a_token_refusal_is_one_line_naming_the_fix_without_waiting_for_rays_retries(tmp_path, monkeypatch):
    # Ray prints a refusal per retry and keeps retrying for about a minute: the probe stops at the first
    refusal = "[2026] gcs_client.cc:100: InvalidAuthToken: no token"
    _fake_python(tmp_path, monkeypatch, f"for i in 1 2 3; do echo '{refusal}' >&2; done; sleep 60")
    started = time.monotonic()
    with pytest.raises(RunnerError) as refused:
        cluster.probe("127.0.0.1:6390", {}, timeout=50)
    assert time.monotonic() - started < 30  # not the 50 s timeout, nor the script's 60 s
    assert "RAY_AUTH_MODE=token" in str(refused.value) and "~/.ray/auth_token" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_failed_or_silent_join_is_one_line(tmp_path, monkeypatch):
    _fake_python(
        tmp_path, monkeypatch, "echo Traceback ... >&2; echo 'ConnectionError: Failed to connect to GCS' >&2; exit 1"
    )
    with pytest.raises(RunnerError, match="cannot join the Ray cluster at 127.0.0.1:6390: ConnectionError"):
        cluster.probe("127.0.0.1:6390", {})
    _fake_python(tmp_path, monkeypatch, "sleep 60")
    with pytest.raises(RunnerError, match="no answer within 1 s"):
        cluster.probe("127.0.0.1:6390", {}, timeout=1)
    _fake_python(tmp_path, monkeypatch, "echo 2")
    cluster.probe("127.0.0.1:6390", {})  # a join that answers passes


def test_a_worker_node_hides_only_the_outermost_of_nested_paths(tmp_path):
    from support.local_cluster import outermost

    repo, cache, other = tmp_path / "repo", tmp_path / "repo" / ".ci-cache", tmp_path / "home" / ".cache"
    assert outermost([cache, other, repo, repo]) == [repo.resolve(), other.resolve()]
