"""Issue #6 acceptance: three kinds of bad file, three different one-line messages, no traceback."""

import numpy as np
from PIL import Image

from pipelines import shapes


def _image(path, size=32, index=0):
    Image.fromarray(shapes.render_scene(shapes.SceneSpec(size=size), 0, "train", index).image).save(path)


def _err(cli, capsys, *argv):
    assert cli(*argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_truncated_jpeg_wrong_mask_values_and_malformed_label_line(cli, tmp_path, capsys):
    # 1. A class folder with one truncated JPEG.
    cls = tmp_path / "cls"
    for name in ("a", "b"):
        (cls / name).mkdir(parents=True)
        for i in range(3):
            _image(cls / name / f"{i}.jpg", index=i)
    truncated = cls / "b" / "1.jpg"
    truncated.write_bytes(truncated.read_bytes()[:60])
    m1 = _err(cli, capsys, "fit", "--task", "classification", "--data", cls, "--preset", "debug")
    assert m1.startswith(f"error: {truncated}: unreadable or corrupt image")

    # 2. A segmentation folder with one mask whose values exceed the classes.
    seg = tmp_path / "seg"
    (seg / "images").mkdir(parents=True)
    (seg / "masks").mkdir()
    for i in range(4):
        _image(seg / "images" / f"{i}.png", index=i)
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(seg / "masks" / f"{i}.png")
    bad_mask = seg / "masks" / "2.png"
    Image.fromarray(np.full((32, 32), 7, np.uint8)).save(bad_mask)
    m2 = _err(cli, capsys, "fit", "--task", "segmentation", "--data", seg, "--preset", "debug",
              "--set", "num_classes=2")
    assert m2.startswith(f"error: {bad_mask}: mask value 7 exceeds the number of classes")

    # 3. A YOLO folder with one malformed label line.
    det = tmp_path / "det"
    (det / "images").mkdir(parents=True)
    (det / "labels").mkdir()
    for i in range(4):
        _image(det / "images" / f"{i}.png", index=i)
        (det / "labels" / f"{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    bad_label = det / "labels" / "3.txt"
    bad_label.write_text("0 0.5 0.5 0.2 0.2\n0 0.5 oops\n")
    m3 = _err(cli, capsys, "fit", "--task", "detection", "--data", det, "--preset", "debug")
    assert m3.startswith(f"error: {bad_label}:2: expected 'class cx cy w h' (5 fields), got 3")

    assert len({m1, m2, m3}) == 3
