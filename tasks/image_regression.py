"""Image regression: images to one or more real numbers (steering angle by default).

Data: generated top-down road scenes labelled with the pure-pursuit steering angle (embedded), or a
CSV of image paths and numeric columns, the Udacity simulator's headerless `driving_log.csv`
included (side cameras with a steering correction; paths from another machine fall back to
`IMG/<file name>` beside the CSV). A CSV's rows are split into contiguous blocks of frames, whole
blocks held out for validation (and test), so near-duplicate neighbouring frames never straddle a
split. Metrics: MAE and RMSE (Keras declares both lower-is-better) and, in the same run, the
predict-the-training-mean baseline on the same split.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from errors import DataError, UserError
from pipelines import Data, DataInfo, parse_data_spec
from pipelines import files
from pipelines import roads
from pipelines.data import InputSpec
from pipelines.splits import generated_note, generated_sizes
from tasks import visuals
from tasks.base import SplitMetrics, Task, TrainConfig, register
from tasks.lazy import lazy_module

keras = lazy_module("keras")
regressor = lazy_module("keras_models.regressor")
steering = lazy_module("pipelines.steering")
stream = lazy_module("pipelines.stream")

MODEL_NAMES = ("pilotnet", "resnet")  # keys of keras_models.regressor.MODELS


@dataclass(frozen=True)
class ImageRegressionConfig(TrainConfig):
    model: str = field(default="pilotnet", metadata={"choices": MODEL_NAMES, "help": "pilotnet | resnet"})
    epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_steps: int = 30
    image_height: int = field(default=66, metadata={"help": "images are resized to this height (PilotNet: 66)", "positive": True})
    image_width: int = field(default=200, metadata={"help": "images are resized to this width (PilotNet: 200)", "positive": True})
    width: float = field(default=1.0, metadata={"help": "layer size multiplier (pilotnet) / first-stage filters (resnet)", "positive": True})
    dropout: float = 0.2
    loss: str = field(default="mse", metadata={
        "choices": ("mse", "mae", "huber"),
        "help": "error per target, in units of its training std (mae fits the median: mostly-zero targets)"})
    image_column: str = field(default="", metadata={
        "help": "CSV column of image paths ('' = 'center' in a Udacity log, else a column named image/path/filename)"})
    target_columns: tuple[str, ...] = field(default=(), metadata={
        "help": "CSV columns to predict (default: steering in a Udacity log)"})
    steering_column: str = field(default="steering", metadata={
        "help": "the target a horizontal flip negates and shifts / side cameras correct"})
    use_side_cameras: bool = field(default=False, metadata={
        "help": "Udacity log: also train on the left/right camera images, steering +/- steering_correction"})
    steering_correction: float = field(default=0.2, metadata={"help": "steering added for the left camera (subtracted for the right)"})
    crop_top: float = field(default=0.0, metadata={"help": "fraction of rows cut off the top before resizing (sky)"})
    crop_bottom: float = field(default=0.0, metadata={"help": "fraction of rows cut off the bottom before resizing (bonnet)"})
    split_blocks: int = field(default=10, metadata={
        "help": "a CSV's rows are cut into this many contiguous blocks; whole blocks go to validation/test", "positive": True})
    test_fraction: float = field(default=0.0, metadata={"help": "share of a CSV's blocks held out as the test split (0 = none)"})
    augment: bool = field(default=True, metadata={"help": "label-correct augmentation of training images"})
    flip: str = field(default="negate", metadata={
        "choices": ("negate", "keep", "off"),
        "help": "random horizontal flips: negate the steering target | keep targets (a flip-invariant target) | off"})
    max_shift: int = field(default=10, metadata={"help": "random horizontal shift in pixels, steering corrected (0 = off)"})
    shift_correction: float = field(default=0.004, metadata={
        "help": "steering per pixel shifted right, for CSV data (generated scenes use their exact geometry)"})
    brightness: float = field(default=0.2, metadata={"help": "random brightness change, relative (0 = off)"})
    shadows: bool = field(default=True, metadata={"help": "random shadows (one side of a random line darkened)"})
    num_train: int = field(default=3000, metadata={"help": "generated training scenes (embedded data)"})
    num_val: int = field(default=500, metadata={"help": "generated validation scenes (embedded data)"})
    num_test: int = field(default=500, metadata={"help": "generated test scenes (embedded data; 0 = no test split)"})


# --- data ----------------------------------------------------------------------------------------
# Each source gives uint8 images and float32 targets per split (numpy), plus target names and the
# steering-per-pixel rule; _finish computes the training targets' statistics and builds tf.data.


@dataclass
class _Arrays:
    splits: dict  # {split: (images uint8 (n, h, w, 3), targets float32 (n, k))}
    target_names: tuple
    source: str
    origins: dict
    per_pixel: float  # steering change per pixel of shift to the right


def _size(cfg) -> tuple:
    return cfg.image_height, cfg.image_width


def _generated(cfg, spec) -> _Arrays:
    parts = {s: roads.generate(n, cfg.seed, s, *_size(cfg)) for s, n in generated_sizes(cfg).items()}
    return _Arrays(parts, ("steering",), "generated road scenes (steering)",
                   {s: generated_note(s) for s in parts}, roads.steering_per_pixel(cfg.image_width))


def _targets_of(cfg, table) -> tuple:
    if cfg.target_columns:
        return tuple(cfg.target_columns)
    if table.udacity:
        return ("steering",)
    raise UserError(f"--data {table.path}: say which columns to predict with --set target_columns=NAME[,NAME] "
                    f"(columns: {', '.join(table.columns)})")


def _side_cameras(cfg, table, rows: np.ndarray, names: tuple, targets: np.ndarray):
    """Left/right camera paths of `rows` with the steering target corrected towards the lane centre."""
    if not table.udacity:
        raise UserError(f"--set use_side_cameras=true: {table.path} is not a Udacity driving_log.csv "
                        "(headerless: center, left, right, steering, throttle, brake, speed)")
    if cfg.steering_column not in names:
        raise UserError(f"--set use_side_cameras=true: the steering target {cfg.steering_column!r} is not among "
                        f"target_columns ({', '.join(names)})")
    k = names.index(cfg.steering_column)
    paths, out = [], []
    for camera, sign in (("left", 1.0), ("right", -1.0)):
        all_paths = steering.image_paths(table, camera)
        paths += [all_paths[i] for i in rows]
        shifted = targets[rows].copy()
        shifted[:, k] = np.clip(shifted[:, k] + sign * cfg.steering_correction, -1.0, 1.0)
        out.append(shifted)
    return paths, np.concatenate(out)


def _csv(cfg, spec) -> _Arrays:
    path = spec.path
    if path.is_dir():
        found = sorted(path.glob("*.csv"))
        if len(found) != 1:
            raise DataError(f"--data {path}: expected a CSV file, or a folder holding exactly one .csv "
                            f"(found {len(found)})")
        path = found[0]
    table = steering.read_table(path)
    names = _targets_of(cfg, table)
    targets = steering.numbers(table, names)
    image_column = cfg.image_column or steering.default_image_column(table)
    paths = steering.image_paths(table, image_column)
    rows = steering.block_split(len(paths), cfg.split_blocks, cfg.val_fraction, cfg.test_fraction, cfg.seed, str(path))
    crop, size = (cfg.crop_top, cfg.crop_bottom), _size(cfg)
    parts = {s: (steering.load_images([paths[i] for i in r], size, crop), targets[r]) for s, r in rows.items()}
    origins = {s: f"{len(r)} rows of {path.name}, lines {_stretches(r, table.lines)} (whole blocks of "
                  f"{cfg.split_blocks}, chosen by seed {cfg.seed})" for s, r in rows.items()}
    if cfg.use_side_cameras:
        side_paths, side_targets = _side_cameras(cfg, table, rows["train"], names, targets)
        images, ys = parts["train"]
        parts["train"] = (np.concatenate([images, steering.load_images(side_paths, size, crop)]),
                          np.concatenate([ys, side_targets]))
        origins["train"] += f" + their left/right camera images (steering +/-{cfg.steering_correction})"
    return _Arrays(parts, names, str(path), origins, cfg.shift_correction)


def _stretches(idx: np.ndarray, lines: list) -> str:
    """'2-62, 246-368': the file lines a split's rows cover, as contiguous stretches."""
    cuts = np.flatnonzero(np.diff(idx) > 1)
    starts, ends = np.r_[idx[0], idx[cuts + 1]], np.r_[idx[cuts], idx[-1]]
    return ", ".join(f"{lines[a]}-{lines[b]}" for a, b in zip(starts, ends))


