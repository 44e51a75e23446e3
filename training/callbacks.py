"""Callbacks of the one fit path: timing, TensorBoard, checkpoints, NaN and signal guards."""

from __future__ import annotations

import math
import signal
import statistics
import time
from pathlib import Path

import keras
import numpy as np

from training import checkpoints, rundir


def current_learning_rate(optimizer) -> float:
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def steps_per_call(model) -> int:
    """Train steps between two batch-end callbacks (compile's steps_per_execution)."""
    return getattr(model, "steps_per_execution", 1) or 1


def due(model, step: int, every: int) -> bool:
    """Whether a multiple of `every` was reached by the last call (which ran steps_per_call steps)."""
    return step % every < steps_per_call(model)


class StepTimer(keras.callbacks.Callback):
    """Times training steps by wall clock between consecutive batch ends (logs are synced).

    The first step of the run includes tracing and XLA compilation and is reported alone as
    `compile_s`; the first step of every later epoch follows validation and is skipped. The
    median of the rest is `step_s`: a full step including waiting for input data. With
    steps_per_execution=N each timed call is divided by N (and compile_s/first_loss cover N steps).
    """

    def __init__(self, batch_size: int):
        super().__init__()
        self.batch_size = batch_size
        self.step_times: list[float] = []
        self.compile_s: float | None = None
        self.first_loss: float | None = None
        self.losses: list[tuple[int, float]] = []  # (global step, running epoch-mean loss)
        self._last: float | None = None
        self._train_start: float | None = None

    def on_train_begin(self, logs=None):
        self._train_start = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._last = None

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if self.compile_s is None:
            self.compile_s = now - self._train_start
            self.first_loss = float((logs or {}).get("loss", float("nan")))
        elif self._last is not None:
            self.step_times.append((now - self._last) / steps_per_call(self.model))
        self._last = now
        if logs and "loss" in logs:
            self.losses.append((int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)), float(logs["loss"])))

    @property
    def recent_examples_per_s(self) -> float:
        recent = self.step_times[-20:]
        return self.batch_size / statistics.median(recent) if recent else float("nan")

    def summary(self) -> dict:
        times = self.step_times
        out = {"compile_s": self.compile_s, "steps_timed": len(times)}
        if times:
            step = statistics.median(times)
            out.update(step_s=step, step_s_p10=float(np.percentile(times, 10)),
                       step_s_p90=float(np.percentile(times, 90)), examples_per_s=self.batch_size / step)
        else:
            out.update(step_s=None, step_s_p10=None, step_s_p90=None, examples_per_s=None)
        return out


