"""Training pairs for a Siamese tracker, built in tf.data from sequences.

A pair is an exemplar crop (the target with context, from frame t) and a search crop (a larger
region around the target in frame t', |t - t'| <= max_frame_gap) of the SAME sequence, with the
response-map label marking where the target lies in the search crop. Every random choice (the
second frame, scale and shift jitter, colour jitter) is a stateless function of the per-example
seed `pipelines.stream` hands to `augment`, so a resumed run replays the same pairs.

Validation and test pairs are fixed (seeded, no jitter): they give `val_loss`; the tracking metrics
run the tracker over the split's whole sequences, which ride along with the dataset
(`sequences_of`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from pipelines.sequences import Sequence


@dataclass(frozen=True)
class PairSpec:
    """How pairs are cut: crop sizes, context, jitter and the response label geometry."""

    exemplar_size: int
    search_size: int
    response_size: int
    stride: int  # response cell in search-crop pixels
    context: float = 0.5  # padding around the box: p = context * (w + h)
    max_frame_gap: int = 20
    positive_radius: float = 2.0  # response cells
    scale_jitter: float = 0.05  # log scale, uniform +-
    shift_jitter: float = 8.0  # search-crop pixels, uniform +-
    colour_jitter: float = 0.1


# --- sequences riding along with their datasets --------------------------------------------------


def attach(ds: tf.data.Dataset, sequences: list[Sequence]) -> tf.data.Dataset:
    ds.tracking_sequences = sequences
    return ds


def sequences_of(ds) -> list[Sequence]:
    """The sequences behind a pairs dataset, also through `take` (max_val_examples) and `concatenate`
    (evaluate --split all): tf.data keeps the inputs of such datasets."""
    if hasattr(ds, "tracking_sequences"):
        return list(ds.tracking_sequences)
    found = []
    for attr in ("_input_dataset", "_dataset_to_concatenate"):
        if getattr(ds, attr, None) is not None:
            found += sequences_of(getattr(ds, attr))
    return found


# --- frames in a tensor or in files ---------------------------------------------------------------


class FrameSource:
    """Random access to frame `t` of sequence `s` inside tf.data: a uint8 tensor of generated
    frames, or the files of read sequences (decoded on demand)."""

    def __init__(self, sequences: list[Sequence]):
        lengths = [len(s) for s in sequences]
        self.offsets = tf.constant(np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int32))
        self.lengths = tf.constant(np.asarray(lengths, np.int32))
        self.boxes = tf.constant(np.concatenate([s.boxes for s in sequences]).astype(np.float32))
        if all(s.frames is not None for s in sequences):
            self.frames, self.files = tf.constant(np.concatenate([s.frames for s in sequences])), None
        else:
            self.frames = None
            self.files = tf.constant([str(f) for s in sequences for f in s.files])

    def frame(self, index):
        if self.frames is not None:
            return tf.cast(self.frames[index], tf.float32)
        image = tf.io.decode_image(tf.io.read_file(self.files[index]), channels=3, expand_animations=False)
        return tf.cast(image, tf.float32)


# --- crops ----------------------------------------------------------------------------------------


def context_size(box, context: float):
    """SiamFC's exemplar side in frame pixels: sqrt((w + p)(h + p)), p = context * (w + h)."""
    w, h = box[..., 2], box[..., 3]
    p = context * (w + h)
    return tf.sqrt((w + p) * (h + p))


def crop(image, centre_xy, side, out: int):
    """An `out` x `out` crop of a square of `side` frame pixels centred at `centre_xy` (continuous
    coordinates), bilinear; outside the frame is the frame's mean colour. keras_models.tracker.crop
    samples the very same points."""
    shape = tf.cast(tf.shape(image), tf.float32)
    h, w = shape[0], shape[1]
    half = side / 2 - side / (2 * out)  # centre of the first / last output pixel
    cx, cy = centre_xy[0] - 0.5, centre_xy[1] - 0.5  # to array-index coordinates
    box = tf.stack([(cy - half) / (h - 1), (cx - half) / (w - 1), (cy + half) / (h - 1), (cx + half) / (w - 1)])
    mean = tf.reduce_mean(image, axis=(0, 1))
    patch = tf.image.crop_and_resize((image - mean)[None], box[None], [0], [out, out], extrapolation_value=0.0)
    return patch[0] + mean


