"""Pictures for TensorBoard and predict outputs (numpy + PIL, no framework)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

PALETTE = np.array(
    [[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 190],
     [0, 128, 128], [170, 110, 40], [128, 0, 0], [170, 255, 195], [128, 128, 0]],
    np.uint8,
)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[0, 1] floats (any channel count) -> uint8 RGB."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = (np.clip(images, 0, 1) * 255).round().astype(np.uint8)
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return images


def colourize(mask: np.ndarray) -> np.ndarray:
    """Class-index mask (H, W) -> RGB with a fixed palette (class 0 black)."""
    return PALETTE[np.asarray(mask, np.int64) % len(PALETTE)]


def grid(tiles: list[np.ndarray], columns: int, pad: int = 2) -> np.ndarray:
    """Lay equally sized RGB tiles out in rows; returns one uint8 image."""
    h, w = tiles[0].shape[:2]
    rows = (len(tiles) + columns - 1) // columns
    out = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = tile
    return out


def captioned(tile: np.ndarray, caption: str, ok: bool | None = None, scale: int = 3) -> np.ndarray:
    """Upscale a small image and write a caption under it; border green/red for right/wrong."""
    img = Image.fromarray(tile).resize((tile.shape[1] * scale, tile.shape[0] * scale), Image.NEAREST)
    canvas = Image.new("RGB", (img.width, img.height + 14), (255, 255, 255))
    canvas.paste(img, (0, 0))
    draw = ImageDraw.Draw(canvas)
    draw.text((2, img.height + 1), caption[: max(4, img.width // 6)], fill=(0, 0, 0))
    if ok is not None:
        draw.rectangle([0, 0, img.width - 1, img.height - 1], outline=(0, 170, 0) if ok else (220, 0, 0), width=2)
    return np.asarray(canvas)
