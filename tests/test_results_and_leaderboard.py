import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.io import atomic_write_text, read_table, write_table
from bench.plan.goals import MET, MISSED, SMOKE, UNMEASURED, GoalError, Goals, check_row, meets_every_budget, parse_goal
from bench.report.answer import SMOKE_SENTENCE, ranked_rows
from bench.report.compare import compare_runs, main, render_cross_run_leaderboard
from bench.report.groups import groups_table
from bench.report.leaderboard import RunInfo, load_run_info, render_leaderboard, save_run_info, write_leaderboard
from bench.report.plots import pareto_front, plot_learning_curves, plot_tradeoff, write_plots
from bench.report.results import TrialRecord, epochs_table, summarise, trials_table
from bench.scores import class_scores, confusion_text
from bench.specs import TrialSpec

GOLDEN = Path(__file__).parent / "golden" / "leaderboard.md"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def epoch(number, val_accuracy, images=15, train_seconds=1.5, train_loss=0.5, **extra):
    return {
        "epoch": number,
        "train_loss": train_loss,
        "train_accuracy": val_accuracy - 0.05,
        "val_loss": 0.6,
        "val_accuracy": val_accuracy,
        "epoch_seconds": 2.0,
        "train_seconds": train_seconds,
        "train_images_per_sec": images / train_seconds,
        "elapsed_seconds": 2.0 * number,
        "params": 1000,
        "trainable_params": 1000,
        "train_images": images,
        "val_images": 5,
        **extra,
    }


@pytest.fixture
def records():
    spec = TrialSpec(name="good", model="levi_hassner", epochs=3, reference=0.9)
    short = TrialSpec(name="stopped", model="levi_hassner", epochs=5, patience=1)
    broken = TrialSpec(name="broken", model="levi_hassner", epochs=3)
    nan = TrialSpec(name="exploded", model="levi_hassner", epochs=2, learning_rate=10.0)
    return [
        TrialRecord(
            spec=spec,
            epochs=[
                epoch(1, 0.6, train_seconds=7.5),  # graph building
                epoch(2, 0.85, train_seconds=1.5),
                epoch(3, 0.8, train_seconds=1.0),
            ],
        ),
        TrialRecord(spec=short, epochs=[epoch(1, 0.7), epoch(2, 0.65)]),
        TrialRecord(
            spec=TrialSpec(name="patient", model="levi_hassner", epochs=4, patience=1),
            epochs=[epoch(1, 0.72), epoch(2, 0.71)],
            stop_reason="patience: val accuracy not improved for 1 epoch(s)",
        ),
        TrialRecord(spec=broken, epochs=[], error="ValueError: boom"),
        TrialRecord(spec=nan, epochs=[epoch(1, 0.5), epoch(2, 0.5, train_loss=math.nan)]),
    ]


def gpu_epoch(number, val_accuracy, energy_j, **extra):
    return epoch(
        number,
        val_accuracy,
        images=100,
        train_seconds=2.0,
        energy_j=energy_j,
        power_w=250.0,
        gpu_util=90.0,
        gpu_memory_bytes=2e9,
        process_gpu_memory_bytes=1e9,
        energy_source="counter",
        gpu_names="NVIDIA A100-SXM4-80GB",
        gpu_shared="no",
        nvml_reason="",
        flops_per_image=1.5e9,
        train_flops_per_image=4.5e9,
        precision="fp32",
        **extra,
    )


def repeated_records(reference=0.9498):
    """One report row run with three seeds, on a (recorded) A100."""
    records = []
    for seed, curve in enumerate([[0.70, 0.84], [0.82, 0.85], [0.75, 0.86]]):
        spec = TrialSpec(
            name=f"lh.seed={seed}", model="levi_hassner", epochs=2, seed=seed, group="lh", reference=reference
        )
        epochs = [gpu_epoch(i + 1, accuracy, energy_j=500.0) for i, accuracy in enumerate(curve)]
        epochs[-1]["infer_images_per_sec"] = 900.0 + seed
        records.append(TrialRecord(spec=spec, epochs=epochs))
    return records


