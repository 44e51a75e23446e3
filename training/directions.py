"""The metrics a compiled model logs, with the direction each declares, and the best-metric check.

Directions come from the metric objects (Keras metrics carry one; our trackers declare theirs with
`keras_models.direction.with_direction`) and from a task's declared whole-split metrics; a metric's
name never decides which way is better.
"""

from __future__ import annotations

from errors import UserError
from keras_models.direction import DOWN, direction_of

_CONTAINERS = ("CompileMetrics", "CompileLoss")  # Keras' wrappers around the compiled metric list


def logged_directions(model, compiled_metrics: list, split_directions: dict | None = None) -> dict:
    """{metric name as logged (no val_ prefix): 'up' | 'down' | None} for this compiled model."""
    out = {"loss": DOWN}
    for metric in list(model.metrics) + list(compiled_metrics):
        if type(metric).__name__ in _CONTAINERS:
            continue
        if metric.name == "loss":
            continue  # the total loss is minimised, whatever tracks it
        out[metric.name] = direction_of(metric)
    out.update(split_directions or {})
    return out


def resolve_best_metric(name: str, directions: dict) -> tuple[str, bool]:
    """('val_<metric>', minimise) for `best_metric` (given as 'val_X' or 'X'); one-line error otherwise."""
    base = name.removeprefix("val_")
    logged = ", ".join(f"val_{k}" for k in directions)
    if base not in directions:
        raise UserError(f"--set best_metric={name}: the model does not log it; it logs {logged}")
    if directions[base] is None:
        raise UserError(f"--set best_metric={name}: this metric declares no direction (up/down); "
                        f"choose one that does: {', '.join(f'val_{k}' for k, d in directions.items() if d)}")
    return f"val_{base}", directions[base] == DOWN
