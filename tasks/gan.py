"""DCGAN on images: two optimizers, per-backend train steps, a sample-quality score on validation."""

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
gan_models = lazy_module("keras_models.gan")
generative = lazy_module("pipelines.generative")


@dataclass(frozen=True)
class GANConfig(common.ImageGenConfig):
    model: str = field(default="dcgan", metadata={"choices": ("dcgan",), "help": "dcgan"})
    epochs: int = 15
    shapes_centered: bool = field(default=True, metadata={
        "help": "embedded data: true = upright shapes in the image centre, like MNIST digits (with random "
                "position and rotation a small GAN draws shapeless blobs in the time budget)"})
    batch_size: int = 64
    learning_rate: float = field(default=2e-4, metadata={"help": "the generator's Adam learning rate"})
    discriminator_learning_rate: float = field(default=5e-5, metadata={"positive": True,
        "help": "the discriminator's Adam learning rate (a quarter of the generator's: with equal rates "
                "the discriminator wins and the generator drops the harder shapes)"})
    beta_1: float = field(default=0.5, metadata={"help": "Adam beta_1 of both optimizers (DCGAN: 0.5)"})
    latent_dim: int = field(default=64, metadata={"help": "size of the generator's input noise"})
    score_steps: int = field(default=300, metadata={"positive": True,
        "help": "training steps (batches of 64) of the sample-score network before the GAN starts"})


def build_datasets(cfg: GANConfig) -> Data:
    """Real images in [-1, 1] (the generator's tanh range); the target is unused. `extras` holds
    labelled images for the score network: the source's labels, else quarter-turn rotations."""
    images = common.load_images(cfg, multiple_of=8)
    info = common.data_info(images, cfg, latent_dim=cfg.latent_dim, value_range=[-1, 1])
    labelled = images.labelled or generative.rotations(images)
    test = images.test.map(_real_pair) if images.test is not None else None
    return Data(images.train.map(_real_pair), images.val.map(_real_pair), info,
                extras={"score_data": labelled}, test=test)


def _real_pair(image):
    return generative.to_signed(image), 0.0


SCORE_BATCH = 64


def prepare(model, data, cfg: GANConfig) -> dict:
    """Train the frozen score network that `sample_distance` measures with (once per run)."""
    labelled: generative.Labelled = data.extras["score_data"]
    train, val = generative.score_batches(labelled, SCORE_BATCH, cfg.seed)
    accuracy = gan_models.train_score_network(model.features, train, val, labelled.num_classes, cfg.score_steps)
    print(f"sample-score network: trained {cfg.score_steps} steps to predict the {labelled.target} "
          f"({labelled.num_classes} classes), validation accuracy {accuracy:.3f}", flush=True)
    return {"score_network": {"target": labelled.target, "num_classes": labelled.num_classes,
                              "steps": cfg.score_steps, "val_accuracy": round(accuracy, 4)}}


def _check_batch_size(cfg):
    if cfg.batch_size > gan_models.GAN.EVAL_LATENTS:
        raise UserError(f"--batch-size {cfg.batch_size}: at most {gan_models.GAN.EVAL_LATENTS} for this task (fixed evaluation noise)")


def build_model(cfg: GANConfig, info):
    _check_batch_size(cfg)
    return gan_models.dcgan(info.input_shape, latent_dim=cfg.latent_dim, width=cfg.width, seed=cfg.seed,
                            upsampling=cfg.upsampling)


def compile(model, cfg: GANConfig, info, optimizer):
    """Two Adam optimizers (generator, discriminator), each honouring warmup_steps, weight_decay
    and clipnorm; the engine's single optimizer is not used. After the warm-up the rates stay
    constant: the GAN's rates were tuned constant, and the engine's cosine decay is not applied."""
    if cfg.precision == "mixed_float16":
        raise UserError("--set precision=mixed_float16: the GAN's train steps do no loss scaling; "
                        "use mixed_bfloat16 or float32")
    model.compile(generator_optimizer=_adam(cfg, cfg.learning_rate),
                  discriminator_optimizer=_adam(cfg, cfg.discriminator_learning_rate),
                  jit_compile=cfg.jit_compile)


def _adam(cfg: GANConfig, rate: float) -> keras.optimizers.Adam:
    if cfg.warmup_steps:  # linear from 0 to `rate` over warmup_steps, then constant (alpha=1: no decay)
        rate = keras.optimizers.schedules.CosineDecay(0.0, decay_steps=1, alpha=1.0, warmup_target=rate,
                                                      warmup_steps=cfg.warmup_steps)
    return keras.optimizers.Adam(rate, beta_1=cfg.beta_1, weight_decay=cfg.weight_decay or None,
                                 clipnorm=cfg.clipnorm or None)


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
    default_data="generated shape silhouettes (32x32, white on black, centred and upright)",
    presets={
        "debug": {"epochs": 1, "num_train": 256, "num_val": 64, "num_test": 32, "batch_size": 32, "width": 8,
                  "latent_dim": 16, "log_every_steps": 2, "score_steps": 20},
        "small": {"epochs": 6, "num_train": 2000, "num_val": 300, "num_test": 300},
    },
    visualize=visualize,
    predict_outputs=predict_outputs,
    compile=compile,
    export=refuse_subclassed("GAN wrapper over two networks"),
    best_metric="val_sample_distance",
    prepare=prepare,
))