def run_info(**changes):
    values = {
        "run_id": "r1",
        "suite": "baseline",
        "suite_description": "desc",
        "data": "synthetic",
        "preset": "smoke",
        "goals": Goals(target_accuracy=0.8, accuracy=0.8, params=1000, epochs_to_target=None),
        "environment": "Python 3.11.7, TensorFlow 2.21.0; CPU test (2 cores); GPU none",
        "device": "CPU test x2",
        "command": "python -m bench.run --suite baseline",
        "class_names": ("male", "female"),
    }
    return RunInfo(**{**values, **changes})


# --------------------------------------------------------------------------- per trial


def test_trials_table_derives_best_epoch_throughput_and_status(records):
    table = trials_table(records, target_accuracy=0.8).set_index("trial")
    assert table.loc["good", "best_val_accuracy"] == 0.85 and table.loc["good", "best_epoch"] == 2
    assert table.loc["good", "final_val_accuracy"] == 0.8
    assert table.loc["good", "first_epoch_images_per_sec"] == pytest.approx(15 / 7.5)
    assert table.loc["good", "train_images_per_sec"] == pytest.approx(30 / 2.5)  # epochs 2-3 only
    assert table.loc["good", "epochs_to_target"] == 2 and table.loc["good", "time_to_target_seconds"] == 4.0
    assert table.loc["good", "epochs_to_plateau"] == 2
    assert table.loc["good", "status"] == "completed" and table.loc["good", "reason"] == ""
    assert table.loc["stopped", "status"] == "early_stopped"
    assert table.loc["stopped", "reason"] == "stopped after epoch 2 of 5: by the scheduler"
    assert math.isnan(table.loc["stopped", "epochs_to_target"])
    assert table.loc["patient", "reason"] == (
        "stopped after epoch 2 of 4: patience: val accuracy not improved for 1 epoch(s)"
    )  # the scheduler's reason, where it gives one
    assert table.loc["broken", "status"] == "failed" and table.loc["broken", "error"] == "ValueError: boom"
    assert math.isnan(table.loc["broken", "best_val_accuracy"])
    assert table.loc["exploded", "status"] == "diverged"
    assert table.loc["exploded", "reason"] == "train loss not finite from epoch 2"
    # no GPU and no FLOPs count reported: n/a, never zero
    assert math.isnan(table.loc["good", "energy_j"]) and math.isnan(table.loc["good", "mfu"])


def test_trials_table_energy_flops_and_mfu_from_the_reports():
    table = trials_table(repeated_records(), target_accuracy=0.8).set_index("trial")
    row = table.loc["lh.seed=0"]
    assert row.energy_j == pytest.approx(1000.0)  # two epochs of 500 J
    assert row.energy_mj_per_image == pytest.approx(1000.0 * 1000 / (100 * 2))
    assert row.gflops_per_image == pytest.approx(1.5)
    assert row.infer_images_per_sec == 900.0
    assert row.peak_source.startswith("A100 TF32")
    assert row.mfu == pytest.approx(4.5e9 * 50.0 / 156e12)  # 100 images / 2 s in epoch 2
    assert row.power_w_mean == 250.0 and row.gpu_memory_max_bytes == 2e9


def test_a_bf16_trial_on_an_h100_is_measured_against_the_bf16_peak():
    records = repeated_records()
    for record in records:
        for row in record.epochs:
            row.update(gpu_names="NVIDIA H100 80GB HBM3", precision="bf16")
    row = trials_table(records).set_index("trial").loc["lh.seed=0"]
    assert row.peak_flops == pytest.approx(989.4e12) and row.peak_source.startswith("H100 SXM bf16")
    assert row.mfu == pytest.approx(4.5e9 * 50.0 / 989.4e12)


def test_mfu_reads_the_training_flops_a_trial_reported_not_a_multiple_of_forward(records):
    records[0].epochs[1].update(flops_per_image=1e9, train_flops_per_image=1.2e9)  # a frozen backbone's
    table = trials_table(records, cpu_peak_flops=1e11).set_index("trial")
    assert table.loc["good", "mfu"] == pytest.approx(1.2e9 * 12.0 / 1e11)
    assert "CPU" in table.loc["good", "peak_source"]


