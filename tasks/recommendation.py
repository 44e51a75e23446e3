"""Recommendation: ratings (explicit feedback) or interactions (implicit) of users on items.

Data: generated users x items by default; MovieLens folders or files as GroupLens ships them
(`u.data`, `ratings.dat`, `ratings.csv`, titles from `u.item` / `movies.dat` / `movies.csv`); any
CSV with a header (`--set user_column=... item_column=... rating_column=... time_column=...`);
`tfds:movielens/100k-ratings`. Splits are `random` (seeded shares) or `temporal` (per user, the
latest rows go to validation and test). User and item vocabularies are learned on the training
rows only and saved with the run; unseen ids map to 0 (out of vocabulary) and are counted.

Explicit: the model regresses the rating (loss MSE, metrics RMSE/MAE, lower is better) and every
evaluation also reports the global-mean and user/item-bias baselines on the same rows. Implicit:
pointwise logits against negatives re-drawn every epoch (binary cross-entropy; mf, neumf) or the
two towers' in-batch sampled softmax with logQ correction, evaluated at epoch end by HR@k and
NDCG@k against 99 sampled negatives, full-ranking Recall@k / NDCG@k, and the popularity ranking.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from errors import DataError, UserError
from pipelines import Data, DataInfo, parse_data_spec
from pipelines import ratings
from pipelines.data import InputSpec
from tasks import recommendation_metrics as rm
from tasks.base import SplitMetrics, Task, TrainConfig, register
from tasks.lazy import lazy_module
from training.baselines import mean_baseline, regression_errors

keras = lazy_module("keras")
recommender = lazy_module("keras_models.recommender")

MODEL_NAMES = ("mf", "neumf", "two_tower")  # keys of keras_models.recommender.MODELS


@dataclass(frozen=True)
class RecommendationConfig(TrainConfig):
    model: str = field(default="mf", metadata={"choices": MODEL_NAMES, "help": "mf | neumf | two_tower"})
    feedback: str = field(default="explicit", metadata={
        "choices": ("explicit", "implicit"), "help": "explicit: regress ratings; implicit: rank interacted items"})
    split: str = field(default="random", metadata={
        "choices": ("random", "temporal"), "help": "random shares (seeded) or, per user, the latest rows held out"})
    test_fraction: float = field(default=0.1, metadata={"help": "share of interactions held out for test (0 = none)"})
    epochs: int = 12
    batch_size: int = 256
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    embedding_dim: int = field(default=32, metadata={"help": "user/item embedding size", "positive": True})
    l2: float = field(default=0.02, metadata={"help": "L2 penalty on the embeddings and biases a batch looks up"})
    dropout: float = field(default=0.0, metadata={"help": "dropout on embeddings and MLP layers"})
    hidden: tuple[int, ...] = field(default=(64, 32), metadata={"help": "MLP sizes (neumf) / tower sizes (two_tower)"})
    user_column: str = field(default="userId", metadata={"help": "CSV header of the user ids"})
    item_column: str = field(default="movieId", metadata={"help": "CSV header of the item ids"})
    rating_column: str = field(default="rating", metadata={"help": "CSV header of the ratings ('' = none: implicit)"})
    time_column: str = field(default="timestamp", metadata={"help": "CSV header of the timestamps ('' = none)"})
    implicit_threshold: float = field(default=0.0, metadata={
        "help": "implicit: ratings >= this count as interactions (0 = every row)"})
    implicit_loss: str = field(default="auto", metadata={
        "choices": ("auto", "pointwise", "softmax"),
        "help": "implicit: pointwise (binary cross-entropy vs sampled negatives) or softmax (in-batch sampled "
                "softmax, two_tower only); auto = softmax for two_tower, pointwise otherwise"})
    logq_correction: bool = field(default=True, metadata={
        "help": "softmax: subtract the log of each item's chance of being a batch candidate (popularity)"})
    num_negatives: int = field(default=4, metadata={
        "help": "implicit: sampled negatives per positive in training, drawn afresh every epoch "
                "(softmax: extra uniform candidates beside the batch's positives)"})
    eval_negatives: int = field(default=99, metadata={"help": "implicit: sampled negatives per held-out positive (HR/NDCG)"})
    k: int = field(default=10, metadata={"help": "cut-off of HR@k, NDCG@k, Recall@k and predict's top-k", "positive": True})
    full_ranking_users: int = field(default=1000, metadata={"help": "implicit: users (seeded sample) ranked over all items"})
    num_users: int = field(default=1000, metadata={"help": "generated users (embedded data)", "positive": True})
    num_items: int = field(default=800, metadata={"help": "generated items (embedded data)", "positive": True})
    num_ratings: int = field(default=60000, metadata={"help": "generated ratings (embedded data)", "positive": True})

    def __post_init__(self):
        if not 0.0 <= self.test_fraction < 1.0 or self.test_fraction + self.val_fraction >= 1.0:
            raise UserError(f"--set test_fraction={self.test_fraction}: expected 0 <= test_fraction and "
                            f"test_fraction + val_fraction ({self.val_fraction}) < 1")
        if self.implicit_loss == "softmax" and self.model != "two_tower":
            raise UserError(f"--set implicit_loss=softmax: needs model=two_tower (the in-batch softmax scores every "
                            f"batch user against every batch item through the towers), got model={self.model}")

    @property
    def in_batch_softmax(self) -> bool:
        """Implicit feedback trained by the two towers' in-batch softmax (see `implicit_loss`)."""
        if self.feedback != "implicit":
            return False
        return self.implicit_loss == "softmax" or (self.implicit_loss == "auto" and self.model == "two_tower")


