"""Denoising autoencoder: noisy image in, clean image out; scored by PSNR against the noisy input."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines import Data
from tasks import generative_common as common
from tasks.base import Task, register
from tasks.exporting import plain_export
from tasks.lazy import lazy_module

keras = lazy_module("keras")
autoencoder = lazy_module("keras_models.autoencoder")
generative = lazy_module("pipelines.generative")


@dataclass(frozen=True)
class AutoencoderConfig(common.ImageGenConfig):
    model: str = field(default="conv", metadata={"choices": ("conv",), "help": "conv (encoder-decoder)"})
    epochs: int = 8
    batch_size: int = 64
    learning_rate: float = 2e-3
    noise_std: float = field(default=0.2, metadata={"help": "std of the Gaussian noise added to inputs ([0, 1] scale)"})


def build_datasets(cfg: AutoencoderConfig) -> Data:
    """Training pairs (clean, clean) get fresh noise per epoch in `augment`; validation noise is fixed."""
    images = common.load_images(cfg)
    val = generative.noisy_pairs_fixed(images.val, cfg.noise_std, cfg.seed)
    noisy_psnr = generative.mean_psnr(val)
    info = common.data_info(images, cfg, noisy_input_psnr=round(noisy_psnr, 3), noise_std=cfg.noise_std)
    train = images.train.map(_clean_pair)
    test = generative.noisy_pairs_fixed(images.test, cfg.noise_std, cfg.seed + 1) if images.test is not None else None
    return Data(train, val, info, augment=generative.noisy_training_augment(cfg.noise_std), test=test)


def _clean_pair(image):
    return image, image


def build_model(cfg: AutoencoderConfig, info) -> keras.Model:
    return autoencoder.conv_autoencoder(info.input_shape, width=cfg.width, upsampling=cfg.upsampling)


def loss(cfg, info):
    return keras.losses.MeanSquaredError()


def metrics(cfg, info):
    """mse, psnr (dB) and psnr_gain: psnr minus the noisy validation inputs' own PSNR (measured once
    in build_datasets and kept in data_info.json), i.e. how many dB the model removes."""
    baseline = float(info.extra.get("noisy_input_psnr", 0.0))
    return [keras.metrics.MeanSquaredError(name="mse"), autoencoder.PSNR(name="psnr"),
            autoencoder.PSNR(baseline, name="psnr_gain")]


def visualize(model, batch, info, cfg) -> dict:
    """Triplets: noisy input | denoised | clean target."""
    noisy, clean = batch[0][:16], batch[1][:16]
    denoised = np.asarray(model.predict_on_batch(noisy))
    return {"noisy_denoised_clean": common.side_by_side(noisy, denoised, clean, columns=12)}


def predict_outputs(model, inputs: list[str], out_dir: Path, cfg, info, options: dict) -> list[dict]:
    """Denoises each given image: `denoised.png` holds input | output pairs; one PNG per image too."""
    paths, images = common.load_inputs(inputs, info)
    outputs = np.asarray(model.predict_on_batch(images))
    grid = common.save_png(common.side_by_side(images, outputs, columns=8), out_dir / "denoised.png")
    rows = []
    for path, out in zip(paths, outputs):
        target = common.save_png(common.tiles(out[None])[0], out_dir / f"{path.stem}-denoised.png")
        rows.append({"input": str(path), "output": str(target), "grid": str(grid)})
    return rows


register(Task(
    name="autoencoder",
    description="convolutional denoising autoencoder (PSNR vs the noisy input)",
    config_cls=AutoencoderConfig,
    build_datasets=build_datasets,
    build_model=build_model,
    loss=loss,
    metrics=metrics,
    default_data="generated shape silhouettes (32x32, white on black) + Gaussian noise 0.2",
    presets={
        "debug": {"epochs": 1, "num_train": 256, "num_val": 64, "num_test": 32, "batch_size": 32, "width": 8,
                  "log_every_steps": 2},
        "small": {"epochs": 4, "num_train": 2000, "num_val": 300, "num_test": 300},
    },
    visualize=visualize,
    predict_outputs=predict_outputs,
    sample_inputs=common.sample_inputs,
    export=plain_export(refuse={"litert": "its converted graph needs Select TensorFlow ops (the Flex delegate), "
                                          "which the plain LiteRT interpreter lacks; use saved_model or onnx"}),
    best_metric="val_psnr",
))
