"""Recommenders over (user id, item id) pairs: matrix factorisation, NeuMF, two towers.

Every model takes {"user": int32 (B,), "item": int32 (B,)} (vocabulary ids, 0 = out of vocabulary)
and returns one score per pair, (B, 1): a rating (explicit feedback, around `global_mean`) or a
logit (implicit feedback). The embedding tables are named `user_embedding` / `item_embedding`
(TensorBoard's projector reads the latter; in `two_tower` they sit inside the `user_tower` /
`item_tower` sub-models). keras layers and keras.ops only.
"""

from __future__ import annotations

import keras
import keras_rs
from keras import layers, ops


@keras.saving.register_keras_serializable(package="keras_baselines")
class L2Penalty(layers.Layer):
    """Identity that adds `weight * mean(||x||^2)` to the loss while training only.

    The classic per-rating regulariser of matrix factorisation: only the rows a batch looks up are
    shrunk, and the validation loss stays the plain rating error (comparable to RMSE)."""

    def __init__(self, weight: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.weight = float(weight)

    def call(self, x, training=None):
        if training and self.weight > 0:
            self.add_loss(self.weight * ops.mean(ops.sum(ops.square(x), axis=-1)))
        return x

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}


@keras.saving.register_keras_serializable(package="keras_baselines")
class GlobalBias(layers.Layer):
    """Adds one trainable scalar (started at the training ratings' mean)."""

    def __init__(self, initial: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.initial = float(initial)

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(), initializer=keras.initializers.Constant(self.initial), name="bias")

    def call(self, x):
        return x + ops.cast(self.bias, x.dtype)

    def get_config(self):
        return {**super().get_config(), "initial": self.initial}


def _inputs():
    return keras.Input(shape=(), dtype="int32", name="user"), keras.Input(shape=(), dtype="int32", name="item")


def _embed(ids, count: int, dim: int, name: str, l2: float, dropout: float = 0.0):
    """An id embedding, regularised per looked-up row, with optional dropout."""
    x = layers.Embedding(count, dim, embeddings_initializer=keras.initializers.RandomNormal(stddev=0.05),
                         name=name)(ids)
    x = L2Penalty(l2, name=f"{name}_l2")(x)
    return layers.Dropout(dropout, name=f"{name}_dropout")(x) if dropout else x


def _biases(user, item, num_users: int, num_items: int, l2: float):
    b_u = _embed(user, num_users, 1, "user_bias", l2)
    b_i = _embed(item, num_items, 1, "item_bias", l2)
    return [b_u, b_i]


def _head(parts: list, explicit: bool, global_mean: float):
    """Sum of the score parts; explicit ratings add the global mean."""
    x = layers.Add(name="score")(parts) if len(parts) > 1 else parts[0]
    return GlobalBias(global_mean if explicit else 0.0, name="global_bias")(x)


