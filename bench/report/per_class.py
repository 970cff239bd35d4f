"""The leaderboard's per-class section: each row's per-class recall and, up to
``MATRIX_CLASSES`` classes, its confusion matrix as a table (bench/report/plots.py draws it too).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from tabulate import tabulate

from bench.report.cells import format_number
from bench.scores import parse_confusion

MATRIX_CLASSES = 10  # more classes: the heatmap in plots/ only


def per_class_lines(ranked, class_names: Sequence[str]) -> list[str]:
    """``## Per class``: for each ranked row, its recall per class and its confusion matrix."""
    lines = ["## Per class", ""]
    lines.append(
        "Each row's best epoch (summed over its finished trials): recall per class, and the confusion matrix "
        "of the validation images (rows: true class; columns: predicted class)."
    )
    lines.append("")
    for number, row, _verdicts in ranked:
        matrix = parse_confusion(row.val_confusion)
        if matrix is None or len(matrix) != len(class_names):
            lines += [f"- #{number} `{row.group}`: no confusion matrix (no finished trial reported one)", ""]
            continue
        recall = json.loads(row.val_class_recall)
        said = ", ".join(
            f"{name} {format_number(value, '.4f')}" for name, value in zip(class_names, recall, strict=True)
        )
        lines += [f"#{number} `{row.group}`: recall {said}", ""]
        if len(class_names) <= MATRIX_CLASSES:
            table = [[name, *map(str, counts)] for name, counts in zip(class_names, matrix.tolist(), strict=True)]
            headers = ["true / predicted", *class_names]
            lines += [tabulate(table, headers=headers, tablefmt="github", disable_numparse=True), ""]
    return lines
