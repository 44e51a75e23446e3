"""Question answering end to end: a tiny reader learns the generated facts (beating the word-overlap
baseline), predict answers with the context's own substring, the v2.0 threshold travels with the
weights, TFDS squad under mock_data, a PolicyQA subset, and one-line CLI errors."""

import json

import numpy as np
import pytest

from conftest import BACKEND, FAST_JIT, shared_data
from tasks.base import get_task, resolve_config

TASK = "question-answering"
TINY = [FAST_JIT, "num_train=640", "num_val=80", "num_test=40", "epochs=3", "batch_size=32", "max_length=72",
        "doc_stride=36", "embedding_dim=24", "hidden=24", "vocab_size=400", "learning_rate=1e-2",
        "warmup_steps=0", "log_every_steps=50", "dropout=0.0"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny fit on the generated facts, shared by the tests below."""
    from training.loop import fit

    task = get_task(TASK)
    cfg = resolve_config(task, sets=TINY)
    return fit(task, cfg, tmp_path_factory.mktemp("qa") / "run", verbose=0)


def test_reader_learns_the_generated_facts_beyond_the_overlap_baseline(run):
    val = run.metrics["best"]["validation"]
    print(f"\nvalidation after {run.metrics['epochs_completed']} epochs: {val}")
    # a random span of the ~60-token paragraph is right < 5% of the time; the sentence-overlap baseline
    # finds the subject's sentence (~0.3 EM here) but not which of its words answers
    assert val["exact_match"] >= 0.45, val
    assert val["exact_match"] >= val["baseline_exact_match"] + 0.15, val
    assert val["f1"] >= val["baseline_f1"] + 0.15, val
    test = run.metrics["test"]
    assert test["checkpoint"] == "best" and 0.0 <= test["f1"] <= 1.0 and "baseline_f1" in test


def test_predict_returns_the_contexts_own_substring_at_its_offsets(run, tmp_path):
    from training.inference import predict

    context = ("Zoë Pryce was born in Tolmar.  In 1843, Borin Kast was born.\n"
               "北京市 has 12,400 inhabitants. Mount Kell rises to 2100 metres.")
    path = tmp_path / "context.txt"
    path.write_text(context, encoding="utf-8")
    questions = ["Where was Zoë Pryce born?", "When was Borin Kast born?", "How high is Mount Kell?"]
    rows, _ = predict(get_task(TASK), run.run_dir, questions, out_dir=tmp_path / "out",
                      options={"context": str(path)})
    assert [r["question"] for r in rows] == questions
    for r in rows:
        assert r["answer"] == context[r["start"]:r["end"]] and r["answer"], r
        assert 0.0 < r["score"] <= 1.0
    # --input FILE: the CLI hands a JSONL file's lines over as inputs (and a .json file is read whole)
    lines = [json.dumps({"context": context, "question": q}) for q in questions]
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text("\n".join(lines))
    again, _ = predict(get_task(TASK), run.run_dir, lines, out_dir=tmp_path / "again", options={"input": str(jsonl)})
    assert [r["answer"] for r in again] == [r["answer"] for r in rows]


def test_predict_reads_a_whole_json_input_file(tmp_path):
    from tasks.question_answering import _pairs

    whole = tmp_path / "pairs.json"
    whole.write_text(json.dumps([{"context": "A b.", "question": "q1"}, {"context": "C d.", "question": "q2"}], indent=1))
    cli_lines = [line for line in whole.read_text().splitlines() if line.strip()]
    pairs = _pairs(cli_lines, {"input": str(whole)})
    assert [(c, q) for c, q, _ in pairs] == [("A b.", "q1"), ("C d.", "q2")]
    with pytest.raises(Exception, match="has no context"):
        _pairs(["where?"], {})


def test_null_threshold_is_tuned_to_the_best_f1_and_saved_with_the_weights(tmp_path):
    import keras

    from pipelines.qa import QAExample
    from tasks.question_answering import Answer, threshold_layer, tune_threshold

    def answer(gap, right, impossible):
        ex = QAExample("q", "q?", "Tolmar Lorn", () if impossible else (("Tolmar", 0),), impossible)
        return Answer(ex, score=-1.0, start=0, end=6 if right else 11, null=-1.0 + gap)

    # gaps (null - span): unanswerable questions have large gaps, answerable small ones
    answers = [answer(-2.0, True, False), answer(-1.0, True, False), answer(0.5, False, True),
               answer(1.5, False, True), answer(0.2, True, False)]
    t = tune_threshold(answers)
    assert 0.2 < t < 0.5  # answer below 0.2, abstain from 0.5 up: every question right
    from keras_models.qa import bidaf

    model = bidaf(20, 4, 8, embedding_dim=4, hidden=4)
    threshold_layer(model).assign(t)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert float(keras.ops.convert_to_numpy(threshold_layer(loaded))) == pytest.approx(t)


def test_unanswerable_generated_questions_get_v2_metrics(tmp_path):
    """v2.0 mode on the data side: HasAns/NoAns figures and the no-answer target at position 0."""
    from pipelines.qa import WINDOWS
    from tasks.question_answering import build_datasets

    cfg = resolve_config(get_task(TASK), preset="debug", sets=["unanswerable=0.3"])
    data = build_datasets(cfg)
    assert data.info.extra["version_2"]
    targets = np.stack([y for _, y in data.train.as_numpy_iterator()])
    examples = [WINDOWS[uid].example for uid in targets[:, 2]]
    impossible = np.array([ex.impossible for ex in examples])
    assert (targets[impossible, :2] == 0).all() and (targets[~impossible, 0] > 0).any()
    share = np.mean([ex.impossible for ex in {id(ex): ex for ex in examples}.values()])
    assert 0.15 < share < 0.45


def test_tfds_squad_under_mock_data():
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from tasks.question_answering import build_datasets

    context = "Alara Venn was born in Tolmar. Borin Kast was born in 1843."

    def as_dataset(self, split, **kwargs):
        n = 6 if split == "train" else 3
        rows = {"id": [f"{split}{i}" for i in range(n)], "title": ["t"] * n, "context": [context] * n,
                "question": ["Where was Alara Venn born?"] * n,
                "answers": {"text": [["Tolmar"]] * n, "answer_start": [[23]] * n}}
        return tf.data.Dataset.from_tensor_slices(rows)

    with tfds.testing.mock_data(num_examples=6, as_dataset_fn=as_dataset):
        cfg = resolve_config(get_task(TASK), preset="debug", sets=["data=tfds:squad"])
        data = build_datasets(cfg)
    assert data.info.extra["questions"]["train"] == 6 and data.info.extra["questions"]["validation"] == 3
    _, y = next(data.train.as_numpy_iterator())
    assert y[0] > 0  # the answer is inside the window


def test_policyqa_subset_reads_and_the_baseline_scores(tmp_path):
    """A small slice of the real SQuAD v1.1 file: read, windowed, test split kept apart, baseline > 0."""
    from pipelines import qa
    from tasks.question_answering import baseline_text, build_datasets
    from pipelines import qa_eval

    root = shared_data("policyqa")
    doc = json.loads((root / "dev.json").read_text())
    doc["data"] = doc["data"][:1]
    subset = tmp_path / "policy-dev.json"
    subset.write_text(json.dumps(doc))
    cfg = resolve_config(get_task(TASK), preset="policyqa",
                         sets=[f"data={subset}", f"test_data={root / 'test.json'}", "epochs=1"])
    data = build_datasets(cfg)
    info = data.info
    assert info.extra["questions"]["test"] == 4152 and info.splits["validation"].startswith("carved")
    examples = qa.read_file(subset)
    width = info.extra["baseline_width"]
    f1 = np.mean([qa_eval.best_over_golds(qa_eval.f1, baseline_text(ex, width), [t for t, _ in ex.answers])
                  for ex in examples[:200]])
    assert 0.05 < f1 < 0.9


def test_cli_errors_are_one_line(tmp_path, capsys):
    import cli

    bad = tmp_path / "train.json"
    bad.write_text(json.dumps({"data": [{"paragraphs": [{"context": "abc", "qas": [
        {"id": "z1", "question": "q", "answers": [{"text": "c", "answer_start": 0}]}]}]}]}))
    code = cli.main(["fit", "--task", TASK, "--data", str(bad), "--run-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "question 'z1'" in err[0] and "answer_start 0" in err[0], err
    code = cli.main(["fit", "--task", TASK, "--set", "doc_stride=80", "--run-dir", str(tmp_path / "r2")])
    assert code == 2 and "doc_stride" in capsys.readouterr().err


def test_transformer_reader_masks_padding_and_reloads(tmp_path):
    import keras

    from keras_models.qa import transformer

    model = transformer(30, 5, 9, embedding_dim=8, hidden=16, num_heads=2, num_layers=1)
    x = {"question": np.array([[5, 6, 0, 0, 0]], np.int32), "context": np.array([[2, 7, 5, 8, 0, 0, 0, 0, 0]], np.int32)}
    out = np.asarray(model.predict_on_batch(x))
    assert out.shape == (1, 9, 2) and (out[0, 4:] <= -1e8).all() and (out[0, :4] > -1e8).all()
    model.save(tmp_path / "t.keras")
    again = np.asarray(keras.saving.load_model(tmp_path / "t.keras").predict_on_batch(x))
    np.testing.assert_allclose(again, out, atol=1e-5)
