"""What the three generative tasks (autoencoder, vae, gan) share: config knobs, data, PNG grids."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from errors import UserError
from pipelines import DataInfo, files, parse_data_spec, shapes
from tasks import visuals
from tasks.base import TrainConfig
from tasks.lazy import lazy_module

generative = lazy_module("pipelines.generative")


@dataclass(frozen=True)
class ImageGenConfig(TrainConfig):
    image_size: int = field(default=32, metadata={"help": "images are resized to this square size"})
    channels: int = field(default=1, metadata={"help": "1 = grayscale, 3 = colour (sources are converted)"})
    num_train: int = field(default=4000, metadata={"help": "generated training images (embedded data)"})
    num_val: int = field(default=500, metadata={"help": "generated validation images (embedded data)"})
    num_test: int = field(default=500, metadata={"help": "generated test images (embedded data; 0 = no test split)"})
    shapes_style: str = field(default="silhouette", metadata={
        "choices": shapes.STYLES, "help": "embedded data: silhouette (white shape on black) | scene (rendered image)"})
    shapes_centered: bool = field(default=False, metadata={
        "help": "embedded data: true = upright shapes in the image centre, like MNIST digits; "
                "false = random position and rotation"})
    upsampling: str = field(default="resize", metadata={
        "choices": ("resize", "transpose"),
        "help": "decoder/generator upsampling: resize (nearest + conv; fast on JAX CPU) | transpose (transposed conv)"})
    width: int = field(default=32, metadata={"help": "filters in the first conv stage"})
    weight_decay: float = 0.0


def load_images(cfg: ImageGenConfig, multiple_of: int = 4) -> generative.ImageSet:
    if cfg.channels not in (1, 3):
        raise UserError(f"--set channels={cfg.channels}: expected 1 (grayscale) or 3 (colour)")
    if cfg.image_size < multiple_of or cfg.image_size % multiple_of:
        raise UserError(f"--set image_size={cfg.image_size}: expected a positive multiple of {multiple_of}")
    return generative.load(parse_data_spec(cfg.data), size=cfg.image_size, channels=cfg.channels,
                           num_train=cfg.num_train, num_val=cfg.num_val, seed=cfg.seed,
                           val_fraction=cfg.val_fraction, style=cfg.shapes_style, centered=cfg.shapes_centered,
                           num_test=cfg.num_test)


def data_info(images: generative.ImageSet, cfg: ImageGenConfig, **extra) -> DataInfo:
    return DataInfo(images.source, images.num_train, images.num_val,
                    (cfg.image_size, cfg.image_size, cfg.channels), extra=dict(extra),
                    num_test=images.num_test, splits=images.splits)


def tiles(images) -> list[np.ndarray]:
    """Float images in [0, 1] (N, H, W, C) -> RGB uint8 tiles upscaled 2x for legibility."""
    out = visuals.to_uint8(np.asarray(images))
    return [np.kron(t, np.ones((2, 2, 1), np.uint8)) for t in out]


def side_by_side(*rows_of_images, columns: int = 8) -> np.ndarray:
    """Interleave image sets column-wise: [a0 b0 c0 | a1 b1 c1 | ...] wrapped into rows."""
    groups = [tiles(r) for r in rows_of_images]
    n = min(len(g) for g in groups)
    order = [g[i] for i in range(n) for g in groups]
    return visuals.grid(order, columns=columns - columns % len(groups) or len(groups))


def save_png(image: np.ndarray, path: Path) -> Path:
    Image.fromarray(image).save(path)
    return path


def sample_inputs(cfg: ImageGenConfig, info: DataInfo, out_dir: Path, n: int) -> list[str]:
    """n images of the embedded generator's test stream saved as sample-<i>.png (predict's inputs)."""
    size, channels = info.input_shape[0], info.input_shape[-1]
    images = generative.generated(size, channels, 1, 1, cfg.seed, cfg.shapes_style, cfg.shapes_centered, num_test=n)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images.test.as_numpy_iterator()):
        paths.append(str(save_png(visuals.to_uint8(image[None])[0], out_dir / f"sample-{i}.png")))
    return paths


def load_inputs(inputs: list[str], info: DataInfo) -> tuple[list[Path], np.ndarray]:
    """Images named on the command line, resized to the model's input, floats in [0, 1]."""
    paths = files.require_files(inputs)
    h, w, c = info.input_shape
    return paths, files.load_images(paths, (h, w), c).astype("float32") / 255.0