def test_epochs_table_has_one_row_per_trial_epoch(records):
    table = epochs_table(records)
    assert len(table) == 9
    assert list(table.columns[:3]) == ["trial", "group", "epoch"]


def test_tables_round_trip_through_parquet_and_csv(records, tmp_path):
    table = trials_table(records)
    paths = write_table(table, tmp_path / "results")
    assert [p.name for p in paths] == ["results.parquet", "results.csv"]
    pd.testing.assert_frame_equal(read_table(tmp_path / "results"), table)
    assert len(pd.read_csv(tmp_path / "results.csv")) == 5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert oct(os.stat(paths[0]).st_mode & 0o777) == oct(0o644)


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "x.md"
    atomic_write_text(target, "old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"


# --------------------------------------------------------------------------- statistics


@pytest.mark.parametrize(
    ("p", "df", "published"),  # Student t tables (e.g. NIST/SEMATECH e-Handbook 1.3.6.7.2)
    [
        (0.975, 1, 12.706),
        (0.975, 2, 4.303),
        (0.975, 4, 2.776),
        (0.975, 9, 2.262),
        (0.975, 29, 2.045),
        (0.995, 9, 3.250),
    ],
)
def test_t_quantile_matches_the_published_table(p, df, published):
    values = [0.0, 1.0] + [0.5] * (df - 1)  # df + 1 values: the interval's half width is t * std / sqrt(n)
    summary = summarise(values, confidence=2 * p - 1)
    t = summary.half_width / (summary.std / math.sqrt(df + 1))
    assert t == pytest.approx(published, abs=5e-4)
    assert summary.ci_low == pytest.approx(summary.mean - summary.half_width)


def test_confidence_interval_by_hand():
    # mean 0.85, sample std 0.01, t(0.975, 2) = 4.302652729749464 (scipy.stats.t.ppf)
    summary = summarise([0.84, 0.85, 0.86])
    half = 4.302652729749464 * 0.01 / math.sqrt(3)
    assert summary.n == 3 and summary.mean == pytest.approx(0.85) and summary.std == pytest.approx(0.01)
    assert summary.ci_low == pytest.approx(0.85 - half, abs=1e-12)
    assert summary.ci_high == pytest.approx(0.85 + half, abs=1e-12)
    one = summarise([0.9, math.nan])
    assert one.n == 1 and one.mean == 0.9 and math.isnan(one.std) and math.isnan(one.ci_low)
    assert summarise([]).n == 0


def test_groups_table_summarises_repeats_and_counts_failures():
    records = repeated_records()
    records.append(TrialRecord(spec=TrialSpec(name="lh.seed=3", model="levi_hassner", group="lh"), error="E"))
    groups = groups_table(trials_table(records, target_accuracy=0.8)).set_index("group")
    row = groups.loc["lh"]
    assert row.n == 4 and row.n_finished == 3 and row.n_reached_target == 3
    assert row.best_val_accuracy == pytest.approx(0.85) and row.best_val_accuracy_std == pytest.approx(0.01)
    assert row.best_val_accuracy_ci_high - 0.85 == pytest.approx(4.302652729749464 * 0.01 / math.sqrt(3))
    assert row.epochs_to_target == pytest.approx((2 + 1 + 2) / 3)
    assert row.status == "3 completed, 1 failed"
    assert row.trials == "lh.seed=0, lh.seed=1, lh.seed=2, lh.seed=3"


# --------------------------------------------------------------------------- markdown


def scored(epochs, males=60, females=40):
    """``epochs`` with the confusion matrix of their val accuracy on ``males`` + ``females`` images
    (as many of each class right as the accuracy allows, males first) and its scores."""
    for row in epochs:
        right = round(row["val_accuracy"] * (males + females))
        male = min(males, right - min(females, right // 2))
        matrix = np.array([[male, males - male], [females - (right - male), right - male]])
        figures = class_scores(matrix)
        row |= {"val_confusion": confusion_text(matrix), "val_balanced_accuracy": figures.balanced_accuracy}
        row |= {"val_macro_f1": figures.macro_f1, "val_images": males + females}
    return epochs


def golden_trials():
    records = repeated_records()
    for record in records:  # the golden file must not depend on anything but these figures
        record.spec = record.spec.replace(reference=0.9498)
        scored(record.epochs)
    single = TrialSpec(name="small", model="levi_hassner", epochs=3, learning_rate=0.01, patience=2)
    records.append(TrialRecord(spec=single, epochs=scored([epoch(1, 0.7), epoch(2, 0.75)])))
    records.append(TrialRecord(spec=TrialSpec(name="broken", model="levi_hassner"), error="ValueError: boom"))
    return trials_table(records, target_accuracy=0.8)


def test_leaderboard_markdown_matches_the_golden_file():
    plots = [
        ("Learning curves", "plots/learning_curves.png", ""),
        ("Accuracy vs GFLOPs", None, "no report row has both forward GFLOPs per image and an accuracy"),
    ]
    goals = Goals(target_accuracy=0.8, accuracy=0.8, params=1000, time=4.0, inference=500.0)
    text = render_leaderboard(run_info(repeats=3, preset="paper", goals=goals), golden_trials(), plots)
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "rerun with UPDATE_GOLDEN=1 after a deliberate change, and review the diff"


def first_table(text: str) -> list[str]:
    """The rows (header first) of the first markdown table in ``text``."""
    lines = text.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("| "))
    end = next((index for index in range(start, len(lines)) if not lines[index].startswith("|")), len(lines))
    return [line for line in lines[start:end] if line.startswith("| ")]


def table_after(text: str, heading: str) -> list[dict[str, str]]:
    """The rows of the first table after ``heading``, as dicts by column header."""
    lines = first_table(text.split(heading, 1)[1])
    header = [cell.strip() for cell in lines[0].split("|")[1:-1]]
    return [dict(zip(header, (cell.strip() for cell in line.split("|")[1:-1]), strict=True)) for line in lines[1:]]


def test_leaderboard_ranks_checks_goals_and_lists_unfinished_trials(records):
    text = render_leaderboard(run_info(preset="paper"), trials_table(records, target_accuracy=0.8))
    rows = table_after(text, "## Accuracy")
    assert [row["row"] for row in rows] == ["good", "patient", "stopped", "exploded", "broken"]
    assert [row["#"] for row in rows] == ["1", "2", "3", "4", "5"]
    good = rows[0]
    assert good["best val accuracy"] == "0.8500" and good["report"] == "0.9000" and good["diff"] == "-0.0500"
    assert good["accuracy budget"] == "✓ met (>= 0.8000)"  # met or missed against the budget, not 0.85 again
    assert rows[2]["accuracy budget"] == "✗ missed (< 0.8000)"  # 0.70 < 0.80
    assert rows[4]["accuracy budget"] == "–" and rows[4]["status"] == "failed"
    answer = table_after(text, "## The answer")
    assert [row["row"] for row in answer] == ["good"]  # the one row meeting every budget
    assert answer[0]["parameters"] == "1,000 ✓"
    assert "- #3 `stopped`: best val accuracy 0.7000 < 0.8000" in text
    assert "- #5 `broken`: no trial finished (failed)" in text
    assert "- `broken`: failed: ValueError: boom" in text
    assert "- `exploded`: diverged: train loss not finite from epoch 2" in text
    assert "- `stopped`: early_stopped: stopped after epoch 2 of 5" in text
    assert "**Budgets** (target accuracy 0.80): best val accuracy >= 0.8000; parameters <= 1,000." in text
    assert [row["#"] for row in table_after(text, "## Cost")] == ["1", "2", "3", "4", "5"]  # one numbering


@pytest.mark.parametrize(
    ("source", "mark"),
    [
        ("counter*sm_share", "(shared GPU: its SM share)"),
        ("counter*lease_share", "(shared GPU: its lease share)"),
        ("counter", "(shared GPU)"),  # a run from before energies were attributed
    ],
)
def test_energy_of_a_shared_gpu_is_marked_with_how_its_share_was_found(source, mark):
    records = repeated_records()
    for record in records:
        for row in record.epochs:
            row["gpu_shared"] = "yes"
            row["energy_source"] = source
    text = render_leaderboard(run_info(), trials_table(records, target_accuracy=0.8))
    assert f"| 1,000.0 {mark} | 5,000.00 {mark} |" in text


def test_real_data_goal_is_the_report_figure(records):
    goals = Goals(target_accuracy=0.8, accuracy=None, params=None, epochs_to_target=1)
    text = render_leaderboard(run_info(goals=goals, preset="paper"), trials_table(records, target_accuracy=0.8))
    good = table_after(text, "## Accuracy")[0]
    assert good["row"] == "good" and good["accuracy budget"] == "✗ missed (< 0.9000)"  # 0.85 < report 0.90
    assert "- #1 `good`: best val accuracy 0.8500 < 0.9000; epochs to the target 2 > 1" in text
    assert "best val accuracy >= the published figure for its row" in text
    assert "No row meets every budget." in text


def test_every_budget_met_missed_or_not_measured():
    trials = trials_table(repeated_records(), target_accuracy=0.8)  # three seeds on a recorded A100
    cpu = trials_table(
        [TrialRecord(TrialSpec(name="cpu", model="levi_hassner", epochs=2), [epoch(1, 0.82), epoch(2, 0.9)])],
        target_accuracy=0.8,
    )
    groups = groups_table(pd.concat([trials, cpu], ignore_index=True)).set_index("group")
    gpu_row, cpu_row = groups.loc[["lh"]].itertuples(), groups.loc[["cpu"]].itertuples()
    gpu_row, cpu_row = next(gpu_row), next(cpu_row)
    cases = {  # budget -> (goal that lh meets, goal that lh misses)
        "accuracy": (0.84, 0.86),
        "time": (4.0, 3.0),  # lh: 10/3 s to the target on average
        "train_time": (4.0, 3.0),  # 4 s of wall time
        "params": (1000, 999),
        "size": (1e9, 1.0),
        "inference": (900.0, 950.0),  # 901 img/s
        "energy": (5000.0, 4999.0),  # 5,000 mJ per image
        "epochs": (2, 1),  # 5/3 epochs on average, every seed reached the target
    }
    for name, (meets, misses) in cases.items():
        if name == "size":  # the records hold no weight sizes: measured ones come from the trials
            gpu_row = gpu_row._replace(model_bytes=4000.0)
        base = Goals(target_accuracy=0.8)
        (verdict,) = [v for v in check_row(gpu_row, base.with_budgets({name: meets}), False) if v.budget.name == name]
        assert verdict.status == MET, (name, verdict)
        (verdict,) = [v for v in check_row(gpu_row, base.with_budgets({name: misses}), False) if v.budget.name == name]
        assert verdict.status == MISSED, (name, verdict)
    (energy,) = [v for v in check_row(cpu_row, Goals(0.8, energy=10.0), False) if v.budget.name == "energy"]
    assert energy.status == UNMEASURED and energy.missed_text() == "GPU energy per training image not measured"
    assert not meets_every_budget([energy])
    smoke = check_row(gpu_row, Goals(0.8, accuracy=0.99, time=1.0, params=10), smoke=True)
    assert [(v.budget.name, v.status) for v in smoke] == [("accuracy", SMOKE), ("time", SMOKE), ("params", MISSED)]


def test_a_repeated_row_meets_a_time_budget_only_if_every_seed_reached_the_target():
    records = repeated_records()
    records[0].epochs[1]["val_accuracy"] = 0.79  # seed 0 never reaches 0.80
    records[0].epochs[0]["val_accuracy"] = 0.70
    (row,) = groups_table(trials_table(records, target_accuracy=0.8)).itertuples()
    (verdict,) = [v for v in check_row(row, Goals(0.8, time=100.0), False) if v.budget.name == "time"]
    assert row.n_reached_target == 2 and verdict.status == MISSED


def test_ties_in_accuracy_rank_by_time_to_target():
    fast = TrialRecord(TrialSpec(name="fast", model="levi_hassner", epochs=1), [epoch(1, 0.9)])
    slow_epoch = epoch(1, 0.9)
    slow_epoch["elapsed_seconds"] = 9.0
    slow = TrialRecord(TrialSpec(name="slow", model="levi_hassner", epochs=1), [slow_epoch])
    groups = groups_table(trials_table([slow, fast], target_accuracy=0.8))
    assert [row.group for _, row, _ in ranked_rows(groups, Goals(0.8, accuracy=0.8), smoke=False)] == ["fast", "slow"]


def test_a_smoke_run_says_its_accuracies_check_the_path():
    text = render_leaderboard(run_info(), trials_table(repeated_records(), target_accuracy=0.8))
    assert SMOKE_SENTENCE in text and text.index(SMOKE_SENTENCE) < text.index("## The answer")
    assert table_after(text, "## Accuracy")[0]["accuracy budget"] == "n/a (smoke)"
    assert "✗" not in table_after(text, "## Accuracy")[0]["accuracy budget"]
    assert SMOKE_SENTENCE not in render_leaderboard(run_info(preset="paper"), trials_table(repeated_records()))
    only_accuracy = render_leaderboard(run_info(goals=Goals(0.8, accuracy=0.8)), trials_table(repeated_records()))
    assert "A smoke run cannot answer this: its only budgets are on accuracy" in only_accuracy
    assert [row["row"] for row in table_after(text, "## The answer")] == ["lh"]  # params is still checked


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("speed=3", "unknown budget 'speed'"),
        ("tim=3", "did you mean time?"),
        ("time", "--goal takes NAME=VALUE"),
        ("time=fast", "'fast' is not a number"),
        ("accuracy=1.5", "accuracy must be in [0, 1]"),
        ("params=-1", "params must be > 0"),
        ("energy=nan", "must be a number"),
    ],
)
def test_bad_goals_are_one_line_errors(text, message):
    with pytest.raises(GoalError, match=re.escape(message)):
        parse_goal(text)
    assert parse_goal("params=10e6") == ("params", 10e6) and parse_goal(" time=1800") == ("time", 1800.0)


