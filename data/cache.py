"""Decoding faces into uint8 arrays, once per dataset and image size.

Every face is decoded to RGB and resized to ``size`` x ``size`` (256 by default, the
report's input before cropping), so the training loop never touches a JPEG.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

DEFAULT_IMAGE_SIZE = 256


class ImageDecodeError(ValueError):
    """A face image is missing or cannot be decoded."""


def decode_face(path: Path | str, size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """One face as uint8 (size, size, 3) RGB."""
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.uint8)
    except FileNotFoundError:
        raise ImageDecodeError(f"face image {path} does not exist") from None
    except OSError as error:
        raise ImageDecodeError(f"face image {path} cannot be decoded: {error}") from None


def decode_faces(paths: Sequence[str], size: int = DEFAULT_IMAGE_SIZE, workers: int = 4) -> np.ndarray:
    """All ``paths`` as one uint8 array (N, size, size, 3); PIL decodes outside the GIL."""
    images = np.empty((len(paths), size, size, 3), np.uint8)

    def decode_into(index: int) -> None:
        images[index] = decode_face(paths[index], size)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(decode_into, range(len(paths))))
    return images
