"""Detection: box encoding, NMS, COCO mAP on known cases, label formats and their errors."""

import json

import numpy as np
import pytest
from keras import ops
from PIL import Image

from errors import DataError
from keras_models import detector
from pipelines import detection as det_data
from tasks import detection as task_mod
from tasks.base import get_task, resolve_config

NUM_CLASSES = 3


def _np(x):
    return ops.convert_to_numpy(x)


# --- encoding, decoding, NMS -------------------------------------------------------------------


def test_encode_then_decode_returns_the_boxes():
    gt = np.array([[[4, 8, 30, 40, 0], [20, 20, 60, 50, 2], [0, 0, 0, 0, -1]],
                   [[10, 10, 21, 19, 1], [33, 2, 63, 29, 1], [0, 0, 0, 0, -1]]], np.float32)
    heat, positive, regression, centres = detector.encode_targets(gt, NUM_CLASSES, grid_size=16, stride=4)
    assert _np(heat).shape == (2, 16, 16, 3) and float(_np(heat).max()) == pytest.approx(1.0)
    assert _np(positive).sum() == 4 and _np(centres).sum() == 4
    # A "perfect" model output: confident exactly at the centre cells, the encoded regression.
    outputs = ops.concatenate([ops.where(positive > 0, 12.0, -12.0), regression], axis=-1)
    dets = {k: _np(v) for k, v in detector.decode_predictions(outputs, NUM_CLASSES, 4, (64, 64)).items()}
    for i in range(2):
        n = int(dets["num_detections"][i])
        valid = gt[i, :, 4] >= 0
        assert n == valid.sum()
        got = sorted(zip(dets["classes"][i, :n].tolist(), dets["boxes"][i, :n].round(3).tolist()))
        want = sorted(zip(gt[i, valid, 4].astype(int).tolist(), gt[i, valid, :4].tolist()))
        assert [c for c, _ in got] == [c for c, _ in want]
        np.testing.assert_allclose([b for _, b in got], [b for _, b in want], atol=1e-3)


def test_loss_is_near_zero_for_perfect_outputs_and_large_for_blank_ones():
    gt = np.array([[[4, 8, 30, 40, 0], [20, 20, 60, 50, 2]]], np.float32)
    heat, positive, regression, _ = detector.encode_targets(gt, NUM_CLASSES, 16, 4)
    loss = detector.CenterNetLoss(NUM_CLASSES, 16, 4)
    perfect = ops.concatenate([ops.where(positive > 0, 12.0, -12.0), regression], axis=-1)
    blank = ops.concatenate([ops.zeros_like(heat), ops.zeros_like(regression)], axis=-1)
    assert float(loss(gt, perfect)) < 1e-3 < 1.0 < float(loss(gt, blank))


def test_nms_keeps_the_best_of_overlapping_boxes_per_class_only():
    boxes = np.array([[[10, 10, 30, 30], [11, 11, 31, 31], [12, 10, 30, 32], [40, 40, 60, 60], [0, 0, 5, 5]]], np.float32)
    scores = np.zeros((1, 5, 2), np.float32)
    scores[0, 0, 0] = 0.9   # class 0
    scores[0, 1, 0] = 0.8   # class 0, IoU 0.82 with box 0: suppressed
    scores[0, 2, 1] = 0.7   # class 1 over box 0: another class, kept
    scores[0, 3, 0] = 0.6   # class 0 far away: kept
    scores[0, 4, 0] = 0.01  # below the score threshold: dropped
    dets = {k: _np(v) for k, v in detector.per_class_nms(boxes, scores, iou_threshold=0.5, score_threshold=0.05,
                                                         max_detections=10, image_size=(64, 64)).items()}
    n = int(dets["num_detections"][0])
    assert n == 3
    np.testing.assert_allclose(dets["scores"][0, :n], [0.9, 0.7, 0.6], atol=1e-6)
    assert dets["classes"][0, :n].tolist() == [0, 1, 0]
    np.testing.assert_allclose(dets["boxes"][0, :n], boxes[0, [0, 2, 3]])


