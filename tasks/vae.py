"""Convolutional VAE: ELBO, reconstruction loss and KL on validation data; samples and interpolations."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from errors import UserError
from pipelines import Data
from tasks import generative_common as common
from tasks.base import Task, register
from tasks.exporting import refuse_subclassed
from tasks.lazy import lazy_module

keras = lazy_module("keras")
vae_models = lazy_module("keras_models.vae")


@dataclass(frozen=True)
class VAEConfig(common.ImageGenConfig):
    model: str = field(default="conv", metadata={"choices": ("conv",), "help": "conv (conv encoder / decoder)"})
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 2e-3
    latent_dim: int = field(default=16, metadata={"help": "size of the latent code z"})
    beta: float = field(default=1.0, metadata={"help": "weight of the KL term (1 = the true ELBO)"})
    decoder_std: float = field(default=0.1, metadata={"help": "fixed std of the Gaussian pixel likelihood ([0, 1] scale)"})


def build_datasets(cfg: VAEConfig) -> Data:
    images = common.load_images(cfg)
    info = common.data_info(images, cfg, latent_dim=cfg.latent_dim)
    test = images.test.map(_image_is_target) if images.test is not None else None
    return Data(images.train.map(_image_is_target), images.val.map(_image_is_target), info, test=test)


def _image_is_target(image):
    return image, image


def _check_batch_size(cfg):
    if cfg.batch_size > vae_models.VAE.EVAL_NOISE:
        raise UserError(f"--batch-size {cfg.batch_size}: at most {vae_models.VAE.EVAL_NOISE} for this task (fixed evaluation noise)")


def build_model(cfg: VAEConfig, info):
    _check_batch_size(cfg)
    return vae_models.conv_vae(info.input_shape, latent_dim=cfg.latent_dim, width=cfg.width, beta=cfg.beta,
                               decoder_std=cfg.decoder_std, seed=cfg.seed, upsampling=cfg.upsampling)


def _fixed_latents(cfg, n: int, latent_dim: int) -> np.ndarray:
    return np.random.default_rng(cfg.seed + 12345).normal(size=(n, latent_dim)).astype("float32")


def interpolations(model, images: np.ndarray, pairs: int = 4, steps: int = 8) -> np.ndarray:
    """Rows of decoded points on the line between the posterior means of two images."""
    z = np.asarray(model.encode(images[: 2 * pairs]))
    t = np.linspace(0.0, 1.0, steps, dtype="float32")[:, None]
    rows = []
    for a, b in zip(z[0::2], z[1::2]):
        rows += common.tiles(np.asarray(model.decode((1 - t) * a + t * b)))
    return common.visuals.grid(rows, columns=steps)


def visualize(model, batch, info, cfg) -> dict:
    x = batch[0][:16]
    recon = np.asarray(model.predict_on_batch(x)["reconstruction"])
    samples = np.asarray(model.decode(_fixed_latents(cfg, 32, cfg.latent_dim)))
    return {"samples": common.visuals.grid(common.tiles(samples), columns=8),
            "input_reconstruction": common.side_by_side(x, recon, columns=8),
            "interpolations": interpolations(model, batch[0])}


def predict_outputs(model, inputs: list[str], out_dir: Path, cfg, info, options: dict) -> list[dict]:
    """With images: `reconstructions.png` (input | reconstruction pairs). With none: `samples.png`
    holding --num-samples decoded draws from the prior."""
    if not inputs:
        n = int(options.get("num_samples") or 64)
        samples = np.asarray(model.decode(_fixed_latents(cfg, n, cfg.latent_dim)))
        path = common.save_png(common.visuals.grid(common.tiles(samples), columns=8), out_dir / "samples.png")
        return [{"output": str(path), "num_samples": n}]
    paths, images = common.load_inputs(inputs, info)
    recon = np.asarray(model.predict_on_batch(images)["reconstruction"])
    grid = common.save_png(common.side_by_side(images, recon, columns=8), out_dir / "reconstructions.png")
    return [{"input": str(p), "grid": str(grid)} for p in paths]


register(Task(
    name="vae",
    description="convolutional variational autoencoder (ELBO, KL, samples, interpolations)",
    config_cls=VAEConfig,
    build_datasets=build_datasets,
    build_model=build_model,
    default_data="generated shape silhouettes (32x32, white on black)",
    presets={
        "debug": {"epochs": 1, "num_train": 256, "num_val": 64, "num_test": 32, "batch_size": 32, "width": 8,
                  "latent_dim": 4, "log_every_steps": 2},
        "small": {"epochs": 4, "num_train": 2000, "num_val": 300, "num_test": 300},
    },
    visualize=visualize,
    predict_outputs=predict_outputs,
    export=refuse_subclassed("VAE (encoder, sampling and decoder in one subclassed model)"),
    best_metric="val_loss",
))
