"""The data bundle every task returns, and how `--data` is understood."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from errors import DataError, UserError


@dataclass
class DataInfo:
    """What the model and the reports need to know about the data."""

    source: str  # human-readable: "generated shapes", "tfds:mnist", "/path/to/folder"
    num_train: int
    num_val: int
    input_shape: tuple  # one example's input shape (images: (H, W, C))
    num_classes: Optional[int] = None
    class_names: tuple = ()
    extra: dict = field(default_factory=dict)  # task-specific facts (e.g. a vocabulary path)


@dataclass
class Data:
    """Unbatched, finite datasets of `(inputs, targets)` plus what describes them."""

    train: Any  # tf.data.Dataset
    val: Any  # tf.data.Dataset
    info: DataInfo
    # (image, target, seed[2]) -> (image, target): stateless random augmentation, training only.
    augment: Optional[Callable] = None
    # dataset -> batched dataset, for targets that need padding (boxes) or special batching.
    batch: Optional[Callable[[Any, int], Any]] = None
    # Task-specific datasets beyond (inputs, targets), e.g. labelled images for a score network.
    extras: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DataSpec:
    kind: str  # "embedded" | "tfds" | "path"
    value: str = ""

    @property
    def path(self) -> Path:
        return Path(self.value)


def parse_data_spec(text: str) -> DataSpec:
    """`embedded` (or `generated`), `tfds:NAME[/CONFIG]`, or an existing file or folder."""
    text = (text or "embedded").strip()
    if text in ("embedded", "generated", "default"):
        return DataSpec("embedded")
    if text.startswith("tfds:"):
        name = text[len("tfds:"):]
        if not name:
            raise UserError("--data tfds:NAME: expected a dataset name after 'tfds:'")
        return DataSpec("tfds", name)
    path = Path(os.path.expanduser(text))
    if not path.exists():
        raise UserError(f"--data {text}: no such file or directory (expected embedded, tfds:NAME or a path)")
    if path.is_dir() and not any(path.iterdir()):
        raise DataError(f"--data {text}: the folder is empty")
    return DataSpec("path", str(path))


def split_counts(n: int, val_fraction: float, name: str) -> tuple[int, int]:
    """How many of n examples go to training and validation when a source has one split."""
    n_val = max(1, int(round(n * val_fraction)))
    if n - n_val < 1:
        raise DataError(f"{name}: only {n} example(s); need at least 2 to hold one out for validation")
    return n - n_val, n_val
