"""Which layout a dataset folder holds, and the table of its labelled images.

Adience fold files (``fold_0_data.txt`` ...: data/adience.py) where the folder has any, else
an image folder with one subfolder per class (data/folders.py); a folder with neither is a
one-line DatasetError naming both layouts.
"""

from __future__ import annotations

from pathlib import Path

from data.adience import FOLD_COUNT, FOLD_FILE_PATTERN, FaceTable, load_faces
from data.folders import is_image_folder, load_image_folder


def load_dataset(root: Path | str, keep_duplicates: bool = False) -> FaceTable:
    """The labelled images of ``root``, whichever layout it has (``keep_duplicates``: Adience only)."""
    root = Path(root)
    has_fold_files = any((root / FOLD_FILE_PATTERN.format(fold=fold)).is_file() for fold in range(FOLD_COUNT))
    if root.is_dir() and not has_fold_files and is_image_folder(root):
        return load_image_folder(root)
    return load_faces(root, keep_duplicates)
