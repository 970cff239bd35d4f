"""The test session's own home: no state of the user's real home is read or written.

The last test runs this file again in a pytest of its own, started in a used home (a Ray
token and a broken dataset cache left in it): the session must pass there as it does here.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.conftest import CALLERS_DATASET_CACHE, CALLERS_HOME, IS_WORKER, REPO_ROOT, SESSION_ROOT, SHARED, TEST_HOME

REAL_HOME = Path(pwd.getpwuid(os.getuid()).pw_dir)
# small enough to generate in a moment; the used home holds a broken copy of it
LEFTOVER_CONFIG = {"users_per_fold": 2, "faces_per_user": 1, "image_size": 32, "seed": 11}


def test_home_temp_dir_and_dataset_cache_are_the_sessions_own():
    from data.synthetic import default_cache_root

    assert Path.home() == TEST_HOME not in (REAL_HOME, CALLERS_HOME)
    assert Path(tempfile.gettempdir()).is_relative_to(SESSION_ROOT)
    assert default_cache_root() == Path(CALLERS_DATASET_CACHE or SHARED / "datasets")
    if not CALLERS_DATASET_CACHE:
        for home in (REAL_HOME, CALLERS_HOME):
            assert not default_cache_root().is_relative_to(home), home
    for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "KERAS_HOME"):
        assert name not in os.environ, name


def test_the_runs_shared_folder_holds_the_jax_compilation_cache():
    assert Path(os.environ["JAX_COMPILATION_CACHE_DIR"]) == SHARED / "jax-compilation-cache"
    assert SHARED.is_dir() and SHARED.parent.name.startswith("abt-") and SHARED.parent.parent == Path("/tmp")
    # a worker's is the folder of the process that started it, made before the workers started
    assert SHARED.is_relative_to(SESSION_ROOT) != IS_WORKER


def test_the_ray_token_file_the_harness_reads_is_in_the_sessions_home():
    from bench.execute.cluster import TOKEN_FILE, has_token

    assert TOKEN_FILE.is_relative_to(TEST_HOME) and not TOKEN_FILE.is_relative_to(CALLERS_HOME)
    saved = TOKEN_FILE.read_bytes() if TOKEN_FILE.is_file() else None
    try:
        TOKEN_FILE.unlink(missing_ok=True)
        assert not has_token({})  # whatever the real ~/.ray holds
        TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
        TOKEN_FILE.write_text("made-by-this-test")
        assert has_token({})
    finally:
        TOKEN_FILE.unlink(missing_ok=True)
        if saved is not None:
            TOKEN_FILE.write_bytes(saved)


def test_a_subprocess_inherits_the_sessions_home_and_temp_dir():
    code = "import pathlib, tempfile; print(pathlib.Path.home()); print(tempfile.gettempdir())"
    home, temp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert Path(home) == TEST_HOME and Path(temp).is_relative_to(SESSION_ROOT)


def test_the_default_dataset_is_made_in_the_runs_cache():
    from data.adience import read_fold_lines
    from data.synthetic import SyntheticConfig, ensure_synthetic_dataset

    folder = ensure_synthetic_dataset(SyntheticConfig(**LEFTOVER_CONFIG))
    assert folder.is_relative_to(CALLERS_DATASET_CACHE or SHARED)
    assert read_fold_lines(folder / "fold_0_data.txt")  # a broken copy in the caller's home would raise


def test_a_session_started_in_a_used_home_passes_the_same(tmp_path):
    """A Ray token and a broken dataset cache left in HOME: this file's other tests still pass."""
    from data.synthetic import SyntheticConfig

    used = tmp_path / "used-home"
    token = used / ".ray" / "auth_token"
    token.parent.mkdir(parents=True)
    token.write_text("a-token-left-by-an-earlier-cluster")
    broken = used / ".cache" / "adience-bench" / "synthetic" / SyntheticConfig(**LEFTOVER_CONFIG).key()
    broken.mkdir(parents=True)
    for fold in range(5):
        (broken / f"fold_{fold}_data.txt").write_text("not an Adience fold file\n")
    planted = {path: path.read_bytes() for path in used.rglob("*") if path.is_file()}
    # as a user's shell would start it: none of this run's own variables
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("ADIENCE_BENCH", "PYTEST_"))}
    inner = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", __file__]
    result = subprocess.run(
        [*inner, "-k", "not used_home"],
        cwd=REPO_ROOT,
        env={**environment, "HOME": str(used), "RAY_AUTH_MODE": "token"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "5 passed" in result.stdout, result.stdout[-1000:]
    assert {path: path.read_bytes() for path in used.rglob("*") if path.is_file()} == planted
