"""Adience fold files -> face table; row validation, skips by reason; folds and splits.

The same code reads the official fold files and the built-in synthetic ones. A fold
file is tab-separated with the header ``user_id original_image face_id age gender x y
dx dy tilt_ang fiducial_yaw_angle fiducial_score``; the aligned face of a row lives at
``<images>/<user_id>/<prefix>.<face_id>.<original_image>`` where ``<images>`` is
``faces/`` (or ``aligned/``) and ``<prefix>`` is ``landmark_aligned_face`` or
``coarse_tilt_aligned_face``.

A face is identified by (user_id, face_id, original_image). The official files list
117 lines twice; each face is used once unless ``keep_duplicates`` reproduces the
original per-fold lists. Every line that is not used is counted under a reason of
``SKIP_REASONS``, never dropped silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
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
FACE_KEY = ("user_id", "face_id", "original_image")
GENDER_LABELS = {"m": 0, "f": 1}  # the report: male = 0, female = 1
GENDER_NAMES = {0: "male", 1: "female"}
UNLABELLED_GENDERS = ("u", "")
IMAGE_FOLDERS = ("faces", "aligned")
IMAGE_PREFIXES = ("landmark_aligned_face", "coarse_tilt_aligned_face")
DEFAULT_VAL_FOLD = 4  # the report: train on folds 0-3, validate on fold 4

# Why a fold-file line or a face is not used. Row reasons come from the fold files
# (this module); image reasons from decoding (data/cache.py).
SKIP_REASONS = {
    "bad_columns": "line with too few or too many tab-separated columns",
    "unsafe_path": "user_id, face_id or file name would leave the dataset folder",
    "duplicate": "repeats a face already listed (same user_id, face_id, original_image)",
    "no_gender": "gender is u or empty",
    "bad_gender": "gender other than m, f, u or empty",
    "conflicting_gender": "face listed as both m and f",
    "missing_image": "image file not found",
    "empty_image": "image file is empty (0 bytes)",
    "truncated_image": "image file is truncated",
    "corrupt_image": "image file cannot be decoded",
    "not_in_a_class": "subjects.csv names a file that is not an image in a class folder",
}


class DatasetError(ValueError):
    """The dataset folder or its fold files are not what the loader expects."""


@dataclass(frozen=True)
class FoldCounts:
    """One fold as its file stands (rows, labelled, users) and as used (unique faces)."""

    rows: int  # data lines of the fold file
    labelled: int  # lines whose gender is m or f, duplicates included
    unique_labelled: int  # distinct faces with one gender
    male: int
    female: int
    users: int  # distinct user_ids among well-formed lines
    classes: dict[str, int] = field(default_factory=dict)  # unique faces per class name


@dataclass(frozen=True)
class FaceTable:
    """Gender-labelled faces of a dataset, and what was skipped on the way.

    ``faces`` has columns user_id, face_id, original_image, path, gender (0 male,
    1 female), label (the class index the models learn: the gender here), fold, copies
    (lines listing that face) and listed (lines listing it with its gender: its rows in Levi
    & Hassner's per-fold lists); one row per face, or one row per m/f line when
    ``keep_duplicates``. An image-folder dataset (data/folders.py) fills the same columns.
    """

    root: Path
    faces: pd.DataFrame
    folds: dict[int, FoldCounts]
    skipped: dict[str, int]  # reason -> lines (or faces) skipped
    examples: dict[str, str]  # reason -> where the first one was seen
    users_in_several_folds: int
    image_folder: str
    image_prefix: str
    keep_duplicates: bool = False
    fold_files: dict[int, Path] = field(default_factory=dict)
    class_names: tuple[str, ...] = ("male", "female")  # label index -> name
    layout: str = "adience"  # or "image-folder"

    def source_files(self) -> list[Path]:
        """The files besides the images that define the dataset (fold files, subjects.csv)."""
        return [path for _, path in sorted(self.fold_files.items())]

    @property
    def rows_read(self) -> int:
        return sum(counts.rows for counts in self.folds.values())

    def fold_counts(self) -> dict[int, int]:
        """Faces (rows of ``faces``) per fold."""
        counts = self.faces.groupby("fold").size()
        return {fold: int(counts.get(fold, 0)) for fold in range(FOLD_COUNT)}

    def summary(self) -> str:
        per_fold = " / ".join(str(n) for n in self.fold_counts().values())
        labels = self.faces["label"].value_counts()
        per_class = ", ".join(f"{int(labels.get(i, 0))} {name}" for i, name in enumerate(self.class_names))
        skipped = sum(self.skipped.values())
        kind = "gender-labelled faces" if self.layout == "adience" else "labelled images"
        return f"{self.rows_read} rows, {len(self.faces)} {kind} ({per_class}; per fold {per_fold}), {skipped} rows skipped"

    def warnings(self) -> list[str]:
        """One line per skip reason, for the log of a run."""
        return skip_warnings(self.skipped, self.examples)


def skip_warnings(skipped: dict[str, int], examples: dict[str, str], unit: str = "rows") -> list[str]:
    lines = []
    for reason, count in skipped.items():
        if not count:
            continue
        example = f"; first: {examples[reason]}" if reason in examples else ""
        lines.append(f"warning: skipped {count} {unit}: {reason} ({SKIP_REASONS.get(reason, reason)}{example})")
    return lines


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
        raise DatasetError(
            f"{root} holds no Adience fold files (expected fold_0_data.txt ... fold_4_data.txt) "
            "and no image folder (one subfolder of images per class)"
        )
    if missing:
        raise DatasetError(f"{root} lacks fold files {', '.join(missing)}")
    return files


def read_fold_lines(path: Path | str) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every non-blank data line; Windows line endings read as Unix ones."""
    path = Path(path)
    try:
        # newline=None: \r\n and \r end lines like \n; utf-8-sig drops a byte-order mark
        with path.open(encoding="utf-8-sig", errors="replace", newline=None) as handle:
            text = handle.read()
    except OSError as error:
        raise DatasetError(f"cannot read fold file {path}: {error.strerror or error}") from None
    lines = text.split("\n")
    if not text.strip():
        raise DatasetError(f"fold file {path} is empty (an empty fold)")
    header = tuple(column.strip() for column in lines[0].split("\t"))
    if header[: len(FOLD_COLUMNS)] != FOLD_COLUMNS:
        raise DatasetError(f"{path} does not start with the Adience header ({' '.join(FOLD_COLUMNS)})")
    rows = [(number, line.split("\t")) for number, line in enumerate(lines[1:], start=2) if line.strip()]
    if not rows:
        raise DatasetError(f"fold file {path} has a header but no rows (an empty fold)")
    return rows


def read_fold_file(path: Path | str, fold: int) -> pd.DataFrame:
    """Every well-formed line of one fold file as strings, with a ``fold`` column."""
    rows = [fields for _, fields in read_fold_lines(path) if len(fields) == len(FOLD_COLUMNS)]
    table = pd.DataFrame(rows, columns=list(FOLD_COLUMNS), dtype=str)
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


def _is_safe_name(user_id: str, face_id: str, original_image: str) -> bool:
    """True when the face's file stays inside ``<images>/<user_id>/``.

    The file name is ``<prefix>.<face_id>.<original_image>``, one path component as long
    as neither part holds a separator; the user folder must be one real component.
    """
    for part in (user_id, face_id, original_image):
        if "/" in part or "\\" in part or "\x00" in part:
            return False
    return user_id not in ("", ".", "..") and bool(original_image)


@dataclass
class _FaceRows:
    fold: int
    first_line: str
    genders: list[str]  # normalised gender of each line listing the face


def load_faces(root: Path | str, keep_duplicates: bool = False) -> FaceTable:
    """Read all five fold files of ``root`` into a FaceTable of gender-labelled faces.

    Each line is used at most once and every unused line is counted in ``skipped``:
    malformed lines, unsafe names, repeats of a face (unless ``keep_duplicates``),
    faces without a usable gender. An empty or missing fold file is a DatasetError.
    """
    root = Path(root)
    fold_files = find_fold_files(root)
    image_folder, prefix = detect_image_layout(root)
    skipped: Counter[str] = Counter()
    examples: dict[str, str] = {}

    def skip(reason: str, where: str, count: int = 1) -> None:
        skipped[reason] += count
        examples.setdefault(reason, where)

    faces: dict[tuple[str, str, str], _FaceRows] = {}
    rows_per_fold: Counter[int] = Counter()
    labelled_per_fold: Counter[int] = Counter()
    users_per_fold: dict[int, set[str]] = {fold: set() for fold in range(FOLD_COUNT)}
    for fold, path in fold_files.items():
        for number, fields in read_fold_lines(path):
            rows_per_fold[fold] += 1
            where = f"{path.name} line {number}"
            if len(fields) != len(FOLD_COLUMNS):
                skip("bad_columns", f"{where} has {len(fields)} columns, not {len(FOLD_COLUMNS)}")
                continue
            user_id, original_image, face_id = fields[0].strip(), fields[1].strip(), fields[2].strip()
            gender = fields[4].strip().lower()
            if gender in GENDER_LABELS:
                labelled_per_fold[fold] += 1
            if not _is_safe_name(user_id, face_id, original_image):
                skip("unsafe_path", f"{where} ({user_id}/{original_image})")
                continue
            users_per_fold[fold].add(user_id)
            key = (user_id, face_id, original_image)
            if key in faces:
                faces[key].genders.append(gender)
                # a face of another fold is still one face: folds must not share it
            else:
                faces[key] = _FaceRows(fold, where, [gender])

    records = []
    for key, face in faces.items():
        labels = {g for g in face.genders if g in GENDER_LABELS}
        copies = len(face.genders)
        if len(labels) == 1:
            (label,) = labels
            if keep_duplicates:
                kept = face.genders.count(label)
                for gender in face.genders:
                    if gender not in GENDER_LABELS:
                        skip("no_gender" if gender in UNLABELLED_GENDERS else "bad_gender", face.first_line)
            else:
                kept = 1
                if copies > 1:
                    skip("duplicate", face.first_line, copies - 1)
            listed = face.genders.count(label)
            records.extend([(*key, GENDER_LABELS[label], face.fold, copies, listed)] * kept)
            continue
        if len(labels) == 2:
            reason = "conflicting_gender"
        elif any(g not in UNLABELLED_GENDERS for g in face.genders):
            reason = "bad_gender"
        else:
            reason = "no_gender"
        if keep_duplicates:
            skip(reason, face.first_line, copies)
        else:
            skip(reason, face.first_line)
            if copies > 1:
                skip("duplicate", face.first_line, copies - 1)

    table = pd.DataFrame.from_records(
        records, columns=["user_id", "face_id", "original_image", "gender", "fold", "copies", "listed"]
    )
    table["gender"] = table["gender"].astype("int8")
    table["label"] = table["gender"].astype("int32")
    table["fold"] = table["fold"].astype("int8")
    table["copies"] = table["copies"].astype("int32")
    table["listed"] = table["listed"].astype("int32")
    base = str(root / image_folder)
    table.insert(
        3,
        "path",
        base + "/" + table["user_id"] + "/" + prefix + "." + table["face_id"] + "." + table["original_image"],
    )

    unique = table.drop_duplicates(list(FACE_KEY))
    folds = {}
    for fold in range(FOLD_COUNT):
        in_fold = unique[unique["fold"] == fold]
        male, female = int((in_fold["gender"] == 0).sum()), int((in_fold["gender"] == 1).sum())
        folds[fold] = FoldCounts(
            rows=rows_per_fold[fold],
            labelled=labelled_per_fold[fold],
            unique_labelled=len(in_fold),
            male=male,
            female=female,
            users=len(users_per_fold[fold]),
            classes={"male": male, "female": female},
        )
    user_folds = Counter(user for users in users_per_fold.values() for user in users)
    return FaceTable(
        root=root,
        faces=table,
        folds=folds,
        skipped={reason: skipped[reason] for reason in SKIP_REASONS if skipped[reason]},
        examples=examples,
        users_in_several_folds=sum(1 for n in user_folds.values() if n > 1),
        image_folder=image_folder,
        image_prefix=prefix,
        keep_duplicates=keep_duplicates,
        fold_files=fold_files,
    )


def training_folds(val_fold: int, fold_count: int = FOLD_COUNT) -> tuple[int, ...]:
    """The folds a split trains on when ``val_fold`` validates: every other one."""
    return tuple(fold for fold in range(fold_count) if fold != val_fold)


def cross_validation_splits(fold_count: int = FOLD_COUNT) -> list[tuple[tuple[int, ...], int]]:
    """The (train_folds, val_fold) pairs of k-fold cross-validation: each fold held out once."""
    return [(training_folds(held_out, fold_count), held_out) for held_out in range(fold_count)]


def split_folds(
    faces: pd.DataFrame, val_fold: int = DEFAULT_VAL_FOLD, train_folds: tuple[int, ...] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, validation) rows: validation is ``val_fold``; train is ``train_folds`` or all others.

    Subject-exclusive even when a user appears in several folds: training drops the
    faces of every user in the validation fold.
    """
    if val_fold not in range(FOLD_COUNT):
        raise DatasetError(f"validation fold must be 0..{FOLD_COUNT - 1}, got {val_fold}")
    if train_folds is None:
        train_folds = training_folds(val_fold)
    if val_fold in train_folds:
        raise DatasetError(f"fold {val_fold} cannot be both a training and the validation fold")
    val = faces[faces["fold"] == val_fold]
    train = faces[faces["fold"].isin(train_folds) & ~faces["user_id"].isin(set(val["user_id"]))]
    return train.reset_index(drop=True), val.reset_index(drop=True)


def with_duplicates(faces: pd.DataFrame) -> pd.DataFrame:
    """Each face as many times as its gender-labelled lines list it (Levi & Hassner's per-fold lists)."""
    return faces.loc[faces.index.repeat(faces["listed"])].reset_index(drop=True)


def require_nonempty_split(
    train: pd.DataFrame, val: pd.DataFrame, val_fold: int, train_folds: tuple[int, ...] | None = None
) -> None:
    """A one-line DatasetError when a split has nothing usable left, naming the fold files."""
    if val.empty:
        raise DatasetError(
            f"validation fold {val_fold} ({FOLD_FILE_PATTERN.format(fold=val_fold)}) has no usable labelled faces"
        )
    if train.empty:
        folds = train_folds or training_folds(val_fold)
        names = ", ".join(FOLD_FILE_PATTERN.format(fold=f) for f in folds)
        raise DatasetError(f"training folds {list(folds)} ({names}) have no usable labelled faces")
