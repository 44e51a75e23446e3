"""Question answering without a model: official SQuAD EM/F1 on hand-computed cases, the tokenizer's
character offsets, windows, the readers and their one-line errors, the generator, the baseline."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from errors import DataError
from pipelines import qa, qa_eval

# --- official SQuAD rules -------------------------------------------------------------------------


def test_normalisation_follows_the_official_script():
    assert qa_eval.normalize_answer("The  Eiffel-Tower!") == "eiffeltower"  # punctuation removed, not spaced
    assert qa_eval.normalize_answer("an apple and a pear") == "apple and pear"
    assert qa_eval.normalize_answer("Theatre") == "theatre"  # 'the' only as a word
    assert qa_eval.normalize_answer("  A\tB \n") == "b"


@pytest.mark.parametrize("pred, gold, em, f1", [
    ("the Denver Broncos", "Denver Broncos", 1.0, 1.0),
    ("Denver", "Denver Broncos", 0.0, 2 * (1 * 0.5) / 1.5),  # p=1, r=1/2 -> 2/3
    ("Broncos of Denver", "Denver Broncos", 0.0, 2 * (2 / 3 * 1) / (2 / 3 + 1)),  # 'of' kept: p=2/3, r=1 -> 0.8
    ("1843.", "1843", 1.0, 1.0),
    ("Paris", "London", 0.0, 0.0),
    ("", "", 1.0, 1.0),  # v2.0: no answer predicted for an unanswerable question
    ("", "London", 0.0, 0.0),
    ("a b", "b b", 0.0, 2 * 0.5 / 1.5),  # article removed: 'b' vs 'b b' -> p=1, r=1/2
])
def test_exact_match_and_f1_hand_computed(pred, gold, em, f1):
    assert qa_eval.exact_match(pred, gold) == em
    assert qa_eval.f1(pred, gold) == pytest.approx(f1)


def test_scores_take_the_best_gold_and_average_questions():
    golds = {1: ["Denver Broncos", "Broncos"], 2: ["1843"], 3: [""]}
    preds = {1: "Broncos", 2: "in 1843", 3: ""}
    out = qa_eval.squad_scores(preds, golds, {1: False, 2: False, 3: True})
    assert out["exact_match"] == pytest.approx(2 / 3)
    assert out["f1"] == pytest.approx((1 + 2 / 3 + 1) / 3)  # 'in 1843' vs '1843': p=1/2, r=1
    assert out["HasAns_exact_match"] == 0.5 and out["NoAns_exact_match"] == 1.0


def test_best_span_respects_order_and_length():
    s = np.log(np.array([0.1, 0.05, 0.05, 0.7, 0.1]))
    e = np.log(np.array([0.05, 0.6, 0.1, 0.1, 0.15]))  # the best end (1) lies before the best start (3)
    span = qa_eval.best_span(s, e, 4, max_answer_length=2)
    assert span.start <= span.end and span.end - span.start < 2 and span.start >= 1
    assert (span.start, span.end) == (3, 4)


# --- tokenizer, windows ---------------------------------------------------------------------------


def test_tokens_keep_offsets_in_any_script():
    text = "Zoë lives in 北京市, near Café-Noir."
    tokens, offsets = qa.tokenize(text)
    assert [text[a:b].lower() for a, b in offsets] == tokens
    assert "北" in tokens and "京" in tokens and "zoë" in tokens and "café" in tokens


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(list("abcXYZ éüñ北京市你好。, .\n\t-") + ["Ωμέγα", "日本", "  "]), min_size=1,
                max_size=40).map("".join), st.data())
def test_a_decoded_span_is_always_the_contexts_own_substring(context, data):
    """Whatever tokens a window decodes to, the answer is context[start:end], the text itself."""
    tokens, offsets = qa.tokenize(context)
    if not tokens:
        return
    i = data.draw(st.integers(0, len(tokens) - 1))
    j = data.draw(st.integers(i, len(tokens) - 1))
    start, end = int(offsets[i, 0]), int(offsets[j, 1])
    piece = context[start:end]
    assert piece == context[start:end] and piece.strip() == piece and piece
    assert qa.answer_tokens(offsets, start, end) == (i, j)  # and the span maps back to the same tokens


def _example(context, answer, qid="q1", question="where?"):
    return qa.QAExample(qid, question, context, ((answer, context.index(answer)),))


def test_windows_overlap_and_only_a_window_holding_the_answer_points_at_it():
    context = " ".join(f"w{i}" for i in range(20)) + " answer here " + " ".join(f"v{i}" for i in range(10))
    ex = _example(context, "answer here")
    vocab = qa.learn_vocabulary([ex], 100)
    w = qa.make_windows([ex], vocab, qa.WindowShape(max_length=11, doc_stride=6, max_question_length=4), "train")
    assert len(w) == 5  # 32 tokens, windows of 10 starting at 0, 6, 12, 18, 24
    assert (w.context[:, 0] == qa.NULL).all()
    hits = [t for t in w.target if t[0] > 0]
    assert all(t[0] == 0 and t[1] == 0 for t in w.target if t[0] == 0)
    assert len(hits) == 2  # the answer is tokens 20-21: the windows starting at 12 and 18 hold it
    for start, end, uid in hits:
        win = qa.WINDOWS[uid]
        assert context[win.offsets[start - 1, 0]:win.offsets[end - 1, 1]] == "answer here"


# --- readers --------------------------------------------------------------------------------------


def _squad(tmp_path, qas, context="Alara Venn was born in Tolmar.", name="train.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"version": "1.1", "data": [{"title": "t", "paragraphs": [
        {"context": context, "qas": qas}]}]}))
    return path


def test_squad_json_and_jsonl_read_the_same_question(tmp_path):
    path = _squad(tmp_path, [{"id": "a1", "question": "Where was Alara Venn born?",
                              "answers": [{"text": "Tolmar", "answer_start": 23}]}])
    lines = tmp_path / "train.jsonl"
    lines.write_text(json.dumps({"id": "a1", "context": "Alara Venn was born in Tolmar.", "question": "Where?",
                                 "answers": {"text": ["Tolmar"], "answer_start": [23]}}) + "\n")
    assert qa.read_file(path)[0].answers == qa.read_file(lines)[0].answers == (("Tolmar", 23),)


@pytest.mark.parametrize("qas, expected", [
    ([{"id": "x7", "question": "q", "answers": [{"text": "Tolmar", "answer_start": 3}]}],
     r"question 'x7' answer 0: answer_start 3 does not point at 'Tolmar'"),
    ([{"id": "x8", "answers": [{"text": "Tolmar", "answer_start": 23}]}], r"question 'x8': missing field 'question'"),
    ([{"id": "x9", "question": "q", "answers": [{"answer_start": 23}]}], r"question 'x9' answer 0: expected"),
    ([{"id": "x10", "question": "q", "answers": []}], r"question 'x10': no answers"),
])
def test_bad_squad_files_name_the_file_and_question(tmp_path, qas, expected):
    path = _squad(tmp_path, qas)
    with pytest.raises(DataError, match=expected) as err:
        qa.read_file(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_invalid_json_names_line_and_column(tmp_path):
    bad = tmp_path / "train.json"
    bad.write_text('{"data": [\n  {"paragraphs": [}\n]}')
    with pytest.raises(DataError, match=r"train.json line 2 column \d+: invalid JSON"):
        qa.read_file(bad)
    lines = tmp_path / "dev.jsonl"
    lines.write_text('{"context": "abc", "question": "q", "answers": {"text": ["b"], "answer_start": [1]}}\n{oops\n')
    with pytest.raises(DataError, match=r"dev.jsonl line 2 column 2: invalid JSON"):
        qa.read_file(lines)


# --- generated facts and the baseline --------------------------------------------------------------


def test_generated_facts_are_deterministic_with_distractors():
    a, b = qa.generated_facts(40, 0, "train"), qa.generated_facts(40, 0, "train")
    assert a == b and a != qa.generated_facts(40, 1, "train")
    assert qa.generated_facts(10, 0, "validation")[0].context != a[0].context
    for ex in a:
        text, start = ex.answers[0]
        assert ex.context[start:start + len(text)] == text
    # the same kind of answer appears for another subject in most paragraphs: position alone won't do
    years = sum(1 for ex in a if len([t for t in qa.tokenize(ex.context)[0] if t.isdigit() and len(t) == 4]) > 1)
    assert years > len(a) // 4
    assert len({ex.question.split()[0] for ex in a}) >= 4  # several phrasings
    unanswerable = qa.generated_facts(200, 0, "train", unanswerable=0.3)
    assert 30 < sum(ex.impossible for ex in unanswerable) < 90


def test_overlap_baseline_picks_a_span_whose_sentence_shares_most_question_words():
    tokens = "the cat sat on a mat . alara venn was born in tolmar . the dog ran".split()
    first, last = qa_eval.overlap_baseline(tokens, "where was alara venn born ?".split(), 1)
    assert tokens[first:last + 1] == ["tolmar"]  # question words, stop words and other sentences never win


class _RandomReader:
    """Stands in for a model: random start/end logits, padding at -1e9 as the real heads do."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)

    def predict_on_batch(self, x):
        ids = x["context"]
        logits = self.rng.normal(size=(*ids.shape, 2)) * 3
        return np.where((ids != 0)[..., None], logits, -1e9)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["Zoë", "café", "北京市", "你好。", "Ωμέγα", " ", "  ", "\n", ",", "12,400", "a.b",
                                 "日本語", "x"]), min_size=1, max_size=60).map("".join),
       st.integers(0, 2**31 - 1))
def test_decoded_answers_are_the_contexts_substring_at_the_reported_offsets(context, seed):
    """Through the real decoding path (windows, best span across windows) with any scores."""
    from tasks.question_answering import collect_answers

    ex = qa.QAExample("q", "北京 where?", context)
    vocab = qa.learn_vocabulary([ex], 50)
    w = qa.make_windows([ex], vocab, qa.WindowShape(max_length=6, doc_stride=3, max_question_length=4), "predict")
    answers = collect_answers(_RandomReader(seed), [({"question": w.question, "context": w.context}, w.target[:, 2])],
                              max_answer_length=4)
    if not qa.tokenize(context)[0]:
        assert answers[id(ex)].score == -np.inf  # nothing to point at
        return
    a = answers[id(ex)]
    assert a.text == context[a.start:a.end] and a.text and a.text == a.text.strip()
    assert len(qa.tokenize(a.text)[0]) <= 4
