"""The engine's honesty rules: three splits, test read once after training, declared metric directions."""

import json
import shutil

import keras
import numpy as np
import pytest

from conftest import FAST_JIT
from errors import UserError
from pipelines import splits as split_rules
from tasks.base import get_task, resolve_config
from test_classification_data import make_class_folders
from training import directions
from training.callbacks import Checkpointer, Guard
from training.inference import evaluate
from training.loop import fit

# --- splits ------------------------------------------------------------------------------------------


def test_carved_validation_depends_on_seed_only():
    a_train, a_val = split_rules.carve_indices(100, 0.2, seed=3, name="x")
    b_train, b_val = split_rules.carve_indices(100, 0.2, seed=3, name="x")
    c_train, c_val = split_rules.carve_indices(100, 0.2, seed=4, name="x")
    assert len(a_val) == 20 and np.array_equal(a_val, b_val) and not np.array_equal(a_val, c_val)
    assert sorted(np.concatenate([a_train, a_val]).tolist()) == list(range(100))


def test_split_folders_are_recognised_and_class_folders_are_not(tmp_path):
    for name in ("train", "valid", "test"):
        (tmp_path / "a" / name).mkdir(parents=True)
    assert split_rules.find_split_folders(tmp_path / "a") == {
        "train": tmp_path / "a" / "train", "validation": tmp_path / "a" / "valid", "test": tmp_path / "a" / "test"}
    for name in ("cat", "test"):  # a class that happens to be called "test" is still a class
        (tmp_path / "b" / name).mkdir(parents=True)
    assert split_rules.find_split_folders(tmp_path / "b") is None


@pytest.fixture(scope="module")
def split_folder_runs(tmp_path_factory):
    """An image folder with train/<class>/ and test/<class>/, trained twice: once with the test split's
    labels swapped (circle <-> square). Nothing the test split holds may change what training chose."""
    root = tmp_path_factory.mktemp("splitdata")
    make_class_folders(root / "clean" / "train", per_class=24, classes=("circle", "square"))
    make_class_folders(root / "clean" / "test", per_class=6, classes=("circle", "square"))
    shutil.copytree(root / "clean", root / "flipped")
    test = root / "flipped" / "test"
    (test / "circle").rename(test / "tmp")
    (test / "square").rename(test / "circle")
    (test / "tmp").rename(test / "square")
    task = get_task("classification")
    runs = {}
    for name in ("clean", "flipped"):
        cfg = resolve_config(task, "debug", sets=[f"data={root / name}", "epochs=3", "image_size=24",
                                                 "val_fraction=0.25", "augment=false", "batch_size=12",
                                                 FAST_JIT])
        runs[name] = fit(task, cfg, root / f"run-{name}", verbose=0)
    return root, runs


def test_folder_with_train_and_test_trains_on_train_and_reports_test(split_folder_runs):
    root, runs = split_folder_runs
    m = runs["clean"].metrics
    assert m["splits"]["train"] == 36 and m["splits"]["validation"] == 12 and m["splits"]["test"] == 12
    assert m["splits"]["origin"]["validation"].startswith("carved from train")
    assert m["test"]["checkpoint"] == "best" and m["test"]["epoch"] == m["best"]["epoch"]
    assert m["test"]["examples"] == 12 and 0.0 <= m["test"]["accuracy"] <= 1.0
    saved = json.loads((root / "run-clean" / "metrics.json").read_text())
    assert saved["test"]["accuracy"] == m["test"]["accuracy"]


def test_test_labels_cannot_influence_training(split_folder_runs):
    root, runs = split_folder_runs
    clean, flipped = runs["clean"].metrics, runs["flipped"].metrics
    assert clean["history"] == flipped["history"]  # every validation figure, every epoch
    assert clean["best"] == flipped["best"]
    assert flipped["test"]["accuracy"] == pytest.approx(1.0 - clean["test"]["accuracy"])  # same model, flipped labels


