"""The one training path: datasets -> model -> model.fit with our callbacks -> run directory."""

from __future__ import annotations

import contextlib
import dataclasses
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import keras

from errors import DataError, TrainingError, UserError
from pipelines import DataInfo, stream
from pipelines.data import data_info_from_dict
from tasks.base import Task, config_from_dict
from training import backend as backend_mod
from training import checkpoints, compile_cache, distribute, finetune, profiling, rundir
from training.callbacks import Checkpointer, EarlyStopping, Guard, SplitMetricsCallback, StepTimer, TensorBoardLogger
from training.directions import logged_directions, resolve_best_metric


class Interrupted(Exception):
    """SIGINT/SIGTERM stopped the run after saving a checkpoint (exit 130 / 143, as shells do)."""

    def __init__(self, message: str, signal_name: str = "SIGINT"):
        super().__init__(message)
        self.exit_code = 143 if signal_name == "SIGTERM" else 130


@dataclass
class FitResult:
    run_dir: Path
    metrics: dict
    model: keras.Model


def make_optimizer(cfg, total_steps: int):
    """AdamW with linear warm-up and cosine decay over the whole run."""
    warmup = min(cfg.warmup_steps, max(0, total_steps - 1))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else cfg.learning_rate,
        decay_steps=max(1, total_steps - warmup),
        alpha=0.02,
        warmup_target=cfg.learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=cfg.weight_decay,
                                  clipnorm=cfg.clipnorm or None)


def build_data(task: Task, cfg, saved_info: DataInfo | None = None):
    """The task's datasets; with `saved_info` (a finished run's) the task may reuse what fit learned."""
    if saved_info is not None and task.rebuild_datasets is not None:
        data = task.rebuild_datasets(cfg, saved_info)
    else:
        data = task.build_datasets(cfg)
    info = data.info
    if cfg.max_train_examples and cfg.max_train_examples < info.num_train:
        data.train, info.num_train = data.train.take(cfg.max_train_examples), cfg.max_train_examples
    if cfg.max_val_examples and cfg.max_val_examples < info.num_val:
        data.val, info.num_val = data.val.take(cfg.max_val_examples), cfg.max_val_examples
    if info.num_train < 1:
        raise DataError(f"--data {cfg.data}: the training set is empty")
    if info.num_val < 1:
        raise DataError(f"--data {cfg.data}: the validation set is empty")
    if data.test is not None and info.num_test < 1:
        data.test = None
    return data


@contextlib.contextmanager
def input_pipeline_errors(data_flag: str):
    """A failure inside tf.data (a file that cannot be decoded, a shape that cannot be batched) is the
    data's fault: one line naming the data (the traceback stays behind --debug)."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001  (only TensorFlow's data errors are translated)
        if not _is_input_error(exc):
            raise
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), exc.__class__.__name__)
        raise DataError(f"--data {data_flag}: the input pipeline failed: {first[:300]} "
                        "(rerun with --debug for the traceback)") from exc


def _is_input_error(exc: BaseException) -> bool:
    cls = type(exc)
    if not cls.__module__.startswith("tensorflow"):
        return False
    return keras.config.backend() != "tensorflow" or "IteratorGetNext" in str(exc) or "Iterator" in cls.__name__


def evaluate_dataset(task: Task, model, data, ds, cfg, report=None) -> dict:
    """Keras metrics plus the task's whole-split metrics on one unbatched dataset."""
    with input_pipeline_errors(cfg.data):
        results = model.evaluate(stream.eval_stream(ds, batch_size=cfg.batch_size, batch=_batcher(data, cfg.batch_size)),
                                 return_dict=True, verbose=0)
        results = {k: float(v) for k, v in results.items()}
        if task.split_metrics is not None:
            computed = task.split_metrics.compute(model, ds, cfg, data.info, report or (lambda text: None))
            results.update({k: float(v) for k, v in computed.items()})
    return results


