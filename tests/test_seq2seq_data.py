"""Sequence-to-sequence data: every --data format, the one-line errors, the generators, tokenization."""

import json
import zipfile

import pytest

from conftest import shared_data
from errors import DataError
from pipelines.seq2seq_sources import (detokenize_words, first_sentence, generated_news, generated_translation,
                                       number_words)
from tasks.base import get_task, resolve_config


def build(tmp_path, data, *sets, task="translation"):
    """The task's tokenized datasets (what fit gets)."""
    t = get_task(task)
    cfg = resolve_config(t, preset="debug", sets=[f"data={data}", *sets])
    return t.build_datasets(cfg)


def read(data, *sets, task="translation"):
    """{split: Pairs} and origins as read, before tokenization (cheap: no tokenizer is traced)."""
    from tasks import seq2seq

    cfg = resolve_config(get_task(task), preset="debug", sets=[f"data={data}", *sets])
    splits, origins, _ = seq2seq.read_splits(cfg, seq2seq.TRANSLATION if task == "translation" else seq2seq.SUMMARIZATION)
    return splits, origins


def counts(splits):
    return tuple(len(splits[s]) if s in splits else 0 for s in ("train", "validation", "test"))


def texts_of(data, split="train", n=3):
    """(source, target) texts of the first n examples, detokenized from the ids."""
    from pipelines import seq2seq

    out = []
    for x, y in data.split(split).take(n).as_numpy_iterator():
        out.append((seq2seq.detokenize(x["source"], data.info.vocabularies["source"]),
                    seq2seq.detokenize(y, data.info.vocabularies["target"])))
    return out


def test_generated_pair_is_deterministic_and_needs_attention():
    a, b = generated_translation(300, 0, "train"), generated_translation(300, 0, "train")
    assert a.sources == b.sources and a.targets == b.targets
    assert generated_translation(50, 1, "train").sources != a.sources[:50]
    # number words become digits; the verb moves to the end (SOV); agreement endings on the noun phrase
    digits = [(s, t) for s, t in zip(a.sources, a.targets) if "twenty three" in s]
    assert digits and all("23" in t and "twenty" not in t for _, t in digits)
    assert number_words(47) == "forty seven" and number_words(13) == "thirteen"
    lengths = [len(s.split()) for s in a.sources]
    assert min(lengths) <= 5 and max(lengths) >= 15  # varied lengths


def test_generated_news_hides_the_key_facts_among_distractors():
    news = generated_news(200, 0, "train")
    assert news.sources == generated_news(200, 0, "train").sources
    lead_is_key = sum(" of " in first_sentence(s) and s.startswith("on ") for s in news.sources)
    assert 0 < lead_is_key < len(news) * 0.6  # the first sentence is the key one only sometimes
    assert all(len(t.split()) < len(s.split()) / 3 for s, t in zip(news.sources, news.targets))


def test_detokenized_text_joins_punctuation():
    assert detokenize_words("hola , mundo ' s .") == "hola, mundo's."
    assert detokenize_words("¿ que ?") == "¿que?"
    assert first_sentence("One. Two three.") == "One."


def test_tsv_and_vocabulary_from_train_only(tmp_path):
    lines = [f"the {w} sleeps .\tla {w}a duerme ." for w in ("cat", "dog", "bird", "fish")] * 10
    lines.append("only in one line unique_zebra .\tzebra_unica .")
    (tmp_path / "pairs.tsv").write_text("\n".join(lines) + "\n")
    data = build(tmp_path, tmp_path / "pairs.tsv", "val_fraction=0.2", "test_fraction=0.1")
    info = data.info
    assert (info.num_train, info.num_val, info.num_test) == (30, 7, 4)  # test carved first, then 20% of the rest
    assert info.vocabularies["source"][:4] == ["[PAD]", "[UNK]", "[START]", "[END]"]
    train_sources = [s for s, _ in texts_of(data, n=30)]
    zebra_in_train = any("unique_zebra" in s for s in train_sources)
    assert ("unique" in info.vocabularies["source"]) == zebra_in_train  # learned from the training split only
    src, tgt = texts_of(data)[0]
    assert src.startswith("the ") and tgt.startswith("la ")
    rev, _ = read(tmp_path / "pairs.tsv", "reverse=true")
    pairs = [(s, t) for s, t in zip(rev["train"].sources, rev["train"].targets) if "zebra" not in s]
    assert pairs and all(s.startswith("la ") and t.startswith("the ") for s, t in pairs)


def test_anki_zip_is_read_in_place():
    path = shared_data("anki-spa-eng") / "spa-eng.zip"
    from pipelines.seq2seq_sources import read_delimited_pairs

    pairs = read_delimited_pairs(path)
    assert len(pairs) == 118121 and pairs.sources[0] == "Go." and pairs.targets[0] == "Ve."


