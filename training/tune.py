"""`tune`: hyperparameter search with Optuna on top of the one fit path.

A study is one folder: `study.json` (task, space, flags: all a resume needs), `study.db` (Optuna's
SQLite storage: every trial's params, epoch reports and outcome), one ordinary fit run directory
per trial (`trial-000`, ...), and the results (`results.md`, `best.json`, `tune.png`, `hparams/`).
Trial 0 is the task's default config; the sampler (TPE) proposes the rest and a median (or
successive-halving) pruner stops trials whose epoch validation results trail the others'.

Trials run in this process when one backend is searched (no start-up cost per trial), and each in
its own `cli.py tune-trial` process when `--backends` makes the backend a parameter (KERAS_BACKEND
is fixed per process; it also keeps every backend's trials on equal terms). Imports no keras.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from errors import UserError
from tasks.base import apply_overrides, get_task, resolve_config
from training import rundir
from training.search_space import (Dimension, default_params, is_finite, overrides_of, parse_dimension,
                                   set_flags)

SETTINGS = "study.json"
STORAGE = "study.db"
BEST = "best.json"
RESULTS = "results.md"
PLOT = "tune.png"
HPARAMS = "hparams"
STUDY_NAME = "tune"
PRUNERS = ("median", "halving", "none")
CLI = Path(__file__).resolve().parents[1] / "cli.py"
INTERRUPTED = "interrupted"  # user attr of a trial the study stopped during (Ctrl-C, kill): it is run again

optuna.logging.set_verbosity(optuna.logging.WARNING)  # we print one line per trial ourselves


@dataclass
class Settings:
    """What `study.json` holds: the search as asked, so `tune --resume` needs nothing else."""

    task: str
    space: list[str]
    trials: int
    preset: str | None = None
    flags: dict = field(default_factory=dict)
    sets: list[str] = field(default_factory=list)
    backend: str = "tensorflow"  # this process's backend (runs the trials unless `backends`)
    backends: list[str] = field(default_factory=list)  # searched as a parameter, one process per trial
    pruner: str = "median"
    timeout: float | None = None
    metric: str = ""  # the task's main validation metric as logged (e.g. val_accuracy)
    minimise: bool = False

    def base_config(self):
        return resolve_config(get_task(self.task), self.preset, self.flags, self.sets)

    def dimensions(self) -> list[Dimension]:
        cfg = self.base_config()
        return [parse_dimension(s, cfg) for s in self.space]


def read_settings(study_dir: Path) -> Settings:
    path = Path(study_dir) / SETTINGS
    if not path.is_file():
        raise UserError(f"--resume {study_dir}: not a tune study (no {SETTINGS}); give the folder `tune` printed")
    return Settings(**rundir.read_json(path))


def trial_dir(study_dir: Path, number: int) -> Path:
    return Path(study_dir) / f"trial-{number:03d}"


def trial_config(settings: Settings, params: dict):
    """The resolved config of one trial: the study's base config with the trial's params applied."""
    return apply_overrides(settings.base_config(), overrides_of(params, settings.dimensions()), source="--space")


# --- the study --------------------------------------------------------------------------------


def make_pruner(name: str) -> optuna.pruners.BasePruner:
    """Median: prune a trial whose epoch result is worse than the median of earlier trials at that
    epoch (after two finished trials). Halving: successive halving from epoch 1."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    return optuna.pruners.NopPruner()


def load_study(study_dir: Path, settings: Settings, seed: int = 0) -> optuna.Study:
    """The stored study. The sampler's seed moves on with each trial already stored, so a resumed
    study draws new configs instead of the first ones again."""
    storage = f"sqlite:///{Path(study_dir).resolve() / STORAGE}"
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage, pruner=make_pruner(settings.pruner))
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    return study


def create_study(study_dir: Path, settings: Settings) -> optuna.Study:
    """A new stored study whose first trial is the default config (where it lies in the space)."""
    study_dir.mkdir(parents=True, exist_ok=True)
    if (study_dir / STORAGE).exists():
        raise UserError(f"--out {study_dir}: already holds a study; continue it with --resume {study_dir}")
    optuna.create_study(study_name=STUDY_NAME, storage=f"sqlite:///{study_dir.resolve() / STORAGE}",
                        direction="minimize" if settings.minimise else "maximize")
    rundir.write_json(study_dir / SETTINGS, dataclasses.asdict(settings))
    study = load_study(study_dir, settings)
    params, outside = default_params(settings.dimensions(), settings.base_config())
    if outside:
        print(f"note: the default {', '.join(outside)} lie(s) outside the space; trial 0 draws them", flush=True)
    if settings.backends:
        params["backend"] = settings.backends[0]
    study.enqueue_trial(params, user_attrs={"default": True})
    _write_hparams_config(study_dir, settings)
    return study