def evaluate_best_on_test(task: Task, model, data, cfg, run_dir: Path, checkpointer) -> dict:
    """Once, after training: the best-on-validation checkpoint on the test split (final weights restored)."""
    best = run_dir / rundir.CHECKPOINTS / "best.weights.h5"
    # A weights file carries the optimizer's state too: keep both to put the final state back.
    variables = list(model.weights) + (list(model.optimizer.variables) if model.optimizer is not None else [])
    final = [keras.ops.convert_to_numpy(v) for v in variables]
    which = "final"
    if best.exists():
        model.load_weights(best)
        which = "best"
    try:
        metrics = evaluate_dataset(task, model, data, data.test, cfg)
    finally:
        for var, value in zip(variables, final):
            var.assign(value)
    return {"checkpoint": which, "epoch": checkpointer.best_epoch if which == "best" else None,
            "examples": data.info.num_test, "source": data.info.splits.get("test", "test split"), **metrics}


def build_compiled_model(task: Task, cfg, info: DataInfo, total_steps: int) -> keras.Model:
    return build_and_compile(task, cfg, info, total_steps)[0]


def build_and_compile(task: Task, cfg, info: DataInfo, total_steps: int) -> tuple[keras.Model, list]:
    """The task's model, compiled; also the metric objects it was compiled with (they carry directions)."""
    keras.utils.set_random_seed(cfg.seed)
    model = build_with_precision(task, cfg, info)
    optimizer = finetune.scale_backbone_lr(make_optimizer(cfg, total_steps), model, cfg)
    metrics = task.metrics(cfg, info) if task.metrics is not None else []
    if task.compile is not None:
        task.compile(model, cfg, info, optimizer)
    else:
        model.compile(optimizer=optimizer, loss=task.loss(cfg, info) if task.loss is not None else None,
                      metrics=metrics, jit_compile=cfg.jit_compile, steps_per_execution=cfg.steps_per_execution)
    if getattr(model, "steps_per_execution", 1) != cfg.steps_per_execution:
        raise UserError(f"--set steps_per_execution={cfg.steps_per_execution}: task {task.name!r} compiles "
                        "its own train step and does not support it (use 1)")
    return model, metrics


def best_metric_of(task: Task, cfg, model, compiled_metrics: list) -> tuple[str, bool]:
    """The validated best metric and whether it is minimised (fails before the first step if unknown)."""
    split = task.split_metrics.directions if task.split_metrics is not None else {}
    return resolve_best_metric(cfg.best_metric or task.best_metric, logged_directions(model, compiled_metrics, split))


def build_with_precision(task: Task, cfg, info: DataInfo) -> keras.Model:
    """Build the model under `cfg.precision`: layers keep the dtype policy they were built with, so
    the global policy is restored at once (nothing leaks into the next model in this process).
    Under mixed_float16, compile(auto_scale_loss=True) wraps the optimizer in a LossScaleOptimizer,
    which only Keras' own train step applies: a model with its own train_step is refused."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(cfg.precision)
    try:
        model = task.build_model(cfg, info)
    finally:
        keras.config.set_dtype_policy(previous)
    if cfg.precision == "mixed_float16" and type(model).train_step is not keras.Model.train_step:
        raise UserError(f"--set precision=mixed_float16: task {task.name!r} has its own train step, which "
                        "does not scale the loss; use mixed_bfloat16 or float32")
    return model


def check_steps_per_execution(cfg, steps_per_epoch: int) -> None:
    """Keras pulls steps_per_execution batches per call: a remainder would run into the next epoch."""
    n = cfg.steps_per_execution
    if steps_per_epoch % n:
        divisors = [d for d in range(1, steps_per_epoch + 1) if steps_per_epoch % d == 0]
        raise UserError(f"--set steps_per_execution={n}: must divide the {steps_per_epoch} training steps per "
                        f"epoch; choose one of {', '.join(map(str, divisors))} (or change batch_size)")


def prepare_model(task: Task, model, data, cfg) -> None:
    """Run the task's one-off `prepare` hook on a fresh model; record what it reports in the info."""
    if task.prepare is not None:
        data.info.extra.update(task.prepare(model, data, cfg) or {})


def _batcher(data, batch_size):
    return None if data.batch is None else (lambda d: data.batch(d, batch_size))


def save_data_info(run_dir: Path, info: DataInfo) -> None:
    rundir.write_json(run_dir / rundir.DATA_INFO, dataclasses.asdict(info))


def load_data_info(run_dir: Path) -> DataInfo:
    return data_info_from_dict(rundir.read_json(run_dir / rundir.DATA_INFO))


