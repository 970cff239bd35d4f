import math

import pandas as pd
import pytest

from bench.leaderboard import RunInfo, render_leaderboard, write_leaderboard
from bench.results import TrialRecord, atomic_write_text, epochs_table, read_table, trials_table, write_table
from bench.specs import TrialSpec


def epoch(number, val_accuracy, rate=10.0):
    return {
        "epoch": number,
        "train_loss": 0.5,
        "train_accuracy": 0.7,
        "val_loss": 0.6,
        "val_accuracy": val_accuracy,
        "epoch_seconds": 2.0,
        "train_seconds": 1.5,
        "train_images_per_sec": rate,
        "elapsed_seconds": 2.0 * number,
        "params": 1000,
        "trainable_params": 1000,
        "train_images": 15,
        "val_images": 5,
    }


@pytest.fixture
def records():
    spec = TrialSpec(name="good", model="levi_hassner", epochs=3, reference=0.9).to_dict()
    short = TrialSpec(name="stopped", model="levi_hassner", epochs=5).to_dict()
    broken = TrialSpec(name="broken", model="levi_hassner", epochs=3).to_dict()
    return [
        TrialRecord(spec=spec, epochs=[epoch(1, 0.6, 2.0), epoch(2, 0.85, 10.0), epoch(3, 0.8, 12.0)]),
        TrialRecord(spec=short, epochs=[epoch(1, 0.7), epoch(2, 0.65)]),
        TrialRecord(spec=broken, epochs=[], error="ValueError: boom"),
    ]


def test_trials_table_derives_best_epoch_throughput_and_status(records):
    table = trials_table(records).set_index("trial")
    assert table.loc["good", "best_val_accuracy"] == 0.85 and table.loc["good", "best_epoch"] == 2
    assert table.loc["good", "final_val_accuracy"] == 0.8
    assert table.loc["good", "train_images_per_sec"] == pytest.approx(11.0)  # epoch 1 left out
    assert table.loc["good", "status"] == "completed"
    assert table.loc["stopped", "status"] == "early_stopped"
    assert table.loc["broken", "status"] == "failed" and table.loc["broken", "error"] == "ValueError: boom"
    assert math.isnan(table.loc["broken", "best_val_accuracy"])


def test_epochs_table_has_one_row_per_trial_epoch(records):
    table = epochs_table(records)
    assert len(table) == 5
    assert list(table.columns[:2]) == ["trial", "epoch"]


def test_tables_round_trip_through_parquet_and_csv(records, tmp_path):
    table = trials_table(records)
    paths = write_table(table, tmp_path / "results")
    assert [p.name for p in paths] == ["results.parquet", "results.csv"]
    pd.testing.assert_frame_equal(read_table(tmp_path / "results"), table)
    assert len(pd.read_csv(tmp_path / "results.csv")) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "x.md"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"


def test_leaderboard_ranks_by_accuracy_and_shows_the_report_figure(records, tmp_path):
    info = RunInfo("r1", "baseline", "desc", "synthetic", "smoke", 0.8)
    text = render_leaderboard(info, trials_table(records))
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[0].split("|")[2].strip() == "trial"
    assert "good" in lines[1] and "0.8500" in lines[1] and "0.9000" in lines[1] and "-0.0500" in lines[1]
    assert "stopped" in lines[2] and "early_stopped" in lines[2]
    assert "broken" in lines[3] and "failed: ValueError: boom" in lines[3]
    assert "run: `r1`" in text and "preset: smoke" in text
    path = write_leaderboard(info, trials_table(records), tmp_path / "LEADERBOARD.md")
    assert path.read_text() == text