def distributions(settings: Settings) -> dict:
    out = {}
    for d in settings.dimensions():
        if d.kind == "choice":
            out[d.key] = CategoricalDistribution(d.choices)
        elif d.kind in ("int", "logint"):
            out[d.key] = IntDistribution(d.low, d.high, log=d.kind == "logint")
        else:
            out[d.key] = FloatDistribution(d.low, d.high, log=d.kind == "loguniform")
    if settings.backends:
        out["backend"] = CategoricalDistribution(tuple(settings.backends))
    return out


def live_trial(study: optuna.Study, frozen) -> optuna.Trial:
    """A handle to report to / tag a stored unfinished trial (from another process, or after a kill)."""
    return optuna.Trial(study, frozen._trial_id)  # Optuna keys storage by this id; no public getter


def counted(study: optuna.Study) -> list:
    """Trials that count towards --trials: finished ones, except those the study stopped during."""
    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return [t for t in study.trials if t.state in done and not t.user_attrs.get(INTERRUPTED)]


def mark_interrupted(study: optuna.Study, frozen, why: str) -> None:
    """Record a trial the study stopped during as failed (its error line says why) and queue its
    params again, so the resumed study runs it whole."""
    trial = live_trial(study, frozen)
    trial.set_user_attr(INTERRUPTED, True)
    trial.set_user_attr("error", why)
    study.tell(frozen.number, state=TrialState.FAIL, skip_if_finished=True)
    study.enqueue_trial(frozen.params, user_attrs={"retry_of": frozen.number,
                                                   **({"default": True} if frozen.user_attrs.get("default") else {})})


def recover(study: optuna.Study) -> None:
    """After a kill: trials still marked running never finished."""
    for t in study.trials:
        if t.state == TrialState.RUNNING:
            mark_interrupted(study, t, "killed: the study stopped during this trial; it was run again")
            print(f"trial {t.number}: was running when the study stopped; queued again", flush=True)


def run_study(study_dir: Path, settings: Settings, study: optuna.Study) -> dict:
    """Run trials until --trials have finished (or --timeout), then write the results."""
    start = time.perf_counter()
    dists = distributions(settings)
    while len(counted(study)) < settings.trials:
        if settings.timeout is not None and time.perf_counter() - start > settings.timeout:
            print(f"--timeout {settings.timeout:g}: no new trial after {time.perf_counter() - start:.0f} s", flush=True)
            break
        trial = study.ask(dists)
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
        note = " (default config)" if trial.user_attrs.get("default") else ""
        print(f"trial {trial.number}{note}: {shown}", flush=True)
        if settings.backends:
            run_trial_in_subprocess(study, trial, study_dir, settings)
        else:
            from training import tune_trial  # imports keras: the backend was started by the command

            tune_trial.run_trial(study, trial, settings, study_dir)
        frozen = study.trials[trial.number]
        print(f"trial {trial.number}: {_outcome(frozen, settings)}", flush=True)
        _write_hparams_session(study_dir, settings, frozen)
    return write_results(study_dir, settings, study, time.perf_counter() - start)


def run_trial_in_subprocess(study: optuna.Study, trial, study_dir: Path, settings: Settings) -> None:
    """`cli.py tune-trial` in a fresh process on the trial's backend; a process that dies before it
    tells the study its outcome (crash, out of memory, kill) is recorded as failed with its last line."""
    backend = trial.params.get("backend", settings.backend)
    log = trial_dir(study_dir, trial.number).with_suffix(".log")
    cmd = [sys.executable, str(CLI), "--backend", backend, "tune-trial", "--study", str(study_dir),
           "--trial", str(trial.number)]
    start = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, text=True)
    frozen = study.trials[trial.number]
    if frozen.state == TrialState.RUNNING:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        why = (lines[-1] if lines else "") or f"the trial process exited with status {proc.returncode}"
        live = live_trial(study, frozen)
        live.set_user_attr("error", f"{why[:300]} (log: {log})")
        live.set_user_attr("wall_s", time.perf_counter() - start)
        study.tell(trial.number, state=TrialState.FAIL)


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _outcome(t, settings: Settings) -> str:
    metric = settings.metric
    if t.state == TrialState.COMPLETE:
        return f"complete, {metric} {t.value:.4f}"
    if t.state == TrialState.PRUNED:
        last = max(t.intermediate_values) if t.intermediate_values else None
        value = t.intermediate_values[last] if last is not None else float("nan")
        return f"pruned after epoch {last} ({metric} {value:.4f})"
    return f"failed: {t.user_attrs.get('error', t.state.name)}"