LOADERS = {"embedded": _generated, "path": _csv}


def _augment(cfg, arrays: _Arrays):
    if not cfg.augment:
        return None
    names = arrays.target_names
    k = names.index(cfg.steering_column) if cfg.steering_column in names else None
    if cfg.flip == "negate" and k is None:
        raise UserError(f"--set flip=negate: no target named {cfg.steering_column!r} to negate "
                        f"(targets: {', '.join(names)}); set steering_column=NAME, flip=keep or flip=off")
    return steering.Augment(k if cfg.flip == "negate" else None, flip=cfg.flip != "off",
                            max_shift=cfg.max_shift if k is not None else 0, shift_correction=arrays.per_pixel,
                            brightness=cfg.brightness, shadows=cfg.shadows)


def build_datasets(cfg: ImageRegressionConfig) -> Data:
    spec = parse_data_spec(cfg.data)
    if spec.kind not in LOADERS:
        raise UserError(f"--data {cfg.data}: image regression reads embedded or a CSV of image paths (no TFDS source)")
    arrays = LOADERS[spec.kind](cfg, spec)
    train_y = arrays.splits["train"][1]
    std = train_y.std(axis=0)
    extra = {"target_names": list(arrays.target_names), "target_mean": train_y.mean(axis=0).tolist(),
             "target_std": np.where(std > 1e-6, std, 1.0).tolist(), "crop": [cfg.crop_top, cfg.crop_bottom],
             "steering_per_pixel": arrays.per_pixel}
    counts = {s: len(y) for s, (_, y) in arrays.splits.items()}
    k = len(arrays.target_names)
    info = DataInfo(arrays.source, counts["train"], counts["validation"], {"image": InputSpec((*_size(cfg), 3))},
                    extra=extra, num_test=counts.get("test", 0), targets={"values": InputSpec((k,))},
                    splits=arrays.origins)
    made = {s: steering.from_arrays(x, y) for s, (x, y) in arrays.splits.items()}
    return Data.from_splits(made, info, augment=_augment(cfg, arrays))


