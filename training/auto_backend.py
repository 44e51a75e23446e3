"""`fit --backend auto`: probe both backends on the run's own model and data, keep the faster.

Each backend runs in its own process (a process holds one backend): it builds the run's data and
model exactly as fit does, compiles the train step (with the run's step count, so the winner's
real run loads that compiled step from the compilation cache), then times PROBE_STEPS steps. The
backend with the lower median step time wins; the figures and the reason are printed and go into
metrics.json. The decision is cached per (task, model, config that shapes the step, batch,
machine, library versions) in `backend-auto.json` next to the compilation cache, so a repeated
run does not probe again (delete the file, or the entry, to probe again).

This module imports no keras: the parent process has not chosen its backend yet.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from errors import UserError

BACKENDS = ("tensorflow", "jax")
PROBE_STEPS = 10  # timed train steps per backend, after the compiling one
CACHE_FILE = "backend-auto.json"
ROOT = Path(__file__).resolve().parents[1]
# Config keys that do not change what one train step costs: a run differing only in these reuses the decision.
COST_NEUTRAL_KEYS = ("epochs", "seed", "learning_rate", "weight_decay", "warmup_steps", "log_every_steps",
                     "max_train_examples", "max_val_examples", "checkpoint_every_steps", "keep_checkpoints",
                     "best_metric", "patience", "val_fraction", "compile_cache", "clipnorm", "profile_steps")


@dataclass
class ProbeResult:
    """One backend's probe: median step time after compilation, or why it failed."""

    backend: str
    step_s: Optional[float] = None
    compile_s: Optional[float] = None
    steps: int = 0
    input_shapes: Optional[str] = None
    error: Optional[str] = None


Probe = Callable[[str, str, dict], ProbeResult]  # (backend, task name, config dict) -> result


def decide(results: dict[str, ProbeResult]) -> tuple[str, str]:
    """The faster backend and a one-line reason; a backend whose probe failed is never chosen."""
    ok = {b: r for b, r in results.items() if r.error is None and r.step_s}
    if not ok:
        why = "; ".join(f"{b}: {r.error}" for b, r in results.items())
        raise UserError(f"--backend auto: no backend could run a probe step ({why})")
    figures = ", ".join(f"{b} {r.step_s * 1e3:.1f} ms/step" for b, r in sorted(ok.items()))
    best = min(ok, key=lambda b: ok[b].step_s)
    failed = [b for b in results if b not in ok]
    if failed:
        return best, f"{best} ({figures}); {', '.join(failed)} failed: {results[failed[0]].error}"
    others = [b for b in ok if b != best]
    if not others:
        return best, f"{best} ({figures})"
    ratio = ok[others[0]].step_s / ok[best].step_s
    return best, f"{best} is {ratio:.2f}x faster per train step ({figures}, median of {ok[best].steps} steps after compilation)"


def machine_key() -> dict:
    """What makes one machine's timings differ from another's (no keras import)."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.system(), "cuda_visible_devices": gpus}


def decision_key(task_name: str, cfg: dict) -> tuple[str, dict]:
    """A stable key for (task, model, shapes, batch, machine, versions): the config without cost-neutral keys."""
    import importlib.metadata

    versions = {}
    for pkg in ("keras", "tensorflow", "jax", "jaxlib"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            pass
    what = {"task": task_name, "config": {k: v for k, v in sorted(cfg.items()) if k not in COST_NEUTRAL_KEYS},
            "machine": machine_key(), "versions": versions}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16], what


def choose(task_name: str, cfg: dict, cache_file: Path, probe: Probe | None = None,
           say: Callable[[str], None] = print) -> dict:
    """The decision record for this run: cached if this key was probed before, else probed now."""
    key, what = decision_key(task_name, cfg)
    cached = _read(cache_file).get(key)
    if cached is not None:
        say(f"backend auto: {cached['backend']} (decided {cached['decided_at']}: {cached['reason']}; "
            f"cached in {cache_file})")
        return {**cached, "cached": True}
    probe = probe or probe_in_subprocess
    results = {}
    for backend in BACKENDS:
        say(f"backend auto: probing {backend} ({PROBE_STEPS} train steps after compilation)...")
        results[backend] = probe(backend, task_name, cfg)
    backend, reason = decide(results)
    record = {"backend": backend, "reason": reason, "decided_at": time.strftime("%Y-%m-%d %H:%M:%S"),
              "probe": {b: vars(r) for b, r in results.items()}, "key": key, "keyed_on": what}
    _write(cache_file, key, record)
    say(f"backend auto: {reason} -> {backend}")
    return {**record, "cached": False}


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _write(path: Path, key: str, record: dict) -> None:
    from training import rundir  # atomic JSON write; imports no keras

    path.parent.mkdir(parents=True, exist_ok=True)
    rundir.write_json(path, {**_read(path), key: record})


def probe_in_subprocess(backend: str, task_name: str, cfg: dict, timeout: float = 600) -> ProbeResult:
    """Run `probe_here` in a fresh process on `backend`; its last stdout line is the result."""
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    cmd = [sys.executable, "-m", "training.auto_backend", backend, task_name, json.dumps(cfg)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    except subprocess.TimeoutExpired:
        return ProbeResult(backend, error=f"probe took over {timeout:.0f} s")
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return ProbeResult(backend, error=f"exit {proc.returncode}: {tail[:200]}")
    return ProbeResult(**json.loads(lines[-1]))


def probe_here(backend: str, task_name: str, cfg_dict: dict) -> ProbeResult:
    """In this process (on `backend`): the run's data and compiled model, PROBE_STEPS timed steps."""
    from training.backend import select_backend

    select_backend(backend)
    from pipelines import stream
    from tasks.base import config_from_dict, get_task
    from training.callbacks import StepTimer
    from training.loop import _batcher, build_and_compile, build_data, prepare_model

    task = get_task(task_name)
    cfg = config_from_dict(task, cfg_dict)
    data = build_data(task, cfg)
    steps = stream.steps_per_epoch(data.info.num_train, cfg.batch_size)
    model, _ = build_and_compile(task, cfg, data.info, steps * cfg.epochs)
    prepare_model(task, model, data, cfg)
    n = (1 + PROBE_STEPS) * cfg.steps_per_execution
    train = stream.training_stream(data.train, num_examples=data.info.num_train, batch_size=cfg.batch_size,
                                   seed=cfg.seed, end_epoch=-(-n // steps) + 1, augment=data.augment,
                                   batch=_batcher(data, cfg.batch_size))
    timer = StepTimer(cfg.batch_size)
    model.fit(train, epochs=1, steps_per_epoch=n, callbacks=[timer], verbose=0, shuffle=False)
    summary = timer.summary()
    shapes = str(train.element_spec)[:300]
    return ProbeResult(backend, step_s=summary["step_s"], compile_s=summary["compile_s"],
                       steps=summary["steps_timed"], input_shapes=shapes)


if __name__ == "__main__":  # python -m training.auto_backend BACKEND TASK CONFIG_JSON (started by probe_in_subprocess)
    result = probe_here(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
    sys.stdout.write("\n" + json.dumps(vars(result)) + "\n")
