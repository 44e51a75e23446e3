"""Tracking data and metrics: OTB metrics against hand-computed values, the OTB and GOT-10k readers
(separators, the real Crossing sequence, one-line errors), generated sequences, pair sampling."""

import numpy as np
import pytest
from PIL import Image

from conftest import shared_data
from errors import DataError
from pipelines import sequences as seqs
from training import tracking_metrics as otb

# --- metrics ---------------------------------------------------------------------------------------


def test_otb_success_auc_and_precision_match_hand_computed_values():
    true = np.array([[0, 0, 10, 10]] * 3, np.float32)
    # frame 1 is the given box (not scored); frame 2 exact (IoU 1, centre error 0);
    # frame 3 shifted 5 px right: IoU 50/150 = 1/3, centre error 5.
    pred = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [5, 0, 10, 10]], np.float32)
    # IoU > t for t in 0..0.30 (7 thresholds): 2/2; 0.35..0.95 (13): 1/2; t = 1: 0/2.
    scores = otb.otb_scores([pred], [true])
    assert scores["success_auc"] == pytest.approx((7 * 1 + 13 * 0.5) / 21)
    assert scores["precision_20"] == 1.0
    far = pred.copy()
    far[2] = [25, 0, 10, 10]  # centre error 25 > 20, no overlap
    assert otb.otb_scores([far], [true]) == pytest.approx({"success_auc": (20 * 0.5 + 0) / 21, "precision_20": 0.5})
    # sequences weigh equally: the mean of the two sequences' figures
    both = otb.otb_scores([pred, far], [true, true])
    assert both["precision_20"] == pytest.approx(0.75)
    assert both["success_auc"] == pytest.approx(((7 + 6.5) / 21 + 10 / 21) / 2)


def test_iou_and_stay_baseline():
    a = np.array([[0, 0, 4, 4], [0, 0, 4, 4]], np.float32)
    b = np.array([[2, 2, 4, 4], [10, 10, 1, 1]], np.float32)
    assert otb.iou(a, b) == pytest.approx([4 / 28, 0.0])
    moving = np.array([[0, 0, 4, 4], [30, 0, 4, 4], [60, 0, 4, 4]], np.float32)
    stay = otb.stay_baseline(moving)
    assert (stay == moving[0]).all()
    assert otb.otb_scores([stay], [moving]) == {"success_auc": 0.0, "precision_20": 0.0}


# --- readers ---------------------------------------------------------------------------------------


