"""Ratings and interactions: the generated default, MovieLens layouts, generic CSV, splits, id vocabularies.

Readers return `Interactions` (raw user/item ids as strings, ratings, optional timestamps, item
titles) in NumPy, so every bad row is reported as `FILE line N: what is wrong`. Splits work on row
indices; ids become int ids through vocabularies learned on the training rows only (id 0 is the
out-of-vocabulary id every unseen user or item maps to). Only `to_dataset` touches TensorFlow.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from errors import DataError

OOV = "[OOV]"  # index 0 of every id vocabulary
MOVIELENS_RATINGS = ("u.data", "ratings.dat", "ratings.csv")  # the layouts GroupLens ships, in that order
MOVIELENS_TITLES = {"u.data": "u.item", "ratings.dat": "movies.dat", "ratings.csv": "movies.csv"}


@dataclass
class Interactions:
    """One row per (user, item) event; ids are raw strings as the source spells them."""

    users: np.ndarray  # str
    items: np.ndarray  # str
    ratings: np.ndarray  # float32 (1.0 for implicit-only sources)
    times: np.ndarray | None = None  # int64 seconds, or None when the source has no time
    titles: dict = field(default_factory=dict)  # {item id: title}

    def __len__(self) -> int:
        return len(self.users)

    def take(self, idx: np.ndarray) -> "Interactions":
        times = None if self.times is None else self.times[idx]
        return Interactions(self.users[idx], self.items[idx], self.ratings[idx], times, self.titles)


# --- generated ------------------------------------------------------------------------------------


def generate(num_users: int, num_items: int, num_ratings: int, seed: int, rank: int = 8,
             noise: float = 0.35) -> Interactions:
    """Ratings from latent factors + user/item biases + noise, on half stars in [0.5, 5].

    Which items a user rates follows item popularity (Zipf-like) tilted toward the items the user
    likes, so implicit feedback carries preference beyond popularity. Deterministic by seed.
    """
    rng = np.random.default_rng([seed, 1717])
    u_f = rng.normal(0, 1, (num_users, rank)) / rank ** 0.25
    i_f = rng.normal(0, 1, (num_items, rank)) / rank ** 0.25
    b_u, b_i = rng.normal(0, 0.3, num_users), rng.normal(0, 0.4, num_items)
    affinity = u_f @ i_f.T  # std ~1
    popularity = -np.log(np.arange(1, num_items + 1) + 5.0)[rng.permutation(num_items)]
    activity = rng.lognormal(0, 0.6, num_users)
    per_user = np.maximum(5, np.round(activity / activity.sum() * num_ratings)).astype(int)
    per_user = np.minimum(per_user, num_items // 2)
    users, items = [], []
    for u in range(num_users):
        logits = 0.5 * popularity + 2.0 * affinity[u]
        gumbel = logits - np.log(-np.log(rng.uniform(size=num_items)))  # sampling without replacement
        chosen = np.argpartition(-gumbel, per_user[u])[: per_user[u]]
        users.append(np.full(len(chosen), u))
        items.append(chosen)
    users, items = np.concatenate(users), np.concatenate(items)
    raw = 2.6 + b_u[users] + b_i[items] + affinity[users, items] + rng.normal(0, noise, len(users))
    ratings = np.clip(np.round(raw * 2) / 2, 0.5, 5.0).astype(np.float32)
    times = rng.integers(0, 10**8, len(users)).astype(np.int64)
    order = rng.permutation(len(users))
    return Interactions(np.char.mod("%d", users[order] + 1).astype(str), np.char.mod("%d", items[order] + 1).astype(str),
                        ratings[order], times[order], {str(i + 1): f"Item {i + 1}" for i in range(num_items)})


# --- readers --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Columns:
    """Which columns hold what in a delimited file with a header (time optional: '' = none)."""

    user: str = "userId"
    item: str = "movieId"
    rating: str = "rating"
    time: str = "timestamp"


def _read_text(path: Path, encoding: str) -> str:
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not {encoding} text (byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.__class__.__name__})") from None


def _number(path: Path, line: int, what: str, text: str, kind=float):
    try:
        return kind(text)
    except ValueError:
        raise DataError(f"{path} line {line}: {what} {text!r} is not a number") from None


def _rows_to_interactions(path: Path, rows, has_time: bool, implicit_only: bool = False) -> Interactions:
    """rows: (line, user, item, rating text, time text) tuples -> Interactions, each value checked."""
    users, items, ratings, times = [], [], [], []
    for line, user, item, rating, time in rows:
        if not user or not item:
            raise DataError(f"{path} line {line}: empty {'user' if not user else 'item'} id")
        users.append(user)
        items.append(item)
        ratings.append(1.0 if implicit_only else _number(path, line, "rating", rating))
        if has_time:
            times.append(_number(path, line, "timestamp", time, lambda t: int(float(t))))
    if not users:
        raise DataError(f"{path}: no interactions (expected one row per user-item rating)")
    return Interactions(np.asarray(users, str), np.asarray(items, str), np.asarray(ratings, np.float32),
                        np.asarray(times, np.int64) if has_time else None)


def _split_rows(path: Path, text: str, sep: str, layout: str, first_line: int = 1):
    """Lines split on `sep`, each needing >= 3 fields (user item rating [time])."""
    for n, raw in enumerate(text.splitlines(), start=first_line):
        if not raw.strip():
            continue
        parts = raw.split(sep)
        if len(parts) < 3:
            raise DataError(f"{path} line {n}: expected {layout} separated by {sep!r}, got {len(parts)} field(s) "
                            "(wrong separator?)")
        yield n, parts[0].strip(), parts[1].strip(), parts[2].strip(), parts[3].strip() if len(parts) > 3 else ""


def read_u_data(path: Path) -> Interactions:
    """MovieLens 100K `u.data`: `user<TAB>item<TAB>rating<TAB>timestamp`, no header."""
    rows = list(_split_rows(path, _read_text(path, "latin-1"), "\t", "'user item rating timestamp'"))
    return _rows_to_interactions(path, rows, all(r[4] for r in rows))


def read_ratings_dat(path: Path) -> Interactions:
    """MovieLens 1M/10M `ratings.dat`: `UserID::MovieID::Rating::Timestamp`, no header."""
    rows = list(_split_rows(path, _read_text(path, "latin-1"), "::", "'UserID::MovieID::Rating::Timestamp'"))
    return _rows_to_interactions(path, rows, all(r[4] for r in rows))


def read_csv(path: Path, columns: Columns = Columns(), implicit_only: bool = False) -> Interactions:
    """A delimited file with a header row naming the columns (`.tsv`: tab, else comma).

    `columns.rating` '' reads every row as one interaction (implicit feedback); a file without the
    time column reads with no timestamps (a temporal split then says it needs them)."""
    text = _read_text(path, "utf-8")
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip() for h in next(reader, [])]
    wanted = {"user": columns.user, "item": columns.item, "rating": columns.rating, "time": columns.time}
    optional = {"rating": implicit_only or not columns.rating, "time": True}  # time: only split=temporal needs it
    position = {}
    for role, name in wanted.items():
        if optional.get(role) and (not name or name not in header):
            continue
        if name not in header:
            raise DataError(f"{path} line 1: no column {name!r} in the header {header[:8]} (set "
                            f"--set {role}_column=NAME, or check the separator: expected {delimiter!r})")
        position[role] = header.index(name)
    need = max(position.values()) + 1

    def rows():
        for n, parts in enumerate(reader, start=2):
            if not parts:
                continue
            if len(parts) < need:
                raise DataError(f"{path} line {n}: expected {len(header)} {delimiter!r}-separated fields as in the "
                                f"header, got {len(parts)}")
            get = lambda role: parts[position[role]].strip() if role in position else ""  # noqa: E731
            yield n, get("user"), get("item"), get("rating"), get("time")

    try:
        return _rows_to_interactions(path, list(rows()), "time" in position, "rating" not in position)
    except csv.Error as exc:
        raise DataError(f"{path} line {reader.line_num}: {exc}") from None


def read_titles(path: Path) -> dict:
    """{item id: title} from `u.item` (`|`, latin-1), `movies.dat` (`::`, latin-1) or `movies.csv` (header)."""
    if path.name == "movies.csv":
        reader = csv.reader(io.StringIO(_read_text(path, "utf-8")))
        header = next(reader, [])
        if "movieId" not in header or "title" not in header:
            raise DataError(f"{path} line 1: expected a header with movieId and title, got {header[:6]}")
        i, t = header.index("movieId"), header.index("title")
        return {row[i]: row[t] for row in reader if len(row) > max(i, t)}
    sep = "|" if path.name == "u.item" else "::"
    titles = {}
    for n, line in enumerate(_read_text(path, "latin-1").splitlines(), start=1):
        parts = line.split(sep)
        if line.strip() and len(parts) < 2:
            raise DataError(f"{path} line {n}: expected 'id{sep}title{sep}...', got {len(parts)} field(s)")
        if line.strip():
            titles[parts[0].strip()] = parts[1].strip()
    return titles


def read_path(path: Path, columns: Columns, implicit_only: bool = False) -> Interactions:
    """A MovieLens folder (u.data | ratings.dat | ratings.csv, + titles), a MovieLens file, or a CSV."""
    if path.is_dir():
        found = next((path / name for name in MOVIELENS_RATINGS if (path / name).is_file()), None)
        if found is None:
            raise DataError(f"--data {path}: expected a MovieLens folder holding one of {', '.join(MOVIELENS_RATINGS)}, "
                            "or give a ratings CSV file")
        path = found
    if path.name == "u.data":
        out = read_u_data(path)
    elif path.name == "ratings.dat":
        out = read_ratings_dat(path)
    else:
        out = read_csv(path, columns, implicit_only)
    titles = path.parent / MOVIELENS_TITLES.get(path.name, "")
    if path.name in MOVIELENS_TITLES and titles.is_file():
        out.titles = read_titles(titles)
    return out


# --- splits ---------------------------------------------------------------------------------------


def random_split(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict:
    """{split: sorted row indices}: a seeded random share of all rows for validation and for test."""
    order = np.random.default_rng([seed, 4243]).permutation(n)
    n_test, n_val = int(round(n * test_fraction)), max(1, int(round(n * val_fraction)))
    if n - n_test - n_val < 1:
        raise DataError(f"only {n} interactions: too few for val_fraction={val_fraction} and test_fraction={test_fraction}")
    out = {"train": order[n_test + n_val:], "validation": order[n_test:n_test + n_val]}
    if n_test:
        out["test"] = order[:n_test]
    return {k: np.sort(v) for k, v in out.items()}


def temporal_split(users: np.ndarray, times: np.ndarray, val_fraction: float, test_fraction: float) -> dict:
    """Per user, the latest interactions go to test and the ones just before to validation (leave-last-out).

    Each user holds out round(n * fraction) rows for each split, but at least one for validation
    (and test, when test_fraction > 0) once the user has 3+ rows, always keeping one for training.
    Ties in time keep file order, so no test row of a user precedes any of their training rows.
    """
    order = np.lexsort((np.arange(len(users)), times, users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    ends = np.r_[starts[1:], len(order)]
    split_of = np.zeros(len(order), np.int8)  # 0 train, 1 validation, 2 test (in `order` positions)
    for s, e in zip(starts, ends):
        n = e - s
        n_test = max(int(round(n * test_fraction)), 1 if test_fraction > 0 and n >= 3 else 0)
        n_val = max(int(round(n * val_fraction)), 1 if n >= 2 else 0)
        n_test = min(n_test, max(0, n - 1 - n_val))
        split_of[e - n_test:e] = 2
        split_of[e - n_test - n_val:e - n_test] = 1
    out = {name: np.sort(order[split_of == k]) for k, name in enumerate(("train", "validation", "test"))}
    return {k: v for k, v in out.items() if len(v) or k != "test"}


# --- id vocabularies ------------------------------------------------------------------------------


def _id_key(value: str):
    return (0, int(value), "") if value.lstrip("-").isdigit() else (1, 0, value)


def vocabulary(ids: np.ndarray) -> list:
    """[OOV, id, ...]: the ids of the training rows, numerically sorted where they are numbers."""
    return [OOV] + sorted(set(ids.tolist()), key=_id_key)


def lookup(ids, vocab: list) -> np.ndarray:
    """int32 ids into `vocab`; ids it lacks map to 0 (OOV)."""
    index = {v: i for i, v in enumerate(vocab)}
    return np.asarray([index.get(str(x), 0) for x in ids], np.int32)


def to_dataset(user_ids: np.ndarray, item_ids: np.ndarray, targets: np.ndarray):
    """An unbatched tf.data.Dataset of ({'user', 'item'}, target)."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(
        ({"user": user_ids.astype(np.int32), "item": item_ids.astype(np.int32)}, targets.astype(np.float32)))


