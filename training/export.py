"""Export a run's model as a deployable artifact and prove it predicts what the Keras model predicts.

Every export is built on Keras' own `model.export` (SavedModel, tf2onnx, the LiteRT converter,
OpenVINO) around the task's serving model (`tasks/exporting.py`: in-graph preprocessing, e.g.
uint8 resizing or the run's vocabulary). It runs on TensorFlow whatever backend trained the run:
those exporters are TensorFlow tools and a run's weights load on either backend. Then the parity
check loads the artifact with its own runtime, runs it on validation batches and compares it with
the Keras serving model (max abs difference, the task's decision, its main metric), times it,
and, for a run trained on another backend, compares the model there with the one here.

    python -m training.export JOBS.json   runs many exports in one TensorFlow process (tests)
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from errors import UserError
from tasks.base import Task
from tasks.exporting import FORMATS, Export, plain_export
from training import rundir

QUANTIZE = ("none", "dynamic", "float16")
EXTRA = 'pip install -e ".[export]"'
# Modules each format needs beyond TensorFlow, and the PyPI package that provides each.
NEEDS = {"saved_model": {}, "litert": {}, "onnx": {"tf2onnx": "tf2onnx", "onnx": "onnx", "onnxruntime": "onnxruntime"},
         "openvino": {"openvino": "openvino"}}
KERAS_FORMAT = {"saved_model": "tf_saved_model", "onnx": "onnx", "litert": "litert", "openvino": "openvino"}
QUANTIZABLE = {"litert": ("dynamic", "float16"), "onnx": ("dynamic",)}
# A quantized artifact is not expected to match float32 outputs; its metric may drop this much (points).
QUANTIZED_METRIC_DROP = 1.0
METRIC_TOLERANCE = 0.1  # points (metric x 100) between the artifact and the Keras model, float32


class ParityError(UserError):
    """The exported artifact predicts differently from the Keras model beyond the stated tolerance."""

    exit_code = 4


@dataclass(frozen=True)
class ExportRequest:
    run_dir: str
    fmt: str
    checkpoint: str = "final"
    out: str | None = None
    quantize: str = "none"
    batches: int = 4
    backend_check: bool = True
    latency_budget_s: float = 0.5  # seconds of repeated calls per latency figure (tests use less)


def spec_of(task: Task) -> Export:
    return task.export or plain_export()


def check_request(task: Task, req: ExportRequest) -> None:
    """Every reason to refuse, before any model is loaded: format, quantization, packages."""
    if req.fmt not in FORMATS:
        raise UserError(f"--format {req.fmt!r}: expected one of {', '.join(FORMATS)}")
    reason = spec_of(task).refusal(req.fmt)
    if reason:
        raise UserError(f"--format {req.fmt}: not offered for {task.name}: {reason}")
    if req.quantize not in QUANTIZE:
        raise UserError(f"--quantize {req.quantize!r}: expected one of {', '.join(QUANTIZE)}")
    if req.quantize != "none" and req.quantize not in QUANTIZABLE.get(req.fmt, ()):
        offered = ", ".join(f"{f} ({'|'.join(q)})" for f, q in QUANTIZABLE.items())
        raise UserError(f"--quantize {req.quantize}: not offered for --format {req.fmt}; offered: {offered}")
    if req.batches < 1:
        raise UserError(f"--batches {req.batches}: expected a positive int")
    require_packages(req.fmt)


def require_packages(fmt: str) -> None:
    missing = [pkg for module, pkg in NEEDS[fmt].items() if importlib.util.find_spec(module) is None]
    if missing:
        how = EXTRA if fmt != "openvino" else "pip install openvino (large; not in the export extra)"
        raise UserError(f"--format {fmt} needs {', '.join(missing)} (not installed): {how}")


def artifact_path(out_dir: Path, fmt: str) -> Path:
    return out_dir / {"saved_model": "saved_model", "onnx": "model.onnx", "litert": "model.tflite",
                      "openvino": "model.xml"}[fmt]


def default_out(run_dir: Path, req: ExportRequest) -> Path:
    suffix = "" if req.quantize == "none" else f"-{req.quantize}"
    return Path(run_dir) / "export" / f"{req.fmt}{suffix}"


# --- writing artifacts ---------------------------------------------------------------------------


def _converter_options(fmt: str, quantize: str) -> dict:
    import tensorflow as tf

    if fmt == "litert" and quantize == "dynamic":
        return {"optimizations": [tf.lite.Optimize.DEFAULT]}
    if fmt == "litert" and quantize == "float16":
        return {"optimizations": [tf.lite.Optimize.DEFAULT], "target_spec": {"supported_types": [tf.float16]}}
    return {}


def write_artifact(serving, path: Path, fmt: str, quantize: str = "none") -> Path:
    """model.export into a temporary sibling, then renamed into place (no half-written artifact)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    _remove(tmp)
    try:
        if fmt == "onnx" and quantize == "dynamic":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            float_path = path.with_name(f".tmp-{os.getpid()}-float-{path.name}")
            serving.export(str(float_path), format="onnx", verbose=False)
            quantize_dynamic(str(float_path), str(tmp), weight_type=QuantType.QInt8)
            _remove(float_path)
        else:
            serving.export(str(tmp), format=KERAS_FORMAT[fmt], verbose=False, **_converter_options(fmt, quantize))
        _remove(path)
        if fmt == "openvino":  # model.xml + model.bin
            os.replace(tmp.with_suffix(".bin"), path.with_suffix(".bin"))
        os.replace(tmp, path)
    finally:
        _remove(tmp)
    return path


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    if path.suffix == ".xml" and path.with_suffix(".bin").exists():
        path.with_suffix(".bin").unlink()


