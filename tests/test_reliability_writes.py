"""Atomic outputs: a process killed while writing the leaderboard leaves the earlier one whole."""

import os
import random
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from bench.plan.goals import Goals
from bench.report.leaderboard import RunInfo, render_leaderboard, write_leaderboard
from bench.report.results import TrialRecord, trials_table
from bench.specs import TrialSpec
from tests.conftest import REPO_ROOT

# A child that rewrites the leaderboard as fast as it can, each version naming itself.
WRITER = """
import itertools, sys
import pandas as pd
import pytest
from bench.report.leaderboard import write_leaderboard
from tests.test_reliability_writes import info
trials = pd.read_parquet(sys.argv[1])
for version in itertools.count(1):
    write_leaderboard(info(version), trials, __import__("pathlib").Path(sys.argv[2]))
    print(version, flush=True)
"""


def info(version: int) -> RunInfo:
    return RunInfo(f"version-{version}", "faults", "atomic writes", "synthetic", "smoke", Goals(0.7))


def big_trials_table(rows: int = 200) -> pd.DataFrame:
    records = []
    for index in range(rows):
        spec = TrialSpec(
            name=f"trial{index:04d}",
            model="tiny_cnn",
            optimizer="adam",
            learning_rate=1e-3,
            momentum=0.0,
            batch_size=16,
            policy="report",
            normalisation="per_image",
            seed=index,
            epochs=2,
        )
        epochs = [
            {
                "epoch": e,
                "train_loss": 0.5,
                "val_accuracy": 0.5 + index / 1000,
                "train_images": 32,
                "train_seconds": 1.0,
                "epoch_seconds": 1.2,
                "elapsed_seconds": 1.2 * e,
            }
            for e in (1, 2)
        ]
        records.append(TrialRecord(spec=spec, epochs=epochs))
    return trials_table(records, target_accuracy=0.7)


def test_a_kill_during_a_leaderboard_write_leaves_a_whole_leaderboard(tmp_path):
    trials = big_trials_table()
    trials.to_parquet(tmp_path / "trials.parquet")
    board = tmp_path / "LEADERBOARD.md"
    write_leaderboard(info(0), trials, board)
    rng = random.Random(0)
    versions_seen = []
    for _ in range(3):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path / "trials.parquet"), str(board)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        assert writer.stdout.readline(), "the writer stopped on its own"
        time.sleep(rng.uniform(0.0, 1.0))  # a write takes about 0.3 s: killed at some moment of one
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        writer.stdout.close()
        text = board.read_text()
        version = int(text.split("version-", 1)[1].split()[0].rstrip("`*,."))
        assert text == render_leaderboard(info(version), trials, [])  # whole: exactly one version, every byte
        versions_seen.append(version)
    assert all(version >= 1 for version in versions_seen)  # the writers did replace the file


def test_a_failed_rename_leaves_every_output_as_it_was(tmp_path, monkeypatch):
    """Results, epochs, leaderboard, plots, manifest, run info, run.json and stop reasons all go
    through a temporary file and a rename: when the rename fails, each file stays as it was."""
    from bench import io
    from bench.execute.runner import PatienceStopper
    from bench.io import atomic_write_text, write_table
    from bench.report.leaderboard import save_run_info
    from bench.report.results import epochs_table
    from bench.trial.env import collect_manifest, write_manifest
    from tests.fake_nvml import FakeNvml, ManualClock
    from tests.test_results_and_leaderboard import epoch

    def writers(version: int) -> list:
        spec = TrialSpec(name="t", model="tiny_cnn", optimizer="adam", learning_rate=1e-3, momentum=0.0)
        spec = spec.replace(batch_size=16, policy="report", normalisation="per_image", seed=version, epochs=2)
        records = [TrialRecord(spec=spec, epochs=[epoch(1, 0.5 + version / 10), epoch(2, 0.6)])]
        trials, epochs = trials_table(records, target_accuracy=0.7), epochs_table(records)
        nvml = FakeNvml([], ManualClock(), fail_init=True)
        stopper = PatienceStopper(tmp_path / "stop_reasons.json")
        return [
            lambda: write_table(trials, tmp_path / "results"),
            lambda: write_table(epochs, tmp_path / "epochs"),
            lambda: write_leaderboard(info(version), trials, tmp_path / "LEADERBOARD.md", epochs=epochs),
            lambda: save_run_info(info(version), tmp_path),
            lambda: write_manifest(collect_manifest(seeds=[version], argv=[], repo=tmp_path, nvml=nvml), tmp_path),
            lambda: atomic_write_text(tmp_path / "run.json", f'{{"version": {version}}}'),
            lambda: [stopper(f"t{version}", {"epoch": e, "val_accuracy": 0.5, "patience": 1}) for e in (1, 2)],
        ]

    def snapshot() -> dict:
        return {path.relative_to(tmp_path): path.read_bytes() for path in sorted(tmp_path.rglob("*")) if path.is_file()}

    for write in writers(1):
        write()
    before = snapshot()
    assert {"results.parquet", "LEADERBOARD.md", "manifest.json", "run_info.json", "stop_reasons.json"} <= {
        str(path) for path in before
    }
    assert any(str(path).startswith("plots/") for path in before)

    def fail(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(io.os, "replace", fail)
    for index, write in enumerate(writers(2)):
        with pytest.raises(OSError, match="No space left"):
            write()
        assert snapshot() == before, index  # nothing changed, no temporary file left behind
