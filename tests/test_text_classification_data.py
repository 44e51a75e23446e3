"""Text classification data: every format, its one-line errors, TFDS under mock_data, the vocabulary."""

import numpy as np
import pytest

from errors import DataError, UserError
from pipelines import text as text_data
from tasks.base import get_task, resolve_config

TASK = "text-classification"


def _cfg(data, *sets, preset="debug"):
    return resolve_config(get_task(TASK), preset, sets=[f"data={data}", *sets])


def _build(data, *sets):
    return get_task(TASK).build_datasets(_cfg(data, *sets))


def _all(ds):
    xs, ys = zip(*ds.as_numpy_iterator())
    return np.stack(xs), np.asarray(ys)


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_generated_default_is_balanced_deterministic_and_non_trivial():
    texts, labels = text_data.generated_sentiment(600, 0, "train")
    again, _ = text_data.generated_sentiment(600, 0, "train")
    val, _ = text_data.generated_sentiment(600, 0, "validation")
    assert texts == again and texts != val
    assert np.bincount(labels, minlength=3).min() > 150  # three classes, roughly balanced
    joined = " ".join(texts)
    for cue in (" but ", "although", "not ", "never", "honestly"):  # contrast, negation, noise
        assert cue in joined, cue
    data = _build("embedded")
    assert data.info.class_names == ("negative", "neutral", "positive")
    x, y = _all(data.val)
    assert x.shape == (64, 24) and x.dtype == np.int32 and set(y) <= {0, 1, 2}


def test_split_files_give_train_dev_validation_and_test_never_validation(tmp_path):
    _write(tmp_path / "stsa.binary.train", "1 a great , moving film\n0 dull and boring\n1 great fun\n0 not good\n")
    _write(tmp_path / "stsa.binary.test", "0 boring zebra\n1 great\n")
    _write(tmp_path / "stsa.binary.dev", "1 splendid\n")
    data = _build(tmp_path)
    info = data.info
    assert (info.num_train, info.num_val, info.num_test) == (4, 1, 2) and info.class_names == ("0", "1")
    assert info.splits == {"train": str(tmp_path / "stsa.binary.train"), "validation": str(tmp_path / "stsa.binary.dev"),
                           "test": str(tmp_path / "stsa.binary.test")}
    vocab = info.vocabularies["tokens"]
    assert "vocabulary" not in info.extra and info.inputs["tokens"].vocabulary == "tokens"
    assert vocab[:2] == ["", "[UNK]"] and "great" in vocab and "," not in vocab  # punctuation stripped
    assert "splendid" not in vocab and "zebra" not in vocab  # learned from train only, never dev or test
    x, y = _all(data.test)
    assert y.tolist() == [0, 1] and x[0, :3].tolist() == [vocab.index("boring"), 1, 0]  # [UNK], then padding
    assert _all(data.val)[1].tolist() == [1]
    (tmp_path / "stsa.binary.dev").unlink()  # no dev file: validation carved from train by seed, test unchanged
    carved = _build(tmp_path, "val_fraction=0.25").info
    assert (carved.num_train, carved.num_val, carved.num_test) == (3, 1, 2)
    assert carved.splits["validation"] == "carved from train (25%, seed 0)"
    _write(tmp_path / "other.test", "1 x\n")
    with pytest.raises(DataError, match=r"expected one '\*train\*' file, at most one .* found train: "
                                        r"\['stsa.binary.train'\]; validation: \[\]; test: \['other.test', 'stsa.binary.test'\]"):
        _build(tmp_path)


def test_label_sentence_errors_name_file_and_line(tmp_path):
    bad = _write(tmp_path / "a.txt", "1 fine\n\n0 bad\n")
    with pytest.raises(DataError, match=r"a\.txt line 2: empty line \(expected 'label sentence'\)"):
        _build(bad)
    _write(bad, "1 fine\n0\n")
    with pytest.raises(DataError, match=r"a\.txt line 2: expected 'label sentence', got only '0'"):
        _build(bad)
    folder = tmp_path / "split"
    folder.mkdir()
    _write(folder / "x.train", "1 good\n0 bad\n1 nice\n")
    _write(folder / "x.test", "1 good\n2 what\n")
    with pytest.raises(DataError, match=r"x\.test line 2: unknown label '2' \(known labels: 0, 1\)"):
        _build(folder)


