"""The GAN's train and test steps, written once per backend and chosen once at import.

This is the one place the project writes a per-backend step: a GAN applies two optimizers to two
models in one step, which Keras' default `train_step` cannot express.

- TensorFlow: stateful, `tf.GradientTape` per model, `optimizer.apply` updates variables in place.
- JAX: stateless `train_step(state, data) -> (logs, state)` as `keras/src/backend/jax/trainer.py`
  threads it. `state` = (trainable, non_trainable, optimizer, metrics) variable *values*, ordered
  as `model.trainable_variables`, `model.non_trainable_variables`, `model.optimizer.variables`
  (generator optimizer then discriminator optimizer, see `PairedOptimizer`) and
  `model.metrics_variables`. Each half-step maps those values onto the variables in a
  `StatelessScope`, differentiates with `jax.value_and_grad` with respect to one model's
  weights, and applies that model's optimizer with `stateless_apply`.

Losses and the sample score live in `keras_models/gan.py` and are shared by both.
"""

from __future__ import annotations

import keras
from keras import ops


def _real_images(data):
    return data[0] if isinstance(data, (tuple, list)) else data


class TensorFlowGANSteps:
    def train_step(self, data):
        import tensorflow as tf

        real = _real_images(data)
        n = ops.shape(real)[0]
        d_vars = self.discriminator.trainable_variables
        with tf.GradientTape() as tape:
            d_loss = self.discriminator_loss(real, self.sample_latents(n), training=True)
        self.optimizer.discriminator_optimizer.apply(tape.gradient(d_loss, d_vars), d_vars)

        g_vars = self.generator.trainable_variables
        with tf.GradientTape() as tape:
            g_loss = self.generator_loss(self.sample_latents(n), training=True)
        self.optimizer.generator_optimizer.apply(tape.gradient(g_loss, g_vars), g_vars)
        return self.record_train(d_loss, g_loss, n)

    def test_step(self, data):
        return self.evaluation_logs(_real_images(data))


class JaxGANSteps:
    def _indices(self):
        position = {id(v): i for i, v in enumerate(self.trainable_variables)}
        return ([position[id(v)] for v in self.generator.trainable_variables],
                [position[id(v)] for v in self.discriminator.trainable_variables])

    def _run_stateless(self, trainable, non_trainable, metrics, fn):
        """Run `fn` with the model's variables reading the given values; return its output and
        the (possibly updated) non-trainable and metric values."""
        from keras.src.backend.common.stateless_scope import StatelessScope

        mapping = (list(zip(self.trainable_variables, trainable))
                   + list(zip(self.non_trainable_variables, non_trainable))
                   + list(zip(self.metrics_variables, metrics)))
        with StatelessScope(state_mapping=mapping) as scope:
            out = fn()
        return (out, [scope.get_current_value(v) for v in self.non_trainable_variables],
                [scope.get_current_value(v) for v in self.metrics_variables])

    def _half_step(self, indices, optimizer, opt_values, trainable, non_trainable, metrics, loss_fn):
        """One model's update: grads of loss_fn w.r.t. the weights at `indices`, then its optimizer."""
        import jax

        def loss_of(params, non_trainable):
            values = list(trainable)
            for i, p in zip(indices, params):
                values[i] = p
            loss, non_trainable, _ = self._run_stateless(values, non_trainable, metrics, loss_fn)
            return loss, non_trainable

        params = [trainable[i] for i in indices]
        (loss, non_trainable), grads = jax.value_and_grad(loss_of, has_aux=True)(params, non_trainable)
        params, opt_values = optimizer.stateless_apply(opt_values, grads, params)
        trainable = list(trainable)
        for i, p in zip(indices, params):
            trainable[i] = p
        return loss, trainable, non_trainable, opt_values

    def train_step(self, state, data):
        trainable, non_trainable, opt_values, metrics = state
        real = _real_images(data)
        n = real.shape[0]
        g_idx, d_idx = self._indices()
        g_opt, d_opt = self.optimizer.generator_optimizer, self.optimizer.discriminator_optimizer
        split = len(g_opt.variables)
        g_opt_values, d_opt_values = list(opt_values[:split]), list(opt_values[split:])

        d_loss, trainable, non_trainable, d_opt_values = self._half_step(
            d_idx, d_opt, d_opt_values, trainable, non_trainable, metrics,
            lambda: self.discriminator_loss(real, self.sample_latents(n), training=True))
        g_loss, trainable, non_trainable, g_opt_values = self._half_step(
            g_idx, g_opt, g_opt_values, trainable, non_trainable, metrics,
            lambda: self.generator_loss(self.sample_latents(n), training=True))

        logs, non_trainable, metrics = self._run_stateless(
            trainable, non_trainable, metrics, lambda: self.record_train(d_loss, g_loss, n))
        return logs, (trainable, non_trainable, g_opt_values + d_opt_values, metrics)

    def test_step(self, state, data):
        trainable, non_trainable, metrics = state
        real = _real_images(data)
        logs, non_trainable, metrics = self._run_stateless(
            trainable, non_trainable, metrics, lambda: self.evaluation_logs(real))
        return logs, (trainable, non_trainable, metrics)


_STEPS = {"tensorflow": TensorFlowGANSteps, "jax": JaxGANSteps}
if keras.config.backend() not in _STEPS:
    raise ImportError(f"the GAN has train steps for {', '.join(_STEPS)}, not {keras.config.backend()!r}")
GANSteps = _STEPS[keras.config.backend()]