# --------------------------------------------------------------------------- plots


def test_pareto_front():
    xs = [1.0, 2.0, 3.0, 2.5, 0.5, math.nan]
    ys = [0.80, 0.90, 0.95, 0.85, 0.70, 0.99]
    assert pareto_front(xs, ys) == [4, 0, 1, 2]  # (2.5, 0.85) is beaten by (2.0, 0.90); NaN left out
    assert pareto_front([1.0, 1.0], [0.9, 0.8]) == [0]


def test_plots_are_valid_pngs_and_linked(tmp_path):
    records = repeated_records()
    trials = trials_table(records, target_accuracy=0.8)
    path = write_leaderboard(run_info(repeats=3), trials, tmp_path / "LEADERBOARD.md", epochs=epochs_table(records))
    text = path.read_text()
    for name in ("learning_curves", "accuracy_vs_params", "accuracy_vs_gflops", "accuracy_vs_time_to_target"):
        png = tmp_path / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == PNG_SIGNATURE, name
        with Image.open(png) as image:
            image.verify()
        with Image.open(png) as image:
            assert image.width >= 600 and image.height >= 400, (name, image.size)
        assert f"](plots/{name}.png)" in text


def test_a_plot_without_data_is_listed_with_the_reason(tmp_path, records):
    trials = trials_table(records, target_accuracy=0.8)  # no FLOPs reported
    drawn = write_plots(trials, epochs_table(records), Goals(0.8), {name: 1 for name in trials["group"]}, tmp_path)
    entries = {title: (path, note) for title, path, note in drawn}
    path, note = entries["Accuracy vs GFLOPs"]
    assert path is None and note == "no report row has both forward GFLOPs per image and an accuracy"
    assert entries["Learning curves"][0].is_file()