def artifact_bytes(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    extra = path.with_suffix(".bin").stat().st_size if path.suffix == ".xml" else 0
    return path.stat().st_size + extra


# --- loading artifacts with their own runtime ----------------------------------------------------


def _flat(inputs) -> list:
    import keras

    return [np.asarray(v) for v in keras.tree.flatten(inputs)]


def _names(inputs) -> list[str] | None:
    return sorted(inputs) if isinstance(inputs, dict) else None


class Artifact:
    """An exported file run by its own runtime: `run(inputs) -> flat list of numpy outputs`."""

    def __init__(self, path: Path, fmt: str):
        self.path, self.fmt = Path(path), fmt
        getattr(self, f"_load_{fmt}")()

    def _load_saved_model(self):
        import tensorflow as tf

        self._loaded = tf.saved_model.load(str(self.path))  # kept: the function needs its variables alive
        self._run = lambda inputs: _flat(self._loaded.serve(inputs))

    def _load_onnx(self):
        import onnxruntime as ort

        session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]

        def run(inputs):
            feed = dict(inputs) if isinstance(inputs, dict) and set(inputs) == set(names) else dict(zip(names, _flat(inputs)))
            return [np.asarray(o) for o in session.run(None, {k: np.asarray(v) for k, v in feed.items()})]

        self._run = run

    def _load_litert(self):
        interpreter = _litert_interpreter(str(self.path))
        details = sorted(interpreter.get_input_details(), key=lambda d: d["name"])
        outputs = interpreter.get_output_details()

        def run(inputs):
            arrays = [np.asarray(inputs[k]) for k in sorted(inputs)] if isinstance(inputs, dict) else _flat(inputs)
            if [tuple(a.shape) for a in arrays] != [tuple(d["shape"]) for d in interpreter.get_input_details()[: len(arrays)]] \
                    or not getattr(interpreter, "_allocated", False):
                for d, a in zip(details, arrays):
                    interpreter.resize_tensor_input(d["index"], a.shape, strict=False)
                interpreter.allocate_tensors()
                interpreter._allocated = True
            for d, a in zip(details, arrays):
                interpreter.set_tensor(d["index"], a.astype(d["dtype"], copy=False))
            interpreter.invoke()
            return [np.array(interpreter.get_tensor(o["index"])) for o in outputs]

        self._run = run

    def _load_openvino(self):
        import openvino as ov

        compiled = ov.Core().compile_model(str(self.path), "CPU")

        def run(inputs):
            result = compiled(_flat(inputs))
            return [np.asarray(result[o]) for o in compiled.outputs]

        self._run = run

    def run(self, inputs) -> list:
        return self._run(inputs)