# --- data ------------------------------------------------------------------------------------------


@dataclass
class _Loaded:
    rows: ratings.Interactions
    parts: dict  # {split: row indices}
    source: str
    origins: dict


def _columns(cfg) -> ratings.Columns:
    return ratings.Columns(cfg.user_column, cfg.item_column, cfg.rating_column, cfg.time_column)


def _read_tfds(name: str) -> ratings.Interactions:
    """tfds:movielens/*-ratings (every split read; ours are made by `split`)."""
    from pipelines import tfds_source

    datasets, _, tinfo = tfds_source.load_tfds(name)
    need = ("user_id", "movie_id", "user_rating")
    if any(k not in tinfo.features for k in need):
        raise DataError(f"--data tfds:{name}: expected features {', '.join(need)}, has {list(tinfo.features)}")
    cols = {k: [] for k in (*need, "timestamp", "movie_title")}
    keep = [k for k in cols if k in tinfo.features]
    for ds in datasets.values():
        for batch in ds.map(lambda ex: {k: ex[k] for k in keep}).batch(8192).as_numpy_iterator():
            for k in cols:
                if k in batch:
                    cols[k].append(batch[k])
    text = lambda k: np.concatenate(cols[k]).astype(str) if cols[k] else None  # noqa: E731  (bytes -> str)
    times = np.concatenate(cols["timestamp"]).astype(np.int64) if cols["timestamp"] else None
    items = text("movie_id")
    titles = dict(zip(items.tolist(), text("movie_title").tolist())) if cols["movie_title"] else {}
    return ratings.Interactions(text("user_id"), items, np.concatenate(cols["user_rating"]).astype(np.float32),
                                times, titles)


def _read(cfg) -> tuple[ratings.Interactions, str, str]:
    """(rows, source description, test origin) for --data."""
    spec = parse_data_spec(cfg.data)
    if spec.kind == "embedded":
        rows = ratings.generate(cfg.num_users, cfg.num_items, cfg.num_ratings, cfg.seed)
        return rows, f"generated ratings ({cfg.num_users} users x {cfg.num_items} items, seed {cfg.seed})", "generated"
    if spec.kind == "tfds":
        return _read_tfds(spec.value), f"tfds:{spec.value}", f"tfds:{spec.value}"
    rows = ratings.read_path(spec.path, _columns(cfg), implicit_only=cfg.feedback == "implicit" and not cfg.rating_column)
    return rows, str(spec.path), str(spec.path)


