"""Preprocessing policies and normalisations: what each one does to a batch of faces."""

import keras
import numpy as np
import pytest
from keras.ops import convert_to_numpy

import models
from data.policies import BUILT_IN, declare_policy
from data.transforms import (
    NORMALISATIONS,
    PerImageStandardization,
    Preprocessing,
    RandomCropPerImage,
    augmentation_layers,
)

pytestmark = pytest.mark.backends


def coordinate_images(count, size=256):
    """Images whose pixel (y, x) holds (y, x, 0): a crop's offset can be read off its corner."""
    yy, xx = np.mgrid[0:size, 0:size].astype("float32")
    image = np.stack([yy, xx, np.zeros_like(yy)], axis=-1)
    return np.repeat(image[None], count, axis=0)


def layer_named(policy, name, seed=0):
    (layer,) = [layer for layer in augmentation_layers(BUILT_IN[policy], 256, seed) if layer.name == name]
    return layer


def test_per_image_standardisation_equals_tensorflow():
    tf = pytest.importorskip("tensorflow")  # the reference op, on any Keras backend
    images = np.random.default_rng(0).uniform(0, 255, size=(3, 20, 20, 3)).astype("float32")
    images[2] = 17.0  # a constant image: TensorFlow's minimum stddev applies
    ours = convert_to_numpy(PerImageStandardization()(images))
    theirs = tf.image.per_image_standardization(images).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_report_policy_evaluation_is_a_deterministic_centre_crop():
    tf = pytest.importorskip("tensorflow")  # the reference op, on any Keras backend
    images = np.random.default_rng(1).uniform(0, 255, size=(2, 256, 256, 3)).astype("float32")
    layer = Preprocessing("report", "per_image", seed=0)
    first = convert_to_numpy(layer(images, training=False))
    second = convert_to_numpy(layer(images, training=False))
    np.testing.assert_array_equal(first, second)
    expected = tf.image.per_image_standardization(images[:, 14:241, 14:241]).numpy()
    np.testing.assert_allclose(first, expected, atol=1e-5)


def test_report_crop_positions_vary_per_image_and_per_call():
    crop = layer_named("report", "random_crop")
    images = coordinate_images(16)
    offsets = set()
    for _ in range(4):
        out = convert_to_numpy(crop(images, training=True))
        assert out.shape == (16, 227, 227, 3)
        tops, lefts = out[:, 0, 0, 0], out[:, 0, 0, 1]
        # every crop is a contiguous window of the original
        np.testing.assert_array_equal(out[:, -1, -1, 0], tops + 226)
        np.testing.assert_array_equal(out[:, -1, -1, 1], lefts + 226)
        assert tops.min() >= 0 and tops.max() <= 29 and lefts.min() >= 0 and lefts.max() <= 29
        assert len(set(zip(tops, lefts, strict=True))) > 1, "one offset for the whole batch (Keras RandomCrop)"
        offsets.update(zip(tops, lefts, strict=True))
    assert len(offsets) > 30


def test_report_validation_crop_is_centred():
    out = convert_to_numpy(Preprocessing("report", "none")(coordinate_images(3), training=False))
    assert out.shape == (3, 227, 227, 3)
    np.testing.assert_array_equal(out[:, 0, 0, :2], [[14, 14]] * 3)
    np.testing.assert_array_equal(out[:, -1, -1, :2], [[240, 240]] * 3)


def test_report_flips_are_independent_horizontal_and_vertical():
    images = coordinate_images(64, size=8)
    seen = set()
    horizontal = layer_named("report", "horizontal_flip")
    vertical = layer_named("report", "vertical_flip")
    out = convert_to_numpy(vertical(horizontal(images, training=True), training=True))
    for image in out:
        corner = (int(image[0, 0, 0]), int(image[0, 0, 1]))
        variants = {(0, 0): image, (0, 7): image[:, ::-1], (7, 0): image[::-1], (7, 7): image[::-1, ::-1]}
        np.testing.assert_array_equal(variants[corner], images[0])  # a flip, nothing else
        seen.add(corner)
    # all four: Keras's "horizontal_and_vertical" would give only the identity and 180 degrees
    assert seen == {(0, 0), (0, 7), (7, 0), (7, 7)}


def test_report_brightness_shifts_within_63_of_255():
    brightness = layer_named("report", "brightness")
    images = np.full((256, 4, 4, 3), 128.0, "float32")
    deltas = convert_to_numpy(brightness(images, training=True))[:, 0, 0, 0] - 128
    assert np.all(np.abs(deltas) <= 63 + 1e-3)
    assert deltas.min() < -40 and deltas.max() > 40  # the whole range is used
    np.testing.assert_array_equal(convert_to_numpy(brightness(images, training=False)), images)


