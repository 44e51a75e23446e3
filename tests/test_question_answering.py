"""Question answering end to end: a tiny reader learns the generated facts (beating the word-overlap
baseline), predict answers with the context's own substring, the v2.0 threshold travels with the
weights, TFDS squad under mock_data, a PolicyQA subset, and one-line CLI errors."""

import json

import numpy as np
import pytest

from conftest import BACKEND, FAST_JIT, shared_data
from tasks.base import get_task, resolve_config

TASK = "question-answering"
TINY = [FAST_JIT, "num_train=1200", "num_val=100", "num_test=60", "epochs=3", "batch_size=32", "max_length=48",
        "doc_stride=24", "embedding_dim=32", "hidden=32", "vocab_size=400", "learning_rate=5e-3",
        "warmup_steps=0", "log_every_steps=50", "dropout=0.1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny fit on the generated facts, shared by the tests below."""
    from training.loop import fit

    task = get_task(TASK)
    cfg = resolve_config(task, sets=TINY)
    return fit(task, cfg, tmp_path_factory.mktemp("qa") / "run", verbose=0)


def test_reader_learns_the_generated_facts_beyond_the_overlap_baseline(run):
    val = run.metrics["best"]["validation"]
    # chance of naming the right one of ~15 candidate spans is < 0.1; the overlap baseline points near
    # the question's words, not at the answer
    assert val["exact_match"] >= 0.5, val
    assert val["exact_match"] >= val["baseline_exact_match"] + 0.3, val
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
    # --input FILE: the CLI hands a JSONL file's lines over as inputs; a .json file is read whole
    lines = [json.dumps({"context": context, "question": q}) for q in questions]
    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text("\n".join(lines))
    whole = tmp_path / "pairs.json"
    whole.write_text(json.dumps([json.loads(line) for line in lines], indent=1))
    for path in (jsonl, whole):
        inputs = [line for line in path.read_text().splitlines() if line.strip()]
        again, _ = predict(get_task(TASK), run.run_dir, inputs, out_dir=tmp_path / path.suffix[1:],
                           options={"input": str(path)})
        assert [r["answer"] for r in again] == [r["answer"] for r in rows], path


def test_null_threshold_is_tuned_to_the_best_f1_and_saved_with_the_weights(run, tmp_path):
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
    model = run.model
    old = float(keras.ops.convert_to_numpy(threshold_layer(model)))
    threshold_layer(model).assign(t)
    try:
        model.save(tmp_path / "m.keras")
        loaded = keras.saving.load_model(tmp_path / "m.keras")
        assert float(keras.ops.convert_to_numpy(threshold_layer(loaded))) == pytest.approx(t)
    finally:
        threshold_layer(model).assign(old)


def test_unanswerable_generated_questions_get_v2_metrics(tmp_path):
    """v2.0 mode on the data side: HasAns/NoAns figures and the no-answer target at position 0."""
    from tasks.question_answering import build_datasets

    cfg = resolve_config(get_task(TASK), preset="debug", sets=["unanswerable=0.3"])
    data = build_datasets(cfg)
    assert data.info.extra["version_2"]
    targets = np.stack([y for _, y in data.train.as_numpy_iterator()])
    assert (targets[:, 0] == 0).mean() > 0.2 and (targets[:, 0] > 0).mean() > 0.4


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
