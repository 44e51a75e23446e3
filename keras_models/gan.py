"""DCGAN: a functional generator and discriminator, their losses, a sample-quality score, and the
`GAN` model that trains them with two optimizers.

Everything here is backend-neutral (keras.layers / keras.ops). Only the train/test *steps* differ
per backend (TensorFlow GradientTape vs JAX stateless functions); `GAN` inherits them from
`gan_steps.GANSteps`, which is chosen once at import as Keras chooses its Trainer.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from keras_models.autoencoder import upsample
from keras_models.direction import DOWN, with_direction
from keras_models.gan_steps import GANSteps

BN_MOMENTUM = 0.9


def generator(output_shape, latent_dim=64, width=32, upsampling="resize", name="generator"):
    """z -> Dense -> (H/8, W/8, 4w) -> three 2x upsampling stages (see autoencoder.upsample) ->
    tanh image in [-1, 1]."""
    h, w, c = output_shape
    z = keras.Input((latent_dim,), name="z")
    x = layers.Dense((h // 8) * (w // 8) * 4 * width, use_bias=False)(z)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    x = layers.ReLU()(x)
    x = layers.Reshape((h // 8, w // 8, 4 * width))(x)
    for mult in (2, 1):
        x = upsample(x, mult * width, upsampling, kernel=4, use_bias=False)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
        x = layers.ReLU()(x)
    image = upsample(x, c, upsampling, kernel=4, activation="tanh", name="image")
    return keras.Model(z, image, name=name)


def discriminator(input_shape, width=32, dropout=0.2, name="discriminator"):
    """Three stride-2 convs with LeakyReLU (no batch norm), one logit: real vs generated."""
    image = keras.Input(input_shape, name="image")
    x = image
    for mult in (1, 2, 4):
        x = layers.Conv2D(mult * width, 4, strides=2, padding="same")(x)
        x = layers.LeakyReLU(0.2)(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(dropout)(x)
    logit = layers.Dense(1, name="logit")(x)
    return keras.Model(image, logit, name=name)


def adversarial_loss(target: float, logits):
    """Mean binary cross-entropy of logits against a constant label (1 = real, 0 = generated)."""
    return ops.mean(ops.binary_crossentropy(ops.full_like(logits, target), logits, from_logits=True))


# --- sample-quality score ----------------------------------------------------------------------------


def score_network(input_shape, width=16, feature_dim=64, name="score_features"):
    """A small conv net whose output describes an image for the sample score: our stand-in for the
    Inception network of KID/FID, small enough to train on the GAN's own data in seconds.

    `train_score_network` trains it as a classifier (a Dense head on these features) before the
    GAN's first step; the GAN then keeps it frozen. The features are unit vectors scaled by
    sqrt(feature_dim), so the kernel's x.y/d in `kernel_distance` is their cosine.
    """
    image = keras.Input(input_shape, name="image")
    x = image
    for mult in (1, 2, 4):
        x = layers.Conv2D(mult * width, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(mult * width, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.UnitNormalization()(layers.Dense(feature_dim)(x))
    return keras.Model(image, layers.Rescaling(math.sqrt(feature_dim))(x), name=name)


def train_score_network(features: keras.Model, train, val, num_classes: int, steps: int) -> float:
    """Train `features` under a temporary classifier head on batched (image, label) datasets
    (`train` repeats); return the head's validation accuracy. Leaves `features` frozen."""
    features.trainable = True
    logits = layers.Dense(num_classes, name="score_head")(features.output)
    classifier = keras.Model(features.input, logits, name="score_classifier")
    classifier.compile(optimizer=keras.optimizers.Adam(1e-3),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                       metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    classifier.fit(train, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    accuracy = classifier.evaluate(val, verbose=0, return_dict=True)["accuracy"]
    features.trainable = False
    return float(accuracy)


def kernel_distance(a, b):
    """Unbiased squared MMD with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3: the Kernel
    Inception Distance formula (Binkowski et al. 2018) on our features. 0 = same distribution;
    on `score_network` features (cosine kernel) it is at most 16."""
    d = ops.cast(ops.shape(a)[-1], "float32")
    n = ops.cast(ops.shape(a)[0], "float32")
    m = ops.cast(ops.shape(b)[0], "float32")
    kaa = (ops.matmul(a, ops.transpose(a)) / d + 1.0) ** 3
    kbb = (ops.matmul(b, ops.transpose(b)) / d + 1.0) ** 3
    kab = (ops.matmul(a, ops.transpose(b)) / d + 1.0) ** 3
    same_a = (ops.sum(kaa) - ops.trace(kaa)) / ops.maximum(n * (n - 1.0), 1.0)
    same_b = (ops.sum(kbb) - ops.trace(kbb)) / ops.maximum(m * (m - 1.0), 1.0)
    return same_a + same_b - 2.0 * ops.mean(kab)


# --- the model ------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="keras_baselines")
class PairedOptimizer(keras.optimizers.Optimizer):
    """Holds the generator's and the discriminator's optimizers behind `model.optimizer`.

    `variables` is both optimizers' state (so checkpoints and the JAX trainer's state carry
    both), `iterations` is the generator optimizer's step count (one per GAN step) and
    `learning_rate` the generator's. The GAN steps apply each optimizer to its own model.
    """

    def __init__(self, generator_optimizer, discriminator_optimizer, name="gan_optimizers", **kwargs):
        super().__init__(learning_rate=0.0, name=name, **kwargs)
        self.generator_optimizer = generator_optimizer
        self.discriminator_optimizer = discriminator_optimizer

    def build_pair(self, generator_variables, discriminator_variables):
        self.generator_optimizer.build(generator_variables)
        self.discriminator_optimizer.build(discriminator_variables)
        super().build(list(generator_variables) + list(discriminator_variables))

    def build(self, var_list):
        if not self.built:
            raise ValueError("PairedOptimizer is built by GAN.compile (build_pair), not by build()")

    @property
    def variables(self):
        return self.generator_optimizer.variables + self.discriminator_optimizer.variables

    @property
    def iterations(self):
        return self.generator_optimizer.iterations

    @property
    def learning_rate(self):
        return self.generator_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self.generator_optimizer.learning_rate = value

    def apply(self, grads, trainable_variables=None):
        raise NotImplementedError("GAN steps apply generator_optimizer and discriminator_optimizer directly")

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        raise NotImplementedError("GAN steps apply generator_optimizer and discriminator_optimizer directly")

    def get_config(self):
        return {"name": self.name,
                "generator_optimizer": keras.optimizers.serialize(self.generator_optimizer),
                "discriminator_optimizer": keras.optimizers.serialize(self.discriminator_optimizer)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        for key in ("generator_optimizer", "discriminator_optimizer"):
            config[key] = keras.optimizers.deserialize(config[key], custom_objects=custom_objects)
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_baselines")
class GAN(GANSteps, keras.Model):
    """Generator + discriminator trained adversarially (non-saturating loss).

    Logs: `d_loss`, `g_loss`, `loss` (their sum, watched by the NaN guard) and, on validation,
    `sample_distance` (kernel distance between `score_network` features of real validation images
    and of samples from a fixed latent batch; lower is better). The score network is a frozen part
    of the model, so checkpoints, `evaluate` and `compare` runs all score with the same one.
    """

    EVAL_LATENTS = 1024  # validation batches may hold at most this many images

    def __init__(self, generator, discriminator, seed=0, **kwargs):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.seed = int(seed)
        self.latent_dim = generator.input_shape[-1]
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.features = score_network(discriminator.input_shape[1:])
        self.features.trainable = False  # trained once by train_score_network, then fixed
        # The evaluation latents: numpy constants, so both backends score the very same samples.
        self.eval_latents = np.random.default_rng(self.seed + 1).normal(
            size=(self.EVAL_LATENTS, self.latent_dim)).astype("float32")
        self.loss_tracker = with_direction(keras.metrics.Mean(name="loss"), DOWN)
        self.d_loss_tracker = with_direction(keras.metrics.Mean(name="d_loss"), DOWN)
        self.g_loss_tracker = with_direction(keras.metrics.Mean(name="g_loss"), DOWN)
        self.distance_tracker = with_direction(keras.metrics.Mean(name="sample_distance"), DOWN)
        self.built = True

    def call(self, z, training=False):
        return self.generator(z, training=training)

    def example_inputs(self, n):
        """What `call` takes (latents, not images): n of the fixed evaluation latents."""
        return self.eval_latents[:n]

    def compile(self, generator_optimizer, discriminator_optimizer, jit_compile=True):
        optimizer = PairedOptimizer(generator_optimizer, discriminator_optimizer)
        optimizer.build_pair(self.generator.trainable_variables, self.discriminator.trainable_variables)
        super().compile(optimizer=optimizer, jit_compile=jit_compile)

    def compile_from_config(self, config):
        """Compile a loaded GAN with its saved optimizers (Keras cannot call a custom `compile`)."""
        config = keras.saving.deserialize_keras_object(config)
        paired = config["optimizer"]
        self.compile(paired.generator_optimizer, paired.discriminator_optimizer,
                     jit_compile=config.get("jit_compile", True))

    @property
    def metrics(self):
        return [self.loss_tracker, self.d_loss_tracker, self.g_loss_tracker, self.distance_tracker]

    # Backend-neutral pieces the per-backend steps call.

    def sample_latents(self, n):
        return keras.random.normal((n, self.latent_dim), seed=self.seed_generator)

    def discriminator_loss(self, real, z, training=True):
        fake = self.generator(z, training=training)
        return (adversarial_loss(1.0, self.discriminator(real, training=training))
                + adversarial_loss(0.0, self.discriminator(fake, training=training)))

    def generator_loss(self, z, training=True):
        return adversarial_loss(1.0, self.discriminator(self.generator(z, training=training), training=training))

    def record_train(self, d_loss, g_loss, n):
        self.loss_tracker.update_state(d_loss + g_loss, sample_weight=n)
        self.d_loss_tracker.update_state(d_loss, sample_weight=n)
        self.g_loss_tracker.update_state(g_loss, sample_weight=n)
        return {m.name: m.result() for m in self.metrics[:3]}

    def evaluation_logs(self, real):
        """Losses on a real validation batch and the sample distance to a fixed latent batch."""
        n = ops.shape(real)[0]
        z = ops.convert_to_tensor(self.eval_latents)[:n]  # the same latents every call, on every backend
        fake = self.generator(z, training=False)
        real_logits = self.discriminator(real, training=False)
        fake_logits = self.discriminator(fake, training=False)
        d_loss = adversarial_loss(1.0, real_logits) + adversarial_loss(0.0, fake_logits)
        g_loss = adversarial_loss(1.0, fake_logits)
        self.record_train(d_loss, g_loss, n)
        self.distance_tracker.update_state(kernel_distance(self.features(real), self.features(fake)), sample_weight=n)
        return {m.name: m.result() for m in self.metrics}

    def get_config(self):
        return {**super().get_config(), "seed": self.seed,
                "generator": keras.saving.serialize_keras_object(self.generator),
                "discriminator": keras.saving.serialize_keras_object(self.discriminator)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("generator", "discriminator"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def dcgan(image_shape, latent_dim=64, width=32, seed=0, upsampling="resize"):
    if image_shape[0] % 8 or image_shape[1] % 8:
        raise ValueError(f"GAN image size must be a multiple of 8, got {image_shape[:2]}")
    return GAN(generator(image_shape, latent_dim, width, upsampling), discriminator(image_shape, width), seed=seed, name="dcgan")
