"""Numeric sequences: readers for the files people have, generated signals, and windows in tf.data.

Readers work in NumPy so that every bad value is reported as `FILE line N: what is wrong`; series
of different lengths are padded at the end with NaN (the UCR archive's own convention), which the
models turn into a mask. Forecasting windows are cut from one (time, targets) array with
`tf.data.Dataset.window`, so a long series is never copied once per window.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from errors import DataError
from pipelines.files import read_text

# --- classification files --------------------------------------------------------------------------


@dataclass
class Sequences:
    """Labelled sequences: x (N, T, C) float32 padded with NaN at the end, labels as read (strings)."""

    x: np.ndarray
    labels: list


def _number(text: str, where: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{where}: {what} {text.strip()[:30]!r} is not a number") from None


def _split_values(line: str) -> list[str]:
    """UCR/UEA rows are tab-, comma- or space-separated (the archive used all three over the years)."""
    if "\t" in line:
        return line.split("\t")
    if "," in line:
        return line.split(",")
    return line.split()


def _pad_rows(rows: list[np.ndarray], where: list[str], hint: str) -> np.ndarray:
    """Stack rows of values; rows of different lengths are accepted only when padded with NaN."""
    width = max(len(r) for r in rows)
    for r, w in zip(rows, where):
        if len(r) != width:
            raise DataError(f"{w}: {len(r)} values where the longest row has {width}; {hint}")
    return np.stack(rows).astype(np.float32)


def _trim_padding(values: np.ndarray) -> np.ndarray:
    """The values up to the last real one: trailing NaN are padding (a NaN before that is a gap, refused
    by the caller)."""
    real = np.flatnonzero(~np.isnan(values))
    return values[: real[-1] + 1] if len(real) else values[:0]


def read_ucr(path: Path) -> Sequences:
    """A UCR/UEA archive file (`NAME_TRAIN.tsv`, `.txt`): one series a line, label first, NaN-padded."""
    rows, labels, where = [], [], []
    for i, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        fields = _split_values(line.strip())
        loc = f"{path} line {i}"
        if len(fields) < 2:
            raise DataError(f"{loc}: expected a label then the series' values, found {len(fields)} field(s)")
        values = np.array([_number(v, loc, f"value {j}") for j, v in enumerate(fields[1:], 1)], np.float64)
        series = _trim_padding(values)
        if np.isnan(series).any():
            raise DataError(f"{loc}: NaN inside the series (only trailing NaN, as padding, is accepted)")
        if not len(series):
            raise DataError(f"{loc}: the series has no values")
        rows.append(values)
        labels.append(_label(fields[0]))
        where.append(loc)
    if not rows:
        raise DataError(f"{path}: no series found (expected one a line: label, then values)")
    x = _pad_rows(rows, where, "pad shorter series with NaN at the end, as the UCR archive does")
    return Sequences(x[..., None], labels)


def _label(text: str) -> str:
    """'1', '1.0' and ' 1' are one class: numeric labels are written without a trailing .0."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        return text
    return str(int(value)) if value.is_integer() else text


def _body_rows(path, rows: list, header: list):
    """(location, row) for every non-blank row under a CSV header, each checked to have the header's field count."""
    for i, row in enumerate(rows[1:], 2):
        if not any(c.strip() for c in row):
            continue
        loc = f"{path} line {i}"
        if len(row) != len(header):
            raise DataError(f"{loc}: {len(row)} fields, the header has {len(header)}")
        yield loc, row


