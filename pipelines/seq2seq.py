"""Sequence-to-sequence tokenization in tf.data: WordPiece vocabularies learned on the training split
and (source, target) strings turned into the teacher-forced model's inputs.

Each example becomes ({"source": ids[source_length], "target_in": [START] y[:-1]}, "target_out": y [END])
with 0 = padding. The vocabularies are plain token lists saved in data_info.json, so evaluate and
predict rebuild exactly the same tokenizers without learning anything again.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from pipelines.seq2seq_sources import Pairs, detokenize_words

AUTOTUNE = tf.data.AUTOTUNE
RESERVED = ["[PAD]", "[UNK]", "[START]", "[END]"]  # ids 0..3 in every vocabulary
PAD, UNK, START, END = range(4)


def learn_vocabulary(texts: list[str], size: int, lowercase: bool) -> list[str]:
    """A WordPiece vocabulary (reserved tokens first) learned from the given (training) texts."""
    import keras_hub

    data = tf.data.Dataset.from_tensor_slices(tf.constant(list(texts), tf.string)).batch(1024)
    return list(keras_hub.tokenizers.compute_word_piece_vocabulary(
        data, size, lowercase=lowercase, reserved_tokens=RESERVED))


def tokenizer(vocabulary: list[str], lowercase: bool):
    import keras_hub

    return keras_hub.tokenizers.WordPieceTokenizer(vocabulary=vocabulary, lowercase=lowercase, oov_token="[UNK]",
                                                   dtype="int32")


def packers(source_length: int, target_length: int):
    """Source: ids + [END], cut/padded. Target: [START] ids [END], one longer than target_in/out."""
    import keras_hub

    src = keras_hub.layers.StartEndPacker(source_length, end_value=END, pad_value=PAD)
    tgt = keras_hub.layers.StartEndPacker(target_length + 1, start_value=START, end_value=END, pad_value=PAD)
    return src, tgt


def encode(splits: dict, vocabularies: dict, source_length: int, target_length: int,
           lowercase: bool) -> dict:
    """{split: Pairs} -> {split: unbatched ({"source", "target_in"}, target_out) int32 dataset}, tokenized in
    tf.data."""
    src_tok = tokenizer(vocabularies["source"], lowercase)
    tgt_tok = tokenizer(vocabularies["target"], lowercase)
    src_pack, tgt_pack = packers(source_length, target_length)

    def to_ids(src, tgt):
        source = src_pack(src_tok(src))
        target = tgt_pack(tgt_tok(tgt))
        return {"source": source, "target_in": target[:, :-1]}, target[:, 1:]

    # Traced once (the tokenizers take seconds to trace); each split's map then only calls it.
    strings = tf.TensorSpec([None], tf.string)
    traced = tf.function(to_ids, input_signature=[strings, strings], autograph=False)
    out = {}
    for name, pairs in splits.items():
        ds = tf.data.Dataset.from_tensor_slices((tf.constant(pairs.sources, tf.string),
                                                 tf.constant(pairs.targets, tf.string)))
        ds = ds.batch(512).map(traced, num_parallel_calls=AUTOTUNE, deterministic=True).unbatch()
        out[name] = ds.apply(tf.data.experimental.assert_cardinality(len(pairs)))
    return out


def encode_sources(texts: list[str], vocabulary: list[str], source_length: int, lowercase: bool) -> np.ndarray:
    """Raw source strings -> (N, source_length) int32 ids (for predict)."""
    src_pack, _ = packers(source_length, 1)
    tok = tokenizer(vocabulary, lowercase)
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(texts, tf.string)).batch(1024)
    return np.concatenate([b for b in ds.map(lambda t: src_pack(tok(t))).as_numpy_iterator()]).astype(np.int32)


def detokenize(ids, vocabulary: list[str]) -> str:
    """Token ids -> text: stops at [END], drops padding and [START], joins '##' pieces, fixes spacing."""
    words: list[str] = []
    for i in np.asarray(ids).tolist():
        if i == END:
            break
        if i in (PAD, START):
            continue
        token = vocabulary[i] if 0 <= i < len(vocabulary) else "[UNK]"
        if token.startswith("##") and words:
            words[-1] += token[2:]
        else:
            words.append(token)
    return detokenize_words(" ".join(words))
