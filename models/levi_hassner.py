"""The Levi & Hassner (2015) gender CNN, as the report's TensorFlow port lays it out.

Report, section 3.5 (model summary): 227x227x3 input; conv1 96 7x7/4, max-pool 3/2, LRN;
pad 2, conv2 256 5x5, max-pool 3/2, LRN; pad 1, conv3 384 3x3, max-pool 3/2, LRN;
flatten (13,824); fc1 512, dropout 0.5; fc2 512, dropout 0.5; fc3 2 -> 8,856,066
parameters. The report's port has an LRN after each of the three pools; Levi & Hassner's
Caffe net has none after conv3 (``lrn_after_conv3=False``).
"""

from __future__ import annotations

import keras
from keras import layers

from models.layers import LocalResponseNormalization
from models.registry import ModelOptionError, register_model

_POOL = {"pool_size": 3, "strides": 2}


def _feature_map_side(input_size: int) -> int:
    """Spatial side after the three conv/pool stages (valid padding throughout)."""
    side = (input_size - 7) // 4 + 1  # conv1 7x7 stride 4
    side = (side - 3) // 2 + 1  # pool1
    side = side + 4 - 5 + 1  # pad 2, conv2 5x5
    side = (side - 3) // 2 + 1  # pool2
    side = side + 2 - 3 + 1  # pad 1, conv3 3x3
    return (side - 3) // 2 + 1  # pool3


def build_levi_hassner(
    input_size: int = 227,
    num_classes: int = 2,
    dropout: float = 0.5,
    lrn_after_conv3: bool = True,
    name: str = "levi_hassner",
) -> keras.Model:
    """Levi & Hassner CNN for ``input_size`` square RGB inputs (already normalised)."""
    if not isinstance(input_size, int) or input_size < 1 or _feature_map_side(input_size) < 1:
        raise ModelOptionError(f"levi_hassner: input_size must be an integer >= 67, got {input_size!r}")
    if num_classes < 2:
        raise ModelOptionError(f"levi_hassner: num_classes must be >= 2, got {num_classes}")
    if not 0.0 <= dropout < 1.0:
        raise ModelOptionError(f"levi_hassner: dropout must be in [0, 1), got {dropout}")

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
    x = layers.Flatten(name="flat1")(x)
    x = layers.Dense(512, activation="relu", name="fc1")(x)
    x = layers.Dropout(dropout, name="do1")(x)
    x = layers.Dense(512, activation="relu", name="fc2")(x)
    x = layers.Dropout(dropout, name="do2")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="fc3")(x)
    return keras.Model(inputs, outputs, name=name)


@register_model("levi_hassner", default_input_size=227, description="Levi & Hassner CNN, 227 crop (report's port)")
def levi_hassner(input_size: int = 227, **options) -> keras.Model:
    """Levi & Hassner CNN, 227x227 crop, three LRN layers: 8,856,066 parameters."""
    return build_levi_hassner(input_size=input_size, name="levi_hassner", **options)
