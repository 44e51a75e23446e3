"""Texts -> a keras-hub preset's model inputs (token_ids, padding_mask, segment_ids...) in tf.data."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def input_names(preprocessor) -> tuple:
    """The inputs the preprocessor makes for one text (and the backbone takes)."""
    return tuple(sorted(preprocessor(tf.constant("a")).keys()))


def tokenize(ds: tf.data.Dataset, preprocessor) -> tf.data.Dataset:
    """(text, label) -> ({name: int32 ids (sequence_length,)}, label); the padding mask as 0/1 ints."""
    def encode(text, label):
        return {k: tf.cast(v, tf.int32) for k, v in preprocessor(text).items()}, label

    return ds.map(encode, num_parallel_calls=tf.data.AUTOTUNE)


def encode_texts(texts: list[str], preprocessor) -> dict:
    return {k: np.asarray(v).astype(np.int32) for k, v in preprocessor(tf.constant(texts)).items()}
