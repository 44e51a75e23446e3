#!/usr/bin/env python
"""How much does our fit path cost over the floor, per backend, measured side by side.

For the classification model (default config) on each backend, in its own subprocess:
  floor      a hand-written XLA-jitted train step over pre-staged batches (GradientTape +
             tf.function(jit_compile=True) on TensorFlow; stateless_call + jax.jit on JAX)
  fit/pre    our fit path (model.fit + all our callbacks) on the same batches pre-staged in memory
  fit        our fit path with the real tf.data pipeline (shuffle, augmentation, prefetch)
and prints (a) fit/pre / floor = engine overhead and (b) fit / fit/pre = input-pipeline overhead.
All step times are medians of per-step wall-clock times with the loss fetched every step.

  python benchmarks/fit_overhead.py [--steps 150] [--backends tensorflow,jax]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def floor_step_time(model, loss_fn, batches, repeats: int) -> float:
    """Median step time of a minimal hand-written jitted train step on pre-staged batches."""
    import keras

    if keras.config.backend() == "jax":
        import jax

        optimizer = model.optimizer

        def compute_loss(tv, ntv, x, y):
            logits, ntv = model.stateless_call(tv, ntv, x, training=True)
            return loss_fn(y, logits), ntv

        grad_fn = jax.value_and_grad(compute_loss, has_aux=True)

        @jax.jit
        def step(state, x, y):
            tv, ntv, ov = state
            (loss, ntv), grads = grad_fn(tv, ntv, x, y)
            tv, ov = optimizer.stateless_apply(ov, grads, tv)
            return loss, (tv, ntv, ov)

        state = ([v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables],
                 [v.value for v in optimizer.variables])
        staged = [(jax.device_put(x), jax.device_put(y)) for x, y in batches]

        def run(i, state):
            loss, state = step(state, *staged[i % len(staged)])
            float(loss)
            return state
    else:
        import tensorflow as tf

        optimizer = model.optimizer

        @tf.function(jit_compile=True)
        def step(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            return loss

        staged = [(tf.constant(x), tf.constant(y)) for x, y in batches]
        state = None

        def run(i, state):
            float(step(*staged[i % len(staged)]))
            return state

    for i in range(3):  # compile + warm up
        state = run(i, state)
    times = []
    for i in range(repeats):
        t = time.perf_counter()
        state = run(i, state)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def worker(backend: str, steps: int) -> dict:
    from training.backend import select_backend

    select_backend(backend)
    import keras

    from pipelines import stream
    from tasks.base import get_task, resolve_config
    from training.loop import build_compiled_model, build_data, fit

    task = get_task("classification")
    base = ["num_val=256", "log_every_steps=1000000", "keep_checkpoints=1"]
    batch = task.config_cls().batch_size
    per_epoch = 50
    epochs = max(2, -(-steps // per_epoch))
    sets = base + [f"num_train={per_epoch * batch}", f"epochs={epochs}"]
    out = {"backend": backend, "steps_per_epoch": per_epoch, "epochs": epochs, "batch_size": batch}

    cfg = resolve_config(task, sets=sets)
    data = build_data(task, cfg)
    model = build_compiled_model(task, cfg, data.info, per_epoch * epochs)
    model.optimizer.build(model.trainable_variables)
    batches = list(stream.training_stream(data.train, num_examples=data.info.num_train, batch_size=batch,
                                          seed=0, end_epoch=1, augment=data.augment).as_numpy_iterator())
    out["floor_step_s"] = floor_step_time(model, task.loss(cfg, data.info), batches, repeats=steps)
    keras.backend.clear_session()

    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in (("fit_prestaged", ["prestage=True"]), ("fit", [])):
            cfg = resolve_config(task, sets=sets + extra)
            result = fit(task, cfg, Path(tmp) / name, verbose=0)
            out[f"{name}_step_s"] = result.metrics["timing"]["step_s"]
            out[f"{name}_steps_timed"] = result.metrics["timing"]["steps_timed"]
            keras.backend.clear_session()
    out["overhead_ratio_a"] = out["fit_prestaged_step_s"] / out["floor_step_s"]
    out["pipeline_ratio_b"] = out["fit_step_s"] / out["fit_prestaged_step_s"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150, help="timed steps per measurement")
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.steps)))
        return 0

    from training.backend import machine_description

    results = []
    for backend in args.backends.split(","):
        proc = subprocess.run([sys.executable, __file__, "--worker", backend, "--steps", str(args.steps)],
                              capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            print(f"{backend}: FAILED\n{proc.stderr[-3000:]}")
            return 1
        results.append(json.loads(line[0][7:]))
    print(f"machine: {machine_description()['cpu']} ({machine_description()['cores']} cores)")
    print(f"{'backend':<11} {'floor ms':>9} {'fit/pre ms':>11} {'fit ms':>8} {'(a) fit/pre÷floor':>18} {'(b) fit÷fit/pre':>16}")
    for r in results:
        print(f"{r['backend']:<11} {r['floor_step_s'] * 1e3:>9.2f} {r['fit_prestaged_step_s'] * 1e3:>11.2f} "
              f"{r['fit_step_s'] * 1e3:>8.2f} {r['overhead_ratio_a']:>18.3f} {r['pipeline_ratio_b']:>16.3f}")
    if len(results) == 2:
        a, b = results
        print(f"fit step time {a['backend']}/{b['backend']}: {a['fit_step_s'] / b['fit_step_s']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
