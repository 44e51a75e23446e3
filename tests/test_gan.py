"""The GAN task: per-backend steps learn, the score network is trained and travels with the
weights, checkpoints carry both optimizers, predict writes a grid.

The learning test runs 8 short epochs of 40 steps (2 CPU cores). Measured validation sample
distance (kernel distance on the trained score network's features, lower is better) by epoch:
5.46 1.91 2.33 0.77 0.61 0.96 0.34 0.35 on TensorFlow, 1.36 1.09 1.93 1.38 0.61 0.24 0.20 0.25
on JAX; asserted: the last epoch's is under half the first's. (The score is noisy from epoch to
epoch, and with 4 epochs of 16-image batches the JAX run improved by only 0.71x, so the run is
longer and its batches larger.)
"""

import json

import keras
import numpy as np
import pytest
from PIL import Image

from conftest import BACKEND
from keras_models import gan as gan_models
from tasks.base import get_task, resolve_config


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory):
    import cli

    run = tmp_path_factory.mktemp("gan") / "run"
    rc = cli.main(["fit", "--task", "gan", "--preset", "debug", "--epochs", "8", "--batch-size", "32",
                   "--run-dir", str(run), "--set", "num_train=1280", "--set", "num_val=256",
                   "--set", "learning_rate=5e-4", "--set", "discriminator_learning_rate=1.25e-4",
                   "--set", "width=16", "--set", "score_steps=100", "--quiet"])
    assert rc == 0
    return run


def test_sample_distance_improves_from_first_to_last_epoch(gan_run):
    history = json.loads((gan_run / "history.json").read_text())
    distance = [h["val_sample_distance"] for h in history]
    assert len(distance) == 8 and distance[-1] < 0.5 * distance[0], f"sample distance by epoch: {distance}"
    last = history[-1]
    assert last["loss"] == pytest.approx(last["d_loss"] + last["g_loss"], rel=1e-4)
    assert last["step"] == 8 * (1280 // 32)  # model.optimizer.iterations: one per GAN step
    assert json.loads((gan_run / "metrics.json").read_text())["best"]["metric"] == "val_sample_distance"


def test_score_network_is_trained_first_and_restored_with_the_weights(gan_run, cli):
    """The score network learned the shape classes before the GAN's first step (data_info.json),
    and `evaluate` on the saved model scores exactly as training did: the network is in the weights."""
    score = json.loads((gan_run / "data_info.json").read_text())["extra"]["score_network"]
    assert score["target"] == "shape class" and score["num_classes"] == 6
    assert score["val_accuracy"] > 0.9, score  # chance: 1/6
    assert cli("evaluate", "--run-dir", gan_run) == 0
    evaluated = json.loads((gan_run / "eval-validation.json").read_text())["metrics"]["sample_distance"]
    last = json.loads((gan_run / "history.json").read_text())[-1]["val_sample_distance"]
    assert evaluated == pytest.approx(last, rel=1e-3, abs=1e-5)


def test_score_data_is_the_source_labels_else_quarter_turns(tmp_path):
    task = get_task("gan")

    def score_data(*sets):
        return task.build_datasets(resolve_config(task, "debug", sets=["image_size=16", *sets])).extras["score_data"]

    rng = np.random.default_rng(0)
    for i in range(8):  # two sub-folders: the folder name is the label
        folder = tmp_path / "sorted" / ("cats" if i % 2 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (16, 16), np.uint8)).save(folder / f"{i}.png")
    sorted_ = score_data(f"data={tmp_path / 'sorted'}", "val_fraction=0.25")
    assert (sorted_.target, sorted_.num_classes) == ("sub-folder name", 2)
    assert sorted(y for _, y in sorted_.train.as_numpy_iterator()) == [0, 0, 0, 1, 1, 1]

    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(4):  # one folder, no labels: predict the quarter-turn instead
        Image.fromarray(rng.integers(0, 255, (16, 16), np.uint8)).save(flat / f"{i}.png")
    turns = score_data(f"data={flat}", "val_fraction=0.25")
    assert (turns.target, turns.num_classes) == ("rotation", 4)
    pairs = list(turns.train.as_numpy_iterator())
    assert [y for _, y in pairs] == [0, 1, 2, 3] * 3
    for k, (image, _) in enumerate(pairs[:4]):
        np.testing.assert_array_equal(image, np.rot90(pairs[0][0], k))

    shapes = score_data("num_train=12", "num_val=6")
    assert (shapes.target, shapes.num_classes) == ("shape class", 6)


def test_predict_writes_a_sample_grid(gan_run, cli, tmp_path):
    assert cli("predict", "--run-dir", gan_run, "--out", tmp_path / "p", "--num-samples", "10") == 0
    with Image.open(tmp_path / "p" / "samples.png") as img:
        assert img.size == (8 * 66 + 2, 2 * 66 + 2)  # 10 tiles of 64 px (+2 px padding), 8 per row
        pixels = np.asarray(img)
    assert pixels[2:66, 2:66].std() > 10  # not a blank tile


def test_checkpoint_restores_both_optimizers_and_weights(tmp_path):
    """save_weights then load_weights into a fresh model: generator, discriminator, and BOTH Adam
    states (moments and step counts) come back; the engine's optimizer.build() is a no-op."""
    task = get_task("gan")
    cfg = resolve_config(task, "debug", sets=["num_train=64", "num_val=32", f"jit_compile={BACKEND == 'jax'}"])  # TF: skip XLA compile time
    data = task.build_datasets(cfg)

    def compiled():
        keras.utils.set_random_seed(cfg.seed)
        model = task.build_model(cfg, data.info)
        task.compile(model, cfg, data.info, None)
        return model

    model = compiled()
    model.fit(data.train.batch(32, drop_remainder=True), epochs=1, verbose=0)
    assert int(model.optimizer.iterations) == 2
    assert int(model.optimizer.discriminator_optimizer.iterations) == 2
    path = tmp_path / "ckpt.weights.h5"
    model.save_weights(path)

    fresh = compiled()
    fresh.optimizer.build(fresh.trainable_variables)  # what the engine does before loading
    fresh.load_weights(path)
    for name in ("generator_optimizer", "discriminator_optimizer"):
        saved, loaded = getattr(model.optimizer, name).variables, getattr(fresh.optimizer, name).variables
        assert len(saved) == len(loaded) > 2
        moved = [np.abs(keras.ops.convert_to_numpy(v)).sum() for v in saved]
        assert sum(m > 0 for m in moved) > len(saved) // 2, f"{name} state never moved"
        for a, b in zip(saved, loaded):
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    for a, b in zip(model.weights, fresh.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    # Training goes on from the restored step on both optimizers.
    fresh.fit(data.train.batch(32, drop_remainder=True), epochs=1, verbose=0)
    assert int(fresh.optimizer.iterations) == 4 and int(fresh.optimizer.discriminator_optimizer.iterations) == 4


def test_nonpositive_score_steps_and_discriminator_rate_are_one_line_errors():
    from errors import UserError

    for bad, message in (("score_steps=0", "score_steps=0: expected a positive int"),
                         ("discriminator_learning_rate=0.0", "discriminator_learning_rate=0.0: expected a positive float")):
        with pytest.raises(UserError, match=message):
            resolve_config(get_task("gan"), "debug", sets=[bad])


def test_kernel_distance_is_zero_for_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 8)).astype("float32"), rng.normal(size=(200, 8)).astype("float32")
    same = float(gan_models.kernel_distance(a, b))
    shifted = float(gan_models.kernel_distance(a, b + 1.0))
    assert abs(same) < 0.05 and shifted > 10 * abs(same) + 0.1
