"""Generated top-down road scenes labelled with a steering angle: the embedded default data of
image regression. NumPy only; every scene is a pure function of (seed, split, index).

The car sits at the bottom centre of the image heading up. The road's centre line is
`c(t) = offset + heading * t + curvature * t^2 / 2` (t: distance ahead, 0 at the bottom row and 1
at the top; c in half-image-widths, right positive). The label is the pure-pursuit steering
towards the lane centre at look-ahead `t = LOOKAHEAD`: proportional to `c(LOOKAHEAD)`, clipped to
[-1, 1]. So a horizontal flip negates it exactly, and shifting the image right by `p` pixels adds
`p * steering_per_pixel(width)` (see the augmentations in pipelines/steering.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}
LOOKAHEAD = 0.6
GAIN = 1.5  # steering per half-image-width of lateral offset at the look-ahead point
SUPERSAMPLE = 2


def steering_per_pixel(width: int) -> float:
    """Steering change when the scene moves one pixel to the right (the shift augmentation's rule)."""
    return GAIN / (width / 2)


def steering_of(offset: float, heading: float, curvature: float) -> float:
    lateral = offset + heading * LOOKAHEAD + 0.5 * curvature * LOOKAHEAD ** 2
    return float(np.clip(GAIN * lateral, -1.0, 1.0))


def _texture(rng, shape, cells: int, amount: float) -> np.ndarray:
    """Low-frequency noise (a coarse random grid, upsampled): grass patches, worn asphalt."""
    h, w = shape
    coarse = rng.normal(0, amount, (cells, max(2, cells * w // h)))
    return np.asarray(Image.fromarray(coarse.astype(np.float32)).resize((w, h), Image.BILINEAR))


def _ellipses(rng, ys, xs, n, size):
    """Union mask of n random ellipses (radii ~ size, in pixels of the supersampled canvas)."""
    mask = np.zeros(ys.shape[:2], bool)
    h, w = ys.shape[:2]
    for _ in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(0.3, 1.0, 2) * size
        mask |= ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 < 1
    return mask


def _scene_rng(seed: int, split: str, index: int):
    """The scene's random stream, and its road geometry (offset, heading, curvature): its first draws."""
    rng = np.random.default_rng((seed, SPLIT_IDS[split], index, 5381))
    return rng, (rng.uniform(-0.35, 0.35), rng.uniform(-0.6, 0.6), rng.uniform(-1.6, 1.6))


def labels(n: int, seed: int, split: str) -> np.ndarray:
    """The steering labels of scenes 0..n-1 without drawing them, (n, 1) float32."""
    return np.asarray([[steering_of(*_scene_rng(seed, split, i)[1])] for i in range(n)], np.float32).reshape(n, 1)


def render_road(seed: int, split: str, index: int, height: int = 66, width: int = 200) -> tuple[np.ndarray, float]:
    """(uint8 image (height, width, 3), steering in [-1, 1]) of one scene."""
    rng, (offset, heading, curvature) = _scene_rng(seed, split, index)
    half_width = rng.uniform(0.26, 0.42)
    hs, ws = height * SUPERSAMPLE, width * SUPERSAMPLE
    ys, xs = np.mgrid[0:hs, 0:ws].astype(np.float32)
    t = 1.0 - (ys + 0.5) / hs
    d = (xs + 0.5) / (ws / 2) - 1.0 - (offset + heading * t + 0.5 * curvature * t ** 2)  # from the centre line
    line = rng.uniform(0.012, 0.022)  # marking half-width, half-image-widths

    grass = rng.uniform([0.15, 0.3, 0.05], [0.45, 0.6, 0.3]).astype(np.float32)
    image = grass + _texture(rng, (hs, ws), 6, 0.06)[..., None]
    road = np.abs(d) < half_width
    asphalt = rng.uniform(0.25, 0.5) + _texture(rng, (hs, ws), 8, 0.03)
    image[road] = asphalt[road][:, None]
    edges = np.abs(np.abs(d) - (half_width - 2 * line)) < line
    image[edges] = rng.uniform(0.8, 1.0)
    dash = (t * rng.uniform(3, 6) + rng.uniform()) % 1.0 < rng.uniform(0.4, 0.6)
    centre = (np.abs(d) < line) & dash
    image[centre] = rng.choice([[0.95, 0.85, 0.2], [0.95, 0.95, 0.95]])

    for _ in range(rng.integers(0, 7)):  # clutter: rocks, bushes, oil stains, anywhere
        image[_ellipses(rng, ys, xs, 1, rng.uniform(3, 10) * SUPERSAMPLE)] = rng.uniform(0, 1, 3)
    if rng.uniform() < 0.7:  # shadows of trees and buildings, across the road too
        shade = _ellipses(rng, ys, xs, int(rng.integers(1, 4)), rng.uniform(10, 30) * SUPERSAMPLE)
        image[shade] *= rng.uniform(0.35, 0.7)

    small = sum(image[i::SUPERSAMPLE, j::SUPERSAMPLE] for i in range(SUPERSAMPLE) for j in range(SUPERSAMPLE))
    small = small / SUPERSAMPLE ** 2
    small = small * rng.uniform(0.7, 1.3) + rng.normal(0, 0.03, small.shape)  # exposure, sensor noise
    return (np.clip(small, 0, 1) * 255).round().astype(np.uint8), steering_of(offset, heading, curvature)


def generate(n: int, seed: int, split: str, height: int = 66, width: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """n scenes: uint8 images (n, height, width, 3) and steering (n, 1) float32."""
    scenes = [render_road(seed, split, i, height, width) for i in range(n)]
    images = np.stack([s[0] for s in scenes]) if scenes else np.zeros((0, height, width, 3), np.uint8)
    return images, np.asarray([[s[1]] for s in scenes], np.float32).reshape(n, 1)


def write_pngs(seed: int, out_dir: Path, n: int, height: int, width: int, split: str = "test") -> list[str]:
    """n scenes saved as road-<i>.png (inputs for `predict` when none are given)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = out_dir / f"road-{i}.png"
        Image.fromarray(render_road(seed, split, i, height, width)[0]).save(path)
        paths.append(str(path))
    return paths
