"""Recommendation end to end on the current backend: a small explicit fit beats the bias baseline,
predict lists unseen items, unseen ids are counted, TFDS (mock) and real MovieLens files read."""

import json

import numpy as np
import pytest

from conftest import FAST_JIT, shared_data
from errors import DataError
from tasks.base import get_task, resolve_config

TASK = "recommendation"
SMALL = ["num_users=150", "num_items=120", "num_ratings=9000", "embedding_dim=16", "epochs=5", "batch_size=64",
         "learning_rate=1e-2", FAST_JIT]


@pytest.fixture(scope="module")
def explicit_run(tmp_path_factory):
    from training.loop import fit

    task = get_task(TASK)
    cfg = resolve_config(task, sets=SMALL)
    result = fit(task, cfg, tmp_path_factory.mktemp("rec") / "run", verbose=0)
    return task, cfg, result


def test_explicit_fit_beats_the_mean_and_bias_baselines(explicit_run):
    _, _, result = explicit_run
    val, test = result.metrics["best"]["validation"], result.metrics["test"]
    assert val["rmse"] < 0.85 * val["baseline_mean_rmse"], val
    assert val["rmse"] < val["baseline_bias_rmse"] < val["baseline_mean_rmse"], val
    assert test["rmse"] < test["baseline_bias_rmse"], test  # reported once, on the best checkpoint
    info = json.loads((result.run_dir / "data_info.json").read_text())
    assert info["vocabularies"]["users"][0] == "[OOV]" and len(info["vocabularies"]["items"]) == 121


