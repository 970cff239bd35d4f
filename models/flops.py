"""Forward FLOPs per image, counted from a Keras model's layers (``forward_flops``), call by call
(``layer_calls``, which the harness's training count reads).

The harness reads it through ``bench.trial.flops``; it lives in ``models`` so that ``python -m
models`` can report FLOPs without the models package importing bench.

A multiply-add counts as 2 FLOPs. The count walks the functional graph, nested models
(keras.applications backbones) included, and prices each call of a layer from its per-image
input and output shapes, so it needs a model built for a fixed input size and works on every
Keras backend. Conventions, close to what TensorFlow's profiler counts for the same graph:

- convolutions and dense layers: 2 per multiply-add, plus 1 per output for the bias;
- pooling: one per window element per output; global pooling: one per input element;
- inference-time normalisation: BatchNormalization / Rescaling / Normalization 2 per element
  (scale and shift), LayerNormalization 8;
- elementwise functions: the arithmetic operations they decompose into (``ACTIVATION_FLOPS``);
- reshaping, padding, cropping, concatenation, dropout and nearest upsampling: 0.

A layer without a rule is an error (``FlopsError``), never a silent zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import keras

# Operations that ``x + 3.0``-style arithmetic on symbolic tensors inserts into a functional
# graph (MobileNetV3's hard-sigmoid does); Keras exposes their classes only under keras.src.
from keras.src.ops import numpy as keras_numpy_ops

from models.autoencoder import ReconstructionLoss
from models.layers import LocalResponseNormalization

Shape = tuple[int, ...]
Rule = Callable[[keras.Operation, list[Shape], list[Shape]], int]


class FlopsError(ValueError):
    """A model whose FLOPs cannot be counted (unknown layer, input size not fixed)."""


ACTIVATION_FLOPS: dict[Callable, int] = {
    keras.activations.linear: 0,
    keras.activations.relu: 1,
    keras.activations.relu6: 1,
    keras.activations.leaky_relu: 2,
    keras.activations.elu: 3,
    keras.activations.selu: 4,
    keras.activations.celu: 4,
    keras.activations.exponential: 1,
    keras.activations.sigmoid: 4,  # 1 / (1 + exp(-x))
    keras.activations.hard_sigmoid: 3,  # relu6(x + 3) / 6
    keras.activations.silu: 5,  # x * sigmoid(x)
    keras.activations.hard_silu: 4,  # x * hard_sigmoid(x)
    keras.activations.tanh: 4,
    keras.activations.softplus: 3,
    keras.activations.softsign: 3,
    keras.activations.gelu: 8,
    keras.activations.mish: 8,
    keras.activations.softmax: 5,  # max, subtract, exp, sum, divide
    keras.activations.log_softmax: 5,
}

_RULES: dict[type, Rule] = {}


def flops_rule(*layer_types: type) -> Callable[[Rule], Rule]:
    """Register ``rule(layer, input_shapes, output_shapes) -> FLOPs`` for layer types and their subclasses."""

    def decorate(rule: Rule) -> Rule:
        for layer_type in layer_types:
            _RULES[layer_type] = rule
        return rule

    return decorate


@dataclass(frozen=True)
class LayerCall:
    """One call of a layer in a forward pass: its FLOPs, and whether the layer has weights that train."""

    operation: keras.Operation
    flops: int
    trains: bool


def forward_flops(model: keras.Model) -> int:
    """Forward FLOPs for one image at ``model``'s input size (multiply-add = 2 FLOPs)."""
    return sum(call.flops for call in layer_calls(model))


def layer_calls(model: keras.Model) -> list[LayerCall]:
    """Every layer call of ``model``'s forward pass in execution order, nested models flattened."""
    graph = _functional_graph(model)
    calls = []
    for depth in sorted(graph._nodes_by_depth, reverse=True):  # the deepest nodes run first
        for node in graph._nodes_by_depth[depth]:
            operation = node.operation
            if isinstance(operation, keras.layers.InputLayer):
                continue
            inputs = [_per_image(t.shape, operation) for t in node.arguments.keras_tensors]
            outputs = [_per_image(t.shape, operation) for t in node.outputs]
            if isinstance(operation, keras.Model):
                _check_nested_input(operation, inputs)
                calls.extend(layer_calls(operation))
            else:
                flops = int(_rule_for(operation)(operation, inputs, outputs))
                calls.append(LayerCall(operation, flops, bool(getattr(operation, "trainable_weights", ()))))
    return calls


