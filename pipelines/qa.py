"""Extractive question answering data: readers (SQuAD JSON, JSON Lines), generated facts, a tokenizer
that keeps character offsets, and overlapping windows over long contexts.

Every answer is a character span of its context. Tokens keep their `(start, end)` offsets into the
original text, so a predicted token span maps back to `context[start:end]`: the original substring
(spaces, punctuation, accents, scripts without spaces), never re-joined tokens.

Each window is one training example: question ids, `[NULL] + context ids` and a target
`(start, end, window uid)`. Position 0 is the no-answer slot (an answer outside the window, or an
unanswerable question); the uid indexes `WINDOWS`, where decoding finds the window's offsets and
its question again (numbers travel through tf.data; texts stay here).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from errors import DataError
from pipelines.files import read_jsonl as read_jsonl_rows
from pipelines.files import read_text

PAD, UNK, NULL, SEP = 0, 1, 2, 3
SPECIALS = ("", "[UNK]", "[NULL]", "[SEP]")


@dataclass(frozen=True)
class QAExample:
    """One question about one context; `answers` are (text, character start) pairs (gold for EM/F1)."""

    qid: str
    question: str
    context: str
    answers: tuple = ()
    impossible: bool = False
    where: str = ""  # "FILE question ID" for error messages


# --- tokenization with character offsets --------------------------------------------------------

# A CJK / kana / hangul character is a token of its own (those scripts have no spaces); a run of
# other letters and digits is a word; any other visible character is a token.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
TOKEN_RE = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+|\S")


def tokenize(text: str) -> tuple[list[str], np.ndarray]:
    """(lower-cased tokens, int32 (n, 2) character offsets [start, end) into `text`)."""
    matches = list(TOKEN_RE.finditer(text))
    offsets = np.array([m.span() for m in matches], np.int32).reshape(-1, 2)
    return [m.group().lower() for m in matches], offsets


def learn_vocabulary(examples: list[QAExample], size: int) -> list[str]:
    """Specials, then the most frequent tokens of the training questions and (distinct) contexts."""
    counts: Counter = Counter()
    for text in {ex.context for ex in examples} | {ex.question for ex in examples}:
        counts.update(tokenize(text)[0])
    keep = max(0, size - len(SPECIALS))
    return list(SPECIALS) + [t for t, _ in counts.most_common() if t not in SPECIALS][:keep]


def token_ids(tokens: list[str], index: dict) -> np.ndarray:
    return np.array([index.get(t, UNK) for t in tokens], np.int32)


# --- windows ------------------------------------------------------------------------------------


@dataclass
class Window:
    """What decoding needs about one window: its question and the offsets of its context tokens."""

    example: QAExample
    offsets: np.ndarray  # (tokens in this window, 2): position p >= 1 is offsets[p - 1]
    split: str


WINDOWS: list[Window] = []  # uid -> Window, for every window built in this process


def window_starts(n_tokens: int, width: int, stride: int) -> list[int]:
    """First token of each window: every `stride` tokens until one reaches the end."""
    starts = [0]
    while starts[-1] + width < n_tokens:
        starts.append(starts[-1] + stride)
    return starts


def answer_tokens(offsets: np.ndarray, start: int, end: int) -> tuple[int, int] | None:
    """First and last token overlapping characters [start, end), or None."""
    hit = np.flatnonzero((offsets[:, 1] > start) & (offsets[:, 0] < end))
    return (int(hit[0]), int(hit[-1])) if len(hit) else None


@dataclass
class Windows:
    question: np.ndarray  # (N, max_question_length) int32
    context: np.ndarray  # (N, max_length) int32, position 0 = [NULL]
    target: np.ndarray  # (N, 3) int32: start, end, uid
    questions: int = 0
    answer_lost: int = 0  # answers that no window holds whole (cut by max_length with no overlap)

    def __len__(self) -> int:
        return len(self.target)


@dataclass
class WindowShape:
    max_length: int
    doc_stride: int
    max_question_length: int


def make_windows(examples: list[QAExample], vocabulary: list[str], shape: WindowShape, split: str) -> Windows:
    """Every example as one or more windows of `max_length - 1` context tokens (plus [NULL] first),
    `doc_stride` tokens apart; the first gold answer is the target where a window holds it whole."""
    index = {t: i for i, t in enumerate(vocabulary)}
    width = shape.max_length - 1
    cache: dict = {}
    qs, cs, ts, lost = [], [], [], 0
    for ex in examples:
        if ex.context not in cache:
            tokens, offsets = tokenize(ex.context)
            cache[ex.context] = (token_ids(tokens, index), offsets)
        ids, offsets = cache[ex.context]
        q_ids = token_ids(tokenize(ex.question)[0], index)[: shape.max_question_length]
        span = None
        if ex.answers and not ex.impossible:
            text, start = ex.answers[0]
            span = answer_tokens(offsets, start, start + len(text))
        found = False
        for first in window_starts(len(ids), width, shape.doc_stride):
            last = min(first + width, len(ids))
            target = (0, 0)
            if span is not None and first <= span[0] and span[1] < last:
                target, found = (span[0] - first + 1, span[1] - first + 1), True
            uid = len(WINDOWS)
            WINDOWS.append(Window(ex, offsets[first:last], split))
            qs.append(_pad(q_ids, shape.max_question_length))
            cs.append(_pad(np.concatenate([[NULL], ids[first:last]]), shape.max_length))
            ts.append((*target, uid))
        lost += int(span is not None and not found)
    return Windows(np.stack(qs).astype(np.int32) if qs else np.zeros((0, shape.max_question_length), np.int32),
                   np.stack(cs).astype(np.int32) if cs else np.zeros((0, shape.max_length), np.int32),
                   np.asarray(ts, np.int32).reshape(-1, 3), len(examples), lost)


def _pad(ids: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros(length, np.int32)
    out[: min(length, len(ids))] = ids[:length]
    return out


def to_dataset(windows: Windows):
    """(inputs {question, context}, target (3,)) per window, as tf.data."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices(
        ({"question": windows.question, "context": windows.context}, windows.target))