# --- results ---------------------------------------------------------------------------------


def _value(t) -> float | None:
    """The trial's metric: its best epoch when complete, its last report when pruned."""
    if t.state == TrialState.COMPLETE:
        return t.value
    if t.state == TrialState.PRUNED and t.intermediate_values:
        return t.intermediate_values[max(t.intermediate_values)]
    return None


def _epochs(t) -> int:
    return max(t.intermediate_values) if t.intermediate_values else 0


def trial_rows(study, settings: Settings) -> list[list[str]]:
    keys = list(distributions(settings))
    rows = []
    for t in study.trials:
        value = _value(t)
        wall = t.user_attrs.get("wall_s")
        rows.append([str(t.number) + (" (default)" if t.user_attrs.get("default") else ""), t.state.name.lower(),
                     f"{value:.4f}" if is_finite(value) else "-", str(_epochs(t)),
                     f"{wall:.0f}" if wall is not None else "-",
                     *[_fmt(t.params[k]) if k in t.params else "-" for k in keys],
                     (t.user_attrs.get("error") or "")[:80]])
    return rows


def best_trial(study):
    done = [t for t in study.trials if t.state == TrialState.COMPLETE and is_finite(t.value)]
    return study.best_trial if done else None


def write_results(study_dir: Path, settings: Settings, study, wall_s: float) -> dict:
    """Table (printed and results.md), best.json with ready --set flags, HParams, tune.png."""
    from training.commands import _table  # the CLI's one table format

    trials = study.trials
    states = [t.state for t in trials]
    counts = {"completed": states.count(TrialState.COMPLETE), "pruned": states.count(TrialState.PRUNED),
              "failed": sum(1 for t in trials if t.state == TrialState.FAIL and not t.user_attrs.get(INTERRUPTED)),
              "interrupted": sum(1 for t in trials if t.user_attrs.get(INTERRUPTED))}
    header = ["trial", "state", settings.metric, "epochs", "s", *distributions(settings), "error"]
    table = _table(trial_rows(study, settings), header)
    best = best_trial(study)
    default = next((t for t in trials if t.user_attrs.get("default") and t.state == TrialState.COMPLETE), None)
    summary = best_summary(study_dir, settings, best, default, counts, wall_s)
    importances = param_importances(study)
    summary["importances"] = importances
    rundir.write_json(study_dir / BEST, summary)
    lines = [f"# tune {settings.task}: {settings.metric} ({'lower' if settings.minimise else 'higher'} is better)",
             "", "```", table, "```", "", *summary_lines(summary)]
    rundir.atomic_write_text(study_dir / RESULTS, "\n".join(lines) + "\n")
    plot(study_dir / PLOT, study, settings, importances)
    print("\n" + table + "\n\n" + "\n".join(summary_lines(summary)))
    print(f"  study:        {study_dir}  (continue: python cli.py tune --resume {study_dir} --trials N)")
    print(f"  results:      {study_dir / RESULTS}, {study_dir / BEST}, {study_dir / PLOT}")
    print(f"  tensorboard:  python cli.py tensorboard --logdir {study_dir / HPARAMS}  (HParams tab)")
    return summary


def best_summary(study_dir, settings: Settings, best, default, counts: dict, wall_s: float) -> dict:
    out = {"task": settings.task, "metric": settings.metric, "direction": "down" if settings.minimise else "up",
           "trials": counts, "wall_s": round(wall_s, 1), "space": settings.space}
    if default is not None:
        out["default"] = {"trial": default.number, "value": default.value}
    if best is None:
        out["best"] = None
        return out
    overrides = overrides_of(best.params, [parse_dimension(s, settings.base_config()) for s in settings.space])
    flags = set_flags(overrides)
    backend = best.params.get("backend", settings.backend)
    base = ["--task", settings.task] + (["--preset", settings.preset] if settings.preset else [])
    base += [f"--{k.replace('_', '-')}" + (f" {v}" if not isinstance(v, bool) else "")
             for k, v in settings.flags.items() if k != "jit_compile"]
    base += ["--no-jit"] if settings.flags.get("jit_compile") is False else []
    base += [f"--set {s}" for s in settings.sets]
    out["best"] = {"trial": best.number, "value": best.value, "params": best.params, "backend": backend,
                   "run_dir": str(trial_dir(study_dir, best.number)),
                   "set": [f"{a} {b}" for a, b in zip(flags[::2], flags[1::2])],
                   "command": " ".join(["python cli.py --backend", backend, "fit", *base,
                                        *[f"--set {shlex.quote(f)}" for f in flags[1::2]]])}
    return out


