"""A classifier's quality figures from its confusion matrix, as scikit-learn defines them:
accuracy, balanced accuracy (the mean of per-class recalls), macro-F1 and per-class recall.

A trial accumulates the validation split's confusion matrix on its device, one pass per
epoch (bench/trial/confusion.py); a confusion matrix holds every (true, predicted) pair the
predictions make, so the figures are those of scikit-learn's functions applied to those
pairs. They are computed from the matrix's sums with numpy, once per epoch in every trial:
scikit-learn's functions took 7.5 ms an epoch here, nearly all of it checking their input
(benchmarks/README.md, epoch cost); tests/test_scores.py holds them to scikit-learn's on
random matrices. Matrices travel as JSON text (a results table's cell). Imports neither
keras nor ray.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassScores:
    """One confusion matrix's figures; a class absent from the true labels has a NaN recall."""

    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    recall: tuple[float, ...]


def checked_counts(confusion: np.ndarray) -> np.ndarray:
    """``confusion`` as int64 counts, refused unless square and of whole numbers >= 0."""
    counts = np.asarray(confusion)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] < 1:
        raise ValueError(f"a confusion matrix is square, got shape {counts.shape}")
    if (counts < 0).any() or not np.allclose(counts, np.round(counts)):
        raise ValueError("a confusion matrix holds counts: whole numbers >= 0")
    return np.round(counts).astype(np.int64)


def label_pairs(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(true labels, predicted labels): ``confusion[i, j]`` pairs of (i, j), rows true, columns predicted."""
    counts = checked_counts(confusion)
    classes = counts.shape[0]
    cells = counts.ravel()
    return np.repeat(np.arange(cells.size) // classes, cells), np.repeat(np.arange(cells.size) % classes, cells)


def class_scores(confusion: np.ndarray) -> ClassScores:
    """scikit-learn's accuracy, balanced accuracy, macro-F1 (``zero_division=0``) and per-class
    recall (``zero_division=nan``) of the predictions ``confusion`` counts.

    Balanced accuracy averages the recalls of the classes the true labels hold (a class the
    split lacks has none); a class's F1 is 2 TP / (2 TP + FP + FN), 0 where it was neither
    true nor predicted.
    """
    counts = checked_counts(confusion).astype(np.float64)
    total = counts.sum()
    if total == 0:
        return ClassScores(math.nan, math.nan, math.nan, tuple(math.nan for _ in range(len(counts))))
    hits, true, predicted = np.diag(counts), counts.sum(axis=1), counts.sum(axis=0)
    present = true > 0
    recall = np.full(len(counts), math.nan)
    recall[present] = hits[present] / true[present]
    f1 = np.zeros(len(counts))
    seen = (true + predicted) > 0
    f1[seen] = 2 * hits[seen] / (true[seen] + predicted[seen])
    return ClassScores(
        accuracy=float(hits.sum() / total),
        balanced_accuracy=float(recall[present].mean()),
        macro_f1=float(f1.mean()),
        recall=tuple(float(value) for value in recall),
    )


def confusion_text(confusion: np.ndarray) -> str:
    """A confusion matrix as JSON text: ``[[12, 3], [4, 10]]``."""
    return json.dumps(np.round(np.asarray(confusion)).astype(np.int64).tolist(), separators=(", ", ": "))


def parse_confusion(text) -> np.ndarray | None:
    """The matrix ``confusion_text`` wrote; None for an empty or missing cell."""
    if not isinstance(text, str) or not text:
        return None
    matrix = np.asarray(json.loads(text), dtype=np.int64)
    label_pairs(matrix)  # checks the shape and counts
    return matrix