# --- model, loss, metrics --------------------------------------------------------------------------


def build_model(cfg: ImageRegressionConfig, info: DataInfo) -> keras.Model:
    mean, std = info.extra["target_mean"], info.extra["target_std"]
    shape = info.inputs["image"].shape
    if cfg.model == "pilotnet" and min(shape[:2]) < regressor.PILOTNET_MIN_SIZE:
        raise UserError(f"--set image_height/image_width: pilotnet needs at least {regressor.PILOTNET_MIN_SIZE} "
                        f"pixels a side, got {shape[0]}x{shape[1]}")
    width = cfg.width if cfg.model == "pilotnet" else max(1, int(round(cfg.width)))
    return regressor.MODELS[cfg.model](shape, mean, std, width=width, dropout=cfg.dropout)


def loss(cfg, info):
    return regressor.StandardizedError(info.extra["target_std"], cfg.loss)


def metrics(cfg, info):
    return [keras.metrics.MeanAbsoluteError(name="mae"), keras.metrics.RootMeanSquaredError(name="rmse")]


def _predictions_and_targets(model, ds, cfg) -> tuple[np.ndarray, np.ndarray]:
    batches = stream.eval_stream(ds, batch_size=cfg.batch_size)  # cached: images are made once
    targets = np.concatenate([y for _, y in batches.as_numpy_iterator()])
    return np.asarray(model.predict(steering.inputs_only(batches), verbose=0)), targets


def baseline_metrics(model, ds, cfg, info: DataInfo, report) -> dict:
    """The predict-the-training-mean baseline on this split, and the model's MAE as a share of it."""
    from training.baselines import mean_baseline, regression_errors

    pred, y = _predictions_and_targets(model, ds, cfg)
    base = mean_baseline(np.asarray([info.extra["target_mean"]]), y)
    mae = regression_errors(y, pred)["mae"]
    report(f"predict-the-mean baseline: MAE {base['mae']:.4f}, RMSE {base['rmse']:.4f}; model MAE {mae:.4f} "
           f"({mae / base['mae']:.2f}x the baseline)")
    return {"mean_baseline_mae": base["mae"], "mean_baseline_rmse": base["rmse"],
            "mae_over_baseline": mae / base["mae"] if base["mae"] else 0.0}


# --- pictures and predictions -------------------------------------------------------------------

