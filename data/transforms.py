"""Augmentation and normalisation as Keras layers: a policy (data/policies.py) made into layers.

Preprocessing runs inside the model, so it runs in the train step, on the accelerator
and on every Keras backend. Training applies the policy's random augmentation; evaluation
applies only its deterministic part (a centre crop: Keras's RandomCrop resizes at
inference instead).

Three Keras behaviours do not match the report, and this module works around them:
``RandomCrop`` draws one offset per batch (here: one per image);
``RandomFlip("horizontal_and_vertical")`` draws one coin for both axes, so it only ever
rotates by 180 degrees (here: two independent flips); ``RandomContrast(0.8)`` draws
factors from [1, 1.8] only (here: the pair (1 - low, high - 1) of the policy's range).

Normalisation happens exactly once; which one a network expects is its model registry
entry's (``models.get_model_entry(name).normalisation``): ``per_image`` for the Levi &
Hassner CNN (the report's tf.image.per_image_standardization), ``minus_one_to_one`` for
ResNet50V2 (its preprocess_input, x/127.5 - 1), ``none`` for MobileNetV3Large and
EfficientNetV2M (they rescale inside), ``caffe`` and ``torch`` for the keras.applications
families whose preprocess_input uses those modes. The ablations of the report's table 4
also use ``minus_one_to_one`` and ``per_channel`` with the Levi & Hassner CNN.

``inference_layers`` is the inference path again in Keras's own layers, for exported
models (bench/execute/export.py) that load without this project.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras
from keras import layers, ops

from data.decode import DEFAULT_IMAGE_SIZE
from data.layers import (
    CAFFE_BGR_MEAN,
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
from data.policies import Policy, get_policy


@dataclass(frozen=True)
class Normalisation:
    """How pixel values in [0, 255] reach the network."""

    name: str
    description: str
    build: Callable[..., keras.layers.Layer]  # (mean, std) -> layer
    # (mean, std, elements per image) -> the same values from Keras's own layers (None: nothing to do)
    inference: Callable[..., keras.layers.Layer | None]
    needs_statistics: bool = False  # per-channel mean/std of the training split


def _channel_normalization(mean: Sequence[float], std: Sequence[float], name: str) -> keras.layers.Layer:
    """(x - mean) / std as Keras's Normalization: it divides by max(sqrt(variance), 1e-7), here std."""
    return layers.Normalization(mean=list(mean), variance=[s * s for s in std], name=name, dtype="float32")


def _caffe_convolution() -> keras.layers.Layer:
    """RGB to BGR and minus the ImageNet means as a fixed 1x1 convolution: a permutation matrix
    (products by 1 and 0 are exact) and a bias of -mean, so the values equal CaffeNormalization's."""
    reverse = [[[[1.0 if out == 2 - channel else 0.0 for out in range(3)] for channel in range(3)]]]
    return layers.Conv2D(
        3,
        1,
        kernel_initializer=keras.initializers.Constant(reverse),
        bias_initializer=keras.initializers.Constant([-mean for mean in CAFFE_BGR_MEAN]),
        trainable=False,
        name="caffe_normalisation",
        dtype="float32",
    )


def _layer_standardization(elements: int) -> keras.layers.Layer:
    """tf.image.per_image_standardization as LayerNormalization over each whole image.

    That divides by max(std, 1 / sqrt(N)) for N values per image; this by sqrt(variance + 1 / N):
    the same where the variance is far above 1 / N (any image with some contrast: relative
    difference 1 / (2 N variance)) and where it is 0 (a constant image: zeros, up to the rounding
    of its mean, as there). They part only for an image constant but for a few values off by one.
    """
    return layers.LayerNormalization(
        axis=[1, 2, 3],
        epsilon=1.0 / elements,
        center=False,
        scale=False,
        name="per_image_standardization",
        dtype="float32",
    )


