"""What a dataset folder holds and what is wrong with it, before any GPU hour is spent.

Per fold: rows, gender-labelled rows (both as the fold files stand), unique labelled
faces, male, female, users, and images found (unique labelled faces whose image exists
and decodes); then every skipped row or face by reason, the images that decode only
after a conversion, and the users listed in more than one fold.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from tabulate import tabulate

from data.adience import FACE_KEY, FOLD_COUNT, SKIP_REASONS
from data.datasets import load_dataset
from data.decode import CONVERSIONS, check_images


@dataclass(frozen=True)
class DatasetSummary:
    root: Path
    image_layout: str  # e.g. "faces/landmark_aligned_face.*"
    folds: dict[int, dict[str, int]]  # fold -> rows, labelled, unique_labelled, <class>..., users, images_found
    skipped: dict[str, int]
    converted: dict[str, int]
    examples: dict[str, str]
    users_in_several_folds: int
    keep_duplicates: bool = False
    listed_rows: int = 0  # gender-labelled fold lines of usable faces, duplicates included
    unique_faces: int = 0

    def counting(self) -> str:
        """Which counting is in force, and what each gives."""
        if self.keep_duplicates:
            return (
                f"duplicates kept: {self.listed_rows:,} gender-labelled rows, as in Levi & Hassner's per-fold lists "
                f"({self.unique_faces:,} unique faces)"
            )
        return (
            f"each face once: {self.unique_faces:,} unique gender-labelled faces "
            f"(--keep-duplicates counts every listed line: {self.listed_rows:,} rows)"
        )

    def fields(self) -> list[str]:
        """The per-fold counts: rows, labelled, unique labelled, one column per class, users, images found."""
        return list(next(iter(self.folds.values())))

    def totals(self) -> dict[str, int]:
        return {name: sum(fold[name] for fold in self.folds.values()) for name in self.fields()}

    def to_json(self) -> dict:
        return {
            "folds": {str(fold): counts for fold, counts in self.folds.items()},
            "skipped": self.skipped,
            "users_in_several_folds": self.users_in_several_folds,
            "converted": self.converted,
            "counting": {
                "keep_duplicates": self.keep_duplicates,
                "listed_rows": self.listed_rows,
                "unique_faces": self.unique_faces,
            },
        }

    def to_text(self) -> str:
        headers = ["fold", *(name.replace("_", " ") for name in self.fields())]
        rows = [[fold, *counts.values()] for fold, counts in self.folds.items()]
        rows.append(["all", *self.totals().values()])
        lines = [
            f"Dataset {self.root} (images: {self.image_layout})",
            "",
            tabulate(rows, headers=headers, tablefmt="github", intfmt=","),
            "",
            f"Counting: {self.counting()}",
            "",
        ]
        if self.skipped:
            lines.append("Skipped:")
            for reason, count in self.skipped.items():
                example = f"; first: {self.examples[reason]}" if reason in self.examples else ""
                lines.append(f"  {reason}: {count:,} ({SKIP_REASONS[reason]}{example})")
        else:
            lines.append("Skipped: none")
        if self.converted:
            lines.append("Converted (used):")
            for reason, count in self.converted.items():
                lines.append(f"  {reason}: {count:,} ({CONVERSIONS[reason]})")
        lines.append(f"Users in several folds: {self.users_in_several_folds}")
        return "\n".join(lines)

    def usable_faces(self) -> int:
        return self.totals()["images_found"]


def summarize(
    root: Path | str, keep_duplicates: bool = False, workers: int | None = None, progress: TextIO | None = None
) -> DatasetSummary:
    """Read the fold files and check every labelled face's image (decoded, not kept)."""
    table = load_dataset(root, keep_duplicates=keep_duplicates)
    unique = table.faces.drop_duplicates(list(FACE_KEY)).reset_index(drop=True)
    checks = check_images(unique["path"].tolist(), workers=workers, progress=progress)
    found: Counter[int] = Counter()
    skipped = Counter(table.skipped)
    examples = dict(table.examples)
    converted: Counter[str] = Counter()
    for fold, check in zip(unique["fold"], checks, strict=True):
        if check.problem is None:
            found[int(fold)] += 1
            converted.update(check.conversions)
        else:
            skipped[check.problem] += 1
            examples.setdefault(check.problem, check.detail)
    folds = {}
    for fold in range(FOLD_COUNT):
        counts = table.folds[fold]
        folds[fold] = {
            "rows": counts.rows,
            "labelled": counts.labelled,
            "unique_labelled": counts.unique_labelled,
            **counts.classes,
            "users": counts.users,
            "images_found": found[fold],
        }
    return DatasetSummary(
        root=table.root,
        image_layout=(
            f"{table.image_folder}/<user_id>/{table.image_prefix}.*"
            if table.layout == "adience"
            else f"<class>/<image>, classes {', '.join(table.class_names)}"
        ),
        folds=folds,
        skipped={reason: skipped[reason] for reason in SKIP_REASONS if skipped[reason]},
        converted={reason: converted[reason] for reason in CONVERSIONS if converted[reason]},
        examples=examples,
        users_in_several_folds=table.users_in_several_folds,
        keep_duplicates=keep_duplicates,
        listed_rows=int(unique["listed"].sum()),
        unique_faces=len(unique),
    )


def summary_json(summary: DatasetSummary) -> str:
    return json.dumps(summary.to_json(), indent=2)
