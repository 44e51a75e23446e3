"""Image classification: shapes by default; TFDS image datasets; class folders; MNIST IDX files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from errors import DataError, UserError
from pipelines import Data, DataInfo, parse_data_spec, split_counts
from pipelines import files, shapes
from tasks import visuals
from tasks.base import Task, TrainConfig, register
from tasks.lazy import lazy_module

keras = lazy_module("keras")
classifier = lazy_module("keras_models.classifier")
image_ops = lazy_module("pipelines.images")

MODELS = {"cnn": "small_cnn", "resnet": "small_resnet"}  # builders in keras_models.classifier


@dataclass(frozen=True)
class ClassificationConfig(TrainConfig):
    model: str = field(default="cnn", metadata={"choices": tuple(MODELS), "help": "cnn | resnet"})
    epochs: int = 8
    batch_size: int = 64
    learning_rate: float = 3e-3
    warmup_steps: int = 50
    image_size: int = field(default=32, metadata={"help": "images are resized to this square size"})
    width: int = field(default=32, metadata={"help": "filters in the first conv stage"})
    dropout: float = 0.2
    augment: bool = field(default=True, metadata={"help": "random shifts and brightness on training images"})
    num_train: int = field(default=5000, metadata={"help": "generated training images (embedded data)"})
    num_val: int = field(default=1000, metadata={"help": "generated validation images (embedded data)"})
    classes: tuple[str, ...] = field(default=shapes.SHAPES, metadata={"help": "shape classes (embedded data)"})
    val_fraction: float = field(default=0.1, metadata={"help": "held out when a source has no validation split"})
    top_k: int = field(default=3, metadata={"help": "top-k accuracy is reported when classes > 5"})


# --- data ----------------------------------------------------------------------------------------


def _generated(cfg: ClassificationConfig, spec) -> Data:
    unknown = [c for c in cfg.classes if c not in shapes.SHAPES]
    if unknown or len(cfg.classes) < 2:
        raise UserError(f"--set classes: expected 2+ of {', '.join(shapes.SHAPES)}, got {cfg.classes}")
    scene = shapes.SceneSpec(size=cfg.image_size, classes=tuple(cfg.classes))
    train = shapes.generate_arrays(scene, cfg.num_train, cfg.seed, "train")
    val = shapes.generate_arrays(scene, cfg.num_val, cfg.seed, "validation")
    info = DataInfo("generated shapes", cfg.num_train, cfg.num_val, (cfg.image_size, cfg.image_size, 3),
                    len(cfg.classes), tuple(cfg.classes))
    return Data(image_ops.from_arrays(train["images"], train["labels"]),
                image_ops.from_arrays(val["images"], val["labels"]), info)


def _tfds(cfg: ClassificationConfig, spec) -> Data:
    from pipelines import tfds_source

    datasets, counts, tinfo = tfds_source.load_tfds(spec.value)
    features = tinfo.features
    if "image" not in features or "label" not in features:
        raise DataError(f"--data tfds:{spec.value}: expected 'image' and 'label' features, has {list(features)}")
    channels = features["image"].shape[-1] or 3
    train, val, n_train, n_val = tfds_source.train_val_splits(datasets, counts, cfg.val_fraction)
    size = (cfg.image_size, cfg.image_size)
    info = DataInfo(f"tfds:{spec.value}", n_train, n_val, (*size, channels), features["label"].num_classes,
                    tuple(features["label"].names))
    return Data(image_ops.from_tfds(train, size), image_ops.from_tfds(val, size), info)


def _folder(cfg: ClassificationConfig, spec) -> Data:
    root = spec.path
    size = (cfg.image_size, cfg.image_size)
    idx = files.find_idx_pair(root) if root.is_dir() else None
    if idx is not None:
        images, labels = files.read_idx(idx[0]), files.read_idx(idx[1]).astype(np.int32)
        if images.ndim != 3 or len(images) != len(labels):
            raise DataError(f"{idx[0]}: expected (N, H, W) images matching {len(labels)} labels, got {images.shape}")
        images = image_ops.resize_uint8(images[..., None], size)
        class_names = tuple(str(i) for i in range(int(labels.max()) + 1))
    elif root.is_dir():
        paths, labels, class_names = files.read_class_folders(root)
        channels = files.image_channels(paths[0])
        images = files.load_images(paths, size, channels)
    else:
        raise DataError(f"--data {root}: expected a folder of class sub-folders or of MNIST IDX files")
    n_train, n_val = split_counts(len(labels), cfg.val_fraction, str(root))
    order = np.random.default_rng(cfg.seed).permutation(len(labels))
    tr, va = order[:n_train], order[n_train:]
    info = DataInfo(str(root), n_train, n_val, images.shape[1:], len(class_names), class_names)
    return Data(image_ops.from_arrays(images[tr], labels[tr]), image_ops.from_arrays(images[va], labels[va]), info)


LOADERS = {"embedded": _generated, "tfds": _tfds, "path": _folder}


def build_datasets(cfg: ClassificationConfig) -> Data:
    spec = parse_data_spec(cfg.data)
    data = LOADERS[spec.kind](cfg, spec)
    data.augment = image_ops.shift_and_brightness if cfg.augment else None
    return data


# --- model, loss, metrics --------------------------------------------------------------------------


def build_model(cfg: ClassificationConfig, info: DataInfo) -> keras.Model:
    return getattr(classifier, MODELS[cfg.model])(info.input_shape, info.num_classes, width=cfg.width, dropout=cfg.dropout)


def loss(cfg, info):
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def metrics(cfg, info):
    out = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    if info.num_classes > 5:
        out.append(keras.metrics.SparseTopKCategoricalAccuracy(k=cfg.top_k, name=f"top{cfg.top_k}_accuracy"))
    return out


# --- pictures and predictions -------------------------------------------------------------------


def visualize(model, batch, info: DataInfo, cfg) -> dict:
    """A grid of validation images captioned 'predicted (true)', framed green/red."""
    x, y = batch
    x, y = x[:24], y[:24]
    pred = np.argmax(np.asarray(model.predict_on_batch(x)), axis=-1)
    names = info.class_names or tuple(str(i) for i in range(info.num_classes))
    tiles = [visuals.captioned(img, f"{names[p]} ({names[t]})", bool(p == t))
             for img, p, t in zip(visuals.to_uint8(x), pred, y)]
    return {"predictions": visuals.grid(tiles, columns=8)}


def predict_outputs(model, inputs: list[str], out_dir: Path, cfg, info: DataInfo, options: dict) -> list[dict]:
    """Label and top-3 probabilities per image; also written to predictions.json."""
    paths = files.require_files(inputs)
    size = tuple(info.input_shape[:2])
    batch = files.load_images(paths, size, info.input_shape[-1]).astype("float32") / 255.0
    probs = np.asarray(keras.ops.softmax(model.predict_on_batch(batch), axis=-1))
    rows = []
    for path, p in zip(paths, probs):
        top = np.argsort(-p)[: min(3, len(p))]
        rows.append({"input": str(path), "label": info.class_names[top[0]], "probability": float(p[top[0]]),
                     "top": {info.class_names[k]: float(p[k]) for k in top}})
    (out_dir / "predictions.json").write_text(json.dumps(rows, indent=2))
    return rows


register(Task(
    name="classification",
    description="image classification (small CNN / small ResNet)",
    config_cls=ClassificationConfig,
    build_datasets=build_datasets,
    build_model=build_model,
    loss=loss,
    metrics=metrics,
    default_data="generated shapes (6 classes, 32x32, noise + clutter)",
    presets={
        "debug": {"epochs": 1, "num_train": 256, "num_val": 64, "batch_size": 32, "width": 8,
                  "log_every_steps": 2, "warmup_steps": 0},
        "small": {"epochs": 5, "num_train": 2000, "num_val": 500},
    },
    visualize=visualize,
    predict_outputs=predict_outputs,
    best_metric="val_accuracy",
))
