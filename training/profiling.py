"""`--set profile_steps=A,B`: a profiler trace of training steps A..B (1-based, inclusive) on either
backend, written where TensorBoard's Profile tab (the XProf plugin, `pip install -e ".[profile]"`)
finds it: RUN_DIR/train/plugins/profile/<time>/*.xplane.pb (the "train" run, as Keras' TensorBoard
callback does). TensorFlow's profiler or `jax.profiler`, chosen once for the running backend."""

from __future__ import annotations

from pathlib import Path

import keras

TRACE_DIR = "train"  # the TensorBoard run the trace belongs to, next to the train scalars


def _start(log_dir: str) -> None:
    if keras.config.backend() == "jax":
        import jax

        jax.profiler.start_trace(log_dir)
    else:
        import tensorflow as tf

        tf.profiler.experimental.start(log_dir)


def _stop() -> None:
    if keras.config.backend() == "jax":
        import jax

        jax.profiler.stop_trace()
    else:
        import tensorflow as tf

        tf.profiler.experimental.stop()


class StepProfiler(keras.callbacks.Callback):
    """Starts the trace before global step `first` and stops it after step `last` (or at train end)."""

    def __init__(self, run_dir: Path, first: int, last: int):
        super().__init__()
        self.log_dir = Path(run_dir) / TRACE_DIR
        self.first, self.last = first, last
        self._step = 0
        self._tracing = False
        self.traced: tuple[int, int] | None = None

    def on_train_begin(self, logs=None):
        self._step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_batch_begin(self, batch, logs=None):
        if not self._tracing and self.traced is None and self.first <= self._step + 1 <= self.last:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            _start(str(self.log_dir))
            self._tracing, self._from = True, self._step + 1

    def on_train_batch_end(self, batch, logs=None):
        self._step += getattr(self.model, "steps_per_execution", 1) or 1
        if self._tracing and self._step >= self.last:
            self.stop()

    def on_train_end(self, logs=None):
        self.stop()

    def stop(self) -> None:
        if self._tracing:
            _stop()
            self._tracing = False
            self.traced = (self._from, self._step)


def profilers(cfg, run_dir: Path) -> list:
    """The callbacks for cfg.profile_steps (none when it is empty)."""
    steps = tuple(cfg.profile_steps)
    return [StepProfiler(run_dir, steps[0], steps[-1])] if steps else []


def traces(run_dir: Path) -> list[str]:
    """The trace files a run holds (relative to the run directory)."""
    root = Path(run_dir) / TRACE_DIR / "plugins" / "profile"
    return sorted(str(p.relative_to(run_dir)) for p in root.glob("*/*.xplane.pb")) if root.is_dir() else []
