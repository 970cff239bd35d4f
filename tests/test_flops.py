"""bench.trial.flops: forward FLOPs per image from the Keras layers, multiply-add = 2 FLOPs, and
training FLOPs from what trains.

Each rule against a figure worked out by hand, then whole models against TensorFlow's
profiler (tests/flops_reference.py): within 3%."""

from __future__ import annotations

import keras
import pytest
from keras import layers

import models
from bench.trial.flops import FlopsError, forward_flops, training_flops

pytestmark = pytest.mark.backends
# TensorFlow's profiler traces the model as a tf.function: only a model built on that backend
tensorflow_only = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the reference is TensorFlow's profiler, which traces the model as a tf.function: TensorFlow backend only",
)


def _flops(input_shape, *stack) -> int:
    inputs = keras.Input(input_shape)
    x = inputs
    for layer in stack:
        x = layer(x)
    return forward_flops(keras.Model(inputs, x))


def test_conv2d_counts_multiply_adds_twice_plus_bias_and_activation():
    # 8x8 output, 4 filters, 3x3x6 window: 256 * 54 multiply-adds; bias and ReLU 1 each per output
    assert _flops((10, 10, 6), layers.Conv2D(4, 3, activation="relu")) == 2 * 256 * 54 + 256 + 256
    assert _flops((10, 10, 6), layers.Conv2D(4, 3, use_bias=False)) == 2 * 256 * 54


def test_grouped_convolution_sees_a_group_of_the_input_channels():
    assert _flops((10, 10, 6), layers.Conv2D(4, 3, groups=2, use_bias=False)) == 2 * 256 * 27


def test_strided_same_padding_convolution_counts_its_output_positions():
    assert _flops((9, 9, 3), layers.Conv2D(2, 3, strides=2, padding="same", use_bias=False)) == 2 * (5 * 5 * 2) * 27


def test_depthwise_and_separable_convolutions():
    # depthwise: 6x6 positions, 3 channels x 2 multiplier, 3x3 window
    assert _flops((8, 8, 3), layers.DepthwiseConv2D(3, depth_multiplier=2, use_bias=False)) == 2 * 36 * 6 * 9
    # separable: that depthwise step, then a 1x1 from 6 to 5 channels at each of the 36 positions
    separable = layers.SeparableConv2D(5, 3, depth_multiplier=2, use_bias=False)
    assert _flops((8, 8, 3), separable) == 2 * (36 * 6 * 9 + 36 * 6 * 5)


def test_transposed_convolution_meets_the_kernel_once_per_input_value():
    transposed = layers.Conv2DTranspose(4, 3, strides=2, padding="same", use_bias=False)
    assert _flops((5, 5, 6), transposed) == 2 * (5 * 5 * 6) * 9 * 4


def test_dense_on_vectors_and_on_sequences():
    assert _flops((10,), layers.Dense(3)) == 2 * 30 + 3
    assert _flops((7, 10), layers.Dense(3, use_bias=False)) == 7 * 2 * 30


def test_pooling_normalisation_and_free_layers():
    assert _flops((8, 8, 2), layers.MaxPooling2D(2)) == 4 * 4 * 2 * 4
    assert _flops((8, 8, 2), layers.AveragePooling2D(3, strides=1)) == 6 * 6 * 2 * 9
    assert _flops((8, 8, 2), layers.GlobalAveragePooling2D()) == 128
    assert _flops((8, 8, 2), layers.BatchNormalization()) == 2 * 128
    assert _flops((8, 8, 2), layers.LayerNormalization()) == 8 * 128
    assert _flops((8, 8, 2), layers.Rescaling(1 / 255)) == 2 * 128
    free = [
        layers.ZeroPadding2D(1),
        layers.Cropping2D(1),
        layers.Dropout(0.5),
        layers.Flatten(),
        layers.Reshape((128,)),
    ]
    assert _flops((8, 8, 2), *free) == 0


def test_activations_and_elementwise_arithmetic():
    assert _flops((10,), layers.Activation("sigmoid")) == 40
    assert _flops((10,), layers.Activation("hard_swish")) == 40
    assert _flops((10,), layers.ReLU(6.0)) == 10
    assert _flops((10,), layers.Softmax()) == 50
    inputs = keras.Input((10,))
    doubled = layers.Add()([inputs, inputs, inputs])
    shifted = (doubled + 3.0) * 0.5  # keras.ops operations in the graph, as MobileNetV3 has
    assert forward_flops(keras.Model(inputs, shifted)) == 2 * 10 + 10 + 10


def test_upsampling_nearest_is_free_bilinear_is_not():
    assert _flops((4, 4, 2), layers.UpSampling2D(2)) == 0
    assert _flops((4, 4, 2), layers.UpSampling2D(2, interpolation="bilinear")) == 8 * 8 * 8 * 2


def test_local_response_normalisation():
    assert _flops((6, 6, 384), models.layers.LocalResponseNormalization(size=5)) == 9 * 6 * 6 * 384


