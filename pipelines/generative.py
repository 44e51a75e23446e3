"""Unlabelled image sources and transforms for the generative tasks (GAN, VAE, autoencoder).

Every source becomes a finite dataset of float32 images in [0, 1], shape (size, size, channels):
generated shapes (the embedded default, plain scenes without clutter so the shapes are the
content; see `generated`), TFDS image sets (`tfds:mnist`, `tfds:fashion_mnist`, anything with an `image`
feature) and folders of image files (searched recursively). Tasks then map the images to
their own range and targets with the helpers below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from errors import DataError
from pipelines import files, shapes
from pipelines import splits as split_rules
from pipelines.data import DataSpec

AUTOTUNE = tf.data.AUTOTUNE


@dataclass
class Labelled:
    """(image in [0, 1], int label) pairs: what the GAN's sample-score network is trained on."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    num_classes: int
    target: str  # what the label is: "shape class", "tfds label", "sub-folder name", "rotation"


@dataclass
class ImageSet:
    train: tf.data.Dataset  # float32 images in [0, 1]
    val: tf.data.Dataset
    num_train: int
    num_val: int
    source: str
    labelled: Labelled | None = None  # when the source has labels (shape class, tfds label, sub-folders)
    test: tf.data.Dataset | None = None  # the source's own test split (never used during training)
    num_test: int = 0
    splits: dict = field(default_factory=dict)  # {split: where it came from}


def shapes_spec(size: int, centered: bool = False) -> shapes.SceneSpec:
    """One object per scene, no clutter, little noise: the shapes are what a model must learn.
    `centered`: upright shapes in the middle of the image, as MNIST centres its digits (a small GAN
    learns these within minutes; with random position and rotation it draws shapeless blobs)."""
    return shapes.SceneSpec(size=size, max_clutter=0, noise=0.02, min_scale=0.55, max_scale=0.9,
                            rotate=not centered, centered=centered)


def _to_channels(images: np.ndarray, channels: int) -> np.ndarray:
    if images.shape[-1] == channels:
        return images
    if channels == 1:  # ITU-R 601 luma, as PIL's "L" mode
        luma = images[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.clip(np.round(luma), 0, 255).astype(np.uint8)[..., None]
    return np.repeat(images, 3, axis=-1)


def _from_uint8(images: np.ndarray, labels: np.ndarray | None = None) -> tf.data.Dataset:
    """Images as floats in [0, 1]; with `labels`, (image, int32 label) pairs."""
    if labels is None:
        return tf.data.Dataset.from_tensor_slices(images).map(
            lambda x: tf.cast(x, tf.float32) / 255.0, num_parallel_calls=AUTOTUNE)
    return tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int32))).map(
        lambda x, y: (tf.cast(x, tf.float32) / 255.0, y), num_parallel_calls=AUTOTUNE)


def rotations(images: ImageSet) -> Labelled:
    """Self-supervised labels for sources without any: each image in its 4 quarter-turn rotations,
    labelled 0-3 (Gidaris et al., 2018); predicting them needs features of shape and layout."""

    def four_turns(image):
        turned = tf.stack([tf.image.rot90(image, k) for k in range(4)])
        return tf.data.Dataset.from_tensor_slices((turned, tf.range(4, dtype=tf.int32)))

    return Labelled(images.train.flat_map(four_turns), images.val.flat_map(four_turns), 4, "rotation")


def _generated_split(spec, n, seed, split, style, channels) -> tuple[np.ndarray, np.ndarray]:
    arrays = shapes.generate_arrays(spec, n, seed, split)
    if style == "silhouette":  # white shape on black, from the generator's per-pixel mask
        return _to_channels((arrays["masks"] > 0).astype(np.uint8)[..., None] * 255, channels), arrays["labels"]
    return _to_channels(arrays["images"], channels), arrays["labels"]


