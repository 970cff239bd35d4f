"""A trial's checkpoint: every variable of its model and optimizer, and where the trial was.

The model's variables (weights, batch-norm statistics, the augmentation layers' seed
states) and the optimizer's (its step count and moments) go out in build order as one
``.npz``, through keras.ops, so it works on every backend; a JSON file beside them holds the
epoch, the attempt and what the epoch reporter carries over (the wall-clock origin, the
seconds it leaves out, the patience rule's best). Restored into a trial built from the same
spec, the model continues where it stopped, and since the batches are a function of (seed,
epoch), the epochs after a restart see the batches an uninterrupted run would have seen.
No ray here: the runner hands the folder to Ray Tune, which keeps it in the run's storage.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

CHECKPOINT_FORMAT = 1
STATE_FILE = "state.npz"
META_FILE = "trial.json"
# A checkpoint is written, copied into the run's storage by Tune, then removed: written to
# memory rather than disk, it costs one disk write, not two. Measured here with 71 MB
# checkpoints each epoch, the second write's writeback slowed the next epoch's training by ~5%.
MEMORY_SCRATCH = Path("/dev/shm")
SCRATCH_HEADROOM = 2.0  # the store's room asked for, as a multiple of the checkpoint's size


@dataclass(frozen=True)
class CheckpointRule:
    """When a trial checkpoints: at the end of every ``every``-th epoch (0: never), once at least
    ``min_interval_s`` have passed since the last checkpoint, and only where the last one cost
    at most ``max_share`` of that time.

    Why an interval: a retried trial pays a fresh worker's TensorFlow import and graph build
    (40-155 s at the report's sizes on a CPU) whatever it loses, so a minute of lost training
    is in the same range, while a checkpoint per short epoch is not free: on this 2-core
    machine, 71 MB per 37 s epoch slowed training by about 5% (benchmarks/README.md). Why a
    share: a GPU epoch of Levi-Hassner lasts about a second.
    """

    every: int = 1
    min_interval_s: float = 60.0
    max_share: float = 0.02

    def due(self, epochs_done: int, seconds_since_last: float, last_cost: float) -> bool:
        if self.every <= 0 or epochs_done % self.every:
            return False
        return seconds_since_last >= self.min_interval_s and last_cost <= self.max_share * seconds_since_last


EVERY_EPOCH = CheckpointRule(every=1, min_interval_s=0.0, max_share=math.inf)


class CheckpointError(RuntimeError):
    """A checkpoint that does not fit the trial it is restored into."""


@dataclass(frozen=True)
class TrialState:
    """Where a trial was when its checkpoint was taken."""

    epoch: int  # epochs completed
    attempt: int = 1  # 1 for the first run of the trial, 2 after one restart, ...
    origin: float = 0.0  # time.time() when the first attempt began: time-to-target counts from it
    excluded_seconds: float = 0.0  # measurements kept out of elapsed time (inference, over-sampling)
    patience_best: float = float("-inf")
    patience_best_epoch: int = 0


def save_checkpoint(model: keras.Model, state: TrialState, folder: Path) -> Path:
    """Write ``model``'s and its optimizer's variables and ``state`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {f"model_{i}": keras.ops.convert_to_numpy(v.value) for i, v in enumerate(model.variables)}
    optimizer = model.optimizer.variables if model.optimizer is not None else []
    arrays |= {f"optimizer_{i}": keras.ops.convert_to_numpy(v.value) for i, v in enumerate(optimizer)}
    np.savez(folder / STATE_FILE, **arrays)
    meta = {"format": CHECKPOINT_FORMAT, "model_variables": len(model.variables), "optimizer_variables": len(optimizer)}
    (folder / META_FILE).write_text(json.dumps({**meta, **dataclasses.asdict(state)}))
    return folder


def state_bytes(model: keras.Model) -> int:
    """The bytes a checkpoint of ``model`` and its optimizer holds."""
    optimizer = model.optimizer.variables if model.optimizer is not None else []
    return int(sum(np.prod(v.shape) * np.dtype(v.dtype).itemsize for v in [*model.variables, *optimizer]))


def scratch_folder(model: keras.Model, memory: Path = MEMORY_SCRATCH) -> Path:
    """A new folder for one checkpoint of ``model``: in memory (``memory``, a tmpfs) where it has
    room to spare (Ray's object store shares it), else in the temporary folder on disk."""
    try:
        room = shutil.disk_usage(memory).free if memory.is_dir() else 0
    except OSError:
        room = 0
    where = memory if room >= SCRATCH_HEADROOM * state_bytes(model) else None
    return Path(tempfile.mkdtemp(prefix="adience-checkpoint-", dir=where))


def load_checkpoint(model: keras.Model, folder: Path) -> TrialState:
    """Restore what ``save_checkpoint`` wrote into ``model`` (compiled, built as the saved one was)."""
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{folder} holds no readable trial checkpoint ({error})") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{folder}: checkpoint format {meta.get('format')}, not {CHECKPOINT_FORMAT}")
    model.optimizer.build(model.trainable_variables)  # its moments exist before they are assigned
    expected = (len(model.variables), len(model.optimizer.variables))
    if (meta["model_variables"], meta["optimizer_variables"]) != expected:
        raise CheckpointError(
            f"{folder}: the checkpoint has {meta['model_variables']} model and {meta['optimizer_variables']} optimizer "
            f"variables, this trial {expected[0]} and {expected[1]}: it was taken from another model"
        )
    with np.load(folder / STATE_FILE) as arrays:
        for index, variable in enumerate(model.variables):
            variable.assign(arrays[f"model_{index}"])
        for index, variable in enumerate(model.optimizer.variables):
            variable.assign(arrays[f"optimizer_{index}"])
    fields = {field.name for field in dataclasses.fields(TrialState)}
    return TrialState(**{key: value for key, value in meta.items() if key in fields})
