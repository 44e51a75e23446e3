"""Segmentation data: (image float32 [0, 1] (H, W, C), mask int32 class indices (H, W)) pairs.

Sources: arrays (the generated shapes scenes), TFDS oxford_iiit_pet (trimaps), and a folder with
`images/` and `masks/` matched by file stem. Images are resized bilinearly, masks with nearest
neighbour, each on its own (their sizes may differ). `augment_pair` flips, zooms and crops image
and mask together with stateless randomness.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from errors import DataError, UserError
from pipelines import files

AUTOTUNE = tf.data.AUTOTUNE
MAX_INFERRED_CLASSES = 32  # more distinct mask values than this is a format mistake, not classes
# oxford_iiit_pet trimap: 1 = pet, 2 = background, 3 = border -> classes background 0, pet 1, border 2.
PET_CLASSES = ("background", "pet", "border")
PET_TRIMAP_TO_CLASS = (0, 1, 0, 2)  # indexed by trimap value (0 does not occur in real data)


# --- arrays ----------------------------------------------------------------------------------------


def from_arrays(images: np.ndarray, masks: np.ndarray) -> tf.data.Dataset:
    """uint8 images (N, H, W, C) + integer masks (N, H, W) -> (float32 [0, 1] image, int32 mask)."""
    ds = tf.data.Dataset.from_tensor_slices((images, masks))
    return ds.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, tf.cast(y, tf.int32)), num_parallel_calls=AUTOTUNE)


def repeat_small(ds: tf.data.Dataset, n: int, min_examples: int) -> tuple[tf.data.Dataset, int]:
    """Repeat a small training set so one epoch holds at least `min_examples` (augmented differently)."""
    times = max(1, -(-min_examples // max(1, n)))
    return (ds.repeat(times) if times > 1 else ds), n * times


# --- TFDS --------------------------------------------------------------------------------------------


def from_tfds_pets(ds: tf.data.Dataset, size: tuple[int, int]) -> tf.data.Dataset:
    """oxford_iiit_pet examples -> (image, mask); image and mask are resized separately."""
    table = tf.constant(PET_TRIMAP_TO_CLASS, tf.int32)

    def convert(ex):
        image = tf.image.resize(tf.cast(ex["image"], tf.float32), size, antialias=True) / 255.0
        trimap = tf.image.resize(ex["segmentation_mask"], size, method="nearest")[..., 0]
        trimap = tf.clip_by_value(tf.cast(trimap, tf.int32), 0, len(PET_TRIMAP_TO_CLASS) - 1)
        return tf.clip_by_value(image, 0.0, 1.0), tf.gather(table, trimap)

    return ds.map(convert, num_parallel_calls=AUTOTUNE)


# --- folders of images/ and masks/ -------------------------------------------------------------------


def parse_mask_values(text: str) -> dict[int, int]:
    """'0:0,255:1' (or the dict literal '{0: 0, 255: 1}') -> {pixel value: class index}."""
    text = (text or "").strip().strip("{}").strip()
    if not text:
        return {}
    mapping = {}
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            value, cls = (int(v.strip()) for v in part.split(":"))
        except ValueError:
            raise UserError(f"--set mask_values={text!r}: expected value:class pairs such as 0:0,255:1") from None
        if not (0 <= value < 65536 and 0 <= cls):
            raise UserError(f"--set mask_values: {part.strip()!r} is out of range (values 0-65535, classes >= 0)")
        mapping[value] = cls
    return mapping


def match_pairs(root: Path) -> list[tuple[Path, Path]]:
    """(image, mask) paths matched by file stem; every unmatched or doubled stem is an error."""
    image_dir, mask_dir = root / "images", root / "masks"
    for d in (image_dir, mask_dir):
        if not d.is_dir():
            raise DataError(f"--data {root}: expected sub-folders images/ and masks/ (missing {d.name}/)")
    images, masks = _by_stem(files.list_images(image_dir)), _by_stem(files.list_images(mask_dir))
    if not images:
        raise DataError(f"{image_dir}: holds no images ({', '.join(files.IMAGE_SUFFIXES)})")
    for stem, path in images.items():
        if stem not in masks:
            raise DataError(f"{path}: no mask with the same stem in {mask_dir} (expected {mask_dir / stem}.png)")
    for stem, path in masks.items():
        if stem not in images:
            raise DataError(f"{path}: mask without an image of the same stem in {image_dir}")
    return [(images[s], masks[s]) for s in sorted(images, key=_natural)]


def _by_stem(paths: list[Path]) -> dict[str, Path]:
    out = {}
    for p in paths:
        if p.stem in out:
            raise DataError(f"{p}: two files with stem {p.stem!r} ({out[p.stem].name}, {p.name}); keep one")
        out[p.stem] = p
    return out


def _natural(stem: str):
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def load_mask(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """One mask as raw pixel values (H, W): index/grey PNGs as stored, palette PNGs as palette indices."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGB", "RGBA"):
                rgb = np.asarray(img.convert("RGB"))
                if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
                    raise DataError(f"{path}: colour mask; expected a single-channel index, palette or 0/255 PNG")
                img = img.convert("L")
            elif img.mode == "LA":
                img = img.getchannel("L")
            elif img.mode == "1":
                img = img.convert("L")  # 0/255
            elif img.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
                raise DataError(f"{path}: mask mode {img.mode}; expected a single-channel index, palette or 0/255 PNG")
            if img.mode.startswith("I"):
                arr = np.asarray(img).astype(np.int32)
                img = Image.fromarray(arr)  # mode I: resizes with nearest exactly
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.NEAREST)
            return np.asarray(img).astype(np.int32)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(f"{path}: unreadable or corrupt mask ({exc.__class__.__name__}: {exc})") from None


