"""Detection data: generated shape scenes, TFDS VOC, and CSV / YOLO / Pascal VOC label files.

One box format everywhere: absolute-pixel `xyxy` (`x_min, y_min, x_max, y_max`) in the
coordinates of the (resized, square) model input. Each example is `(image float32 [0, 1] (H, W, 3),
targets float32 (max_boxes, 5))`: rows `x_min, y_min, x_max, y_max, class`, padded with class -1.
An image with no boxes is a valid negative example (all rows padding).

File readers decode labels in Python so every problem is a one-line `DataError` naming the file
(and line): malformed lines, unknown class names, boxes outside the image (more than
`BORDER_TOLERANCE` pixels; smaller overshoots are clipped), images without a label file.
"""

from __future__ import annotations

import csv
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from errors import DataError
from pipelines import files, shapes

BORDER_TOLERANCE = 2.0  # pixels a label box may overshoot the image before it is an error
CSV_COLUMNS = ("filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax")
CSV_SPLITS = {"train": ("train_labels.csv", "train.csv"),
              "validation": ("val_labels.csv", "valid_labels.csv", "val.csv", "valid.csv", "validation.csv"),
              "test": ("test_labels.csv", "test.csv")}


@dataclass
class Record:
    """One image and its boxes in the image's own pixels, as read from a label file."""

    image: Path
    boxes: list = field(default_factory=list)  # [x_min, y_min, x_max, y_max] original pixels
    classes: list = field(default_factory=list)  # class names (str) or indices (int)
    where: list = field(default_factory=list)  # "file:line" of each box, for error messages
    size: tuple | None = None  # (width, height) claimed by the label file, checked against the image


# --- padding, arrays and augmentation ----------------------------------------------------------


def pad_targets(boxes, classes, max_boxes: int) -> np.ndarray:
    """(n, 4) boxes + (n,) classes -> (max_boxes, 5) rows, class -1 padding (extra boxes dropped)."""
    out = np.zeros((max_boxes, 5), np.float32)
    out[:, 4] = -1
    n = min(len(classes), max_boxes)
    if n:
        out[:n, :4] = np.asarray(boxes, np.float32)[:n]
        out[:n, 4] = np.asarray(classes, np.float32)[:n]
    return out


def scenes_to_arrays(scenes: list, max_boxes: int) -> tuple[np.ndarray, np.ndarray]:
    images = np.stack([s.image for s in scenes])
    targets = np.stack([pad_targets(s.boxes, s.classes, max_boxes) for s in scenes])
    return images, targets


def generated(spec: shapes.SceneSpec, n: int, seed: int, split: str, max_boxes: int):
    return scenes_to_arrays(shapes.generate(spec, n, seed, split), max_boxes)


def from_arrays(images: np.ndarray, targets: np.ndarray) -> tf.data.Dataset:
    ds = tf.data.Dataset.from_tensor_slices((images, targets))
    return ds.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y), num_parallel_calls=tf.data.AUTOTUNE)


def flip_and_brightness(image, targets, seed):
    """Horizontal flip that moves the boxes with the image, plus brightness/contrast jitter."""
    s1, s2, s3 = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    width = tf.cast(tf.shape(image)[1], tf.float32)
    flip = tf.random.stateless_uniform([], seed=s1) < 0.5
    x1, y1, x2, y2, cls = tf.unstack(targets, axis=-1)
    flipped = tf.stack([width - x2, y1, width - x1, y2, cls], axis=-1)
    valid = (cls >= 0)[:, None]
    targets = tf.where(flip & valid, flipped, targets)
    image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
    image = tf.image.stateless_random_brightness(image, 0.1, seed=s2)
    image = tf.image.stateless_random_contrast(image, 0.8, 1.2, seed=s3)
    return tf.clip_by_value(image, 0.0, 1.0), targets


# --- TFDS (voc/2007 and any dataset with image + objects/bbox + objects/label) ------------------


def from_tfds(ds: tf.data.Dataset, size: int, max_boxes: int) -> tf.data.Dataset:
    """TFDS normalised `yxyx` boxes -> padded absolute `xyxy` targets on a size x size image."""

    def convert(ex):
        image = tf.image.resize(tf.cast(ex["image"], tf.float32), (size, size), antialias=True) / 255.0
        if image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        bbox = tf.reshape(tf.cast(ex["objects"]["bbox"], tf.float32), (-1, 4))
        label = tf.cast(tf.reshape(ex["objects"]["label"], (-1,)), tf.float32)
        n = tf.minimum(tf.minimum(tf.shape(bbox)[0], tf.shape(label)[0]), max_boxes)
        bbox, label = bbox[:n] * size, label[:n]
        rows = tf.stack([bbox[:, 1], bbox[:, 0], bbox[:, 3], bbox[:, 2], label], axis=-1)
        pad = max_boxes - tf.shape(rows)[0]
        rows = tf.concat([rows, tf.tile(tf.constant([[0, 0, 0, 0, -1]], tf.float32), [pad, 1])], axis=0)
        return tf.clip_by_value(image, 0.0, 1.0), tf.ensure_shape(rows, (max_boxes, 5))

    return ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