def test_csv_and_tsv_with_named_columns(tmp_path):
    rows = [("i love it", "happy"), ('so "bad", really', "sad"), ("meh", "neutral")] * 10
    csv_path = tmp_path / "reviews.csv"
    import csv

    with csv_path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "review", "mood"])
        w.writerows([(i, t, m) for i, (t, m) in enumerate(rows)])
    data = _build(csv_path, "text_column=review", "label_column=mood", "val_fraction=0.2")
    assert data.info.class_names == ("happy", "neutral", "sad")
    assert (data.info.num_train, data.info.num_val) == (24, 6)
    tsv = _write(tmp_path / "r.tsv", "label\ttext\n" + "".join(f"{m}\t{t}\n" for t, m in rows))
    assert _build(tsv, "classes=sad,neutral,happy").info.class_names == ("sad", "neutral", "happy")


def test_csv_errors_name_file_and_line(tmp_path):
    path = _write(tmp_path / "d.csv", "text,label\nhello,a\nbye,b\n")
    with pytest.raises(DataError, match=r"d\.csv line 1: no column 'review' in the header \(text, label\); "
                                        r"choose one with --set text_column=NAME"):
        _build(path, "text_column=review")
    _write(path, "text,label\nhello,a\n\nbye,b\n")
    with pytest.raises(DataError, match=r"d\.csv line 3: empty line"):
        _build(path)
    _write(path, "text,label\nhello,a\nbye\n")
    with pytest.raises(DataError, match=r"d\.csv line 3: expected 2 fields, got 1"):
        _build(path)
    _write(path, "text,label\nhello,a\nbye,\n")
    with pytest.raises(DataError, match=r"d\.csv line 3: empty label in column 'label'"):
        _build(path)
    _write(path, "text,label\nhello,a\nbye,b\nwho,c\n")
    with pytest.raises(DataError, match=r"d\.csv line 4: unknown label 'c' \(known labels: a, b\)"):
        _build(path, "classes=a,b")


def test_class_folders_of_txt_files(tmp_path):
    for label, words in (("neg", "awful dull"), ("pos", "great fun")):
        (tmp_path / label).mkdir()
        for i in range(5):
            _write(tmp_path / label / f"{i}.txt", f"{words} {i}\nsecond line")
    data = _build(tmp_path, "val_fraction=0.2")
    assert data.info.class_names == ("neg", "pos") and (data.info.num_train, data.info.num_val) == (8, 2)
    _write(tmp_path / "pos" / "empty.txt", "\n")
    with pytest.raises(DataError, match=r"pos/empty\.txt: empty text file"):
        _build(tmp_path)
    (tmp_path / "pos" / "empty.txt").unlink()
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match=r"other: class folder holds no \.txt files"):
        _build(tmp_path)


def test_unusable_paths_are_one_line_errors(tmp_path):
    _write(tmp_path / "notes.md", "hello")
    with pytest.raises(DataError, match=r"expected a CSV/TSV or 'label sentence' file, a folder of class"):
        _build(tmp_path)
    with pytest.raises(UserError, match=r"--data .*nope: no such file or directory"):
        _build(tmp_path / "nope")
    one = _write(tmp_path / "one.txt", "1 good\n1 great\n1 fine\n")
    with pytest.raises(DataError, match="expected at least 2 classes"):
        _build(one)


@pytest.mark.parametrize("name, classes", [("imdb_reviews", ("neg", "pos")), ("glue/sst2", ("negative", "positive"))])
def test_tfds_text_datasets_under_mock_data(name, classes):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=24):
        data = _build(f"tfds:{name}")
        assert data.info.source == f"tfds:{name}" and data.info.class_names == classes
        info = data.info
        assert len(info.vocabularies["tokens"]) > 2 and info.num_test == 24 and info.splits["test"] == "test split"
        x, y = _all(data.train)
        assert x.shape == (info.num_train, 24) and x.dtype == np.int32 and set(y.tolist()) <= {0, 1}
        # (mock_data fabricates a validation split even for imdb_reviews; carving is tested with split files)
        assert info.splits["validation"] == "validation split" and info.num_val == 24
        assert _all(data.test)[0].shape == (24, 24)


def test_evaluate_data_reuses_the_saved_vocabulary_and_class_order(tmp_path):
    """rebuild_datasets never re-learns: other training text gives the same ids as at fit time."""
    task = get_task(TASK)
    path = _write(tmp_path / "a.txt", "1 good film\n0 bad film\n1 good\n0 bad\n1 nice\n")
    fitted = task.build_datasets(_cfg(path)).info
    _write(path, "1 zebra quartz good\n0 zebra bad\n1 zebra\n0 quartz\n1 good\n")
    relearned = task.build_datasets(_cfg(path)).info.vocabularies["tokens"]
    assert "zebra" in relearned
    again = task.rebuild_datasets(_cfg(path), fitted)
    vocab = fitted.vocabularies["tokens"]
    assert again.info.vocabularies["tokens"] == vocab
    x, _ = _all(again.train.concatenate(again.val))
    assert "zebra" not in vocab and (x == 1).any()  # unseen words map to [UNK]
    ids = text_data.tokenize_texts(["good zebra", "(!)"], vocab, 4, "lower_and_strip_punctuation")
    assert ids.tolist() == [[vocab.index("good"), 1, 0, 0], [0, 0, 0, 0]]


