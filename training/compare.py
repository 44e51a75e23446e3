"""`compare`: one task trained per (backend, jit) configuration, reported side by side.

Each configuration is a plain `fit` in its own subprocess (KERAS_BACKEND is fixed per process)
with the same config, seed and data order, starting from one set of initial weights built here
and loaded by every run, so curves are comparable from step 0. The figures are the ones `fit`
writes into each run's metrics.json: nothing is measured differently for the report.
"""

from __future__ import annotations

import json
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from errors import UserError
from training import backend as backend_mod
from training import rundir, scaling

INITIAL_LOSS_RTOL = 1e-3  # float32 forward passes on two backends agree far better than this
CLI = Path(__file__).resolve().parents[1] / "cli.py"


@dataclass(frozen=True)
class Variant:
    backend: str
    jit: bool
    devices: int = 0  # data-parallel replicas (compare --devices); 0 = as the fit flags say

    @property
    def name(self) -> str:
        return f"{self.backend}-jit-{'on' if self.jit else 'off'}" + (f"-{self.devices}dev" if self.devices else "")


def parse_variants(backends: str, jit: str, devices: str | None = None) -> list[Variant]:
    names = [b.strip() for b in backends.split(",") if b.strip()]
    for b in names:
        if b not in backend_mod.BACKENDS:
            raise UserError(f"--backends {backends}: unknown backend {b!r}; valid: {', '.join(backend_mod.BACKENDS)}")
    modes = [m.strip() for m in jit.split(",") if m.strip()]
    for m in modes:
        if m not in ("on", "off"):
            raise UserError(f"--jit {jit}: expected on, off or on,off")
    if not names or not modes:
        raise UserError("compare: needs at least one backend and one jit mode")
    counts = scaling.parse_devices(devices) or [0]
    # TensorFlow cannot XLA-compile across tf.distribute replicas: its scaling runs all go without jit.
    variants = [Variant(b, m == "on" and not (n and b == "tensorflow"), n) for m in modes for b in names for n in counts]
    return list(dict.fromkeys(variants))


def save_initial_weights(task, cfg, path: Path) -> None:
    """Build the model once (this process's backend) and save its weights for every run."""
    from training.loop import build_compiled_model, build_data, prepare_model  # keras: only once variants are valid

    data = build_data(task, cfg)
    model = build_compiled_model(task, cfg, data.info, total_steps=1)
    prepare_model(task, model, data, cfg)  # e.g. the GAN's score network: one for every run
    rundir.save_keras_atomically(model, path, weights_only=True)


def run_variant(variant: Variant, fit_args: list[str], out_dir: Path, init: Path, log: Path) -> dict:
    run_dir = out_dir / variant.name
    cmd = [sys.executable, str(CLI), "--backend", variant.backend, "fit", *fit_args, "--run-dir", str(run_dir),
           "--init-weights", str(init), "--quiet"] + ([] if variant.jit else ["--no-jit"]) + \
        (scaling.fit_args(variant.devices) if variant.devices else [])
    printable = "python cli.py " + shlex.join(cmd[2:])
    print(f"\n=== {variant.name}: {printable}", flush=True)
    start = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - start
    row = {"name": variant.name, "backend": variant.backend, "jit": variant.jit, "devices": variant.devices, "command": printable,
           "run_dir": str(run_dir), "log": str(log), "process_wall_s": wall, "returncode": proc.returncode}
    metrics_path = run_dir / rundir.METRICS
    if proc.returncode != 0 or not metrics_path.exists():
        row.update(status="failed", error=_error_line(log))
        print(f"    FAILED: {row['error']}", flush=True)
        return row
    m = json.loads(metrics_path.read_text())
    t = m["timing"]
    row.update(status="ok", backend_ran=m["backend"], first_loss=m.get("first_loss"),
               initial_loss=m.get("initial_loss"), compile_s=t["compile_s"], step_s=t["step_s"],
               step_s_p10=t["step_s_p10"], step_s_p90=t["step_s_p90"], steps_timed=t["steps_timed"],
               examples_per_s=t["examples_per_s"], fit_wall_s=t["wall_s"], memory=m.get("memory", {}),
               train=m["train"], validation=m["validation"], versions=m.get("versions"),
               compile_cache=(m.get("compile") or {}).get("cache"))
    print(f"    ok: {t['step_s'] * 1e3:.2f} ms/step, compile {t['compile_s']:.1f} s", flush=True)
    return row


def _error_line(log: Path) -> str:
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("error:") or "Error" in ln.split(":")[0]:
            return ln[:300]
    return (lines[-1][:300] if lines else "no output")


def check_initial_losses(rows: list[dict]) -> dict:
    losses = {r["name"]: r["initial_loss"] for r in rows if r.get("status") == "ok" and r.get("initial_loss") is not None}
    if len(losses) < 2:
        return {"ok": True, "losses": losses, "max_rel_diff": 0.0, "tolerance": INITIAL_LOSS_RTOL}
    ref = statistics.median(losses.values())
    worst = max(abs(v - ref) / max(abs(ref), 1e-12) for v in losses.values())
    return {"ok": worst <= INITIAL_LOSS_RTOL, "losses": losses, "max_rel_diff": worst, "tolerance": INITIAL_LOSS_RTOL}


def _fmt(v, spec=".3f", scale=1.0):
    return "-" if v is None else format(v * scale, spec)


