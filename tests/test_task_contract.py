"""The contract every registered task keeps, checked over the registry (a new task gets it free):
a tiny fit writes the run-directory contract, model.keras reloads in a fresh process on both
backends and predicts what the trained model predicted, evaluate runs on validation and test, and
predict answers a few inputs. One tiny fit per task, shared by every check."""

import json
import os
import time

import pytest

from conftest import BACKEND, FAST_JIT
from tasks.base import all_tasks, resolve_config
from training import portable

TOLERANCE = 1e-5
OTHER = {"tensorflow": "jax", "jax": "tensorflow"}


def contract_tasks():
    """Every registered task, or only those named in CONTRACT_TASKS=a,b (to check one new task quickly)."""
    only = {n.strip() for n in os.environ.get("CONTRACT_TASKS", "").split(",") if n.strip()}
    return [t for t in all_tasks() if not only or t.name in only]


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
def fitted(tiny_fit):
    """{task name: (model.keras path, inputs, predictions at the end of fit)} for every task."""
    out = {}
    for task in contract_tasks():
        start = time.perf_counter()
        out[task.name] = tiny_fit(task.name)
        print(f"\ntiny fit of {task.name} on {BACKEND}: {time.perf_counter() - start:.1f}s")
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
    assert set(diffs) == {t.name for t in contract_tasks()}
    bad = {name: d for name, d in diffs.items() if not d <= TOLERANCE}
    assert not bad, f"trained on {BACKEND}, reloaded on {backend}: max abs differences {diffs}"


RUN_FILES = ("config.json", "metrics.json", "history.json", "data_info.json", "model.keras", "steps.json",
             "checkpoints/latest.json", "checkpoints/best.weights.h5")


def test_every_task_writes_the_run_directory_contract(fitted):
    for name, (model_path, _, _) in fitted.items():
        run_dir = model_path.parent
        missing = [f for f in RUN_FILES if not (run_dir / f).is_file()]
        assert not missing, f"{name}: run directory lacks {missing}"
        assert any((run_dir / "train").iterdir()) and any((run_dir / "validation").iterdir()), name  # TensorBoard
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["task"] == name and metrics["backend"] == BACKEND and metrics["validation"], name
        assert metrics["best"]["direction"] in ("up", "down") and metrics["best"]["epoch"] == 1, name
        info = json.loads((run_dir / "data_info.json").read_text())
        assert info["inputs"] and all("shape" in spec and "dtype" in spec for spec in info["inputs"].values()), name
        # The debug presets generate a test split: it is reported once, from the best checkpoint.
        assert info["num_test"] > 0 and metrics["test"]["checkpoint"] == "best", name
        assert metrics["test"]["examples"] == info["num_test"], name


def test_every_task_evaluates_on_validation_and_test(fitted):
    from tasks.base import get_task
    from training.inference import evaluate

    for name, (model_path, _, _) in fitted.items():
        run_dir, task = model_path.parent, get_task(name)
        saved = json.loads((run_dir / "metrics.json").read_text())
        val = evaluate(task, run_dir, split="validation", which="final", report=lambda text: None)
        test = evaluate(task, run_dir, split="test", which="best", report=lambda text: None)
        assert val["examples"]["count"] == saved["splits"]["validation"], name
        assert test["examples"]["count"] == saved["splits"]["test"], name
        assert test["metrics"]["loss"] == pytest.approx(saved["test"]["loss"], rel=1e-4, abs=1e-5), name
        assert (run_dir / "eval-test.json").is_file(), name


def test_every_task_predicts_on_a_few_inputs(fitted, tmp_path):
    from tasks.base import get_task
    from training.inference import predict

    for name, (model_path, _, _) in fitted.items():
        task = get_task(name)
        rows, out_dir = predict(task, model_path.parent, [], out_dir=tmp_path / name, options={"num_samples": 3})
        assert rows and all(isinstance(r, dict) for r in rows), name
        json.dumps(rows)  # printed as JSON lines
        if task.sample_inputs is not None and (tmp_path / name / "inputs").exists() or name == "text-classification":
            assert len(rows) == 3, f"{name}: one row per input expected, got {len(rows)}"
        assert any(out_dir.iterdir()), f"{name}: predict wrote nothing under {out_dir}"


def test_every_task_exports_a_saved_model_or_refuses(fitted, tmp_path):
    """`cli.py export` (tests/test_export.py checks more formats of three tasks): each task's SavedModel
    passes the parity check against its Keras model, or the task declares in one line why it is not offered."""
    from tasks.base import get_task
    from training.export import export_many_on_tensorflow, spec_of

    jobs = [{"task": name, "run_dir": str(path.parent), "fmt": "saved_model", "batches": 1, "backend_check": False,
             "latency_budget_s": 0.02}
            for name, (path, _, _) in fitted.items()]
    for result in export_many_on_tensorflow(jobs, tmp_path):
        reason = spec_of(get_task(result["task"])).refusal("saved_model")
        if reason:
            assert result["error"].endswith(reason) and "\n" not in result["error"], result
        else:
            assert "error" not in result and result["report"]["passed"], result


def test_max_abs_difference_sees_a_difference():
    """The comparison this test relies on is not vacuous: shape or value changes are caught."""
    import numpy as np

    a = [np.zeros((2, 3)), np.ones(4)]
    assert portable.max_abs_difference(a, [np.zeros((2, 3)), np.ones(4)]) == 0.0
    assert portable.max_abs_difference(a, [np.zeros((2, 3)), np.ones(4) + 1e-3]) == pytest.approx(1e-3)
    assert portable.max_abs_difference(a, [np.zeros((3, 2)), np.ones(4)]) == float("inf")
    assert portable.max_abs_difference(a, a[:1]) == float("inf")
