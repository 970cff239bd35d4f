"""README command (a)'s baseline suite end to end, through ``python -m bench.run`` and Ray.

The longest test of each leg, alone in its file: with ``--dist loadfile`` one xdist worker
trains it while the other runs the rest (beside test_cli.py's selftest run, the JAX leg
waited on both in one worker).
"""

import json
import math
import os
import shlex

import pandas as pd
import pytest

from tests.conftest import run_cli


@pytest.mark.slow
@pytest.mark.backends  # CI runs it on TensorFlow and again on JAX (KERAS_BACKEND=jax)
def test_baseline_suite_runs_end_to_end_through_ray(tmp_path):
    """README command (a) on the built-in data: the smoke preset reaches >= 0.80, on the backend of the environment.

    On JAX the trial stops after 5 of the preset's 6 epochs: an epoch of JAX's CPU convolutions
    takes ~47 s here, about twice TensorFlow's, and its curve passed 0.80 at epoch 4 (0.82; 0.90 at 5).
    """
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    fewer_epochs = ("--epochs", "5") if backend == "jax" else ()
    args = ("--suite", "baseline", "--trials", "levi_hassner_sgd*", *fewer_epochs, "--out", str(tmp_path))
    # 900 s is short on a slower CPU: on a 2-core AMD EPYC with AVX2 only (2026-12-06) the JAX run
    # went past it, where the TensorFlow run took 531 s (152 s on the machine of tests/README.md)
    result = run_cli(*args, "--save-models", timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    last_line = result.stdout.strip().splitlines()[-1]
    assert last_line.startswith("Leaderboard: ")
    leaderboard = tmp_path.joinpath(*last_line.removeprefix("Leaderboard: ").split("/")[-2:])
    assert leaderboard.is_file() and leaderboard.parent.parent == tmp_path
    run_dir = leaderboard.parent
    for name in ("results.parquet", "results.csv", "epochs.parquet", "epochs.csv"):
        assert (run_dir / name).is_file(), name
    results = pd.read_parquet(run_dir / "results.parquet")
    epochs = pd.read_parquet(run_dir / "epochs.parquet")
    (row,) = results.itertuples()
    assert row.trial == "levi_hassner_sgd_lr=1e-3_m=0.9" and row.status == "completed" and row.params == 8_856_066
    assert row.best_val_accuracy >= 0.80
    assert list(epochs["epoch"]) == list(range(1, row.epochs_budget + 1))
    text = leaderboard.read_text()
    assert "| levi_hassner_sgd_lr=1e-3_m=0.9" in text and f"{row.best_val_accuracy:.4f}" in text
    assert "epoch 1/" in result.stdout  # progress on the way
    assert result.stdout.strip().splitlines()[-2].startswith("Done: 1 trial(s): 1 completed")
    # profiling: convergence, throughput, environment, goals, plots, the board across runs
    assert row.epochs_to_target >= 1 and row.time_to_target_seconds > 0
    assert row.train_images_per_sec > 0 and row.first_epoch_images_per_sec > 0 and row.infer_images_per_sec > 0
    assert math.isfinite(row.energy_j) or row.nvml_reason  # n/a on a machine without an NVIDIA GPU
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["seeds"] == [0] and manifest["cpu_matmul_peak_flops"] > 0 and manifest["python"]
    assert manifest["command"].endswith(f"-m bench.run {shlex.join([*args, '--save-models'])}")
    assert "**Budgets**" in text and "environment: Python" in text
    assert (row.backend, row.precision, row.data_on_device) == (backend, "fp32", "on")  # auto, on a CPU
    assert f"- executed as: {backend} backend, fp32, XLA {row.jit}, images on the device" in text
    assert manifest["keras_backend"] == backend and manifest["execution"]["precision"] == "auto"
    assert (
        row.gflops_per_image == pytest.approx(1.3014, abs=1e-3) and row.mfu > 0
    )  # bench.trial.flops, measured CPU peak
    for name in ("learning_curves", "accuracy_vs_params", "accuracy_vs_gflops", "accuracy_vs_time_to_target"):
        assert (run_dir / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG" and f"](plots/{name}.png)" in text
    assert f"{run_dir.name}/LEADERBOARD.md" in (tmp_path / "LEADERBOARD.md").read_text()
    # --save-models: the row's best epoch, for inference; the finished trial's checkpoints are gone
    saved = run_dir / "models" / "levi_hassner_sgd_lr=1e-3_m=0.9.keras"
    assert f"Saved {saved}" in result.stdout
    assert not list(run_dir.rglob("checkpoint_*"))
    import keras

    import data.transforms  # noqa: F401  (its layers, registered)

    assert tuple(keras.saving.load_model(saved).output.shape) == (None, 2)
