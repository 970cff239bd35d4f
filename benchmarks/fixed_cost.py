"""A small run's fixed cost: one trial of a small CNN through ``bench.run`` against a bare
``keras.Model.fit`` of the same model and data, both timed from a new Python process's start
to its end, and the harness's seconds taken apart by the lines it prints.

The data is ``benchmarks.own_data``'s: scikit-learn's 1,797 handwritten digits as an image
folder of 32x32 PNGs, the user's small CNN in a module of theirs, 15 epochs of batch 32 (fold
4 against folds 0-3). The bare side is a script a user would write: import Keras, read the same
cached images, build the same model, ``fit`` it with the same validation data. Both sides run
``rounds`` times, interleaved (the first round also builds the digits' cache; it is timed but
the medians are what count). Goal: the harness costs at most ``GOAL_SECONDS`` more.

    python -m benchmarks.harness fixed-cost
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from benchmarks.own_data import MODEL_MODULE, REPO_ROOT, SUITE, write_digits_folder
from data.synthetic import CACHE_ENV

GOAL_SECONDS = 20.0
EPOCHS = 15
BATCH_SIZE = 32

BARE_SCRIPT = """
import sys, time
import keras
import models, user_models  # the user's module registers digits_cnn
from data.cache import ensure_cache
from data.splits import split_rows

cache = ensure_cache(sys.argv[1], 32)
train, val = split_rows(cache.faces, 4, (0, 1, 2, 3))
x_train, x_val = cache.read(train["slot"].to_numpy()), cache.read(val["slot"].to_numpy())
keras.utils.set_random_seed(0)
model = models.create_model("digits_cnn", num_classes=len(cache.class_names))
model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
started = time.perf_counter()
model.fit(x_train.astype("float32"), train["label"].to_numpy(), batch_size={batch_size}, epochs={epochs},
          validation_data=(x_val.astype("float32"), val["label"].to_numpy()), verbose=0)
print(f"fit_seconds {{time.perf_counter() - started:.3f}}")
"""

# what bench.run prints as each stage ends (a prefix of the line) -> the stage it ends
HARNESS_STAGES = (
    ("Estimate:", "start to estimate (imports, data, cache, estimate)"),
    ("Ray:", "run folder, Ray started"),
    ("] started", "Ray worker to trial start"),
    ("] epoch 1/", "trial start to first epoch's end (model, graph, first epoch, inference timing)"),
    ("] finished", "epochs 2 to last (with the last epoch's measurements)"),
    ("Done:", "results, leaderboard and plots"),
)


def _environment(work: Path) -> dict[str, str]:
    return {
        **os.environ,
        CACHE_ENV: str(work / "cache"),
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(work)]),
    }


def timed_lines(
    command: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[float, list[tuple[float, str]]]:
    """(wall seconds from the process's start to its end, each printed line with its second);
    ``env``: this process's environment where None, with Python's output unbuffered."""
    started = time.perf_counter()
    env = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = [(time.perf_counter() - started, line.rstrip()) for line in process.stdout]
    if process.wait() != 0:
        tail = "\n".join(line for _, line in lines[-30:])
        sys.exit(f"{' '.join(command[:4])} ... failed ({process.returncode}):\n{tail}")
    return time.perf_counter() - started, lines


def stage_seconds(lines: list[tuple[float, str]], wall: float) -> dict[str, float]:
    """The harness's wall time cut at the lines that end each stage (``HARNESS_STAGES``), and the exit."""
    stages, previous = {}, 0.0
    for marker, stage in HARNESS_STAGES:
        second = next((at for at, line in lines if marker in line and at >= previous), None)
        if second is None:
            continue
        stages[stage] = second - previous
        previous = second
    stages["exit (Ray shut down)"] = wall - previous
    return stages


def harness_once(work: Path, data: Path) -> tuple[float, dict[str, float]]:
    command = [sys.executable, "-m", "bench.run", "--suite", str(work / "digits.toml"), "--data", str(data)]
    command += ["--model-module", "user_models", "--out", str(work / "runs")]
    wall, lines = timed_lines(command, work, _environment(work))
    return wall, stage_seconds(lines, wall)


def bare_once(work: Path, data: Path) -> tuple[float, float]:
    """(wall seconds of the bare script, of them in ``fit``)."""
    wall, lines = timed_lines([sys.executable, str(work / "bare_fit.py"), str(data)], work, _environment(work))
    fit = next(float(line.split()[1]) for _, line in lines if line.startswith("fit_seconds"))
    return wall, fit


def measure_fixed_cost(rounds: int = 3):
    """Median seconds of each side over ``rounds`` interleaved runs; the difference against the goal."""
    from benchmarks.harness import HarnessRatio

    with tempfile.TemporaryDirectory(prefix="fixed-cost-") as folder:
        work = Path(folder)
        data = write_digits_folder(work / "digits")
        (work / "user_models.py").write_text(MODEL_MODULE.lstrip())
        (work / "digits.toml").write_text(textwrap.dedent(SUITE.format(epochs=EPOCHS, batch_size=BATCH_SIZE)))
        (work / "bare_fit.py").write_text(BARE_SCRIPT.format(epochs=EPOCHS, batch_size=BATCH_SIZE))
        harness, bare, stages = [], [], []
        for _ in range(rounds):
            wall, stage = harness_once(work, data)
            harness.append(wall)
            stages.append(stage)
            bare.append(bare_once(work, data))
    harness_s = statistics.median(harness)
    bare_s = statistics.median(wall for wall, _ in bare)
    detail = {
        "harness_seconds": harness_s,
        "bare_seconds": bare_s,
        "bare_fit_seconds": statistics.median(fit for _, fit in bare),
        "harness_runs": ", ".join(f"{wall:.1f}" for wall in harness),
        "bare_runs": ", ".join(f"{wall:.1f}" for wall, _ in bare),
    }
    for stage in stages[-1]:
        detail[f"harness: {stage}"] = statistics.median(run.get(stage, float("nan")) for run in stages)
    return HarnessRatio(
        f"fixed cost: one small-CNN trial ({EPOCHS} epochs, digits) through bench.run minus a bare fit",
        harness_s - bare_s,
        GOAL_SECONDS,
        higher_is_better=False,
        unit="s",
        detail=detail,
    )
