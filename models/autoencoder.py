"""The report's autoencoder classifier (section 3.5.3): encoder -> latent vector -> decoder,
with a 2-way classifier on the latent vector, trained on a joint loss.

The trial compiles every model with one classification loss on its softmax output, so the
reconstruction term lives inside the model: ``ReconstructionLoss`` adds
``reconstruction_weight * mean squared error(decoder output, encoder input)`` through
``add_loss`` and passes the class probabilities through unchanged. ``inference_model``
drops the decoder for classification.

Inputs are already normalised by the data layer; the decoder reconstructs those normalised
values (linear output), so the model never normalises by itself.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from models.layers import softmax_classifier
from models.registry import ModelOptionError, build_variant, is_integer, register_model
from models.weights import check_weights_option, load_whole_model_weights

# The report's encoder is "a simple CNN feature extractor" whose code was not published:
# six stride-2 3x3 stages take 256x256 to 4x4x256 and give ~3.3M parameters at latent 128,
# the report's "~3 Million".
ENCODER_FILTERS = (32, 64, 128, 128, 256, 256)
DOWNSAMPLING = 2 ** len(ENCODER_FILTERS)
CLASSIFIER_LAYER = "classifier"
ENCODER_INPUT_LAYER = "image"


@keras.saving.register_keras_serializable(package="adience_bench")
class ReconstructionLoss(keras.layers.Layer):
    """Adds ``weight * MSE(reconstruction, image)`` to the model's losses; returns ``passthrough``.

    Called as ``ReconstructionLoss(weight)([passthrough, image, reconstruction])``: routing the
    classifier output through it keeps the decoder in the graph of a one-output model.
    """

    def __init__(self, weight: float = 1.0, **kwargs):
        # float32 under a mixed policy too: the probabilities it passes through stay float32
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.weight = float(weight)

    def call(self, inputs):
        passthrough, image, reconstruction = inputs
        error = ops.mean(ops.square(ops.cast(reconstruction, "float32") - ops.cast(image, "float32")))
        self.add_loss(self.weight * error)
        return passthrough

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}


def build_autoencoder(
    input_size: int = 256,
    latent_size: int = 128,
    reconstruction_weight: float = 1.0,
    num_classes: int = 2,
    dropout: float = 0.5,
    weights: str | None = None,
    name: str = "autoencoder",
) -> keras.Model:
    """Convolutional autoencoder with a classifier on its latent vector (uncompiled).

    ``input_size`` must be a multiple of 64 (six stride-2 stages, mirrored by the decoder).
    """
    if not is_integer(input_size) or input_size < DOWNSAMPLING or input_size % DOWNSAMPLING:
        raise ModelOptionError(f"{name}: input_size must be a multiple of {DOWNSAMPLING}, got {input_size!r}")
    if not is_integer(latent_size) or latent_size <= 0:
        raise ModelOptionError(f"{name}: latent_size must be an integer > 0, got {latent_size!r}")
    if not isinstance(reconstruction_weight, (int, float)) or reconstruction_weight < 0:
        raise ModelOptionError(f"{name}: reconstruction_weight must be >= 0, got {reconstruction_weight!r}")
    if not is_integer(num_classes) or num_classes < 2:
        raise ModelOptionError(f"{name}: num_classes must be an integer >= 2, got {num_classes!r}")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ModelOptionError(f"{name}: dropout must be in [0, 1), got {dropout!r}")
    check_weights_option(name, weights, backbone=False)

    image = keras.Input((input_size, input_size, 3), name=ENCODER_INPUT_LAYER)
    x = image
    for stage, filters in enumerate(ENCODER_FILTERS, start=1):
        x = layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu", name=f"encoder_conv{stage}")(x)
    code_shape = tuple(x.shape[1:])
    x = layers.Flatten(name="encoder_flatten")(x)
    latent = layers.Dense(latent_size, activation="relu", name="latent")(x)

    y = layers.Dense(code_shape[0] * code_shape[1] * code_shape[2], activation="relu", name="decoder_dense")(latent)
    y = layers.Reshape(code_shape, name="decoder_reshape")(y)
    decoder_filters = list(reversed(ENCODER_FILTERS))[1:] + [3]
    for stage, filters in enumerate(decoder_filters, start=1):
        last = stage == len(decoder_filters)
        y = layers.Conv2DTranspose(
            filters,
            3,
            strides=2,
            padding="same",
            activation=None if last else "relu",
            name="reconstruction" if last else f"decoder_deconv{stage}",
        )(y)

    z = layers.Dropout(dropout, name="classifier_dropout")(latent)
    probabilities = softmax_classifier(z, num_classes, CLASSIFIER_LAYER)
    outputs = ReconstructionLoss(reconstruction_weight, name="reconstruction_loss")([probabilities, image, y])
    return load_whole_model_weights(keras.Model(image, outputs, name=name), weights)


def inference_model(model: keras.Model) -> keras.Model:
    """The classifier path of a built autoencoder, without the decoder (shares its weights)."""
    try:
        classifier = model.get_layer(f"{CLASSIFIER_LAYER}_softmax")  # softmax_classifier's probabilities
    except ValueError:
        raise ModelOptionError(f"{model.name}: not an autoencoder built by models.autoencoder") from None
    return keras.Model(model.input, classifier.output, name=f"{model.name}_inference")


@register_model("autoencoder", default_input_size=256, description="Conv autoencoder + latent classifier, joint loss")
def autoencoder(**options) -> keras.Model:
    """Autoencoder classifier of report 3.5.3 (latent 128): joint reconstruction + class loss."""
    return build_variant(build_autoencoder, "autoencoder", options, name="autoencoder")
