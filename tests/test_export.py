"""`python cli.py export`: artifacts of runs trained on this suite's backend, loaded by their own
runtimes, predict what the Keras model predicts (the parity check in export_report.json).

Export always runs on TensorFlow: under KERAS_BACKEND=jax the exports run in one fresh TensorFlow
process (training.export.export_many_in_fresh_process), under tensorflow in this process. One tiny
fit per task and one batch of exports are shared by every test here."""

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import BACKEND
from errors import UserError
from tasks.base import get_task

MAIN_TASKS = ("classification", "segmentation", "text-classification")
TOLERANCE = 1e-4  # the acceptance: max abs difference in float32, metric within 0.1 point


def run_exports(jobs, work):
    from training.export import export_many_on_tensorflow

    return export_many_on_tensorflow(jobs, work)


@pytest.fixture(scope="module")
def runs(tiny_fit):
    """The contract test's tiny fits of the three main tasks (made here first if this file runs alone)."""
    return {name: tiny_fit(name)[0].parent for name in MAIN_TASKS}


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    """{(task, format[, quantize]): result} for saved_model + onnx of each main task, litert for classification."""
    jobs = [{"task": name, "run_dir": str(run_dir), "fmt": fmt, "batches": 1, "backend_check": False,
             "latency_budget_s": 0.02}
            for name, run_dir in runs.items() for fmt in ("saved_model", "onnx")]
    jobs[0]["backend_check"] = True  # classification saved_model: also against the model on the training backend
    jobs += [{"task": "classification", "run_dir": str(runs["classification"]), "fmt": "litert", "batches": 1,
              "backend_check": False, "quantize": q, "latency_budget_s": 0.02} for q in ("none", "dynamic")]
    results = run_exports(jobs, tmp_path_factory.mktemp("export-work"))
    return {(r["task"], r["fmt"], j.get("quantize", "none")): r for r, j in zip(results, jobs)}


@pytest.mark.parametrize("key", [(t, f, "none") for t in MAIN_TASKS for f in ("saved_model", "onnx")]
                         + [("classification", "litert", "none")])
def test_artifact_predicts_what_the_keras_model_predicts(exported, key):
    result = exported[key]
    assert "error" not in result, result.get("error")
    report = result["report"]
    parity = report["parity"]
    assert report["passed"] and report["trained_on"] == BACKEND and report["exported_on"] == "tensorflow"
    assert parity["max_abs_diff"] <= TOLERANCE and parity["examples"] > 0
    assert parity["decision_agreement"] == 1.0
    assert abs(parity["metric"]["difference_points"]) <= 0.1
    assert report["artifact_bytes"] > 1000 and all(v > 0 for v in parity["latency_ms_per_example"].values())
    written = json.loads((Path(report["artifact"]).parent / "export_report.json").read_text())
    assert written["parity"] == parity


def test_export_compares_with_the_training_backend_when_it_differs(exported):
    report = exported[("classification", "saved_model", "none")]["report"]
    if BACKEND == "tensorflow":
        assert "backend_check" not in report
    else:
        assert report["backend_check"]["backend"] == BACKEND and report["backend_check"]["max_abs_diff"] <= TOLERANCE


def test_quantized_litert_reports_metric_drop_size_and_latency(exported):
    report = exported[("classification", "litert", "dynamic")]["report"]
    base = report["float32"]
    assert report["passed"] and report["quantize"] == "dynamic"
    assert base["size_ratio"] < 0.8  # int8 weights: well under the float32 file
    assert "metric_drop_points" in base and set(base["latency_ratio"]) == set(report["parity"]["latency_ms_per_example"])


def test_text_saved_model_answers_raw_strings_like_predict(runs, exported, tmp_path):
    import tensorflow as tf

    from training.inference import predict

    texts = ["a wonderful film", "Not GOOD at all, really boring!!", "zzqx unknownword"]
    rows, _ = predict(get_task("text-classification"), runs["text-classification"], texts, out_dir=tmp_path)
    artifact = exported[("text-classification", "saved_model", "none")]["report"]["artifact"]
    loaded = tf.saved_model.load(artifact)  # kept in a variable: serve() needs the object alive
    probs = loaded.serve(tf.constant(texts)).numpy()
    expected = np.array([list(r["probabilities"].values()) for r in rows])
    np.testing.assert_allclose(probs, expected, atol=2e-6)  # predict rounds to 6 decimals


def test_predict_with_an_artifact_gives_the_run_s_predictions(runs, exported, tmp_path):
    from training.inference import predict

    task = get_task("classification")
    by_model, _ = predict(task, runs["classification"], [], out_dir=tmp_path / "model", options={"num_samples": 4})
    images = [r["input"] for r in by_model]
    artifact = exported[("classification", "onnx", "none")]["report"]["artifact"]
    by_onnx, _ = predict(task, runs["classification"], images, out_dir=tmp_path / "onnx", artifact=artifact)
    assert [r["label"] for r in by_onnx] == [r["label"] for r in by_model]
    assert max(abs(a["probability"] - b["probability"]) for a, b in zip(by_onnx, by_model)) <= TOLERANCE


def test_parity_check_catches_a_differing_artifact():
    """The comparison is not vacuous: an artifact off by 1e-3 fails with what differed."""
    import keras

    from tasks.exporting import plain_export
    from training import export

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")

    class Off:
        def run(self, batch):
            return [np.asarray(model.predict_on_batch(batch)) + 1e-3]

    task = get_task("forecasting")  # any task: its metrics are not used without model_outputs
    check = export.compare(task, plain_export(), model, Off(), [(x, None)], None, None, "onnx")
    assert check["max_abs_diff"] == pytest.approx(1e-3, rel=1e-3)
    assert export.failures(check, TOLERANCE, quantized=False) == ["max abs difference 0.001 > 0.0001"]


def test_missing_exporter_is_one_line_naming_the_extra(monkeypatch, runs):
    import importlib.util

    from training import export

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tf2onnx" else real(name, *a))
    req = export.ExportRequest(str(runs["classification"]), "onnx")
    with pytest.raises(UserError, match=r'needs tf2onnx \(not installed\): pip install -e "\.\[export\]"'):
        export.check_request(get_task("classification"), req)


def test_cli_rejects_bad_format_and_quantize(cli, runs, capsys):
    run = runs["classification"]
    assert cli("export", "--run-dir", run, "--format", "tflite") == 2
    assert "--format 'tflite': expected one of saved_model, onnx, litert, openvino" in capsys.readouterr().err
    assert cli("export", "--run-dir", run, "--format", "saved_model", "--quantize", "dynamic") == 2
    assert "--quantize dynamic: not offered for --format saved_model" in capsys.readouterr().err