def test_each_rows_confusion_matrix_is_drawn_as_a_heatmap_named_by_its_number(tmp_path):
    trials = golden_trials()
    numbers = {"lh": 1, "small": 2, "broken": 3}
    goals = Goals(0.8, metric="balanced_accuracy")
    drawn = write_plots(trials, epochs_table([]), goals, numbers, tmp_path, ("male", "female"))
    entries = {title: path for title, path, _ in drawn}
    assert entries["Confusion matrix: #1 lh"] == tmp_path / "confusion_1.png"
    assert entries["Confusion matrix: #2 small"].read_bytes().startswith(PNG_SIGNATURE)
    assert "Confusion matrix: #3 broken" not in entries  # it finished no epoch: no matrix
    assert "Balanced accuracy vs parameters" in entries  # the tradeoffs are said of the ranking metric
    # classes that do not match the matrices (another dataset's): nothing drawn rather than mislabelled
    others = write_plots(trials, epochs_table([]), goals, numbers, tmp_path / "other", ("a", "b", "c"))
    assert not [title for title, _, _ in others if title.startswith("Confusion")]


# --------------------------------------------------------------------------- across runs, compare


def make_run(runs, run_id, records, **info_changes):
    run_dir = runs / run_id
    write_table(trials_table(records, target_accuracy=0.8), run_dir / "results")
    save_run_info(run_info(run_id=run_id, **info_changes), run_dir)
    return run_dir


