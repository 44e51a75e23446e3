"""Video sequences for tracking: generated ones, the OTB and GOT-10k folder layouts, box files.

NumPy and Pillow only (no TensorFlow): predict and the tracker read sequences through here too.
Boxes are `x, y, w, h` in pixels, 0-based and continuous (pixel k covers [k, k+1)); OTB and GOT-10k
files are 1-based, so readers subtract 1 from x and y and writers add it back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
OTB_GROUNDTRUTH = "groundtruth_rect.txt"
GOT_GROUNDTRUTH = "groundtruth.txt"


@dataclass
class Sequence:
    """One video: frames in memory (T, H, W, 3) uint8, or their files; boxes (T, 4) float32 or None."""

    name: str
    boxes: np.ndarray | None
    frames: np.ndarray | None = None
    files: tuple = ()

    def __len__(self) -> int:
        return len(self.frames) if self.frames is not None else len(self.files)

    def frame(self, t: int) -> np.ndarray:
        return self.frames[t] if self.frames is not None else read_frame(self.files[t])

    __getitem__ = frame  # a Sequence is the frame list the tracker walks through


def read_frame(path) -> np.ndarray:
    """One frame as (H, W, 3) uint8; an unreadable file is a one-line DataError naming it."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable frame ({exc.__class__.__name__}: {str(exc)[:120]})") from None


# --- box files ----------------------------------------------------------------------------------


def parse_box(text: str, where: str) -> np.ndarray:
    """`x,y,w,h` (comma, tab or space separated) -> float32[4]; width and height must be positive."""
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not np.all(np.isfinite(values)):
        raise DataError(f"{where}: expected four numbers x,y,w,h, got {text.strip()[:60]!r}")
    if values[2] <= 0 or values[3] <= 0:
        raise DataError(f"{where}: empty or zero-size box {text.strip()[:60]!r} (width and height must be > 0)")
    return np.asarray(values, np.float32)


def read_boxes(path: Path, num_frames: int) -> np.ndarray:
    """The first `num_frames` boxes of a ground-truth file (1-based -> 0-based); one line per frame."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    lines = [(i, line) for i, line in enumerate(lines, 1) if line.strip()]
    if len(lines) < num_frames:
        raise DataError(f"{path}: {len(lines)} ground-truth lines for {num_frames} frames (one x,y,w,h line per frame)")
    boxes = np.stack([parse_box(line, f"{path} line {i}") for i, line in lines[:num_frames]])
    boxes[:, :2] -= 1.0
    return boxes


def write_boxes(path: Path, boxes: np.ndarray) -> None:
    """OTB text format: `x,y,w,h` per line, 1-based."""
    out = np.asarray(boxes, np.float64).copy()
    out[:, :2] += 1.0
    path.write_text("".join(",".join(f"{v:.2f}" for v in box) + "\n" for box in out))


# --- folder layouts -----------------------------------------------------------------------------


def frame_files(folder: Path) -> tuple:
    return tuple(sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))


def is_sequence(folder: Path) -> bool:
    return (folder / OTB_GROUNDTRUTH).is_file() or (folder / GOT_GROUNDTRUTH).is_file()


def read_sequence(folder: Path) -> Sequence:
    """OTB (`img/0001.jpg...` + groundtruth_rect.txt) or GOT-10k (`00000001.jpg...` + groundtruth.txt)."""
    folder = Path(folder)
    if (folder / OTB_GROUNDTRUTH).is_file():
        frames_dir, gt = (folder / "img" if (folder / "img").is_dir() else folder), folder / OTB_GROUNDTRUTH
    elif (folder / GOT_GROUNDTRUTH).is_file():
        frames_dir, gt = folder, folder / GOT_GROUNDTRUTH
    else:
        raise DataError(f"{folder}: not a sequence (expected {OTB_GROUNDTRUTH} with img/*.jpg, or "
                        f"{GOT_GROUNDTRUTH} with *.jpg frames)")
    files = frame_files(frames_dir)
    if not files:
        raise DataError(f"{frames_dir}: no frames (.jpg/.png files)")
    return Sequence(folder.name, read_boxes(gt, len(files)), files=files)


def frames_only(folder: Path) -> Sequence:
    """A folder of frames without ground truth (predict --frames): an `img/` sub-folder is looked into."""
    folder = Path(folder)
    frames_dir = folder / "img" if (folder / "img").is_dir() else folder
    files = frame_files(frames_dir) if frames_dir.is_dir() else ()
    if not files:
        raise DataError(f"{folder}: no frames (.jpg/.png files)")
    return Sequence(folder.name, None, files=files)


def find_sequences(root: Path) -> list[Path]:
    """`root` itself when it is a sequence, else its sequence sub-folders (sorted)."""
    root = Path(root)
    if is_sequence(root):
        return [root]
    found = sorted(p for p in root.iterdir() if p.is_dir() and is_sequence(p))
    if not found:
        raise DataError(f"--data {root}: no sequence folders (expected <sequence>/img/0001.jpg with "
                        f"{OTB_GROUNDTRUTH}, or <sequence>/00000001.jpg with {GOT_GROUNDTRUTH})")
    return found


def write_sequence(folder: Path, seq: Sequence) -> Path:
    """A sequence in the OTB layout (how predict's sample inputs reach the disk)."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    for t in range(len(seq)):
        Image.fromarray(seq.frame(t)).save(folder / "img" / f"{t + 1:04d}.png")
    write_boxes(folder / OTB_GROUNDTRUTH, seq.boxes)
    return folder


# --- generated sequences ------------------------------------------------------------------------

SPLIT_STREAMS = {"train": 1, "validation": 2, "test": 3}


def _smooth_noise(rng, h: int, w: int, cells: int) -> np.ndarray:
    """(h, w, 3) colour noise in [0, 1] made of `cells` x `cells` blocks, bilinearly upsampled."""
    small = (rng.random((cells, cells, 3)) * 255).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR), np.float32) / 255.0