def markdown_table(rows: list[dict]) -> str:
    ok = [r for r in rows if r.get("status") == "ok" and r.get("step_s")]
    fastest = min((r["step_s"] for r in ok), default=None)
    metric_names = sorted({k for r in ok for k in r["validation"]})
    head = ["run", "status", "compile s", "compile cache", "step ms (p10-p90)", "vs fastest", "examples/s", "peak RSS MB",
            "device MB", "initial loss", "first loss", "wall s"] + [f"val {k}" for k in metric_names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if r.get("status") != "ok":
            lines.append(f"| {r['name']} | FAILED: {r.get('error', '')} |" + " |" * (len(head) - 2))
            continue
        mem = r.get("memory") or {}
        cells = [r["name"], "ok", _fmt(r["compile_s"], ".2f"), r.get("compile_cache") or "-",
                 f"{_fmt(r['step_s'], '.2f', 1e3)} ({_fmt(r['step_s_p10'], '.2f', 1e3)}-{_fmt(r['step_s_p90'], '.2f', 1e3)})",
                 _fmt(r["step_s"] / fastest if fastest else None, ".2f") + "x", _fmt(r["examples_per_s"], ".0f"),
                 _fmt(mem.get("peak_rss_mb"), ".0f"), _fmt(mem.get("device_peak_mb"), ".0f"),
                 _fmt(r["initial_loss"], ".5f"), _fmt(r["first_loss"], ".5f"), _fmt(r["fit_wall_s"], ".1f")]
        cells += [_fmt(r["validation"].get(k), ".4f") for k in metric_names]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from training.loop import STEPS

    ok = [r for r in rows if r.get("status") == "ok"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    times = []
    for r in ok:
        steps = json.loads((Path(r["run_dir"]) / STEPS).read_text())
        if steps["loss"]:
            s, loss = zip(*steps["loss"])
            ax1.plot(s, loss, label=r["name"], linewidth=1.2)
        times.append([t * 1e3 for t in steps["step_s"]] or [0.0])
    ax1.set(xlabel="step", ylabel="training loss (running epoch mean)", title="loss curves")
    ax1.legend()
    if times:
        ax2.boxplot(times, showfliers=False)
        ax2.set_xticks(range(1, len(ok) + 1), [r["name"] for r in ok], rotation=15)
    ax2.set(ylabel="step time (ms)", title="step-time distribution (compile step excluded)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compare(task, cfg, fit_args: list[str], variants: list[Variant], out_dir: Path) -> dict:
    out_dir = rundir.prepare_run_dir(out_dir)
    init = out_dir / "initial.weights.h5"
    save_initial_weights(task, cfg, init)
    simulated = _provide_devices(variants)
    rows = [run_variant(v, fit_args, out_dir, init, out_dir / f"{v.name}.log") for v in variants]
    agreement = check_initial_losses(rows)
    report = {
        "task": task.name, "config": cfg.to_dict(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": backend_mod.machine_description(), "versions": backend_mod.library_versions(),
        "initial_weights": str(init), "initial_loss_agreement": agreement, "runs": rows,
        "step_time_definition": "median wall time between consecutive training-step ends with the loss fetched "
                                "each step; excludes the first step of the run (compile_s) and of each epoch",
    }
    if simulated is not None:
        report["scaling"] = scaling.report(rows, simulated, report["machine"].get("cores"))
    rundir.write_json(out_dir / "report.json", report)
    table = markdown_table(rows)
    (out_dir / "report.md").write_text(_markdown(report, table) + (scaling.markdown(report["scaling"]) if simulated is not None else ""))
    if any(r.get("status") == "ok" for r in rows):
        plot(rows, out_dir / "report.png")
    print("\n" + table)
    if simulated is not None:
        print("\n" + scaling.markdown(report["scaling"]))
    if not agreement["ok"]:
        print(f"\nWARNING: initial losses DISAGREE across runs (max relative difference "
              f"{agreement['max_rel_diff']:.2e} > {INITIAL_LOSS_RTOL:g}): {agreement['losses']}", flush=True)
    print(f"\nreport:      {out_dir / 'report.md'}\njson:        {out_dir / 'report.json'}\n"
          f"plot:        {out_dir / 'report.png'}\ntensorboard: python cli.py tensorboard --logdir {out_dir}")
    return report


def _provide_devices(variants: list[Variant]) -> bool | None:
    """For --devices: whether the replicas are simulated CPU devices (None without --devices)."""
    counts = [v.devices for v in variants if v.devices]
    if not counts:
        return None
    from training import distribute  # keras: this process's backend has started

    local, platform = distribute.ENGINE.local_devices()
    return scaling.provide_devices(counts, platform, len(local))


def _markdown(report: dict, table: str) -> str:
    m = report["machine"]
    a = report["initial_loss_agreement"]
    lines = [f"# Backend comparison: {report['task']}", "",
             f"Machine: {m.get('cpu')} ({m.get('cores')} cores); devices: {', '.join(m.get('devices', [])) or '-'}",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()), "",
             table, "",
             f"Initial loss (inference mode, first training batch, shared initial weights): "
             f"{'agree' if a['ok'] else 'DISAGREE'} (max relative difference {a['max_rel_diff']:.2e}, "
             f"tolerance {a['tolerance']:g}).", "",
             f"Step time: {report['step_time_definition']}.", "", "## Reproduce each run", ""]
    lines += [f"- {r['name']}: `{r['command']}`" for r in report["runs"]]
    return "\n".join(lines) + "\n"
