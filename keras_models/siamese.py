"""SiamFC (Bertinetto et al. 2016): one fully-convolutional backbone embeds an exemplar crop and a
search crop; their cross-correlation, scaled and shifted by two learned scalars, is the response map
(high where the search crop shows the exemplar). Valid padding throughout keeps the response exactly
translation-equivariant, so a displacement of one response cell is `stride` crop pixels.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

# (filters, kernel, stride, pool) per conv stage; pool is a 3x3 stride-2 max-pool after the stage.
BACKBONES = {
    # A light CPU backbone: 63 -> 10, 127 -> 26 features, response 17x17 at stride 4.
    "light": ((24, 5, 2, False), (48, 3, 2, False), (64, 3, 1, False), (64, 3, 1, False)),
    # SiamFC's AlexNet: 127 -> 6, 255 -> 22 features, response 17x17 at stride 8.
    "alexnet": ((96, 11, 2, True), (256, 5, 1, True), (384, 3, 1, False), (384, 3, 1, False), (256, 3, 1, False)),
}


def feature_size(name: str, size: int) -> int:
    """Side of the backbone's feature map for a square input of `size` (valid convolutions)."""
    for _, kernel, stride, pool in BACKBONES[name]:
        size = (size - kernel) // stride + 1
        if pool:
            size = (size - 3) // 2 + 1
    return size


def total_stride(name: str) -> int:
    stride = 1
    for _, _, s, pool in BACKBONES[name]:
        stride *= s * (2 if pool else 1)
    return stride


def response_size(name: str, exemplar: int, search: int) -> int:
    return feature_size(name, search) - feature_size(name, exemplar) + 1


def build_backbone(name: str, channels: int = 3) -> keras.Model:
    """Conv-BN-ReLU stages; the last stage has no BN or ReLU (its features are correlated)."""
    stages = BACKBONES[name]
    inputs = keras.Input((None, None, channels), name="crop")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="to_unit_range")(inputs)  # crops arrive as 0..255
    for i, (filters, kernel, stride, pool) in enumerate(stages):
        last = i == len(stages) - 1
        x = layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=last, name=f"conv{i + 1}")(x)
        if not last:
            x = layers.BatchNormalization(momentum=0.9, name=f"bn{i + 1}")(x)
            x = layers.ReLU(name=f"relu{i + 1}")(x)
        if pool:
            x = layers.MaxPooling2D(3, strides=2, name=f"pool{i + 1}")(x)
    return keras.Model(inputs, x, name="backbone")


def correlation_indices(zh: int, zw: int, xh: int, xw: int) -> np.ndarray:
    """For each output cell (i, j) and exemplar cell (u, v): the flat index of the pair
    (exemplar cell (u, v), search cell (i + u, j + v)) in the (zh*zw, xh*xw) similarity matrix."""
    i, j, u, v = np.meshgrid(np.arange(xh - zh + 1), np.arange(xw - zw + 1), np.arange(zh), np.arange(zw), indexing="ij")
    return ((u * zw + v) * (xh * xw) + (i + u) * xw + (j + v)).reshape(-1).astype(np.int32)


def cross_correlate(z, x):
    """Per-example valid cross-correlation: z (B, h, w, C) slid over x (B, H, W, C) -> (B, H-h+1, W-w+1).

    One batched matmul gives every exemplar-cell / search-cell similarity; a constant gather then sums
    each output cell's h*w diagonal. On CPU this trains ~10x faster than the grouped (depthwise)
    convolution SiamFC implementations use, whose XLA gradient is slow on both backends. Spatial sizes
    must be static (they are: crops have fixed sizes).
    """
    _, zh, zw, c = z.shape
    _, xh, xw, _ = x.shape
    sims = ops.einsum("bpc,bqc->bpq", ops.reshape(z, (-1, zh * zw, c)), ops.reshape(x, (-1, xh * xw, c)))
    picked = ops.take(ops.reshape(sims, (-1, zh * zw * xh * xw)), correlation_indices(zh, zw, xh, xw), axis=1)
    return ops.sum(ops.reshape(picked, (-1, xh - zh + 1, xw - zw + 1, zh * zw)), axis=-1)


@keras.saving.register_keras_serializable(package="keras_baselines")
class CrossCorrelation(layers.Layer):
    """Response = scale * (z ⋆ x) + bias, with scale and bias learned (SiamFC's adjust layer)."""

    def __init__(self, init_scale: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.init_scale = init_scale

    def build(self, input_shape):
        self.scale = self.add_weight(shape=(), initializer=keras.initializers.Constant(self.init_scale), name="scale")
        self.bias = self.add_weight(shape=(), initializer="zeros", name="bias")

    def call(self, z, x):
        return self.scale * cross_correlate(z, x) + self.bias

    def compute_output_spec(self, z, x):
        shape = (z.shape[0], None if x.shape[1] is None else x.shape[1] - z.shape[1] + 1,
                 None if x.shape[2] is None else x.shape[2] - z.shape[2] + 1)
        return keras.KerasTensor(shape, dtype=self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "init_scale": self.init_scale}


def build_siamfc(name: str, exemplar_size: int, search_size: int) -> keras.Model:
    """{"exemplar": (E, E, 3), "search": (S, S, 3)} crops (0..255) -> response logits (R, R)."""
    backbone = build_backbone(name)
    exemplar = keras.Input((exemplar_size, exemplar_size, 3), name="exemplar")
    search = keras.Input((search_size, search_size, 3), name="search")
    c = BACKBONES[name][-1][0]
    init = 1.0 / (feature_size(name, exemplar_size) ** 2 * c)  # keeps the first responses O(1)
    response = CrossCorrelation(init_scale=init, name="xcorr", dtype="float32")(backbone(exemplar), backbone(search))
    return keras.Model({"exemplar": exemplar, "search": search}, response, name=f"siamfc_{name}")


@keras.saving.register_keras_serializable(package="keras_baselines")
class BalancedLogisticLoss(keras.losses.Loss):
    """SiamFC's loss: logistic loss on every response cell, positives (label 1, near the target) and
    negatives (label 0) each weighted to half of the total, so the few positives are not drowned."""

    def __init__(self, name="balanced_logistic", reduction="sum_over_batch_size", **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        pos, neg = y_true, 1.0 - y_true
        n_pos = ops.maximum(ops.sum(pos, axis=(1, 2), keepdims=True), 1.0)
        n_neg = ops.maximum(ops.sum(neg, axis=(1, 2), keepdims=True), 1.0)
        weights = 0.5 * pos / n_pos + 0.5 * neg / n_neg
        # log(1 + exp(-s)) for label +1 and log(1 + exp(s)) for -1, numerically stable.
        signed = ops.where(y_true > 0.5, -y_pred, y_pred)
        return ops.sum(weights * ops.softplus(signed), axis=(1, 2))