def load_run_config(task: Task, run_dir: Path):
    saved = rundir.read_json(run_dir / rundir.CONFIG)
    if saved.get("task") != task.name:
        raise UserError(f"--run-dir {run_dir}: holds a {saved.get('task')!r} run, not {task.name!r}")
    return config_from_dict(task, saved["config"]), saved


def peak_memory() -> dict:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {"peak_rss_mb": round(rss / 1024 if sys.platform != "darwin" else rss / 2**20, 1)}
    try:
        if keras.config.backend() == "jax":
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            if "peak_bytes_in_use" in stats:
                out["device_peak_mb"] = round(stats["peak_bytes_in_use"] / 2**20, 1)
        else:
            import tensorflow as tf

            if tf.config.list_physical_devices("GPU"):
                out["device_peak_mb"] = round(tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20, 1)
    except Exception:  # memory reporting is best effort on exotic devices
        pass
    return out


def load_checked_weights(model, path: Path, flag: str, with_optimizer: bool) -> None:
    """Load a .weights.h5 only if its variables are exactly this model's (names and shapes), else one
    line. The file is read as arrays (h5py, Keras' load_weights): nothing is unpickled or executed."""
    path = Path(path)
    if not path.name.endswith(".weights.h5"):
        raise UserError(f"{flag} {path}: expected a .weights.h5 file written by this project "
                        "(a checkpoint or compare's initial.weights.h5)")
    try:
        theirs = checkpoints.weights_layout(path)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(f"{flag} {path}: not a readable HDF5 weights file ({str(exc).splitlines()[0][:120]})") from None
    with tempfile.TemporaryDirectory() as tmp:
        own = Path(tmp) / "own.weights.h5"
        model.save_weights(own)
        ours = checkpoints.weights_layout(own)
    mismatch = checkpoints.layout_mismatch(theirs, ours, with_optimizer)
    if mismatch:
        raise UserError(f"{flag} {path}: not a weights file of this model ({mismatch})")
    try:
        model.load_weights(path)
    except (ValueError, KeyError, OSError) as exc:
        raise UserError(f"{flag} {path}: cannot be loaded into this model ({str(exc).splitlines()[0][:160]})") from None


def fit(task: Task, cfg, run_dir: Path, **options) -> FitResult:
    """`_fit_on` the devices `cfg.distribute` asks for: the whole run (building, compiling, restoring,
    training, evaluating, saving) inside the distribution engine's scope (training/distribute.py)."""
    plan = distribute.plan(cfg)
    print(plan.summary_line(), flush=True)
    with plan.scope():
        return _fit_on(plan, task, plan.adapt(cfg), run_dir, **options)


