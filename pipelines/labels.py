"""One check shared by every classification reader: does this label set look like labels at all?

A misread file (the sentence taken as the label, one folder per image) yields a label set that
looks like free text: many distinct labels, most of them seen once. Training on it silently
gives a model of hundreds of classes; refusing it with the flag that fixes the read is kinder.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from errors import DataError

MIN_CLASSES_TO_SUSPECT = 10  # fewer distinct labels than this are always accepted


def looks_like_free_text(counts: Counter) -> bool:
    """Many distinct labels (>= 10) of which more than half are seen only once."""
    singletons = sum(1 for c in counts.values() if c == 1)
    return len(counts) >= MIN_CLASSES_TO_SUSPECT and singletons * 2 > len(counts)


def check_label_set(labels: Iterable, source: str, hint: str) -> None:
    """Raise one DataError naming `source`, what was found and `hint` (the flag that fixes it)
    when the labels look like free text rather than a set of classes."""
    counts = Counter(str(label) for label in labels)
    if not looks_like_free_text(counts):
        return
    singletons = sum(1 for c in counts.values() if c == 1)
    examples = ", ".join(repr(label[:20]) for label, _ in counts.most_common()[-3:])
    raise DataError(f"{source}: the labels look like free text ({len(counts)} distinct labels among "
                    f"{sum(counts.values())} examples, {singletons} seen only once, e.g. {examples}); {hint}")
