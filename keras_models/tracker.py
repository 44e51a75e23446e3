"""SiamFC tracking inference (not part of the train step), keras.ops only.

The exemplar is embedded once from the first frame's box. Each later frame is one compiled step
(XLA via Keras' predict function on either backend): search crops around the last position at
`num_scales` scales, the backbone, the cross-correlation with the exemplar, a bicubic upsampling of
the responses, a penalty on scale changes, a cosine-window penalty on large displacements, the
arg-max turned back into frame pixels, and a damped size update. Only the loop over frames is Python.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops



@dataclass(frozen=True)
class TrackerParams:
    """SiamFC's inference knobs (defaults close to the paper's)."""

    context: float = 0.5
    stride: int = 4  # response cell in search-crop pixels (the backbone's total stride)
    num_scales: int = 3
    scale_step: float = 1.04
    scale_penalty: float = 0.97  # response factor for a scale change
    scale_lr: float = 0.6  # damping: new size = (1 - lr) * old + lr * old * scale
    window_influence: float = 0.25  # weight of the cosine window against the normalised response
    upsample: int = 8  # response upsampling factor (bicubic)


def context_size(wh, context: float):
    p = context * (wh[0] + wh[1])
    return ops.sqrt((wh[0] + p) * (wh[1] + p))


def crop(frame, centre_xy, sides, out: int):
    """(len(sides), out, out, 3) bilinear crops of squares of `sides` frame pixels centred at
    `centre_xy`; points outside the frame take its mean colour. Samples the same points as
    tf.image.crop_and_resize in pipelines.tracking.crop (tested against it)."""
    shape = ops.shape(frame)
    h, w = ops.cast(shape[0], "float32"), ops.cast(shape[1], "float32")
    mean = ops.mean(frame, axis=(0, 1))
    flat = ops.reshape(frame - mean, (-1, 3))
    steps = ops.arange(out, dtype="float32") - (out - 1) / 2
    ys = centre_xy[1] - 0.5 + sides[:, None] * steps[None, :] / out  # (S, out) array-index coordinates
    xs = centre_xy[0] - 0.5 + sides[:, None] * steps[None, :] / out
    ones = ops.ones((1, out, out))
    y, x = ys[:, :, None] * ones, xs[:, None, :] * ones  # (S, out, out)
    inside = (y >= 0) & (y <= h - 1) & (x >= 0) & (x <= w - 1)
    y0, x0 = ops.floor(ops.clip(y, 0, h - 1)), ops.floor(ops.clip(x, 0, w - 1))
    wy, wx = ops.clip(y, 0, h - 1) - y0, ops.clip(x, 0, w - 1) - x0
    y1, x1 = ops.minimum(y0 + 1, h - 1), ops.minimum(x0 + 1, w - 1)

    def at(yy, xx):
        index = ops.cast(yy * w + xx, "int32")
        return ops.take(flat, ops.reshape(index, (-1,)), axis=0)

    top = at(y0, x0) * ops.reshape(1 - wx, (-1, 1)) + at(y0, x1) * ops.reshape(wx, (-1, 1))
    bottom = at(y1, x0) * ops.reshape(1 - wx, (-1, 1)) + at(y1, x1) * ops.reshape(wx, (-1, 1))
    wy_flat = ops.reshape(wy, (-1, 1))
    values = top * (1 - wy_flat) + bottom * wy_flat
    values = ops.where(ops.reshape(inside, (-1, 1)), values, 0.0)
    return ops.reshape(values, (-1, out, out, 3)) + mean


def bicubic_matrix(size: int, out: int, a: float = -0.5) -> np.ndarray:
    """(out, size) matrix M with M @ v = v resized bicubically (Keys kernel, half-pixel centres, edges
    clamped): upsampling a map is M @ r @ M.T, two matmuls that XLA compiles on every backend (TF's
    ResizeBicubic kernel has no XLA version)."""
    src = (np.arange(out) + 0.5) * size / out - 0.5
    base = np.floor(src)
    m = np.zeros((out, size), np.float64)
    for k in range(-1, 3):
        d = np.abs(src - (base + k))
        w = np.where(d <= 1, (a + 2) * d**3 - (a + 3) * d**2 + 1,
                     np.where(d < 2, a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a, 0.0))
        np.add.at(m, (np.arange(out), np.clip(base + k, 0, size - 1).astype(int)), w)
    return m.astype(np.float32)


def cosine_window(size: int) -> np.ndarray:
    hann = np.hanning(size)
    window = np.outer(hann, hann)
    return (window / window.sum()).astype(np.float32)


class ExemplarStep(keras.Model):
    """[frame (1, H, W, 3), box (1, 4)] -> exemplar features (1, h, w, C)."""

    def __init__(self, backbone, exemplar_size: int, params: TrackerParams, **kwargs):
        super().__init__(**kwargs)
        self.backbone, self.exemplar_size, self.params = backbone, exemplar_size, params

    def call(self, inputs):
        frame, box = inputs
        box = ops.cast(box[0], "float32")
        side = context_size(box[2:], self.params.context)
        crops = crop(ops.cast(frame[0], "float32"), box[:2] + box[2:] / 2, ops.reshape(side, (1,)), self.exemplar_size)
        return self.backbone(crops, training=False)


class TrackStep(keras.Model):
    """[frame (1, H, W, 3), exemplar features (1, h, w, C), box (1, 4)] ->
    (new box (1, 4), the chosen upsampled response (1, U, U), the search crops (S, s, s, 3))."""

    def __init__(self, backbone, xcorr, search_size: int, exemplar_size: int, response_size: int,
                 params: TrackerParams, **kwargs):
        super().__init__(**kwargs)
        self.backbone, self.xcorr, self.params = backbone, xcorr, params
        self.search_size, self.exemplar_size = search_size, exemplar_size
        self.up = response_size * params.upsample
        n = params.num_scales
        self.scales = (params.scale_step ** (np.arange(n) - (n - 1) / 2)).astype(np.float32)
        self.penalties = np.where(np.arange(n) == (n - 1) // 2, 1.0, params.scale_penalty).astype(np.float32)
        self.window = cosine_window(self.up)
        self.resize = bicubic_matrix(response_size, self.up)

    def call(self, inputs):
        frame, z, box = inputs
        p = self.params
        frame, box = ops.cast(frame[0], "float32"), ops.cast(box[0], "float32")
        centre, wh = box[:2] + box[2:] / 2, box[2:]
        sides = context_size(wh, p.context) * (self.search_size / self.exemplar_size) * self.scales
        crops = crop(frame, centre, sides, self.search_size)
        features = self.backbone(crops, training=False)
        zs = ops.repeat(z, p.num_scales, axis=0)
        responses = self.xcorr(zs, features)
        up = ops.einsum("ur,srq,vq->suv", self.resize, responses, self.resize)  # bicubic upsampling
        best = ops.argmax(ops.max(up, axis=(1, 2)) * self.penalties)
        response = ops.take(up, best, axis=0)
        response = response - ops.min(response)
        response = response / ops.maximum(ops.sum(response), 1e-12)
        response = (1 - p.window_influence) * response + p.window_influence * self.window
        peak = ops.argmax(ops.reshape(response, (-1,)))
        peak_xy = ops.cast(ops.stack([peak % self.up, peak // self.up]), "float32")
        # upsampled pixels -> response cells -> search-crop pixels -> frame pixels
        shift = (peak_xy - (self.up - 1) / 2) / p.upsample * p.stride * ops.take(sides, best) / self.search_size
        h, w = ops.cast(ops.shape(frame)[0], "float32"), ops.cast(ops.shape(frame)[1], "float32")
        centre = ops.clip(centre + shift, 0.0, ops.stack([w, h]))
        scale = ops.take(ops.convert_to_tensor(self.scales), best)
        wh = ops.clip(wh * (1 - p.scale_lr + p.scale_lr * scale), 4.0, ops.stack([w, h]))
        new_box = ops.concatenate([centre - wh / 2, wh])[None]
        return new_box, response[None], crops


@dataclass
class TrackResult:
    boxes: np.ndarray  # (T, 4) x, y, w, h (0-based); boxes[0] is the given box
    fps: float  # frames per second over frames 2..T, compilation excluded (the first step is warm-up)
    responses: dict  # {frame index: (U, U) response} for the frames asked for
    crops: dict  # {frame index: (S, s, s, 3) search crops}


class Tracker:
    """Follows one object with a trained SiamFC model (its `backbone` and `xcorr` layers)."""

    def __init__(self, model, params: TrackerParams, jit_compile: bool = True):
        backbone, xcorr = model.get_layer("backbone"), model.get_layer("xcorr")
        exemplar_size = model.input["exemplar"].shape[1] if isinstance(model.input, dict) else model.inputs[0].shape[1]
        search_size = model.input["search"].shape[1] if isinstance(model.input, dict) else model.inputs[1].shape[1]
        response_size = model.output.shape[1]
        self.exemplar = ExemplarStep(backbone, exemplar_size, params)
        self.step = TrackStep(backbone, xcorr, search_size, exemplar_size, response_size, params)
        self.exemplar.compile(jit_compile=jit_compile)
        self.step.compile(jit_compile=jit_compile)

    def track(self, frames, first_box, keep: tuple = ()) -> TrackResult:
        """`frames`: a sequence of (H, W, 3) uint8 arrays (or a callable t -> frame and a length)."""
        n = len(frames)
        boxes = np.zeros((n, 4), np.float32)
        boxes[0] = first_box
        first = np.asarray(frames[0], np.float32)[None]
        z = self.exemplar.predict_on_batch([first, boxes[:1]])
        responses, crops, start = {}, {}, None
        for t in range(1, n):
            if t == 2:
                start = time.perf_counter()  # frame 1 compiled the step
            frame = np.asarray(frames[t], np.float32)[None]
            box, response, crop_ = self.step.predict_on_batch([frame, z, boxes[t - 1:t]])
            boxes[t] = np.asarray(box)[0]
            if t in keep:
                responses[t], crops[t] = np.asarray(response)[0], np.asarray(crop_)
        fps = (n - 2) / (time.perf_counter() - start) if start is not None and n > 2 else float("nan")
        return TrackResult(boxes, fps, responses, crops)
