"""Forecasting: learning against the naive baselines, the chronological split, normalisation fitted
on train and reused by predict, MASE against hand-computed values, CSV formats and bad files.

One small dense run on the generated series is shared by the tests that need a trained model.
"""

import json

import numpy as np
import pytest

from conftest import BACKEND, FAST_JIT, shared_data
from errors import DataError

TASK = "forecasting"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import cli

    run_dir = tmp_path_factory.mktemp("fc") / "r"
    rc = cli.main(["fit", "--task", TASK, "--preset", "debug", "--run-dir", str(run_dir), "--quiet",
                   "--set", FAST_JIT, "--set", "epochs=4", "--set", "series_length=1600", "--set", "input_length=48",
                   "--set", "horizon=12", "--set", "hidden=32", "--set", "batch_size=32", "--set", "learning_rate=3e-3"])
    assert rc == 0
    return run_dir


def test_dense_forecaster_beats_naive_and_seasonal_naive_in_the_same_run(run):
    metrics = json.loads((run / "metrics.json").read_text())
    val = metrics["validation"]
    assert metrics["backend"] == BACKEND and metrics["best"] == {**metrics["best"], "metric": "val_mase",
                                                                  "direction": "down"}
    assert val["mase"] < 0.8 * val["seasonal_naive_mase"], val
    assert val["mase"] < 0.8 * val["naive_mase"], val
    assert val["mae"] <= val["rmse"]
    assert metrics["test"]["mase"] < metrics["test"]["seasonal_naive_mase"]


def _table(tmp_path, n=300, name="t.csv", extra_col=True):
    """A CSV whose value at each step is its step number (so a value says when it is) + a second target."""
    t = np.arange(n)
    days = np.datetime64("2001-01-01") + t.astype("timedelta64[D]")
    lines = ["date,level,other"] + [f"{d},{i},{np.sin(i / 3):.5f}" for d, i in zip(days, t)]
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _data(path, *sets):
    from tasks.base import get_task, resolve_config

    task = get_task(TASK)
    cfg = resolve_config(task, sets=[f"data={path}", "time_column=date", "target_columns=level,other",
                                     "input_length=10", "horizon=5", "season=7", *sets])
    return task, cfg, task.build_datasets(cfg)


def _target_steps(ds, info):
    """The step numbers of every target (column 'level' is the step number), per window."""
    from tasks.forecasting import denormalize

    x, y = next(iter(ds.batch(10_000).as_numpy_iterator()))
    return denormalize(x["history"], info)[..., 0].round(), denormalize(y, info)[..., 0].round()


def test_split_is_chronological_no_validation_target_precedes_a_training_one(tmp_path):
    _, _, data = _data(_table(tmp_path))
    info = data.info
    tr_hist, tr_y = _target_steps(data.train, info)
    va_hist, va_y = _target_steps(data.val, info)
    te_hist, te_y = _target_steps(data.test, info)
    assert tr_y.max() < va_y.min() and va_y.max() < te_y.min()
    assert tr_hist.max() < va_y.min()  # no training window even sees a validation value
    np.testing.assert_array_equal(va_y[:, 0], np.sort(va_y[:, 0]))  # windows kept in time order
    np.testing.assert_array_equal(va_hist[0], np.arange(va_y[0, 0] - 10, va_y[0, 0]))  # history = the 10 steps before
    assert (info.num_train, info.num_val, info.num_test) == (len(tr_y), len(va_y), len(te_y))
    times = info.extra["target_times"]
    assert times["train"][1] < times["validation"][0] < times["validation"][1] < times["test"][0]


def test_normalisation_is_fitted_on_the_training_part_only(tmp_path):
    _, _, data = _data(_table(tmp_path))
    end = data.info.extra["time_steps"]["train"][1]  # steps 0..end-1 are training
    stats = data.info.extra["stats"]
    assert stats["mean"][0] == pytest.approx((end - 1) / 2, rel=1e-5)
    assert stats["std"][0] == pytest.approx(np.arange(end).std(), rel=1e-4)