def test_nested_and_sequential_models_are_walked():
    inner_inputs = keras.Input((10,))
    inner = keras.Model(inner_inputs, layers.Dense(4)(inner_inputs))
    outer_inputs = keras.Input((10,))
    outer = keras.Model(outer_inputs, layers.Dense(2)(inner(outer_inputs)))
    assert forward_flops(outer) == (2 * 40 + 4) + (2 * 8 + 2)
    sequential = keras.Sequential([keras.Input((10,)), layers.Dense(4), layers.Dense(2)])
    assert forward_flops(sequential) == (2 * 40 + 4) + (2 * 8 + 2)


def test_a_layer_without_a_rule_is_an_error_not_a_zero():
    class Mystery(keras.layers.Layer):
        def call(self, x):
            return x * 2

    with pytest.raises(FlopsError, match="no FLOP rule for layer 'mystery' \\(Mystery\\)"):
        _flops((4,), Mystery(name="mystery"))


def test_an_unsized_input_is_an_error():
    with pytest.raises(FlopsError, match="fixed input size"):
        _flops((None, None, 3), layers.Conv2D(2, 3))


def test_training_counts_input_gradients_above_the_first_trained_layer_and_weight_gradients_of_trained_ones():
    inputs = keras.Input((10,))
    hidden = layers.Dense(4, name="hidden")(inputs)  # 2*10*4 + 4 = 84
    outputs = layers.Dense(3, name="out")(hidden)  # 2*4*3 + 3 = 27
    model = keras.Model(inputs, outputs)
    # both train: forward 111, input gradients of "out" only 27, weight gradients 111
    assert training_flops(model) == 111 + 27 + 111
    model.get_layer("hidden").trainable = False
    # "out" is the first to train: no input gradient anywhere, weight gradients of "out" alone
    assert training_flops(model) == 111 + 27
    model.get_layer("out").trainable = False
    assert training_flops(model) == forward_flops(model) == 111  # nothing trains: inference


def _hand_count_macs(model: keras.Model) -> list[tuple[str, int]]:
    """(layer name, multiply-adds per image) of every convolution and dense layer, from their shapes."""
    counted = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            counted += _hand_count_macs(layer)
        elif type(layer) is layers.Conv2D:
            height, width, channels = layer.output.shape[1:]
            kernel_height, kernel_width = layer.kernel_size
            macs = height * width * channels * kernel_height * kernel_width * layer.input.shape[-1]
            counted.append((layer.name, macs))
        elif type(layer) is layers.Dense:
            counted.append((layer.name, layer.input.shape[-1] * layer.units))
    return counted


@pytest.mark.parametrize("frozen", ["all", 0])
def test_resnet50v2_training_flops_against_a_hand_count(frozen):
    from models.transfer import BACKBONE_LAYER, freeze_backbone
    from tests.model_zoo import default_model

    model = default_model("resnet50_v2")
    macs = _hand_count_macs(model)
    assert (macs[0][0], macs[-1][0]) == ("conv1_conv", "predictions")  # the first convolution, the head
    forward = 2 * sum(count for _, count in macs)
    # frozen: the backbone computes no gradient at all, so forward and the head's weight gradients;
    # else input gradients everywhere but below conv1, and weight gradients everywhere
    head_weight_gradients, conv1_input_gradients = 2 * macs[-1][1], 2 * macs[0][1]
    expected = forward + head_weight_gradients if frozen == "all" else 3 * forward - conv1_input_gradients
    freeze_backbone(model.get_layer(BACKBONE_LAYER), frozen)
    try:
        counted = training_flops(model)
    finally:
        freeze_backbone(model.get_layer(BACKBONE_LAYER), 0)  # as the shared model was built
    assert counted == pytest.approx(expected, rel=0.03)


def _within_3_percent_of_the_profiler(model: keras.Model) -> None:
    from tests.flops_reference import tf_profiler_flops

    ours, reference = forward_flops(model), tf_profiler_flops(model)
    assert ours == pytest.approx(reference, rel=0.03), f"{model.name}: ours {ours:,} vs profiler {reference:,}"


@tensorflow_only
def test_every_convolution_kind_against_the_profiler():
    # Grouped convolutions are left out: on CPU Keras runs them as an XLA call the profiler
    # cannot see into (the hand-worked test above covers them).
    inputs = keras.Input((32, 32, 3))
    x = layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = layers.Conv2D(32, 3, strides=2, use_bias=False)(x)
    x = layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(x)
    x = layers.SeparableConv2D(24, 3)(x)
    x = layers.Conv2DTranspose(8, 3, strides=2, padding="same")(x)
    x = layers.AveragePooling2D(2)(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(2, activation="softmax")(x)
    _within_3_percent_of_the_profiler(keras.Model(inputs, outputs, name="every_convolution"))


@tensorflow_only
def test_levi_hassner_against_the_profiler():
    _within_3_percent_of_the_profiler(models.create_model("levi_hassner"))


@tensorflow_only
@pytest.mark.slow
@pytest.mark.parametrize("name", ["mobilenet_v3_large", "resnet50_v2"])
def test_transfer_models_against_the_profiler_at_a_small_input(name):
    # depthwise, squeeze-excite and hard-swish arithmetic weigh most at small inputs
    _within_3_percent_of_the_profiler(models.create_model(name, input_size=64))
