"""Adience fold files -> face table; folds and splits.

The same code reads the official fold files and the built-in synthetic ones. A fold
file is tab-separated with the header ``user_id original_image face_id age gender x y
dx dy tilt_ang fiducial_yaw_angle fiducial_score``; the aligned face of a row lives at
``<images>/<user_id>/<prefix>.<face_id>.<original_image>`` where ``<images>`` is
``faces/`` (or ``aligned/``) and ``<prefix>`` is ``landmark_aligned_face`` or
``coarse_tilt_aligned_face``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

FOLD_COUNT = 5
FOLD_FILE_PATTERN = "fold_{fold}_data.txt"
FOLD_COLUMNS = (
    "user_id",
    "original_image",
    "face_id",
    "age",
    "gender",
    "x",
    "y",
    "dx",
    "dy",
    "tilt_ang",
    "fiducial_yaw_angle",
    "fiducial_score",
)
GENDER_LABELS = {"m": 0, "f": 1}  # the report: male = 0, female = 1
GENDER_NAMES = {0: "male", 1: "female"}
IMAGE_FOLDERS = ("faces", "aligned")
IMAGE_PREFIXES = ("landmark_aligned_face", "coarse_tilt_aligned_face")
DEFAULT_VAL_FOLD = 4  # the report: train on folds 0-3, validate on fold 4


class DatasetError(ValueError):
    """The dataset folder or its fold files are not what the loader expects."""


@dataclass(frozen=True)
class FaceTable:
    """Gender-labelled faces of a dataset, one row per fold-file line.

    ``faces`` has columns user_id, path, face_id, gender (0 male, 1 female), fold.
    ``dropped_unlabelled`` counts lines whose gender was ``u`` or empty.
    """

    root: Path
    faces: pd.DataFrame
    rows_read: int
    dropped_unlabelled: int
    image_prefix: str

    def fold_counts(self) -> dict[int, int]:
        counts = self.faces.groupby("fold").size()
        return {fold: int(counts.get(fold, 0)) for fold in range(FOLD_COUNT)}

    def summary(self) -> str:
        per_fold = " / ".join(str(n) for n in self.fold_counts().values())
        genders = self.faces["gender"].value_counts()
        return (
            f"{self.rows_read} rows, {len(self.faces)} gender-labelled "
            f"({int(genders.get(0, 0))} male, {int(genders.get(1, 0))} female; per fold {per_fold}), "
            f"{self.dropped_unlabelled} without gender dropped"
        )


def find_fold_files(root: Path | str) -> dict[int, Path]:
    """The five fold files under ``root``; raises DatasetError naming what is missing."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(
            f"dataset folder {root} does not exist (expected a folder with fold_0_data.txt ... fold_4_data.txt)"
        )
    if not root.is_dir():
        raise DatasetError(
            f"dataset path {root} is not a folder (expected a folder with fold_0_data.txt ... fold_4_data.txt)"
        )
    files = {fold: root / FOLD_FILE_PATTERN.format(fold=fold) for fold in range(FOLD_COUNT)}
    missing = [path.name for path in files.values() if not path.is_file()]
    if len(missing) == FOLD_COUNT:
        raise DatasetError(f"{root} holds no Adience fold files (expected fold_0_data.txt ... fold_4_data.txt)")
    if missing:
        raise DatasetError(f"{root} lacks fold files {', '.join(missing)}")
    return files


def read_fold_file(path: Path | str, fold: int) -> pd.DataFrame:
    """Every line of one fold file as strings, with a ``fold`` column."""
    path = Path(path)
    with path.open(encoding="utf-8", newline="") as handle:
        header = handle.readline().rstrip("\r\n").split("\t")
    if tuple(column.strip() for column in header[: len(FOLD_COLUMNS)]) != FOLD_COLUMNS:
        raise DatasetError(f"{path} does not start with the Adience header ({' '.join(FOLD_COLUMNS)})")
    table = pd.read_csv(
        path,
        sep="\t",
        dtype=str,
        keep_default_na=False,
        usecols=range(len(FOLD_COLUMNS)),
        names=list(FOLD_COLUMNS),
        skiprows=1,
        quoting=3,  # csv.QUOTE_NONE: ages look like "(25, 32)" and are not quoted fields
        engine="c",
    )
    table["fold"] = fold
    return table


def detect_image_layout(root: Path) -> tuple[str, str]:
    """(image folder, file prefix) of the faces under ``root``; defaults to faces/landmark."""
    for folder in IMAGE_FOLDERS:
        base = root / folder
        if not base.is_dir():
            continue
        for user_dir in base.iterdir():
            if not user_dir.is_dir():
                continue
            for image in user_dir.iterdir():
                for prefix in IMAGE_PREFIXES:
                    if image.name.startswith(prefix + "."):
                        return folder, prefix
    return IMAGE_FOLDERS[0], IMAGE_PREFIXES[0]


def load_faces(root: Path | str) -> FaceTable:
    """Read all five fold files of ``root`` into a FaceTable of gender-labelled faces."""
    root = Path(root)
    fold_files = find_fold_files(root)
    raw = pd.concat([read_fold_file(path, fold) for fold, path in fold_files.items()], ignore_index=True)
    genders = raw["gender"].str.strip().str.lower()
    labelled = raw[genders.isin(GENDER_LABELS.keys())].copy()
    folder, prefix = detect_image_layout(root)
    labelled["gender"] = genders[labelled.index].map(GENDER_LABELS).astype("int8")
    labelled["path"] = (
        str(root / folder)
        + "/"
        + labelled["user_id"]
        + "/"
        + prefix
        + "."
        + labelled["face_id"].str.strip()
        + "."
        + labelled["original_image"]
    )
    faces = labelled[["user_id", "path", "face_id", "gender", "fold"]].reset_index(drop=True)
    faces["fold"] = faces["fold"].astype("int8")
    return FaceTable(
        root=root,
        faces=faces,
        rows_read=len(raw),
        dropped_unlabelled=len(raw) - len(labelled),
        image_prefix=prefix,
    )


def split_folds(
    faces: pd.DataFrame, val_fold: int = DEFAULT_VAL_FOLD, train_folds: tuple[int, ...] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, validation) rows: validation is ``val_fold``; train is ``train_folds`` or all others."""
    if val_fold not in range(FOLD_COUNT):
        raise DatasetError(f"validation fold must be 0..{FOLD_COUNT - 1}, got {val_fold}")
    if train_folds is None:
        train_folds = tuple(fold for fold in range(FOLD_COUNT) if fold != val_fold)
    if val_fold in train_folds:
        raise DatasetError(f"fold {val_fold} cannot be both a training and the validation fold")
    train = faces[faces["fold"].isin(train_folds)].reset_index(drop=True)
    val = faces[faces["fold"] == val_fold].reset_index(drop=True)
    return train, val