def read_csv_rows(path: Path, label_column: str) -> Sequences:
    """A CSV with a header: one sequence a row, a label column, every other column a time step."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 2:
        raise DataError(f"{path}: expected a header and at least one row")
    header = [h.strip() for h in rows[0]]
    if label_column not in header:
        raise DataError(f"{path}: no label column {label_column!r} in the header {header[:8]}; "
                        "set it with --set label_column=NAME")
    li = header.index(label_column)
    values, labels, where = [], [], []
    for loc, row in _body_rows(path, rows, header):
        labels.append(_label(row[li]))
        cells = [c for j, c in enumerate(row) if j != li]
        values.append(np.array([np.nan if not c.strip() else _number(c, loc, f"column {j + 1} value")
                                for j, c in enumerate(cells)], np.float64))
        where.append(loc)
    if not values:
        raise DataError(f"{path}: no rows after the header")
    return Sequences(np.stack(values).astype(np.float32)[..., None], labels)


def read_npz(path: Path) -> Sequences:
    """NumPy `.npz` with `x` (N, T) or (N, T, C) and `y` (N,): multivariate sequences."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # noqa: BLE001  (a damaged archive is a data problem)
        raise DataError(f"{path}: cannot read as .npz ({exc.__class__.__name__})") from None
    if "x" not in arrays or "y" not in arrays:
        raise DataError(f"{path}: expected arrays 'x' (N, T[, C]) and 'y' (N,), found {sorted(arrays)}")
    x, y = arrays["x"], arrays["y"].reshape(-1)
    if x.ndim not in (2, 3) or not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path}: 'x' must be numeric (N, T) or (N, T, C), got {x.dtype} {x.shape}")
    if len(x) != len(y):
        raise DataError(f"{path}: 'x' holds {len(x)} series but 'y' {len(y)} labels")
    x = x.astype(np.float32)
    return Sequences(x if x.ndim == 3 else x[..., None], [_label(str(v)) for v in y.tolist()])


