"""Which way a metric is better, declared on the metric object itself.

Keras 3 metrics carry a direction (`_direction`, "up" or "down": accuracy up, MAE down); plain
`Mean` trackers and `MeanMetricWrapper`s of our own functions carry none, so they declare one here.
The training engine reads only this attribute, never the metric's name.
"""

UP, DOWN = "up", "down"


def with_direction(metric, direction: str):
    if direction not in (UP, DOWN):
        raise ValueError(f"direction must be 'up' or 'down', got {direction!r}")
    metric._direction = direction
    return metric


def direction_of(metric):
    """'up', 'down' or None (undeclared)."""
    return getattr(metric, "_direction", None)
