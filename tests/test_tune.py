"""tune: the search space and its errors, pruning, failed trials, resume after a kill, results, and
that no test split is read during a search. Tiny classification configs of one or two short epochs.
"""

import dataclasses
import json

import pytest
from optuna.trial import TrialState

from conftest import BACKEND, FAST_JIT
from errors import UserError
from tasks import base as task_base
from tasks.base import config_from_dict, get_task, resolve_config
from training import tune, tune_trial
from training.search_space import Dimension, parse_dimension, parse_space

TINY_SETS = ["num_train=64", "num_val=32", "num_test=32", "best_metric=val_loss", FAST_JIT]
TINY = ["--task", "classification", "--preset", "debug"] + [a for s in TINY_SETS for a in ("--set", s)]


# --- the space, typed against the task's config --------------------------------------------------


@pytest.fixture(scope="module")
def cfg():
    return resolve_config(get_task("classification"))


def test_space_dimensions_take_the_fields_types(cfg):
    assert parse_dimension("learning_rate=loguniform(1e-4,3e-3)", cfg) == Dimension("learning_rate", "loguniform", 1e-4, 3e-3)
    assert parse_dimension("model=choice(cnn,resnet)", cfg).choices == ("cnn", "resnet")
    assert parse_dimension("dropout=uniform(0,0.5)", cfg) == Dimension("dropout", "uniform", 0.0, 0.5)
    assert parse_dimension("width=int(8,64)", cfg) == Dimension("width", "int", 8, 64)
    assert parse_dimension("augment=choice(true,false)", cfg).choices == (True, False)


@pytest.mark.parametrize("spec, message", [
    ("widht=int(8,64)", "unknown config key 'widht'; valid keys: augment, backbone, backbone_lr_scale, batch_size"),
    ("width=uniform(8,64)", "width is a int field; uniform(...) draws floats; use int(lo,hi) or choice(...)"),
    ("dropout=int(0,1)", "dropout is a float field; int(...) draws ints; use loguniform/uniform(lo,hi)"),
    ("model=choice(cnn,vgg)", "--set model='vgg': expected one of cnn, resnet"),
    ("model=uniform(0,1)", "model is a str field; uniform(...) draws floats; use choice(...)"),
    ("learning_rate=uniform(0,1e-3)", "--set learning_rate=0.0: expected a positive float"),
    ("learning_rate=loguniform(3e-3,1e-4)", "expected lo < hi"),
    ("learning_rate=normal(0,1)", "unknown distribution 'normal'"),
    ("learning_rate=loguniform(1e-4)", "loguniform(lo,hi) takes two numbers"),
    ("learning_rate 1e-3", "expected KEY=DIST(...)"),
    ("model=choice(cnn)", "choice(...) needs at least two values"),
])
def test_space_errors_name_the_spec_and_what_was_expected(cfg, spec, message):
    with pytest.raises(UserError) as err:
        parse_dimension(spec, cfg)
    assert str(err.value).startswith(f"--space {spec!r}: ")
    assert message in str(err.value)


def test_a_key_searched_twice_or_also_fixed_is_refused(cfg):
    with pytest.raises(UserError, match="already searched"):
        parse_space(["width=int(8,16)", "width=int(4,8)"], cfg)
    with pytest.raises(UserError, match="also fixed by --set"):
        parse_space(["width=int(8,16)"], cfg, fixed=["width"])


def test_cli_space_error_is_one_line_before_any_trial(cli, tmp_path, capsys):
    out = tmp_path / "study"
    code = cli("tune", *TINY, "--space", "width=uniform(8,64)", "--out", out)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert err.startswith("error: --space 'width=uniform(8,64)': width is a int field")
    assert not out.exists(), "nothing may run (or be created) before the space is valid"


# --- one study: pruning, a failed trial, a kill and its resume, results, no test split read --------


class Counted:
    """A test split that counts every example read from it."""

    reads = 0

    @classmethod
    def dataset(cls, like):
        import tensorflow as tf

        def examples():
            for x, y in like.as_numpy_iterator():
                cls.reads += 1
                yield x, y

        return tf.data.Dataset.from_generator(examples, output_signature=like.element_spec)


class Killed(BaseException):
    """Stands in for SIGKILL: nothing in the study process handles it, the trial stays 'running'."""


