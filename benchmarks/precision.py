#!/usr/bin/env python
"""Does mixed_bfloat16 pay on this machine? float32 vs mixed_bfloat16, per task and backend.

For classification and segmentation on each backend (each backend in its own subprocess), the
same short training (`--preset small`, fewer epochs) is run once per precision through our fit
path, and printed side by side: median step time, the bfloat16 / float32 step-time ratio, and the
validation accuracy (classification) or mean IoU (segmentation) each run reaches at its last
epoch. Keeping mixed_bfloat16 as an option is worth it where it is faster and within 1 point of
float32's figure.

  python benchmarks/precision.py [--epochs 3] [--tasks classification,segmentation] [--backends tensorflow,jax]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PRECISIONS = ("float32", "mixed_bfloat16")
METRIC = {"classification": "accuracy", "segmentation": "mean_iou"}  # the validation figure compared
SETS = ["log_every_steps=1000000", "keep_checkpoints=1"]


def worker(backend: str, tasks: list[str], epochs: int) -> list[dict]:
    from training.backend import select_backend

    select_backend(backend)
    import keras

    from tasks.base import get_task, resolve_config
    from training.loop import fit

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in tasks:
            task = get_task(name)
            for precision in PRECISIONS:
                cfg = resolve_config(task, preset="small", sets=SETS + [f"epochs={epochs}", f"precision='{precision}'"])
                start = time.perf_counter()
                result = fit(task, cfg, Path(tmp) / f"{name}-{precision}", verbose=0)
                timing = result.metrics["timing"]
                rows.append({"backend": backend, "task": name, "precision": precision,
                             "step_s": timing["step_s"], "compile_s": timing["compile_s"],
                             "steps": result.metrics["global_step"], "batch_size": cfg.batch_size,
                             "metric": METRIC[name], "value": result.metrics["validation"][METRIC[name]],
                             "wall_s": time.perf_counter() - start})
                keras.backend.clear_session()
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'task':<15} {'backend':<11} {'f32 ms/step':>12} {'bf16 ms/step':>13} {'bf16÷f32':>9} "
          f"{'metric':<9} {'f32':>7} {'bf16':>7} {'Δ points':>9}")
    for r32 in (r for r in rows if r["precision"] == "float32"):
        r16 = next(r for r in rows if r["precision"] == "mixed_bfloat16"
                   and (r["task"], r["backend"]) == (r32["task"], r32["backend"]))
        print(f"{r32['task']:<15} {r32['backend']:<11} {r32['step_s'] * 1e3:>12.1f} {r16['step_s'] * 1e3:>13.1f} "
              f"{r16['step_s'] / r32['step_s']:>9.2f} {r32['metric']:<9} {r32['value']:>7.3f} {r16['value']:>7.3f} "
              f"{(r16['value'] - r32['value']) * 100:>+9.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the small preset per run")
    parser.add_argument("--tasks", default="classification,segmentation")
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    tasks = args.tasks.split(",")
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, tasks, args.epochs)))
        return 0

    from training.backend import machine_description

    rows = []
    for backend in args.backends.split(","):
        proc = subprocess.run([sys.executable, __file__, "--worker", backend, "--tasks", args.tasks,
                               "--epochs", str(args.epochs)], capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            print(f"{backend}: FAILED\n{proc.stderr[-3000:]}")
            return 1
        rows += json.loads(line[0][7:])
    machine = machine_description()
    print(f"machine: {machine['cpu']} ({machine['cores']} cores); --preset small, {args.epochs} epochs per run")
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
