"""Recommendation yardsticks: the user/item bias baseline and the ranking metrics.

Rating errors themselves come from `training.baselines.regression_errors` (shared with the other
numeric-target tasks). Full-ranking Recall@k / NDCG@k are keras-rs metrics. HR@k / NDCG@k of the
sampled protocol stay in NumPy: they need one positive's rank among its negatives with ties
counted half (keras-rs breaks ties at random or by position), which matters for the popularity
baseline, whose integer scores tie often. Ids are vocabulary ids (0 = out of vocabulary: no bias,
never recommended).
"""

from __future__ import annotations

import numpy as np

ITEM_REG, USER_REG = 10.0, 15.0  # shrinkage of the bias baseline (scikit-surprise's BaselineOnly defaults)


def fit_biases(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, num_users: int, num_items: int,
               iterations: int = 5) -> tuple[float, np.ndarray, np.ndarray]:
    """(global mean, user biases, item biases) by alternating regularised least squares (Koren 2010)."""
    mu = float(np.mean(ratings))
    b_u, b_i = np.zeros(num_users), np.zeros(num_items)
    n_u = np.bincount(users, minlength=num_users)
    n_i = np.bincount(items, minlength=num_items)
    for _ in range(iterations):
        b_i = np.bincount(items, ratings - mu - b_u[users], num_items) / (ITEM_REG + n_i)
        b_u = np.bincount(users, ratings - mu - b_i[items], num_users) / (USER_REG + n_u)
    return mu, b_u, b_i


def bias_predictions(users, items, mu: float, b_u, b_i) -> np.ndarray:
    return mu + np.asarray(b_u)[users] + np.asarray(b_i)[items]


# --- ranking ----------------------------------------------------------------------------------------


def sampled_ranks(positive: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """0-based rank of each positive's score among its sampled negatives' (ties count half, rounded down)."""
    positive = np.asarray(positive, np.float64)[:, None]
    negatives = np.asarray(negatives, np.float64)
    return (negatives > positive).sum(axis=1) + (negatives == positive).sum(axis=1) // 2


def hit_rate_and_ndcg(ranks: np.ndarray, k: int) -> dict:
    """HR@k and NDCG@k of one held-out positive per row, given its 0-based rank."""
    ranks = np.asarray(ranks)
    hit = ranks < k
    return {"hr": float(hit.mean()), "ndcg": float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())}


def sample_negatives(users: np.ndarray, seen: dict, num_items: int, count: int, seed: int) -> np.ndarray:
    """(len(users), count) item ids in [1, num_items) that each user has not interacted with (seeded).

    Collisions with seen items are redrawn (a user who has seen nearly everything may keep a few)."""
    rng = np.random.default_rng([seed, 99])
    users = np.asarray(users, np.int64)
    out = rng.integers(1, num_items, (len(users), count))
    if not len(users):
        return out
    is_seen = np.zeros((max(int(users.max()), max(seen, default=0)) + 1, num_items), bool)
    for user, items in seen.items():
        is_seen[user, items] = True
    for _ in range(100):
        bad = is_seen[users[:, None], out]
        if not bad.any():
            break
        out[bad] = rng.integers(1, num_items, int(bad.sum()))
    return out


def full_ranking(scores: np.ndarray, relevant: list, exclude: list, k: int, chunk: int = 256) -> dict:
    """Recall@k and NDCG@k over every item: scores (users, items); per user, relevant and excluded ids.

    keras-rs `RecallAtK` / `NDCG` (binary relevance): Recall@k = hits in the top k / relevant items;
    NDCG@k normalises by the ideal ranking of min(k, relevant) hits. Excluded items (the user's
    training items, OOV id 0) are masked: they never rank and never count as relevant.
    """
    import keras_rs

    recall = keras_rs.metrics.RecallAtK(k=k, shuffle_ties=False)
    ndcg = keras_rs.metrics.NDCG(k=k, shuffle_ties=False)
    scores = np.asarray(scores, np.float32)
    for start in range(0, len(scores), chunk):
        rows = range(start, min(start + chunk, len(scores)))
        truth = np.zeros((len(rows), scores.shape[1]), np.float32)
        mask = np.ones(truth.shape, bool)
        mask[:, 0] = False
        for r, row in enumerate(rows):
            truth[r, np.asarray(relevant[row], np.int64)] = 1.0
            mask[r, np.asarray(list(exclude[row]), np.int64)] = False
        y_true = {"labels": truth, "mask": mask}
        recall.update_state(y_true, scores[start:rows.stop])
        ndcg.update_state(y_true, scores[start:rows.stop])
    return {"recall": float(recall.result()), "ndcg": float(ndcg.result())}
