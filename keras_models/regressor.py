"""Image regressors: the PilotNet layout (NVIDIA's end-to-end steering CNN) and the classification
ResNet with a linear head. Both end in `TargetScale`, which maps the network's standardised output
back to target units with the training targets' mean and std: the network starts out predicting
the training mean, and metrics, predictions and the saved model all speak in target units.
"""

import keras
from keras import layers, ops

from keras_models import classifier

PILOTNET_MIN_SIZE = 61  # three 5x5 stride-2 and two 3x3 'valid' convolutions need at least this


@keras.saving.register_keras_serializable(package="keras_baselines")
class TargetScale(layers.Layer):
    """y = x * std + mean, per target column (constants saved in the config, not trained)."""

    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        self.mean, self.std = [float(v) for v in mean], [float(v) for v in std]

    def call(self, x):
        return ops.cast(x, "float32") * ops.convert_to_tensor(self.std) + ops.convert_to_tensor(self.mean)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "std": self.std}


@keras.saving.register_keras_serializable(package="keras_baselines")
class StandardizedError(keras.losses.Loss):
    """Squared (`mse`), absolute (`mae`) or Huber error in units of each target's training std, so
    targets on different scales (steering in [-1, 1], speed in mph) weigh alike. `mae` fits the
    median: right for mostly-zero targets such as keyboard steering."""

    KINDS = ("mse", "mae", "huber")

    def __init__(self, std, kind="mse", name=None, **kwargs):
        super().__init__(name=name or f"standardized_{kind}", **kwargs)
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        self.std, self.kind = [float(v) for v in std], kind

    def call(self, y_true, y_pred):
        err = (ops.cast(y_pred, "float32") - ops.cast(y_true, "float32")) / ops.convert_to_tensor(self.std)
        if self.kind == "mse":
            return ops.mean(ops.square(err), axis=-1)
        if self.kind == "mae":
            return ops.mean(ops.abs(err), axis=-1)
        small = ops.abs(err) <= 1.0
        return ops.mean(ops.where(small, 0.5 * ops.square(err), ops.abs(err) - 0.5), axis=-1)

    def get_config(self):
        return {**super().get_config(), "std": self.std, "kind": self.kind}


def pilotnet(input_shape, mean, std, width=1.0, dropout=0.2, name="pilotnet"):
    """Bojarski et al. 2016: normalisation, 5 convolutions (24-36-48 5x5 stride 2, 64-64 3x3), dense
    100-50-10, one output per target. `width` scales every layer's size."""
    if min(input_shape[:2]) < PILOTNET_MIN_SIZE:
        raise ValueError(f"pilotnet needs images of at least {PILOTNET_MIN_SIZE}x{PILOTNET_MIN_SIZE}, "
                         f"got {input_shape[0]}x{input_shape[1]}")
    size = lambda n: max(1, int(round(n * width)))  # noqa: E731
    inputs = keras.Input(input_shape, name="image")
    x = layers.Rescaling(2.0, offset=-1.0)(inputs)  # [0, 1] -> [-1, 1]
    for filters, kernel, strides in ((24, 5, 2), (36, 5, 2), (48, 5, 2), (64, 3, 1), (64, 3, 1)):
        x = layers.Conv2D(size(filters), kernel, strides=strides, activation="elu")(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(dropout)(x)
    for units in (100, 50, 10):
        x = layers.Dense(size(units), activation="elu")(x)
    x = layers.Dense(len(mean), name="standardized", dtype="float32")(x)
    return keras.Model(inputs, TargetScale(mean, std, name="target_scale")(x), name=name)


def resnet(input_shape, mean, std, width=32, dropout=0.1, name="resnet_regressor"):
    """classifier.small_resnet with one linear output per target (its 'logits' layer) and TargetScale."""
    base = classifier.small_resnet(input_shape, len(mean), width=width, dropout=dropout)
    return keras.Model(base.input, TargetScale(mean, std, name="target_scale")(base.output), name=name)


MODELS = {"pilotnet": pilotnet, "resnet": resnet}
