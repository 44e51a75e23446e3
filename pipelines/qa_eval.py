"""SQuAD evaluation and span decoding, NumPy only (no keras, no TensorFlow).

`exact_match` / `f1` follow the official evaluation scripts (v1.1; v2.0's rule for empty answers):
answers are lower-cased, punctuation and the articles a/an/the removed, whitespace collapsed; a
prediction scores the maximum over the gold answers. Figures are fractions (0..1), not percent.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass

import numpy as np

_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """The official script's order: lower, remove punctuation, remove articles, fix whitespace."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:  # v2.0: an empty answer scores 1 only against an empty answer
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def best_over_golds(metric, prediction: str, golds: list[str]) -> float:
    """Max over the gold answers; an unanswerable question's only gold answer is ''."""
    return max(metric(prediction, g) for g in (golds or [""]))


def squad_scores(predictions: dict, golds: dict, impossible: dict | None = None) -> dict:
    """{exact_match, f1} averaged over the questions in `predictions` ({qid: text}); with
    unanswerable questions present also HasAns_/NoAns_ figures."""
    em = {q: best_over_golds(exact_match, p, golds[q]) for q, p in predictions.items()}
    fs = {q: best_over_golds(f1, p, golds[q]) for q, p in predictions.items()}
    out = {"exact_match": _mean(em.values()), "f1": _mean(fs.values())}
    impossible = impossible or {}
    if any(impossible.get(q) for q in predictions):
        for name, keep in (("HasAns", False), ("NoAns", True)):
            qs = [q for q in predictions if bool(impossible.get(q)) == keep]
            out[f"{name}_exact_match"] = _mean(em[q] for q in qs)
            out[f"{name}_f1"] = _mean(fs[q] for q in qs)
    return out


def _mean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else 0.0


# --- decoding -----------------------------------------------------------------------------------


@dataclass
class Span:
    score: float  # log p(start) + log p(end)
    start: int  # token positions in the window (>= 1)
    end: int


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


def best_span(start_logp: np.ndarray, end_logp: np.ndarray, length: int, max_answer_length: int) -> Span | None:
    """The best `start <= end < start + max_answer_length` span among positions 1..length."""
    if length < 1:
        return None
    s, e = start_logp[1:length + 1], end_logp[1:length + 1]
    scores = s[:, None] + e[None, :]
    i, j = np.indices(scores.shape)
    scores = np.where((j >= i) & (j - i < max_answer_length), scores, -np.inf)
    k = int(np.argmax(scores))
    a, b = divmod(k, scores.shape[1])
    return Span(float(scores[a, b]), a + 1, b + 1)


# --- the sliding-window baseline (Rajpurkar et al. 2016, simplified) -----------------------------

STOPWORDS = frozenset("a an the of to in on at for by with and or is are was were be been does do did what which "
                      "who whom whose when where why how this that these those it its as from".split())


SENTENCE_END = frozenset(".!?。！？;")


def overlap_baseline(tokens: list[str], question_tokens: list[str], width: int, around: int = 10) -> tuple[int, int]:
    """(first, last) token of the best `width`-token candidate answer: it starts with a word that is
    neither a stop word nor a question word, and the tokens of its sentence within `around` of it
    (itself excluded) share the most distinct question words (stop words and punctuation aside);
    ties go to the earliest candidate."""
    if not tokens:
        return (0, -1)
    wanted = {t for t in question_tokens if t not in STOPWORDS and t[:1].isalnum()}
    sentence = np.cumsum([0] + [t in SENTENCE_END for t in tokens[:-1]])
    width = max(1, min(width, len(tokens)))
    best, best_first = -1, 0
    for first in range(len(tokens) - width + 1):
        span = tokens[first:first + width]
        if wanted.intersection(span) or not span[0][:1].isalnum() or span[0] in STOPWORDS:
            continue
        lo, hi = max(0, first - around), min(len(tokens), first + width + around)
        near = [tokens[i] for i in range(lo, hi)
                if not first <= i < first + width and sentence[i] == sentence[first]]
        hits = len(wanted.intersection(near))
        if hits > best:
            best, best_first = hits, first
    return best_first, best_first + width - 1
