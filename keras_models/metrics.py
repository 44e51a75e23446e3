"""Classification metrics fed integer labels and logits (keras.ops only, every backend).

Registered serializable so a compiled model that uses them can be saved and loaded again.
"""

from __future__ import annotations

import keras
from keras import ops


def _one_hot(y_true, num_classes):
    return ops.one_hot(ops.reshape(ops.cast(y_true, "int32"), (-1,)), num_classes)


@keras.saving.register_keras_serializable(package="keras_baselines")
class SparseF1Score(keras.metrics.F1Score):
    """F1 from integer labels and logits (keras' F1Score wants one-hot labels and scores)."""

    def __init__(self, num_classes, average="macro", name="macro_f1", **kwargs):
        kwargs.pop("threshold", None)
        super().__init__(average=average, threshold=None, name=name, **kwargs)  # None: argmax is the prediction
        self.num_classes = num_classes

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(_one_hot(y_true, self.num_classes), ops.softmax(y_pred, axis=-1), sample_weight)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


class _SparseTop1ClassMetric:
    """Mixin: a per-class Precision/Recall fed integer labels and logits (prediction = argmax)."""

    def __init__(self, class_id, num_classes, name=None, **kwargs):
        kwargs.pop("top_k", None)
        super().__init__(top_k=1, class_id=class_id, name=name, **kwargs)
        self.num_classes = num_classes

    def update_state(self, y_true, y_pred, sample_weight=None):
        return super().update_state(_one_hot(y_true, self.num_classes), y_pred, sample_weight)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="keras_baselines")
class SparseClassPrecision(_SparseTop1ClassMetric, keras.metrics.Precision):
    """Precision of one class, the prediction being the argmax (top-1) of the logits."""


@keras.saving.register_keras_serializable(package="keras_baselines")
class SparseClassRecall(_SparseTop1ClassMetric, keras.metrics.Recall):
    """Recall of one class, the prediction being the argmax (top-1) of the logits."""
