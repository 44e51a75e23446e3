"""Text data: readers for the files people have, the generated default, and tokenization in tf.data.

Readers return plain Python lists `(texts, labels, line_numbers)` so that every bad line is
reported as `FILE line N: what is wrong`; tokenization is a `keras.layers.TextVectorization`
adapted on the training texts and applied with `Dataset.map`, so models only ever see int
token ids (the JAX backend cannot run string ops inside a model).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from errors import DataError

AUTOTUNE = tf.data.AUTOTUNE
TEXT_SUFFIXES = (".txt",)
DELIMITED = {".csv": ",", ".tsv": "\t"}


@dataclass
class Examples:
    """Texts with their (string) labels and where each came from (file, line) for error messages."""

    texts: list
    labels: list
    where: list  # "FILE line N" or "FILE" per example

    def __len__(self) -> int:
        return len(self.texts)


# --- readers ----------------------------------------------------------------------------------


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    return text.rstrip("\n\r").splitlines()


def read_label_sentence(path: Path) -> Examples:
    """One example a line, `label sentence` (the SST-2 `stsa.binary.*` format)."""
    texts, labels, where = [], [], []
    for n, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            raise DataError(f"{path} line {n}: empty line (expected 'label sentence')")
        parts = line.strip().split(None, 1)
        if len(parts) < 2:
            raise DataError(f"{path} line {n}: expected 'label sentence', got only {parts[0][:40]!r}")
        labels.append(parts[0])
        texts.append(parts[1])
        where.append(f"{path} line {n}")
    if not texts:
        raise DataError(f"{path}: no examples (expected one 'label sentence' a line)")
    return Examples(texts, labels, where)


def read_delimited(path: Path, text_column: str, label_column: str) -> Examples:
    """A CSV (.csv) or TSV (.tsv) file with a header row naming the text and label columns."""
    delimiter = DELIMITED.get(path.suffix.lower(), ",")
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter=delimiter))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed {delimiter!r}-delimited file ({exc})") from None
    if not rows:
        raise DataError(f"{path}: empty file (expected a header row with '{text_column}' and '{label_column}')")
    header = [h.strip() for h in rows[0]]
    for column, key in ((text_column, "text_column"), (label_column, "label_column")):
        if column not in header:
            raise DataError(f"{path} line 1: no column {column!r} in the header ({', '.join(header)}); "
                            f"choose one with --set {key}=NAME")
    ti, li = header.index(text_column), header.index(label_column)
    texts, labels, where = [], [], []
    for n, row in enumerate(rows[1:], start=2):
        if not row or not any(cell.strip() for cell in row):
            raise DataError(f"{path} line {n}: empty line (expected {len(header)} fields)")
        if len(row) <= max(ti, li):
            raise DataError(f"{path} line {n}: expected {len(header)} fields, got {len(row)}")
        text, label = row[ti].strip(), row[li].strip()
        if not text:
            raise DataError(f"{path} line {n}: empty text in column {text_column!r}")
        if not label:
            raise DataError(f"{path} line {n}: empty label in column {label_column!r}")
        texts.append(text)
        labels.append(label)
        where.append(f"{path} line {n}")
    if not texts:
        raise DataError(f"{path}: header only, no examples")
    return Examples(texts, labels, where)


def read_file(path: Path, text_column: str, label_column: str) -> Examples:
    if path.suffix.lower() in DELIMITED:
        return read_delimited(path, text_column, label_column)
    return read_label_sentence(path)


def read_class_folders(root: Path) -> Examples:
    """One sub-folder of .txt files per class; each file is one example, the folder name its label."""
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if len(class_dirs) < 2:
        raise DataError(f"{root}: expected one sub-folder of .txt files per class (at least 2), found {len(class_dirs)}")
    texts, labels, where = [], [], []
    for d in class_dirs:
        files = sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
        if not files:
            raise DataError(f"{d}: class folder holds no .txt files")
        for p in files:
            text = " ".join(_read_lines(p)).strip()
            if not text:
                raise DataError(f"{p}: empty text file")
            texts.append(text)
            labels.append(d.name)
            where.append(str(p))
    return Examples(texts, labels, where)


def find_split_files(root: Path, heldout: str) -> tuple[Path, Path] | None:
    """In a folder of plain files, the training file (name holds 'train') and the held-out one.

    `heldout` is 'test' or 'dev': the file whose name holds it (dev also matches 'valid').
    """
    files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")
                   and not p.name.upper().startswith(("LICENSE", "README")))
    train = [p for p in files if "train" in p.name.lower()]
    keys = ("test",) if heldout == "test" else ("dev", "valid")
    held = [p for p in files if any(k in p.name.lower() for k in keys)]
    if len(train) == 1 and len(held) == 1:
        return train[0], held[0]
    if train or held:
        raise DataError(f"{root}: expected exactly one '*train*' file and one '*{keys[0]}*' file, found "
                        f"{[p.name for p in train]} and {[p.name for p in held]}")
    return None


def _label_sort_key(label: str):
    return (0, int(label), "") if re.fullmatch(r"-?\d+", label) else (1, 0, label)


def class_names_of(labels: list[str]) -> tuple[str, ...]:
    """Sorted distinct labels (numerically when they are all integers)."""
    return tuple(sorted(set(labels), key=_label_sort_key))


def label_ids(examples: Examples, class_names: tuple[str, ...]) -> np.ndarray:
    """Map string labels to class indices; an unknown label is an error naming its line."""
    index = {name: k for k, name in enumerate(class_names)}
    out = np.empty(len(examples), np.int32)
    for i, (label, where) in enumerate(zip(examples.labels, examples.where)):
        if label not in index:
            shown = ", ".join(class_names[:20]) + (" ..." if len(class_names) > 20 else "")
            raise DataError(f"{where}: unknown label {label!r} (known labels: {shown})")
        out[i] = index[label]
    return out


# --- tokenization -----------------------------------------------------------------------------


def make_vectorizer(sequence_length: int, *, vocabulary: list[str] | None = None, max_tokens: int = 20000,
                    standardize: str = "lower_and_strip_punctuation"):
    """A TextVectorization layer (int ids, padded/truncated to `sequence_length`; 0 = padding, 1 = OOV)."""
    import keras

    return keras.layers.TextVectorization(
        max_tokens=None if vocabulary is not None else max_tokens, standardize=standardize,
        output_mode="int", output_sequence_length=sequence_length, vocabulary=vocabulary)


def adapt_vocabulary(texts: tf.data.Dataset, *, max_tokens: int, sequence_length: int,
                     standardize: str) -> list[str]:
    """Learn the vocabulary (most frequent first, after '' and '[UNK]') from a dataset of strings."""
    layer = make_vectorizer(sequence_length, max_tokens=max_tokens, standardize=standardize)
    layer.adapt(texts.batch(1024))
    return [str(t) for t in layer.get_vocabulary()]


def tokenize(ds: tf.data.Dataset, vocabulary: list[str], sequence_length: int, standardize: str) -> tf.data.Dataset:
    """(text, label) -> (int32 token ids [sequence_length], label), inside tf.data."""
    layer = make_vectorizer(sequence_length, vocabulary=vocabulary, standardize=standardize)
    return ds.map(lambda text, label: (tf.cast(layer(text), tf.int32), label), num_parallel_calls=AUTOTUNE,
                  deterministic=True)


def tokenize_texts(texts: list[str], vocabulary: list[str], sequence_length: int, standardize: str) -> np.ndarray:
    """Raw strings -> (N, sequence_length) int32 ids with the saved vocabulary (for predict)."""
    if not texts:
        return np.zeros((0, sequence_length), np.int32)
    layer = make_vectorizer(sequence_length, vocabulary=vocabulary, standardize=standardize)
    ds = tf.data.Dataset.from_tensor_slices(tf.constant(list(texts))).batch(256)
    return np.concatenate([b for b in ds.map(lambda t: tf.cast(layer(t), tf.int32)).as_numpy_iterator()])


def from_lists(texts: list[str], labels: np.ndarray) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices((tf.constant(list(texts), tf.string), np.asarray(labels, np.int32)))


# --- the generated default: 3-class sentiment with negation, contrast and noise ------------------

SENTIMENT_CLASSES = ("negative", "neutral", "positive")
_ASPECTS = ("acting", "plot", "soundtrack", "ending", "dialogue", "camera work", "pacing", "cast", "story",
            "script", "music", "direction", "humour", "cinematography", "finale", "villain")
_POSITIVE = ("good", "great", "excellent", "wonderful", "superb", "brilliant", "lovely", "delightful",
             "gripping", "moving", "clever", "fantastic", "charming", "solid")
_NEGATIVE = ("bad", "awful", "terrible", "boring", "dull", "weak", "clumsy", "tedious", "poor", "messy",
             "lifeless", "predictable", "painful", "forgettable")
_NEUTRAL = ("okay", "average", "ordinary", "standard", "typical", "so-so", "unremarkable", "conventional")
_INTENSIFIERS = ("", "", "", "really", "very", "quite", "truly", "rather", "extremely")
_NEGATORS = ("not", "never", "hardly", "not at all", "far from")
_NOISE = ("honestly", "well", "i think", "to be fair", "overall", "frankly", "basically", "you know",
          "in my opinion", "at the cinema", "on friday", "with my sister", "last night", "again",
          "so", "anyway", "for what it is worth", "as expected", "popcorn", "tickets")
_FACTS = ("i watched it {noise}", "the film runs for two hours", "it was shown in the small hall",
          "the {aspect} was filmed in spain", "we saw it {noise}", "it is the third film of the series",
          "the {aspect} was made by a new team", "the cast includes many actors")


def _clause(rng, polarity: int) -> str:
    """'the ASPECT was [not] [very] ADJ' with the given polarity (+1 / -1 / 0)."""
    aspect = _ASPECTS[rng.integers(len(_ASPECTS))]
    intens = _INTENSIFIERS[rng.integers(len(_INTENSIFIERS))]
    if polarity == 0:
        adj = _NEUTRAL[rng.integers(len(_NEUTRAL))]
        negate = False
    else:
        negate = rng.random() < 0.35  # "not good" is negative, "not bad" positive
        pool = _POSITIVE if (polarity > 0) != negate else _NEGATIVE
        adj = pool[rng.integers(len(pool))]
    verb = ("was", "is", "felt", "seemed")[rng.integers(4)]
    neg = (_NEGATORS[rng.integers(len(_NEGATORS))] + " ") if negate else ""
    return " ".join(w for w in ("the", aspect, verb, neg + (intens + " " if intens else "") + adj) if w)


def _noise(rng, sentence: str, rate: float) -> str:
    words = sentence.split(" ")
    out = []
    for w in words:
        if rng.random() < rate:
            out.append(_NOISE[rng.integers(len(_NOISE))])
        out.append(w)
    return " ".join(out)


def generated_sentiment(n: int, seed: int, split: str) -> tuple[list[str], np.ndarray]:
    """n generated movie-review sentences labelled negative / neutral / positive (balanced).

    Label rules: a single clause takes its polarity, flipped by a negator ("not good" is negative);
    "X but Y" and "although X, Y" take the polarity of Y (mixed cues); neutral sentences use
    neutral adjectives or state facts. Filler and noise words are sprinkled everywhere.
    """
    rng = np.random.default_rng([seed, {"train": 0, "validation": 1, "test": 2}[split]])
    texts, labels = [], np.empty(n, np.int32)
    for i in range(n):
        label = int(rng.integers(3))  # 0 negative, 1 neutral, 2 positive
        polarity = label - 1
        form = rng.random()
        if polarity == 0:
            if form < 0.5:
                s = _clause(rng, 0)
            else:
                fact = _FACTS[rng.integers(len(_FACTS))]
                s = fact.format(noise=_NOISE[rng.integers(len(_NOISE))], aspect=_ASPECTS[rng.integers(len(_ASPECTS))])
            if rng.random() < 0.3:
                s += " and " + _clause(rng, 0)
        elif form < 0.4:
            s = _clause(rng, polarity)
        elif form < 0.7:
            s = f"{_clause(rng, -polarity)} but {_clause(rng, polarity)}"
        elif form < 0.85:
            s = f"although {_clause(rng, -polarity)} , {_clause(rng, polarity)}"
        else:
            s = f"{_clause(rng, polarity)} and {_clause(rng, polarity if rng.random() < 0.5 else 0)}"
        texts.append(_noise(rng, s, rate=0.15))
        labels[i] = label
    return texts, labels
