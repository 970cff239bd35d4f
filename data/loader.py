"""Batches of cached faces for any Keras backend: seeded shuffling per epoch, repeat, prefetch.

``FaceBatches`` is a ``keras.utils.PyDataset``, the input type ``fit`` takes on the
TensorFlow, JAX and PyTorch backends alike; ``stream`` repeats epochs with a prefetching
thread for loops outside Keras. Batches are uint8 (the model casts them on the device: a
quarter of the bytes of float32 to copy there).

The content of batch ``i`` of epoch ``e`` is a pure function of (seed, e, i), so nothing a
thread or Keras does can change what a seed means. Keras's own worker threads are not used:
its enqueuer starts fetching before it tells the dataset a new epoch began, so batches
would straddle epochs. Read-ahead here is keyed by (epoch, batch) instead, and the
dataset learns the epoch from ``on_epoch_begin`` (Keras calls ``on_epoch_end`` once more,
before training). Pass ``shuffle=False`` to ``fit``: this class shuffles, seeded, and
in-order requests let the read-ahead hit.

A trial does not hand its training batches to ``fit`` as a PyDataset:
``data.fit_input.FitInput`` gives ``fit`` one stream of ``batch(epoch, index)`` over all its
epochs (``stream``; on TensorFlow through a fixed-prefetch tf.data pipeline, because Keras's
own wrapping, an autotuned prefetch, stalls on a 2-core CPU), so the epoch a batch belongs to
is the stream's, not a guess from Keras's callbacks.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import keras
import numpy as np

from data.cache import FaceCache
from data.mixing import BatchMixing

DEFAULT_PREFETCH = 2  # batches read ahead by a background thread (reads run outside the GIL)


class FaceBatches(keras.utils.PyDataset):
    """(images uint8 (n, size, size, 3), labels int32) batches of ``rows`` of a source.

    ``source`` is a FaceCache (``rows`` are its slots) or an in-memory uint8 array
    (``rows`` index it). With ``shuffle`` each epoch is a fresh permutation drawn from
    (``seed``, epoch), so two runs with one seed see the same batches and two epochs do not.
    With ``mixing`` (data/mixing.py) labels are soft, float32 (n, classes): training batches
    (``mix``) are mixed, validation batches carry one-hot labels.
    """

    def __init__(
        self,
        source: FaceCache | np.ndarray,
        rows: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        prefetch: int = DEFAULT_PREFETCH,
        mixing: BatchMixing | None = None,
        mix: bool = False,
    ):
        super().__init__(workers=1, use_multiprocessing=False)
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(rows) != len(labels):
            raise ValueError(f"{len(rows)} images but {len(labels)} labels")
        if len(rows) == 0:
            raise ValueError("no images to batch")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch}")
        self.source = source
        self.rows = rows
        self.labels = np.asarray(labels, dtype=np.int32)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.prefetch = prefetch
        self.mixing = mixing
        self.mix = mix and mixing is not None
        self.epoch = 0  # the epoch ``__getitem__`` serves
        self._epochs_begun = 0
        self._ahead: dict[tuple[int, int], Future] = {}
        self._reader: ThreadPoolExecutor | None = None

    def order(self, epoch: int) -> np.ndarray:
        """Positions into ``rows`` in the order epoch ``epoch`` visits them."""
        if not self.shuffle:
            return np.arange(len(self.rows))
        return np.random.default_rng((self.seed, epoch)).permutation(len(self.rows))

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    @property
    def label_classes(self) -> int | None:
        """Classes of a soft label (its width), or None: labels are class indices."""
        return None if self.mixing is None else self.mixing.num_classes

    @property
    def image_side(self) -> int:
        """Height (= width) of the images the batches hold."""
        return int(self.source.shape[1]) if isinstance(self.source, np.ndarray) else self.source.image_size

    def batch(self, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        # sorted within the batch: neighbouring slots are read in one call
        positions = np.sort(self.order(epoch)[index * self.batch_size : (index + 1) * self.batch_size])
        rows = self.rows[positions]
        images = self.source[rows] if isinstance(self.source, np.ndarray) else self.source.read(rows)
        if self.mix:
            return self.mixing.apply(images, self.labels[positions], epoch, index)
        if self.mixing is not None:
            return images, self.mixing.soft_labels(self.labels[positions])
        return images, self.labels[positions]

    def __getitem__(self, index: int):
        if not self.prefetch:
            return self.batch(self.epoch, index)
        epoch = self.epoch
        pending = self._ahead.pop((epoch, index), None)
        for key in [key for key in self._ahead if key[0] != epoch]:  # a past epoch's read-ahead
            self._ahead.pop(key)
        if self._reader is None:
            self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="face-batches-read-ahead")
        for ahead in range(index + 1, min(index + 1 + self.prefetch, len(self))):
            if (epoch, ahead) not in self._ahead:
                self._ahead[(epoch, ahead)] = self._reader.submit(self.batch, epoch, ahead)
        return pending.result() if pending is not None else self.batch(epoch, index)

    def on_epoch_begin(self) -> None:
        """Keras calls this once before each epoch's first batch, on every backend."""
        self.epoch = self._epochs_begun
        self._epochs_begun += 1

    def begin_at(self, epoch: int) -> None:
        """The next epoch to begin is ``epoch`` (a trial restarted from its checkpoint goes on there)."""
        self._epochs_begun = epoch

    def close(self) -> None:
        """Stop the read-ahead thread (also done when the dataset is collected)."""
        self._ahead.clear()
        if self._reader is not None:
            self._reader.shutdown(wait=True, cancel_futures=True)
            self._reader = None

    def __del__(self):
        reader = getattr(self, "_reader", None)
        if reader is not None:
            reader.shutdown(wait=False, cancel_futures=True)

    def stream(
        self, epochs: int | None = None, prefetch: int = 2, start: int = 0
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Batches of epochs ``start``, ``start`` + 1, ... up to ``epochs`` (exclusive; forever when
        None), each from its own seeded order, read ahead by a thread."""
        if prefetch < 1:
            yield from self._batches(epochs, start)
            return
        ready: queue.Queue = queue.Queue(maxsize=prefetch)
        stop = threading.Event()
        done = object()

        def produce() -> None:
            try:
                for item in self._batches(epochs, start):
                    while not stop.is_set():
                        try:
                            ready.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                ready.put(done)
            except BaseException as error:  # handed to the consumer, raised there
                ready.put(error)

        thread = threading.Thread(target=produce, name="face-batches-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                item = ready.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join(timeout=5)

    def _batches(self, epochs: int | None, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        epoch = start
        while epochs is None or epoch < epochs:
            for index in range(len(self)):
                yield self.batch(epoch, index)
            epoch += 1


class ArrayBatches(FaceBatches):
    """FaceBatches over a whole in-memory uint8 array (tests, small experiments)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, shuffle: bool, seed: int = 0, **kw):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        super().__init__(images, np.arange(len(images)), labels, batch_size, shuffle, seed, **kw)