def test_aligned_files_with_their_own_splits(tmp_path):
    for split, n in (("train", 12), ("val", 3), ("test", 2)):
        (tmp_path / f"{split}.en").write_text("\n".join(f"house {i}" for i in range(n)) + "\n")
        (tmp_path / f"{split}.de").write_text("\n".join(f"haus {i}" for i in range(n)) + "\n")
    splits, _ = read(tmp_path, "source_lang=en", "target_lang=de")
    assert counts(splits) == (12, 3, 2)
    assert (splits["test"].sources[1], splits["test"].targets[1]) == ("house 1", "haus 1")


def test_jsonl_fields_and_split_files(tmp_path):
    for split, n in (("train", 10), ("dev", 3), ("test", 2)):
        rows = [json.dumps({"email": f"Hello Bob. Meeting at {i}. Thanks.", "subject": f"meeting {i}"}) for i in range(n)]
        (tmp_path / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    splits, origins = read(tmp_path, "source_field=email", "target_field=subject", task="summarization")
    assert counts(splits) == (10, 3, 2) and origins["validation"] == "validation split"
    assert splits["validation"].sources[0] == "Hello Bob. Meeting at 0. Thanks."
    assert splits["validation"].targets[0] == "meeting 0"


def test_aeslc_jsonl_is_read():
    root = shared_data("aeslc")
    from pipelines.seq2seq_sources import read_jsonl_pairs

    pairs = read_jsonl_pairs(root / "dev.jsonl", "email", "subject")
    assert len(pairs) == 1960 and all(pairs.targets)


def test_parallel_trees_matched_by_relative_path(tmp_path):
    for i in range(6):
        for tree, text in (("News Articles", f"Story {i} happened. More words."), ("Summaries", f"story {i}")):
            path = tmp_path / tree / "business" / f"{i:03d}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    splits, _ = read(tmp_path, "val_fraction=0.34", task="summarization")
    assert counts(splits) == (4, 2, 0)
    pairs = splits["train"]
    assert all(t == "story " + s.split()[1] for s, t in zip(pairs.sources, pairs.targets))
    assert pairs.sources[0].endswith("happened. More words.")


def _bad(tmp_path, name: str, content: bytes | str):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


@pytest.mark.parametrize("name, content, expected", [
    ("pairs.tsv", "a\tb\nno tab here\n", "pairs.tsv line 2: expected 'source<TAB>target', found no tab"),
    ("pairs.tsv", "a\tb\n\tonly target\n", "pairs.tsv line 2: empty source text"),
    ("pairs.tsv", "a\tb\nsource\t \n", "pairs.tsv line 2: empty target text"),
    ("pairs.tsv", b"a\tb\nbad \xff byte\tc\n", "pairs.tsv line 2: not UTF-8 text"),
    ("pairs.jsonl", '{"source": "a", "target": "b"}\n{"source": "a"}\n', "pairs.jsonl line 2: no text field 'target'"),
    ("pairs.jsonl", '{"source": "a", "target": "b"}\nnot json\n', "pairs.jsonl line 2 column 1: invalid JSON"),
])
def test_bad_files_are_one_line_errors(tmp_path, name, content, expected):
    path = _bad(tmp_path, name, content)
    with pytest.raises(DataError) as err:
        read(path)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_aligned_files_of_different_lengths(tmp_path):
    (tmp_path / "train.en").write_text("a\nb\nc\n")
    (tmp_path / "train.de").write_text("x\ny\n")
    with pytest.raises(DataError, match=r"train\.de: 2 lines, but .*train\.en has 3"):
        read(tmp_path, "source_lang=en", "target_lang=de")


def test_article_without_summary(tmp_path):
    for tree, names in (("articles", ("a.txt", "b.txt")), ("summaries", ("a.txt",))):
        (tmp_path / tree).mkdir()
        for n in names:
            (tmp_path / tree / n).write_text("text.")
    with pytest.raises(DataError, match=r"b\.txt: no matching .*summaries/b\.txt"):
        read(tmp_path, task="summarization")


def test_zip_with_no_text_inside(tmp_path):
    path = tmp_path / "x.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("_about.txt", "about")
    with pytest.raises(DataError, match=r"x\.zip: expected one \.txt/\.tsv file inside the zip"):
        read(path)


def test_tfds_translation_under_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=24):
        splits, origins = read("tfds:ted_hrlr_translate/pt_to_en")
    assert counts(splits) == (24, 24, 24) and origins["validation"] == "validation split"
    assert all(isinstance(t, str) and t for t in splits["train"].sources + splits["train"].targets)


def test_tfds_summarization_under_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        splits, origins = read("tfds:cnn_dailymail", "source_field=article", "target_field=highlights",
                               task="summarization")
    assert counts(splits) == (12, 12, 12) and origins["test"] == "test split"
