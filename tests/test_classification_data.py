"""Classification data sources: class folders, IDX (MNIST) files, TFDS under mock_data."""

import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from conftest import shared_data
from errors import DataError, UserError
from pipelines import files, shapes
from tasks.base import get_task, resolve_config


def make_class_folders(root, per_class=12, classes=("circle", "square", "triangle")):
    spec = shapes.SceneSpec(size=24, classes=classes)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
    i = 0
    while min(len(list((root / c).iterdir())) for c in classes) < per_class:
        scene = shapes.render_scene(spec, 0, "train", i)
        name = classes[scene.classes[0]]
        if len(list((root / name).iterdir())) < per_class:
            Image.fromarray(scene.image).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
        i += 1
    return root


def _build(data, **sets):
    task = get_task("classification")
    cfg = resolve_config(task, "debug", sets=[f"data={data}"] + [f"{k}={v}" for k, v in sets.items()])
    return task.build_datasets(cfg)


def test_image_folder_with_one_subfolder_per_class(tmp_path):
    root = make_class_folders(tmp_path / "imgs")
    data = _build(root, image_size=20, val_fraction=0.25)
    assert data.info.class_names == ("circle", "square", "triangle")
    assert (data.info.num_train, data.info.num_val) == (27, 9)
    x, y = next(iter(data.train.batch(64)))
    assert x.shape == (27, 20, 20, 3)
    val_y = next(iter(data.val.batch(64)))[1].numpy()
    assert np.bincount(np.concatenate([y.numpy(), val_y]), minlength=3).tolist() == [12, 12, 12]


def test_corrupt_image_is_named(tmp_path):
    root = make_class_folders(tmp_path / "imgs", per_class=3)
    bad = root / "square" / "broken.jpg"
    good = next((root / "circle").glob("*.jpg"))
    bad.write_bytes(good.read_bytes()[:40])  # a truncated JPEG
    with pytest.raises(DataError, match=r"broken\.jpg: unreadable or corrupt image"):
        _build(root)


def test_folder_needs_class_subfolders(tmp_path):
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="one sub-folder of images per class"):
        _build(tmp_path)
    with pytest.raises(UserError, match=r"--data .*missing: no such file or directory"):
        _build(tmp_path / "missing")


def write_idx(path, array):
    codes = {np.uint8: 0x08}
    header = struct.pack(">BBBB", 0, 0, codes[array.dtype.type], array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.tobytes()))


def test_idx_round_trip_and_errors(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (20, 28, 28), dtype=np.uint8)
    labels = np.arange(20, dtype=np.uint8) % 10
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", labels)
    assert np.array_equal(files.read_idx(tmp_path / "train-images-idx3-ubyte.gz"), images)
    data = _build(tmp_path, image_size=28, val_fraction=0.2)
    assert data.info.input_shape == (28, 28, 1) and data.info.num_classes == 10
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">3I", 5, 28, 28) + b"\x00" * 10)
    with pytest.raises(DataError, match=r"bad\.idx: IDX payload has 10 bytes, header promises 3920"):
        files.read_idx(bad)
    bad.write_bytes(b"PK\x03\x04junk")
    with pytest.raises(DataError, match=r"bad\.idx: not an IDX file"):
        files.read_idx(bad)


def test_mnist_idx_from_shared_data():
    root = shared_data("mnist-t10k")
    data = _build(root, image_size=28)
    assert data.info.num_classes == 10 and data.info.input_shape == (28, 28, 1)
    assert data.info.num_train + data.info.num_val == 10_000
    x, y = next(iter(data.train.batch(512)))
    assert 0.05 < float(x.numpy().mean()) < 0.25  # MNIST: mostly black background
    assert len(np.unique(y.numpy())) == 10


def test_tfds_path_under_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=40):
        data = _build("tfds:mnist", image_size=16)
        assert data.info.source == "tfds:mnist"
        assert data.info.num_classes == 10 and data.info.input_shape == (16, 16, 1)
        x, y = next(iter(data.train.batch(8)))
        assert x.shape == (8, 16, 16, 1) and y.shape == (8,)


def test_unknown_tfds_name_is_a_user_error():
    with pytest.raises(UserError, match=r"tfds:no_such_dataset_xyz: unknown TFDS dataset name"):
        _build("tfds:no_such_dataset_xyz")
