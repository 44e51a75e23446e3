"""Checks on a classification label set, shared by every classification reader."""

from __future__ import annotations

from collections import Counter

from errors import DataError


def check_label_set(labels, source: str, hint: str) -> None:
    """Refuse labels that look like free text (most labels seen once) rather than classes.

    A reader that took the wrong column (a sentence's first word, a file name) yields hundreds of
    "classes" seen once each; training on that is a silent misread. `hint` names the flag that fixes it.
    """
    counts = Counter(labels)
    n, distinct = sum(counts.values()), len(counts)
    singletons = sum(1 for c in counts.values() if c == 1)
    if distinct > 2 and singletons > distinct / 2 and distinct > n / 4:
        examples = ", ".join(repr(str(k))[:30] for k, _ in counts.most_common()[-3:])
        raise DataError(f"{source}: {distinct} distinct labels in {n} examples, {singletons} seen once "
                        f"(e.g. {examples}): these look like free text, not classes; {hint}")
