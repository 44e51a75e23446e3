"""OTB one-pass evaluation (Wu et al., "Object Tracking Benchmark", 2015), NumPy only.

Success: the share of frames whose predicted box overlaps the true one by IoU > threshold, over
21 thresholds 0, 0.05, ..., 1; its area under the curve (AUC) is the mean of those shares.
Precision@20: the share of frames whose predicted centre is within 20 pixels of the true centre.
A sequence's first frame is the given box, so it is not scored; sequences weigh equally (the
curves are averaged over sequences, as the OTB toolkit does).
"""

from __future__ import annotations

import numpy as np

THRESHOLDS = np.linspace(0.0, 1.0, 21)
PRECISION_PIXELS = 20.0


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of matching rows of two (N, 4) x, y, w, h arrays."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    x0, y0 = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    x1 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y1 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return inter / np.maximum(union, 1e-12)


def centre_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm((a[:, :2] + a[:, 2:] / 2) - (b[:, :2] + b[:, 2:] / 2), axis=1)


def success_curve(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    overlaps = iou(pred[1:], true[1:])
    return np.array([(overlaps > t).mean() for t in THRESHOLDS])


def precision_at(pred: np.ndarray, true: np.ndarray, pixels: float = PRECISION_PIXELS) -> float:
    return float((centre_error(pred[1:], true[1:]) <= pixels).mean())


def otb_scores(predictions: list, truths: list) -> dict:
    """{success_auc, precision_20} over sequences: lists of (T_i, 4) predicted and true boxes."""
    if not predictions:
        return {"success_auc": float("nan"), "precision_20": float("nan")}
    curve = np.mean([success_curve(p, t) for p, t in zip(predictions, truths)], axis=0)
    precision = np.mean([precision_at(p, t) for p, t in zip(predictions, truths)])
    return {"success_auc": float(curve.mean()), "precision_20": float(precision)}


def stay_baseline(truth: np.ndarray) -> np.ndarray:
    """The "box stays where it started" tracker: the first box in every frame."""
    return np.repeat(np.asarray(truth)[:1], len(truth), axis=0)
