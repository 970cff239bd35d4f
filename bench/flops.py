"""The FLOP figures the harness reports: forward FLOPs per image and the training estimate.

Counting itself (walking the Keras layers, a multiply-add = 2 FLOPs) is ``models.flops``,
shared with ``python -m models``; this module is the harness's side of it. No ray here.
"""

from __future__ import annotations

import keras

from bench.mfu import TRAINING_TO_FORWARD
from models.flops import ACTIVATION_FLOPS, FlopsError, flops_rule, forward_flops

__all__ = ["ACTIVATION_FLOPS", "TRAINING_TO_FORWARD", "FlopsError", "flops_rule", "forward_flops", "training_flops"]


def training_flops(model: keras.Model) -> int:
    """Estimated FLOPs to train on one image (forward + backward) at ``model``'s input size."""
    return TRAINING_TO_FORWARD * forward_flops(model)