# --- label files ------------------------------------------------------------------------------


def _number(text: str, where: str, what: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {what} {text!r} is not a number") from None


def read_csv(path: Path, image_dirs: list[Path]) -> list[Record]:
    """`filename,width,height,class,xmin,ymin,xmax,ymax` rows (pixels), several rows per image.

    An image listed once with an empty class (and empty coordinates) is a negative example.
    """
    records: dict[str, Record] = {}
    try:
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = [h.strip().lower() for h in next(reader, [])]
            if tuple(header) != CSV_COLUMNS:
                raise DataError(f"{path}:1: expected header {','.join(CSV_COLUMNS)}, got {','.join(header) or 'nothing'}")
            for lineno, row in enumerate(reader, start=2):
                if not row or not any(c.strip() for c in row):
                    continue
                where = f"{path}:{lineno}"
                if len(row) != len(CSV_COLUMNS):
                    raise DataError(f"{where}: expected {len(CSV_COLUMNS)} comma-separated fields, got {len(row)}")
                name, w, h, cls, *coords = (c.strip() for c in row)
                rec = records.get(name)
                if rec is None:
                    image = _find_image(name, image_dirs, where)
                    rec = records[name] = Record(image, size=(_number(w, where, "width"), _number(h, where, "height")))
                if cls == "" and not any(coords):
                    continue  # negative example row
                box = [_number(v, where, k) for v, k in zip(coords, ("xmin", "ymin", "xmax", "ymax"))]
                rec.boxes.append(box)
                rec.classes.append(cls)
                rec.where.append(where)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file") from None
    if not records:
        raise DataError(f"{path}: no label rows")
    return list(records.values())


def _find_image(name: str, image_dirs: list[Path], where: str) -> Path:
    for d in image_dirs:
        if (d / name).is_file():
            return d / name
    raise DataError(f"{where}: image {name!r} not found in {', '.join(str(d) for d in image_dirs)}")


def read_yolo(image_dir: Path, label_dir: Path) -> list[Record]:
    """One `labels/<stem>.txt` per image with `class cx cy w h` (normalised) per line.

    An empty label file marks an image with no objects; a missing one is an error.
    """
    images = files.list_images(image_dir)
    if not images:
        raise DataError(f"{image_dir}: no images ({', '.join(files.IMAGE_SUFFIXES)})")
    records = []
    for image in images:
        label = label_dir / f"{image.stem}.txt"
        if not label.is_file():
            raise DataError(f"{image}: no label file {label} (an empty file marks an image with no objects)")
        rec = Record(image)
        for lineno, line in enumerate(files.read_text(label).splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{label}:{lineno}"
            parts = line.split()
            if len(parts) != 5:
                raise DataError(f"{where}: expected 'class cx cy w h' (5 fields), got {len(parts)}: {line.strip()!r}")
            try:
                k = int(parts[0])
            except ValueError:
                raise DataError(f"{where}: class {parts[0]!r} is not an integer index") from None
            cx, cy, w, h = (_number(v, where, n) for v, n in zip(parts[1:], ("cx", "cy", "w", "h")))
            if not all(0.0 <= v <= 1.0 for v in (cx, cy, w, h)):
                raise DataError(f"{where}: expected normalised values in [0, 1], got {line.strip()!r}")
            rec.boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])  # normalised; scaled on load
            rec.classes.append(k)
            rec.where.append(where)
        records.append(rec)
    return records


def read_yolo_names(root: Path) -> tuple[str, ...] | None:
    """Class names from a YOLO `*.yaml` (`names:` list or {index: name}) or `classes.txt`."""
    for path in sorted(root.glob("*.yaml")) + sorted(root.glob("*.yml")):
        import yaml

        try:
            doc = yaml.safe_load(files.read_text(path)) or {}
        except yaml.YAMLError as exc:
            raise DataError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        names = doc.get("names") if isinstance(doc, dict) else None
        if isinstance(names, dict):
            return tuple(str(names[k]) for k in sorted(names))
        if isinstance(names, list):
            return tuple(map(str, names))
    if (root / "classes.txt").is_file():
        return tuple(line.strip() for line in files.read_text(root / "classes.txt").splitlines() if line.strip())
    return None


