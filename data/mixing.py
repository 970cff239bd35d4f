"""MixUp and CutMix of a training batch, on the host, deterministically.

This module owns the mixing of one training batch of uint8 images and integer labels into
mixed images and soft labels. It runs on the host, not as a preprocessing layer: the labels
mix too, and Keras's MixUp/CutMix layers take dicts of images and labels, which a model's
preprocessing layer never sees (it gets the images only). Validation batches are not mixed;
they carry one-hot labels of their own class (``soft_labels``), so that both splits share
one label format and one loss.

Each batch's draw is a pure function of (seed, epoch, index), so a batch is mixed the same
way whichever loader thread reads it and however many times it is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BatchMixing:
    """MixUp / CutMix of a training batch on the host: each image is mixed with another
    image of the same batch (a random permutation), and its one-hot label with the other's
    in the same proportion. With both alphas > 0, each batch uses one of the two, chosen with
    probability 1/2 (timm's switch_prob 0.5)."""

    num_classes: int
    mixup_alpha: float = 0.0  # 0: no MixUp; else lambda ~ Beta(alpha, alpha)
    cutmix_alpha: float = 0.0  # 0: no CutMix; else lambda ~ Beta(alpha, alpha), box of area (1 - lambda)
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int | np.integer):
            raise ValueError(f"num_classes must be an integer, got {self.num_classes!r}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {self.num_classes}")
        for field in ("mixup_alpha", "cutmix_alpha"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise ValueError(f"{field} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{field} must be finite and >= 0, got {value}")
        if self.mixup_alpha == 0 and self.cutmix_alpha == 0:
            raise ValueError("mixup_alpha and cutmix_alpha are both 0: nothing to mix (leave BatchMixing out)")
        # default_rng refuses negative entropy; say so here rather than at the first batch.
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")

    def describe(self) -> str:
        kinds = [
            f"{name} alpha {alpha:g}"
            for name, alpha in (("MixUp", self.mixup_alpha), ("CutMix", self.cutmix_alpha))
            if alpha > 0
        ]
        return kinds[0] if len(kinds) == 1 else " or ".join(kinds) + " (one per batch)"

    def soft_labels(self, labels: np.ndarray) -> np.ndarray:
        """One-hot float32 (n, num_classes): what unmixed batches (validation) carry."""
        labels = self._check_labels(labels)
        return np.eye(self.num_classes, dtype=np.float32)[labels]

    def apply(self, images: np.ndarray, labels: np.ndarray, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Mixed copies of ``images`` (uint8 (n, h, w, c)) and soft labels (float32 (n, num_classes))."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 (n, h, w, c), got {images.dtype} {images.shape}")
        labels = self._check_labels(labels)
        if len(labels) != len(images):
            raise ValueError(f"labels has {len(labels)} entries for {len(images)} images")
        for name, value in (("epoch", epoch), ("index", index)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        onehot = np.eye(self.num_classes, dtype=np.float32)[labels]
        n = len(images)
        if n < 2:  # no partner in the batch
            return images.copy(), onehot

        rng = np.random.default_rng((self.seed, int(epoch), int(index)))
        if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
            use_cutmix = bool(rng.random() < 0.5)
        else:
            use_cutmix = self.cutmix_alpha > 0
        perm = rng.permutation(n)

        if use_cutmix:
            lam = rng.beta(self.cutmix_alpha, self.cutmix_alpha)
            h, w = images.shape[1:3]
            # The paper's box: sides scaled by sqrt(1 - lambda), centre anywhere, clipped at
            # the borders; clipping shrinks the box, so lambda is recomputed from its real
            # area (timm's correct_lam) and the labels match the pixels.
            ratio = math.sqrt(1.0 - lam)
            cut_h, cut_w = int(h * ratio), int(w * ratio)
            cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
            top, bottom = max(cy - cut_h // 2, 0), min(cy - cut_h // 2 + cut_h, h)
            left, right = max(cx - cut_w // 2, 0), min(cx - cut_w // 2 + cut_w, w)
            mixed = images.copy()
            mixed[:, top:bottom, left:right, :] = images[perm, top:bottom, left:right, :]
            lam = 1.0 - (bottom - top) * (right - left) / (h * w)
        else:
            lam = rng.beta(self.mixup_alpha, self.mixup_alpha)
            pixels = images.astype(np.float32)
            blend = np.float32(lam) * pixels + np.float32(1.0 - lam) * pixels[perm]
            mixed = np.clip(np.rint(blend), 0, 255).astype(np.uint8)

        soft = np.float32(lam) * onehot + np.float32(1.0 - lam) * onehot[perm]
        return mixed, soft

    def _check_labels(self, labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers of shape (n,), got {labels.dtype} {labels.shape}")
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(
                f"labels must lie in [0, {self.num_classes}) (num_classes), got {labels.min()}..{labels.max()}"
            )
        return labels
