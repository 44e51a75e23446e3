"""Image-regression data: a CSV of image paths and numeric columns (the Udacity simulator's
`driving_log.csv` as it ships among them), contiguous-block splits, and label-correct augmentation.

Readers decode with PIL in Python so every bad row is reported as `FILE line N: ...`; tf.data only
sees uint8 arrays and float32 targets. Augmentations keep labels right: a horizontal flip negates
the steering target, a horizontal shift of p pixels adds `p * shift_correction` to it.
"""

from __future__ import annotations

import csv
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath

import numpy as np
import tensorflow as tf
from PIL import Image

from errors import DataError
from pipelines import files

UDACITY_COLUMNS = ("center", "left", "right", "steering", "throttle", "brake", "speed")
IMAGE_COLUMN_GUESSES = ("image", "path", "filename", "file", "center")


@dataclass
class Table:
    """A CSV read as columns of strings, with the line each row came from."""

    path: Path
    columns: tuple
    rows: list  # list of lists of str
    lines: list  # file line number per row
    udacity: bool = False

    def column(self, name: str, flag: str) -> int:
        if name not in self.columns:
            raise DataError(f"{self.path} line 1: no column {name!r} (columns: {', '.join(self.columns)}); "
                            f"choose one with --set {flag}=NAME")
        return self.columns.index(name)


def _looks_like_image(cell: str) -> bool:
    return cell.strip().lower().endswith(files.IMAGE_SUFFIXES)


