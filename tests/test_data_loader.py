"""Batches from the cache: reproducible seeded order, a new order each epoch, repeat and prefetch, Keras fit."""

import ast
from pathlib import Path

import keras
import numpy as np
import pytest

from data.cache import ensure_cache
from data.loader import ArrayBatches, FaceBatches
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="module")
def cache(small_synthetic, tmp_path_factory):
    return ensure_cache(small_synthetic, cache_root=tmp_path_factory.mktemp("cache"), workers=2)


def batches_of(cache, seed=0, batch_size=32, shuffle=True):
    return FaceBatches(cache, cache.faces["slot"], cache.faces["gender"], batch_size, shuffle, seed)


def epoch_rows(dataset):
    """The slots of one epoch, batch by batch, read the way Keras reads them."""
    dataset.on_epoch_begin()
    rows = [dataset.rows[np.sort(dataset.order(dataset.epoch)[i * 32 : (i + 1) * 32])] for i in range(len(dataset))]
    for index in range(len(dataset)):
        images, labels = dataset[index]
        np.testing.assert_array_equal(images, dataset.source.read(rows[index]))
        assert images.dtype == np.uint8 and labels.dtype == np.int32
    return np.concatenate(rows)


def test_order_is_reproducible_for_a_seed_and_new_each_epoch(cache):
    first, second = batches_of(cache, seed=3), batches_of(cache, seed=3)
    epochs_first = [epoch_rows(first) for _ in range(3)]
    epochs_second = [epoch_rows(second) for _ in range(3)]
    for a, b in zip(epochs_first, epochs_second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(epochs_first[0], epochs_first[1])
    assert not np.array_equal(epochs_first[1], epochs_first[2])
    for rows in epochs_first:  # every face once per epoch
        assert sorted(rows) == sorted(cache.faces["slot"])
    other_seed = epoch_rows(batches_of(cache, seed=4))
    assert not np.array_equal(other_seed, epochs_first[0])


def test_labels_travel_with_their_images(cache):
    dataset = batches_of(cache, seed=1)
    by_slot = dict(zip(cache.faces["slot"], cache.faces["gender"], strict=True))
    images, labels = dataset[2]
    rows = dataset.rows[np.sort(dataset.order(0)[64:96])]
    assert list(labels) == [by_slot[row] for row in rows]


def test_validation_order_is_fixed(cache):
    dataset = batches_of(cache, shuffle=False)
    assert np.array_equal(epoch_rows(dataset), epoch_rows(dataset))


def test_stream_repeats_epochs_with_prefetch(cache):
    dataset = batches_of(cache, seed=5, batch_size=50)
    streamed = list(dataset.stream(epochs=2, prefetch=3))
    assert len(streamed) == 2 * len(dataset)
    for index, (images, labels) in enumerate(streamed):
        epoch, batch = divmod(index, len(dataset))
        expected_images, expected_labels = dataset.batch(epoch, batch)
        np.testing.assert_array_equal(images, expected_images)
        np.testing.assert_array_equal(labels, expected_labels)
    assert len(streamed[len(dataset) - 1][0]) == len(cache.faces) - 50 * (len(dataset) - 1)  # last, partial batch
    forever = dataset.stream()  # epochs=None: repeats until the consumer stops
    for _ in range(3 * len(dataset)):
        next(forever)
    forever.close()


class LoggedBatches(FaceBatches):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.served = []

    def __getitem__(self, index):
        self.served.append((self.epoch, index))  # what Keras asked for, and the epoch it got
        return super().__getitem__(index)


@pytest.mark.parametrize("keras_shuffle", [False, True])
def test_keras_fit_serves_each_epoch_whole_with_its_own_order(cache, keras_shuffle):
    dataset = LoggedBatches(cache, cache.faces["slot"], cache.faces["gender"], 32, shuffle=True, seed=0, prefetch=3)
    inputs = keras.Input((256, 256, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(pooled))
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(dataset, epochs=3, verbose=0, shuffle=keras_shuffle)
    assert len(history.history["loss"]) == 3
    # TensorFlow probes two batches for the signature first; then epochs 0, 1, 2 in turn,
    # every batch of an epoch served from that epoch's order
    probe, training = dataset.served[:2], dataset.served[2:]
    assert probe == [(0, 0), (0, 1)]
    epochs = [epoch for epoch, _ in training]
    assert epochs == sorted(epochs) and set(epochs) == {0, 1, 2}
    for epoch in range(3):
        assert sorted(index for e, index in training if e == epoch) == list(range(len(dataset)))
    dataset.close()


def test_read_ahead_returns_the_same_batches_as_direct_reads(cache):
    ahead = batches_of(cache, seed=9)
    direct = FaceBatches(cache, ahead.rows, ahead.labels, 32, shuffle=True, seed=9, prefetch=0)
    for _ in range(2):
        ahead.on_epoch_begin()
        direct.on_epoch_begin()
        for index in [0, 1, 2, 5, 3, 4, 6, 7][: len(ahead)]:
            for mine, theirs in zip(ahead[index], direct[index], strict=True):
                np.testing.assert_array_equal(mine, theirs)
    ahead.close()


def test_array_batches_keep_the_in_memory_path(cache):
    images = cache.read(cache.faces["slot"][:10])
    dataset = ArrayBatches(images, cache.faces["gender"][:10], 4, shuffle=True, seed=0)
    assert len(dataset) == 3
    seen = np.concatenate([dataset[i][0] for i in range(3)])
    assert sorted(map(bytes, seen)) == sorted(map(bytes, images))


@pytest.mark.parametrize(
    ("rows", "labels", "batch_size", "message"),
    [([0, 1], [0], 2, "2 images but 1 labels"), ([], [], 2, "no images"), ([0], [0], 0, "batch_size must be >= 1")],
)
def test_bad_arguments_are_refused(cache, rows, labels, batch_size, message):
    with pytest.raises(ValueError, match=message):
        FaceBatches(cache, rows, labels, batch_size, shuffle=False)


def test_loader_and_transforms_use_only_backend_neutral_keras():
    """Keras's own ops and layers, so the same pipeline runs on TensorFlow, JAX and PyTorch."""
    for module in ("loader.py", "transforms.py", "cache.py"):
        tree = ast.parse(Path(REPO_ROOT, "data", module).read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
        }
        assert not imported & {"tensorflow", "jax", "torch"}, module
