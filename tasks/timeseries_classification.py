"""Time-series classification: generated signals by default; the UCR/UEA archive files as shipped
(`NAME_TRAIN.tsv` / `NAME_TEST.tsv`, or `.txt`); a CSV with one sequence a row and a label column;
NumPy `.npz` with `x` (N, T[, C]) and `y`.

Series of different lengths are NaN-padded to the longest training series; the models mask the
padding. Normalisation is per channel with training statistics (saved in data_info.json and
reused by evaluate/predict), per series (z-normalisation, as the UCR archive is distributed), or none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from errors import DataError
from pipelines import Data, DataInfo, parse_data_spec
from pipelines import series as series_data
from pipelines.data import InputSpec
from pipelines.labels import check_label_set
from pipelines.splits import carve_indices, carved_note, generated_note
from tasks.base import Task, TrainConfig, register
from tasks.lazy import lazy_module
from tasks.visuals import confusion_image, confusion_matrix

keras = lazy_module("keras")
ops = lazy_module("keras.ops")
model_metrics = lazy_module("keras_models.metrics")
series_models = lazy_module("keras_models.series")
text_data = lazy_module("pipelines.text")

MODEL_NAMES = ("fcn", "resnet1d", "lstm", "gru", "transformer")  # keys of keras_models.series.CLASSIFIERS
NORMALIZE = ("global", "series", "none")


@dataclass(frozen=True)
class TimeseriesClassificationConfig(TrainConfig):
    model: str = field(default="fcn", metadata={"choices": MODEL_NAMES, "help": "fcn | resnet1d | lstm | gru | transformer"})
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 2e-3
    warmup_steps: int = 20
    width: int = field(default=64, metadata={"positive": True, "help": "filters (fcn: 64-128-64) / recurrent units / model width"})
    num_layers: int = field(default=1, metadata={"positive": True, "help": "stacked recurrent layers or Transformer blocks"})
    bidirectional: bool = field(default=True, metadata={"help": "lstm/gru read the series both ways"})
    num_heads: int = field(default=4, metadata={"positive": True, "help": "attention heads (transformer)"})
    dropout: float = field(default=0.1, metadata={"help": "dropout before the logits (and inside Transformer blocks)"})
    normalize: str = field(default="global", metadata={
        "choices": NORMALIZE, "help": "global: per-channel training mean/std (saved with the run); "
                                      "series: z-normalise each series; none"})
    label_column: str = field(default="label", metadata={"help": "CSV data: the column holding the label"})
    classes: tuple[str, ...] = field(default=(), metadata={"help": "labels in class order (default: sorted training labels)"})
    num_train: int = field(default=1200, metadata={"help": "generated training series (embedded data)"})
    num_val: int = field(default=300, metadata={"help": "generated validation series (embedded data)"})
    num_test: int = field(default=300, metadata={"help": "generated test series (embedded data; 0 = none)"})
    length: int = field(default=128, metadata={"positive": True, "help": "generated series' longest length (60-100% of it)"})
    num_classes: int = field(default=6, metadata={"help": "generated classes (2-8)"})
    channels: int = field(default=1, metadata={"positive": True, "help": "generated channels (multivariate when > 1)"})
    noise: float = field(default=0.3, metadata={"help": "generated noise std (signal amplitude ~1)"})


# --- data ----------------------------------------------------------------------------------------


def _generated(cfg) -> tuple[dict, dict, str]:
    sizes = {"train": cfg.num_train, "validation": cfg.num_val, "test": cfg.num_test}
    parts = {s: series_data.generated_signals(n, cfg.seed, s, length=cfg.length, num_classes=cfg.num_classes,
                                              channels=cfg.channels, noise=cfg.noise)
             for s, n in sizes.items() if n}
    return parts, {s: generated_note(s) for s in parts}, f"generated signals ({cfg.num_classes} classes)"


def _files(cfg, path: Path) -> tuple[dict, dict, str]:
    """A single file (train; validation carved) or a UCR folder (NAME_TRAIN + NAME_TEST)."""
    files = {"train": path} if path.is_file() else series_data.find_ucr_pair(path)
    if files is None:
        raise DataError(f"--data {path}: expected a .tsv/.txt (UCR), .csv or .npz file, or a folder holding "
                        "NAME_TRAIN.tsv and NAME_TEST.tsv as the UCR archive ships them")
    parts = {s: series_data.read_sequences(p, cfg.label_column) for s, p in files.items()}
    origins = {s: str(p) for s, p in files.items()}
    tr, va = carve_indices(len(parts["train"].labels), cfg.val_fraction, cfg.seed, origins["train"])
    whole = parts["train"]
    parts["train"] = series_data.Sequences(whole.x[tr], [whole.labels[i] for i in tr])
    parts["validation"] = series_data.Sequences(whole.x[va], [whole.labels[i] for i in va])
    origins["validation"] = carved_note(cfg.val_fraction, cfg.seed)
    return parts, origins, str(path)


def _class_ids(seqs, names: tuple, origin: str) -> np.ndarray:
    index = {n: k for k, n in enumerate(names)}
    unknown = sorted({lab for lab in seqs.labels if lab not in index})
    if unknown:
        raise DataError(f"{origin}: unknown label(s) {unknown[:5]} (known labels: {', '.join(names[:20])})")
    return np.asarray([index[lab] for lab in seqs.labels], np.int32)


def _fit_length(x: np.ndarray, length: int, origin: str) -> np.ndarray:
    """Pad (NaN) or refuse series to the training length: the model's input is fixed-length."""
    if x.shape[1] > length and not np.isnan(x[:, length:]).all():
        raise DataError(f"{origin}: series of {x.shape[1]} steps, longer than the {length} the model was trained on")
    x = x[:, :length]
    pad = np.full((len(x), length - x.shape[1], x.shape[2]), np.nan, np.float32)
    return np.concatenate([x, pad], axis=1)


