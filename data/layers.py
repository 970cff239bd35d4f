"""The custom Keras layers of the data path: normalisations and the per-image augmentations
Keras lacks (a crop offset and a flip coin per image, pixel noise).

keras.ops only, so every backend runs them; each is registered for ``.keras`` files under
the ``adience_bench`` package name.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import ops

SERIALIZATION_PACKAGE = "adience_bench"
# keras.applications' preprocess_input for the "caffe" and "torch" families (ImageNet statistics)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
TORCH_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
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


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class ChannelStandardization(keras.layers.Layer):
    """(x - mean) / std per colour channel, with mean and std fixed (from the training split)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], **kwargs):
        super().__init__(**kwargs)
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"per-channel mean and std need 3 values each, got {list(mean)} and {list(std)}")
        if min(std) <= 0:
            raise ValueError(f"per-channel std must be > 0, got {list(std)}")
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]

    def call(self, inputs):
        mean = ops.convert_to_tensor(self.mean, "float32")
        std = ops.convert_to_tensor(self.std, "float32")
        return (ops.cast(inputs, "float32") - mean) / std

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std}


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class CaffeNormalization(keras.layers.Layer):
    """RGB to BGR, then the ImageNet mean of each channel subtracted (Caffe's ResNet and VGG)."""

    def call(self, inputs):
        return ops.flip(ops.cast(inputs, "float32"), axis=-1) - ops.convert_to_tensor(CAFFE_BGR_MEAN, "float32")

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class RandomCropPerImage(keras.layers.Layer):
    """A random ``size`` x ``size`` crop with its own offset for every image of the batch.

    At inference it takes the centre crop, as the report validates.
    """

    def __init__(self, size: int, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.size = size
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        height, width, channels = images.shape[1], images.shape[2], images.shape[3]
        if height < self.size or width < self.size:
            raise ValueError(f"cannot crop {self.size} x {self.size} from {height} x {width} images")
        if not training:
            top, left = (height - self.size) // 2, (width - self.size) // 2
            return images[:, top : top + self.size, left : left + self.size, :]
        batch = ops.shape(images)[0]
        tops = keras.random.randint((batch,), 0, height - self.size + 1, seed=self.seed_generator)
        lefts = keras.random.randint((batch,), 0, width - self.size + 1, seed=self.seed_generator)
        steps = ops.arange(self.size, dtype="int32")
        rows = ops.cast(tops, "int32")[:, None] + steps[None, :]  # (batch, size)
        cols = ops.cast(lefts, "int32")[:, None] + steps[None, :]
        base = ops.arange(batch, dtype="int32")[:, None, None] * (height * width)
        flat_index = base + rows[:, :, None] * width + cols[:, None, :]  # (batch, size, size)
        pixels = ops.reshape(images, (-1, channels))
        return ops.take(pixels, flat_index, axis=0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "size": self.size, "seed": self.seed}


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class RandomFlipPerImage(keras.layers.Layer):
    """Flips each image of the batch along one axis with probability 1/2, in its own dtype.

    Keras's RandomFlip casts to float32 first; flipping the uint8 crop is a quarter of the
    memory traffic, which is most of the cost on a CPU.
    """

    def __init__(self, mode: str, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("horizontal", "vertical"):
            raise ValueError(f"flip mode must be horizontal or vertical, got {mode!r}")
        self.mode = mode
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training:
            return images
        coins = keras.random.uniform((ops.shape(images)[0], 1, 1, 1), seed=self.seed_generator) < 0.5
        return ops.where(coins, ops.flip(images, axis=2 if self.mode == "horizontal" else 1), images)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "seed": self.seed}


# layers that move pixels without changing them: they run on the uint8 input, before the cast
DTYPE_PRESERVING = (RandomCropPerImage, RandomFlipPerImage)


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class GaussianPixelNoise(keras.layers.Layer):
    """Additive Gaussian noise in pixel units, training only (Keras's GaussianNoise caps stddev at 1)."""

    def __init__(self, stddev: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if stddev < 0:
            raise ValueError(f"noise stddev must be >= 0, got {stddev}")
        self.stddev = float(stddev)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training or not self.stddev:
            return images
        return images + keras.random.normal(ops.shape(images), stddev=self.stddev, seed=self.seed_generator)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}
