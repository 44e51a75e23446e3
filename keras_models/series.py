"""Models over numeric sequences: classifiers (FCN, ResNet1D, LSTM/GRU, Transformer) and multi-step
forecasters (LSTM, Conv1D, dense). keras layers and keras.ops only.

Classifier inputs are (T, C) series whose missing steps (the NaN padding of variable-length data)
are NaN: `MissingSteps` turns them into zeros plus a step mask that recurrent layers, attention and
the masked global average pooling respect, so padding never counts as signal.
"""

from __future__ import annotations

import keras
from keras import layers, ops

BN_MOMENTUM = 0.9


@keras.saving.register_keras_serializable(package="keras_baselines")
class MissingSteps(layers.Layer):
    """(B, T, C) with NaN padding -> (zero-filled values, (B, T) mask of the steps that hold data)."""

    def call(self, x):
        missing = ops.isnan(x)
        values = ops.where(missing, ops.zeros_like(x), x)
        return values, ops.logical_not(ops.all(missing, axis=-1))

    def compute_output_spec(self, x):
        return (keras.KerasTensor(x.shape, x.dtype), keras.KerasTensor(x.shape[:-1], "bool"))


@keras.saving.register_keras_serializable(package="keras_baselines")
class ZeroMasked(layers.Layer):
    """Features of the masked (padding) steps set to 0, so the next convolution sees what it would see
    at the end of an unpadded series: its own zero padding."""

    def call(self, x, mask):
        return x * ops.expand_dims(ops.cast(mask, x.dtype), -1)


def _series_input(input_shape):
    inputs = keras.Input(input_shape, name="series")
    values, mask = MissingSteps(name="missing_steps")(inputs)
    return inputs, values, mask


def _logits(x, num_classes, dropout):
    x = layers.Dropout(dropout)(x) if dropout else x
    return layers.Dense(num_classes, name="logits", dtype="float32")(x)


def _conv_bn_relu(x, filters, kernel, mask=None):
    x = layers.Conv1D(filters, kernel, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    x = layers.ReLU()(x)
    return x if mask is None else ZeroMasked()(x, mask)


def fcn(input_shape, num_classes, *, width=128, dropout=0.0, name="fcn", **_):
    """Wang et al. 2017's FCN: conv blocks of 8, 5 and 3 taps (width, 2*width, width filters), BN, ReLU,
    global average pooling over the real steps."""
    inputs, x, mask = _series_input(input_shape)
    for filters, kernel in ((width, 8), (2 * width, 5), (width, 3)):
        x = _conv_bn_relu(x, filters, kernel, mask)
    x = layers.GlobalAveragePooling1D()(x, mask=mask)
    return keras.Model(inputs, _logits(x, num_classes, dropout), name=name)


def _resnet_block(x, filters, mask):
    y = x
    for kernel in (8, 5):
        y = _conv_bn_relu(y, filters, kernel, mask)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM)(layers.Conv1D(filters, 3, padding="same", use_bias=False)(y))
    shortcut = x
    if x.shape[-1] != filters:
        shortcut = layers.Conv1D(filters, 1, use_bias=False)(x)
    shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM)(shortcut)
    return ZeroMasked()(layers.ReLU()(layers.Add()([shortcut, y])), mask)


def resnet1d(input_shape, num_classes, *, width=64, dropout=0.0, name="resnet1d", **_):
    """Wang et al. 2017's ResNet: three residual blocks (width, 2*width, 2*width filters)."""
    inputs, x, mask = _series_input(input_shape)
    for filters in (width, 2 * width, 2 * width):
        x = _resnet_block(x, filters, mask)
    x = layers.GlobalAveragePooling1D()(x, mask=mask)
    return keras.Model(inputs, _logits(x, num_classes, dropout), name=name)


def _recurrent(cell):
    def build(input_shape, num_classes, *, width=64, num_layers=1, bidirectional=True, dropout=0.0,
              name=cell.__name__.lower(), **_):
        """Stacked (bi)directional recurrent layers that skip the masked steps; the last state classifies."""
        inputs, x, mask = _series_input(input_shape)
        for i in range(num_layers):
            rnn = cell(width, return_sequences=i < num_layers - 1)
            x = (layers.Bidirectional(rnn) if bidirectional else rnn)(x, mask=mask)
        return keras.Model(inputs, _logits(x, num_classes, dropout), name=name)

    return build


