"""One `tune` trial: an ordinary fit into the study folder, reporting each epoch to the pruner.

Runs in the study's process, or in a `cli.py tune-trial` process of its own (one per trial when
the backend is searched). Either way the trial tells the study its own outcome: complete with its
best epoch's value, pruned (the run directory is still complete: training stopped after the epoch
the pruner judged), or failed with its error line (a crash or a diverged loss; the search goes on).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import keras
import optuna
from optuna.trial import TrialState

from errors import UserError
from tasks.base import get_task
from training import rundir, tune
from training.loop import Interrupted, fit

TRIAL = "trial.json"  # in each trial's run directory: its number, params and outcome


class PruneOnEpoch(keras.callbacks.Callback):
    """Reports the study metric after every epoch; stops training when the pruner says so (never
    after the last epoch: a finished trial is judged by its result, not pruned)."""

    def __init__(self, trial: optuna.Trial, metric: str, epochs: int):
        super().__init__()
        self.trial, self.metric, self.epochs = trial, metric, epochs
        self.pruned_after: int | None = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.metric not in logs:
            raise UserError(f"tune: the trial logs no {self.metric} (it logs {', '.join(sorted(logs))})")
        value = float(logs[self.metric])
        if not math.isfinite(value):
            return  # a diverged run fails on its own (the loop's NaN guard); nothing to compare
        self.trial.report(value, epoch + 1)
        if epoch + 1 < self.epochs and self.trial.should_prune():
            self.pruned_after = epoch + 1
            self.model.stop_training = True
        print(f"  epoch {epoch + 1}/{self.epochs}: {self.metric} {value:.4f}"
              + (" -> pruned" if self.pruned_after else ""), flush=True)


def run_trial(study: optuna.Study, trial: optuna.Trial, settings: "tune.Settings", study_dir: Path) -> None:
    """Fit the trial's config into study_dir/trial-NNN and tell the study how it went."""
    start = time.perf_counter()
    run_dir = tune.trial_dir(study_dir, trial.number)
    keras.backend.clear_session()  # the previous trial's models and traces are not needed any more
    reporter = None
    try:
        cfg = tune.trial_config(settings, trial.params)
        reporter = PruneOnEpoch(trial, settings.metric, cfg.epochs)
        result = fit(get_task(settings.task), cfg, run_dir, verbose=0, extra_callbacks=[reporter],
                     evaluate_test=False)
    except Interrupted as exc:
        trial.set_user_attr("wall_s", time.perf_counter() - start)
        tune.mark_interrupted(study, study.trials[trial.number], "interrupted (Ctrl-C); it was run again on resume")
        raise Interrupted(f"{str(exc).split(':')[0]}: study stopped during trial {trial.number}; continue it with: "
                          f"python cli.py tune --resume {study_dir}", "SIGTERM" if exc.exit_code == 143 else "SIGINT") from None
    except Exception as exc:  # noqa: BLE001  (any crash fails this trial only; the search goes on)
        _finish(study, trial, run_dir, start, TrialState.FAIL, error=_error_line(exc))
        return
    value = result.metrics["best"]["value"]
    if reporter.pruned_after is not None:
        _finish(study, trial, run_dir, start, TrialState.PRUNED)
    elif value is None or not math.isfinite(value):
        _finish(study, trial, run_dir, start, TrialState.FAIL, error=f"diverged: {settings.metric} is {value}")
    else:
        _finish(study, trial, run_dir, start, TrialState.COMPLETE, value=float(value))


def _finish(study, trial, run_dir: Path, start: float, state: TrialState, value=None, error: str | None = None):
    trial.set_user_attr("wall_s", time.perf_counter() - start)
    if error is not None:
        trial.set_user_attr("error", error)
    if run_dir.is_dir():
        rundir.write_json(run_dir / TRIAL, {"number": trial.number, "params": trial.params,
                                            "state": state.name.lower(), "value": value, "error": error})
    study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)


def _error_line(exc: BaseException) -> str:
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {first}"[:300] if first else type(exc).__name__


def run_stored_trial(study_dir: Path, number: int) -> None:
    """`cli.py tune-trial`: run trial `number` of the stored study in this process (its backend)."""
    settings = tune.read_settings(study_dir)
    study = tune.load_study(study_dir, settings)
    frozen = study.trials[number]
    if frozen.state != TrialState.RUNNING:
        raise UserError(f"tune-trial: trial {number} of {study_dir} is {frozen.state.name.lower()}, not waiting to run")
    run_trial(study, tune.live_trial(study, frozen), settings, study_dir)


def objective_metric(task, cfg) -> tuple[str, bool]:
    """The study's metric (the task's main validation metric, or --set best_metric) and whether it is
    minimised, read from the compiled default model as fit reads it: a name never decides a direction."""
    from training.loop import best_metric_of, build_and_compile, build_data

    data = build_data(task, cfg)
    model, compiled = build_and_compile(task, cfg, data.info, total_steps=1)
    return best_metric_of(task, cfg, model, compiled)
