"""Access to tensorflow-datasets, with one clear error for names it does not know."""

from __future__ import annotations

from errors import DataError, UserError

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


def train_val_splits(datasets: dict, counts: dict, val_fraction: float = 0.1):
    """(train, val, num_train, num_val): the dataset's own held-out split, else a slice of train."""
    train, n_train = datasets["train"], counts["train"]
    for held_out in ("validation", "test"):
        if held_out in datasets:
            return train, datasets[held_out], n_train, counts[held_out]
    n_val = max(1, int(n_train * val_fraction))
    return train.skip(n_val), train.take(n_val), n_train - n_val, n_val