def _litert_interpreter(path: str):
    """The LiteRT interpreter (ai-edge-litert when installed, else TensorFlow's tf.lite)."""
    if importlib.util.find_spec("ai_edge_litert") is not None:
        from ai_edge_litert.interpreter import Interpreter
    else:
        import warnings

        import tensorflow as tf

        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        Interpreter = tf.lite.Interpreter  # noqa: N806
    return Interpreter(model_path=path)


# --- the parity check ----------------------------------------------------------------------------


def validation_batches(task: Task, cfg, info, count: int) -> list[tuple]:
    """The first `count` validation batches (x, y) as numpy, at the run's batch size."""
    from pipelines import stream
    from training.loop import build_data

    data = build_data(task, cfg, saved_info=info)
    batcher = None if data.batch is None else (lambda d: data.batch(d, cfg.batch_size))
    ds = stream.eval_stream(data.val, batch_size=cfg.batch_size, batch=batcher)
    return list(ds.take(count).as_numpy_iterator())


def keras_outputs(serving, inputs) -> list:
    import keras

    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in keras.tree.flatten(serving.predict_on_batch(inputs))]


def main_metric(task: Task, cfg, info):
    """The task's compiled metric behind its best-checkpoint metric (e.g. accuracy, mean_iou), or None."""
    name = (cfg.best_metric or task.best_metric).removeprefix("val_")
    for metric in (task.metrics(cfg, info) if task.metrics else []):
        if metric.name == name:
            return metric
    return None


def _metric_value(metric, targets: list, outputs: list) -> float:
    metric.reset_state()
    for y, out in zip(targets, outputs):
        metric.update_state(y, out[0])
    return float(metric.result())


def per_example_seconds(run, inputs, n: int, budget_s: float = 0.5, most: int = 30) -> float:
    """Median seconds per example of `run(inputs)` over repeats (after one warm-up call)."""
    run(inputs)
    times, start = [], time.perf_counter()
    while len(times) < 3 or (len(times) < most and time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        run(inputs)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) / n


def _first(inputs, n: int):
    import keras

    return keras.tree.map_structure(lambda a: np.asarray(a)[:n], inputs)


def _batch_len(inputs) -> int:
    return len(_flat(inputs)[0])


def compare(task: Task, spec: Export, serving, artifact: Artifact, batches: list, cfg, info, fmt: str,
            budget_s: float = 0.5) -> dict:
    """Artifact vs Keras serving model on the same inputs: differences, decisions, metric, latency."""
    served = [spec.served_inputs(x, cfg, info, fmt) for x, _ in batches]
    expected = [keras_outputs(serving, s) for s in served]
    got = [artifact.run(s) for s in served]
    from training.portable import max_abs_difference

    diffs = [max_abs_difference(e, g) for e, g in zip(expected, got)]
    out = {"batches": len(batches), "examples": int(sum(_batch_len(s) for s in served)),
           "max_abs_diff": float(max(diffs))}
    if spec.decision is not None:
        same = [np.asarray(spec.decision(e)) == np.asarray(spec.decision(g)) for e, g in zip(expected, got)]
        out["decision"] = spec.decision_name
        out["decision_agreement"] = float(np.mean(np.concatenate([s.ravel() for s in same])))
    metric = main_metric(task, cfg, info) if spec.model_outputs is not None else None
    if metric is not None:
        targets = [y for _, y in batches]
        keras_value = _metric_value(metric, targets, expected)
        artifact_value = _metric_value(metric, targets, got)
        out["metric"] = {"name": metric.name, "keras": keras_value, "artifact": artifact_value,
                         "difference_points": round(100 * (artifact_value - keras_value), 4)}
    first = served[0]
    n = _batch_len(first)
    out["latency_ms_per_example"] = {
        "batch_1": round(1000 * per_example_seconds(artifact.run, _first(first, 1), 1, budget_s), 4),
        f"batch_{n}": round(1000 * per_example_seconds(artifact.run, first, n, budget_s), 4)}
    out["keras_latency_ms_per_example"] = {f"batch_{n}": round(1000 * per_example_seconds(
        lambda s: serving.predict_on_batch(s), first, n, budget_s), 4)}
    return out


