"""Image classifiers: a small CNN and a small ResNet (functional API)."""

import keras
from keras import layers

BN_MOMENTUM = 0.9  # Keras' 0.99 leaves moving statistics stale for runs of a few hundred steps


def conv_bn_relu(x, filters, kernel=3, strides=1, name=None):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=None if name is None else name + "_bn")(x)
    return layers.ReLU()(x)


def small_cnn(input_shape, num_classes, width=32, dropout=0.2, name="small_cnn"):
    """Three conv blocks (conv-conv-pool), global pooling, dense logits."""
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for i, mult in enumerate((1, 2, 4)):
        x = conv_bn_relu(x, width * mult)
        x = conv_bn_relu(x, width * mult)
        x = layers.MaxPooling2D()(x) if i < 2 else x
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, name="logits", dtype="float32")(x)  # float32 logits under mixed precision
    return keras.Model(inputs, outputs, name=name)


def residual_block(x, filters, strides=1):
    shortcut = x
    y = conv_bn_relu(x, filters, strides=strides)
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM)(y)
    if strides != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False)(shortcut)
        shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM)(shortcut)
    return layers.ReLU()(layers.Add()([shortcut, y]))


def small_resnet(input_shape, num_classes, width=32, blocks_per_stage=(1, 1, 1), dropout=0.1,
                 name="small_resnet"):
    """A ResNet-style stem and three residual stages, each halving resolution after the first."""
    inputs = keras.Input(input_shape, name="image")
    x = conv_bn_relu(inputs, width)
    for stage, n_blocks in enumerate(blocks_per_stage):
        for b in range(n_blocks):
            strides = 2 if stage > 0 and b == 0 else 1
            x = residual_block(x, width * 2**stage, strides)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, name="logits", dtype="float32")(x)  # float32 logits under mixed precision
    return keras.Model(inputs, outputs, name=name)
