"""Sequence-to-sequence models (teacher-forced), their masked loss and token accuracy, and decoding.

The saved model is the teacher-forced network: {"source": ids, "target_in": [START] y...} -> logits
for every target position. Decoding is a function over that model: `decoder_parts(model)` rewires
the model's own layers (found by name) into an encoder run once and a step network run once per
output position over the whole prefix (both Keras models compiled with `jit_compile`), and, for
the Transformer, `CachedTransformer`: XLA-compiled start/next functions that decode one token per
step over the decoder's key/value caches (the default; the prefix step stays as the reference and
for the GRU). Greedy decoding is beam search with one beam. With `copy=True` either family ends in a
pointer-generator head (`PointerGenerator`) whose output is already log-probabilities.

Ids: 0 = padding, 2 = [START], 3 = [END] (pipelines.seq2seq.RESERVED).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import keras
import keras_hub
import numpy as np
from keras import layers, ops

from keras_models.direction import UP, with_direction
from keras_models.xla import xla_function

warnings.filterwarnings("ignore", message=r"Layer 'position_embedding' .* does not support masking")

PAD, START, END = 0, 2, 3


@keras.saving.register_keras_serializable(package="keras_baselines")
class PaddingMask(layers.Layer):
    """ids -> bool mask, True where a token is (not padding)."""

    def call(self, ids):
        return ops.not_equal(ids, PAD)

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="keras_baselines")
class LogProbsAt(layers.Layer):
    """(logits [B, T, V], position [B]) -> log-probabilities of the next token at that position [B, V]."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, logits, position):
        steps = ops.one_hot(ops.reshape(ops.cast(position, "int32"), (-1,)), ops.shape(logits)[1], dtype=logits.dtype)
        return ops.log_softmax(ops.einsum("bt,btv->bv", steps, logits), axis=-1)

    def compute_mask(self, logits, position, mask=None):
        return None  # a GRU decoder's logits carry the target mask; one position needs none

    def compute_output_shape(self, logits_shape, position_shape):
        return (logits_shape[0], logits_shape[2])


@keras.saving.register_keras_serializable(package="keras_baselines")
class MaskedSequenceLoss(keras.losses.Loss):
    """Cross-entropy over target tokens, padding (id 0) excluded, with label smoothing.

    The mean is over real tokens in the batch, so short and long targets weigh by their tokens.
    """

    def __init__(self, label_smoothing: float = 0.0, name="masked_sequence_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        logp = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        nll = -ops.sum(ops.one_hot(y_true, ops.shape(logp)[-1], dtype=logp.dtype) * logp, axis=-1)
        if self.label_smoothing:
            nll = (1.0 - self.label_smoothing) * nll - self.label_smoothing * ops.mean(logp, axis=-1)
        mask = ops.cast(ops.not_equal(y_true, PAD), logp.dtype)
        return ops.sum(nll * mask) / ops.maximum(ops.sum(mask), 1.0)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package="keras_baselines")
class MaskedTokenAccuracy(keras.metrics.Metric):
    """Share of real (non-padding) target tokens predicted right under teacher forcing."""

    def __init__(self, name="token_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.correct = self.add_variable((), initializer="zeros", name="correct")
        self.total = self.add_variable((), initializer="zeros", name="total")
        with_direction(self, UP)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "int32")
        mask = ops.cast(ops.not_equal(y_true, PAD), "float32")
        hit = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), "float32")
        self.correct.assign_add(ops.sum(hit * mask))
        self.total.assign_add(ops.sum(mask))

    def result(self):
        return self.correct / ops.maximum(self.total, 1.0)

    def reset_state(self):
        self.correct.assign(0.0)
        self.total.assign(0.0)