def test_run_info_round_trips(tmp_path):
    info = run_info(cv=True, repeats=2)
    save_run_info(info, tmp_path)
    assert load_run_info(tmp_path) == info


def test_cross_run_leaderboard_keeps_the_best_row_per_suite_data_and_model(tmp_path, records):
    make_run(tmp_path, "a", repeated_records())
    make_run(tmp_path, "b", records[1:])  # best 0.70: run a's 0.85 stays
    make_run(tmp_path, "c", records, data="/data/adience", synthetic=False)
    (tmp_path / "not-a-run").mkdir()
    text = render_cross_run_leaderboard(tmp_path)
    rows = [line for line in text.splitlines() if line.startswith("| baseline")]
    assert len(rows) == 2  # synthetic and real data kept apart
    synthetic = next(row for row in rows if "| synthetic" in row)
    assert "| lh " in synthetic and "0.8500 ± 0.0100" in synthetic and "[a](a/LEADERBOARD.md)" in synthetic
    real = next(row for row in rows if "/data/adience" in row)
    assert "| good " in real and "[c](c/LEADERBOARD.md)" in real


def test_compare_flags_regressions(tmp_path):
    before = repeated_records()
    after = repeated_records()
    after[0].epochs[1]["val_accuracy"] = 0.82  # best 0.84 -> 0.82: -2 pt
    after[1].epochs[1]["train_seconds"] = 4.0  # 50 -> 25 img/s
    after[2].epochs[0]["energy_j"] = 800.0  # 1000 -> 1300 J
    a = make_run(tmp_path, "a", before)
    b = make_run(tmp_path, "b", after, device="NVIDIA H100 80GB HBM3")
    text, regressions = compare_runs(a, b)
    assert regressions == 3
    lines = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| lh")}
    assert "REGRESSION: accuracy -2.0 pt" in lines["lh.seed=0"]
    assert "REGRESSION: train img/s -50%" in lines["lh.seed=1"]
    assert "REGRESSION: energy +30%" in lines["lh.seed=2"]
    assert "devices differ" in text
    _, none = compare_runs(a, a)
    assert none == 0


