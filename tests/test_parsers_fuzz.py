"""Every file parser, fed random bytes and random lines, raises only the project's own errors.

Each entry of PARSERS takes a path to a file holding the fuzzed content; a parser may succeed or
raise errors.UserError (DataError included). Anything else (IndexError, UnicodeDecodeError,
struct.error, a PIL exception...) would reach the user as a traceback, and fails the test.
"""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from errors import UserError
from pipelines import files

def _with_image(path: Path, name: str = "x.png") -> Path:
    """A folder beside the fuzzed file holding one valid image, for label parsers to point at."""
    folder = path.parent / "images"
    folder.mkdir(exist_ok=True)
    if not (folder / name).exists():
        from PIL import Image

        Image.new("RGB", (8, 8)).save(folder / name)
    return folder


def _yolo_label(path: Path):
    images = _with_image(path)
    labels = path.parent / "labels"
    labels.mkdir(exist_ok=True)
    (labels / "x.txt").write_bytes(path.read_bytes())
    return detection.read_yolo(images, labels)


def _voc_xml(path: Path):
    images = _with_image(path)
    xmls = path.parent / "xml"
    xmls.mkdir(exist_ok=True)
    (xmls / "x.xml").write_bytes(path.read_bytes())
    return detection.read_voc(xmls, [images])


def _yolo_names(path: Path):
    root = path.parent / "yolo"
    root.mkdir(exist_ok=True)
    (root / "data.yaml").write_bytes(path.read_bytes())
    return detection.read_yolo_names(root)


def _tsv(path: Path):
    tsv = path.with_suffix(".tsv")
    tsv.write_bytes(path.read_bytes())
    return text.read_file(tsv, "text", "label")


from pipelines import detection, segmentation, text  # noqa: E402

PARSERS = {
    "idx": lambda p: files.read_idx(p),
    "image": lambda p: files.load_image(p, (8, 8)),
    "image_gray": lambda p: files.load_image(p, None, channels=1),
    "detection_csv": lambda p: detection.read_csv(p, [_with_image(p)]),
    "detection_yolo_label": _yolo_label,
    "detection_voc_xml": _voc_xml,
    "detection_yolo_names": _yolo_names,
    "text_label_sentence": lambda p: text.read_label_sentence(p),
    "text_csv": lambda p: text.read_delimited(p, "text", "label"),
    "text_tsv": _tsv,
    "segmentation_mask": lambda p: segmentation.load_mask(p, (8, 8)),
}

# Real headers make the fuzzer reach past the magic-number checks.
PREFIXES = [b"", b"filename,width,height,class,xmin,ymin,xmax,ymax\nx.png,", b"0 0.5 0.5 ", b"<annotation><object>",
            b"names: ", b"text,label\n", b"1 ", b"\x00\x00\x08\x03", b"\x00\x00\x08\x01\x00\x00\x00\x02", b"\x89PNG\r\n\x1a\n",
            b"\xff\xd8\xff\xe0", b"\x1f\x8b\x08\x00", b"GIF89a", b"BM"]

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _check(parser, path: Path):
    try:
        parser(path)
    except UserError as exc:
        assert str(exc) and "\n" not in str(exc), "errors are one line"


@pytest.mark.parametrize("name", sorted(PARSERS))
@FUZZ
@given(prefix=st.sampled_from(PREFIXES), data=st.binary(max_size=600))
def test_random_bytes_raise_only_project_errors(tmp_path, name, prefix, data):
    path = tmp_path / f"fuzz-{name}.bin"
    path.write_bytes(prefix + data)
    _check(PARSERS[name], path)


@pytest.mark.parametrize("name", sorted(PARSERS))
@FUZZ
@given(lines=st.lists(st.text(max_size=40), max_size=8))
def test_random_lines_raise_only_project_errors(tmp_path, name, lines):
    path = tmp_path / f"fuzz-{name}.txt"
    path.write_bytes("\n".join(lines).encode("utf-8", errors="replace"))
    _check(PARSERS[name], path)


@FUZZ
@given(pairs=st.lists(st.text(max_size=20), max_size=4))
def test_random_set_overrides_raise_only_user_errors(pairs):
    from tasks.base import get_task, resolve_config

    try:
        resolve_config(get_task("classification"), sets=pairs)
    except UserError as exc:
        assert "\n" not in str(exc)