def normalize(x: np.ndarray, how: str, stats: dict | None) -> np.ndarray:
    if how == "series":
        return series_data.znorm_per_series(x)
    if how == "global":
        return series_data.apply_stats(x, stats)
    return x


def _build(cfg, fitted: DataInfo | None) -> Data:
    spec = parse_data_spec(cfg.data)
    if spec.kind == "tfds":
        raise DataError(f"--data {cfg.data}: time-series classification reads embedded data or files, not TFDS")
    parts, origins, source = _generated(cfg) if spec.kind == "embedded" else _files(cfg, spec.path)
    if fitted is not None:
        names, length, stats = fitted.class_names, fitted.extra["length"], fitted.extra.get("stats")
    else:
        names = tuple(cfg.classes) or text_data.class_names_of(parts["train"].labels)
        check_label_set(parts["train"].labels, origins["train"], "check the file's first column holds the label")
        length, stats = parts["train"].x.shape[1], series_data.channel_stats(parts["train"].x)
    if len(names) < 2:
        raise DataError(f"{origins['train']}: expected at least 2 classes, found {list(names)}")
    channels = parts["train"].x.shape[2]
    sets, counts = {}, {}
    for split, seqs in parts.items():
        x = normalize(_fit_length(seqs.x, length, origins[split]), cfg.normalize, stats)
        sets[split] = series_data.sequences_dataset(x, _class_ids(seqs, names, origins[split]))
        counts[split] = len(seqs.labels)
    info = DataInfo(source, counts["train"], counts["validation"],
                    {"series": InputSpec((length, channels), "float32")}, len(names), names,
                    extra={"length": length, "channels": channels, "normalize": cfg.normalize, "stats": stats},
                    num_test=counts.get("test", 0), splits=origins)
    return Data.from_splits(sets, info)


def build_datasets(cfg) -> Data:
    return _build(cfg, None)


def rebuild_datasets(cfg, fitted: DataInfo) -> Data:
    """For evaluate: the saved class order, length and training statistics, never re-learned."""
    return _build(cfg, fitted)