def _frames(folder, n, size=(24, 16)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", size, (i * 10, 0, 0)).save(folder / f"{i + 1:04d}.jpg")


@pytest.mark.parametrize("sep", [",", "\t", " "])
def test_otb_layout_reads_comma_tab_or_space_separated_boxes(tmp_path, sep):
    _frames(tmp_path / "walk" / "img", 3)
    (tmp_path / "walk" / "groundtruth_rect.txt").write_text(
        "\n".join(sep.join(map(str, [i + 1, 2, 5, 6])) for i in range(3)) + "\n")
    seq = seqs.read_sequence(tmp_path / "walk")
    assert len(seq) == 3 and seq.frame(2).shape == (16, 24, 3)
    assert seq.boxes.tolist() == [[0, 1, 5, 6], [1, 1, 5, 6], [2, 1, 5, 6]]  # 1-based -> 0-based


def test_got10k_layout_and_sequence_folders(tmp_path):
    got = tmp_path / "GOT-10k_Train_000001"
    got.mkdir()
    for i in range(4):
        Image.new("RGB", (20, 20)).save(got / f"{i + 1:08d}.jpg")
    (got / "groundtruth.txt").write_text("1.5,2,3,4\n" * 4)
    seq = seqs.read_sequence(got)
    assert len(seq) == 4 and seq.boxes[0].tolist() == [0.5, 1, 3, 4]
    assert seqs.find_sequences(tmp_path) == [got]


def test_crossing_is_read_as_shipped():
    seq = seqs.read_sequence(shared_data("otb") / "Crossing")
    assert len(seq) == 120 and seq.boxes.shape == (120, 4)
    assert seq.boxes[0].tolist() == [204, 150, 17, 50]
    assert seq.frame(0).ndim == 3


def _sequence(tmp_path, lines, n_frames=3):
    _frames(tmp_path / "s" / "img", n_frames)
    (tmp_path / "s" / "groundtruth_rect.txt").write_text(lines)
    return tmp_path / "s"


@pytest.mark.parametrize("lines, message", [
    ("1,2,3,4\n1,2,3\n1,2,3,4\n", "groundtruth_rect.txt line 2: expected four numbers x,y,w,h, got '1,2,3'"),
    ("1,2,3,4\n1,2,x,4\n1,2,3,4\n", "groundtruth_rect.txt line 2: expected four numbers"),
    ("1,2,3,4\n1,2,3,4\n", "groundtruth_rect.txt: 2 ground-truth lines for 3 frames"),
    ("1,2,3,4\n1,2,0,4\n1,2,3,4\n", "groundtruth_rect.txt line 2: empty or zero-size box"),
])
def test_bad_ground_truth_is_one_line_naming_file_and_line(tmp_path, lines, message):
    with pytest.raises(DataError) as err:
        seqs.read_sequence(_sequence(tmp_path, lines))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unreadable_frame_names_the_file(tmp_path):
    folder = _sequence(tmp_path, "1,2,3,4\n" * 3)
    (folder / "img" / "0002.jpg").write_bytes(b"not a jpeg")
    seq = seqs.read_sequence(folder)
    with pytest.raises(DataError, match=r"0002\.jpg: unreadable frame"):
        seq.frame(1)


# --- generated sequences and pairs ----------------------------------------------------------------


def test_generated_sequences_are_seeded_and_split_by_stream():
    a = seqs.generate_sequence(0, "train", 1, 6, 64)
    assert (a.frames == seqs.generate_sequence(0, "train", 1, 6, 64).frames).all()
    assert not (a.frames == seqs.generate_sequence(0, "validation", 1, 6, 64).frames).all()
    assert not (a.frames == seqs.generate_sequence(1, "train", 1, 6, 64).frames).all()
    speed = np.linalg.norm(np.diff(a.boxes[:, :2] + a.boxes[:, 2:] / 2, axis=0), axis=1)
    assert a.frames.shape == (6, 64, 64, 3) and speed.max() > 0 and (a.boxes[:, 2:] > 0).all()


def test_pairs_come_from_one_sequence_within_the_frame_gap():
    import tensorflow as tf

    from pipelines import tracking

    sequences = [seqs.generate_sequence(0, "train", i, n, 48) for i, n in enumerate((10, 30, 5))]
    source = tracking.FrameSource(sequences)
    spec = tracking.PairSpec(31, 63, 9, 4, max_frame_gap=4)
    offsets = [0, 10, 40]
    gaps = []
    for k in range(300):
        s, t = k % 3, (k * 7) % len(sequences[k % 3])
        iz, ix = (int(v) for v in tracking.pair_frames(source, spec, s, t, tf.constant([k, 5], tf.int64)))
        assert iz == offsets[s] + t and offsets[s] <= ix < offsets[s] + len(sequences[s])
        gaps.append(ix - iz)
        assert abs(ix - iz) <= 4
    assert min(gaps) == -4 and max(gaps) == 4  # both directions, the whole bound
    again = tracking.pair_frames(source, spec, 1, 7, tf.constant([3, 5], tf.int64))
    assert [int(v) for v in again] == [int(v) for v in tracking.pair_frames(source, spec, 1, 7, tf.constant([3, 5], tf.int64))]


def test_pair_label_marks_the_target_where_the_shift_put_it():
    from pipelines import tracking

    spec = tracking.PairSpec(31, 63, 9, 4, positive_radius=1.0)
    centred = tracking.response_label(spec, np.zeros(2, np.float32)).numpy()
    assert centred[4, 4] == 1 and centred.sum() == 5  # the centre cell and its 4 neighbours
    moved = tracking.response_label(spec, np.array([8.0, -4.0], np.float32)).numpy()  # 2 cells right, 1 up
    assert moved[3, 6] == 1 and moved[4, 4] == 0
    sequences = [seqs.generate_sequence(0, "train", 0, 8, 64)]
    ds, augment, n = tracking.training_pairs(sequences, spec)
    x, y = augment(*next(iter(ds)), np.array([1, 2], np.int64))
    assert n == 8 and x["exemplar"].shape == (31, 31, 3) and x["search"].shape == (63, 63, 3) and y.shape == (9, 9)
    assert float(y.numpy().sum()) >= 1
