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


def confusion_matrix(true: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(true, np.int64), np.asarray(pred, np.int64)), 1)
    return cm


def confusion_image(cm: np.ndarray, names: tuple) -> np.ndarray:
    """Rows = true class, columns = predicted; shade = share of the row; counts written in cells."""
    k = len(cm)
    cell = 60 if k <= 8 else max(14, 480 // k)
    label_w, top = 90, 40
    img = Image.new("RGB", (label_w + k * cell + 4, top + k * cell + 18), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.text((label_w, 2), "predicted ->", fill=(0, 0, 0))
    draw.text((2, top - 14), "true", fill=(0, 0, 0))
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    for j in range(k):
        draw.text((label_w + j * cell + 2, 18), str(names[j])[: max(2, cell // 7)], fill=(0, 0, 0))
    for i in range(k):
        draw.text((2, top + i * cell + cell // 2 - 6), str(names[i])[:14], fill=(0, 0, 0))
        for j in range(k):
            v = share[i, j]
            colour = (int(255 * (1 - v)), int(255 * (1 - 0.6 * v)), 255) if i == j else \
                     (255, int(255 * (1 - 0.8 * v)), int(255 * (1 - 0.8 * v)))
            x0, y0 = label_w + j * cell, top + i * cell
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=colour, outline=(160, 160, 160))
            if cell >= 24:
                draw.text((x0 + 4, y0 + cell // 2 - 6), str(int(cm[i, j])), fill=(0, 0, 0))
    draw.text((2, top + k * cell + 3), f"{int(np.trace(cm))}/{int(cm.sum())} right", fill=(0, 0, 0))
    return np.asarray(img)