def _mlp(x, hidden: tuple, dropout: float, name: str):
    for i, units in enumerate(hidden):
        x = layers.Dense(units, activation="relu", name=f"{name}_{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"{name}_dropout_{i}")(x)
    return x


def mf(num_users: int, num_items: int, *, embedding_dim: int = 32, l2: float = 0.02, dropout: float = 0.0,
       explicit: bool = True, global_mean: float = 0.0, **_) -> keras.Model:
    """Biased matrix factorisation: mu + b_u + b_i + <p_u, q_i>."""
    user, item = _inputs()
    p = _embed(user, num_users, embedding_dim, "user_embedding", l2, dropout)
    q = _embed(item, num_items, embedding_dim, "item_embedding", l2, dropout)
    dot = layers.Dot(axes=1, name="dot")([p, q])
    out = _head([dot, *_biases(user, item, num_users, num_items, l2)], explicit, global_mean)
    return keras.Model({"user": user, "item": item}, out, name="mf")


def neumf(num_users: int, num_items: int, *, embedding_dim: int = 32, l2: float = 0.02, dropout: float = 0.0,
          hidden: tuple = (64, 32), explicit: bool = True, global_mean: float = 0.0, **_) -> keras.Model:
    """NeuMF (He et al. 2017): a GMF branch (p_u * q_i) and an MLP branch over separate embeddings,
    concatenated into one linear score (plus biases for explicit ratings)."""
    user, item = _inputs()
    p = _embed(user, num_users, embedding_dim, "user_embedding", l2, dropout)
    q = _embed(item, num_items, embedding_dim, "item_embedding", l2, dropout)
    gmf = layers.Multiply(name="gmf")([p, q])
    pm = _embed(user, num_users, embedding_dim, "user_mlp_embedding", l2, dropout)
    qm = _embed(item, num_items, embedding_dim, "item_mlp_embedding", l2, dropout)
    mlp = _mlp(layers.Concatenate(name="mlp_input")([pm, qm]), hidden, dropout, "mlp")
    score = layers.Dense(1, name="neumf_out")(layers.Concatenate(name="neumf_input")([gmf, mlp]))
    parts = [score, *_biases(user, item, num_users, num_items, l2)] if explicit else [score]
    return keras.Model({"user": user, "item": item}, _head(parts, explicit, global_mean), name="neumf")


def _tower(ids, count: int, embedding_dim: int, hidden: tuple, l2: float, dropout: float, side: str):
    """id -> embedding -> MLP -> vector (the last `hidden` size, or the embedding size)."""
    x = _embed(ids, count, embedding_dim, f"{side}_embedding", l2, dropout)
    x = _mlp(x, hidden[:-1], dropout, f"{side}_tower")
    return layers.Dense(hidden[-1] if hidden else embedding_dim, name=f"{side}_tower_out")(x)


@keras.saving.register_keras_serializable(package="keras_baselines")
class InBatchSoftmax(keras.Model):
    """A two-tower functional model trained by sampled softmax over the batch's items.

    Every row labelled 1 is a query; its item is the positive and every other item in the batch (the
    other rows' positives and any sampled negative rows) a negative, so one batch of B rows scores
    B x B pairs (in-batch softmax). The towers are the sub-models `user_tower` (id -> vector) and
    `item_tower` (id -> vector, bias, sampling probability). The logits get the logQ correction
    (keras-rs `SamplingProbabilityCorrection`: minus the log of each candidate's probability of being
    in a batch, from the `item_sampling_probability` table, which the task fills from training
    popularity; all ones = no correction), and accidental hits (the row's own item appearing again
    as a negative) are masked. The model's output stays one score per (user, item) pair, so
    prediction, ranking metrics and the saved model are those of any other recommender here.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.correction = keras_rs.layers.SamplingProbabilityCorrection()

    def in_batch_logits(self, users, items, training=None):
        """(B, B) logits of every batch user against every batch item, logQ-corrected and with
        accidental hits masked."""
        u = self.get_layer("user_tower")(users, training=training)
        v, bias, probability = self.get_layer("item_tower")(items, training=training)
        logits = ops.matmul(u, ops.transpose(v)) + ops.reshape(bias, (1, -1))
        logits = self.correction(logits, ops.broadcast_to(ops.reshape(probability, (1, -1)), ops.shape(logits)))
        same = ops.equal(ops.expand_dims(items, 1), ops.expand_dims(items, 0))
        accidental = ops.logical_and(same, ops.logical_not(ops.cast(ops.eye(ops.shape(items)[0]), "bool")))
        # keras-rs 0.4's RemoveAccidentalHits adds ~1e-40 to such logits (a no-op, keras-rs PR #206)
        return ops.where(accidental, ops.cast(-1e9, logits.dtype), logits)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        logits = self.in_batch_logits(x["user"], x["item"], training=training)
        labels = ops.eye(ops.shape(logits)[0], dtype=logits.dtype)
        per_row = keras.losses.categorical_crossentropy(labels, logits, from_logits=True)
        queries = ops.cast(ops.reshape(y, (-1,)) > 0.5, per_row.dtype)
        loss = ops.sum(per_row * queries) / ops.maximum(ops.sum(queries), 1.0)
        for extra in self.losses:  # the L2 penalties of the looked-up rows
            loss = loss + self._aggregate_additional_loss(extra)
        return loss


def two_tower(num_users: int, num_items: int, *, embedding_dim: int = 32, l2: float = 0.02, dropout: float = 0.0,
              hidden: tuple = (64, 32), explicit: bool = True, global_mean: float = 0.0, in_batch_softmax: bool = False,
              **_) -> keras.Model:
    """User and item towers (id embedding -> MLP -> vector); the score is their dot product plus the
    item bias (and the user bias and global mean for ratings), so all items' vectors can be computed
    once and searched (retrieval). `in_batch_softmax` (implicit feedback) returns an `InBatchSoftmax`
    model, trained over the batch's items instead of a per-pair loss."""
    user, item = _inputs()
    user_in, item_in = _inputs()
    user_tower = keras.Model(user_in, _tower(user_in, num_users, embedding_dim, hidden, l2, dropout, "user"),
                             name="user_tower")
    item_bias = _embed(item_in, num_items, 1, "item_bias", l2)
    probability = layers.Embedding(num_items, 1, embeddings_initializer="ones", trainable=False,
                                   name="item_sampling_probability")(item_in)
    item_tower = keras.Model(item_in, [_tower(item_in, num_items, embedding_dim, hidden, l2, dropout, "item"),
                                       item_bias, probability], name="item_tower")
    v, b_i, _ = item_tower(item)
    parts = [layers.Dot(axes=1, name="dot")([user_tower(user), v]), b_i]  # the item bias carries popularity
    if not in_batch_softmax:  # a per-user constant cancels out of a softmax over items
        parts.append(_embed(user, num_users, 1, "user_bias", l2))
    if in_batch_softmax:  # no global bias either: a constant has no gradient through a softmax
        return InBatchSoftmax({"user": user, "item": item}, layers.Add(name="score")(parts), name="two_tower")
    out = _head(parts, explicit, global_mean)
    return keras.Model({"user": user, "item": item}, out, name="two_tower")


MODELS = {"mf": mf, "neumf": neumf, "two_tower": two_tower}
