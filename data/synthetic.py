"""Adience-format synthetic faces: the built-in dataset when no ``--data`` is given.

Writes ``fold_0_data.txt`` ... ``fold_4_data.txt`` (official header, all 12 columns) and
JPEGs at ``faces/<user_id>/landmark_aligned_face.<face_id>.<original_image>``, so the
real loader reads it unchanged. Folds are subject-exclusive and hold both genders.

The class signal is a texture, not a colour: each face carries hair/beard strands whose
orientation depends on gender (male near horizontal, female near vertical) with random
angle jitter, period, phase and contrast. Orientation survives per-image
standardisation, horizontal and vertical flips and crops; the strands are zero-mean
and every colour (skin, background, hair) is drawn independently of gender, so the
mean pixel does not separate the classes. A share of faces carries a faint signal, so
accuracy climbs over epochs instead of jumping to 1.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from data.adience import FOLD_COLUMNS, FOLD_COUNT, FOLD_FILE_PATTERN, IMAGE_PREFIXES

CACHE_ENV = "ADIENCE_BENCH_CACHE"
FORMAT_VERSION = 1
_AGE_GROUPS = ("(0, 2)", "(4, 6)", "(8, 12)", "(15, 20)", "(25, 32)", "(38, 43)", "(48, 53)", "(60, 100)")


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and seed of a synthetic dataset; equal configs give equal datasets."""

    users_per_fold: int = 10
    faces_per_user: int = 20
    image_size: int = 256
    unlabelled_share: float = 0.03  # rows written with gender "u" or empty, as in the real files
    faint_share: float = 0.15  # faces whose strands are barely visible
    seed: int = 0

    def __post_init__(self):
        if self.users_per_fold < 2:
            raise ValueError("users_per_fold must be >= 2 so every fold holds both genders")
        if self.faces_per_user < 1:
            raise ValueError("faces_per_user must be >= 1")
        if self.image_size < 32:
            raise ValueError("image_size must be >= 32")
        if not 0 <= self.unlabelled_share < 1 or not 0 <= self.faint_share < 1:
            raise ValueError("shares must be in [0, 1)")

    def key(self) -> str:
        digest = hashlib.sha256(repr(sorted(asdict(self).items())).encode()).hexdigest()[:10]
        return f"v{FORMAT_VERSION}-seed{self.seed}-{self.users_per_fold * FOLD_COUNT}users-{digest}"


def default_cache_root() -> Path:
    """``$ADIENCE_BENCH_CACHE`` or ``~/.cache/adience-bench``."""
    override = os.environ.get(CACHE_ENV)
    return Path(override).expanduser() if override else Path.home() / ".cache" / "adience-bench"


def ensure_synthetic_dataset(config: SyntheticConfig | None = None, cache_root: Path | str | None = None) -> Path:
    """Path of the synthetic dataset for ``config``, generating it on first use.

    Generation writes into a temporary sibling folder and renames it into place, so an
    interrupted generation never leaves a half dataset behind.
    """
    config = config or SyntheticConfig()
    cache_root = Path(cache_root) if cache_root is not None else default_cache_root()
    target = cache_root / "synthetic" / config.key()
    if (target / FOLD_FILE_PATTERN.format(fold=0)).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent))
    try:
        write_synthetic_dataset(staging, config)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / FOLD_FILE_PATTERN.format(fold=0)).is_file():
                raise
            # another process finished the same dataset first; theirs is identical
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _user_id(rng: np.random.Generator) -> str:
    return f"{rng.integers(10_000_000, 99_999_999)}@N0{rng.integers(0, 9)}"


def _original_image(rng: np.random.Generator) -> str:
    return f"{rng.integers(10**10, 10**11 - 1)}_{rng.bytes(5).hex()}_o.jpg"