def _implicit(rows: ratings.Interactions, threshold: float) -> ratings.Interactions:
    """Interactions as positives (rating 1): rows rated >= threshold (every row when 0)."""
    keep = rows.take(np.flatnonzero(rows.ratings >= threshold)) if threshold > 0 else rows
    if not len(keep):
        raise DataError(f"no rating reaches implicit_threshold={threshold}; lower it")
    keep.ratings = np.ones(len(keep), np.float32)
    return keep


@functools.lru_cache(maxsize=4)
def _load(cfg: RecommendationConfig) -> _Loaded:
    """Rows and their split, a pure function of the config (cached: the ranking metrics and predict
    need the training rows again)."""
    rows, source, origin = _read(cfg)
    if cfg.feedback == "implicit":
        rows = _implicit(rows, cfg.implicit_threshold)
    if cfg.split == "temporal":
        if rows.times is None:
            raise DataError(f"--data {cfg.data}: split=temporal needs timestamps, and the data has no "
                            f"{cfg.time_column!r} column (set --set time_column=NAME, or use split=random)")
        parts = ratings.temporal_split(rows.users, rows.times, cfg.val_fraction, cfg.test_fraction)
        how = "per user, latest {:.0%} by time"
    else:
        parts = ratings.random_split(len(rows), cfg.val_fraction, cfg.test_fraction, cfg.seed)
        how = "random {:.0%}" + f" (seed {cfg.seed})"
    origins = {"train": f"{origin}: the rest"}
    origins["validation"] = f"{origin}: " + how.format(cfg.val_fraction)
    if "test" in parts:
        origins["test"] = f"{origin}: " + how.format(cfg.test_fraction) + (" after validation" if cfg.split == "temporal" else "")
    return _Loaded(rows, parts, source, origins)


def _ids(rows: ratings.Interactions, info_vocab: dict) -> tuple[np.ndarray, np.ndarray]:
    return ratings.lookup(rows.users, info_vocab["users"]), ratings.lookup(rows.items, info_vocab["items"])


def _report_unseen(unseen: dict) -> None:
    parts = [f"{split}: {c['users']} rows of unseen users, {c['items']} of unseen items"
             for split, c in unseen.items() if c["users"] or c["items"]]
    if parts:
        print("data: ids not in training map to the out-of-vocabulary id 0; " + "; ".join(parts)
              + " (data_info.json extra.unseen)", flush=True)


def _train_index(cfg, vocab: dict) -> tuple[dict, np.ndarray]:
    """({user id: items seen in training}, training interactions per item id) in vocabulary ids."""
    loaded = _load(cfg)
    users, items = _ids(loaded.rows.take(loaded.parts["train"]), vocab)
    order = np.argsort(users, kind="stable")
    bounds = np.flatnonzero(np.r_[True, users[order][1:] != users[order][:-1], True])
    seen = {int(users[order[s]]): items[order[s:e]] for s, e in zip(bounds[:-1], bounds[1:])}
    return seen, np.bincount(items, minlength=len(vocab["items"]))


def _negatives(users: np.ndarray, cfg, vocab: dict, count: int, salt: int) -> np.ndarray:
    seen, _ = _train_index(cfg, vocab)
    return rm.sample_negatives(users, seen, len(vocab["items"]), count, cfg.seed * 1000 + salt)


def _with_negatives(users, items, cfg, vocab, salt: int):
    """Positives (label 1) and `num_negatives` sampled unseen items per positive (label 0)."""
    n = cfg.num_negatives
    negs = _negatives(users, cfg, vocab, n, salt) if n else np.zeros((len(users), 0), np.int32)
    all_users = np.concatenate([users, np.repeat(users, n)])
    all_items = np.concatenate([items, negs.reshape(-1)])
    labels = np.concatenate([np.ones(len(users)), np.zeros(len(users) * n)])
    return all_users, all_items, labels


