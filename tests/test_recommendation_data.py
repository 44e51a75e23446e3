"""Recommendation data and metrics without training: MovieLens layouts, CSV columns, bad rows, splits,
vocabularies, per-epoch negatives, the bias baseline and the ranking metrics (full ranking by keras-rs)
against hand-computed values."""

import math

import numpy as np
import pytest

from errors import DataError
from pipelines import ratings
from tasks import recommendation_metrics as rm


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


# --- formats -----------------------------------------------------------------------------------------


def test_u_data_folder_with_latin1_titles(tmp_path):
    _write(tmp_path / "u.data", "1\t10\t4\t881250949\n2\t10\t3\t881250950\n1\t20\t5\t881250951\n")
    _write(tmp_path / "u.item", "10|Café Society (1995)|01-Jan-1995||http://x|0|1\n20|Toy Story (1995)|x\n", "latin-1")
    rows = ratings.read_path(tmp_path, ratings.Columns())
    assert rows.users.tolist() == ["1", "2", "1"] and rows.items.tolist() == ["10", "10", "20"]
    assert rows.ratings.tolist() == [4.0, 3.0, 5.0] and rows.times.tolist() == [881250949, 881250950, 881250951]
    assert rows.titles["10"] == "Café Society (1995)"


def test_ratings_dat_and_movies_dat(tmp_path):
    _write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    _write(tmp_path / "movies.dat", "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::Señor (1996)::X\n", "latin-1")
    rows = ratings.read_path(tmp_path / "ratings.dat", ratings.Columns())
    assert rows.items.tolist() == ["1193", "661"] and rows.ratings.tolist() == [5.0, 3.0]
    assert rows.titles["661"] == "Señor (1996)"


def test_ratings_csv_with_header_and_movies_csv(tmp_path):
    _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,3.5,964981247\n")
    _write(tmp_path / "movies.csv", 'movieId,title,genres\n1,"Toy Story, The (1995)",Comedy\n3,Heat (1995),Action\n')
    rows = ratings.read_path(tmp_path, ratings.Columns())
    assert rows.ratings.tolist() == [4.0, 3.5] and rows.titles["1"] == "Toy Story, The (1995)"


def test_generic_csv_with_named_columns_and_no_time(tmp_path):
    path = _write(tmp_path / "clicks.csv", "who,stars,what\nann,5,x1\nbob,2,x2\n")
    rows = ratings.read_path(path, ratings.Columns(user="who", item="what", rating="stars", time=""))
    assert rows.users.tolist() == ["ann", "bob"] and rows.items.tolist() == ["x1", "x2"]
    assert rows.ratings.tolist() == [5.0, 2.0] and rows.times is None
    implicit = ratings.read_path(path, ratings.Columns(user="who", item="what", rating="", time=""))
    assert implicit.ratings.tolist() == [1.0, 1.0]


@pytest.mark.parametrize("name, text, expected", [
    ("ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,1\n1,2,good,2\n", "ratings.csv line 3: rating 'good' is not a number"),
    ("ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,1\n1,2\n", "ratings.csv line 3: expected 4 ','-separated fields"),
    ("ratings.csv", "userId;movieId;rating;timestamp\n1;1;4.0;1\n", "ratings.csv line 1: no column 'userId'"),
    ("u.data", "1\t10\t4\t1\n1,20,5,2\n", "u.data line 2: expected 'user item rating timestamp' separated by '\\t'"),
    ("ratings.dat", "1::10::4::1\n1::20::x::2\n", "ratings.dat line 2: rating 'x' is not a number"),
])
def test_bad_rows_are_one_line_naming_file_and_line(tmp_path, name, text, expected):
    _write(tmp_path / name, text)
    with pytest.raises(DataError) as err:
        ratings.read_path(tmp_path / name, ratings.Columns())
    message = str(err.value)
    assert expected in message and "\n" not in message and str(tmp_path / name) in message


