"""``python -m bench.run``: bad input gives one line and exit 2; the selftest suite and a failing trial end to end."""

import json
import math
import os
import subprocess
import sys

import pandas as pd
import pytest

from bench.run import main
from tests.conftest import REPO_ROOT, run_cli


def one_error_line(capsys):
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err and "Traceback" not in captured.out
    return lines[0]


def test_unknown_suite_in_a_fresh_process_prints_one_line_and_exits_2():
    result = run_cli("--suite", "nope", timeout=120)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "valid suites: all, baseline, components, improvements, selftest, transfer" in errors[0]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--suite", "transferr"], "unknown suite 'transferr'"),
        (["--data", "x"], "--suite is required"),
        (["--suite", "baseline", "--trials", "resnet*"], "--trials 'resnet*' matches no trial of suite baseline"),
        (["--suite", "baseline", "--lr", "0"], "--lr must be > 0"),
        (["--suite", "baseline", "--batch-size", "0"], "--batch-size must be >= 1"),
        (["--suite", "baseline", "--gpus-per-trial", "1.5"], "--gpus-per-trial must be in (0, 1]"),
        (["--suite", "baseline", "--gpus-per-trial", "0"], "--gpus-per-trial must be in (0, 1]"),
        (["--suite", "baseline", "--gpus-per-trial", "most"], "takes a number in (0, 1] or auto"),
        (["--suite", "baseline", "--preset", "fast"], "unknown preset 'fast'"),
        (["--suite", "baseline", "--preset", "paper"], "add --force"),
        (["--suite", "baseline", "--epochs", "0"], "--epochs must be >= 1"),
        (["--suite", "baseline", "--epochs", "two"], "invalid int value: 'two'"),
        (["--suite", "baseline", "--bogus"], "unrecognized arguments: --bogus"),
        (["--suite", "baseline", "--precision", "fp8"], "--precision: invalid choice: 'fp8'"),
        (["--suite", "baseline", "--jit", "maybe"], "--jit: invalid choice: 'maybe'"),
        (["--suite", "baseline", "--data-on-device", "yes"], "--data-on-device: invalid choice: 'yes'"),
        (["--suite", "baseline", "--backend", "mxnet"], "--backend: invalid choice: 'mxnet'"),
        (["--suite", "baseline", "--image-size", "4"], "--image-size must be 8..1024, got 4"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(capsys, args, message):
    assert main(args) == 2
    assert message in one_error_line(capsys)


def test_a_backend_other_than_the_one_keras_runs_here_is_one_line(capsys):
    import keras

    other = "jax" if keras.backend.backend() != "jax" else "tensorflow"
    assert main(["--suite", "baseline", "--backend", other]) == 2
    assert f"Keras already runs on {keras.backend.backend()} in this process" in one_error_line(capsys)


def test_gpu_share_above_the_gpus_present_fails_before_ray_starts(capsys, tmp_path, small_synthetic, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    args = ["--suite", "selftest", "--data", str(small_synthetic), "--out", str(tmp_path), "--gpus-per-trial", "0.5"]
    assert main(args) == 2
    assert "more GPU than the 0 present" in one_error_line(capsys)


def test_unreachable_cluster_gives_one_line(capsys, tmp_path, small_synthetic):
    args = ["--suite", "selftest", "--data", str(small_synthetic), "--out", str(tmp_path), "--address", "127.0.0.1:9"]
    assert main(args) == 2
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in one_error_line(capsys)


def test_resume_of_a_folder_that_is_no_run(capsys, tmp_path):
    assert main(["--resume", str(tmp_path)]) == 2
    assert "is not a run folder" in one_error_line(capsys)


def test_list_shows_suites_rows_and_report_figures(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert (
        "baseline:" in out
        and "levi_hassner_sgd_lr=1e-3_m=0.9: levi_hassner, 300 epochs, policy report; report 0.9498" in out
    )


def test_data_path_that_does_not_exist(capsys, tmp_path):
    assert main(["--suite", "baseline", "--data", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    line = one_error_line(capsys)
    assert "does not exist" in line and "fold_0_data.txt" in line


def test_data_path_without_fold_files(capsys, tmp_path):
    (tmp_path / "faces").mkdir()
    assert main(["--suite", "baseline", "--data", str(tmp_path), "--out", str(tmp_path / "runs")]) == 2
    assert "holds no Adience fold files" in one_error_line(capsys)
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
@pytest.mark.backends
def test_selftest_suite_runs_end_to_end_with_the_backend_and_precision_asked_for(tmp_path, small_synthetic):
    """--backend sets the driver's and the trials' Keras backend; --precision and --jit reach every trial.

    (Not --jit on: XLA on a CPU with bf16 ran the tiny CNN's epoch in 60 s instead of 2 s here.
    On the session's small dataset: what reaches the trials is checked, not what they learn.)
    """
    import keras

    backend = keras.backend.backend()  # this leg's: tensorflow, or jax in CI's second leg
    result = run_cli(
        "--suite",
        "selftest",
        "--epochs",
        "2",
        "--data",
        str(small_synthetic),
        "--out",
        str(tmp_path),
        "--backend",
        backend,
        "--precision",
        "bf16",
        "--jit",
        "auto",
        "--data-on-device",
        "off",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = next(tmp_path.glob("*-selftest"))
    results = pd.read_csv(run_dir / "results.csv")
    assert set(results["backend"]) == {backend} and set(results["precision"]) == {"bf16"}
    xla = "on" if backend == "jax" else "off"  # Keras's choice on a CPU: JAX always compiles, TensorFlow not here
    assert set(results["jit"]) == {xla} and set(results["data_on_device"]) == {"off"}
    assert json.loads((run_dir / "run.json").read_text())["backend"] == backend
    leaderboard = (run_dir / "LEADERBOARD.md").read_text()
    assert f"- executed as: {backend} backend, bf16, XLA {xla}, images streamed" in leaderboard
    # one image's latency, and the confusion matrix's scores, for every row
    assert (results["latency_ms_p50"] > 0).all() and (results["latency_ms_p99"] >= results["latency_ms_p50"]).all()
    assert results["best_val_balanced_accuracy"].between(0, 1).all() and results["val_confusion"].str.len().gt(0).all()
    assert "latency p50 ms" in leaderboard and "## Per class" in leaderboard


FAILING_MODELS = """
import keras
from models import register_model

class UsersOwnLayer(keras.layers.Layer):
    def __init__(self, fails=False, **kwargs):
        super().__init__(**kwargs)
        self.fails = fails

    def call(self, inputs, training=False):
        if training and self.fails:
            raise RuntimeError("this model cannot train, on purpose")
        return inputs

def _classifier(input_size, num_classes, fails):
    inputs = keras.Input((input_size, input_size, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(UsersOwnLayer(fails)(inputs))
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(pooled))

@register_model("fails_in_training", default_input_size=32)
def fails_in_training(input_size=32, num_classes=2):
    return _classifier(input_size, num_classes, fails=True)

@register_model("trains", default_input_size=32)
def trains(input_size=32, num_classes=2):
    return _classifier(input_size, num_classes, fails=False)
"""
FAILING_SUITE = """
name = "one_fails"
description = "a trial whose model cannot train beside one that can"
target_accuracy = 0.6
{trials}
[preset.smoke]
epochs = 2
train_limit = 32
val_limit = 16
"""
TRIAL = """
[[trials]]
name = "{name}"
model = "{name}"
optimizer = "adam"
learning_rate = 1e-3
momentum = 0.0
batch_size = 16
"""


@pytest.mark.slow
def test_a_run_in_which_a_trial_fails_exits_3_and_says_how_many(tmp_path):
    """A user's model module (its own layer, with no FLOP rule) and suite file; one of its trials fails."""
    (tmp_path / "failing_models.py").write_text(FAILING_MODELS)
    trials = "".join(TRIAL.format(name=name) for name in ("fails_in_training", "trains"))
    (tmp_path / "suite.toml").write_text(FAILING_SUITE.format(trials=trials))
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--suite", str(tmp_path / "suite.toml")]
        + ["--model-module", "failing_models", "--out", str(tmp_path / "runs")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO_ROOT}"},
    )
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[-2] == "1 trial(s) failed: the leaderboard lists them with their errors"
    assert lines[-3].startswith("Done: 2 trial(s): 1 failed, 1 completed")
    assert "this model cannot train, on purpose" in result.stdout
    assert "Trials did not complete" not in result.stdout + result.stderr  # Ray's own line: the harness says it
    results = pd.read_csv(next((tmp_path / "runs").glob("*-one_fails")) / "results.csv").set_index("trial")
    assert results.loc["fails_in_training", "status"] == "failed" and results.loc["trains", "status"] == "completed"
    assert math.isnan(results.loc["trains", "gflops_per_image"])  # no FLOP rule for a user's layer: n/a, not a crash