def _functional_graph(model: keras.Model) -> keras.Model:
    if isinstance(model, keras.Sequential):
        if not model.built or getattr(model, "_functional", None) is None:
            raise FlopsError(f"forward_flops: Sequential model {model.name!r} has no input shape yet; build it first")
        return model._functional
    if not hasattr(model, "_nodes_by_depth"):
        raise FlopsError(f"forward_flops: {model.name!r} is a subclassed model; only functional graphs can be walked")
    return model


def _per_image(shape: Sequence[int | None], operation) -> Shape:
    per_image = tuple(shape[1:])
    if any(dim is None for dim in per_image):
        raise FlopsError(
            f"forward_flops: layer {operation.name!r} has shape {tuple(shape)}; build the model for a fixed input size"
        )
    return per_image


def _check_nested_input(model: keras.Model, inputs: list[Shape]) -> None:
    own = [_per_image(t.shape, model) for t in model.inputs]
    if own != inputs:
        raise FlopsError(f"forward_flops: nested model {model.name!r} was built for {own} but is called on {inputs}")


def _rule_for(operation) -> Rule:
    for cls in type(operation).__mro__:
        if cls in _RULES:
            return _RULES[cls]
    raise FlopsError(
        f"forward_flops: no FLOP rule for layer {operation.name!r} ({type(operation).__name__}); "
        "add one with models.flops.flops_rule"
    )


def _elements(shape: Shape) -> int:
    return math.prod(shape)


def _activation_flops(activation, elements: int, layer) -> int:
    if activation is None:
        return 0
    try:
        return ACTIVATION_FLOPS[activation] * elements
    except KeyError:
        raise FlopsError(
            f"forward_flops: no FLOP count for activation {getattr(activation, '__name__', activation)!r} "
            f"in layer {layer.name!r}"
        ) from None


def _channels(layer, shape: Shape) -> int:
    return shape[0] if getattr(layer, "data_format", "channels_last") == "channels_first" else shape[-1]


def _spatial(layer, shape: Shape) -> int:
    spatial = shape[1:] if getattr(layer, "data_format", "channels_last") == "channels_first" else shape[:-1]
    return _elements(spatial)


def _bias_and_activation(layer, output: Shape) -> int:
    elements = _elements(output)
    bias = elements if getattr(layer, "use_bias", False) else 0
    return bias + _activation_flops(getattr(layer, "activation", None), elements, layer)