# --- model, loss, metrics --------------------------------------------------------------------------


def build_model(cfg, info: DataInfo):
    return series_models.CLASSIFIERS[cfg.model](
        info.input_shape, info.num_classes, width=cfg.width, num_layers=cfg.num_layers,
        bidirectional=cfg.bidirectional, num_heads=cfg.num_heads, dropout=cfg.dropout)


def loss(cfg, info):
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def metrics(cfg, info):
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            model_metrics.SparseF1Score(info.num_classes, name="macro_f1")]


# --- pictures and predictions --------------------------------------------------------------------


def visualize(model, batch, info: DataInfo, cfg) -> dict:
    """The confusion matrix of the first validation series (rows true, columns predicted)."""
    x, y = batch
    pred = np.argmax(np.asarray(model.predict_on_batch(x)), axis=-1)
    cm = confusion_matrix(np.asarray(y).reshape(-1), pred, info.num_classes)
    return {"confusion_matrix": confusion_image(cm, info.class_names)}


def sample_inputs(cfg, info: DataInfo, out_dir: Path, n: int) -> list[str]:
    """n generated test-stream series written as text files (one step a line, channels comma-separated)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    seqs = series_data.generated_signals(n, cfg.seed, "test", length=cfg.length, num_classes=cfg.num_classes,
                                         channels=cfg.channels, noise=cfg.noise)
    paths = []
    for i, (x, label) in enumerate(zip(seqs.x, seqs.labels)):
        path = out_dir / f"series_{i}_{label}.txt"
        steps = x[~np.isnan(x).all(axis=1)]
        path.write_text("\n".join(",".join(f"{v:.6g}" for v in row) for row in steps) + "\n")
        paths.append(str(path))
    return paths


def predict_outputs(model, inputs: list[str], out_dir: Path, cfg, info: DataInfo, options: dict) -> list[dict]:
    """Label and class probabilities per series file (text: one step a line; or .npy); predictions.json."""
    from pipelines.files import require_files

    extra = info.extra
    paths = require_files(inputs)
    x = np.stack([series_data.read_series_file(p, extra["length"], extra["channels"]) for p in paths])
    x = normalize(x, extra["normalize"], extra.get("stats"))
    probs = np.asarray(ops.softmax(model.predict_on_batch(x), axis=-1))
    rows = []
    for path, p in zip(paths, probs):
        k = int(np.argmax(p))
        rows.append({"input": str(path), "label": info.class_names[k], "probability": float(p[k]),
                     "probabilities": {name: round(float(q), 6) for name, q in zip(info.class_names, p)}})
    (out_dir / "predictions.json").write_text(json.dumps(rows, indent=2))
    return rows


register(Task(
    name="timeseries-classification",
    description="time-series classification (FCN / ResNet1D / LSTM / GRU / Transformer over (T, C) series)",
    config_cls=TimeseriesClassificationConfig,
    build_datasets=build_datasets,
    rebuild_datasets=rebuild_datasets,
    build_model=build_model,
    loss=loss,
    metrics=metrics,
    default_data="generated signals: 6 classes differing in shape, frequency, phase and local motifs; noise, "
                 "time warping, 60-100% lengths",
    presets={
        "debug": {"epochs": 1, "num_train": 64, "num_val": 32, "num_test": 16, "length": 32, "width": 8,
                  "batch_size": 16, "num_heads": 2, "log_every_steps": 2, "warmup_steps": 0},
        "ucr": {"model": "fcn", "width": 128, "epochs": 300, "batch_size": 16, "learning_rate": 1e-3,
                "normalize": "none", "warmup_steps": 0, "dropout": 0.0, "val_fraction": 0.2, "best_metric": "val_loss"},
    },
    visualize=visualize,
    visualize_examples=256,
    predict_outputs=predict_outputs,
    sample_inputs=sample_inputs,
    best_metric="val_accuracy",
))
