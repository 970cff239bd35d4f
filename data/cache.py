"""Decode-once face cache: every face as uint8 RGB in one memmap file, plus a manifest.

Every usable face is decoded once (``data.decode``, in parallel threads) into ``size`` x
``size`` RGB (data/datasets.py ``default_image_size``: 256 for Adience, the report's input
before cropping; an image folder's own size where its images share one), so the training loop
never touches a JPEG. A cache folder holds

- ``images.u8``: raw uint8, shape (slots, size, size, 3), opened with ``np.memmap``;
- ``faces.parquet``: one row per usable face: user_id, face_id, original_image, path,
  gender, label, fold, copies, listed, slot (its index in ``images.u8``);
- ``manifest.json``: format, size, slot count, the fingerprint of the sources, and the
  faces skipped (missing, empty, truncated, corrupt) or converted (grayscale, CMYK,
  alpha, palette, PNG under a .jpg name), by reason.

The folder's name is the fingerprint of the sources (fold files' bytes, each image's
size and mtime, the image size), so a changed dataset lands in a new folder and is
rebuilt. A build writes into a temporary folder and renames it into place, so two
processes building the same cache never see half of one. Reading goes through
``os.preadv`` into the batch, not through the mapping, so iterating a large cache keeps
resident memory at a few batches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from data.adience import FACE_KEY, DatasetError, FaceTable, skip_warnings
from data.datasets import load_dataset
from data.decode import CONVERSIONS, DEFAULT_IMAGE_SIZE, MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, ProgressBar, read_face
from data.synthetic import default_cache_root

CACHE_FORMAT = 2  # 2: faces.parquet has ``label`` and ``listed`` (labelled lines per face); class names
IMAGES_FILE = "images.u8"
FACES_FILE = "faces.parquet"
MANIFEST_FILE = "manifest.json"


def source_fingerprint(table: FaceTable, size: int) -> str:
    """sha256 of what the cache is made from: fold files' bytes, each image's name, size and mtime."""
    digest = hashlib.sha256(f"adience-bench-cache v{CACHE_FORMAT} size {size}\n".encode())
    for path in table.source_files():
        digest.update(f"source {path.name}\n".encode())
        digest.update(path.read_bytes())
    for path in table.faces["path"].drop_duplicates():
        try:
            stat = os.stat(path)
            digest.update(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\tmissing\n".encode())
    return digest.hexdigest()


@dataclass
class FaceCache:
    """An opened cache folder: the usable faces and their pixels, read-only."""

    folder: Path
    faces: pd.DataFrame  # one row per usable face, with its ``slot``
    image_size: int
    slots: int
    fingerprint: str
    skipped: dict[str, int] = field(default_factory=dict)  # image problems, by reason
    converted: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)
    class_names: tuple[str, ...] = ("male", "female")  # label index -> name
    pixels: np.ndarray | None = field(default=None, repr=False)  # every slot in memory (``portable``)
    _fd: int | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def image_bytes(self) -> int:
        return self.image_size * self.image_size * 3

    @property
    def images(self) -> np.ndarray:
        """All slots as a read-only memmap (touching it pages the file in: prefer ``read``), or
        the in-memory array of a portable cache."""
        if self.pixels is not None:
            return self.pixels
        if self.slots == 0:
            return np.empty((0, self.image_size, self.image_size, 3), np.uint8)
        return np.memmap(
            self.folder / IMAGES_FILE, np.uint8, mode="r", shape=(self.slots, self.image_size, self.image_size, 3)
        )

    def read(self, slots: Iterable[int] | np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Images of ``slots`` (in that order) as uint8 (n, size, size, 3), read from the file.

        Runs of consecutive slots are read in one call; nothing stays mapped, so resident
        memory does not grow with the cache.
        """
        slots = np.asarray(slots, dtype=np.int64).reshape(-1)
        if slots.size and (slots.min() < 0 or slots.max() >= self.slots):
            raise IndexError(f"slot out of range 0..{self.slots - 1}")
        if out is None:
            out = np.empty((len(slots), self.image_size, self.image_size, 3), np.uint8)
        if self.pixels is not None:
            return np.take(self.pixels, slots, axis=0, out=out)
        fd = self._descriptor()
        flat = out.reshape(len(slots), -1)
        start = 0
        while start < len(slots):
            end = start + 1
            while end < len(slots) and slots[end] == slots[end - 1] + 1:
                end += 1
            self._read_run(fd, int(slots[start]), flat[start:end])
            start = end
        return out

    def _read_run(self, fd: int, first_slot: int, target: np.ndarray) -> None:
        view = memoryview(target).cast("B")
        offset = first_slot * self.image_bytes
        while len(view):
            count = os.preadv(fd, [view], offset) if hasattr(os, "preadv") else self._seek_read(fd, view, offset)
            if count <= 0:
                raise OSError(f"{self.folder / IMAGES_FILE} is shorter than its manifest says")
            view = view[count:]
            offset += count

    def _seek_read(self, fd: int, view: memoryview, offset: int) -> int:
        with self._lock:
            os.lseek(fd, offset, os.SEEK_SET)
            return os.readv(fd, [view])

    def _descriptor(self) -> int:
        if self._fd is None:
            with self._lock:
                if self._fd is None:
                    self._fd = os.open(self.folder / IMAGES_FILE, os.O_RDONLY)
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def portable(self) -> FaceCache:
        """This cache with its pixels carried along, for processes that cannot see its folder.

        The array is the file's memory map: pickled (as Ray's object store does, once per node)
        it travels as one buffer, read where it lands without another copy; nothing of the
        folder is needed there.
        """
        if self.pixels is not None:
            return self
        return dataclasses.replace(self, pixels=np.asarray(self.images), _fd=None)

    def __getstate__(self):  # a descriptor does not cross processes: reopen there
        state = self.__dict__.copy()
        state["_fd"] = None
        state.pop("_lock")
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()

    def warnings(self) -> list[str]:
        lines = skip_warnings(self.skipped, self.examples, unit="faces")
        for reason, count in self.converted.items():
            lines.append(f"warning: converted {count} faces: {reason} ({CONVERSIONS[reason]})")
        return lines