@keras.saving.register_keras_serializable(package="keras_baselines")
class PointerGenerator(layers.Layer):
    """A copy mechanism (See et al. 2017): the next token is written from the vocabulary or copied
    from the source. (logits [B, T, V], decoder states [B, T, W], encoder output [B, S, W], source
    ids [B, S]) -> log-probabilities [B, T, V] of

        p_gen * softmax(logits) + (1 - p_gen) * sum_s attention[s] * one_hot(source[s])

    with one attention head of its own over the source (padding masked) and p_gen = sigmoid of a
    dense gate over [decoder state, attended context]. Needs one vocabulary for source and target
    (the source ids are target ids). The output is already normalised, so everything that takes
    logits downstream (log_softmax in the loss, argmax, the decoders) takes it unchanged.
    """

    EPSILON = 1e-7  # keeps log() finite for tokens neither generated nor copied

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.supports_masking = True
        self.query = self.key = self.gate = None

    def build(self, logits_shape, hidden_shape, memory_shape, source_shape):
        width = memory_shape[-1]
        self.query = layers.Dense(width, use_bias=False, name="query", dtype=self.dtype_policy)
        self.key = layers.Dense(width, use_bias=False, name="key", dtype=self.dtype_policy)
        self.gate = layers.Dense(1, name="gate", dtype=self.dtype_policy)
        self.query.build(hidden_shape)
        self.key.build(memory_shape)
        self.gate.build((*hidden_shape[:-1], hidden_shape[-1] + width))

    def call(self, logits, hidden, memory, source):
        hidden, memory = ops.cast(hidden, "float32"), ops.cast(memory, "float32")
        scores = ops.einsum("btw,bsw->bts", self.query(hidden), self.key(memory))
        scores = scores / float(np.sqrt(ops.shape(memory)[-1]))
        present = ops.expand_dims(ops.not_equal(source, PAD), 1)
        attention = ops.softmax(ops.where(present, scores, -1e9), axis=-1)
        context = ops.einsum("bts,bsw->btw", attention, memory)
        p_gen = ops.sigmoid(self.gate(ops.concatenate([hidden, context], axis=-1)))
        vocab = ops.shape(logits)[-1]
        copied = ops.einsum("bts,bsv->btv", attention, ops.one_hot(ops.cast(source, "int32"), vocab, dtype="float32"))
        probs = p_gen * ops.softmax(ops.cast(logits, "float32"), axis=-1) + (1.0 - p_gen) * copied
        return ops.log(probs + self.EPSILON)

    def compute_mask(self, *inputs, mask=None):
        return None  # the loss and the metrics mask padding by the target ids themselves

    def compute_output_shape(self, logits_shape, hidden_shape, memory_shape, source_shape):
        return logits_shape


def _has(get, name: str) -> bool:
    try:
        get(name)
    except ValueError:
        return False
    return True


def _output(get, hidden, memory, source):
    """Logits of the decoder states, through the copy head where the model has one."""
    logits = get("logits")(hidden)
    return get("copy_head")(logits, hidden, memory, source) if _has(get, "copy_head") else logits


# --- the two model families --------------------------------------------------------------------------
# Each family is (make_layers, encode, decode): encode(get, source) -> list of tensors, and
# decode(get, encoded, source, target_in) -> logits, where `get(name)` returns a layer. The training
# model and the decoding networks are the same wiring over the same layers.


def _layer_count(get, prefix: str) -> int:
    n = 0
    while True:
        try:
            get(f"{prefix}_{n}")
        except ValueError:
            return n
        n += 1


def _transformer_encode(get, source):
    x = get("source_embedding")(source)
    mask = get("source_mask")(source)
    for i in range(_layer_count(get, "encoder")):
        x = get(f"encoder_{i}")(x, padding_mask=mask)
    return [x]


def _transformer_decode(get, encoded, source, target_in):
    y = get("target_embedding")(target_in)
    source_mask, target_mask = get("source_mask")(source), get("target_mask")(target_in)
    for i in range(_layer_count(get, "decoder")):
        y = get(f"decoder_{i}")(y, encoded[0], decoder_padding_mask=target_mask, encoder_padding_mask=source_mask)
    return _output(get, y, encoded[0], source)