def negative_resampler(users: np.ndarray, items: np.ndarray, num_items: int, tries: int = 8):
    """A training-only `augment` hook: each row labelled 0 (a sampled negative) gets a fresh item
    every epoch, drawn from the row's stateless seed (epoch, position), so the model never sees the
    same fixed negatives twice and a resumed run draws the same ones. The first of `tries` uniform
    draws in [1, num_items) the user did not interact with in training (`users`, `items`: the
    training positives) is kept; positives pass unchanged."""
    import tensorflow as tf

    seen = np.unique(users.astype(np.int64) * num_items + items.astype(np.int64))
    keys = tf.constant(np.r_[seen, np.iinfo(np.int64).max])  # the sentinel keeps every lookup in range

    def resample(x, y, seed):
        user = tf.cast(x["user"], tf.int64)
        draws = tf.random.stateless_uniform([tries], seed=seed, minval=1, maxval=num_items, dtype=tf.int64)
        wanted = user * num_items + draws
        unseen = tf.not_equal(tf.gather(keys, tf.searchsorted(keys, wanted)), wanted)
        fresh = tf.cast(draws[tf.argmax(tf.cast(unseen, tf.int32))], tf.int32)
        return {"user": x["user"], "item": tf.where(y[0] > 0.5, x["item"], fresh)}, y

    return resample
