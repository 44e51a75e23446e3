"""Readers for the plain files people have: image folders, IDX (MNIST) files.

They decode with PIL in Python so that every bad file is reported by name, then hand numpy
arrays to tf.data. Every failure is a `DataError` naming the file and what was expected.
"""

from __future__ import annotations

import json

import gzip
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def one_line(exc: BaseException) -> str:
    """An exception as 'Type: message' on a single line."""
    text = " ".join(str(exc).split())
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def read_text(path: Path) -> str:
    """A text file's contents, or a DataError naming it (unreadable, not UTF-8)."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a UTF-8 text file (byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({one_line(exc)})") from None


def read_jsonl(path: Path, text: str | None = None) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSON Lines file; a bad line is one error
    naming the line and column."""
    rows = []
    for n, line in enumerate((read_text(path) if text is None else text).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {n} column {exc.colno}: invalid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path} line {n}: expected a JSON object, got {type(obj).__name__}")
        rows.append((n, obj))
    if not rows:
        raise DataError(f"{path}: no JSON lines (expected one JSON object a line)")
    return rows


def require_files(inputs: list[str]) -> list[Path]:
    """Input paths given on the command line, each checked to exist."""
    if not inputs:
        raise DataError("predict: give at least one input file")
    paths = [Path(p) for p in inputs]
    for p in paths:
        if not p.is_file():
            raise DataError(f"{p}: no such input file")
    return paths


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def load_image(path: Path, size: tuple[int, int] | None = None, channels: int = 3,
               resample=Image.BILINEAR) -> np.ndarray:
    """Decode one image to uint8 (H, W, channels), resized to `size` (h, w) if given."""
    try:
        with Image.open(path) as img:
            img.load()
            img = img.convert("L" if channels == 1 else "RGB")
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), resample)
            arr = np.asarray(img, np.uint8)
    except Exception as exc:  # noqa: BLE001  (any decoder failure on user bytes is a data problem)
        raise DataError(f"{path}: unreadable or corrupt image ({one_line(exc)})") from None
    return arr[..., None] if arr.ndim == 2 else arr


def load_images(paths: list[Path], size, channels: int = 3, resample=Image.BILINEAR) -> np.ndarray:
    with ThreadPoolExecutor(max_workers=4) as pool:
        arrays = list(pool.map(lambda p: load_image(p, size, channels, resample), paths))
    return np.stack(arrays) if arrays else np.zeros((0, *size, channels), np.uint8)


def image_channels(path: Path) -> int:
    try:
        with Image.open(path) as img:
            return 1 if img.mode in ("L", "1", "I;16", "I") else 3
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"{path}: unreadable or corrupt image ({one_line(exc)})") from None


def read_class_folders(root: Path) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    """A folder with one sub-folder of images per class; class names are sorted folder names."""
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(class_dirs) < 2:
        raise DataError(f"{root}: expected one sub-folder of images per class (at least 2), found {len(class_dirs)}")
    paths, labels = [], []
    for k, d in enumerate(class_dirs):
        files = list_images(d)
        if not files:
            raise DataError(f"{d}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        paths += files
        labels += [k] * len(files)
    return paths, np.asarray(labels, np.int32), tuple(d.name for d in class_dirs)


# --- IDX (MNIST) -------------------------------------------------------------------------------

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped), the format MNIST ships in."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: cannot read IDX file ({one_line(exc)})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (expected magic 0x0000 + type byte)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header truncated")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: IDX payload has {len(raw) - header} bytes, header promises {expected}")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims)


def find_idx_pair(folder: Path) -> tuple[Path, Path] | None:
    """The (images, labels) IDX files in a folder, if it holds exactly one such pair."""
    images = sorted(folder.glob("*images*idx3*"))
    labels = sorted(folder.glob("*labels*idx1*"))
    if len(images) == 1 and len(labels) == 1:
        return images[0], labels[0]
    return None