def read_table(path: Path) -> Table:
    """A CSV with a header row, or a headerless Udacity log (7 fields, the first an image path)."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            raw = [(n, row) for n, row in enumerate(csv.reader(f), start=1) if any(c.strip() for c in row)]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except (OSError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read as CSV ({files.one_line(exc)})") from None
    if not raw:
        raise DataError(f"{path}: empty file (expected a header row, or a Udacity driving_log.csv)")
    first = raw[0][1]
    udacity = len(first) == len(UDACITY_COLUMNS) and _looks_like_image(first[0])
    columns = UDACITY_COLUMNS if udacity else tuple(c.strip() for c in first)
    body = raw if udacity else raw[1:]
    if not body:
        raise DataError(f"{path}: header only, no rows")
    for n, row in body:
        if len(row) != len(columns):
            raise DataError(f"{path} line {n}: expected {len(columns)} fields ({', '.join(columns)}), got {len(row)}")
    return Table(path, columns, [[c.strip() for c in r] for _, r in body], [n for n, _ in body], udacity)


def default_image_column(table: Table) -> str:
    found = next((c for c in IMAGE_COLUMN_GUESSES if c in table.columns), None)
    if found is None:
        raise DataError(f"{table.path} line 1: which column holds the image paths? columns: "
                        f"{', '.join(table.columns)}; say it with --set image_column=NAME")
    return found


def numbers(table: Table, names: tuple) -> np.ndarray:
    """(rows, len(names)) float32 of the named columns; a non-numeric cell is an error naming its line."""
    idx = [table.column(n, "target_columns") for n in names]
    out = np.zeros((len(table.rows), len(names)), np.float32)
    for r, row in enumerate(table.rows):
        for k, i in enumerate(idx):
            try:
                out[r, k] = float(row[i])
            except ValueError:
                out[r, k] = math.nan
            if not math.isfinite(out[r, k]):
                raise DataError(f"{table.path} line {table.lines[r]}: column {names[k]!r} value {row[i]!r} "
                                "is not a finite number")
    return out


def resolve_image(cell: str, csv_path: Path, line: int) -> Path:
    """An image path of the CSV: as written (relative to the CSV's folder), else `IMG/<file name>`
    beside the CSV (logs recorded on another machine, often with Windows paths)."""
    if not cell:
        raise DataError(f"{csv_path} line {line}: empty image path")
    written = Path(cell) if not PureWindowsPath(cell).drive else None
    if written is not None:
        written = written if written.is_absolute() else csv_path.parent / written
        if written.is_file():
            return written
    name = PureWindowsPath(cell).name  # handles both / and \ separators
    fallback = csv_path.parent / "IMG" / name
    if fallback.is_file():
        return fallback
    raise DataError(f"{csv_path} line {line}: image {cell!r} not found (nor {fallback})")


def image_paths(table: Table, column: str) -> list[Path]:
    i = table.column(column, "image_column")
    return [resolve_image(row[i], table.path, n) for row, n in zip(table.rows, table.lines)]


def load_image(path: Path, size: tuple, crop: tuple = (0.0, 0.0)) -> np.ndarray:
    """uint8 (h, w, 3): rows cropped off the top and bottom (fractions: sky, bonnet), then resized."""
    image = files.load_image(path)
    h = image.shape[0]
    top, bottom = int(round(crop[0] * h)), int(round(crop[1] * h))
    image = image[top: h - bottom]
    if image.shape[:2] != tuple(size):
        image = np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))
    return image


def load_images(paths: list[Path], size: tuple, crop: tuple = (0.0, 0.0)) -> np.ndarray:
    with ThreadPoolExecutor(max_workers=4) as pool:
        arrays = list(pool.map(lambda p: load_image(p, size, crop), paths))
    return np.stack(arrays) if arrays else np.zeros((0, *size, 3), np.uint8)


def block_split(n: int, blocks: int, val_fraction: float, test_fraction: float, seed: int, name: str) -> dict:
    """{split: row indices}: rows cut into `blocks` contiguous stretches (consecutive frames are near
    duplicates, so a random row split would leak), whole stretches drawn by seed for validation/test."""
    blocks = max(1, min(blocks, n))
    n_val = max(1, int(round(blocks * val_fraction)))
    n_test = int(round(blocks * test_fraction)) if test_fraction else 0
    if n_val + n_test >= blocks:
        raise DataError(f"{name}: {blocks} blocks cannot hold {n_val} validation and {n_test} test block(s) and "
                        "still train; raise --set split_blocks=N or lower val_fraction/test_fraction")
    order = np.random.default_rng([seed, 4099]).permutation(blocks)
    bounds = np.linspace(0, n, blocks + 1).round().astype(int)
    pick = lambda ids: np.concatenate([np.arange(bounds[b], bounds[b + 1]) for b in sorted(ids)])  # noqa: E731
    out = {"validation": pick(order[:n_val]), "train": pick(order[n_val + n_test:])}
    if n_test:
        out["test"] = pick(order[n_val:n_val + n_test])
    return out


def from_arrays(images: np.ndarray, targets: np.ndarray) -> tf.data.Dataset:
    """uint8 images + float32 targets -> (float32 image in [0, 1], targets)."""
    ds = tf.data.Dataset.from_tensor_slices((images, targets.astype(np.float32)))
    return ds.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y), num_parallel_calls=tf.data.AUTOTUNE)


def _first(x, y):
    return x


def inputs_only(ds: tf.data.Dataset) -> tf.data.Dataset:
    """(inputs, targets) -> inputs, for model.predict."""
    return ds.map(_first)


# --- augmentation (training only; stateless, so it replays on resume) --------------------------


@dataclass(frozen=True)
class Augment:
    """Label-correct image augmentation. `steering` is the index of the target a flip negates and a
    shift corrects (None: flips keep every target, shifts are off)."""

    steering: int | None
    flip: bool = True
    max_shift: int = 0  # pixels, horizontal
    shift_correction: float = 0.0  # steering per pixel of shift to the right
    brightness: float = 0.0  # max relative change
    shadows: bool = False

    def __call__(self, image, target, seed):
        seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 5))
        if self.flip:
            image, target = self._flip(image, target, seeds[0])
        if self.max_shift and self.steering is not None:
            image, target = self._shift(image, target, seeds[1])
        if self.brightness:
            factor = tf.random.stateless_uniform((), seeds[2], 1 - self.brightness, 1 + self.brightness)
            image = image * factor
        if self.shadows:
            image = random_shadow(image, seeds[3])
        return tf.clip_by_value(image, 0.0, 1.0), target

    def _sign(self, k: int):
        return np.array([-1.0 if i == self.steering else 1.0 for i in range(k)], np.float32)

    def _flip(self, image, target, seed):
        flip = tf.random.stateless_uniform((), seed) < 0.5
        image = tf.where(flip, tf.reverse(image, axis=[1]), image)
        return image, tf.where(flip, target * self._sign(target.shape[-1]), target)

    def _shift(self, image, target, seed):
        """Move the picture p pixels right (edge columns repeated): steering += p * correction."""
        h, w = image.shape[0], image.shape[1]
        m = self.max_shift
        start = tf.random.stateless_uniform((), seed, 0, 2 * m + 1, dtype=tf.int32)
        padded = tf.concat([tf.repeat(image[:, :1], m, axis=1), image, tf.repeat(image[:, -1:], m, axis=1)], axis=1)
        image = padded[:, 2 * m - start: 2 * m - start + w]
        image.set_shape((h, w, image.shape[-1]))
        moved = tf.cast(start - m, tf.float32)  # content moved right by this many pixels
        onehot = 1.0 - self._sign(target.shape[-1])  # 2 at the steering index, 0 elsewhere
        target = target + onehot / 2 * moved * self.shift_correction
        return image, tf.where(onehot > 0, tf.clip_by_value(target, -1.0, 1.0), target)


def random_shadow(image, seed, strength=(0.4, 0.8)):
    """Darken the image on one side of a random line from the top edge to the bottom edge."""
    h, w = image.shape[0], image.shape[1]
    s = tf.random.stateless_uniform((4,), seed)
    x_top, x_bottom = s[0] * w, s[1] * w
    rows = tf.range(h, dtype=tf.float32)[:, None] / max(h - 1, 1)
    boundary = x_top + (x_bottom - x_top) * rows
    cols = tf.range(w, dtype=tf.float32)[None, :]
    side = tf.where(s[2] < 0.5, cols < boundary, cols >= boundary)
    factor = strength[0] + (strength[1] - strength[0]) * s[3]
    return image * tf.where(side, factor, 1.0)[..., None]
