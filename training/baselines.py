"""Reference figures computed in the same run as a model's, so every reported metric has a yardstick.

NumPy only (no keras): regression errors and the trivial predictors that tasks with real-valued
targets (forecasting, image regression, recommendation ratings) report beside their model.
"""

from __future__ import annotations

import numpy as np


def regression_errors(y_true, y_pred) -> dict:
    """{'mae', 'rmse'} over every element (lower is better)."""
    err = np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64)
    if err.size == 0:
        raise ValueError("regression_errors: no values to compare")
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err ** 2)))}


def mean_baseline(y_train, y_eval) -> dict:
    """Errors of predicting the training mean (per target column) for every evaluated example."""
    y_train = np.asarray(y_train, np.float64)
    y_eval = np.asarray(y_eval, np.float64)
    mean = y_train.mean(axis=0) if y_train.ndim > 1 else y_train.mean()
    return regression_errors(y_eval, np.broadcast_to(mean, y_eval.shape))


def improvement(model_value: float, baseline_value: float) -> float:
    """How much lower than the baseline a lower-is-better figure is (0.3 = 30% lower)."""
    return float(1.0 - model_value / baseline_value) if baseline_value else 0.0