def _titles(rows: ratings.Interactions, items_vocab: list) -> list:
    return [rows.titles.get(i, "") for i in items_vocab] if rows.titles else []


def _baselines(fitted: DataInfo | None, users, items, y, vocab: dict) -> dict:
    """The bias baseline's parameters (fitted on training rows, or the saved ones)."""
    if fitted is not None and "bias_baseline" in fitted.extra:
        return fitted.extra["bias_baseline"]
    mu, b_u, b_i = rm.fit_biases(users, items, y, len(vocab["users"]), len(vocab["items"]))
    return {"global_mean": mu, "user_bias": np.round(b_u, 5).tolist(), "item_bias": np.round(b_i, 5).tolist()}


def _finish(cfg, loaded: _Loaded, fitted: DataInfo | None) -> Data:
    rows = {split: loaded.rows.take(idx) for split, idx in loaded.parts.items()}
    if fitted is not None:
        vocab = {k: fitted.vocabularies[k] for k in ("users", "items")}
    else:
        vocab = {"users": ratings.vocabulary(rows["train"].users), "items": ratings.vocabulary(rows["train"].items)}
    ids = {split: _ids(r, vocab) for split, r in rows.items()}
    unseen = {s: {"users": int((u == 0).sum()), "items": int((i == 0).sum())} for s, (u, i) in ids.items() if s != "train"}
    _report_unseen(unseen)
    explicit = cfg.feedback == "explicit"
    extra = {"feedback": cfg.feedback, "split": cfg.split, "unseen": unseen,
             "num_users": len(vocab["users"]) - 1, "num_items": len(vocab["items"]) - 1}
    sets, counts, augment = {}, {}, None
    if not explicit and cfg.num_negatives:  # training negatives drawn afresh every epoch
        augment = ratings.negative_resampler(*ids["train"], len(vocab["items"]))
    for salt, (split, (u, i)) in enumerate(ids.items()):
        y = rows[split].ratings
        if not explicit:
            u, i, y = _with_negatives(u, i, cfg, vocab, salt)
        if split == "train":  # rows come in file order (by user) and negatives after positives: mix them once,
            # so the shuffle buffer of the training stream draws batches across users and labels
            mix = np.random.default_rng([cfg.seed, 8]).permutation(len(y))
            u, i, y = u[mix], i[mix], y[mix]
        sets[split] = ratings.to_dataset(u, i, y[:, None])
        counts[split] = len(y)
    if explicit:
        u, i = ids["train"]
        extra["bias_baseline"] = _baselines(fitted, u, i, rows["train"].ratings, vocab)
        extra["rating_range"] = [float(rows["train"].ratings.min()), float(rows["train"].ratings.max())]
    vocabularies = dict(vocab)
    titles = fitted.vocabularies.get("item_titles", []) if fitted is not None else _titles(loaded.rows, vocab["items"])
    if titles:
        vocabularies["item_titles"] = titles
    id_spec = lambda name: InputSpec((), "int32", vocabulary=name)  # noqa: E731
    info = DataInfo(loaded.source, counts["train"], counts["validation"],
                    {"user": id_spec("users"), "item": id_spec("items")}, extra=extra,
                    num_test=counts.get("test", 0), targets={"rating" if explicit else "label": InputSpec((1,))},
                    vocabularies=vocabularies, splits=loaded.origins)
    return Data.from_splits(sets, info, augment=augment)


def build_datasets(cfg: RecommendationConfig) -> Data:
    return _finish(cfg, _load(cfg), None)


def rebuild_datasets(cfg: RecommendationConfig, fitted: DataInfo) -> Data:
    """For evaluate/predict: the saved vocabularies and baseline, never re-learned."""
    return _finish(cfg, _load(cfg), fitted)


# --- model, loss, metrics --------------------------------------------------------------------------