# --- readers ------------------------------------------------------------------------------------


def checked_answers(path, qid, context: str, answers: list, impossible: bool) -> tuple:
    """(text, start) pairs, each verified to point at its text in the context."""
    out = []
    for k, ans in enumerate(answers):
        where = f"{path} question {qid!r} answer {k}"
        if not isinstance(ans, dict) or "text" not in ans or "answer_start" not in ans:
            raise DataError(f"{where}: expected {{'text': ..., 'answer_start': ...}}, got {str(ans)[:80]}")
        text, start = ans["text"], ans["answer_start"]
        if not isinstance(text, str) or not text.strip() or isinstance(start, bool) or not isinstance(start, int):
            raise DataError(f"{where}: expected a non-empty 'text' string and an int 'answer_start'")
        if context[start:start + len(text)] != text:
            raise DataError(f"{where}: answer_start {start} does not point at {text[:40]!r} in the context "
                            f"(found {context[start:start + len(text)][:40]!r})")
        out.append((text, start))
    if not out and not impossible:
        raise DataError(f"{path} question {qid!r}: no answers (and not marked is_impossible)")
    return tuple(out)


def field_of(obj, key: str, kind, where: str):
    if not isinstance(obj, dict) or key not in obj:
        raise DataError(f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind):
        raise DataError(f"{where}: field {key!r} should be a {kind.__name__}, got {type(value).__name__}")
    return value


def load_json(path: Path, text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} line {exc.lineno} column {exc.colno}: invalid JSON ({exc.msg})") from None


def read_squad_json(path: Path) -> list[QAExample]:
    """SQuAD v1.1 / v2.0 JSON: data > paragraphs > (context, qas > (id, question, answers, is_impossible))."""
    doc = load_json(path, read_text(path))
    articles = field_of(doc, "data", list, str(path))
    out = []
    for a, article in enumerate(articles):
        for p, para in enumerate(field_of(article, "paragraphs", list, f"{path} data[{a}]")):
            where = f"{path} data[{a}].paragraphs[{p}]"
            context = field_of(para, "context", str, where)
            for q, qa in enumerate(field_of(para, "qas", list, where)):
                qid = str(qa.get("id", f"{a}.{p}.{q}")) if isinstance(qa, dict) else f"{a}.{p}.{q}"
                here = f"{path} question {qid!r}"
                question = field_of(qa, "question", str, here)
                impossible = bool(qa.get("is_impossible", False))
                answers = field_of(qa, "answers", list, here) if not impossible else qa.get("answers") or []
                out.append(QAExample(qid, question, context, checked_answers(path, qid, context, answers, impossible),
                                     impossible, here))
    if not out:
        raise DataError(f"{path}: no questions (expected SQuAD JSON: data > paragraphs > qas)")
    return out


def read_jsonl(path: Path) -> list[QAExample]:
    """One `{"context", "question", "answers": {"text": [...], "answer_start": [...]}}` a line
    (`id` and `is_impossible` optional)."""
    out = []
    for n, row in read_jsonl_rows(path):
        qid = str(row.get("id", f"line {n}"))
        here = f"{path} line {n} question {qid!r}"
        context = field_of(row, "context", str, here)
        question = field_of(row, "question", str, here)
        impossible = bool(row.get("is_impossible", False))
        answers = row.get("answers") or {}
        texts, starts = answers.get("text", []), answers.get("answer_start", [])
        if not isinstance(answers, dict) or not isinstance(texts, list) or not isinstance(starts, list) \
                or len(texts) != len(starts):
            raise DataError(f"{here}: 'answers' should be {{'text': [...], 'answer_start': [...]}} of equal length")
        pairs = [{"text": t, "answer_start": s} for t, s in zip(texts, starts)]
        out.append(QAExample(qid, question, context, checked_answers(f"{path} line {n}", qid, context, pairs, impossible),
                             impossible, here))
    if not out:
        raise DataError(f"{path}: no questions (expected one JSON object a line)")
    return out