def test_compare_command_line(tmp_path, capsys):
    make_run(tmp_path, "a", repeated_records())
    worse = repeated_records()
    worse[0].epochs[1]["val_accuracy"] = 0.5
    make_run(tmp_path, "b", worse)
    assert main(["--compare", "a", "b", "--runs", str(tmp_path)]) == 0
    assert "1 regression(s)." in capsys.readouterr().out
    assert main(["--compare", str(tmp_path / "a"), "b", "--runs", str(tmp_path), "--fail-on-regression"]) == 1
    capsys.readouterr()
    assert main(["--compare", "a", "missing", "--runs", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run 'missing' not found" in err[0]
    assert main(["--refresh", "--runs", str(tmp_path)]) == 0
    assert (tmp_path / "LEADERBOARD.md").is_file()
    assert main([]) == 2


def crowded_groups(count: int = 6):
    """Rows whose points nearly coincide, as a smoke run's random-weight models do."""
    records = []
    for index in range(count):
        spec = TrialSpec(name=f"model_with_a_long_name_{index}", model="levi_hassner", epochs=2)
        epochs = [gpu_epoch(1, 0.5, 10.0), gpu_epoch(2, 0.51 + 0.001 * (index % 2), 10.0)]
        for row in epochs:
            row["flops_per_image"] = 1.5e9 * (1 + 0.01 * index)
        records.append(TrialRecord(spec=spec, epochs=epochs))
    return groups_table(trials_table(records, target_accuracy=0.5)), epochs_table(records)


def test_tradeoff_plot_numbers_every_point_as_its_row_without_overprinting(tmp_path):
    groups, _ = crowded_groups()
    numbers = {group: 10 + index for index, group in enumerate(groups["group"])}
    drawn = plot_tradeoff(
        groups,
        numbers,
        "params",
        1e6,
        "parameters (millions)",
        tmp_path / "p.png",
        "Accuracy vs parameters",
        accuracy_budget=0.6,
        x_budget=2000,
    )
    assert sorted(p.number for p in drawn.points) == sorted(numbers.values())
    assert {p.group: p.number for p in drawn.points} == numbers
    assert drawn.overlapping_labels == 0 and drawn.points_inside_axes
    boxes = drawn.label_boxes
    assert not any(
        a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3] for i, a in enumerate(boxes) for b in boxes[i + 1 :]
    )
    assert drawn.lines == ["accuracy budget 0.6", "budget 0.002"] and drawn.legend_outside_axes
    with Image.open(drawn.path) as image:
        assert image.width >= 800


def test_learning_curves_put_losses_on_a_log_scale_and_the_legend_outside(tmp_path):
    _, epochs = crowded_groups(3)
    epochs.loc[epochs.index[0], "val_loss"] = 7e18  # one exploding trial must not flatten the others
    numbers = {group: index + 1 for index, group in enumerate(sorted(set(epochs["group"])))}
    drawn = plot_learning_curves(epochs, numbers, 0.8, tmp_path / "curves.png")
    assert drawn.lines[:3] == ["target 0.80", "validation", "training"]
    assert drawn.lines[3:-1] == [f"{numbers[group]}  {group}" for group in sorted(numbers, key=numbers.get)]
    assert drawn.loss_scale == "log" and drawn.legend_outside_axes
    exploding = next(numbers[g] for g in epochs.loc[[epochs.index[0]], "group"])
    assert drawn.lines[-1] == f"loss above the axis: #{exploding}"  # kept off the axis, said in the legend
    assert drawn.path.read_bytes()[:8] == PNG_SIGNATURE


def test_a_latency_budget_reads_one_images_p99_and_a_budget_cell_says_met_or_missed():
    from bench.report.answer import budget_cell

    assert parse_goal("latency=5") == ("latency", 5.0)
    with pytest.raises(GoalError, match="latency must be > 0"):
        parse_goal("latency=0")
    goals = Goals(target_accuracy=0.8, accuracy=0.8, latency=5.0)
    fast = pd.Series({"best_score": 0.9, "latency_ms_p50": 3.0, "latency_ms_p99": 4.5, "reference": math.nan})
    slow = fast.copy()
    slow["latency_ms_p99"] = 7.25  # p50 under the budget, the tail over it
    [(accuracy, latency)] = [check_row(fast, goals, smoke=False)]
    assert (accuracy.status, latency.status) == (MET, MET) and latency.budget.label == "latency p99 at batch 1"
    missed = check_row(slow, goals, smoke=False)[1]
    assert missed.status == MISSED and missed.missed_text() == "latency p99 at batch 1 7.25 ms > 5 ms"
    assert budget_cell(accuracy) == "✓ met (>= 0.8000)" and budget_cell(missed) == "✗ missed (> 5 ms)"
    # another ranking metric: the accuracy budget is said of it, and a published figure is no goal for it
    balanced = Goals(target_accuracy=0.7, metric="balanced_accuracy")
    assert balanced.active()[0].label == "best val balanced accuracy" and balanced.accuracy_goal(0.95) == 0.7
    with pytest.raises(GoalError, match="unknown metric 'f1'"):
        Goals(target_accuracy=0.7, metric="f1")