def _fit_on(plan: distribute.Plan, task: Task, cfg, run_dir: Path, *, resume: bool | dict = False,
            initial_weights: Path | None = None, verbose="auto", extra_callbacks: Sequence = (),
            evaluate_test: bool = True) -> FitResult:
    """Train `task` with `cfg`, writing the run directory contract into `run_dir`.

    `resume` is True (continue from the newest intact checkpoint) or that checkpoint's record
    (`training.checkpoints.resume_point`). `extra_callbacks` run after the engine's own each epoch
    (`tune`'s pruning reporter, benchmarks, tests). With `evaluate_test=False` (a search: only
    validation may guide it) the test split is dropped before training and never read;
    metrics.json then holds `"test": null`.
    """
    wall_start = time.perf_counter()
    run_dir = rundir.prepare_run_dir(Path(run_dir))
    backend = keras.config.backend()
    cache_watch = compile_cache.CacheWatch(backend)
    data = build_data(task, cfg)
    if not evaluate_test:
        data.test = None
    info = data.info
    steps = stream.steps_per_epoch(info.num_train, cfg.batch_size)
    check_steps_per_execution(cfg, steps)
    model, compiled_metrics = build_and_compile(task, cfg, info, steps * cfg.epochs)
    plan.prepare_model(model)
    best_metric, minimise = best_metric_of(task, cfg, model, compiled_metrics)

    state, history, initial_loss = None, [], None
    if resume:
        state = resume if isinstance(resume, dict) else _resume_point(run_dir)
        history = [h for h in _read_history(run_dir) if h["step"] <= state["global_step"]]
        model.optimizer.build(model.trainable_variables)
        load_checked_weights(model, run_dir / rundir.CHECKPOINTS / state["weights"], "--resume", with_optimizer=True)
    else:
        if initial_weights is not None:
            load_checked_weights(model, initial_weights, "--init-weights", with_optimizer=False)
        else:
            prepare_model(task, model, data, cfg)
        initial_loss = _initial_loss(model, data, cfg) if initial_weights is not None else None
        rundir.write_json(run_dir / rundir.CONFIG, {
            "task": task.name, "backend": backend, "config": cfg.to_dict(),
            "command": " ".join(sys.argv)})
        save_data_info(run_dir, info)

    timer = StepTimer(cfg.batch_size)
    guard = Guard()
    checkpointer = Checkpointer(
        run_dir, guard=guard, steps_per_epoch=steps, keep=cfg.keep_checkpoints,
        best_metric=best_metric, minimise=minimise, every_steps=cfg.checkpoint_every_steps,
        history=history, best=state.get("best_value") if state else None,
        best_epoch=state.get("best_epoch") if state else None)
    # Whole-split metrics run before the Checkpointer and TensorBoard: what they add to the epoch logs
    # (e.g. detection mAP) lands in history.json, metrics.json, TensorBoard and the best checkpoint.
    split = [SplitMetricsCallback(task.split_metrics, data, cfg)] if task.split_metrics is not None else []
    stopper = EarlyStopping(checkpointer, cfg.patience, cfg.epochs)
    callbacks = [timer, guard, *split, checkpointer, stopper,
                 _tensorboard(task, cfg, data, run_dir, timer, backend, steps), *profiling.profilers(cfg, run_dir),
                 *extra_callbacks]
    sieve = compile_cache.quiet_cache_loads(backend)
    if sieve is not None:  # from the first step to the end of the first epoch, where compiled programs are loaded
        callbacks = [keras.callbacks.LambdaCallback(on_train_begin=lambda logs: sieve.start()), *callbacks,
                     keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: sieve.stop())]

    val = stream.eval_stream(data.val, batch_size=cfg.batch_size, batch=_batcher(data, cfg.batch_size))
    start_epoch = state["epoch"] if state else 0
    skip = state["step_in_epoch"] if state else 0
    segments = []  # (first epoch, batches to skip, end epoch, steps per epoch)
    if skip:
        segments.append((start_epoch, skip, start_epoch + 1, steps - skip))
        start_epoch += 1
    if start_epoch < cfg.epochs:
        segments.append((start_epoch, 0, cfg.epochs, steps))
    segments = finetune.split_at_unfreeze(segments, cfg)
    try:
        for first, skip_batches, end, n_steps in segments:
            train = stream.training_stream(
                data.train, num_examples=info.num_train, batch_size=cfg.batch_size, seed=cfg.seed,
                start_epoch=first, end_epoch=end, skip_batches=skip_batches, augment=data.augment,
                batch=_batcher(data, cfg.batch_size))
            if cfg.prestage:
                train = stream.prestaged(train)
            finetune.enter_phase(model, cfg, first)
            with input_pipeline_errors(cfg.data):
                model.fit(train, validation_data=val, epochs=end, initial_epoch=first, steps_per_epoch=n_steps,
                          callbacks=callbacks, verbose=_verbosity(verbose), shuffle=False)
            if model.stop_training:
                break
    finally:
        guard.on_train_end()  # a run stopped by an exception (a full disk) gives the signals back too
        finetune.unfreeze(model)
        if sieve is not None:
            sieve.stop()

    if guard.nan_step is not None:
        raise TrainingError(
            f"loss became NaN/Inf at step {guard.nan_step}; stopped. The last good checkpoint is in "
            f"{run_dir / rundir.CHECKPOINTS} (lower --set learning_rate=... and resume or restart)")
    if guard.signal_name is not None:
        raise Interrupted(f"{guard.signal_name}: checkpoint saved at step {checkpointer._global_step()}; resume with: "
                          f"python cli.py fit --resume {run_dir}", guard.signal_name)

    with rundir.disk_full_is_an_error(run_dir / rundir.MODEL, then=f"the checkpoints are intact: free space, "
                                      f"then python cli.py fit --resume {run_dir}"):
        rundir.save_keras_atomically(model, run_dir / rundir.MODEL)
    test = evaluate_best_on_test(task, model, data, cfg, run_dir, checkpointer) if data.test is not None else None
    metrics = _final_metrics(task, cfg, backend, checkpointer, timer, wall_start, resume, state)
    metrics["test"] = test
    metrics["splits"] = {"train": info.num_train, "validation": info.num_val, "test": info.num_test,
                         "origin": info.splits}
    metrics["initial_loss"] = initial_loss
    metrics["early_stopped"] = stopper.stopped
    metrics["compile"] = cache_watch.summary(timer.compile_s)
    metrics["profile"] = profiling.traces(run_dir) or None
    metrics["distribution"] = plan.describe()
    rundir.write_json(run_dir / rundir.METRICS, metrics)
    rundir.write_json(run_dir / STEPS, {"step_s": timer.step_times, "loss": timer.losses})
    return FitResult(run_dir, metrics, model)


