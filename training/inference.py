"""evaluate and predict on a finished (or checkpointed) run."""

from __future__ import annotations

import time
from pathlib import Path

import keras

from errors import UserError
from pipelines import stream
from tasks.base import Task
from training import rundir
from training.loop import build_compiled_model, build_data, load_data_info, load_run_config

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
    info = load_data_info(run_dir)
    model = build_compiled_model(task, cfg, info, total_steps=1)
    if model.optimizer is not None:
        model.optimizer.build(model.trainable_variables)  # checkpoints carry optimizer state too
    model.load_weights(weights_path(run_dir, which))
    return model, cfg, info


def evaluate(task: Task, run_dir: Path, *, split: str = "validation", which: str = "final",
             data: str | None = None) -> dict:
    model, cfg, info = load_trained_model(task, run_dir, which)
    if data is not None:
        import dataclasses

        cfg = dataclasses.replace(cfg, data=data)
    bundle = build_data(task, cfg, saved_info=info)
    if split not in ("validation", "train"):
        raise UserError(f"--split {split!r}: expected validation or train")
    ds = bundle.val if split == "validation" else bundle.train
    batcher = None if bundle.batch is None else (lambda d: bundle.batch(d, cfg.batch_size))
    results = model.evaluate(stream.eval_stream(ds, batch_size=cfg.batch_size, batch=batcher),
                             return_dict=True, verbose=0)
    results = {k: float(v) for k, v in results.items()}
    if task.evaluate_extra is not None:
        results.update({k: float(v) for k, v in task.evaluate_extra(model, ds, cfg, info).items()})
    out = {"task": task.name, "split": split, "checkpoint": which, "backend": keras.config.backend(),
           "data": cfg.data, "metrics": results, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    rundir.write_json(Path(run_dir) / f"eval-{split}.json", out)
    return out


def predict(task: Task, run_dir: Path, inputs: list[str], *, out_dir: Path | None = None,
            which: str = "final", options: dict | None = None) -> tuple[list[dict], Path]:
    """Run the task's predict hook; `options` carries generic flags such as num_samples."""
    if task.predict_outputs is None:
        raise UserError(f"task {task.name!r} has no predict outputs yet")
    model, cfg, info = load_trained_model(task, run_dir, which)
    out_dir = Path(out_dir) if out_dir else Path(run_dir) / "predictions"
    out_dir.mkdir(parents=True, exist_ok=True)
    return task.predict_outputs(model, list(inputs), out_dir, cfg, info, options or {}), out_dir
