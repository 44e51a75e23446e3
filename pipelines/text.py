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
# `label_column` / `text_column` are header names, or column positions ('0', '-1') for files
# without a header. A file whose label column cannot be found is an error naming the flag to set.

HEADERLESS_HINT = "--set label_column=0|-1 (first|last column) for a file without a header"


def column_position(column: str) -> int | None:
    """'0', '-1', '2': a column position (files without a header); None for a header name."""
    text = str(column).strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    return text.rstrip("\n\r").splitlines()


def read_label_sentence(path: Path, label_column: str = "0") -> Examples:
    """One example a line, `label sentence` (the SST-2 `stsa.binary.*` format), or `sentence label`
    with `label_column=-1`; label and sentence are separated by the first (last) whitespace."""
    last = column_position(label_column) == -1
    if column_position(label_column) not in (None, 0, -1):
        raise DataError(f"{path}: --set label_column={label_column}: a 'label sentence' file has the label "
                        "first (0) or last (-1)")
    shape = "'sentence label'" if last else "'label sentence'"
    texts, labels, where = [], [], []
    for n, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            raise DataError(f"{path} line {n}: empty line (expected {shape})")
        parts = line.strip().rsplit(None, 1) if last else line.strip().split(None, 1)
        if len(parts) < 2:
            raise DataError(f"{path} line {n}: expected {shape}, got only {parts[0][:40]!r}")
        label, text = (parts[1], parts[0]) if last else parts
        labels.append(label)
        texts.append(text)
        where.append(f"{path} line {n}")
    if not texts:
        raise DataError(f"{path}: no examples (expected one {shape} a line)")
    return Examples(texts, labels, where)


def _delimited_rows(path: Path, delimiter: str) -> list[list[str]]:
    """Rows of a CSV/TSV file; tab-separated files are read without quoting (as GLUE's TSVs are)."""
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    try:
        with path.open(newline="", encoding="utf-8") as f:
            return list(csv.reader(f, delimiter=delimiter, quoting=quoting))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed {delimiter!r}-delimited file ({exc})") from None


