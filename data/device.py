"""The dataset on the device: a split's uint8 images held once where the model runs, batches
gathered there from indices.

airbench's shape (DESIGN.md, "The data path"): the whole uint8 dataset goes to the device
once, and each training step gathers its batch from it, so ``fit`` receives int32 indices
and labels only, and no images cross from the host per step. ``DeviceImages`` is the layer
that holds them, in a non-trainable uint8 variable (on a CPU the "device" is host memory);
``IndexBatches`` are the index batches, drawn from the same (seed, epoch) order as
``data.loader.FaceBatches``, so for one (seed, epoch, batch index) both paths give the same
images (tests/test_device_data.py pins it, per backend).

Whether a trial's images go there (``--data-on-device auto|on|off``) is bench/trial/execution.py's
decision.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from data.loader import FaceBatches


class DeviceImages(keras.layers.Layer):
    """int32 indices (batch,) -> the uint8 images (batch, side, side, 3) at those rows.

    The images live in one non-trainable uint8 variable, copied to the device once when the
    layer is made; the gather runs inside the compiled step. Not saved with a model: a
    trial's checkpoints and exported models hold the network that takes images, never this.
    """

    def __init__(self, images: np.ndarray, **kwargs):
        super().__init__(**kwargs)
        images = np.asarray(images)
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(
                f"DeviceImages takes uint8 images (n, height, width, channels), got {images.dtype} {images.shape}"
            )
        if len(images) == 0:
            raise ValueError("DeviceImages needs at least one image")
        self.image_shape = tuple(int(side) for side in images.shape[1:])
        self.count = len(images)
        # a Keras variable, so every backend's compiled step sees it as state, not a constant
        self.images = self.add_weight(
            shape=images.shape, dtype="uint8", trainable=False, initializer=keras.initializers.Zeros(), name="images"
        )
        self.images.assign(images)
        self.built = True

    def call(self, indices):
        return ops.take(self.images, ops.cast(ops.reshape(indices, (-1,)), "int32"), axis=0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.image_shape)

    def compute_output_spec(self, indices):
        return keras.KerasTensor((indices.shape[0], *self.image_shape), dtype="uint8")

    @property
    def nbytes(self) -> int:
        return int(self.count * np.prod(self.image_shape))


class IndexBatches(FaceBatches):
    """(int32 positions into a ``DeviceImages`` array, int32 labels) batches, in FaceBatches' order.

    ``offset`` is where this split's images start in the device array (validation after
    training, in one array). Batch ``i`` of epoch ``e`` names exactly the images
    ``FaceBatches(...).batch(e, i)`` reads, in the same order.
    """

    def __init__(self, labels: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0, offset: int = 0):
        labels = np.asarray(labels, dtype=np.int32)
        positions = np.arange(len(labels), dtype=np.int64)
        super().__init__(positions, positions, labels, batch_size, shuffle, seed, prefetch=0)
        self.offset = offset

    @property
    def image_side(self) -> int:
        raise AttributeError("IndexBatches carry indices, not images")

    def batch(self, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        positions = np.sort(self.order(epoch)[index * self.batch_size : (index + 1) * self.batch_size])
        return (positions + self.offset).astype(np.int32), self.labels[positions]

    def epoch_batches(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Every batch of epoch ``epoch`` end to end, (int32 positions, int32 labels): batch ``i``
        is ``[i * batch_size, (i + 1) * batch_size)`` of both, equal to ``batch(epoch, i)``; one
        permutation per epoch instead of one per batch."""
        order = self.order(epoch)
        whole = len(order) // self.batch_size * self.batch_size
        within = np.sort(order[:whole].reshape(-1, self.batch_size), axis=1).reshape(-1)
        positions = np.concatenate([within, np.sort(order[whole:])])
        return (positions + self.offset).astype(np.int32), self.labels[positions]

    def batch_sizes(self) -> np.ndarray:
        """The size of each batch of an epoch (the last may be short)."""
        sizes = np.full(len(self), self.batch_size, dtype=np.int64)
        sizes[-1] = len(self.rows) - self.batch_size * (len(self) - 1)
        return sizes