def read_sequences(path: Path, label_column: str = "label") -> Sequences:
    """Any one classification file, by its suffix."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return read_npz(path)
    if suffix == ".csv":
        return read_csv_rows(path, label_column)
    return read_ucr(path)


def find_ucr_pair(root: Path) -> dict[str, Path] | None:
    """{'train': NAME_TRAIN.*, 'test'?: NAME_TEST.*} in a folder laid out as the UCR archive ships."""
    found = {}
    for p in sorted(root.iterdir()):
        m = re.search(r"_(TRAIN|TEST)\.(tsv|txt|csv|npz)$", p.name, re.IGNORECASE)
        if m:
            found.setdefault(m.group(1).lower(), p)
    return found if "train" in found else None


def read_series_file(path: Path, length: int, channels: int) -> np.ndarray:
    """One series for predict: a text file of values (one step a line, channels separated by
    commas/tabs/spaces, or one line of values) or an .npy array; NaN-padded to `length`."""
    if path.suffix.lower() == ".npy":
        try:
            values = np.load(path, allow_pickle=False).astype(np.float32)
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"{path}: cannot read as .npy ({exc.__class__.__name__})") from None
    else:
        lines = [ln for ln in read_text(path).splitlines() if ln.strip()]
        rows = [[_number(v, f"{path} line {i}", "value") for v in _split_values(ln.strip())]
                for i, ln in enumerate(lines, 1)]
        if len(rows) == 1 and channels == 1:
            rows = [[v] for v in rows[0]]
        widths = {len(r) for r in rows}
        if widths != {channels}:
            raise DataError(f"{path}: expected {channels} value(s) a line (one time step a line), found {sorted(widths)}")
        values = np.asarray(rows, np.float32)
    values = values.reshape(len(values), -1)
    if values.shape[1] != channels or not 0 < len(values) <= length:
        raise DataError(f"{path}: expected up to {length} steps of {channels} channel(s), got shape {values.shape}")
    out = np.full((length, channels), np.nan, np.float32)
    out[: len(values)] = values
    return out


# --- normalisation ----------------------------------------------------------------------------------


def znorm_per_series(x: np.ndarray) -> np.ndarray:
    """Each series (and channel) to mean 0 and std 1 over its real steps; NaN padding stays NaN."""
    mean = np.nanmean(x, axis=1, keepdims=True)
    std = np.nanstd(x, axis=1, keepdims=True)
    return ((x - mean) / np.where(std > 1e-8, std, 1.0)).astype(np.float32)


def channel_stats(x: np.ndarray) -> dict:
    """Per-channel mean and std of the training data (NaN padding ignored): saved with the run."""
    flat = x.reshape(-1, x.shape[-1])
    std = np.nanstd(flat, axis=0)
    return {"mean": np.nanmean(flat, axis=0).tolist(), "std": np.where(std > 1e-8, std, 1.0).tolist()}


def apply_stats(x: np.ndarray, stats: dict) -> np.ndarray:
    return ((x - np.asarray(stats["mean"], np.float32)) / np.asarray(stats["std"], np.float32)).astype(np.float32)


# --- generated classification signals ----------------------------------------------------------------

SIGNAL_CLASSES = ("sine", "square", "sawtooth", "chirp", "bump", "sine_fast", "sine_shifted", "dip")


def _warp(rng, t: np.ndarray) -> np.ndarray:
    """A smooth monotone time warp of t in [0, 1]: local speed-ups and slow-downs."""
    a = rng.uniform(-0.08, 0.08)
    return np.clip(t + a * np.sin(np.pi * t) * np.sin(2 * np.pi * t * rng.uniform(0.5, 1.5)), 0, 1)


def _signal(kind: str, t: np.ndarray, rng) -> np.ndarray:
    """Class shapes that differ in waveform, frequency, phase and local motifs."""
    f = rng.uniform(3.0, 4.0)
    phase = rng.uniform(-0.3, 0.3)
    if kind == "sine":
        return np.sin(2 * np.pi * f * t + phase)
    if kind == "sine_fast":
        return np.sin(2 * np.pi * 2.2 * f * t + phase)
    if kind == "sine_shifted":  # same frequency, phase a half cycle later: differs only in phase
        return np.sin(2 * np.pi * f * t + phase + np.pi) * (1 + 0.5 * t)
    if kind == "square":
        return np.sign(np.sin(2 * np.pi * f * t + phase))
    if kind == "sawtooth":
        return 2 * ((f * t + phase) % 1.0) - 1
    if kind == "chirp":
        return np.sin(2 * np.pi * (1.5 * t + 4 * t ** 2) + phase)
    centre, width = rng.uniform(0.25, 0.75), rng.uniform(0.03, 0.06)
    motif = np.exp(-0.5 * ((t - centre) / width) ** 2)
    base = 0.3 * np.sin(2 * np.pi * f * t + phase)
    return base + (2.0 * motif if kind == "bump" else -2.0 * motif)  # local motif: a bump or a dip


def generated_signals(n: int, seed: int, split: str, *, length: int, num_classes: int,
                      channels: int = 1, noise: float = 0.3) -> Sequences:
    """n labelled signals of 60-100% of `length` steps (NaN-padded), classes balanced, seeded per split."""
    if not 2 <= num_classes <= len(SIGNAL_CLASSES):
        raise DataError(f"--set num_classes={num_classes}: the generator has 2 to {len(SIGNAL_CLASSES)} classes")
    rng = np.random.default_rng([seed, {"train": 0, "validation": 1, "test": 2}[split], 4242])
    x = np.full((n, length, channels), np.nan, np.float32)
    labels = rng.permutation(np.arange(n) % num_classes)
    for i, k in enumerate(labels):
        steps = int(rng.integers(int(0.6 * length), length + 1))
        t = _warp(rng, np.linspace(0, 1, steps))
        for c in range(channels):  # extra channels: the same class shape, shifted and noisier
            s = _signal(SIGNAL_CLASSES[k], np.clip(t + 0.05 * c, 0, 1), rng)
            x[i, :steps, c] = rng.uniform(0.7, 1.3) * s + rng.uniform(-0.5, 0.5) + noise * rng.standard_normal(steps)
    return Sequences(x, [SIGNAL_CLASSES[k] for k in labels])


# --- forecasting: a table of time-indexed columns ----------------------------------------------------


@dataclass
class Table:
    """Target columns over time: values (time, targets) float32, and the time stamps as read."""

    values: np.ndarray
    times: list
    columns: tuple


def read_time_csv(path: Path, time_column: str, target_columns: tuple) -> Table:
    """A CSV with a header and one row per time step, oldest first."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 2:
        raise DataError(f"{path}: expected a header and rows of values")
    header = [h.strip() for h in rows[0]]
    if time_column and time_column not in header:
        raise DataError(f"{path}: no time column {time_column!r} in the header {header}; set --set time_column=NAME")
    targets = tuple(target_columns) or tuple(h for h in header if h != time_column)
    missing = [c for c in targets if c not in header]
    if missing:
        raise DataError(f"{path}: target column(s) {missing} not in the header {header}; "
                        "set --set target_columns=NAME,NAME")
    cols = [header.index(c) for c in targets]
    values, times = [], []
    for loc, row in _body_rows(path, rows, header):
        values.append([_number(row[j], loc, f"column {header[j]!r} value") for j in cols])
        times.append(row[header.index(time_column)].strip() if time_column else str(len(times)))
    return Table(np.asarray(values, np.float32), times, targets)


