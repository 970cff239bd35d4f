"""A user's own data, trained through the harness and as a bare ``keras.Model.fit``: same model,
epochs, batch size and split, best validation accuracy and seconds side by side.

The data is one no one here made: scikit-learn's handwritten digits (1,797 8x8 images, 10
classes, shipped inside the scikit-learn package: ``pip install scikit-learn``), written as an
image folder of 32x32 PNGs (a folder per digit), as a user would make it. The model is a small
CNN of the user's own, in a module of theirs (``--model-module``), trained by a suite file with
``policy = "none"``; the bare fit builds the same module's model and trains it on the same
training and validation images (the harness's fold 4 against folds 0-3), read from the same
cache. Each is run with seeds 0..N-1; the means and the difference are printed.

    python -m benchmarks.own_data                 # 3 seeds, 15 epochs each
    python -m benchmarks.own_data --seeds 1 --epochs 5
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from bench.quiet import import_tensorflow_quietly
from data.synthetic import CACHE_ENV

REPO_ROOT = Path(__file__).resolve().parent.parent
IMAGE_SIZE = 32
MODEL_MODULE = '''
"""A user's small CNN for 32x32 images: pixels scaled inside, so the harness normalises nothing."""

import keras
from keras import layers

import models


@models.register_model("digits_cnn", default_input_size=32, normalisation="none")
def digits_cnn(input_size: int = 32, num_classes: int = 10) -> keras.Model:
    """Two conv blocks and a dense layer over RGB input in [0, 255]."""
    inputs = keras.Input((input_size, input_size, 3))
    x = layers.Rescaling(1 / 255)(inputs)
    x = layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")
'''
SUITE = """
name = "digits"
description = "scikit-learn's handwritten digits as 32x32 images, a user's small CNN"
[[trials]]
name = "digits_cnn"
model = "digits_cnn"
policy = "none"
optimizer = "adam"
learning_rate = 1e-3
momentum = 0.0
batch_size = {batch_size}
epochs = {epochs}
patience = {epochs}
"""


def write_digits_folder(root: Path) -> Path:
    """scikit-learn's digits as ``root/<digit>/<n>.png``, 32x32 grayscale (scaled from 8x8, 0-16)."""
    from PIL import Image

    try:
        from sklearn.datasets import load_digits
    except ImportError:
        sys.exit("this benchmark reads scikit-learn's digits: pip install scikit-learn")
    digits = load_digits()
    for index, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = Image.fromarray((image * 255 / 16).astype(np.uint8))
        pixels.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR).save(folder / f"{index:04d}.png")
    return root


def through_the_harness(work: Path, data: Path, seeds: int) -> tuple[list[float], float, list[float]]:
    """(best validation accuracy per seed, the run's wall seconds, each trial's own seconds)."""
    import pandas as pd

    command = [sys.executable, "-m", "bench.run", "--suite", str(work / "digits.toml"), "--data", str(data)]
    command += ["--model-module", "user_models", "--out", str(work / "runs"), "--repeats", str(seeds)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(work)])}
    started = time.perf_counter()
    finished = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if finished.returncode != 0:
        sys.exit(f"bench.run failed ({finished.returncode}):\n{finished.stdout[-2000:]}\n{finished.stderr[-2000:]}")
    results = pd.read_csv(next((work / "runs").glob("*-digits/results.csv"))).sort_values("seed")
    return results["best_val_accuracy"].tolist(), wall, results["wall_seconds"].tolist()


def bare_fit(work: Path, data: Path, seed: int, epochs: int, batch_size: int) -> tuple[float, float]:
    """(best validation accuracy, seconds of fit) of the same model on the same split, in this process."""
    import keras

    import models
    from data.cache import ensure_cache
    from data.splits import split_rows

    cache = ensure_cache(data, IMAGE_SIZE)
    train, val = split_rows(cache.faces, 4, (0, 1, 2, 3))
    x_train, x_val = cache.read(train["slot"].to_numpy()), cache.read(val["slot"].to_numpy())
    y_train, y_val = train["label"].to_numpy(), val["label"].to_numpy()
    keras.utils.set_random_seed(seed)
    model = models.create_model("digits_cnn", num_classes=len(cache.class_names))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    started = time.perf_counter()
    history = model.fit(
        x_train.astype("float32"),
        y_train,
        batch_size=batch_size,
        epochs=epochs,
        validation_data=(x_val.astype("float32"), y_val),
        verbose=0,
    )
    return max(history.history["val_accuracy"]), time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser("python -m benchmarks.own_data", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 for each side (default 3)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="own-data-") as folder:
        work = Path(folder)
        os.environ[CACHE_ENV] = str(work / "cache")  # the digits' cache goes with the folder they were written to
        data = write_digits_folder(work / "digits")
        (work / "user_models.py").write_text(MODEL_MODULE.lstrip())
        (work / "digits.toml").write_text(textwrap.dedent(SUITE.format(epochs=args.epochs, batch_size=args.batch_size)))
        harness, wall, trained = through_the_harness(work, data, args.seeds)
        import_tensorflow_quietly()
        sys.path.insert(0, str(work))
        importlib.import_module("user_models")  # registers the user's model, as --model-module does
        bare = [bare_fit(work, data, seed, args.epochs, args.batch_size) for seed in range(args.seeds)]
    bare_accuracy = [accuracy for accuracy, _ in bare]
    print(f"scikit-learn digits, {args.epochs} epochs, batch {args.batch_size}, seeds 0..{args.seeds - 1}")
    print(
        f"harness (policy none): best val accuracy {_listing(harness)}; run {wall:.0f} s, trials {sum(trained):.0f} s"
    )
    print(f"bare keras.Model.fit:  best val accuracy {_listing(bare_accuracy)}; fit {sum(s for _, s in bare):.0f} s")
    difference = statistics.mean(harness) - statistics.mean(bare_accuracy)
    print(f"difference (harness - bare): {difference * 100:+.2f} points (goal: within 1 point)")
    return 0


def _listing(values: list[float]) -> str:
    return f"mean {statistics.mean(values):.4f} ({', '.join(f'{value:.4f}' for value in values)})"


if __name__ == "__main__":
    sys.exit(main())
