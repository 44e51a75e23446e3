#!/usr/bin/env python
"""Every task's default run on both backends, side by side: how long until the model is good.

For each task (or the `--tasks` subset) and each backend, one `python cli.py fit` in its own process
(same config, seed and data on both backends), then per run: wall time from the command's start to
the end of the first epoch whose validation metric reaches the task's target (read from the run's
TensorBoard validation events), the final validation metric, compile time (and whether the
compilation cache was cold or warm), median step time, examples/s and peak memory. Writes
suite.json and suite.md (the Markdown table, also printed) into `--out`.

  python benchmarks/suite.py                                    # every task, default runs (long)
  python benchmarks/suite.py --tasks classification,segmentation --preset debug
  python benchmarks/suite.py --tasks segmentation --target segmentation=mean_iou:0.8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The validation metric (without val_) and the value each task's default run must reach, from the
# acceptance figures of the task issues; a task missing here is timed without a target.
TARGETS = {
    "classification": ("accuracy", 0.99),
    "segmentation": ("mean_iou", 0.80),
}


def parse_targets(pairs: list[str]) -> dict:
    targets = dict(TARGETS)
    for pair in pairs:
        try:
            task, rest = pair.split("=", 1)
            metric, value = rest.rsplit(":", 1)
            targets[task] = (metric.removeprefix("val_"), float(value))
        except ValueError:
            sys.exit(f"error: --target {pair!r}: expected TASK=METRIC:VALUE, e.g. segmentation=mean_iou:0.8")
    return targets


def epoch_times(run_dir: Path, metric: str) -> list[tuple[float, float]]:
    """(event wall time, value) of the validation metric at each epoch end, in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    events = EventAccumulator(str(run_dir / "validation"), size_guidance={"tensors": 0, "scalars": 0})
    events.Reload()
    tag = f"epoch/{metric}"
    if tag not in events.Tags().get("tensors", []):
        return []
    rows = sorted(events.Tensors(tag), key=lambda e: e.step)
    return [(e.wall_time, float(tensor_util.make_ndarray(e.tensor_proto))) for e in rows]


def time_to_target(times: list[tuple[float, float]], started: float, target: float, minimise: bool) -> float | None:
    """Seconds from the command's start to the first epoch end whose value reaches the target."""
    for wall, value in times:
        if (value <= target) if minimise else (value >= target):
            return wall - started
    return None


def run_one(task: str, backend: str, fit_args: list[str], out: Path, target, timeout: float) -> dict:
    run_dir = out / task / backend
    cmd = [sys.executable, str(ROOT / "cli.py"), "--backend", backend, "fit", "--task", task, *fit_args,
           "--run-dir", str(run_dir), "--quiet"]
    print(f"\n=== {task} on {backend}: python cli.py {' '.join(cmd[2:])}", flush=True)
    log = out / task / f"{backend}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    try:
        with open(log, "w") as f:
            proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        code = "timeout"
    wall = time.time() - started
    row = {"task": task, "backend": backend, "run_dir": str(run_dir), "command_wall_s": wall}
    metrics_path = run_dir / "metrics.json"
    if code != 0 or not metrics_path.exists():
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        row.update(status="failed", error=f"exit {code}: {(lines or ['no output'])[-1][:200]}")
        print(f"    FAILED: {row['error']}", flush=True)
        return row
    m = json.loads(metrics_path.read_text())
    t, best = m["timing"], m.get("best") or {}
    metric, goal = target if target else (best.get("metric", "").removeprefix("val_"), None)
    minimise = best.get("direction") == "down" if best.get("metric", "").removeprefix("val_") == metric else False
    times = epoch_times(run_dir, metric) if metric else []
    row.update(status="ok", metric=metric, target=goal, final=m["validation"].get(metric),
               time_to_target_s=time_to_target(times, started, goal, minimise) if goal is not None else None,
               epochs=m.get("epochs_completed"), compile_s=(m.get("compile") or {}).get("compile_s", t["compile_s"]),
               compile_cache=(m.get("compile") or {}).get("cache"), step_s=t["step_s"],
               examples_per_s=t["examples_per_s"], fit_wall_s=t["wall_s"],
               peak_rss_mb=(m.get("memory") or {}).get("peak_rss_mb"), versions=m.get("versions"))
    print(f"    ok: {metric} {row['final']}, to target {row['time_to_target_s']}, {t['step_s'] * 1e3:.1f} ms/step", flush=True)
    return row


def _f(v, spec):
    return "-" if v is None else format(v, spec)


def markdown(rows: list[dict]) -> str:
    head = ["task", "backend", "metric (target)", "time to target s", "final", "command wall s", "compile s (cache)",
            "step ms", "examples/s", "peak RSS MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['task']} | {r['backend']} | FAILED: {r['error']} |" + " |" * (len(head) - 3))
            continue
        reached = _f(r["time_to_target_s"], ".0f") if r["target"] is not None and r["time_to_target_s"] is not None \
            else ("not reached" if r["target"] is not None else "-")
        lines.append("| " + " | ".join([
            r["task"], r["backend"], f"{r['metric']} ({_f(r['target'], 'g')})", reached, _f(r["final"], ".4f"),
            _f(r["command_wall_s"], ".0f"), f"{_f(r['compile_s'], '.1f')} ({r['compile_cache'] or '-'})",
            _f(r["step_s"] and r["step_s"] * 1e3, ".1f"), _f(r["examples_per_s"], ".0f"), _f(r["peak_rss_mb"], ".0f"),
        ]) + " |")
    return "\n".join(lines)


def machine() -> dict:
    from training.auto_backend import machine_key

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {**machine_key(), "load_average_at_start": load}


def main(argv=None) -> int:
    from tasks.base import all_tasks

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", help="comma-separated task names (default: every registered task)")
    p.add_argument("--backends", default="tensorflow,jax")
    p.add_argument("--preset", help="run every task with this preset (e.g. debug) instead of its default run")
    p.add_argument("--epochs", type=int)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to every fit")
    p.add_argument("--target", action="append", default=[], metavar="TASK=METRIC:VALUE",
                   help="target for a task (validation metric without val_). Example: --target classification=accuracy:0.98")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per run (default 3600)")
    p.add_argument("--out", help="output folder (default: tensorboard_logs/suite/<time>)")
    args = p.parse_args(argv)

    names = [t.name for t in all_tasks()]
    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else names
    unknown = [t for t in tasks if t not in names]
    if unknown:
        sys.exit(f"error: --tasks: unknown {', '.join(unknown)}; valid tasks: {', '.join(names)}")
    targets = parse_targets(args.target)
    fit_args = (["--preset", args.preset] if args.preset else []) + (["--epochs", str(args.epochs)] if args.epochs else [])
    for pair in args.set:
        fit_args += ["--set", pair]
    out = Path(args.out) if args.out else ROOT / "tensorboard_logs" / "suite" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    info = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "fit_args": fit_args}
    rows = [run_one(task, backend, fit_args, out, targets.get(task), args.timeout)
            for task in tasks for backend in args.backends.split(",")]
    table = markdown(rows)
    (out / "suite.json").write_text(json.dumps({**info, "runs": rows}, indent=2))
    (out / "suite.md").write_text(f"{table}\n\nmachine: {json.dumps(info['machine'])}; started {info['started']}\n")
    print("\n" + table)
    print(f"\nwritten: {out / 'suite.md'}, {out / 'suite.json'}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
