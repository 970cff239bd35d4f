"""pytest-benchmark suites and scripts: per-model throughput and the harness's own costs."""
