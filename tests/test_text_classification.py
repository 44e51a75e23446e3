"""Text classification end to end through cli.main: learning, saved vocabulary, evaluate, predict, TensorBoard.

Measured (2 CPU cores shared with other trainings, load average 6-7; seed 0):
- the module's run (CNN, 2,000 generated sentences, 4 epochs, 32 tokens): validation accuracy
  0.763 (tensorflow) / 0.780 (jax) against 0.34 for the majority class; asserted >= majority + 0.25.
- SST-2 (CNN, 2 epochs on stsa.binary.train, 32 tokens): accuracy on stsa.binary.test 0.784
  (tensorflow) / 0.778 (jax); asserted >= 0.70. About 20-25 s per backend.
Both files together: 73 s (tensorflow) / 70 s (jax) on that loaded machine.
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
    vocab = info["extra"]["vocabulary"]
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
    assert cli("predict", "--run-dir", run, "--out", tmp_path / "o2") == 2
    assert "give at least one text" in capsys.readouterr().err


def test_tensorboard_has_confusion_matrix_and_misclassified_table(run):
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(run / "validation"), size_guidance={"tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["tensors"])
    assert {"images/confusion_matrix", "misclassified", "epoch/macro_f1", "epoch/precision_neutral"} <= tags
    table = acc.Tensors("misclassified")[-1].tensor_proto.string_val[0].decode()
    assert "| text | true | predicted | p(predicted) |" in table or table.startswith("no misclassified")


def test_visualize_counts_every_example_once():
    from tasks.text_classification import confusion_image, confusion_matrix, misclassified_table

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


def test_sst2_cnn_reaches_070_test_accuracy_on_a_short_run(cli, tmp_path):
    """Train on stsa.binary.train, validate on stsa.binary.test (the default `heldout=test`)."""
    folder = shared_data("sst2")
    run_dir = tmp_path / "sst2"
    assert cli("fit", "--task", TASK, "--data", folder, "--epochs", "2", "--run-dir", run_dir, "--quiet",
               "--set", "model=cnn", "--set", "sequence_length=32", "--set", "vocab_size=8000",
               "--set", "embedding_dim=48", "--set", "hidden=48", "--set", "per_class_metrics=False") == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    info = json.loads((run_dir / "data_info.json").read_text())
    assert (info["num_train"], info["num_val"]) == (6920, 1821)  # train and test files
    assert metrics["validation"]["accuracy"] >= 0.70, metrics["validation"]


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
