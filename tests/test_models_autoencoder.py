"""The autoencoder classifier: layout, the joint loss inside the model, the inference model."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import models
from bench.trial.flops import forward_flops
from models.autoencoder import ENCODER_FILTERS, ReconstructionLoss, inference_model

pytestmark = pytest.mark.backends

SMALL = 64  # six stride-2 stages: the smallest input


def _smooth_images(count: int, size: int, seed: int) -> np.ndarray:
    """Standardised low-frequency images: structure a small autoencoder can learn quickly."""
    coarse = np.random.default_rng(seed).normal(size=(count, 4, 4, 3)).astype("float32")
    return keras.ops.convert_to_numpy(keras.ops.image.resize(coarse, (size, size), interpolation="bilinear"))


def _decoder(model: keras.Model) -> keras.Model:
    return keras.Model(model.input, model.get_layer("reconstruction").output)


def _reconstruction_error(model: keras.Model, images: np.ndarray) -> float:
    return float(np.mean((keras.ops.convert_to_numpy(_decoder(model)(images, training=False)) - images) ** 2))


def _like_the_trial(network: keras.Model, learning_rate: float = 1e-3) -> keras.Model:
    """Wrapped and compiled as bench/trial/fit.py does: one classification loss, nothing else."""
    images = keras.Input(network.input.shape[1:])
    model = keras.Model(images, network(keras.layers.Identity()(images)))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy")
    return model


def test_encoder_latent_decoder_layout():
    model = models.create_model("autoencoder")
    assert model.get_layer("latent").units == 128
    assert tuple(model.get_layer(f"encoder_conv{len(ENCODER_FILTERS)}").output.shape[1:]) == (4, 4, 256)
    assert tuple(model.get_layer("reconstruction").output.shape) == (None, 256, 256, 3)
    assert model.get_layer("reconstruction").activation is keras.activations.linear  # normalised values can be < 0


def test_latent_size_sets_the_bottleneck():
    small = models.create_model("autoencoder", input_size=SMALL, latent_size=16)
    large = models.create_model("autoencoder", input_size=SMALL, latent_size=32)
    code = 1 * 1 * ENCODER_FILTERS[-1]  # 64 / 2**6 = 1
    per_latent_unit = code + 1 + code + 2  # encoder Dense in + bias, decoder Dense out, classifier
    assert large.count_params() - small.count_params() == 16 * per_latent_unit


def test_reconstruction_term_is_part_of_the_compiled_loss():
    keras.utils.set_random_seed(3)
    network = models.create_model("autoencoder", input_size=SMALL, latent_size=8, reconstruction_weight=2.5)
    model = _like_the_trial(network)
    images, labels = _smooth_images(8, SMALL, seed=0), np.arange(8) % 2
    probabilities = keras.ops.convert_to_numpy(network(images, training=False))
    cross_entropy = float(np.mean(-np.log(probabilities[np.arange(8), labels])))
    expected = cross_entropy + 2.5 * _reconstruction_error(network, images)
    assert model.evaluate(images, labels, batch_size=8, verbose=0) == pytest.approx(expected, rel=1e-4)


@pytest.mark.slow
def test_training_reduces_the_reconstruction_error_only_when_it_is_weighted():
    # an offset the decoder can learn in a few steps, when (and only when) its loss is trained; at
    # Adam's default rate: at 1e-2 some seeds' losses jump into the thousands, on either backend
    images, labels = 1.0 + 0.3 * _smooth_images(16, SMALL, seed=1), np.arange(16) % 2
    errors, decoder_moved = {}, {}
    for weight in (1.0, 0.0):
        keras.utils.set_random_seed(4)
        network = models.create_model("autoencoder", input_size=SMALL, latent_size=8, reconstruction_weight=weight)
        decoder_before = [w.copy() for w in network.get_layer("reconstruction").get_weights()]
        before = _reconstruction_error(network, images)
        _like_the_trial(network).fit(images, labels, epochs=40, batch_size=16, verbose=0)
        errors[weight] = _reconstruction_error(network, images) / before
        after = network.get_layer("reconstruction").get_weights()
        decoder_moved[weight] = not all(np.array_equal(a, b) for a, b in zip(decoder_before, after, strict=True))
    assert errors[1.0] < 0.6 and errors[0.0] > 0.95, errors
    assert decoder_moved == {1.0: True, 0.0: False}  # weight 0: the decoder gets no gradient at all


def test_inference_model_drops_the_decoder_and_predicts_the_same():
    model = models.create_model("autoencoder", input_size=SMALL, latent_size=16)
    classifier = inference_model(model)
    assert not any(isinstance(layer, (keras.layers.Conv2DTranspose, ReconstructionLoss)) for layer in classifier.layers)
    images = _smooth_images(4, SMALL, seed=2)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model(images)), keras.ops.convert_to_numpy(classifier(images))
    )
    assert classifier.count_params() < model.count_params()
    assert forward_flops(classifier) < forward_flops(model)
    default = inference_model(models.create_model("autoencoder"))
    assert default.count_params() == 1_650_754


def test_inference_model_refuses_other_models():
    with pytest.raises(models.ModelOptionError, match="not an autoencoder"):
        inference_model(models.create_model("levi_hassner"))


def test_saved_autoencoder_loads_back_with_its_loss_layer(tmp_path):
    model = models.create_model("autoencoder", input_size=SMALL, latent_size=8, reconstruction_weight=0.5)
    model.save(tmp_path / "autoencoder.keras")
    loaded = keras.saving.load_model(tmp_path / "autoencoder.keras")
    assert loaded.get_layer("reconstruction_loss").weight == 0.5
    images = _smooth_images(2, SMALL, seed=5)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(images)), keras.ops.convert_to_numpy(loaded(images)))
    weights_only = models.create_model(
        "autoencoder", input_size=SMALL, latent_size=8, weights=str(tmp_path / "autoencoder.keras")
    )
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(model(images)), keras.ops.convert_to_numpy(weights_only(images))
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"input_size": 227}, "input_size must be a multiple of 64"),
        ({"input_size": 32}, "input_size must be a multiple of 64"),
        ({"latent_size": 0}, "latent_size must be an integer > 0"),
        ({"latent_size": 12.5}, "latent_size must be an integer > 0"),
        ({"reconstruction_weight": -1}, "reconstruction_weight must be >= 0"),
        ({"frozen": "all"}, "unknown option frozen"),
    ],
)
def test_invalid_options_are_refused(options, message):
    with pytest.raises(models.ModelOptionError, match=message):
        models.create_model("autoencoder", **options)
