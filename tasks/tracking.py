"""Single-object tracking: a SiamFC tracker trained on pairs of frames, scored by OTB success/precision.

Data (`--data`): generated sequences by default (textured objects moving with varied speed and scale
change, partly occluded, among look-alike distractors on panning, cluttered backgrounds); a folder of
OTB-layout (`<seq>/img/0001.jpg` + `groundtruth_rect.txt`) or GOT-10k-layout (`<seq>/00000001.jpg` +
`groundtruth.txt`) sequences, split into train/validation(/test) BY SEQUENCE, never by frame.
Training pairs come from pipelines.tracking (tf.data); the tracker (keras_models.tracker) runs over
the validation sequences at epoch end as a whole-split metric, beside the "box stays where it
started" baseline.
"""

from __future__ import annotations

import json
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from errors import DataError, UserError
from pipelines import Data, DataInfo, parse_data_spec
from pipelines import sequences as seqs
from pipelines.data import InputSpec
from pipelines.splits import carve_indices, carved_note, find_split_folders, generated_note, generated_sizes
from tasks import visuals
from tasks.base import SplitMetrics, Task, TrainConfig, register
from tasks.lazy import lazy_module
from training import tracking_metrics as otb

keras = lazy_module("keras")
siamese = lazy_module("keras_models.siamese")
tracker_mod = lazy_module("keras_models.tracker")
pairs = lazy_module("pipelines.tracking")

MODEL_NAMES = ("light", "alexnet")  # keys of keras_models.siamese.BACKBONES


@dataclass(frozen=True)
class TrackingConfig(TrainConfig):
    model: str = field(default="light", metadata={"choices": MODEL_NAMES,
                                                   "help": "light (4 convs, stride 4, CPU) | alexnet (SiamFC's, stride 8)"})
    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 2e-3
    warmup_steps: int = 30
    exemplar_size: int = field(default=63, metadata={"positive": True, "help": "exemplar crop side (SiamFC: 127)"})
    search_size: int = field(default=127, metadata={"positive": True, "help": "search crop side (SiamFC: 255)"})
    context: float = field(default=0.5, metadata={"help": "context around the box: p = context * (w + h)"})
    max_frame_gap: int = field(default=12, metadata={"help": "the two frames of a training pair are at most this far apart"})
    positive_radius: float = field(default=2.0, metadata={"help": "response cells within this radius of the target are positives"})
    scale_jitter: float = field(default=0.05, metadata={"help": "training search-crop scale jitter (log, +-)"})
    shift_jitter: float = field(default=8.0, metadata={"help": "training search-crop shift jitter (crop pixels, +-)"})
    colour_jitter: float = field(default=0.1, metadata={"help": "training per-channel gain / brightness jitter (+-)"})
    val_pair_every: int = field(default=4, metadata={"positive": True, "help": "validation/test loss pairs start every N frames"})
    num_train: int = field(default=100, metadata={"help": "generated training sequences (embedded data)"})
    num_val: int = field(default=16, metadata={"help": "generated validation sequences (embedded data)"})
    num_test: int = field(default=16, metadata={"help": "generated test sequences (embedded data; 0 = no test split)"})
    train_frames: int = field(default=24, metadata={"positive": True, "help": "frames per generated training sequence"})
    eval_frames: int = field(default=40, metadata={"positive": True, "help": "frames per generated validation/test sequence"})
    frame_size: int = field(default=128, metadata={"positive": True, "help": "side of generated frames"})
    test_fraction: float = field(default=0.0, metadata={"help": "share of a folder's sequences held out as test when it has no test/ folder (0 = none)"})
    num_scales: int = field(default=3, metadata={"positive": True, "help": "tracker: search scales per frame"})
    scale_step: float = field(default=1.04, metadata={"help": "tracker: ratio between neighbouring scales"})
    scale_penalty: float = field(default=0.97, metadata={"help": "tracker: response factor for changing scale"})
    scale_lr: float = field(default=0.6, metadata={"help": "tracker: scale damping (share of the new scale taken)"})
    window_influence: float = field(default=0.25, metadata={"help": "tracker: cosine window weight"})
    upsample: int = field(default=8, metadata={"positive": True, "help": "tracker: response upsampling factor"})
    track_every_epochs: int = field(default=1, metadata={"positive": True, "help": "run the tracker on validation every N epochs (and after the last)"})