def _transformer_layers(source_vocab, target_vocab, source_length, target_length, *, width, hidden, num_heads,
                        num_layers, dropout, copy=False, **_) -> dict:
    emb = keras_hub.layers.TokenAndPositionEmbedding
    out = {"source_embedding": emb(source_vocab, source_length, width, name="source_embedding"),
           "target_embedding": emb(target_vocab, target_length, width, name="target_embedding"),
           "source_mask": PaddingMask(name="source_mask"), "target_mask": PaddingMask(name="target_mask"),
           "logits": layers.Dense(target_vocab, name="logits", dtype="float32")}
    for i in range(num_layers):
        out[f"encoder_{i}"] = keras_hub.layers.TransformerEncoder(hidden, num_heads, dropout=dropout, name=f"encoder_{i}")
        out[f"decoder_{i}"] = keras_hub.layers.TransformerDecoder(hidden, num_heads, dropout=dropout, name=f"decoder_{i}")
    return _with_copy_head(out, copy)


def _with_copy_head(made: dict, copy: bool) -> dict:
    return {**made, "copy_head": PointerGenerator(name="copy_head")} if copy else made


def _gru_encode(get, source):
    x = get("source_embedding")(source)
    seq, fwd, bwd = get("encoder_gru")(x, mask=get("source_mask")(source))
    memory = get("memory")(seq)  # projected to the decoder's width (dot-product attention needs it)
    state = get("bridge")(get("bridge_concat")([fwd, bwd]))
    return [memory, state]


def _gru_decode(get, encoded, source, target_in):
    memory, state = encoded
    source_mask, target_mask = get("source_mask")(source), get("target_mask")(target_in)
    y = get("decoder_gru")(get("target_embedding")(target_in), initial_state=state, mask=target_mask)
    context = get("attention")([y, memory], mask=[target_mask, source_mask])
    joined = get("join")([y, context])
    return _output(get, get("attention_out")(joined), memory, source)


def _gru_layers(source_vocab, target_vocab, source_length, target_length, *, width, hidden, dropout,
                attention="additive", copy=False, **_) -> dict:
    units = hidden
    attend = layers.AdditiveAttention(name="attention") if attention == "additive" else \
        layers.Attention(use_scale=True, name="attention")
    return _with_copy_head({"source_embedding": layers.Embedding(source_vocab, width, name="source_embedding"),
            "target_embedding": layers.Embedding(target_vocab, width, name="target_embedding"),
            "source_mask": PaddingMask(name="source_mask"), "target_mask": PaddingMask(name="target_mask"),
            "encoder_gru": layers.Bidirectional(layers.GRU(units, return_sequences=True, return_state=True,
                                                           dropout=dropout), name="encoder_gru"),
            "memory": layers.Dense(units, name="memory"),
            "bridge_concat": layers.Concatenate(name="bridge_concat"),
            "bridge": layers.Dense(units, activation="tanh", name="bridge"),
            "decoder_gru": layers.GRU(units, return_sequences=True, dropout=dropout, name="decoder_gru"),
            "attention": attend, "join": layers.Concatenate(name="join"),
            "attention_out": layers.Dense(units, activation="tanh", name="attention_out"),
            "logits": layers.Dense(target_vocab, name="logits", dtype="float32")}, copy)


@dataclass(frozen=True)
class Family:
    make_layers: object
    encode: object
    decode: object


FAMILIES = {"transformer": Family(_transformer_layers, _transformer_encode, _transformer_decode),
            "gru_attention": Family(_gru_layers, _gru_encode, _gru_decode)}
MODEL_PREFIX = "seq2seq_"  # model.name = seq2seq_<family>: how decoding finds the wiring of a loaded model


