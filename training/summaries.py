"""TensorBoard event writing (tf.summary is TensorBoard's file format; no model math here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf


class Writers:
    """One event-file writer per subfolder (train/, validation/), created on first use."""

    def __init__(self, log_dir: Path):
        self.log_dir = Path(log_dir)
        self._writers: dict[str, tf.summary.SummaryWriter] = {}

    def writer(self, name: str):
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(str(self.log_dir / name))
        return self._writers[name]

    def scalars(self, split: str, values: dict, step: int) -> None:
        with self.writer(split).as_default():
            for k, v in values.items():
                tf.summary.scalar(k, float(v), step=step)

    def any(self, split: str, name: str, value, step: int) -> None:
        """An image (H, W, 3 uint8 array), a text (str) or a scalar (number)."""
        with self.writer(split).as_default():
            if isinstance(value, np.ndarray):
                tf.summary.image(name, value[None] if value.ndim == 3 else value, step=step, max_outputs=8)
            elif isinstance(value, str):
                tf.summary.text(name, value, step=step)
            else:
                tf.summary.scalar(name, float(value), step=step)

    def hparams(self, hparams: dict, name: str = "train") -> None:
        from tensorboard.plugins.hparams import api as hp

        clean = {k: (v if isinstance(v, (bool, int, float, str)) else str(v)) for k, v in hparams.items()}
        with self.writer(name).as_default():
            hp.hparams(clean, trial_id=str(self.log_dir.name))

    def flush(self) -> None:
        for w in self._writers.values():
            w.flush()


def hparams_config(log_dir: Path, domains: dict, metrics: list[str]) -> None:
    """The HParams dashboard's columns for a search: `domains` maps each hparam to (low, high) for a
    number range or a list of choices; `metrics` are scalar tags each session logs."""
    from tensorboard.plugins.hparams import api as hp

    def domain(d):
        if isinstance(d, list):
            return hp.Discrete([v if isinstance(v, (bool, int, float, str)) else str(v) for v in d])
        low, high = d
        return hp.IntInterval(low, high) if isinstance(low, int) else hp.RealInterval(float(low), float(high))

    with tf.summary.create_file_writer(str(log_dir)).as_default():
        hp.hparams_config(hparams=[hp.HParam(k, domain(d)) for k, d in domains.items()],
                          metrics=[hp.Metric(m) for m in metrics])


def hparams_session(log_dir: Path, hparams: dict, scalars: dict, trial_id: str) -> None:
    """One HParams session (a trial): its values and its result scalars at step 0."""
    from tensorboard.plugins.hparams import api as hp

    clean = {k: (v if isinstance(v, (bool, int, float, str)) else str(v)) for k, v in hparams.items()}
    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        hp.hparams(clean, trial_id=trial_id)
        for k, v in scalars.items():
            tf.summary.scalar(k, float(v), step=0)
    writer.flush()