# --- COCO mAP on hand-built cases ---------------------------------------------------------------


def _dets(boxes, scores, classes):
    return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "scores": np.asarray(scores, np.float32),
            "classes": np.asarray(classes, np.int32)}


def test_coco_map_known_answers():
    truth = [(np.array([[10, 10, 30, 30]], np.float32), np.array([0])),
             (np.array([[5, 5, 25, 45]], np.float32), np.array([1]))]
    perfect = [_dets([[10, 10, 30, 30]], [0.9], [0]), _dets([[5, 5, 25, 45]], [0.8], [1])]
    scores, table = task_mod.coco_map(truth, perfect, 2)
    assert scores["map"] == pytest.approx(1.0) and scores["map50"] == pytest.approx(1.0)
    assert "Average Precision  (AP) @[ IoU=0.50:0.95" in table
    # Image 1: a class-1 box where a class-0 object is (class 0 missed: AP 0; a class-1 false
    # positive ranked first). Image 2: the class-1 object found with IoU 0.625, so it matches at
    # IoU thresholds .50, .55, .60 only. Class 1: precision 0.5 at recall 1 -> AP 0.5 at those three
    # thresholds, 0 above. mAP@.5 = (0 + 0.5) / 2; mAP@[.5:.95] = (0 + 3 * 0.5 / 10) / 2.
    shifted = [_dets([[10, 10, 30, 30]], [0.9], [1]), _dets([[5, 5, 25, 30]], [0.8], [1])]
    assert 0.60 <= (20 * 25) / (20 * 40) < 0.65
    scores, _ = task_mod.coco_map(truth, shifted, 2)
    assert scores["map50"] == pytest.approx(0.25, abs=1e-4)
    assert scores["map"] == pytest.approx(0.075, abs=1e-4)
    # A single-class case computed by hand with COCO's 101-point interpolation: two images with one
    # box each; only the first is detected -> precision 1 up to recall 0.5, then nothing: 51/101.
    truth1 = [(np.array([[10, 10, 30, 30]], np.float32), np.array([0])),
              (np.array([[10, 10, 30, 30]], np.float32), np.array([0]))]
    half = [_dets([[10, 10, 30, 30]], [0.9], [0]), _dets([], [], [])]
    scores, _ = task_mod.coco_map(truth1, half, 1)
    assert scores["map50"] == pytest.approx(51 / 101, abs=1e-4) and scores["map"] == pytest.approx(51 / 101, abs=1e-4)
    one_at_iou = [_dets([[10, 10, 30, 30]], [0.9], [0]), _dets([[10, 10, 30, 35]], [0.8], [0])]  # IoU 0.8
    scores, _ = task_mod.coco_map(truth1, one_at_iou, 1)
    # IoU 0.8 matches at thresholds .50 ... .80 (7 of 10); above that, recall 0.5 -> AP 51/101.
    assert scores["map50"] == pytest.approx(1.0)
    assert scores["map"] == pytest.approx((7 * 1.0 + 3 * 51 / 101) / 10, abs=1e-4)
    assert task_mod.coco_map(truth1, [_dets([], [], []), _dets([], [], [])], 1)[0]["map50"] == 0.0


# --- label formats -------------------------------------------------------------------------------


def _image(path, w=40, h=20):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(path)


def _build(tmp_path, *sets):
    task = get_task("detection")
    cfg = resolve_config(task, sets=[f"data={tmp_path}", "image_size=32", *sets])
    return task.build_datasets(cfg)


def _targets(ds):
    return np.stack([y for _, y in ds.as_numpy_iterator()])