def build(family: str, source_vocab: int, target_vocab: int, source_length: int, target_length: int, **sizes):
    """The teacher-forced training model of one family: {"source", "target_in"} -> logits [B, T, V]."""
    fam = FAMILIES[family]
    if sizes.get("copy") and source_vocab != target_vocab:
        raise ValueError(f"a copy head needs one vocabulary for source and target ({source_vocab} != {target_vocab})")
    made = fam.make_layers(source_vocab, target_vocab, source_length, target_length, **sizes)
    get = _getter_of(made)
    source = keras.Input((source_length,), dtype="int32", name="source")
    target_in = keras.Input((target_length,), dtype="int32", name="target_in")
    logits = fam.decode(get, fam.encode(get, source), source, target_in)
    return keras.Model({"source": source, "target_in": target_in}, logits, name=MODEL_PREFIX + family)


def _getter_of(made: dict):
    def get(name):
        if name not in made:
            raise ValueError(name)
        return made[name]
    return get


# --- decoding --------------------------------------------------------------------------------------------


@dataclass
class DecoderParts:
    """The trained layers rewired for decoding: `encoder` (source -> encoded list) runs once per batch,
    `step` ([*encoded, source, target_in, position] -> next-token log-probs) once per output position
    over the whole prefix; `cached` (Transformer only) decodes one token per step over a key/value cache."""

    encoder: keras.Model
    step: keras.Model
    target_length: int
    cached: "CachedTransformer | None" = None


def decoder_parts(model: keras.Model, jit_compile: bool = True) -> DecoderParts:
    family = model.name[len(MODEL_PREFIX):] if model.name.startswith(MODEL_PREFIX) else ""
    if family not in FAMILIES:
        raise ValueError(f"not a seq2seq model: {model.name!r}")
    fam = FAMILIES[family]
    get = model.get_layer
    by_name = {t.name: t for t in model.inputs}
    source_length, target_length = by_name["source"].shape[1], by_name["target_in"].shape[1]
    source = keras.Input((source_length,), dtype="int32", name="source")
    encoded = fam.encode(get, source)
    encoder = keras.Model(source, encoded, name="encoder")
    enc_inputs = [keras.Input(t.shape[1:], dtype=t.dtype, name=f"encoded_{i}") for i, t in enumerate(encoded)]
    source2 = keras.Input((source_length,), dtype="int32", name="source")
    target_in = keras.Input((target_length,), dtype="int32", name="target_in")
    position = keras.Input((), dtype="int32", name="position")
    logits = fam.decode(get, enc_inputs, source2, target_in)
    step = keras.Model([*enc_inputs, source2, target_in, position], LogProbsAt()(logits, position), name="step")
    for m in (encoder, step):
        m.compile(jit_compile=jit_compile)
    cached = CachedTransformer(model, target_length, jit_compile) if family == "transformer" else None
    return DecoderParts(encoder, step, target_length, cached)