# --- data ----------------------------------------------------------------------------------------


def split_sequences(cfg: TrackingConfig) -> tuple[dict, dict, str]:
    """({split: [Sequence]}, {split: origin}, source): generated, or folders split by sequence."""
    spec = parse_data_spec(cfg.data)
    if spec.kind == "embedded":
        made = {split: seqs.generate_sequences(cfg.seed, split, n, cfg.train_frames if split == "train" else cfg.eval_frames,
                                               cfg.frame_size)
                for split, n in generated_sizes(cfg).items()}
        return made, {s: generated_note(s) for s in made}, "generated sequences"
    if spec.kind != "path":
        raise UserError(f"--data {cfg.data}: tracking reads embedded or a folder of OTB / GOT-10k sequences")
    root = spec.path
    folders = find_split_folders(root)
    if folders is not None:
        made = {split: [seqs.read_sequence(p) for p in seqs.find_sequences(f)] for split, f in folders.items()}
        origins = {split: str(f) for split, f in folders.items()}
    else:
        made, origins = {"train": [seqs.read_sequence(p) for p in seqs.find_sequences(root)]}, {"train": str(root)}
    if "test" not in made and cfg.test_fraction > 0:
        keep, test = carve_indices(len(made["train"]), cfg.test_fraction, cfg.seed + 1, f"--data {root}")
        made["test"] = [made["train"][i] for i in test]
        made["train"] = [made["train"][i] for i in keep]
        origins["test"] = f"carved from train ({cfg.test_fraction:.0%} of the sequences, seed {cfg.seed + 1})"
    if "validation" not in made:
        keep, val = carve_indices(len(made["train"]), cfg.val_fraction, cfg.seed, f"--data {root} (sequences)")
        made["validation"] = [made["train"][i] for i in val]
        made["train"] = [made["train"][i] for i in keep]
        origins["validation"] = carved_note(cfg.val_fraction, cfg.seed) + ", by sequence"
    return made, origins, str(root)


def pair_spec(cfg: TrackingConfig) -> "pairs.PairSpec":
    if (cfg.search_size - cfg.exemplar_size) % siamese.total_stride(cfg.model):
        raise UserError(f"--set search_size={cfg.search_size}: search_size - exemplar_size must be a multiple of "
                        f"the backbone stride {siamese.total_stride(cfg.model)} (model={cfg.model})")
    if siamese.feature_size(cfg.model, cfg.exemplar_size) < 1:
        raise UserError(f"--set exemplar_size={cfg.exemplar_size}: too small for model={cfg.model}")
    return pairs.PairSpec(cfg.exemplar_size, cfg.search_size,
                          siamese.response_size(cfg.model, cfg.exemplar_size, cfg.search_size),
                          siamese.total_stride(cfg.model), cfg.context, cfg.max_frame_gap, cfg.positive_radius,
                          cfg.scale_jitter, cfg.shift_jitter, cfg.colour_jitter)


def _build(cfg: TrackingConfig, for_training: bool) -> Data:
    made, origins, source = split_sequences(cfg)
    spec = pair_spec(cfg)
    datasets, counts = {}, {}
    for split, sequences in made.items():
        if split == "train" and for_training:
            datasets[split], augment, counts[split] = pairs.training_pairs(sequences, spec)
        else:  # evaluate reads train as fixed pairs too
            datasets[split], counts[split] = pairs.fixed_pairs(sequences, spec, cfg.seed, cfg.val_pair_every)
    r = spec.response_size
    info = DataInfo(
        source, counts["train"], counts["validation"],
        {"exemplar": InputSpec((spec.exemplar_size, spec.exemplar_size, 3)),
         "search": InputSpec((spec.search_size, spec.search_size, 3))},
        num_test=counts.get("test", 0), targets={"response": InputSpec((r, r))}, splits=origins,
        extra={"sequences": {split: len(s) for split, s in made.items()}, "response_size": r, "stride": spec.stride,
               "pixel_range": "0..255", "examples": "train: one pair per frame (second frame and jitter drawn per "
                                                    "epoch); validation/test: fixed pairs every val_pair_every frames"})
    return Data.from_splits(datasets, info, augment=augment if for_training else None)