UCI = ["So there is no way for me to plug it in here in the US unless I go by a converter.\t0",
       "Good case, Excellent value.\t1", "Great for the jawbone.\t1", "Tied to charger for conversations lasting more "
       "than 45 minutes.MAJOR PROBLEMS!!\t0", "The mic is great.\t1", "I have to jiggle the plug to get it to line up "
       "right to get decent volume.\t0", "If you have several dozen or several hundred contacts, then imagine the "
       "fun of sending each of them one by one.\t0", "If you are Razr owner...you must have this!\t1",
       "Needless to say, I wasted my money.\t0", "What a waste of money and time!.\t0", "And the sound quality is great.\t1",
       "He was very impressed when going from the original battery to the extended battery.\t1"]


def test_uci_sentiment_layout_headerless_sentence_tab_label_is_two_classes(tmp_path):
    """`sentence<TAB>0|1`, no header (UCI 'sentiment labelled sentences'): the label column is found."""
    path = _write(tmp_path / "amazon_cells_labelled.txt", "\n".join(UCI) + "\n")
    data = _build(path, "val_fraction=0.25")
    assert data.info.class_names == ("0", "1") and (data.info.num_train, data.info.num_val) == (9, 3)
    ex = text_data.read_file(path, "text", "label")
    assert ex.texts[1] == "Good case, Excellent value." and ex.labels[:3] == ["0", "1", "1"]
    assert ex.where[0].endswith("amazon_cells_labelled.txt line 1")
    flipped = _write(tmp_path / "flipped.tsv", "".join(f"{r.split(chr(9))[1]}\t{r.split(chr(9))[0]}\n" for r in UCI))
    first = text_data.read_file(flipped, "text", "label")  # label first, detected too; and by position
    assert first.labels == ex.labels and first.texts == ex.texts
    assert text_data.read_file(flipped, "text", "0").labels == ex.labels
    assert text_data.read_file(path, "text", "-1").texts == ex.texts


def test_label_position_for_csv_and_label_sentence_files(tmp_path):
    csv_path = _write(tmp_path / "r.csv", '"so good, really",pos\nawful,neg\nfine,pos\n')
    ex = text_data.read_file(csv_path, "text", "-1")
    assert ex.texts == ["so good, really", "awful", "fine"] and ex.labels == ["pos", "neg", "pos"]
    wide = _write(tmp_path / "w.csv", "7,pos,great film\n8,neg,dull film\n")
    assert text_data.read_file(wide, "2", "1").texts == ["great film", "dull film"]
    with pytest.raises(DataError, match=r"w\.csv line 1: expected 2 fields, got 3"):
        text_data.read_file(wide, "text", "1")
    last = _write(tmp_path / "s.txt", "a great film 1\ndull 0\n")
    assert text_data.read_file(last, "text", "-1").labels == ["1", "0"]
    with pytest.raises(DataError, match=r"s\.txt: --set label_column=2: a 'label sentence' file has the label first"):
        text_data.read_file(last, "text", "2")
    header = _write(tmp_path / "h.tsv", "sentence\tlabel\n" + "".join(r + "\n" for r in UCI))
    with pytest.raises(DataError, match=r"h\.tsv line 1: looks like a header \('label' is never seen again"):
        text_data.read_file(header, "text", "-1")
    with pytest.raises(DataError, match=r"h\.tsv line 1: no column 'text' in the header \(sentence, label\); choose "
                                        r"one with --set text_column=NAME, or --set label_column=0\|-1"):
        text_data.read_file(header, "text", "label")
    assert text_data.read_file(header, "sentence", "label").labels[:2] == ["0", "1"]


def test_labels_that_look_like_free_text_are_one_line_errors(tmp_path):
    """The UCI file read the old way (`label sentence`, label first) gave one class per first word."""
    rows = "".join(f"{r.split(chr(9))[0]} {r.split(chr(9))[1]}\n" for r in UCI)  # tab -> space: no tab to detect
    path = _write(tmp_path / "yelp_labelled.txt", rows)
    with pytest.raises(DataError) as err:
        _build(path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{path}: the labels look like free text (11 distinct labels among 12 "
                                             "examples, 10 seen only once")
    assert "--set label_column=0|-1" in msg
    assert _build(path, "label_column=-1").info.class_names == ("0", "1")  # the flag it names fixes it
