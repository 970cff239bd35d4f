"""Face images decoded: one face to uint8 RGB at the cache's size, problems as reasons, in parallel.

Pillow decodes outside the GIL, so threads decode in parallel. A missing, empty, truncated
or corrupt image comes back as a skip reason (a ``data.adience.SKIP_REASONS`` key), never an
exception; grayscale, CMYK, alpha, palette images and PNG content under a .jpg name are
converted to RGB and counted by ``CONVERSIONS`` reason.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
from PIL import Image, UnidentifiedImageError

DEFAULT_IMAGE_SIZE = 256  # the report's cached face, and an image folder's whose images differ in size
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 8, 1024  # what a cache may be asked to hold (--image-size, a suite's image_size)
MAX_NATIVE_SIZE = 512  # images that share a larger size are cached at DEFAULT_IMAGE_SIZE unless asked otherwise
CONVERSIONS = {
    "grayscale": "grayscale image, channels repeated",
    "cmyk": "CMYK image, converted to RGB",
    "alpha": "image with an alpha channel, alpha dropped",
    "palette": "palette image, converted to RGB",
    "other_mode": "unusual pixel mode, converted to RGB",
    "not_jpeg": "not JPEG content (e.g. PNG under a .jpg name), decoded by content",
}
_GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


class ImageDecodeError(ValueError):
    """A face image is missing or cannot be decoded."""


@dataclass(frozen=True)
class DecodedFace:
    """One image read: pixels (None when unusable), the skip reason, conversions applied."""

    pixels: np.ndarray | None
    problem: str | None = None  # a data.adience.SKIP_REASONS key
    detail: str = ""
    conversions: tuple[str, ...] = ()


def _conversions(image: Image.Image, path: Path) -> tuple[str, ...]:
    notes = []
    if image.format != "JPEG" and path.suffix.lower() in (".jpg", ".jpeg"):
        notes.append("not_jpeg")
    mode = image.mode
    if mode in _GRAYSCALE_MODES:
        notes.append("grayscale")
    elif mode == "CMYK":
        notes.append("cmyk")
    elif mode in ("P", "PA"):
        notes.append("palette")
    elif mode not in ("RGB", "RGBA", "RGBa"):
        notes.append("other_mode")
    if "A" in mode or "a" in mode or (mode == "P" and "transparency" in image.info):
        notes.append("alpha")
    return tuple(notes)


def read_face(path: Path | str, size: int | None = DEFAULT_IMAGE_SIZE) -> DecodedFace:
    """Decode one face to uint8 (size, size, 3) RGB; problems come back as a reason, not raised.

    ``size=None`` only checks that the image decodes (at a reduced JPEG scale: the whole
    file is still read, so truncation shows).
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            return DecodedFace(None, "empty_image", f"{path} is empty")
    except FileNotFoundError:
        return DecodedFace(None, "missing_image", f"{path} does not exist")
    except OSError as error:
        return DecodedFace(None, "missing_image", f"{path}: {error.strerror or error}")
    try:
        with Image.open(path) as image:
            conversions = _conversions(image, path)
            # JPEG draft: decode at the smallest DCT scale still >= size (2-8x faster)
            image.draft("RGB", (size, size) if size else (16, 16))
            image.load()
            if size is None:
                return DecodedFace(None, None, "", conversions)
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                image = image.convert("RGBA")
            rgb = image.convert("RGB")
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            return DecodedFace(np.asarray(rgb, dtype=np.uint8), None, "", conversions)
    except IsADirectoryError:
        return DecodedFace(None, "missing_image", f"{path} is a folder, not a file")
    except UnidentifiedImageError:
        return DecodedFace(None, "corrupt_image", f"{path} is not an image Pillow can read")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        reason = "truncated_image" if "truncated" in str(error).lower() else "corrupt_image"
        return DecodedFace(None, reason, f"{path}: {error}")


def decode_face(path: Path | str, size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """One face as uint8 (size, size, 3) RGB; raises ImageDecodeError when unusable."""
    face = read_face(path, size)
    if face.pixels is None:
        raise ImageDecodeError(f"face image {face.detail} ({face.problem})")
    return face.pixels


def decode_faces(paths: Sequence[str], size: int = DEFAULT_IMAGE_SIZE, workers: int | None = None) -> np.ndarray:
    """All ``paths`` as one in-memory uint8 array (N, size, size, 3); raises on the first bad image."""
    images = np.empty((len(paths), size, size, 3), np.uint8)

    def decode_into(index: int) -> None:
        images[index] = decode_face(paths[index], size)

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        list(pool.map(decode_into, range(len(paths))))
    return images


class ProgressBar:
    """``label: 45% (7890/17492) 1234/s`` on a stream: redrawn in place on a terminal, else every 10%."""

    def __init__(self, label: str, total: int, stream: TextIO | None):
        self.label = label
        self.total = total
        self.stream = stream
        self.done = 0
        self.started = time.perf_counter()
        self._lock = threading.Lock()
        self._last_draw = 0.0
        self._last_decile = 0  # no "0%" line in logs
        self._tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())

    def advance(self, count: int = 1) -> None:
        with self._lock:
            self.done += count
            if self.stream is None:
                return
            now = time.perf_counter()
            decile = self.done * 10 // max(self.total, 1)
            if self._tty and (now - self._last_draw > 0.2 or self.done == self.total):
                self._last_draw = now
                self.stream.write("\r" + self._text(now))
                self.stream.flush()
            elif not self._tty and decile != self._last_decile:
                self._last_decile = decile
                self.stream.write(self._text(now) + "\n")
                self.stream.flush()

    def close(self) -> None:
        if self.stream is not None and self._tty:
            self.stream.write("\n")
            self.stream.flush()

    def _text(self, now: float) -> str:
        rate = self.done / max(now - self.started, 1e-9)
        percent = 100 * self.done // max(self.total, 1)
        return f"{self.label}: {percent}% ({self.done}/{self.total}) {rate:.0f}/s"


def check_images(paths: Sequence[str], workers: int | None = None, progress: TextIO | None = None) -> list[DecodedFace]:
    """Decode-check every path (no pixels kept), in parallel; results in ``paths`` order."""
    bar = ProgressBar("checking images", len(paths), progress)

    def check(path: str) -> DecodedFace:
        result = read_face(path, None)
        bar.advance()
        return result

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count()) as pool:
        results = list(pool.map(check, paths))
    bar.close()
    return results
