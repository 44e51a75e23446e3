"""The shared label check (pipelines/labels.py) every classification reader calls."""

import pytest

from errors import DataError
from pipelines.labels import check_label_set


def test_a_real_label_set_passes_whatever_its_size_or_balance():
    check_label_set(["a", "b"], "f.txt", "hint")
    check_label_set(["pos"] * 500 + ["neg"] * 3 + ["odd"], "f.txt", "hint")  # one rare class is fine
    check_label_set([str(i) for i in range(9)], "f.txt", "hint")  # fewer than 10 labels: never suspected
    check_label_set([str(i % 50) for i in range(100)], "f.txt", "hint")  # 50 classes, each seen twice


def test_mostly_unique_labels_are_refused_with_the_hint():
    labels = [f"word{i}" for i in range(30)] + ["the"] * 5
    with pytest.raises(DataError) as err:
        check_label_set(labels, "data.tsv", "use --set label_column=-1")
    assert str(err.value) == ("data.tsv: the labels look like free text (31 distinct labels among 35 examples, "
                              "30 seen only once, e.g. 'word27', 'word28', 'word29'); use --set label_column=-1")
