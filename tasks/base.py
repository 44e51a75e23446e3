"""The Task registry and the typed configs every task shares.

A Task binds a config class, data, model, loss, metrics and optional hooks under one unique
name; the CLI and the training loop only ever talk to this interface, never to task names.
"""

from __future__ import annotations

import ast
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional, Protocol

from errors import UserError

if TYPE_CHECKING:  # hook signatures only: importing keras here would pick a backend too early
    import keras

    from pipelines.data import Data, DataInfo
    from tasks.exporting import Export


@dataclass(frozen=True)
class TrainConfig:
    """Knobs every task has. Task configs subclass this and add their own fields."""

    data: str = field(default="embedded", metadata={"help": "embedded | tfds:NAME | a path"})
    epochs: int = field(default=10, metadata={"help": "passes over the training set"})
    batch_size: int = field(default=64, metadata={"help": "examples per step"})
    learning_rate: float = field(default=1e-3, metadata={"help": "peak learning rate"})
    weight_decay: float = field(default=1e-4, metadata={"help": "AdamW weight decay"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up steps before cosine decay"})
    seed: int = field(default=0, metadata={"help": "seeds data order, augmentation and init"})
    jit_compile: bool = field(default=True, metadata={"help": "XLA-compile the train step"})
    model: str = field(default="", metadata={"help": "model variant (see the task's choices)"})
    log_every_steps: int = field(default=20, metadata={"help": "TensorBoard step scalars every N steps"})
    max_train_examples: int = field(default=0, metadata={"help": "cap on training examples (0 = all)"})
    max_val_examples: int = field(default=0, metadata={"help": "cap on validation examples (0 = all)"})
    checkpoint_every_steps: int = field(default=0, metadata={"help": "extra checkpoint every N steps (0 = per epoch only)"})
    keep_checkpoints: int = field(default=2, metadata={"help": "how many recent epoch checkpoints to keep"})
    best_metric: str = field(default="", metadata={"help": "validation metric that picks the best checkpoint ('' = task default)"})
    prestage: bool = field(default=False, metadata={"help": "build all training batches in memory first (shows what the input pipeline costs)"})
    val_fraction: float = field(default=0.1, metadata={"help": "share of train held out for validation when the source has no validation split (chosen by seed)"})
    patience: int = field(default=0, metadata={"help": "early stopping: stop after N epochs without a better best_metric (0 = off)"})
    clipnorm: float = field(default=0.0, metadata={"help": "clip each gradient to this L2 norm (0 = off)"})
    precision: str = field(default="float32", metadata={
        "choices": ("float32", "mixed_bfloat16", "mixed_float16"),
        "help": "Keras dtype policy (variables stay float32); mixed_float16 adds loss scaling, whose skipped "
                "overflow steps do not advance the global step"})
    steps_per_execution: int = field(default=1, metadata={"help": "train steps per compiled call; must divide the steps per epoch; "
                                                        "callbacks (logs, NaN check, Ctrl-C) act every Nth step"})
    profile_steps: tuple[int, ...] = field(default=(), metadata={"help": "A,B: profiler trace of train steps A..B "
                                                                 "(1-based) into RUN_DIR/train/plugins/profile (TensorBoard's Profile tab)"})
    compile_cache: str = field(default="default", metadata={"help": "persistent XLA compilation cache folder: default "
                                                          "(~/.cache/keras-baselines/xla), off, or a path"})
    distribute: str = field(default="none", metadata={
        "choices": ("none", "auto", "data-parallel", "model-parallel"),
        "help": "devices for one run (training/distribute.py): auto = data-parallel over several local accelerators; "
                "model-parallel is JAX only"})
    replicas: int = field(default=0, metadata={"help": "devices a distributed run uses (0 = every local device)"})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --- typed hooks --------------------------------------------------------------------------------
# Hooks receive the resolved config (`cfg`) and the dataset's `DataInfo`; datasets are unbatched
# tf.data.Datasets of (inputs, targets) as in `pipelines.Data`.

Direction = Literal["up", "down"]  # which way a metric is better, as Keras metrics declare it


class BuildDatasets(Protocol):
    def __call__(self, cfg: Any) -> "Data": ...


class RebuildDatasets(Protocol):
    """Datasets for `evaluate`/`predict`, reusing what fit learned from the training split
    (e.g. vocabularies in `saved.vocabularies`) instead of learning it again."""

    def __call__(self, cfg: Any, saved: "DataInfo") -> "Data": ...


class BuildModel(Protocol):
    def __call__(self, cfg: Any, info: "DataInfo") -> "keras.Model": ...


class MakeLoss(Protocol):
    def __call__(self, cfg: Any, info: "DataInfo") -> Any: ...


class MakeMetrics(Protocol):
    def __call__(self, cfg: Any, info: "DataInfo") -> list: ...


class Visualize(Protocol):
    """{name: image array (H, W, 3) uint8 | text | scalar} for TensorBoard, from one validation batch."""

    def __call__(self, model: "keras.Model", batch: tuple, info: "DataInfo", cfg: Any) -> dict: ...


class PredictOutputs(Protocol):
    """Rows (one per input) printed as JSON lines; files written under `out_dir`."""

    def __call__(self, model: "keras.Model", inputs: list[str], out_dir: Path, cfg: Any, info: "DataInfo",
                 options: dict) -> list[dict]: ...


class SampleInputs(Protocol):
    """A few raw inputs that `predict` accepts (image files written under `out_dir`, or texts), drawn
    from the embedded generator's test stream: what `predict` uses when given no inputs, and what the
    registry-wide contract test predicts on. [] when predict takes no inputs (e.g. a GAN)."""

    def __call__(self, cfg: Any, info: "DataInfo", out_dir: Path, n: int) -> list[str]: ...


class CompileModel(Protocol):
    """Compile a model whose compile() differs (e.g. a GAN's two optimizers)."""

    def __call__(self, model: "keras.Model", cfg: Any, info: "DataInfo", optimizer: Any) -> None: ...


class Prepare(Protocol):
    """One-off, data-dependent set-up of a fresh model before its first step (e.g. the GAN's score
    network). What it sets must live in the model's weights: it is skipped on resume and with
    --init-weights. The dict it returns is recorded in data_info.json's `extra`."""

    def __call__(self, model: "keras.Model", data: "Data", cfg: Any) -> dict: ...


class ComputeSplitMetrics(Protocol):
    """Metrics over a whole split (COCO mAP, BLEU, EM/F1, NDCG@k): {name: value}. `report` is a
    callable taking one text block (e.g. the COCO table) that `evaluate` prints; fit ignores it."""

    def __call__(self, model: "keras.Model", dataset: Any, cfg: Any, info: "DataInfo",
                 report: Callable[[str], None]) -> dict: ...


@dataclass(frozen=True)
class SplitMetrics:
    """Whole-split metrics, declared once: their names and directions, and how to compute them.

    The engine runs `compute` on the validation split at the end of every `every_epochs`-th epoch
    (and the last), adding `val_<name>` to the epoch logs (history, TensorBoard, best checkpoint,
    early stopping), and again in `evaluate` on any split.
    """

    directions: dict  # {name: "up" | "down"}
    compute: ComputeSplitMetrics
    every_epochs: Callable[[Any], int] = lambda cfg: 1


@dataclass(frozen=True)
class Task:
    """One trainable task: a config class, data, model, loss, metrics and optional hooks."""

    name: str
    description: str
    config_cls: type
    build_datasets: BuildDatasets
    build_model: BuildModel
    # Models with their own loss (custom train steps, compute_loss) leave loss/metrics as None.
    loss: Optional[MakeLoss] = None
    metrics: Optional[MakeMetrics] = None
    default_data: str = "generated"
    presets: dict = field(default_factory=dict)
    visualize: Optional[Visualize] = None
    predict_outputs: Optional[PredictOutputs] = None
    sample_inputs: Optional[SampleInputs] = None
    compile: Optional[CompileModel] = None
    split_metrics: Optional[SplitMetrics] = None
    rebuild_datasets: Optional[RebuildDatasets] = None
    prepare: Optional[Prepare] = None
    export: Optional["Export"] = None  # serving signature, decision and refused formats (tasks/exporting.py)
    visualize_examples: int = 32  # validation examples handed to visualize (e.g. more for a confusion matrix)
    predict_keys: tuple = ()  # config keys `predict --set` may change (decode-time settings; the rest is fixed by fit)
    best_metric: str = "val_loss"  # default metric for the best checkpoint; its direction comes from the metric


_REGISTRY: dict[str, Task] = {}


def register(task: Task) -> Task:
    if task.name in _REGISTRY:
        raise ValueError(f"task {task.name!r} is already registered")
    _REGISTRY[task.name] = task
    return task


def get_task(name: str) -> Task:
    import tasks  # noqa: F401  (imports every task module so they register)

    if name not in _REGISTRY:
        raise UserError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def all_tasks() -> list[Task]:
    import tasks  # noqa: F401

    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


# --- config resolution: defaults -> preset -> flags -> --set key=value -------------------------


def config_fields(cfg_cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cfg_cls)}


def _type_name(tp) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def coerce_value(key: str, raw: Any, tp, choices=None):
    """Check (and gently convert) one config value against its declared type."""
    value = raw
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce_value(key, raw, inner[0], choices)
    if tp is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "on", "off", "yes", "no"):
            value = value.lower() in ("true", "on", "yes")
        if not isinstance(value, bool):
            raise UserError(f"--set {key}={raw!r}: expected bool (true/false), got {type(raw).__name__}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"--set {key}={raw!r}: expected int, got {type(raw).__name__}")
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"--set {key}={raw!r}: expected float, got {type(raw).__name__}")
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            value = str(value)
    elif origin is tuple:
        if isinstance(value, list):
            value = tuple(value)
        if isinstance(value, str):
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        if not isinstance(value, tuple):
            raise UserError(f"--set {key}={raw!r}: expected {_type_name(tp)}, got {type(raw).__name__}")
        elem = args[0] if args else None
        if elem is not None and elem is not Ellipsis:
            value = tuple(coerce_value(key, v, elem) for v in value)
    elif origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise UserError(f"--set {key}={raw!r}: expected dict, got {type(raw).__name__}")
    if choices and value not in choices:
        raise UserError(f"--set {key}={raw!r}: expected one of {', '.join(map(str, choices))}")
    return value


