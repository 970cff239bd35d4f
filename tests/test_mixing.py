"""Host-side MixUp / CutMix (data/mixing.py): determinism, label weights that match the pixels, bad input."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from data.mixing import BatchMixing

DARK, BRIGHT = 0, 200


def random_batch(n=8, h=12, w=10, c=3, num_classes=5, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=n)
    return images, labels


def two_tone_batch(n=2, h=12, w=20, c=3):
    """Even images all DARK (class 0), odd ones all BRIGHT (class 1)."""
    images = np.zeros((n, h, w, c), np.uint8)
    images[1::2] = BRIGHT
    labels = np.arange(n) % 2
    return images, labels


def mixers():
    return [
        BatchMixing(num_classes=5, mixup_alpha=0.2, seed=3),
        BatchMixing(num_classes=5, cutmix_alpha=1.0, seed=3),
        BatchMixing(num_classes=5, mixup_alpha=0.2, cutmix_alpha=1.0, seed=3),
    ]


@pytest.mark.parametrize("mixing", mixers(), ids=lambda m: m.describe())
def test_same_seed_epoch_index_same_batch_and_other_index_differs(mixing):
    images, labels = random_batch()
    first = mixing.apply(images, labels, epoch=2, index=7)
    again = BatchMixing(**vars(mixing)).apply(images, labels, epoch=2, index=7)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    for key in ({"epoch": 2, "index": 8}, {"epoch": 3, "index": 7}):
        other = mixing.apply(images, labels, **key)
        assert not np.array_equal(first[1], other[1]), key


def test_threads_reading_batches_in_any_order_get_the_same_mixing():
    mixing = BatchMixing(num_classes=5, mixup_alpha=0.4, cutmix_alpha=1.0, seed=11)
    images, labels = random_batch(n=6)
    serial = [mixing.apply(images, labels, 0, index) for index in range(12)]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda index: mixing.apply(images, labels, 0, index), reversed(range(12))))
    for (image_a, soft_a), (image_b, soft_b) in zip(serial, reversed(threaded), strict=True):
        np.testing.assert_array_equal(image_a, image_b)
        np.testing.assert_array_equal(soft_a, soft_b)


@pytest.mark.parametrize("mixing", mixers(), ids=lambda m: m.describe())
def test_dtypes_shapes_and_rows_summing_to_one(mixing):
    images, labels = random_batch(n=8, h=12, w=10, c=3)
    for index in range(10):
        mixed, soft = mixing.apply(images, labels, epoch=0, index=index)
        assert mixed.dtype == np.uint8 and mixed.shape == images.shape
        assert soft.dtype == np.float32 and soft.shape == (8, 5)
        np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-6)
        assert (soft >= 0).all()


def test_mixup_pixel_values_are_the_label_weights_times_the_values():
    mixing = BatchMixing(num_classes=3, mixup_alpha=1.0, seed=5)
    images, labels = two_tone_batch(n=2)
    blended = 0
    for index in range(30):
        mixed, soft = mixing.apply(images, labels, epoch=1, index=index)
        assert (soft[:, 2] == 0).all()
        for i in range(2):
            value = mixed[i].ravel()
            assert (value == value[0]).all()  # one lambda for the whole image
            expected = soft[i, 0] * DARK + soft[i, 1] * BRIGHT
            assert abs(int(value[0]) - expected) <= 0.5 + 1e-3, (index, i, value[0], soft[i])
            blended += DARK < value[0] < BRIGHT
    assert blended > 0  # some batches really were mixed


def test_cutmix_fraction_from_partner_is_the_partner_label_weight():
    mixing = BatchMixing(num_classes=3, cutmix_alpha=1.0, seed=5)
    images, labels = two_tone_batch(n=2, h=12, w=20)
    partial = 0
    for index in range(30):
        mixed, soft = mixing.apply(images, labels, epoch=1, index=index)
        assert set(np.unique(mixed)) <= {DARK, BRIGHT}  # pixels are copied, never blended
        for i in range(2):
            bright_fraction = (mixed[i] == BRIGHT).mean()
            assert soft[i, 1] == pytest.approx(bright_fraction, abs=1e-6), (index, i)
            assert soft[i, 0] == pytest.approx(1 - bright_fraction, abs=1e-6), (index, i)
            partial += 0 < bright_fraction < 1
        # the same box for the whole batch: the two images swapped the same pixels
        np.testing.assert_array_equal(mixed[0] == BRIGHT, mixed[1] == DARK)
    assert partial > 0


def test_inputs_are_not_modified():
    images, labels = random_batch()
    images_before, labels_before = images.copy(), labels.copy()
    for mixing in mixers():
        for index in range(6):
            mixed, _ = mixing.apply(images, labels, epoch=0, index=index)
            assert not np.shares_memory(mixed, images)
    np.testing.assert_array_equal(images, images_before)
    np.testing.assert_array_equal(labels, labels_before)


@pytest.mark.parametrize("mixing", mixers(), ids=lambda m: m.describe())
def test_batch_of_one_is_returned_unmixed_with_one_hot_labels(mixing):
    images, labels = random_batch(n=1)
    mixed, soft = mixing.apply(images, labels, epoch=0, index=0)
    np.testing.assert_array_equal(mixed, images)
    assert not np.shares_memory(mixed, images)
    np.testing.assert_array_equal(soft, np.eye(5, dtype=np.float32)[labels])


def test_both_alphas_give_mixup_and_cutmix_batches():
    mixing = BatchMixing(num_classes=2, mixup_alpha=1.0, cutmix_alpha=1.0, seed=0)
    images, labels = two_tone_batch(n=4)
    kinds = []
    for index in range(64):
        mixed, _ = mixing.apply(images, labels, epoch=0, index=index)
        blended = not set(np.unique(mixed)) <= {DARK, BRIGHT}  # MixUp's in-between values
        patched = any(len(np.unique(image)) > 1 for image in mixed)  # CutMix's box of the partner
        assert not (blended and patched), index
        kinds.append("mixup" if blended else "cutmix" if patched else "neither")
    assert kinds.count("mixup") > 10 and kinds.count("cutmix") > 10, kinds


def test_soft_labels_are_one_hot():
    mixing = BatchMixing(num_classes=4, mixup_alpha=0.2)
    soft = mixing.soft_labels(np.array([3, 0, 2]))
    assert soft.dtype == np.float32
    np.testing.assert_array_equal(soft, [[0, 0, 0, 1], [1, 0, 0, 0], [0, 0, 1, 0]])


def test_describe():
    assert BatchMixing(num_classes=2, mixup_alpha=0.2).describe() == "MixUp alpha 0.2"
    assert BatchMixing(num_classes=2, cutmix_alpha=1.0).describe() == "CutMix alpha 1"
    both = BatchMixing(num_classes=2, mixup_alpha=0.2, cutmix_alpha=1.0).describe()
    assert both == "MixUp alpha 0.2 or CutMix alpha 1 (one per batch)"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"num_classes": 1, "mixup_alpha": 0.2}, "num_classes"),
        ({"num_classes": 3, "mixup_alpha": -0.1}, "mixup_alpha"),
        ({"num_classes": 3, "cutmix_alpha": -1.0}, "cutmix_alpha"),
        ({"num_classes": 3, "mixup_alpha": math.nan}, "mixup_alpha"),
        ({"num_classes": 3, "cutmix_alpha": math.inf}, "cutmix_alpha"),
        ({"num_classes": 3}, "mixup_alpha"),
        ({"num_classes": 3, "mixup_alpha": 0.0, "cutmix_alpha": 0.0}, "cutmix_alpha"),
        ({"num_classes": 3, "mixup_alpha": 0.2, "seed": -1}, "seed"),
    ],
)
def test_bad_configuration_raises_one_line_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field) as error:
        BatchMixing(**kwargs)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("bad", [[0, 3], [-1, 0]])
def test_labels_out_of_range_raise(bad):
    mixing = BatchMixing(num_classes=3, mixup_alpha=0.2)
    images, _ = random_batch(n=2)
    with pytest.raises(ValueError, match="num_classes"):
        mixing.apply(images, np.array(bad), epoch=0, index=0)
    with pytest.raises(ValueError, match="num_classes"):
        mixing.soft_labels(np.array(bad))


def test_bad_batches_raise():
    mixing = BatchMixing(num_classes=5, cutmix_alpha=1.0)
    images, labels = random_batch(n=4)
    with pytest.raises(ValueError, match="images"):
        mixing.apply(images.astype(np.float32), labels, epoch=0, index=0)
    with pytest.raises(ValueError, match="images"):
        mixing.apply(images[0], labels, epoch=0, index=0)
    with pytest.raises(ValueError, match="labels"):
        mixing.apply(images, labels[:3], epoch=0, index=0)
    with pytest.raises(ValueError, match="labels"):
        mixing.apply(images, labels.astype(np.float32), epoch=0, index=0)
    with pytest.raises(ValueError, match="index"):
        mixing.apply(images, labels, epoch=0, index=-1)
