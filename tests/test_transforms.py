import numpy as np
import pytest
import tensorflow as tf

from data.transforms import PerImageStandardization, Preprocessing


def test_per_image_standardisation_equals_tensorflow():
    images = np.random.default_rng(0).uniform(0, 255, size=(3, 20, 20, 3)).astype("float32")
    images[2] = 17.0  # a constant image: TensorFlow's minimum stddev applies
    ours = np.asarray(PerImageStandardization()(images))
    theirs = tf.image.per_image_standardization(images).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_evaluation_is_a_deterministic_centre_crop():
    images = np.random.default_rng(1).uniform(0, 255, size=(2, 256, 256, 3)).astype("float32")
    layer = Preprocessing("report", "per_image", seed=0)
    first = np.asarray(layer(images, training=False))
    second = np.asarray(layer(images, training=False))
    np.testing.assert_array_equal(first, second)
    expected = tf.image.per_image_standardization(images[:, 14:241, 14:241]).numpy()
    np.testing.assert_allclose(first, expected, atol=1e-5)


def test_training_augments_to_the_crop_size():
    images = np.random.default_rng(2).uniform(0, 255, size=(4, 256, 256, 3)).astype("float32")
    layer = Preprocessing("report", "per_image", seed=0)
    out = np.asarray(layer(images, training=True))
    assert out.shape == (4, 227, 227, 3)
    centre = np.asarray(layer(images, training=False))
    assert not np.allclose(out, centre)
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0, atol=1e-4)


def test_unknown_policy_and_normalisation():
    with pytest.raises(ValueError, match="unknown preprocessing policy"):
        Preprocessing("zoom")
    with pytest.raises(ValueError, match="unknown normalisation"):
        Preprocessing("report", "minmax")