def test_predict_reuses_the_saved_statistics_and_writes_json_and_a_png(run, cli, tmp_path):
    info = json.loads((run / "data_info.json").read_text())
    series = 10 + np.sin(np.arange(200) * 2 * np.pi / 24)
    (tmp_path / "in.csv").write_text("value\n" + "\n".join(f"{v:.6f}" for v in series) + "\n")
    assert cli("predict", "--run-dir", run, "--out", tmp_path / "out", tmp_path / "in.csv") == 0
    row = json.loads((tmp_path / "out" / "predictions.json").read_text())[0]
    assert row["horizon"] == 12 and len(row["forecast"]["value"]) == 12 and len(row["times"]) == 12
    assert (tmp_path / "out" / "forecast_0.png").stat().st_size > 0
    # The same forecast by hand: saved mean/std in, model, saved mean/std out.
    from pipelines.series import apply_stats, season_reference
    from training.inference import load_trained_model
    from tasks.base import get_task

    model, _, _ = load_trained_model(get_task(TASK), run)
    stats = info["extra"]["stats"]
    normed = apply_stats(series[:, None].astype("float32"), stats)
    ref = season_reference(np.concatenate([normed, np.zeros((12, 1), "float32")]), 200, 12, 24)
    out = np.asarray(model.predict_on_batch({"history": normed[None, -48:], "season_ref": ref[None]}))[0, :, 0]
    np.testing.assert_allclose(row["forecast"]["value"], out * stats["std"][0] + stats["mean"][0], rtol=1e-4)


def test_mase_and_seasonal_scale_match_hand_computed_values():
    from tasks.forecasting import mase, seasonal_scale

    train = np.array([[1.0, 10.0], [3.0, 10.0], [2.0, 14.0], [6.0, 10.0]])
    # season 2: |2-1|, |6-3| -> 2.0;  |14-10|, |10-10| -> 2.0
    np.testing.assert_allclose(seasonal_scale(train, 2), [2.0, 2.0])
    truth = np.zeros((2, 3, 2))
    pred = np.zeros((2, 3, 2))
    pred[..., 0] = 1.0  # MAE 1 on target 0
    pred[0, :, 1] = 3.0  # MAE 1.5 on target 1
    assert mase(truth, pred, [2.0, 2.0]) == pytest.approx((1 / 2 + 1.5 / 2) / 2)


@pytest.mark.parametrize("line, sets, expected", [
    ("2001-01-03,x,1", [], "t.csv line 4: column 'level' value 'x' is not a number"),
    ("2001-01-03,1,1", ["target_columns=level,speed"], "target column(s) ['speed'] not in the header"),
    ("2001-01-01,1,1", [], "t.csv line 4: time stamps must increase (oldest first); 2001-01-01 does not follow"),
    ("2001-01-03,0,1", ["transform=log"], "t.csv: --set transform=log needs positive values; line 4"),
])
def test_bad_csv_is_a_one_line_error_naming_the_file(tmp_path, line, sets, expected):
    path = tmp_path / "t.csv"
    path.write_text(f"date,level,other\n2001-01-01,1,2\n2001-01-02,1,2\n{line}\n" + "".join(
        f"2001-02-{d:02d},1,2\n" for d in range(1, 28)))
    with pytest.raises(DataError) as err:
        _data(path, *sets)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_airline_passengers_as_shipped_and_its_season_detected():
    from tasks.base import get_task, resolve_config

    path = shared_data("forecast") / "airline-passengers.csv"
    task = get_task(TASK)
    cfg = resolve_config(task, preset="monthly", sets=[f"data={path}", "time_column=Month", "season=0"])
    info = task.build_datasets(cfg).info
    assert info.extra["columns"] == ["Passengers"] and info.extra["season"] == 12
    assert info.extra["time_steps"]["train"] == [0, 100] and info.extra["time_unit"] == "datetime64[M]"
    assert info.extra["target_times"]["test"][1] == "1960-12"