def test_folder_without_ratings_is_an_error(tmp_path):
    _write(tmp_path / "notes.txt", "hello")
    with pytest.raises(DataError, match="expected a MovieLens folder holding one of u.data, ratings.dat, ratings.csv"):
        ratings.read_path(tmp_path, ratings.Columns())


# --- generated data, splits, vocabularies ---------------------------------------------------------------


def test_generated_ratings_are_seeded_and_popularity_skewed():
    a, b = ratings.generate(100, 80, 3000, seed=3), ratings.generate(100, 80, 3000, seed=3)
    assert np.array_equal(a.ratings, b.ratings) and np.array_equal(a.items, b.items)
    assert not np.array_equal(a.items, ratings.generate(100, 80, 3000, seed=4).items)
    counts = np.sort(np.unique(a.items, return_counts=True)[1])[::-1]
    assert counts[:8].sum() > 2 * counts[-8:].sum()  # the most popular items are rated twice as often or more
    assert 0.5 <= a.ratings.min() and a.ratings.max() <= 5.0 and set((a.ratings * 2) % 1) == {0.0}


def test_random_split_is_seeded_disjoint_and_complete():
    parts = ratings.random_split(1000, 0.1, 0.2, seed=1)
    assert [len(parts[s]) for s in ("train", "validation", "test")] == [700, 100, 200]
    assert len(np.unique(np.concatenate(list(parts.values())))) == 1000
    assert np.array_equal(parts["test"], ratings.random_split(1000, 0.1, 0.2, seed=1)["test"])
    assert not np.array_equal(parts["test"], ratings.random_split(1000, 0.1, 0.2, seed=2)["test"])


def test_temporal_split_holds_out_each_users_latest_rows():
    rows = ratings.generate(50, 40, 1500, seed=0)
    rows.times[:10] = rows.times[0]  # ties keep file order
    parts = ratings.temporal_split(rows.users, rows.times, 0.1, 0.2)
    split_of = {}
    for name, idx in parts.items():
        for i in idx:
            split_of[i] = name
    assert len(split_of) == len(rows)
    for user in np.unique(rows.users):
        mine = np.flatnonzero(rows.users == user)
        times = {s: rows.times[[i for i in mine if split_of[i] == s]] for s in ("train", "validation", "test")}
        assert len(times["train"]) >= 1 and len(times["test"]) >= 1 and len(times["validation"]) >= 1
        assert times["test"].min() >= times["validation"].max() >= times["train"].max()


def test_vocabulary_is_learned_on_given_ids_and_unknown_ids_map_to_oov():
    vocab = ratings.vocabulary(np.asarray(["10", "2", "2", "b", "a"]))
    assert vocab == [ratings.OOV, "2", "10", "a", "b"]
    assert ratings.lookup(["10", "zzz", "2"], vocab).tolist() == [2, 0, 1]


# --- metrics against hand-computed values -------------------------------------------------------------


def test_sampled_hit_rate_and_ndcg_by_hand():
    # positive scores vs 3 negatives each: ranks 0, 2 (two higher), 1 (one higher + two ties -> +1)
    ranks = rm.sampled_ranks([0.9, 0.5, 0.5], [[0.1, 0.2, 0.3], [0.6, 0.7, 0.1], [0.8, 0.5, 0.5]])
    assert ranks.tolist() == [0, 2, 2]
    out = rm.hit_rate_and_ndcg(ranks, k=2)
    assert out["hr"] == pytest.approx(1 / 3)
    assert out["ndcg"] == pytest.approx((1.0 + 0 + 0) / 3)
    out = rm.hit_rate_and_ndcg(np.asarray([0, 1, 5]), k=3)
    assert out["hr"] == pytest.approx(2 / 3) and out["ndcg"] == pytest.approx((1 + 1 / math.log2(3)) / 3)