TRUE_COLOUR, PRED_COLOUR = (0, 200, 0), (230, 30, 30)


def annotated(image: np.ndarray, true, pred, names: tuple, steering_index, scale: int = 2) -> np.ndarray:
    """An image with true (green) and predicted (red) values written on it, and, for a steering
    target, both drawn as arrows from the bottom centre (angle = steering x 45 degrees)."""
    img = Image.fromarray(image).resize((image.shape[1] * scale, image.shape[0] * scale), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    if steering_index is not None:
        cx, cy, r = img.width / 2, img.height - 2, img.height * 0.6
        for value, colour in ((true[steering_index], TRUE_COLOUR), (pred[steering_index], PRED_COLOUR)):
            a = np.deg2rad(45.0 * float(np.clip(value, -1.5, 1.5)))
            draw.line([cx, cy, cx + r * np.sin(a), cy - r * np.cos(a)], fill=colour, width=3)
    for row, (name, t, p) in enumerate(zip(names, true, pred)):
        y = 2 + 11 * row
        draw.rectangle([0, y, 6 * (len(name) + 30), y + 10], fill=(0, 0, 0))
        draw.text((2, y), f"{name}: true {t:+.3f}", fill=TRUE_COLOUR)
        draw.text((2 + 6 * (len(name) + 15), y), f"pred {p:+.3f}", fill=PRED_COLOUR)
    return np.asarray(img)


def _steering_index(info: DataInfo, cfg):
    names = tuple(info.extra["target_names"])
    return names.index(cfg.steering_column) if cfg.steering_column in names else None


def visualize(model, batch, info: DataInfo, cfg) -> dict:
    """Validation images with their true and predicted values drawn on them."""
    x, y = batch
    x, y = x[:12], y[:12]
    pred = np.asarray(model.predict_on_batch(x))
    names = tuple(info.extra["target_names"])
    tiles = [annotated(img, t, p, names, _steering_index(info, cfg)) for img, t, p in zip(visuals.to_uint8(x), y, pred)]
    return {"predictions": visuals.grid(tiles, columns=3)}


def sample_inputs(cfg, info: DataInfo, out_dir: Path, n: int) -> list[str]:
    height, width = info.inputs["image"].shape[:2]
    return roads.write_pngs(cfg.seed, out_dir, n, height, width)


def predict_outputs(model, inputs: list[str], out_dir: Path, cfg, info: DataInfo, options: dict) -> list[dict]:
    """The predicted values per image file (cropped and resized as in training); predictions.json."""
    from pipelines.steering import load_images

    paths = files.require_files(inputs)
    size = tuple(info.inputs["image"].shape[:2])
    batch = load_images(paths, size, tuple(info.extra.get("crop", (0.0, 0.0)))).astype("float32") / 255.0
    pred = np.asarray(model.predict_on_batch(batch))
    names = info.extra["target_names"]
    rows = [{"input": str(p), **{n: round(float(v), 6) for n, v in zip(names, values)}} for p, values in zip(paths, pred)]
    (out_dir / "predictions.json").write_text(json.dumps(rows, indent=2))
    return rows


register(Task(
    name="image-regression",
    description="image regression, e.g. steering angle (PilotNet / ResNet with a linear head)",
    config_cls=ImageRegressionConfig,
    build_datasets=build_datasets,
    build_model=build_model,
    loss=loss,
    metrics=metrics,
    default_data="generated top-down road scenes, steering angle (66x200)",
    presets={
        "debug": {"epochs": 1, "num_train": 128, "num_val": 32, "num_test": 32, "batch_size": 32, "width": 0.5,
                  "log_every_steps": 2, "warmup_steps": 0, "image_width": 96},
        # measured best on ../shared/data/udacity-sim (README): side cameras and shifts made validation worse
        "udacity": {"crop_top": 0.35, "crop_bottom": 0.15, "val_fraction": 0.2, "test_fraction": 0.2,
                    "split_blocks": 20, "epochs": 30, "loss": "mae", "batch_size": 32, "max_shift": 0},
    },
    visualize=visualize,
    visualize_examples=12,
    predict_outputs=predict_outputs,
    sample_inputs=sample_inputs,
    split_metrics=SplitMetrics({"mean_baseline_mae": "down", "mean_baseline_rmse": "down", "mae_over_baseline": "down"},
                               baseline_metrics),
    best_metric="val_mae",
))
