"""Text classification: generated 3-class sentiment by default; TFDS IMDB / GLUE SST-2; CSV/TSV files;
class folders of .txt files; `label sentence` files (SST-2 stsa.binary.*).

Tokenization is a `keras.layers.TextVectorization` adapted on the training texts and applied in
tf.data; its vocabulary is saved in `data_info.json` (DataInfo.extra) so `predict` takes raw
strings and `evaluate` tokenizes exactly as training did. Models see int token ids only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from errors import DataError, UserError
from pipelines import Data, DataInfo, parse_data_spec, split_counts
from tasks.base import Task, TrainConfig, register
from tasks.lazy import lazy_module

keras = lazy_module("keras")
ops = lazy_module("keras.ops")
model_metrics = lazy_module("keras_models.metrics")
text_models = lazy_module("keras_models.text")
text_data = lazy_module("pipelines.text")

STANDARDIZE = {"lower_and_strip_punctuation": "lower_and_strip_punctuation", "lower": "lower",
               "strip_punctuation": "strip_punctuation", "none": None}
MODEL_NAMES = ("cnn", "bilstm", "transformer")  # keys of keras_models.text.MODELS (importing it imports keras)


@dataclass(frozen=True)
class TextClassificationConfig(TrainConfig):
    model: str = field(default="cnn", metadata={"choices": MODEL_NAMES,
                                                 "help": "cnn | bilstm | transformer"})
    epochs: int = 6
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 30
    vocab_size: int = field(default=20000, metadata={"help": "most frequent training tokens kept (incl. padding and [UNK])"})
    sequence_length: int = field(default=40, metadata={"help": "token ids per text (longer texts are cut, shorter padded)"})
    standardize: str = field(default="lower_and_strip_punctuation", metadata={
        "choices": tuple(STANDARDIZE), "help": "TextVectorization text standardization"})
    embedding_dim: int = field(default=64, metadata={"help": "token embedding size"})
    hidden: int = field(default=64, metadata={"help": "LSTM units / Transformer feed-forward size / CNN filters per width"})
    num_heads: int = field(default=2, metadata={"help": "attention heads (transformer)"})
    num_layers: int = field(default=1, metadata={"help": "LSTM or Transformer encoder layers"})
    dropout: float = field(default=0.3, metadata={"help": "dropout on embeddings (whole channels) and before the logits"})
    encoder_dropout: float = field(default=0.0, metadata={
        "help": "dropout inside Transformer blocks (0: element-wise dropout is ~20x slower with TensorFlow XLA on CPU)"})
    text_column: str = field(default="text", metadata={"help": "CSV/TSV column holding the text"})
    label_column: str = field(default="label", metadata={"help": "CSV/TSV column holding the label"})
    classes: tuple[str, ...] = field(default=(), metadata={
        "help": "allowed labels in class order (default: sorted labels of the training data)"})
    heldout: str = field(default="test", metadata={
        "choices": ("test", "dev"), "help": "folder of split files: validate on the *test* or the *dev* file"})
    val_fraction: float = field(default=0.1, metadata={"help": "held out when a source has no validation split"})
    num_train: int = field(default=4000, metadata={"help": "generated training sentences (embedded data)"})
    num_val: int = field(default=1000, metadata={"help": "generated validation sentences (embedded data)"})
    per_class_metrics: bool = field(default=True, metadata={"help": "report precision/recall per class"})


# --- data ----------------------------------------------------------------------------------------
# Each source gives raw (text, label id) datasets; _finish learns (or reuses) the vocabulary and tokenizes.


@dataclass
class _Raw:
    train: object  # tf.data.Dataset of (string, int32)
    val: object
    num_train: int
    num_val: int
    class_names: tuple
    source: str


def _generated(cfg, spec, fitted) -> _Raw:
    tr_texts, tr_labels = text_data.generated_sentiment(cfg.num_train, cfg.seed, "train")
    va_texts, va_labels = text_data.generated_sentiment(cfg.num_val, cfg.seed, "validation")
    return _Raw(text_data.from_lists(tr_texts, tr_labels), text_data.from_lists(va_texts, va_labels),
                cfg.num_train, cfg.num_val, text_data.SENTIMENT_CLASSES, "generated sentiment (3 classes)")


def _tfds(cfg, spec, fitted) -> _Raw:
    from pipelines import tfds_source

    datasets, counts, tinfo = tfds_source.load_tfds(spec.value)
    features = tinfo.features
    text_key = next((k for k in ("text", "sentence", "review", "content") if k in features), None)
    if text_key is None or "label" not in features:
        raise DataError(f"--data tfds:{spec.value}: expected a 'text' (or 'sentence') and a 'label' feature, "
                        f"has {list(features)}")
    train, val, n_train, n_val = tfds_source.train_val_splits(datasets, counts, cfg.val_fraction)
    pick = lambda ex: (ex[text_key], ex["label"])  # noqa: E731
    names = tuple(features["label"].names)
    return _Raw(train.map(pick), val.map(pick), n_train, n_val, names, f"tfds:{spec.value}")


def _class_names(cfg, fitted, labels) -> tuple:
    if fitted is not None:
        return tuple(fitted.class_names)
    return tuple(cfg.classes) if cfg.classes else text_data.class_names_of(labels)


def _split_one(cfg, examples, class_names, source) -> _Raw:
    """One source, no split of its own: hold out val_fraction (chosen by seed)."""
    ids = text_data.label_ids(examples, class_names)
    n_train, n_val = split_counts(len(ids), cfg.val_fraction, source)
    order = np.random.default_rng(cfg.seed).permutation(len(ids))
    tr, va = order[:n_train], order[n_train:]
    texts = np.asarray(examples.texts, object)
    return _Raw(text_data.from_lists(texts[tr], ids[tr]), text_data.from_lists(texts[va], ids[va]),
                n_train, n_val, class_names, source)


def _path(cfg, spec, fitted) -> _Raw:
    root = spec.path
    if root.is_file():
        ex = text_data.read_file(root, cfg.text_column, cfg.label_column)
        return _split_one(cfg, ex, _class_names(cfg, fitted, ex.labels), str(root))
    if any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir()):
        ex = text_data.read_class_folders(root)
        return _split_one(cfg, ex, _class_names(cfg, fitted, ex.labels), str(root))
    pair = text_data.find_split_files(root, cfg.heldout)
    if pair is None:
        raise DataError(f"--data {root}: expected a CSV/TSV or 'label sentence' file, a folder of class "
                        "sub-folders of .txt files, or a folder with a '*train*' and a '*test*'/'*dev*' file")
    train_ex = text_data.read_file(pair[0], cfg.text_column, cfg.label_column)
    val_ex = text_data.read_file(pair[1], cfg.text_column, cfg.label_column)
    names = _class_names(cfg, fitted, train_ex.labels)
    tr, va = text_data.label_ids(train_ex, names), text_data.label_ids(val_ex, names)
    return _Raw(text_data.from_lists(train_ex.texts, tr), text_data.from_lists(val_ex.texts, va),
                len(tr), len(va), names, f"{root} (train: {pair[0].name}, validation: {pair[1].name})")


LOADERS = {"embedded": _generated, "tfds": _tfds, "path": _path}


def _finish(cfg, raw: _Raw, fitted: DataInfo | None) -> Data:
    if len(raw.class_names) < 2:
        raise DataError(f"--data {cfg.data}: expected at least 2 classes, found {list(raw.class_names)}")
    standardize = STANDARDIZE[cfg.standardize]
    if fitted is not None and "vocabulary" in fitted.extra:
        vocab = fitted.extra["vocabulary"]
    else:
        vocab = text_data.adapt_vocabulary(raw.train.map(lambda t, y: t), max_tokens=cfg.vocab_size,
                                           sequence_length=cfg.sequence_length, standardize=standardize)
    info = DataInfo(raw.source, raw.num_train, raw.num_val, (cfg.sequence_length,), len(raw.class_names),
                    tuple(raw.class_names),
                    extra={"tokenizer": "keras.layers.TextVectorization", "standardize": cfg.standardize,
                           "sequence_length": cfg.sequence_length, "vocabulary": vocab})
    tok = lambda ds: text_data.tokenize(ds, vocab, cfg.sequence_length, standardize)  # noqa: E731
    return Data(tok(raw.train), tok(raw.val), info)


def build_datasets(cfg: TextClassificationConfig) -> Data:
    spec = parse_data_spec(cfg.data)
    return _finish(cfg, LOADERS[spec.kind](cfg, spec, None), None)


def rebuild_datasets(cfg: TextClassificationConfig, fitted: DataInfo) -> Data:
    """For evaluate: the saved vocabulary and class order, never re-learned."""
    spec = parse_data_spec(cfg.data)
    return _finish(cfg, LOADERS[spec.kind](cfg, spec, fitted), fitted)


# --- model, loss, metrics --------------------------------------------------------------------------


def build_model(cfg: TextClassificationConfig, info: DataInfo) -> keras.Model:
    vocab_size = len(info.extra.get("vocabulary") or ()) or cfg.vocab_size
    return text_models.MODELS[cfg.model](
        vocab_size, cfg.sequence_length, info.num_classes, embedding_dim=cfg.embedding_dim, hidden=cfg.hidden,
        num_heads=cfg.num_heads, num_layers=cfg.num_layers, dropout=cfg.dropout,
        encoder_dropout=cfg.encoder_dropout)


def loss(cfg, info):
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def metric_name(class_name: str) -> str:
    return re.sub(r"\W+", "_", str(class_name)).strip("_") or "class"


def metrics(cfg, info):
    k = info.num_classes
    out = [keras.metrics.SparseCategoricalAccuracy(name="accuracy"), model_metrics.SparseF1Score(k, name="macro_f1")]
    if cfg.per_class_metrics:
        names = info.class_names or tuple(str(i) for i in range(k))
        for i, name in enumerate(names):
            out.append(model_metrics.SparseClassPrecision(i, k, name=f"precision_{metric_name(name)}"))
            out.append(model_metrics.SparseClassRecall(i, k, name=f"recall_{metric_name(name)}"))
    return out


# --- pictures, tables and predictions -------------------------------------------------------------


def confusion_matrix(true: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (np.asarray(true, np.int64), np.asarray(pred, np.int64)), 1)
    return cm


def confusion_image(cm: np.ndarray, names: tuple) -> np.ndarray:
    """Rows = true class, columns = predicted; shade = share of the row; counts written in cells."""
    k = len(cm)
    cell = 60 if k <= 8 else max(14, 480 // k)
    label_w, top = 90, 40
    img = Image.new("RGB", (label_w + k * cell + 4, top + k * cell + 18), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    draw.text((label_w, 2), "predicted ->", fill=(0, 0, 0))
    draw.text((2, top - 14), "true", fill=(0, 0, 0))
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    for j in range(k):
        draw.text((label_w + j * cell + 2, 18), str(names[j])[: max(2, cell // 7)], fill=(0, 0, 0))
    for i in range(k):
        draw.text((2, top + i * cell + cell // 2 - 6), str(names[i])[:14], fill=(0, 0, 0))
        for j in range(k):
            v = share[i, j]
            colour = (int(255 * (1 - v)), int(255 * (1 - 0.6 * v)), 255) if i == j else \
                     (255, int(255 * (1 - 0.8 * v)), int(255 * (1 - 0.8 * v)))
            x0, y0 = label_w + j * cell, top + i * cell
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=colour, outline=(160, 160, 160))
            if cell >= 24:
                draw.text((x0 + 4, y0 + cell // 2 - 6), str(int(cm[i, j])), fill=(0, 0, 0))
    draw.text((2, top + k * cell + 3), f"{int(np.trace(cm))}/{int(cm.sum())} right", fill=(0, 0, 0))
    return np.asarray(img)


def detokenize(ids: np.ndarray, vocabulary: list) -> str:
    return " ".join(vocabulary[i] if i < len(vocabulary) else "[UNK]" for i in np.asarray(ids).tolist() if i != 0)


def misclassified_table(ids, true, pred, probs, names, vocabulary, limit: int = 20) -> str:
    """A markdown table (TensorBoard text) of validation texts the model got wrong, as tokenized."""
    wrong = np.flatnonzero(true != pred)
    if not len(wrong):
        return f"no misclassified examples among the first {len(true)} validation texts"
    lines = [f"{len(wrong)} of the first {len(true)} validation texts misclassified (text as the model sees it)",
             "", "| text | true | predicted | p(predicted) |", "|---|---|---|---|"]
    for i in wrong[:limit]:
        text = detokenize(ids[i], vocabulary).replace("|", "\\|")
        lines.append(f"| {text} | {names[true[i]]} | {names[pred[i]]} | {probs[i, pred[i]]:.2f} |")
    return "\n".join(lines)


def visualize(model, batch, info: DataInfo, cfg) -> dict:
    """Confusion matrix (image) and misclassified texts (markdown table) on the first validation texts."""
    x, y = batch
    probs = np.asarray(ops.softmax(model.predict_on_batch(x), axis=-1))
    pred, y = np.argmax(probs, axis=-1), np.asarray(y).reshape(-1)
    names = info.class_names or tuple(str(i) for i in range(info.num_classes))
    cm = confusion_matrix(y, pred, info.num_classes)
    return {"confusion_matrix": confusion_image(cm, names),
            "misclassified": misclassified_table(x, y, pred, probs, names, info.extra.get("vocabulary", []))}


def predict_outputs(model, inputs: list[str], out_dir: Path, cfg, info: DataInfo, options: dict) -> list[dict]:
    """Label and class probabilities per raw text; also written to predictions.json."""
    texts = [t for t in inputs if t.strip()]
    if not texts:
        raise UserError("predict: give at least one text (as arguments or --input FILE, one text a line)")
    extra = info.extra
    ids = text_data.tokenize_texts(texts, extra["vocabulary"], extra["sequence_length"],
                                   STANDARDIZE[extra.get("standardize", "lower_and_strip_punctuation")])
    probs = np.asarray(ops.softmax(model.predict_on_batch(ids), axis=-1))
    rows = []
    for text, p in zip(texts, probs):
        k = int(np.argmax(p))
        rows.append({"input": text, "label": info.class_names[k], "probability": float(p[k]),
                     "probabilities": {name: round(float(q), 6) for name, q in zip(info.class_names, p)}})
    (out_dir / "predictions.json").write_text(json.dumps(rows, indent=2))
    return rows


register(Task(
    name="text-classification",
    description="text classification (BiLSTM / Transformer encoder / 1D CNN over TextVectorization ids)",
    config_cls=TextClassificationConfig,
    build_datasets=build_datasets,
    rebuild_datasets=rebuild_datasets,
    build_model=build_model,
    loss=loss,
    metrics=metrics,
    default_data="generated 3-class review sentiment (negation, 'but' contrasts, noise words)",
    presets={
        "debug": {"epochs": 1, "num_train": 256, "num_val": 64, "batch_size": 32, "vocab_size": 500,
                  "sequence_length": 24, "embedding_dim": 16, "hidden": 16, "log_every_steps": 2,
                  "warmup_steps": 0},
        "sst2": {"model": "bilstm", "epochs": 4, "sequence_length": 48, "vocab_size": 16000,
                 "embedding_dim": 128, "hidden": 64, "dropout": 0.5, "learning_rate": 2e-3, "batch_size": 32},
    },
    visualize=visualize,
    visualize_examples=512,
    predict_outputs=predict_outputs,
    best_metric="val_accuracy",
))
