"""A tiny CNN for checking the harness itself: trains in seconds on a CPU.

Not a model of the report. The ``selftest`` suite and the scheduling tests use it where
what matters is Ray Tune's behaviour (packing, ASHA, resume, clusters), not accuracy.
"""

from __future__ import annotations

import keras
from keras import layers

from models.layers import softmax_classifier
from models.registry import ModelOptionError, is_integer, register_model

MIN_INPUT_SIZE = 21  # conv1 5/2, pool 3/3 and conv2 3/2 still leave one position


@register_model("tiny_cnn", default_input_size=227, description="tiny CNN for harness checks (not in the report)")
def tiny_cnn(input_size: int = 227, width: int = 16, num_classes: int = 2) -> keras.Model:
    """Two strided convolutions, global average pooling and a softmax head: 5,922 parameters."""
    if not is_integer(input_size) or input_size < MIN_INPUT_SIZE:
        raise ModelOptionError(f"tiny_cnn: input_size must be an integer >= {MIN_INPUT_SIZE}, got {input_size!r}")
    if not is_integer(width) or width < 1:
        raise ModelOptionError(f"tiny_cnn: width must be an integer >= 1, got {width!r}")
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Conv2D(width, 5, strides=2, activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(3, strides=3, name="pool1")(x)
    x = layers.Conv2D(2 * width, 3, strides=2, activation="relu", name="conv2")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = softmax_classifier(x, num_classes, "head")
    return keras.Model(inputs, outputs, name="tiny_cnn")