def test_csv_folder_reads_boxes_scaled_to_the_model_input(tmp_path):
    _image(tmp_path / "images" / "a.jpg")
    _image(tmp_path / "images" / "b.jpg")
    header = "filename,width,height,class,xmin,ymin,xmax,ymax\n"
    (tmp_path / "train_labels.csv").write_text(header + "a.jpg,40,20,cat,0,0,20,10\na.jpg,40,20,dog,20,10,40,20\n")
    (tmp_path / "val_labels.csv").write_text(header + "b.jpg,40,20,dog,10,5,30,15\n")
    (tmp_path / "test_labels.csv").write_text(header + "b.jpg,40,20,cat,0,0,40,20\n")
    data = _build(tmp_path)
    assert data.info.class_names == ("cat", "dog") and (data.info.num_train, data.info.num_val) == (1, 1)
    assert data.info.num_test == 1 and data.test is not None  # test_labels.csv is the test split, not validation
    assert data.info.input_shape == (32, 32, 3) and data.info.extra["max_boxes"] == 2
    np.testing.assert_allclose(_targets(data.train)[0], [[0, 0, 16, 16, 0], [16, 16, 32, 32, 1]])
    np.testing.assert_allclose(_targets(data.val)[0], [[8, 8, 24, 24, 1], [0, 0, 0, 0, -1]])


@pytest.mark.parametrize("row, message", [
    ("a.jpg,40,20,cat,0,0,20\n", "train_labels.csv:2: expected 8 comma-separated fields, got 7"),
    ("a.jpg,40,20,cat,0,0,x,10\n", "train_labels.csv:2: xmax 'x' is not a number"),
    ("a.jpg,40,20,cat,0,0,60,10\n", "train_labels.csv:2: box (0, 0, 60, 10) lies outside the 40x20 image"),
    ("a.jpg,40,20,cat,30,0,20,10\n", "train_labels.csv:2: empty box"),
    ("zz.jpg,40,20,cat,0,0,20,10\n", "train_labels.csv:2: image 'zz.jpg' not found"),
    ("a.jpg,40,20,bird,0,0,20,10\n", "train_labels.csv:2: unknown class name 'bird'; known: cat, dog"),
])
def test_csv_errors_name_file_and_line(tmp_path, row, message):
    _image(tmp_path / "images" / "a.jpg")
    header = "filename,width,height,class,xmin,ymin,xmax,ymax\n"
    (tmp_path / "train_labels.csv").write_text(header + row)
    (tmp_path / "val_labels.csv").write_text(header + "a.jpg,40,20,cat,0,0,20,10\n")
    with pytest.raises(DataError, match="^" + str(tmp_path).replace("\\", "\\\\") + ".*" + message.replace("(", r"\(").replace(")", r"\)")):
        _build(tmp_path, "classes=cat,dog")


def test_yolo_folder_with_names_negatives_and_errors(tmp_path):
    for split in ("train", "val"):
        _image(tmp_path / "images" / split / "p.png")
        _image(tmp_path / "images" / split / "q.png")
        (tmp_path / "labels" / split).mkdir(parents=True)
        (tmp_path / "labels" / split / "p.txt").write_text("1 0.25 0.5 0.5 1.0\n0 0.75 0.5 0.5 0.5\n")
        (tmp_path / "labels" / split / "q.txt").write_text("")  # an image with no objects
    (tmp_path / "data.yaml").write_text("names:\n  0: person\n  1: bicycle\n")
    data = _build(tmp_path)
    assert data.info.class_names == ("person", "bicycle") and data.info.num_train == 2
    t = _targets(data.train)
    np.testing.assert_allclose(t[0], [[0, 0, 16, 32, 1], [16, 8, 32, 24, 0]])
    np.testing.assert_allclose(t[1], [[0, 0, 0, 0, -1]] * 2)  # negative example: padding only
    label = tmp_path / "labels" / "train" / "p.txt"
    label.write_text("1 0.25 0.5 0.5\n")
    with pytest.raises(DataError, match=rf"p.txt:1: expected 'class cx cy w h' \(5 fields\), got 4"):
        _build(tmp_path)
    label.write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match=r"p.txt:2: class index 7 outside 0..1"):
        _build(tmp_path)
    label.write_text("0 0.5 1.5 0.2 0.2\n")
    with pytest.raises(DataError, match=r"p.txt:1: expected normalised values in \[0, 1\]"):
        _build(tmp_path)
    label.unlink()
    with pytest.raises(DataError, match=r"p.png: no label file .*p.txt \(an empty file marks an image with no objects\)"):
        _build(tmp_path)