def test_report_contrast_factor_is_between_0_2_and_1_8():
    contrast = layer_named("report", "contrast")
    rng = np.random.default_rng(3)
    images = rng.uniform(100, 156, size=(256, 8, 8, 3)).astype("float32")  # far from clipping
    out = convert_to_numpy(contrast(images, training=True))
    centred_in = images - images.mean(axis=(1, 2), keepdims=True)
    centred_out = out - out.mean(axis=(1, 2), keepdims=True)
    factors = (centred_out * centred_in).sum(axis=(1, 2, 3)) / np.square(centred_in).sum(axis=(1, 2, 3))
    assert factors.min() >= 0.2 - 1e-4 and factors.max() <= 1.8 + 1e-4
    assert factors.min() < 0.4 and factors.max() > 1.6


def test_report_training_output_is_standardised_crops():
    images = np.random.default_rng(2).uniform(0, 255, size=(4, 256, 256, 3)).astype("float32")
    layer = Preprocessing("report", "per_image", seed=0)
    out = convert_to_numpy(layer(images, training=True))
    assert out.shape == (4, 227, 227, 3)
    assert not np.allclose(out, convert_to_numpy(layer(images, training=False)))
    np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=(1, 2, 3)), 1, atol=1e-3)


def test_nocrop_keeps_256_and_still_augments():
    images = coordinate_images(8)
    layer = Preprocessing("nocrop", "none", seed=1)
    assert layer.compute_output_shape((None, 256, 256, 3)) == (None, 256, 256, 3)
    np.testing.assert_array_equal(convert_to_numpy(layer(images, training=False)), images)
    trained = convert_to_numpy(layer(images, training=True))
    assert trained.shape == (8, 256, 256, 3) and not np.allclose(trained, images)
    assert not [layer for layer in augmentation_layers(BUILT_IN["nocrop"], 256, 0) if "crop" in layer.name]


def test_autoencoder_extra_adds_rotation_translation_shear_and_noise():
    report = [layer.name for layer in augmentation_layers(BUILT_IN["report"], 256, 0)]
    extra = [layer.name for layer in augmentation_layers(BUILT_IN["autoencoder-extra"], 256, 0)]
    assert set(extra) - set(report) == {"rotation", "translation", "shear", "gaussian_noise"}
    assert set(report) <= set(extra)
    flat = np.full((8, 256, 256, 3), 100.0, "float32")
    noise = layer_named("autoencoder-extra", "gaussian_noise")
    noisy = convert_to_numpy(noise(flat, training=True))
    assert 4.0 < (noisy - flat).std() < 6.0
    np.testing.assert_array_equal(convert_to_numpy(noise(flat, training=False)), flat)
    # the geometric layers move pixels; evaluation is the plain centre crop
    images = coordinate_images(4)
    rotated = convert_to_numpy(layer_named("autoencoder-extra", "rotation")(images, training=True))
    assert not np.allclose(rotated, images)
    out = convert_to_numpy(Preprocessing("autoencoder-extra", "none")(images, training=False))
    np.testing.assert_array_equal(out, images[:, 14:241, 14:241])


def test_minus_one_to_one_is_resnet_v2_preprocess_input():
    images = np.random.default_rng(4).uniform(0, 255, size=(2, 256, 256, 3)).astype("float32")
    ours = convert_to_numpy(Preprocessing("nocrop", "minus_one_to_one")(images, training=False))
    theirs = keras.applications.resnet_v2.preprocess_input(images.copy())
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert ours.min() >= -1 and ours.max() <= 1


def test_none_passes_raw_pixels_as_mobilenet_and_efficientnet_expect():
    images = np.random.default_rng(5).uniform(0, 255, size=(2, 256, 256, 3)).astype("float32")
    out = convert_to_numpy(Preprocessing("nocrop", "none")(images.astype("uint8"), training=False))
    np.testing.assert_array_equal(out, images.astype("uint8").astype("float32"))
    # these networks rescale inside: their preprocess_input is a pass-through
    for module in (keras.applications.mobilenet_v3, keras.applications.efficientnet_v2):
        np.testing.assert_array_equal(module.preprocess_input(images.copy()), images)
    entries = {name: models.get_model_entry(name).normalisation for name in models.list_models()}
    assert entries["mobilenet_v3_large"] == entries["efficientnet_v2_m"] == "none"
    assert entries["resnet50_v2"] == "minus_one_to_one" and entries["levi_hassner"] == "per_image"
    assert set(entries.values()) <= set(NORMALISATIONS)


def test_per_channel_uses_the_given_statistics():
    images = np.random.default_rng(6).uniform(0, 255, size=(2, 256, 256, 3)).astype("float32")
    mean, std = [100.0, 110.0, 120.0], [50.0, 60.0, 70.0]
    out = convert_to_numpy(Preprocessing("nocrop", "per_channel", channel_mean=mean, channel_std=std)(images))
    np.testing.assert_allclose(out, (images - mean) / np.array(std), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="needs channel_mean and channel_std of the training split"):
        Preprocessing("report", "per_channel")


