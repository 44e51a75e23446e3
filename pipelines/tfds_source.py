"""Access to tensorflow-datasets, with one clear error for names it does not know."""

from __future__ import annotations

from errors import DataError, UserError
from pipelines import splits as split_rules

SPLITS = ("train", "validation", "test")


def load_tfds(name: str, *, splits: tuple[str, ...] = SPLITS, data_dir=None):
    """Return ({split: dataset of feature dicts}, {split: num_examples}, tfds info)."""
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as exc:  # DatasetNotFoundError and friends carry long messages
        if "not found" in str(exc).lower() or exc.__class__.__name__ == "DatasetNotFoundError":
            raise UserError(f"--data tfds:{name}: unknown TFDS dataset name (see `tfds.list_builders()`)") from None
        raise DataError(f"--data tfds:{name}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from None
    try:
        builder.download_and_prepare()
    except Exception as exc:
        raise DataError(f"--data tfds:{name}: download/prepare failed: {str(exc).splitlines()[0]}") from None
    known = builder.info.splits
    datasets, counts = {}, {}
    for split in splits:
        if known and split not in known:
            continue
        try:
            datasets[split] = builder.as_dataset(split=split, shuffle_files=False)
        except Exception:  # a split the dataset does not have (seen when split info is unavailable)
            continue
        counts[split] = known[split].num_examples if split in known else _count(datasets[split])
    if "train" not in datasets:
        raise DataError(f"--data tfds:{name}: no 'train' split (has {list(known) or 'none'})")
    return datasets, counts, builder.info


def _count(ds) -> int:
    n = int(ds.cardinality())
    return n if n >= 0 else sum(1 for _ in ds)


def three_splits(datasets: dict, counts: dict, val_fraction: float, seed: int, name: str = "tfds"):
    """{split: (dataset, count)} and {split: origin}: own validation else carved from train; own test.

    The test split is never used as validation (it would choose the best checkpoint on test).
    """
    out, origin = {}, {}
    if "validation" in datasets:
        out["train"] = (datasets["train"], counts["train"])
        out["validation"] = (datasets["validation"], counts["validation"])
        origin.update(train="train split", validation="validation split")
    else:
        train, val, n_train, n_val = split_rules.carve_dataset(
            datasets["train"], counts["train"], val_fraction, seed, name)
        out["train"], out["validation"] = (train, n_train), (val, n_val)
        origin.update(train="train split", validation=split_rules.carved_note(val_fraction, seed))
    if "test" in datasets:
        out["test"] = (datasets["test"], counts["test"])
        origin["test"] = "test split"
    return out, origin


def train_val_splits(datasets: dict, counts: dict, val_fraction: float = 0.1, seed: int = 0):
    """TRANSITIONAL (removed once every task reads three splits): train and validation only."""
    parts, _ = three_splits(datasets, counts, val_fraction, seed)
    (train, n_train), (val, n_val) = parts["train"], parts["validation"]
    return train, val, n_train, n_val
