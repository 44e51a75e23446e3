"""Pretrained keras-hub backbones as parts of this project's models, and the optimizer that fine-tunes them.

A preset is a keras-hub handle (`resnet_18_imagenet`, `kaggle://...`, `hf://...`) or a local
directory written by `save_to_preset`; both go through keras-hub's `from_preset`, which downloads a
handle once into its cache. keras_hub is imported lazily (it costs seconds), so importing
`keras_models` stays quick; a saved model.keras names the keras_hub modules its layers come from
and Keras imports them when loading it.
"""

from __future__ import annotations

import base64
import importlib
import sys
import tempfile
from pathlib import Path

import keras
from keras import layers

from errors import UserError

FLAG = "--set backbone"
EXPECTED = {
    "image": "an image backbone (ResNet, EfficientNet, MobileNet...) whose output is a feature map",
    "pyramid": "an image backbone with pyramid outputs (keras-hub FeaturePyramidBackbone: ResNet, EfficientNet...)",
    "text": "a text backbone taking token_ids/padding_mask (BERT, DistilBERT, RoBERTa...)",
}


def _hub():
    return importlib.import_module("keras_hub")


def _from_preset(loader, handle: str, what: str, **kwargs):
    """`loader.from_preset(handle, **kwargs)` with one-line errors naming the handle."""
    local = Path(handle).expanduser()
    looks_local = handle.startswith((".", "/", "~")) or local.exists()
    if looks_local and not local.is_dir():
        raise UserError(f"{FLAG}={handle}: no such preset directory (expected a folder written by save_to_preset)")
    try:
        return loader.from_preset(str(local) if looks_local else handle, **kwargs)
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001  (keras-hub raises ValueError, requests/kagglehub errors, OSError)
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        if looks_local:
            raise UserError(f"{FLAG}={handle}: the directory holds no loadable {what} ({first[:160]})") from None
        if _is_network_error(exc):
            raise UserError(f"{FLAG}={handle}: cannot download the preset (no network?); download it once on a machine "
                            f"with network and pass its local directory instead (README: fine-tuning offline)") from None
        raise UserError(f"{FLAG}={handle}: not a keras-hub preset handle or directory with a {what} ({first[:160]})") from None


def _is_network_error(exc: BaseException) -> bool:
    names = " ".join(type(e).__name__ + " " + type(e).__module__ for e in (exc, exc.__cause__, exc.__context__) if e)
    text = str(exc).lower()
    return any(k in names for k in ("ConnectionError", "Timeout", "requests", "urllib3", "kagglehub", "huggingface_hub")) \
        or any(k in text for k in ("resolve", "connection", "network", "unreachable", "offline"))


def load_backbone(handle: str, expected: str):
    """The preset's backbone, checked to be of the `expected` kind ("image", "pyramid" or "text")."""
    backbone = _from_preset(_hub().models.Backbone, handle, "backbone")
    if not _is_kind(backbone, expected):
        raise UserError(f"{FLAG}={handle}: a {type(backbone).__name__} does not fit this task; expected {EXPECTED[expected]}")
    return backbone


def _is_kind(backbone, expected: str) -> bool:
    inputs = backbone.input if isinstance(backbone.input, dict) else {}
    if expected == "text":
        return "token_ids" in inputs
    if inputs or len(backbone.output.shape) != 4:
        return False
    return expected == "image" or bool(getattr(backbone, "pyramid_outputs", None))


def load_image_converter(handle: str):
    """The preset's image converter (its image size, scale and offset)."""
    return _from_preset(_hub().layers.ImageConverter, handle, "image converter")


def load_tokenizer(handle: str):
    return _from_preset(_hub().models.Tokenizer, handle, "tokenizer")


def load_text_preprocessor(handle: str, sequence_length: int):
    """The preset's tokenizer and packer ([CLS] ... [SEP], padding mask) for single-text classification."""
    return _from_preset(_hub().models.TextClassifierPreprocessor, handle,
                        "text preprocessor (expected a text backbone preset with its tokenizer: BERT, DistilBERT...)",
                        sequence_length=sequence_length)


def preprocessor_to_json(preprocessor) -> dict:
    """A text preprocessor as JSON (its config and its tokenizer's vocabulary files, base64): saved in a
    run's data_info.json, so evaluate and predict tokenize as fit did without the preset."""
    with tempfile.TemporaryDirectory() as tmp:
        preprocessor.tokenizer.save_assets(tmp)
        assets = {p.name: base64.b64encode(p.read_bytes()).decode("ascii") for p in Path(tmp).iterdir()}
    return {"preprocessor": keras.saving.serialize_keras_object(preprocessor), "assets": assets}


def preprocessor_from_json(saved: dict):
    _hub()  # registers keras-hub's classes
    preprocessor = keras.saving.deserialize_keras_object(saved["preprocessor"])
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in saved["assets"].items():
            (Path(tmp) / name).write_bytes(base64.b64decode(data))
        preprocessor.tokenizer.load_assets(tmp)
    return preprocessor


ENCODER = "pretrained_encoder"  # a backbone's layers as a sub-model with its pyramid outputs


def find_backbone(model):
    """The keras-hub backbone (or its pyramid encoder) nested in `model`; None if it has none."""
    if "keras_hub" not in sys.modules:  # no keras-hub layer can exist before it is imported
        return None
    hub = _hub()
    found = [layer for layer in model.layers if isinstance(layer, hub.models.Backbone) or layer.name == ENCODER]
    return found[0] if found else None


