"""The pointer-generator copy head (`--set copy=true`): a proper distribution, the same decoding with
and without the key/value cache, a saved model that reloads, and a copy task that the plain
Transformer of the same size cannot learn: write out the first tokens of the source when those
tokens were never a target in training (as names and numbers in an e-mail's subject line)."""

import time

import numpy as np
import pytest

from conftest import BACKEND

JIT = BACKEND == "jax"  # XLA compilation costs TensorFlow seconds per model (conftest.FAST_JIT)

VOCAB = 64  # ids 4..33 are targets in training, 34..63 only in held-out targets
SOURCE, COPIED = 8, 3  # source tokens; the target is the source's first COPIED tokens, then [END]
TRAIN, HELD_OUT = 768, 64
# Held-out teacher-forced token accuracy over the COPIED tokens and [END]: the plain model can place
# [END] (1 token in 4) but cannot write an id it never produced in training.
MIN_COPY_ACCURACY, MAX_PLAIN_ACCURACY = 0.8, 0.3


def copy_task(n: int, target_ids: range, seed: int) -> tuple[dict, np.ndarray]:
    """Sources of random ids (any id after the first COPIED positions); target = first tokens + [END]."""
    from keras_models.seq2seq import END, START

    rng = np.random.default_rng(seed)
    source = rng.integers(4, VOCAB, (n, SOURCE)).astype("int32")
    source[:, :COPIED] = rng.integers(target_ids.start, target_ids.stop, (n, COPIED))
    target = np.concatenate([source[:, :COPIED], np.full((n, 1), END, "int32")], axis=1)
    target_in = np.concatenate([np.full((n, 1), START, "int32"), target[:, :-1]], axis=1)
    return {"source": source, "target_in": target_in}, target


def trained(copy: bool):
    import keras

    from keras_models import seq2seq as models

    keras.utils.set_random_seed(0)
    model = models.build("transformer", VOCAB, VOCAB, SOURCE, COPIED + 1, width=32, hidden=64, num_heads=2,
                         num_layers=1, dropout=0.0, copy=copy)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=models.MaskedSequenceLoss(),
                  metrics=[models.MaskedTokenAccuracy()], jit_compile=JIT)
    x, y = copy_task(TRAIN, range(4, 34), seed=1)
    model.fit(x, y, batch_size=64, epochs=8, verbose=0)
    x_new, y_new = copy_task(HELD_OUT, range(34, VOCAB), seed=2)
    accuracy = model.evaluate(x_new, y_new, verbose=0, return_dict=True)["token_accuracy"]
    return model, accuracy, (x_new, y_new)


@pytest.fixture(scope="module")
def runs():
    start = time.perf_counter()
    out = {copy: trained(copy) for copy in (True, False)}
    print(f"\ncopy-head fixture (two fits) on {BACKEND}: {time.perf_counter() - start:.1f}s")
    return out


def test_copy_head_learns_to_copy_tokens_the_plain_model_cannot_write(runs):
    copy_accuracy, plain_accuracy = runs[True][1], runs[False][1]
    assert copy_accuracy >= MIN_COPY_ACCURACY, (copy_accuracy, plain_accuracy)
    assert plain_accuracy <= MAX_PLAIN_ACCURACY, (copy_accuracy, plain_accuracy)


def test_copy_head_is_a_distribution_decodes_alike_with_and_without_cache_and_reloads(runs, tmp_path):
    import keras

    from keras_models import seq2seq as models

    model, _, (x, y) = runs[True]
    x = {k: v[:8] for k, v in x.items()}
    log_probs = keras.ops.convert_to_numpy(model.predict_on_batch(x))
    assert log_probs.shape == (8, COPIED + 1, VOCAB)
    assert np.allclose(np.exp(log_probs).sum(-1), 1.0, atol=1e-3)
    parts = models.decoder_parts(model, JIT)
    greedy, _ = models.decode(model, x["source"], parts=parts)
    assert np.array_equal(greedy, y[:8])  # held-out sources: their first tokens, written by copying
    cached = models.decode(model, x["source"], beam_size=3, parts=parts, use_cache=True)
    prefix = models.decode(model, x["source"], beam_size=3, parts=parts, use_cache=False)
    assert np.array_equal(cached[0], prefix[0]) and np.allclose(cached[1], prefix[1], atol=1e-4)
    model.save(tmp_path / "copy.keras")
    again = keras.saving.load_model(tmp_path / "copy.keras")
    assert np.allclose(keras.ops.convert_to_numpy(again.predict_on_batch(x)), log_probs, atol=1e-5)


def test_copy_needs_one_shared_vocabulary():
    from errors import UserError
    from tasks.base import get_task, resolve_config
    from tasks.seq2seq import build_model

    task = get_task("translation")
    cfg = resolve_config(task, preset="debug", sets=["copy=True", "shared_vocab=False"])
    with pytest.raises(UserError, match="copy=true needs --set shared_vocab=true"):
        build_model(cfg, None)
