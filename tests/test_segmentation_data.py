"""Segmentation data: generated scenes, images/ + masks/ folders (index, palette, 0/255 masks,
value mapping), TFDS oxford_iiit_pet under mock_data, the error cases, augmentation, Dice loss."""

import json

import numpy as np
import pytest
from PIL import Image

from errors import DataError, UserError
from pipelines import segmentation as seg
from pipelines import shapes
from tasks.base import config_from_dict, get_task, resolve_config


def _build(data="embedded", preset="debug", **sets):
    task = get_task("segmentation")
    cfg = resolve_config(task, preset, sets=[f"data={data}"] + [f"{k}={v}" for k, v in sets.items()])
    return task.build_datasets(cfg), cfg


def _take(ds, n=64):
    x, y = next(iter(ds.batch(n)))
    return x.numpy(), y.numpy()


def make_folder(root, n=10, size=24, mode="index", gray=False, image_suffix=".png"):
    """images/ + masks/ from shapes scenes. mode: index (L values 0..3), palette (P), binary (0/255),
    spread (L values 0/100/200/250 for classes 0..3)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    spec = shapes.SceneSpec(size=size, classes=("circle", "square", "triangle"), max_objects=2, min_scale=0.3)
    truth = {}
    for i in range(n):
        scene = shapes.render_scene(spec, 0, "train", i)
        mask = scene.mask.astype(np.uint8)
        if mode == "binary":
            mask = (mask > 0).astype(np.uint8)
        truth[str(i)] = mask
        img = Image.fromarray(scene.image).convert("L" if gray else "RGB")
        img.save(root / "images" / f"{i}{image_suffix}", **({"quality": 95} if image_suffix == ".jpg" else {}))
        if mode == "palette":
            m = Image.fromarray(mask, mode="P")
            m.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12))
        elif mode == "binary":
            m = Image.fromarray(mask * 255)
        elif mode == "spread":
            m = Image.fromarray(np.array([0, 100, 200, 250], np.uint8)[mask])
        else:
            m = Image.fromarray(mask)
        m.save(root / "masks" / f"{i}.png")
    return root, truth


def test_generated_scenes_yield_float_images_and_index_masks():
    data, _ = _build()
    assert data.info.class_names == ("background", "circle", "triangle", "cross")
    assert data.info.num_classes == 4 and data.info.input_shape == (32, 32, 3)
    x, y = _take(data.val, 32)
    assert x.dtype == np.float32 and x.shape == (32, 32, 32, 3) and 0.0 <= x.min() and x.max() <= 1.0
    assert y.dtype == np.int32 and y.shape == (32, 32, 32)
    assert set(np.unique(y)) == {0, 1, 2, 3}
    x2, y2 = _take(_build()[0].val, 32)
    assert np.array_equal(x, x2) and np.array_equal(y, y2)  # deterministic by seed


@pytest.mark.parametrize("mode", ["index", "palette"])
def test_folder_with_index_or_palette_masks(tmp_path, mode):
    root, truth = make_folder(tmp_path / "d", mode=mode, image_suffix=".jpg")
    data, _ = _build(root, image_size=24, val_fraction=0.3)
    info = data.info
    assert (info.num_classes, info.class_names, info.input_shape) == (4, ("0", "1", "2", "3"), (24, 24, 3))
    assert info.extra["distinct_train_examples"] == 7 and info.num_val == 3
    x, y = _take(data.val)
    expected = np.stack([truth[s] for s in info.extra["val_stems"]])
    assert x.shape == (3, 24, 24, 3) and np.array_equal(y, expected)
    # Small training sets are repeated to fill an epoch (min_epoch_examples=32 in the debug preset).
    assert info.num_train == 35 and _take(data.train, 100)[1].shape[0] == 35


def test_folder_binary_masks_and_gray_images_resized(tmp_path):
    root, truth = make_folder(tmp_path / "d", n=6, size=48, mode="binary", gray=True)
    data, _ = _build(root, image_size=16, val_fraction=0.34)
    assert data.info.num_classes == 2 and data.info.input_shape == (16, 16, 1)
    assert data.info.extra["mask_values"] == {"0": 0, "255": 1}
    x, y = _take(data.val)
    assert x.shape == (2, 16, 16, 1) and y.shape == (2, 16, 16)
    for mask, stem in zip(y, data.info.extra["val_stems"]):
        # nearest-neighbour from 48 to 16: every third pixel (PIL samples the centre, offset 1)
        assert np.array_equal(mask, truth[stem][1::3, 1::3])


def test_mask_values_mapping_and_config_round_trip(tmp_path):
    root, truth = make_folder(tmp_path / "d", n=6, mode="spread")
    data, cfg = _build(root, image_size=24, val_fraction=0.34, mask_values="0:0,100:1,200:2,250:3")
    assert data.info.num_classes == 4
    _, y = _take(data.val)
    assert np.array_equal(y, np.stack([truth[s] for s in data.info.extra["val_stems"]]))
    # The mapping also merges values (many -> one class), and survives config.json (a string).
    data, cfg = _build(root, image_size=24, mask_values="{0: 0, 100: 1, 200: 1, 250: 1}")
    assert data.info.num_classes == 2
    again = config_from_dict(get_task("segmentation"), json.loads(json.dumps(cfg.to_dict())))
    assert seg.parse_mask_values(again.mask_values) == {0: 0, 100: 1, 200: 1, 250: 1}
    with pytest.raises(UserError, match=r"mask_values=.*expected value:class pairs such as 0:0,255:1"):
        seg.parse_mask_values("0-0,255-1")


def test_mask_value_outside_mapping_or_classes_names_the_file(tmp_path):
    root, _ = make_folder(tmp_path / "d", n=4, mode="spread")
    with pytest.raises(DataError, match=r"masks/\d\.png: mask value\(s\) \[(100|200|250).*not in mask_values"):
        _build(root, image_size=24, mask_values="0:0,100:1")
    with pytest.raises(DataError, match=r"masks/\d\.png: mask value (200|250) exceeds the number of classes \(32\)"):
        _build(root, image_size=24)  # raw 0/100/200/250 are no class indices
    root, _ = make_folder(tmp_path / "e", n=4, mode="index")
    with pytest.raises(DataError, match=r"masks/\d\.png: mask value [23] exceeds the number of classes \(2\); raise --set num_classes"):
        _build(root, image_size=24, num_classes=2)


def test_unmatched_stems_and_unreadable_files_name_the_file(tmp_path):
    root, _ = make_folder(tmp_path / "d", n=4)
    (root / "masks" / "2.png").unlink()
    with pytest.raises(DataError, match=r"images/2\.png: no mask with the same stem in .*masks"):
        _build(root, image_size=24)
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(root / "masks" / "2.png")
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(root / "masks" / "extra.png")
    with pytest.raises(DataError, match=r"masks/extra\.png: mask without an image of the same stem"):
        _build(root, image_size=24)
    (root / "masks" / "extra.png").unlink()
    (root / "masks" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(DataError, match=r"masks/1\.png: unreadable or corrupt mask"):
        _build(root, image_size=24)
    Image.fromarray(np.zeros((24, 24), np.uint8)).save(root / "masks" / "1.png")
    (root / "images" / "3.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"images/3\.png: unreadable or corrupt image"):
        _build(root, image_size=24)
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"expected sub-folders images/ and masks/"):
        _build(tmp_path / "flat")


def test_colour_mask_is_rejected_by_name(tmp_path):
    root, _ = make_folder(tmp_path / "d", n=3)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(root / "masks" / "0.png")
    with pytest.raises(DataError, match=r"masks/0\.png: colour mask; expected a single-channel index"):
        _build(root, image_size=24)


def test_oxford_pets_under_mock_data_with_differently_sized_masks():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):  # mock images and masks have different random sizes
        data, _ = _build("tfds:oxford_iiit_pet", image_size=16)
        assert data.info.source == "tfds:oxford_iiit_pet"
        assert data.info.class_names == ("background", "pet", "border") and data.info.input_shape == (16, 16, 3)
        x, y = _take(data.train, 8)
        assert x.shape == (8, 16, 16, 3) and y.shape == (8, 16, 16) and y.dtype == np.int32
        assert set(np.unique(y)) <= {0, 1, 2}
    with pytest.raises(UserError, match=r"tfds:mnist: segmentation reads tfds:oxford_iiit_pet"):
        _build("tfds:mnist")


def test_trimap_mapping():
    import tensorflow as tf

    ex = {"image": tf.zeros((5, 7, 3), tf.uint8), "segmentation_mask": tf.constant([[[1], [2], [3]]], tf.uint8)}
    ds = seg.from_tfds_pets(tf.data.Dataset.from_tensors(ex), (1, 3))
    _, mask = next(iter(ds))
    assert mask.numpy().tolist() == [[1, 0, 2]]  # pet 1, background 0, border 2


def test_augmentation_moves_image_and_mask_together():
    import tensorflow as tf

    mask = np.zeros((32, 32), np.int32)
    mask[4:20, 6:14] = 1
    mask[22:30, 18:30] = 2
    image = np.repeat((mask / 2.0).astype(np.float32)[..., None], 3, axis=-1)
    changed = 0
    for i in range(6):
        seed = tf.constant([7, i], tf.int64)
        x, y = seg.augment_pair(tf.constant(image), tf.constant(mask), seed, max_zoom=0.3)
        x2, y2 = seg.augment_pair(tf.constant(image), tf.constant(mask), seed, max_zoom=0.3)
        x, y = x.numpy(), y.numpy()
        assert np.array_equal(x, x2.numpy()) and np.array_equal(y, y2.numpy())  # stateless: same seed, same result
        assert x.shape == (32, 32, 3) and y.shape == (32, 32) and y.dtype == np.int32
        agree = np.mean(np.round(x[..., 0] * 2) == y)
        assert agree > 0.93, agree  # only the blurred edges of the bilinear image may disagree
        changed += not np.array_equal(y, mask)
    assert changed >= 4


def test_dice_loss_in_keras_ops():
    import keras

    from keras_models.unet import ce_dice_loss, dice_loss

    y = np.array([[[0, 1], [2, 1]]], np.int32)
    perfect = keras.ops.convert_to_tensor(np.eye(3, dtype=np.float32)[y] * 20.0)
    uniform = keras.ops.zeros((1, 2, 2, 3))
    assert float(dice_loss(y, perfect)) < 0.01
    assert float(dice_loss(y, uniform)) == pytest.approx(1 - np.mean([(2 / 3 + 1) / (4 / 3 + 1 + 1), (2 * 2 / 3 + 1) / (4 / 3 + 2 + 1),
                                                                   (2 / 3 + 1) / (4 / 3 + 1 + 1)]), abs=1e-5)
    assert float(ce_dice_loss(y, uniform)) == pytest.approx(np.log(3) + float(dice_loss(y, uniform)), abs=1e-5)