class TensorBoardLogger(keras.callbacks.Callback):
    """Scalars every N steps and every epoch, HParams once, task pictures every epoch."""

    def __init__(self, log_dir: Path, *, every_steps: int, timer: StepTimer, hparams: dict,
                 visualize=None, steps_per_epoch: int = 1):
        super().__init__()
        from training import summaries

        self.s = summaries.Writers(log_dir)
        self.every = max(1, every_steps)
        self.timer = timer
        self.hparams = hparams
        self.visualize = visualize
        self.steps_per_epoch = steps_per_epoch

    def _step(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_begin(self, logs=None):
        self.s.hparams(self.hparams)

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        if not due(self.model, step, self.every):
            return
        values = {f"step/{k}": v for k, v in (logs or {}).items()}
        values["step/learning_rate"] = current_learning_rate(self.model.optimizer)
        eps = self.timer.recent_examples_per_s
        if not math.isnan(eps):
            values["step/examples_per_s"] = eps
        self.s.scalars("train", values, step)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        step = self._step()
        self.s.scalars("train", {f"epoch/{k}": v for k, v in logs.items() if not k.startswith("val_")}
                       | {"epoch/learning_rate": current_learning_rate(self.model.optimizer)}, step)
        self.s.scalars("validation", {f"epoch/{k[4:]}": v for k, v in logs.items() if k.startswith("val_")}, step)
        if self.visualize is not None:
            for name, value in self.visualize(self.model).items():
                self.s.any("validation", f"images/{name}" if isinstance(value, np.ndarray) else name, value, step)
        self.s.flush()

    def on_train_end(self, logs=None):
        self.s.flush()


class SplitMetricsCallback(keras.callbacks.Callback):
    """A task's whole-split metrics on the validation split, added to the epoch logs as val_<name>.

    Runs every `every_epochs` epochs and on the last; it must run before the Checkpointer and
    TensorBoard so the values reach history, the best checkpoint and the plots.
    """

    def __init__(self, split_metrics, data, cfg):
        super().__init__()
        self.split_metrics, self.data, self.cfg = split_metrics, data, cfg

    def on_epoch_end(self, epoch, logs=None):
        every = max(1, int(self.split_metrics.every_epochs(self.cfg)))
        if logs is None or not ((epoch + 1) % every == 0 or epoch + 1 >= self.cfg.epochs):
            return
        values = self.split_metrics.compute(self.model, self.data.val, self.cfg, self.data.info, lambda text: None)
        logs.update({f"val_{k}": float(v) for k, v in values.items()})


class Checkpointer(keras.callbacks.Callback):
    """Atomic checkpoints of weights + optimizer state every epoch (and every N steps).

    `checkpoints/latest.json` names the newest complete checkpoint; it is replaced only after
    the weights file is fully written, so a kill at any moment leaves a loadable checkpoint.
    """

    def __init__(self, run_dir: Path, *, guard: "Guard", steps_per_epoch: int, keep: int, best_metric: str,
                 minimise: bool, every_steps: int = 0, history: list | None = None, best: float | None = None,
                 best_epoch: int | None = None):
        super().__init__()
        self.guard = guard
        self.dir = run_dir / rundir.CHECKPOINTS
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = run_dir
        self.steps_per_epoch = steps_per_epoch
        self.keep = max(1, keep)
        self.best_metric = best_metric
        self.minimise = minimise  # from the metric's declared direction (training.directions)
        self.every_steps = every_steps
        self.history = history if history is not None else []
        self.best = best
        self.best_epoch = best_epoch
        self.epoch = 0
        self._saved_on_signal = False
        self._last_bytes: int | None = None

    def _global_step(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.guard.diverged:
            return
        if self.guard.signal_name is not None:
            if not self._saved_on_signal:
                self.save(kind="interrupt")
                self._saved_on_signal = True
        elif self.every_steps and due(self.model, self._global_step(), self.every_steps):
            self.save(kind="step")

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.diverged:  # never record or save a diverged state
            return
        if self.guard.signal_name is not None and self._global_step() % self.steps_per_epoch:
            return  # stopped mid-epoch: the interrupt checkpoint is the resume point
        logs = {k: float(v) for k, v in (logs or {}).items()}
        self.history.append({"epoch": epoch + 1, "step": self._global_step(), **logs})
        with rundir.disk_full_is_an_error(self.run_dir / rundir.HISTORY, then="the last checkpoint is intact: free "
                                          f"space, then python cli.py fit --resume {self.run_dir}"):
            rundir.write_json(self.run_dir / rundir.HISTORY, self.history)
        value = logs.get(self.best_metric)
        improved = value is not None and math.isfinite(value) and (
            self.best is None or (value < self.best if self.minimise else value > self.best))
        if improved:
            self.best, self.best_epoch = value, epoch + 1
        self.save(kind="epoch", improved=improved)

    def save(self, kind: str, improved: bool = False) -> Path:
        """weights file (fsynced, renamed), then its record, then latest.json: each step is complete on
        disk before the next names it. A full disk stops the run with one line; what was published
        before stays as it was."""
        step = self._global_step()
        epoch_done, in_epoch = divmod(step, self.steps_per_epoch)
        name = f"step-{step:08d}.weights.h5"
        path = self.dir / name
        then = f"the previous checkpoint and latest.json are intact: free space, then python cli.py fit --resume {self.run_dir}"
        with rundir.disk_full_is_an_error(path, self._expected_bytes(), then):
            rundir.save_keras_atomically(self.model, path, weights_only=True)
            if improved:
                rundir.save_keras_atomically(self.model, self.dir / "best.weights.h5", weights_only=True)
            state = {"weights": name, "global_step": step, "epoch": epoch_done, "step_in_epoch": in_epoch,
                     "kind": kind, "best_metric": self.best_metric, "best_value": self.best,
                     "best_epoch": self.best_epoch, **checkpoints.digest(path),
                     "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            rundir.write_json(self.dir / checkpoints.record_name(name), state)
            rundir.write_json(self.dir / checkpoints.LATEST, state)
        self._last_bytes = state["bytes"]
        self._prune(keep_name=name)
        return path

    def _expected_bytes(self) -> int:
        """What the next checkpoint needs: the last one's size, else the variables' bytes."""
        if self._last_bytes:
            return self._last_bytes
        variables = list(self.model.weights) + list(getattr(self.model.optimizer, "variables", []))
        return int(sum(np.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables))

    def _prune(self, keep_name: str) -> None:
        ckpts = sorted(self.dir.glob("step-*.weights.h5"))
        for old in ckpts[: max(0, len(ckpts) - self.keep)]:
            if old.name != keep_name:
                (self.dir / checkpoints.record_name(old.name)).unlink(missing_ok=True)
                old.unlink(missing_ok=True)


class EarlyStopping(keras.callbacks.Callback):
    """Stops after `patience` recorded epochs without a new best for the Checkpointer's metric.

    Runs right after the Checkpointer and reads what it recorded, so "better" is the Checkpointer's
    own judgement (and a resumed run counts from the epoch that set the saved best). `stopped` is
    {"epoch": last epoch run, "best_epoch": epoch of the best (None if none)} or None.
    """

    def __init__(self, checkpointer: Checkpointer, patience: int, epochs: int):
        super().__init__()
        self.checkpointer = checkpointer
        self.patience = patience
        self.epochs = epochs  # the run's last epoch: stopping there is not early
        self.stopped: dict | None = None

    def on_epoch_end(self, epoch, logs=None):
        history = self.checkpointer.history
        if not self.patience or epoch + 1 >= self.epochs or not history or history[-1]["epoch"] != epoch + 1:
            return  # off, the last epoch anyway, or not recorded (diverged or interrupted mid-epoch)
        best = self.checkpointer.best_epoch
        if epoch + 1 - (best or 0) >= self.patience:
            self.stopped = {"epoch": epoch + 1, "best_epoch": best}
            self.model.stop_training = True
            print(f"early stopping after epoch {epoch + 1}: no better {self.checkpointer.best_metric} for "
                  f"{self.patience} epoch(s) (best epoch: {best})", flush=True)


class Guard(keras.callbacks.Callback):
    """Stops cleanly on a NaN/Inf loss or on SIGINT/SIGTERM; the loop reports which.

    It must run before the Checkpointer so that a non-finite step is never saved.
    """

    def __init__(self):
        super().__init__()
        self.nan_step: int | None = None
        self.signal_name: str | None = None
        self._previous = {}

    @property
    def diverged(self) -> bool:
        return self.nan_step is not None

    def on_train_begin(self, logs=None):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not the main thread: leave signals alone
                pass

    def _on_signal(self, signum, frame):
        if self.signal_name is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        print(f"\n{self.signal_name} received: saving a checkpoint after this step ...", flush=True)

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.nan_step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
            self.model.stop_training = True
        elif self.signal_name is not None:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
