"""The GAN's two optimizers honour warmup_steps, weight_decay and clipnorm (issue 12, item 3),
through the engine's compile path, on the backend under test."""

import numpy as np
import pytest

from conftest import FAST_JIT
from errors import UserError
from tasks.base import get_task, resolve_config

PEAKS = {"generator_optimizer": "learning_rate", "discriminator_optimizer": "discriminator_learning_rate"}
CONFIGS = {"plain": (), "knobs": ("warmup_steps=10", "weight_decay=0.5", "clipnorm=0.5")}


def compiled_gan(*sets):
    from pipelines import DataInfo
    from training.loop import build_compiled_model

    task = get_task("gan")
    cfg = resolve_config(task, preset="debug", sets=[FAST_JIT, *sets])
    info = DataInfo("generated", 64, 32, (cfg.image_size, cfg.image_size, cfg.channels))
    return build_compiled_model(task, cfg, info, total_steps=100), cfg


def weights(model):
    return [np.array(v.numpy() if hasattr(v, "numpy") else v) for v in model.trainable_variables]


@pytest.fixture(scope="module")
def gans():
    """{config name: (model after one train step, cfg, weights before, weights after)}; models are
    built once per module (building a GAN costs seconds on JAX)."""
    out = {}
    for name, sets in CONFIGS.items():
        model, cfg = compiled_gan(*sets)
        before = weights(model)
        real = np.random.default_rng(0).uniform(-1, 1, (8, cfg.image_size, cfg.image_size, cfg.channels))
        model.train_on_batch(real.astype("float32"), np.zeros(8, "float32"))
        out[name] = (model, cfg, before, weights(model))
    return out


def option(model, key) -> dict:
    return {name: getattr(model.optimizer, name).get_config()[key] for name in PEAKS}


def test_clipnorm_and_weight_decay_reach_both_optimizers(gans):
    """Both optimizers carry them (Keras applies them in `apply`/`stateless_apply`, which both
    backends' GAN steps call); without the knobs neither is set."""
    for key in ("clipnorm", "weight_decay"):
        assert option(gans["knobs"][0], key) == dict.fromkeys(PEAKS, 0.5), key
        assert option(gans["plain"][0], key) == dict.fromkeys(PEAKS, None), key


def test_warmup_starts_both_rates_at_zero_then_holds_their_peaks():
    import keras

    model, cfg = compiled_gan("warmup_steps=10")
    for name in PEAKS:
        opt, peak = getattr(model.optimizer, name), getattr(cfg, PEAKS[name])
        assert float(opt.learning_rate) == 0.0  # the rate at the optimizer's step 0
        schedule = keras.optimizers.schedules.deserialize(opt.get_config()["learning_rate"])
        assert float(schedule(5)) == pytest.approx(peak / 2)
        assert [float(schedule(s)) for s in (10, 100, 10_000)] == pytest.approx([peak] * 3)


def test_warmup_makes_the_first_step_leave_the_weights_alone(gans):
    """The steps really use the scheduled rates: at step 0 the rate is 0, so no weight moves;
    (weight decay is scaled by the rate too); without warm-up the same step moves them."""
    for name, moves in (("plain", True), ("knobs", False)):
        model, _, before, after = gans[name]
        assert any(not np.array_equal(a, b) for a, b in zip(before, after)) == moves, name
        assert int(model.optimizer.discriminator_optimizer.iterations) == 1


def test_mixed_float16_is_refused_in_one_line():
    with pytest.raises(UserError, match="precision=mixed_float16") as err:
        compiled_gan("precision=mixed_float16")
    assert "\n" not in str(err.value)
