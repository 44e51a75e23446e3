"""Autoencoder and VAE tasks: data sources, learning on held-out data, pictures, predict outputs.

Measured on the debug-sized runs below (2 CPU cores, both backends): the autoencoder's denoised
validation PSNR beats the noisy inputs' own PSNR (11.0 dB at noise std 0.4) by about 7 dB after
4 short epochs (asserted: > 4 dB); the VAE's validation ELBO rises by several hundred nats from epoch 1 to 3 (asserted:
> 50 nats).
"""

import json

import numpy as np
import pytest
from PIL import Image

from errors import DataError, UserError
from pipelines import generative
from tasks.base import get_task, resolve_config


def _build(task, *sets, preset="debug"):
    t = get_task(task)
    return t.build_datasets(resolve_config(t, preset, sets=list(sets)))


def test_embedded_silhouettes_are_binary_images_in_unit_range():
    data = _build("vae", "num_train=32", "num_val=8")
    x, y = next(iter(data.train.batch(32)))
    assert x.shape == (32, 32, 32, 1) and data.info.input_shape == (32, 32, 1)
    assert set(np.unique(x.numpy())) == {0.0, 1.0} and np.array_equal(x.numpy(), y.numpy())
    frac = x.numpy().mean(axis=(1, 2, 3))
    assert (frac > 0.05).all() and (frac < 0.8).all()  # a shape on a background, every time


def test_autoencoder_pairs_noisy_inputs_with_clean_targets_and_fixed_validation_noise():
    data = _build("autoencoder", "num_train=16", "num_val=8", "noise_std=0.3")
    v1 = list(data.val.batch(8).as_numpy_iterator())[0]
    v2 = list(data.val.batch(8).as_numpy_iterator())[0]
    assert np.array_equal(v1[0], v2[0])  # the same noise every epoch
    assert not np.array_equal(v1[0], v1[1]) and 0.0 <= v1[0].min() and v1[0].max() <= 1.0
    assert 8 < data.info.extra["noisy_input_psnr"] < 16
    x, y = next(iter(data.train.batch(4)))
    noisy, clean = data.augment(x[0], y[0], np.array([3, 4], np.int64))
    assert not np.array_equal(noisy.numpy(), clean.numpy()) and np.array_equal(clean.numpy(), y[0].numpy())


def test_gan_data_is_scaled_to_tanh_range():
    data = _build("gan", "num_train=16", "num_val=8")
    x, _ = next(iter(data.train.batch(16)))
    assert x.numpy().min() == -1.0 and x.numpy().max() == 1.0


def test_image_folder_is_searched_recursively_and_converted(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(10):
        folder = tmp_path / "imgs" / ("a" if i % 2 else "b/c")  # nested folders are found too
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), np.uint8)).save(folder / f"{i}.png")
    data = _build("autoencoder", f"data={tmp_path / 'imgs'}", "image_size=16", "val_fraction=0.2")
    assert (data.info.num_train, data.info.num_val) == (8, 2) and data.info.input_shape == (16, 16, 1)
    x, y = next(iter(data.train.batch(8)))
    assert x.shape == (8, 16, 16, 1)
    data = _build("vae", f"data={tmp_path / 'imgs'}", "image_size=16", "channels=3")
    assert next(iter(data.val.batch(2)))[0].shape == (1, 16, 16, 3)  # 10% of 10 held out


def test_tfds_mnist_under_mock_data():
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=20):
        data = _build("vae", "data=tfds:fashion_mnist", "image_size=16")
        x, _ = next(iter(data.train.batch(4)))
        assert data.info.source == "tfds:fashion_mnist" and x.shape == (4, 16, 16, 1)
        assert 0.0 <= float(x.numpy().min()) and float(x.numpy().max()) <= 1.0
        data = _build("gan", "data=tfds:mnist", "image_size=16", "channels=3")
        assert next(iter(data.train.batch(4)))[0].shape == (4, 16, 16, 3)
        score_data = data.extras["score_data"]  # the GAN's score network learns MNIST's own labels
        assert (score_data.target, score_data.num_classes) == ("tfds label", 10)
        images, labels = next(iter(score_data.train.batch(4)))
        assert images.shape == (4, 16, 16, 3) and ((0 <= labels.numpy()) & (labels.numpy() < 10)).all()


def test_bad_data_and_config_are_one_line_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images")
    with pytest.raises(DataError, match="the folder holds no images"):
        _build("vae", f"data={tmp_path / 'empty'}")
    with pytest.raises(UserError, match=r"channels=2: expected 1 \(grayscale\) or 3 \(colour\)"):
        _build("vae", "channels=2")
    with pytest.raises(UserError, match=r"image_size=20: expected a positive multiple of 8"):
        _build("gan", "image_size=20")


def _png_size(path):
    with Image.open(path) as img:
        return img.size


def test_autoencoder_denoises_held_out_images_and_predicts(cli, tmp_path):
    run = tmp_path / "ae"
    assert cli("fit", "--task", "autoencoder", "--preset", "debug", "--epochs", "4", "--batch-size", "16",
               "--run-dir", run, "--set", "num_train=512", "--set", "num_val=64", "--set", "learning_rate=5e-3",
               "--set", "width=16", "--set", "noise_std=0.4", "--quiet") == 0
    metrics = json.loads((run / "metrics.json").read_text())
    noisy = json.loads((run / "data_info.json").read_text())["extra"]["noisy_input_psnr"]
    val = metrics["validation"]
    assert val["psnr_gain"] == pytest.approx(val["psnr"] - noisy, abs=1e-3)
    assert val["psnr_gain"] > 4.0, f"denoised {val['psnr']:.2f} dB vs noisy input {noisy:.2f} dB"
    inputs = []
    for i in range(3):
        inputs.append(tmp_path / f"in{i}.png")
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (32, 32), np.uint8)).save(inputs[-1])
    assert cli("predict", "--run-dir", run, "--out", tmp_path / "out", *inputs) == 0
    assert (tmp_path / "out" / "denoised.png").is_file() and (tmp_path / "out" / "in2-denoised.png").is_file()
    assert _png_size(tmp_path / "out" / "in0-denoised.png") == (64, 64)


def test_vae_validation_elbo_improves_and_predict_writes_grids(cli, tmp_path):
    run = tmp_path / "vae"
    assert cli("fit", "--task", "vae", "--preset", "debug", "--epochs", "3", "--run-dir", run,
               "--set", "num_train=512", "--set", "num_val=64", "--quiet") == 0
    history = json.loads((run / "history.json").read_text())
    elbo = [h["val_elbo"] for h in history]
    assert elbo[-1] > elbo[0] + 50.0, f"validation ELBO by epoch: {elbo}"
    last = history[-1]
    assert last["val_elbo"] == pytest.approx(-(last["val_reconstruction_loss"] + last["val_kl"]), rel=1e-4)
    assert last["val_kl"] > 0
    assert cli("predict", "--run-dir", run, "--out", tmp_path / "s", "--num-samples", "12") == 0
    w, h = _png_size(tmp_path / "s" / "samples.png")
    assert w == 8 * 66 + 2 and h == 2 * 66 + 2  # 12 tiles of 64 px (+2 px padding), 8 per row
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(img)
    assert cli("predict", "--run-dir", run, "--out", tmp_path / "r", img) == 0
    assert (tmp_path / "r" / "reconstructions.png").is_file()
