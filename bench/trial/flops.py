"""The FLOP figures the harness reports: forward FLOPs per image and training FLOPs per image.

Counting itself (walking the Keras layers, a multiply-add = 2 FLOPs) is ``models.flops``,
shared with ``python -m models``; this module is the harness's side of it. No ray here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import keras

from models.flops import ACTIVATION_FLOPS, FlopsError, flops_rule, forward_flops, layer_calls

__all__ = [
    "ACTIVATION_FLOPS",
    "FlopsError",
    "flops_or_nan",
    "flops_rule",
    "forward_flops",
    "training_flops",
]


def training_flops(model: keras.Model) -> int:
    """FLOPs to train ``model`` on one image at its input size, counting what trains.

    The forward pass; the gradients with respect to inputs, down to the first layer with
    trainable weights (nothing below it needs them); the gradients with respect to weights,
    of the layers that train. Each backward product costs what its forward one does (Kaplan
    et al.; MLPerf's MFU), so a model that trains whole costs about 3x forward and one with
    a frozen backbone about its forward pass plus its head's.
    """
    calls = layer_calls(model)
    forward = sum(call.flops for call in calls)
    first_trained = next((index for index, call in enumerate(calls) if call.trains), None)
    if first_trained is None:
        return forward
    input_gradients = sum(call.flops for call in calls[first_trained + 1 :])
    weight_gradients = sum(call.flops for call in calls if call.trains)
    return forward + input_gradients + weight_gradients


def flops_or_nan(model: keras.Model, count: Callable[[keras.Model], int] = forward_flops) -> float:
    """``count(model)`` (forward FLOPs per image by default), or NaN where a layer has no rule (a
    user's own layer): the leaderboard then shows no FLOPs or MFU for that model, and its
    trials run all the same."""
    try:
        return float(count(model))
    except FlopsError:
        return math.nan