def failures(check: dict, tolerance: float, quantized: bool) -> list[str]:
    """What differs beyond the stated tolerance, one phrase each (empty when the artifact passes)."""
    bad = []
    metric = check.get("metric")
    if quantized:
        if metric and -metric["difference_points"] > QUANTIZED_METRIC_DROP:
            bad.append(f"{metric['name']} dropped {-metric['difference_points']:.2f} points "
                       f"(> {QUANTIZED_METRIC_DROP} allowed for a quantized artifact)")
        return bad
    if not check["max_abs_diff"] <= tolerance:
        bad.append(f"max abs difference {check['max_abs_diff']:.3g} > {tolerance:g}")
    if metric and abs(metric["difference_points"]) > METRIC_TOLERANCE:
        bad.append(f"{metric['name']} {metric['artifact']:.4f} vs Keras {metric['keras']:.4f} "
                   f"(> {METRIC_TOLERANCE} point)")
    return bad


def backend_check(model, x, backend: str, work: Path) -> dict:
    """The trained model on the backend it was trained on vs here (TensorFlow), on one batch."""
    from training import portable

    with tempfile.TemporaryDirectory(dir=work) as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        reloaded = portable.predict_in_fresh_process({"model": (path, x)}, backend, Path(tmp), compile=False)
    here = portable.flat_predictions(model, x)
    return {"backend": backend, "max_abs_diff": portable.max_abs_difference(here, reloaded.predictions["model"])}


# --- the command ---------------------------------------------------------------------------------


