"""evaluate and predict on a finished (or checkpointed) run."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import keras

from errors import UserError
from pipelines.data import parse_data_spec
from tasks.base import Task, apply_overrides
from training import rundir
from training.loop import build_compiled_model, build_data, evaluate_dataset, load_data_info, load_run_config

CHECKPOINT_CHOICES = ("final", "best", "last")


def weights_path(run_dir: Path, which: str) -> Path:
    if which == "final":
        path = run_dir / rundir.MODEL
    elif which == "best":
        path = run_dir / rundir.CHECKPOINTS / "best.weights.h5"
    elif which == "last":
        latest = rundir.read_json(run_dir / rundir.CHECKPOINTS / "latest.json")
        path = run_dir / rundir.CHECKPOINTS / latest["weights"]
    else:
        raise UserError(f"--checkpoint {which!r}: expected one of {', '.join(CHECKPOINT_CHOICES)}")
    if not path.exists():
        raise UserError(f"--checkpoint {which}: {path} does not exist (did the run finish?)")
    return path


def load_trained_model(task: Task, run_dir: Path, which: str = "final", overrides: dict | None = None):
    run_dir = rundir.require_run(run_dir)
    cfg, _ = load_run_config(task, run_dir)
    if overrides:  # predict-time settings (see tasks.base.predict_overrides); the model is the run's
        cfg = apply_overrides(cfg, overrides, source="predict --set")
    info = load_data_info(run_dir)
    model = build_compiled_model(task, cfg, info, total_steps=1)
    if model.optimizer is not None:
        model.optimizer.build(model.trainable_variables)  # checkpoints carry optimizer state too
    model.load_weights(weights_path(run_dir, which))
    return model, cfg, info


EVAL_SPLITS = ("train", "validation", "test", "all")


def evaluate(task: Task, run_dir: Path, *, split: str | None = None, which: str = "final",
             data: str | None = None, report=print, overrides: dict | None = None) -> dict:
    """Metrics of a run's weights on one split of its data, or on other data (all of it by default);
    `overrides` are predict-time keys (`evaluate --set`, e.g. decoding settings)."""
    model, cfg, info = load_trained_model(task, run_dir, which, overrides)
    if data is not None:
        cfg = dataclasses.replace(cfg, data=data)
    split = split or ("all" if data is not None else "validation")
    if split not in EVAL_SPLITS:
        raise UserError(f"--split {split!r}: expected one of {', '.join(EVAL_SPLITS)}")
    bundle = build_data(task, cfg, saved_info=info)
    ds, used = _split_dataset(bundle, split)
    results = evaluate_dataset(task, model, bundle, ds, cfg, report=report)
    out = {"task": task.name, "split": split, "examples": used, "checkpoint": which,
           "backend": keras.config.backend(), "data": cfg.data, "metrics": results, "overrides": overrides or {},
           "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    rundir.write_json(Path(run_dir) / f"eval-{split}.json", out)
    return out


def _split_dataset(bundle, split: str):
    """(dataset, description of the examples used) for one split or the union of all of them."""
    info = bundle.info
    names = [s for s in ("train", "validation", "test") if s != "test" or bundle.test is not None]
    if split != "all":
        ds = bundle.split(split)
        return ds, {"split": split, "count": info.count(split), "origin": info.splits.get(split, split)}
    ds = bundle.split(names[0])
    for name in names[1:]:
        ds = ds.concatenate(bundle.split(name))
    counts = {name: info.count(name) for name in names}
    return ds, {"split": "all", "count": sum(counts.values()), "parts": counts}


def predict(task: Task, run_dir: Path, inputs: list[str], *, out_dir: Path | None = None,
            which: str = "final", options: dict | None = None, artifact: str | None = None,
            overrides: dict | None = None) -> tuple[list[dict], Path]:
    """Run the task's predict hook; `options` carries generic flags such as num_samples, `overrides`
    the task's predict-time config keys (`predict --set`). With `artifact` (an exported file of this
    run) the hook's model is that artifact run by its own runtime."""
    if task.predict_outputs is None:
        raise UserError(f"task {task.name!r} has no predict outputs yet")
    if artifact is not None:
        from training.export import artifact_as_model

        cfg, _ = load_run_config(task, run_dir)
        if overrides:
            cfg = apply_overrides(cfg, overrides, source="predict --set")
        info = load_data_info(run_dir)
        model = artifact_as_model(task, Path(artifact), cfg, info)
    else:
        model, cfg, info = load_trained_model(task, run_dir, which, overrides)
    out_dir = Path(out_dir) if out_dir else Path(run_dir) / "predictions"
    out_dir.mkdir(parents=True, exist_ok=True)
    options = options or {}
    inputs = list(inputs)
    if not inputs and task.sample_inputs is not None and parse_data_spec(cfg.data).kind == "embedded":
        inputs = task.sample_inputs(cfg, info, out_dir / "inputs", int(options.get("num_samples", 4)))
        if inputs:
            print(f"no inputs given: predicting on {len(inputs)} generated samples ({out_dir / 'inputs'})")
    return task.predict_outputs(model, inputs, out_dir, cfg, info, options), out_dir