def open_cache(folder: Path | str) -> FaceCache:
    """Open a built cache folder read-only; DatasetError when it is not a complete cache."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        faces = pd.read_parquet(folder / FACES_FILE)
    except (OSError, ValueError) as error:
        raise DatasetError(f"{folder} is not a complete face cache ({error})") from None
    if manifest.get("format") != CACHE_FORMAT:
        raise DatasetError(f"{folder} is a face cache of format {manifest.get('format')}, not {CACHE_FORMAT}")
    size = int(manifest["image_size"])
    expected = int(manifest["slots"]) * size * size * 3
    actual = (folder / IMAGES_FILE).stat().st_size if (folder / IMAGES_FILE).exists() else -1
    if actual != expected:
        raise DatasetError(f"{folder / IMAGES_FILE} holds {actual} bytes, the manifest says {expected}")
    return FaceCache(
        folder=folder,
        faces=faces,
        image_size=size,
        slots=int(manifest["slots"]),
        fingerprint=manifest["fingerprint"],
        skipped=manifest.get("skipped", {}),
        converted=manifest.get("converted", {}),
        examples=manifest.get("examples", {}),
        class_names=tuple(manifest.get("class_names", ("male", "female"))),
    )


def cache_folder(table: FaceTable, size: int, cache_root: Path | str | None = None) -> tuple[Path, str]:
    """(folder the cache of ``table`` at ``size`` lives in, its source fingerprint)."""
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    dataset = table.root.resolve()
    dataset_key = f"{dataset.name or 'root'}-{hashlib.sha256(str(dataset).encode()).hexdigest()[:8]}-{size}px"
    fingerprint = source_fingerprint(table, size)
    return root / "faces" / dataset_key / fingerprint[:20], fingerprint


def ensure_cache(
    data: FaceTable | Path | str,
    size: int = DEFAULT_IMAGE_SIZE,
    cache_root: Path | str | None = None,
    workers: int | None = None,
    progress: TextIO | None = None,
) -> FaceCache:
    """The cache of ``data`` at ``size``, built on first use (or when its sources changed).

    Raises DatasetError when no face of the dataset is usable.
    """
    table = data if isinstance(data, FaceTable) else load_dataset(data)
    if not MIN_IMAGE_SIZE <= size <= MAX_IMAGE_SIZE:
        raise DatasetError(f"a cache holds images of {MIN_IMAGE_SIZE} to {MAX_IMAGE_SIZE} px, not {size}")
    folder, fingerprint = cache_folder(table, size, cache_root)
    if not (folder / MANIFEST_FILE).is_file():
        build_cache(table, folder, fingerprint, size, workers, progress)
        _remove_stale_siblings(folder)
    cache = open_cache(folder)
    if cache.faces.empty:
        problems = {**table.skipped, **cache.skipped}
        found = ", ".join(f"{reason} {count}" for reason, count in problems.items()) or "no labelled rows"
        raise DatasetError(f"{table.root}: no usable face is left (skipped: {found})")
    return cache


def build_cache(
    table: FaceTable,
    folder: Path,
    fingerprint: str,
    size: int = DEFAULT_IMAGE_SIZE,
    workers: int | None = None,
    progress: TextIO | None = None,
) -> None:
    """Decode every unique face of ``table`` into a new cache at ``folder`` (atomically)."""
    faces = table.faces.drop_duplicates(list(FACE_KEY)).reset_index(drop=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=folder.parent))
    try:
        usable, skipped, converted, examples = _decode_into(
            faces["path"].tolist(), staging / IMAGES_FILE, size, workers, progress
        )
        kept = faces[usable].copy()
        kept["slot"] = np.flatnonzero(usable).astype(np.int64)
        write_cache_tables(
            staging,
            kept,
            size,
            len(faces),
            fingerprint,
            dataset=str(table.root),
            image_prefix=table.image_prefix,
            class_names=list(table.class_names),
            skipped=skipped,
            converted=converted,
            examples=examples,
        )
        try:
            os.rename(staging, folder)
        except OSError:
            if not (folder / MANIFEST_FILE).is_file():
                raise
            # another process built the same sources first: theirs is identical
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_cache_tables(folder: Path, faces: pd.DataFrame, size: int, slots: int, fingerprint: str, **about) -> None:
    """A cache's face table and manifest, beside its ``slots`` images of ``size`` px already in
    ``folder``: what ``open_cache`` reads. ``about`` adds to the manifest (dataset, skipped, ...)."""
    faces.reset_index(drop=True).to_parquet(folder / FACES_FILE, index=False)
    manifest = {"format": CACHE_FORMAT, "image_size": size, "slots": slots, "fingerprint": fingerprint, **about}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))


def _decode_into(
    paths: list[str], target: Path, size: int, workers: int | None, progress: TextIO | None
) -> tuple[np.ndarray, dict[str, int], dict[str, int], dict[str, str]]:
    usable = np.zeros(len(paths), bool)
    skipped: Counter[str] = Counter()
    converted: Counter[str] = Counter()
    examples: dict[str, str] = {}
    lock = threading.Lock()
    slot_bytes = size * size * 3
    bar = ProgressBar(f"decoding {len(paths)} faces once into the cache", len(paths), progress)
    fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, len(paths) * slot_bytes)

        def decode(index: int) -> None:
            face = read_face(paths[index], size)
            if face.pixels is not None:
                data = memoryview(np.ascontiguousarray(face.pixels)).cast("B")
                written = 0
                while written < len(data):
                    written += os.pwrite(fd, data[written:], index * slot_bytes + written)
            with lock:
                if face.pixels is None:
                    skipped[face.problem] += 1
                    examples.setdefault(face.problem, face.detail)
                else:
                    usable[index] = True
                    converted.update(face.conversions)
            bar.advance()

        with ThreadPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
            list(pool.map(decode, range(len(paths))))
        os.fsync(fd)
    finally:
        os.close(fd)
        bar.close()
    return usable, dict(skipped), dict(converted), examples


def _remove_stale_siblings(folder: Path) -> None:
    """Older caches of the same dataset and size: their sources changed, nothing reads them."""
    for sibling in folder.parent.iterdir():
        if sibling != folder and not sibling.name.startswith(".partial-") and (sibling / MANIFEST_FILE).is_file():
            shutil.rmtree(sibling, ignore_errors=True)


def channel_statistics(cache: FaceCache, slots: Sequence[int] | np.ndarray, chunk: int = 128) -> tuple[list, list]:
    """Per-channel (mean, std) over every pixel of ``slots`` in [0, 255] units.

    Computed once per set of slots and remembered in the cache folder, so trials on the
    same training split share it.
    """
    slots = np.sort(np.asarray(slots, dtype=np.int64))
    if slots.size == 0:
        raise DatasetError("no images to compute channel statistics from")
    key = hashlib.sha256(slots.tobytes()).hexdigest()[:16]
    memo = cache.folder / f"channel-stats-{key}.json"
    if memo.is_file():
        stored = json.loads(memo.read_text())
        return stored["mean"], stored["std"]
    total = np.zeros(3)
    squares = np.zeros(3)
    buffer = np.empty((chunk, cache.image_size, cache.image_size, 3), np.uint8)
    for start in range(0, len(slots), chunk):
        part = slots[start : start + chunk]
        images = cache.read(part, out=buffer[: len(part)]).reshape(-1, 3).astype(np.float64)
        total += images.sum(axis=0)
        squares += np.square(images).sum(axis=0)
    count = len(slots) * cache.image_size * cache.image_size
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - np.square(mean), 0.0))
    result = ([float(v) for v in mean], [float(v) for v in std])
    try:
        with tempfile.NamedTemporaryFile("w", dir=cache.folder, delete=False, suffix=".tmp") as handle:
            json.dump({"mean": result[0], "std": result[1], "images": int(len(slots))}, handle)
        os.replace(handle.name, memo)
    except OSError:
        pass  # a read-only cache folder: recompute next time
    return result
