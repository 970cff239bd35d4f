"""A trial's split of the decode-once cache: which faces it trains and validates on, and their
batches, streamed or on the device.

The driver decodes the faces once (data/cache.py); a trial picks its folds from the opened
cache, subsets them per class where a smoke run caps the images, and takes the training
split's channel statistics where its normalisation needs them (never the validation split's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from data.adience import require_nonempty_split, split_folds, with_duplicates
from data.cache import FaceCache, channel_statistics
from data.device import IndexBatches
from data.loader import FaceBatches
from data.mixing import BatchMixing

EVAL_BATCH_SIZE = 64


@dataclass(frozen=True)
class TrialData:
    """A trial's split of the decode-once cache: slots and labels, and per-channel statistics."""

    cache: FaceCache
    train_slots: np.ndarray
    train_labels: np.ndarray
    val_slots: np.ndarray
    val_labels: np.ndarray
    channel_stats: tuple[list[float], list[float]] | None = None  # training split's (mean, std)

    def batches(self, batch_size: int, seed: int, mixing: BatchMixing | None = None) -> tuple[FaceBatches, FaceBatches]:
        """(training batches, shuffled per epoch from ``seed``, mixed where ``mixing``; validation
        batches, in order, one-hot labels where ``mixing``)."""
        train = FaceBatches(
            self.cache, self.train_slots, self.train_labels, batch_size, True, seed, mixing=mixing, mix=True
        )
        val = FaceBatches(self.cache, self.val_slots, self.val_labels, EVAL_BATCH_SIZE, False, mixing=mixing)
        return train, val

    @property
    def image_bytes(self) -> int:
        """What the training and validation images take, as uint8: what goes to the device."""
        side = self.cache.image_size
        return (len(self.train_slots) + len(self.val_slots)) * side * side * 3

    def device_images(self) -> np.ndarray:
        """The training images, then the validation images, in one array (``index_batches``' positions)."""
        return np.concatenate([self.cache.read(self.train_slots), self.cache.read(self.val_slots)])

    def index_batches(self, batch_size: int, seed: int) -> tuple[IndexBatches, IndexBatches]:
        """``batches`` as positions into ``device_images``: the same images, batch for batch."""
        train = IndexBatches(self.train_labels, batch_size, True, seed)
        val = IndexBatches(self.val_labels, EVAL_BATCH_SIZE, shuffle=False, offset=len(self.train_slots))
        return train, val


def balanced_subset(rows: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """At most ``limit`` rows, drawn per class in proportion, deterministic from ``seed``."""
    if limit is None or len(rows) <= limit:
        return rows
    share = limit / len(rows)
    picked = [
        group.sample(n=max(1, math.floor(len(group) * share)), random_state=seed)
        for _, group in rows.groupby("label", sort=True)
    ]
    return pd.concat(picked).sort_index().reset_index(drop=True)


def split_rows(
    faces: pd.DataFrame, val_fold: int, train_folds: Sequence[int], keep_duplicates: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, validation rows) of ``faces``: fold ``val_fold`` against ``train_folds``, a
    one-line DatasetError where either is empty; with ``keep_duplicates`` a face listed twice counts twice
    (Levi & Hassner's lists)."""
    train, val = split_folds(faces, val_fold, train_folds)
    require_nonempty_split(train, val, val_fold, train_folds)
    if keep_duplicates:
        train, val = with_duplicates(train), with_duplicates(val)
    return train, val


def load_split(
    cache: FaceCache,
    val_fold: int,
    train_folds: Sequence[int],
    *,
    seed: int,
    keep_duplicates: bool = False,
    train_limit: int | None = None,
    val_limit: int | None = None,
    with_statistics: bool = False,
) -> TrialData:
    """Fold ``val_fold`` against ``train_folds`` of ``cache``, each capped (``balanced_subset``) at
    its limit; ``with_statistics``: the training split's per-channel (mean, std) too."""
    train, val = split_rows(cache.faces, val_fold, train_folds, keep_duplicates)
    train = balanced_subset(train, train_limit, seed)
    val = balanced_subset(val, val_limit, seed)
    stats = channel_statistics(cache, train["slot"].to_numpy()) if with_statistics else None
    return TrialData(
        cache=cache,
        train_slots=train["slot"].to_numpy(np.int64),
        train_labels=train["label"].to_numpy(np.int32),
        val_slots=val["slot"].to_numpy(np.int64),
        val_labels=val["label"].to_numpy(np.int32),
        channel_stats=stats,
    )
