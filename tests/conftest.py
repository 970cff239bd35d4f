"""Shared fixtures and the test session's own home: the fold files, small synthetic data.

Every pytest process (each xdist worker too) runs in a fresh home of its own, made here
before any test module imports bench, Keras or Ray: HOME, ~/.ray, ~/.cache, ~/.keras,
matplotlib's folders and the temp dir (Ray's local temp dirs and every subprocess's) lie
under it, and it is removed when the session ends. A token, dataset or config left in the
user's real home is never read; a test that needs state makes it. A Ray worker or other
process started by a test that imports this module keeps that test's home.

The process that starts the run (xdist's controller, or the only process) also makes a
folder its xdist workers share: the synthetic datasets, generated once per run, and JAX's
persistent compilation cache, so a model compiled in one worker, subprocess or Ray trial
is not compiled again in another. ``ADIENCE_BENCH_CACHE``, where the caller sets it (CI:
a folder of its clone, shared by both legs so the dataset is generated once), is kept.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# What a pytest process hands the processes it starts, which inherit its environment: its
# session folder (to a Ray worker or subprocess that imports this module: no new home there)
# and the run's shared folder and caller (to its xdist workers, which make homes of their own).
SESSION_ENV = "ADIENCE_BENCH_TEST_SESSION"
SHARED_ENV = "ADIENCE_BENCH_TEST_SHARED"
CALLERS_HOME_ENV = "ADIENCE_BENCH_TEST_CALLERS_HOME"
CALLERS_CACHE_ENV = "ADIENCE_BENCH_TEST_CALLERS_CACHE"
# Ray and the harness read these; a user's own (a cluster address, a token) must not leak in.
INHERITED_STATE = ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE", "KERAS_HOME")

PROCESS = os.environ.get("PYTEST_XDIST_WORKER") or "main"  # which pytest process this is, or descends from
_owner, _, _inherited_root = os.environ.get(SESSION_ENV, "").partition(":")
OWNS_SESSION = _owner != PROCESS or not _inherited_root
# Short, under /tmp: Ray's socket paths below it must stay under 107 bytes.
SESSION_ROOT = Path(tempfile.mkdtemp(prefix="abt-", dir="/tmp")) if OWNS_SESSION else Path(_inherited_root)
TEST_HOME = SESSION_ROOT / "home"
IS_WORKER = PROCESS != "main" and SHARED_ENV in os.environ
if IS_WORKER or not OWNS_SESSION:
    SHARED = Path(os.environ[SHARED_ENV])
    CALLERS_HOME = Path(os.environ[CALLERS_HOME_ENV])
    CALLERS_DATASET_CACHE = os.environ.get(CALLERS_CACHE_ENV) or None
else:
    SHARED = SESSION_ROOT / "shared"
    CALLERS_HOME = Path.home()  # the home the run was started in: never read below
    CALLERS_DATASET_CACHE = os.environ.get("ADIENCE_BENCH_CACHE")  # kept: CI shares one between its legs


def _enter_session_home() -> None:
    for folder in (TEST_HOME / ".cache", TEST_HOME / ".config", SESSION_ROOT / "tmp", SHARED):
        folder.mkdir(parents=True, exist_ok=folder == SHARED)
    for name in INHERITED_STATE:
        os.environ.pop(name, None)
    os.environ.update(
        {
            SESSION_ENV: f"{PROCESS}:{SESSION_ROOT}",
            SHARED_ENV: str(SHARED),
            CALLERS_HOME_ENV: str(CALLERS_HOME),
            CALLERS_CACHE_ENV: CALLERS_DATASET_CACHE or "",
        }
    )
    os.environ.update(
        HOME=str(TEST_HOME),
        XDG_CACHE_HOME=str(TEST_HOME / ".cache"),
        XDG_CONFIG_HOME=str(TEST_HOME / ".config"),
        MPLCONFIGDIR=str(TEST_HOME / ".config" / "matplotlib"),
        TMPDIR=str(SESSION_ROOT / "tmp"),
        TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
        ADIENCE_BENCH_CACHE=CALLERS_DATASET_CACHE or str(SHARED / "datasets"),
    )
    # JAX's persistent compilation cache, every compile kept (an initializer's too): the JAX
    # leg's EfficientNetV2M and MobileNetV3Large tests took 56 s, 17 s with a warm cache
    os.environ.update(
        JAX_COMPILATION_CACHE_DIR=str(SHARED / "jax-compilation-cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )
    tempfile.tempdir = None  # gettempdir() may have cached /tmp already; it now reads TMPDIR


if OWNS_SESSION:
    _enter_session_home()


def pytest_unconfigure(config):
    if OWNS_SESSION:
        shutil.rmtree(SESSION_ROOT, ignore_errors=True)


# README command (a)'s baseline end to end, alone in its file: two thirds of the JAX leg.
STARTS_FIRST = "test_cli_baseline.py"


def pytest_collection_modifyitems(config, items):
    """The baseline end to end's file first; the rest keep their order (the sort is stable).

    The JAX leg runs with ``--no-loadscope-reorder``, so its workers take files in this order and
    the baseline trains while the other worker runs the rest (624 s against 718 s when xdist's
    own reorder, most tests first, started the one-test file last). The TensorFlow leg keeps
    xdist's reorder: there the baseline trains last, beside quick tests, and two trainings side
    by side slowed each other (1,006 s against 792 s with the long files first).
    """
    items.sort(key=lambda item: item.path.name != STARTS_FIRST)


REPO_ROOT = Path(__file__).resolve().parent.parent
OFFICIAL_FOLDS = REPO_ROOT.parent / "shared" / "adience"


@pytest.fixture(scope="session")
def official_folds() -> Path:
    if not (OFFICIAL_FOLDS / "fold_0_data.txt").is_file():
        pytest.skip(f"official Adience fold files not found at {OFFICIAL_FOLDS} (they live in ../shared/adience)")
    return OFFICIAL_FOLDS


@pytest.fixture(scope="session")
def small_synthetic(tmp_path_factory) -> Path:
    """A 40-user synthetic dataset (8 per fold, 6 faces each) generated once per session."""
    from data.synthetic import SyntheticConfig, ensure_synthetic_dataset

    return ensure_synthetic_dataset(
        SyntheticConfig(users_per_fold=8, faces_per_user=6, seed=7), cache_root=tmp_path_factory.mktemp("cache")
    )


@pytest.fixture(scope="session")
def small_cache(small_synthetic):
    """The decoded cache of ``small_synthetic``: what the driver hands every trial."""
    from data.cache import ensure_cache

    return ensure_cache(small_synthetic)


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 API on 127.0.0.1 (tests/s3_server.py), one per test session, with a user's key."""
    from tests.s3_server import S3Server, s3_unavailable

    reason = s3_unavailable()
    if reason:
        pytest.skip(reason)
    server = S3Server().start()
    yield server
    server.stop()


def tiny_spec(name: str, **changes):
    """A TrialSpec of the harness's own tiny CNN that trains in seconds: for scheduling tests."""
    from bench.specs import TrialSpec

    fields = {
        "name": name,
        "model": "tiny_cnn",
        "optimizer": "adam",
        "learning_rate": 3e-3,
        "momentum": 0.0,
        "batch_size": 16,
        "epochs": 2,
        "train_limit": 48,
        "val_limit": 24,
    }
    return TrialSpec(**{**fields, **changes})


def run_cli(*args, timeout=900) -> subprocess.CompletedProcess:
    """``python -m bench.run ARGS`` in a fresh process, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "bench.run", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
