"""Time-series classification: learning on generated signals, every file format, masking of padding,
saved normalisation reused by predict, the metrics against hand-computed values, and bad files.

One small FCN run is shared by the tests that need a trained model (FAST_JIT; a few seconds).
"""

import json

import numpy as np
import pytest

from conftest import BACKEND, FAST_JIT, shared_data
from errors import DataError

TASK = "timeseries-classification"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import cli

    run_dir = tmp_path_factory.mktemp("tsc") / "r"
    rc = cli.main(["fit", "--task", TASK, "--preset", "debug", "--run-dir", str(run_dir), "--quiet",
                   "--set", FAST_JIT, "--set", "epochs=3", "--set", "num_train=256", "--set", "num_val=64",
                   "--set", "length=48", "--set", "width=16", "--set", "num_classes=4", "--set", "learning_rate=1e-2"])
    assert rc == 0
    return run_dir


def test_fcn_learns_generated_signals_well_above_chance(run):
    metrics = json.loads((run / "metrics.json").read_text())
    val = metrics["validation"]
    assert metrics["backend"] == BACKEND
    # 4 balanced classes: chance is 0.25.
    assert val["accuracy"] >= 0.6, val
    assert val["macro_f1"] >= 0.5, val
    assert metrics["best"]["metric"] == "val_accuracy" and metrics["best"]["direction"] == "up"
    assert (run / "validation").is_dir()


def test_training_statistics_are_saved_and_predict_reuses_them(run, cli, tmp_path, capsys):
    info = json.loads((run / "data_info.json").read_text())
    assert info["extra"]["normalize"] == "global" and len(info["extra"]["stats"]["mean"]) == 1
    assert info["inputs"]["series"]["shape"] == [48, 1]
    # One file written with one value a line, one as a single row, one .npy: same series, same answer.
    from pipelines.series import generated_signals

    seq = generated_signals(1, 5, "test", length=48, num_classes=4)
    values = seq.x[0, ~np.isnan(seq.x[0, :, 0]), 0]
    (tmp_path / "a.txt").write_text("\n".join(map(str, values)))
    (tmp_path / "b.csv").write_text(",".join(map(str, values)))
    np.save(tmp_path / "c.npy", values)
    files = [tmp_path / n for n in ("a.txt", "b.csv", "c.npy")]
    assert cli("predict", "--run-dir", run, "--out", tmp_path / "out", *files) == 0
    rows = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert len(rows) == 3 and {r["label"] for r in rows} <= set(info["class_names"])
    for r in rows:
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert r["probabilities"] == pytest.approx(rows[0]["probabilities"], abs=1e-5)
    # The saved statistics, not the file's own, normalise the input: shifting the file changes the answer.
    (tmp_path / "d.txt").write_text("\n".join(map(str, values + 50.0)))
    assert cli("predict", "--run-dir", run, "--out", tmp_path / "out2", tmp_path / "d.txt") == 0
    shifted = json.loads((tmp_path / "out2" / "predictions.json").read_text())[0]
    assert shifted["probabilities"] != pytest.approx(rows[0]["probabilities"], abs=1e-3)


@pytest.mark.parametrize("sep", ["\t", ",", " "])
def test_ucr_rows_with_nan_padding_read_in_every_separator(tmp_path, sep):
    from pipelines.series import read_ucr

    path = tmp_path / "X_TRAIN.tsv"
    path.write_text(f"1{sep}0.5{sep}1.5{sep}2.5\n2.0{sep}-1{sep}3{sep}NaN\n\n")
    seqs = read_ucr(path)
    assert seqs.labels == ["1", "2"] and seqs.x.shape == (2, 3, 1)
    assert np.isnan(seqs.x[1, 2, 0]) and seqs.x[0, 2, 0] == 2.5


