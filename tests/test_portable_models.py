"""Every registered task's model.keras reloads in a fresh process, on both backends, and predicts
what the trained model predicted (issue 12, item 4). A new task is covered without writing a test."""

import time

import pytest

from conftest import BACKEND, FAST_JIT
from tasks.base import all_tasks, resolve_config
from training import portable

TOLERANCE = 1e-5
OTHER = {"tensorflow": "jax", "jax": "tensorflow"}


def tiny_config(task):
    """The task's debug preset (if any), cut to two training batches and one validation batch."""
    cfg = resolve_config(task, preset="debug" if "debug" in task.presets else None)
    batch = min(cfg.batch_size, 16)
    return resolve_config(task, preset="debug" if "debug" in task.presets else None, sets=[
        FAST_JIT, "epochs=1", f"batch_size={batch}", f"max_train_examples={2 * batch}", f"max_val_examples={batch}"])


def fit_tiny(task, run_dir):
    """A few training steps through the one fit path; the fitted model and a validation batch's inputs."""
    from pipelines import stream
    from training.loop import build_data, fit

    cfg = tiny_config(task)
    result = fit(task, cfg, run_dir, verbose=0)
    data = build_data(task, cfg)
    batcher = None if data.batch is None else (lambda d: data.batch(d, cfg.batch_size))
    x, _ = stream.first_batch(data.val, batch_size=cfg.batch_size, batch=batcher)
    return result, portable.example_inputs(result.model, x)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """{task name: (model.keras path, inputs, predictions at the end of fit)} for every task."""
    root = tmp_path_factory.mktemp("portable")
    out = {}
    for task in all_tasks():
        start = time.perf_counter()
        result, inputs = fit_tiny(task, root / task.name)
        print(f"\ntiny fit of {task.name} on {BACKEND}: {time.perf_counter() - start:.1f}s")
        out[task.name] = (result.run_dir / "model.keras", inputs, portable.flat_predictions(result.model, inputs))
    return out


@pytest.mark.parametrize("target", ["same", "other"])
def test_every_task_model_reloads_and_predicts_the_same(fitted, tmp_path, target):
    """One fresh process per backend loads every task's model.keras with keras.saving.load_model."""
    backend = BACKEND if target == "same" else OTHER[BACKEND]
    start = time.perf_counter()
    # The default compile=True: the compile config (losses, metrics, optimizer) must load too.
    reloaded = portable.predict_in_fresh_process(
        {name: (path, inputs) for name, (path, inputs, _) in fitted.items()}, backend, tmp_path)
    print(f"\nreload on {backend} (trained on {BACKEND}): {time.perf_counter() - start:.1f}s {reloaded.timings}")
    diffs = {name: portable.max_abs_difference(expected, reloaded.predictions[name])
             for name, (_, _, expected) in fitted.items()}
    assert set(diffs) == {t.name for t in all_tasks()}
    bad = {name: d for name, d in diffs.items() if not d <= TOLERANCE}
    assert not bad, f"trained on {BACKEND}, reloaded on {backend}: max abs differences {diffs}"


def test_max_abs_difference_sees_a_difference():
    """The comparison this test relies on is not vacuous: shape or value changes are caught."""
    import numpy as np

    a = [np.zeros((2, 3)), np.ones(4)]
    assert portable.max_abs_difference(a, [np.zeros((2, 3)), np.ones(4)]) == 0.0
    assert portable.max_abs_difference(a, [np.zeros((2, 3)), np.ones(4) + 1e-3]) == pytest.approx(1e-3)
    assert portable.max_abs_difference(a, [np.zeros((3, 2)), np.ones(4)]) == float("inf")
    assert portable.max_abs_difference(a, a[:1]) == float("inf")
