"""A compact anchor-free single-stage detector (CenterNet-style), keras.ops only.

Boxes everywhere in the project are absolute-pixel `xyxy` (`x_min, y_min, x_max, y_max`) in the
coordinates of the model's input image. Ground truth arrives padded to a fixed number of rows
`(batch, max_boxes, 5)`: four coordinates and the class index, class -1 marking padding.

The model predicts on a grid with `stride` pixels per cell, one output tensor
`(batch, S, S, num_classes + 4)`:
- `num_classes` heat-map logits: the probability that an object of that class is centred here;
- 2 centre offsets inside the cell (in cells) and 2 log sizes (log of width / stride, height / stride).

Training targets are encoded from the padded boxes inside the loss (`encode_targets`), so the
data pipeline stays format-agnostic; `decode_predictions` turns outputs back into boxes
(heat-map peaks, then per-class non-max suppression with keras-hub's `NonMaxSuppression`).
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

BN_MOMENTUM = 0.9
HEAT_PRIOR = 0.05  # initial object probability per cell (bias init, as RetinaNet/CenterNet do)
SIGMA_FRACTION = 1 / 6  # Gaussian std of a heat-map blob, as a fraction of the box side in cells


def _conv(x, filters, kernel=3, strides=1):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    return layers.ReLU()(x)


def centernet(input_shape, num_classes: int, width: int = 32, stride: int = 4, name: str = "centernet"):
    """Small conv backbone down to stride 16, a top-down path back to `stride`, one shared head."""
    if stride not in (4, 8):
        raise ValueError(f"stride must be 4 or 8, got {stride}")
    inputs = keras.Input(input_shape, name="image")
    # Backbone: stride 2, 4, 8, 16.
    x = _conv(inputs, width // 2, strides=2)
    c2 = _conv(_conv(x, width, strides=2), width)
    c3 = _conv(_conv(c2, width * 2, strides=2), width * 2)
    c4 = _conv(_conv(c3, width * 4, strides=2), width * 4)
    # Top-down (FPN-like): upsample the coarse context and add the finer lateral features.
    p = layers.Conv2D(width * 2, 1)(c4)
    p = layers.Add()([layers.UpSampling2D()(p), layers.Conv2D(width * 2, 1)(c3)])
    p = _conv(p, width * 2)
    if stride == 4:
        p = layers.Add()([layers.UpSampling2D()(p), layers.Conv2D(width * 2, 1)(c2)])
        p = _conv(p, width * 2)
    # Heads: heat-map logits (biased to a low prior) and box regression.
    h = _conv(p, width * 2)
    heat = layers.Conv2D(num_classes, 1, name="heat",
                         bias_initializer=keras.initializers.Constant(-math.log((1 - HEAT_PRIOR) / HEAT_PRIOR)))(h)
    r = _conv(p, width * 2)
    reg = layers.Conv2D(4, 1, name="box")(r)
    outputs = layers.Concatenate(name="detections")([heat, reg])
    return keras.Model(inputs, outputs, name=name)


# --- target encoding ---------------------------------------------------------------------------


def _grid(size: int):
    return ops.cast(ops.arange(size), "float32")


def encode_targets(gt, num_classes: int, grid_size: int, stride: int):
    """Padded boxes `(B, M, 5)` -> dense targets on the `grid_size`^2 grid.

    Returns `heat (B, S, S, C)` (a Gaussian blob per object peaking at exactly 1 in its centre
    cell), `positive (B, S, S, C)` (1 at the centre cell of each object, for its class),
    `regression (B, S, S, 4)` (offset x, offset y, log w, log h at centre cells) and
    `centres (B, S, S, 1)` (1 where a box is centred).
    """
    gt = ops.cast(gt, "float32")
    boxes, classes = gt[..., :4], ops.cast(gt[..., 4], "int32")
    valid = ops.cast(classes >= 0, "float32")  # (B, M)
    x1, y1, x2, y2 = boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]
    cx, cy = (x1 + x2) / (2.0 * stride), (y1 + y2) / (2.0 * stride)  # centres in cells
    w, h = ops.maximum(x2 - x1, 1e-3) / stride, ops.maximum(y2 - y1, 1e-3) / stride  # sizes in cells
    ix = ops.clip(ops.floor(cx), 0, grid_size - 1)
    iy = ops.clip(ops.floor(cy), 0, grid_size - 1)

    g = _grid(grid_size)
    dx = g[None, None, :, None] - ix[:, None, None, :]  # (B, 1, S, M): columns
    dy = g[None, :, None, None] - iy[:, None, None, :]  # (B, S, 1, M): rows
    sx = ops.maximum(w * SIGMA_FRACTION, 0.5)[:, None, None, :]
    sy = ops.maximum(h * SIGMA_FRACTION, 0.5)[:, None, None, :]
    blob = ops.exp(-(dx**2) / (2 * sx**2) - (dy**2) / (2 * sy**2)) * valid[:, None, None, :]  # (B, S, S, M)
    centre = ops.cast((dx == 0) & (dy == 0), "float32") * valid[:, None, None, :]  # (B, S, S, M)

    onehot = ops.one_hot(ops.maximum(classes, 0), num_classes) * valid[..., None]  # (B, M, C)
    heat = ops.max(blob[..., None] * onehot[:, None, None, :, :], axis=3)  # (B, S, S, C)
    positive = ops.max(centre[..., None] * onehot[:, None, None, :, :], axis=3)

    per_box = ops.stack([cx - ix, cy - iy, ops.log(w), ops.log(h)], axis=-1)  # (B, M, 4)
    count = ops.sum(centre, axis=-1, keepdims=True)  # (B, S, S, 1): boxes centred in each cell
    regression = ops.einsum("bhwm,bmk->bhwk", centre, per_box) / ops.maximum(count, 1.0)
    return heat, positive, regression, ops.minimum(count, 1.0)


# --- loss --------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="keras_baselines")
class CenterNetLoss(keras.losses.Loss):
    """Penalty-reduced focal loss on the heat map + L1 on offsets and log sizes at centres.

    Both parts are normalised by the number of objects in the batch (CenterNet, Zhou et al. 2019).
    """

    def __init__(self, num_classes: int, grid_size: int, stride: int, box_weight: float = 1.0,
                 alpha: float = 2.0, beta: float = 4.0, name="centernet_loss", reduction="sum_over_batch_size",
                 **kwargs):
        super().__init__(name=name, reduction=reduction, **kwargs)
        self.num_classes, self.grid_size, self.stride = num_classes, grid_size, stride
        self.box_weight, self.alpha, self.beta = box_weight, alpha, beta

    def call(self, y_true, y_pred):
        heat, positive, regression, centres = encode_targets(y_true, self.num_classes, self.grid_size, self.stride)
        y_pred = ops.cast(y_pred, "float32")
        logits, reg_pred = y_pred[..., : self.num_classes], y_pred[..., self.num_classes:]
        p = ops.sigmoid(logits)
        log_p, log_not_p = ops.log_sigmoid(logits), ops.log_sigmoid(-logits)
        pos_loss = -positive * (1 - p) ** self.alpha * log_p
        neg_loss = -(1 - positive) * (1 - heat) ** self.beta * p**self.alpha * log_not_p
        num_pos = ops.maximum(ops.sum(positive, axis=(1, 2, 3)), 1.0)  # per image
        heat_loss = ops.sum(pos_loss + neg_loss, axis=(1, 2, 3)) / num_pos
        box_l1 = ops.sum(centres * ops.abs(reg_pred - regression), axis=(1, 2, 3)) / num_pos
        return heat_loss + self.box_weight * box_l1  # (B,): averaged over the batch by Keras

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "grid_size": self.grid_size,
                "stride": self.stride, "box_weight": self.box_weight, "alpha": self.alpha, "beta": self.beta}


# --- decoding ----------------------------------------------------------------------------------


def raw_to_boxes(outputs, num_classes: int, stride: int, image_size: tuple[int, int]):
    """Every grid cell's box `(B, S*S, 4)` xyxy pixels and class scores `(B, S*S, C)`.

    Only heat-map peaks (a cell that is the maximum of its 3x3 neighbourhood) keep their score.
    """
    outputs = ops.cast(outputs, "float32")
    s_h, s_w = ops.shape(outputs)[1], ops.shape(outputs)[2]
    scores = ops.sigmoid(outputs[..., :num_classes])
    peaks = ops.max_pool(scores, pool_size=3, strides=1, padding="same")
    scores = scores * ops.cast(scores >= peaks, "float32")
    reg = outputs[..., num_classes:]
    gx = _grid(s_w)[None, None, :]
    gy = _grid(s_h)[None, :, None]
    cx = (gx + reg[..., 0]) * stride
    cy = (gy + reg[..., 1]) * stride
    w = ops.exp(ops.clip(reg[..., 2], -10.0, 10.0)) * stride
    h = ops.exp(ops.clip(reg[..., 3], -10.0, 10.0)) * stride
    height, width = image_size
    boxes = ops.stack([ops.clip(cx - w / 2, 0, width), ops.clip(cy - h / 2, 0, height),
                       ops.clip(cx + w / 2, 0, width), ops.clip(cy + h / 2, 0, height)], axis=-1)
    return ops.reshape(boxes, (-1, s_h * s_w, 4)), ops.reshape(scores, (-1, s_h * s_w, num_classes))


def per_class_nms(boxes, scores, *, iou_threshold: float = 0.5, score_threshold: float = 0.05,
                  max_detections: int = 100, image_size: tuple[int, int] = (1, 1)):
    """Per-class NMS over candidate boxes `(B, N, 4)` xyxy with class scores `(B, N, C)`.

    Each (box, class) pair becomes a candidate; boxes of class k are shifted by k times more
    than the image size so that keras-hub's class-agnostic `NonMaxSuppression` never lets two
    classes suppress each other. Returns numpy-convertible dict: boxes (B, D, 4), scores (B, D),
    classes (B, D) and num_detections (B,); rows past num_detections are padding.
    """
    from keras_hub.layers import NonMaxSuppression

    num_classes = ops.shape(scores)[-1]
    n = ops.shape(boxes)[1]
    shift = float(max(image_size) + 1)
    offsets = ops.cast(ops.arange(num_classes), "float32") * shift  # (C,)
    cand_boxes = boxes[:, :, None, :] + offsets[None, None, :, None]  # (B, N, C, 4)
    cand_scores = scores[..., None] * ops.eye(num_classes)[None, None]  # (B, N, C, C): one class each
    cand_boxes = ops.reshape(cand_boxes, (-1, n * num_classes, 4))
    cand_scores = ops.reshape(cand_scores, (-1, n * num_classes, num_classes))
    nms = NonMaxSuppression(bounding_box_format="xyxy", from_logits=False, iou_threshold=iou_threshold,
                            confidence_threshold=score_threshold, max_detections=max_detections)
    out = nms(cand_boxes, cand_scores)
    classes = ops.cast(out["labels"], "int32")
    shifted = ops.cast(classes, "float32")[..., None] * shift
    return {"boxes": out["boxes"] - shifted, "scores": out["confidence"], "classes": classes,
            "num_detections": out["num_detections"]}


def decode_predictions(outputs, num_classes: int, stride: int, image_size: tuple[int, int], **nms_kwargs):
    """Model outputs -> detections (see `per_class_nms`)."""
    boxes, scores = raw_to_boxes(outputs, num_classes, stride, image_size)
    return per_class_nms(boxes, scores, image_size=image_size, **nms_kwargs)



@keras.saving.register_keras_serializable(package="keras_baselines")
class DetectionDecoder(keras.layers.Layer):
    """`decode_predictions` as a layer, so a small Model around it is compiled on every backend."""

    def __init__(self, num_classes: int, stride: int, image_size, iou_threshold: float = 0.5,
                 score_threshold: float = 0.05, max_detections: int = 100, **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.stride, self.image_size = num_classes, stride, tuple(image_size)
        self.iou_threshold, self.score_threshold, self.max_detections = iou_threshold, score_threshold, max_detections

    def call(self, outputs):
        dets = decode_predictions(outputs, self.num_classes, self.stride, self.image_size,
                                  iou_threshold=self.iou_threshold, score_threshold=self.score_threshold,
                                  max_detections=self.max_detections)
        return dets["boxes"], dets["scores"], dets["classes"], dets["num_detections"]

    def compute_output_spec(self, outputs):
        b, d = outputs.shape[0], self.max_detections
        return (keras.KerasTensor((b, d, 4)), keras.KerasTensor((b, d)),
                keras.KerasTensor((b, d), dtype="int32"), keras.KerasTensor((b,), dtype="int32"))


def decoder_model(batch_size: int, grid_size: int, num_classes: int, stride: int, image_size,
                  **nms_kwargs) -> keras.Model:
    """Raw outputs `(batch_size, S, S, C + 4)` -> (boxes, scores, classes, num_detections).

    The batch size is fixed (keras-hub's NMS needs it static in graph mode): pad the last batch.
    Call `.predict_on_batch`, which runs compiled on every backend.
    """
    raw = keras.Input((grid_size, grid_size, num_classes + 4), batch_size=batch_size, name="raw")
    return keras.Model(raw, DetectionDecoder(num_classes, stride, image_size, **nms_kwargs)(raw), name="decoder")