NORMALISATIONS = {
    "per_image": Normalisation(
        "per_image",
        "zero mean, unit variance per image (tf.image.per_image_standardization)",
        lambda mean, std: PerImageStandardization(name="per_image_standardization"),
        lambda mean, std, elements: _layer_standardization(elements),
    ),
    "minus_one_to_one": Normalisation(
        "minus_one_to_one",
        "x / 127.5 - 1: [0, 255] to [-1, 1] (resnet_v2.preprocess_input)",
        lambda mean, std: layers.Rescaling(1 / 127.5, offset=-1.0, name="minus_one_to_one"),
        lambda mean, std, elements: layers.Rescaling(1 / 127.5, offset=-1.0, name="minus_one_to_one", dtype="float32"),
    ),
    "per_channel": Normalisation(
        "per_channel",
        "(x - mean) / std per channel, mean and std from the training split of the cache",
        lambda mean, std: ChannelStandardization(mean, std, name="per_channel_standardization"),
        lambda mean, std, elements: _channel_normalization(mean, std, "per_channel_standardization"),
        needs_statistics=True,
    ),
    "none": Normalisation(
        "none",
        "raw [0, 255] floats, for networks that rescale inside (MobileNetV3, EfficientNet, ConvNeXt)",
        lambda mean, std: layers.Identity(name="no_normalisation"),
        lambda mean, std, elements: None,
    ),
    "caffe": Normalisation(
        "caffe",
        "RGB to BGR and the ImageNet channel means subtracted (resnet / vgg preprocess_input)",
        lambda mean, std: CaffeNormalization(name="caffe_normalisation"),
        lambda mean, std, elements: _caffe_convolution(),
    ),
    "torch": Normalisation(
        "torch",
        "x / 255, then (x - ImageNet mean) / ImageNet std per channel (densenet preprocess_input)",
        lambda mean, std: ChannelStandardization(TORCH_MEAN, TORCH_STD, name="torch_normalisation"),
        lambda mean, std, elements: _channel_normalization(TORCH_MEAN, TORCH_STD, "torch_normalisation"),
    ),
}


def augmentation_layers(policy: Policy, side: int, seed: int | None = None) -> list[keras.layers.Layer]:
    """The training-time layers of ``policy`` for images of ``side``, in order: geometry, crop,
    flips, RandAugment, photometry, noise (MixUp and CutMix mix batches on the host: data/mixing.py).

    Each layer gets its own seed: two layers sharing one would draw the same numbers.
    """
    built: list[keras.layers.Layer] = []

    def next_seed() -> int | None:
        return None if seed is None else seed * 101 + len(built)

    fill = {"fill_mode": "reflect"}
    if policy.rotation:
        turns = tuple(degrees / 360 for degrees in policy.rotation)
        built.append(layers.RandomRotation(turns, seed=next_seed(), name="rotation", **fill))
    if policy.zoom:
        built.append(layers.RandomZoom(policy.zoom, seed=next_seed(), name="zoom", **fill))
    if policy.translation:
        shift = policy.translation
        built.append(layers.RandomTranslation(shift, shift, seed=next_seed(), name="translation", **fill))
    if policy.shear:
        built.append(layers.RandomShear(policy.shear, policy.shear, seed=next_seed(), name="shear", **fill))
    crop = policy.crop_size(side)
    if crop:
        built.append(RandomCropPerImage(crop, seed=next_seed(), name="random_crop"))
    if policy.horizontal_flip:
        built.append(RandomFlipPerImage("horizontal", seed=next_seed(), name="horizontal_flip"))
    if policy.vertical_flip:
        built.append(RandomFlipPerImage("vertical", seed=next_seed(), name="vertical_flip"))
    if policy.randaugment:
        built.append(
            layers.RandAugment(value_range=(0, 255), factor=policy.randaugment, seed=next_seed(), name="randaugment")
        )
    if policy.brightness:
        built.append(
            layers.RandomBrightness(policy.brightness, value_range=(0, 255), seed=next_seed(), name="brightness")
        )
    if policy.contrast:
        # Keras draws the factor from [1 - lower, 1 + upper]: a scalar f would give [1, 1 + f] only
        lower, upper = 1.0 - policy.contrast[0], policy.contrast[1] - 1.0
        built.append(layers.RandomContrast((lower, upper), value_range=(0, 255), seed=next_seed(), name="contrast"))
    if policy.noise:
        built.append(GaussianPixelNoise(policy.noise, seed=next_seed(), name="gaussian_noise"))
    return built