def generated(size: int, channels: int, num_train: int, num_val: int, seed: int, style: str = "silhouette",
              centered: bool = False, num_test: int = 0) -> ImageSet:
    """Shapes scenes. `silhouette`: the shape's mask, white on black (what a small generative model
    learns within minutes on a CPU); `scene`: the rendered image (random grey/colour background,
    gradient, noise), much harder to generate. `centered`: see `shapes_spec`."""
    spec = shapes_spec(size, centered)
    train, train_labels = _generated_split(spec, num_train, seed, "train", style, channels)
    val, val_labels = _generated_split(spec, num_val, seed, "validation", style, channels)
    test = _from_uint8(_generated_split(spec, num_test, seed, "test", style, channels)[0]) if num_test else None
    pose = "centred, upright" if centered else "random position and rotation"
    labelled = Labelled(_from_uint8(train, train_labels), _from_uint8(val, val_labels),
                        len(spec.classes), "shape class")
    return ImageSet(_from_uint8(train), _from_uint8(val), num_train, num_val,
                    f"generated shapes ({style}, {pose})", labelled, test, num_test,
                    {s: split_rules.generated_note(s) for s in ("train", "validation", "test")[: 3 if num_test else 2]})


def from_tfds(name: str, size: int, channels: int, val_fraction: float, seed: int = 0) -> ImageSet:
    from pipelines import tfds_source

    datasets, counts, tinfo = tfds_source.load_tfds(name)
    if "image" not in tinfo.features:
        raise DataError(f"--data tfds:{name}: expected an 'image' feature, has {list(tinfo.features)}")
    parts, origin = tfds_source.three_splits(datasets, counts, val_fraction, seed, f"tfds:{name}")
    (train, n_train), (val, n_val) = parts["train"], parts["validation"]

    def convert(ex):
        img = tf.cast(ex["image"], tf.float32)
        if img.shape[-1] != channels:
            img = tf.image.rgb_to_grayscale(img) if channels == 1 else tf.image.grayscale_to_rgb(img)
        return tf.image.resize(img, (size, size), antialias=True) / 255.0

    labelled = None
    label = tinfo.features["label"] if "label" in tinfo.features else None
    if label is not None and getattr(label, "num_classes", 0) >= 2:
        pair = lambda ex: (convert(ex), tf.cast(ex["label"], tf.int32))  # noqa: E731
        labelled = Labelled(train.map(pair, num_parallel_calls=AUTOTUNE), val.map(pair, num_parallel_calls=AUTOTUNE),
                            int(label.num_classes), "tfds label")
    test, n_test = parts.get("test", (None, 0))
    return ImageSet(train.map(convert, num_parallel_calls=AUTOTUNE), val.map(convert, num_parallel_calls=AUTOTUNE),
                    n_train, n_val, f"tfds:{name}", labelled,
                    test.map(convert, num_parallel_calls=AUTOTUNE) if test is not None else None, n_test, origin)


def list_images_recursive(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in files.IMAGE_SUFFIXES)


def _folder_images(root: Path, size: int, channels: int, sub_folders: list[str] | None = None):
    """(images, per-image sub-folder label or None, sub-folder names) of a folder searched recursively."""
    paths = list_images_recursive(root)
    if not paths:
        raise DataError(f"--data {root}: the folder holds no images ({', '.join(files.IMAGE_SUFFIXES)})")
    images = files.load_images(paths, (size, size), channels)
    names = sub_folders or sorted({str(p.parent.relative_to(root)) for p in paths})
    if len(names) < 2:
        return images, None, names
    labels = np.array([names.index(str(p.parent.relative_to(root))) if str(p.parent.relative_to(root)) in names
                       else -1 for p in paths], np.int32)
    return images, labels, names


