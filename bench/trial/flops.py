"""The FLOP figures the harness reports: forward FLOPs per image and the training estimate.

Counting itself (walking the Keras layers, a multiply-add = 2 FLOPs) is ``models.flops``,
shared with ``python -m models``; this module is the harness's side of it. No ray here.
"""

from __future__ import annotations

import math

import keras

from bench.trial.mfu import TRAINING_TO_FORWARD
from models.flops import ACTIVATION_FLOPS, FlopsError, flops_rule, forward_flops

__all__ = [
    "ACTIVATION_FLOPS",
    "TRAINING_TO_FORWARD",
    "FlopsError",
    "flops_or_nan",
    "flops_rule",
    "forward_flops",
    "training_flops",
]


def flops_or_nan(model: keras.Model) -> float:
    """Forward FLOPs per image, or NaN where a layer has no rule (a user's own layer): the
    leaderboard then shows no FLOPs or MFU for that model, and its trials run all the same."""
    try:
        return float(forward_flops(model))
    except FlopsError:
        return math.nan


def training_flops(model: keras.Model) -> int:
    """Estimated FLOPs to train on one image (forward + backward) at ``model``'s input size."""
    return TRAINING_TO_FORWARD * forward_flops(model)