def render_face(rng: np.random.Generator, gender: int, subject: dict, size: int, faint: bool) -> np.ndarray:
    """One synthetic face image, uint8 (size, size, 3)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    image = np.empty((size, size, 3), np.float32)
    image[:] = subject["background"]
    # a smooth background gradient, random per face
    gradient = (xx - 0.5) * rng.uniform(-40, 40) + (yy - 0.5) * rng.uniform(-40, 40)
    image += gradient[..., None]

    cx = 0.5 + rng.uniform(-0.06, 0.06)
    cy = 0.5 + rng.uniform(-0.06, 0.06)
    rx, ry = subject["radii"] * rng.uniform(0.92, 1.08, size=2)
    face = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
    image[face] = subject["skin"] + rng.normal(0, 4, size=3)

    # eyes and mouth: dark blobs, identical in distribution for both genders
    for ex in (-0.35, 0.35):
        eye = ((xx - (cx + ex * rx)) / (0.12 * rx)) ** 2 + ((yy - (cy - 0.2 * ry)) / (0.07 * ry)) ** 2 <= 1
        image[eye] = subject["skin"] * 0.35
    mouth = ((xx - cx) / (0.35 * rx)) ** 2 + ((yy - (cy + 0.45 * ry)) / (0.06 * ry)) ** 2 <= 1
    image[mouth] = subject["skin"] * 0.6

    # gender-dependent strands: a zero-mean oriented grating inside a ring around the face
    base_angle = 0.0 if gender == 0 else np.pi / 2
    angle = base_angle + rng.uniform(-0.45, 0.45)
    period = rng.uniform(0.035, 0.07)
    phase = rng.uniform(0, 2 * np.pi)
    grating = np.sin(2 * np.pi * ((xx * np.sin(angle) + yy * np.cos(angle)) / period) + phase)
    ring = (((xx - cx) / (rx * 1.35)) ** 2 + ((yy - cy) / (ry * 1.3)) ** 2 <= 1.0) & ~face
    lower_face = face & (yy > cy + 0.1 * ry)
    region = (ring | lower_face).astype(np.float32)
    amplitude = rng.uniform(4, 10) if faint else rng.uniform(22, 45)
    image += (amplitude * grating * region)[..., None] * subject["hair_tint"]

    # lighting and sensor noise
    image = image * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20)
    image += rng.normal(0, 6, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_synthetic_dataset(root: Path | str, config: SyntheticConfig) -> None:
    """Write the fold files and JPEGs of ``config`` into the empty folder ``root``."""
    root = Path(root)
    rng = np.random.default_rng(config.seed)
    header = "\t".join(FOLD_COLUMNS)
    for fold in range(FOLD_COUNT):
        lines = [header]
        # half the users of each fold male, half female (odd counts alternate)
        genders = [(fold + index) % 2 for index in range(config.users_per_fold)]
        for gender in genders:
            user_rng = np.random.default_rng(rng.integers(2**63))
            user = _user_id(user_rng)
            subject = {
                "background": user_rng.uniform(20, 235, size=3).astype(np.float32),
                "skin": user_rng.uniform(70, 230, size=3).astype(np.float32),
                "radii": np.array([user_rng.uniform(0.22, 0.3), user_rng.uniform(0.28, 0.36)], np.float32),
                "hair_tint": user_rng.uniform(0.6, 1.0, size=3).astype(np.float32),
            }
            (root / "faces" / user).mkdir(parents=True, exist_ok=True)
            for face_id in range(1, config.faces_per_user + 1):
                original = _original_image(user_rng)
                faint = user_rng.random() < config.faint_share
                pixels = render_face(user_rng, gender, subject, config.image_size, faint)
                path = root / "faces" / user / f"{IMAGE_PREFIXES[0]}.{face_id}.{original}"
                Image.fromarray(pixels).save(path, format="JPEG", quality=90)
                label = "mf"[gender]
                if user_rng.random() < config.unlabelled_share:
                    label = "u" if user_rng.random() < 0.5 else ""
                age = _AGE_GROUPS[user_rng.integers(len(_AGE_GROUPS))]
                x, y = user_rng.integers(0, 600, size=2)
                side = int(user_rng.integers(300, 900))
                row = (
                    user,
                    original,
                    str(face_id),
                    age,
                    label,
                    str(x),
                    str(y),
                    str(side),
                    str(side),
                    str(int(user_rng.integers(-120, 120))),
                    str(int(user_rng.integers(-45, 45))),
                    str(int(user_rng.integers(0, 100))),
                )
                lines.append("\t".join(row))
        (root / FOLD_FILE_PATTERN.format(fold=fold)).write_text("\n".join(lines) + "\n", encoding="utf-8")