def build_model(cfg: RecommendationConfig, info: DataInfo):
    explicit = cfg.feedback == "explicit"
    mean = info.extra.get("bias_baseline", {}).get("global_mean", 0.0) if explicit else 0.0
    return recommender.MODELS[cfg.model](
        len(info.vocabularies["users"]), len(info.vocabularies["items"]), embedding_dim=cfg.embedding_dim,
        l2=cfg.l2, dropout=cfg.dropout, hidden=tuple(cfg.hidden), explicit=explicit, global_mean=mean,
        in_batch_softmax=cfg.in_batch_softmax)


def candidate_probabilities(popularity: np.ndarray, num_negatives: int) -> np.ndarray:
    """Each item's chance of filling one candidate slot of a training batch: a positive slot draws
    items by training popularity, a negative slot uniformly from the known items (id 0 excluded)."""
    positive_share = 1.0 / (1 + num_negatives)
    uniform = np.r_[0.0, np.full(len(popularity) - 1, 1.0 / max(1, len(popularity) - 1))]
    return positive_share * popularity / max(1, popularity.sum()) + (1 - positive_share) * uniform


def prepare(model, data: Data, cfg) -> dict:
    """In-batch softmax with logQ correction: fill the item tower's sampling-probability table
    (a non-trainable weight, so evaluate and predict get it back from the checkpoint)."""
    if not (cfg.in_batch_softmax and cfg.logq_correction):
        return {}
    _, popularity = _train_index(cfg, data.info.vocabularies)
    q = candidate_probabilities(popularity.astype(np.float64), cfg.num_negatives)
    table = model.get_layer("item_tower").get_layer("item_sampling_probability")
    table.embeddings.assign(q[:, None].astype("float32"))
    return {}


def loss(cfg, info):
    if cfg.in_batch_softmax:  # the model's own compute_loss: softmax over the batch's items
        return None
    if cfg.feedback == "explicit":
        return keras.losses.MeanSquaredError()
    return keras.losses.BinaryCrossentropy(from_logits=True)


def metrics(cfg, info):
    if cfg.feedback == "explicit":  # Keras declares both lower-is-better
        return [keras.metrics.RootMeanSquaredError(name="rmse"), keras.metrics.MeanAbsoluteError(name="mae")]
    if cfg.in_batch_softmax:  # its scores rank items; a per-pair accuracy or AUC would say nothing
        return []
    return [keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0), keras.metrics.AUC(name="auc", from_logits=True)]


# --- whole-split metrics: baselines and ranking ----------------------------------------------------