def transformer(input_shape, num_classes, *, width=64, num_layers=2, num_heads=4, dropout=0.0,
                name="transformer", **_):
    """Steps projected to `width`, learned positions, keras-hub encoder blocks with the padding mask."""
    import keras_hub

    inputs, x, mask = _series_input(input_shape)
    x = layers.Dense(width)(x)
    x = layers.Add()([x, keras_hub.layers.PositionEmbedding(input_shape[0])(x)])
    for _ in range(num_layers):
        x = keras_hub.layers.TransformerEncoder(2 * width, num_heads, dropout=dropout)(x, padding_mask=mask)
    x = layers.GlobalAveragePooling1D()(x, mask=mask)
    return keras.Model(inputs, _logits(x, num_classes, dropout), name=name)


CLASSIFIERS = {"fcn": fcn, "resnet1d": resnet1d, "lstm": _recurrent(layers.LSTM), "gru": _recurrent(layers.GRU),
               "transformer": transformer}


# --- forecasters ------------------------------------------------------------------------------------
# Inputs: "history" (L, C) and "season_ref" (H, C) (the seasonal-naive forecast), both normalised;
# output (H, C). Every forecaster adds a linear map of its inputs to the learned part, so a trend
# beyond the training range is extrapolated rather than squashed by saturating units.


@keras.saving.register_keras_serializable(package="keras_baselines")
class WindowLevel(layers.Layer):
    """The mean of each history window per channel, (B, 1, C): forecasters work relative to it, so a
    level the training data never reached (a trend) is as easy as one it did."""

    def call(self, history):
        return ops.mean(history, axis=1, keepdims=True)


def _forecast_inputs(input_length, horizon, channels):
    history = keras.Input((input_length, channels), name="history")
    ref = keras.Input((horizon, channels), name="season_ref")
    level = WindowLevel(name="level")(history)
    centred = layers.Subtract()([history, level])
    flat = layers.Concatenate()([layers.Flatten()(centred), layers.Flatten()(layers.Subtract()([ref, level]))])
    return {"history": history, "season_ref": ref}, centred, flat, level


def _forecast_head(features, flat, level, horizon, channels, hidden, dropout):
    x = layers.Dense(hidden, activation="relu")(features)
    x = layers.Dropout(dropout)(x) if dropout else x
    learned = layers.Dense(horizon * channels)(x)
    linear = layers.Dense(horizon * channels)(flat)
    out = layers.Reshape((horizon, channels))(layers.Add()([learned, linear]))
    return layers.Add(dtype="float32", name="forecast")([out, level])


def dense_forecaster(input_length, horizon, channels, *, hidden=128, dropout=0.0, name="dense", **_):
    inputs, _, flat, level = _forecast_inputs(input_length, horizon, channels)
    x = layers.Dense(hidden, activation="relu")(flat)
    return keras.Model(inputs, _forecast_head(x, flat, level, horizon, channels, hidden, dropout), name=name)


def lstm_forecaster(input_length, horizon, channels, *, hidden=64, num_layers=1, dropout=0.0, name="lstm", **_):
    inputs, history, flat, level = _forecast_inputs(input_length, horizon, channels)
    x = history
    for i in range(num_layers):
        x = layers.LSTM(hidden, return_sequences=i < num_layers - 1)(x)
    x = layers.Concatenate()([x, flat])
    return keras.Model(inputs, _forecast_head(x, flat, level, horizon, channels, hidden, dropout), name=name)


def conv1d_forecaster(input_length, horizon, channels, *, hidden=64, num_layers=2, dropout=0.0, name="conv1d", **_):
    inputs, history, flat, level = _forecast_inputs(input_length, horizon, channels)
    x = history
    for i in range(num_layers):
        x = layers.Conv1D(hidden, 5, padding="causal", dilation_rate=2 ** i, activation="relu")(x)
    x = layers.Concatenate()([layers.Flatten()(layers.Cropping1D((input_length - min(4, input_length), 0))(x)), layers.GlobalAveragePooling1D()(x), flat])
    return keras.Model(inputs, _forecast_head(x, flat, level, horizon, channels, hidden, dropout), name=name)


FORECASTERS = {"lstm": lstm_forecaster, "conv1d": conv1d_forecaster, "dense": dense_forecaster}
