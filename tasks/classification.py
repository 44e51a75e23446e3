"""Image classification: shapes by default; TFDS image datasets; class folders; MNIST IDX files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from errors import DataError, UserError
from pipelines import Data, DataInfo, parse_data_spec
from pipelines import files, shapes
from pipelines import splits as split_rules
from pipelines.labels import check_label_set
from tasks import visuals
from tasks.exporting import image_export
from tasks.base import Task, register
from tasks.finetuning import PretrainedConfig, check_finetune_config
from tasks.lazy import lazy_module

keras = lazy_module("keras")
classifier = lazy_module("keras_models.classifier")
image_ops = lazy_module("pipelines.images")
pretrained = lazy_module("keras_models.pretrained")

MODELS = {"cnn": "small_cnn", "resnet": "small_resnet"}  # builders in keras_models.classifier


@dataclass(frozen=True)
class ClassificationConfig(PretrainedConfig):
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
    num_test: int = field(default=1000, metadata={"help": "generated test images (embedded data; 0 = no test split)"})
    classes: tuple[str, ...] = field(default=shapes.SHAPES, metadata={"help": "shape classes (embedded data)"})
    top_k: int = field(default=3, metadata={"help": "top-k accuracy is reported when classes > 5"})


# --- data ----------------------------------------------------------------------------------------


def _generated(cfg: ClassificationConfig, spec) -> Data:
    unknown = [c for c in cfg.classes if c not in shapes.SHAPES]
    if unknown or len(cfg.classes) < 2:
        raise UserError(f"--set classes: expected 2+ of {', '.join(shapes.SHAPES)}, got {cfg.classes}")
    scene = shapes.SceneSpec(size=cfg.image_size, classes=tuple(cfg.classes))
    parts = {split: shapes.generate_arrays(scene, n, cfg.seed, split)
             for split, n in split_rules.generated_sizes(cfg).items()}
    info = DataInfo("generated shapes", cfg.num_train, cfg.num_val, (cfg.image_size, cfg.image_size, 3),
                    len(cfg.classes), tuple(cfg.classes), num_test=cfg.num_test,
                    splits={s: split_rules.generated_note(s) for s in parts})
    made = {s: image_ops.from_arrays(a["images"], a["labels"]) for s, a in parts.items()}
    return Data.from_splits(made, info)


def _tfds(cfg: ClassificationConfig, spec) -> Data:
    from pipelines import tfds_source

    datasets, counts, tinfo = tfds_source.load_tfds(spec.value)
    features = tinfo.features
    if "image" not in features or "label" not in features:
        raise DataError(f"--data tfds:{spec.value}: expected 'image' and 'label' features, has {list(features)}")
    channels = features["image"].shape[-1] or 3
    parts, origin = tfds_source.three_splits(datasets, counts, cfg.val_fraction, cfg.seed, f"tfds:{spec.value}")
    size = (cfg.image_size, cfg.image_size)
    made = {s: image_ops.from_tfds(ds, size) for s, (ds, _) in parts.items()}
    info = DataInfo(f"tfds:{spec.value}", parts["train"][1], parts["validation"][1], (*size, channels),
                    features["label"].num_classes, tuple(features["label"].names),
                    num_test=parts["test"][1] if "test" in parts else 0, splits=origin)
    return Data.from_splits(made, info)


def _read_images(root: Path, size, class_names=None):
    """(images uint8, labels, class names) of an MNIST IDX pair or a folder of class sub-folders."""
    idx = files.find_idx_pair(root) if root.is_dir() else None
    if idx is not None:
        images, labels = files.read_idx(idx[0]), files.read_idx(idx[1]).astype(np.int32)
        if images.ndim != 3 or len(images) != len(labels):
            raise DataError(f"{idx[0]}: expected (N, H, W) images matching {len(labels)} labels, got {images.shape}")
        return image_ops.resize_uint8(images[..., None], size), labels, tuple(str(i) for i in range(int(labels.max()) + 1))
    if not root.is_dir():
        raise DataError(f"--data {root}: expected a folder of class sub-folders or of MNIST IDX files")
    paths, labels, names = files.read_class_folders(root)
    if class_names is not None:
        labels = _relabel(labels, names, class_names, root)
        names = class_names
    check_label_set([names[k] for k in labels], str(root), "--data DIR with one sub-folder per class")
    return files.load_images(paths, size, files.image_channels(paths[0])), labels, names


def _relabel(labels, names, train_names, root: Path):
    """Labels of another split's folder in the train split's class order (same class folders expected)."""
    unknown = [n for n in names if n not in train_names]
    if unknown:
        raise DataError(f"{root}: class folder(s) {', '.join(unknown)} are not in the train split's classes "
                        f"({', '.join(train_names)})")
    return np.array([train_names.index(names[k]) for k in labels], np.int32)


def _folder(cfg: ClassificationConfig, spec) -> Data:
    """Class folders (or IDX files); a folder holding train/ [val/] [test/] is read as those splits."""
    root, size = spec.path, (cfg.image_size, cfg.image_size)
    folders = split_rules.find_split_folders(root)
    arrays, origin = {}, {}
    if folders is None:
        arrays["train"] = _read_images(root, size)
    else:
        arrays["train"] = _read_images(folders["train"], size)
        for split in ("validation", "test"):
            if split in folders:
                arrays[split] = _read_images(folders[split], size, arrays["train"][2])
                origin[split] = f"{folders[split].name}/"
    images, labels, names = arrays["train"]
    origin["train"] = f"{folders['train'].name}/" if folders else "all examples"
    if "validation" not in arrays:
        tr, va = split_rules.carve_indices(len(labels), cfg.val_fraction, cfg.seed, str(root))
        arrays["validation"] = (images[va], labels[va], names)
        arrays["train"] = (images[tr], labels[tr], names)
        origin["validation"] = split_rules.carved_note(cfg.val_fraction, cfg.seed)
    made = {s: image_ops.from_arrays(a[0], a[1]) for s, a in arrays.items()}
    n = {s: len(a[1]) for s, a in arrays.items()}
    info = DataInfo(str(root), n["train"], n["validation"], arrays["train"][0].shape[1:], len(names), names,
                    num_test=n.get("test", 0), splits=origin)
    return Data.from_splits(made, info)


LOADERS = {"embedded": _generated, "tfds": _tfds, "path": _folder}


def build_datasets(cfg: ClassificationConfig) -> Data:
    spec = parse_data_spec(cfg.data)
    data = LOADERS[spec.kind](cfg, spec)
    data.augment = image_ops.shift_and_brightness if cfg.augment else None
    return data


# --- model, loss, metrics --------------------------------------------------------------------------


def build_model(cfg: ClassificationConfig, info: DataInfo) -> keras.Model:
    check_finetune_config(cfg)
    if cfg.backbone:  # the preset's converter resizes and normalises inside the model
        return pretrained.image_classifier(pretrained.load_backbone(cfg.backbone, "image"),
                                           pretrained.load_image_converter(cfg.backbone),
                                           info.input_shape, info.num_classes, dropout=cfg.dropout)
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


def sample_inputs(cfg, info: DataInfo, out_dir: Path, n: int) -> list[str]:
    scene = shapes.SceneSpec(size=info.input_shape[0], classes=tuple(cfg.classes))
    return shapes.write_scene_pngs(scene, cfg.seed, out_dir, n)


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
    description="image classification (small CNN / small ResNet / a keras-hub backbone)",
    config_cls=ClassificationConfig,
    build_datasets=build_datasets,
    build_model=build_model,
    loss=loss,
    metrics=metrics,
    default_data="generated shapes (6 classes, 32x32, noise + clutter)",
    presets={
        "debug": {"epochs": 1, "num_train": 256, "num_val": 64, "num_test": 64, "batch_size": 32, "width": 8,
                  "log_every_steps": 2, "warmup_steps": 0},
        "small": {"epochs": 5, "num_train": 2000, "num_val": 500, "num_test": 500},
    },
    visualize=visualize,
    predict_outputs=predict_outputs,
    sample_inputs=sample_inputs,
    export=image_export("class probabilities (N, classes)", "argmax class"),
    best_metric="val_accuracy",
))
