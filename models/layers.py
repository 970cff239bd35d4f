"""Custom layers shared by the model builders, written with ``keras.ops`` only so they
run on every Keras backend (TensorFlow, JAX, PyTorch), and the classifier head they share."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="adience_bench")
class LocalResponseNormalization(keras.layers.Layer):
    """Cross-channel local response normalisation, Caffe convention (AlexNet, Levi & Hassner).

    ``y_c = x_c / (bias + alpha / size * sum_{c' in window(c)} x_{c'}^2) ** beta`` with a
    window of ``size`` channels centred on ``c``. Equal to
    ``tf.nn.local_response_normalization(depth_radius=(size - 1) // 2, bias=bias,
    alpha=alpha / size, beta=beta)``; channels-last inputs. Computes in float32 whatever the
    global dtype policy (its input is cast up, the next layer casts its output back down).
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, bias: float = 1.0, **kwargs):
        # float32 under a mixed policy too: squares of activations summed over a window and
        # raised to -0.75 lose most of bf16's 8 bits (and TensorFlow has no bf16 LRN kernel)
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        if size < 1 or size % 2 == 0:
            raise ValueError(f"LRN size must be a positive odd number, got {size}")
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.bias = bias

    def call(self, inputs):
        radius = (self.size - 1) // 2
        channels = inputs.shape[-1]
        squared = ops.square(inputs)
        padded = ops.pad(squared, [[0, 0]] * (len(inputs.shape) - 1) + [[radius, radius]])
        window_sum = padded[..., 0:channels]
        for offset in range(1, self.size):
            window_sum = window_sum + padded[..., offset : offset + channels]
        scale = self.bias + (self.alpha / self.size) * window_sum
        return inputs / ops.power(scale, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "size": self.size, "alpha": self.alpha, "beta": self.beta, "bias": self.bias}


def softmax_classifier(features, num_classes: int, name: str):
    """``Dense(num_classes, name=name)`` logits, then their softmax in float32 (layer ``name_softmax``).

    Under a mixed policy the softmax itself runs in float32 (Keras's mixed-precision guide):
    computed in bf16, probabilities near 1 round to exactly 1.0 and the loss loses them.
    """
    logits = keras.layers.Dense(num_classes, name=name)(features)
    return keras.layers.Activation("softmax", dtype="float32", name=f"{name}_softmax")(logits)