def export_run(task: Task, req: ExportRequest, print_report=print) -> dict:
    """Export one run; writes OUT/export_report.json; raises ParityError when the artifact differs."""
    import keras

    from training import portable
    from training.inference import load_trained_model

    check_request(task, req)
    run_dir = rundir.require_run(Path(req.run_dir))
    out_dir = Path(req.out) if req.out else default_out(run_dir, req)
    spec = spec_of(task)
    model, cfg, info = load_trained_model(task, run_dir, req.checkpoint)
    trained_on = rundir.read_json(run_dir / rundir.CONFIG).get("backend", "tensorflow")
    serving = spec.serving_model(model, cfg, info, req.fmt)
    # A model that consumes something else than the data (a GAN's generator takes latents) says so.
    batches = [(portable.example_inputs(model, x), y) for x, y in validation_batches(task, cfg, info, req.batches)]
    serving(spec.served_inputs(batches[0][0], cfg, info, req.fmt), training=False)  # exporters need a called model
    path = artifact_path(out_dir, req.fmt)
    t0 = time.perf_counter()
    try:
        write_artifact(serving, path, req.fmt, req.quantize)
    except (ValueError, NotImplementedError, TypeError) as exc:  # what the converter cannot express
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:200]
        raise UserError(f"--format {req.fmt}: {task.name}'s model does not convert ({first})") from None
    export_s = time.perf_counter() - t0
    try:
        check = compare(task, spec, serving, Artifact(path, req.fmt), batches, cfg, info, req.fmt, req.latency_budget_s)
    except RuntimeError as exc:  # e.g. LiteRT without the ops the converted graph needs
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:200]
        raise UserError(f"--format {req.fmt}: {task.name}'s artifact does not run in its runtime ({first})") from None
    report = {"task": task.name, "run_dir": str(run_dir), "checkpoint": req.checkpoint, "trained_on": trained_on,
              "exported_on": keras.config.backend(), "format": req.fmt, "quantize": req.quantize,
              "artifact": str(path), "artifact_bytes": artifact_bytes(path), "export_s": round(export_s, 2),
              "signature": spec.signature(req.fmt), "outside_artifact": spec.outside or None,
              "tolerance": {"max_abs_diff": spec.tolerance, "metric_points": METRIC_TOLERANCE,
                            "quantized_metric_drop_points": QUANTIZED_METRIC_DROP},
              "parity": check}
    if req.quantize != "none":
        report["float32"] = _float_baseline(task, spec, serving, batches, cfg, info, req, check, out_dir)
    if req.backend_check and trained_on != keras.config.backend():
        report["backend_check"] = backend_check(model, batches[0][0], trained_on, out_dir)
    problems = failures(check, spec.tolerance, req.quantize != "none")
    if report.get("backend_check") and not report["backend_check"]["max_abs_diff"] <= spec.tolerance:
        problems.append(f"the model on {trained_on} differs from the one exported by "
                        f"{report['backend_check']['max_abs_diff']:.3g}")
    report["passed"] = not problems
    report["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    rundir.write_json(out_dir / "export_report.json", report)
    print_report(summary(report))
    if problems:
        raise ParityError(f"export parity failed for {path} ({task.name}, {req.fmt}): {'; '.join(problems)} "
                          f"(see {out_dir / 'export_report.json'})")
    return report


def _float_baseline(task, spec, serving, batches, cfg, info, req, quantized: dict, out_dir: Path) -> dict:
    """The same format in float32, for the size, latency and metric a quantized artifact trades."""
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        path = write_artifact(serving, artifact_path(Path(tmp), req.fmt), req.fmt)
        check = compare(task, spec, serving, Artifact(path, req.fmt), batches, cfg, info, req.fmt, req.latency_budget_s)
        size = artifact_bytes(path)
    quant_size = artifact_bytes(artifact_path(out_dir, req.fmt))
    n = next(k for k in check["latency_ms_per_example"] if k != "batch_1")
    out = {"artifact_bytes": size, "size_ratio": round(quant_size / size, 4),
           "latency_ms_per_example": check["latency_ms_per_example"],
           "latency_ratio": {k: round(quantized["latency_ms_per_example"][k] / max(check["latency_ms_per_example"][k], 1e-9), 3)
                             for k in ("batch_1", n)}}
    if check.get("metric") and quantized.get("metric"):
        out["metric"] = check["metric"]["artifact"]
        out["metric_drop_points"] = round(100 * (check["metric"]["artifact"] - quantized["metric"]["artifact"]), 4)
    return out


def summary(report: dict) -> str:
    p = report["parity"]
    lines = [f"exported {report['task']} ({report['checkpoint']} weights, trained on {report['trained_on']}) "
             f"-> {report['artifact']} [{report['format']}{'' if report['quantize'] == 'none' else ', ' + report['quantize']}]",
             f"  signature:        {report['signature']}",
             f"  size:             {report['artifact_bytes'] / 1e6:.3f} MB",
             f"  max abs diff:     {p['max_abs_diff']:.3g} over {p['examples']} validation examples "
             f"(tolerance {report['tolerance']['max_abs_diff']:g})"]
    if "decision_agreement" in p:
        lines.append(f"  {p['decision']} agree: {100 * p['decision_agreement']:.2f}%")
    if "metric" in p:
        m = p["metric"]
        lines.append(f"  {m['name']}:  artifact {m['artifact']:.4f}, Keras {m['keras']:.4f}")
    lat = ", ".join(f"{k} {v:.3f} ms" for k, v in p["latency_ms_per_example"].items())
    lines.append(f"  latency/example:  {lat}")
    if "float32" in report:
        f = report["float32"]
        drop = f" metric drop {f['metric_drop_points']:.2f} points," if "metric_drop_points" in f else ""
        ratios = ", ".join(f"x{v} at {k.replace('_', ' ')}" for k, v in f["latency_ratio"].items())
        lines.append(f"  vs float32:      {drop} size x{f['size_ratio']}, latency {ratios}")
    if "backend_check" in report:
        b = report["backend_check"]
        lines.append(f"  vs {b['backend']}:         max abs diff {b['max_abs_diff']:.3g} (model on the backend it was trained on)")
    if report["outside_artifact"]:
        lines.append(f"  outside:          {report['outside_artifact']}")
    lines.append(f"  report:           {Path(report['artifact']).parent / 'export_report.json'} "
                 f"({'passed' if report['passed'] else 'FAILED'})")
    return "\n".join(lines)


# --- many exports in one TensorFlow process (tests) ----------------------------------------------


def export_many(jobs: list[dict]) -> list[dict]:
    """[{task, request fields}] -> [{task, fmt, report | error, exit_code}] (errors kept, not raised)."""
    from tasks.base import get_task

    results = []
    for job in jobs:
        job = dict(job)
        task = get_task(job.pop("task"))
        req = ExportRequest(**job)
        try:
            results.append({"task": task.name, "fmt": req.fmt, "report": export_run(task, req, print_report=lambda s: None)})
        except UserError as exc:
            results.append({"task": task.name, "fmt": req.fmt, "error": str(exc), "exit_code": exc.exit_code})
    return results


def export_many_in_fresh_process(jobs: list[dict], work: Path, timeout: float = 600) -> list[dict]:
    """export_many in a new TensorFlow process (the caller may run JAX)."""
    import subprocess

    work.mkdir(parents=True, exist_ok=True)
    (work / "jobs.json").write_text(json.dumps(jobs))
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "training.export", str(work / "jobs.json")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"export process failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads((work / "results.json").read_text())


def export_many_on_tensorflow(jobs: list[dict], work: Path) -> list[dict]:
    """export_many here when this process runs TensorFlow, else in one fresh TensorFlow process."""
    import keras

    if keras.config.backend() == "tensorflow":
        return export_many(jobs)
    return export_many_in_fresh_process(jobs, work)


if __name__ == "__main__":
    jobs_path = Path(sys.argv[1])
    from training.backend import select_backend

    select_backend("tensorflow")
    rundir.write_json(jobs_path.with_name("results.json"), export_many(json.loads(jobs_path.read_text())))



# --- predict --artifact ----------------------------------------------------------------------------


def format_of(path: Path) -> str:
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return "saved_model"
    fmt = {".onnx": "onnx", ".tflite": "litert", ".xml": "openvino"}.get(path.suffix)
    if fmt is None:
        raise UserError(f"--artifact {path}: expected a SavedModel folder, a .onnx, .tflite or OpenVINO .xml file")
    return fmt


class ArtifactModel:
    """An artifact in the place of the Keras model in a task's predict hook: takes and returns what the
    model's `predict_on_batch` does, converting through the task's served inputs and model outputs."""

    def __init__(self, task: Task, artifact: Artifact, cfg, info):
        self.spec, self.artifact, self.cfg, self.info = spec_of(task), artifact, cfg, info

    def predict_on_batch(self, x):
        outputs = self.artifact.run(self.spec.served_inputs(x, self.cfg, self.info, self.artifact.fmt))
        if self.spec.model_outputs is not None:
            return self.spec.model_outputs(outputs)
        return outputs[0] if len(outputs) == 1 else outputs


def artifact_as_model(task: Task, path: Path, cfg, info) -> ArtifactModel:
    fmt = format_of(path)
    require_packages(fmt)
    return ArtifactModel(task, Artifact(path, fmt), cfg, info)