def build_datasets(cfg: TrackingConfig) -> Data:
    return _build(cfg, for_training=True)


def rebuild_datasets(cfg: TrackingConfig, saved: DataInfo) -> Data:
    return _build(cfg, for_training=False)


# --- model, loss, tracker -------------------------------------------------------------------------


def build_model(cfg: TrackingConfig, info: DataInfo):
    return siamese.build_siamfc(cfg.model, info.inputs["exemplar"].shape[0], info.inputs["search"].shape[0])


def loss(cfg, info):
    return siamese.BalancedLogisticLoss()


def tracker_params(cfg: TrackingConfig) -> "tracker_mod.TrackerParams":
    return tracker_mod.TrackerParams(cfg.context, siamese.total_stride(cfg.model), cfg.num_scales, cfg.scale_step,
                                     cfg.scale_penalty, cfg.scale_lr, cfg.window_influence, cfg.upsample)


_TRACKERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def tracker_for(model, cfg: TrackingConfig):
    """One compiled tracker per model and settings: it shares the model's layers, so it sees new
    weights without compiling again at every epoch."""
    key = (tracker_params(cfg), cfg.jit_compile)
    per_model = _TRACKERS.setdefault(model, {})
    if key not in per_model:
        per_model[key] = tracker_mod.Tracker(model, key[0], jit_compile=cfg.jit_compile)
    return per_model[key]


def track_split(model, dataset, cfg, info, report) -> dict:
    """OTB success AUC and precision@20 of the tracker over the split's sequences, the same figures
    for the box that stays where it started, and the tracker's frames per second."""
    sequences = pairs.sequences_of(dataset)
    if not sequences:
        raise DataError("tracking metrics: the dataset carries no sequences")
    tracker = tracker_for(model, cfg)
    results = [tracker.track(s, s.boxes[0]) for s in sequences]
    scores = otb.otb_scores([r.boxes for r in results], [s.boxes for s in sequences])
    stay = otb.otb_scores([otb.stay_baseline(s.boxes) for s in sequences], [s.boxes for s in sequences])
    fps = [r.fps for r in results if np.isfinite(r.fps)]
    lines = [f"{'sequence':<16} {'frames':>6} {'AUC':>6} {'P@20':>6} {'fps':>6}"]
    for s, r in zip(sequences, results):
        one = otb.otb_scores([r.boxes], [s.boxes])
        lines.append(f"{s.name:<16} {len(s):>6} {one['success_auc']:>6.3f} {one['precision_20']:>6.3f} {r.fps:>6.1f}")
    report("\n".join(lines))
    return {**scores, "fps": float(np.mean(fps)) if fps else float("nan"),
            "stay_success_auc": stay["success_auc"], "stay_precision_20": stay["precision_20"]}


TRACKING_METRICS = SplitMetrics(
    directions={"success_auc": "up", "precision_20": "up", "fps": "up", "stay_success_auc": "up",
                "stay_precision_20": "up"},
    compute=track_split, every_epochs=lambda cfg: cfg.track_every_epochs)


# --- pictures --------------------------------------------------------------------------------------

GREEN, RED = (0, 200, 0), (230, 20, 20)