def _background(rng, size: int) -> np.ndarray:
    """Clutter: smooth colour noise plus random rectangles, larger than the frame (the camera pans)."""
    bg = 0.6 * _smooth_noise(rng, size, size, int(rng.integers(4, 10))) + 0.2
    for _ in range(int(rng.integers(8, 16))):
        h, w = rng.integers(4, size // 5, 2)
        y, x = rng.integers(0, size - h), rng.integers(0, size - w)
        bg[y:y + h, x:x + w] = rng.random(3) * 0.8 + 0.1
    return bg


def _texture(rng, colours: np.ndarray, kind: int) -> np.ndarray:
    """A 32x32 two-colour pattern: stripes, checks or blobs (kind 0, 1, 2)."""
    yy, xx = np.mgrid[0:32, 0:32] / 32.0
    if kind == 0:
        angle, freq = rng.random() * np.pi, rng.integers(2, 5)
        mask = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi * freq) > 0
    elif kind == 1:
        n = rng.integers(2, 5)
        mask = ((xx * n).astype(int) + (yy * n).astype(int)) % 2 == 0
    else:
        mask = _smooth_noise(rng, 32, 32, 4)[..., 0] > 0.5
    tex = np.where(mask[..., None], colours[0], colours[1])
    tex[[0, -1], :] = tex[:, [0, -1]] = colours[2]  # a border of a third colour
    return tex.astype(np.float32)


