"""TFDS without network: a real builder prepared and trained through cli.py, mock mnist's three
splits, and the one-line error (in seconds) when the download host cannot be reached."""

import json
import socket
import time

import numpy as np
import pytest

from conftest import BACKEND, run_cli_subprocess
from errors import DataError
from pipelines import splits as split_rules
from pipelines import tfds_source
from tasks.base import get_task, resolve_config


@pytest.fixture(scope="module")
def tiny_data_dir(tmp_path_factory):
    """Both tiny datasets prepared by their builders' download_and_prepare (needs importlib_resources)."""
    from tests import tiny_tfds_builders

    data_dir = tmp_path_factory.mktemp("tfds_data")
    tiny_tfds_builders.prepare(data_dir)
    return data_dir


def _build(task_name, data, **sets):
    task = get_task(task_name)
    cfg = resolve_config(task, "debug", sets=[f"data={data}"] + [f"{k}={v}" for k, v in sets.items()])
    return task.build_datasets(cfg)


def _pixels(ds) -> list[bytes]:
    """Each image of a (float image in [0, 1], label) dataset as bytes, to compare examples across splits."""
    return [np.round(x.numpy() * 255).astype(np.uint8).tobytes() for x, _ in ds]


def test_prepared_builder_gives_three_splits_validation_carved_from_train(tiny_data_dir, monkeypatch):
    """In-process stand-in for TFDS_DATA_DIR (TFDS reads the variable once, at import)."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import constants

    from tests import tiny_tfds_builders as tiny

    monkeypatch.setattr(constants, "DATA_DIR", str(tiny_data_dir))
    data = _build("classification", "tfds:kb_tiny_images", image_size=12, val_fraction=0.25, seed=5)
    info = data.info
    assert (info.num_train, info.num_val, info.num_test) == (30, 10, tiny.NUM_TEST)
    assert info.splits == {"train": "train split", "validation": split_rules.carved_note(0.25, 5),
                           "test": "test split"}
    val, test = _pixels(data.val), _pixels(data.test)
    assert (len(_pixels(data.train)), len(val), len(test)) == (30, 10, tiny.NUM_TEST)
    builder = tfds.builder("kb_tiny_images", data_dir=str(tiny_data_dir))
    raw = {s: [np.asarray(ex["image"]).tobytes() for ex in tfds.as_numpy(builder.as_dataset(split=s))]
           for s in ("train", "test")}
    _, val_idx = split_rules.carve_indices(tiny.NUM_TRAIN, 0.25, 5, "tfds:kb_tiny_images")
    assert val == [raw["train"][i] for i in val_idx]  # the seeded slice of train, in order
    assert not set(val) & set(raw["test"]) and test == raw["test"]


@pytest.mark.parametrize("task, name, sets", [
    ("classification", "kb_tiny_images", ["image_size=12"]),
    ("text-classification", "kb_tiny_texts", ["sequence_length=8", "vocab_size=50"]),
])
def test_fit_reads_a_prepared_tfds_builder_through_tfds_data_dir(tiny_data_dir, tmp_path, task, name, sets):
    run_dir = tmp_path / "run"
    overrides = [arg for s in ["val_fraction=0.25", *sets] for arg in ("--set", s)]
    proc = run_cli_subprocess("fit", "--task", task, "--data", f"tfds:{name}", "--preset", "debug", "--batch-size", "8",
                              "--run-dir", run_dir, "--quiet", *overrides, backend=BACKEND,
                              env={"TFDS_DATA_DIR": str(tiny_data_dir)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((run_dir / "data_info.json").read_text())
    assert info["source"] == f"tfds:{name}"
    assert (info["num_train"], info["num_val"]) == (30, 10)  # 25% carved from the 40 train examples
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 1
    assert info["num_test"] == 12 and info["splits"]["validation"].startswith("carved from train")
    assert metrics["test"]["examples"] == 12 and 0.0 <= metrics["test"]["accuracy"] <= 1.0  # reported once, at the end


def _mock_mnist_metadata(root, n: int):
    """mnist's split names (train, test; no validation) for tfds.testing.mock_data, which ships none."""
    import tensorflow_datasets as tfds

    builder = tfds.builder("mnist", data_dir=str(root))
    folder = root / "mnist" / str(builder.version)
    folder.mkdir(parents=True)
    template = tfds.core.ShardedFileTemplate(data_dir=str(folder), dataset_name="mnist", filetype_suffix="tfrecord")
    builder.info.set_splits(tfds.core.SplitDict([
        tfds.core.SplitInfo(name=s, shard_lengths=[n], num_bytes=0, filename_template=template)
        for s in ("train", "test")]))
    builder.info.write_to_directory(str(folder))