def summary_lines(summary: dict) -> list[str]:
    c = summary["trials"]
    lines = [f"trials: {c['completed']} completed, {c['pruned']} pruned, {c['failed']} failed"
             + (f" ({c['interrupted']} interrupted and run again)" if c["interrupted"] else "")
             + f"; {summary['wall_s']:.0f} s this session"]
    best = summary.get("best")
    if best is None:
        return lines + ["best: - (no trial completed)"]
    default = summary.get("default")
    lines.append(f"best: trial {best['trial']}, {summary['metric']} {best['value']:.4f}"
                 + (f" (default config, trial {default['trial']}: {default['value']:.4f})" if default else ""))
    lines.append(f"best config: {' '.join(best['set'])}" + (f" on {best['backend']}" if "backend" in best["params"] else ""))
    lines.append(f"train it:     {best['command']}")
    if summary.get("importances"):
        lines.append("importance:   " + ", ".join(f"{k} {v:.2f}" for k, v in summary["importances"].items()))
    return lines


def param_importances(study) -> dict:
    """Optuna's default importances (PED-ANOVA: which params the best completed trials share; it
    needs no scikit-learn, unlike fANOVA); {} until two completed trials exist."""
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    if len(complete) < 2:
        return {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # few trials: it says its estimate is rough, as the plot's title does
            found = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError, ZeroDivisionError):
        return {}
    return {k: float(v) for k, v in found.items() if math.isfinite(v)}


def plot(path: Path, study, settings: Settings, importances: dict) -> None:
    """Left: the metric per trial by outcome, with the best so far. Right: parameter importances."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    styles = {TrialState.COMPLETE: ("o", "tab:blue", "completed"), TrialState.PRUNED: ("x", "tab:orange", "pruned")}
    for state, (marker, color, label) in styles.items():
        pts = [(t.number, _value(t)) for t in study.trials if t.state == state and is_finite(_value(t))]
        if pts:
            left.scatter(*zip(*pts), marker=marker, color=color, label=label)
    failed = [t.number for t in study.trials if t.state == TrialState.FAIL]
    if failed:
        ymin = left.get_ylim()[0] if left.collections else 0.0
        left.scatter(failed, [ymin] * len(failed), marker="v", color="tab:red", label="failed")
    best, running = [], None
    for t in study.trials:
        if t.state == TrialState.COMPLETE and is_finite(t.value):
            running = t.value if running is None else (min if settings.minimise else max)(running, t.value)
        best.append(running)
    if any(b is not None for b in best):
        left.step(range(len(best)), [b if b is not None else float("nan") for b in best], where="post",
                  color="gray", label="best so far")
    left.set(xlabel="trial", ylabel=settings.metric, title=f"{settings.task}: {settings.metric} per trial")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.legend(loc="best", fontsize=8)
    if importances:
        names = list(importances)[::-1]
        right.barh(names, [importances[n] for n in names], color="tab:green")
        right.set(xlabel="importance (PED-ANOVA, completed trials)", title="parameter importances")
    else:
        right.text(0.5, 0.5, "importances need two completed trials", ha="center", va="center")
        right.set_axis_off()
    fig.tight_layout()
    tmp = path.with_name("." + path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def _write_hparams_config(study_dir: Path, settings: Settings) -> None:
    from training import summaries

    domains = {d.key: (list(d.choices) if d.kind == "choice" else (d.low, d.high)) for d in settings.dimensions()}
    if settings.backends:
        domains["backend"] = list(settings.backends)
    summaries.hparams_config(study_dir / HPARAMS, domains, [f"tune/{settings.metric}", "tune/epochs", "tune/pruned"])


def _write_hparams_session(study_dir: Path, settings: Settings, t) -> None:
    """One HParams row per trial (its params and result), beside the trial's own run directory."""
    from training import summaries

    value = _value(t)
    scalars = {"tune/epochs": _epochs(t), "tune/pruned": float(t.state == TrialState.PRUNED)}
    if is_finite(value):
        scalars[f"tune/{settings.metric}"] = value
    summaries.hparams_session(study_dir / HPARAMS / f"trial-{t.number:03d}", t.params, scalars, f"trial-{t.number:03d}")

