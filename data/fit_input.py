"""What ``model.fit`` is given for a trial's batches: one stream over all its epochs.

Streamed batches (data/loader.py's ``FaceBatches``, images read from the cache per batch)
and on-device batches (data/device.py's ``IndexBatches``, positions into the images held on
the device) side by side: on TensorFlow each as a ``tf.data`` pipeline of a fixed prefetch,
elsewhere a Python generator read ahead by a thread.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import keras
import numpy as np

from data.device import IndexBatches
from data.loader import FaceBatches


class FitInput:
    """What ``model.fit`` is given for a trial's batches: ``fit(x=data, steps_per_epoch=steps_per_epoch)``.

    Training input (``epochs`` given) is one stream of every batch of epochs ``first_epoch``
    .. ``epochs`` - 1, each epoch from its own seeded order, with ``steps_per_epoch`` set so
    Keras keeps one iterator across epochs: epoch k of ``fit`` trains on order k on every
    backend, whatever Keras reads ahead (on JAX its adapter reads batches before it calls
    ``on_epoch_begin``, so a PyDataset told the epoch by callbacks served epoch k from
    order k+1), and a trial restarted from epoch k's checkpoint goes on with order k.

    On TensorFlow the stream is a ``tf.data`` pipeline of our own with a fixed prefetch and
    tf.data's autotuning off: given the PyDataset itself, Keras wraps it in
    ``from_generator(...).prefetch(AUTOTUNE)``, and on a 2-core CPU that autotuned prefetch
    stalls training for seconds at a time (benchmarks/README.md, overhead). Index batches
    (the images on the device) are sliced in the pipeline from each epoch's positions, made
    by one Python call per epoch and none per batch; image batches come from a generator.
    Other backends get a Python generator, read ahead by a thread. Either way an epoch no
    longer opens a new iterator (23-35 ms on this CPU with the per-epoch pipeline before).

    Validation input (``epochs`` None) is the batches in one order, every epoch alike: the
    PyDataset (``steps_per_epoch`` None), or on TensorFlow epoch 0's batches repeated without
    end, read ``steps_per_epoch`` (= the batch count) at a time: ``fit(validation_steps=...)``.
    Keras opens a new iterator over the validation data at each evaluation, and over a
    finite dataset a second one as it ends; index batches are sliced from tensors (an
    iterator in ~1 ms, where the generator pipeline took ~25 ms: two of those were half
    of a small split's validation pass, benchmarks/README.md, epoch cost).
    """

    def __init__(self, batches: FaceBatches, epochs: int | None = None, first_epoch: int = 0):
        # first_epoch == epochs: a checkpoint of the last epoch, restored; nothing is left to train
        if epochs is not None and not 0 <= first_epoch <= epochs:
            raise ValueError(f"first_epoch must be in [0, {epochs}], got {first_epoch}")
        self.batches = batches
        self.steps_per_epoch: int | None = None if epochs is None else len(batches)
        self._stream: Iterator | None = None
        if keras.backend.backend() == "tensorflow":
            if epochs is None:
                self.data: object = _tensorflow_validation(batches)
                self.steps_per_epoch = len(batches)
            elif isinstance(batches, IndexBatches):
                self.data = _tensorflow_index_pipeline(batches, first_epoch, epochs)
            else:
                self.data = _tensorflow_pipeline(batches, first_epoch, epochs)
        elif epochs is None:
            self.data = batches
        else:
            self._stream = batches.stream(epochs, prefetch=batches.prefetch, start=first_epoch)
            self.data = self._stream

    def close(self) -> None:
        """Stop the stream's read-ahead thread (also done when the stream is collected)."""
        if self._stream is not None:
            self._stream.close()


def _tensorflow_pipeline(batches: FaceBatches, first_epoch: int, epochs: int):
    """The image batches of epochs ``first_epoch`` .. ``epochs`` - 1 from a generator; every
    iterator over it starts afresh at ``first_epoch``."""
    import tensorflow as tf

    side, classes = batches.image_side, batches.label_classes
    labels = tf.TensorSpec((None,), tf.int32) if classes is None else tf.TensorSpec((None, classes), tf.float32)
    signature = (tf.TensorSpec((None, side, side, 3), tf.uint8), labels)
    generator = functools.partial(batches.stream, epochs, 0, first_epoch)  # tf.data's prefetch reads ahead
    dataset = tf.data.Dataset.from_generator(generator, output_signature=signature)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality((epochs - first_epoch) * len(batches)))
    return _fixed_prefetch(dataset, max(1, batches.prefetch))


def _tensorflow_index_pipeline(batches: IndexBatches, first_epoch: int, epochs: int):
    """The index batches of epochs ``first_epoch`` .. ``epochs`` - 1: each epoch's positions made
    at once (one Python call per epoch, none per batch), its batches sliced from them."""
    import tensorflow as tf

    sizes = batches.batch_sizes()
    starts = tf.constant(np.concatenate([[0], np.cumsum(sizes)[:-1]]))
    sizes = tf.constant(sizes)

    def one_epoch(epoch):
        made = tf.numpy_function(lambda e: batches.epoch_batches(int(e)), [epoch], (tf.int32, tf.int32), stateful=False)
        positions, labels = (tf.ensure_shape(part, (len(batches.rows),)) for part in made)
        slices = tf.data.Dataset.from_tensor_slices((starts, sizes))
        return slices.map(lambda start, size: (positions[start : start + size], labels[start : start + size]))

    dataset = tf.data.Dataset.range(first_epoch, epochs).flat_map(one_epoch)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality((epochs - first_epoch) * len(batches)))
    return _fixed_prefetch(dataset, 2)


def _tensorflow_validation(batches: FaceBatches | IndexBatches):
    """Epoch 0's batches again and again; index batches as slices of two tensors held here."""
    import tensorflow as tf

    if isinstance(batches, IndexBatches):
        positions, labels = batches.epoch_batches(0)  # batch i is [i * batch_size, (i + 1) * batch_size)
        dataset = tf.data.Dataset.from_tensor_slices((positions, labels)).batch(batches.batch_size)
        return _without_autotune(dataset.repeat())
    return _tensorflow_pipeline(batches, 0, 1).repeat()


def _fixed_prefetch(dataset, prefetch: int):
    return _without_autotune(dataset.prefetch(prefetch))


def _without_autotune(dataset):
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)