def heat(response: np.ndarray, size: int) -> np.ndarray:
    """A response map as a red-yellow heat image of side `size`."""
    r = np.asarray(response, np.float32)
    r = (r - r.min()) / max(float(r.max() - r.min()), 1e-12)
    rgb = np.stack([np.ones_like(r), r, r * 0.2], -1) * np.sqrt(r)[..., None]
    return np.asarray(Image.fromarray((rgb * 255).astype(np.uint8)).resize((size, size), Image.NEAREST))


def draw_box(img: Image.Image, box, colour, scale: float = 1.0, width: int = 2) -> None:
    x, y, w, h = (np.asarray(box, np.float64) * scale).tolist()
    ImageDraw.Draw(img).rectangle([x, y, x + w - 1, y + h - 1], outline=colour, width=width)


def annotated(frame: np.ndarray, pred, true=None, caption: str = "", scale: float = 1.0) -> Image.Image:
    """A frame with the true box (green) and the predicted box (red), upscaled by `scale`."""
    img = Image.fromarray(frame)
    if scale != 1.0:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BILINEAR)
    if true is not None:
        draw_box(img, true, GREEN, scale)
    draw_box(img, pred, RED, scale)
    if caption:
        ImageDraw.Draw(img).text((3, 2), caption, fill=(255, 255, 255))
    return img


def pair_tiles(model, batch, n: int = 4) -> np.ndarray:
    """Per fixed validation pair: exemplar crop, search crop, predicted response, label."""
    x, y = batch
    x = {k: v[:n] for k, v in x.items()}
    logits = np.asarray(keras.ops.sigmoid(model.predict_on_batch(x)))
    side = x["search"].shape[1]
    tiles = []
    for i in range(len(logits)):
        ex = np.asarray(Image.fromarray(x["exemplar"][i].astype(np.uint8)).resize((side, side), Image.NEAREST))
        tiles += [ex, x["search"][i].astype(np.uint8), heat(logits[i], side), heat(y[i], side)]
    return visuals.grid(tiles, columns=4)