def test_mock_mnist_validation_is_carved_from_train_by_seed_and_test_is_kept(tmp_path):
    import tensorflow_datasets as tfds

    n = 20
    _mock_mnist_metadata(tmp_path, n)
    with tfds.testing.mock_data(num_examples=n, data_dir=str(tmp_path), policy=tfds.testing.MockPolicy.USE_FILES):
        raw_train = [np.asarray(ex["image"]).tobytes()
                     for ex in tfds.as_numpy(tfds.builder("mnist").as_dataset(split="train"))]
        carved = {}
        for seed in (3, 4):
            data = _build("classification", "tfds:mnist", image_size=28, val_fraction=0.3, seed=seed)
            info = data.info
            assert (info.num_train, info.num_val, info.num_test) == (n - round(0.3 * n), round(0.3 * n), n)
            assert info.splits["validation"] == split_rules.carved_note(0.3, seed)
            assert len(_pixels(data.test)) == n
            carved[seed] = _pixels(data.val)
            _, val_idx = split_rules.carve_indices(n, 0.3, seed, "tfds:mnist")
            assert carved[seed] == [raw_train[i] for i in val_idx]
    assert carved[3] != carved[4]


# --- no network ------------------------------------------------------------------------------------


def _no_dns(monkeypatch):
    def fail(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)


def test_without_network_the_download_fails_at_once_with_one_line(tmp_path, monkeypatch):
    _no_dns(monkeypatch)
    start = time.monotonic()
    with pytest.raises(DataError) as err:
        tfds_source.load_tfds("cifar10", data_dir=tmp_path)
    message = str(err.value)
    assert time.monotonic() - start < 30
    assert "\n" not in message
    assert message.startswith("--data tfds:cifar10: cannot download it: no network (host www.cs.toronto.edu not found)")
    assert message.endswith(f"copy DIR here and set TFDS_DATA_DIR=DIR (now {tmp_path})")
    assert not (tmp_path / "downloads").exists() or not any((tmp_path / "downloads").iterdir())


def test_host_probe_is_bounded_and_one_reachable_host_is_enough(monkeypatch):
    def slow(host, *args, **kwargs):
        if host == "answers.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 443))]
        time.sleep(5)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    class Opened:
        def close(self):
            pass

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    monkeypatch.setattr(socket, "create_connection", lambda target, timeout: Opened())
    start = time.monotonic()
    assert tfds_source.unreachable_hosts(["hangs.example"], timeout=0.2) == "host hangs.example did not answer in 0.4 s"
    assert time.monotonic() - start < 2
    assert tfds_source.unreachable_hosts(["answers.example", "hangs.example"], timeout=0.2) == ""
    assert tfds_source.unreachable_hosts([]) == ""


def test_a_download_that_fails_to_connect_is_reported_as_no_network():
    import requests

    request = requests.Request("GET", "https://www.cs.toronto.edu/~kriz/x.tar.gz").prepare()
    try:
        try:
            raise requests.exceptions.ConnectionError("Max retries exceeded", request=request)
        except requests.exceptions.ConnectionError as exc:
            raise RuntimeError("download failed") from exc
    except RuntimeError as wrapped:
        assert tfds_source._connection_error(wrapped) == "cannot connect to www.cs.toronto.edu"
    assert tfds_source._connection_error(ValueError("bad checksum")) == ""
