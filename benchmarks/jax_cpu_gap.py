#!/usr/bin/env python
"""Why is the same XLA-compiled train step slower on JAX than on TensorFlow on this CPU?

Times the train step of a task's default model (the compiled `train_on_batch` on one staged batch,
median of --steps steps after two warm-ups) in one process per variant: TensorFlow, JAX as it
ships, and JAX under each XLA:CPU option below. Variants run interleaved for --rounds rounds, so a
change in the machine's load hits all of them alike; prints each variant's median and its ratio to
TensorFlow. A variant whose flag this XLA does not know is reported as failed.

  python benchmarks/jax_cpu_gap.py [--task classification] [--steps 20] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = {  # name: (backend, XLA_FLAGS)
    "tensorflow": ("tensorflow", ""),
    "jax": ("jax", ""),
    "jax eigen single-thread": ("jax", "--xla_cpu_multi_thread_eigen=false"),
    "jax concurrency scheduler": ("jax", "--xla_cpu_enable_concurrency_optimized_scheduler=true"),
    "jax xnn fusions": ("jax", "--xla_cpu_experimental_xnn_fusion_type=XNN_FUSION_TYPE_DOT,XNN_FUSION_TYPE_ELTWISE"),
    "jax fast math": ("jax", "--xla_cpu_enable_fast_math=true"),
    "tensorflow fast math": ("tensorflow", "--xla_cpu_enable_fast_math=true"),
}


def time_steps(task_name: str, steps: int, overrides: list[str]) -> dict:
    """In this process: the task's compiled model, `steps` timed train steps on one staged batch."""
    from training.backend import select_backend

    select_backend(os.environ["KERAS_BACKEND"])
    import keras

    from pipelines import stream
    from tasks.base import get_task, resolve_config
    from training.loop import _batcher, build_and_compile, build_data, prepare_model

    task = get_task(task_name)
    cfg = resolve_config(task, None, {}, overrides)
    data = build_data(task, cfg)
    model, _ = build_and_compile(task, cfg, data.info, 1000)
    prepare_model(task, model, data, cfg)
    x, y = stream.first_batch(data.train, batch_size=cfg.batch_size, batch=_batcher(data, cfg.batch_size))
    start = time.perf_counter()
    model.train_on_batch(x, y)
    compile_s = time.perf_counter() - start
    model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        logs = model.train_on_batch(x, y, return_dict=True)
        float(keras.ops.convert_to_numpy(logs["loss"]))
        times.append(time.perf_counter() - start)
    return {"step_s": statistics.median(times), "compile_s": compile_s}


def run_variant(name: str, args) -> dict:
    backend, flags = VARIANTS[name]
    env = dict(os.environ, KERAS_BACKEND=backend, XLA_FLAGS=flags, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    sets = json.dumps(args.set)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", args.task, str(args.steps), sets]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:160]}
    return json.loads(lines[-1])


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        result = time_steps(sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]))
        print("\n" + json.dumps(result))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="classification")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for the task")
    args = p.parse_args()
    names = [n.strip() for n in args.variants.split(",")]
    results: dict[str, list] = {n: [] for n in names}
    errors = {}
    for r in range(args.rounds):
        for name in names:
            out = run_variant(name, args)
            if "error" in out:
                errors[name] = out["error"]
            else:
                results[name].append(out["step_s"])
            print(f"round {r + 1} {name}: {out}", flush=True)
    base = statistics.median(results["tensorflow"]) if results.get("tensorflow") else None
    print(f"\n| variant | XLA_FLAGS | step ms (median of rounds) | / TensorFlow |\n|---|---|---|---|")
    for name in names:
        if not results[name]:
            print(f"| {name} | `{VARIANTS[name][1]}` | failed: {errors.get(name)} | - |")
            continue
        step = statistics.median(results[name])
        ratio = f"{step / base:.2f}" if base else "-"
        print(f"| {name} | `{VARIANTS[name][1] or '-'}` | {step * 1e3:.1f} | {ratio} |")
    print(f"\nload average at the end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
