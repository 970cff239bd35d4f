"""A dataset laid out as one folder of images per class: ``<root>/<class>/<image>``.

Any number of classes (two at least), named by their folders in sorted order; an optional
``subjects.csv`` (columns ``path,subject``, paths relative to the root) names whose image each
is, so that the five folds stay subject-exclusive; without it each image is its own subject.
Subjects go to folds 0-4 in turn, in a seeded shuffle of their sorted names: deterministic,
and no fold is empty once there are five subjects. The table it makes has the columns an
Adience table has, so the decode-once cache, the splits and the trials take it as they are.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from data.adience import FOLD_COUNT, DatasetError, FaceTable, FoldCounts

SUBJECTS_FILE = "subjects.csv"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
FOLD_SEED = 0


def class_folders(root: Path) -> list[Path]:
    """The subfolders of ``root`` that hold at least one image, sorted by name."""
    folders = sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith("."))
    return [folder for folder in folders if any(_is_image(path) for path in folder.iterdir())]


def is_image_folder(root: Path) -> bool:
    return root.is_dir() and len(class_folders(root)) >= 2


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def _read_subjects(root: Path, skip) -> dict[str, str]:
    """relative path -> subject, from subjects.csv; rows that cannot be used are counted by reason."""
    path = root / SUBJECTS_FILE
    if not path.is_file():
        return {}
    subjects: dict[str, str] = {}
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or [column.strip() for column in rows[0]] != ["path", "subject"]:
        raise DatasetError(f"{path} must start with the header path,subject")
    for number, row in enumerate(rows[1:], start=2):
        where = f"{SUBJECTS_FILE} line {number}"
        if not row or not "".join(row).strip():
            continue
        if len(row) != 2 or not row[1].strip():
            skip("bad_columns", f"{where} has {len(row)} columns, not 2 (path,subject)")
            continue
        relative = row[0].strip().replace("\\", "/")
        parts = relative.split("/")
        if relative.startswith("/") or ".." in parts or len(parts) != 2:
            skip("unsafe_path", f"{where} ({relative}: not <class>/<image> inside the dataset)")
            continue
        if relative in subjects:
            skip("duplicate", f"{where} ({relative})")
            continue
        subjects[relative] = row[1].strip()
    return subjects


def subject_folds(subjects: list[str]) -> dict[str, int]:
    """Each subject's fold: folds 0-4 in turn over a seeded shuffle of the sorted subjects."""
    ordered = sorted(set(subjects))
    shuffled = [ordered[i] for i in np.random.default_rng(FOLD_SEED).permutation(len(ordered))]
    return {subject: rank % FOLD_COUNT for rank, subject in enumerate(shuffled)}


def load_image_folder(root: Path | str) -> FaceTable:
    """The labelled images of an image-folder dataset, in five subject-exclusive folds."""
    root = Path(root)
    skipped: Counter[str] = Counter()
    examples: dict[str, str] = {}

    def skip(reason: str, where: str) -> None:
        skipped[reason] += 1
        examples.setdefault(reason, where)

    folders = class_folders(root)
    if len(folders) < 2:
        raise DatasetError(f"{root} is no image folder: it needs two or more subfolders of images, one per class")
    listed = _read_subjects(root, skip)
    records = []
    for label, folder in enumerate(folders):
        for image in sorted(path for path in folder.iterdir() if _is_image(path)):
            relative = f"{folder.name}/{image.name}"
            records.append((listed.get(relative, relative), relative, image.name, str(image), label))
    found = {relative for _, relative, *_ in records}
    for relative in listed:
        if relative not in found:
            skip("not_in_a_class", f"{SUBJECTS_FILE}: {relative}")
    folds = subject_folds([subject for subject, *_ in records])
    if len(folds) < FOLD_COUNT:
        raise DatasetError(f"{root}: {len(folds)} subject(s) cannot fill {FOLD_COUNT} subject-exclusive folds")
    table = pd.DataFrame.from_records(records, columns=["user_id", "face_id", "original_image", "path", "label"])
    table["gender"] = table["label"].astype("int8")  # the column the Adience layout names its label by
    table["label"] = table["label"].astype("int32")
    table["fold"] = table["user_id"].map(folds).astype("int8")
    table["copies"] = np.int32(1)
    table["listed"] = np.int32(1)
    names = tuple(folder.name for folder in folders)
    counts = {}
    for fold in range(FOLD_COUNT):
        in_fold = table[table["fold"] == fold]
        per_class = {name: int((in_fold["label"] == index).sum()) for index, name in enumerate(names)}
        counts[fold] = FoldCounts(
            rows=len(in_fold),
            labelled=len(in_fold),
            unique_labelled=len(in_fold),
            male=0,
            female=0,
            users=int(in_fold["user_id"].nunique()),
            classes=per_class,
        )
    subjects_file = root / SUBJECTS_FILE
    return FaceTable(
        root=root,
        faces=table,
        folds=counts,
        skipped=dict(skipped),
        examples=examples,
        users_in_several_folds=0,
        image_folder="<class>",
        image_prefix="*",
        fold_files={0: subjects_file} if subjects_file.is_file() else {},
        class_names=names,
        layout="image-folder",
    )


def shared_image_size(paths) -> tuple[int, int] | None:
    """(width, height) every readable image of ``paths`` has, from their headers; None where they differ."""
    sizes = set()
    for path in paths:
        try:
            with Image.open(path) as image:
                sizes.add(image.size)
        except (OSError, ValueError, Image.DecompressionBombError):
            continue  # the cache build counts it as skipped
        if len(sizes) > 1:
            return None
    return sizes.pop() if sizes else None