def read_voc(xml_dir: Path, image_dirs: list[Path]) -> list[Record]:
    """Pascal VOC XML files (`<object><name>` + `<bndbox>` in pixels), one per image."""
    xmls = sorted(xml_dir.glob("*.xml"))
    if not xmls:
        raise DataError(f"{xml_dir}: no .xml annotation files")
    records = []
    for path in xmls:
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as exc:
            raise DataError(f"{path}: malformed XML ({exc})") from None
        name = root.findtext("filename") or f"{path.stem}.jpg"
        size = root.find("size")
        dims = None
        if size is not None and size.findtext("width") and size.findtext("height"):
            dims = (_number(size.findtext("width"), str(path), "width"), _number(size.findtext("height"), str(path), "height"))
        rec = Record(_find_image(name.strip(), image_dirs, str(path)), size=dims)
        for i, obj in enumerate(root.iter("object"), start=1):
            where = f"{path}: object {i}"
            cls = (obj.findtext("name") or "").strip()
            bb = obj.find("bndbox")
            if not cls or bb is None:
                raise DataError(f"{where}: expected <name> and <bndbox>")
            rec.boxes.append([_number(bb.findtext(k), where, k) for k in ("xmin", "ymin", "xmax", "ymax")])
            rec.classes.append(cls)
            rec.where.append(where)
        records.append(rec)
    return records


def class_names_of(records: list[Record]) -> tuple[str, ...]:
    return tuple(sorted({c for r in records for c in r.classes}))


def load_records(records: list[Record], size: int, class_names: tuple[str, ...], max_boxes: int,
                 normalised: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Decode and resize the images; check, clip and scale the boxes; pad the targets."""
    index = {name: k for k, name in enumerate(class_names)}
    targets = np.zeros((len(records), max_boxes, 5), np.float32)
    shapes_hw = []
    for i, rec in enumerate(records):
        w, h = _image_size(rec.image)
        if rec.size is not None and (abs(rec.size[0] - w) > 1 or abs(rec.size[1] - h) > 1):
            raise DataError(f"{rec.where[0] if rec.where else rec.image}: label says the image is "
                            f"{rec.size[0]:g}x{rec.size[1]:g}, {rec.image.name} is {w}x{h}")
        shapes_hw.append((h, w))
        boxes, classes = [], []
        for box, cls, where in zip(rec.boxes, rec.classes, rec.where):
            if isinstance(cls, (int, np.integer)):
                if not 0 <= cls < len(class_names):
                    raise DataError(f"{where}: class index {cls} outside 0..{len(class_names) - 1}")
                k = int(cls)
            elif cls not in index:
                raise DataError(f"{where}: unknown class name {cls!r}; known: {', '.join(class_names)}")
            else:
                k = index[cls]
            x1, y1, x2, y2 = (box[0] * w, box[1] * h, box[2] * w, box[3] * h) if normalised else box
            tol = BORDER_TOLERANCE
            if x1 < -tol or y1 < -tol or x2 > w + tol or y2 > h + tol:
                raise DataError(f"{where}: box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) lies outside the {w}x{h} image")
            x1, y1, x2, y2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h))
            if x2 <= x1 or y2 <= y1:
                raise DataError(f"{where}: empty box ({x1:g}, {y1:g}, {x2:g}, {y2:g}): expected xmin < xmax and ymin < ymax")
            boxes.append([x1 * size / w, y1 * size / h, x2 * size / w, y2 * size / h])
            classes.append(k)
        targets[i] = pad_targets(boxes, classes, max_boxes)
    images = files.load_images([r.image for r in records], (size, size), 3)
    return images, targets


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.size
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: unreadable or corrupt image ({exc.__class__.__name__})") from None


def detect_format(root: Path) -> str:
    """csv | yolo | voc, from what a folder (or file) holds."""
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return "csv"
        raise DataError(f"--data {root}: expected a .csv label file or a folder (CSV, YOLO or Pascal VOC layout)")
    if any((root / n).is_file() for names in CSV_SPLITS.values() for n in names) or list(root.glob("*.csv")):
        return "csv"
    if (root / "labels").is_dir() and (root / "images").is_dir():
        return "yolo"
    if (root / "Annotations").is_dir() or (root / "annotations").is_dir():
        return "voc"
    raise DataError(f"--data {root}: no detection labels found (expected train_labels.csv, "
                    "images/ + labels/ (YOLO) or Annotations/ (Pascal VOC))")
