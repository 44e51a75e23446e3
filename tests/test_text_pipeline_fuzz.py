"""Fuzz the whole text data path: file -> parse -> tokenize -> batch -> one model call, for every
text model and preset, on both backends (the suite runs once per backend).

Rows that are empty, punctuation- or whitespace-only (empty once standardized), very long or
non-Latin must give batches of exactly [batch, sequence_length] int32 ids and finite logits, or a
one-line project error: a `[0]`-shaped example (issue 13) or NaN logits fail here, not in a user's run.
"""

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from errors import DataError, UserError
from tasks.base import get_task, resolve_config

TASK = "text-classification"
PRESETS = (None, "debug", "sst2")
MODELS = ("cnn", "bilstm", "transformer")

# TextVectorization strips ASCII punctuation only: "«»" or "：。" stay tokens (listed as non-Latin).
EMPTY_ONCE_STANDARDIZED = ["", " ", "   ", "(", ")", "( )", "...", "!!", "--", "?!", "' '", '""']
NON_LATIN = ["日本語のテキストです", "مرحبا بالعالم", "Привет, мир", "שלום עולם", "😀 🎬 🍿", "naïve café", "ग्रह", "«»", "：。"]
PLAIN = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=40)
VERY_LONG = st.integers(300, 3000).map(lambda n: " ".join(f"w{i % 97}" for i in range(n)))
# (text, known to be empty after standardization)
ROW = st.one_of(st.sampled_from(EMPTY_ONCE_STANDARDIZED).map(lambda t: (t, True)),
                st.sampled_from(NON_LATIN).map(lambda t: (t, False)),
                VERY_LONG.map(lambda t: (t, False)),
                PLAIN.map(lambda t: (t, None)))
FUZZ = settings(max_examples=5, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _config(preset, path, model="cnn"):
    return resolve_config(get_task(TASK), preset, sets=[f"data={path}", f"model={model}", "val_fraction=0.25"])


def _write_tsv(path, texts):
    lines = ["label\ttext", "pos\tgood film", "neg\tbad film"]  # two classes whatever the fuzzed rows hold
    lines += [f"{('pos', 'neg')[i % 2]}\t{text}" for i, text in enumerate(texts)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _first_batches(data, batch_size):
    return {split: next(iter(data.split(split).batch(batch_size).as_numpy_iterator())) for split in ("train", "validation")}


@pytest.mark.parametrize("preset", PRESETS)
@FUZZ
@given(rows=st.lists(ROW, min_size=1, max_size=12))
def test_any_text_gives_full_length_batches_and_counted_empty_rows(tmp_path, preset, rows):
    """parse -> tokenize -> batch with each preset's sequence_length and standardization."""
    cfg = _config(preset, _write_tsv(tmp_path / "fuzz.tsv", [text for text, _ in rows]))
    try:
        data = get_task(TASK).build_datasets(cfg)
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc), "errors are one line"
        return
    assert data.train.element_spec[0].shape == (cfg.sequence_length,)
    zero_rows = 0
    for split, (x, y) in _first_batches(data, cfg.batch_size).items():
        assert x.shape == (data.info.count(split), cfg.sequence_length) and x.dtype == np.int32
        zero_rows += int((x == 0).all(axis=1).sum())
    empty = data.info.extra["empty_after_standardization"]
    assert sum(empty.values()) == zero_rows >= sum(1 for _, known in rows if known)


HARD_ROWS = [*EMPTY_ONCE_STANDARDIZED, *NON_LATIN, " ".join(["word"] * 5000), "good " * 3000] * 2


@functools.lru_cache(maxsize=None)
def _hard_batch(preset, folder):
    """One training batch of the hard rows through the real path (file -> batch), per preset."""
    cfg = _config(preset, _write_tsv(folder / f"hard-{preset}.tsv", HARD_ROWS))
    data = get_task(TASK).build_datasets(cfg)
    x, _ = _first_batches(data, 64)["train"]
    assert (x == 0).all(axis=1).any() and (x != 0).all(axis=1).any()  # all-padding and full-length rows
    return data.info, x


@pytest.mark.filterwarnings("ignore:Layer 'position_embedding'")
@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("model", MODELS)
def test_every_model_and_preset_gives_finite_logits_on_hard_rows(tmp_path_factory, model, preset):
    info, x = _hard_batch(preset, tmp_path_factory.getbasetemp())
    cfg = _config(preset, "embedded", model)
    logits = np.asarray(get_task(TASK).build_model(cfg, info)(x, training=False))
    assert logits.shape == (len(x), 2) and np.isfinite(logits).all()


def test_a_dataset_entirely_empty_after_standardization_is_one_line_error(tmp_path):
    path = tmp_path / "punct.tsv"
    path.write_text("label\ttext\n" + "".join(f"{'ab'[i % 2]}\t{t}\n" for i, t in enumerate(["(", ")", "...", "!", " "] * 2)))
    with pytest.raises(DataError) as err:
        get_task(TASK).build_datasets(_config("debug", path))
    assert str(err.value) == (f"{path}: all 8 training texts are empty after standardization "
                              "(standardize=lower_and_strip_punctuation); nothing to learn from")
