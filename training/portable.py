"""Portable model files: reload saved `model.keras` files in a fresh process, on any backend.

A model file is portable when a new Python process that only runs `import keras_models` and
`keras.saving.load_model(path)` gets a model predicting what the trained one predicted, on the
backend it was trained on and on the other. `predict_in_fresh_process` checks many files with
one subprocess (importing a backend costs seconds), so a test can check every task at once:

    python -m training.portable MANIFEST.json OUT_DIR   (KERAS_BACKEND picks the backend)

reads the manifest's {name: {"model": path, "compile": bool, "inputs": npz path}}, writes OUT_DIR/NAME.npz with
the flattened predictions and OUT_DIR/timings.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
_BARE = "__array__"  # npz key of an input that is a bare array rather than a dict of named arrays


@dataclass
class Reloaded:
    """What a fresh process predicted ({name: flat list of arrays}) and how long each part took."""

    backend: str
    predictions: dict
    timings: dict


def example_inputs(model, x):
    """Inputs the model's `call` takes for a data batch `x`: the batch itself, unless the model
    consumes something else (a GAN's generator takes latents) and says so by `example_inputs(n)`."""
    if hasattr(model, "example_inputs"):
        return model.example_inputs(len(next(iter(x.values())) if isinstance(x, dict) else x))
    return x


def flat_predictions(model, inputs) -> list[np.ndarray]:
    """predict_on_batch's output (array, tuple or dict) as a list of numpy arrays in a fixed order."""
    import keras

    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in keras.tree.flatten(model.predict_on_batch(inputs))]


def save_inputs(path: Path, inputs) -> Path:
    arrays = inputs if isinstance(inputs, dict) else {_BARE: inputs}
    np.savez(path, **{k: np.asarray(v) for k, v in arrays.items()})
    return path


def load_inputs(path: Path):
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return arrays[_BARE] if list(arrays) == [_BARE] else arrays


def predict_in_fresh_process(cases: dict, backend: str, work_dir: Path, *, compile: bool = True,
                             timeout: float = 600) -> Reloaded:
    """Load each case's model file in one new process running `backend`; return its predictions.

    `cases` = {name: (model_path, inputs)}; inputs are what `model.predict_on_batch` takes.
    `compile=False` loads without the compile config (loss, metrics, optimizer): predictions need
    only the architecture and weights, and the config may name metrics defined outside keras_models.
    """
    work_dir = Path(work_dir) / f"reload-{backend}"
    work_dir.mkdir(parents=True, exist_ok=True)
    manifest = {name: {"model": str(Path(model_path).resolve()), "compile": compile,
                       "inputs": str(save_inputs(work_dir / f"{name}-inputs.npz", inputs))}
                for name, (model_path, inputs) in cases.items()}
    (work_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "training.portable", str(work_dir / "manifest.json"), str(work_dir)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"reloading on {backend} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    timings = json.loads((work_dir / "timings.json").read_text())
    timings["process_s"] = round(time.perf_counter() - start, 2)
    predictions = {}
    for name in cases:
        with np.load(work_dir / f"{name}.npz") as npz:
            predictions[name] = [npz[f"out{i}"] for i in range(len(npz.files))]
    return Reloaded(backend, predictions, timings)


def max_abs_difference(expected: list, got: list) -> float:
    """Largest element-wise difference between two flat prediction lists (inf if they differ in shape)."""
    if len(expected) != len(got) or any(np.shape(a) != np.shape(b) for a, b in zip(expected, got)):
        return float("inf")
    return max((float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
                for a, b in zip(expected, got) if np.size(a)), default=0.0)


def _reload_all(manifest_path: Path, out_dir: Path) -> None:
    """The subprocess: import the model package, load every model file, predict on its inputs."""
    start = time.perf_counter()
    import keras

    import keras_models  # noqa: F401  (registers the project's layers, losses, metrics and models)

    timings = {"backend": keras.config.backend(), "import_s": round(time.perf_counter() - start, 2), "models": {}}
    for name, case in json.loads(Path(manifest_path).read_text()).items():
        t0 = time.perf_counter()
        model = keras.saving.load_model(case["model"], compile=case["compile"])
        t1 = time.perf_counter()
        outputs = flat_predictions(model, load_inputs(Path(case["inputs"])))
        np.savez(Path(out_dir) / f"{name}.npz", **{f"out{i}": v for i, v in enumerate(outputs)})
        timings["models"][name] = {"load_s": round(t1 - t0, 2), "predict_s": round(time.perf_counter() - t1, 2)}
    (Path(out_dir) / "timings.json").write_text(json.dumps(timings, indent=2))


if __name__ == "__main__":
    _reload_all(Path(sys.argv[1]), Path(sys.argv[2]))
