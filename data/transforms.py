"""Augmentation and normalisation as Keras layers, and the named preprocessing policies.

Preprocessing runs inside the model, so it runs on the accelerator and on every Keras
backend. Training applies the policy's random augmentation; evaluation applies its
deterministic crop (a centre crop: Keras's RandomCrop resizes at inference instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="adience_bench")
class PerImageStandardization(keras.layers.Layer):
    """Zero mean, unit variance per image; same values as tf.image.per_image_standardization."""

    def call(self, inputs):
        inputs = ops.cast(inputs, "float32")
        axes = tuple(range(1, len(inputs.shape)))
        mean = ops.mean(inputs, axis=axes, keepdims=True)
        variance = ops.mean(ops.square(inputs - mean), axis=axes, keepdims=True)
        element_count = 1
        for dim in inputs.shape[1:]:
            element_count *= dim
        min_stddev = 1.0 / float(element_count) ** 0.5
        return (inputs - mean) / ops.maximum(ops.sqrt(variance), min_stddev)

    def compute_output_shape(self, input_shape):
        return input_shape


NORMALISATIONS = {
    "per_image": PerImageStandardization,
}


@dataclass(frozen=True)
class Policy:
    """A preprocessing policy: augmentation and crop for a 256x256 cached face."""

    name: str
    crop_size: int | None  # None: the whole image
    flips: str | None  # "horizontal_and_vertical", "horizontal" or None
    brightness: float  # max delta as a fraction of the [0, 255] range
    contrast: float  # factor range [1 - contrast, 1 + contrast]

    def output_size(self, image_size: int) -> int:
        return self.crop_size or image_size


POLICIES = {
    # report section 3.1: random 227 crop, h+v flips, brightness +-63/255, contrast 0.2x-1.8x
    "report": Policy("report", crop_size=227, flips="horizontal_and_vertical", brightness=63 / 255, contrast=0.8),
}


@keras.saving.register_keras_serializable(package="adience_bench")
class Preprocessing(keras.layers.Layer):
    """uint8-valued images in [0, 255] -> augmented (training) or centre-cropped, normalised."""

    def __init__(self, policy: str = "report", normalisation: str = "per_image", seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if policy not in POLICIES:
            raise ValueError(f"unknown preprocessing policy {policy!r} (known: {', '.join(POLICIES)})")
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {normalisation!r} (known: {', '.join(NORMALISATIONS)})")
        self.policy = policy
        self.normalisation = normalisation
        self.seed = seed
        spec = POLICIES[policy]
        self.augment = []
        self.eval_crop = None
        if spec.crop_size:
            self.augment.append(layers.RandomCrop(spec.crop_size, spec.crop_size, seed=seed))
            self.eval_crop = layers.CenterCrop(spec.crop_size, spec.crop_size)
        if spec.flips:
            self.augment.append(layers.RandomFlip(spec.flips, seed=seed))
        if spec.brightness:
            self.augment.append(layers.RandomBrightness(spec.brightness, value_range=(0, 255), seed=seed))
        if spec.contrast:
            self.augment.append(layers.RandomContrast(spec.contrast, value_range=(0, 255), seed=seed))
        self.normalise = NORMALISATIONS[normalisation]()

    def build(self, input_shape):
        for layer in self.augment:
            layer.build(input_shape)
        if self.eval_crop is not None:
            self.eval_crop.build(input_shape)
        self.normalise.build(self.compute_output_shape(input_shape))
        self.built = True

    def call(self, images, training=False):
        images = ops.cast(images, "float32")
        if training:
            for layer in self.augment:
                images = layer(images, training=True)
        elif self.eval_crop is not None:
            images = self.eval_crop(images)
        return self.normalise(images)

    def compute_output_shape(self, input_shape):
        size = POLICIES[self.policy].output_size(input_shape[1])
        return (input_shape[0], size, size, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "policy": self.policy, "normalisation": self.normalisation, "seed": self.seed}
