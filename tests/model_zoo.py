"""Registered models built once per test session at their default options.

EfficientNetV2M is the costly one; every test module that needs a default-size model takes
it from here, so no model is built twice at its default options in one session. Tests that
change a cached model (its trainable flags) put it back as they found it.
"""

from __future__ import annotations

import functools
import math

import keras

import models


@functools.cache
def default_model(name: str) -> keras.Model:
    return models.create_model(name)


def trainable_parameters(model: keras.Model) -> int:
    return sum(math.prod(weight.shape) for weight in model.trainable_weights)
