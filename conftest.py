"""Root pytest options: ``pytest --benchmark`` runs the benchmark suite (benchmarks/) only.

Plain ``pytest`` collects ``tests/`` (pyproject's testpaths) and skips any benchmark it is
pointed at. Kept free of heavy imports: every plain test run loads this file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

BENCHMARKS_DIR = Path(__file__).resolve().parent / "benchmarks"
BENCH_SIZES = ("small", "paper")


def pytest_addoption(parser):
    group = parser.getgroup("adience-bench benchmarks")
    group.addoption(
        "--benchmark",
        action="store_true",
        default=False,
        help="run the benchmark suite (benchmarks/) only, autosaving pytest-benchmark JSON under .benchmarks/",
    )
    group.addoption(
        "--bench-size",
        choices=BENCH_SIZES,
        default="small",
        help="per-model benchmark sizes: small CPU-friendly inputs (default) or the report's (paper)",
    )


def _in_benchmarks(path: Path) -> bool:
    return path == BENCHMARKS_DIR or BENCHMARKS_DIR in path.parents


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    if not config.getoption("benchmark"):
        return
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        # no paths given: the benchmark suite instead of testpaths' tests/
        config.args[:] = [str(BENCHMARKS_DIR)]
    if not (config.option.benchmark_autosave or config.option.benchmark_save):
        from pytest_benchmark.utils import get_tag  # the name --benchmark-autosave gives: commit id, branch, time

        # read by pytest-benchmark's own pytest_configure, which runs after this one (trylast)
        config.option.benchmark_autosave = get_tag()


def pytest_collection_modifyitems(config, items):
    if config.getoption("benchmark"):
        kept = [item for item in items if _in_benchmarks(item.path)]
        deselected = [item for item in items if not _in_benchmarks(item.path)]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = kept
        return
    skip = pytest.mark.skip(reason="a benchmark: run it with pytest --benchmark")
    for item in items:
        if _in_benchmarks(item.path):
            item.add_marker(skip)