def _paste(frame: np.ndarray, tex: np.ndarray, box) -> None:
    x, y, w, h = box
    x0, y0 = int(round(x)), int(round(y))
    w, h = max(2, int(round(w))), max(2, int(round(h)))
    patch = np.asarray(Image.fromarray((tex * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR), np.float32) / 255
    H, W = frame.shape[:2]
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if fx1 > fx0 and fy1 > fy0:
        frame[fy0:fy1, fx0:fx1] = patch[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]


def _trajectory(rng, n: int, size: int, base: np.ndarray, speed: float) -> np.ndarray:
    """(n, 4) boxes: a wandering, bouncing path with a slow scale change."""
    growth = rng.uniform(-0.35, 0.35)
    pos = rng.uniform(0.2, 0.8, 2) * size
    angle = rng.random() * 2 * np.pi
    boxes = np.zeros((n, 4), np.float32)
    for t in range(n):
        wh = base * np.exp(growth * t / max(1, n - 1))
        boxes[t] = [pos[0] - wh[0] / 2, pos[1] - wh[1] / 2, wh[0], wh[1]]
        angle += rng.normal(0, 0.25)
        pos = pos + speed * np.array([np.cos(angle), np.sin(angle)])
        for k in range(2):  # bounce off the frame edges (centre stays inside)
            lo, hi = wh[k] / 2, size - wh[k] / 2
            if not lo <= pos[k] <= hi:
                pos[k] = np.clip(pos[k], lo, hi)
                angle = np.pi - angle if k == 0 else -angle
    return boxes


def generate_sequence(seed: int, split: str, index: int, num_frames: int, size: int = 128) -> Sequence:
    """One generated video: a textured box moving with its own speed and scale change over a panning,
    cluttered background, with look-alike distractors (same pattern, other colours) and, in most
    sequences, a bar that partly occludes the target for a while. Deterministic in (seed, split, index)."""
    rng = np.random.default_rng([seed, SPLIT_STREAMS[split], index])
    pan = rng.uniform(-1.0, 1.0, 2)
    margin = int(np.ceil(np.abs(pan).max() * num_frames)) + 1
    bg = _background(rng, size + margin)
    kind = int(rng.integers(0, 3))
    colours = rng.random((3, 3))
    base = rng.uniform(14, 30, 2).astype(np.float32)
    target = _trajectory(rng, num_frames, size, base, rng.uniform(0.5, 4.0))
    tex = _texture(rng, colours, kind)
    distractors = []
    for _ in range(int(rng.integers(1, 3))):
        look_alike = np.clip(colours[rng.permutation(3)] + rng.normal(0, 0.15, (3, 3)), 0, 1)
        d_base = base * rng.uniform(0.8, 1.2, 2).astype(np.float32)
        distractors.append((_texture(rng, look_alike, kind), _trajectory(rng, num_frames, size, d_base, rng.uniform(0.5, 3))))
    occlude = rng.random() < 0.7
    occ_start, occ_len = int(rng.integers(0, max(1, num_frames - 6))), int(rng.integers(3, 8))
    occ_side, occ_share = int(rng.integers(0, 4)), rng.uniform(0.3, 0.6)
    occ_colour = rng.random(3) * 0.6 + 0.2
    frames = np.zeros((num_frames, size, size, 3), np.uint8)
    for t in range(num_frames):
        ox, oy = np.clip(np.round(margin / 2 + pan * (t - num_frames / 2)), 0, margin).astype(int)
        frame = bg[oy:oy + size, ox:ox + size].copy()
        for d_tex, d_boxes in distractors:
            _paste(frame, d_tex, d_boxes[t])
        _paste(frame, tex, target[t])
        if occlude and occ_start <= t < occ_start + occ_len:
            x, y, w, h = target[t]
            cover = [(x, y, w * occ_share, h), (x + w * (1 - occ_share), y, w * occ_share, h),
                     (x, y, w, h * occ_share), (x, y + h * (1 - occ_share), w, h * occ_share)][occ_side]
            _paste(frame, np.broadcast_to(occ_colour, (4, 4, 3)).astype(np.float32), cover)
        frames[t] = (np.clip(frame, 0, 1) * 255).round().astype(np.uint8)
    return Sequence(f"{split}-{index:04d}", target, frames=frames)


def generate_sequences(seed: int, split: str, count: int, num_frames: int, size: int = 128) -> list[Sequence]:
    return [generate_sequence(seed, split, i, num_frames, size) for i in range(count)]
