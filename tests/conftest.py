"""Shared fixtures: a private dataset cache, the official fold files, small synthetic data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Tests never write into the user's ~/.cache: one cache folder per test session.
os.environ.setdefault("ADIENCE_BENCH_CACHE", tempfile.mkdtemp(prefix="adience-bench-test-cache-"))

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
