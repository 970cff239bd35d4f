"""Image-folder datasets for tests: one folder of images per class (and a subjects.csv).

Faces: the class signal is the built-in synthetic faces' strand orientation (data/synthetic.py), so
a model can learn it; each subject has a few images, and the CSV ties them together.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from data.synthetic import render_face


def write_image_folder(
    root: Path, classes=("cats", "dogs"), subjects: int = 10, images_per_subject: int = 4, csv: bool = True
) -> Path:
    rng = np.random.default_rng(11)
    rows = ["path,subject"]
    for index in range(subjects):
        label = index % len(classes)
        subject = {
            "background": rng.uniform(20, 235, size=3).astype(np.float32),
            "skin": rng.uniform(70, 230, size=3).astype(np.float32),
            "radii": np.array([rng.uniform(0.22, 0.3), rng.uniform(0.28, 0.36)], np.float32),
            "hair_tint": rng.uniform(0.6, 1.0, size=3).astype(np.float32),
        }
        folder = root / classes[label]
        folder.mkdir(parents=True, exist_ok=True)
        for image in range(images_per_subject):
            name = f"subject{index:02d}_{image}.jpg"
            pixels = render_face(rng, label % 2, subject, 96, faint=False)
            Image.fromarray(pixels).save(folder / name, format="JPEG", quality=90)
            rows.append(f"{classes[label]}/{name},person{index:02d}")
    if csv:
        (root / "subjects.csv").write_text("\n".join(rows) + "\n")
    return root


def arrow_image(rng: np.random.Generator, pointing_right: bool, size: int = 32) -> np.ndarray:
    """A bright arrow on a dark, noisy background: shaft and head at a random height, length and
    colour; which way it points is the whole class signal, so a horizontal flip swaps classes."""
    pixels = rng.uniform(0, 60, size=(size, size, 3))
    colour = rng.uniform(160, 255, size=3)
    row = int(rng.integers(size // 4, 3 * size // 4))
    start = int(rng.integers(2, size // 4))
    end = int(rng.integers(3 * size // 4, size - 2))
    pixels[row - 1 : row + 1, start:end] = colour  # the shaft
    head = int(rng.integers(size // 6, size // 4))
    for step in range(head):  # a triangle whose tip is at the left end
        pixels[max(0, row - step) : row + step + 1, start + step] = colour
    if pointing_right:
        pixels = pixels[:, ::-1]
    return pixels.astype(np.uint8)


def write_arrow_folder(root: Path, per_class: int = 120, size: int = 32, seed: int = 5) -> Path:
    """An image folder of ``left`` and ``right`` arrows (PNG, ``size`` x ``size``): classes a
    horizontal flip destroys and a vertical flip keeps."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(("left", "right")):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            Image.fromarray(arrow_image(rng, bool(label), size)).save(folder / f"{name}{index:03d}.png")
    return root
