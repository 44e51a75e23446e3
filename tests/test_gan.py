"""The GAN task: per-backend steps learn, checkpoints carry both optimizers, predict writes a grid.

Measured on the tiny run below (2 CPU cores): the validation sample distance (kernel distance of
random-conv features, lower is better) by epoch was 0.21, 0.15, 0.06, 0.006 on TensorFlow and
0.27, 0.13, 0.04, 0.04 on JAX; asserted: the last epoch's is under half the first's. (Tiny GANs
are noisy: with 3 epochs of 20 steps the score sometimes rose, so the run has 160 steps.)
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
    rc = cli.main(["fit", "--task", "gan", "--preset", "debug", "--epochs", "4", "--batch-size", "16",
                   "--run-dir", str(run), "--set", "num_train=640", "--set", "num_val=128",
                   "--set", "learning_rate=5e-4", "--set", "width=16", "--quiet"])
    assert rc == 0
    return run


def test_sample_distance_improves_from_first_to_last_epoch(gan_run):
    history = json.loads((gan_run / "history.json").read_text())
    distance = [h["val_sample_distance"] for h in history]
    assert len(distance) == 4 and distance[-1] < 0.5 * distance[0], f"sample distance by epoch: {distance}"
    last = history[-1]
    assert last["loss"] == pytest.approx(last["d_loss"] + last["g_loss"], rel=1e-4)
    assert last["step"] == 4 * (640 // 16)  # model.optimizer.iterations: one per GAN step
    assert json.loads((gan_run / "metrics.json").read_text())["best"]["metric"] == "val_sample_distance"


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


def test_kernel_distance_is_zero_for_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 8)).astype("float32"), rng.normal(size=(200, 8)).astype("float32")
    same = float(gan_models.kernel_distance(a, b))
    shifted = float(gan_models.kernel_distance(a, b + 1.0))
    assert abs(same) < 0.05 and shifted > 10 * abs(same) + 0.1