def test_preprocessing_survives_a_save_and_load(tmp_path):
    inputs = keras.Input((256, 256, 3))
    layer = Preprocessing("report", "per_channel", seed=3, channel_mean=[1, 2, 3], channel_std=[4, 5, 6])
    model = keras.Model(inputs, layer(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    images = np.random.default_rng(7).uniform(0, 255, size=(1, 256, 256, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-5)


def test_uint8_input_gives_the_same_values_as_float_input():
    images = np.random.default_rng(8).integers(0, 256, size=(2, 256, 256, 3)).astype("uint8")
    for policy in BUILT_IN:
        layer = Preprocessing(policy, "per_image", seed=0)
        # equal up to the order of the standardisation's sums (PyTorch reduces a cropped view differently)
        np.testing.assert_allclose(
            convert_to_numpy(layer(images, training=False)),
            convert_to_numpy(layer(images.astype("float32"), training=False)),
            rtol=1e-6,
            atol=1e-6,
        )
        assert convert_to_numpy(layer(images, training=True)).dtype == np.float32


def test_crop_larger_than_the_image_is_refused():
    with pytest.raises(ValueError, match="cannot crop 227 x 227 from 100 x 100"):
        RandomCropPerImage(227)(np.zeros((1, 100, 100, 3), "float32"), training=True)


def test_unknown_policy_and_normalisation():
    with pytest.raises(ValueError, match="unknown policy 'zoom'"):
        Preprocessing("zoom")
    with pytest.raises(ValueError, match="unknown normalisation"):
        Preprocessing("report", "minmax")


def test_none_policy_leaves_images_as_they_are_in_training_and_validation():
    images = coordinate_images(3, size=32)
    layer = Preprocessing("none", "none", seed=0, image_size=32)
    for training in (True, False):
        np.testing.assert_array_equal(convert_to_numpy(layer(images, training=training)), images)
    assert augmentation_layers(BUILT_IN["none"], 32) == []


def test_a_fractional_crop_is_a_share_of_the_cached_side():
    policy = declare_policy("light", {"crop": 0.75, "horizontal_flip": True})
    layer = Preprocessing(policy, "none", seed=0, image_size=32)
    images = coordinate_images(4, size=32)
    assert convert_to_numpy(layer(images, training=True)).shape == (4, 24, 24, 3)
    np.testing.assert_array_equal(convert_to_numpy(layer(images, training=False)), images[:, 4:28, 4:28])
    with pytest.raises(ValueError, match="preprocessing for 32 px images got images of shape"):
        layer(coordinate_images(1, size=64))


def test_declared_policy_builds_keras_layers_for_each_key():
    table = {"rotation": 10, "zoom": 0.1, "translation": [-0.05, 0.1], "brightness": 0.2, "contrast": [0.5, 1.5]}
    table |= {"noise": 3.0, "randaugment": True, "vertical_flip": True}
    names = [layer.name for layer in augmentation_layers(declare_policy("heavy", table), 64, seed=1)]
    assert names == [
        "rotation",
        "zoom",
        "translation",
        "vertical_flip",
        "randaugment",
        "brightness",
        "contrast",
        "gaussian_noise",
    ]
    contrast = layer_of(declare_policy("c", {"contrast": [0.5, 1.5]}), "contrast")
    assert tuple(contrast.factor) == (0.5, 0.5)  # Keras's (lower, upper): factors from [1 - 0.5, 1 + 0.5]
    rotation = layer_of(declare_policy("r", {"rotation": [-30, 10]}), "rotation")
    np.testing.assert_allclose(rotation.factor, (-30 / 360, 10 / 360))
    images = np.random.default_rng(9).integers(0, 256, size=(4, 64, 64, 3)).astype("uint8")
    layer = Preprocessing(declare_policy("heavy", table), "per_image", seed=2, image_size=64)
    trained = convert_to_numpy(layer(images, training=True))
    assert trained.shape == (4, 64, 64, 3) and np.isfinite(trained).all()


def layer_of(policy, name):
    (layer,) = [layer for layer in augmentation_layers(policy, 64, 0) if layer.name == name]
    return layer


def test_a_declared_policy_survives_a_save_and_load(tmp_path):
    policy = declare_policy("light", {"crop": 24, "horizontal_flip": True, "brightness": [-0.1, 0.2]})
    inputs = keras.Input((32, 32, 3))
    model = keras.Model(inputs, Preprocessing(policy, "per_image", seed=3, image_size=32)(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.layers[1].policy == policy and loaded.layers[1].image_size == 32
    images = np.random.default_rng(7).uniform(0, 255, size=(1, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-5)