def _arrays(ds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    users, items, ys = [], [], []
    for x, y in ds.batch(65536).as_numpy_iterator():
        users.append(x["user"])
        items.append(x["item"])
        ys.append(y.reshape(-1))
    return np.concatenate(users), np.concatenate(items), np.concatenate(ys)


def score(model, users: np.ndarray, items: np.ndarray, batch: int = 16384) -> np.ndarray:
    """The model's score for each (user, item) pair, in chunks padded to a few fixed sizes (a compiled
    predict step is traced once per input shape)."""
    n = len(users)
    size = batch if n >= batch else max(256, 1 << max(0, n - 1).bit_length())
    total = -(-n // size) * size
    pad = lambda a: np.pad(np.asarray(a, np.int32), (0, total - n))  # noqa: E731
    users, items = pad(users), pad(items)
    out = [np.asarray(keras.ops.convert_to_numpy(model.predict_on_batch(
        {"user": users[s:s + size], "item": items[s:s + size]}))).reshape(-1) for s in range(0, total, size)]
    return np.concatenate(out)[:n] if out else np.zeros(0, np.float32)


def rating_baselines(users, items, y, info: DataInfo) -> dict:
    """RMSE/MAE of predicting the training mean, and of the user/item bias model, on these rows."""
    base = info.extra["bias_baseline"]
    bias = rm.bias_predictions(users, items, base["global_mean"], base["user_bias"], base["item_bias"])
    mean = mean_baseline(np.asarray([base["global_mean"]]), y)
    bias = regression_errors(y, bias)
    return {"baseline_mean_rmse": mean["rmse"], "baseline_mean_mae": mean["mae"],
            "baseline_bias_rmse": bias["rmse"], "baseline_bias_mae": bias["mae"]}


def ranking_metrics(model, users, items, cfg, info: DataInfo) -> dict:
    """HR@k / NDCG@k against sampled negatives, full-ranking Recall@k / NDCG@k, and the popularity
    ranking's HR@k / NDCG@k, for the held-out positives (users, items)."""
    vocab = info.vocabularies
    seen, popularity = _train_index(cfg, vocab)
    n_items = len(vocab["items"])
    negs = _negatives(users, cfg, vocab, cfg.eval_negatives, 777)
    candidates = np.concatenate([items[:, None], negs], axis=1)
    s = score(model, np.repeat(users, candidates.shape[1]), candidates.reshape(-1)).reshape(candidates.shape)
    model_hr = rm.hit_rate_and_ndcg(rm.sampled_ranks(s[:, 0], s[:, 1:]), cfg.k)
    pop = popularity[candidates].astype(np.float64)
    pop_hr = rm.hit_rate_and_ndcg(rm.sampled_ranks(pop[:, 0], pop[:, 1:]), cfg.k)
    ranked = np.unique(users[users > 0])
    if len(ranked) > cfg.full_ranking_users:
        ranked = np.sort(np.random.default_rng([cfg.seed, 5]).choice(ranked, cfg.full_ranking_users, replace=False))
    relevant = [items[users == u] for u in ranked]
    all_items = np.arange(n_items)
    full_scores = score(model, np.repeat(ranked, n_items), np.tile(all_items, len(ranked))).reshape(len(ranked), n_items)
    full = rm.full_ranking(full_scores, relevant, [seen.get(int(u), ()) for u in ranked], cfg.k)
    return {"hr_at_k": model_hr["hr"], "ndcg_at_k": model_hr["ndcg"], "recall_at_k_full": full["recall"],
            "ndcg_at_k_full": full["ndcg"], "baseline_popularity_hr_at_k": pop_hr["hr"],
            "baseline_popularity_ndcg_at_k": pop_hr["ndcg"]}


def compute_split_metrics(model, dataset, cfg, info: DataInfo, report) -> dict:
    users, items, y = _arrays(dataset)
    if cfg.feedback == "explicit":
        return rating_baselines(users, items, y, info)
    positive = y > 0.5
    return ranking_metrics(model, users[positive], items[positive], cfg, info)


SPLIT_METRICS = SplitMetrics(
    directions={"baseline_mean_rmse": "down", "baseline_mean_mae": "down", "baseline_bias_rmse": "down",
                "baseline_bias_mae": "down", "hr_at_k": "up", "ndcg_at_k": "up", "recall_at_k_full": "up",
                "ndcg_at_k_full": "up", "baseline_popularity_hr_at_k": "up", "baseline_popularity_ndcg_at_k": "up"},
    compute=compute_split_metrics)


# --- predictions -----------------------------------------------------------------------------------


def sample_inputs(cfg, info: DataInfo, out_dir: Path, n: int) -> list[str]:
    """The first n known user ids (predict takes user ids)."""
    return list(info.vocabularies["users"][1:n + 1])


def _user_row(model, user: str, cfg, info: DataInfo, options: dict) -> dict:
    vocab = info.vocabularies
    uid = int(ratings.lookup([user], vocab["users"])[0])
    titles = vocab.get("item_titles") or []
    explicit = cfg.feedback == "explicit"
    row = {"user": user, "known_user": uid > 0}
    item = options.get("item")
    if item is not None:
        iid = int(ratings.lookup([item], vocab["items"])[0])
        s = float(score(model, np.asarray([uid]), np.asarray([iid]))[0])
        row.update(item=str(item), known_item=iid > 0, title=titles[iid] if iid and titles else None)
        row["predicted_rating" if explicit else "score"] = s if explicit else float(1 / (1 + np.exp(-s)))
        return row
    k = int(options.get("k") or cfg.k)
    scores = score(model, np.full(len(vocab["items"]), uid), np.arange(len(vocab["items"])))
    scores[0] = -np.inf
    seen, _ = _train_index(cfg, vocab)
    scores[seen.get(uid, [])] = -np.inf
    top = [int(i) for i in np.argsort(-scores, kind="stable")[:k] if np.isfinite(scores[i])]
    row["recommendations"] = [{"item": vocab["items"][i], "score": round(float(scores[i]), 5),
                               **({"title": titles[i]} if titles else {})} for i in top]
    return row


def _find_layer(model, name: str):
    """A layer by name, also inside sub-models (two_tower keeps its embeddings in its towers)."""
    for layer in model._flatten_layers(include_self=False):
        if layer.name == name:
            return layer
    raise ValueError(f"model {model.name!r} has no layer {name!r}")


def write_projector(model, info: DataInfo, folder: Path) -> Path:
    """TensorBoard projector files for the item embeddings (one row per vocabulary item, OOV left out),
    labelled by item id and title: vectors and metadata as TSV, so no checkpoint is needed."""
    folder.mkdir(parents=True, exist_ok=True)
    vectors = keras.ops.convert_to_numpy(_find_layer(model, "item_embedding").embeddings)[1:]
    np.savetxt(folder / "item_vectors.tsv", vectors, delimiter="\t", fmt="%.5f")
    items, titles = info.vocabularies["items"][1:], (info.vocabularies.get("item_titles") or [])[1:]
    clean = lambda t: str(t).replace("\t", " ").replace("\n", " ")  # noqa: E731
    lines = ["item\ttitle"] + [f"{clean(i)}\t{clean(titles[k]) if titles else ''}" for k, i in enumerate(items)]
    (folder / "item_metadata.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "projector_config.pbtxt").write_text(
        'embeddings {\n  tensor_name: "item_embedding"\n  tensor_path: "item_vectors.tsv"\n'
        '  metadata_path: "item_metadata.tsv"\n}\n')
    return folder


def predict_outputs(model, inputs: list[str], out_dir: Path, cfg, info: DataInfo, options: dict) -> list[dict]:
    """Top-k unseen items per user id (or, with --item, the predicted rating); also predictions.json and
    the item embeddings for TensorBoard's projector (out_dir/projector)."""
    users = [u.strip() for u in inputs if u.strip()]
    if not users:
        raise UserError("predict: give a user id: --user ID (or user ids as arguments, or --input FILE, one a line)")
    rows = [_user_row(model, u, cfg, info, options) for u in users]
    (out_dir / "predictions.json").write_text(json.dumps(rows, indent=2))
    write_projector(model, info, out_dir / "projector")
    return rows


register(Task(
    name="recommendation",
    description="recommendation: rating regression or implicit ranking (MF / NeuMF / two towers over user-item ids)",
    config_cls=RecommendationConfig,
    build_datasets=build_datasets,
    rebuild_datasets=rebuild_datasets,
    build_model=build_model,
    loss=loss,
    metrics=metrics,
    default_data="generated ratings (latent factors + biases + noise, popularity skew)",
    presets={
        "debug": {"epochs": 1, "num_users": 60, "num_items": 50, "num_ratings": 1500, "batch_size": 64,
                  "embedding_dim": 8, "hidden": (16, 8), "log_every_steps": 2, "full_ranking_users": 30},
        # MovieLens ratings, 80/20 random split (5% of all rows carved for validation / early stopping)
        "movielens": {"test_fraction": 0.2, "val_fraction": 0.05, "l2": 0.1, "epochs": 20, "patience": 3},
        "implicit": {"feedback": "implicit", "best_metric": "val_ndcg_at_k", "epochs": 6, "l2": 0.002,
                     "learning_rate": 5e-3},
    },
    split_metrics=SPLIT_METRICS,
    prepare=prepare,
    predict_outputs=predict_outputs,
    sample_inputs=sample_inputs,
    best_metric="val_loss",
))