VOC_XML = """<annotation><filename>{name}</filename><size><width>40</width><height>20</height><depth>3</depth></size>
<object><name>{cls}</name><bndbox><xmin>{x1}</xmin><ymin>0</ymin><xmax>20</xmax><ymax>10</ymax></bndbox></object>
</annotation>"""


def test_pascal_voc_folder_and_errors(tmp_path):
    for i in range(4):
        _image(tmp_path / "JPEGImages" / f"im{i}.jpg")
        (tmp_path / "Annotations").mkdir(exist_ok=True)
        (tmp_path / "Annotations" / f"im{i}.xml").write_text(
            VOC_XML.format(name=f"im{i}.jpg", cls="cat" if i % 2 else "dog", x1=0))
    data = _build(tmp_path, "val_fraction=0.25")
    assert data.info.class_names == ("cat", "dog") and (data.info.num_train, data.info.num_val) == (3, 1)
    assert {tuple(r[0]) for r in _targets(data.train)} <= {(0, 0, 16, 16, 0), (0, 0, 16, 16, 1)}
    bad = tmp_path / "Annotations" / "im0.xml"
    bad.write_text(VOC_XML.format(name="im0.jpg", cls="dog", x1=-9))
    with pytest.raises(DataError, match=r"im0.xml: object 1: box \(-9, 0, 20, 10\) lies outside the 40x20 image"):
        _build(tmp_path)
    bad.write_text("<annotation><filename>im0.jpg</filename><object>")
    with pytest.raises(DataError, match=r"im0.xml: malformed XML"):
        _build(tmp_path)
    bad.write_text(VOC_XML.format(name="im0.jpg", cls="horse", x1=0))
    with pytest.raises(DataError, match=r"im0.xml: object 1: unknown class name 'horse'; known: cat, dog"):
        _build(tmp_path, "classes=cat,dog")


def test_flip_moves_boxes_with_the_image():
    import tensorflow as tf

    image = np.zeros((8, 8, 3), np.float32)
    image[1:3, 0:2] = 1.0  # a bright square at x 0..2, y 1..3
    targets = np.array([[0, 1, 2, 3, 0], [0, 0, 0, 0, -1]], np.float32)
    flipped = 0
    for seed in range(8):
        img, t = det_data.flip_and_brightness(tf.constant(image), tf.constant(targets), tf.constant([seed, 0], tf.int64))
        img, t = img.numpy(), t.numpy()
        np.testing.assert_allclose(t[1], [0, 0, 0, 0, -1])  # padding untouched
        x1, y1, x2, y2 = t[0, :4].astype(int)
        bright = img.mean(-1) > img.mean()
        assert bright[y1:y2, x1:x2].all() and bright.sum() == 4
        flipped += x1 == 6
    assert 0 < flipped < 8


def test_tfds_voc_under_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=4):
        data = get_task("detection").build_datasets(
            resolve_config(get_task("detection"), sets=["data=tfds:voc/2007", "image_size=32"]))
        x, y = next(data.train.as_numpy_iterator())
    assert data.info.num_classes == 20 and data.info.class_names[0] == "aeroplane"
    assert x.shape == (32, 32, 3) and y.shape == (50, 5)
    valid = y[:, 4] >= 0
    assert valid.any() and (y[valid, 4] < 20).all() and (y[~valid, 4] == -1).all()