@pytest.mark.parametrize("text, expected", [
    ("1\t0.5\t1.5\n2\t0.5\n", "X_TRAIN.tsv line 2: 1 values where the longest row has 2; pad shorter series with NaN"),
    ("1\t0.5\t1.5\n2\t0.5\tabc\n", "X_TRAIN.tsv line 2: value 2 'abc' is not a number"),
    ("1\t0.5\tNaN\t1.5\n", "X_TRAIN.tsv line 1: NaN inside the series"),
])
def test_bad_ucr_rows_are_one_line_errors_naming_file_and_line(tmp_path, text, expected):
    from pipelines.series import read_ucr

    (tmp_path / "X_TRAIN.tsv").write_text(text)
    with pytest.raises(DataError) as err:
        read_ucr(tmp_path / "X_TRAIN.tsv")
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_csv_rows_and_multivariate_npz(tmp_path):
    from pipelines.series import read_sequences

    (tmp_path / "s.csv").write_text("t0,t1,label,t2\n1,2,up,3\n3,2,down,\n")
    seqs = read_sequences(tmp_path / "s.csv", "label")
    assert seqs.labels == ["up", "down"] and seqs.x.shape == (2, 3, 1) and np.isnan(seqs.x[1, 2, 0])
    with pytest.raises(DataError, match="no label column 'cls'"):
        read_sequences(tmp_path / "s.csv", "cls")
    np.savez(tmp_path / "m.npz", x=np.zeros((5, 7, 3)), y=np.arange(5) % 2)
    seqs = read_sequences(tmp_path / "m.npz")
    assert seqs.x.shape == (5, 7, 3) and seqs.labels == ["0", "1", "0", "1", "0"]


def test_per_series_znormalisation_ignores_padding():
    from pipelines.series import znorm_per_series

    x = np.array([[[1.0], [2.0], [3.0], [np.nan]]], np.float32)
    z = znorm_per_series(x)
    assert np.isnan(z[0, 3, 0])
    np.testing.assert_allclose(z[0, :3, 0], [-1.2247449, 0.0, 1.2247449], rtol=1e-5)


@pytest.mark.parametrize("name", ["fcn", "lstm"])  # resnet1d shares fcn's masking, gru lstm's builder
def test_padding_is_masked_a_padded_series_classifies_as_the_unpadded_one(name):
    """Same weights, the series alone (10 steps) vs. the series + 6 NaN steps: same logits."""
    import keras

    from keras_models.series import CLASSIFIERS

    keras.utils.set_random_seed(0)
    short = CLASSIFIERS[name]((10, 2), 3, width=8)
    padded = CLASSIFIERS[name]((16, 2), 3, width=8)
    padded.set_weights(short.get_weights())
    x = np.random.default_rng(0).standard_normal((2, 10, 2)).astype("float32")
    xp = np.concatenate([x, np.full((2, 6, 2), np.nan, np.float32)], axis=1)
    np.testing.assert_allclose(np.asarray(padded.predict_on_batch(xp)), np.asarray(short.predict_on_batch(x)),
                               atol=1e-5)


def test_macro_f1_matches_the_hand_computed_value():
    """3 classes, true [0,0,1,1,2,2], predicted [0,1,1,1,2,0]: class 0 P 1/2 R 1/2 F1 1/2; class 1 P 2/3 R 1
    F1 4/5; class 2 P 1 R 1/2 F1 2/3 -> macro F1 0.6556 (accuracy 4/6 would differ)."""
    from keras_models.metrics import SparseF1Score

    pred = np.array([0, 1, 1, 1, 2, 0])
    metric = SparseF1Score(3)
    metric.update_state(np.array([0, 0, 1, 1, 2, 2]), np.eye(3, dtype="float32")[pred] * 5.0)
    assert float(metric.result()) == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3, abs=1e-5)


def test_ucr_gunpoint_as_shipped_gives_train_validation_and_test():
    from tasks.base import get_task, resolve_config

    root = shared_data("ucr") / "GunPoint"
    task = get_task(TASK)
    data = task.build_datasets(resolve_config(task, preset="ucr", sets=[f"data={root}"]))
    info = data.info
    assert (info.num_train, info.num_val, info.num_test) == (40, 10, 150)
    assert info.class_names == ("1", "2") and info.input_shape == (150, 1)
    assert info.splits["test"].endswith("GunPoint_TEST.tsv") and "carved" in info.splits["validation"]
    x, y = next(iter(data.test.batch(150).as_numpy_iterator()))
    assert x.shape == (150, 150, 1) and sorted(np.bincount(y)) == [74, 76]


def test_transformer_ignores_padding_and_survives_a_save_and_load(tmp_path):
    """Padding steps are masked out of attention and pooling: what they would hold cannot matter."""
    import keras

    from keras_models.series import CLASSIFIERS

    keras.utils.set_random_seed(0)
    model = CLASSIFIERS["transformer"]((12, 1), 3, width=8, num_heads=2)
    x = np.random.default_rng(1).standard_normal((2, 12, 1)).astype("float32")
    x[:, 8:] = np.nan
    logits = np.asarray(model.predict_on_batch(x))
    assert np.isfinite(logits).all()
    model.save(tmp_path / "t.keras")
    np.testing.assert_allclose(np.asarray(keras.saving.load_model(tmp_path / "t.keras").predict_on_batch(x)),
                               logits, atol=1e-5)
