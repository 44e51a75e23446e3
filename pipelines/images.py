"""Image datasets and image transforms in tf.data."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def from_arrays(images: np.ndarray, labels: np.ndarray) -> tf.data.Dataset:
    """uint8 images + integer targets -> dataset of (float32 image in [0, 1], target)."""
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    return ds.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y), num_parallel_calls=tf.data.AUTOTUNE)


def from_tfds(ds: tf.data.Dataset, size: tuple[int, int], image_key="image", label_key="label") -> tf.data.Dataset:
    def convert(ex):
        img = tf.image.resize(tf.cast(ex[image_key], tf.float32), size, antialias=True) / 255.0
        return img, tf.cast(ex[label_key], tf.int32)

    return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


def resize_uint8(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if images.shape[1:3] == tuple(size):
        return images
    out = tf.image.resize(images, size, antialias=True)
    return np.clip(np.round(out.numpy()), 0, 255).astype(np.uint8)


def shift_and_brightness(image, label, seed, max_shift: int = 3):
    """Random translation (pad + crop) and brightness; stateless, so it replays on resume."""
    s1, s2 = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    h, w, c = image.shape
    padded = tf.pad(image, [[max_shift, max_shift], [max_shift, max_shift], [0, 0]], mode="REFLECT")
    image = tf.image.stateless_random_crop(padded, (h, w, c), seed=s1)
    image = tf.clip_by_value(tf.image.stateless_random_brightness(image, 0.1, seed=s2), 0.0, 1.0)
    return image, label
