"""The Levi & Hassner (2015) gender CNN, as the report's TensorFlow port lays it out.

Report, section 3.5 (model summary): 227x227x3 input; conv1 96 7x7/4, max-pool 3/2, LRN;
pad 2, conv2 256 5x5, max-pool 3/2, LRN; pad 1, conv3 384 3x3, max-pool 3/2, LRN;
flatten (13,824); fc1 512, dropout 0.5; fc2 512, dropout 0.5; fc3 2 -> 8,856,066
parameters. The report's port has an LRN after each of the three pools; Levi & Hassner's
Caffe net has none after conv3 (``lrn_after_conv3=False``).

Variants: ``levi_hassner_nocrop`` (section 3.4: the whole 256x256 face, 11,411,970
parameters) and ``levi_hassner_pointwise`` (section 3.5.2: a 1x1 convolution shrinks the
6x6x384 feature map before the classifier, where most of the weights sit).

Inputs are already normalised by the data layer (the report's per-image standardisation);
the model does not normalise again.
"""

from __future__ import annotations

import keras
from keras import layers

from models.layers import LocalResponseNormalization, softmax_classifier
from models.registry import ModelOptionError, build_variant, is_integer, register_model
from models.weights import check_weights_option, load_whole_model_weights

_POOL = {"pool_size": 3, "strides": 2}


def _feature_map_side(input_size: int) -> int:
    """Spatial side after the three conv/pool stages (valid padding throughout)."""
    side = (input_size - 7) // 4 + 1  # conv1 7x7 stride 4
    side = (side - 3) // 2 + 1  # pool1
    side = side + 4 - 5 + 1  # pad 2, conv2 5x5
    side = (side - 3) // 2 + 1  # pool2
    side = side + 2 - 3 + 1  # pad 1, conv3 3x3
    return (side - 3) // 2 + 1  # pool3


MIN_INPUT_SIZE = next(size for size in range(1, 256) if _feature_map_side(size) >= 1)


def build_levi_hassner(
    input_size: int = 227,
    num_classes: int = 2,
    dropout: float = 0.5,
    lrn_after_conv3: bool = True,
    pointwise_channels: int | None = None,
    weights: str | None = None,
    name: str = "levi_hassner",
) -> keras.Model:
    """Levi & Hassner CNN for ``input_size`` square RGB inputs (already normalised).

    ``pointwise_channels``: a 1x1 convolution with that many channels (ReLU) after the last
    conv stage, so the classifier sees a thinner feature map; ``None``: none (the baseline).
    ``weights``: ``None`` or a local ``.weights.h5`` / ``.keras`` file of this same model.
    """
    if not is_integer(input_size) or input_size < MIN_INPUT_SIZE:
        raise ModelOptionError(f"{name}: input_size must be an integer >= {MIN_INPUT_SIZE}, got {input_size!r}")
    if not is_integer(num_classes) or num_classes < 2:
        raise ModelOptionError(f"{name}: num_classes must be an integer >= 2, got {num_classes!r}")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ModelOptionError(f"{name}: dropout must be in [0, 1), got {dropout!r}")
    if pointwise_channels is not None and (not is_integer(pointwise_channels) or pointwise_channels < 1):
        raise ModelOptionError(
            f"{name}: pointwise_channels must be an integer >= 1 or None, got {pointwise_channels!r}"
        )
    check_weights_option(name, weights, backbone=False)

    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Conv2D(96, 7, strides=4, activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(**_POOL, name="pool1")(x)
    x = LocalResponseNormalization(name="norm1")(x)
    x = layers.ZeroPadding2D(2, name="pad2")(x)
    x = layers.Conv2D(256, 5, activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(**_POOL, name="pool2")(x)
    x = LocalResponseNormalization(name="norm2")(x)
    x = layers.ZeroPadding2D(1, name="pad3")(x)
    x = layers.Conv2D(384, 3, activation="relu", name="conv3")(x)
    x = layers.MaxPooling2D(**_POOL, name="pool3")(x)
    if lrn_after_conv3:
        x = LocalResponseNormalization(name="norm3")(x)
    if pointwise_channels is not None:
        x = layers.Conv2D(pointwise_channels, 1, activation="relu", name="pointwise")(x)
    x = layers.Flatten(name="flat1")(x)
    x = layers.Dense(512, activation="relu", name="fc1")(x)
    x = layers.Dropout(dropout, name="do1")(x)
    x = layers.Dense(512, activation="relu", name="fc2")(x)
    x = layers.Dropout(dropout, name="do2")(x)
    outputs = softmax_classifier(x, num_classes, "fc3")
    return load_whole_model_weights(keras.Model(inputs, outputs, name=name), weights)


# The report gives no channel count for its 1x1 layer ("details in the code", not published);
# 64 shrinks fc1's input from 13,824 to 2,304 values.
DEFAULT_POINTWISE_CHANNELS = 64


def _levi_hassner(name: str, options: dict, **defaults) -> keras.Model:
    # the variant's name is its Keras model name, fixed; its other defaults a user may override
    return build_variant(build_levi_hassner, name, {**defaults, **options}, name=name)


@register_model("levi_hassner", default_input_size=227, description="Levi & Hassner CNN, 227 crop (report's port)")
def levi_hassner(**options) -> keras.Model:
    """Levi & Hassner CNN, 227x227 crop, three LRN layers: 8,856,066 parameters."""
    return _levi_hassner("levi_hassner", options)


@register_model("levi_hassner_nocrop", default_input_size=256, description="Levi & Hassner CNN, whole 256 image")
def levi_hassner_nocrop(**options) -> keras.Model:
    """Levi & Hassner CNN on the uncropped 256x256 face (report 3.4, "~11M"): 11,411,970 parameters."""
    return _levi_hassner("levi_hassner_nocrop", options, input_size=256)


@register_model(
    "levi_hassner_pointwise", default_input_size=227, description="Levi & Hassner CNN + 1x1 conv bottleneck"
)
def levi_hassner_pointwise(**options) -> keras.Model:
    """Levi & Hassner CNN with a 1x1 convolution before the classifier (report 3.5.2)."""
    return _levi_hassner("levi_hassner_pointwise", options, pointwise_channels=DEFAULT_POINTWISE_CHANNELS)
