"""The data bundle every task returns, and how `--data` is understood."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from errors import DataError, UserError

SPLIT_NAMES = ("train", "validation", "test")


@dataclass
class InputSpec:
    """One named input (or target) of a task: what a model builder and a reader need to know.

    `vocabulary` names an entry of `DataInfo.vocabularies` (token ids index it); `id_range` is the
    half-open [low, high) range of integer ids (users, items, classes) when there is no vocabulary.
    """

    shape: tuple
    dtype: str = "float32"
    vocabulary: Optional[str] = None
    id_range: Optional[tuple] = None

    def __post_init__(self):
        self.shape = tuple(self.shape)
        if self.id_range is not None:
            self.id_range = tuple(self.id_range)


def _as_specs(value) -> dict[str, InputSpec]:
    """A bare shape means one input called `inputs` (images, token ids): today's single-input tasks."""
    if isinstance(value, dict):
        return {k: v if isinstance(v, InputSpec) else InputSpec(**v) for k, v in value.items()}
    return {"inputs": InputSpec(tuple(value))}


@dataclass
class DataInfo:
    """What the model and the reports need to know about the data.

    `inputs` names each model input; a bare shape is accepted for single-input tasks.
    `splits` says where each split came from (the source's own split, or carved from train by seed),
    so a report can say which examples a figure used.
    """

    source: str  # human-readable: "generated shapes", "tfds:mnist", "/path/to/folder"
    num_train: int
    num_val: int
    inputs: Any  # {name: InputSpec} (or one shape, normalised to {"inputs": InputSpec(shape)})
    num_classes: Optional[int] = None
    class_names: tuple = ()
    extra: dict = field(default_factory=dict)  # task-specific facts
    num_test: int = 0
    targets: dict = field(default_factory=dict)  # {name: InputSpec}, for tasks with named targets
    vocabularies: dict = field(default_factory=dict)  # {name: [token, ...]}: saved with the run
    splits: dict = field(default_factory=dict)  # {split: "how it was made"}

    def __post_init__(self):
        self.inputs = _as_specs(self.inputs)
        self.targets = _as_specs(self.targets) if self.targets else {}
        self.class_names = tuple(self.class_names or ())

    @property
    def input_shape(self) -> tuple:
        """The shape of the only input; multi-input tasks read `inputs[name].shape` instead."""
        if len(self.inputs) != 1:
            raise ValueError(f"input_shape is ambiguous for inputs {sorted(self.inputs)}")
        return next(iter(self.inputs.values())).shape

    def count(self, split: str) -> int:
        return {"train": self.num_train, "validation": self.num_val, "test": self.num_test}[split]


def data_info_from_dict(raw: dict) -> DataInfo:
    """Rebuild a saved DataInfo (data_info.json), including files written before `inputs` existed."""
    raw = dict(raw)
    if "input_shape" in raw:
        raw.setdefault("inputs", tuple(raw.pop("input_shape")))
    known = DataInfo.__dataclass_fields__
    return DataInfo(**{k: v for k, v in raw.items() if k in known})


@dataclass
class Data:
    """Unbatched, finite datasets of `(inputs, targets)` plus what describes them.

    `test` is None when the source has no test split. It is never read during fit except once,
    after training, to evaluate the best-on-validation checkpoint.
    """

    train: Any  # tf.data.Dataset
    val: Any  # tf.data.Dataset
    info: DataInfo
    # (image, target, seed[2]) -> (image, target): stateless random augmentation, training only.
    augment: Optional[Callable] = None
    # dataset -> batched dataset, for targets that need padding (boxes) or special batching.
    batch: Optional[Callable[[Any, int], Any]] = None
    # Task-specific datasets beyond (inputs, targets), e.g. labelled images for a score network.
    extras: dict = field(default_factory=dict)
    test: Any = None  # tf.data.Dataset or None

    @classmethod
    def from_splits(cls, datasets: dict, info: DataInfo, **kwargs) -> "Data":
        """From {"train": ds, "validation": ds, "test"?: ds}, the way every reader builds its splits."""
        return cls(datasets["train"], datasets["validation"], info, test=datasets.get("test"), **kwargs)

    def split(self, name: str):
        ds = {"train": self.train, "validation": self.val, "test": self.test}[name]
        if ds is None:
            raise UserError(f"--split {name}: the data ({self.info.source}) has no {name} split")
        return ds


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
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"--set val_fraction={val_fraction}: expected a fraction between 0 and 1")
    n_val = max(1, int(round(n * val_fraction)))
    if n - n_val < 1:
        raise DataError(f"{name}: only {n} example(s); need at least 2 to hold one out for validation")
    return n - n_val, n_val