def read_file(path: Path) -> list[QAExample]:
    """SQuAD JSON (.json) or JSON Lines (.jsonl)."""
    if path.suffix.lower() == ".jsonl":
        return read_jsonl(path)
    if path.suffix.lower() == ".json":
        return read_squad_json(path)
    raise DataError(f"{path}: expected a SQuAD .json file or a .jsonl file")


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """(context, question) pairs to predict on: SQuAD JSON, a JSON list, or JSON Lines of
    {"context", "question"} (answers not needed)."""
    text = read_text(path)
    if path.suffix.lower() == ".jsonl":
        rows = [load_json(f"{path} line {n}", line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    else:
        doc = load_json(path, text)
        if isinstance(doc, dict) and "data" in doc:
            return [(p["context"], q["question"]) for a in doc["data"] for p in a["paragraphs"] for q in p["qas"]]
        rows = doc if isinstance(doc, list) else [doc]
    return [(field_of(r, "context", str, f"{path} item {k}"), field_of(r, "question", str, f"{path} item {k}"))
            for k, r in enumerate(rows)]


# --- generated facts: invented people, towns and mountains, with distractors ---------------------

_FIRST = ("Alara", "Borin", "Cedra", "Dovan", "Elsin", "Farel", "Gavra", "Hollis", "Ismer", "Jorna", "Kestel",
          "Lumen", "Maris", "Norrin", "Orla", "Pell", "Quenna", "Rovan", "Sella", "Tarek", "Ulma", "Varis",
          "Wenna", "Yorric", "Zalia", "Brisa", "Corvin", "Dessa", "Emric", "Fiora")
_LAST = ("Venn", "Kast", "Morrow", "Teller", "Quill", "Ashby", "Dunmore", "Farrow", "Greaves", "Holt",
         "Ibbot", "Jarrow", "Kettle", "Lark", "Marsh", "Nettle", "Orme", "Pryce", "Rook", "Sallow", "Thorne",
         "Underhay", "Voss", "Wicket", "Yarrow", "Brand", "Cobb", "Drake", "Ember", "Fenn")
_TOWNS = ("Tolmar", "Quessa", "Brindle", "Carrow", "Dunhollow", "Eskar", "Fenwick", "Galdor", "Harrowgate",
          "Ilsby", "Jasker", "Kelloway", "Lorn", "Mirefield", "Norwick", "Oskel", "Pellmoor", "Ravensby",
          "Saltmere", "Thistlebrook", "Umber", "Valewood", "Westerly", "Yelm", "Zennor", "Ashgrove",
          "Bramwell", "Coldharbour", "Deepdale", "Elmstead")
_RIVERS = ("Mela", "Tarn", "Isk", "Wendle", "Corra", "Lune", "Saber", "Ordo", "Frith", "Aven", "Brue", "Doran")
_MOUNTAINS = ("Kell", "Dorr", "Astra", "Belloc", "Crane", "Halder", "Ivor", "Morwen", "Sorrel", "Tiber")
_JOBS = ("baker", "sailor", "painter", "weaver", "blacksmith", "teacher", "miller", "carpenter", "doctor",
         "gardener", "potter", "glassmaker", "printer", "clockmaker", "merchant", "shepherd")

# relation: (subject kind, answer kind, sentence phrasings, question phrasings)
_RELATIONS = {
    "birthplace": ("person", "town", ("{S} was born in {A}.", "{S} came from {A}.", "The home town of {S} was {A}."),
                   ("Where was {S} born?", "Which town did {S} come from?", "What was the home town of {S}?")),
    "birth_year": ("person", "year", ("{S} was born in {A}.", "In {A}, {S} was born.", "{S} was born in the year {A}."),
                   ("When was {S} born?", "In which year was {S} born?", "What year was {S} born in?")),
    "job": ("person", "job", ("{S} worked as a {A}.", "{S} earned a living as a {A}.", "By trade, {S} was a {A}."),
            ("What did {S} work as?", "What was the trade of {S}?", "How did {S} earn a living?")),
    "population": ("town", "count", ("{S} has {A} inhabitants.", "About {A} people live in {S}.",
                                     "The population of {S} is {A}."),
                   ("How many people live in {S}?", "What is the population of {S}?",
                    "How many inhabitants does {S} have?")),
    "founded": ("town", "year", ("{S} was founded in {A}.", "In {A}, {S} was founded.",
                                 "The founding of {S} dates to {A}."),
                ("When was {S} founded?", "In which year was {S} founded?", "What year was {S} founded in?")),
    "river": ("town", "river", ("{S} lies on the river {A}.", "The river {A} flows through {S}."),
              ("Which river flows through {S}?", "On which river does {S} lie?", "What river runs through {S}?")),
    "height": ("mountain", "height", ("Mount {S} is {A} high.", "Mount {S} rises to {A}.",
                                      "The height of Mount {S} is {A}."),
               ("How high is Mount {S}?", "What is the height of Mount {S}?", "How tall is Mount {S}?")),
}
_BY_KIND = {kind: [r for r, spec in _RELATIONS.items() if spec[0] == kind] for kind in ("person", "town", "mountain")}


def _answer(rng, kind: str) -> str:
    if kind == "town":
        return _TOWNS[rng.integers(len(_TOWNS))]
    if kind == "year":
        return str(int(rng.integers(1500, 2000)))
    if kind == "job":
        return _JOBS[rng.integers(len(_JOBS))]
    if kind == "count":
        return f"{int(rng.integers(1000, 90000)):,}"
    if kind == "river":
        return _RIVERS[rng.integers(len(_RIVERS))]
    return f"{int(rng.integers(800, 4800))} metres"


def _subjects(rng) -> list[tuple[str, str]]:
    """Two or three people, a town and sometimes a mountain: (kind, name), names distinct."""
    people = {f"{_FIRST[rng.integers(len(_FIRST))]} {_LAST[rng.integers(len(_LAST))]}" for _ in range(rng.integers(2, 4))}
    out = [("person", p) for p in sorted(people)]
    out += [("town", t) for t in rng.choice(_TOWNS, size=int(rng.integers(1, 3)), replace=False)]
    if rng.random() < 0.5:
        out.append(("mountain", str(rng.choice(_MOUNTAINS))))
    return out


def _paragraph(rng) -> tuple[str, list[tuple[str, str, str, int]]]:
    """A paragraph of facts and, per fact, (relation, subject, answer, character start)."""
    facts = []
    for kind, name in _subjects(rng):
        pool = _BY_KIND[kind]
        for rel in rng.choice(pool, size=int(rng.integers(1, min(3, len(pool)) + 1)), replace=False):
            facts.append((str(rel), name, _answer(rng, _RELATIONS[rel][1])))
    rng.shuffle(facts)
    text, out = "", []
    for rel, subject, answer in facts:
        phrasing = _RELATIONS[rel][2][rng.integers(len(_RELATIONS[rel][2]))]
        sentence = phrasing.replace("{S}", subject)
        sentence = sentence[:1].upper() + sentence[1:]
        start = len(text) + (1 if text else 0) + sentence.index("{A}")
        text += (" " if text else "") + sentence.replace("{A}", answer)
        out.append((rel, subject, answer, start))
    return text, out


def _missing_fact_question(rng, facts) -> str:
    """A question about a fact the paragraph does not state (SQuAD v2.0 style unanswerable)."""
    stated = {(rel, subj) for rel, subj, _, _ in facts}
    subjects = {subj: _RELATIONS[rel][0] for rel, subj, _, _ in facts}
    options = [(rel, s) for s, kind in subjects.items() for rel in _BY_KIND[kind] if (rel, s) not in stated]
    if not options:  # every fact of every subject is stated: ask about someone absent
        options = [("birthplace", f"{_FIRST[0]} Nobody")]
    rel, subject = options[rng.integers(len(options))]
    qs = _RELATIONS[rel][3]
    return qs[rng.integers(len(qs))].replace("{S}", subject)


def generated_facts(n: int, seed: int, split: str, unanswerable: float = 0.0) -> list[QAExample]:
    """n questions over generated paragraphs (two per paragraph), deterministic by seed and split.

    Each paragraph states facts about two or three people, towns and a mountain, so the same kind
    of answer (a year, a town) appears several times: the question's subject and relation decide.
    With `unanswerable` > 0 that share of questions asks for a fact the paragraph does not state.
    """
    rng = np.random.default_rng([seed, {"train": 0, "validation": 1, "test": 2}[split], 4242])
    out: list[QAExample] = []
    while len(out) < n:
        context, facts = _paragraph(rng)
        for _ in range(min(2, n - len(out))):
            qid = f"{split}-{len(out)}"
            if rng.random() < unanswerable:
                out.append(QAExample(qid, _missing_fact_question(rng, facts), context, (), True, qid))
                continue
            rel, subject, answer, start = facts[rng.integers(len(facts))]
            qs = _RELATIONS[rel][3]
            out.append(QAExample(qid, qs[rng.integers(len(qs))].replace("{S}", subject), context,
                                 ((answer, start),), False, qid))
    return out