class CachedTransformer:
    """The Transformer decoder run one token per step, as keras-hub's causal LMs `call_with_cache`.

    Each `TransformerDecoder` keeps its self-attention keys/values of the tokens so far in a cache
    `[batch, layers, 2, target_length, heads, head_dim]` (written at the step's index), and its
    cross-attention keys/values of the encoder output in a second cache computed once at the first
    step. A step then costs one token's work instead of re-running the whole prefix. Both functions
    are XLA-compiled (`keras_models.xla`); the caches stay backend tensors between steps, and beam
    search reorders the self-attention cache on the device (`rows`).
    """

    def __init__(self, model: keras.Model, target_length: int, jit_compile: bool = True):
        self.get = model.get_layer
        self.num_layers = _layer_count(self.get, "decoder")
        first = self.get("decoder_0")
        self.num_heads = first.num_heads
        self.head_dim = self.get("target_embedding").embedding_dim // first.num_heads
        self.target_length = target_length
        self.start = xla_function(self._start, model.variables, jit_compile=jit_compile, static_argnums=(1,))
        self.next = xla_function(self._next, model.variables, jit_compile=jit_compile)

    def _start(self, source, beams: int):
        """Encode, repeat each source for its beams, decode [START] filling both caches.
        -> (log-probs [B, V], self cache, cross cache, encoded, source ids repeated per beam)."""
        encoded = _transformer_encode(self.get, source)[0]
        encoded, source = ops.repeat(encoded, beams, axis=0), ops.repeat(source, beams, axis=0)
        rows, source_length = ops.shape(encoded)[0], ops.shape(encoded)[1]
        dtype = self.get("decoder_0").compute_dtype
        heads = (self.num_layers, 2)
        self_cache = ops.zeros((rows, *heads, self.target_length, self.num_heads, self.head_dim), dtype)
        cross_cache = ops.zeros((rows, *heads, source_length, self.num_heads, self.head_dim), dtype)
        token = ops.full((rows, 1), START, dtype="int32")
        logp, self_cache, cross_cache = self._one_token(token, 0, self_cache, cross_cache, encoded, source, 0)
        return logp, self_cache, cross_cache, encoded, source

    def _next(self, rows, token, index, self_cache, cross_cache, encoded, source):
        """Reorder the self cache to the surviving beams (`rows`), decode `token` [B] at `index`.
        -> (log-probs [B, V], self cache). A source's beams share its rows of `encoded` and `source`."""
        self_cache = ops.take(self_cache, rows, axis=0)
        logp, self_cache, _ = self._one_token(ops.expand_dims(token, 1), index, self_cache, cross_cache, encoded,
                                              source, None)
        return logp, self_cache

    def _one_token(self, token, index, self_cache, cross_cache, encoded, source, cross_index):
        # positions (a gather), not start_index (a slice): TensorFlow's XLA would compile a slice per index value
        y = self.get("target_embedding")(token, positions=ops.full(ops.shape(token), index, dtype="int32"))
        mask = self.get("source_mask")(source)
        selfs, crosses = [], []
        for i in range(self.num_layers):
            y, s, c = self.get(f"decoder_{i}")(
                y, encoded, encoder_padding_mask=mask,
                self_attention_cache=self_cache[:, i], self_attention_cache_update_index=index,
                cross_attention_cache=cross_cache[:, i], cross_attention_cache_update_index=cross_index)
            selfs.append(s)
            crosses.append(c)
        logits = ops.cast(_output(self.get, y, encoded, source)[:, 0], "float32")
        return ops.log_softmax(logits, axis=-1), ops.stack(selfs, axis=1), ops.stack(crosses, axis=1)


def _as_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _numpy(x) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x), np.float64)


class _PrefixSteps:
    """Decoding without a cache: each step re-runs the decoder over the whole prefix (fixed shape)."""

    def __init__(self, parts: DecoderParts, source: np.ndarray, beams: int):
        encoded = [np.asarray(ops.convert_to_numpy(e)) for e in _as_list(parts.encoder.predict_on_batch(source))]
        rows = np.repeat(np.arange(len(source)), beams)  # beam b of source i is row i*beams + b
        self.parts, self.encoded, self.source = parts, [e[rows] for e in encoded], source[rows]
        self.target = np.zeros((len(rows), parts.target_length), np.int32)
        self.target[:, 0] = START

    def first(self) -> np.ndarray:
        return self._at(0)

    def next(self, rows: np.ndarray, tokens: np.ndarray, index: int) -> np.ndarray:
        self.target = self.target[rows]
        self.target[:, index] = tokens
        return self._at(index)

    def _at(self, index: int) -> np.ndarray:
        position = np.full(len(self.target), index, np.int32)
        return _numpy(self.parts.step.predict_on_batch([*self.encoded, self.source, self.target, position]))


