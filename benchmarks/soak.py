"""Soak: many short epochs through the one fit path; resident memory and open files per epoch.

    python benchmarks/soak.py                       # both backends, 60 epochs each, own process each
    python benchmarks/soak.py --backends jax --epochs 80

Each epoch runs everything a long run repeats: training steps, validation, TensorBoard scalars and
pictures, history.json and a checkpoint. Prints RSS (MB) and open file descriptors at epochs 1, 5,
10, 20, ..., the last, and the ratios last / epoch 5 (the promise: RSS within 10%, fds flat).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = {"num_train": 128, "num_val": 32, "num_test": 32, "batch_size": 32, "width": 8, "log_every_steps": 2,
        "warmup_steps": 0, "dropout": 0.0}


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def one_backend(epochs: int) -> list[dict]:
    """In this process (KERAS_BACKEND already set): fit `epochs` tiny epochs, sample after each."""
    sys.path.insert(0, str(ROOT))
    from training.backend import select_backend

    select_backend(os.environ["KERAS_BACKEND"])
    import keras

    from tasks.base import get_task, resolve_config
    from training.loop import fit

    samples: list[dict] = []

    class Sampler(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            samples.append({"epoch": epoch + 1, "rss_mb": rss_mb(), "fds": open_fds()})

    task = get_task("classification")
    cfg = resolve_config(task, None, {"epochs": epochs}, [f"{k}={v!r}" for k, v in TINY.items()])
    with tempfile.TemporaryDirectory() as tmp:
        fit(task, cfg, Path(tmp) / "run", verbose=0, extra_callbacks=(Sampler(),))
    return samples


def report(backend: str, samples: list[dict]) -> str:
    by_epoch = {s["epoch"]: s for s in samples}
    last = samples[-1]["epoch"]
    shown = sorted({1, 5, *range(10, last, 10), last} & by_epoch.keys())
    lines = [f"{backend}: epoch  " + "  ".join(f"{e:>6}" for e in shown),
             f"{backend}: RSS MB " + "  ".join(f"{by_epoch[e]['rss_mb']:6.0f}" for e in shown),
             f"{backend}: fds    " + "  ".join(f"{by_epoch[e]['fds']:6d}" for e in shown)]
    ratio = by_epoch[last]["rss_mb"] / by_epoch[5]["rss_mb"]
    lines.append(f"{backend}: RSS epoch {last} / epoch 5 = {ratio:.3f}; fds epoch {last} - epoch 5 = "
                 f"{by_epoch[last]['fds'] - by_epoch[5]['fds']:+d}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_backend(args.epochs)))
        return 0
    failed = False
    for backend in args.backends.split(","):
        env = dict(os.environ, KERAS_BACKEND=backend)
        proc = subprocess.run([sys.executable, __file__, "--child", "--epochs", str(args.epochs)], env=env,
                              capture_output=True, text=True, cwd=ROOT)
        if proc.returncode:
            print(f"{backend}: failed\n{proc.stderr[-2000:]}")
            failed = True
            continue
        samples = json.loads(proc.stdout.strip().splitlines()[-1])
        print(report(backend, samples), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
