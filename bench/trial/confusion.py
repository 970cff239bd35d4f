"""The validation split's confusion matrix, accumulated on the device during Keras's own
validation pass: one forward pass an epoch, and only the K x K counts cross to the host.

bench/scores.py turns a matrix into balanced accuracy, macro-F1 and per-class recall.
"""

from __future__ import annotations

import keras
from keras import ops

CONFUSION_METRIC = "confusion"  # fit's logs hold ``val_confusion``


class ConfusionMatrix(keras.metrics.Metric):
    """Counts of (true class, predicted class): rows true, columns the argmax of the prediction.

    True labels are class indices or (possibly soft, as MixUp makes them) one-hot rows,
    whose argmax is the class.
    """

    def __init__(self, num_classes: int, name: str = CONFUSION_METRIC, **kwargs):
        super().__init__(name=name, **kwargs)
        if num_classes < 1:
            raise ValueError(f"a confusion matrix needs at least one class, got {num_classes}")
        self.num_classes = int(num_classes)
        self.counts = self.add_variable((self.num_classes, self.num_classes), initializer="zeros", name="counts")

    def update_state(self, y_true, y_pred, sample_weight=None):
        classes = self.num_classes
        predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        y_true = ops.convert_to_tensor(y_true)
        if len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == classes and classes > 1:
            actual = ops.cast(ops.argmax(y_true, axis=-1), "int32")
        else:
            actual = ops.cast(ops.reshape(y_true, ops.shape(predicted)), "int32")
        cells = ops.one_hot(ops.reshape(actual * classes + predicted, (-1,)), classes * classes, dtype=self.dtype)
        self.counts.assign_add(ops.reshape(ops.sum(cells, axis=0), (classes, classes)))

    def result(self):
        return ops.convert_to_tensor(self.counts)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}
