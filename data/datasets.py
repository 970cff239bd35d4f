"""Which layout a dataset folder holds, and the table of its labelled images.

Adience fold files (``fold_0_data.txt`` ...: data/adience.py) where the folder has any, else
an image folder with one subfolder per class (data/folders.py); a folder with neither is a
one-line DatasetError naming both layouts. Each layout has its own cache size and default
augmentation: Adience faces are cached at 256 px and trained with the report's policy; an
image folder at its images' own size (where they share one) and with no augmentation.
"""

from __future__ import annotations

from pathlib import Path

from data.adience import FOLD_COUNT, FOLD_FILE_PATTERN, FaceTable, load_faces
from data.decode import DEFAULT_IMAGE_SIZE, MAX_NATIVE_SIZE
from data.folders import is_image_folder, load_image_folder, shared_image_size


def load_dataset(root: Path | str, keep_duplicates: bool = False) -> FaceTable:
    """The labelled images of ``root``, whichever layout it has (``keep_duplicates``: Adience only)."""
    return load_faces(root, keep_duplicates) if is_adience(root) else load_image_folder(Path(root))


def is_adience(root: Path | str) -> bool:
    """Whether ``root`` holds Adience fold files (else it is read as an image folder)."""
    root = Path(root)
    return not (root.is_dir() and is_image_folder(root)) or any(
        (root / FOLD_FILE_PATTERN.format(fold=fold)).is_file() for fold in range(FOLD_COUNT)
    )


def default_policy(root: Path | str | None) -> str:
    """The augmentation a trial gets where nobody named one: the report's for faces (Adience, the
    synthetic faces: ``root`` None), none for an image folder (flips it did not ask for can
    destroy its classes: digits, text, arrows)."""
    return "report" if root is None or is_adience(root) else "none"


def default_image_size(table: FaceTable) -> tuple[int, str]:
    """(cache side, why): 256 for Adience; an image folder's own side where all its images share
    one square size of at most MAX_NATIVE_SIZE, else 256."""
    if table.layout == "adience":
        return DEFAULT_IMAGE_SIZE, "the report's cached face"
    shared = shared_image_size(table.faces["path"].drop_duplicates())
    if shared is None:
        return DEFAULT_IMAGE_SIZE, "its images differ in size"
    width, height = shared
    if width != height:
        return DEFAULT_IMAGE_SIZE, f"its images are {width}x{height}, not square"
    if width > MAX_NATIVE_SIZE:
        return DEFAULT_IMAGE_SIZE, f"its images are {width}x{height}, larger than {MAX_NATIVE_SIZE}"
    return width, "its images' own size"
