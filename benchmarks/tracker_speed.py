#!/usr/bin/env python
"""How fast does the SiamFC tracker follow an object? Frames per second per backend, side by side.

Each backend runs in its own subprocess: the tracking task's default model (freshly initialised, or
a trained run's with --run-dir: speed does not depend on the weights) tracks generated test
sequences (128x128 frames) and, when present, the real OTB sequence ../shared/data/otb/Crossing.
Printed per backend and sequence set: frames per second after the first tracked frame (which
compiles the step), the compile time, and the per-frame median. The target is >= 20 fps on 2 cores.

  python benchmarks/tracker_speed.py [--backends tensorflow,jax] [--run-dir RUN] [--sequences 4] [--no-jit]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CROSSING = ROOT.parent / "shared" / "data" / "otb" / "Crossing"


def _model(run_dir: str | None):
    from tasks.base import get_task, resolve_config

    task = get_task("tracking")
    if run_dir:
        from training.inference import load_trained_model

        model, cfg, _ = load_trained_model(task, Path(run_dir))
        return model, cfg
    from keras_models.siamese import build_siamfc

    cfg = resolve_config(task)
    return build_siamfc(cfg.model, cfg.exemplar_size, cfg.search_size), cfg


def _time_tracking(tracker, sequences) -> dict:
    compile_s, fps, frames = [], [], 0
    for seq in sequences:
        cached = [seq.frame(t) for t in range(len(seq))]  # time the tracker, not JPEG decoding
        start = time.perf_counter()
        result = tracker.track(cached, seq.boxes[0])
        total = time.perf_counter() - start
        steady = (len(seq) - 2) / result.fps
        compile_s.append(total - steady)
        fps.append(result.fps)
        frames += len(seq)
    return {"fps": sum(fps) / len(fps), "first_frame_s": compile_s[0], "frames": frames}


def worker(backend: str, run_dir: str | None, n: int, jit: bool) -> list[dict]:
    from training.backend import select_backend

    select_backend(backend)
    from dataclasses import replace

    from pipelines import sequences as seqs
    from tasks.tracking import tracker_for

    model, cfg = _model(run_dir)
    tracker = tracker_for(model, replace(cfg, jit_compile=jit))
    sets = {"generated 128x128": seqs.generate_sequences(cfg.seed, "test", n, 60, 128)}
    if CROSSING.is_dir():
        crossing = seqs.read_sequence(CROSSING)
        h, w = crossing.frame(0).shape[:2]
        sets[f"OTB Crossing {w}x{h}"] = [crossing]
    return [{"backend": backend, "jit": jit, "set": name, **_time_tracking(tracker, s)} for name, s in sets.items()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="tensorflow,jax")
    parser.add_argument("--run-dir", help="a trained tracking run (default: the default model, fresh weights)")
    parser.add_argument("--sequences", type=int, default=4, help="generated 60-frame sequences per backend")
    parser.add_argument("--no-jit", action="store_true", help="do not XLA-compile the per-frame step")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args.worker, args.run_dir, args.sequences, not args.no_jit)))
        return 0
    from training.backend import machine_description

    rows = []
    for backend in args.backends.split(","):
        cmd = [sys.executable, __file__, "--worker", backend, "--sequences", str(args.sequences)]
        cmd += (["--run-dir", args.run_dir] if args.run_dir else []) + (["--no-jit"] if args.no_jit else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode or not line:
            print(f"{backend}: FAILED\n{proc.stderr[-3000:]}")
            return 1
        rows += json.loads(line[0][7:])
    machine = machine_description()
    print(f"machine: {machine['cpu']} ({machine['cores']} cores); tracking task's default model, 3 scales")
    print(f"{'frames':<26} " + " ".join(f"{b + ' fps':>16}" for b in args.backends.split(",")) + "   first frame (compile) s")
    for name in dict.fromkeys(r["set"] for r in rows):
        per = [next(r for r in rows if r["set"] == name and r["backend"] == b) for b in args.backends.split(",")]
        print(f"{name:<26} " + " ".join(f"{r['fps']:>16.1f}" for r in per) + "   "
              + ", ".join(f"{r['backend']} {r['first_frame_s']:.1f}" for r in per))
    return 0


if __name__ == "__main__":
    sys.exit(main())
