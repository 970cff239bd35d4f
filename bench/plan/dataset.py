"""A run's dataset on the driver: found or made, read once, decoded once, every split checked.

Before any trial starts, the driver reads the fold files, decodes every usable face into
the uint8 cache and checks that each planned trial's split has faces. Trials receive the
opened ``FaceCache`` (its folder and face table) and never read a fold file themselves.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.errors import UsageError
from bench.specs import TrialSpec
from data.cache import FaceCache, ensure_cache
from data.datasets import default_image_size, is_adience, load_dataset
from data.policies import PolicyError
from data.splits import split_rows
from data.synthetic import ensure_synthetic_dataset

if TYPE_CHECKING:
    from bench.plan.protocols import Protocol


@dataclass(frozen=True)
class RunData:
    """The dataset a run trains on: its folder, its decoded cache, each trial's split sizes."""

    root: Path
    synthetic: bool
    cache: FaceCache
    split_sizes: list[tuple[int, int]]  # (training, validation) images of each planned trial, in order

    def describe(self) -> str:
        """The data line of a leaderboard header."""
        return f"synthetic ({self.root})" if self.synthetic else str(self.root)

    @property
    def faces(self) -> bool:
        """Whether the data is faces (Adience, the synthetic faces) rather than any image folder."""
        return self.synthetic or is_adience(self.root)

    @property
    def items(self) -> str:
        """What the data holds, in a leaderboard's words."""
        return "faces" if self.faces else "images"

    def folds_made(self) -> str:
        """How this dataset's five folds were made."""
        if self.synthetic:
            return "the synthetic faces' five folds, each subject in one"
        if self.faces:
            return "the official Adience fold files (each subject in one fold)"
        return (
            f"{len(self.cache.class_names)} classes ({', '.join(self.cache.class_names)}) from the folder names; "
            "subjects (subjects.csv, else each image its own) dealt to folds 0-4 in a seeded shuffle"
        )

    def protocol_line(self, protocol: Protocol) -> str:
        """The leaderboard's protocol line: which folds train and validate, and how they were made."""
        if self.faces:
            return f"{protocol.description}; folds: {self.folds_made()}"
        held_out = "5-fold cross-validation" if protocol.cross_validation else "validate on fold 4, train on folds 0-3"
        return f"{protocol.name}: {held_out}, each image once; folds: {self.folds_made()}"

    def counting(self, keep_duplicates: bool) -> str:
        """How the images are counted, and how many there are that way."""
        if keep_duplicates:
            listed = int(self.cache.faces["listed"].sum())
            return f"{listed:,} labelled fold lines, duplicates kept (Levi & Hassner's per-fold lists)"
        return f"{len(self.cache.faces):,} unique labelled images, each once ({', '.join(self.cache.class_names)})"


def prepare_dataset(
    data_root: str,
    synthetic: bool,
    specs: Sequence[TrialSpec],
    write: Callable[[str], None] = print,
    image_size: int | None = None,
) -> RunData:
    """Read ``data_root`` (the built-in synthetic data where it is ""), build its cache at
    ``image_size`` (None: the dataset's default size), check every split and every policy's crop."""
    root = Path(data_root) if data_root else ensure_synthetic_dataset()
    faces = load_dataset(root)
    write(f"Data: {'synthetic ' if synthetic else ''}{root}: {faces.summary()}")
    size, why = (image_size, "as asked") if image_size else default_image_size(faces)
    for spec in specs:
        try:
            spec.augmentation.crop_size(size)
        except PolicyError as error:
            raise UsageError(
                f"trial {spec.name}: {error.problem}; give a larger --image-size or crop a fraction"
            ) from None
    cache = ensure_cache(faces, size, progress=sys.stdout)
    for line in faces.warnings() + cache.warnings():
        write(line)
    sizes = []
    for spec in specs:
        train, val = split_rows(cache.faces, spec.val_fold, spec.train_folds, spec.keep_duplicates)
        sizes.append((min(len(train), spec.train_limit or len(train)), min(len(val), spec.val_limit or len(val))))
    write(f"Cache: {len(cache.faces)} images at {size}x{size} ({why}) in {cache.folder}")
    return RunData(root, synthetic, cache, sizes)