def response_label(spec: PairSpec, target_offset):
    """1 on response cells within `positive_radius` cells of the target (offset in crop pixels from
    the search crop's centre), 0 elsewhere."""
    r = spec.response_size
    cells = (tf.range(r, dtype=tf.float32) - (r - 1) / 2) * spec.stride
    dx = cells[None, :] - target_offset[0]
    dy = cells[:, None] - target_offset[1]
    return tf.cast(tf.sqrt(dx * dx + dy * dy) <= spec.positive_radius * spec.stride, tf.float32)


def pair_frames(source: FrameSource, spec: PairSpec, seq, t, seed):
    """Flat indices of the pair's two frames: t and t + gap of the same sequence, |gap| <= max_frame_gap
    (clipped to the sequence), the gap drawn from `seed`."""
    gap = tf.random.stateless_uniform([], seed, -spec.max_frame_gap, spec.max_frame_gap + 1, tf.int32)
    t2 = tf.clip_by_value(t + gap, 0, source.lengths[seq] - 1)
    return source.offsets[seq] + t, source.offsets[seq] + t2


def make_pair(source: FrameSource, spec: PairSpec, seq, t, seed, jitter: bool):
    """(inputs, label) for anchor frame t of sequence seq; the second frame and jitter from `seed`."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 5)
    iz, ix = pair_frames(source, spec, seq, t, seeds[0])
    zbox, xbox = source.boxes[iz], source.boxes[ix]
    exemplar = crop(source.frame(iz), zbox[:2] + zbox[2:] / 2, context_size(zbox, spec.context), spec.exemplar_size)
    side = context_size(xbox, spec.context) * spec.search_size / spec.exemplar_size
    shift = tf.zeros([2])
    if jitter:
        side *= tf.exp(tf.random.stateless_uniform([], seeds[1], -spec.scale_jitter, spec.scale_jitter))
        shift = tf.random.stateless_uniform([2], seeds[2], -spec.shift_jitter, spec.shift_jitter)
    centre = xbox[:2] + xbox[2:] / 2 + shift * side / spec.search_size
    search = crop(source.frame(ix), centre, side, spec.search_size)
    if jitter:
        exemplar = colour_jitter(exemplar, seeds[3], spec.colour_jitter)
        search = colour_jitter(search, seeds[4], spec.colour_jitter)
    return {"exemplar": exemplar, "search": search}, response_label(spec, -shift)


def colour_jitter(crop_, seed, amount: float):
    """Per-channel gain and a brightness shift, both within +-amount (0..255 pixel values)."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    gain = 1.0 + tf.random.stateless_uniform([3], seeds[0], -amount, amount)
    shift = 255.0 * tf.random.stateless_uniform([], seeds[1], -amount, amount)
    return tf.clip_by_value(crop_ * gain + shift, 0.0, 255.0)


# --- datasets -----------------------------------------------------------------------------------


def anchors(sequences: list[Sequence], every: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(sequence index, frame) of every `every`-th frame of each sequence: the pairs' first frames."""
    seq = [i for i, s in enumerate(sequences) for _ in range(0, len(s), every)]
    t = [f for s in sequences for f in range(0, len(s), every)]
    return np.asarray(seq, np.int32), np.asarray(t, np.int32)


def training_pairs(sequences: list[Sequence], spec: PairSpec):
    """(anchor dataset, augment): the anchors are shuffled by the stream, `augment` makes the pair."""
    source = FrameSource(sequences)
    seq, t = anchors(sequences)
    ds = tf.data.Dataset.from_tensor_slices(({"sequence": seq, "frame": t}, np.zeros(len(seq), np.float32)))

    @tf.autograph.experimental.do_not_convert  # plain tensor code: nothing for AutoGraph to convert
    def augment(x, _y, seed):
        return make_pair(source, spec, x["sequence"], x["frame"], seed, jitter=True)

    return attach(ds, sequences), augment, len(seq)


def fixed_pairs(sequences: list[Sequence], spec: PairSpec, seed: int, every: int):
    """Seeded pairs without jitter from every `every`-th frame (validation / test loss)."""
    source = FrameSource(sequences)
    seq, t = anchors(sequences, every)
    ds = tf.data.Dataset.from_tensor_slices((seq, t)).enumerate().map(
        lambda i, st: make_pair(source, spec, st[0], st[1], tf.stack([tf.cast(seed, tf.int64), i]), jitter=False),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return attach(ds, sequences), len(seq)
