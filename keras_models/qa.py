"""Extractive readers: start/end logits over the context tokens of a window (keras.ops only).

Inputs are int ids `question` (batch, Q) and `context` (batch, C) with 0 = padding and context
position 0 = the [NULL] no-answer slot. Output: float32 logits (batch, C, 2) [start, end], padding
positions at -1e9. The layer `null_threshold` carries, as a weight, the no-answer threshold tuned
on validation (SQuAD v2.0), so every checkpoint and model.keras keep the threshold chosen with it.
"""

import keras
import keras_hub
from keras import layers, ops

PAD, UNK, NULL, SEP = 0, 1, 2, 3
NEG = -1e9


def _mask(ids):
    return ops.not_equal(ids, PAD)


@keras.saving.register_keras_serializable(package="keras_baselines")
class ExactMatch(layers.Layer):
    """1.0 where a token of `a` also occurs in `b` (padding and [UNK] never match): the DrQA feature
    that lets a reader find the question's words in the context by identity, not by embedding."""

    def call(self, inputs):
        a, b = inputs
        same = ops.equal(ops.expand_dims(a, 2), ops.expand_dims(b, 1)) & ops.expand_dims(ops.greater(b, UNK), 1)
        return ops.expand_dims(ops.cast(ops.any(same, axis=2), "float32"), -1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[0], 1)


@keras.saving.register_keras_serializable(package="keras_baselines")
class BiAttention(layers.Layer):
    """BiDAF attention flow: trilinear similarity S = w1.c + w2.q + w3.(c*q), context-to-query and
    query-to-context attention, output [c; c2q; c*c2q; c*q2c] per context token (keeping the
    context's padding mask for the modelling layers)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def compute_mask(self, inputs, mask=None):
        return mask[0] if isinstance(mask, (list, tuple)) else None

    def build(self, input_shape):
        dim = input_shape[0][-1]
        self.w_c = self.add_weight(shape=(dim,), initializer="glorot_uniform", name="w_c")
        self.w_q = self.add_weight(shape=(dim,), initializer="glorot_uniform", name="w_q")
        self.w_cq = self.add_weight(shape=(dim,), initializer="glorot_uniform", name="w_cq")

    def call(self, inputs):
        c, q, c_ids, q_ids = inputs
        s = (ops.expand_dims(ops.einsum("bcd,d->bc", c, self.w_c), 2)
             + ops.expand_dims(ops.einsum("bqd,d->bq", q, self.w_q), 1)
             + ops.einsum("bcd,bqd->bcq", c * self.w_cq, q))
        q_mask = ops.expand_dims(_mask(q_ids), 1)
        c2q = ops.einsum("bcq,bqd->bcd", ops.softmax(ops.where(q_mask, s, NEG), axis=2), q)
        best = ops.max(ops.where(q_mask, s, NEG), axis=2)  # (b, c)
        beta = ops.softmax(ops.where(_mask(c_ids), best, NEG), axis=1)
        q2c = ops.expand_dims(ops.einsum("bc,bcd->bd", beta, c), 1)
        return ops.concatenate([c, c2q, c * c2q, c * q2c], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[0][:-1], 4 * input_shape[0][-1])


@keras.saving.register_keras_serializable(package="keras_baselines")
class SpanLogits(layers.Layer):
    """(start, end) logits stacked to (batch, C, 2), padding at -1e9, in float32."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def compute_mask(self, inputs, mask=None):
        return None

    def call(self, inputs):
        start, end, ids = inputs
        logits = ops.cast(ops.concatenate([start, end], axis=-1), "float32")
        return ops.where(ops.expand_dims(_mask(ids), -1), logits, NEG)

    def compute_output_shape(self, input_shape):
        return (*input_shape[0][:-1], 2)


@keras.saving.register_keras_serializable(package="keras_baselines")
class NullThreshold(layers.Layer):
    """Identity on the logits; holds the v2.0 no-answer threshold (set by the metrics on validation)."""

    def build(self, input_shape):
        self.threshold = self.add_weight(shape=(), initializer="zeros", trainable=False, name="threshold")

    def call(self, inputs):
        return inputs


@keras.saving.register_keras_serializable(package="keras_baselines")
class JoinQuestionContext(layers.Layer):
    """ids [question; SEP; context] and segment ids (0 question, 1 context) for a single encoder."""

    def call(self, inputs):
        q, c = inputs
        sep = ops.full((ops.shape(q)[0], 1), SEP, dtype=q.dtype)
        ids = ops.concatenate([q, sep, c], axis=1)
        segments = ops.concatenate([ops.zeros_like(q), ops.zeros_like(sep), ops.ones_like(c)], axis=1)
        return ids, segments

    def compute_output_shape(self, input_shape):
        n = input_shape[0][1] + 1 + input_shape[1][1]
        return (input_shape[0][0], n), (input_shape[0][0], n)


