"""Object detection: an anchor-free CenterNet-style detector with COCO mAP (pycocotools).

Data: generated shape scenes (several objects, some overlapping) by default; `tfds:voc/2007`;
a folder with a CSV (`filename,width,height,class,xmin,ymin,xmax,ymax`), YOLO (`images/` +
`labels/`) or Pascal VOC XML (`Annotations/`) labels. Boxes are absolute-pixel `xyxy` in the
resized square model input everywhere (see pipelines/detection.py and keras_models/detector.py).
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from errors import DataError, UserError
from pipelines import Data, DataInfo, files, parse_data_spec, shapes
from pipelines import splits as split_rules
from tasks import visuals
from tasks.base import SplitMetrics, Task, TrainConfig, register
from tasks.lazy import lazy_module

keras = lazy_module("keras")
detector = lazy_module("keras_models.detector")
det_data = lazy_module("pipelines.detection")

MODELS = {"centernet": "centernet"}  # builders in keras_models.detector
FORMATS = ("auto", "csv", "yolo", "voc")
TFDS_MAX_BOXES = 50  # VOC 2007 images hold at most 42 objects


@dataclass(frozen=True)
class DetectionConfig(TrainConfig):
    model: str = field(default="centernet", metadata={"choices": tuple(MODELS), "help": "centernet (anchor-free, stride-4 heat map + box regression)"})
    epochs: int = 12
    batch_size: int = 32
    learning_rate: float = 3e-3
    warmup_steps: int = 50
    image_size: int = field(default=0, metadata={"help": "square input size, a multiple of 16 (0 = 64 for generated data, 128 otherwise)"})
    width: int = field(default=32, metadata={"help": "filters in the first backbone stage"})
    stride: int = field(default=4, metadata={"help": "output grid stride in pixels (4 or 8)"})
    box_weight: float = field(default=1.0, metadata={"help": "weight of the L1 box loss against the focal heat-map loss"})
    augment: bool = field(default=True, metadata={"help": "horizontal flip (boxes move too), brightness and contrast"})
    classes: tuple[str, ...] = field(default=("circle", "square", "triangle"), metadata={"help": "shape classes (embedded data); for label files: the class list (empty or unchanged = read from the labels)"})
    num_train: int = field(default=3000, metadata={"help": "generated training scenes (embedded data)"})
    num_val: int = field(default=300, metadata={"help": "generated validation scenes (embedded data)"})
    num_test: int = field(default=300, metadata={"help": "generated test scenes (embedded data; 0 = no test split)"})
    min_objects: int = field(default=1, metadata={"help": "objects per generated scene, at least"})
    max_objects: int = field(default=3, metadata={"help": "objects per generated scene, at most"})
    min_scale: float = field(default=0.25, metadata={"help": "generated object size as a fraction of the image side, at least"})
    max_scale: float = field(default=0.5, metadata={"help": "... at most"})
    max_overlap: float = field(default=0.2, metadata={"help": "largest IoU between two generated objects"})
    max_boxes: int = field(default=0, metadata={"help": "boxes kept per image (0 = as many as the data has)"})
    data_format: str = field(default="auto", metadata={"choices": FORMATS, "help": "label format of a --data folder"})
    val_fraction: float = field(default=0.15, metadata={"help": "share of train held out for validation when the source has no validation split (chosen by seed)"})
    score_threshold: float = field(default=0.3, metadata={"help": "score a box needs to be drawn (TensorBoard, predict PNGs)"})
    nms_iou: float = field(default=0.5, metadata={"help": "IoU above which NMS drops the lower-scored box of a class"})
    map_every_epochs: int = field(default=1, metadata={"help": "compute COCO mAP on the validation set every N epochs (and after the last)"})


def image_size(cfg, kind: str) -> int:
    size = cfg.image_size or (64 if kind == "embedded" else 128)
    if size % 16:
        raise UserError(f"--set image_size={size}: expected a multiple of 16")
    if cfg.stride not in (4, 8):
        raise UserError(f"--set stride={cfg.stride}: expected 4 or 8")
    return size


# --- data ----------------------------------------------------------------------------------------


def _info(source, n_train, n_val, size, names, cfg, max_boxes) -> DataInfo:
    return DataInfo(source, n_train, n_val, (size, size, 3), len(names), tuple(names),
                    extra={"box_format": "xyxy, absolute pixels of the square model input", "image_size": size,
                           "stride": cfg.stride, "max_boxes": max_boxes})


def _generated(cfg: DetectionConfig, spec) -> Data:
    unknown = [c for c in cfg.classes if c not in shapes.SHAPES]
    if unknown or not cfg.classes:
        raise UserError(f"--set classes: expected 1+ of {', '.join(shapes.SHAPES)}, got {cfg.classes}")
    if not 0 <= cfg.min_objects <= cfg.max_objects or cfg.max_objects < 1:
        raise UserError(f"--set min_objects/max_objects: expected 0 <= min <= max, max >= 1, got {cfg.min_objects}/{cfg.max_objects}")
    size = image_size(cfg, "embedded")
    scene = shapes.SceneSpec(size=size, classes=tuple(cfg.classes), min_objects=cfg.min_objects,
                             max_objects=cfg.max_objects, min_scale=cfg.min_scale, max_scale=cfg.max_scale,
                             max_overlap=cfg.max_overlap, max_clutter=3)
    m = cfg.max_boxes or cfg.max_objects
    made = {split: det_data.from_arrays(*det_data.generated(scene, n, cfg.seed, split, m))
            for split, n in split_rules.generated_sizes(cfg).items()}
    info = _info("generated shapes scenes", cfg.num_train, cfg.num_val, size, cfg.classes, cfg, m)
    info.num_test, info.splits = cfg.num_test, {split: split_rules.generated_note(split) for split in made}
    return Data.from_splits(made, info)


def _tfds(cfg: DetectionConfig, spec) -> Data:
    from pipelines import tfds_source

    datasets, counts, tinfo = tfds_source.load_tfds(spec.value)
    objects = tinfo.features["objects"] if "objects" in tinfo.features else None
    if "image" not in tinfo.features or objects is None or "bbox" not in objects or "label" not in objects:
        raise DataError(f"--data tfds:{spec.value}: expected 'image' and 'objects' with 'bbox' and 'label' features")
    parts, origin = tfds_source.three_splits(datasets, counts, cfg.val_fraction, cfg.seed, f"tfds:{spec.value}")
    size = image_size(cfg, "tfds")
    m = cfg.max_boxes or TFDS_MAX_BOXES
    names = tuple(objects["label"].names)
    info = _info(f"tfds:{spec.value}", parts["train"][1], parts["validation"][1], size, names, cfg, m)
    info.num_test, info.splits = (parts["test"][1] if "test" in parts else 0), origin
    made = {split: det_data.from_tfds(ds, size, m) for split, (ds, _) in parts.items()}
    return Data.from_splits(made, info)


def _records(cfg: DetectionConfig, root: Path):
    """({split: records} with train and, where the layout has them, validation/test; class names or None;
    boxes are normalised)."""
    fmt = det_data.detect_format(root) if cfg.data_format == "auto" else cfg.data_format
    if fmt == "csv":
        if root.is_file():
            return {"train": det_data.read_csv(root, [root.parent / "images", root.parent])}, None, False
        found = {split: next((root / n for n in names if (root / n).is_file()), None)
                 for split, names in det_data.CSV_SPLITS.items()}
        dirs = [root / "images", root]
        if found["train"] is None:
            csvs = sorted(root.glob("*.csv"))
            if len(csvs) != 1:
                raise DataError(f"--data {root}: expected train_labels.csv (+ val_labels.csv, test_labels.csv) "
                                f"or exactly one .csv, found {len(csvs)}")
            return {"train": det_data.read_csv(csvs[0], dirs)}, None, False
        return {split: det_data.read_csv(path, dirs) for split, path in found.items() if path}, None, False
    if fmt == "yolo":
        names = det_data.read_yolo_names(root)
        folders = split_rules.find_split_folders(root / "images")
        if folders is not None:
            parts = {split: det_data.read_yolo(path, root / "labels" / path.name) for split, path in folders.items()}
        else:
            parts = {"train": det_data.read_yolo(root / "images", root / "labels")}
        if names is None:
            top = max([c for records in parts.values() for r in records for c in r.classes], default=0)
            names = tuple(str(i) for i in range(top + 1))
        return parts, names, True
    if fmt == "voc":
        xml_dir = root / "Annotations" if (root / "Annotations").is_dir() else root / "annotations"
        records = det_data.read_voc(xml_dir, [root / "JPEGImages", root / "images", root])
        lists = root / "ImageSets" / "Main"
        if (lists / "train.txt").is_file():
            by_stem = {r.image.stem: r for r in records}
            pick = lambda f: [by_stem[s] for s in f.read_text().split() if s in by_stem]  # noqa: E731
            return {split: pick(lists / f"{name}.txt") for split, name in
                    (("train", "train"), ("validation", "val"), ("test", "test")) if (lists / f"{name}.txt").is_file()}, None, False
        return {"train": records}, None, False
    raise UserError(f"--set data_format={fmt}: expected one of {', '.join(FORMATS)}")


def _folder(cfg: DetectionConfig, spec) -> Data:
    root = spec.path
    parts, names, normalised = _records(cfg, root)
    origin = {split: "own split" for split in parts}
    if "validation" not in parts:
        tr, va = split_rules.carve_indices(len(parts["train"]), cfg.val_fraction, cfg.seed, str(root))
        parts["train"], parts["validation"] = [parts["train"][i] for i in tr], [parts["train"][i] for i in va]
        origin["validation"] = split_rules.carved_note(cfg.val_fraction, cfg.seed)
    labelled = parts["train"] + parts["validation"]  # class names never come from the test split
    if names is None:
        defaults = DetectionConfig.__dataclass_fields__["classes"].default
        names = tuple(cfg.classes) if cfg.classes and tuple(cfg.classes) != defaults else det_data.class_names_of(labelled)
    if not names:
        raise DataError(f"--data {root}: no labelled boxes found")
    size = image_size(cfg, "path")
    m = cfg.max_boxes or max(1, max(len(r.classes) for r in labelled))
    made = {split: det_data.from_arrays(*det_data.load_records(records, size, names, m, normalised))
            for split, records in parts.items()}
    info = _info(str(root), len(parts["train"]), len(parts["validation"]), size, names, cfg, m)
    info.num_test, info.splits = len(parts.get("test", [])), origin
    return Data.from_splits(made, info)


LOADERS = {"embedded": _generated, "tfds": _tfds, "path": _folder}


def build_datasets(cfg: DetectionConfig) -> Data:
    spec = parse_data_spec(cfg.data)
    data = LOADERS[spec.kind](cfg, spec)
    data.augment = det_data.flip_and_brightness if cfg.augment else None
    return data


# --- model, loss ---------------------------------------------------------------------------------


def build_model(cfg: DetectionConfig, info: DataInfo) -> keras.Model:
    return getattr(detector, MODELS[cfg.model])(info.input_shape, info.num_classes, width=cfg.width, stride=cfg.stride)


def loss(cfg: DetectionConfig, info: DataInfo):
    return detector.CenterNetLoss(info.num_classes, info.input_shape[0] // cfg.stride, cfg.stride,
                                  box_weight=cfg.box_weight)


def metrics(cfg, info):
    return []  # mAP needs decoding + NMS over the whole split: declared below as COCO_MAP (split_metrics)


# --- decoding and COCO mAP -----------------------------------------------------------------------


DECODE_BATCH = 64  # images per decoding call; every call is padded to it, so it compiles once
_DECODERS: dict = {}


def _decoder(cfg, info: DataInfo, grid: int, score_threshold: float) -> keras.Model:
    key = (grid, info.num_classes, cfg.stride, tuple(info.input_shape[:2]), cfg.nms_iou, score_threshold)
    if key not in _DECODERS:
        model = detector.decoder_model(DECODE_BATCH, grid, info.num_classes, cfg.stride, info.input_shape[:2],
                                       iou_threshold=cfg.nms_iou, score_threshold=score_threshold, max_detections=100)
        model.compile(jit_compile=True)
        _DECODERS[key] = model
    return _DECODERS[key]


def detect(model, images: np.ndarray, cfg, info: DataInfo, score_threshold: float = 0.05) -> list[dict]:
    """Per image: {"boxes" (n, 4) xyxy model-input pixels, "scores" (n,), "classes" (n,)}."""
    out = []
    for start in range(0, len(images), DECODE_BATCH):
        chunk = np.asarray(images[start:start + DECODE_BATCH], np.float32)
        n_real = len(chunk)
        if n_real < DECODE_BATCH:  # one input shape: no retracing for a short last batch
            chunk = np.concatenate([chunk, np.zeros((DECODE_BATCH - n_real, *chunk.shape[1:]), np.float32)])
        raw = keras.ops.convert_to_numpy(model.predict_on_batch(chunk))
        boxes, scores, classes, counts = _decoder(cfg, info, raw.shape[1], score_threshold).predict_on_batch(raw)
        boxes, scores, classes, counts = (keras.ops.convert_to_numpy(v) for v in (boxes, scores, classes, counts))
        for i in range(n_real):
            n = int(counts[i])
            out.append({"boxes": boxes[i, :n], "scores": scores[i, :n], "classes": classes[i, :n]})
    return out


def coco_map(truth: list[tuple[np.ndarray, np.ndarray]], detections: list[dict], num_classes: int) -> tuple[dict, str]:
    """COCO mAP with pycocotools. truth: per image (boxes (n, 4) xyxy, classes (n,)).

    Returns ({"map": mAP@[.5:.95], "map50", "map75"}, the printed COCO summary table).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, annotations, results = [], [], []
    for i, (boxes, classes) in enumerate(truth):
        images.append({"id": i + 1})
        for b, c in zip(boxes, classes):
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": int(c) + 1,
                                "bbox": [float(b[0]), float(b[1]), w, h], "area": w * h, "iscrowd": 0})
    for i, d in enumerate(detections):
        for b, s, c in zip(d["boxes"], d["scores"], d["classes"]):
            results.append({"image_id": i + 1, "category_id": int(c) + 1, "score": float(s),
                            "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
    if not annotations or not results:
        return {"map": 0.0, "map50": 0.0, "map75": 0.0}, "no ground-truth boxes or no detections: mAP 0"
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations,
                  "categories": [{"id": k + 1, "name": str(k)} for k in range(num_classes)]}
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        ev.summarize()
    s = [max(0.0, float(v)) for v in ev.stats]  # -1 means "no such boxes": report 0
    return {"map": s[0], "map50": s[1], "map75": s[2]}, table.getvalue().rstrip()


def truth_of(targets: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for t in targets:
        valid = t[:, 4] >= 0
        out.append((t[valid, :4], t[valid, 4].astype(np.int32)))
    return out


def dataset_arrays(ds) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for x, y in ds.batch(256).as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def evaluate_map(model, images, targets, cfg, info) -> tuple[dict, str]:
    return coco_map(truth_of(targets), detect(model, images, cfg, info), info.num_classes)


def split_map(model, ds, cfg, info: DataInfo, report) -> dict:
    """COCO mAP over a whole split (decoding + NMS per image); `report` gets the COCO summary table."""
    scores, table = evaluate_map(model, *dataset_arrays(ds), cfg, info)
    report("COCO bbox evaluation (pycocotools):\n" + table)
    return scores


# map50 picks the best checkpoint; all three are "higher is better".
COCO_MAP = SplitMetrics(directions={"map50": "up", "map": "up", "map75": "up"}, compute=split_map,
                        every_epochs=lambda cfg: cfg.map_every_epochs)


# --- pictures and predictions --------------------------------------------------------------------


def draw_boxes(image: np.ndarray, boxes, labels: list[str], colour, scale: float = 1.0,
               thin: bool = False) -> Image.Image:
    """Rectangles (xyxy, times `scale`) with white-on-black captions above them."""
    img = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    draw = ImageDraw.Draw(img)
    for b, text in zip(boxes, labels):
        x1, y1, x2, y2 = (float(v) * scale for v in b)
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=1 if thin else 2)
        if text:
            tx, ty = x1 + 1, max(0.0, y1 - 11)
            draw.rectangle([tx, ty, tx + 6 * len(text), ty + 10], fill=(0, 0, 0))
            draw.text((tx + 1, ty), text, fill=(255, 255, 255))
    return img


def visualize(model, batch, info: DataInfo, cfg) -> dict:
    """Validation images, upscaled 3x: true boxes green, predictions (score >= threshold) red."""
    x, y = batch
    x, y = x[:12], y[:12]
    dets = detect(model, x, cfg, info, score_threshold=cfg.score_threshold)
    names = info.class_names
    scale = max(1, 192 // x.shape[1])
    tiles = []
    for img, t, d in zip(visuals.to_uint8(x), y, dets):
        big = Image.fromarray(img).resize((img.shape[1] * scale, img.shape[0] * scale), Image.NEAREST)
        valid = t[:, 4] >= 0
        draw_boxes(big, t[valid, :4], ["" for _ in range(int(valid.sum()))], (0, 200, 0), scale, thin=True)
        draw_boxes(big, d["boxes"], [f"{names[c]} {s:.2f}" for c, s in zip(d["classes"], d["scores"])],
                   (230, 20, 20), scale)
        tiles.append(np.asarray(big))
    return {"detections": visuals.grid(tiles, columns=4)}


def sample_inputs(cfg, info: DataInfo, out_dir: Path, n: int) -> list[str]:
    scene = shapes.SceneSpec(size=info.input_shape[0], classes=tuple(info.class_names), min_objects=cfg.min_objects,
                             max_objects=cfg.max_objects, min_scale=cfg.min_scale, max_scale=cfg.max_scale,
                             max_overlap=cfg.max_overlap)
    return shapes.write_scene_pngs(scene, cfg.seed, out_dir, n)


def predict_outputs(model, inputs: list[str], out_dir: Path, cfg, info: DataInfo, options: dict) -> list[dict]:
    """COCO-format results (detections.json, boxes in the original image's pixels) + a PNG per image."""
    paths = files.require_files(inputs)
    size = info.input_shape[0]
    batch = files.load_images(paths, (size, size), 3).astype("float32") / 255.0
    dets = detect(model, batch, cfg, info, score_threshold=min(cfg.score_threshold, 0.05))
    results, rows = [], []
    for i, (path, d) in enumerate(zip(paths, dets)):
        original = files.load_image(path, None, 3)
        h, w = original.shape[:2]
        sx, sy = w / size, h / size
        boxes = d["boxes"] * np.array([sx, sy, sx, sy], np.float32)
        kept = []
        for b, s, c in zip(boxes, d["scores"], d["classes"]):
            results.append({"image_id": i + 1, "file_name": str(path), "category_id": int(c) + 1,
                            "category": info.class_names[c],
                            "bbox": [round(float(b[0]), 2), round(float(b[1]), 2), round(float(b[2] - b[0]), 2),
                                     round(float(b[3] - b[1]), 2)], "score": round(float(s), 4)})
            if s >= cfg.score_threshold:
                kept.append((b, c, s))
        scale = max(1.0, 256 / max(h, w))
        img = Image.fromarray(original).resize((int(w * scale), int(h * scale)), Image.NEAREST)
        draw_boxes(img, [k[0] for k in kept], [f"{info.class_names[k[1]]} {k[2]:.2f}" for k in kept], (230, 20, 20), scale)
        png = out_dir / f"{path.stem}_detections.png"
        img.save(png)
        rows.append({"input": str(path), "png": str(png),
                     "detections": [{"label": info.class_names[c], "score": round(float(s), 4),
                                     "box_xyxy": [round(float(v), 1) for v in b]} for b, c, s in kept]})
    (out_dir / "detections.json").write_text(json.dumps(results, indent=1))
    return rows


register(Task(
    name="detection",
    description="object detection (anchor-free CenterNet-style, COCO mAP)",
    config_cls=DetectionConfig,
    build_datasets=build_datasets,
    build_model=build_model,
    loss=loss,
    metrics=metrics,
    default_data="generated shapes scenes (3 classes, 64x64, 1-3 objects)",
    presets={
        "debug": {"epochs": 1, "num_train": 128, "num_val": 32, "num_test": 16, "batch_size": 16, "width": 8,
                  "log_every_steps": 2, "warmup_steps": 0},
        "small": {"epochs": 6, "num_train": 1500, "num_val": 200, "num_test": 200},
    },
    visualize=visualize,
    predict_outputs=predict_outputs,
    sample_inputs=sample_inputs,
    split_metrics=COCO_MAP,
    best_metric="val_map50",
))
