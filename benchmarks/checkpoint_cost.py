"""What a trial's checkpoint costs against its epoch, for the report's models at the report's sizes.

``python -m benchmarks.checkpoint_cost [--models levi_hassner efficientnet_v2_m] [--steps 3]``

For each model, the trial's own training model (bench.trial.fit.build_trial_model: 256x256 uint8
in, the report's 227 crop, the suite's optimizer) trains ``--steps`` steps of the suite's batch
size after a warm-up step; its steady img/s and the report protocol's training images per
epoch (folds 0-3 of the official fold files: 14,047 unique gender-labelled faces) give the
epoch's seconds on this machine. Then bench.trial.checkpoints.save_checkpoint writes the model's and
optimizer's variables ``--saves`` times, and each folder is copied as Tune copies a reported
checkpoint into the run's storage (a local folder here). It prints seconds, size and the share
of an epoch, and the epoch length at which one checkpoint per epoch stays under 2%.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

SHARE_GOAL = 0.02
OFFICIAL_FOLDS = Path(__file__).resolve().parent.parent.parent / "shared" / "adience"
REPORT_UNIQUE_FACES = 17_492  # gender-labelled faces of the five official folds


def report_training_images() -> tuple[int, str]:
    """Training faces per epoch of the report protocol (folds 0-3), from the official fold files."""
    import pandas as pd

    from data.adience import DEFAULT_VAL_FOLD, DatasetError, find_fold_files, read_fold_file, training_folds

    try:
        files = find_fold_files(OFFICIAL_FOLDS)
    except DatasetError as error:  # the fold files are not beside the repository
        return round(REPORT_UNIQUE_FACES * 4 / 5), f"4/5 of {REPORT_UNIQUE_FACES} ({error})"
    rows = pd.concat(
        [read_fold_file(path, fold) for fold, path in files.items() if fold in training_folds(DEFAULT_VAL_FOLD)]
    )
    labelled = rows[rows["gender"].isin(["m", "f"])].drop_duplicates(["user_id", "original_image", "face_id"])
    return len(labelled), f"unique gender-labelled faces of folds 0-3 in {OFFICIAL_FOLDS}"


def spec_of(model: str):
    """The report's row for ``model`` (bench.plan.suites.report_spec), random weights."""
    from bench.plan.suites import report_spec

    spec = report_spec(model)
    if spec is None:
        raise SystemExit(f"no report spec for {model!r}: a model of the baseline or transfer suite")
    return spec.without_weights()  # ImageNet weights cannot be downloaded here


def measure(model_name: str, steps: int, saves: int, epoch_images: int) -> dict:
    import keras

    from bench.trial.checkpoints import TrialState, save_checkpoint
    from bench.trial.fit import build_trial_model
    from bench.trial.step_timer import time_steps, wait_for_device

    spec = spec_of(model_name)
    keras.backend.clear_session()
    built = time.perf_counter()
    model, network = build_trial_model(spec)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (spec.batch_size, 256, 256, 3), dtype=np.uint8)
    labels = rng.integers(0, 2, spec.batch_size)
    timing_started = time.perf_counter()
    timing = time_steps(  # the warm-up step builds the graph and the optimizer's variables
        lambda count: [model.train_on_batch(images, labels) for _ in range(count)],
        spec.batch_size,
        warmup_steps=1,
        min_steps=steps,
        max_steps=steps,
        chunk=steps,
        wait=lambda: wait_for_device(model),
    )
    first_step = timing.warmup_seconds + (timing_started - built)
    train_rate = timing.images_per_sec
    save_seconds, copy_seconds, size = [], [], 0
    with tempfile.TemporaryDirectory(prefix="checkpoint-cost-") as scratch:
        for index in range(saves):
            folder, storage = Path(scratch) / f"trial-{index}", Path(scratch) / f"storage-{index}"
            started = time.perf_counter()
            save_checkpoint(model, TrialState(epoch=index + 1), folder)
            save_seconds.append(time.perf_counter() - started)
            size = sum(path.stat().st_size for path in folder.iterdir())
            started = time.perf_counter()
            shutil.copytree(folder, storage)
            copy_seconds.append(time.perf_counter() - started)
            shutil.rmtree(folder)
            shutil.rmtree(storage)
    checkpoint = statistics.median(save_seconds) + statistics.median(copy_seconds)
    epoch_seconds = epoch_images / train_rate
    return {
        "model": model_name,
        "params": network.count_params(),
        "batch": spec.batch_size,
        "first_step_s": first_step,
        "train_img_s": train_rate,
        "epoch_s": epoch_seconds,
        "save_s": statistics.median(save_seconds),
        "copy_s": statistics.median(copy_seconds),
        "checkpoint_mb": size / 1e6,
        "share": checkpoint / epoch_seconds,
        "shortest_epoch_s_for_goal": checkpoint / SHARE_GOAL,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["levi_hassner", "efficientnet_v2_m"])
    parser.add_argument("--steps", type=int, default=3, help="timed training steps after the warm-up step")
    parser.add_argument("--saves", type=int, default=3, help="checkpoints written per model (median taken)")
    args = parser.parse_args(argv)
    epoch_images, source = report_training_images()
    print(f"report protocol: {epoch_images} training images per epoch ({source})")
    for model_name in args.models:
        row = measure(model_name, args.steps, args.saves, epoch_images)
        print(
            f"{row['model']}: {row['params']:,} params, checkpoint {row['checkpoint_mb']:.1f} MB: "
            f"save {row['save_s']:.2f} s + copy to storage {row['copy_s']:.2f} s; "
            f"train {row['train_img_s']:.1f} img/s at batch {row['batch']} (first step {row['first_step_s']:.0f} s) "
            f"-> epoch {row['epoch_s']:.0f} s here; checkpoint share of epoch {100 * row['share']:.3f}% "
            f"(goal <= {100 * SHARE_GOAL:.0f}%: every epoch meets it while an epoch lasts >= "
            f"{row['shortest_epoch_s_for_goal']:.0f} s)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
