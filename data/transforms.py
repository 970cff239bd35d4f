"""Augmentation and normalisation as Keras layers, and the named preprocessing policies.

Preprocessing runs inside the model, so it runs in the train step, on the accelerator
and on every Keras backend. Training applies the policy's random augmentation; evaluation
applies only its deterministic part (a centre crop: Keras's RandomCrop resizes at
inference instead).

Three Keras behaviours do not match the report, and this module works around them:
``RandomCrop`` draws one offset per batch (here: one per image);
``RandomFlip("horizontal_and_vertical")`` draws one coin for both axes, so it only ever
rotates by 180 degrees (here: two independent flips); ``RandomContrast(0.8)`` draws
factors from [1, 1.8] only (here: the pair (0.8, 0.8), which gives [0.2, 1.8]).

Normalisation happens exactly once; which one a network expects is its model registry
entry's (``models.get_model_entry(name).normalisation``): ``per_image`` for the Levi &
Hassner CNN (the report's tf.image.per_image_standardization), ``minus_one_to_one`` for
ResNet50V2 (its preprocess_input, x/127.5 - 1), ``none`` for MobileNetV3Large and
EfficientNetV2M (they rescale inside), ``caffe`` and ``torch`` for the keras.applications
families whose preprocess_input uses those modes. The ablations of the report's table 4
also use ``minus_one_to_one`` and ``per_channel`` with the Levi & Hassner CNN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
from keras import layers, ops

from data.cache import DEFAULT_IMAGE_SIZE
from data.layers import (
    DTYPE_PRESERVING,
    SERIALIZATION_PACKAGE,
    TORCH_MEAN,
    TORCH_STD,
    CaffeNormalization,
    ChannelStandardization,
    GaussianPixelNoise,
    PerImageStandardization,
    RandomCropPerImage,
    RandomFlipPerImage,
)


@dataclass(frozen=True)
class Normalisation:
    """How pixel values in [0, 255] reach the network."""

    name: str
    description: str
    build: Callable[..., keras.layers.Layer]  # (mean, std) -> layer
    needs_statistics: bool = False  # per-channel mean/std of the training split


NORMALISATIONS = {
    "per_image": Normalisation(
        "per_image",
        "zero mean, unit variance per image (tf.image.per_image_standardization)",
        lambda mean, std: PerImageStandardization(name="per_image_standardization"),
    ),
    "minus_one_to_one": Normalisation(
        "minus_one_to_one",
        "x / 127.5 - 1: [0, 255] to [-1, 1] (resnet_v2.preprocess_input)",
        lambda mean, std: layers.Rescaling(1 / 127.5, offset=-1.0, name="minus_one_to_one"),
    ),
    "per_channel": Normalisation(
        "per_channel",
        "(x - mean) / std per channel, mean and std from the training split of the cache",
        lambda mean, std: ChannelStandardization(mean, std, name="per_channel_standardization"),
        needs_statistics=True,
    ),
    "none": Normalisation(
        "none",
        "raw [0, 255] floats, for networks that rescale inside (MobileNetV3, EfficientNet, ConvNeXt)",
        lambda mean, std: layers.Identity(name="no_normalisation"),
    ),
    "caffe": Normalisation(
        "caffe",
        "RGB to BGR and the ImageNet channel means subtracted (resnet / vgg preprocess_input)",
        lambda mean, std: CaffeNormalization(name="caffe_normalisation"),
    ),
    "torch": Normalisation(
        "torch",
        "x / 255, then (x - ImageNet mean) / ImageNet std per channel (densenet preprocess_input)",
        lambda mean, std: ChannelStandardization(TORCH_MEAN, TORCH_STD, name="torch_normalisation"),
    ),
}


@dataclass(frozen=True)
class Policy:
    """A preprocessing policy: augmentation and crop for a cached (256 x 256) face.

    Magnitudes are in the units the report gives: brightness as a fraction of the
    [0, 255] range, contrast as the half-width of the factor range around 1.
    """

    name: str
    description: str
    crop_size: int | None  # None: the whole image
    horizontal_flip: bool = False
    vertical_flip: bool = False
    brightness: float = 0.0  # max delta as a fraction of [0, 255]
    contrast: float = 0.0  # factor drawn from [1 - contrast, 1 + contrast]
    rotation: float = 0.0  # max angle as a fraction of a full turn
    translation: float = 0.0  # max shift as a fraction of height and width
    shear: float = 0.0  # max shear factor on each axis
    noise_stddev: float = 0.0  # Gaussian noise in [0, 255] units

    def output_size(self, image_size: int = DEFAULT_IMAGE_SIZE) -> int:
        return self.crop_size or image_size

    def augmentation_layers(self, seed: int | None = None) -> list[keras.layers.Layer]:
        """The training-time layers, in order: geometry, crop, flips, photometry, noise.

        Each layer gets its own seed: two layers sharing one would draw the same numbers.
        """
        built: list[keras.layers.Layer] = []

        def next_seed() -> int | None:
            return None if seed is None else seed * 101 + len(built)

        fill = {"fill_mode": "reflect"}
        if self.rotation:
            built.append(layers.RandomRotation(self.rotation, seed=next_seed(), name="rotation", **fill))
        if self.translation:
            built.append(
                layers.RandomTranslation(
                    self.translation, self.translation, seed=next_seed(), name="translation", **fill
                )
            )
        if self.shear:
            built.append(layers.RandomShear(self.shear, self.shear, seed=next_seed(), name="shear", **fill))
        if self.crop_size:
            built.append(RandomCropPerImage(self.crop_size, seed=next_seed(), name="random_crop"))
        if self.horizontal_flip:
            built.append(RandomFlipPerImage("horizontal", seed=next_seed(), name="horizontal_flip"))
        if self.vertical_flip:
            built.append(RandomFlipPerImage("vertical", seed=next_seed(), name="vertical_flip"))
        if self.brightness:
            built.append(
                layers.RandomBrightness(self.brightness, value_range=(0, 255), seed=next_seed(), name="brightness")
            )
        if self.contrast:
            # a pair: Keras turns a scalar factor f into [1, 1 + f], never lowering contrast
            built.append(
                layers.RandomContrast(
                    (self.contrast, self.contrast), value_range=(0, 255), seed=next_seed(), name="contrast"
                )
            )
        if self.noise_stddev:
            built.append(GaussianPixelNoise(self.noise_stddev, seed=next_seed(), name="gaussian_noise"))
        return built


POLICIES = {
    # report section 3.1: random 227 crop, h+v flips, brightness +-63/255, contrast 0.2x-1.8x;
    # validation: centre crop 227
    "report": Policy(
        "report",
        "random 227 crop, random horizontal and vertical flips, brightness +-63/255, contrast 0.2-1.8",
        crop_size=227,
        horizontal_flip=True,
        vertical_flip=True,
        brightness=63 / 255,
        contrast=0.8,
    ),
    # report table 4, "No Crop": the whole 256 x 256 image
    "nocrop": Policy(
        "nocrop",
        "as report without the crop: 256 x 256 input",
        crop_size=None,
        horizontal_flip=True,
        vertical_flip=True,
        brightness=63 / 255,
        contrast=0.8,
    ),
    # report section 3.5.3 (autoencoder): report + rotation, translation, shear, noise. The
    # report gives no magnitudes; these are mild ones of our choosing.
    "autoencoder-extra": Policy(
        "autoencoder-extra",
        "report + rotation +-15 deg, translation +-10%, shear 0.1, Gaussian noise sd 5/255 of range",
        crop_size=227,
        horizontal_flip=True,
        vertical_flip=True,
        brightness=63 / 255,
        contrast=0.8,
        rotation=15 / 360,
        translation=0.1,
        shear=0.1,
        noise_stddev=5.0,
    ),
}


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class Preprocessing(keras.layers.Layer):
    """Cached faces in [0, 255] (uint8 or float) -> augmented (training) or centre-cropped, normalised.

    ``per_channel`` needs ``channel_mean`` and ``channel_std``: computed once from the
    training split of the cache (data.cache.channel_statistics), never from validation.
    """

    def __init__(
        self,
        policy: str = "report",
        normalisation: str = "per_image",
        seed: int | None = None,
        channel_mean: Sequence[float] | None = None,
        channel_std: Sequence[float] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if policy not in POLICIES:
            raise ValueError(f"unknown preprocessing policy {policy!r} (known: {', '.join(POLICIES)})")
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {normalisation!r} (known: {', '.join(NORMALISATIONS)})")
        norm = NORMALISATIONS[normalisation]
        if norm.needs_statistics and (channel_mean is None or channel_std is None):
            raise ValueError(
                f"normalisation {normalisation!r} needs channel_mean and channel_std of the training split "
                "(data.cache.channel_statistics)"
            )
        self.policy = policy
        self.normalisation = normalisation
        self.seed = seed
        self.channel_mean = None if channel_mean is None else [float(v) for v in channel_mean]
        self.channel_std = None if channel_std is None else [float(v) for v in channel_std]
        spec = POLICIES[policy]
        self.augment = spec.augmentation_layers(seed)
        self.eval_crop = RandomCropPerImage(spec.crop_size, name="centre_crop") if spec.crop_size else None
        self.normalise = norm.build(self.channel_mean, self.channel_std)

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.augment:
            layer.build(shape)
            shape = tuple(layer.compute_output_shape(shape))
        if self.eval_crop is not None:
            self.eval_crop.build(input_shape)
        self.normalise.build(self.compute_output_shape(input_shape))
        self.built = True

    def call(self, images, training=False):
        if training:
            for layer in self.augment:
                if not isinstance(layer, DTYPE_PRESERVING):
                    images = ops.cast(images, "float32")
                images = layer(images, training=True)
        elif self.eval_crop is not None:
            images = self.eval_crop(images, training=False)
        return self.normalise(ops.cast(images, "float32"))

    def compute_output_shape(self, input_shape):
        size = POLICIES[self.policy].output_size(input_shape[1])
        return (input_shape[0], size, size, input_shape[3])

    def get_config(self):
        return {
            **super().get_config(),
            "policy": self.policy,
            "normalisation": self.normalisation,
            "seed": self.seed,
            "channel_mean": self.channel_mean,
            "channel_std": self.channel_std,
        }
