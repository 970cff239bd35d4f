"""Image-folder datasets for tests: one folder of JPEGs per class, and a subjects.csv.

The class signal is the built-in synthetic faces' strand orientation (data/synthetic.py), so
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