def test_predict_lists_top_k_unseen_items_and_one_rating(explicit_run, tmp_path, capsys):
    import cli

    task, cfg, result = explicit_run
    run = str(result.run_dir)
    assert cli.main(["predict", "--run-dir", run, "--user", "7", "--k", "5", "--out", str(tmp_path / "a")]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    from tasks.recommendation import _train_index

    vocabularies = json.loads((result.run_dir / "data_info.json").read_text())["vocabularies"]
    seen, _ = _train_index(cfg, vocabularies)
    trained_on = {vocabularies["items"][i] for i in seen[vocabularies["users"].index("7")]}
    items = [r["item"] for r in row["recommendations"]]
    scores = [r["score"] for r in row["recommendations"]]
    assert row["user"] == "7" and row["known_user"] and len(items) == 5 and scores == sorted(scores, reverse=True)
    assert trained_on and not set(items) & trained_on
    assert all(r["title"].startswith("Item ") for r in row["recommendations"])
    assert cli.main(["predict", "--run-dir", run, "--user", "7", "--item", items[0], "--out", str(tmp_path / "b")]) == 0
    one = json.loads(capsys.readouterr().out.splitlines()[0])
    assert one["item"] == items[0] and 0.0 < one["predicted_rating"] < 6.0
    assert one["predicted_rating"] == pytest.approx(scores[0], abs=1e-4)
    assert cli.main(["predict", "--run-dir", run, "--user", "nobody", "--out", str(tmp_path / "c")]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["known_user"] is False


def test_predict_without_a_user_is_an_error(explicit_run, tmp_path):
    from errors import UserError
    from tasks.recommendation import predict_outputs

    _, cfg, result = explicit_run
    info = result.run_dir / "data_info.json"
    from pipelines.data import data_info_from_dict

    with pytest.raises(UserError, match="predict: give a user id: --user ID"):
        predict_outputs(result.model, [" "], tmp_path, cfg, data_info_from_dict(json.loads(info.read_text())), {})


def _csv(tmp_path, rows, header="userId,movieId,rating,timestamp"):
    path = tmp_path / "ratings.csv"
    path.write_text(header + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    return path


def test_unseen_users_and_items_map_to_oov_and_are_counted(tmp_path):
    from tasks.recommendation import build_datasets

    rows = [(u, i, 1 + (u * i) % 5, u * 100 + i) for u in range(1, 21) for i in range(1, 11)]
    rows += [(100 + j, 100 + j, 4, 5000 + j) for j in range(40)]  # users and items that appear once
    cfg = resolve_config(get_task(TASK), sets=[f"data={_csv(tmp_path, rows)}", "val_fraction=0.15", "test_fraction=0.15"])
    data = build_datasets(cfg)
    info = data.info
    vocab = info.vocabularies
    unseen = info.extra["unseen"]
    for split, ds in (("validation", data.val), ("test", data.test)):
        x = [x for x, _ in ds.as_numpy_iterator()]
        assert unseen[split]["users"] == sum(int(e["user"]) == 0 for e in x) > 0, split
        assert unseen[split]["items"] == sum(int(e["item"]) == 0 for e in x) > 0, split
    # learned from training rows only: an id seen once is in the vocabulary iff its row went to train
    singles = {str(100 + j) for j in range(40)}
    assert 0 < len(singles & set(vocab["users"])) and len(singles & set(vocab["users"])) + unseen["validation"]["users"] + unseen["test"]["users"] == 40


def test_temporal_split_needs_timestamps(tmp_path):
    from tasks.recommendation import build_datasets

    path = _csv(tmp_path, [(1, 1, 4), (1, 2, 3), (2, 1, 5)], header="userId,movieId,rating")
    cfg = resolve_config(get_task(TASK), sets=[f"data={path}", "split=temporal"])
    with pytest.raises(DataError, match="split=temporal needs timestamps"):
        build_datasets(cfg)


def test_tfds_movielens_under_mock_data():
    import tensorflow_datasets as tfds

    from tasks.recommendation import build_datasets

    cfg = resolve_config(get_task(TASK), sets=["data=tfds:movielens/100k-ratings", "test_fraction=0.2"])
    with tfds.testing.mock_data(num_examples=40):
        data = build_datasets(cfg)
    info = data.info
    assert info.source == "tfds:movielens/100k-ratings" and info.num_test > 0
    assert info.num_train + info.num_val + info.num_test == len(data.train) + len(data.val) + len(data.test)
    x, y = next(data.train.batch(4).as_numpy_iterator())
    assert x["user"].dtype == np.int32 and y.shape == (4, 1)


def test_ml_latest_small_reads_as_shipped():
    from pipelines import ratings

    rows = ratings.read_path(shared_data("ml-latest-small"), ratings.Columns())
    lines = (shared_data("ml-latest-small") / "ratings.csv").read_text().count("\n") + 1
    assert len(rows) == lines - 1 >= 100836 and len(set(rows.users.tolist())) >= 610
    assert rows.titles["1"] == "Toy Story (1995)" and rows.ratings.min() == 0.5


IMPLICIT = ["num_users=150", "num_items=120", "num_ratings=9000", "embedding_dim=16", "epochs=3", "batch_size=128",
            "learning_rate=1e-2", "num_negatives=2", "full_ranking_users=150", FAST_JIT]  # + the implicit preset


def test_recommended_implicit_fit_ranks_twice_above_popularity(tmp_path):
    from training.loop import fit

    task = get_task(TASK)
    result = fit(task, resolve_config(task, preset="implicit", sets=IMPLICIT), tmp_path / "run", verbose=0)
    val = result.metrics["best"]["validation"]
    assert val["hr_at_k"] >= 2.0 * val["baseline_popularity_hr_at_k"], val  # the acceptance margin
    assert val["ndcg_at_k"] >= 2.0 * val["baseline_popularity_ndcg_at_k"], val
    assert 0 < val["recall_at_k_full"] <= 1 and 0 < val["ndcg_at_k_full"] <= 1, val
    assert result.metrics["best"]["metric"] == "val_ndcg_at_k" and result.metrics["best"]["direction"] == "up"


def test_two_tower_in_batch_softmax_learns_through_fit(tmp_path):
    from training.loop import fit

    task = get_task(TASK)
    cfg = resolve_config(task, preset="implicit", sets=[*IMPLICIT, "model=two_tower", "num_negatives=0", "epochs=4",
                                                        "learning_rate=5e-3", "hidden=16,"])
    assert cfg.in_batch_softmax
    result = fit(task, cfg, tmp_path / "run", verbose=0)
    val = result.metrics["best"]["validation"]
    assert val["hr_at_k"] > 1.1 * val["baseline_popularity_hr_at_k"], val  # a weak margin: towers need more data
    history = json.loads((result.run_dir / "history.json").read_text())
    assert history[-1]["loss"] < history[0]["loss"], history  # the in-batch softmax loss itself goes down
    from tasks.recommendation import write_projector

    folder = write_projector(result.model, result_info(result), tmp_path / "projector")  # towers' item embeddings
    assert np.loadtxt(folder / "item_vectors.tsv", delimiter="\t").shape == (120, 16)


def result_info(result):
    from pipelines.data import data_info_from_dict

    return data_info_from_dict(json.loads((result.run_dir / "data_info.json").read_text()))


def test_predict_writes_item_embeddings_for_the_projector(explicit_run, tmp_path):
    from tasks.recommendation import write_projector

    _, _, result = explicit_run
    from pipelines.data import data_info_from_dict

    info = data_info_from_dict(json.loads((result.run_dir / "data_info.json").read_text()))
    folder = write_projector(result.model, info, tmp_path / "projector")
    vectors = np.loadtxt(folder / "item_vectors.tsv", delimiter="\t")
    meta = (folder / "item_metadata.tsv").read_text().splitlines()
    assert vectors.shape == (120, 16) and len(meta) == 121 and meta[1] == f"{info.vocabularies['items'][1]}\tItem 1"
    assert 'tensor_path: "item_vectors.tsv"' in (folder / "projector_config.pbtxt").read_text()


def test_in_batch_softmax_masks_accidental_hits_and_corrects_by_popularity(tmp_path):
    import keras

    from keras_models.recommender import two_tower

    model = two_tower(4, 6, embedding_dim=3, hidden=(3,), l2=0.0, explicit=False, in_batch_softmax=True)
    q = np.asarray([0.0, 0.1, 0.2, 0.3, 0.2, 0.2], np.float32)
    model.get_layer("item_tower").get_layer("item_sampling_probability").embeddings.assign(q[:, None])
    users, items = np.asarray([1, 2, 3, 1], np.int32), np.asarray([2, 2, 4, 5], np.int32)  # rows 0, 1: same item
    labels = np.asarray([[1.0], [1.0], [1.0], [0.0]], np.float32)  # row 3 is a sampled negative: no query
    u = keras.ops.convert_to_numpy(model.get_layer("user_tower")(users))
    v, b, _ = (keras.ops.convert_to_numpy(t) for t in model.get_layer("item_tower")(items))
    expected = u @ v.T + b.reshape(1, -1) - np.log(q[items]).reshape(1, -1)
    logits = keras.ops.convert_to_numpy(model.in_batch_logits(users, items))
    assert logits[0, 1] < -1e8 and logits[1, 0] < -1e8  # the other row's copy of one's own positive
    keep = np.ones((4, 4), bool)
    keep[0, 1] = keep[1, 0] = False
    np.testing.assert_allclose(logits[keep], expected[keep], rtol=1e-5, atol=1e-5)
    ce = [np.log(np.exp(expected[r][keep[r]]).sum()) - expected[r, r] for r in range(3)]
    loss = model.compute_loss({"user": users, "item": items}, labels, None, training=False)
    assert float(keras.ops.convert_to_numpy(loss)) == pytest.approx(np.mean(ce), rel=1e-5)
    model.save(tmp_path / "two_tower.keras")  # the saved model keeps its class, towers and probability table
    again = keras.saving.load_model(tmp_path / "two_tower.keras")
    assert type(again).__name__ == "InBatchSoftmax"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(again.in_batch_logits(users, items)), logits, rtol=1e-6)
