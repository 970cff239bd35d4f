"""The views of Levi & Hassner's over-sampled evaluation: the four corner crops and the centre
crop of each face, and their horizontal mirrors (ten views), averaged after the network.

``OversampledViews`` turns a batch of B faces into B x V views, face by face (the V views of
face 0 first), with keras.ops only, so the same code runs on every backend. The crop offsets
are Caffe's (``caffe.io.oversample``): corners at 0 and ``side - crop``, the centre at
``(side - crop) // 2``, the offset the single-crop validation uses too. Mirrors are views only
where the policy trains on horizontal flips (``mirror``): a network that never saw a mirrored
image (digits, text, arrows) would be asked about images unlike its data. A policy without a
crop has no over-sampled evaluation (bench/trial/evaluation.py).
"""

from __future__ import annotations

import keras
from keras import ops

from data.layers import SERIALIZATION_PACKAGE


def view_offsets(side: int, crop: int | None) -> list[tuple[int, int]]:
    """(top, left) of each crop, in order: top-left, top-right, bottom-left, bottom-right, centre."""
    if crop is None or crop == side:
        return [(0, 0)]
    if crop > side:
        raise ValueError(f"cannot crop {crop} x {crop} from {side} x {side} images")
    far, centre = side - crop, (side - crop) // 2
    return [(0, 0), (0, far), (far, 0), (far, far), (centre, centre)]


def view_count(side: int, crop: int | None, mirror: bool = True) -> int:
    """Views per face: each crop, and its mirror where ``mirror``."""
    return (2 if mirror else 1) * len(view_offsets(side, crop))


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class OversampledViews(keras.layers.Layer):
    """(B, side, side, C) faces -> (B * views, crop, crop, C): each face's crops, then (where
    ``mirror``) their mirrors."""

    def __init__(self, crop: int | None, mirror: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.crop = crop
        self.mirror = mirror

    def call(self, images):
        side, channels = images.shape[1], images.shape[3]
        size = self.crop or side
        crops = [images[:, top : top + size, left : left + size, :] for top, left in view_offsets(side, self.crop)]
        views = crops + ([ops.flip(crop, axis=2) for crop in crops] if self.mirror else [])  # axis 2: width
        return ops.reshape(ops.stack(views, axis=1), (-1, size, size, channels))

    def compute_output_shape(self, input_shape):
        size = self.crop or input_shape[1]
        batch = None if input_shape[0] is None else input_shape[0] * view_count(input_shape[1], self.crop, self.mirror)
        return (batch, size, size, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "crop": self.crop, "mirror": self.mirror}