@flops_rule(keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
def _convolution(layer, inputs, outputs):
    (source,), (output,) = inputs, outputs
    taps = math.prod(layer.kernel_size)
    macs = _elements(output) * taps * _channels(layer, source) // layer.groups
    return 2 * macs + _bias_and_activation(layer, output)


@flops_rule(keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
def _depthwise_convolution(layer, inputs, outputs):
    (output,) = outputs
    return 2 * _elements(output) * math.prod(layer.kernel_size) + _bias_and_activation(layer, output)


@flops_rule(keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)
def _separable_convolution(layer, inputs, outputs):
    (source,), (output,) = inputs, outputs
    depthwise_channels = _channels(layer, source) * layer.depth_multiplier
    positions = _spatial(layer, output)  # the depthwise step already strides
    depthwise = positions * depthwise_channels * math.prod(layer.kernel_size)
    pointwise = positions * depthwise_channels * _channels(layer, output)
    return 2 * (depthwise + pointwise) + _bias_and_activation(layer, output)


@flops_rule(keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)
def _transposed_convolution(layer, inputs, outputs):
    (source,), (output,) = inputs, outputs
    # Every input value meets the whole kernel once. TensorFlow's profiler prices output
    # positions x window / stride**2 instead: the same for "same" padding, more for "valid"
    # (it also counts the zero border).
    macs = _elements(source) * math.prod(layer.kernel_size) * _channels(layer, output)
    return 2 * macs + _bias_and_activation(layer, output)


@flops_rule(keras.layers.Dense)
def _dense(layer, inputs, outputs):
    (source,), (output,) = inputs, outputs
    return 2 * _elements(output) * source[-1] + _bias_and_activation(layer, output)


@flops_rule(
    keras.layers.MaxPooling1D,
    keras.layers.MaxPooling2D,
    keras.layers.MaxPooling3D,
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
)
def _pooling(layer, inputs, outputs):
    (output,) = outputs
    return _elements(output) * math.prod(layer.pool_size)


@flops_rule(
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalMaxPooling3D,
)
def _global_pooling(layer, inputs, outputs):
    return _elements(inputs[0])


@flops_rule(keras.layers.BatchNormalization, keras.layers.Rescaling, keras.layers.Normalization)
def _scale_and_shift(layer, inputs, outputs):
    return 2 * _elements(outputs[0])


@flops_rule(keras.layers.LayerNormalization, keras.layers.GroupNormalization)
def _standardisation(layer, inputs, outputs):
    # mean 1, centre 1, square 1, variance mean 1, normalise 2, scale and shift 2
    return 8 * _elements(outputs[0])


@flops_rule(keras.layers.UnitNormalization)
def _unit_normalisation(layer, inputs, outputs):
    return 3 * _elements(outputs[0])  # square, sum, divide


@flops_rule(LocalResponseNormalization)
def _local_response_normalisation(layer, inputs, outputs):
    # square 1, window sum size-1, scale and bias 2, power 1, divide 1
    return (layer.size + 4) * _elements(outputs[0])


@flops_rule(keras.layers.Activation)
def _activation(layer, inputs, outputs):
    return _activation_flops(layer.activation, _elements(outputs[0]), layer)


@flops_rule(keras.layers.ReLU)
def _relu(layer, inputs, outputs):
    return _elements(outputs[0])


@flops_rule(keras.layers.LeakyReLU, keras.layers.PReLU)
def _leaky_relu(layer, inputs, outputs):
    return 2 * _elements(outputs[0])


@flops_rule(keras.layers.ELU)
def _elu(layer, inputs, outputs):
    return ACTIVATION_FLOPS[keras.activations.elu] * _elements(outputs[0])


@flops_rule(keras.layers.Softmax)
def _softmax(layer, inputs, outputs):
    return ACTIVATION_FLOPS[keras.activations.softmax] * _elements(outputs[0])


@flops_rule(keras.layers.Add, keras.layers.Subtract, keras.layers.Multiply, keras.layers.Maximum, keras.layers.Minimum)
def _merge(layer, inputs, outputs):
    return (len(inputs) - 1) * _elements(outputs[0])


@flops_rule(keras.layers.Average)
def _average(layer, inputs, outputs):
    return len(inputs) * _elements(outputs[0])


@flops_rule(
    keras_numpy_ops.Add,
    keras_numpy_ops.Subtract,
    keras_numpy_ops.Multiply,
    keras_numpy_ops.Divide,
    keras_numpy_ops.TrueDivide,
    keras_numpy_ops.Maximum,
    keras_numpy_ops.Minimum,
)
def _binary_operation(operation, inputs, outputs):
    return _elements(outputs[0])


@flops_rule(keras.layers.UpSampling2D)
def _upsampling(layer, inputs, outputs):
    # nearest copies; bilinear blends 4 neighbours: a multiply-add each
    return 0 if layer.interpolation == "nearest" else 8 * _elements(outputs[0])


@flops_rule(ReconstructionLoss)
def _training_loss(layer, inputs, outputs):
    return 0  # the autoencoder's training loss, priced like the classification loss: not forward work


@flops_rule(
    keras.layers.Flatten,
    keras.layers.Reshape,
    keras.layers.Permute,
    keras.layers.RepeatVector,
    keras.layers.Identity,
    keras.layers.Concatenate,
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
    keras.layers.Cropping1D,
    keras.layers.Cropping2D,
    keras.layers.Cropping3D,
    keras.layers.UpSampling1D,
    keras.layers.UpSampling3D,
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.AlphaDropout,
    keras.layers.ActivityRegularization,
)
def _free(layer, inputs, outputs):
    return 0
