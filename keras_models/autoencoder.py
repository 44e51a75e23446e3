"""A convolutional denoising autoencoder (functional API): noisy image in, clean image out."""

import keras
from keras import layers

from keras_models.direction import UP, with_direction


def upsample(x, filters, mode="resize", kernel=3, **kwargs):
    """Double the spatial size: `resize` = nearest-neighbour upsampling + 3x3 conv (several times
    faster than transposed convs under XLA on CPU with JAX, no checkerboard artefacts);
    `transpose` = a stride-2 transposed conv (fastest on TensorFlow CPU)."""
    if mode == "transpose":
        return layers.Conv2DTranspose(filters, kernel, strides=2, padding="same", **kwargs)(x)
    if mode != "resize":
        raise ValueError(f"upsampling mode must be 'resize' or 'transpose', got {mode!r}")
    return layers.Conv2D(filters, 3, padding="same", **kwargs)(layers.UpSampling2D(2)(x))


def conv_autoencoder(input_shape, width=32, upsampling="resize", name="denoising_autoencoder"):
    """Two stride-2 conv stages down to (H/4, W/4, 2*width), two upsampling stages back up (see `upsample`).

    The output is a sigmoid image in [0, 1] with the input's channel count; the bottleneck has
    no skip connections, so the model must learn what shapes look like to remove the noise.
    """
    inputs = keras.Input(input_shape, name="noisy_image")
    # Encoder: 3x3 convs, downsample by stride 2.
    x = layers.Conv2D(width, 3, padding="same", activation="relu")(inputs)
    x = layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(2 * width, 3, padding="same", activation="relu")(x)
    x = layers.Conv2D(2 * width, 3, strides=2, padding="same", activation="relu", name="bottleneck")(x)
    # Decoder: upsample back to full size.
    x = upsample(x, 2 * width, upsampling, activation="relu")
    x = layers.Conv2D(width, 3, padding="same", activation="relu")(x)
    x = upsample(x, width, upsampling, activation="relu")
    outputs = layers.Conv2D(input_shape[-1], 3, padding="same", activation="sigmoid", name="clean_image")(x)
    return keras.Model(inputs, outputs, name=name)


@keras.saving.register_keras_serializable(package="keras_baselines")
def psnr(y_true, y_pred):
    """Per-image peak signal-to-noise ratio in dB for images in [0, 1] (higher is better)."""
    mse = keras.ops.mean(keras.ops.square(y_true - y_pred), axis=(1, 2, 3))
    return 10.0 * keras.ops.log(1.0 / keras.ops.maximum(mse, 1e-10)) / keras.ops.log(10.0)


@keras.saving.register_keras_serializable(package="keras_baselines")
class PSNR(keras.metrics.MeanMetricWrapper):
    """Mean PSNR (dB) minus a fixed `baseline` (e.g. the noisy inputs' own PSNR, giving the dB a
    denoiser gains). A class, not a closure over the baseline, so a saved model's compile config
    loads again."""

    def __init__(self, baseline=0.0, name="psnr", dtype=None):
        super().__init__(self._shifted_psnr, name=name, dtype=dtype)
        self.baseline = float(baseline)
        with_direction(self, UP)

    def _shifted_psnr(self, y_true, y_pred):
        return psnr(y_true, y_pred) - self.baseline

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "baseline": self.baseline}
