"""What a task declares about export: the serving model, what its signature takes, and its decision.

`python cli.py export` (training/export.py) is one path for every task; what differs lives here,
in an `Export` a task sets as `Task.export`. A task without one exports its model as it is (the
signature takes what the model takes) under the generic tolerance. Keras is imported lazily: task
modules build these at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

import numpy as np

from tasks.lazy import lazy_module

if TYPE_CHECKING:
    from pipelines.data import DataInfo

keras = lazy_module("keras")

FORMATS = ("saved_model", "onnx", "litert", "openvino")


class ServingModel(Protocol):
    """A Keras model that takes what the format's signature takes (in-graph preprocessing) and
    returns what users want (e.g. probabilities); built around the trained `model` on export."""

    def __call__(self, model: "keras.Model", cfg: Any, info: "DataInfo", fmt: str) -> "keras.Model": ...


class ServedInputs(Protocol):
    """A batch as the format's signature takes it, from a batch as the trained model takes it."""

    def __call__(self, x: Any, cfg: Any, info: "DataInfo", fmt: str) -> Any: ...


@dataclass(frozen=True)
class Export:
    """How a task's model is served outside Keras (see the module docstring)."""

    serving_model: ServingModel
    served_inputs: ServedInputs
    signature: Callable[[str], str]  # fmt -> what the signature takes and returns, for reports and README
    # The task's decision from the artifact's outputs (a flat list of arrays): argmax class, mask pixels.
    decision: Optional[Callable[[list], np.ndarray]] = None
    decision_name: str = ""
    # Artifact outputs -> what `model.predict_on_batch` returns, so `predict --artifact` reuses the task's
    # predict hook unchanged (e.g. log-probabilities stand in for logits: same softmax, same argmax).
    model_outputs: Optional[Callable[[list], Any]] = None
    refuse: dict = field(default_factory=dict)  # {format: one-line reason it is not offered}
    outside: str = ""  # what stays outside the artifact and how to run it (e.g. box decoding, NMS)
    tolerance: float = 1e-4  # max abs difference of outputs allowed in float32

    def refusal(self, fmt: str) -> Optional[str]:
        return self.refuse.get(fmt)


# --- shared pieces --------------------------------------------------------------------------------


def inference_call(model, inputs):
    """The trained model called in inference mode inside a serving model (dropout off, BN frozen)."""
    return model(inputs, training=False)


def same_inputs_as(model):
    """Fresh `keras.Input`s shaped like the model's own, in the same structure."""
    return keras.tree.map_structure(
        lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype, name=getattr(t, "name", None)), model._inputs_struct)


def plain_serving_model(model, cfg, info, fmt):
    """The model itself in inference mode (functional models are wrapped so `training=False` is recorded)."""
    if getattr(model, "_inputs_struct", None) is None:
        return model
    inputs = same_inputs_as(model)
    return keras.Model(inputs, inference_call(model, inputs), name=f"{model.name}_serving")


def plain_inputs(x, cfg, info, fmt):
    return x


def plain_export(refuse: Optional[dict] = None, outside: str = "", tolerance: float = 1e-4) -> Export:
    """The default: the signature takes and returns what the trained model does."""
    return Export(plain_serving_model, plain_inputs, lambda fmt: "what the Keras model takes; returns its outputs",
                  refuse=dict(refuse or {}), outside=outside, tolerance=tolerance)


def refuse_subclassed(what: str) -> Export:
    """Every format refused: Keras' model.export cannot infer a subclassed wrapper's input signature."""
    reason = f"Keras' model.export cannot infer the input signature of the {what} (a subclassed model); not offered yet"
    return plain_export(refuse={fmt: reason for fmt in FORMATS})


def argmax_decision(outputs: list) -> np.ndarray:
    return np.argmax(np.asarray(outputs[0]), axis=-1)


def log_probabilities(outputs: list):
    """Log-probabilities in place of logits: softmax and argmax give back the same probabilities."""
    return np.log(np.maximum(np.asarray(outputs[0], np.float64), 1e-30)).astype(np.float32)


# --- images: uint8 in, resized and scaled inside, probabilities out -----------------------------


def uint8_image_serving_model(model, cfg, info, fmt):
    """uint8 images of any size -> resize to the model's size -> /255 -> model -> softmax."""
    h, w, c = info.input_shape
    images = keras.Input((None, None, c), dtype="uint8", name="images")
    x = keras.layers.Resizing(h, w, interpolation="bilinear", name="resize")(keras.ops.cast(images, "float32"))
    x = keras.layers.Rescaling(1.0 / 255.0, name="scale")(x)
    probabilities = keras.layers.Softmax(axis=-1, name="probabilities")(inference_call(model, x))
    return keras.Model(images, probabilities, name=f"{model.name}_uint8_serving")


def uint8_images(x, cfg, info, fmt):
    """The model's [0, 1] float images back as the uint8 pixels they were made from."""
    return np.clip(np.round(np.asarray(x, np.float32) * 255.0), 0, 255).astype(np.uint8)


def image_export(returns: str, decision_name: str, outside: str = "") -> Export:
    return Export(uint8_image_serving_model, uint8_images,
                  lambda fmt: f"uint8 images (N, H, W, C) of any size, resized inside; returns {returns}",
                  decision=argmax_decision, decision_name=decision_name, model_outputs=log_probabilities,
                  outside=outside)
