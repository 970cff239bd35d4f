"""A classifier's quality figures from its confusion matrix, as scikit-learn defines them:
accuracy, balanced accuracy (the mean of per-class recalls), macro-F1 and per-class recall.

A trial accumulates the validation split's confusion matrix on its device, one pass per
epoch (bench/trial/confusion.py); a confusion matrix holds every (true, predicted) pair the
predictions make, so the figures here are scikit-learn's functions applied to those pairs.
Matrices travel as JSON text (a results table's cell). Imports neither keras nor ray.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassScores:
    """One confusion matrix's figures; a class absent from the true labels has a NaN recall."""

    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    recall: tuple[float, ...]


def label_pairs(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(true labels, predicted labels): ``confusion[i, j]`` pairs of (i, j), rows true, columns predicted."""
    counts = np.asarray(confusion)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] < 1:
        raise ValueError(f"a confusion matrix is square, got shape {counts.shape}")
    if (counts < 0).any() or not np.allclose(counts, np.round(counts)):
        raise ValueError("a confusion matrix holds counts: whole numbers >= 0")
    classes = counts.shape[0]
    cells = np.round(counts).astype(np.int64).ravel()
    return np.repeat(np.arange(cells.size) // classes, cells), np.repeat(np.arange(cells.size) % classes, cells)


def class_scores(confusion: np.ndarray) -> ClassScores:
    """scikit-learn's accuracy, balanced accuracy, macro-F1 and per-class recall of ``confusion``."""
    from sklearn import metrics  # scipy and sklearn load in ~1 s: only where figures are made

    actual, predicted = label_pairs(confusion)
    if actual.size == 0:
        return ClassScores(math.nan, math.nan, math.nan, tuple(math.nan for _ in range(len(confusion))))
    labels = list(range(len(confusion)))
    with warnings.catch_warnings():
        # a class the split lacks: sklearn warns, balanced accuracy averages the classes present
        warnings.simplefilter("ignore")
        return ClassScores(
            accuracy=float(metrics.accuracy_score(actual, predicted)),
            balanced_accuracy=float(metrics.balanced_accuracy_score(actual, predicted)),
            macro_f1=float(metrics.f1_score(actual, predicted, labels=labels, average="macro", zero_division=0)),
            recall=tuple(
                float(value)
                for value in metrics.recall_score(actual, predicted, labels=labels, average=None, zero_division=np.nan)
            ),
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
