"""Forecasting: the next `horizon` values of one or more series from the last `input_length` values.

Data is one table of time-indexed target columns: a generated series (trend, daily and weekly
seasonality, noise) or a CSV (`--set time_column=... target_columns=a,b`), split by time into train,
validation and test (never shuffled across a boundary: every validation target comes after every
training one). Mean and std per column are fitted on the training part only, saved in
data_info.json and reused by evaluate and predict. Models see normalised values and, beside the
history, the seasonal-naive forecast of the horizon (values one season earlier, all in the past).

MAE, RMSE (original units) and MASE (MAE over the in-sample seasonal-naive MAE of the training
part) are whole-split metrics, lower is better, with the naive and seasonal-naive baselines' MASE
reported beside them in the same run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from errors import DataError
from pipelines import Data, DataInfo, parse_data_spec
from pipelines import series as series_data
from pipelines.data import InputSpec
from tasks.base import SplitMetrics, Task, TrainConfig, register
from tasks.lazy import lazy_module
from training.baselines import regression_errors

keras = lazy_module("keras")
series_models = lazy_module("keras_models.series")

MODEL_NAMES = ("dense", "lstm", "conv1d")  # keys of keras_models.series.FORECASTERS
EMBEDDED_PERIODS = (24, 168)  # the generated series' daily and weekly seasons (hourly steps)


@dataclass(frozen=True)
class ForecastingConfig(TrainConfig):
    model: str = field(default="dense", metadata={"choices": MODEL_NAMES, "help": "dense | lstm | conv1d"})
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    val_fraction: float = 0.15
    test_fraction: float = field(default=0.15, metadata={"help": "last share of the time steps held out as test (0 = none)"})
    input_length: int = field(default=168, metadata={"positive": True, "help": "past steps the model sees"})
    horizon: int = field(default=24, metadata={"positive": True, "help": "future steps forecast at once"})
    stride: int = field(default=1, metadata={"positive": True, "help": "steps between consecutive windows"})
    season: int = field(default=0, metadata={"help": "seasonal period in steps for MASE and the seasonal-naive "
                                                     "baseline (0 = detected from the training data's autocorrelation)"})
    hidden: int = field(default=128, metadata={"positive": True, "help": "units of the hidden layers"})
    num_layers: int = field(default=1, metadata={"positive": True, "help": "LSTM / Conv1D layers"})
    dropout: float = field(default=0.0, metadata={"help": "dropout before the output layer"})
    transform: str = field(default="none", metadata={
        "choices": ("none", "log"), "help": "log: model the logarithm (a seasonality that grows with the level "
                                            "becomes additive); metrics stay in original units"})
    loss: str = field(default="mse", metadata={"choices": ("mse", "mae", "huber"), "help": "training loss (normalised units)"})
    time_column: str = field(default="", metadata={"help": "CSV column of time stamps, oldest first ('' = row order)"})
    target_columns: tuple[str, ...] = field(default=(), metadata={"help": "CSV columns to forecast (default: all but the time column)"})
    series_length: int = field(default=4000, metadata={"positive": True, "help": "generated time steps (embedded data)"})
    noise: float = field(default=0.15, metadata={"help": "generated noise std (embedded data)"})


# --- data ----------------------------------------------------------------------------------------


def _table(cfg, spec) -> series_data.Table:
    if spec.kind == "embedded":
        return series_data.generated_seasonal(cfg.series_length, cfg.seed, EMBEDDED_PERIODS, cfg.noise)
    if spec.kind != "path" or spec.path.is_dir():
        raise DataError(f"--data {cfg.data}: forecasting reads embedded data or a CSV file")
    return series_data.read_time_csv(spec.path, cfg.time_column, cfg.target_columns)


def split_bounds(n: int, cfg) -> dict:
    """{split: (first, end)} time-index ranges: train, then validation, then test, in time order."""
    n_test = int(round(n * cfg.test_fraction))
    n_val = max(1, int(round(n * cfg.val_fraction)))
    n_train = n - n_val - n_test
    bounds = {"train": (0, n_train), "validation": (n_train, n_train + n_val)}
    if n_test:
        bounds["test"] = (n_train + n_val, n)
    return bounds


def _season(cfg, spec, train: np.ndarray) -> tuple[int, str]:
    if cfg.season:
        return cfg.season, "--set season"
    if spec.kind == "embedded":
        return EMBEDDED_PERIODS[0], "the generator's daily period"
    return series_data.detect_season(train, max_lag=min(len(train) // 3, 400)), "detected (training autocorrelation)"


def seasonal_scale(train: np.ndarray, season: int) -> np.ndarray:
    """Per column: the in-sample seasonal-naive MAE on the training part (MASE's denominator)."""
    scale = np.mean(np.abs(train[season:] - train[:-season]), axis=0)
    return np.where(scale > 1e-8, scale, 1.0)


def _build(cfg, fitted: DataInfo | None) -> Data:
    spec = parse_data_spec(cfg.data)
    table = _table(cfg, spec)
    values, n = table.values, len(table.values)
    times = series_data.parse_times(table.times, cfg.data) if cfg.time_column else None
    bounds = split_bounds(n, cfg)
    train = values[slice(*bounds["train"])]
    if fitted is not None:
        extra = fitted.extra
        stats, season, season_note = extra["stats"], extra["season"], extra["season_source"]
        scale = np.asarray(extra["mase_scale"], np.float64)
    else:
        stats = series_data.channel_stats(forward(train, cfg.transform, cfg.data)[None])
        season, season_note = _season(cfg, spec, train)
        if not 1 <= season < len(train):
            raise DataError(f"--set season={season}: expected 1 to {len(train) - 1} (the training part's length)")
        scale = seasonal_scale(train.astype(np.float64), season)
    normed = series_data.apply_stats(forward(values, cfg.transform, cfg.data), stats)
    sets, counts, span = {}, {}, {}
    for split, (begin, end) in bounds.items():
        starts = series_data.window_starts(begin, end, cfg.input_length, cfg.horizon, cfg.stride, season)
        if not len(starts):
            raise DataError(f"--data {cfg.data}: the {split} part ({end - begin} of {n} steps) holds no window of "
                            f"{cfg.input_length} inputs + {cfg.horizon} targets; lower input_length/horizon or "
                            "give more data")
        sets[split] = series_data.windows(normed, starts, cfg.input_length, cfg.horizon, season)
        counts[split] = len(starts)
        span[split] = [table.times[int(starts[0])], table.times[int(starts[-1]) + cfg.horizon - 1]]
    channels = values.shape[1]
    info = DataInfo(
        table_source(cfg, spec), counts["train"], counts["validation"],
        {"history": InputSpec((cfg.input_length, channels)), "season_ref": InputSpec((cfg.horizon, channels))},
        extra={"columns": list(table.columns), "stats": stats, "season": int(season), "season_source": season_note,
               "mase_scale": scale.tolist(), "input_length": cfg.input_length, "horizon": cfg.horizon,
               "target_times": span, "time_steps": {s: list(b) for s, b in bounds.items()},
               "time_unit": str(times.dtype) if times is not None else "row", "transform": cfg.transform},
        num_test=counts.get("test", 0), targets={"forecast": InputSpec((cfg.horizon, channels))},
        splits={s: f"time steps {b[0]}-{b[1] - 1} ({span[s][0]} .. {span[s][1]} targets), in time order"
                for s, b in bounds.items()})
    if fitted is None:
        print(f"data: {n} steps x {channels} target(s) {list(table.columns)}; season {season} ({season_note}); "
              f"windows train {counts['train']}, validation {counts['validation']}, test {counts.get('test', 0)}",
              flush=True)
    return Data.from_splits(sets, info)


def forward(values: np.ndarray, transform: str, source: str) -> np.ndarray:
    """The values the model works on: as read, or their logarithm (all must then be positive)."""
    if transform != "log":
        return values
    if (values <= 0).any():
        raise DataError(f"{source}: --set transform=log needs positive values; line {int(np.argmax((values <= 0).any(1))) + 2} "
                        "holds one <= 0")
    return np.log(values).astype(np.float32)


def table_source(cfg, spec) -> str:
    return "generated seasonal series (trend, periods 24 and 168, AR noise)" if spec.kind == "embedded" else cfg.data


def build_datasets(cfg) -> Data:
    return _build(cfg, None)


def rebuild_datasets(cfg, fitted: DataInfo) -> Data:
    """For evaluate: the training statistics, season and MASE scale saved with the run, never re-fitted."""
    return _build(cfg, fitted)


# --- model, loss, whole-split metrics ----------------------------------------------------------------


def build_model(cfg, info: DataInfo):
    channels = info.inputs["history"].shape[-1]
    return series_models.FORECASTERS[cfg.model](cfg.input_length, cfg.horizon, channels, hidden=cfg.hidden,
                                                num_layers=cfg.num_layers, dropout=cfg.dropout)


def loss(cfg, info):
    return {"mse": keras.losses.MeanSquaredError, "mae": keras.losses.MeanAbsoluteError,
            "huber": keras.losses.Huber}[cfg.loss]()


def metrics(cfg, info):
    return []  # MAE/RMSE/MASE are whole-split metrics in original units (SPLIT_METRICS)


def denormalize(x: np.ndarray, info: DataInfo) -> np.ndarray:
    stats = info.extra["stats"]
    out = np.asarray(x, np.float64) * np.asarray(stats["std"]) + np.asarray(stats["mean"])
    return np.exp(out) if info.extra.get("transform") == "log" else out


def forecasts(model, dataset, cfg, info: DataInfo) -> dict:
    """{'truth', 'model', 'naive', 'seasonal_naive'}: (windows, horizon, targets) in original units."""
    parts = {k: [] for k in ("truth", "model", "naive", "seasonal_naive")}
    for x, y in dataset.batch(max(cfg.batch_size, 256)).as_numpy_iterator():
        parts["truth"].append(y)
        parts["model"].append(np.asarray(model.predict_on_batch(x)))
        parts["naive"].append(np.repeat(x["history"][:, -1:], y.shape[1], axis=1))
        parts["seasonal_naive"].append(x["season_ref"])
    return {k: denormalize(np.concatenate(v), info) for k, v in parts.items()}


def mase(truth: np.ndarray, pred: np.ndarray, scale) -> float:
    """Mean over targets of (MAE of the target) / (its in-sample seasonal-naive MAE)."""
    per_target = np.mean(np.abs(pred - truth), axis=(0, 1)) / np.asarray(scale)
    return float(np.mean(per_target))


def split_metrics(model, dataset, cfg, info: DataInfo, report) -> dict:
    f = forecasts(model, dataset, cfg, info)
    scale = info.extra["mase_scale"]
    out = {**regression_errors(f["truth"], f["model"]), "mase": mase(f["truth"], f["model"], scale)}
    for name in ("naive", "seasonal_naive"):
        out[f"{name}_mae"] = regression_errors(f["truth"], f[name])["mae"]
        out[f"{name}_mase"] = mase(f["truth"], f[name], scale)
    report(f"MASE: model {out['mase']:.3f}, naive {out['naive_mase']:.3f}, seasonal naive "
           f"{out['seasonal_naive_mase']:.3f} (season {info.extra['season']}, {info.extra['season_source']})")
    return out


DOWN_METRICS = ("mae", "rmse", "mase", "naive_mae", "naive_mase", "seasonal_naive_mae", "seasonal_naive_mase")
SPLIT_METRICS = SplitMetrics(directions={k: "down" for k in DOWN_METRICS}, compute=split_metrics)


# --- pictures and predictions ----------------------------------------------------------------------

COLOURS = {"history": (120, 120, 120), "truth": (0, 0, 0), "forecast": (220, 40, 40), "seasonal naive": (60, 110, 220)}


def plot_forecast(history: np.ndarray, lines: dict, title: str, size=(480, 200)) -> np.ndarray:
    """An RGB line plot: the history, then each named line over the horizon (one target)."""
    w, h = size
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    everything = np.concatenate([history, *lines.values()])
    lo, hi = float(np.min(everything)), float(np.max(everything))
    span = hi - lo or 1.0
    n = len(history) + len(next(iter(lines.values())))
    x_of = lambda i: 8 + (w - 16) * i / max(1, n - 1)  # noqa: E731
    y_of = lambda v: h - 14 - (h - 40) * (v - lo) / span  # noqa: E731

    def line(values, offset, colour):
        pts = [(x_of(offset + i), y_of(v)) for i, v in enumerate(values)]
        draw.line(pts, fill=colour, width=2) if len(pts) > 1 else draw.point(pts, fill=colour)

    line(history, 0, COLOURS["history"])
    for k, (name, values) in enumerate(lines.items()):
        line(np.concatenate([history[-1:], values]), len(history) - 1, COLOURS.get(name, (0, 150, 0)))
        draw.text((8 + 110 * k, h - 12), name, fill=COLOURS.get(name, (0, 150, 0)))
    draw.line([(x_of(len(history) - 1), 22), (x_of(len(history) - 1), h - 14)], fill=(200, 200, 200))
    draw.text((8, 4), f"{title}   [{lo:.4g}, {hi:.4g}]", fill=(0, 0, 0))
    return np.asarray(img)


def visualize(model, batch, info: DataInfo, cfg) -> dict:
    """Forecast vs truth (and seasonal naive) on four fixed validation windows, first target."""
    x, y = batch
    pred = denormalize(np.asarray(model.predict_on_batch(x)), info)
    hist, truth, ref = (denormalize(a, info) for a in (x["history"], y, x["season_ref"]))
    picks = np.linspace(0, len(y) - 1, min(4, len(y))).astype(int)
    col = info.extra["columns"][0]
    plots = [plot_forecast(hist[i, :, 0], {"truth": truth[i, :, 0], "forecast": pred[i, :, 0],
                                           "seasonal naive": ref[i, :, 0]}, f"{col}: validation window {i}")
             for i in picks]
    return {"forecast_vs_truth": np.stack(plots)}


def sample_inputs(cfg, info: DataInfo, out_dir: Path, n: int) -> list[str]:
    """n CSVs of the generated series, each ending at a different step of its test part."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = series_data.generated_seasonal(cfg.series_length, cfg.seed, EMBEDDED_PERIODS, cfg.noise)
    begin = split_bounds(len(table.values), cfg).get("test", (len(table.values) - 1,))[0]
    ends = np.linspace(begin, len(table.values), n).astype(int)
    paths = []
    for i, end in enumerate(ends):
        path = out_dir / f"series_{i}.csv"
        rows = [",".join(table.columns)] + [",".join(f"{v:.6g}" for v in row) for row in table.values[:end]]
        path.write_text("\n".join(rows) + "\n")
        paths.append(str(path))
    return paths


def future_times(times: list, horizon: int, time_column: str, source: str) -> list:
    """The next `horizon` time stamps, stepping by the last interval; step numbers without a time column."""
    parsed = series_data.parse_times(times[-2:], source) if time_column and len(times) > 1 else None
    if parsed is None:
        return [str(len(times) + k) for k in range(horizon)]
    step = parsed[-1] - parsed[-2]
    return [str(parsed[-1] + step * (k + 1)) for k in range(horizon)]


def forecast_table(model, table: series_data.Table, cfg, info: DataInfo, source: str) -> dict:
    """The next horizon values per target after the table's last row (original units)."""
    extra = info.extra
    length, horizon, season = extra["input_length"], extra["horizon"], extra["season"]
    values = table.values
    need = max(length, season * ((horizon - 1) // season + 1))
    if len(values) < need:
        raise DataError(f"{source}: {len(values)} rows; the model needs the last {need} (input_length {length}, "
                        f"season {season})")
    normed = series_data.apply_stats(forward(values, extra.get("transform", "none"), source), extra["stats"])
    start = len(values)
    padded = np.concatenate([normed, np.zeros((horizon, normed.shape[1]), np.float32)])
    x = {"history": normed[None, start - length:], "season_ref": series_data.season_reference(padded, start, horizon,
                                                                                               season)[None]}
    pred = denormalize(np.asarray(model.predict_on_batch(x))[0], info)
    return {"history": values[-length:], "forecast": pred}


def predict_outputs(model, inputs: list[str], out_dir: Path, cfg, info: DataInfo, options: dict) -> list[dict]:
    """Per CSV (default: the run's own data file): the next `horizon` values per target as JSON, and a PNG."""
    from pipelines.files import require_files

    paths = require_files(inputs or ([cfg.data] if parse_data_spec(cfg.data).kind == "path" else []))
    columns = tuple(info.extra["columns"])
    rows = []
    for i, path in enumerate(paths):
        table = series_data.read_time_csv(path, cfg.time_column, columns)
        out = forecast_table(model, table, cfg, info, str(path))
        plot = np.concatenate([plot_forecast(out["history"][:, c], {"forecast": out["forecast"][:, c]},
                                             f"{path.name}: {name}") for c, name in enumerate(columns)])
        png = out_dir / f"forecast_{i}.png"
        Image.fromarray(plot).save(png)
        rows.append({"input": str(path), "horizon": int(info.extra["horizon"]),
                     "times": future_times(table.times, info.extra["horizon"], cfg.time_column, str(path)),
                     "forecast": {name: [round(float(v), 6) for v in out["forecast"][:, c]]
                                  for c, name in enumerate(columns)}, "plot": str(png)})
    (out_dir / "predictions.json").write_text(json.dumps(rows, indent=2))
    return rows


register(Task(
    name="forecasting",
    description="multi-step forecasting of time-indexed columns (dense / LSTM / Conv1D, direct output)",
    config_cls=ForecastingConfig,
    build_datasets=build_datasets,
    rebuild_datasets=rebuild_datasets,
    build_model=build_model,
    loss=loss,
    metrics=metrics,
    default_data="generated hourly series: trend, daily and weekly seasonality, AR(1) noise",
    presets={
        "debug": {"epochs": 1, "series_length": 900, "input_length": 24, "horizon": 6, "hidden": 16,
                  "batch_size": 16, "log_every_steps": 2},
        "monthly": {"input_length": 24, "horizon": 12, "season": 12, "dropout": 0.3, "val_fraction": 0.15, "test_fraction": 0.15,
                    "batch_size": 8, "epochs": 200, "hidden": 8, "loss": "mae"},
        "daily": {"input_length": 60, "horizon": 7, "season": 365, "batch_size": 64, "epochs": 30, "hidden": 64,
                  "loss": "mae"},
    },
    visualize=visualize,
    visualize_examples=64,
    predict_outputs=predict_outputs,
    sample_inputs=sample_inputs,
    split_metrics=SPLIT_METRICS,
    best_metric="val_mase",
))