@keras.saving.register_keras_serializable(package="keras_baselines")
class TakeLast(layers.Layer):
    """The last `n` positions of a sequence (the context part of [question; SEP; context])."""

    def __init__(self, n, **kwargs):
        super().__init__(**kwargs)
        self.n = n

    def call(self, x):
        return x[:, -self.n:]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.n, *input_shape[2:])

    def get_config(self):
        return {**super().get_config(), "n": self.n}


@keras.saving.register_keras_serializable(package="keras_baselines")
class SpanLoss(keras.losses.Loss):
    """Cross-entropy of the start and of the end position; the target is (start, end, window uid)."""

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        start = keras.losses.sparse_categorical_crossentropy(y_true[:, 0], y_pred[..., 0], from_logits=True)
        end = keras.losses.sparse_categorical_crossentropy(y_true[:, 1], y_pred[..., 1], from_logits=True)
        return (start + end) / 2.0


def _inputs(question_length, context_length):
    return (keras.Input((question_length,), dtype="int32", name="question"),
            keras.Input((context_length,), dtype="int32", name="context"))


def bidaf(vocab_size, question_length, context_length, *, embedding_dim=64, hidden=64, dropout=0.2,
          name="bidaf", **_):
    """Embeddings + exact-match feature -> shared BiLSTM encoder -> attention flow -> BiLSTM modelling
    layers -> start and end heads (BiDAF, Seo et al. 2017, without the character CNN)."""
    q_ids, c_ids = _inputs(question_length, context_length)
    embed = layers.Embedding(vocab_size, embedding_dim, mask_zero=True, name="embedding")
    drop = layers.SpatialDropout1D(dropout)
    c = layers.Concatenate()([drop(embed(c_ids)), ExactMatch()([c_ids, q_ids])])
    q = layers.Concatenate()([drop(embed(q_ids)), ExactMatch()([q_ids, c_ids])])
    encoder = layers.Bidirectional(layers.LSTM(hidden, return_sequences=True), name="encoder")
    c, q = encoder(c), encoder(q)
    g = BiAttention(name="attention")([c, q, c_ids, q_ids])
    m = layers.Bidirectional(layers.LSTM(hidden, return_sequences=True), name="modelling")(g)
    m = layers.Dropout(dropout)(m)
    start = layers.Dense(1, name="start")(layers.Concatenate()([g, m]))
    m2 = layers.Bidirectional(layers.LSTM(hidden, return_sequences=True), name="modelling_end")(m)
    end = layers.Dense(1, name="end")(layers.Concatenate()([g, m2]))
    out = NullThreshold(name="null_threshold")(SpanLogits(name="span_logits")([start, end, c_ids]))
    return keras.Model({"question": q_ids, "context": c_ids}, out, name=name)


def transformer(vocab_size, question_length, context_length, *, embedding_dim=64, hidden=128, num_heads=4,
                num_layers=2, dropout=0.1, name="qa_transformer", **_):
    """One encoder over [question; SEP; context] with token, position and segment embeddings
    (keras-hub layers), start/end heads on the context positions; the shape a pretrained BERT-style
    backbone would slot into."""
    q_ids, c_ids = _inputs(question_length, context_length)
    ids, segments = JoinQuestionContext()([q_ids, c_ids])
    length = question_length + 1 + context_length
    x = keras_hub.layers.TokenAndPositionEmbedding(vocab_size, length, embedding_dim, name="embedding")(ids)
    x = layers.Add()([x, layers.Embedding(2, embedding_dim, name="segment_embedding")(segments)])
    em = ExactMatch()([ids, ids * (1 - segments)])  # context tokens that occur in the question
    x = layers.Dense(embedding_dim)(layers.Concatenate()([x, em]))
    x = layers.LayerNormalization()(x)
    padding = PaddingMask()(ids)
    for _ in range(num_layers):
        x = keras_hub.layers.TransformerEncoder(hidden, num_heads, dropout=dropout)(x, padding_mask=padding)
    x = TakeLast(context_length)(x)
    start = layers.Dense(1, name="start")(x)
    end = layers.Dense(1, name="end")(x)
    out = NullThreshold(name="null_threshold")(SpanLogits(name="span_logits")([start, end, c_ids]))
    return keras.Model({"question": q_ids, "context": c_ids}, out, name=name)


@keras.saving.register_keras_serializable(package="keras_baselines")
class PaddingMask(layers.Layer):
    """True at real tokens (the [SEP] and [NULL] slots included)."""

    def call(self, ids):
        return _mask(ids)

    def compute_output_shape(self, input_shape):
        return input_shape


MODELS = {"bidaf": bidaf, "transformer": transformer}  # first = default
