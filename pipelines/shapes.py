"""Procedural "shapes" scenes: the embedded default data of every vision task.

One renderer makes the image, its per-pixel class mask and its object boxes together, so
classification, segmentation and detection all train on the same generator. Every scene is a
pure function of (seed, split, index): deterministic, order-independent, no download.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPES = ("circle", "square", "triangle", "cross", "star", "ring")
SPLIT_IDS = {"train": 0, "validation": 1, "test": 2}
SUPERSAMPLE = 2  # draw at 2x and downsample the image: smooth edges, crisp masks
STYLES = ("silhouette", "scene")  # generative tasks learn the mask (white on black) or the rendered image


@dataclass(frozen=True)
class SceneSpec:
    """What a scene looks like; tasks choose the ranges they need."""

    size: int = 32
    classes: tuple = SHAPES
    min_objects: int = 1
    max_objects: int = 1
    min_scale: float = 0.45  # object diameter as a fraction of the image side
    max_scale: float = 0.85
    max_clutter: int = 3  # thin lines / dots that belong to no class
    noise: float = 0.06  # std of Gaussian pixel noise (image in [0, 1])
    max_overlap: float = 0.3  # max IoU between object boxes (detection wants some overlap)
    rotate: bool = True  # False: shapes upright (as drawn by _polygon)
    centered: bool = False  # True: one object in the middle of the image (like MNIST's digits)


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) uint8: 0 = background, k + 1 = object of class k
    boxes: np.ndarray  # (n, 4) float32, [x_min, y_min, x_max, y_max] in pixels
    classes: np.ndarray  # (n,) int32 indices into spec.classes


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    if kind == "square":
        pts = [(math.cos(a), math.sin(a)) for a in np.linspace(0, 2 * math.pi, 4, endpoint=False) + math.pi / 4]
    elif kind == "triangle":
        pts = [(math.cos(a), math.sin(a)) for a in np.linspace(0, 2 * math.pi, 3, endpoint=False) - math.pi / 2]
    elif kind == "star":
        pts = []
        for i in range(10):
            a = i * math.pi / 5 - math.pi / 2
            rad = 1.0 if i % 2 == 0 else 0.42
            pts.append((rad * math.cos(a), rad * math.sin(a)))
    elif kind == "cross":
        w = 0.3
        pts = [(-w, -1), (w, -1), (w, -w), (1, -w), (1, w), (w, w), (w, 1), (-w, 1), (-w, w), (-1, w), (-1, -w), (-w, -w)]
    else:
        raise ValueError(f"no polygon for shape {kind!r}")
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in pts]


def _draw_shape(draw: ImageDraw.ImageDraw, kind: str, cx, cy, r, angle, fill) -> None:
    if kind == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif kind == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fill, width=max(2, int(r * 0.38)))
    else:
        draw.polygon(_polygon(kind, cx, cy, r, angle), fill=fill)


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random colour whose brightness differs clearly from the background's."""
    for _ in range(20):
        colour = rng.uniform(0, 1, 3)
        if abs(colour.mean() - background.mean()) > 0.3:
            return colour
    return 1.0 - background


