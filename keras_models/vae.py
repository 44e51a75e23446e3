"""A convolutional variational autoencoder.

The encoder and decoder are functional models; `VAE` wraps them and overrides `compute_loss`
to add the KL term (the mechanism Keras 3 documents for extra losses; it runs unchanged on
every backend because Keras threads the metric and seed-generator state through it).
The decoder's output is the mean of a Gaussian with a fixed standard deviation `decoder_std`
per pixel (0.1 by default: a small std weights reconstruction strongly against the KL term, which
keeps samples sharp; a Bernoulli likelihood on grey-level images gives blurry blobs). The
reconstruction term is that Gaussian's negative log-likelihood summed per image, in nats, so
`elbo = -(reconstruction_loss + kl)` is a true lower bound on log p(x) (a density, so it may be
positive).
"""

import math

import keras
import numpy as np
from keras import layers, ops

from keras_models.autoencoder import upsample
from keras_models.direction import DOWN, UP, with_direction


def encoder(input_shape, latent_dim=16, width=32, name="encoder"):
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(width, 3, strides=2, padding="same", activation="relu")(inputs)
    x = layers.Conv2D(2 * width, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(8 * width, activation="relu")(x)
    z_mean = layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = layers.Dense(latent_dim, name="z_log_var")(x)
    return keras.Model(inputs, [z_mean, z_log_var], name=name)


def decoder(output_shape, latent_dim=16, width=32, upsampling="resize", name="decoder"):
    h, w, c = output_shape
    inputs = keras.Input((latent_dim,), name="z")
    x = layers.Dense((h // 4) * (w // 4) * 2 * width, activation="relu")(inputs)
    x = layers.Reshape((h // 4, w // 4, 2 * width))(x)
    x = upsample(x, 2 * width, upsampling, activation="relu")
    x = upsample(x, width, upsampling, activation="relu")
    outputs = layers.Conv2D(c, 3, padding="same", activation="sigmoid", name="image_mean")(x)
    return keras.Model(inputs, outputs, name=name)


@keras.saving.register_keras_serializable(package="keras_baselines")
class VAE(keras.Model):
    """z ~ q(z|x) by the reparameterisation trick; loss = reconstruction + beta * KL."""

    EVAL_NOISE = 1024  # evaluation batches may hold at most this many images

    def __init__(self, encoder, decoder, beta=1.0, decoder_std=0.1, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.decoder_std = float(decoder_std)
        self.encoder = encoder
        self.decoder = decoder
        self.beta = float(beta)
        self.seed = int(seed)
        self.latent_dim = decoder.input_shape[-1]
        self.seed_generator = keras.random.SeedGenerator(seed)
        # Evaluation noise: numpy constants, so validation ELBOs are the same estimate every epoch
        # and on every backend (training draws fresh noise from the seed generator).
        self.eval_noise = np.random.default_rng(self.seed + 1).normal(
            size=(self.EVAL_NOISE, self.latent_dim)).astype("float32")
        self.reconstruction_tracker = with_direction(keras.metrics.Mean(name="reconstruction_loss"), DOWN)
        self.kl_tracker = with_direction(keras.metrics.Mean(name="kl"), DOWN)
        self.elbo_tracker = with_direction(keras.metrics.Mean(name="elbo"), UP)
        self.built = True

    def call(self, images, training=False):
        """Returns the reconstruction and the posterior's parameters (the loss needs them)."""
        z_mean, z_log_var = self.encoder(images, training=training)
        if training:
            eps = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        else:
            eps = ops.convert_to_tensor(self.eval_noise)[: ops.shape(z_mean)[0]]
        z = z_mean + ops.exp(0.5 * z_log_var) * eps
        return {"reconstruction": self.decoder(z, training=training), "z_mean": z_mean, "z_log_var": z_log_var}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        var = self.decoder_std ** 2
        nll = 0.5 * ops.square(y - y_pred["reconstruction"]) / var + 0.5 * math.log(2.0 * math.pi * var)
        reconstruction = ops.sum(nll, axis=(1, 2, 3))  # nats per image
        z_mean, z_log_var = y_pred["z_mean"], y_pred["z_log_var"]
        kl = -0.5 * ops.sum(1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=-1)
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        self.elbo_tracker.update_state(-(reconstruction + kl))
        return ops.mean(reconstruction + self.beta * kl)

    def encode(self, images):
        z_mean, _ = self.encoder(images, training=False)
        return z_mean

    def decode(self, z):
        return self.decoder(z, training=False)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta, "decoder_std": self.decoder_std, "seed": self.seed,
                "encoder": keras.saving.serialize_keras_object(self.encoder),
                "decoder": keras.saving.serialize_keras_object(self.decoder)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        config["decoder"] = keras.saving.deserialize_keras_object(config["decoder"])
        return cls(**config)


def conv_vae(input_shape, latent_dim=16, width=32, beta=1.0, decoder_std=0.1, seed=0, upsampling="resize"):
    if input_shape[0] % 4 or input_shape[1] % 4:
        raise ValueError(f"VAE image size must be a multiple of 4, got {input_shape[:2]}")
    return VAE(encoder(input_shape, latent_dim, width), decoder(input_shape, latent_dim, width, upsampling),
               beta=beta, decoder_std=decoder_std, seed=seed, name="conv_vae")