# --- models -----------------------------------------------------------------------------------------


def preset_image_input(x, converter):
    """Images in [0, 1] (this project's pipelines) -> the preset's size and normalisation. The converter
    expects [0, 255] pixels; a grey image is repeated over the three channels backbones expect."""
    if x.shape[-1] == 1:
        x = layers.Concatenate(name="grey_to_rgb")([x, x, x])
    x = layers.Rescaling(255.0, name="to_pixels")(x)
    return converter(x)


def image_classifier(backbone, converter, input_shape, num_classes, dropout=0.2, name="pretrained_classifier"):
    """Preset preprocessing, the backbone, global pooling and dense logits."""
    inputs = keras.Input(input_shape, name="image")
    x = backbone(preset_image_input(inputs, converter))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, name="logits", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def unet_on_backbone(backbone, converter, input_shape, num_classes, filters=16, name="pretrained_unet"):
    """A U-Net whose encoder is the backbone: its pyramid outputs (P2 at 1/4 of the input, P3 at 1/8...)
    are the skips; each decoder stage upsamples, joins the next finer level and refines; the finest
    level is upsampled to the input size. The converter normalises without resizing (masks keep the
    input's size). H and W must be divisible by the coarsest level's stride."""
    from keras_models.unet import conv_block

    levels = sorted(backbone.pyramid_outputs, key=lambda k: int(k[1:]))  # "P2", "P3", ...
    stride = 2 ** int(levels[-1][1:])
    if input_shape[0] % stride or input_shape[1] % stride:
        raise UserError(f"--set image_size={input_shape[0]}: a {type(backbone).__name__} encoder needs a size "
                        f"divisible by {stride} (its coarsest pyramid level, {levels[-1]})")
    encoder = keras.Model(backbone.inputs, [backbone.pyramid_outputs[k] for k in levels], name=ENCODER)
    normalise = type(converter).from_config({**converter.get_config(), "image_size": None})
    inputs = keras.Input(input_shape, name="image")
    features = encoder(preset_image_input(inputs, normalise))
    x = features[-1]
    for i in reversed(range(len(levels) - 1)):
        x = layers.UpSampling2D(2 ** (int(levels[i + 1][1:]) - int(levels[i][1:])), name=f"up_{levels[i]}")(x)
        x = layers.Concatenate(name=f"skip_{levels[i]}")([x, features[i]])
        x = conv_block(x, filters * 2**i, name=f"dec_{levels[i]}")
    x = layers.UpSampling2D(2 ** int(levels[0][1:]), interpolation="bilinear", name="up_input")(x)
    x = conv_block(x, filters, name="dec_input")
    outputs = layers.Conv2D(num_classes, 1, name="logits", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


def text_classifier(backbone, sequence_length, num_classes, dropout=0.1, name="pretrained_text_classifier"):
    """The backbone's pooled output (or its first token's, [CLS]), dropout and dense logits."""
    inputs = {key: keras.Input((sequence_length,), dtype="int32", name=key) for key in backbone.input}
    out = backbone(inputs)
    if isinstance(out, dict):
        x = out["pooled_output"] if "pooled_output" in out else out["sequence_output"][:, 0, :]
    else:
        x = out[:, 0, :]
    x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, name="logits", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=name)


# --- fine-tuning optimizer ------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="keras_baselines")
class FineTuningAdamW(keras.optimizers.AdamW):
    """AdamW for a model with a pretrained backbone: a scaled backbone learning rate, and steps that
    update a subset of the variables it was built with (the head, while the backbone is frozen).

    Adam divides each gradient by its running RMS, so scaling the backbone's gradients would not
    scale its steps: `backbone_lr_scale` multiplies the learning rate of each backbone variable's
    update. Which variables are the backbone's is set by `scale_variables` on the live model (a
    reloaded model.keras applies no scale until given them again). Decoupled weight decay keeps the
    unscaled rate. The optimizer is built on every variable, so its state has one layout frozen or
    not; `train_only` names the variables JAX's stateless step passes while some are frozen.
    """

    def __init__(self, backbone_lr_scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.backbone_lr_scale = float(backbone_lr_scale)
        self._scaled_keys = set()
        self._active_indices = None  # ints: a list of variables here would be tracked as this optimizer's own

    def scale_variables(self, variables) -> None:
        self._scaled_keys = {self._var_key(v) for v in variables}

    def train_only(self, variables) -> None:
        """The variables train steps update from now on (None: all it was built with)."""
        self._active_indices = None if variables is None else [self._get_variable_index(v) for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        if self._var_key(variable) in self._scaled_keys:
            learning_rate = learning_rate * self.backbone_lr_scale
        super().update_step(gradient, variable, learning_rate)

    def stateless_apply(self, optimizer_variables, grads, trainable_variables):
        if self._active_indices is None or len(trainable_variables) == len(self._trainable_variables):
            return super().stateless_apply(optimizer_variables, grads, trainable_variables)
        active = [self._trainable_variables[i] for i in self._active_indices]
        mapping = list(zip(active, trainable_variables)) + list(zip(self.variables, optimizer_variables))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            self.apply(grads, active)
        return ([scope.get_current_value(v) for v in active], [scope.get_current_value(v) for v in self.variables])

    def get_config(self):
        return {**super().get_config(), "backbone_lr_scale": self.backbone_lr_scale}