def tracked_strip(model, cfg, seq: seqs.Sequence, count: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Frames of one tracked validation sequence (true green, predicted red) and a response map."""
    keep = tuple(np.linspace(1, len(seq) - 1, count).round().astype(int))
    result = tracker_for(model, cfg).track(seq, seq.boxes[0], keep=keep)
    scale = max(1.0, 160 / max(seq.frame(0).shape[:2]))
    tiles = [np.asarray(annotated(seq.frame(t), result.boxes[t], seq.boxes[t], f"#{t + 1}", scale)) for t in keep]
    t = keep[len(keep) // 2]
    crops = [c.clip(0, 255).astype(np.uint8) for c in result.crops[t]]
    response = heat(result.responses[t], crops[0].shape[0])
    return visuals.grid(tiles, columns=count), visuals.grid(crops + [response], columns=len(crops) + 1)


def visualize(model, batch, info: DataInfo, cfg) -> dict:
    strip, search = tracked_strip(model, cfg, split_sequences(cfg)[0]["validation"][0])
    return {"pairs_exemplar_search_response_label": pair_tiles(model, batch), "tracked_validation_sequence": strip,
            "tracker_search_crops_and_response": search}


# --- predict -----------------------------------------------------------------------------------------


def sample_inputs(cfg, info: DataInfo, out_dir: Path, n: int) -> list[str]:
    """n generated test sequences written in the OTB layout (with ground truth, so predict scores them)."""
    return [str(seqs.write_sequence(out_dir / f"test-{i:04d}",
                                    seqs.generate_sequence(cfg.seed, "test", i, cfg.eval_frames, cfg.frame_size)))
            for i in range(n)]


def _sequence_of(folder: str, box) -> tuple:
    """(the sequence, its first box, 0-based) from a folder and an optional --box."""
    path = Path(folder)
    if not path.is_dir():
        raise UserError(f"predict: {folder}: not a folder (expected a sequence folder or --frames FOLDER)")
    if box is not None:
        seq = seqs.read_sequence(path) if seqs.is_sequence(path) else seqs.frames_only(path)
        return seq, np.asarray(box, np.float32) - np.array([1, 1, 0, 0], np.float32)  # --box is 1-based like OTB
    if not seqs.is_sequence(path):
        raise UserError(f"predict: {folder}: no ground truth file; give the first frame's box with --box x,y,w,h")
    seq = seqs.read_sequence(path)
    return seq, seq.boxes[0]


def write_video(out: Path, seq: seqs.Sequence, boxes: np.ndarray) -> tuple[Path, Path]:
    """Annotated PNG frames and an animated GIF (true boxes green where known, predicted red)."""
    (out / "frames").mkdir(parents=True, exist_ok=True)
    images = []
    for t in range(len(seq)):
        true = seq.boxes[t] if seq.boxes is not None else None
        img = annotated(seq.frame(t), boxes[t], true, f"#{t + 1}")
        img.save(out / "frames" / f"{t + 1:04d}.png")
        images.append(img.convert("P", palette=Image.ADAPTIVE))
    gif = out / "tracking.gif"
    images[0].save(gif, save_all=True, append_images=images[1:], duration=66, loop=0)
    return out / "frames", gif


def predict_outputs(model, inputs: list[str], out_dir: Path, cfg, info: DataInfo, options: dict) -> list[dict]:
    """Per sequence folder: boxes.txt (OTB, 1-based x,y,w,h), boxes.json, frames/*.png, tracking.gif;
    with ground truth also success AUC and precision@20 (and the stay-put baseline's)."""
    if not inputs:
        raise UserError("predict: give a sequence folder (with its ground truth) or --frames FOLDER --box x,y,w,h")
    tracker = tracker_for(model, cfg)
    rows = []
    for folder in inputs:
        seq, first = _sequence_of(folder, options.get("box"))
        result = tracker.track(seq, first)
        out = out_dir / seq.name
        out.mkdir(parents=True, exist_ok=True)
        seqs.write_boxes(out / "boxes.txt", result.boxes)
        one_based = result.boxes.astype(np.float64) + np.array([1, 1, 0, 0])
        (out / "boxes.json").write_text(json.dumps({"sequence": str(folder), "format": "x,y,w,h (1-based, OTB)",
                                                    "boxes": np.round(one_based, 2).tolist()}))
        frames_dir, gif = write_video(out, seq, result.boxes)
        row = {"input": str(folder), "frames": len(seq), "fps": round(result.fps, 1), "boxes": str(out / "boxes.txt"),
               "json": str(out / "boxes.json"), "gif": str(gif), "png_frames": str(frames_dir)}
        if seq.boxes is not None:
            scores = otb.otb_scores([result.boxes], [seq.boxes])
            stay = otb.otb_scores([otb.stay_baseline(seq.boxes)], [seq.boxes])
            row.update({k: round(v, 4) for k, v in scores.items()})
            row.update({f"stay_{k}": round(v, 4) for k, v in stay.items()})
        rows.append(row)
    return rows


register(Task(
    name="tracking",
    description="single-object tracking (SiamFC: Siamese backbone, cross-correlation, OTB success/precision)",
    config_cls=TrackingConfig,
    build_datasets=build_datasets,
    rebuild_datasets=rebuild_datasets,
    build_model=build_model,
    loss=loss,
    default_data="generated sequences (moving textured objects, distractors, occlusion, clutter)",
    presets={
        "debug": {"epochs": 1, "num_train": 6, "num_val": 2, "num_test": 2, "train_frames": 8, "eval_frames": 8,
                  "frame_size": 64, "batch_size": 8, "log_every_steps": 2, "warmup_steps": 0, "val_pair_every": 4},
        "siamfc": {"model": "alexnet", "exemplar_size": 127, "search_size": 255, "batch_size": 8},
    },
    visualize=visualize,
    visualize_examples=4,
    predict_outputs=predict_outputs,
    sample_inputs=sample_inputs,
    split_metrics=TRACKING_METRICS,
    best_metric="val_success_auc",
))
