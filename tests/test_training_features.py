"""Early stopping, gradient clipping, mixed precision and steps_per_execution in the one fit path.

One tiny classification run (shared by the tests below) uses all four at once: 64 training
images, 2 steps per epoch run as one compiled call of 2 steps, bfloat16 compute, clipping, and a
best metric that cannot improve after epoch 1 (top-6 accuracy over 6 classes is always 1.0), so
patience=6 must stop the 8-epoch run after epoch 7.
"""

import contextlib
import io
import json

import keras
import numpy as np
import pytest

from errors import UserError
from tasks.base import Task, get_task, resolve_config
from training.callbacks import EarlyStopping
from training.loop import build_compiled_model, build_data, fit, make_optimizer

FEATURES = ["num_train=64", "augment=False", "dropout=0.0", "learning_rate=0.01", "log_every_steps=3",
            "precision='mixed_bfloat16'", "clipnorm=1.0", "steps_per_execution=2",
            "top_k=6", "best_metric='val_top6_accuracy'", "patience=6"]
EPOCHS, STEPS_PER_EPOCH, STOP_EPOCH = 8, 2, 7


def _cfg(task_name="classification", sets=()):
    return resolve_config(get_task(task_name), preset="debug", sets=list(sets))


@pytest.fixture(scope="module")
def features_run(tmp_path_factory):
    """(FitResult, printed output) of the shared run."""
    task = get_task("classification")
    cfg = _cfg(sets=FEATURES + [f"epochs={EPOCHS}"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = fit(task, cfg, tmp_path_factory.mktemp("features") / "run", verbose=0)
    return result, out.getvalue()


# --- early stopping --------------------------------------------------------------------------------


def test_patience_stops_when_the_best_metric_cannot_improve(features_run):
    result, printed = features_run
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["early_stopped"] == {"epoch": STOP_EPOCH, "best_epoch": 1}
    assert metrics["epochs_completed"] == STOP_EPOCH and len(metrics["history"]) == STOP_EPOCH
    assert all(h["val_top6_accuracy"] == 1.0 for h in metrics["history"])
    assert "early stopping after epoch 7" in printed and "best epoch: 1" in printed


class _Recorded:
    """What EarlyStopping reads from the Checkpointer: its metric, best value, best epoch and history
    (the Checkpointer records the first epoch that reached the best value; equal later values are no
    improvement)."""

    def __init__(self, values, best, metric="val_accuracy"):
        self.best_metric, self.best = metric, best
        self.history = [{"epoch": i + 1, metric: v} for i, v in enumerate(values)]
        self.best_epoch = next((i + 1 for i, v in enumerate(values) if best is not None and v == best), None)


def _stopper(values, best, patience, epochs=10):
    stopper = EarlyStopping(_Recorded(values, best), patience, epochs)
    stopper.set_model(keras.Sequential())
    stopper.model.stop_training = False
    stopper.on_epoch_end(len(values) - 1)
    return stopper


def test_early_stopping_counts_epochs_since_the_checkpointers_best():
    # best 0.6 first reached at epoch 2; the equal value at epoch 4 is not an improvement
    assert _stopper([0.5, 0.6, 0.55, 0.6], best=0.6, patience=2).stopped == {"epoch": 4, "best_epoch": 2}
    assert _stopper([0.5, 0.6, 0.55], best=0.6, patience=2).stopped is None
    assert _stopper([0.5, 0.6, 0.55, 0.6], best=0.6, patience=0).stopped is None  # 0 = off
    assert _stopper([0.5, 0.6, 0.55, 0.6], best=0.6, patience=2, epochs=4).stopped is None  # last epoch anyway
    assert _stopper([float("nan")] * 3, best=None, patience=3).stopped == {"epoch": 3, "best_epoch": None}


def test_early_stopping_ignores_an_epoch_the_checkpointer_did_not_record():
    stopper = EarlyStopping(_Recorded([0.5, 0.4], best=0.5), patience=1, epochs=10)
    stopper.set_model(keras.Sequential())
    stopper.on_epoch_end(2)  # epoch 3 ended without a record (diverged or interrupted)
    assert stopper.stopped is None


# --- gradient clipping ---------------------------------------------------------------------------


def test_clipnorm_reaches_the_optimizer(features_run):
    result, _ = features_run
    assert result.model.optimizer.clipnorm == 1.0
    assert make_optimizer(_cfg(), total_steps=10).clipnorm is None  # 0 = off


def _first_update(clipnorm: float) -> float:
    """|update| of Adam's first step on a gradient of norm 5: Adam divides by the gradient's size,
    so only a clipped norm far below its epsilon (1e-7) makes the step visibly smaller."""
    opt = make_optimizer(_cfg(sets=[f"clipnorm={clipnorm}", "weight_decay=0.0", "learning_rate=1.0"]), total_steps=10)
    var = keras.Variable(np.zeros(2, "float32"))
    opt.apply([keras.ops.convert_to_tensor(np.array([3.0, 4.0], "float32"))], [var])
    return float(np.abs(keras.ops.convert_to_numpy(var)).max())


def test_clipnorm_clips_the_gradient_the_optimizer_applies():
    assert _first_update(0.0) == pytest.approx(1.0, rel=1e-3)
    assert _first_update(1e-9) < 0.05


# --- mixed precision -----------------------------------------------------------------------------


def test_mixed_bfloat16_computes_in_bfloat16_keeps_float32_variables_and_logits(features_run):
    result, _ = features_run
    model = result.model
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs and all(layer.dtype_policy.name == "mixed_bfloat16" for layer in convs)
    assert all(layer.compute_dtype == "bfloat16" and layer.variable_dtype == "float32" for layer in convs)
    assert {w.dtype for w in model.weights} == {"float32"}
    assert model.get_layer("logits").compute_dtype == "float32"
    x = np.zeros((2, *model.input_shape[1:]), "float32")
    assert keras.backend.standardize_dtype(model.predict_on_batch(x).dtype) == "float32"
    assert keras.config.dtype_policy().name == "float32"  # the global policy did not leak
    loaded = keras.saving.load_model(result.run_dir / "model.keras")
    assert loaded.get_layer(convs[0].name).dtype_policy.name == "mixed_bfloat16"


def test_mixed_bfloat16_still_learns(features_run):
    history = features_run[0].metrics["history"]
    assert history[-1]["loss"] < 0.7 * history[0]["loss"]


def test_mixed_float16_wraps_the_optimizer_in_loss_scaling():
    task = get_task("classification")
    cfg = _cfg(sets=["precision='mixed_float16'", "clipnorm=2.0"])
    model = build_compiled_model(task, cfg, build_data(task, cfg).info, total_steps=10)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.optimizer.inner_optimizer.clipnorm == 2.0
    assert model.get_layer("logits").compute_dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"


class _OwnStep(keras.Model):
    """A model with its own train step and compile hook, as a GAN has."""

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)

    def call(self, x):
        return self.dense(x)

    def train_step(self, *args, **kwargs):
        return super().train_step(*args, **kwargs)


OWN_STEP = Task(name="own-step", description="", config_cls=type(_cfg()), build_datasets=None,
                build_model=lambda cfg, info: _OwnStep(), compile=lambda model, cfg, info, opt: model.compile(opt))


def test_mixed_float16_is_refused_for_a_model_with_its_own_train_step():
    with pytest.raises(UserError, match="precision=mixed_float16: task 'own-step' has its own train step"):
        build_compiled_model(OWN_STEP, _cfg(sets=["precision='mixed_float16'"]), None, total_steps=10)
    assert keras.config.dtype_policy().name == "float32"
    model = build_compiled_model(OWN_STEP, _cfg(sets=["precision='mixed_bfloat16'"]), None, total_steps=10)
    assert model.dense.dtype_policy.name == "mixed_bfloat16"  # bfloat16 needs no loss scaling


# --- steps_per_execution -------------------------------------------------------------------------


def test_steps_per_execution_runs_every_step_and_logs_on_schedule(features_run):
    from tensorboard.backend.event_processing import event_accumulator

    result, _ = features_run
    steps = STOP_EPOCH * STEPS_PER_EPOCH
    assert result.model.steps_per_execution == 2
    assert int(keras.ops.convert_to_numpy(result.model.optimizer.iterations)) == steps
    assert [h["step"] for h in result.metrics["history"]] == list(range(2, steps + 1, 2))
    acc = event_accumulator.EventAccumulator(str(result.run_dir / "train"), size_guidance={"tensors": 0})
    acc.Reload()
    # calls end at steps 2, 4, ..., 14; a multiple of log_every_steps=3 is reached by 4, 6, 10, 12
    assert [e.step for e in acc.Tensors("step/loss")] == [4, 6, 10, 12]


def test_steps_per_execution_must_divide_the_steps_per_epoch(tmp_path):
    cfg = _cfg(sets=["steps_per_execution=3"])  # debug: 256 / 32 = 8 steps per epoch
    with pytest.raises(UserError, match=r"steps_per_execution=3: must divide the 8 training steps per epoch; "
                                        r"choose one of 1, 2, 4, 8"):
        fit(get_task("classification"), cfg, tmp_path / "run", verbose=0)


def test_steps_per_execution_is_refused_where_a_task_compiles_without_it():
    with pytest.raises(UserError, match="steps_per_execution=2: task 'own-step' compiles its own train step"):
        build_compiled_model(OWN_STEP, _cfg(sets=["steps_per_execution=2"]), None, total_steps=10)


def test_resuming_an_early_stopped_run_does_not_train_again(features_run, cli, capsys):
    result, _ = features_run
    history = (result.run_dir / "history.json").read_text()
    assert cli("fit", "--resume", result.run_dir, "--quiet") == 0
    assert f"already finished (stopped early after epoch {STOP_EPOCH})" in capsys.readouterr().out
    assert (result.run_dir / "history.json").read_text() == history
