"""Text classifiers over int token ids (0 = padding): BiLSTM, small Transformer encoder, 1D CNN.

Inputs are `(batch, sequence_length)` int ids (input name `tokens`, as the data describes it) made
by TextVectorization in tf.data; a text may be all padding (nothing left after standardization). The models
use keras.layers / keras-hub layers only, so they run unchanged on TensorFlow and JAX.
Embeddings are regularised with SpatialDropout1D (whole channels per text): element-wise Dropout
on the (batch, tokens, dim) tensor made XLA-compiled TensorFlow train steps 4-10x slower on CPU
(random bits for every element), for no accuracy gain on these data.
"""

import warnings

import keras
import keras_hub
from keras import layers, ops

# TokenAndPositionEmbedding passes its masked input to an inner PositionEmbedding, which warns at every
# call that it drops the mask; the outer layer still returns the padding mask (the encoder and the
# pooling use it), so the warning is noise.
warnings.filterwarnings("ignore", message=r"Layer 'position_embedding' .* does not support masking")


@keras.saving.register_keras_serializable(package="keras_baselines")
class MaskedMeanPooling1D(layers.Layer):
    """Mean over the unmasked time steps; 0 for a text that is all padding.

    keras' GlobalAveragePooling1D divides by the number of unmasked steps, which is 0 for a text
    that standardizes to nothing (e.g. "(" with punctuation stripped): NaN logits, NaN loss.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            return ops.mean(inputs, axis=1)
        weights = ops.expand_dims(ops.cast(mask, inputs.dtype), -1)
        return ops.sum(inputs * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


def bilstm(vocab_size, sequence_length, num_classes, *, embedding_dim=64, hidden=64, dropout=0.3,
           num_layers=1, name="bilstm", **_):
    """Embedding (padding masked) -> bidirectional LSTM(s) -> dense logits."""
    inputs = keras.Input((sequence_length,), dtype="int32", name="tokens")
    x = layers.Embedding(vocab_size, embedding_dim, mask_zero=True)(inputs)
    x = layers.SpatialDropout1D(dropout)(x)
    for i in range(num_layers):
        last = i == num_layers - 1
        x = layers.Bidirectional(layers.LSTM(hidden, return_sequences=not last))(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, name="logits", dtype="float32")(x)  # float32 logits under mixed precision
    return keras.Model(inputs, outputs, name=name)


def transformer(vocab_size, sequence_length, num_classes, *, embedding_dim=64, hidden=128, num_heads=2,
                num_layers=1, dropout=0.3, encoder_dropout=0.0, name="transformer", **_):
    """keras-hub TokenAndPositionEmbedding -> TransformerEncoder blocks -> masked mean pool -> logits.

    `encoder_dropout` (inside the blocks: attention weights and residual branches) defaults to 0:
    element-wise dropout there made TensorFlow's XLA train step ~20x slower on CPU.
    """
    inputs = keras.Input((sequence_length,), dtype="int32", name="tokens")
    x = keras_hub.layers.TokenAndPositionEmbedding(vocab_size, sequence_length, embedding_dim, mask_zero=True)(inputs)
    x = layers.SpatialDropout1D(dropout)(x)
    for _ in range(num_layers):
        x = keras_hub.layers.TransformerEncoder(intermediate_dim=hidden, num_heads=num_heads, dropout=encoder_dropout)(x)
    x = MaskedMeanPooling1D()(x)  # uses the padding mask carried from the embedding
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, name="logits", dtype="float32")(x)  # float32 logits under mixed precision
    return keras.Model(inputs, outputs, name=name)


def cnn(vocab_size, sequence_length, num_classes, *, embedding_dim=64, hidden=64, dropout=0.3,
        kernel_sizes=(3, 4, 5), name="text_cnn", **_):
    """Kim-style CNN: parallel Conv1D of several widths, global max pooling, dense logits."""
    inputs = keras.Input((sequence_length,), dtype="int32", name="tokens")
    x = layers.Embedding(vocab_size, embedding_dim)(inputs)
    x = layers.SpatialDropout1D(dropout)(x)
    pooled = [layers.GlobalMaxPooling1D()(layers.Conv1D(hidden, k, padding="same", activation="relu")(x))
              for k in kernel_sizes]
    x = layers.Concatenate()(pooled)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, name="logits", dtype="float32")(x)  # float32 logits under mixed precision
    return keras.Model(inputs, outputs, name=name)


MODELS = {"cnn": cnn, "bilstm": bilstm, "transformer": transformer}  # first = default