def _box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def render_scene(spec: SceneSpec, seed: int, split: str, index: int) -> Scene:
    rng = np.random.default_rng((seed, SPLIT_IDS[split], index))
    big = spec.size * SUPERSAMPLE
    # Background: a colour with a gentle gradient.
    base = rng.uniform(0, 1, 3)
    gradient = np.linspace(-0.15, 0.15, spec.size)[:, None, None] * rng.uniform(-1, 1, 3)
    image = np.clip(base + gradient, 0, 1) * np.ones((spec.size, spec.size, 3))

    canvas = Image.new("RGB", (big, big), (0, 0, 0))
    alpha = Image.new("L", (big, big), 0)
    mask_img = Image.new("L", (big, big), 0)
    draw, draw_alpha, draw_mask = ImageDraw.Draw(canvas), ImageDraw.Draw(alpha), ImageDraw.Draw(mask_img)

    # Clutter first (behind objects): lines and dots that belong to no class.
    for _ in range(rng.integers(0, spec.max_clutter + 1)):
        colour = tuple(int(v * 255) for v in _contrasting_colour(rng, base))
        x0, y0, x1, y1 = rng.uniform(0, big, 4)
        if rng.uniform() < 0.5:
            draw.line([x0, y0, x1, y1], fill=colour, width=max(1, big // 40))
            draw_alpha.line([x0, y0, x1, y1], fill=255, width=max(1, big // 40))
        else:
            rr = big * 0.03
            draw.ellipse([x0 - rr, y0 - rr, x0 + rr, y0 + rr], fill=colour)
            draw_alpha.ellipse([x0 - rr, y0 - rr, x0 + rr, y0 + rr], fill=255)

    boxes, classes = [], []
    n_objects = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    for _ in range(n_objects):
        for _attempt in range(30):
            r = 0.5 * big * rng.uniform(spec.min_scale, spec.max_scale)
            cx, cy = rng.uniform(r, big - r, 2)
            if spec.centered:
                cx = cy = big / 2
            box = [(cx - r) / SUPERSAMPLE, (cy - r) / SUPERSAMPLE, (cx + r) / SUPERSAMPLE, (cy + r) / SUPERSAMPLE]
            if all(_box_iou(box, b) <= spec.max_overlap for b in boxes):
                break
        else:
            continue
        k = int(rng.integers(len(spec.classes)))
        kind = spec.classes[k]
        angle = rng.uniform(0, 2 * math.pi) if spec.rotate else 0.0
        colour = tuple(int(v * 255) for v in _contrasting_colour(rng, base))
        _draw_shape(draw, kind, cx, cy, r, angle, colour)
        _draw_shape(draw_alpha, kind, cx, cy, r, angle, 255)
        _draw_shape(draw_mask, kind, cx, cy, r, angle, k + 1)
        boxes.append(_tight_box(mask_img, k + 1, box))
        classes.append(k)

    size = (spec.size, spec.size)
    fg = np.asarray(canvas.resize(size, Image.BOX), np.float32) / 255.0
    a = np.asarray(alpha.resize(size, Image.BOX), np.float32)[..., None] / 255.0
    image = image * (1 - a) + fg * a
    image = np.clip(image + rng.normal(0, spec.noise, image.shape), 0, 1)
    mask = np.asarray(mask_img.resize(size, Image.NEAREST), np.uint8)
    return Scene(
        image=(image * 255).round().astype(np.uint8),
        mask=mask,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        classes=np.asarray(classes, np.int32),
    )


def _tight_box(mask_img: Image.Image, value: int, fallback) -> list[float]:
    """The box of the pixels just drawn (rotated shapes are smaller than their circle)."""
    m = np.asarray(mask_img) == value
    ys, xs = np.nonzero(m)
    if len(xs) == 0:
        return fallback
    s = SUPERSAMPLE
    return [xs.min() / s, ys.min() / s, (xs.max() + 1) / s, (ys.max() + 1) / s]


def generate(spec: SceneSpec, n: int, seed: int, split: str) -> list[Scene]:
    return [render_scene(spec, seed, split, i) for i in range(n)]


def generate_arrays(spec: SceneSpec, n: int, seed: int, split: str) -> dict[str, np.ndarray]:
    """Images, masks and (for single-object scenes) the label of the first object, stacked."""
    scenes = generate(spec, n, seed, split)
    return {
        "images": np.stack([s.image for s in scenes]),
        "masks": np.stack([s.mask for s in scenes]),
        "labels": np.asarray([s.classes[0] if len(s.classes) else -1 for s in scenes], np.int32),
        "scenes": scenes,
    }


def write_scene_pngs(spec: SceneSpec, seed: int, out_dir, n: int, split: str = "test") -> list[str]:
    """n rendered scenes saved as sample-<i>.png (inputs for `predict` when none are given)."""
    from pathlib import Path

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = out_dir / f"sample-{i}.png"
        Image.fromarray(render_scene(spec, seed, split, i).image).save(path)
        paths.append(str(path))
    return paths