def parse_times(times: list, path: str):
    """Time stamps as numpy datetime64 (or numbers), checked to increase; None when they are neither."""
    for convert in (lambda t: np.array(t, dtype="datetime64"), lambda t: np.array(t, dtype=np.float64)):
        try:
            parsed = convert(times)
        except (ValueError, TypeError):
            continue
        bad = np.flatnonzero(parsed[1:] <= parsed[:-1])
        if len(bad):
            raise DataError(f"{path} line {bad[0] + 3}: time stamps must increase (oldest first); "
                            f"{times[bad[0] + 1]} does not follow {times[bad[0]]}")
        return parsed
    return None


def generated_seasonal(length: int, seed: int, periods: tuple = (24, 168), noise: float = 0.15) -> Table:
    """A trend plus several seasonalities (daily and weekly on an hourly clock) plus AR(1) noise."""
    rng = np.random.default_rng([seed, 777])
    t = np.arange(length, dtype=np.float64)
    trend = 0.6 * t / length + 0.3 * (t / length) ** 2
    season = 0.0
    for k, p in enumerate(periods):
        amp = rng.uniform(0.8, 1.2) / (k + 1) ** 0.3
        season = season + amp * np.sin(2 * np.pi * t / p + rng.uniform(0, 2 * np.pi)) \
            + 0.3 * amp * np.sin(4 * np.pi * t / p + rng.uniform(0, 2 * np.pi))
    eps = np.zeros(length)
    shocks = noise * rng.standard_normal(length)
    for i in range(1, length):
        eps[i] = 0.5 * eps[i - 1] + shocks[i]
    values = (10.0 + 2.0 * trend + season + eps).astype(np.float32)
    return Table(values[:, None], [str(i) for i in range(length)], ("value",))


def detect_season(train: np.ndarray, max_lag: int) -> int:
    """The lag (>= 2) of the highest autocorrelation of the differenced training series (first target):
    the period MASE and the seasonal-naive baseline use when `season` is not set."""
    d = np.diff(train[:, 0].astype(np.float64))
    d = d - d.mean()
    denom = float((d * d).sum()) or 1.0
    lags = range(2, max(3, min(max_lag, len(d) // 2)))
    acf = [float((d[lag:] * d[:-lag]).sum()) / denom for lag in lags]
    return int(list(lags)[int(np.argmax(acf))]) if acf else 1


def window_starts(begin: int, end: int, input_length: int, horizon: int, stride: int, season: int) -> np.ndarray:
    """Start indices of the target windows lying wholly in [begin, end) whose history (and seasonal
    reference) lies at indices >= 0."""
    first = max(begin, input_length, season * ((horizon - 1) // season + 1))
    return np.arange(first, end - horizon + 1, max(1, stride))


def season_reference(values: np.ndarray, start: int, horizon: int, season: int) -> np.ndarray:
    """The seasonal-naive forecast of steps start..start+horizon-1: the value whole seasons earlier,
    always before `start` (so a legitimate model input and the seasonal-naive baseline at once)."""
    h = np.arange(horizon)
    back = season * (h // season + 1)
    return values[start + h - back]


def windows(values: np.ndarray, starts: np.ndarray, input_length: int, horizon: int, season: int):
    """tf.data of ({"history": (L, C), "season_ref": (H, C)}, target (H, C)) for the given target starts.

    The series is one constant tensor; each element slices it by index, so windows share memory."""
    import tensorflow as tf

    series = tf.constant(values, tf.float32)
    h = np.arange(horizon)
    back = tf.constant(season * (h // season + 1), tf.int64)

    def cut(start):
        history = series[start - input_length:start]
        target = series[start:start + horizon]
        ref = tf.gather(series, start + tf.range(horizon, dtype=tf.int64) - back)
        return {"history": history, "season_ref": ref}, target

    return tf.data.Dataset.from_tensor_slices(tf.constant(starts, tf.int64)).map(cut)


def sequences_dataset(x: np.ndarray, y: np.ndarray):
    """tf.data of (series (T, C), class id) pairs."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32)))
