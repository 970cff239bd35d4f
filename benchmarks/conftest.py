"""Fixtures of the benchmark suite and the environment manifest saved with its JSON.

The ``--benchmark`` and ``--bench-size`` options live in the root conftest.py (pytest reads
options only from there); this file is loaded only when benchmarks/ is collected.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclass(frozen=True)
class BenchSize:
    """Input side and batch of the per-model benchmarks; ``None`` input: the model's own default."""

    name: str
    input_size: int | None
    batch_size: int
    rounds: int  # timed train steps / inference batches per benchmark


BENCH_SIZES = {
    # 64: the smallest side every registered model takes (the autoencoder wants a multiple of 64)
    "small": BenchSize("small", input_size=64, batch_size=8, rounds=10),
    "paper": BenchSize("paper", input_size=None, batch_size=32, rounds=5),
}


@pytest.fixture(scope="session")
def bench_size(request) -> BenchSize:
    return BENCH_SIZES[request.config.getoption("bench_size")]


@pytest.fixture(scope="session")
def synthetic_data() -> Path:
    """The built-in synthetic dataset (generated once into the user's cache, as a run would)."""
    from data.synthetic import ensure_synthetic_dataset

    return ensure_synthetic_dataset()


@pytest.fixture(scope="session")
def synthetic_cache(synthetic_data):
    """Its decoded cache, as the driver hands it to every trial."""
    from data.cache import ensure_cache

    return ensure_cache(synthetic_data)


def pytest_benchmark_update_machine_info(config, machine_info):
    """The harness's own environment manifest beside pytest-benchmark's machine info."""
    from bench.trial.env import collect_manifest

    manifest = collect_manifest(seeds=[0], argv=["-m", "pytest", *sys.argv[1:]])
    machine_info["adience_bench"] = {**manifest.to_dict(), "bench_size": config.getoption("bench_size")}