def few_distinct(values: list[str]) -> bool:
    """A column that looks like labels: few distinct values (<= 20 and <= half the rows), the first
    of them seen again (a header cell would be seen once)."""
    distinct = set(values)
    return len(distinct) <= min(20, max(2, len(values) // 2)) and values.count(values[0]) >= 2


def detect_label_position(rows: list[list[str]]) -> int | None:
    """In a headerless two-column file, the column (0 or -1) of few distinct values, if exactly one is."""
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows or any(len(r) != 2 for r in rows):
        return None
    found = [p for p in (0, -1) if few_distinct([r[p].strip() for r in rows])]
    return found[0] if len(found) == 1 else None


def _check_headerless_start(path: Path, rows: list[list[str]], li: int) -> None:
    """`label_column=0|-1` means no header: a first-row 'label' never seen again is a header."""
    values = [r[li].strip() for r in rows if len(r) > max(li, -li - 1) and any(c.strip() for c in r)]
    if len(values) >= 3 and values.count(values[0]) == 1 and few_distinct(values[1:]):
        raise DataError(f"{path} line 1: looks like a header ({values[0]!r} is never seen again as a label); "
                        "name the columns instead: --set label_column=NAME --set text_column=NAME")


def read_delimited(path: Path, text_column: str, label_column: str, delimiter: str | None = None) -> Examples:
    """A CSV (.csv) or TSV (.tsv) file: a header row naming the text and label columns, or no header
    with the label in the first or last column (given by position, or detected as the column of few
    distinct values in a two-column file)."""
    delimiter = delimiter or DELIMITED.get(path.suffix.lower(), ",")
    rows = _delimited_rows(path, delimiter)
    if not rows:
        raise DataError(f"{path}: empty file (expected a header row with '{text_column}' and '{label_column}', "
                        f"or {HEADERLESS_HINT})")
    header = [h.strip() for h in rows[0]]
    li = column_position(label_column)
    if li is None and text_column in header and label_column in header:
        ti, li = header.index(text_column), header.index(label_column)
        return _collect(path, rows[1:], 2, (ti, li), len(header), f"column {label_column!r}")
    if li is None:
        li = detect_label_position(rows)
        if li is None:
            missing = next(c for c in (text_column, label_column) if c not in header)
            key = "text_column" if missing == text_column else "label_column"
            raise DataError(f"{path} line 1: no column {missing!r} in the header ({', '.join(header)}); choose one "
                            f"with --set {key}=NAME, or {HEADERLESS_HINT}")
    else:
        _check_headerless_start(path, rows, li)
    ti = column_position(text_column)
    if ti is None:  # the other column of a two-column file
        ti, width = 1 - li % 2, 2
    else:
        width = max(ti, li, -ti - 1, -li - 1) + 1
    return _collect(path, rows, 1, (ti, li), width, f"column {li}", exact=column_position(text_column) is None)


def _collect(path: Path, rows: list[list[str]], first_line: int, columns: tuple[int, int], width: int,
             label_name: str, exact: bool = False) -> Examples:
    """Examples from parsed rows: text and label at `columns`, each row `width` fields (at least, or
    exactly when `exact`); `label_name` says which column an error is about."""
    ti, li = columns
    texts, labels, where = [], [], []
    for n, row in enumerate(rows, start=first_line):
        if not row or not any(cell.strip() for cell in row):
            raise DataError(f"{path} line {n}: empty line (expected {width} fields)")
        if len(row) < width or (exact and len(row) != width):
            raise DataError(f"{path} line {n}: expected {width} fields, got {len(row)}")
        text, label = row[ti].strip(), row[li].strip()  # an empty text is kept: counted as empty at tokenization
        if not label:
            raise DataError(f"{path} line {n}: empty label in {label_name}")
        texts.append(text)
        labels.append(label)
        where.append(f"{path} line {n}")
    if not texts:
        raise DataError(f"{path}: header only, no examples")
    return Examples(texts, labels, where)


def read_file(path: Path, text_column: str, label_column: str) -> Examples:
    """CSV/TSV by suffix; any other file whose every line holds a tab is read as TSV (e.g. the UCI
    `sentence<TAB>label` files); else one `label sentence` a line."""
    if path.suffix.lower() in DELIMITED:
        return read_delimited(path, text_column, label_column)
    lines = [line for line in _read_lines(path) if line.strip()]
    if lines and all("\t" in line for line in lines):
        return read_delimited(path, text_column, label_column, delimiter="\t")
    return read_label_sentence(path, label_column)


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


SPLIT_FILE_KEYS = {"train": ("train",), "validation": ("dev", "valid"), "test": ("test",)}


def find_split_files(root: Path) -> dict[str, Path] | None:
    """In a folder of plain files: {'train': ..., 'validation'?: ..., 'test'?: ...} from the names
    (`*train*`; `*dev*` or `*valid*`; `*test*`), or None when no name says a split."""
    files = sorted(p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")
                   and not p.name.upper().startswith(("LICENSE", "README")))
    found = {split: [p for p in files if any(k in p.name.lower() for k in keys)]
             for split, keys in SPLIT_FILE_KEYS.items()}
    named = [p for ps in found.values() for p in ps]
    if not named:
        return None
    if len(found["train"]) != 1 or any(len(ps) > 1 for ps in found.values()) or len(set(named)) != len(named):
        listing = "; ".join(f"{split}: {[p.name for p in ps]}" for split, ps in found.items())
        raise DataError(f"{root}: expected one '*train*' file, at most one '*dev*'/'*valid*' file and at most one "
                        f"'*test*' file, found {listing}")
    return {split: ps[0] for split, ps in found.items() if ps}


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


def fit_length(ids: tf.Tensor, length: int) -> tf.Tensor:
    """Cut or zero-pad the last axis to exactly `length`, whatever the tokenizer returned.

    TextVectorization(output_sequence_length=N) returns shape (0,) for one unbatched string that
    standardizes to nothing (e.g. "(" with punctuation stripped); a `[0]` example then breaks
    batching deep inside fit. Every token sequence goes through here, so its shape is declared.
    """
    ids = ids[..., :length]
    pad = length - tf.shape(ids)[-1]
    rank = len(ids.shape)
    ids = tf.pad(ids, [[0, 0]] * (rank - 1) + [[0, pad]])
    return tf.ensure_shape(ids, [*ids.shape[:-1], length])


TOKENIZE_BATCH = 256  # strings per TextVectorization call (batched calls are also faster)


def tokenize(ds: tf.data.Dataset, vocabulary: list[str], sequence_length: int, standardize: str,
             count: int) -> tf.data.Dataset:
    """(text, label) -> (int32 token ids [sequence_length], label), inside tf.data, in order.

    `count` (the dataset's size) restores the cardinality that unbatching forgets: Keras reads a
    validation set of unknown size to its end and then warns that the input ran out of data.
    """
    layer = make_vectorizer(sequence_length, vocabulary=vocabulary, standardize=standardize)

    def ids(texts, labels):
        return fit_length(tf.cast(layer(texts), tf.int32), sequence_length), labels

    batched = ds.batch(TOKENIZE_BATCH).map(ids, num_parallel_calls=AUTOTUNE, deterministic=True)
    return batched.unbatch().apply(tf.data.experimental.assert_cardinality(count))


def count_empty(tokenized: tf.data.Dataset) -> int:
    """Examples whose ids are all padding: texts with no token left after standardization."""
    def empty_in(batch):
        return tf.reduce_sum(tf.cast(tf.reduce_all(tf.equal(batch, 0), axis=-1), tf.int64))

    counts = tokenized.map(lambda x, y: x).batch(1024).map(empty_in)
    return int(counts.reduce(tf.constant(0, tf.int64), lambda total, n: total + n))


def tokenize_texts(texts: list[str], vocabulary: list[str], sequence_length: int, standardize: str) -> np.ndarray:
    """Raw strings -> (N, sequence_length) int32 ids with the saved vocabulary (for predict)."""
    if not texts:
        return np.zeros((0, sequence_length), np.int32)
    labels = np.zeros(len(texts), np.int32)
    ds = tokenize(from_lists(texts, labels), vocabulary, sequence_length, standardize, len(texts))
    return np.stack([x for x, _ in ds.as_numpy_iterator()])


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