def parse_set_value(text: str):
    """`--set` values are Python literals; a bare word is taken as a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise UserError(f"--set {pair!r}: expected key=value")
        key, text = pair.split("=", 1)
        out[key.strip()] = parse_set_value(text.strip())
    return out


def apply_overrides(cfg, overrides: dict, source: str = "--set"):
    fields = config_fields(type(cfg))
    hints = typing.get_type_hints(type(cfg))
    changes = {}
    for key, raw in overrides.items():
        if key not in fields:
            raise UserError(
                f"{source}: unknown config key {key!r}; valid keys: {', '.join(sorted(fields))}"
            )
        choices = fields[key].metadata.get("choices")
        changes[key] = coerce_value(key, raw, hints[key], choices)
    cfg = dataclasses.replace(cfg, **changes)
    validate(cfg)
    return cfg


def validate(cfg) -> None:
    for key in ("epochs", "batch_size", "steps_per_execution"):
        if getattr(cfg, key) < 1:
            raise UserError(f"--set {key}={getattr(cfg, key)}: expected a positive int")
    if cfg.learning_rate <= 0:
        raise UserError(f"--set learning_rate={cfg.learning_rate}: expected a positive float")
    if not 0.0 < cfg.val_fraction < 1.0:
        raise UserError(f"--set val_fraction={cfg.val_fraction}: expected a fraction between 0 and 1")
    steps = tuple(cfg.profile_steps)
    if steps and (len(steps) not in (1, 2) or steps[0] < 1 or steps[-1] < steps[0]):
        raise UserError(f"--set profile_steps={','.join(map(str, steps))}: expected A,B with 1 <= A <= B (train steps to trace)")
    for key in ("patience", "clipnorm"):
        if getattr(cfg, key) < 0:
            raise UserError(f"--set {key}={getattr(cfg, key)}: expected >= 0 (0 = off)")
    for key, f in config_fields(type(cfg)).items():  # task fields declared metadata={"positive": True}
        if f.metadata.get("positive") and getattr(cfg, key) <= 0:
            raise UserError(f"--set {key}={getattr(cfg, key)}: expected a positive {_type_name(f.type)}")


def resolve_config(task: Task, preset: Optional[str] = None, flags: Optional[dict] = None,
                   sets: Optional[list[str]] = None):
    """Defaults -> preset -> CLI flags -> --set overrides, each validated."""
    cfg = task.config_cls()
    if cfg.model == "" and "model" in config_fields(task.config_cls):
        choices = config_fields(task.config_cls)["model"].metadata.get("choices")
        if choices:
            cfg = dataclasses.replace(cfg, model=choices[0])
    if preset:
        if preset not in task.presets:
            valid = ", ".join(sorted(task.presets)) or "none"
            raise UserError(f"--preset {preset!r}: unknown preset for task {task.name!r}; valid presets: {valid}")
        cfg = apply_overrides(cfg, task.presets[preset], source=f"preset {preset!r}")
    if flags:
        cfg = apply_overrides(cfg, {k: v for k, v in flags.items() if v is not None}, source="flag")
    if sets:
        cfg = apply_overrides(cfg, parse_overrides(sets))
    return cfg


def predict_overrides(task: Task, sets: list[str], command: str = "predict") -> dict:
    """`predict --set key=value` (or `evaluate --set`): only the task's predict-time keys (e.g. beam_size),
    type-checked against the config class, so a mistake is answered before the backend starts."""
    overrides = parse_overrides(sets)
    for key in overrides:
        if key not in task.predict_keys:
            allowed = ", ".join(task.predict_keys) or "none"
            raise UserError(f"{command} --set {key}: not a predict-time key of task {task.name!r}, whose other keys are "
                            f"fixed by the run ({command} accepts: {allowed})")
    apply_overrides(task.config_cls(), overrides, source=f"{command} --set")
    return overrides


def config_from_dict(task: Task, values: dict):
    """Rebuild a saved config (config.json) with the same type checks as --set."""
    return apply_overrides(task.config_cls(), values, source="config.json")


def describe_config(cfg_cls) -> list[tuple[str, str, Any, str]]:
    hints = typing.get_type_hints(cfg_cls)
    rows = []
    for f in dataclasses.fields(cfg_cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        helptext = f.metadata.get("help", "")
        if f.metadata.get("choices"):
            helptext += f" (choices: {', '.join(f.metadata['choices'])})"
        rows.append((f.name, _type_name(hints[f.name]), default, helptext))
    return rows
