"""Text classification end to end through cli.main: learning, saved vocabulary, evaluate, predict, TensorBoard.

Measured (2 CPU cores shared with other trainings, load average 6-7; seed 0):
- the module's run (CNN, 2,000 generated sentences, 4 epochs, 32 tokens): validation accuracy
  0.763 (tensorflow) / 0.780 (jax) against 0.34 for the majority class; asserted >= majority + 0.25.
- SST-2 (CNN, 2 epochs on stsa.binary.train, 32 tokens): accuracy on stsa.binary.dev (validation)
  0.790 (tensorflow) / 0.796 (jax); asserted >= 0.70. About 20-25 s per backend.
All text test files (this one, _data, test_text_pipeline_fuzz, test_labels, text parser fuzz): 150 s
(tensorflow) / 193 s (jax) on that loaded machine.
"""

import json

import numpy as np
import pytest

from conftest import BACKEND, shared_data

TASK = "text-classification"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One small CNN run on the generated default data, shared by the tests of this module."""
    import cli

    run_dir = tmp_path_factory.mktemp("text") / "r"
    rc = cli.main(["fit", "--task", TASK, "--preset", "debug", "--epochs", "4", "--batch-size", "64",
                   "--run-dir", str(run_dir), "--set", "num_train=2000", "--set", "num_val=300",
                   "--set", "sequence_length=32", "--set", "embedding_dim=64", "--set", "hidden=64",
                   "--set", "learning_rate=5e-3", "--quiet"])
    assert rc == 0
    return run_dir


def _majority_share(labels):
    return np.bincount(labels).max() / len(labels)


def test_cnn_learns_the_generated_sentiment_well_above_the_majority_class(run):
    from pipelines.text import generated_sentiment

    _, val_labels = generated_sentiment(300, 0, "validation")
    majority = _majority_share(val_labels)
    metrics = json.loads((run / "metrics.json").read_text())
    val = metrics["validation"]
    assert metrics["backend"] == BACKEND
    assert val["accuracy"] >= majority + 0.25, f"accuracy {val['accuracy']:.3f}, majority class {majority:.3f}"
    assert val["macro_f1"] >= majority + 0.2
    for name in ("negative", "neutral", "positive"):
        assert 0.0 <= val[f"precision_{name}"] <= 1.0 and 0.0 <= val[f"recall_{name}"] <= 1.0


def test_vocabulary_is_saved_with_the_run_and_evaluate_reproduces_the_metrics(run, cli, capsys):
    info = json.loads((run / "data_info.json").read_text())
    vocab = info["vocabularies"]["tokens"]
    assert vocab[:2] == ["", "[UNK]"] and "not" in vocab and len(vocab) <= 500  # debug preset: vocab_size=500
    assert info["extra"]["sequence_length"] == 32 and info["class_names"] == ["negative", "neutral", "positive"]
    assert cli("evaluate", "--run-dir", run) == 0
    out = json.loads((run / "eval-validation.json").read_text())["metrics"]
    final = json.loads((run / "metrics.json").read_text())["validation"]
    for key in ("accuracy", "macro_f1", "recall_neutral"):
        assert out[key] == pytest.approx(final[key], abs=1e-5), key
    assert "macro_f1" in capsys.readouterr().out


def test_predict_takes_raw_strings_and_an_input_file(run, cli, tmp_path, capsys):
    texts = ["the acting was really superb", "honestly the plot was awful", "ZEBRA quartz !!"]
    listing = tmp_path / "more.txt"
    listing.write_text("the ending felt dull but the music was wonderful\n\nthe cast was ordinary\n")
    assert cli("predict", "--run-dir", run, "--out", tmp_path / "out", *texts, "--input", listing) == 0
    rows = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [r["input"] for r in rows] == texts + ["the ending felt dull but the music was wonderful",
                                                  "the cast was ordinary"]
    for r in rows:
        assert r["label"] in ("negative", "neutral", "positive")
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert r["probability"] == pytest.approx(max(r["probabilities"].values()), abs=1e-5)
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [p["label"] for p in printed] == [r["label"] for r in rows]
    assert rows[0]["label"] == "positive" and rows[1]["label"] == "negative"
    # No texts given: a run on the embedded data predicts on generated test-stream sentences, and says so.
    assert cli("predict", "--run-dir", run, "--out", tmp_path / "o2", "--num-samples", "2") == 0
    assert "no inputs given: predicting on 2 generated samples" in capsys.readouterr().out
    assert len(json.loads((tmp_path / "o2" / "predictions.json").read_text())) == 2


def test_tensorboard_has_confusion_matrix_and_misclassified_table(run):
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(run / "validation"), size_guidance={"tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["tensors"])
    assert {"images/confusion_matrix", "misclassified", "epoch/macro_f1", "epoch/precision_neutral"} <= tags
    table = acc.Tensors("misclassified")[-1].tensor_proto.string_val[0].decode()
    assert "| text | true | predicted | p(predicted) |" in table or table.startswith("no misclassified")


def test_visualize_counts_every_example_once():
    from tasks.text_classification import misclassified_table
    from tasks.visuals import confusion_image, confusion_matrix

    true, pred = np.array([0, 1, 2, 2, 1]), np.array([0, 2, 2, 2, 1])
    cm = confusion_matrix(true, pred, 3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 2]]
    img = confusion_image(cm, ("neg", "neu", "pos"))
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    probs = np.full((5, 3), 1 / 3)
    table = misclassified_table(np.array([[2, 3, 0]] * 5), true, pred, probs, ("a", "b", "c"), ["", "[UNK]", "x", "y|z"])
    assert "1 of the first 5" in table and "| x y\\|z | b | c | 0.33 |" in table


@pytest.mark.filterwarnings("ignore:Layer 'position_embedding'")  # keras-hub inner layer; the mask is kept
@pytest.mark.parametrize("model", ["bilstm", "transformer"])
def test_recurrent_and_transformer_models_train_on_token_ids(model):
    import keras

    from keras_models import text as text_models

    net = text_models.MODELS[model](50, 12, 4, embedding_dim=8, hidden=8, num_heads=2, dropout=0.0)
    net.compile(optimizer=keras.optimizers.Adam(1e-2),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ids = np.random.default_rng(0).integers(1, 50, (16, 12)).astype("int32")
    ids[:, 8:] = 0  # padding
    y = np.arange(16) % 4
    assert net.predict_on_batch(ids).shape == (16, 4)
    first = float(net.train_on_batch(ids, y))
    for _ in range(15):
        last = float(net.train_on_batch(ids, y))
    assert last < first * 0.7, (first, last)


def test_sst2_cnn_reaches_070_accuracy_on_dev_and_reports_the_test_file(cli, tmp_path):
    """Train on stsa.binary.train, validate on stsa.binary.dev; stsa.binary.test is the test split."""
    folder = shared_data("sst2")
    run_dir = tmp_path / "sst2"
    assert cli("fit", "--task", TASK, "--data", folder, "--epochs", "2", "--run-dir", run_dir, "--quiet",
               "--set", "model=cnn", "--set", "sequence_length=32", "--set", "vocab_size=8000",
               "--set", "embedding_dim=48", "--set", "hidden=48", "--set", "per_class_metrics=False") == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    info = json.loads((run_dir / "data_info.json").read_text())
    assert (info["num_train"], info["num_val"], info["num_test"]) == (6920, 872, 1821)
    assert info["splits"]["validation"].endswith("stsa.binary.dev") and info["splits"]["test"].endswith("stsa.binary.test")
    assert metrics["validation"]["accuracy"] >= 0.70, metrics["validation"]


def _flipped_copy(folder, dest):
    """The SST-2 folder with every label of the test file flipped (train and dev untouched)."""
    dest.mkdir()
    for name in ("stsa.binary.train", "stsa.binary.dev"):
        (dest / name).write_bytes((folder / name).read_bytes())
    lines = (folder / "stsa.binary.test").read_text(encoding="utf-8").splitlines()
    (dest / "stsa.binary.test").write_text("".join(f"{1 - int(l[0])}{l[1:]}\n" for l in lines), encoding="utf-8")
    return dest


def test_sst2_test_labels_cannot_influence_the_run(cli, tmp_path):
    """Flip every test label: validation history and the best checkpoint's value are identical."""
    from tasks.base import get_task, resolve_config

    folder = shared_data("sst2")
    flipped = _flipped_copy(folder, tmp_path / "flipped")
    tiny = ["--epochs", "2", "--batch-size", "64", "--quiet", "--set", "model=cnn", "--set", "sequence_length=24",
            "--set", "vocab_size=2000", "--set", "embedding_dim=16", "--set", "hidden=16",
            "--set", "max_train_examples=640", "--set", "max_val_examples=256", "--set", "per_class_metrics=False"]
    outcomes = []
    for data in (folder, flipped):
        run_dir = tmp_path / f"run-{data.name}"
        assert cli("fit", "--task", TASK, "--data", data, "--run-dir", run_dir, *tiny) == 0
        history = json.loads((run_dir / "history.json").read_text())
        latest = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
        outcomes.append((history, latest["best_value"], latest.get("best_epoch")))
    assert outcomes[0] == outcomes[1]
    task = get_task(TASK)
    original, changed = (task.build_datasets(resolve_config(task, "debug", sets=[f"data={d}"])) for d in (folder, flipped))
    assert original.test is not None and original.info.num_test == changed.info.num_test == 1821
    y0 = np.concatenate([y for _, y in original.test.batch(4096).as_numpy_iterator()])
    y1 = np.concatenate([y for _, y in changed.test.batch(4096).as_numpy_iterator()])
    assert (y0 != y1).all()  # the test split really differs