class _CachedSteps:
    """Decoding with the Transformer's key/value cache: one token per step, caches kept on the device."""

    def __init__(self, parts: DecoderParts, source: np.ndarray, beams: int):
        self.cached = parts.cached
        self.logp, *self.state = self.cached.start(ops.convert_to_tensor(source), beams)

    def first(self) -> np.ndarray:
        return _numpy(self.logp)

    def next(self, rows: np.ndarray, tokens: np.ndarray, index: int) -> np.ndarray:
        as_tensor = lambda a: ops.convert_to_tensor(np.asarray(a, np.int32))  # noqa: E731
        logp, self.state[0] = self.cached.next(as_tensor(rows), as_tensor(tokens), as_tensor(index), *self.state)
        return _numpy(logp)


def beam_search(parts: DecoderParts, source: np.ndarray, beam_size: int = 1, max_length: int = 0,
                use_cache: bool = True, min_length: int = 0):
    """(ids [N, L], scores [N]): the best of `beam_size` beams per source (sum of token log-probs,
    [END] included), L = max_length or the model's target length. beam_size=1 is greedy decoding.
    `use_cache` picks the key/value-cached step where the model has one (the Transformer).
    `min_length` forbids [END] before that many tokens (models trained on short targets stop early)."""
    source = np.asarray(source, np.int32)
    n, k = len(source), max(1, int(beam_size))
    length = min(max_length or parts.target_length, parts.target_length)
    steps = (_CachedSteps if use_cache and parts.cached is not None else _PrefixSteps)(parts, source, k)
    logp = steps.first()
    out = np.zeros((n * k, length), np.int32)
    scores = np.full((n, k), -np.inf)
    scores[:, 0] = 0.0  # one live beam at the start: the others would only repeat it
    done = np.zeros(n * k, bool)
    for t in range(length):
        vocab = logp.shape[-1]
        if t < min_length:
            logp[:, END] = -np.inf
        logp[done] = -np.inf
        logp[done, PAD] = 0.0  # a finished beam only continues with padding, at no cost
        total = (scores.reshape(-1, 1) + logp).reshape(n, k * vocab)
        best = np.argsort(-total, axis=1, kind="stable")[:, :k]
        parent, token = best // vocab, (best % vocab).astype(np.int32).reshape(-1)
        scores = np.take_along_axis(total, best, axis=1)
        from_rows = (np.arange(n)[:, None] * k + parent).reshape(-1)
        out, done = out[from_rows], done[from_rows]
        out[:, t] = token
        fed = np.where(done, PAD, token)  # the next step's input; finished beams are fed padding
        done = done | (token == END)
        if done.all() or t + 1 == length:
            break
        logp = steps.next(from_rows, fed, t + 1)
    first = np.arange(n) * k  # beams stay sorted best first
    return out[first], scores[:, 0]


def decode(model: keras.Model, source: np.ndarray, *, beam_size: int = 1, max_length: int = 0,
           batch_size: int = 256, parts: DecoderParts | None = None, jit_compile: bool = True,
           use_cache: bool = True, min_length: int = 0):
    """Decode many sources in batches; returns (ids [N, L], scores [N])."""
    parts = parts or decoder_parts(model, jit_compile)
    chunk = max(1, batch_size // max(1, beam_size))
    ids, scores = [], []
    for i in range(0, len(source), chunk):
        part = source[i:i + chunk]
        if len(source) > chunk and len(part) < chunk:  # one batch shape: the step network compiles once
            part = np.concatenate([part, np.repeat(part[-1:], chunk - len(part), axis=0)])
        a, b = beam_search(parts, part, beam_size, max_length, use_cache, min_length)
        n = min(chunk, len(source) - i)
        ids.append(a[:n])
        scores.append(b[:n])
    if not ids:
        return np.zeros((0, max_length or parts.target_length), np.int32), np.zeros(0)
    return np.concatenate(ids), np.concatenate(scores)


MODEL_NAMES = tuple(FAMILIES)
