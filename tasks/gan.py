"""DCGAN on images: two optimizers, per-backend train steps, a sample-quality score on validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from keras_models import gan as gan_models
from errors import UserError
from pipelines import Data, generative
from tasks import generative_common as common
from tasks.base import Task, register


@dataclass(frozen=True)
class GANConfig(common.ImageGenConfig):
    model: str = field(default="dcgan", metadata={"choices": ("dcgan",), "help": "dcgan"})
    epochs: int = 15
    batch_size: int = 64
    learning_rate: float = field(default=2e-4, metadata={"help": "Adam learning rate of both models"})
    beta_1: float = field(default=0.5, metadata={"help": "Adam beta_1 of both optimizers (DCGAN: 0.5)"})
    latent_dim: int = field(default=64, metadata={"help": "size of the generator's input noise"})


def build_datasets(cfg: GANConfig) -> Data:
    """Real images in [-1, 1] (the generator's tanh range); the target is unused."""
    images = common.load_images(cfg, multiple_of=8)
    info = common.data_info(images, cfg, latent_dim=cfg.latent_dim, value_range=[-1, 1])
    return Data(images.train.map(_real_pair), images.val.map(_real_pair), info)


def _real_pair(image):
    return generative.to_signed(image), 0.0


def _check_batch_size(cfg):
    if cfg.batch_size > gan_models.GAN.EVAL_LATENTS:
        raise UserError(f"--batch-size {cfg.batch_size}: at most {gan_models.GAN.EVAL_LATENTS} for this task (fixed evaluation noise)")


def build_model(cfg: GANConfig, info):
    _check_batch_size(cfg)
    return gan_models.dcgan(info.input_shape, latent_dim=cfg.latent_dim, width=cfg.width, seed=cfg.seed,
                            upsampling=cfg.upsampling)


def loss(cfg, info):
    return None  # the GAN steps compute their own adversarial losses


def metrics(cfg, info):
    return []  # d_loss, g_loss, loss and sample_distance are tracked by the model


def compile(model, cfg, info, optimizer):
    """Two Adam optimizers (the engine's AdamW schedule is not used: GANs want a constant rate)."""
    make = lambda: keras.optimizers.Adam(cfg.learning_rate, beta_1=cfg.beta_1)  # noqa: E731
    model.compile(generator_optimizer=make(), discriminator_optimizer=make(), jit_compile=cfg.jit_compile)


def fixed_latents(cfg, n: int) -> np.ndarray:
    return np.random.default_rng(cfg.seed + 12345).normal(size=(n, cfg.latent_dim)).astype("float32")


def samples(model, cfg, n: int) -> np.ndarray:
    """n generated images in [0, 1] from the fixed latent batch (the same every epoch and run)."""
    out = np.asarray(model.generator.predict_on_batch(fixed_latents(cfg, n)))
    return (out + 1.0) / 2.0


def visualize(model, batch, info, cfg) -> dict:
    return {"samples": common.visuals.grid(common.tiles(samples(model, cfg, 32)), columns=8),
            "real": common.visuals.grid(common.tiles((batch[0][:16] + 1.0) / 2.0), columns=8)}


def predict_outputs(model, inputs: list[str], out_dir: Path, cfg, info, options: dict) -> list[dict]:
    """`samples.png`: a grid of --num-samples generated images (8 per row)."""
    n = int(options.get("num_samples") or 64)
    path = common.save_png(common.visuals.grid(common.tiles(samples(model, cfg, n)), columns=8), out_dir / "samples.png")
    return [{"output": str(path), "num_samples": n}]


register(Task(
    name="gan",
    description="DCGAN (two optimizers, per-backend train steps, kernel sample distance)",
    config_cls=GANConfig,
    build_datasets=build_datasets,
    build_model=build_model,
    loss=loss,
    metrics=metrics,
    default_data="generated shape silhouettes (32x32, white on black)",
    presets={
        "debug": {"epochs": 1, "num_train": 256, "num_val": 64, "batch_size": 32, "width": 8,
                  "latent_dim": 16, "log_every_steps": 2},
        "small": {"epochs": 6, "num_train": 2000, "num_val": 300},
    },
    visualize=visualize,
    predict_outputs=predict_outputs,
    compile=compile,
    best_metric="val_sample_distance",
))
