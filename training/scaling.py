"""`compare --devices 1,2,4`: one run per replica count (data-parallel, same global batch) and the
scaling it shows: step time, examples/s, efficiency, and whether the losses agree with the
single-device run (they must: the replicas compute the same global step). Imports no keras.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from errors import UserError
from training.backend import SIMULATED_CPU_DEVICES

LOSS_RTOL = 1e-4  # float32 all-reduce vs one device: summation order only
AGREE_STEPS = 5  # step 0 (initial loss) and the losses of the first training steps
SIMULATED_NOTE = ("The devices are simulated: one host CPU split into {n} devices that share the same {cores} cores, "
                  "so no speed-up is expected and none is reported; the step-time ratio shows the cost of the "
                  "engine's splitting and all-reduce (and the noise of a shared machine), not scaling.")


def parse_devices(text: str | None) -> list[int]:
    if not text:
        return []
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or any(n < 1 for n in counts) or len(set(counts)) != len(counts):
        raise UserError(f"--devices {text}: expected distinct positive replica counts, e.g. --devices 1,2,4")
    return sorted(counts)


def fit_args(devices: int) -> list[str]:
    """The fit flags of one replica count: one device is the plain single-device run."""
    if devices == 1:
        return ["--distribute", "none"]
    return ["--distribute", "data-parallel", "--set", f"replicas={devices}"]


def provide_devices(counts: list[int], platform: str, available: int) -> bool:
    """Without enough accelerators, the runs get simulated CPU devices (their processes read the
    variable before their backend starts). Returns whether the devices are simulated."""
    if platform != "cpu":
        if max(counts) > available:
            raise UserError(f"--devices {','.join(map(str, counts))}: this machine has {available} {platform} devices")
        return False
    if max(counts) > 1:
        os.environ[SIMULATED_CPU_DEVICES] = str(max(counts))
    return True


def _losses(row: dict) -> list[float]:
    steps = json.loads((Path(row["run_dir"]) / "steps.json").read_text())
    return [loss for _, loss in steps["loss"][:AGREE_STEPS]]


def _agreement(base: list[float], losses: list[float]) -> dict:
    worst = max((abs(a - b) / max(abs(a), 1e-12) for a, b in zip(base, losses)), default=0.0)
    return {"steps_compared": min(len(base), len(losses)), "max_rel_diff": worst, "tolerance": LOSS_RTOL,
            "ok": worst <= LOSS_RTOL}


def report(rows: list[dict], simulated: bool, cores: int | None) -> dict:
    """Per backend and jit mode: each replica count against the one-device run."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("devices"):
            groups.setdefault((r["backend"], r["jit"]), []).append(r)
    out = []
    for (backend, jit), group in groups.items():
        base = next((r for r in group if r["devices"] == 1 and r.get("status") == "ok"), None)
        base_losses = [base["initial_loss"], *_losses(base)] if base else None
        for r in sorted(group, key=lambda r: r["devices"]):
            entry = {"name": r["name"], "backend": backend, "jit": jit, "devices": r["devices"], "status": r.get("status")}
            if r.get("status") == "ok":
                entry.update(step_s=r["step_s"], examples_per_s=r["examples_per_s"])
                if base:
                    entry["loss_agreement"] = _agreement(base_losses, [r["initial_loss"], *_losses(r)])
                if base and simulated:  # the same cores, split: a ratio of step times, never a speed-up
                    entry["step_time_ratio"] = base["step_s"] / r["step_s"]
                elif base:
                    entry["speedup"] = base["step_s"] / r["step_s"]
                    entry["efficiency"] = entry["speedup"] / r["devices"]
            out.append(entry)
    note = SIMULATED_NOTE.format(n=max((e["devices"] for e in out), default=1), cores=cores) if simulated else None
    return {"simulated_devices": simulated, "note": note, "runs": out,
            "loss_comparison": f"initial loss (step 0) and the training losses of the first {AGREE_STEPS} steps, "
                               f"relative to the one-device run at the same global batch"}


def markdown(scaling: dict) -> str:
    simulated = scaling["simulated_devices"]
    head = ["run", "devices", "step ms", "examples/s",
            *(["1-device step / this step (shared cores: not a speed-up)"] if simulated else ["speed-up", "efficiency"]),
            "losses vs 1 device"]
    lines = ["", "## Scaling (data-parallel, same global batch)", ""]
    if scaling["note"]:
        lines += [f"**{scaling['note']}**", ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in scaling["runs"]:
        if e["status"] != "ok":
            lines.append(f"| {e['name']} | {e['devices']} | FAILED |" + " |" * (len(head) - 3))
            continue
        agree = e.get("loss_agreement")
        agreement = "-" if not agree else (f"{'agree' if agree['ok'] else 'DISAGREE'} "
                                           f"(max rel {agree['max_rel_diff']:.1e}, tol {agree['tolerance']:g})")
        if simulated:
            figures = [f"{e['step_time_ratio']:.2f}" if "step_time_ratio" in e else "-"]
        else:
            figures = [f"{e['speedup']:.2f}x" if "speedup" in e else "-",
                       f"{e['efficiency'] * 100:.0f}%" if "efficiency" in e else "-"]
        lines.append(f"| {e['name']} | {e['devices']} | {e['step_s'] * 1e3:.1f} | {e['examples_per_s']:.0f} | "
                     + " | ".join(figures) + f" | {agreement} |")
    lines += ["", f"Losses compared: {scaling['loss_comparison']}."]
    return "\n".join(lines) + "\n"
