"""The reference FLOP count the tests hold bench.trial.flops to: TensorFlow's profiler on the frozen graph.

TensorFlow backend only. The model is traced for one image in inference mode, its variables
frozen into constants, and ``tf.compat.v1.profiler`` sums the FLOPs its op registry knows
(convolutions, matrix products, pooling, elementwise arithmetic; activations such as ReLU
count 0 there).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2


def tf_profiler_flops(model: keras.Model) -> int:
    """FLOPs per image of ``model``'s inference graph, as TensorFlow's profiler counts them."""
    (image,) = model.inputs
    signature = tf.TensorSpec((1, *image.shape[1:]), image.dtype)
    forward = tf.function(lambda images: model(images, training=False), autograph=False)
    frozen = convert_variables_to_constants_v2(forward.get_concrete_function(signature))
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(frozen.graph.as_graph_def(), name="")
        options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
        options["output"] = "none"
        return int(tf.compat.v1.profiler.profile(graph, options=options).total_float_ops)