def test_full_ranking_recall_and_ndcg_by_hand():
    scores = np.asarray([[9.0, 0.9, 0.8, 0.7, 0.6, 0.5],   # item 0 is OOV: never ranked
                         [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]])
    # user 0: item 1 is excluded (seen in training) -> top 2 = [2, 3]; relevant {3, 5}: one hit at rank 1
    # user 1: top 2 = [5, 4]; relevant {5}: hit at rank 0
    out = rm.full_ranking(scores, [np.asarray([3, 5]), np.asarray([5])], [[1], []], k=2)
    assert out["recall"] == pytest.approx((1 / 2 + 1) / 2)
    ndcg_user0 = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert out["ndcg"] == pytest.approx((ndcg_user0 + 1.0) / 2)


def test_bias_baseline_learns_generous_users_and_good_items():
    users = np.asarray([1, 1, 2, 2, 3, 3] * 20)
    items = np.asarray([1, 2, 1, 2, 1, 2] * 20)
    y = np.asarray([5, 4, 3, 2, 4, 3] * 20, float)  # user 1 generous, item 1 better by one star
    mu, b_u, b_i = rm.fit_biases(users, items, y, 4, 3)
    assert mu == pytest.approx(3.5) and b_u[1] > b_u[3] > b_u[2] and b_i[1] - b_i[2] == pytest.approx(1.0, abs=0.2)
    assert b_u[0] == 0 and b_i[0] == 0  # the OOV id keeps no bias
    pred = rm.bias_predictions(users, items, mu, b_u, b_i)
    assert np.sqrt(np.mean((pred - y) ** 2)) < 0.3 < 0.9 < np.std(y)


def test_negatives_avoid_the_users_seen_items():
    seen = {1: np.asarray([1, 2, 3]), 2: np.asarray([4])}
    negs = rm.sample_negatives(np.asarray([1, 2, 1]), seen, num_items=6, count=20, seed=0)
    assert negs.shape == (3, 20) and negs.min() >= 1 and negs.max() <= 5
    assert not np.isin(negs[[0, 2]], [1, 2, 3]).any() and not np.isin(negs[1], [4]).any()


def test_training_negatives_are_drawn_afresh_each_epoch_and_stay_unseen():
    from pipelines import stream

    users, items = np.asarray([1, 1, 2, 3]), np.asarray([1, 2, 3, 4])
    seen = {(1, 1), (1, 2), (2, 3), (3, 4)}
    n = 3  # negatives per positive, first drawn once (item 5 here), then re-drawn by the hook
    rows_u = np.r_[users, np.repeat(users, n)]
    rows_i = np.r_[items, np.full(len(users) * n, 5)]
    labels = np.r_[np.ones(len(users)), np.zeros(len(users) * n)][:, None]
    ds = ratings.to_dataset(rows_u, rows_i, labels)
    resample = ratings.negative_resampler(users, items, num_items=9)
    batches = list(stream.training_stream(ds, num_examples=len(labels), batch_size=len(labels), seed=0,
                                          end_epoch=4, augment=resample).as_numpy_iterator())
    epochs = []
    for x, y in batches:
        pairs = list(zip(x["user"].tolist(), x["item"].tolist(), y[:, 0].tolist()))
        assert sorted(p[:2] for p in pairs if p[2] == 1) == sorted(seen)  # positives pass unchanged
        negatives = sorted(p[:2] for p in pairs if p[2] == 0)
        assert len(negatives) == len(users) * n and not set(negatives) & seen
        assert all(1 <= i <= 8 for _, i in negatives) and sorted(u for u, _ in negatives) == sorted(np.repeat(users, n))
        epochs.append(negatives)
    assert len(epochs) == 4 and len({tuple(e) for e in epochs}) == 4  # a new draw every epoch
    again = list(stream.training_stream(ds, num_examples=len(labels), batch_size=len(labels), seed=0, start_epoch=2,
                                        end_epoch=3, augment=resample).as_numpy_iterator())
    x, y = again[0]
    assert sorted((u, i) for u, i, t in zip(x["user"], x["item"], y[:, 0]) if t == 0) == epochs[2]  # resumable
