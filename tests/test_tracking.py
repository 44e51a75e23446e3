"""The tracking task on the current backend: the cross-correlation and the crops against direct
computations, the balanced logistic loss by hand, a short fit that tracks better than the box that
stays where it started, predict's outputs (OTB text, JSON, GIF, PNG frames) and its errors."""

import json

import numpy as np
import pytest

from conftest import FAST_JIT
from pipelines import sequences as seqs


def test_cross_correlation_matches_a_direct_numpy_computation():
    from keras import ops

    from keras_models.siamese import CrossCorrelation, cross_correlate

    rng = np.random.default_rng(0)
    z, x = rng.normal(size=(2, 3, 4, 5)).astype("float32"), rng.normal(size=(2, 7, 9, 5)).astype("float32")
    want = np.zeros((2, 5, 6))
    for b in range(2):
        for i in range(5):
            for j in range(6):
                want[b, i, j] = np.sum(z[b] * x[b, i:i + 3, j:j + 4])
    assert np.allclose(ops.convert_to_numpy(cross_correlate(z, x)), want, atol=1e-4)
    layer = CrossCorrelation(init_scale=0.5)
    assert np.allclose(ops.convert_to_numpy(layer(z, x)), 0.5 * want, atol=1e-4)  # bias starts at 0


def test_balanced_logistic_loss_by_hand():
    from keras import ops

    from keras_models.siamese import BalancedLogisticLoss

    y = np.array([[[1, 0], [0, 0]]], np.float32)
    s = np.array([[[2.0, -1.0], [0.5, 0.0]]], np.float32)
    # positives share weight 0.5 (one of them), negatives 0.5 (three of them)
    want = 0.5 * np.log1p(np.exp(-2.0)) + 0.5 / 3 * (np.log1p(np.exp(-1.0)) + np.log1p(np.exp(0.5)) + np.log(2))
    assert float(ops.convert_to_numpy(BalancedLogisticLoss()(y, s))) == pytest.approx(want, rel=1e-5)


def test_tracker_crop_samples_the_same_points_as_the_pipeline_crop():
    import tensorflow as tf
    from keras import ops

    from keras_models.tracker import bicubic_matrix, crop
    from pipelines import tracking

    frame = (np.random.default_rng(1).random((30, 40, 3)) * 255).astype("float32")
    for centre, side in (([20.3, 14.7], 11.0), ([2.0, 3.0], 25.0)):  # the second reaches outside the frame
        want = tracking.crop(tf.constant(frame), tf.constant(centre), tf.constant(side), 9).numpy()
        got = ops.convert_to_numpy(crop(frame, np.array(centre, "float32"), np.array([side], "float32"), 9))[0]
        assert np.abs(got - want).max() < 1e-2
    m = bicubic_matrix(5, 20)
    assert np.allclose(m.sum(axis=1), 1.0) and np.allclose((m @ np.arange(5.0))[6:14], ((np.arange(20) + 0.5) / 4 - 0.5)[6:14], atol=1e-5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short fit (about 60 steps on small generated sequences) shared by the tests below."""
    from tasks.base import get_task, resolve_config
    from training.loop import fit

    task = get_task("tracking")
    cfg = resolve_config(task, preset="debug", sets=[
        FAST_JIT, "epochs=1", "num_train=40", "train_frames=12", "num_val=4", "eval_frames=16", "frame_size=96",
        "batch_size=8", "learning_rate=0.003", "warmup_steps=5", "val_pair_every=8", "num_test=0"])
    run_dir = tmp_path_factory.mktemp("tracking") / "run"
    return fit(task, cfg, run_dir, verbose=0)


def test_fit_tracks_validation_sequences_better_than_the_box_that_stays(trained):
    val = trained.metrics["validation"]
    assert val["loss"] < trained.metrics["first_loss"]
    # the stay-put box scores ~0.3 here; the trained tracker well above it
    assert val["success_auc"] >= val["stay_success_auc"] + 0.15, val
    assert val["precision_20"] >= val["stay_precision_20"], val
    assert val["fps"] > 0


def test_predict_writes_boxes_json_gif_and_frames_and_scores_ground_truth(trained, tmp_path, cli):
    seq = seqs.generate_sequence(5, "test", 0, 6, 96)
    folder = seqs.write_sequence(tmp_path / "clip", seq)
    out = tmp_path / "out"
    assert cli("predict", "--run-dir", trained.run_dir, "--out", out, folder) == 0
    boxes = (out / "clip" / "boxes.txt").read_text().splitlines()
    assert len(boxes) == 6 and [float(v) for v in boxes[0].split(",")] == pytest.approx(seq.boxes[0] + [1, 1, 0, 0], abs=0.01)
    assert len(json.loads((out / "clip" / "boxes.json").read_text())["boxes"]) == 6
    assert len(list((out / "clip" / "frames").glob("*.png"))) == 6
    from PIL import Image

    with Image.open(out / "clip" / "tracking.gif") as gif:
        assert gif.n_frames == 6
    # frames without ground truth and a first box given as a flag
    frames = tmp_path / "frames_only"
    frames.mkdir()
    for t in range(4):
        Image.fromarray(seq.frames[t]).save(frames / f"{t:03d}.png")
    box = ",".join(f"{v:.1f}" for v in seq.boxes[0] + [1, 1, 0, 0])
    assert cli("predict", "--run-dir", trained.run_dir, "--out", out, "--frames", frames, "--box", box) == 0
    assert len((out / "frames_only" / "boxes.txt").read_text().splitlines()) == 4


def test_predict_errors_are_one_line(trained, tmp_path, cli, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    seqs.write_sequence(tmp_path / "seq", seqs.generate_sequence(5, "test", 1, 3, 48))
    for args, message in (
        (["--frames", frames, "--box", "1,2,3"], "--box: expected four numbers x,y,w,h, got '1,2,3'"),
        (["--frames", frames, "--box", "1,2,0,3"], "--box: empty or zero-size box"),
        (["--frames", frames, "--box", "1,2,3,4"], "frames: no frames"),
        ([tmp_path / "frames"], "no ground truth file; give the first frame's box with --box"),
    ):
        assert cli("predict", "--run-dir", trained.run_dir, *args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and message in err and "\n" not in err, err