STEPS = "steps.json"  # raw per-step times and losses (compare plots them)


def _initial_loss(model, data, cfg) -> float:
    """Inference-mode loss of the first training batch: equal across backends for equal weights."""
    first = stream.training_stream(data.train, num_examples=data.info.num_train, batch_size=cfg.batch_size,
                                   seed=cfg.seed, end_epoch=1, batch=_batcher(data, cfg.batch_size))
    x, y = next(iter(first.take(1).as_numpy_iterator()))
    return float(model.evaluate(x, y, batch_size=cfg.batch_size, verbose=0, return_dict=True)["loss"])


def _verbosity(verbose):
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return verbose


def _resume_point(run_dir: Path) -> dict:
    state, note = checkpoints.resume_point(run_dir / rundir.CHECKPOINTS)
    if note:
        print(f"warning: {note}", file=sys.stderr, flush=True)
    return state


def _read_history(run_dir: Path) -> list:
    path = run_dir / rundir.HISTORY
    return rundir.read_json(path) if path.exists() else []


def _tensorboard(task, cfg, data, run_dir, timer, backend, steps):
    visualize = None
    if task.visualize is not None:
        n = task.visualize_examples
        batch = stream.first_batch(data.val, batch_size=n if n > 32 else min(cfg.batch_size, n), batch=_batcher(data, n))
        visualize = lambda model: task.visualize(model, batch, data.info, cfg)  # noqa: E731
    hparams = {"task": task.name, "backend": backend, "jit_compile": cfg.jit_compile,
               "batch_size": cfg.batch_size, "learning_rate": cfg.learning_rate, "model": cfg.model,
               "epochs": cfg.epochs, "seed": cfg.seed, "data": cfg.data}
    return TensorBoardLogger(run_dir, every_steps=cfg.log_every_steps, timer=timer, hparams=hparams,
                             visualize=visualize, steps_per_epoch=steps)


def _validation_of(row: dict) -> dict:
    """The validation metrics of one history row, without their val_ prefix."""
    return {k[4:]: v for k, v in row.items() if k.startswith("val_")}


def _epoch_validation(history: list, epoch) -> dict:
    return _validation_of(next((h for h in history if h["epoch"] == epoch), {}))


def _final_metrics(task, cfg, backend, checkpointer, timer, wall_start, resumed, state) -> dict:
    history = checkpointer.history
    last = history[-1] if history else {}
    train = {k: v for k, v in last.items() if k not in ("epoch", "step") and not k.startswith("val_")}
    validation = _validation_of(last)
    timing = timer.summary()
    timing["wall_s"] = time.perf_counter() - wall_start
    return {
        "task": task.name,
        "backend": backend,
        "jit_compile": cfg.jit_compile,
        "epochs_completed": last.get("epoch", 0),
        "global_step": last.get("step", 0),
        "train": train,
        "validation": validation,
        "best": {"metric": checkpointer.best_metric, "direction": "down" if checkpointer.minimise else "up",
                 "value": checkpointer.best, "epoch": checkpointer.best_epoch,
                 "validation": _epoch_validation(history, checkpointer.best_epoch)},
        "timing": timing,
        "first_loss": timer.first_loss,
        "memory": peak_memory(),
        "versions": backend_mod.library_versions(),
        "resumed_from_step": state["global_step"] if resumed and state else None,
        "history": history,
    }