def from_folder(root: Path, size: int, channels: int, val_fraction: float, seed: int) -> ImageSet:
    """Images anywhere below `root`; sub-folders (two or more) label them for the GAN's score network.
    A folder holding train/ [val/] [test/] is read as those splits."""
    if not root.is_dir():
        raise DataError(f"--data {root}: expected a folder of images (sub-folders are searched too)")
    folders = split_rules.find_split_folders(root) or {"train": root}
    images, labels, names = _folder_images(folders["train"], size, channels)
    parts = {"train": (images, labels)}
    origin = {"train": f"{folders['train'].name}/" if folders["train"] != root else "all images"}
    for split in ("validation", "test"):
        if split in folders:
            other, other_labels, _ = _folder_images(folders[split], size, channels, names if labels is not None else None)
            parts[split], origin[split] = (other, other_labels if labels is not None else None), f"{folders[split].name}/"
    if "validation" not in parts:
        tr, va = split_rules.carve_indices(len(images), val_fraction, seed, str(root))
        parts["train"] = (images[tr], None if labels is None else labels[tr])
        parts["validation"] = (images[va], None if labels is None else labels[va])
        origin["validation"] = split_rules.carved_note(val_fraction, seed)
    (train, train_labels), (val, val_labels) = parts["train"], parts["validation"]
    labelled = None
    if train_labels is not None and val_labels is not None and (val_labels >= 0).all():
        labelled = Labelled(_from_uint8(train, train_labels), _from_uint8(val, val_labels), len(names), "sub-folder name")
    test = parts.get("test")
    return ImageSet(_from_uint8(train), _from_uint8(val), len(train), len(val), str(root), labelled,
                    _from_uint8(test[0]) if test is not None else None, len(test[0]) if test is not None else 0, origin)


def load(spec: DataSpec, *, size: int, channels: int, num_train: int, num_val: int, seed: int,
         val_fraction: float, style: str = "silhouette", centered: bool = False, num_test: int = 0) -> ImageSet:
    """The image set `--data` names (see the module docstring)."""
    if spec.kind == "embedded":
        return generated(size, channels, num_train, num_val, seed, style, centered, num_test)
    if spec.kind == "tfds":
        return from_tfds(spec.value, size, channels, val_fraction, seed)
    return from_folder(spec.path, size, channels, val_fraction, seed)


# --- transforms -------------------------------------------------------------------------------------


def score_batches(labelled: Labelled, batch_size: int, seed: int) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Batches of (image in [-1, 1], label): shuffled and repeating for training, fixed for validation."""
    signed = lambda x, y: (to_signed(x), y)  # noqa: E731
    train = labelled.train.map(signed, num_parallel_calls=AUTOTUNE).shuffle(4096, seed=seed).repeat()
    val = labelled.val.map(signed, num_parallel_calls=AUTOTUNE).take(2048)
    return (train.batch(batch_size, drop_remainder=True).prefetch(AUTOTUNE),
            val.batch(256).prefetch(AUTOTUNE))


def to_signed(image):
    """[0, 1] -> [-1, 1] (the GAN generator ends in tanh)."""
    return image * 2.0 - 1.0


def add_noise(image, seed, stddev: float):
    """Gaussian pixel noise from a stateless seed, clipped back to [0, 1]."""
    noise = tf.random.stateless_normal(tf.shape(image), seed=seed, stddev=stddev)
    return tf.clip_by_value(image + noise, 0.0, 1.0)


def noisy_training_augment(stddev: float):
    """augment hook: (clean, clean, seed) -> (noisy, clean); new noise every epoch, replayable."""

    def augment(image, target, seed):
        return add_noise(image, seed, stddev), target

    return augment


def noisy_pairs_fixed(ds: tf.data.Dataset, stddev: float, seed: int) -> tf.data.Dataset:
    """Validation pairs (noisy, clean) whose noise depends only on (seed, index): the same every epoch."""
    return ds.enumerate().map(
        lambda i, x: (add_noise(x, tf.stack([tf.constant(seed + 7919, tf.int64), i]), stddev), x),
        num_parallel_calls=AUTOTUNE, deterministic=True)


def mean_psnr(ds: tf.data.Dataset, batch_size: int = 256) -> float:
    """Mean per-image PSNR (dB, peak 1.0) between the inputs and targets of a pair dataset."""
    total, count = 0.0, 0
    for x, y in ds.batch(batch_size).as_numpy_iterator():
        mse = np.mean((x - y) ** 2, axis=(1, 2, 3))
        total += float(np.sum(10.0 * np.log10(1.0 / np.maximum(mse, 1e-10))))
        count += len(x)
    return total / max(1, count)
