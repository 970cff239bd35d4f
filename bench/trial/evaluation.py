"""Evaluation modes: ``single`` (the centre crop: Keras's validation pass each epoch) and
``oversampled`` (Levi & Hassner's ten views of each face, softmax outputs averaged).

The over-sampled model shares the trial's network and normalisation and adds only
``data.views.OversampledViews`` before them and a mean over each face's views after them:
keras.ops throughout, so it runs on every backend. It costs about ten validation passes, so
a trial measures it at its end (bench/trial/measure.py), not every epoch. Only a policy that
crops has it (the views are crops), and mirrored views only where the policy flips.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from data.cache import FaceCache
from data.views import OversampledViews, view_count

OVERSAMPLE_BATCH_SIZE = 16  # faces per forward pass: ten views each


def build_oversampled_model(model: keras.Model, network: keras.Model) -> keras.Model | None:
    """Cached uint8 faces -> class probabilities averaged over each face's views; None where
    the trial's policy does not crop.

    ``model`` is the trial's training model (its ``preprocessing`` layer holds the policy and
    normalises each view as validation does), ``network`` the bare network inside it.
    """
    preprocessing = model.get_layer("preprocessing")
    side = int(model.input.shape[1])
    policy = preprocessing.policy
    crop = policy.crop_size(side)
    if crop is None:
        return None
    mirror = policy.horizontal_flip
    faces = keras.Input((side, side, 3), dtype="uint8", name="cached_image")
    views = OversampledViews(crop, mirror, name="oversampled_views")(ops.cast(faces, "float32"))
    prepared = preprocessing.normalise(views)
    network_side = int(network.input.shape[1])
    if int(prepared.shape[1]) != network_side:  # as the training model resizes to a smaller network
        prepared = keras.layers.Resizing(network_side, network_side, name="resize_to_model")(prepared)
    probabilities = network(prepared)
    classes = int(probabilities.shape[-1])
    per_face = ops.reshape(probabilities, (-1, view_count(side, crop, mirror), classes))
    return keras.Model(faces, ops.mean(per_face, axis=1), name="oversampled_evaluation")


def oversampled_accuracy(oversampled: keras.Model, cache: FaceCache, slots: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of the averaged views over ``slots`` (each listed face counts as often as it is listed)."""
    correct = 0
    for start in range(0, len(slots), OVERSAMPLE_BATCH_SIZE):
        images = cache.read(slots[start : start + OVERSAMPLE_BATCH_SIZE])
        probabilities = np.asarray(oversampled.predict_on_batch(images))
        correct += int((probabilities.argmax(axis=1) == labels[start : start + OVERSAMPLE_BATCH_SIZE]).sum())
    return correct / len(slots)