PUNCTUATION_ONLY = ["(", ")", "...", "-- !"]


def _glue_like(folder):
    """GLUE SST-2 style: `label<TAB>sentence` with a header, a few rows that are only punctuation."""
    from pipelines.text import generated_sentiment

    texts, labels = generated_sentiment(96, 1, "train")
    rows = [(int(y) // 2, t) for t, y in zip(texts, labels) if y != 1]  # negative 0, positive 1
    rows += [(i % 2, t) for i, t in enumerate(PUNCTUATION_ONLY)]
    path = folder / "train.tsv"
    path.write_text("label\tsentence\n" + "".join(f"{y}\t{t}\n" for y, t in rows), encoding="utf-8")
    return path, len(rows)


@pytest.mark.filterwarnings("ignore:Layer 'position_embedding'")
@pytest.mark.parametrize("model, preset", [("cnn", None), ("bilstm", "sst2"), ("transformer", "debug")])
def test_glue_like_file_with_punctuation_only_rows_trains_and_reports(cli, tmp_path, capsys, model, preset):
    """Issue 13: every model and every preset (once each) trains on it; the empty rows are counted."""
    path, n = _glue_like(tmp_path)
    run_dir = tmp_path / "run"
    args = ["fit", "--task", TASK, "--data", path, "--run-dir", run_dir, "--epochs", "1", "--batch-size", "16",
            "--quiet", "--set", f"model={model}", "--set", "text_column=sentence", "--set", "embedding_dim=8",
            "--set", "hidden=8", "--set", "per_class_metrics=False"]
    assert cli(*args, *(["--preset", preset] if preset else [])) == 0
    out = capsys.readouterr().out
    info = json.loads((run_dir / "data_info.json").read_text())
    empty = info["extra"]["empty_after_standardization"]
    assert set(empty) == {"train", "validation"} and sum(empty.values()) == len(PUNCTUATION_ONLY)
    assert (info["num_train"] + info["num_val"], info["class_names"]) == (n, ["0", "1"])
    assert "texts are empty after standardization (lower_and_strip_punctuation); kept as all-padding" in out
    val = json.loads((run_dir / "metrics.json").read_text())["validation"]
    assert np.isfinite(val["loss"]) and 0.0 <= val["accuracy"] <= 1.0


def test_headerless_uci_sentence_tab_label_file_trains_a_two_class_model(cli, tmp_path):
    """UCI 'sentiment labelled sentences' layout: `sentence<TAB>0|1`, no header, label last."""
    from pipelines.text import generated_sentiment

    texts, labels = generated_sentiment(120, 2, "train")
    path = tmp_path / "imdb_labelled.txt"
    path.write_text("".join(f"{t}\t{int(y) // 2}\n" for t, y in zip(texts, labels) if y != 1), encoding="utf-8")
    run_dir = tmp_path / "run"
    assert cli("fit", "--task", TASK, "--data", path, "--preset", "debug", "--run-dir", run_dir, "--quiet") == 0
    info = json.loads((run_dir / "data_info.json").read_text())
    assert info["num_classes"] == 2 and info["class_names"] == ["0", "1"]
    assert "not" in info["vocabularies"]["tokens"] and "0" not in info["vocabularies"]["tokens"]


def test_per_class_precision_and_recall_on_a_hand_computed_case():
    """Labels 0,0,1,1,2,2 predicted 0,1,1,1,0,2: class 0 P=1/2 R=1/2; class 1 P=2/3 R=1; class 2 P=1 R=1/2."""
    import numpy as np

    from keras_models.metrics import SparseClassPrecision, SparseClassRecall

    y = np.array([0, 0, 1, 1, 2, 2])
    logits = np.eye(3, dtype="float32")[[0, 1, 1, 1, 0, 2]]
    for class_id, precision, recall in ((0, 1 / 2, 1 / 2), (1, 2 / 3, 1.0), (2, 1.0, 1 / 2)):
        p, r = SparseClassPrecision(class_id, 3), SparseClassRecall(class_id, 3)
        p.update_state(y, logits)
        r.update_state(y, logits)
        assert float(p.result()) == pytest.approx(precision) and float(r.result()) == pytest.approx(recall)
