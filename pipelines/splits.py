"""Train / validation / test, written once for every source.

Validation is the source's own validation split when it has one, else a seeded slice of train
(`val_fraction`, `--seed`). Test is the source's own test split or nothing: it is never carved
out of train, and `fit` reads it only once, after training, to report the best checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipelines.data import split_counts

# Folder names read as splits, in the order tried.
SPLIT_FOLDER_NAMES = {
    "train": ("train", "training"),
    "validation": ("val", "valid", "validation", "dev"),
    "test": ("test", "testing"),
}


def carve_indices(n: int, val_fraction: float, seed: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) of n examples: a seeded random slice of val_fraction."""
    n_train, _ = split_counts(n, val_fraction, name)
    order = np.random.default_rng([seed, 7919]).permutation(n)
    return np.sort(order[:n_train]), np.sort(order[n_train:])


def generated_sizes(cfg) -> dict[str, int]:
    """{split: count} of an embedded generator's splits (num_train, num_val, num_test; 0 = none)."""
    sizes = {"train": cfg.num_train, "validation": cfg.num_val, "test": cfg.num_test}
    return {split: n for split, n in sizes.items() if n}


def generated_note(split: str) -> str:
    return f"generated ({split} seed stream)"


def carved_note(val_fraction: float, seed: int) -> str:
    return f"carved from train ({val_fraction:.0%}, seed {seed})"


def find_split_folders(root: Path) -> dict[str, Path] | None:
    """{'train': ..., 'validation'?: ..., 'test'?: ...} when `root` is laid out as split folders.

    A folder counts as split-laid-out when it has a `train/` (or `training/`) sub-folder and every
    other sub-folder (hidden ones aside) is a known split name; otherwise it is not (e.g. class folders
    that happen to include one called `test`).
    """
    if not root.is_dir():
        return None
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    known = {alias: split for split, aliases in SPLIT_FOLDER_NAMES.items() for alias in aliases}
    if not subdirs or any(name not in known for name in subdirs):
        return None
    found: dict[str, Path] = {}
    for name, path in sorted(subdirs.items()):
        found.setdefault(known[name], path)
    return found if "train" in found else None


def carve_dataset(ds, n: int, val_fraction: float, seed: int, name: str):
    """Split a finite tf.data dataset of n examples into (train, val, n_train, n_val) by a seeded mask."""
    import tensorflow as tf

    _, val_idx = carve_indices(n, val_fraction, seed, name)
    mask = np.zeros(n, dtype=bool)
    mask[val_idx] = True
    table = tf.constant(mask)
    indexed = ds.enumerate()
    train = indexed.filter(lambda i, x: tf.logical_not(table[i])).map(lambda i, x: x)
    val = indexed.filter(lambda i, x: table[i]).map(lambda i, x: x)
    return train, val, n - len(val_idx), len(val_idx)