DEFAULT = {"learning_rate": 3e-3, "dropout": 0.2}  # the debug preset's own values
TRIALS = [{"learning_rate": 0.1, "dropout": 0.2},    # 1: far too large a step: worse after epoch 1 -> pruned
          {"learning_rate": 3e-3, "dropout": 0.5},   # 2: its model build raises -> failed
          DEFAULT]                                   # 3: the study is killed during it; resume runs it again (4)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Trials through the real fit path (2 epochs of 2 steps, successive-halving pruner), in two
    sessions: the first is killed during trial 3, `tune --resume` finishes the study. The task's
    test split counts its reads."""
    task = get_task("classification")

    def build_datasets(cfg):
        data = task.build_datasets(cfg)
        data.test = Counted.dataset(data.test)
        return data

    def build_model(cfg, info):
        if cfg.dropout == 0.5:
            raise RuntimeError("boom: this trial's model cannot be built")
        return task.build_model(cfg, info)

    def killed_in_trial_3(task, cfg, run_dir, **kwargs):
        if run_dir.name == "trial-003":
            raise Killed()
        return fit(task, cfg, run_dir, **kwargs)

    fit = tune_trial.fit
    mp = pytest.MonkeyPatch()
    mp.setitem(task_base._REGISTRY, "classification",
               dataclasses.replace(task, build_datasets=build_datasets, build_model=build_model))
    study_dir = tmp_path_factory.mktemp("tune") / "study"
    settings = tune.Settings(task="classification", space=["learning_rate=loguniform(1e-6,1.0)", "dropout=uniform(0,0.5)"],
                             trials=4, preset="debug", sets=TINY_SETS + ["epochs=2"], backend=BACKEND,
                             pruner="halving", metric="val_loss", minimise=True)
    study = tune.create_study(study_dir, settings)
    for params in TRIALS:
        study.enqueue_trial(params)
    mp.setattr(tune_trial, "fit", killed_in_trial_3)
    with pytest.raises(Killed):
        tune.run_study(study_dir, settings, study)
    mp.setattr(tune_trial, "fit", fit)
    st = tune.load_study(study_dir, settings)
    before = {"states": [t.state for t in st.trials],
              "mtimes": {n: (study_dir / f"trial-{n:03d}" / "metrics.json").stat().st_mtime_ns for n in (0, 1)}}
    import cli

    mp.chdir(study_dir.parent)
    code = cli.main(["tune", "--resume", str(study_dir)])
    yield {"dir": study_dir, "study": tune.load_study(study_dir, settings), "before": before, "code": code,
           "best": json.loads((study_dir / "best.json").read_text())}
    mp.undo()


def test_unpromising_trial_is_pruned_after_its_first_epoch(study):
    st = study["study"]
    pruned = st.trials[1]
    assert pruned.state == TrialState.PRUNED, [(t.number, t.state, t.intermediate_values) for t in st.trials]
    assert list(pruned.intermediate_values) == [1]
    assert pruned.intermediate_values[1] > st.trials[0].intermediate_values[1], "pruned because it was worse"
    metrics = json.loads((study["dir"] / "trial-001" / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 1, "training stopped after the epoch the pruner judged"
    assert json.loads((study["dir"] / "trial-001" / "trial.json").read_text())["state"] == "pruned"
    done = json.loads((study["dir"] / "trial-000" / "metrics.json").read_text())
    assert done["epochs_completed"] == 2 and st.trials[0].value == done["best"]["value"]


def test_a_crashing_trial_is_recorded_failed_with_its_error_line(study):
    failed = study["study"].trials[2]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["error"] == "RuntimeError: boom: this trial's model cannot be built"


def test_resume_after_a_kill_runs_the_rest_without_repeating_finished_trials(study):
    st, out = study["study"], study["dir"]
    assert study["before"]["states"] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING]
    assert study["code"] == 0
    assert [t.state for t in st.trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL,
                                            TrialState.FAIL, TrialState.COMPLETE]
    assert st.trials[3].user_attrs["interrupted"] and "killed" in st.trials[3].user_attrs["error"]
    assert st.trials[4].params == DEFAULT, "the killed trial is run again, whole"
    assert st.trials[4].value == st.trials[0].value, "the same config, seed and data give the same result"
    for n, mtime in study["before"]["mtimes"].items():
        assert (out / f"trial-{n:03d}" / "metrics.json").stat().st_mtime_ns == mtime, f"trial {n} was repeated"
    assert not (out / "trial-005").exists()
    assert study["best"]["trials"] == {"completed": 2, "pruned": 1, "failed": 1, "interrupted": 1}


def test_resume_refuses_to_change_the_stored_search(study, cli, capsys):
    assert cli("tune", "--resume", study["dir"], "--trials", "5", "--epochs", "1") == 2
    assert "--epochs cannot change a stored study" in capsys.readouterr().err


def test_no_test_split_is_read_during_the_search(study):
    assert Counted.reads == 0
    assert json.loads((study["dir"] / "trial-000" / "metrics.json").read_text())["test"] is None
    # The counter works: reading the same kind of split counts.
    task = get_task("classification")
    data = task.build_datasets(resolve_config(task, "debug", sets=TINY_SETS))
    list(Counted.dataset(data.test).take(3).as_numpy_iterator())
    assert Counted.reads >= 3  # tf.data may read ahead


def test_results_table_best_json_hparams_and_plot(study):
    st, out, best = study["study"], study["dir"], study["best"]
    assert best["best"]["trial"] == st.best_trial.number
    assert best["best"]["value"] == st.best_value <= best["default"]["value"]
    assert best["default"]["trial"] == 0
    assert best["best"]["set"] == [f"--set learning_rate={st.best_params['learning_rate']!r}",
                                   f"--set dropout={st.best_params['dropout']!r}"]
    assert "fit --task classification --preset debug" in best["best"]["command"]
    flags = [s.split(" ", 1)[1] for s in best["best"]["set"]]  # they reproduce the best trial's config
    again = resolve_config(get_task("classification"), "debug", sets=TINY_SETS + ["epochs=2"] + flags)
    saved = json.loads((out / f"trial-{st.best_trial.number:03d}" / "config.json").read_text())["config"]
    assert again == config_from_dict(get_task("classification"), saved)
    table = (out / "results.md").read_text()
    assert "2 completed, 1 pruned, 1 failed (1 interrupted and run again)" in table
    assert "RuntimeError: boom" in table
    png = (out / "tune.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    sessions = sorted(p.name for p in (out / "hparams").iterdir() if p.is_dir())
    assert sessions == [f"trial-{n:03d}" for n in (0, 1, 2, 4)]
    assert any((out / "hparams").glob("events.out.tfevents.*")), "the HParams experiment (its columns)"