def as_policy(policy: str | dict | Policy) -> Policy:
    """A built-in policy's name, a policy's config (a saved model, a run record) or a Policy."""
    if isinstance(policy, Policy):
        return policy
    if isinstance(policy, dict):
        return Policy.from_config(policy)
    return get_policy(policy)


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class Preprocessing(keras.layers.Layer):
    """Cached images in [0, 255] (uint8 or float) -> augmented (training) or centre-cropped, normalised.

    ``policy`` is a built-in policy's name, a Policy, or its config (data/policies.py);
    ``image_size`` is the side of the cached images (a fractional crop is a share of it).
    ``per_channel`` needs ``channel_mean`` and ``channel_std``: computed once from the
    training split of the cache (data.cache.channel_statistics), never from validation.
    """

    def __init__(
        self,
        policy: str | dict | Policy = "report",
        normalisation: str = "per_image",
        seed: int | None = None,
        channel_mean: Sequence[float] | None = None,
        channel_std: Sequence[float] | None = None,
        image_size: int = DEFAULT_IMAGE_SIZE,
        **kwargs,
    ):
        super().__init__(**kwargs)
        spec = as_policy(policy)
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {normalisation!r} (known: {', '.join(NORMALISATIONS)})")
        norm = NORMALISATIONS[normalisation]
        if norm.needs_statistics and (channel_mean is None or channel_std is None):
            raise ValueError(
                f"normalisation {normalisation!r} needs channel_mean and channel_std of the training split "
                "(data.cache.channel_statistics)"
            )
        self.policy = spec
        self.normalisation = normalisation
        self.seed = seed
        self.image_size = int(image_size)
        self.channel_mean = None if channel_mean is None else [float(v) for v in channel_mean]
        self.channel_std = None if channel_std is None else [float(v) for v in channel_std]
        self.augment = augmentation_layers(spec, self.image_size, seed)
        crop = spec.crop_size(self.image_size)
        self.eval_crop = RandomCropPerImage(crop, name="centre_crop") if crop else None
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
        if tuple(images.shape[1:3]) != (self.image_size, self.image_size):
            raise ValueError(f"preprocessing for {self.image_size} px images got images of shape {images.shape}")
        if training:
            for layer in self.augment:
                if not isinstance(layer, DTYPE_PRESERVING):
                    images = ops.cast(images, "float32")
                images = layer(images, training=True)
        elif self.eval_crop is not None:
            images = self.eval_crop(images, training=False)
        return self.normalise(ops.cast(images, "float32"))

    def compute_output_shape(self, input_shape):
        size = self.policy.output_size(self.image_size)
        return (input_shape[0], size, size, input_shape[3])

    def get_config(self):
        return {
            **super().get_config(),
            "policy": self.policy.to_config(),
            "normalisation": self.normalisation,
            "seed": self.seed,
            "channel_mean": self.channel_mean,
            "channel_std": self.channel_std,
            "image_size": self.image_size,
        }


# Keras layers that take uint8 images and compute in float32 (their dtype)
_CASTING = (layers.CenterCrop, layers.Normalization, layers.Rescaling)


def inference_layers(preprocessing: Preprocessing) -> list[keras.layers.Layer]:
    """What ``preprocessing`` computes at inference, in Keras's own layers, in order: uint8 or
    float images in [0, 255] in, float32 out.

    The centre crop is Keras's CenterCrop (its offsets, (side - crop) // 2, are
    RandomCropPerImage's at inference); the normalisation is the entry's ``inference`` in
    NORMALISATIONS. A model of these loads with plain ``keras.saving.load_model``; their values
    equal ``preprocessing(images, training=False)`` (per_image: see _layer_standardization).
    Where neither casts the input, a ``Rescaling(1.0)`` first makes it float32.
    """
    built: list[keras.layers.Layer] = []
    crop = preprocessing.policy.crop_size(preprocessing.image_size)
    if crop:
        built.append(layers.CenterCrop(crop, crop, name="centre_crop", dtype="float32"))
    side = preprocessing.policy.output_size(preprocessing.image_size)
    norm = NORMALISATIONS[preprocessing.normalisation]
    normalise = norm.inference(preprocessing.channel_mean, preprocessing.channel_std, side * side * 3)
    if normalise is not None:
        built.append(normalise)
    if not built or not isinstance(built[0], _CASTING):
        built.insert(0, layers.Rescaling(1.0, name="as_float32", dtype="float32"))
    return built
