"""Recommenders over (user id, item id) pairs: matrix factorisation, NeuMF, two towers.

Every model takes {"user": int32 (B,), "item": int32 (B,)} (vocabulary ids, 0 = out of vocabulary)
and returns one score per pair, (B, 1): a rating (explicit feedback, around `global_mean`) or a
logit (implicit feedback). The embedding tables are named `user_embedding` / `item_embedding`
(TensorBoard's projector and `item_vectors` read them). keras layers and keras.ops only.
"""

from __future__ import annotations

import keras
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


def two_tower(num_users: int, num_items: int, *, embedding_dim: int = 32, l2: float = 0.02, dropout: float = 0.0,
              hidden: tuple = (64, 32), explicit: bool = True, global_mean: float = 0.0, **_) -> keras.Model:
    """User and item towers (id embedding -> MLP -> vector); the score is their dot product plus user
    and item biases, so all items' vectors can be computed once and searched (retrieval)."""
    user, item = _inputs()
    u = _embed(user, num_users, embedding_dim, "user_embedding", l2, dropout)
    v = _embed(item, num_items, embedding_dim, "item_embedding", l2, dropout)
    u = layers.Dense(hidden[-1] if hidden else embedding_dim, name="user_tower_out")(_mlp(u, hidden[:-1], dropout, "user_tower"))
    v = layers.Dense(hidden[-1] if hidden else embedding_dim, name="item_tower_out")(_mlp(v, hidden[:-1], dropout, "item_tower"))
    dot = layers.Dot(axes=1, name="dot")([u, v])
    parts = [dot, *_biases(user, item, num_users, num_items, l2)]  # the item bias carries popularity
    return keras.Model({"user": user, "item": item}, _head(parts, explicit, global_mean), name="two_tower")


MODELS = {"mf": mf, "neumf": neumf, "two_tower": two_tower}
