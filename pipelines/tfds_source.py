"""Access to tensorflow-datasets: one clear error for unknown names and for downloads without network.

Where the data lives: `TFDS_DATA_DIR` (read by TFDS itself; default `~/tensorflow_datasets`). A
dataset prepared there (by a run on a machine with network, or by `download_and_prepare`, and
copied) is read without network, and so is one built by your own `GeneratorBasedBuilder`: TFDS
reads any prepared dataset in the data dir by name, registered or not.
"""

from __future__ import annotations

import socket
import threading
import urllib.parse
import urllib.request
from pathlib import Path

from errors import DataError, UserError
from pipelines import splits as split_rules

SPLITS = ("train", "validation", "test")
PROBE_TIMEOUT_S = 5.0  # per host: DNS lookup, then a TCP connect
# (`tfds build` is no help here: the tfds CLI needs apache-beam, which this project does not install.)
DATA_DIR_HINT = ("run this command with TFDS_DATA_DIR=DIR on a machine with network, copy DIR here and set "
                 "TFDS_DATA_DIR=DIR (now {data_dir})")


def load_tfds(name: str, *, splits: tuple[str, ...] = SPLITS, data_dir=None):
    """Return ({split: dataset of feature dicts}, {split: num_examples}, tfds info)."""
    builder = _builder(name, data_dir)
    _prepare(builder, name)
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


def _builder(name: str, data_dir):
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=data_dir)
    except Exception as exc:  # DatasetNotFoundError and friends carry long messages
        if "not found" in str(exc).lower() or exc.__class__.__name__ == "DatasetNotFoundError":
            raise UserError(f"--data tfds:{name}: unknown TFDS dataset name: not a TFDS builder (see "
                            f"`tfds.list_builders()`) and not prepared in TFDS_DATA_DIR ({_data_dir(data_dir)})"
                            ) from None
        raise DataError(f"--data tfds:{name}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}") from None


def _data_dir(data_dir=None) -> str:
    if data_dir:
        return str(data_dir)
    from tensorflow_datasets.core import constants

    return str(constants.DATA_DIR)


def _prepare(builder, name: str) -> None:
    """download_and_prepare, failing within seconds (not minutes of retries) when offline."""
    if _may_download(builder):
        unreachable = unreachable_hosts(download_hosts(builder))
        if unreachable:
            raise DataError(_offline_message(name, builder, unreachable))
    try:
        builder.download_and_prepare()
    except Exception as exc:
        offline = _connection_error(exc)
        if offline:
            raise DataError(_offline_message(name, builder, offline)) from None
        raise DataError(f"--data tfds:{name}: download/prepare failed: {str(exc).splitlines()[0]}") from None


def _offline_message(name: str, builder, reason: str) -> str:
    hint = DATA_DIR_HINT.format(data_dir=builder.data_dir_root)
    return f"--data tfds:{name}: cannot download it: no network ({reason}); {hint}"


def download_hosts(builder) -> list[str]:
    """The hosts the builder downloads from, as its registered checksums list them (may be none)."""
    urls = getattr(builder, "url_infos", None) or {}
    return sorted({urllib.parse.urlsplit(url).hostname for url in urls} - {None})


def _may_download(builder) -> bool:
    """Whether download_and_prepare may go to the network, so that a quick probe first is worth it.

    Not when the data is prepared (its version folder exists: TFDS's own test for reusing it); not when
    earlier downloads lie in the download folder (TFDS then decides what it still needs); not under
    `tfds.testing.mock_data` (its download_and_prepare is a no-op).
    """
    mocked = type(builder).download_and_prepare.__module__.startswith("tensorflow_datasets.testing")
    if mocked or Path(str(builder.data_path)).exists():
        return False
    folder = Path(str(builder.data_dir_root)) / "downloads"
    return not (folder.is_dir() and any(p.name not in ("extracted", "manual") and ".tmp." not in p.name
                                        for p in folder.iterdir()))


def unreachable_hosts(hosts: list[str], timeout: float = PROBE_TIMEOUT_S) -> str:
    """'' when any host answers (or there is none to ask), else why the first could not be reached.

    The hosts are probed in parallel daemon threads, so a hanging resolver costs `timeout`, not more.
    """
    if not hosts:
        return ""
    reasons: dict[str, str] = {}
    threads = [threading.Thread(target=lambda h=h: reasons.__setitem__(h, _probe(h, timeout)), daemon=True)
               for h in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout * 2)
    if any(reasons.get(h) == "" for h in hosts):
        return ""
    return reasons.get(hosts[0]) or f"host {hosts[0]} did not answer in {timeout * 2:g} s"


def _probe(host: str, timeout: float) -> str:
    """'' when a TCP connection to host:443 (or to the configured proxy) opens, else the reason."""
    target = _proxy_for(host) or (host, 443)
    try:
        socket.getaddrinfo(target[0], target[1], type=socket.SOCK_STREAM)
    except socket.gaierror:
        return f"host {target[0]} not found"
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError as exc:
        return f"cannot connect to {target[0]}:{target[1]}: {exc.strerror or exc.__class__.__name__}"
    return ""


def _proxy_for(host: str):
    """(host, port) of the HTTPS proxy the downloader (requests) would use for `host`, if any."""
    proxy = urllib.request.getproxies().get("https")
    if not proxy or urllib.request.proxy_bypass(host):
        return None
    parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return (parts.hostname, parts.port or 80) if parts.hostname else None


def _connection_error(exc: BaseException) -> str:
    """Which host a failed download could not reach (after TFDS's own retries), or ''."""
    import requests

    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, requests.exceptions.ConnectionError):
            url = getattr(exc.request, "url", None) or ""
            return f"cannot connect to {urllib.parse.urlsplit(url).hostname or 'the download host'}"
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return ""


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