def test_evaluate_splits_and_other_data(split_folder_runs, capsys):
    root, runs = split_folder_runs
    task, run_dir = get_task("classification"), root / "run-clean"
    test = evaluate(task, run_dir, split="test", which="best")
    assert test["examples"]["count"] == 12
    assert test["metrics"]["accuracy"] == pytest.approx(runs["clean"].metrics["test"]["accuracy"], abs=1e-6)
    everything = evaluate(task, run_dir, split="all")
    assert everything["examples"]["parts"] == {"train": 36, "validation": 12, "test": 12}
    other = evaluate(task, run_dir, data=str(root / "flipped" / "test"))  # a folder of class folders
    assert other["split"] == "all" and other["examples"]["count"] == 12


# --- metric directions -----------------------------------------------------------------------------


def _regression_model():
    inputs = keras.Input((1,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    metrics = [keras.metrics.MeanAbsoluteError(name="mae"), keras.metrics.Mean(name="undeclared")]
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss="mse", metrics=metrics[:1])
    return model, metrics


def test_directions_come_from_the_metrics_not_their_names():
    model, metrics = _regression_model()
    found = directions.logged_directions(model, metrics, {"map50": "up"})
    assert found["loss"] == "down" and found["mae"] == "down" and found["map50"] == "up"
    assert found["undeclared"] is None
    assert directions.resolve_best_metric("mae", found) == ("val_mae", True)
    assert directions.resolve_best_metric("val_map50", found) == ("val_map50", False)
    with pytest.raises(UserError, match=r"best_metric=val_maee: the model does not log it; it logs val_loss, val_mae"):
        directions.resolve_best_metric("val_maee", found)
    with pytest.raises(UserError, match="declares no direction"):
        directions.resolve_best_metric("val_undeclared", found)


def test_mean_absolute_error_picks_its_lowest_epoch(tmp_path):
    model, metrics = _regression_model()
    name, minimise = directions.resolve_best_metric("val_mae", directions.logged_directions(model, metrics))
    x = np.linspace(-1, 1, 64, dtype="float32")[:, None]
    y = 3 * x + 1
    ckpt = Checkpointer(tmp_path, guard=Guard(), steps_per_epoch=4, keep=1, best_metric=name, minimise=minimise)
    model.fit(x, y, validation_data=(x, y), epochs=4, batch_size=16, verbose=0, callbacks=[ckpt])
    maes = [h["val_mae"] for h in ckpt.history]
    assert maes[-1] < maes[0]  # it learns, so "highest is best" would pick epoch 1
    assert ckpt.best_epoch == int(np.argmin(maes)) + 1 and ckpt.best == min(maes)


def test_a_mistyped_best_metric_fails_before_the_first_step(tmp_path):
    task = get_task("classification")
    cfg = resolve_config(task, "debug", sets=["best_metric=val_acuracy", "num_train=64"])
    with pytest.raises(UserError, match=r"best_metric=val_acuracy: the model does not log it; it logs val_loss, val_accuracy"):
        fit(task, cfg, tmp_path / "run", verbose=0)
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())


# --- failures inside the input pipeline ----------------------------------------------------------


def test_an_input_pipeline_failure_during_fit_is_one_line(tmp_path):
    """A tf.data error raised while training (here: examples that cannot be batched, as empty texts
    once produced) is the data's fault: a one-line DataError naming --data, not a traceback."""
    import dataclasses

    import tensorflow as tf

    from errors import DataError

    base = get_task("classification")

    def broken_datasets(cfg):
        data = base.build_datasets(cfg)
        shrink = lambda x, y: (tf.cond(y == 0, lambda: x[:4], lambda: x), y)  # noqa: E731  (ragged shapes)
        data.train = data.train.map(shrink)
        return data

    task = dataclasses.replace(base, name="broken-classification", build_datasets=broken_datasets)
    cfg = resolve_config(base, "debug", sets=["num_train=64", "augment=false"])
    with pytest.raises(DataError) as caught:
        fit(task, cfg, tmp_path / "run", verbose=0)
    message = str(caught.value)
    assert message.startswith("--data embedded: the input pipeline failed: ") and "\n" not in message
    assert "--debug" in message