def masks_to_classes(raw: list[np.ndarray], paths: list[Path], mapping: dict[int, int],
                     num_classes: int) -> tuple[np.ndarray, int, dict[int, int]]:
    """Raw mask values -> class indices; returns (masks, num_classes, the value mapping used).

    With no mapping: binary 0/255 masks map to 0/1, otherwise values are class indices. A value
    outside the mapping or beyond num_classes fails naming the mask file.
    """
    values = sorted(set().union(*(np.unique(m).tolist() for m in raw)))
    if not mapping and values and set(values) <= {0, 255} and 255 in values:
        mapping = {0: 0, 255: 1}
    if mapping:
        lut = np.full(max(max(mapping), max(values)) + 1, -1, np.int32)
        for v, c in mapping.items():
            lut[v] = c
        out = []
        for m, p in zip(raw, paths):
            mapped = lut[m]
            if (mapped < 0).any():
                bad = sorted(set(np.unique(m[mapped < 0]).tolist()))
                raise DataError(f"{p}: mask value(s) {bad[:5]} not in mask_values "
                                f"(maps {sorted(mapping)}); add them with --set mask_values=VALUE:CLASS,...")
            out.append(mapped)
        inferred = max(mapping.values()) + 1
    else:
        out = raw
        inferred = values[-1] + 1 if values else 1
    classes = num_classes or max(2, inferred)
    limit = num_classes or MAX_INFERRED_CLASSES
    for m, p in zip(out, paths):
        top = int(m.max()) if m.size else 0
        if top >= limit:
            hint = ("raise --set num_classes" if num_classes else
                    "masks must hold class indices 0..N-1 or binary 0/255; map other values with --set mask_values=VALUE:CLASS,...")
            raise DataError(f"{p}: mask value {top} exceeds the number of classes ({limit}); {hint}")
    return np.stack(out).astype(np.int32), classes, mapping


def read_folder(root: Path, size: tuple[int, int], mapping: dict[int, int], num_classes: int):
    """Images (N, H, W, C) uint8, masks (N, H, W) int32, num_classes, mapping, stems."""
    pairs = match_pairs(root)
    image_paths, mask_paths = [p[0] for p in pairs], [p[1] for p in pairs]
    channels = files.image_channels(image_paths[0])
    images = files.load_images(image_paths, size, channels)
    raw = [load_mask(p, size) for p in mask_paths]
    masks, classes, mapping = masks_to_classes(raw, mask_paths, mapping, num_classes)
    return images, masks, classes, mapping, [p.stem for p in image_paths]


# --- augmentation --------------------------------------------------------------------------------------


def augment_pair(image, mask, seed, max_zoom: float = 0.2, vertical_flip: bool = True):
    """Random zoom-in (scale up to 1 + max_zoom, then crop back), flips; image and mask alike."""
    s = tf.random.experimental.stateless_split(seed, 4)
    h, w, c = image.shape
    scale = tf.random.stateless_uniform([], s[0], 1.0, 1.0 + max_zoom)
    new = tf.cast(tf.math.ceil(tf.constant([h, w], tf.float32) * scale), tf.int32)
    big_image = tf.image.resize(image, new)
    big_mask = tf.image.resize(mask[..., None], new, method="nearest")
    both = tf.concat([big_image, tf.cast(big_mask, tf.float32)], axis=-1)
    both = tf.image.stateless_random_crop(both, (h, w, c + 1), seed=s[1])
    both = tf.image.stateless_random_flip_left_right(both, s[2])
    if vertical_flip:
        both = tf.image.stateless_random_flip_up_down(both, s[3])
    return tf.clip_by_value(both[..., :c], 0.0, 1.0), tf.cast(tf.round(both[..., c]), tf.int32)
