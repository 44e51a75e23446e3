"""Turning a task's finite datasets into the streams `fit` consumes.

The training stream is a pure function of (seed, epoch): epoch e is shuffled with a seed derived
from (seed, e) and augmented with stateless per-example seeds, so a resumed run sees exactly the
batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import os
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from errors import DataError

AUTOTUNE = tf.data.AUTOTUNE
SHUFFLE_BUFFER = 20_000


def hide_accelerators_from_tf() -> None:
    """tf.data must not grab GPU/TPU memory that JAX (or the TF model) needs."""
    if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        try:
            tf.config.set_visible_devices([], "GPU")
            tf.config.set_visible_devices([], "TPU")
        except (RuntimeError, ValueError):
            pass  # devices already initialised or no such device type


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    steps = num_examples // batch_size
    if steps < 1:
        raise DataError(
            f"--batch-size {batch_size}: larger than the training set ({num_examples} examples); "
            "lower it or add data"
        )
    return steps


def training_stream(
    ds: tf.data.Dataset,
    *,
    num_examples: int,
    batch_size: int,
    seed: int,
    start_epoch: int = 0,
    end_epoch: int,
    skip_batches: int = 0,
    augment: Optional[Callable] = None,
    batch: Optional[Callable] = None,
) -> tf.data.Dataset:
    """Training batches for epochs [start_epoch, end_epoch); epoch e's order depends only on (seed, e)."""
    ds = ds.cache()
    buffer = min(num_examples, SHUFFLE_BUFFER)
    batch = batch or (lambda d: d.batch(batch_size, drop_remainder=True))
    steps = steps_per_epoch(num_examples, batch_size)

    def one_epoch(epoch: int):
        epoch_seed = (seed * 100_003 + epoch) % 2**31
        d = ds.shuffle(buffer, seed=epoch_seed, reshuffle_each_iteration=False)
        if augment is not None:
            d = d.enumerate().map(
                lambda i, xy: augment(xy[0], xy[1], tf.stack([tf.constant(epoch_seed, tf.int64), i])),
                num_parallel_calls=AUTOTUNE,
                deterministic=True,
            )
        return batch(d).take(steps)

    # Epochs are Python ints (concatenated), so every seed is a constant: same order in any process.
    epochs = [one_epoch(e) for e in range(start_epoch, end_epoch)]
    stream = epochs[0]
    for e in epochs[1:]:
        stream = stream.concatenate(e)
    if skip_batches:
        stream = stream.skip(skip_batches)
    return stream.prefetch(AUTOTUNE)


def prestaged(ds: tf.data.Dataset) -> tf.data.Dataset:
    """The same batches, computed once and replayed from memory (no per-step input work)."""
    batches = list(ds.as_numpy_iterator())
    return tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(lambda *b: np.stack(b), *batches))


def eval_stream(ds: tf.data.Dataset, *, batch_size: int, batch: Optional[Callable] = None) -> tf.data.Dataset:
    """Every validation example once, in a fixed order (the last batch may be smaller)."""
    batch = batch or (lambda d: d.batch(batch_size))
    return batch(ds.cache()).prefetch(AUTOTUNE)


def first_batch(ds: tf.data.Dataset, *, batch_size: int, batch: Optional[Callable] = None):
    """A fixed validation batch as numpy, for pictures in TensorBoard."""
    batch = batch or (lambda d: d.batch(batch_size))
    for x, y in batch(ds).take(1).as_numpy_iterator():
        return x, y
    raise DataError("the validation set is empty")
